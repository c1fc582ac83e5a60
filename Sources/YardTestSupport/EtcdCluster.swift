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
        public var clientURL: String { "http://127.0.0.1:\(clientPort)" }
    }

    public let members: [Member]
    private let directory: TempDir
    private let processes: Mutex<[ProcessRunner?]>

    /// The client URLs of every member.
    public var endpoints: [String] { members.map(\.clientURL) }

    /// Starts `size` members and waits until each reports healthy.
    public init(size: Int = 1, deadline: Deadline = .seconds(20)) throws {
        guard FileManager.default.isExecutableFile(atPath: Self.binary) else {
            throw TestSupportError("etcd is not installed at \(Self.binary) (scripts/install-deps installs etcd-server)")
        }
        directory = try TempDir(prefix: "switchyard-etcd")
        var members: [Member] = []
        for index in 1...size {
            members.append(Member(name: "m\(index)", clientPort: try freePort(), peerPort: try freePort()))
        }
        self.members = members
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
        let runner = try ProcessRunner(Self.binary, arguments: [
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
                guard let reply = try? rawExchange(port: member.clientPort, "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout: .seconds(1)) else {
                    return false
                }
                return reply.text.contains("\"health\":\"true\"")
            }
        }
    }
}
