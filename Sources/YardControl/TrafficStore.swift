// The state store: where every replica reads and writes services' traffic states (active
// track, canary, plan, revision, history) and reports itself. A file (the default, one
// machine), etcd, or Consul KV; every change is a compare-and-set on the revision.

import Foundation
import YardModel

// MARK: - Contract

/// A place traffic states live, shared by every replica that names it.
///
/// Threading: implementations are safe to call from several threads; every call blocks
/// (they belong on the control plane's threads, never on an event loop).
public protocol TrafficStore: Sendable {
    /// "file /etc/switchyard/state.json", "etcd http://…", for status and logs.
    var description: String { get }

    /// Every service's stored state, and a cursor to wait for changes after.
    func load() throws(StoreError) -> StoreSnapshot

    /// Blocks until the stored states may have changed after `cursor` (then returns true)
    /// or `timeout` passed (false). A spurious true is allowed; the caller reloads.
    func waitForChange(after cursor: Int64, timeout: Duration) throws(StoreError) -> Bool

    /// Writes `state` for `service` if the stored revision is still `state.revision - 1`
    /// (0 means "nothing stored yet"); otherwise reports what is stored.
    func compareAndSwap(service: String, state: TrafficState) throws(StoreError) -> StoreWrite

    /// Publishes this replica's report; it expires unless renewed within `ttl`.
    func report(_ replica: ReplicaReport, ttl: Duration) throws(StoreError)

    /// The replicas whose reports have not expired.
    func replicas() throws(StoreError) -> [ReplicaReport]

    /// Withdraws this replica's report (graceful stop).
    func withdraw(replica id: String)
}

/// Stored states and where to watch from.
public struct StoreSnapshot: Sendable, Equatable {
    public var states: [String: TrafficState]
    /// Store-specific (etcd revision, Consul index, file signature).
    public var cursor: Int64

    public init(states: [String: TrafficState], cursor: Int64) {
        self.states = states
        self.cursor = cursor
    }
}

/// The outcome of a compare-and-set.
public enum StoreWrite: Sendable, Equatable {
    case applied
    /// Somebody else changed the service first: what is stored now (nil: nothing).
    case conflict(current: TrafficState?)
}

/// The store could not be read or written; nothing changed.
public struct StoreError: Error, Sendable, CustomStringConvertible, Equatable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// What one replica says about itself in the store.
public struct ReplicaReport: Sendable, Equatable, Codable {
    public var id: String
    /// Its admin API (http://host:port), when it has one.
    public var admin: String?
    public var pid: Int32
    /// The traffic revision it applied, per service (0: discovery's state, none stored).
    public var applied: [String: Int64]
    /// The routing table version it serves.
    public var tableVersion: UInt64
    public var storeReachable: Bool
    public var storeError: String?
    public var reportedUnix: Double
    public var startedUnix: Double
    /// Its per-track traffic windows, per service with a canary, so a canary gate run on
    /// any replica judges the whole fleet (FleetGate.swift); nil from older replicas.
    public var windows: [String: [PublishedWindow]]?

    public init(
        id: String, admin: String?, pid: Int32, applied: [String: Int64], tableVersion: UInt64,
        storeReachable: Bool, storeError: String?, reportedUnix: Double, startedUnix: Double,
        windows: [String: [PublishedWindow]]? = nil
    ) {
        self.windows = windows
        self.id = id
        self.admin = admin
        self.pid = pid
        self.applied = applied
        self.tableVersion = tableVersion
        self.storeReachable = storeReachable
        self.storeError = storeError
        self.reportedUnix = reportedUnix
        self.startedUnix = startedUnix
    }

    enum CodingKeys: String, CodingKey {
        case id, admin, pid, applied, tableVersion = "table_version", storeReachable = "store_reachable"
        case storeError = "store_error", reportedUnix = "reported_at", startedUnix = "started_at"
        case windows
    }

    /// The keys earlier versions wrote, which the stores still write (`CodingUserInfoKey.storedDocument`).
    enum StoredKeys: String, CodingKey {
        case id, admin, pid, applied, tableVersion, storeReachable, storeError, reportedUnix, startedUnix
        case windows
    }

    public init(from decoder: any Decoder) throws {
        let keys = try decoder.container(keyedBy: CodingKeys.self)
        id = try keys.decode(String.self, forKey: .id)
        admin = try keys.decodeIfPresent(String.self, forKey: .admin)
        pid = try keys.decode(Int32.self, forKey: .pid)
        applied = try keys.decode([String: Int64].self, forKey: .applied)
        windows = try keys.decodeIfPresent([String: [PublishedWindow]].self, forKey: .windows)
        if keys.contains(.reportedUnix) {
            tableVersion = try keys.decode(UInt64.self, forKey: .tableVersion)
            storeReachable = try keys.decode(Bool.self, forKey: .storeReachable)
            storeError = try keys.decodeIfPresent(String.self, forKey: .storeError)
            reportedUnix = try keys.decodeTimestamp(forKey: .reportedUnix)
            startedUnix = try keys.decodeTimestamp(forKey: .startedUnix)
        } else {
            let stored = try decoder.container(keyedBy: StoredKeys.self)
            tableVersion = try stored.decode(UInt64.self, forKey: .tableVersion)
            storeReachable = try stored.decode(Bool.self, forKey: .storeReachable)
            storeError = try stored.decodeIfPresent(String.self, forKey: .storeError)
            reportedUnix = try stored.decode(Double.self, forKey: .reportedUnix)
            startedUnix = try stored.decode(Double.self, forKey: .startedUnix)
        }
    }

    public func encode(to encoder: any Encoder) throws {
        if encoder.writesStoredDocument {
            var stored = encoder.container(keyedBy: StoredKeys.self)
            try stored.encode(id, forKey: .id)
            try stored.encodeIfPresent(admin, forKey: .admin)
            try stored.encode(pid, forKey: .pid)
            try stored.encode(applied, forKey: .applied)
            try stored.encode(tableVersion, forKey: .tableVersion)
            try stored.encode(storeReachable, forKey: .storeReachable)
            try stored.encodeIfPresent(storeError, forKey: .storeError)
            try stored.encode(reportedUnix, forKey: .reportedUnix)
            try stored.encode(startedUnix, forKey: .startedUnix)
            try stored.encodeIfPresent(windows, forKey: .windows)
        } else {
            var keys = encoder.container(keyedBy: CodingKeys.self)
            try keys.encode(id, forKey: .id)
            try keys.encodeIfPresent(admin, forKey: .admin)
            try keys.encode(pid, forKey: .pid)
            try keys.encode(applied, forKey: .applied)
            try keys.encode(tableVersion, forKey: .tableVersion)
            try keys.encode(storeReachable, forKey: .storeReachable)
            try keys.encodeIfPresent(storeError, forKey: .storeError)
            try keys.encodeTimestamp(reportedUnix, forKey: .reportedUnix)
            try keys.encodeTimestamp(startedUnix, forKey: .startedUnix)
            try keys.encodeIfPresent(windows, forKey: .windows)
        }
    }
}

// MARK: - Encoding

enum StoreCoding {
    static func encode<T: Encodable>(_ value: T) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.userInfo[.storedDocument] = true
        return Array((try? encoder.encode(value)) ?? Data("{}".utf8))
    }

    /// Decodes a stored document; names `what` in the error (a hand-edited or foreign
    /// value must be reported, not crash or silently reset the service).
    static func decode<T: Decodable>(_ type: T.Type, _ bytes: [UInt8], what: String) throws(StoreError) -> T {
        do {
            return try JSONDecoder().decode(type, from: Data(bytes))
        } catch {
            throw StoreError("\(what) is not a valid stored document: \(error); fix or delete it")
        }
    }
}

// MARK: - Config

/// Builds the configured store.
public enum TrafficStores {
    public static func make(_ config: StateStoreConfig) throws(StoreError) -> TrafficStore {
        switch config.kind {
        case .file(let path):
            return FileTrafficStore(path: path)
        case .etcd(let endpoints, let prefix):
            return try EtcdTrafficStore(endpoints: endpoints, prefix: prefix, access: config.access)
        case .consul(let address, let prefix, let token):
            return try ConsulTrafficStore(address: address, prefix: prefix, token: token, access: config.access)
        }
    }
}
