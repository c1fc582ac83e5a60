#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Synchronization

/// Runs a program (usually the switchyard binary) for an integration test: output captured
/// to files, lines awaited by polling, signals sent by PID, and the process (with its
/// process group) always killed and reaped when the runner goes away.
///
/// The child gets its own process group, so `stop()` also ends anything it started.
/// Standard input is /dev/null. Threading: every method may be called from any thread;
/// the reaped state sits behind a mutex.
public final class ProcessRunner: Sendable {
    public let executable: String
    public let arguments: [String]
    public let pid: pid_t
    /// Where standard output and standard error are captured.
    public let stdoutPath: String
    public let stderrPath: String
    private let directory: TempDir
    private let status = Mutex<ExitStatus?>(nil)

    /// How the process ended.
    public enum ExitStatus: Sendable, Equatable, CustomStringConvertible {
        case exited(Int32)
        case signalled(Int32)

        public var description: String {
            switch self {
            case .exited(let code): "exited with status \(code)"
            case .signalled(let signal): "killed by signal \(signal)"
            }
        }
    }

    /// Starts `executable` with `arguments`. `environment` adds to (and overrides) this
    /// process's environment; `workingDirectory` defaults to the current one.
    public init(_ executable: String, arguments: [String] = [], environment: [String: String] = [:],
                workingDirectory: String? = nil) throws {
        self.executable = executable
        self.arguments = arguments
        directory = try TempDir(prefix: "switchyard-proc")
        stdoutPath = directory.file("stdout.log")
        stderrPath = directory.file("stderr.log")

        var fileActions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&fileActions)
        defer { posix_spawn_file_actions_destroy(&fileActions) }
        posix_spawn_file_actions_addopen(&fileActions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&fileActions, 1, stdoutPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&fileActions, 2, stderrPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // Own process group (so the group can be killed), default signal dispositions and
        // an empty mask (the test runner may block or ignore signals the child relies on).
        var defaults = sigset_t()
        sigfillset(&defaults)
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

        var env = ProcessInfo.processInfo.environment
        for (key, value) in environment { env[key] = value }
        // posix_spawn_file_actions_addchdir_np is not visible to Swift (it needs _GNU_SOURCE):
        // `env -C` changes directory and then execs the program, keeping the same PID.
        let program = workingDirectory == nil ? executable : "/usr/bin/env"
        let command = workingDirectory.map { ["/usr/bin/env", "-C", $0, executable] } ?? [executable]
        let argv = (command + arguments).map { strdup($0) } + [nil]
        let envp = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var child = pid_t()
        let result = posix_spawn(&child, program, &fileActions, &attributes, argv, envp)
        guard result == 0 else {
            throw TestSupportError("cannot start \(executable): \(String(cString: strerror(result)))")
        }
        pid = child
    }

    deinit { stop() }

    // MARK: Output

    /// Everything written to standard output so far.
    public var stdout: String { (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? "" }
    /// Everything written to standard error so far.
    public var stderr: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }

    /// Which captured stream `waitForLine` searches.
    public enum Stream: Sendable {
        case stdout, stderr, either
    }

    /// Waits for a complete line (ending in a newline) containing `substring`; returns it.
    /// Fails at once, with the output so far, if the process exits first.
    @discardableResult
    public func waitForLine(matching substring: String, in stream: Stream = .either,
                            deadline: Deadline = .seconds(10)) throws -> String {
        try waitForLine(in: stream, deadline: deadline, description: "a line containing \"\(substring)\"") { $0.contains(substring) }
    }

    /// Waits for a complete line for which `predicate` holds; returns it.
    @discardableResult
    public func waitForLine(in stream: Stream = .either, deadline: Deadline = .seconds(10),
                            description: String = "a matching line",
                            where predicate: (String) -> Bool) throws -> String {
        var found: String?
        do {
            try waitUntil(description, deadline: deadline) {
                found = completeLines(stream).first(where: predicate)
                if found != nil { return true }
                if let status = poll() {
                    // One more look: the line may have been written just before exiting.
                    found = completeLines(stream).first(where: predicate)
                    if found != nil { return true }
                    throw TestSupportError("\(name) \(status) before printing \(description)\n\(outputSummary)")
                }
                return false
            }
        } catch let error as TestSupportError where found == nil && !error.description.contains("\(name) ") {
            throw TestSupportError("\(error.description) from \(name)\n\(outputSummary)")
        }
        return found!
    }

    private func completeLines(_ stream: Stream) -> [String] {
        let texts: [String]
        switch stream {
        case .stdout: texts = [stdout]
        case .stderr: texts = [stderr]
        case .either: texts = [stdout, stderr]
        }
        return texts.flatMap { text -> [Substring] in
            guard let lastNewline = text.lastIndex(of: "\n") else { return [] }
            return text[..<lastNewline].split(separator: "\n", omittingEmptySubsequences: false)
        }.map(String.init)
    }

    /// The program's name and the tail of both streams, for failure messages.
    public var outputSummary: String {
        func tail(_ text: String) -> String {
            let lines = text.split(separator: "\n", omittingEmptySubsequences: false).suffix(40)
            return lines.map { "    " + $0 }.joined(separator: "\n")
        }
        return "--- \(name) stdout (\(stdoutPath)):\n\(tail(stdout))\n--- stderr (\(stderrPath)):\n\(tail(stderr))"
    }

    private var name: String { "\((executable as NSString).lastPathComponent) [pid \(pid)]" }

    // MARK: Signals and exit

    /// Sends `signal` to the process (not its group). Does nothing once it has been reaped.
    public func terminate(signal: Int32 = SIGTERM) {
        status.withLock { status in
            if status == nil { _ = kill(pid, signal) }
        }
    }

    /// Whether the process is still running (reaps it if it has exited).
    public var isRunning: Bool { poll() == nil }

    /// How the process ended, or nil while it runs. Non-blocking.
    public var exitStatus: ExitStatus? { poll() }

    /// Waits for the process to exit and returns how; throws (with its output) on timeout.
    @discardableResult
    public func waitForExit(deadline: Deadline = .seconds(10)) throws -> ExitStatus {
        var result: ExitStatus?
        do {
            try waitUntil("exit", deadline: deadline, poll: .milliseconds(10)) {
                result = poll()
                return result != nil
            }
        } catch {
            throw TestSupportError("\(name) still running after \(deadline)\n\(outputSummary)")
        }
        return result!
    }

    /// Kills the process group (SIGKILL) and reaps the process. Safe to call many times.
    public func stop() {
        status.withLock { status in
            guard status == nil else { return }
            _ = kill(-pid, SIGKILL)
            _ = kill(pid, SIGKILL)
            var raw: Int32 = 0
            while waitpid(pid, &raw, 0) < 0, errno == EINTR {}
            status = ProcessRunner.decode(raw)
        }
        // Children that left the group or outlived the leader: one more sweep of the group.
        _ = kill(-pid, SIGKILL)
    }

    private func poll() -> ExitStatus? {
        status.withLock { status in
            if let status { return status }
            var raw: Int32 = 0
            let reaped = waitpid(pid, &raw, WNOHANG)
            if reaped == pid {
                status = ProcessRunner.decode(raw)
                // The leader is gone; nothing it started may outlive the test.
                _ = kill(-pid, SIGKILL)
            }
            return status
        }
    }

    /// WIFEXITED/WEXITSTATUS/WTERMSIG, which Swift does not import (they are macros).
    private static func decode(_ raw: Int32) -> ExitStatus {
        let signal = raw & 0x7F
        return signal == 0 ? .exited((raw >> 8) & 0xFF) : .signalled(signal)
    }
}
