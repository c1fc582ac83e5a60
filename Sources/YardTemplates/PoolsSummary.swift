// One line per service and endpoint: the form in which `switchyard render --dry-run`
// compares rendered pools with the running table.

import YardModel

/// A comparable text form of pools. Pure.
///
/// Threading: stateless.
public enum PoolsSummary {
    /// One endpoint as the summary lists it.
    public struct Endpoint: Sendable, Equatable {
        public var address: String
        public var port: Int
        public var track: String?
        public var weight: Int
        public var draining: Bool

        public init(address: String, port: Int, track: String?, weight: Int, draining: Bool) {
            self.address = address
            self.port = port
            self.track = track
            self.weight = weight
            self.draining = draining
        }
    }

    /// One service as the summary lists it.
    public struct Service: Sendable, Equatable {
        public var name: String
        public var activeTrack: String?
        /// "green 10%" or nil.
        public var canary: String?
        public var endpoints: [Endpoint]

        public init(name: String, activeTrack: String?, canary: String?, endpoints: [Endpoint]) {
            self.name = name
            self.activeTrack = activeTrack
            self.canary = canary
            self.endpoints = endpoints
        }
    }

    public static func services(of catalog: ServiceCatalog) -> [Service] {
        catalog.services.map { service in
            Service(
                name: service.name, activeTrack: service.activeTrack,
                canary: service.canary.map { "\($0.track) \(TemplateContext.percentText(permille: $0.permille))%" },
                endpoints: service.instances.map {
                    Endpoint(address: $0.address, port: Int($0.port), track: $0.track, weight: $0.weight, draining: $0.drain)
                })
        }
    }

    /// Services by name, endpoints by address and port, so order alone is never a difference.
    public static func text(_ services: [Service]) -> String {
        var out = ""
        for service in services.sorted(by: { $0.name < $1.name }) {
            out += "service \(service.name)"
            if let active = service.activeTrack { out += " active=\(active)" }
            if let canary = service.canary { out += " canary=\(canary)" }
            out += "\n"
            let endpoints = service.endpoints.sorted { ($0.address, $0.port) < ($1.address, $1.port) }
            for endpoint in endpoints {
                out += "  \(TemplateContext.endpointText(address: endpoint.address, port: UInt16(clamping: endpoint.port)))"
                out += " track=\(endpoint.track ?? "-") weight=\(endpoint.weight)\(endpoint.draining ? " draining" : "")\n"
            }
        }
        return out
    }
}
