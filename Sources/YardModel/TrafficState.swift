// The traffic state of a service — which track is active, which one is the canary and at
// what share, the canary plan — and the operator's verbs on it: flip, canary set, step,
// promote, abort. Pure values and functions: the state store persists them, the runtime
// lays them over the discovered catalog, the admin API and the CLI drive them.

// MARK: - State

/// What the state store holds for one service.
///
/// `revision` increases by one with every change and is what a compare-and-set checks, so
/// two operators cannot overwrite each other silently (the second gets a conflict).
public struct TrafficState: Sendable, Equatable, Codable {
    /// The track that gets new requests (nil: every instance, the service has no tracks).
    public var activeTrack: String?
    /// The canary track, or nil when there is none.
    public var canaryTrack: String?
    /// The canary's share in tenths of a percent (0…1000).
    public var canaryPermille: Int
    /// The canary's steps in tenths of a percent, ascending, ending at 1000.
    public var plan: [Int]
    /// 0 for a state that never was written (taken from discovery), then 1, 2, …
    public var revision: Int64
    /// The last changes, oldest first (at most `TrafficState.historyLimit`).
    public var history: [TrafficChange]
    /// Operators' overrides of single endpoints, by `address:port` (EndpointOverrides.swift).
    public var endpoints: [String: EndpointOverride] = [:]
    /// False while only endpoint overrides were ever stored: the tracks and canary still
    /// follow discovery (an endpoint's weight must not freeze the discovered active track).
    public var tracksStored = true

    public static let historyLimit = 20
    /// 5 %, 25 %, 50 %, 100 %.
    public static let defaultPlan = [50, 250, 500, 1000]

    public init(
        activeTrack: String?, canaryTrack: String? = nil, canaryPermille: Int = 0,
        plan: [Int] = TrafficState.defaultPlan, revision: Int64 = 0, history: [TrafficChange] = []
    ) {
        self.activeTrack = activeTrack
        self.canaryTrack = canaryTrack
        self.canaryPermille = canaryPermille
        self.plan = plan
        self.revision = revision
        self.history = history
    }

    /// The state a service has before anyone changed it: what discovery says.
    public init(discovered service: ServiceDefinition) {
        self.init(
            activeTrack: service.activeTrack, canaryTrack: service.canary?.track,
            canaryPermille: service.canary?.permille ?? 0, plan: service.canary?.plan ?? TrafficState.defaultPlan)
        tracksStored = false
    }

    /// "blue", "blue + green 10%".
    public var summary: String {
        var text = activeTrack ?? "(all)"
        if let canaryTrack { text += " + \(canaryTrack) \(formatPermille(canaryPermille))" }
        return text
    }

    enum CodingKeys: String, CodingKey {
        case activeTrack = "active_track", canaryTrack = "canary_track", canaryPermille = "canary_permille"
        case plan = "plan_permille", revision, history
        case endpoints, tracksStored = "tracks_stored"
    }

    /// The keys earlier versions wrote, which the state stores still write (see
    /// `CodingUserInfoKey.storedDocument`).
    enum StoredKeys: String, CodingKey {
        case activeTrack, canaryTrack, canaryPermille, plan, revision, history
        case endpoints, tracksStored = "tracks_stored"
    }

    public init(from decoder: any Decoder) throws {
        let keys = try decoder.container(keyedBy: CodingKeys.self)
        if keys.contains(.canaryPermille) {
            activeTrack = try keys.decodeIfPresent(String.self, forKey: .activeTrack)
            canaryTrack = try keys.decodeIfPresent(String.self, forKey: .canaryTrack)
            canaryPermille = try keys.decodeIfPresent(Int.self, forKey: .canaryPermille) ?? 0
            plan = try keys.decodeIfPresent([Int].self, forKey: .plan) ?? Self.defaultPlan
            revision = try keys.decode(Int64.self, forKey: .revision)
            history = try keys.decodeIfPresent([TrafficChange].self, forKey: .history) ?? []
        } else {
            let stored = try decoder.container(keyedBy: StoredKeys.self)
            activeTrack = try stored.decodeIfPresent(String.self, forKey: .activeTrack)
            canaryTrack = try stored.decodeIfPresent(String.self, forKey: .canaryTrack)
            canaryPermille = try stored.decode(Int.self, forKey: .canaryPermille)
            plan = try stored.decode([Int].self, forKey: .plan)
            revision = try stored.decode(Int64.self, forKey: .revision)
            history = try stored.decode([TrafficChange].self, forKey: .history)
        }
        // Endpoint overrides have the same keys in both forms; documents written before
        // overrides existed have neither.
        endpoints = try keys.decodeIfPresent([String: EndpointOverride].self, forKey: .endpoints) ?? [:]
        tracksStored = try keys.decodeIfPresent(Bool.self, forKey: .tracksStored) ?? true
    }

    public func encode(to encoder: any Encoder) throws {
        if encoder.writesStoredDocument {
            var stored = encoder.container(keyedBy: StoredKeys.self)
            try stored.encodeIfPresent(activeTrack, forKey: .activeTrack)
            try stored.encodeIfPresent(canaryTrack, forKey: .canaryTrack)
            try stored.encode(canaryPermille, forKey: .canaryPermille)
            try stored.encode(plan, forKey: .plan)
            try stored.encode(revision, forKey: .revision)
            try stored.encode(history, forKey: .history)
            try stored.encode(endpoints, forKey: .endpoints)
            try stored.encode(tracksStored, forKey: .tracksStored)
        } else {
            var keys = encoder.container(keyedBy: CodingKeys.self)
            try keys.encodeIfPresent(activeTrack, forKey: .activeTrack)
            try keys.encodeIfPresent(canaryTrack, forKey: .canaryTrack)
            try keys.encode(canaryPermille, forKey: .canaryPermille)
            try keys.encode(plan, forKey: .plan)
            try keys.encode(revision, forKey: .revision)
            try keys.encode(history, forKey: .history)
            try keys.encode(endpoints, forKey: .endpoints)
            try keys.encode(tracksStored, forKey: .tracksStored)
        }
    }
}

/// One entry of a service's change history: who changed what, when and why.
public struct TrafficChange: Sendable, Equatable, Codable {
    public var revision: Int64
    public var timeUnix: Double
    public var who: String
    public var why: String
    /// What changed, in words: "flip blue -> green", "canary green 5% -> 25%".
    public var action: String
    /// The active track before and after, for a change that moved it (flip, promote);
    /// nil otherwise and in entries written by earlier versions. Read these, not `action`.
    public var fromTrack: String?
    public var toTrack: String?

    public init(revision: Int64, timeUnix: Double, who: String, why: String, action: String, fromTrack: String? = nil, toTrack: String? = nil) {
        self.revision = revision
        self.timeUnix = timeUnix
        self.who = who
        self.why = why
        self.action = action
        self.fromTrack = fromTrack
        self.toTrack = toTrack
    }

    enum CodingKeys: String, CodingKey {
        case revision, timeUnix = "changed_at", who, why, action, fromTrack = "from_track", toTrack = "to_track"
    }

    enum StoredKeys: String, CodingKey {
        case revision, timeUnix, who, why, action, fromTrack, toTrack
    }

    public init(from decoder: any Decoder) throws {
        let keys = try decoder.container(keyedBy: CodingKeys.self)
        if keys.contains(.timeUnix) {
            timeUnix = try keys.decodeTimestamp(forKey: .timeUnix)
            fromTrack = try keys.decodeIfPresent(String.self, forKey: .fromTrack)
            toTrack = try keys.decodeIfPresent(String.self, forKey: .toTrack)
        } else {
            let stored = try decoder.container(keyedBy: StoredKeys.self)
            timeUnix = try stored.decode(Double.self, forKey: .timeUnix)
            fromTrack = try stored.decodeIfPresent(String.self, forKey: .fromTrack)
            toTrack = try stored.decodeIfPresent(String.self, forKey: .toTrack)
        }
        revision = try keys.decode(Int64.self, forKey: .revision)
        who = try keys.decode(String.self, forKey: .who)
        why = try keys.decode(String.self, forKey: .why)
        action = try keys.decode(String.self, forKey: .action)
    }

    public func encode(to encoder: any Encoder) throws {
        if encoder.writesStoredDocument {
            var stored = encoder.container(keyedBy: StoredKeys.self)
            try stored.encode(revision, forKey: .revision)
            try stored.encode(timeUnix, forKey: .timeUnix)
            try stored.encode(who, forKey: .who)
            try stored.encode(why, forKey: .why)
            try stored.encode(action, forKey: .action)
            try stored.encodeIfPresent(fromTrack, forKey: .fromTrack)
            try stored.encodeIfPresent(toTrack, forKey: .toTrack)
        } else {
            var keys = encoder.container(keyedBy: CodingKeys.self)
            try keys.encode(revision, forKey: .revision)
            try keys.encodeTimestamp(timeUnix, forKey: .timeUnix)
            try keys.encode(who, forKey: .who)
            try keys.encode(why, forKey: .why)
            try keys.encode(action, forKey: .action)
            try keys.encodeIfPresent(fromTrack, forKey: .fromTrack)
            try keys.encodeIfPresent(toTrack, forKey: .toTrack)
        }
    }
}

/// "10%", "0.5%".
public func formatPermille(_ permille: Int) -> String {
    permille % 10 == 0 ? "\(permille / 10)%" : "\(permille / 10).\(permille % 10)%"
}

// MARK: - Verbs

/// An operator's request to change a service's traffic.
public enum TrafficAction: Sendable, Equatable {
    /// Make `to` the active track; nil: the other track when the service has exactly two.
    /// Clears the canary.
    case flip(to: String?)
    /// Put `track` (nil: the current or only other track) at `permille`.
    case setCanary(track: String?, permille: Int)
    /// The next step of the plan above the current share.
    case step
    /// The canary becomes the active track; the canary is cleared.
    case promote
    /// The canary goes to 0 % (its track stays named, so status shows what was aborted).
    case abort
    /// An override of one endpoint (`address:port`); the tracks are left as they are.
    case endpoint(String, EndpointChange)
}

/// Why a traffic action was refused, for a 400 (or 404) answer.
public struct TrafficError: Error, Sendable, Equatable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

extension TrafficState {
    /// The state after `action`, with the revision bumped and the change recorded; throws
    /// when the action does not fit the service (unknown track, no canary, top of plan).
    ///
    /// - Parameter tracks: the tracks the service's instances have now (sorted).
    public func applying(
        _ action: TrafficAction, tracks: [String], who: String, why: String, timeUnix: Double
    ) throws(TrafficError) -> TrafficState {
        var next = self
        let words: String
        var moved: (from: String?, to: String)?
        switch action {
        case .flip(let requested):
            let target: String
            if let requested {
                guard tracks.contains(requested) else {
                    throw TrafficError("no instance has track '\(requested)'; tracks now: \(list(tracks))")
                }
                target = requested
            } else {
                let others = tracks.filter { $0 != activeTrack }
                guard others.count == 1, let only = others.first else {
                    throw TrafficError(others.isEmpty
                        ? "there is no other track to flip to (tracks now: \(list(tracks)))"
                        : "several tracks to flip to (\(list(others))); name one with --to")
                }
                target = only
            }
            words = "flip \(activeTrack ?? "(all)") -> \(target)"
            moved = (activeTrack, target)
            next.activeTrack = target
            next.canaryTrack = nil
            next.canaryPermille = 0
        case .setCanary(let requested, let permille):
            guard (0...1000).contains(permille) else { throw TrafficError("a canary share is 0 to 100 %, not \(formatPermille(permille))") }
            let track = try canaryTarget(requested, tracks: tracks)
            words = "canary \(track) \(formatPermille(canaryTrack == track ? canaryPermille : 0)) -> \(formatPermille(permille))"
            next.canaryTrack = track
            next.canaryPermille = permille
        case .step:
            let track = try canaryTarget(nil, tracks: tracks)
            let current = canaryTrack == track ? canaryPermille : 0
            guard let step = plan.first(where: { $0 > current }) else {
                throw TrafficError("canary \(track) is at \(formatPermille(current)), the top of its plan (\(plan.map(formatPermille).joined(separator: ", "))); promote it")
            }
            words = "canary \(track) \(formatPermille(current)) -> \(formatPermille(step))"
            next.canaryTrack = track
            next.canaryPermille = step
        case .promote:
            guard let canaryTrack else { throw TrafficError("there is no canary to promote") }
            guard tracks.contains(canaryTrack) else { throw TrafficError("canary track '\(canaryTrack)' has no instance left") }
            words = "promote \(canaryTrack) (was \(formatPermille(canaryPermille))); \(activeTrack ?? "(all)") -> \(canaryTrack)"
            moved = (activeTrack, canaryTrack)
            next.activeTrack = canaryTrack
            next.canaryTrack = nil
            next.canaryPermille = 0
        case .abort:
            guard let canaryTrack else { throw TrafficError("there is no canary to abort") }
            words = "abort canary \(canaryTrack) \(formatPermille(canaryPermille)) -> 0%"
            next.canaryPermille = 0
        case .endpoint(let key, let change):
            (next, words) = try applyingEndpoint(key, change)
        }
        if case .endpoint = action {} else { next.tracksStored = true }
        // A store that holds the largest revision cannot be stepped past it: refuse, do not trap.
        guard revision < Int64.max else { throw TrafficError("revision \(revision) is the largest a state can have; reset the service's stored state") }
        next.revision = revision + 1
        next.history.append(TrafficChange(
            revision: next.revision, timeUnix: timeUnix, who: who, why: why, action: words, fromTrack: moved?.from, toTrack: moved?.to))
        if next.history.count > Self.historyLimit { next.history.removeFirst(next.history.count - Self.historyLimit) }
        return next
    }

    private func canaryTarget(_ requested: String?, tracks: [String]) throws(TrafficError) -> String {
        guard activeTrack != nil else {
            throw TrafficError("a canary needs an active (stable) track to split from; flip to one first")
        }
        let track: String
        if let requested {
            track = requested
        } else if let canaryTrack {
            track = canaryTrack
        } else {
            let others = tracks.filter { $0 != activeTrack }
            guard others.count == 1, let only = others.first else {
                throw TrafficError(others.isEmpty
                    ? "no track besides the active one '\(activeTrack ?? "")' to make a canary of"
                    : "several candidate canary tracks (\(list(others))); name one with --track")
            }
            track = only
        }
        guard track != activeTrack else { throw TrafficError("'\(track)' is the active track; a canary must be another track") }
        guard tracks.contains(track) else { throw TrafficError("no instance has track '\(track)'; tracks now: \(list(tracks))") }
        return track
    }

    private func list(_ tracks: [String]) -> String { tracks.isEmpty ? "none" : tracks.joined(separator: ", ") }
}

// MARK: - Applying to discovery

extension ServiceCatalog {
    /// The catalog with each service's active track and canary taken from `states` where
    /// one exists (the state store wins over discovery's `active:` and `canary:`); the
    /// canary keeps discovery's stickiness setting.
    public func applying(_ states: [String: TrafficState]) -> ServiceCatalog {
        guard !states.isEmpty else { return self }
        var copy = self
        for index in copy.services.indices {
            guard let state = states[copy.services[index].name], state.revision > 0 else { continue }
            var service = copy.services[index].applying(endpointOverrides: state.endpoints)
            guard state.tracksStored else {
                copy.services[index] = service
                continue
            }
            service.activeTrack = state.activeTrack
            if let track = state.canaryTrack {
                service.canary = CanaryConfig(track: track, permille: state.canaryPermille, sticky: service.canary?.sticky,
                                              stickyCookie: service.canary?.stickyCookie, plan: state.plan)
            } else {
                service.canary = nil
            }
            copy.services[index] = service
        }
        return copy
    }
}

extension ServiceDefinition {
    /// The tracks its instances have, sorted.
    public var tracks: [String] { Array(Set(instances.compactMap(\.track))).sorted() }
}
