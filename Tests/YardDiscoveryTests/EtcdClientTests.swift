import Testing
@testable import YardDiscovery
import YardTestSupport

/// The etcd client against a real etcd from Debian on loopback ports.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct EtcdClientTests {
    @Test func putGetAndListUnderAPrefix() throws {
        let cluster = try EtcdCluster(size: 1)
        let client = try EtcdClient(endpoints: cluster.endpoints)
        let revision = try client.put("/yard/a", value: Array("one".utf8))
        try client.put("/yard/b", value: Array("two".utf8))
        try client.put("/yardx", value: Array("outside".utf8))
        let got = try client.get("/yard/a")
        #expect(got.kv?.text == "one")
        #expect(got.kv?.modRevision == revision)
        let listed = try client.list(prefix: "/yard/")
        #expect(listed.kvs.map(\.key) == ["/yard/a", "/yard/b"])
        #expect(try client.get("/missing").kv == nil)
        #expect(try client.delete("/yard/", prefix: true) == 2)
        #expect(try client.list(prefix: "/yard/").kvs.isEmpty)
    }

    @Test func compareAndSetAppliesOnTheExpectedRevisionAndReportsTheCurrentValueOtherwise() throws {
        let cluster = try EtcdCluster(size: 1)
        let client = try EtcdClient(endpoints: cluster.endpoints)
        guard case .applied(let first) = try client.compareAndSet("/state", value: Array("v1".utf8), expectedModRevision: 0) else {
            Issue.record("creating an absent key must apply"); return
        }
        // Creating again (expecting absence) conflicts and shows what is there.
        guard case .conflict(let current) = try client.compareAndSet("/state", value: Array("v2".utf8), expectedModRevision: 0) else {
            Issue.record("a second create must conflict"); return
        }
        #expect(current?.text == "v1")
        #expect(current?.modRevision == first)
        guard case .applied = try client.compareAndSet("/state", value: Array("v2".utf8), expectedModRevision: first) else {
            Issue.record("the right revision must apply"); return
        }
        guard case .conflict(let stale) = try client.compareAndSet("/state", value: Array("v3".utf8), expectedModRevision: first) else {
            Issue.record("a stale revision must conflict"); return
        }
        #expect(stale?.text == "v2")
    }

    @Test func watchDeliversPutsAndDeletesFromTheStartRevision() throws {
        let cluster = try EtcdCluster(size: 1)
        let client = try EtcdClient(endpoints: cluster.endpoints)
        let start = try client.put("/w/one", value: Array("1".utf8))
        let watch = try client.watch("/w/", prefix: true, startRevision: start)
        defer { watch.cancel() }
        try client.put("/w/two", value: Array("2".utf8))
        try client.delete("/w/one")
        var events: [EtcdEvent] = []
        while events.count < 3, let message = try watch.next(timeout: .seconds(5)) {
            events += message.events
        }
        #expect(events.map(\.kind) == [.put, .put, .delete])
        #expect(events.map(\.kv.key) == ["/w/one", "/w/two", "/w/one"])
    }

    @Test func leasedKeysDisappearWhenTheLeaseIsRevoked() throws {
        let cluster = try EtcdCluster(size: 1)
        let client = try EtcdClient(endpoints: cluster.endpoints)
        let lease = try client.grantLease(ttlSeconds: 5)
        #expect(lease.ttl == 5)
        try client.put("/replicas/r1", value: Array("{}".utf8), lease: lease.id)
        #expect(try client.keepAlive(lease: lease.id) > 0)
        try client.revoke(lease: lease.id)
        #expect(try client.get("/replicas/r1").kv == nil)
    }

    @Test func failsOverToALiveMemberWhenOneIsKilled() throws {
        let cluster = try EtcdCluster(size: 3)
        let client = try EtcdClient(endpoints: cluster.endpoints)
        try client.put("/f", value: Array("before".utf8))
        cluster.kill(0)
        // The first endpoint is dead: the client moves on (a leader election may take ~2 s).
        try waitUntil("a write through a surviving member", deadline: .seconds(15), poll: .milliseconds(200)) {
            (try? client.put("/f", value: Array("after".utf8))) != nil
        }
        #expect(try client.get("/f").kv?.text == "after")
        try cluster.restart(0)
    }

    @Test func anUnreachableClusterIsReportedAsUnavailable() throws {
        let port = try freePort()
        let client = try EtcdClient(endpoints: ["http://127.0.0.1:\(port)"], timeout: .seconds(1))
        #expect(throws: EtcdError.self) { try client.get("/x") }
        do {
            _ = try client.get("/x")
        } catch {
            #expect(error.kind == .unavailable)
            #expect(error.description.contains("127.0.0.1:\(port)"))
        }
    }
}
