// Output files: atomic replace, check command, reload only on change, mode.

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

@Suite struct QuiescenceWaitsForQuietWithinABound {
    @Test func aSingleChangeIsDueAfterMin() {
        var q = Quiescence(minMs: 100, maxMs: 1_000)
        let due0 = q.changed(nowMs: 0)
        #expect(due0 == 100)
        let fired1 = q.fire(nowMs: 99)
        #expect(!fired1)
        let fired2 = q.fire(nowMs: 100)
        #expect(fired2)
        let fired3 = q.fire(nowMs: 200)
        #expect(!fired3, "fired once")
    }

    @Test func eachChangePushesTheRenderBackByMin() {
        var q = Quiescence(minMs: 100, maxMs: 1_000)
        _ = q.changed(nowMs: 0)
        let due50 = q.changed(nowMs: 50)
        #expect(due50 == 150)
        let due120 = q.changed(nowMs: 120)
        #expect(due120 == 220)
        let fired4 = q.fire(nowMs: 150)
        #expect(!fired4)
        let fired5 = q.fire(nowMs: 220)
        #expect(fired5)
    }

    @Test func changesEvery50msStillRenderOncePerMaxWindow() {
        var q = Quiescence(minMs: 100, maxMs: 300)
        var fired: [Int] = []
        for now in stride(from: 0, through: 1_000, by: 10) {
            if now % 50 == 0 { _ = q.changed(nowMs: now) }
            if q.fire(nowMs: now) { fired.append(now) }
        }
        #expect(fired == [300, 650, 1_000], "one render per max window while flapping (bursts start at 0, 350 and 700)")
        #expect(fired.count <= 1_000 / 300 + 1)
    }

    @Test func zeroWaitIsDueAtOnce() {
        var q = Quiescence(minMs: 0, maxMs: 0)
        let due7 = q.changed(nowMs: 7)
        #expect(due7 == 7)
        let fired6 = q.fire(nowMs: 7)
        #expect(fired6)
    }
}

@Suite struct TextDiffShowsChangedLines {
    @Test func equalTextsHaveNoDiff() {
        #expect(TextDiff.unified(old: "a\nb\n", new: "a\nb\n", oldName: "x", newName: "y") == "")
    }

    @Test func aChangedLineShowsAsRemovedAndAddedWithContext() {
        let diff = TextDiff.unified(old: "a\nb\nc\n", new: "a\nB\nc\n", oldName: "old", newName: "new")
        #expect(diff == "--- old\n+++ new\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n")
    }

    @Test func farApartChangesGetTheirOwnHunks() {
        let old = (1...20).map { "line \($0)" }.joined(separator: "\n") + "\n"
        let new = old.replacingOccurrences(of: "line 2\n", with: "line two\n").replacingOccurrences(of: "line 19\n", with: "")
        let diff = TextDiff.unified(old: old, new: new, oldName: "o", newName: "n", context: 1)
        #expect(diff == "--- o\n+++ n\n@@ -1,3 +1,3 @@\n line 1\n-line 2\n+line two\n line 3\n@@ -18,3 +18,2 @@\n line 18\n-line 19\n line 20\n")
    }
}
