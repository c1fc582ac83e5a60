#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Synchronization

/// A real etcd cluster (Debian's `etcd-server`) on free loopback ports, for tests.
///
/// Each member keeps its data dir and ports across `kill`/`restart`, so a restarted member
/// rejoins the same cluster. Every process is stopped by its PID when the cluster goes
/// away. Threading: every method may be called from any thread.
public final class EtcdCluster: Sendable {
    public struct Member: Sendable {
        public let name: String
        public let clientPort: UInt16
        public let peerPort: UInt16
        public let secure: Bool
        public var clientURL: String { "\(secure ? "https" : "http")://127.0.0.1:\(clientPort)" }
    }

    /// Client-facing TLS: etcd serves `https://` with `server` and, with `client`, requires
    /// a client certificate signed by `caFile` (`--client-cert-auth`); `client` is also what
    /// the health check presents.
    public struct TLS: Sendable {
        public var caFile: String
        public var server: TestCertificates.Pair
        public var client: TestCertificates.Pair?

        public init(caFile: String, server: TestCertificates.Pair, client: TestCertificates.Pair?) {
            self.caFile = caFile
            self.server = server
            self.client = client
        }
    }

    public let members: [Member]
    public let tls: TLS?
    private let directory: TempDir
    private let processes: Mutex<[ProcessRunner?]>

    /// The client URLs of every member.
    public var endpoints: [String] { members.map(\.clientURL) }

    /// Starts `size` members and waits until each reports healthy.
    public init(size: Int = 1, tls: TLS? = nil, deadline: Deadline = .seconds(20)) throws {
        guard FileManager.default.isExecutableFile(atPath: Self.binary) else {
            throw TestSupportError("etcd is not installed at \(Self.binary) (scripts/install-deps installs etcd-server)")
        }
        directory = try TempDir(prefix: "switchyard-etcd")
        var members: [Member] = []
        for index in 1...size {
            members.append(Member(name: "m\(index)", clientPort: try freePort(), peerPort: try freePort(), secure: tls != nil))
        }
        self.members = members
        self.tls = tls
        processes = Mutex(Array(repeating: nil, count: size))
        for index in members.indices { try start(index) }
        try waitHealthy(deadline: deadline)
    }

    deinit {
        processes.withLock { list in list.forEach { $0?.stop() } }
    }

    static let binary = "/usr/bin/etcd"

    /// SIGKILLs member `index` (0-based).
    public func kill(_ index: Int) {
        let process = processes.withLock { list -> ProcessRunner? in
            defer { list[index] = nil }
            return list[index]
        }
        process?.terminate(signal: SIGKILL)
        _ = try? process?.waitForExit(deadline: .seconds(5))
        process?.stop()
    }

    /// Sends `signal` to member `index` (SIGSTOP freezes it: its connections stay open
    /// and silent, as with a partition; SIGCONT thaws it).
    public func signal(_ index: Int, _ signal: Int32) {
        processes.withLock { $0[index] }?.terminate(signal: signal)
    }

    /// Starts member `index` again with its data dir and waits until the cluster is healthy.
    public func restart(_ index: Int, deadline: Deadline = .seconds(20)) throws {
        try start(index)
        try waitHealthy(deadline: deadline, only: [index])
    }

    public func isRunning(_ index: Int) -> Bool {
        processes.withLock { $0[index]?.isRunning ?? false }
    }

    private func start(_ index: Int) throws {
        let member = members[index]
        let cluster = members.map { "\($0.name)=http://127.0.0.1:\($0.peerPort)" }.joined(separator: ",")
        let dataDir = directory.file("\(member.name).data")
        let isNew = !FileManager.default.fileExists(atPath: dataDir)
        var security: [String] = []
        if let tls {
            security = ["--cert-file", tls.server.certificate, "--key-file", tls.server.key, "--trusted-ca-file", tls.caFile]
            if tls.client != nil { security.append("--client-cert-auth") }
        }
        let runner = try ProcessRunner(Self.binary, arguments: security + [
            "--name", member.name, "--data-dir", dataDir,
            "--listen-client-urls", member.clientURL, "--advertise-client-urls", member.clientURL,
            "--listen-peer-urls", "http://127.0.0.1:\(member.peerPort)",
            "--initial-advertise-peer-urls", "http://127.0.0.1:\(member.peerPort)",
            "--initial-cluster", cluster, "--initial-cluster-state", isNew ? "new" : "existing",
            "--initial-cluster-token", "switchyard-test",
            "--heartbeat-interval", "100", "--election-timeout", "1000",
            "--log-outputs", "stderr",
        ])
        processes.withLock { $0[index] = runner }
    }

    private func waitHealthy(deadline: Deadline, only: [Int]? = nil) throws {
        for index in only ?? Array(members.indices) {
            let member = members[index]
            try waitUntil("etcd member \(member.name) healthy on \(member.clientURL)", deadline: deadline, poll: .milliseconds(50)) {
                if let process = processes.withLock({ $0[index] }), !process.isRunning {
                    throw TestSupportError("etcd member \(member.name) exited: \(process.outputSummary)")
                }
                if tls != nil { return try etcdctl(["endpoint", "health"], endpoint: index).status == .exited(0) }
                guard let reply = try? rawExchange(port: member.clientPort, "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout: .seconds(1)) else {
                    return false
                }
                return reply.text.contains("\"health\":\"true\"")
            }
        }
    }

    /// Runs `etcdctl` against member `endpoint` (with the cluster's CA and client
    /// certificate when it serves TLS); `user` is `name:password` once auth is enabled.
    public func etcdctl(_ arguments: [String], endpoint: Int = 0, user: String? = nil) throws -> (status: ProcessRunner.ExitStatus, output: String) {
        var options = ["--endpoints", members[endpoint].clientURL, "--dial-timeout", "2s", "--command-timeout", "3s"]
        if let tls {
            options += ["--cacert", tls.caFile]
            if let client = tls.client { options += ["--cert", client.certificate, "--key", client.key] }
        }
        if let user { options += ["--user", user] }
        let runner = try ProcessRunner("/usr/bin/etcdctl", arguments: options + arguments, environment: ["ETCDCTL_API": "3"])
        defer { runner.stop() }
        let status = try runner.waitForExit(deadline: .seconds(10))
        return (status, runner.stdout + runner.stderr)
    }
}
