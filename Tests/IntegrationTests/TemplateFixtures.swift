#if canImport(Glibc)
import Glibc
#endif
import Foundation

// Fixtures for the template tests: a switchyard config with a `templates:` section, and a
// real nginx (Debian's nginx-light) with its own prefix in the scratch directory.

/// switchyard.yml with an admin listener and a `templates:` section (`templates` is the
/// YAML under it, indented by two spaces).
func templatedConfigYAML(templates: String) -> String {
    """
    listeners:
      - {name: web, address: 127.0.0.1:0}
    routes:
      - {path: /, service: shop}
    discovery: {provider: file, file: services.yml}
    admin: {address: 127.0.0.1:0}
    workers: 1
    timeouts: {client_header: 2s, upstream_response: 5s, drain: 2s}
    templates:
    \(templates)
    """
}

/// A shipped template's text (templates/NAME).
func shippedTemplate(_ name: String) throws -> String {
    try String(contentsOfFile: SwitchyardBinary.repositoryRoot + "/templates/" + name, encoding: .utf8)
}

/// nginx run by the test as root with its own prefix (`<scratch>/nginx`), in the
/// foreground (`daemon off`), listening on a free loopback port and proxying to the
/// `shop` upstream in `conf/upstream.conf`, which switchyard renders.
final class RunningNginx {
    static let binary = "/usr/sbin/nginx"
    let prefix: String
    let port: UInt16
    private(set) var child: ChildProcess?
    private let dir: ScratchDir

    init(dir: ScratchDir) throws {
        self.dir = dir
        prefix = dir.file("nginx")
        port = try closedPort()
        for sub in ["conf", "logs", "tmp"] {
            try FileManager.default.createDirectory(atPath: "\(prefix)/\(sub)", withIntermediateDirectories: true)
        }
        try Data(mainConfig.utf8).write(to: URL(fileURLWithPath: "\(prefix)/conf/nginx.conf"))
        // The check command: the main config with the candidate included instead of the
        // live upstream file, tested by nginx itself.
        try Data(checkScript.utf8).write(to: URL(fileURLWithPath: "\(prefix)/check.sh"))
    }

    var upstreamPath: String { "\(prefix)/conf/upstream.conf" }
    var checkCommand: String { "sh \(prefix)/check.sh" }
    /// Reload by signal to the master's PID (from its pid file).
    var reloadCommand: String { "kill -HUP $(cat \(prefix)/logs/nginx.pid)" }
    var url: String { "http://127.0.0.1:\(port)" }

    func start() throws {
        let child = try ChildProcess(Self.binary, ["-p", prefix + "/", "-c", "conf/nginx.conf", "-g", "daemon off;"], dir: dir, label: "nginx")
        self.child = child
        try waitFor("nginx to write its pid file", timeout: .seconds(10)) {
            guard child.isRunning else { throw HarnessError("nginx exited: \(child.stderrText) \(errorLog)") }
            return FileManager.default.fileExists(atPath: "\(prefix)/logs/nginx.pid")
        }
    }

    var errorLog: String { (try? String(contentsOfFile: "\(prefix)/logs/error.log", encoding: .utf8)) ?? "" }

    /// Stops the master by its PID (SIGKILL takes the workers' parent; they exit with it).
    func stop() {
        guard let child else { return }
        child.signal(SIGQUIT)
        if child.waitExit(timeout: .seconds(5)) == nil { child.stop() }
    }

    private var mainConfig: String {
        """
        user root;
        worker_processes 1;
        pid logs/nginx.pid;
        error_log logs/error.log info;
        events { worker_connections 64; }
        http {
            access_log off;
            client_body_temp_path tmp/body;
            proxy_temp_path tmp/proxy;
            include upstream.conf;
            server {
                listen 127.0.0.1:\(port);
                location / {
                    proxy_pass http://shop;
                    proxy_next_upstream off;
                }
            }
        }

        """
    }

    private var checkScript: String {
        """
        set -e
        sed "s#include upstream.conf;#include $SWITCHYARD_CANDIDATE;#" \(prefix)/conf/nginx.conf > \(prefix)/conf/check.conf
        exec \(Self.binary) -t -q -p \(prefix)/ -c conf/check.conf -g 'daemon off;'

        """
    }
}

/// Requests through `url` until one is answered by `backend` (the demo backends name
/// themselves in `x-backend`), within `timeout`.
func waitForBackend(_ backend: String, at url: String, dir: ScratchDir, timeout: Duration = .seconds(10)) throws {
    try waitFor("a request through \(url) to reach \(backend)", timeout: timeout, interval: .milliseconds(50)) {
        let result = try curl(url + "/", extra: ["%header{x-backend}"], dir: dir, timeout: .seconds(5))
        return result.httpStatus == 200 && result.written.first == backend
    }
}

/// The backends that answered `count` requests through `url`.
func backendsAnswering(_ count: Int, at url: String, dir: ScratchDir) throws -> [String] {
    try (0..<count).map { _ in
        let result = try curl(url + "/", extra: ["%header{x-backend}"], dir: dir, timeout: .seconds(5))
        return result.httpStatus == 200 ? (result.written.first ?? "?") : "HTTP \(result.httpStatus)"
    }
}
