// The etcd provider's key layout, and turning the keys under a prefix into a catalog.
//
//   {prefix}services/{NAME}/instances/{ID}   JSON: {"address": "10.0.0.5", "port": 8080,
//                                            "track": "blue", "weight": 1, "labels": {},
//                                            "tags": [], "drain": false}
//   {prefix}services/{NAME}/settings         JSON, optional: the service keys of
//                                            services.yml (active, health, balancer,
//                                            hash_on, retries, canary, override, routes,
//                                            max_connections, max_pending, queue_timeout)
//
// Values go through the services-file loader (JSON is YAML), so an instance in etcd means
// exactly what it means in services.yml, with the same validation and messages.

import Foundation
import YardModel

/// Builds catalogs from etcd keys, keeping each service's last good definition.
///
/// A key that does not parse (garbage JSON, an unknown field, a port out of range) spoils
/// only its own service: that service keeps the definition it had in the last snapshot
/// (or stays absent if it never had a good one), every other service updates, and the
/// problem is returned, naming the etcd key.
///
/// Threading: a value owned by the provider's watch thread.
struct EtcdCatalog {
    let prefix: String
    /// Each service's definition from the last build in which it parsed.
    private var lastGood: [String: ServiceDefinition] = [:]

    init(prefix: String) {
        self.prefix = prefix
    }

    /// The catalog for `values` (key → value bytes), services sorted by name, and the
    /// problems found (empty when every key parsed).
    mutating func build(_ values: [String: [UInt8]]) -> (catalog: ServiceCatalog, problems: [String]) {
        var settings: [String: (key: String, value: [UInt8])] = [:]
        var instances: [String: [(id: String, key: String, value: [UInt8])]] = [:]
        for (key, value) in values {
            guard key.hasPrefix(prefix) else { continue }
            let parts = key.dropFirst(prefix.count).split(separator: "/", omittingEmptySubsequences: false).map(String.init)
            guard parts.count >= 3, parts[0] == "services", !parts[1].isEmpty else { continue }
            if parts.count == 3, parts[2] == "settings" {
                settings[parts[1]] = (key, value)
            } else if parts.count == 4, parts[2] == "instances", !parts[3].isEmpty {
                instances[parts[1], default: []].append((parts[3], key, value))
            }
        }
        var services: [ServiceDefinition] = []
        var problems: [String] = []
        var good: [String: ServiceDefinition] = [:]
        for name in Set(settings.keys).union(instances.keys).sorted() {
            let members = (instances[name] ?? []).sorted { $0.id < $1.id }
            switch Self.service(name: name, settings: settings[name], instances: members) {
            case .success(let service):
                good[name] = service
                services.append(service)
            case .failure(let problem):
                problems.append(problem.message)
                if let previous = lastGood[name] {
                    good[name] = previous
                    services.append(previous)
                }
            }
        }
        lastGood = good
        return (ServiceCatalog(services: services), problems)
    }

    struct Problem: Error {
        var message: String
    }

    /// One service from its keys, through the services-file loader.
    private static func service(
        name: String, settings: (key: String, value: [UInt8])?, instances: [(id: String, key: String, value: [UInt8])]
    ) -> Result<ServiceDefinition, Problem> {
        var body: [String: Any] = [:]
        if let settings {
            guard let object = json(settings.value) else {
                return .failure(Problem(message: "etcd key \(settings.key): not a JSON object: \(preview(settings.value))"))
            }
            if object["instances"] != nil {
                return .failure(Problem(message: "etcd key \(settings.key): 'instances' does not belong in settings; put each instance under \(settings.key.dropLast("settings".count))instances/ID"))
            }
            body = object
        }
        var list: [[String: Any]] = []
        for instance in instances {
            guard var object = json(instance.value) else {
                return .failure(Problem(message: "etcd key \(instance.key): not a JSON object: \(preview(instance.value))"))
            }
            if object["id"] == nil { object["id"] = instance.id }
            list.append(object)
        }
        body["instances"] = list
        let document: [String: Any] = ["services": [name: body]]
        guard let data = try? JSONSerialization.data(withJSONObject: document, options: [.sortedKeys]) else {
            return .failure(Problem(message: "etcd service \(name): its values cannot be combined into one document"))
        }
        do {
            let catalog = try ConfigLoader.loadCatalog(text: String(decoding: data, as: UTF8.self), path: "etcd")
            guard let service = catalog.services.first else {
                return .failure(Problem(message: "etcd service \(name): no service in its keys"))
            }
            return .success(service)
        } catch {
            return .failure(Problem(message: describe(error, service: name, settingsKey: settings?.key, instanceKeys: instances.map(\.key))))
        }
    }

    /// A loader error rephrased to name the etcd key it came from instead of the combined
    /// document's key path (`services.shop.instances[1].port` → the second instance's key).
    private static func describe(_ error: ConfigError, service: String, settingsKey: String?, instanceKeys: [String]) -> String {
        let path = error.key ?? ""
        let servicePath = "services.\(service)"
        if path.hasPrefix(servicePath + ".instances[") {
            let rest = path.dropFirst(servicePath.count + ".instances[".count)
            if let close = rest.firstIndex(of: "]"), let index = Int(rest[..<close]), instanceKeys.indices.contains(index) {
                let field = rest[rest.index(after: close)...].drop { $0 == "." }
                return "etcd key \(instanceKeys[index]): \(field.isEmpty ? "" : "\(field): ")\(error.message)"
            }
        }
        if path.hasPrefix(servicePath + "."), let settingsKey {
            return "etcd key \(settingsKey): \(path.dropFirst(servicePath.count + 1)): \(error.message)"
        }
        return "etcd service \(service): \(error.message)"
    }

    private static func json(_ bytes: [UInt8]) -> [String: Any]? {
        (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [String: Any]
    }

    private static func preview(_ bytes: [UInt8]) -> String {
        let text = String(decoding: bytes.prefix(60), as: UTF8.self)
        return "'\(text)\(bytes.count > 60 ? "…" : "")'"
    }
}
