// The admin API's response bodies, shared by the server and the CLI (which decodes the
// same types it is answered with). One style, documented in docs/api.md and checked
// against docs/schema/*.json: snake_case keys; points in time as RFC 3339 UTC strings
// under keys ending in `_at` or `_since`; a unit in every key that has one (`_seconds`,
// `_ms`, `_bytes`, `_percent`, `_permille`).

import Foundation
import YardDiscovery
import YardModel

// MARK: - Encoding

/// The one JSON encoder and decoder of the admin API and the CLI.
public enum AdminJSON {
    public static func encode<T: Encodable>(_ value: T) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array((try? encoder.encode(value)) ?? Data("{}".utf8))
    }

    public static func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws -> T {
        try JSONDecoder().decode(type, from: Data(bytes))
    }
}

// MARK: - Errors and small answers

/// Every error answer: `{"error": "what failed and what to do"}` (some add fields).
public struct ErrorAnswer: Codable, Sendable {
    public var error: String
}

// MARK: - Traffic changes

/// A flip or canary change that happened (200).
public struct ChangeAnswer: Codable, Sendable {
    public var service: String
    public var state: TrafficState
    /// The gate `canary step` checked before stepping (absent when it checked none).
    public var gate: GateVerdict?
    /// The replica that wrote the change.
    public var replica: String
    /// Not in the admin API's answer: `switchyard canary step --bake --json` adds the gate's
    /// verdict over the bake, so the command prints one shape with or without a bake.
    public var bake: GateVerdict?
}

/// A write with a stale `revision` (409): the state the store holds now.
public struct ConflictAnswer: Codable, Sendable {
    public var error: String
    public var state: TrafficState
}

/// `canary step` refused because the canary's traffic fails the gate (412).
public struct GateRefusal: Codable, Sendable {
    public var error: String
    public var gate: GateVerdict
    public var state: TrafficState
}

/// `GET /services/NAME`.
public struct ServiceAnswer: Codable, Sendable {
    public struct Window: Codable, Sendable {
        /// The time the per-track numbers cover (up to 60 s).
        public var seconds: Double
        public var tracks: [String: TrackSummary]
    }

    public var service: String
    public var state: TrafficState
    /// "store" when the state store holds it, "discovery" otherwise.
    public var source: String
    public var tracks: [String]
    public var window: Window
    public var store: StoreStatus
}

/// `GET /replicas`: every live replica's report in the state store.
public struct ReplicasAnswer: Codable, Sendable {
    /// The replica that answered.
    public var replica: String
    public var store: StoreStatus
    public var replicas: [ReplicaReport]
    /// Why the list could not be read (the store is unreachable); `replicas` is empty then.
    public var error: String?
}

// MARK: - History

/// A traffic-state or routing change, for the dashboard's history.
public struct ChangeRecord: Sendable, Codable, Equatable {
    public var timeUnix: Double
    public var message: String

    public init(timeUnix: Double, message: String) {
        self.timeUnix = timeUnix
        self.message = message
    }

    enum CodingKeys: String, CodingKey {
        case timeUnix = "changed_at"
        case message
    }

    public init(from decoder: any Decoder) throws {
        let keys = try decoder.container(keyedBy: CodingKeys.self)
        timeUnix = try keys.decodeTimestamp(forKey: .timeUnix)
        message = try keys.decode(String.self, forKey: .message)
    }

    public func encode(to encoder: any Encoder) throws {
        var keys = encoder.container(keyedBy: CodingKeys.self)
        try keys.encodeTimestamp(timeUnix, forKey: .timeUnix)
        try keys.encode(message, forKey: .message)
    }
}

// MARK: - GET /status

/// `GET /status`: what the replica routes, and the health of everything it depends on.
public struct StatusDocument: Codable, Sendable {
    public struct EndpointDoc: Codable, Sendable {
        public var id: String
        public var address: String
        public var port: Int
        public var track: String?
        public var health: String
        public var ejected: Bool
        public var draining: Bool
        public var weight: Int
        public var effectiveWeight: Int
        public var requests: UInt64
        public var errors5xx: UInt64
        public var activeRequests: Int64

        enum CodingKeys: String, CodingKey {
            case id, address, port, track, health, ejected, draining, weight, requests
            case effectiveWeight = "effective_weight"
            case errors5xx = "errors_5xx"
            case activeRequests = "active_requests"
        }
    }

    public struct TrackDoc: Codable, Sendable {
        public var name: String
        public var active: Bool
        public var sharePercent: Double
        public var requests: UInt64
        public var errors5xx: UInt64
        public var endpoints: [EndpointDoc]

        enum CodingKeys: String, CodingKey {
            case name, active, requests, endpoints
            case sharePercent = "share_percent"
            case errors5xx = "errors_5xx"
        }
    }

    public struct CanaryDoc: Codable, Sendable {
        public var track: String
        public var percent: Double
    }

    public struct ServiceDoc: Codable, Sendable {
        public var name: String
        public var activeTrack: String?
        public var balancer: String
        public var panic: Bool
        public var canary: CanaryDoc?
        public var activeEndpoints: Int
        public var tracks: [TrackDoc]
        /// The traffic state's revision (0: from discovery, nothing stored yet).
        public var revision: Int64
        public var lastChange: TrafficChange?
        /// `max_connections` and the wait queue; nil when the service has no limit.
        public var limits: LimitsDoc? = nil

        enum CodingKeys: String, CodingKey {
            case name, balancer, panic, canary, tracks, revision, limits
            case lastChange = "last_change"
            case activeTrack = "active_track"
            case activeEndpoints = "active_endpoints"
        }
    }

    /// A service's endpoint limits and its wait queue now.
    public struct LimitsDoc: Codable, Sendable {
        public var maxConnections: Int
        public var maxPending: Int
        /// 0: `timeouts.queue`.
        public var queueTimeoutMs: Int
        /// Requests waiting for a slot now (process-wide).
        public var waiting: Int
        /// Slots in use per endpoint id.
        public var inUse: [String: Int]

        enum CodingKeys: String, CodingKey {
            case waiting
            case maxConnections = "max_connections"
            case maxPending = "max_pending"
            case queueTimeoutMs = "queue_timeout_ms"
            case inUse = "in_use"
        }
    }

    /// The state store as this replica sees it (the same names as `StoreStatus`, plus the
    /// replica's own name in the store).
    public struct StoreDoc: Codable, Sendable {
        public var kind: String
        public var reachable: Bool
        public var error: String?
        public var unreachableSinceUnix: Double?
        public var replica: String?

        enum CodingKeys: String, CodingKey {
            case kind, reachable, error, replica
            case unreachableSinceUnix = "unreachable_since"
        }

        public init(from decoder: any Decoder) throws {
            let keys = try decoder.container(keyedBy: CodingKeys.self)
            kind = try keys.decode(String.self, forKey: .kind)
            reachable = try keys.decode(Bool.self, forKey: .reachable)
            error = try keys.decodeIfPresent(String.self, forKey: .error)
            unreachableSinceUnix = try keys.decodeTimestampIfPresent(forKey: .unreachableSinceUnix)
            replica = try keys.decodeIfPresent(String.self, forKey: .replica)
        }

        public func encode(to encoder: any Encoder) throws {
            var keys = encoder.container(keyedBy: CodingKeys.self)
            try keys.encode(kind, forKey: .kind)
            try keys.encode(reachable, forKey: .reachable)
            try keys.encodeIfPresent(error, forKey: .error)
            try keys.encodeTimestampIfPresent(unreachableSinceUnix, forKey: .unreachableSinceUnix)
            try keys.encodeIfPresent(replica, forKey: .replica)
        }

        init(kind: String, reachable: Bool, error: String?, unreachableSinceUnix: Double?, replica: String?) {
            self.kind = kind
            self.reachable = reachable
            self.error = error
            self.unreachableSinceUnix = unreachableSinceUnix
            self.replica = replica
        }
    }

    public var version: String
    public var uptimeSeconds: Double
    public var tableVersion: UInt64
    /// When the replica wrote this document.
    public var generatedUnix: Double
    public var services: [ServiceDoc]
    public var providers: [ProviderStatus]
    public var stateStore: StoreDoc
    public var recentChanges: [ChangeRecord]

    enum CodingKeys: String, CodingKey {
        case version, services, providers
        case uptimeSeconds = "uptime_seconds"
        case tableVersion = "table_version"
        case generatedUnix = "generated_at"
        case stateStore = "state_store"
        case recentChanges = "recent_changes"
    }

    public init(from decoder: any Decoder) throws {
        let keys = try decoder.container(keyedBy: CodingKeys.self)
        version = try keys.decode(String.self, forKey: .version)
        uptimeSeconds = try keys.decode(Double.self, forKey: .uptimeSeconds)
        tableVersion = try keys.decode(UInt64.self, forKey: .tableVersion)
        generatedUnix = try keys.decodeTimestamp(forKey: .generatedUnix)
        services = try keys.decode([ServiceDoc].self, forKey: .services)
        providers = try keys.decode([ProviderStatus].self, forKey: .providers)
        stateStore = try keys.decode(StoreDoc.self, forKey: .stateStore)
        recentChanges = try keys.decode([ChangeRecord].self, forKey: .recentChanges)
    }

    public func encode(to encoder: any Encoder) throws {
        var keys = encoder.container(keyedBy: CodingKeys.self)
        try keys.encode(version, forKey: .version)
        try keys.encode(uptimeSeconds, forKey: .uptimeSeconds)
        try keys.encode(tableVersion, forKey: .tableVersion)
        try keys.encodeTimestamp(generatedUnix, forKey: .generatedUnix)
        try keys.encode(services, forKey: .services)
        try keys.encode(providers, forKey: .providers)
        try keys.encode(stateStore, forKey: .stateStore)
        try keys.encode(recentChanges, forKey: .recentChanges)
    }
}
