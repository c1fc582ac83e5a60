// The runtime's half of the fleet-wide canary gate: what this replica publishes in its
// report (its per-track windows), and the gate that sums them over every live replica
// (YardModel/FleetGate.swift has the arithmetic).

import Foundation
import YardModel
import YardProxy

extension Runtime {
    /// This replica's windows for every service with a canary, for its report.
    func publishedWindows(_ table: RoutingTable) -> [String: [PublishedWindow]] {
        var published: [String: [PublishedWindow]] = [:]
        for service in table.services where service.canary != nil {
            var windows: [PublishedWindow] = []
            for span in PublishedWindow.spansSeconds {
                let (tracks, covered) = window.stats(service: service.name, seconds: span)
                windows.append(PublishedWindow(seconds: covered, tracks: tracks))
                // The samples go back no further: a longer span would repeat this one.
                if covered < span - 1 { break }
            }
            published[service.name] = windows
        }
        return published
    }

    /// The gate over this replica's traffic of the last `seconds` plus every other live
    /// replica's published window that covers them. A store that cannot be read leaves
    /// this replica's figures alone, and the verdict says so.
    func evaluateFleetGate(_ name: String, canaryTrack: String, stableTrack: String, seconds: Double, policy: GatePolicy) -> GateVerdict {
        // A fresh sample, so the window ends now rather than up to a second ago.
        if let server = state.withLock({ $0.server }) {
            window.record(table: server.currentTable, metrics: server.collectMetrics(), timeUnix: Date().timeIntervalSince1970)
        }
        let (tracks, covered) = window.stats(service: name, seconds: seconds)
        let me = traffic?.replicaID ?? "this replica"
        var fleet = [ReplicaTrackStats(replica: me, windowSeconds: covered, reportedUnix: nil, tracks: tracks)]
        var storeError: String?
        if let traffic {
            let (reports, error) = traffic.replicas()
            storeError = error
            for report in reports where report.id != me {
                let published = report.windows?[name].flatMap { PublishedWindow.pick($0, seconds: seconds) }
                fleet.append(ReplicaTrackStats(
                    replica: report.id, windowSeconds: published?.seconds ?? 0, reportedUnix: report.reportedUnix,
                    tracks: published?.tracks ?? [:]))
            }
        }
        var verdict = policy.evaluate(fleet: fleet, canaryTrack: canaryTrack, stableTrack: stableTrack, bucketBoundsMs: LatencyBuckets.upperBoundsMs)
        if let storeError {
            verdict.passed = false
            verdict.reasons.append("the other replicas' figures could not be read (\(storeError)); the gate does not judge part of the fleet")
        }
        return verdict
    }
}
