// What the Consul provider reads (GET /v1/health/service/NAME and /v1/catalog/services),
// the pure mapping from health entries to instances, and the blocking-query index
// rules. Field names follow Consul's HTTP API reference (health, catalog,
// features/blocking).

import YardModel

// MARK: - HTTP API values

/// One entry of `GET /v1/health/service/NAME`.
struct ConsulHealthEntry: Decodable, Sendable, Equatable {
    var node: Node
    var service: Service
    var checks: [Check]?

    struct Node: Decodable, Sendable, Equatable {
        var node: String
        var address: String
        enum CodingKeys: String, CodingKey { case node = "Node", address = "Address" }
    }

    struct Service: Decodable, Sendable, Equatable {
        var id: String
        var service: String
        var tags: [String]?
        /// Empty means "the node's address".
        var address: String?
        var port: UInt16
        var meta: [String: String]?
        var weights: Weights?
        enum CodingKeys: String, CodingKey {
            case id = "ID", service = "Service", tags = "Tags", address = "Address", port = "Port"
            case meta = "Meta", weights = "Weights"
        }
    }

    struct Weights: Decodable, Sendable, Equatable {
        var passing: Int?
        var warning: Int?
        enum CodingKeys: String, CodingKey { case passing = "Passing", warning = "Warning" }
    }

    struct Check: Decodable, Sendable, Equatable {
        var status: String
        enum CodingKeys: String, CodingKey { case status = "Status" }
    }

    enum CodingKeys: String, CodingKey { case node = "Node", service = "Service", checks = "Checks" }
}

// MARK: - Mapping

enum ConsulCatalog {
    /// The health entries of service `name` as labelled instances, plus one message per
    /// entry whose tags or metadata are malformed (that entry is skipped).
    ///
    /// Tags: `track-green` or `track=green` set the track, `weight=3` the weight (else
    /// `Weights.Passing`, or `Weights.Warning` while a check warns). `Meta` becomes the
    /// instance's labels, so `switchyard.rule.host`, `switchyard.rule.path` and
    /// `switchyard.health.path` work as on containers. A critical entry is kept unless
    /// the query asked for passing ones only: Switchyard's own checks then decide.
    static func instances(_ entries: [ConsulHealthEntry], service name: String) -> (items: [LabeledInstance], problems: [LabelProblem]) {
        var items: [LabeledInstance] = []
        var problems: [LabelProblem] = []
        for entry in entries {
            let service = entry.service
            let owner = "Consul service \(name) instance \(service.id) on node \(entry.node.node)"
            var labels = service.meta ?? [:]
            let tags = service.tags ?? []
            for tag in tags {
                if tag.hasPrefix("track-") || tag.hasPrefix("track=") {
                    labels[SwitchyardLabels.track] = String(tag.dropFirst(6))
                } else if tag.hasPrefix("weight=") {
                    labels[SwitchyardLabels.weight] = String(tag.dropFirst(7))
                }
            }
            if labels[SwitchyardLabels.weight] == nil, let weights = service.weights {
                let warning = entry.checks?.contains { $0.status == "warning" } ?? false
                if let weight = warning ? weights.warning : weights.passing { labels[SwitchyardLabels.weight] = String(weight) }
            }
            labels[SwitchyardLabels.service] = nil
            let address = (service.address ?? "").isEmpty ? entry.node.address : service.address
            let result = SwitchyardLabels.read(
                labels: labels, owner: owner, address: address, defaultPort: service.port,
                serviceName: name, id: service.id, tags: tags
            )
            switch result {
            case .success(let item?): items.append(item)
            case .success(nil): break
            case .failure(let problem): problems.append(problem)
            }
        }
        return (items, problems)
    }
}

// MARK: - Blocking queries

/// The `index` a blocking query sends next, from the `X-Consul-Index` answers, following
/// Consul's rules (features/blocking, "Implementation details"):
/// - an index that goes *backwards* (a snapshot restore, a server that lost its state,
///   the key holding the highest index deleted) resets to 0, so the next query answers
///   at once with the current data instead of blocking on a future that never comes;
/// - an index of 0 is treated as 1, so a query never busy-loops on a non-blocking 0;
/// - a missing header is treated like 0.
///
/// Threading: a value owned by one watch loop.
struct BlockingIndex: Sendable, Equatable {
    /// What the next query sends as `?index=`; 0 means "answer at once".
    private(set) var next: UInt64 = 0

    enum Outcome: Sendable, Equatable { case advanced, unchanged, wentBackwards }

    /// Records an answer's index and says how it moved.
    mutating func accept(_ header: UInt64?) -> Outcome {
        let received = max(1, header ?? 0)
        if received < next {
            next = 0
            return .wentBackwards
        }
        let outcome: Outcome = received == next ? .unchanged : .advanced
        next = received
        return outcome
    }

    /// After a failed query: ask again from scratch.
    mutating func reset() { next = 0 }
}
