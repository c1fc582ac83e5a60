#if canImport(Glibc)
import Glibc
#endif
import YardBalancing
import YardHTTP
import YardIO
import YardModel

/// One service's balancing state inside one worker.
///
/// A class so the algorithm's value (which holds arrays) is mutated in place through a
/// reference, shared by the requests and tunnels of the service. The algorithm is reached
/// only through the `Balancer` protocol (`BalancingAlgorithm` dispatches to the one the
/// service chose). Threading: owned by one worker.
final class ServiceBalancer {
    /// The service this state was built for; a new table with the same service name and
    /// endpoint list carries the state over (so slow-start weight steps do not restart the
    /// rotation).
    var service: Service
    let kind: YardModel.BalancerKind
    /// True for the state that balances the canary track's endpoints.
    let isCanary: Bool
    var algorithm: BalancingAlgorithm
    /// The track decision (override, sticky key, canary share); see `TrafficSplit`.
    var split = TrafficSplit(canaryPermille: 0)
    /// Draws the points of clients given a sticky-canary cookie (StickyCookies.swift).
    var stickyRandom = SplitMix64(seed: monotonicNanoseconds() ^ UInt64(truncatingIfNeeded: getpid()) << 32)
    /// Balancing state over the canary track's endpoints, when the service has a canary.
    var canaryState: ServiceBalancer?

    /// The endpoints this state picks from.
    var endpoints: [Endpoint] { isCanary ? service.canaryEndpoints : service.activeEndpoints }

    /// The weights the algorithm balances with: effective weights, or in panic mode (every
    /// endpoint unhealthy, all used anyway) the configured ones.
    var balancingWeights: [Int] {
        if service.panicking && !isCanary { return endpoints.map { max($0.weight, 1) * 100 } }
        return endpoints.map(\.effectiveWeight)
    }

    init(service: Service, canary: Bool = false) {
        self.service = service
        self.kind = service.balancer
        self.isCanary = canary
        self.algorithm = .moving
        split = TrafficSplit(canaryPermille: service.canaryPermille)
        if !canary { installCanary(service) }
        let weights = balancingWeights
        switch kind {
        case .roundRobin: algorithm = .roundRobin(SmoothWeightedRoundRobin(weights: weights))
        case .leastConnections: algorithm = .leastConnections(LeastConnections(weights: weights))
        case .p2cEWMA: algorithm = .p2cEWMA(PowerOfTwoChoicesEWMA(weights: weights))
        case .consistentHash: algorithm = .consistentHash(Self.maglev(for: endpoints))
        }
    }

    /// Sets up (or clears) the canary state and the split for `service`.
    func installCanary(_ service: Service) {
        let permille = service.canaryPermille
        if permille > 0 {
            split.update(canaryPermille: permille, slowStartMs: service.health.slowStartMs, now: monotonicMilliseconds())
            if let canaryState, canaryState.canCarry(to: service) {
                canaryState.carry(to: service)
            } else {
                canaryState = ServiceBalancer(service: service, canary: true)
            }
        } else {
            split.update(canaryPermille: 0)
            canaryState = nil
        }
    }

    /// Whether this state can serve `next` (same algorithm, same endpoints in the same order).
    func canCarry(to next: Service) -> Bool {
        let mine = isCanary ? service.canaryEndpoints : service.activeEndpoints
        let theirs = isCanary ? next.canaryEndpoints : next.activeEndpoints
        return next.name == service.name && next.balancer == kind && next.panicking == service.panicking
            && theirs.map(\.poolKey) == mine.map(\.poolKey)
    }

    /// Moves to `next` (same endpoints, maybe new weights).
    func carry(to next: Service) {
        service = next
        if !isCanary { installCanary(next) }
        // The Maglev table is keyed by the endpoints and never loses one (its weights have
        // a floor of 1; health excludes at lookup): it is rebuilt rather than reweighted.
        if kind == .consistentHash {
            algorithm = .consistentHash(Self.maglev(for: endpoints))
        } else {
            algorithm.update(weights: balancingWeights)
        }
    }

    private static func maglev(for endpoints: [Endpoint]) -> MaglevTable {
        let keys = endpoints.map { endpoint in
            // Keyed by address:port, so every replica of the proxy builds the same table.
            HashKey.hash("\(endpoint.address):\(endpoint.port)")
        }
        return MaglevTable(endpointKeys: keys, weights: endpoints.map { max($0.effectiveWeight, 1) })
    }

    /// The index (into `service.activeEndpoints`) for one request.
    func pick(excluding: UInt64, hash: UInt64) -> Int? {
        algorithm.pick(PickContext(excluding: excluding, now: algorithm.measuresLatency ? monotonicNanoseconds() : 0, hash: hash))
    }

    /// The balancer of the track a request or tunnel is on: the canary's when it was split
    /// to the canary, or when the active track has no endpoint; else `top` itself.
    static func track(of top: ServiceBalancer, onCanary: Bool) -> ServiceBalancer {
        if let canary = top.canaryState, !canary.endpoints.isEmpty, onCanary || top.endpoints.isEmpty { return canary }
        return top
    }

    /// The endpoints a pick must skip: those tried already, unless every one was (then all
    /// may be tried again rather than fail).
    static func excluding(tried: UInt64, of count: Int) -> UInt64 {
        count <= 64 && tried.nonzeroBitCount >= count ? 0 : tried
    }

    /// `index` was picked: it counts as tried, and its exchange has started.
    func picked(_ index: Int, tried: inout UInt64) {
        if index >= 0 && index < 64 { tried |= 1 << UInt64(truncatingIfNeeded: index) }
        started(index)
    }

    func started(_ index: Int) {
        algorithm.started(index)
    }

    /// What was sent to endpoint `index` finished; `startNanos` 0 (a tunnel) measures no
    /// latency.
    func finished(_ index: Int, startNanos: UInt64) {
        guard startNanos != 0, algorithm.measuresLatency else { return algorithm.finished(index) }
        let now = monotonicNanoseconds()
        algorithm.finished(index, latencyNanos: now &- startNanos, now: now)
    }
}

extension Worker {
    /// Rebuilds per-service balancer state for a new table, carrying over what still fits.
    func adoptBalancers(_ newTable: RoutingTable) {
        var byName: [String: ServiceBalancer] = [:]
        for balancer in balancers { byName[balancer.service.name] = balancer }
        balancers = newTable.services.map { service in
            if let old = byName[service.name], old.canCarry(to: service) {
                old.carry(to: service)
                return old
            }
            let fresh = ServiceBalancer(service: service)
            // New endpoints, same service: a canary ramp in progress goes on.
            if let old = byName[service.name] { fresh.split = old.split; fresh.installCanary(service) }
            return fresh
        }
    }

    /// Chooses the endpoint for the client's current request, skipping endpoints this
    /// request already tried. Nil when none is eligible.
    func chooseEndpoint(_ service: Service, for c: ClientConnection) -> Endpoint? {
        guard !service.activeEndpoints.isEmpty || !service.canaryEndpoints.isEmpty else { return nil }
        guard service.index < balancers.count, balancers[service.index].service === service else {
            // A retry of a request that started on an older table: plain rotation.
            let endpoints = service.activeEndpoints.isEmpty ? service.canaryEndpoints : service.activeEndpoints
            c.exchange.balancerIndex = -1
            if service.limits.limited { return claimRotation(c, endpoints, start: c.exchange.attempts, service: service) }
            return endpoints[c.exchange.attempts % endpoints.count]
        }
        let top = balancers[service.index]
        let pinned = c.exchange.overrideTrack >= 0 && c.exchange.overrideTrack < service.trackEndpoints.count
        // The track is chosen once per request; retries stay on it.
        if !c.exchange.trackDecided {
            c.exchange.trackDecided = true
            let decision = top.split.decide(
                override: pinned ? .track(c.exchange.overrideTrack) : .absent, stickyPoint: c.exchange.stickyPoint,
                activeHasEndpoints: !top.endpoints.isEmpty, now: now)
            c.exchange.onCanary = decision.track == .canary
            if c.exchange.assignsStickyCookie && !pinned { assignStickyCookie(c, top) }
        }
        if pinned {
            // Pinned by the override header: rotate over that track's endpoints.
            let endpoints = service.trackEndpoints[c.exchange.overrideTrack].endpoints
            guard !endpoints.isEmpty else { return nil }
            overrideRotation &+= 1
            c.exchange.balancerIndex = -1
            if service.limits.limited { return claimRotation(c, endpoints, start: overrideRotation, service: service) }
            return endpoints[overrideRotation % endpoints.count]
        }
        let balancer = ServiceBalancer.track(of: top, onCanary: c.exchange.onCanary)
        let endpoints = balancer.endpoints
        guard !endpoints.isEmpty else { return nil }
        let excluding = ServiceBalancer.excluding(tried: c.exchange.triedEndpoints, of: endpoints.count)
        guard let index = service.limits.limited ? claimPick(c, balancer, endpoints, excluding: excluding, service: service)
            : balancer.pick(excluding: excluding, hash: c.exchange.hashKey) else { return nil }
        balancer.picked(index, tried: &c.exchange.triedEndpoints)
        if balancer.algorithm.measuresLatency { c.exchange.attemptStartNanos = monotonicNanoseconds() }
        c.exchange.balancer = balancer
        c.exchange.balancerIndex = index
        return endpoints[index]
    }

    /// The track named by the service's override header (index into
    /// `Service.trackEndpoints`), or -1 when absent, unknown, or the client's network is not
    /// allowed to use it.
    func overrideTrack(_ c: ClientConnection, service: Service, base: UnsafeRawBufferPointer) -> Int {
        // Only a service with two or more tracks has anything to pin (and the header scan
        // is skipped on every other request).
        guard service.trackEndpoints.count > 1, let rule = service.trackOverride, !service.overrideHeader.isEmpty else { return -1 }
        guard let value = headerValue(c, named: service.overrideHeader, base: base), !value.isEmpty else { return -1 }
        if !rule.allow.isEmpty {
            let allowed = c.peerBytes.withUnsafeBytes { peer in rule.allow.contains { $0.contains(peer) } }
            guard allowed else { return -1 }
        }
        for (index, entry) in service.trackEndpoints.enumerated() where entry.track.count == value.count {
            if entry.track.withUnsafeBytes({ memcmp($0.baseAddress!, value.baseAddress!, value.count) == 0 }) { return index }
        }
        return -1
    }

    /// The client's sticky point in [0, 1000), or -1 when the canary is not sticky or the
    /// request has no key. Computed at dispatch, while the head is buffered.
    func stickyPoint(_ c: ClientConnection, service: Service) -> Int {
        guard let sticky = service.canary?.sticky, service.canaryPermille > 0 else { return -1 }
        if service.canary?.stickyCookie != nil { return signedStickyPoint(c, service: service) }
        let base = c.inBuf.readable
        let key: UnsafeRawBufferPointer?
        switch sticky {
        case .header:
            key = headerValue(c, named: service.stickyKeyName, base: base)
        case .cookie:
            key = headerValue(c, named: HeaderName.cookie, base: base).flatMap { cookieValue($0, named: service.stickyKeyName) }
        }
        guard let key, !key.isEmpty else { return -1 }
        return TrafficSplit.stickyPoint(key: key)
    }

    /// Ends the client's claim on its endpoint (least-connections counts, latency for EWMA).
    func releaseEndpoint(_ c: ClientConnection) {
        if c.hold.claim != nil || c.hold.ticket != 0 || c.hold.refused { releaseHold(c) }
        guard let balancer = c.exchange.balancer, c.exchange.balancerIndex >= 0 else { return }
        balancer.finished(c.exchange.balancerIndex, startNanos: c.exchange.attemptStartNanos)
        c.exchange.balancer = nil
        c.exchange.balancerIndex = -1
    }

    /// The consistent-hash key of the current request: a header's value, a cookie's value,
    /// or the client address. The head must still be in the client's buffer (dispatch
    /// computes it once; retries reuse it).
    func requestHash(_ c: ClientConnection, source: HashSource) -> UInt64 {
        let base = c.inBuf.readable
        switch source {
        case .sourceAddress:
            return c.peerText.withUnsafeBytes { HashKey.hash($0) }
        case .header:
            if let value = headerValue(c, named: route(c)?.hashKeyName ?? [], base: base) { return HashKey.hash(value) }
        case .cookie:
            if let cookies = headerValue(c, named: HeaderName.cookie, base: base),
               let value = cookieValue(cookies, named: route(c)?.hashKeyName ?? []) {
                return HashKey.hash(value)
            }
        }
        // No key in this request: fall back to the client address.
        return c.peerText.withUnsafeBytes { HashKey.hash($0) }
    }

    /// The service whose request the client carries (for its precomputed key names).
    private func route(_ c: ClientConnection) -> Service? { c.exchange.route?.service }

    /// The value of the first header whose name equals `wanted` (lower-case bytes).
    func headerValue(_ c: ClientConnection, named wanted: [UInt8], base: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer? {
        for i in 0..<c.head.headerCount {
            let field = c.fields[i]
            let bytes = field.name.bytes(in: base)
            guard bytes.count == wanted.count else { continue }
            var same = true
            for j in 0..<wanted.count where bytes[j] | 0x20 != wanted[j] | 0x20 { same = false; break }
            if same { return field.value.bytes(in: base) }
        }
        return nil
    }

    func cookieValue(_ header: UnsafeRawBufferPointer, named wanted: [UInt8]) -> UnsafeRawBufferPointer? {
        var i = 0
        while i < header.count {
            while i < header.count && (header[i] == UInt8(ascii: " ") || header[i] == UInt8(ascii: ";")) { i += 1 }
            let start = i
            while i < header.count && header[i] != UInt8(ascii: "=") && header[i] != UInt8(ascii: ";") { i += 1 }
            let nameEnd = i
            guard i < header.count, header[i] == UInt8(ascii: "=") else { continue }
            i += 1
            let valueStart = i
            while i < header.count && header[i] != UInt8(ascii: ";") { i += 1 }
            if nameEnd - start == wanted.count && (0..<wanted.count).allSatisfy({ header[start + $0] == wanted[$0] }) {
                return UnsafeRawBufferPointer(rebasing: header[valueStart..<i])
            }
        }
        return nil
    }
}

/// Header names the request path looks up, as lower-case bytes built once.
enum HeaderName {
    static let cookie: [UInt8] = Array("cookie".utf8)
}
