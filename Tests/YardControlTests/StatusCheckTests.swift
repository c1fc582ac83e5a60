import Foundation
import Testing
import YardControl

/// `status --check`'s verdict from a replica's own documents: one line per failing thing.
@Suite struct StatusCheckVerdicts {
    func status(activeTrack: String = "blue", blueWeight: Int = 100, providerHealthy: Bool = true, storeReachable: Bool = true, revision: Int = 3) throws -> StatusDocument {
        let text = """
            {"generated_at": "2026-12-07T05:35:41.315Z", "recent_changes": [], "table_version": 4, "uptime_seconds": 9, "version": "0.1.0",
             "providers": [{"name": "etcd", "source": "http://10.0.0.2:2379", "healthy": \(providerHealthy), "updates": 3, "errors": 1,
                            "rejected": {}\(providerHealthy ? "" : #", "error": "connection refused", "stale_since": "2026-12-07T05:35:30.000Z""#)}],
             "state_store": {"kind": "etcd http://10.0.0.2:2379", "reachable": \(storeReachable)\(storeReachable ? "" : #", "error": "timed out""#)},
             "services": [{"name": "shop", "active_track": "\(activeTrack)", "balancer": "round_robin", "panic": false, "active_endpoints": 1,
                           "revision": \(revision), "tracks": [
               {"name": "blue", "active": true, "share_percent": 100, "requests": 0, "errors_5xx": 0, "endpoints": [
                 {"id": "shop/10.0.1.1:80", "address": "10.0.1.1", "port": 80, "track": "blue", "health": "\(blueWeight > 0 ? "healthy" : "unhealthy")",
                  "ejected": false, "draining": false, "weight": 1, "effective_weight": \(blueWeight), "requests": 0, "errors_5xx": 0, "active_requests": 0}]},
               {"name": "green", "active": false, "share_percent": 0, "requests": 0, "errors_5xx": 0, "endpoints": [
                 {"id": "shop/10.0.1.2:80", "address": "10.0.1.2", "port": 80, "track": "green", "health": "healthy",
                  "ejected": false, "draining": false, "weight": 1, "effective_weight": 100, "requests": 0, "errors_5xx": 0, "active_requests": 0}]}]}]}
            """
        return try AdminJSON.decode(StatusDocument.self, from: Array(text.utf8))
    }

    func replicas(_ applied: [String: Int]) throws -> ReplicasAnswer {
        let reports = applied.sorted { $0.key < $1.key }.map { id, revision in
            #"{"id": "\#(id)", "pid": 1, "applied": {"shop": \#(revision)}, "table_version": 4, "store_reachable": true, "reported_at": "2026-12-07T05:35:41.000Z", "started_at": "2026-12-07T05:00:00.000Z"}"#
        }
        let text = #"{"replica": "edge-1", "store": {"kind": "etcd", "reachable": true}, "replicas": [\#(reports.joined(separator: ","))]}"#
        return try AdminJSON.decode(ReplicasAnswer.self, from: Array(text.utf8))
    }

    @Test func aHealthyFleetPasses() throws {
        let verdict = StatusCheck(status: try status(), replicas: try replicas(["edge-1": 3, "edge-2": 3]))
        #expect(verdict.healthy)
        #expect(verdict.problems.isEmpty)
        #expect(verdict.checked.contains("2 replica(s)"))
    }

    @Test func eachFailingThingIsOneLineNamingIt() throws {
        let verdict = StatusCheck(
            status: try status(blueWeight: 0, providerHealthy: false, storeReachable: false),
            replicas: try replicas(["edge-1": 3, "edge-2": 2]))
        #expect(!verdict.healthy)
        #expect(verdict.problems == [
            "service shop: no healthy endpoint on its active track blue (1 endpoint(s): shop/10.0.1.1:80 unhealthy)",
            "provider etcd: failing: connection refused; serving its last snapshot",
            "state store etcd http://10.0.0.2:2379: unreachable: timed out",
            "replica edge-2: serves revision 2 of shop, the store has 3",
        ])
    }

    @Test func aHealthyOtherTrackDoesNotMakeUpForTheActiveOne() throws {
        #expect(!StatusCheck(status: try status(blueWeight: 0), replicas: nil).healthy)
        #expect(StatusCheck(status: try status(activeTrack: "green", blueWeight: 0), replicas: nil).healthy)
    }
}
