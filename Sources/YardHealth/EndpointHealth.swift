import YardModel

/// The health of one endpoint: active-check counters (rise/fall), passive ejection and
/// the slow-start ramp. A pure state machine: it takes events and a clock value, returns
/// whether the endpoint's routing state changed, and does no I/O.
///
/// Threading: a value; the health checker keeps one per endpoint behind its own lock.
public struct EndpointHealth: Sendable, Equatable {
    public enum Status: String, Sendable, Equatable {
        /// Never checked yet (with `initial: after_first_pass`, not routable).
        case unknown
        case healthy
        case unhealthy
    }

    public private(set) var status: Status
    public private(set) var consecutivePasses = 0
    public private(set) var consecutiveFailures = 0
    /// When the endpoint last became routable (start of its slow-start ramp), ms.
    public private(set) var routableSince: Int64
    /// Passive ejection: routable again at this time (ms); 0 when not ejected.
    public private(set) var ejectedUntil: Int64 = 0
    /// How many times it was ejected (the next ejection lasts longer).
    public private(set) var ejections = 0
    /// Envoy's ejection multiplier for the success-rate and latency rules: +1 per such
    /// ejection, −1 per outlier interval spent routable, so a relapse soon after an
    /// ejection is ejected for longer, and a long healthy run earns the base time again.
    public private(set) var outlierMultiplier = 0
    /// Why the endpoint was last ejected.
    public private(set) var lastEjection: EjectionReason?
    /// Ejections so far, by the rule that ejected (for metrics).
    public private(set) var ejectionsByReason: [EjectionReason: Int] = [:]
    /// Why the last check failed, for status output.
    public private(set) var lastFailure: String?

    public init(policy: HealthPolicy, now: Int64) {
        switch (policy.kind, policy.initial) {
        case (.none, _), (_, .healthy): status = .healthy
        case (_, .afterFirstPass): status = .unknown
        case (_, .unhealthy): status = .unhealthy
        }
        // An endpoint present from the start does not ramp; one that joins later does
        // (the checker passes the join time).
        routableSince = now
    }

    /// Whether new requests may go to the endpoint at `now`.
    public func isRoutable(now: Int64) -> Bool {
        status == .healthy && (ejectedUntil == 0 || now >= ejectedUntil)
    }

    public func isEjected(now: Int64) -> Bool { ejectedUntil != 0 && now < ejectedUntil }

    // MARK: Active checks

    /// Records an active check result. Returns true when routability changed.
    public mutating func recordCheck(passed: Bool, reason: String? = nil, policy: HealthPolicy, now: Int64) -> Bool {
        let before = isRoutable(now: now)
        if passed {
            consecutivePasses += 1
            consecutiveFailures = 0
            switch status {
            case .unknown:
                // First pass: the ramp runs from when the endpoint joined (none for
                // endpoints present at startup).
                status = .healthy
            case .unhealthy where consecutivePasses >= policy.rise:
                status = .healthy
                routableSince = now
            default:
                break
            }
        } else {
            consecutiveFailures += 1
            consecutivePasses = 0
            lastFailure = reason
            switch status {
            case .unknown:
                status = .unhealthy
            case .healthy where consecutiveFailures >= policy.fall:
                status = .unhealthy
            default:
                break
            }
        }
        return before != isRoutable(now: now)
    }

    // MARK: Passive ejection

    /// Ejects the endpoint after consecutive request failures seen by the data plane; the
    /// ejection lasts `baseEjection × 2^(ejections)`, capped. Returns the time it ends.
    public mutating func eject(policy: HealthPolicy, now: Int64) -> Int64 {
        let factor = Int64(1) << Int64(min(ejections, 16))
        let duration = min(Int64(policy.baseEjectionMs) * factor, Int64(policy.maxEjectionMs))
        ejections += 1
        ejectedUntil = now + duration
        lastEjection = .consecutiveFailures
        ejectionsByReason[.consecutiveFailures, default: 0] += 1
        return ejectedUntil
    }

    /// Ejects the endpoint as an outlier of its service (success rate or latency), for
    /// Envoy's time: `base_ejection × multiplier`, the multiplier raised by one first,
    /// capped at `max(base_ejection, max_ejection)`. Returns the time it ends.
    public mutating func ejectAsOutlier(_ reason: EjectionReason, policy: HealthPolicy, now: Int64) -> Int64 {
        if outlierMultiplier < 1_000 { outlierMultiplier += 1 }
        let base = Int64(max(0, policy.baseEjectionMs))
        let cap = max(base, Int64(max(0, policy.maxEjectionMs)))
        ejections += 1
        ejectedUntil = now + min(base * Int64(outlierMultiplier), cap)
        lastEjection = reason
        ejectionsByReason[reason, default: 0] += 1
        return ejectedUntil
    }

    /// One outlier interval passed: a routable endpoint's multiplier decays by one
    /// (Envoy lowers it at every interval the host is not ejected).
    public mutating func outlierIntervalPassed(now: Int64) {
        if outlierMultiplier > 0 && !isEjected(now: now) { outlierMultiplier -= 1 }
    }

    /// Ends an ejection whose time passed; the endpoint ramps again from then. Returns
    /// true if it was ejected.
    public mutating func endEjectionIfDue(now: Int64) -> Bool {
        guard ejectedUntil != 0, now >= ejectedUntil else { return false }
        ejectedUntil = 0
        routableSince = now
        return true
    }

    /// Marks an endpoint that joined after startup so it ramps (slow start) from `now`.
    public mutating func joined(now: Int64) {
        routableSince = now
    }

    // MARK: Slow start

    /// The endpoint's effective weight at `now`: its configured weight, ramped linearly from
    /// 10 % to 100 % over the slow-start window after it became routable (HAProxy's
    /// `slowstart`, applied also to endpoints that join). Weights are scaled by 100 so the
    /// ramp has integer steps; 0 when not routable.
    public func effectiveWeight(configured: Int, policy: HealthPolicy, now: Int64) -> Int {
        guard configured > 0, isRoutable(now: now) else { return 0 }
        let full = configured * 100
        guard policy.slowStartMs > 0 else { return full }
        let elapsed = now - routableSince
        if elapsed >= Int64(policy.slowStartMs) { return full }
        let fraction = 0.1 + 0.9 * Double(max(0, elapsed)) / Double(policy.slowStartMs)
        return max(1, Int(Double(full) * fraction))
    }

    /// Whether the endpoint is still ramping at `now` (its weight will change).
    public func isRamping(policy: HealthPolicy, now: Int64) -> Bool {
        policy.slowStartMs > 0 && isRoutable(now: now) && now - routableSince < Int64(policy.slowStartMs)
    }
}

/// Caps ejections so a bad check cannot empty a pool: true if one more of `total`
/// endpoints may be ejected while `ejected` already are.
public func mayEject(ejected: Int, total: Int, maxPercent: Int) -> Bool {
    guard total > 0 else { return false }
    return (ejected + 1) * 100 <= total * maxPercent
}
