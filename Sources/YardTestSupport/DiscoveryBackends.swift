#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Synchronization

// Test doubles and real engines for the Docker, Swarm and Consul providers' tests:
// the two Python emulators in Tests/Fixtures (no Consul agent and no Swarm manager can
// run on the test machines) and a real podman engine (Tests/Fixtures/podman_engine.sh).

// MARK: - Emulators

/// A Python emulator from Tests/Fixtures on a loopback port, driven through its
/// `/_emulator/` controls. Stopped (by PID) when it goes away.
///
/// Threading: every method may be called from any thread.
public final class EmulatorProcess: Sendable {
    public let script: String
    /// The port it listens on (kept across `restart()`).
    public let port: UInt16
    private let extraArguments: [String]
    private let process: Mutex<ProcessRunner?>

    /// Starts `Tests/Fixtures/<script>` on a free port (or `port`) and waits until it listens.
    public init(script: String, arguments: [String] = [], port: UInt16? = nil, filePath: String = #filePath) throws {
        let path = try packageRoot(filePath: filePath) + "/Tests/Fixtures/" + script
        self.script = path
        self.extraArguments = arguments
        let runner = try ProcessRunner("/usr/bin/env", arguments: ["python3", path, "--port", String(port ?? 0)] + arguments)
        let line = try runner.waitForLine(matching: "PORT ", deadline: .seconds(10))
        guard let number = UInt16(line.split(separator: " ").last ?? "") else {
            runner.stop()
            throw TestSupportError("\(script) printed '\(line)' instead of its port")
        }
        self.port = number
        self.process = Mutex(runner)
    }

    deinit { process.withLock { $0?.stop() } }

    /// `http://127.0.0.1:PORT`.
    public var url: String { "http://127.0.0.1:\(port)" }

    /// SIGKILLs it (a crash: no goodbye to open connections).
    public func kill() {
        let runner = process.withLock { current -> ProcessRunner? in
            defer { current = nil }
            return current
        }
        runner?.terminate(signal: SIGKILL)
        _ = try? runner?.waitForExit(deadline: .seconds(5))
        runner?.stop()
    }

    /// Starts it again on the same port (after `kill()`), retrying while the port is busy.
    public func restart(deadline: Deadline = .seconds(10)) throws {
        kill()
        try waitUntil("\(script) listening again on \(port)", deadline: deadline, poll: .milliseconds(50)) {
            let runner = try ProcessRunner("/usr/bin/env", arguments: ["python3", script, "--port", String(port)] + extraArguments)
            if (try? runner.waitForLine(matching: "PORT ", deadline: .seconds(5))) != nil {
                process.withLock { $0 = runner }
                return true
            }
            runner.stop()
            return false
        }
    }

    /// Sends a request to the emulator (an API call or a `/_emulator/` control) and
    /// returns the response; throws on a status of 400 or more.
    @discardableResult
    public func call(_ method: String, _ path: String, json: String? = nil) throws -> HTTPResponse {
        let response = try httpRequest(
            method, port: port, path: path, headers: json == nil ? [] : [("Content-Type", "application/json")],
            body: json.map { Array($0.utf8) } ?? (method == "GET" ? nil : [])
        )
        guard response.status < 400 else {
            throw TestSupportError("\(method) \(path) on \(script): HTTP \(response.status) \(response.text)")
        }
        return response
    }

    /// A control call returning the `ID` of what it created.
    public func create(_ path: String, json: String) throws -> String {
        let response = try call("POST", path, json: json)
        guard let object = try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any],
              let id = object["ID"] as? String else {
            throw TestSupportError("POST \(path): no ID in \(response.text)")
        }
        return id
    }
}

// MARK: - Podman

/// A real Docker-compatible engine: podman's `system service` on a unix socket in a
/// temp dir, with its own storage and a busybox image (Tests/Fixtures/podman_engine.sh).
/// Containers run with `--network host`, so their servers listen on 127.0.0.1.
///
/// Threading: every method may be called from any thread (each runs a podman command).
public final class PodmanEngine: Sendable {
    public let directory: TempDir
    /// The Engine API socket.
    public let socketPath: String
    public let image: String
    private let script: String
    private let podman: [String]
    private let environment: [String: String]

    /// Starts the engine; throws (saying what to install) if podman or runc is missing.
    public init(filePath: String = #filePath) throws {
        script = try packageRoot(filePath: filePath) + "/Tests/Fixtures/podman_engine.sh"
        directory = try TempDir(prefix: "switchyard-podman")
        let starter = try ProcessRunner("/bin/bash", arguments: [script, "start", directory.path])
        let status = try starter.waitForExit(deadline: .seconds(60))
        guard status == .exited(0) else { throw TestSupportError("podman_engine.sh start: \(status)\n\(starter.outputSummary)") }
        var values: [String: String] = [:]
        for line in try String(contentsOfFile: directory.file("podman.env"), encoding: .utf8).split(separator: "\n") {
            guard let equals = line.firstIndex(of: "=") else { continue }
            values[String(line[..<equals])] = String(line[line.index(after: equals)...]).trimmingCharacters(in: CharacterSet(charactersIn: "\""))
        }
        guard let socket = values["PODMAN_SOCK"], let command = values["PODMAN"], let image = values["PODMAN_IMAGE"],
              let conf = values["CONTAINERS_CONF"] else {
            throw TestSupportError("podman_engine.sh wrote an incomplete podman.env")
        }
        socketPath = socket
        self.image = image
        podman = command.split(separator: " ").map(String.init)
        environment = ["CONTAINERS_CONF": conf]
    }

    deinit {
        if let stopper = try? ProcessRunner("/bin/bash", arguments: [script, "stop", directory.path]) {
            _ = try? stopper.waitForExit(deadline: .seconds(30))
            stopper.stop()
        }
    }

    /// The podman command line with this engine's storage flags, and the environment it
    /// needs: for scripts that run podman themselves (`PODMAN=... scripts/image`).
    public var commandLine: (arguments: [String], environment: [String: String]) { (podman, environment) }

    /// Runs `podman ARGS` with this engine's storage; returns standard output, trimmed.
    @discardableResult
    public func podman(_ arguments: [String], deadline: Deadline = .seconds(30)) throws -> String {
        let runner = try ProcessRunner("/usr/bin/env", arguments: podman + arguments, environment: environment)
        let status = try runner.waitForExit(deadline: deadline)
        guard status == .exited(0) else {
            throw TestSupportError("podman \(arguments.joined(separator: " ")): \(status)\n\(runner.outputSummary)")
        }
        return runner.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Creates (without starting) a busybox container on the host network serving HTTP
    /// on 127.0.0.1:`port` (`/` answers its name and a newline); returns its id.
    public func createHTTPContainer(name: String, port: UInt16, labels: [String: String]) throws -> String {
        var arguments = ["create", "--network", "host", "--name", name]
        for (key, value) in labels.sorted(by: { $0.key < $1.key }) { arguments += ["--label", "\(key)=\(value)"] }
        let script = "mkdir -p /tmp/www && echo \(name) > /tmp/www/index.html && exec httpd -f -p 127.0.0.1:\(port) -h /tmp/www"
        arguments += [image, "sh", "-c", script]
        return try podman(arguments)
    }

    /// SIGKILLs the API service only (containers keep running): the engine is "down".
    public func killService() throws { try runScript("kill") }

    /// Starts the API service again on the same socket and storage.
    public func restartService() throws { try runScript("start") }

    private func runScript(_ command: String) throws {
        let runner = try ProcessRunner("/bin/bash", arguments: [script, command, directory.path])
        let status = try runner.waitForExit(deadline: .seconds(60))
        guard status == .exited(0) else { throw TestSupportError("podman_engine.sh \(command): \(status)\n\(runner.outputSummary)") }
    }

    public func start(_ id: String) throws { try podman(["start", id]) }
    /// Stops with SIGKILL after `seconds` (busybox httpd as PID 1 ignores SIGTERM).
    public func stop(_ id: String, seconds: Int = 0) throws { try podman(["stop", "-t", String(seconds), id]) }
    public func remove(_ id: String) throws { try podman(["rm", "-f", "-t", "0", id]) }
}
