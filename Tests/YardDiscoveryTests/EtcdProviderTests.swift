import Foundation
import Testing
@testable import YardDiscovery
import YardIO
import YardModel
import YardTestSupport
import YardControlHTTP

// MARK: - Helpers

private func instance(_ port: Int, track: String? = nil) -> [UInt8] {
    Array("{\"address\": \"127.0.0.1\", \"port\": \(port)\(track.map { ", \"track\": \"\($0)\"" } ?? "")}".utf8)
}

private func provider(_ cluster: EtcdCluster, _ recorder: ProviderRecorder, prefix: String = "/switchyard/") -> EtcdProvider {
    EtcdProvider(name: "etcd", config: EtcdSourceConfig(endpoints: cluster.endpoints, prefix: prefix, requestTimeoutMs: 2_000),
                 callbacks: recorder.callbacks)
}

// MARK: - Key layout (no server)

@Suite struct EtcdCatalogKeyLayout {
    @Test func instancesAndSettingsUnderThePrefixBecomeServices() {
        var catalog = EtcdCatalog(prefix: "/switchyard/")
        let built = catalog.build([
            "/switchyard/services/shop/instances/b": instance(9002, track: "green"),
            "/switchyard/services/shop/instances/a": instance(9001, track: "blue"),
            "/switchyard/services/shop/settings": Array("{\"active\": \"blue\", \"balancer\": \"least_conn\"}".utf8),
            "/switchyard/services/api/instances/x": instance(7000),
            "/switchyard/state/ignored": Array("x".utf8),
            "/other/services/zzz/instances/1": instance(1),
        ])
        #expect(built.problems.isEmpty)
        #expect(built.catalog.services.map(\.name) == ["api", "shop"])
        let shop = built.catalog.services[1]
        #expect(shop.instances.map(\.port) == [9001, 9002])
        #expect(shop.instances.map(\.id) == ["a", "b"])
        #expect(shop.activeTrack == "blue")
        #expect(shop.balancer == .leastConnections)
    }

    @Test func aBadKeySpoilsOnlyItsServiceWhichKeepsItsLastGoodDefinition() {
        var catalog = EtcdCatalog(prefix: "/s/")
        _ = catalog.build(["/s/services/shop/instances/a": instance(9001), "/s/services/api/instances/a": instance(7000)])
        let built = catalog.build([
            "/s/services/shop/instances/a": Array("{not json".utf8),
            "/s/services/api/instances/a": instance(7001),
            "/s/services/new/instances/a": Array("{\"address\": \"127.0.0.1\", \"port\": 99999}".utf8),
        ])
        #expect(built.catalog.services.map(\.name) == ["api", "shop"])
        #expect(built.catalog.services[0].instances.map(\.port) == [7001])
        #expect(built.catalog.services[1].instances.map(\.port) == [9001])
        #expect(built.problems.count == 2)
        #expect(built.problems.contains { $0.hasPrefix("etcd key /s/services/new/instances/a: port: 99999 is out of range") })
        #expect(built.problems.contains { $0.hasPrefix("etcd key /s/services/shop/instances/a: not a JSON object") })
    }
}

// MARK: - Against a real etcd

@Suite(.serialized, .timeLimit(.minutes(3)))
struct EtcdProviderAgainstEtcd {
    @Test func listsThenWatchesAndAKeyChangeArrivesWithinOneSecond() throws {
        let cluster = try EtcdCluster(size: 1)
        let client = try EtcdClient(endpoints: cluster.endpoints)
        try client.put("/switchyard/services/shop/instances/a", value: instance(9001))
        let recorder = ProviderRecorder()
        let etcd = provider(cluster, recorder)
        etcd.start()
        defer { etcd.stop() }
        try waitUntil("the listed snapshot", deadline: .seconds(5)) { endpoints(recorder.last, "shop") == ["127.0.0.1:9001"] }
        try waitUntil("the watch", deadline: .seconds(5)) { etcd.counts.watches == 1 }
        var worst: Int64 = 0
        for port in 9002...9006 {
            let before = monotonicMilliseconds()
            try client.put("/switchyard/services/shop/instances/p\(port)", value: instance(port))
            try waitUntil("instance \(port)", deadline: .seconds(2)) { endpoints(recorder.last, "shop").contains("127.0.0.1:\(port)") }
            worst = max(worst, recorder.arrival { endpoints($0, "shop").contains("127.0.0.1:\(port)") }! - before)
        }
        try client.delete("/switchyard/services/shop/instances/a")
        try waitUntil("the delete", deadline: .seconds(2)) { !endpoints(recorder.last, "shop").contains("127.0.0.1:9001") }
        #expect(worst < 1_000)
        print("etcd: put to snapshot, worst of 5: \(worst) ms")
        #expect(etcd.counts.lists == 1)
    }

    @Test func aKilledEtcdLeavesTheLastSnapshotAndARestartConverges() throws {
        let cluster = try EtcdCluster(size: 1)
        let client = try EtcdClient(endpoints: cluster.endpoints)
        try client.put("/switchyard/services/shop/instances/a", value: instance(9001))
        let recorder = ProviderRecorder()
        let etcd = provider(cluster, recorder)
        etcd.start()
        defer { etcd.stop() }
        try waitUntil("the listed snapshot", deadline: .seconds(5)) { recorder.last != nil }
        cluster.kill(0)
        try waitUntil("a failure report", deadline: .seconds(10)) { !recorder.failures.isEmpty }
        let count = recorder.snapshots.count
        #expect(endpoints(recorder.last, "shop") == ["127.0.0.1:9001"])
        try cluster.restart(0)
        try client.put("/switchyard/services/shop/instances/b", value: instance(9002))
        try waitUntil("convergence", deadline: .seconds(15)) { endpoints(recorder.last, "shop") == ["127.0.0.1:9001", "127.0.0.1:9002"] }
        #expect(recorder.snapshots.count > count)
        #expect(recorder.conditions.last == .healthy || recorder.conditions.last.map { $0 != .healthy } == true)
    }

    @Test func losingAMemberOfThreeKeepsTheWatchGoingWithoutAGap() throws {
        let cluster = try EtcdCluster(size: 3)
        let client = try EtcdClient(endpoints: Array(cluster.endpoints.reversed()))
        try client.put("/switchyard/services/shop/instances/a", value: instance(9001))
        let recorder = ProviderRecorder()
        let etcd = provider(cluster, recorder)  // watches member 1 first
        etcd.start()
        defer { etcd.stop() }
        try waitUntil("the watch", deadline: .seconds(5)) { etcd.counts.watches == 1 && recorder.last != nil }
        cluster.kill(0)
        try waitUntil("a write through a survivor", deadline: .seconds(15), poll: .milliseconds(100)) {
            (try? client.put("/switchyard/services/shop/instances/b", value: instance(9002))) != nil
        }
        try waitUntil("the change through another member", deadline: .seconds(10)) {
            endpoints(recorder.last, "shop") == ["127.0.0.1:9001", "127.0.0.1:9002"]
        }
        // Resumed from the last revision on a survivor: no second list.
        #expect(etcd.counts.lists == 1)
        #expect(etcd.counts.watches >= 2)
    }

    @Test func aCompactedRevisionMakesItListAgain() throws {
        let cluster = try EtcdCluster(size: 3)
        let survivors = try EtcdClient(endpoints: Array(cluster.endpoints.dropFirst()))
        try survivors.put("/switchyard/services/shop/instances/a", value: instance(9001))
        let recorder = ProviderRecorder()
        let etcd = provider(cluster, recorder)  // watches member 1
        etcd.start()
        defer { etcd.stop() }
        try waitUntil("the watch", deadline: .seconds(5)) { etcd.counts.watches == 1 && recorder.last != nil }
        // Freeze the watched member: its stream stays open and silent while the others
        // move on and compact the history the watch would need to resume.
        cluster.signal(0, SIGSTOP)
        try waitUntil("writes through the survivors", deadline: .seconds(15), poll: .milliseconds(100)) {
            (try? survivors.put("/switchyard/services/shop/instances/b", value: instance(9002))) != nil
        }
        let revision = try survivors.put("/switchyard/other", value: [1])
        let compacted = try ControlHTTPClient(target: try ControlHTTPTarget(url: cluster.endpoints[1]))
            .send("POST", "/v3/kv/compaction", headers: [("Content-Type", "application/json")], body: Array("{\"revision\":\"\(revision)\"}".utf8))
        #expect(compacted.status == 200)
        cluster.kill(0)
        try waitUntil("convergence after a re-list", deadline: .seconds(15)) {
            endpoints(recorder.last, "shop") == ["127.0.0.1:9001", "127.0.0.1:9002"]
        }
        #expect(etcd.counts.lists == 2)
    }

    @Test func anEndpointAnsweringGarbageIsReportedNamingItAndNothingIsDelivered() throws {
        // A plain HTTP server that answers every request with a body that is not JSON.
        let garbage = try GarbageHTTPServer()
        let recorder = ProviderRecorder()
        let etcd = EtcdProvider(
            name: "etcd", config: EtcdSourceConfig(endpoints: ["http://127.0.0.1:\(garbage.port)"], requestTimeoutMs: 1_000),
            callbacks: recorder.callbacks)
        etcd.start()
        defer { etcd.stop() }
        try waitUntil("a failure report", deadline: .seconds(5)) { !recorder.failures.isEmpty }
        #expect(recorder.snapshots.isEmpty)
        #expect(recorder.failures[0].contains("127.0.0.1:\(garbage.port)"))
        #expect(recorder.failures[0].contains("not JSON"))
    }
}

// MARK: - A server that answers garbage

/// Accepts connections on 127.0.0.1 and answers each request `200` with `<html>oops`.
/// Threading: one accept thread; `deinit` closes the listener.
final class GarbageHTTPServer: Sendable {
    let port: UInt16
    private let fd: Int32

    init() throws {
        let address = SocketAddress(host: "127.0.0.1", port: 0)!
        fd = try Socket.listen(on: address, reusePort: false)
        port = try Socket.localAddress(fd).port
        let listener = fd
        _ = fcntl(listener, F_SETFL, fcntl(listener, F_GETFL) & ~O_NONBLOCK)
        let thread = Thread {
            while true {
                let client = accept(listener, nil, nil)
                if client < 0 { return }
                var buffer = [UInt8](repeating: 0, count: 4_096)
                _ = read(client, &buffer, buffer.count)
                let reply = "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 10\r\nConnection: close\r\n\r\n<html>oops"
                _ = reply.withCString { write(client, $0, strlen($0)) }
                close(client)
            }
        }
        thread.start()
    }

    deinit {
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
    }
}
