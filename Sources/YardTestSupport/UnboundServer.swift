#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// A real DNS server (Debian's `unbound`) on a free loopback port, serving records a test
/// rewrites: `set(_:)` rewrites its local-data file and sends SIGHUP (unbound re-reads
/// everything and keeps its PID).
///
/// It answers only the zones of its records and refuses everything else: there is no
/// upstream and no recursion, so nothing leaves the machine. Stopped by its PID on
/// `deinit`. Threading: every method may be called from any thread (one writer at a time).
public final class UnboundServer: Sendable {
    /// One record; TTL in seconds (0 is what Swarm's and Consul's DNS usually give).
    public enum Record: Sendable, Equatable {
        case a(String, String, ttl: Int = 0)
        case aaaa(String, String, ttl: Int = 0)
        case srv(String, port: UInt16, target: String, ttl: Int = 0, priority: Int = 1, weight: Int = 1)

        var owner: String {
            switch self {
            case .a(let name, _, _), .aaaa(let name, _, _), .srv(let name, _, _, _, _, _): name
            }
        }

        var localData: String {
            switch self {
            case .a(let name, let address, let ttl): "local-data: \"\(name). \(ttl) IN A \(address)\""
            case .aaaa(let name, let address, let ttl): "local-data: \"\(name). \(ttl) IN AAAA \(address)\""
            case .srv(let name, let port, let target, let ttl, let priority, let weight):
                "local-data: \"\(name). \(ttl) IN SRV \(priority) \(weight) \(port) \(target).\""
            }
        }
    }

    public let port: UInt16
    public let directory: TempDir
    private let process: ProcessRunner
    /// The zones unbound answers; fixed at start (records outside them are refused).
    public let zones: [String]

    static let binary = "/usr/sbin/unbound"

    /// Starts unbound with `records`; `zones` (default: each record's last label) are the
    /// zones it answers. `port` reuses a port (a server started again after `kill`).
    public init(records: [Record], zones: [String]? = nil, port: UInt16? = nil, deadline: Deadline = .seconds(10)) throws {
        guard FileManager.default.isExecutableFile(atPath: Self.binary) else {
            throw TestSupportError("unbound is not installed at \(Self.binary) (scripts/install-deps installs unbound)")
        }
        directory = try TempDir(prefix: "switchyard-unbound")
        self.port = try port ?? freePort()
        self.zones = zones ?? Array(Set(records.map { String($0.owner.split(separator: ".").last ?? "") })).sorted()
        try Self.writeRecords(records, to: directory)
        var config = """
            server:
              interface: 127.0.0.1@\(self.port)
              port: \(self.port)
              do-ip6: no
              do-daemonize: no
              username: ""
              chroot: ""
              directory: "\(directory.path)"
              pidfile: ""
              use-syslog: no
              logfile: ""
              verbosity: 1
              module-config: "iterator"
              access-control: 127.0.0.0/8 allow
              cache-max-ttl: 0
              cache-max-negative-ttl: 0
              local-zone: "." refuse

            """
        for zone in self.zones { config += "  local-zone: \"\(zone).\" static\n" }
        config += "  include: \"\(directory.file("records.conf"))\"\n"
        let path = try directory.write("unbound.conf", config)
        process = try ProcessRunner(Self.binary, arguments: ["-d", "-c", path])
        let (process, port) = (process, self.port)
        try waitUntil("unbound listening on 127.0.0.1:\(port)", deadline: deadline, poll: .milliseconds(20)) {
            guard process.isRunning else { throw TestSupportError("unbound exited: \(process.outputSummary)") }
            return isListening(port: port)
        }
    }

    deinit {
        process.stop()
    }

    /// Replaces every record and makes unbound re-read them (SIGHUP).
    public func set(_ records: [Record]) throws {
        try Self.writeRecords(records, to: directory)
        process.terminate(signal: SIGHUP)
    }

    /// Stops the server (a test of an unreachable resolver); `deinit` is then a no-op.
    public func kill() {
        process.terminate(signal: SIGKILL)
        _ = try? process.waitForExit(deadline: .seconds(5))
    }

    public var pid: pid_t { process.pid }

    private static func writeRecords(_ records: [Record], to directory: TempDir) throws {
        try directory.write("records.conf", records.map(\.localData).joined(separator: "\n") + "\n")
    }
}
