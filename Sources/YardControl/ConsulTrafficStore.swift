// The Consul KV state store: `PREFIX/traffic/SERVICE` holds a service's TrafficState as
// JSON, written with `?cas=<ModifyIndex>` so a concurrent writer makes the write fail;
// changes are awaited with blocking queries on the prefix. `PREFIX/replicas/ID` holds a
// replica's report with its timestamp and TTL; readers skip reports older than their TTL
// (replica clocks are assumed to agree within a second or two, as NTP keeps them).

import Foundation
import YardDiscovery
import YardModel
import YardControlHTTP

/// Traffic states in Consul KV. Threading: stateless apart from constants; any thread.
public struct ConsulTrafficStore: TrafficStore {
    private let client: ControlHTTPClient
    private let prefix: String

    /// `access`: TLS files, and the token as `token`, `token_file` or `token_env` (read now;
    /// `token` is the inline one, kept for callers that have no access options).
    public init(address: String, prefix: String, token: String?, access: StoreAccessConfig = StoreAccessConfig()) throws(StoreError) {
        do {
            var headers: [(String, String)] = []
            if let token = try access.consulToken() ?? token { headers.append(("X-Consul-Token", token)) }
            client = ControlHTTPClient(
                target: try ControlHTTPTarget(url: address), timeout: .seconds(5), headers: headers, tls: try access.loadTLS())
        } catch {
            throw StoreError("consul: \(error.description)")
        }
        self.prefix = prefix.hasSuffix("/") ? prefix : prefix + "/"
    }

    public var description: String { "consul \(client.target) \(prefix)" }

    private var trafficPrefix: String { prefix + "traffic/" }
    private var replicaPrefix: String { prefix + "replicas/" }

    private struct Entry: Decodable {
        var Key: String
        var Value: String?
        var ModifyIndex: Int64
        var bytes: [UInt8] { Value.flatMap { Data(base64Encoded: $0) }.map(Array.init) ?? [] }
    }

    public func load() throws(StoreError) -> StoreSnapshot {
        let (entries, index) = try list(trafficPrefix, blockingAfter: nil, wait: nil)
        var states: [String: TrafficState] = [:]
        for entry in entries where entry.Key.count > trafficPrefix.count {
            states[String(entry.Key.dropFirst(trafficPrefix.count))] = try StoreCoding.decode(TrafficState.self, entry.bytes, what: "consul key \(entry.Key)")
        }
        return StoreSnapshot(states: states, cursor: index)
    }

    public func waitForChange(after cursor: Int64, timeout: Duration) throws(StoreError) -> Bool {
        let seconds = max(1, Int(timeout.seconds))
        let (_, index) = try list(trafficPrefix, blockingAfter: max(1, cursor), wait: seconds)
        // A new index is a (possible) change; an index that went backwards (a snapshot
        // restore) means the cursor is meaningless: reload too.
        return index != cursor
    }

    public func compareAndSwap(service: String, state: TrafficState) throws(StoreError) -> StoreWrite {
        let key = trafficPrefix + service
        let (entries, _) = try list(key, blockingAfter: nil, wait: nil, recurse: false)
        let entry = entries.first { $0.Key == key }
        let stored = try entry.map { e throws(StoreError) in try StoreCoding.decode(TrafficState.self, e.bytes, what: "consul key \(key)") }
        guard (stored?.revision ?? 0) == state.revision - 1 else { return .conflict(current: stored) }
        let response = try send("PUT", "/v1/kv/\(key)?cas=\(entry?.ModifyIndex ?? 0)", body: StoreCoding.encode(state))
        guard response.status == 200 else { throw StoreError("consul: PUT \(key) answered \(response.status): \(response.text.prefix(200))") }
        if response.text.trimmingCharacters(in: .whitespacesAndNewlines) == "true" { return .applied }
        let (after, _) = try list(key, blockingAfter: nil, wait: nil, recurse: false)
        return .conflict(current: try after.first.map { e throws(StoreError) in try StoreCoding.decode(TrafficState.self, e.bytes, what: "consul key \(key)") })
    }

    public func report(_ replica: ReplicaReport, ttl: Duration) throws(StoreError) {
        let response = try send("PUT", "/v1/kv/\(replicaPrefix)\(replica.id)", body: StoreCoding.encode(ReplicaRecord(report: replica, ttlSeconds: ttl.seconds)))
        guard response.status == 200 else { throw StoreError("consul: replica report answered \(response.status): \(response.text.prefix(200))") }
    }

    public func replicas() throws(StoreError) -> [ReplicaReport] {
        let now = Date().timeIntervalSince1970
        return try list(replicaPrefix, blockingAfter: nil, wait: nil).entries.compactMap { entry in
            guard let record = try? StoreCoding.decode(ReplicaRecord.self, entry.bytes, what: entry.Key) else { return nil }
            return record.report.reportedUnix + record.ttlSeconds >= now ? record.report : nil
        }
    }

    public func withdraw(replica id: String) {
        _ = try? send("DELETE", "/v1/kv/\(replicaPrefix)\(id)")
    }

    // MARK: HTTP

    private func list(_ key: String, blockingAfter index: Int64?, wait: Int?, recurse: Bool = true) throws(StoreError) -> (entries: [Entry], index: Int64) {
        var query: [String] = recurse ? ["recurse"] : []
        if let index { query.append("index=\(index)") }
        if let wait { query.append("wait=\(wait)s") }
        let path = "/v1/kv/\(key)" + (query.isEmpty ? "" : "?" + query.joined(separator: "&"))
        // A blocking query may be held for `wait` plus Consul's jitter (wait/16).
        let timeout: Duration = .seconds(wait.map { $0 + $0 / 16 + 5 } ?? 5)
        let response = try send("GET", path, timeout: timeout)
        let consulIndex = Int64(response.header("X-Consul-Index") ?? "") ?? 0
        if response.status == 404 { return ([], consulIndex) }
        guard response.status == 200 else { throw StoreError("consul: GET \(key) answered \(response.status): \(response.text.prefix(200))") }
        do {
            return (try JSONDecoder().decode([Entry].self, from: Data(response.body)), consulIndex)
        } catch {
            throw StoreError("consul: GET \(key) answered something that is not a KV list: \(response.text.prefix(120))")
        }
    }

    private func send(_ method: String, _ path: String, body: [UInt8] = [], timeout: Duration? = nil) throws(StoreError) -> ControlHTTPResponse {
        do {
            return try client.send(method, path, body: body, timeout: timeout)
        } catch {
            throw StoreError("consul: \(error.description)")
        }
    }
}
