// Configuration names of the balancing policies.

import Testing
import YardBalancing

@Suite struct BalancerKindTests {
    @Test func parsesEveryConfigurationName() {
        #expect(BalancerKind(configName: "round_robin") == .roundRobin)
        #expect(BalancerKind(configName: "least_conn") == .leastConnections)
        #expect(BalancerKind(configName: "p2c_ewma") == .p2cEWMA)
        #expect(BalancerKind(configName: "consistent_hash") == .consistentHash)
    }

    @Test func rejectsOtherSpellings() {
        for name in ["", "roundrobin", "Round_Robin", "least_connections", "p2c", "maglev", " round_robin"] {
            #expect(BalancerKind(configName: name) == nil, "\(name)")
        }
    }

    @Test func namesRoundTrip() {
        for kind in BalancerKind.allCases {
            #expect(BalancerKind(configName: kind.configName) == kind)
        }
        #expect(BalancerKind.allConfigNames == ["round_robin", "least_conn", "p2c_ewma", "consistent_hash"])
    }
}
