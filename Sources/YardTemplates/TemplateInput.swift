// What a template sees, as Sendable values: the catalog, each endpoint's health, and the
// environment values the config allows. `TemplateContext` turns it into Stencil's
// dictionary at render time.

#if canImport(Glibc)
import Glibc
#endif
import YardModel

/// Everything a render reads. Pure data, so a render is a function of it.
///
/// Threading: a value; build it on the control plane and render anywhere.
public struct TemplateInput: Sendable, Equatable {
    public var catalog: ServiceCatalog
    /// Health by `TemplateInput.healthKey`: "healthy", "unhealthy", "ejected" or "unknown".
    /// An endpoint without an entry is "unknown" (not checked yet, or rendered offline).
    public var health: [String: String]
    /// Environment values the config allows (`templates.env`), by name.
    public var environment: [String: String]

    public init(catalog: ServiceCatalog, health: [String: String] = [:], environment: [String: String] = [:]) {
        self.catalog = catalog
        self.health = health
        self.environment = environment
    }

    /// The key of `health` for one endpoint of one service.
    public static func healthKey(service: String, address: String, port: UInt16) -> String {
        "\(service) \(address) \(port)"
    }

    /// The allowed names' values from the process environment; unset names are left out,
    /// names not in `allowed` are never read.
    ///
    /// Threading: reads the process environment; call where nothing calls setenv.
    public static func environment(allowed: [String]) -> [String: String] {
        var values: [String: String] = [:]
        for name in allowed {
            if let value = getenv(name) { values[name] = String(cString: value) }
        }
        return values
    }
}
