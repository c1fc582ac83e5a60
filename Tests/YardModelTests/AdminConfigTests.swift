import Testing
@testable import YardModel

/// The admin section's door keys: allowed_hosts and max_connections.
@Suite struct AdminConfigKeys {
    @Test func allowedHostsAndMaxConnectionsAreReadWithDefaults() throws {
        let plain = try ConfigLoader.loadConfig(text: "listeners:\n  - address: :8080\nadmin:\n  address: 127.0.0.1:9901\n", path: "/etc/yard/s.yml")
        #expect(plain.admin.allowedHosts == [])
        #expect(plain.admin.maxConnections == 64)
        let text = "listeners:\n  - address: :8080\nadmin:\n  address: 127.0.0.1:9901\n  allowed_hosts: [Switchyard.Internal, 'ops:9901']\n  max_connections: 8\n"
        let config = try ConfigLoader.loadConfig(text: text, path: "/etc/yard/s.yml")
        #expect(config.admin.allowedHosts == ["switchyard.internal", "ops:9901"])
        #expect(config.admin.maxConnections == 8)
    }

    @Test func badValuesNameTheKey() {
        for bad in ["max_connections: 0", "max_connections: 100000", "allowed_hosts: ['a b']", "allowed_hosts: ['http://x/']"] {
            let text = "listeners:\n  - address: :8080\nadmin:\n  address: 127.0.0.1:9901\n  \(bad)\n"
            #expect(throws: ConfigError.self, "\(bad)") { try ConfigLoader.loadConfig(text: text, path: "/etc/yard/s.yml") }
        }
    }
}
