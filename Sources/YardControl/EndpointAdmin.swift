// The endpoint half of the admin API: runtime weights, maintenance and drain of single
// endpoints, stored as compare-and-sets on the service's traffic state so every replica
// applies them and they outlive a restart (EndpointOverrides.swift has the model).
//
//   GET  /endpoints[?service=NAME]              every endpoint with its override
//   GET  /services/NAME/endpoints               the same for one service
//   POST /services/NAME/endpoints/ADDRESS:PORT  {"state": "ready|drain|maint"} or
//                                               {"weight": 0…256} or {"weight_reset": true}
//   POST /endpoints/SERVICE%2FADDRESS:PORT/drain {"drain": true|false}  (the older
//                                               spelling of state drain / ready)

import Foundation
import YardModel

/// The body of `POST /services/NAME/endpoints/ADDRESS:PORT`: exactly one of `state`,
/// `weight` and `weight_reset`.
public struct EndpointChangeRequest: Codable, Sendable {
    public var state: String?
    public var weight: Int?
    public var weight_reset: Bool?
    public var revision: Int64?
    public var who: String?
    public var why: String?

    public init(state: String? = nil, weight: Int? = nil, weightReset: Bool? = nil, revision: Int64? = nil, who: String? = nil, why: String? = nil) {
        self.state = state
        self.weight = weight
        self.weight_reset = weightReset
        self.revision = revision
        self.who = who
        self.why = why
    }

    /// The change asked for, or why the body does not name exactly one.
    func change() -> Result<EndpointChange, AdminRequestError> {
        switch (state, weight, weight_reset ?? false) {
        case (let state?, nil, false):
            guard let parsed = EndpointAdminState(rawValue: state) else {
                return .failure(AdminRequestError(400, "'state' is ready, drain or maint, not '\(state.prefix(40))'"))
            }
            return .success(.state(parsed))
        case (nil, let weight?, false):
            guard EndpointOverride.weightRange.contains(weight) else {
                return .failure(AdminRequestError(400, "'weight' is a whole number from 0 to 256, not \(weight)"))
            }
            return .success(.weight(weight))
        case (nil, nil, true):
            return .success(.weight(nil))
        default:
            return .failure(AdminRequestError(400, "send exactly one of 'state' (ready, drain, maint), 'weight' (0 to 256) or 'weight_reset': true"))
        }
    }
}

/// One endpoint in `GET /endpoints`: what discovery says, the stored override, and what
/// the routing table this replica serves makes of both (decoded by `endpoint status`).
public struct EndpointView: Codable, Sendable {
    public var endpoint: String
    public var track: String?
    /// Whether discovery has the endpoint now (an override outlives it in the store).
    public var present: Bool
    public var state: String
    public var discovered_weight: Int?
    public var override_weight: Int?
    /// The weight the balancer uses on this replica, scaled by 100 (health and slow start
    /// applied); 0 takes no new requests.
    public var effective_weight: Int?
    public var health: String?
    public var ejected: Bool?
}

public struct ServiceEndpointsView: Codable, Sendable {
    public var service: String
    public var revision: Int64
    public var endpoints: [EndpointView]
}

public struct EndpointsAnswer: Codable, Sendable {
    public var replica: String
    public var services: [ServiceEndpointsView]
}

private struct EndpointChangeAnswer: Encodable {
    var service: String
    var endpoint: String
    var override: EndpointOverride?
    var state: TrafficState
    var replica: String
}

extension Runtime {
    /// Answers the endpoint routes, or nil when the path is not one of them.
    func handleEndpoints(_ request: AdminRequest, parts: [String]) -> AdminResponse? {
        func decoded(_ text: String) -> String { text.removingPercentEncoding ?? text }
        switch (request.method, parts.count) {
        case ("GET", 1) where parts[0] == "endpoints":
            return endpointsAnswer(only: request.query["service"])
        case ("GET", 3) where parts[0] == "services" && parts[2] == "endpoints":
            return endpointsAnswer(only: decoded(parts[1]))
        case ("POST", 4) where parts[0] == "services" && parts[2] == "endpoints":
            let body: EndpointChangeRequest
            do {
                body = request.body.isEmpty ? EndpointChangeRequest() : try JSONDecoder().decode(EndpointChangeRequest.self, from: Data(request.body))
            } catch {
                return .error(400, "the body is not the JSON this call takes: \(error)")
            }
            switch body.change() {
            case .failure(let problem): return .error(problem.status, problem.message)
            case .success(let change):
                return changeEndpoint(service: decoded(parts[1]), key: decoded(parts[3]), change: change, request: request, body: body)
            }
        case ("POST", 3) where parts[0] == "endpoints" && parts[2] == "drain":
            // `service/address:port`, the id /status shows.
            let id = decoded(parts[1])
            guard let slash = id.firstIndex(of: "/") else {
                return .error(404, "no endpoint '\(id)'; ids look like service/127.0.0.1:9101 (see /status)")
            }
            let drain: Bool
            switch request.json {
            case .drain(let decoded): drain = decoded.drain ?? true
            case .invalid(let message): return .error(400, message)
            case .none, .trafficChange: drain = true
            }
            var body = EndpointChangeRequest()
            body.who = request.headers["x-switchyard-who"]
            return changeEndpoint(
                service: String(id[..<slash]), key: String(id[id.index(after: slash)...]),
                change: .state(drain ? .drain : .ready), request: request, body: body)
        default:
            return nil
        }
    }

    // MARK: Writes

    private func changeEndpoint(service name: String, key text: String, change: EndpointChange, request: AdminRequest, body: EndpointChangeRequest) -> AdminResponse {
        guard let traffic else { return .error(503, "starting") }
        guard let service = state.withLock({ $0.catalog.services.first { $0.name == name } }) else {
            return .error(404, "no service '\(name)' is discovered")
        }
        guard let (address, port) = parseEndpointKey(text) else {
            return .error(400, "'\(text.prefix(80))' is not ADDRESS:PORT (write [v6]:PORT for IPv6)")
        }
        let key = endpointKey(address: address, port: port)
        let present = service.instances.contains { endpointKey(address: $0.address, port: $0.port) == key }
        // Clearing an override of an endpoint that left discovery is allowed; setting one is not.
        let clears = change == .state(.ready) || change == .weight(nil)
        guard present || (clears && traffic.effectiveState(service).endpoints[key] != nil) else {
            return .error(404, "service '\(name)' has no endpoint \(key); see switchyard endpoint status \(name)")
        }
        do {
            let next = try traffic.perform(
                .endpoint(key, change), service: service, expectedRevision: body.revision,
                who: recordedWho(tokenName: request.tokenName, sent: body.who ?? request.headers["x-switchyard-who"]), why: body.why ?? "")
            recordChange("\(name) rev \(next.revision): \(next.history.last?.action ?? "endpoint changed") by \(next.history.last?.who ?? "?")")
            return .json(EndpointChangeAnswer(service: name, endpoint: key, override: next.endpoints[key], state: next, replica: traffic.replicaID))
        } catch {
            return trafficFailureAnswer(error)
        }
    }

    // MARK: Reads

    private func endpointsAnswer(only: String?) -> AdminResponse {
        guard let traffic else { return .error(503, "starting") }
        let (catalog, table) = state.withLock { ($0.catalog, $0.server?.currentTable) }
        if let only, !catalog.services.contains(where: { $0.name == only }) {
            return .error(404, "no service '\(only)' is discovered")
        }
        var services: [ServiceEndpointsView] = []
        for service in catalog.services where only == nil || service.name == only {
            let stored = traffic.effectiveState(service)
            let routed = table?.services.first { $0.name == service.name }
            var views: [EndpointView] = []
            var seen = Set<String>()
            for instance in service.instances {
                let key = endpointKey(address: instance.address, port: instance.port)
                guard seen.insert(key).inserted else { continue }
                let override = stored.endpoints[key]
                let endpoint = routed?.endpoints.first { $0.address == instance.address && $0.port == instance.port }
                views.append(EndpointView(
                    endpoint: key, track: instance.track, present: true,
                    state: override?.state.rawValue ?? (instance.drain ? "drain" : "ready"),
                    discovered_weight: instance.weight, override_weight: override?.weight,
                    effective_weight: endpoint?.effectiveWeight, health: endpoint?.health, ejected: endpoint?.ejected))
            }
            for (key, override) in stored.endpoints.sorted(by: { $0.key < $1.key }) where !seen.contains(key) {
                views.append(EndpointView(endpoint: key, track: nil, present: false, state: override.state.rawValue, override_weight: override.weight))
            }
            services.append(ServiceEndpointsView(service: service.name, revision: stored.revision, endpoints: views))
        }
        return .json(EndpointsAnswer(replica: traffic.replicaID, services: services))
    }
}
