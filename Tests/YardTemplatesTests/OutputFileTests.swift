// Output files: atomic replace, check command, reload only on change, mode, timeouts.

import Foundation
import Testing
import YardModel
import YardTemplates
import YardTestSupport

@Suite struct OutputFilesReplaceAtomicallyAfterTheirCheck {
    @Test func aNewFileIsWrittenWithItsModeAndLeavesNoTemporaryFileBehind() throws {
        let dir = try TempDir()
        let output = OutputConfig(template: "t", destination: dir.file("out.conf"), mode: 0o600)
        #expect(OutputFile.write("hello\n", output: output) == .written(reload: nil))
        #expect(try dir.read("out.conf") == "hello\n")
        let attributes = try FileManager.default.attributesOfItem(atPath: dir.file("out.conf"))
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["out.conf"])
    }

    @Test func theReplaceIsARenameSoReadersNeverSeeAHalfWrittenFile() throws {
        let dir = try TempDir()
        try dir.write("out.conf", "old\n")
        let before = try FileManager.default.attributesOfItem(atPath: dir.file("out.conf"))[.systemFileNumber] as? NSNumber
        #expect(OutputFile.write("new\n", output: OutputConfig(template: "t", destination: dir.file("out.conf"))) == .written(reload: nil))
        let after = try FileManager.default.attributesOfItem(atPath: dir.file("out.conf"))[.systemFileNumber] as? NSNumber
        #expect(before != after, "a new inode: the file was renamed over, not rewritten in place")
        #expect(try dir.read("out.conf") == "new\n")
    }

    @Test func reloadRunsOnlyWhenTheContentChanged() throws {
        let dir = try TempDir()
        let output = OutputConfig(template: "t", destination: dir.file("out.conf"), reload: "echo reloaded >> \(dir.file("reloads"))")
        guard case .written(let reload?) = OutputFile.write("one\n", output: output) else { Issue.record("not written"); return }
        #expect(reload.succeeded)
        #expect(OutputFile.write("one\n", output: output) == .unchanged)
        _ = OutputFile.write("two\n", output: output)
        #expect(try dir.read("reloads") == "reloaded\nreloaded\n")
    }

    @Test func aFailingCheckKeepsTheOldFileAndReportsTheCommandsOutput() throws {
        let dir = try TempDir()
        try dir.write("out.conf", "good\n")
        let output = OutputConfig(
            template: "t", destination: dir.file("out.conf"), check: "grep -q good {{path}} || { echo 'bad config' >&2; exit 3; }",
            reload: "touch \(dir.file("reloaded"))")
        let outcome = OutputFile.write("broken\n", output: output)
        guard case .checkFailed(let result) = outcome else { Issue.record("\(outcome)"); return }
        #expect(result.status == 3)
        #expect(outcome.description == "check failed (exit 3: bad config); the old file stays")
        #expect(try dir.read("out.conf") == "good\n")
        #expect(!FileManager.default.fileExists(atPath: dir.file("reloaded")))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["out.conf"], "the candidate is removed")
    }

    @Test func theCheckSeesTheCandidateThroughThePlaceholderAndTheEnvironment() throws {
        let dir = try TempDir()
        let output = OutputConfig(
            template: "t", destination: dir.file("out.conf"),
            check: "cat {{path}} > \(dir.file("seen")); test \"$SWITCHYARD_CANDIDATE\" = {{path}} && test \"$SWITCHYARD_DESTINATION\" = \(dir.file("out.conf"))")
        #expect(OutputFile.write("candidate text\n", output: output) == .written(reload: nil))
        #expect(try dir.read("seen") == "candidate text\n")
    }

    @Test func aCheckThatHangsIsKilledAtItsTimeout() throws {
        let dir = try TempDir()
        var output = OutputConfig(template: "t", destination: dir.file("out.conf"), check: "sleep 30")
        output.commandTimeoutMs = 200
        let started = ContinuousClock.now
        guard case .checkFailed(let result) = OutputFile.write("x\n", output: output) else { Issue.record("not refused"); return }
        #expect(result.timedOut)
        #expect(ContinuousClock.now - started < .seconds(10))
        #expect(!FileManager.default.fileExists(atPath: dir.file("out.conf")))
    }

    @Test func aDestinationInAMissingFolderIsAWriteFailure() {
        let outcome = OutputFile.write("x\n", output: OutputConfig(template: "t", destination: "/nonexistent-switchyard/out.conf"))
        guard case .writeFailed(let message) = outcome else { Issue.record("\(outcome)"); return }
        #expect(message.contains("/nonexistent-switchyard"))
    }
}
