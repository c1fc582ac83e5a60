// Micro-benchmark of one pick per algorithm: prints the cost, asserts only correctness (timing
// depends on the machine and on the build configuration). Real figures:
//   swift test -c release -Xswiftc -enable-testing --filter BalancingBenchmark
// The peer in the same run is a plain `counter % n` round robin, the floor of any balancer.

import Testing
import YardBalancing

@Suite struct BalancingBenchmarkTests {
    static let iterations = 1_000_000
    static let endpoints = 10
    static let weights = [5, 3, 1, 1, 2, 4, 1, 1, 3, 2]

    static func nanosPerCall(_ body: () -> Int) -> (ns: Double, checksum: Int) {
        var checksum = 0
        let elapsed = ContinuousClock().measure { checksum = body() }
        let ns = Double(elapsed.components.seconds) * 1e9 + Double(elapsed.components.attoseconds) / 1e9
        return (ns / Double(iterations), checksum)
    }

    static func report(_ name: String, _ result: (ns: Double, checksum: Int), peer: Double) {
        let ns = (result.ns * 10).rounded() / 10
        let ratio = (result.ns / peer * 10).rounded() / 10
        print("\(name): \(ns) ns per pick (\(ratio)× counter % n), \(endpoints) endpoints")
    }

    @Test func printsNanosecondsPerPick() {
        let n = Self.endpoints
        var counter = 0
        let peer = Self.nanosPerCall {
            var sum = 0
            for _ in 0 ..< Self.iterations { counter &+= 1; sum &+= counter % n }
            return sum
        }
        print("peer counter % n: \((peer.ns * 10).rounded() / 10) ns per pick")

        var roundRobin = SmoothWeightedRoundRobin(weights: Self.weights)
        let rr = Self.nanosPerCall {
            var sum = 0
            for _ in 0 ..< Self.iterations { sum &+= roundRobin.pick()! }
            return sum
        }
        Self.report("SmoothWeightedRoundRobin", rr, peer: peer.ns)

        var leastConnections = LeastConnections(weights: Self.weights)
        let inFlight: [Int32] = [3, 1, 0, 2, 5, 1, 0, 2, 2, 1]
        let lc = inFlight.withUnsafeBufferPointer { inFlight in
            Self.nanosPerCall {
                var sum = 0
                for _ in 0 ..< Self.iterations { sum &+= leastConnections.pick(inFlight: inFlight)! }
                return sum
            }
        }
        Self.report("LeastConnections", lc, peer: peer.ns)

        var p2c = PowerOfTwoChoicesEWMA(weights: Self.weights)
        for i in 0 ..< n { p2c.observe(endpoint: i, latencyNanos: UInt64(200_000 + i * 10_000), now: 1_000) }
        let p2cResult = Self.nanosPerCall {
            var sum = 0
            var now: UInt64 = 2_000
            for _ in 0 ..< Self.iterations { now &+= 1_000; sum &+= p2c.pick(now: now)! }
            return sum
        }
        Self.report("PowerOfTwoChoicesEWMA", p2cResult, peer: peer.ns)

        let maglev = MaglevTable(endpointKeys: (0 ..< n).map { HashKey.hash("10.0.0.\($0):8080") }, weights: Self.weights)
        let maglevResult = Self.nanosPerCall {
            var sum = 0
            var key: UInt64 = 0
            for _ in 0 ..< Self.iterations { key &+= 0x9E37_79B9_7F4A_7C15; sum &+= maglev.lookup(key)! }
            return sum
        }
        Self.report("MaglevTable.lookup", maglevResult, peer: peer.ns)

        let cookie = Array("session=8f14e45fceea167a5a36dedd4bea2543".utf8)
        let hashResult = cookie.withUnsafeBytes { bytes in
            Self.nanosPerCall {
                var sum = 0
                for i in 0 ..< Self.iterations { sum &+= Int(truncatingIfNeeded: HashKey.hash(bytes, seed: UInt64(i))) }
                return sum
            }
        }
        print("HashKey.hash: \((hashResult.ns * 10).rounded() / 10) ns per \(cookie.count)-byte key")

        #expect(rr.checksum > 0 && lc.checksum > 0 && p2cResult.checksum > 0 && maglevResult.checksum > 0 && peer.checksum > 0)
    }
}
