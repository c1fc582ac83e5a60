// An etcd v3 client over its JSON gateway (`/v3/...`, etcd 3.4 and later): what the etcd
// provider and the etcd state store need — range, put, compare-and-set, delete, leases
// and watches — with failover across the cluster's members.
//
// Gateway quirks handled here (checked against Debian's etcd 3.4.23): keys and values are
// base64; every int64 is a JSON string; fields at their zero value are left out (a PUT
// event has no "type", a failed txn no "succeeded"); a watch stream is one JSON object per
// line and reports errors in-band. Watches carry `Grpc-Metadata-hasleader: true` so a
// member that lost its quorum ends the stream instead of going silent.

import Foundation
import Synchronization
import YardModel
import YardControlHTTP

// MARK: - Values

/// One key as etcd stores it.
public struct EtcdKeyValue: Sendable, Equatable {
    public var key: String
    public var value: [UInt8]
    public var createRevision: Int64
    public var modRevision: Int64
    public var version: Int64
    public var lease: Int64

    public var text: String { String(decoding: value, as: UTF8.self) }
}

/// A change delivered by a watch.
public struct EtcdEvent: Sendable, Equatable {
    public enum Kind: Sendable, Equatable { case put, delete }
    public var kind: Kind
    public var kv: EtcdKeyValue
}

/// One message of a watch stream.
public struct EtcdWatchResponse: Sendable, Equatable {
    /// The store's revision when the message was sent.
    public var revision: Int64
    public var events: [EtcdEvent]
    /// Set when the requested start revision was compacted: re-list, then watch from here.
    public var compactRevision: Int64
    /// The watch was created (the first message) or cancelled by the server.
    public var created: Bool
    public var canceled: Bool
}

/// The outcome of a compare-and-set.
public enum EtcdCASResult: Sendable, Equatable {
    /// Written; the store's new revision.
    case applied(revision: Int64)
    /// The key's modification revision was not the expected one; its current value (nil
    /// when it does not exist).
    case conflict(current: EtcdKeyValue?)
}

public struct EtcdError: Error, Sendable, CustomStringConvertible, Equatable {
    public enum Kind: Sendable, Equatable {
        /// No member answered (or none has a leader): retry later with backoff.
        case unavailable
        /// A member answered with something that is not what the API documents.
        case badResponse
        /// The server refused the request (e.g. a lease that expired).
        case rejected
    }
    public var kind: Kind
    public var description: String
}

// MARK: - Client

/// A user name and password for etcd's v3 authentication.
public struct EtcdCredentials: Sendable, Equatable {
    public var username: String
    public var password: String

    public init(username: String, password: String) {
        self.username = username
        self.password = password
    }
}

/// Talks to an etcd cluster through any of its members.
///
/// With credentials, the first request authenticates (`/v3/auth/authenticate`) and every
/// request carries the token; an answer saying the token is invalid (expired, or the
/// member restarted) makes it authenticate again and retry once.
///
/// Threading: safe to use from several threads; each call opens its own connection. The
/// member that answered last is tried first next time (an atomic index); the auth token
/// sits behind a mutex.
public final class EtcdClient: Sendable {
    public let endpoints: [ControlHTTPTarget]
    private let timeout: Duration
    private let preferred = Atomic<Int>(0)
    private let tls: ControlTLS?
    private let credentials: EtcdCredentials?
    private let authToken = Mutex<String?>(nil)

    /// - Parameters:
    ///   - endpoints: member client URLs (`http://127.0.0.1:2379`, `https://10.0.0.5:2379`).
    ///   - tls: for `https://` members: the CA and client certificate (nil: system CAs).
    ///   - credentials: etcd user and password when the cluster has auth enabled.
    public init(endpoints: [String], timeout: Duration = .seconds(3), tls: ControlTLS? = nil, credentials: EtcdCredentials? = nil) throws(ControlHTTPError) {
        guard !endpoints.isEmpty else { throw ControlHTTPError("etcd: no endpoints configured") }
        var targets: [ControlHTTPTarget] = []
        for endpoint in endpoints { targets.append(try ControlHTTPTarget(url: endpoint)) }
        self.endpoints = targets
        self.timeout = timeout
        self.tls = tls
        self.credentials = credentials
    }

    /// A client for configured endpoints and access options (TLS files load now).
    public convenience init(endpoints: [String], timeout: Duration, access: StoreAccessConfig) throws(ControlHTTPError) {
        let credentials = access.username.map { EtcdCredentials(username: $0, password: access.password ?? "") }
        try self.init(endpoints: endpoints, timeout: timeout, tls: try access.loadTLS(), credentials: credentials)
    }

    // MARK: KV

    /// One key, and the store's revision.
    public func get(_ key: String, serializable: Bool = false) throws(EtcdError) -> (kv: EtcdKeyValue?, revision: Int64) {
        var body: [String: Any] = ["key": base64(key)]
        if serializable { body["serializable"] = true }
        let json = try call("/v3/kv/range", body)
        return (try Self.kvs(json["kvs"]).first, Self.int(Self.header(json)["revision"]))
    }

    /// Every key under `prefix`, sorted by key, and the store's revision.
    public func list(prefix: String, serializable: Bool = false) throws(EtcdError) -> (kvs: [EtcdKeyValue], revision: Int64) {
        var body: [String: Any] = ["key": base64(prefix), "range_end": base64(Self.rangeEnd(prefix))]
        if serializable { body["serializable"] = true }
        let json = try call("/v3/kv/range", body)
        return (try Self.kvs(json["kvs"]), Self.int(Self.header(json)["revision"]))
    }

    /// Writes a key; returns the new revision.
    @discardableResult
    public func put(_ key: String, value: [UInt8], lease: Int64 = 0) throws(EtcdError) -> Int64 {
        var body: [String: Any] = ["key": base64(key), "value": Data(value).base64EncodedString()]
        if lease != 0 { body["lease"] = String(lease) }
        return Self.int(Self.header(try call("/v3/kv/put", body))["revision"])
    }

    /// Writes `value` only if the key's modification revision is `expectedModRevision`
    /// (0: only if the key does not exist). One transaction: it either applies or reports
    /// the current value, never both.
    public func compareAndSet(
        _ key: String, value: [UInt8], expectedModRevision: Int64, lease: Int64 = 0
    ) throws(EtcdError) -> EtcdCASResult {
        var put: [String: Any] = ["key": base64(key), "value": Data(value).base64EncodedString()]
        if lease != 0 { put["lease"] = String(lease) }
        let body: [String: Any] = [
            "compare": [["key": base64(key), "target": "MOD", "result": "EQUAL", "mod_revision": String(expectedModRevision)]],
            "success": [["request_put": put]],
            "failure": [["request_range": ["key": base64(key)]]],
        ]
        let json = try call("/v3/kv/txn", body)
        if (json["succeeded"] as? Bool) == true {
            return .applied(revision: Self.int(Self.header(json)["revision"]))
        }
        let responses = json["responses"] as? [[String: Any]] ?? []
        let range = responses.first?["response_range"] as? [String: Any] ?? [:]
        return .conflict(current: try Self.kvs(range["kvs"]).first)
    }

    /// Deletes a key (or, with `prefix`, every key under it); returns how many went.
    @discardableResult
    public func delete(_ key: String, prefix: Bool = false) throws(EtcdError) -> Int {
        var body: [String: Any] = ["key": base64(key)]
        if prefix { body["range_end"] = base64(Self.rangeEnd(key)) }
        return Int(Self.int(try call("/v3/kv/deleterange", body)["deleted"]))
    }

    // MARK: Leases

    /// A new lease; returns its id and granted TTL in seconds.
    public func grantLease(ttlSeconds: Int) throws(EtcdError) -> (id: Int64, ttl: Int64) {
        let json = try call("/v3/lease/grant", ["TTL": String(ttlSeconds)])
        let id = Self.int(json["ID"])
        guard id != 0 else { throw EtcdError(kind: .badResponse, description: "etcd: lease grant answered without an ID") }
        return (id, Self.int(json["TTL"]))
    }

    /// Renews a lease; returns the remaining TTL (0 when the lease has expired).
    public func keepAlive(lease: Int64) throws(EtcdError) -> Int64 {
        let json = try call("/v3/lease/keepalive", ["ID": String(lease)])
        let result = json["result"] as? [String: Any] ?? json
        return Self.int(result["TTL"])
    }

    public func revoke(lease: Int64) throws(EtcdError) {
        _ = try call("/v3/lease/revoke", ["ID": String(lease)])
    }

    // MARK: Watch

    /// Watches `key` (or every key under it, with `prefix`) from `startRevision` (0: from
    /// now). Returns once the server confirmed the watch.
    public func watch(_ key: String, prefix: Bool, startRevision: Int64) throws(EtcdError) -> EtcdWatch {
        var create: [String: Any] = ["key": base64(key)]
        if prefix { create["range_end"] = base64(Self.rangeEnd(key)) }
        if startRevision > 0 { create["start_revision"] = String(startRevision) }
        let body = Self.encode(["create_request": create])
        let auth = try authHeaders()
        var lastError = "no endpoint tried"
        for target in orderedEndpoints() {
            let client = ControlHTTPClient(target: target, timeout: timeout, tls: tls)
            do {
                let stream = try client.openStream(
                    "POST", "/v3/watch", headers: [("Content-Type", "application/json"), ("Grpc-Metadata-hasleader", "true")] + auth,
                    body: body)
                guard stream.status == 200 else {
                    let text = (try? stream.readAll(timeout: .seconds(1))).map { String(decoding: $0, as: UTF8.self) } ?? ""
                    stream.cancel()
                    lastError = "\(target) answered \(stream.status) \(text.prefix(200))"
                    // The next watch authenticates again.
                    if Self.isInvalidToken(text) { authToken.withLock { $0 = nil } }
                    continue
                }
                remember(target)
                return EtcdWatch(stream: stream)
            } catch {
                lastError = error.description
            }
        }
        throw EtcdError(kind: .unavailable, description: "etcd: cannot watch '\(key)': \(lastError)")
    }

    // MARK: Internals

    private func orderedEndpoints() -> [ControlHTTPTarget] {
        let first = preferred.load(ordering: .relaxed) % endpoints.count
        return Array(endpoints[first...] + endpoints[..<first])
    }

    private func remember(_ target: ControlHTTPTarget) {
        if let index = endpoints.firstIndex(of: target) { preferred.store(index, ordering: .relaxed) }
    }

    // MARK: Authentication

    /// The `Authorization` header for the next request: the token, authenticating first when
    /// there is none yet. Empty without credentials.
    private func authHeaders() throws(EtcdError) -> [(String, String)] {
        guard let credentials else { return [] }
        if let token = authToken.withLock({ $0 }) { return [("Authorization", token)] }
        let json: [String: Any]
        do {
            json = try post("/v3/auth/authenticate", ["name": credentials.username, "password": credentials.password], headers: [])
        } catch {
            throw EtcdError(kind: error.kind, description: "etcd: authenticating as '\(credentials.username)' failed: \(error.description)")
        }
        guard let token = json["token"] as? String, !token.isEmpty else {
            throw EtcdError(kind: .badResponse, description: "etcd: authenticating as '\(credentials.username)' answered without a token")
        }
        authToken.withLock { $0 = token }
        return [("Authorization", token)]
    }

    /// Whether an answer says the token is no longer valid (expired, revoked, or issued by a
    /// member that restarted); not a wrong password.
    private static func isInvalidToken(_ text: String) -> Bool {
        text.contains("invalid auth token") || text.contains("user name is empty")
    }

    /// POSTs with the auth token; an invalid-token answer re-authenticates and retries once.
    private func call(_ path: String, _ body: [String: Any]) throws(EtcdError) -> [String: Any] {
        do {
            return try post(path, body, headers: try authHeaders())
        } catch where credentials != nil && error.kind == .rejected && Self.isInvalidToken(error.description) {
            authToken.withLock { $0 = nil }
            return try post(path, body, headers: try authHeaders())
        }
    }

    /// POSTs to each member in turn until one answers; 4xx answers are final.
    private func post(_ path: String, _ body: [String: Any], headers: [(String, String)]) throws(EtcdError) -> [String: Any] {
        let bytes = Self.encode(body)
        var lastError = "no endpoint tried"
        for target in orderedEndpoints() {
            let client = ControlHTTPClient(target: target, timeout: timeout, tls: tls)
            let response: ControlHTTPResponse
            do {
                response = try client.send("POST", path, headers: [("Content-Type", "application/json")] + headers, body: bytes)
            } catch {
                lastError = error.description
                continue
            }
            let parsed = try? JSONSerialization.jsonObject(with: Data(response.body))
            guard let json = parsed as? [String: Any] else {
                lastError = "\(target)\(path) answered \(response.status) with \(response.body.isEmpty ? "no body" : "a body that is not JSON: \(response.text.prefix(120))")"
                if (500..<600).contains(response.status) { continue }
                throw EtcdError(kind: .badResponse, description: "etcd: \(lastError)")
            }
            if response.status == 200, json["error"] == nil {
                remember(target)
                return json
            }
            let message = (json["error"] as? String) ?? (json["message"] as? String) ?? ((json["error"] as? [String: Any])?["message"] as? String) ?? response.text
            lastError = "\(target)\(path): \(message)"
            // 503/504 and "no leader" / timeouts: another member may do better.
            if (500..<600).contains(response.status) { continue }
            throw EtcdError(kind: .rejected, description: "etcd: \(lastError)")
        }
        throw EtcdError(kind: .unavailable, description: "etcd: no member answered: \(lastError)")
    }

    private func base64(_ text: String) -> String { Data(text.utf8).base64EncodedString() }

    /// The end of the range covering every key that starts with `prefix` (its last byte
    /// plus one, as etcd's clients compute it).
    static func rangeEnd(_ prefix: String) -> String {
        var bytes = Array(prefix.utf8)
        while let last = bytes.last {
            if last < 0xFF {
                bytes[bytes.count - 1] = last + 1
                return String(decoding: bytes, as: UTF8.self)
            }
            bytes.removeLast()
        }
        return "\0"
    }

    static func encode(_ object: [String: Any]) -> [UInt8] {
        Array((try? JSONSerialization.data(withJSONObject: object)) ?? Data("{}".utf8))
    }

    static func header(_ json: [String: Any]) -> [String: Any] { json["header"] as? [String: Any] ?? [:] }

    /// An int64 the gateway sends as a string (or, rarely, a number); 0 when absent.
    static func int(_ value: Any?) -> Int64 {
        if let text = value as? String { return Int64(text) ?? 0 }
        if let number = value as? NSNumber { return number.int64Value }
        return 0
    }

    static func kvs(_ value: Any?) throws(EtcdError) -> [EtcdKeyValue] {
        guard let value else { return [] }
        guard let list = value as? [[String: Any]] else { throw EtcdError(kind: .badResponse, description: "etcd: 'kvs' is not a list") }
        var result: [EtcdKeyValue] = []
        for entry in list { result.append(try kv(entry)) }
        return result
    }

    static func kv(_ entry: [String: Any]) throws(EtcdError) -> EtcdKeyValue {
        guard let keyText = entry["key"] as? String, let key = Data(base64Encoded: keyText) else {
            throw EtcdError(kind: .badResponse, description: "etcd: a key-value without a base64 'key'")
        }
        let value = (entry["value"] as? String).flatMap { Data(base64Encoded: $0) } ?? Data()
        return EtcdKeyValue(
            key: String(decoding: key, as: UTF8.self), value: Array(value),
            createRevision: int(entry["create_revision"]), modRevision: int(entry["mod_revision"]),
            version: int(entry["version"]), lease: int(entry["lease"]))
    }
}

// MARK: - Watch stream

/// An open watch. Threading: one thread reads with `next`; `cancel` from any thread.
public final class EtcdWatch: Sendable {
    /// The response stream (a provider's `ProviderRun` cancels it on `stop()`).
    let stream: ControlHTTPStream

    init(stream: ControlHTTPStream) { self.stream = stream }

    /// The next message, nil when the stream ended cleanly. Throws `.unavailable` when the
    /// member reports an error in-band (lost its leader, shutting down) or the connection
    /// breaks; `timeout` bounds the wait (etcd sends progress only on request, so a quiet
    /// watch may legitimately wait long: pass nil to wait for as long as it takes).
    public func next(timeout: Duration? = nil) throws(EtcdError) -> EtcdWatchResponse? {
        let line: [UInt8]?
        do {
            line = try stream.nextLine(timeout: timeout)
        } catch {
            throw EtcdError(kind: .unavailable, description: "etcd watch: \(error.description)")
        }
        guard let line else { return nil }
        guard let json = (try? JSONSerialization.jsonObject(with: Data(line))) as? [String: Any] else {
            throw EtcdError(kind: .badResponse, description: "etcd watch: a message that is not JSON: \(String(decoding: line.prefix(120), as: UTF8.self))")
        }
        if let error = json["error"] as? [String: Any] {
            throw EtcdError(kind: .unavailable, description: "etcd watch: \(error["message"] as? String ?? "error")")
        }
        guard let result = json["result"] as? [String: Any] else {
            throw EtcdError(kind: .badResponse, description: "etcd watch: a message without 'result'")
        }
        var events: [EtcdEvent] = []
        for entry in result["events"] as? [[String: Any]] ?? [] {
            let kind: EtcdEvent.Kind = (entry["type"] as? String) == "DELETE" ? .delete : .put
            guard let kv = entry["kv"] as? [String: Any] else { continue }
            events.append(EtcdEvent(kind: kind, kv: try EtcdClient.kv(kv)))
        }
        return EtcdWatchResponse(
            revision: EtcdClient.int(EtcdClient.header(result)["revision"]), events: events,
            compactRevision: EtcdClient.int(result["compact_revision"]),
            created: (result["created"] as? Bool) == true, canceled: (result["canceled"] as? Bool) == true)
    }

    public func cancel() { stream.cancel() }
}
