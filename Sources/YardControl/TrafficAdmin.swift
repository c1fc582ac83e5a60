// The traffic half of the admin API: flips, canaries, gates and replicas (endpoint
// overrides and drains are in EndpointAdmin.swift), on top
// of `TrafficControl`, plus the runtime's wiring of the state store and the per-track
// window. Every write needs the bearer token when one is configured (`AdminGuard` checks
// it, and every other door, before these handlers run); errors are JSON bodies with 400,
// 404, 409, 412 or 503.

import Foundation
import YardIO
import YardModel
import YardProxy

extension AdminResponse {
    /// `{"error": message}` with `status`.
    static func error(_ status: Int, _ message: String, extra: [String: String] = [:]) -> AdminResponse {
        var body = extra
        body["error"] = message
        return .json(body, status: status)
    }
}

// MARK: - Request bodies (shared with the CLI)

/// The body of `POST /services/NAME/flip` and `/canary`; every field is optional.
public struct TrafficChangeRequest: Codable, Sendable {
    public var to: String?
    public var action: String?
    public var percent: Double?
    public var track: String?
    public var revision: Int64?
    public var who: String?
    public var why: String?
    public var gate: GateRequest?

    public init(to: String? = nil, action: String? = nil, revision: Int64? = nil, who: String? = nil, why: String? = nil) {
        self.to = to
        self.action = action
        self.revision = revision
        self.who = who
        self.why = why
    }
}

/// A gate in a request: what `canary step` checks before moving (nil fields: defaults).
public struct GateRequest: Codable, Sendable {
    public var max_error_rate_increase: Double?
    public var max_p99_increase_percent: Double?
    public var p99_floor_ms: Double?
    public var min_requests: UInt64?
    public var window_seconds: Double?

    public init(min_requests: UInt64? = nil, window_seconds: Double? = nil) {
        self.min_requests = min_requests
        self.window_seconds = window_seconds
    }

    /// The gate from `GET /services/NAME/gate`'s query (`window` is the window's seconds);
    /// a value that is not a number, or out of range, is refused naming the parameter.
    init(query: [String: String]) throws(AdminRequestError) {
        func number(_ key: String) throws(AdminRequestError) -> Double? {
            guard let text = query[key] else { return nil }
            guard let value = Double(text) else { throw AdminRequestError(400, "'\(key)' must be a number, not '\(text.prefix(40))'") }
            return value
        }
        max_error_rate_increase = try number("max_error_rate_increase")
        max_p99_increase_percent = try number("max_p99_increase_percent")
        p99_floor_ms = try number("p99_floor_ms")
        window_seconds = try number("window")
        if let text = query["min_requests"] {
            guard let value = UInt64(text) else { throw AdminRequestError(400, "'min_requests' must be a whole number ≥ 0, not '\(text.prefix(40))'") }
            min_requests = value
        }
        if let problem = invalidField { throw AdminRequestError(400, problem) }
    }

    /// Why a field is out of range (nil: all are usable): every number finite, the
    /// thresholds from 0 to 1e6, the window from 1 s to a day.
    public var invalidField: String? {
        let thresholds: [(String, Double?)] = [
            ("max_error_rate_increase", max_error_rate_increase), ("max_p99_increase_percent", max_p99_increase_percent),
            ("p99_floor_ms", p99_floor_ms),
        ]
        for (name, value) in thresholds {
            if let value, !(value.isFinite && value >= 0 && value <= 1e6) { return "'\(name)' must be a number from 0 to 1000000, not \(value)" }
        }
        if let window = window_seconds, !(window.isFinite && window >= 1 && window <= 86_400) {
            return "'window' must be from 1 to 86400 seconds, not \(window)"
        }
        return nil
    }

    public var policy: GatePolicy {
        var policy = GatePolicy()
        if let v = max_error_rate_increase { policy.maxErrorRateIncrease = v }
        if let v = max_p99_increase_percent { policy.maxP99IncreasePercent = v }
        if let v = p99_floor_ms { policy.p99FloorMs = v }
        if let v = min_requests { policy.minRequests = v }
        return policy
    }
}

// MARK: - Wiring

extension Runtime {
    /// Opens the configured state store and starts watching it (before the first table
    /// is built, so that table already has the stored states).
    func startTraffic(_ config: SwitchyardConfig) throws -> TrafficControl {
        let store: TrafficStore
        do {
            store = try TrafficStores.make(config.stateStore)
        } catch {
            throw ConfigError(file: config.sourcePath ?? "config", line: nil, key: "state_store", message: error.description)
        }
        let replicaID = config.stateStore.replicaID ?? Self.defaultReplicaID()
        let control = TrafficControl(
            store: store, replicaID: replicaID, ttl: .seconds(config.stateStore.replicaTTLSeconds),
            describeSelf: { [weak self] in
                guard let self else { return ReplicaSelf(admin: nil, applied: [:], tableVersion: 0) }
                return self.stateSnapshotForReport()
            },
            onChange: { [weak self] _ in self?.republish(reason: .traffic) })
        control.start()
        logger.info("state store: \(store.description); replica \(replicaID)", metadata: ["store": .string(store.description), "replica": .string(replicaID)])
        return control
    }

    private func stateSnapshotForReport() -> ReplicaSelf {
        let (admin, applied, table) = state.withLock { ($0.adminAddress, $0.applied, $0.server?.currentTable) }
        return ReplicaSelf(admin: admin, applied: applied, tableVersion: table?.version ?? 0, windows: table.map(publishedWindows))
    }

    static func defaultReplicaID() -> String {
        var name = [CChar](repeating: 0, count: 256)
        gethostname(&name, 255)
        let host = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return "\(host.isEmpty ? "switchyard" : host)-\(getpid())"
    }

    /// The revision each discovered service's traffic comes from (0: discovery's own).
    static func revisions(_ catalog: ServiceCatalog, _ states: [String: TrafficState]) -> [String: Int64] {
        Dictionary(catalog.services.map { ($0.name, states[$0.name]?.revision ?? 0) }, uniquingKeysWith: { first, _ in first })
    }

    /// Reads the admin token file; a configured file that cannot be read, is empty, is
    /// malformed or may be read by others stops startup (a write API silently left open
    /// would be worse).
    static func loadTokens(_ admin: AdminConfig) throws -> AdminTokens? {
        guard let path = admin.tokenFile else { return nil }
        do throws(AdminTokenFileError) {
            return try AdminTokens.load(path: path)
        } catch {
            throw ConfigError(file: path, line: nil, key: "admin.token_file", message: error.message)
        }
    }

    /// SIGHUP: reads the token file again. A changed token takes effect now; a file that
    /// is now bad keeps the tokens in force, and the log says why.
    func reloadAdminTokens() {
        guard let path = state.withLock({ $0.config?.admin.tokenFile }) else { return }
        do throws(AdminTokenFileError) {
            let tokens = try AdminTokens.load(path: path)
            let changed = adminTokens.withLock { current in
                defer { current = tokens }
                return current != tokens
            }
            if changed { logger.info("admin tokens reloaded from \(path): \(tokens.names.joined(separator: ", "))") }
        } catch {
            logger.error("admin token file not reloaded, the tokens in force stay: \(error.message)")
        }
    }

    /// Samples per-track counters every second for the canary gate.
    func startWindowSampler() {
        Thread.detachNewThread { [weak self] in
            while let self, !self.isStopping {
                if let server = self.state.withLock({ $0.server }) {
                    self.window.record(table: server.currentTable, metrics: server.collectMetrics(), timeUnix: Date().timeIntervalSince1970)
                }
                pause(milliseconds: 1000)
            }
        }
    }

    var isStopping: Bool { state.withLock { $0.stopping } }
}

// MARK: - Requests

extension Runtime {
    /// Answers the traffic routes, or nil when the path is not one of them.
    func handleTraffic(_ request: AdminRequest) -> AdminResponse? {
        let parts = request.path.split(separator: "/").map(String.init)
        if let answer = handleEndpoints(request, parts: parts) { return answer }
        switch (request.method, parts.first) {
        case ("GET", "replicas") where parts.count == 1:
            return replicasAnswer()
        case (_, "services") where parts.count >= 2:
            let name = parts[1].removingPercentEncoding ?? parts[1]
            let verb = parts.count > 2 ? parts[2] : nil
            switch (request.method, verb) {
            case ("GET", nil): return serviceAnswer(name)
            case ("GET", "gate"): return gateAnswer(name, query: request.query)
            case ("POST", "flip"?), ("POST", "canary"?):
                return change(name, verb: verb ?? "", request: request)
            case ("POST", _), ("PUT", _), ("DELETE", _):
                return .error(404, "no such action '\(verb ?? "")' for a service; use flip, canary or endpoints/ADDRESS:PORT")
            default:
                return nil
            }
        default:
            return nil
        }
    }

    private func discovered(_ name: String) -> ServiceDefinition? {
        state.withLock { $0.catalog.services.first { $0.name == name } }
    }

    // MARK: Writes

    private func change(_ name: String, verb: String, request: AdminRequest) -> AdminResponse {
        guard let traffic else { return .error(503, "starting") }
        let body: TrafficChangeRequest
        switch request.json {
        case .trafficChange(let decoded): body = decoded
        case .invalid(let message): return .error(400, message)
        case .none, .drain: body = TrafficChangeRequest()
        }
        guard let service = discovered(name) else {
            return .error(404, "no service '\(name)' is discovered")
        }
        let action: TrafficAction
        if verb == "flip" {
            action = .flip(to: body.to)
        } else {
            switch body.action ?? "" {
            case "set":
                guard let percent = body.percent, percent >= 0, percent <= 100 else {
                    return .error(400, "canary set needs 'percent' from 0 to 100")
                }
                let permille = Int((percent * 10).rounded())
                guard abs(Double(permille) / 10 - percent) < 1e-9 else { return .error(400, "\(percent) is finer than 0.1 %") }
                action = .setCanary(track: body.track, permille: permille)
            case "step": action = .step
            case "promote": action = .promote
            case "abort": action = .abort
            default: return .error(400, "canary needs 'action': set, step, promote or abort")
            }
        }
        // `step` goes on only if the canary's traffic since its last change holds the gate.
        var verdict: GateVerdict?
        if case .step = action, let gate = body.gate {
            let current = traffic.effectiveState(service)
            if let canaryTrack = current.canaryTrack, current.canaryPermille > 0, let stable = current.activeTrack {
                let sinceChange = Date().timeIntervalSince1970 - (current.history.last?.timeUnix ?? 0)
                if let refusal = gate.invalidField { return .error(400, refusal) }
                let seconds = min(gate.window_seconds ?? 60, max(1, sinceChange))
                let result = evaluateGate(name, canaryTrack: canaryTrack, stableTrack: stable, seconds: seconds, policy: gate.policy)
                verdict = result
                if !result.passed {
                    return .json(GateRefusal(error: "the gate failed; canary \(canaryTrack) stays at \(formatPermille(current.canaryPermille))", gate: result, state: current), status: 412)
                }
            }
        }
        do {
            let next = try traffic.perform(
                action, service: service, expectedRevision: body.revision,
                who: recordedWho(tokenName: request.tokenName, sent: body.who ?? request.headers["x-switchyard-who"]), why: body.why ?? "")
            recordChange("\(name) rev \(next.revision): \(next.history.last?.action ?? "changed") by \(next.history.last?.who ?? "?")")
            return .json(ChangeAnswer(service: name, state: next, gate: verdict, replica: traffic.replicaID))
        } catch {
            return trafficFailureAnswer(error)
        }
    }

    /// The answer to a change the store or the state refused.
    func trafficFailureAnswer(_ error: TrafficFailure) -> AdminResponse {
        switch error {
        case .unknownService(let text): return .error(404, text)
        case .invalid(let text): return .error(400, text)
        case .storeUnavailable(let text): return .error(503, text)
        case .refused(let text): return .error(409, text)
        case .conflict(let expected, let current):
            return .json(ConflictAnswer(
                error: "stale revision: you expected \(expected), the store has \(current.revision) (\(current.history.last.map { "last change: \($0.action) by \($0.who)" } ?? "")); read it again and retry",
                state: current), status: 409)
        }
    }

    // MARK: Reads

    private func serviceAnswer(_ name: String) -> AdminResponse {
        guard let traffic, let service = discovered(name) else { return .error(404, "no service '\(name)' is discovered") }
        let current = traffic.effectiveState(service)
        let (tracks, covered) = window.stats(service: name, seconds: 60)
        return .json(ServiceAnswer(
            service: name, state: current, source: current.revision > 0 ? "store" : "discovery", tracks: service.tracks,
            window: ServiceAnswer.Window(seconds: covered, tracks: tracks.mapValues { TrackSummary($0, bucketBoundsMs: LatencyBuckets.upperBoundsMs) }),
            store: traffic.status))
    }

    private func gateAnswer(_ name: String, query: [String: String]) -> AdminResponse {
        guard let traffic, let service = discovered(name) else { return .error(404, "no service '\(name)' is discovered") }
        let current = traffic.effectiveState(service)
        guard let canaryTrack = query["canary"] ?? current.canaryTrack, let stable = query["stable"] ?? current.activeTrack else {
            return .error(400, "service '\(name)' has no canary; name the tracks with ?canary=TRACK&stable=TRACK")
        }
        let gate: GateRequest
        do throws(AdminRequestError) {
            gate = try GateRequest(query: query)
        } catch {
            return .error(400, error.message)
        }
        let policy = gate.policy
        let seconds = gate.window_seconds ?? 60
        return .json(evaluateGate(name, canaryTrack: canaryTrack, stableTrack: stable, seconds: seconds, policy: policy))
    }

    private func evaluateGate(_ name: String, canaryTrack: String, stableTrack: String, seconds: Double, policy: GatePolicy) -> GateVerdict {
        evaluateFleetGate(name, canaryTrack: canaryTrack, stableTrack: stableTrack, seconds: seconds, policy: policy)
    }

    private func replicasAnswer() -> AdminResponse {
        guard let traffic else { return .error(503, "starting") }
        let (reports, error) = traffic.replicas()
        return .json(ReplicasAnswer(replica: traffic.replicaID, store: traffic.status, replicas: reports, error: error))
    }
}

/// Compares two byte strings in time that depends only on their lengths, so a client
/// cannot find the token byte by byte from response times.
func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    var difference = UInt8(truncatingIfNeeded: a.count ^ b.count)
    let n = max(a.count, b.count)
    for i in 0..<n {
        let x = i < a.count ? a[i] : 0
        let y = i < b.count ? b[i] : 0
        difference |= x ^ y
    }
    return difference == 0 && a.count == b.count
}
