// Per-track traffic over a sliding window, for the canary gate: every second the control
// plane copies the workers' counters (the same path a /metrics scrape takes), sums them
// per service and track, and keeps the samples of the last 15 minutes. A window's numbers
// are the difference between the newest sample and the one taken `window` earlier.

import Foundation
import Synchronization
import YardModel
import YardProxy

/// A ring of per-track counter samples.
///
/// Threading: `record` and `stats` may be called from any thread (a mutex guards the
/// ring; it is touched once a second and per gate query, never on the request path).
public final class TrackWindow: Sendable {
    struct Sample {
        var timeUnix: Double
        /// service -> track -> cumulative counts.
        var tracks: [String: [String: TrackStats]]
    }

    private let samples = Mutex<[Sample]>([])
    private let capacity: Int

    public init(capacity: Int = 900) { self.capacity = capacity }

    /// Sums `metrics` per service and track of `table` and appends the sample.
    public func record(table: RoutingTable, metrics: MetricsSnapshot, timeUnix: Double) {
        var tracks: [String: [String: TrackStats]] = [:]
        for service in table.services {
            var byTrack: [String: TrackStats] = [:]
            for endpoint in service.endpoints {
                let m = metrics.endpoint(endpoint.poolKey)
                byTrack[endpoint.track ?? "default", default: TrackStats()].add(TrackStats(
                    requests: m.requests, serverErrors: m.responsesByClass[4], connectFailures: m.connectFailures,
                    latencyBuckets: m.latencyBuckets))
            }
            tracks[service.name] = byTrack
        }
        samples.withLock { ring in
            ring.append(Sample(timeUnix: timeUnix, tracks: tracks))
            if ring.count > capacity { ring.removeFirst(ring.count - capacity) }
        }
    }

    /// Each track's traffic of `service` over the last `seconds` (as far back as samples
    /// go), and the span actually covered.
    public func stats(service: String, seconds: Double) -> (tracks: [String: TrackStats], coveredSeconds: Double) {
        samples.withLock { ring in
            guard let newest = ring.last else { return ([:], 0) }
            let since = newest.timeUnix - seconds
            // The newest sample at or before the window's start (else the oldest we have).
            let base = ring.last(where: { $0.timeUnix <= since + 0.001 }) ?? ring.first!
            let now = newest.tracks[service] ?? [:]
            let then = base.tracks[service] ?? [:]
            var result: [String: TrackStats] = [:]
            for (track, stats) in now {
                result[track] = then[track].map { stats.subtracting($0) } ?? stats
            }
            return (result, newest.timeUnix - base.timeUnix)
        }
    }
}
