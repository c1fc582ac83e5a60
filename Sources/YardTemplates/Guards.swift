// Guards: a change that would empty a pool, or take away too large a share of a
// service's endpoints at once, is held back until the config or `--force` allows it.
// Flapping discovery and half-written registries look exactly like that, and following
// them would turn a discovery hiccup into an outage.

import YardModel

/// One reason a change is held back.
///
/// Threading: a value.
public struct GuardViolation: Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// The service had endpoints and would have none (or would be gone).
        case emptied
        /// More than the allowed share of the service's endpoints would be removed.
        case tooManyRemoved(percent: Int, limit: Int)
    }

    public var service: String
    public var kind: Kind
    /// Endpoints before and after, and how many of the old ones are gone.
    public var before: Int
    public var after: Int
    public var removed: Int

    public init(service: String, kind: Kind, before: Int, after: Int, removed: Int) {
        self.service = service
        self.kind = kind
        self.before = before
        self.after = after
        self.removed = removed
    }

    public var description: String {
        switch kind {
        case .emptied:
            return "service '\(service)' would go from \(before) endpoint(s) to none; allow it with guards.allow_empty or --force"
        case .tooManyRemoved(let percent, let limit):
            return "service '\(service)' would lose \(removed) of \(before) endpoint(s) (\(percent) %, over the \(limit) % limit); allow it with guards.max_removed_percent or --force"
        }
    }
}

/// The guard check. Pure.
///
/// Threading: stateless.
public enum Guards {
    /// What is wrong with going from `running` to `candidate` under `policy`; empty when
    /// the change may go ahead. Endpoints are compared by address and port; a service
    /// absent from `candidate` counts as emptied. New services and added endpoints are
    /// never held back.
    public static func check(running: ServiceCatalog, candidate: ServiceCatalog, policy: GuardPolicy) -> [GuardViolation] {
        let next = Dictionary(candidate.services.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        var violations: [GuardViolation] = []
        for service in running.services where !service.instances.isEmpty {
            let old = Set(service.instances.map(endpointKey))
            let new = Set((next[service.name]?.instances ?? []).map(endpointKey))
            let removed = old.subtracting(new).count
            if new.isEmpty {
                if !policy.allowEmpty {
                    violations.append(GuardViolation(service: service.name, kind: .emptied, before: old.count, after: 0, removed: removed))
                }
                continue
            }
            // Integer arithmetic: 1 of 2 is exactly 50 %, which the default limit allows.
            if removed * 100 > policy.maxRemovedPercent * old.count {
                let percent = (removed * 100 + old.count / 2) / old.count
                violations.append(GuardViolation(
                    service: service.name, kind: .tooManyRemoved(percent: percent, limit: policy.maxRemovedPercent),
                    before: old.count, after: new.count, removed: removed))
            }
        }
        return violations
    }

    private static func endpointKey(_ instance: InstanceDefinition) -> String {
        "\(instance.address.lowercased()) \(instance.port)"
    }
}
