import Foundation
import Testing
@testable import YardControl
import YardModel
import YardTestSupport

/// The fleet's ACME records on each state store: versioned writes, and the lease built on
/// them (one holder at a time, taken over when it expires, released by its holder only).
@Suite(.serialized, .timeLimit(.minutes(2)))
struct ACMESharedStoreTests {
    func exercise(_ store: ACMESharedStore) throws {
        #expect(try store.get("certificates/a.example") == nil)
        #expect(try store.put("certificates/a.example", [1, 2, 3], ifVersion: 0))
        let first = try #require(try store.get("certificates/a.example"))
        #expect(first.value == [1, 2, 3])
        #expect(try !store.put("certificates/a.example", [9], ifVersion: 0), "a create over an existing record")
        #expect(try !store.put("certificates/a.example", [9], ifVersion: first.version + 100), "a stale version")
        #expect(try store.put("certificates/a.example", [4], ifVersion: first.version))
        try store.overwrite("certificates/a.example", [5])
        #expect(try store.get("certificates/a.example")?.value == [5])

        let now = Date().timeIntervalSince1970
        #expect(try store.takeLease("a.example", holder: "r1", ttlSeconds: 30, now: now) == nil)
        #expect(try store.takeLease("a.example", holder: "r2", ttlSeconds: 30, now: now) == "r1")
        #expect(try store.takeLease("a.example", holder: "r1", ttlSeconds: 30, now: now) == nil, "the holder renews")
        #expect(store.leaseHolder("a.example", now: now) == "r1")
        store.releaseLease("a.example", holder: "r2")
        #expect(store.leaseHolder("a.example", now: now) == "r1", "only the holder releases")
        #expect(try store.takeLease("a.example", holder: "r2", ttlSeconds: 30, now: now + 31) == nil, "an expired lease is taken over")
        store.releaseLease("a.example", holder: "r2")
        #expect(store.leaseHolder("a.example", now: now) == nil)
        #expect(try store.takeLease("a.example", holder: "r3", ttlSeconds: 30, now: now) == nil)
    }

    @Test func fileStore() throws {
        let directory = try TempDir(prefix: "switchyard-acme-store")
        let store = try ACMESharedStores.make(StateStoreConfig(kind: .file(path: directory.file("state.json"))))
        try exercise(store)
        var info = stat()
        #expect(stat(directory.file("state.json.acme/certificates_a.example"), &info) == 0 && info.st_mode & 0o077 == 0)
    }

    @Test func etcdStore() throws {
        let etcd = try EtcdCluster(size: 1)
        try exercise(try ACMESharedStores.make(StateStoreConfig(kind: .etcd(endpoints: etcd.endpoints, prefix: "/sy-acme-test/"))))
    }

    @Test func consulStore() throws {
        let emulator = try EmulatorProcess(script: "consul_emulator.py")
        try exercise(try ACMESharedStores.make(StateStoreConfig(kind: .consul(address: emulator.url, prefix: "switchyard/", token: nil))))
    }
}
