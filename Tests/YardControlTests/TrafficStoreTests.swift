import Dispatch
import Foundation
import Synchronization
import Testing
@testable import YardControl
import YardModel
import YardTestSupport

/// The state stores' compare-and-set contract, the same for every store: a write against
/// the stored revision applies, a stale one reports what is stored; of N concurrent
/// writers from the same revision exactly one wins.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct TrafficStoreContract {
    func first(_ store: TrafficStore) throws {
        let state = try TrafficState(activeTrack: "blue").applying(.flip(to: "green"), tracks: ["blue", "green"], who: "t", why: "", timeUnix: 1)
        #expect(try store.compareAndSwap(service: "shop", state: state) == .applied)
        #expect(try store.load().states["shop"] == state)
        // The same revision again is stale now.
        guard case .conflict(let current) = try store.compareAndSwap(service: "shop", state: state) else {
            Issue.record("a second write of revision 1 must conflict"); return
        }
        #expect(current == state)
        // Concurrent writers of revision 2: one wins.
        let wins = Atomic<Int>(0)
        let group = DispatchGroup()
        for i in 0..<8 {
            DispatchQueue.global().async(group: group) {
                var next = state
                next.revision = 2
                next.history.append(TrafficChange(revision: 2, timeUnix: 2, who: "writer-\(i)", why: "", action: "race"))
                if (try? store.compareAndSwap(service: "shop", state: next)) == .applied { wins.add(1, ordering: .relaxed) }
            }
        }
        group.wait()
        #expect(wins.load(ordering: .relaxed) == 1)
        #expect(try store.load().states["shop"]?.revision == 2)
    }

    func replicas(_ store: TrafficStore) throws {
        let report = ReplicaReport(id: "r1", admin: "http://127.0.0.1:1", pid: 1, applied: ["shop": 2], tableVersion: 3,
                                   storeReachable: true, storeError: nil, reportedUnix: Date().timeIntervalSince1970, startedUnix: 0)
        try store.report(report, ttl: .seconds(5))
        #expect(try store.replicas().map(\.id) == ["r1"])
        store.withdraw(replica: "r1")
        #expect(try store.replicas().isEmpty)
    }

    /// A write by someone else wakes `waitForChange`.
    func noticesAnotherWriter(_ store: TrafficStore) throws {
        let cursor = try store.load().cursor
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(200)) {
            _ = try? store.compareAndSwap(service: "other", state: TrafficState(activeTrack: "a", revision: 1))
        }
        #expect(try store.waitForChange(after: cursor, timeout: .seconds(5)))
    }

    @Test func fileStore() throws {
        let dir = try TempDir()
        let store = FileTrafficStore(path: dir.file("state.json"))
        #expect(try store.load().states.isEmpty)
        try first(store)
        try replicas(store)
        // A hand-broken file is an error naming it, not an empty state.
        _ = try dir.write("state.json", "{not json")
        #expect(throws: StoreError.self) { try store.load() }
    }

    @Test func fileStoreNoticesAnotherWriter() throws {
        let dir = try TempDir()
        let store = FileTrafficStore(path: dir.file("state.json"))
        let cursor = try store.load().cursor
        #expect(try store.waitForChange(after: cursor, timeout: .milliseconds(200)) == false)
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(100)) {
            _ = try? FileTrafficStore(path: dir.file("state.json")).compareAndSwap(service: "x", state: TrafficState(activeTrack: "a", revision: 1))
        }
        #expect(try store.waitForChange(after: cursor, timeout: .seconds(5)))
    }

    @Test func etcdStore() throws {
        let cluster = try EtcdCluster(size: 1)
        let store = try EtcdTrafficStore(endpoints: cluster.endpoints, prefix: "/test/")
        try first(store)
        try replicas(store)
        try noticesAnotherWriter(store)
    }

    /// Consul KV through Tests/Fixtures/consul_emulator.py (no Consul agent runs here; the
    /// emulator follows Consul's HTTP API docs: ?cas, ?recurse, blocking queries).
    @Test func consulStore() throws {
        let emulator = try EmulatorProcess(script: "consul_emulator.py")
        let store = try ConsulTrafficStore(address: emulator.url, prefix: "switchyard/", token: nil)
        #expect(try store.load().states.isEmpty)
        try first(store)
        try replicas(store)
        try noticesAnotherWriter(store)
        // The agent goes away: a clear error, not an empty state.
        emulator.kill()
        #expect(throws: StoreError.self) { try store.load() }
    }

    /// The Consul store over TLS with a client certificate, its ACL token read from a
    /// file: the emulator (Tests/Fixtures/consul_emulator.py --tls-* --token) refuses a
    /// client without the certificate and a client without the token.
    @Test func consulStoreOverTLSWithATokenFile() throws {
        let certificates = try TestCertificates()
        let server = try certificates.issue(file: "consul-server", names: ["127.0.0.1"])
        let client = try certificates.issue(file: "consul-client", names: ["switchyard"], client: true)
        let emulator = try EmulatorProcess(script: "consul_emulator.py", arguments: [
            "--token", "acl-secret", "--tls-cert", server.certificate, "--tls-key", server.key, "--tls-client-ca", certificates.caFile,
        ])
        let tokenFile = try certificates.directory.write("consul.token", "acl-secret\n")
        let address = "https://127.0.0.1:\(emulator.port)"
        let access = StoreAccessConfig(caFile: certificates.caFile, certFile: client.certificate, keyFile: client.key, tokenFile: tokenFile)
        let store = try ConsulTrafficStore(address: address, prefix: "switchyard/", token: nil, access: access)
        try first(store)
        try noticesAnotherWriter(store)

        var noCertificate = access
        (noCertificate.certFile, noCertificate.keyFile) = (nil, nil)
        let refused = #expect(throws: StoreError.self) {
            try ConsulTrafficStore(address: address, prefix: "switchyard/", token: nil, access: noCertificate).load()
        }
        #expect(refused?.description.contains("the server refused the client certificate") == true, "\(refused?.description ?? "")")

        var noToken = access
        noToken.tokenFile = nil
        let denied = #expect(throws: StoreError.self) {
            try ConsulTrafficStore(address: address, prefix: "switchyard/", token: nil, access: noToken).load()
        }
        #expect(denied?.description.contains("ACL not found") == true, "\(denied?.description ?? "")")
    }

    @Test func etcdStoreThatCannotBeReachedSaysSo() throws {
        let store = try EtcdTrafficStore(endpoints: ["http://127.0.0.1:\(try freePort())"], prefix: "/x/")
        #expect(throws: StoreError.self) { try store.load() }
    }
}
