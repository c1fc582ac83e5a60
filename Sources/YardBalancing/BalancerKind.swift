// The balancing policies a service can name in its configuration.

/// The balancing policy a service asks for, as spelled in configuration (`balancer: least_conn`).
///
/// Threading: a plain value; read anywhere.
public enum BalancerKind: String, Sendable, CaseIterable {
    /// `round_robin`: smooth weighted round robin (`SmoothWeightedRoundRobin`).
    case roundRobin = "round_robin"
    /// `least_conn`: fewest in-flight requests per unit of weight (`LeastConnections`).
    case leastConnections = "least_conn"
    /// `p2c_ewma`: power of two choices over peak-EWMA latency (`PowerOfTwoChoicesEWMA`).
    case p2cEWMA = "p2c_ewma"
    /// `consistent_hash`: a Maglev table over a request key (`MaglevTable`).
    case consistentHash = "consistent_hash"

    /// Parses the configuration spelling; nil for anything else, so the config loader can
    /// name the key and list `allConfigNames`.
    public init?(configName: String) {
        self.init(rawValue: configName)
    }

    /// The spelling used in configuration files and in `switchyard explain`.
    public var configName: String { rawValue }

    /// Every accepted spelling, for error messages.
    public static var allConfigNames: [String] { allCases.map(\.rawValue) }
}
