// `switchyard status --check`: the replica's condition as one verdict, for a container
// HEALTHCHECK or a CI gate. Pure: takes the replica's own documents, returns the problems.

/// The verdict of `status --check` (`--json` prints it).
public struct StatusCheck: Codable, Sendable, Equatable {
    /// True when `problems` is empty.
    public var healthy: Bool
    /// One line per failing thing, naming it and why.
    public var problems: [String]
    /// What was checked, when healthy: "1 service(s), 1 provider(s), state store file …".
    public var checked: String

    /// Every service has a routable endpoint on its active track (or, without an active
    /// track, anywhere); every discovery provider's last attempt succeeded; the state store
    /// is reachable; and every live replica (`/replicas`) applied each service's stored
    /// revision.
    public init(status: StatusDocument, replicas: ReplicasAnswer?) {
        var problems: [String] = []
        for service in status.services {
            if let active = service.activeTrack {
                let endpoints = service.tracks.first { $0.name == active }?.endpoints ?? []
                let routable = endpoints.filter { $0.effectiveWeight > 0 }.count
                if routable == 0 {
                    problems.append("service \(service.name): no healthy endpoint on its active track \(active) (\(endpoints.count) endpoint(s): \(Self.states(endpoints)))")
                }
            } else if service.activeEndpoints == 0 {
                let endpoints = service.tracks.flatMap(\.endpoints)
                problems.append("service \(service.name): no healthy endpoint (\(endpoints.count) endpoint(s): \(Self.states(endpoints)))")
            }
        }
        for provider in status.providers where !provider.healthy {
            problems.append("provider \(provider.name): failing: \(provider.lastError ?? "no snapshot"); serving its last snapshot")
        }
        if !status.stateStore.reachable {
            problems.append("state store \(status.stateStore.kind): unreachable: \(status.stateStore.error ?? "unknown error")")
        }
        if let replicas {
            if let error = replicas.error {
                problems.append("replicas: cannot be listed: \(error)")
            }
            for service in status.services where service.revision > 0 {
                for replica in replicas.replicas {
                    let applied = replica.applied[service.name] ?? 0
                    if applied < service.revision {
                        problems.append("replica \(replica.id): serves revision \(applied) of \(service.name), the store has \(service.revision)")
                    }
                }
            }
        }
        self.problems = problems
        healthy = problems.isEmpty
        checked = "\(status.services.count) service(s) with a healthy endpoint on the active track, "
            + "\(status.providers.count) provider(s) up, state store \(status.stateStore.kind) reachable"
            + (replicas.map { ", \($0.replicas.count) replica(s) on the stored revisions" } ?? "")
    }

    private static func states(_ endpoints: [StatusDocument.EndpointDoc]) -> String {
        guard !endpoints.isEmpty else { return "none discovered" }
        return endpoints.map { endpoint in
            var state = endpoint.health
            if endpoint.ejected { state += ", ejected" }
            if endpoint.draining { state += ", draining" }
            return "\(endpoint.id) \(state)"
        }.joined(separator: "; ")
    }
}
