import Testing
@testable import YardModel

/// The health keys of issue 18 in a services file: outlier rules, gRPC checks.
@Suite struct HealthPolicyConfigTests {
    func health(_ yaml: String, upstream: String = "") throws(ConfigError) -> HealthPolicy {
        let text = "services:\n  shop:\n\(upstream)    health: {\(yaml)}\n    instances: [{address: 127.0.0.1, port: 80}]\n"
        return try ConfigLoader.loadCatalog(text: text, path: "s.yml").services[0].health
    }

    func error(_ yaml: String, upstream: String = "") -> ConfigError? {
        configError({ () throws(ConfigError) in _ = try health(yaml, upstream: upstream) })
    }

    @Test func outlierRulesDefaultToEnvoysSuccessRateAndNoLatencyRule() throws {
        let policy = try health("type: tcp")
        #expect(policy.outlierIntervalMs == 10_000)
        #expect(policy.successRateStdevFactor == 1.9 && policy.successRateMinimumHosts == 5 && policy.successRateRequestVolume == 100)
        #expect(policy.latencyP99Factor == 0)
    }

    @Test func outlierKeysAreRead() throws {
        let policy = try health("""
            type: tcp, outlier_interval: 2s, success_rate_stdev_factor: 1.5, success_rate_minimum_hosts: 3,
            success_rate_request_volume: 20, latency_p99_factor: 3.5, latency_minimum_hosts: 4, latency_request_volume: 50
            """)
        #expect(policy.outlierIntervalMs == 2_000)
        #expect(policy.successRateStdevFactor == 1.5 && policy.successRateMinimumHosts == 3 && policy.successRateRequestVolume == 20)
        #expect(policy.latencyP99Factor == 3.5 && policy.latencyMinimumHosts == 4 && policy.latencyRequestVolume == 50)
        #expect(try health("success_rate_stdev_factor: 0, type: tcp").detectsOutliers == false)
    }

    @Test func badOutlierValuesAreRefusedWithAdvice() {
        #expect(error("success_rate_stdev_factor: lots")?.message.contains("expected deviations") == true)
        #expect(error("success_rate_stdev_factor: .nan")?.key == "services.shop.health.success_rate_stdev_factor")
        #expect(error("success_rate_stdev_factor: -1")?.message.contains("from 0 to 100") == true)
        #expect(error("latency_p99_factor: 0.5")?.message.contains("no slower than the median") == true)
        #expect(error("latency_minimum_hosts: 1")?.message.contains("out of range") == true)
        #expect(error("success_rate_request_volume: 0")?.message.contains("out of range") == true)
    }

    @Test func grpcCheckNeedsAnHTTP2UpstreamAndTakesAServiceName() throws {
        let policy = try health("type: grpc, grpc_service: shop.Cart", upstream: "    upstream: {protocol: h2c}\n")
        #expect(policy.kind == .grpc && policy.grpcService == "shop.Cart")
        #expect(error("type: grpc")?.message.contains("gRPC checks speak HTTP/2") == true)
        #expect(error("type: http", upstream: "    upstream: {protocol: h2c}\n")?.message.contains("use 'type: grpc'") == true)
        #expect(error("type: grpc, grpc_service: \"a\\nb\"", upstream: "    upstream: {protocol: h2c}\n") != nil)
    }
}
