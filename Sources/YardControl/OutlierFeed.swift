// Feeding the data plane's per-endpoint counters to the health checker's outlier rules
// (success rate, latency): once a second, the same copy of the workers' counters that a
// /metrics scrape takes.

import Foundation
import YardHealth
import YardModel
import YardProxy

/// Reads the workers' counters about once a second and hands them to
/// `HealthChecker.recordTraffic`, which judges each service every `outlier_interval`.
///
/// Threading: one detached thread per runtime; it reads the server's counters through the
/// workers' inboxes (never touches a loop's state) and stops when `stopping` says so. It
/// collects nothing while no service uses an outlier rule.
enum OutlierFeed {
    static func start(checker: HealthChecker, server: ProxyServer, stopping: @escaping @Sendable () -> Bool) {
        Thread.detachNewThread {
            while !stopping() {
                if checker.wantsTraffic {
                    checker.recordTraffic(traffic(table: server.currentTable, metrics: server.collectMetrics()),
                                          latencyBoundsMs: LatencyBuckets.upperBoundsMs)
                }
                pause(milliseconds: 1_000)
            }
        }
    }

    /// Each endpoint's cumulative counters: exchanges (answers and connect failures),
    /// failures (5xx, the proxy's own 502/504 included, and connect failures), latency.
    static func traffic(table: RoutingTable, metrics: MetricsSnapshot) -> [Int: EndpointTraffic] {
        var traffic: [Int: EndpointTraffic] = [:]
        for service in table.services {
            for endpoint in service.endpoints where traffic[endpoint.poolKey] == nil {
                let m = metrics.endpoint(endpoint.poolKey)
                traffic[endpoint.poolKey] = EndpointTraffic(
                    requests: m.requests &+ m.connectFailures, failures: m.responsesByClass[4] &+ m.connectFailures,
                    latencyBuckets: m.latencyBuckets)
            }
        }
        return traffic
    }
}
