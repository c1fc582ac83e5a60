// The dictionary a Stencil template renders against, built from a `TemplateInput`.
//
// Every value is a plain String, Int, Bool, array or [String: Any] so templates can
// compare, sort and print it; a missing value is an absent key (Stencil prints nothing
// and `{% if %}` is false), never an `Optional` that would print as "nil".
// docs/templates.md lists every key.

import YardModel

/// Builds the template context. Pure.
///
/// Threading: the result is a non-Sendable dictionary; build it on the thread that renders.
public enum TemplateContext {
    // MARK: Root

    /// `services`, `instances` (every service's, in catalog order), `env`.
    public static func make(_ input: TemplateInput) -> [String: Any] {
        let services = input.catalog.services.map { service(for: $0, health: input.health) }
        let instances = services.flatMap { ($0["instances"] as? [[String: Any]]) ?? [] }
        return ["services": services, "instances": instances, "env": input.environment]
    }

    // MARK: Services

    static func service(for definition: ServiceDefinition, health: [String: String]) -> [String: Any] {
        let instances = definition.instances.map { instance(for: $0, service: definition.name, health: health) }
        var trackNames: [String] = []
        for instance in definition.instances {
            if let track = instance.track, !trackNames.contains(track) { trackNames.append(track) }
        }
        let tracks: [[String: Any]] = trackNames.map { name in
            [
                "name": name,
                "active": definition.activeTrack == name,
                "canary": definition.canary?.track == name,
                "instances": instances.filter { ($0["track"] as? String) == name },
            ]
        }
        var traffic: [String: Any] = [:]
        if let active = definition.activeTrack { traffic["active"] = active }
        if let canary = definition.canary {
            traffic["canary_track"] = canary.track
            traffic["canary_percent"] = percentText(permille: canary.permille)
            if let sticky = canary.sticky { traffic["canary_sticky"] = stickyText(sticky) }
        }
        var result: [String: Any] = [
            "name": definition.name,
            "instances": instances,
            "tracks": tracks,
            "traffic": traffic,
            "routes": definition.routes.map { route -> [String: Any] in
                var fields: [String: Any] = ["path": route.pathPrefix]
                if let host = route.host { fields["host"] = host }
                return fields
            },
            "balancer": definition.balancer.rawValue,
            "health": healthFields(definition.health),
            "retries": [
                "attempts": definition.retry.attempts,
                "budget_percent": definition.retry.budgetPercent,
                "per_try_timeout": "\(definition.retry.perTryTimeoutMs)ms",
            ] as [String: Any],
        ]
        if definition.limits.limited {
            var limits: [String: Any] = ["max_connections": definition.limits.maxConnections, "max_pending": definition.limits.maxPending]
            if definition.limits.queueTimeoutMs > 0 { limits["queue_timeout"] = "\(definition.limits.queueTimeoutMs)ms" }
            result["limits"] = limits
        }
        if let hashOn = definition.hashOn { result["hash_on"] = hashText(hashOn) }
        if let override = definition.trackOverride {
            result["override"] = ["header": override.header, "allow": override.allow.map(networkText)] as [String: Any]
        }
        return result
    }

    private static func healthFields(_ policy: HealthPolicy) -> [String: Any] {
        var fields: [String: Any] = [
            "type": policy.kind.rawValue, "method": policy.method, "path": policy.path,
            "expect": "\(policy.expectedStatus.lowerBound)-\(policy.expectedStatus.upperBound)",
            "interval": "\(policy.intervalMs)ms", "timeout": "\(policy.timeoutMs)ms", "jitter": policy.jitterPercent,
            "rise": policy.rise, "fall": policy.fall, "initial": policy.initial.rawValue,
            "consecutive_failures": policy.consecutiveFailures, "base_ejection": "\(policy.baseEjectionMs)ms",
            "max_ejection": "\(policy.maxEjectionMs)ms", "max_ejected_percent": policy.maxEjectedPercent,
            "slow_start": "\(policy.slowStartMs)ms", "panic_mode": policy.panicMode,
            "grpc_service": policy.grpcService, "outlier_interval": "\(policy.outlierIntervalMs)ms",
            "success_rate_stdev_factor": policy.successRateStdevFactor, "success_rate_minimum_hosts": policy.successRateMinimumHosts,
            "success_rate_request_volume": policy.successRateRequestVolume, "latency_p99_factor": policy.latencyP99Factor,
            "latency_minimum_hosts": policy.latencyMinimumHosts, "latency_request_volume": policy.latencyRequestVolume,
        ]
        if let host = policy.host { fields["host"] = host }
        return fields
    }

    // MARK: Instances

    static func instance(for definition: InstanceDefinition, service: String, health: [String: String]) -> [String: Any] {
        let key = TemplateInput.healthKey(service: service, address: definition.address, port: definition.port)
        var fields: [String: Any] = [
            "service": service,
            "address": definition.address,
            "port": Int(definition.port),
            "endpoint": endpointText(address: definition.address, port: definition.port),
            "weight": definition.weight,
            "labels": definition.labels,
            "tags": definition.tags,
            "drain": definition.drain,
            "health": health[key] ?? "unknown",
        ]
        if let track = definition.track { fields["track"] = track }
        if let id = definition.id { fields["id"] = id }
        return fields
    }

    // MARK: Text forms

    /// `127.0.0.1:9101`, `[::1]:9101`: what nginx, HAProxy and curl accept.
    public static func endpointText(address: String, port: UInt16) -> String {
        address.contains(":") ? "[\(address)]:\(port)" : "\(address):\(port)"
    }

    /// 100 ‰ → "10", 5 ‰ → "0.5": the shortest text services.yml reads back exactly.
    static func percentText(permille: Int) -> String {
        permille % 10 == 0 ? "\(permille / 10)" : "\(permille / 10).\(permille % 10)"
    }

    static func stickyText(_ sticky: StickySource) -> String {
        switch sticky {
        case .cookie(let name): "cookie:\(name)"
        case .header(let name): "header:\(name)"
        }
    }

    static func hashText(_ source: HashSource) -> String {
        switch source {
        case .header(let name): "header:\(name)"
        case .cookie(let name): "cookie:\(name)"
        case .sourceAddress: "source"
        }
    }

    /// `10.0.0.0/8`, `fd00:0:0:0:0:0:0:0/8` (IPv6 uncompressed: valid and unambiguous).
    static func networkText(_ network: Network) -> String {
        if network.bytes.count == 4 {
            return network.bytes.map(String.init).joined(separator: ".") + "/\(network.prefix)"
        }
        var groups: [String] = []
        var index = 0
        while index + 1 < network.bytes.count {
            groups.append(String(UInt16(network.bytes[index]) << 8 | UInt16(network.bytes[index + 1]), radix: 16))
            index += 2
        }
        return groups.joined(separator: ":") + "/\(network.prefix)"
    }
}
