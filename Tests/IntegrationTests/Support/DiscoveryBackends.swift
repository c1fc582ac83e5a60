import Foundation
import YardTestSupport

// Real discovery backends for the integration tests, wrapping YardTestSupport's etcd and
// unbound fixtures (this is the only integration file that imports YardTestSupport, whose
// helper names would otherwise clash with this target's own).

/// A real etcd (one or three members) with key writes through its JSON gateway.
final class EtcdBackend {
    private let cluster: EtcdCluster

    init(members: Int = 1) throws {
        cluster = try EtcdCluster(size: members)
    }

    var endpoints: [String] { cluster.endpoints }

    /// Writes `value` at `key` through the first live member (PUT /v3/kv/put).
    func put(_ key: String, _ value: String) throws {
        let body = "{\"key\":\"\(Data(key.utf8).base64EncodedString())\",\"value\":\"\(Data(value.utf8).base64EncodedString())\"}"
        var lastError = "no member"
        for member in cluster.members.indices where cluster.isRunning(member) {
            let request = "POST /v3/kv/put HTTP/1.1\r\nHost: etcd\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
            do {
                let reply = try YardTestSupport.rawExchange(port: cluster.members[member].clientPort, request, timeout: .seconds(5))
                if reply.responses.first?.status == 200, reply.responses.first?.text.contains("\"header\"") == true { return }
                lastError = reply.text
            } catch {
                lastError = "\(error)"
            }
        }
        throw HarnessError("etcd put \(key) failed: \(lastError)")
    }

    /// An instance value in the layout docs/discovery.md describes.
    static func instance(port: UInt16, track: String? = nil) -> String {
        "{\"address\": \"127.0.0.1\", \"port\": \(port)\(track.map { ", \"track\": \"\($0)\"" } ?? "")}"
    }

    func kill(_ member: Int) { cluster.kill(member) }
    func restart(_ member: Int) throws { try cluster.restart(member) }
}

/// A real unbound answering SRV records `_NAME._tcp.service.test` → `NAME-i.node.test`
/// (127.0.0.1) at each given port.
final class DNSBackend {
    private let server: UnboundServer

    init(service: String, ports: [UInt16]) throws {
        server = try UnboundServer(records: Self.records(service, ports), zones: ["test"])
    }

    var port: UInt16 { server.port }

    /// Rewrites the records and sends unbound SIGHUP.
    func set(service: String, ports: [UInt16]) throws {
        try server.set(Self.records(service, ports))
    }

    private static func records(_ service: String, _ ports: [UInt16]) -> [UnboundServer.Record] {
        ports.enumerated().flatMap { index, port -> [UnboundServer.Record] in
            [.srv("_\(service)._tcp.service.test", port: port, target: "\(service)-\(index).node.test"),
             .a("\(service)-\(index).node.test", "127.0.0.1")]
        }
    }
}
