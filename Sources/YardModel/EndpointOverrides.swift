// Operators' overrides of single endpoints — a runtime weight, maintenance, drain — kept
// in the state store inside the service's `TrafficState`, so they share its
// compare-and-set revision, its history and the replicas' confirmation of it (the
// HAProxy runtime API's `set server weight` and `set server state`, for every replica
// at once and across restarts). Pure values: the runtime lays them over the discovered
// catalog before the routing table is built; the data plane never sees them.

// MARK: - Values

/// An endpoint's administrative state (HAProxy's `set server state`).
public enum EndpointAdminState: String, Sendable, Codable, CaseIterable {
    /// Takes requests as its weight and health allow.
    case ready
    /// No new requests; requests in flight finish; sticky clients move to another endpoint.
    case drain
    /// Maintenance: no traffic at all (requests in flight still finish); health checks go
    /// on, so `status` shows whether it would be healthy when it comes back.
    case maint
}

/// What is stored for one endpoint. An override that says nothing (ready, no weight) is
/// not stored at all.
public struct EndpointOverride: Sendable, Equatable, Codable {
    public var state: EndpointAdminState
    /// The weight that replaces discovery's (0…256); nil keeps discovery's. Health and
    /// slow start still scale it, as HAProxy's effective weight does.
    public var weight: Int?

    public init(state: EndpointAdminState = .ready, weight: Int? = nil) {
        self.state = state
        self.weight = weight
    }

    public var isNeutral: Bool { state == .ready && weight == nil }

    /// Endpoint overrides' weights run from 0 (no new requests) to 256, as HAProxy's.
    public static let weightRange = 0...256
}

/// One operator change to one endpoint.
public enum EndpointChange: Sendable, Equatable {
    /// Set the runtime weight (nil: back to discovery's).
    case weight(Int?)
    case state(EndpointAdminState)
}

// MARK: - Keys

/// `address:port` as an endpoint override is keyed (`[v6]:port` for IPv6), the spelling of
/// `Endpoint.id` after `service/`.
public func endpointKey(address: String, port: UInt16) -> String {
    "\(address.contains(":") ? "[\(address)]" : address):\(port)"
}

/// Reads `ADDRESS:PORT` (`[v6]:PORT` for IPv6) as an operator writes it; nil when it is
/// not one (no port, port out of range, empty or odd address).
public func parseEndpointKey(_ text: String) -> (address: String, port: UInt16)? {
    guard text.utf8.count <= 300, let colon = text.lastIndex(of: ":") else { return nil }
    var address = String(text[..<colon])
    guard let port = UInt16(text[text.index(after: colon)...]), port > 0 else { return nil }
    if address.hasPrefix("[") && address.hasSuffix("]") {
        address = String(address.dropFirst().dropLast())
        guard address.contains(":") else { return nil }
    } else if address.contains(":") {
        return nil
    }
    let allowed = address.unicodeScalars.allSatisfy { $0.properties.isAlphabetic || ("0"..."9").contains($0) || ".-:_".unicodeScalars.contains($0) }
    guard !address.isEmpty, allowed else { return nil }
    return (address, port)
}

// MARK: - Applying

extension TrafficState {
    /// The state with `change` made to the endpoint `key`; the words for the history.
    func applyingEndpoint(_ key: String, _ change: EndpointChange) throws(TrafficError) -> (TrafficState, String) {
        var next = self
        let before = endpoints[key] ?? EndpointOverride()
        var after = before
        let words: String
        switch change {
        case .weight(let weight):
            if let weight, !EndpointOverride.weightRange.contains(weight) {
                throw TrafficError("an endpoint weight is 0 to 256, not \(weight)")
            }
            after.weight = weight
            words = "endpoint \(key) weight \(before.weight.map(String.init) ?? "discovered") -> \(weight.map(String.init) ?? "discovered")"
        case .state(let state):
            after.state = state
            words = "endpoint \(key) \(before.state.rawValue) -> \(state.rawValue)"
        }
        next.endpoints[key] = after.isNeutral ? nil : after
        return (next, words)
    }
}

extension ServiceDefinition {
    /// The service with `overrides` laid over its instances: a stored weight replaces the
    /// discovered one, drain and maint take the instance out of rotation. Overrides of
    /// endpoints discovery does not have now are kept in the store and ignored here.
    public func applying(endpointOverrides overrides: [String: EndpointOverride]) -> ServiceDefinition {
        guard !overrides.isEmpty else { return self }
        var copy = self
        for index in copy.instances.indices {
            let instance = copy.instances[index]
            guard let override = overrides[endpointKey(address: instance.address, port: instance.port)] else { continue }
            if let weight = override.weight { copy.instances[index].weight = weight }
            if override.state != .ready { copy.instances[index].drain = true }
        }
        return copy
    }
}

extension TrafficState {
    /// The state a service is in: this stored one, with the tracks and canary taken from
    /// discovery while only endpoint overrides were ever stored.
    public func effective(discovered service: ServiceDefinition) -> TrafficState {
        guard !tracksStored else { return self }
        var state = self
        let tracks = TrafficState(discovered: service)
        state.activeTrack = tracks.activeTrack
        state.canaryTrack = tracks.canaryTrack
        state.canaryPermille = tracks.canaryPermille
        state.plan = tracks.plan
        return state
    }
}
