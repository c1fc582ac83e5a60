#if canImport(Glibc)
import Glibc
#endif
import Foundation

// Child processes for the integration tests: the switchyard binary, backends, curl, wrk.
// Output goes to files in the test's scratch directory (never to pipes that could fill up
// and stall the child), and every process is stopped by its PID.

/// Where the `switchyard` executable under test is.
///
/// `SWITCHYARD_BIN` wins (scripts/test sets it). Otherwise the executable built beside the
/// test bundle (`<scratch>/<triple>/debug/`), which works for `.build` and for any
/// `--scratch-path`; last, `<repo>/.build/debug/switchyard`.
enum SwitchyardBinary {
    static let path: String = {
        if let path = ProcessInfo.processInfo.environment["SWITCHYARD_BIN"], !path.isEmpty {
            return path
        }
        var candidates: [String] = []
        if let bundle = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            // The bundle's own directory, and the one above for `.xctest` bundle directories.
            var dir = (bundle as NSString).deletingLastPathComponent
            for _ in 0..<3 {
                candidates.append(dir + "/switchyard")
                dir = (dir as NSString).deletingLastPathComponent
            }
        }
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        candidates.append(repo + "/.build/debug/switchyard")
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? candidates.last!
    }()

    /// The repository root, for the shipped `conf/` files.
    static let repositoryRoot: String = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
}

/// A failure of the harness itself (a process that did not start, a wait that ran out).
struct HarnessError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Polls `condition` every `interval` until it holds; throws naming `what` once `timeout`
/// has passed. The only way these tests wait for something to happen.
func waitFor(_ what: String, timeout: Duration, interval: Duration = .milliseconds(20),
             _ condition: () throws -> Bool) throws {
    let deadline = ContinuousClock.now + timeout
    while true {
        if try condition() { return }
        if ContinuousClock.now >= deadline { throw HarnessError("timed out after \(timeout) waiting for \(what)") }
        pause(interval)
    }
}

/// Sleeps the calling thread: the polling step of `waitFor`, never a synchronisation.
func pause(_ duration: Duration) {
    let (seconds, attoseconds) = duration.components
    var request = timespec(tv_sec: Int(seconds), tv_nsec: Int(attoseconds / 1_000_000_000))
    var remaining = timespec()
    while nanosleep(&request, &remaining) != 0 && errno == EINTR { request = remaining }
}

/// A temporary directory, removed with everything in it when released (kept, with the
/// processes' logs, when `SWITCHYARD_ITEST_KEEP` is set).
final class ScratchDir {
    let path: String

    init(_ label: String) throws {
        var template = Array("/tmp/switchyard-itest-\(label)-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw HarnessError("mkdtemp failed: errno \(errno)") }
        path = String(cString: made)
    }

    deinit {
        if ProcessInfo.processInfo.environment["SWITCHYARD_ITEST_KEEP"] == nil {
            try? FileManager.default.removeItem(atPath: path)
        }
    }

    func file(_ name: String) -> String { path + "/" + name }

    /// Writes by renaming a complete new file over the old one.
    func write(_ name: String, _ text: String) throws {
        let temporary = file(".\(name).new")
        try Data(text.utf8).write(to: URL(fileURLWithPath: temporary))
        guard rename(temporary, file(name)) == 0 else { throw HarnessError("rename to \(name) failed: errno \(errno)") }
    }

    /// Rewrites the file in place (truncate, then one write), as an editor saving over it would.
    func writeInPlace(_ name: String, _ text: String) throws {
        let fd = open(file(name), O_WRONLY | O_TRUNC | O_CREAT, 0o644)
        guard fd >= 0 else { throw HarnessError("open \(name) failed: errno \(errno)") }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        guard written == bytes.count else { throw HarnessError("short write to \(name)") }
    }

    func read(_ name: String) -> String {
        (try? String(contentsOfFile: file(name), encoding: .utf8)) ?? ""
    }
}

/// A child process whose output goes to `<label>.out` and `<label>.err` in a scratch
/// directory. `stop()` (SIGKILL if still running) is idempotent; call it in a `defer`.
final class ChildProcess {
    let label: String
    let process = Process()
    let stdoutPath: String
    let stderrPath: String

    init(_ executable: String, _ arguments: [String], dir: ScratchDir, label: String,
         stdin: FileHandle? = nil, stdout: FileHandle? = nil) throws {
        self.label = label
        stdoutPath = dir.file("\(label).out")
        stderrPath = dir.file("\(label).err")
        _ = FileManager.default.createFile(atPath: stdoutPath, contents: nil)
        _ = FileManager.default.createFile(atPath: stderrPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: dir.path)
        // The handles this opens are the child's (posix_spawn dup2s them): the parent closes
        // its copies once the child runs. Foundation keeps a finished Process (and so its
        // handles) alive, and the test process piled up descriptors over hundreds of
        // children until Foundation's own descriptor scan in Process.run (it copies each
        // /proc/self/fd entry's 256-byte name) read past its buffer and crashed.
        let ownOut = stdout == nil ? FileHandle(forWritingAtPath: stdoutPath) : nil
        let ownErr = FileHandle(forWritingAtPath: stderrPath)
        let ownIn = stdin == nil ? FileHandle(forReadingAtPath: "/dev/null") : nil
        defer {
            for handle in [ownOut, ownErr, ownIn] { try? handle?.close() }
        }
        process.standardOutput = stdout ?? ownOut
        process.standardError = ownErr
        process.standardInput = stdin ?? ownIn
        do {
            try process.run()
        } catch {
            throw HarnessError("cannot start \(executable): \(error)")
        }
    }

    var pid: Int32 { process.processIdentifier }
    var isRunning: Bool { process.isRunning }
    /// What the process wrote so far, decoded leniently: a client like `openssl s_client`
    /// copies whatever bytes the server sent (HTTP/2 frames) into its output, and one byte
    /// that is not UTF-8 must not make the whole text vanish.
    var stdoutText: String { FileManager.default.contents(atPath: stdoutPath).map { String(decoding: $0, as: UTF8.self) } ?? "" }
    var stderrText: String { FileManager.default.contents(atPath: stderrPath).map { String(decoding: $0, as: UTF8.self) } ?? "" }

    func signal(_ number: Int32) { if process.isRunning { kill(pid, number) } }

    /// Waits for the process to exit; its exit status, or nil if it is still running at
    /// the deadline (or was killed by a signal: then -signal).
    @discardableResult
    func waitExit(timeout: Duration) -> Int32? {
        do {
            try waitFor("\(label) to exit", timeout: timeout, interval: .milliseconds(10)) { !process.isRunning }
        } catch {
            return nil
        }
        switch process.terminationReason {
        case .exit: return process.terminationStatus
        case .uncaughtSignal: return -process.terminationStatus
        @unknown default: return process.terminationStatus
        }
    }

    /// Kills the process if it still runs and reaps it.
    func stop() {
        guard process.isRunning else { return }
        kill(pid, SIGKILL)
        process.waitUntilExit()
    }

    /// Waits for the `listening HOST:PORT` line a server prints once bound; returns the port.
    func waitForListeningPort(timeout: Duration = .seconds(10)) throws -> UInt16 {
        var port: UInt16?
        try waitFor("\(label) to print 'listening'", timeout: timeout) {
            if let line = stdoutText.split(separator: "\n").first(where: { $0.hasPrefix("listening ") }),
               let text = line.split(separator: " ").dropFirst().first?.split(separator: ":").last {
                port = UInt16(text)
                return port != nil
            }
            guard process.isRunning else {
                throw HarnessError("\(label) exited before listening: \(stderrText.suffix(2000))")
            }
            return false
        }
        return port!
    }

    /// Waits for the `admin listening HOST:PORT` line the proxy prints when its admin
    /// listener is bound; returns the port.
    func waitForAdminPort(timeout: Duration = .seconds(5)) throws -> UInt16 {
        var port: UInt16?
        try waitFor("\(label) to print 'admin listening'", timeout: timeout) {
            let line = stdoutText.split(separator: "\n").first { $0.hasPrefix("admin listening ") }
            port = line.flatMap { $0.split(separator: ":").last.flatMap { UInt16($0) } }
            return port != nil
        }
        return port!
    }
}

/// Runs a command to completion (killed at `timeout`); its status and output.
struct CommandResult {
    var status: Int32?
    var stdout: String
    var stderr: String
}

func runCommand(_ executable: String, _ arguments: [String], dir: ScratchDir, label: String,
                timeout: Duration = .seconds(30)) throws -> CommandResult {
    let child = try ChildProcess(executable, arguments, dir: dir, label: label)
    defer { child.stop() }
    let status = child.waitExit(timeout: timeout)
    return CommandResult(status: status, stdout: child.stdoutText, stderr: child.stderrText)
}

/// A port nothing listens on: bound by the kernel's choice, then released.
func closedPort() throws -> UInt16 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw HarnessError("socket failed") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer -> Bool in
            bind(fd, pointer, length) == 0 && getsockname(fd, pointer, &length) == 0
        }
    }
    guard bound else { throw HarnessError("bind failed: errno \(errno)") }
    return UInt16(bigEndian: address.sin_port)
}

/// The resident set size of a process in bytes (VmRSS), or nil once it has gone.
func residentBytes(pid: Int32) -> Int? {
    guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
          let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
          let kib = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
    else { return nil }
    return kib * 1024
}

/// How many file descriptors a process has open.
func openDescriptors(pid: Int32) -> Int {
    (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? -1
}

/// Runs `body` with the test process's descriptor limit raised to at least `count` (the
/// proxies it starts inherit it), and puts the old limit back afterwards: Foundation's
/// `Process.run` in later tests misbehaved (a crash in its memmove) once the limit had
/// been left raised.
func withDescriptorLimit<T>(atLeast count: Int, _ body: () throws -> T) rethrows -> T {
    var old = rlimit()
    getrlimit(Int32(RLIMIT_NOFILE.rawValue), &old)
    guard old.rlim_cur < rlim_t(count) else { return try body() }
    var raised = old
    raised.rlim_cur = min(rlim_t(count), old.rlim_max)
    setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised)
    defer { setrlimit(Int32(RLIMIT_NOFILE.rawValue), &old) }
    return try body()
}
