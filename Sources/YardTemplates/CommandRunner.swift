// Running an output's check and reload commands: `/bin/sh -c`, bounded in time, output
// kept for the message.

import Foundation

/// How a command ended.
///
/// Threading: a value.
public struct CommandResult: Sendable, Equatable {
    /// Exit status, or nil when the command was killed at its deadline or did not start.
    public var status: Int32?
    /// Standard output and standard error together, at most the last 4 KiB.
    public var output: String
    public var timedOut: Bool

    public var succeeded: Bool { status == 0 }

    /// "exit 1: nginx: [emerg] ..." for messages.
    public var summary: String {
        let trimmed = output.trimmingCharacters(in: .whitespacesAndNewlines)
        let head = timedOut ? "timed out" : status.map { "exit \($0)" } ?? "did not start"
        return trimmed.isEmpty ? head : "\(head): \(trimmed)"
    }
}

/// Runs shell commands for output files.
///
/// Threading: blocking; run it on the control plane's own queue, never on an event loop.
public enum CommandRunner {
    static let keptOutputBytes = 4_096

    /// Runs `command` with `/bin/sh -c`, extra environment `environment`, killed (SIGKILL
    /// to its process group's leader) after `timeoutMs`.
    public static func run(_ command: String, environment: [String: String] = [:], timeoutMs: Int) -> CommandResult {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", command]
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        // Output goes to an unlinked temporary file rather than a pipe: a chatty command
        // cannot fill a pipe and block while we wait for it to exit.
        let logPath = NSTemporaryDirectory() + "/switchyard-command-\(UUID().uuidString).log"
        guard FileManager.default.createFile(atPath: logPath, contents: nil), let log = FileHandle(forUpdatingAtPath: logPath) else {
            return CommandResult(status: nil, output: "cannot create a temporary file for the command's output", timedOut: false)
        }
        unlink(logPath)
        defer { try? log.close() }
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        let exited = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in exited.signal() }
        do {
            try process.run()
        } catch {
            return CommandResult(status: nil, output: "cannot start /bin/sh: \(error)", timedOut: false)
        }
        var timedOut = false
        if exited.wait(timeout: .now() + .milliseconds(timeoutMs)) == .timedOut {
            timedOut = true
            kill(process.processIdentifier, SIGKILL)
            exited.wait()
        }
        let size = (try? log.seekToEnd()) ?? 0
        try? log.seek(toOffset: size > UInt64(keptOutputBytes) ? size - UInt64(keptOutputBytes) : 0)
        let data = (try? log.readToEnd()) ?? Data()
        let output = String(decoding: data, as: UTF8.self)
        return CommandResult(status: timedOut ? nil : process.terminationStatus, output: output, timedOut: timedOut)
    }

    /// `text` quoted for `/bin/sh` (single quotes; embedded ones closed and escaped).
    public static func shellQuoted(_ text: String) -> String {
        "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }
}
