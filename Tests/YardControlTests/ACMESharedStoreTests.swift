import Foundation
import Testing
import YardACME
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

    @Test func aKeptLeaseOutlivesItsTimeToLiveAndEndsWhenReleased() throws {
        let directory = try TempDir(prefix: "switchyard-acme-keeper")
        let store = try ACMESharedStores.make(StateStoreConfig(kind: .file(path: directory.file("state.json"))))
        #expect(try store.takeLease("k.example", holder: "r1", ttlSeconds: 1) == nil)
        let keeper = ACMELeaseKeeper(store: store, name: "k.example", holder: "r1", ttlSeconds: 1)
        let until = ContinuousClock.now.advanced(by: .milliseconds(2500))
        while ContinuousClock.now < until {
            #expect(try store.takeLease("k.example", holder: "r2", ttlSeconds: 1) == "r1", "taken while its holder renews it")
            Thread.sleep(forTimeInterval: 0.1)
        }
        keeper.stop()
        #expect(keeper.lostTo == nil)
        store.releaseLease("k.example", holder: "r1")
        #expect(try store.takeLease("k.example", holder: "r2", ttlSeconds: 1) == nil)
    }

    @Test func theFleetsAccountKeyIsCreatedOnceAndLoadedByTheOthers() throws {
        let directory = try TempDir(prefix: "switchyard-acme-account")
        let store = try ACMESharedStores.make(StateStoreConfig(kind: .file(path: directory.file("state.json"))))
        let seal = try ACMESealKey(text: String(repeating: "ab", count: 32))
        let first = try store.sharedAccountKey(seal: seal) { try ACMEPrivateKey.generateP256() }
        let second = try store.sharedAccountKey(seal: seal) { try ACMEPrivateKey.generateP256() }
        #expect(first.created && !second.created)
        #expect(try first.key.pem() == second.key.pem())
        let stored = try #require(try store.get("account-key"))
        #expect(!String(decoding: stored.value, as: UTF8.self).contains("PRIVATE KEY"), "sealed in the store")
        let other = try ACMESealKey(text: String(repeating: "cd", count: 32))
        #expect(throws: (any Error).self, "another store key cannot open it") {
            _ = try store.sharedAccountKey(seal: other) { try ACMEPrivateKey.generateP256() }
        }
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
