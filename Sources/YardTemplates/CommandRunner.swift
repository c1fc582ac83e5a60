// Running an output's check and reload commands: `/bin/sh -c` in its own process group,
// bounded in time (the whole group is killed at the deadline), output kept for the message.

#if canImport(Glibc)
import Glibc
#endif
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
/// Threading: blocking (polls the child every 5 ms); run it on the control plane's own
/// queue, never on an event loop.
public enum CommandRunner {
    static let keptOutputBytes = 4_096

    /// Runs `command` with `/bin/sh -c` and extra `environment`; after `timeoutMs` its
    /// process group (the shell and anything it started) gets SIGKILL.
    public static func run(_ command: String, environment: [String: String] = [:], timeoutMs: Int) -> CommandResult {
        // Output goes to an unlinked temporary file rather than a pipe: a chatty command
        // cannot fill a pipe and block while we wait for it to exit.
        var logTemplate = Array((NSTemporaryDirectory() + "/switchyard-command-XXXXXX").utf8CString)
        let logFD = logTemplate.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard logFD >= 0 else { return CommandResult(status: nil, output: "cannot create a file for the command's output", timedOut: false) }
        logTemplate.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
        defer { close(logFD) }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, logFD, 1)
        posix_spawn_file_actions_adddup2(&actions, logFD, 2)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        posix_spawnattr_setpgroup(&attributes, 0)
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        var defaults = sigset_t()
        sigfillset(&defaults)
        posix_spawnattr_setsigdefault(&attributes, &defaults)

        let merged = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        let arguments: [String] = ["/bin/sh", "-c", command]
        let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = merged.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, "/bin/sh", &actions, &attributes, argv, envp)
        guard spawned == 0 else {
            return CommandResult(status: nil, output: "cannot start /bin/sh: \(String(validatingCString: strerror(spawned)) ?? "error \(spawned)")", timedOut: false)
        }

        let deadline = ContinuousClock.now + .milliseconds(timeoutMs)
        var status: Int32 = 0
        var timedOut = false
        while true {
            let reaped = waitpid(pid, &status, WNOHANG)
            if reaped == pid || (reaped < 0 && errno != EINTR) { break }
            if ContinuousClock.now >= deadline {
                timedOut = true
                kill(-pid, SIGKILL)
                while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
                break
            }
            usleep(5_000)
        }
        let exitStatus: Int32? = timedOut ? nil : exitCode(status)
        return CommandResult(status: exitStatus, output: tail(of: logFD), timedOut: timedOut)
    }

    /// The exit code, or 128 + the signal for a command killed by one (as shells report it).
    private static func exitCode(_ status: Int32) -> Int32 {
        let signal = status & 0x7F
        return signal == 0 ? (status >> 8) & 0xFF : 128 + signal
    }

    private static func tail(of fd: Int32) -> String {
        let size = lseek(fd, 0, SEEK_END)
        guard size > 0 else { return "" }
        let start = max(0, size - off_t(keptOutputBytes))
        var bytes = [UInt8](repeating: 0, count: Int(size - start))
        let count = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, start) }
        return String(decoding: bytes.prefix(max(0, count)), as: UTF8.self)
    }

    /// `text` quoted for `/bin/sh` (single quotes; embedded ones closed and escaped).
    public static func shellQuoted(_ text: String) -> String {
        "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }
}
