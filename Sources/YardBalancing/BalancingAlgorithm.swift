/// A service's balancing algorithm, whichever the service chose, as one `Balancer`: the proxy
/// calls the protocol's operations on it, and this is the one place that dispatches them to
/// the algorithm — statically, by a switch over the cases, never through `any Balancer`.
///
/// While an operation runs, the algorithm's value is moved out of the enum (the `.moving`
/// case holds its place), so its arrays are mutated in place: mutating a payload the enum
/// still held would copy them on every pick.
///
/// Threading: a value owned by one worker, like the algorithms.
public enum BalancingAlgorithm: Balancer, Sendable {
    case roundRobin(SmoothWeightedRoundRobin)
    case leastConnections(LeastConnections)
    case p2cEWMA(PowerOfTwoChoicesEWMA)
    case consistentHash(MaglevTable)
    /// Only while an operation runs.
    case moving

    public var endpointCount: Int {
        switch self {
        case .roundRobin(let algorithm): algorithm.endpointCount
        case .leastConnections(let algorithm): algorithm.endpointCount
        case .p2cEWMA(let algorithm): algorithm.endpointCount
        case .consistentHash(let algorithm): algorithm.endpointCount
        case .moving: 0
        }
    }

    public var measuresLatency: Bool {
        switch self {
        case .roundRobin(let algorithm): algorithm.measuresLatency
        case .leastConnections(let algorithm): algorithm.measuresLatency
        case .p2cEWMA(let algorithm): algorithm.measuresLatency
        case .consistentHash(let algorithm): algorithm.measuresLatency
        case .moving: false
        }
    }

    public mutating func update(weights: [Int]) { perform(Update(weights: weights)) }

    public mutating func pick(_ context: PickContext) -> Int? { perform(Pick(context: context)) }

    public mutating func started(_ endpoint: Int) { perform(Started(endpoint: endpoint)) }

    public mutating func finished(_ endpoint: Int, latencyNanos: UInt64, now: UInt64) {
        perform(Finished(endpoint: endpoint, latency: (latencyNanos, now)))
    }

    public mutating func finished(_ endpoint: Int) { perform(Finished(endpoint: endpoint, latency: nil)) }

    // MARK: Dispatch

    /// Runs `operation` on the algorithm, moved out of `self` while it runs.
    private mutating func perform<O: Operation>(_ operation: O) -> O.Result {
        switch self {
        case .roundRobin(var algorithm):
            self = .moving
            defer { self = .roundRobin(algorithm) }
            return operation.run(&algorithm)
        case .leastConnections(var algorithm):
            self = .moving
            defer { self = .leastConnections(algorithm) }
            return operation.run(&algorithm)
        case .p2cEWMA(var algorithm):
            self = .moving
            defer { self = .p2cEWMA(algorithm) }
            return operation.run(&algorithm)
        case .consistentHash(var algorithm):
            self = .moving
            defer { self = .consistentHash(algorithm) }
            return operation.run(&algorithm)
        case .moving:
            return operation.nothing
        }
    }
}

/// One of `Balancer`'s operations, run on whichever algorithm `BalancingAlgorithm` holds.
private protocol Operation {
    associatedtype Result
    func run<B: Balancer>(_ algorithm: inout B) -> Result
    /// The answer when there is no algorithm (never, outside an operation).
    var nothing: Result { get }
}

private struct Update: Operation {
    let weights: [Int]
    func run<B: Balancer>(_ algorithm: inout B) { algorithm.update(weights: weights) }
    var nothing: Void { () }
}

private struct Pick: Operation {
    let context: PickContext
    func run<B: Balancer>(_ algorithm: inout B) -> Int? { algorithm.pick(context) }
    var nothing: Int? { nil }
}

private struct Started: Operation {
    let endpoint: Int
    func run<B: Balancer>(_ algorithm: inout B) { algorithm.started(endpoint) }
    var nothing: Void { () }
}

private struct Finished: Operation {
    let endpoint: Int
    let latency: (nanos: UInt64, now: UInt64)?
    func run<B: Balancer>(_ algorithm: inout B) {
        if let latency {
            algorithm.finished(endpoint, latencyNanos: latency.nanos, now: latency.now)
        } else {
            algorithm.finished(endpoint)
        }
    }
    var nothing: Void { () }
}
