// The fleet's ACME records in the state store (the same file, etcd or Consul the traffic
// states live in, under their own keys): a lease per name, so one replica orders at a
// time, the issued certificate with its key sealed (ACMESealKey), and the HTTP-01 key
// authorizations, so whichever replica the CA reaches answers.

#if canImport(Glibc)
import Glibc
#endif
import Foundation
import YardACME
import YardControlHTTP
import YardDiscovery
import YardModel

/// A versioned key-value primitive every state store offers: read a key with its
/// version, write it only if the version is unchanged.
///
/// Threading: implementations are safe from any thread; every call blocks (control plane).
protocol ACMESharedStore: Sendable {
    var description: String { get }
    /// The value and its version, nil when absent.
    func get(_ key: String) throws(StoreError) -> (value: [UInt8], version: Int64)?
    /// Writes if the stored version is still `version` (0: the key must be absent);
    /// false when another writer came first.
    func put(_ key: String, _ value: [UInt8], ifVersion version: Int64) throws(StoreError) -> Bool
}

enum ACMESharedStores {
    static func make(_ config: StateStoreConfig) throws(StoreError) -> ACMESharedStore {
        switch config.kind {
        case .file(let path): return FileACMEStore(folder: path + ".acme")
        case .etcd(let endpoints, let prefix): return try EtcdACMEStore(endpoints: endpoints, prefix: prefix, access: config.access)
        case .consul(let address, let prefix, let token): return try ConsulACMEStore(address: address, prefix: prefix, token: token, access: config.access)
        }
    }
}

// MARK: - Leases

/// Who orders a name now, until when. Replica clocks are assumed to agree within seconds.
struct ACMELease: Codable, Equatable {
    var holder: String
    var expiresUnix: Double
}

extension ACMESharedStore {
    /// Takes (or renews) the lease on `name` for `holder`: nil when taken, else the live
    /// holder. A lease whose holder died expires after `ttlSeconds` and is taken over.
    func takeLease(_ name: String, holder: String, ttlSeconds: Double, now: Double = Date().timeIntervalSince1970) throws(StoreError) -> String? {
        let key = "leases/\(name)"
        let stored = try get(key)
        if let stored, let lease = try? JSONDecoder().decode(ACMELease.self, from: Data(stored.value)),
           lease.holder != holder, lease.expiresUnix > now {
            return lease.holder
        }
        let lease = ACMELease(holder: holder, expiresUnix: now + ttlSeconds)
        guard try put(key, StoreCoding.encode(lease), ifVersion: stored?.version ?? 0) else {
            // Somebody wrote first: theirs, unless it was already released again.
            let winner = try get(key).flatMap { try? JSONDecoder().decode(ACMELease.self, from: Data($0.value)) }
            return winner?.holder ?? "another replica"
        }
        return nil
    }

    /// Ends `holder`'s lease on `name` now (nothing when another holds it).
    func releaseLease(_ name: String, holder: String) {
        let key = "leases/\(name)"
        guard let stored = try? get(key), let lease = try? JSONDecoder().decode(ACMELease.self, from: Data(stored.value)),
              lease.holder == holder else { return }
        _ = try? put(key, StoreCoding.encode(ACMELease(holder: holder, expiresUnix: 0)), ifVersion: stored.version)
    }

    /// The live holder of `name`'s lease, if any.
    func leaseHolder(_ name: String, now: Double = Date().timeIntervalSince1970) -> String? {
        guard let stored = try? get("leases/\(name)"), let lease = try? JSONDecoder().decode(ACMELease.self, from: Data(stored.value)),
              lease.expiresUnix > now else { return nil }
        return lease.holder
    }

    /// Writes `value` whatever is stored (the last writer wins), retrying a lost race.
    func overwrite(_ key: String, _ value: [UInt8]) throws(StoreError) {
        for _ in 0..<5 {
            if try put(key, value, ifVersion: try get(key)?.version ?? 0) { return }
        }
        throw StoreError("\(key): five concurrent writers in a row; try again")
    }
}

// MARK: - The fleet's account

extension ACMESharedStore {
    /// The record holding the account key, sealed (its name is the sealing's associated data).
    static var accountKeyRecord: String { "account-key" }

    /// The fleet's ACME account key: the one in the store, or, when there is none yet,
    /// `candidate()` (this replica's own key) stored by compare-and-set: whoever first needs
    /// one creates it, the others load it, so the whole fleet is one account at the CA.
    func sharedAccountKey(seal: ACMESealKey, candidate: () throws -> ACMEPrivateKey) throws -> (key: ACMEPrivateKey, created: Bool) {
        let record = Self.accountKeyRecord
        for _ in 0..<5 {
            if let stored = try get(record) {
                let pem = String(decoding: try seal.open(stored.value, name: record), as: UTF8.self)
                return (try ACMEPrivateKey(pem: pem), false)
            }
            let key = try candidate()
            if try put(record, try seal.seal(Array(try key.pem().utf8), name: record), ifVersion: 0) { return (key, true) }
        }
        throw StoreError("\(record): five replicas raced to create the account key; try again")
    }
}

// MARK: - File

/// Records as files in `STATE.acme/`, each `{"version": N, "value": base64}`; writes take
/// an flock on the folder's `lock` file (across threads and processes on one machine).
struct FileACMEStore: ACMESharedStore {
    let folder: String
    var description: String { "file \(folder)" }

    private struct Record: Codable {
        var version: Int64
        var value: Data
    }

    func get(_ key: String) throws(StoreError) -> (value: [UInt8], version: Int64)? {
        guard let data = FileManager.default.contents(atPath: path(key)) else { return nil }
        let record = try StoreCoding.decode(Record.self, Array(data), what: path(key))
        return (Array(record.value), record.version)
    }

    func put(_ key: String, _ value: [UInt8], ifVersion version: Int64) throws(StoreError) -> Bool {
        if mkdir(folder, 0o700) != 0 && errno != EEXIST {
            throw StoreError("cannot create \(folder): \(String(cString: strerror(errno)))")
        }
        let lockPath = folder + "/lock"
        let fd = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw StoreError("cannot open \(lockPath): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        while flock(fd, LOCK_EX) != 0 {
            guard errno == EINTR else { throw StoreError("cannot lock \(lockPath): \(String(cString: strerror(errno)))") }
        }
        defer { flock(fd, LOCK_UN) }
        guard (try get(key)?.version ?? 0) == version else { return false }
        try atomicWrite(path(key), StoreCoding.encode(Record(version: version + 1, value: Data(value))))
        _ = chmod(path(key), 0o600)
        return true
    }

    private func path(_ key: String) -> String {
        folder + "/" + String(key.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "." ? $0 : "_" })
    }
}

// MARK: - etcd

/// Records under `PREFIX/acme/`, written by a transaction on the key's mod revision.
struct EtcdACMEStore: ACMESharedStore {
    let client: EtcdClient
    let prefix: String

    init(endpoints: [String], prefix: String, access: StoreAccessConfig) throws(StoreError) {
        do {
            client = try EtcdClient(endpoints: endpoints, timeout: .seconds(3), access: access)
        } catch {
            throw StoreError(error.description)
        }
        self.prefix = (prefix.hasSuffix("/") ? prefix : prefix + "/") + "acme/"
    }

    var description: String { "etcd \(prefix)" }

    func get(_ key: String) throws(StoreError) -> (value: [UInt8], version: Int64)? {
        do {
            return try client.get(prefix + key).kv.map { ($0.value, $0.modRevision) }
        } catch {
            throw StoreError(error.description)
        }
    }

    func put(_ key: String, _ value: [UInt8], ifVersion version: Int64) throws(StoreError) -> Bool {
        do {
            if case .applied = try client.compareAndSet(prefix + key, value: value, expectedModRevision: version) { return true }
            return false
        } catch {
            throw StoreError(error.description)
        }
    }
}

// MARK: - Consul

/// Records under `PREFIX/acme/`, written with `?cas=ModifyIndex`.
struct ConsulACMEStore: ACMESharedStore {
    let client: ControlHTTPClient
    let prefix: String

    init(address: String, prefix: String, token: String?, access: StoreAccessConfig) throws(StoreError) {
        do {
            var headers: [(String, String)] = []
            if let token = try access.consulToken() ?? token { headers.append(("X-Consul-Token", token)) }
            client = ControlHTTPClient(target: try ControlHTTPTarget(url: address), timeout: .seconds(5), headers: headers, tls: try access.loadTLS())
        } catch {
            throw StoreError("consul: \(error.description)")
        }
        self.prefix = (prefix.hasSuffix("/") ? prefix : prefix + "/") + "acme/"
    }

    var description: String { "consul \(prefix)" }

    private struct Entry: Decodable {
        var Value: String?
        var ModifyIndex: Int64
    }

    func get(_ key: String) throws(StoreError) -> (value: [UInt8], version: Int64)? {
        let response = try send("GET", "/v1/kv/\(prefix)\(key)")
        if response.status == 404 { return nil }
        guard response.status == 200, let entry = (try? JSONDecoder().decode([Entry].self, from: Data(response.body)))?.first else {
            throw StoreError("consul: GET \(prefix)\(key) answered \(response.status): \(response.text.prefix(200))")
        }
        return (entry.Value.flatMap { Data(base64Encoded: $0) }.map(Array.init) ?? [], entry.ModifyIndex)
    }

    func put(_ key: String, _ value: [UInt8], ifVersion version: Int64) throws(StoreError) -> Bool {
        let response = try send("PUT", "/v1/kv/\(prefix)\(key)?cas=\(version)", body: value)
        guard response.status == 200 else { throw StoreError("consul: PUT \(prefix)\(key) answered \(response.status): \(response.text.prefix(200))") }
        return response.text.trimmingCharacters(in: .whitespacesAndNewlines) == "true"
    }

    private func send(_ method: String, _ path: String, body: [UInt8] = []) throws(StoreError) -> ControlHTTPResponse {
        do {
            return try client.send(method, path, body: body, timeout: nil)
        } catch {
            throw StoreError("consul: \(error.description)")
        }
    }
}
