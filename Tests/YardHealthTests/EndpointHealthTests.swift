import Foundation
import Testing
import YardHealth
import YardModel

@Suite struct EndpointHealthTests {
    func policy(rise: Int = 2, fall: Int = 3, initial: HealthPolicy.InitialState = .afterFirstPass) -> HealthPolicy {
        var policy = HealthPolicy()
        policy.kind = .http
        policy.rise = rise
        policy.fall = fall
        policy.initial = initial
        return policy
    }

    @Test func newEndpointIsRoutableOnlyAfterItsFirstPass() {
        let p = policy()
        var health = EndpointHealth(policy: p, now: 0)
        #expect(!health.isRoutable(now: 0))
        #expect(record(&health, passed: true, policy: p, now: 10))
        #expect(health.isRoutable(now: 10))
    }

    @Test func healthyEndpointFallsAfterFallConsecutiveFailures() {
        let p = policy(fall: 3)
        var health = EndpointHealth(policy: p, now: 0)
        _ = health.recordCheck(passed: true, policy: p, now: 0)
        #expect(!record(&health, passed: false, policy: p, now: 1))
        #expect(!record(&health, passed: false, policy: p, now: 2))
        // A pass in between resets the count (HAProxy semantics).
        #expect(!record(&health, passed: true, policy: p, now: 3))
        #expect(!record(&health, passed: false, policy: p, now: 4))
        #expect(!record(&health, passed: false, policy: p, now: 5))
        #expect(record(&health, passed: false, reason: "status 500", policy: p, now: 6))
        #expect(health.status == .unhealthy)
        #expect(health.lastFailure == "status 500")
    }

    @Test func unhealthyEndpointRisesAfterRiseConsecutivePasses() {
        let p = policy(rise: 2, initial: .unhealthy)
        var health = EndpointHealth(policy: p, now: 0)
        #expect(!record(&health, passed: true, policy: p, now: 1))
        #expect(!health.isRoutable(now: 1))
        #expect(record(&health, passed: true, policy: p, now: 2))
        #expect(health.isRoutable(now: 2))
    }

    @Test func ejectionsGrowAndAreCapped() {
        var p = policy()
        p.baseEjectionMs = 1_000
        p.maxEjectionMs = 5_000
        var health = EndpointHealth(policy: p, now: 0)
        _ = health.recordCheck(passed: true, policy: p, now: 0)
        #expect(eject(&health, policy: p, now: 0) == 1_000)
        #expect(!health.isRoutable(now: 500))
        #expect(endEjection(&health, now: 1_000))
        #expect(eject(&health, policy: p, now: 1_000) == 3_000)
        _ = health.endEjectionIfDue(now: 3_000)
        #expect(eject(&health, policy: p, now: 3_000) == 7_000)
        _ = health.endEjectionIfDue(now: 7_000)
        #expect(eject(&health, policy: p, now: 7_000) == 12_000)
    }

    @Test func ejectionNeverExceedsTheMaximumShare() {
        #expect(mayEject(ejected: 0, total: 4, maxPercent: 50))
        #expect(mayEject(ejected: 1, total: 4, maxPercent: 50))
        #expect(!mayEject(ejected: 2, total: 4, maxPercent: 50))
        #expect(!mayEject(ejected: 0, total: 1, maxPercent: 50))
        #expect(mayEject(ejected: 0, total: 1, maxPercent: 100))
    }

    @Test func slowStartRampsTheEffectiveWeightOverTheWindow() {
        var p = policy(initial: .healthy)
        p.slowStartMs = 10_000
        var health = EndpointHealth(policy: p, now: 0)
        health.joined(now: 0)
        let weights = stride(from: 0, through: 12_000, by: 2_000).map {
            health.effectiveWeight(configured: 1, policy: p, now: Int64($0))
        }
        #expect(weights.first == 10)
        #expect(weights == weights.sorted())
        #expect(weights[5] == 100 && weights[6] == 100)
        #expect(health.isRamping(policy: p, now: 5_000))
        #expect(!health.isRamping(policy: p, now: 10_000))
    }

    @Test func weightIsZeroWhileUnroutable() {
        let p = policy(initial: .unhealthy)
        let health = EndpointHealth(policy: p, now: 0)
        #expect(health.effectiveWeight(configured: 5, policy: p, now: 0) == 0)
    }
}

@Suite struct TableHealthTests {
    @Test func unhealthyAndDrainingEndpointsGetNoNewRequests() {
        let endpoints = [
            Endpoint(poolKey: 0, address: "127.0.0.1", port: 1, track: nil, weight: 1, service: "s"),
            Endpoint(poolKey: 1, address: "127.0.0.1", port: 2, track: nil, weight: 1, service: "s", effectiveWeight: 0, health: "unhealthy"),
            Endpoint(poolKey: 2, address: "127.0.0.1", port: 3, track: nil, weight: 1, service: "s", draining: true),
        ]
        let service = Service(name: "s", index: 0, activeTrack: nil, endpoints: endpoints)
        #expect(service.activeEndpoints.map(\.port) == [1])
    }

    @Test func panicModeRoutesToAllWhenNoneIsHealthy() {
        var policy = HealthPolicy()
        policy.panicMode = true
        let endpoints = [
            Endpoint(poolKey: 0, address: "127.0.0.1", port: 1, track: nil, weight: 1, service: "s", effectiveWeight: 0, health: "unhealthy"),
            Endpoint(poolKey: 1, address: "127.0.0.1", port: 2, track: nil, weight: 1, service: "s", effectiveWeight: 0, health: "unhealthy"),
        ]
        let panicking = Service(name: "s", index: 0, activeTrack: nil, endpoints: endpoints, health: policy)
        #expect(panicking.activeEndpoints.count == 2 && panicking.panicking)
        let strict = Service(name: "s", index: 0, activeTrack: nil, endpoints: endpoints)
        #expect(strict.activeEndpoints.isEmpty && !strict.panicking)
    }

    @Test func healthSectionParsesWithLineNumberedErrors() throws {
        let text = """
        services:
          shop:
            balancer: least_conn
            health:
              path: /healthz
              interval: 1s
              timeout: 2s
            instances:
              - {address: 127.0.0.1, port: 9001}
        """
        #expect(throws: ConfigError.self) { try ConfigLoader.loadCatalog(text: text, path: "s.yml") }
        do {
            _ = try ConfigLoader.loadCatalog(text: text, path: "s.yml")
        } catch {
            #expect(error.description.contains("s.yml:5"))
            #expect(error.description.contains("timeout"))
        }
        let good = text.replacingOccurrences(of: "timeout: 2s", with: "timeout: 500ms")
        let catalog = try ConfigLoader.loadCatalog(text: good, path: "s.yml")
        let shop = try #require(catalog.services.first)
        #expect(shop.balancer == .leastConnections)
        #expect(shop.health.path == "/healthz" && shop.health.intervalMs == 1_000 && shop.health.kind == .http)
    }
}

// Mutating calls cannot sit inside #expect: these run them outside.
func record(_ health: inout EndpointHealth, passed: Bool, reason: String? = nil, policy: HealthPolicy, now: Int64) -> Bool {
    health.recordCheck(passed: passed, reason: reason, policy: policy, now: now)
}

func eject(_ health: inout EndpointHealth, policy: HealthPolicy, now: Int64) -> Int64 {
    health.eject(policy: policy, now: now)
}

func endEjection(_ health: inout EndpointHealth, now: Int64) -> Bool {
    health.endEjectionIfDue(now: now)
}

@Suite struct PassiveFailureStreakTests {
    @Test func aStreakWithPassiveEjectionOffSaturatesInsteadOfOverflowing() {
        var streak = Int32.max - 1
        for _ in 0..<3 { #expect(!PassiveFailureStreak.record(&streak, failed: true, threshold: 0)) }
        #expect(streak == Int32.max)
    }

    @Test func aStreakReportsAtTheThresholdAndStartsAgain() {
        var streak: Int32 = 0
        #expect(!PassiveFailureStreak.record(&streak, failed: true, threshold: 3))
        #expect(!PassiveFailureStreak.record(&streak, failed: true, threshold: 3))
        #expect(PassiveFailureStreak.record(&streak, failed: true, threshold: 3))
        #expect(streak == 0)
        #expect(!PassiveFailureStreak.record(&streak, failed: true, threshold: 3))
        #expect(!PassiveFailureStreak.record(&streak, failed: false, threshold: 3))
        #expect(streak == 0, "a success ends the streak")
    }

    @Test func aThresholdBeyondInt32StillCountsWithoutTrapping() {
        var streak = Int32.max
        #expect(PassiveFailureStreak.record(&streak, failed: true, threshold: Int.max))
    }
}
