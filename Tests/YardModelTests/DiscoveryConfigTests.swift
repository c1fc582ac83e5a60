import Testing
@testable import YardModel

private let listener = "listeners:\n  - name: web\n    address: 127.0.0.1:8080\n"

private func load(_ discovery: String) throws(ConfigError) -> DiscoveryConfig {
    try ConfigLoader.loadConfig(text: listener + discovery, path: "/etc/yard/switchyard.yml").discovery
}

// MARK: - Valid

@Suite struct DiscoveryConfigAcceptsSeveralProviders {
    @Test func theSingleFileFormStaysValid() throws {
        #expect(try load("discovery:\n  provider: file\n  file: s.yml\n") == .file(path: "/etc/yard/s.yml"))
        #expect(try load("") == .file(path: "/etc/yard/services.yml"))
    }

    @Test func aListOfFileEtcdAndDNSProvidersKeepsItsOrderAndSettings() throws {
        let config = try load("""
            discovery:
              quiescence: {min: 50ms, max: 2s}
              providers:
                - {type: file, file: services.yml, poll: 100ms}
                - type: etcd
                  endpoints: [http://127.0.0.1:2379, http://127.0.0.1:2381]
                  prefix: /lb
                  timeout: 2s
                - type: dns
                  server: 127.0.0.1:5353
                  ttl: {min: 500ms, max: 10s}
                  services:
                    web: {name: tasks.web, port: 8080}
                    api:
                      - {srv: _api._tcp.service.consul, track: blue}
                      - {name: api-green.internal, port: 9000, track: green, family: both, weight: 2}

            """)
        #expect(config.quiescenceMinMs == 50 && config.quiescenceMaxMs == 2_000)
        #expect(config.providers.map(\.name) == ["file", "etcd", "dns"])
        #expect(config.providers[0].source == .file(FileSourceConfig(path: "/etc/yard/services.yml", pollIntervalMs: 100)))
        #expect(config.providers[1].source == .etcd(EtcdSourceConfig(
            endpoints: ["http://127.0.0.1:2379", "http://127.0.0.1:2381"], prefix: "/lb/", requestTimeoutMs: 2_000)))
        guard case .dns(let dns) = config.providers[2].source else { Issue.record("not dns"); return }
        #expect(dns.serverHost == "127.0.0.1" && dns.serverPort == 5353)
        #expect(dns.ttlMinMs == 500 && dns.ttlMaxMs == 10_000)
        #expect(dns.queries == [
            DNSQueryConfig(service: "web", lookup: .address(name: "tasks.web", port: 8080, family: .ipv4)),
            DNSQueryConfig(service: "api", lookup: .srv(name: "_api._tcp.service.consul"), track: "blue"),
            DNSQueryConfig(service: "api", lookup: .address(name: "api-green.internal", port: 9000, family: .both), track: "green", weight: 2),
        ])
    }

    @Test func twoProvidersOfOneTypeGetNumberedNames() throws {
        let config = try load("discovery:\n  providers:\n    - {type: file, file: a.yml}\n    - {type: file, file: b.yml}\n    - {type: file, file: c.yml, name: extra}\n")
        #expect(config.providers.map(\.name) == ["file", "file#2", "extra"])
        #expect(config.filePaths == ["/etc/yard/a.yml", "/etc/yard/b.yml", "/etc/yard/c.yml"])
    }

    @Test func aResolverWithoutPortMeansPort53() throws {
        let config = try load("discovery:\n  providers:\n    - {type: dns, server: '::1', services: {web: {name: tasks.web, port: 80}}}\n")
        guard case .dns(let dns) = config.providers[0].source else { Issue.record("not dns"); return }
        #expect(dns.serverHost == "::1" && dns.serverPort == 53)
    }
}

// MARK: - Invalid

private let bad: [BadConfig] = [
    BadConfig(name: "unknown provider type suggests the closest",
              text: listener + "discovery:\n  providers:\n    - {type: etdc, endpoints: [http://127.0.0.1:2379]}\n", line: 6,
              key: "discovery.providers[0].type", says: "unsupported provider type 'etdc' (did you mean 'etcd'?)"),
    BadConfig(name: "legacy provider etcd points to the list form",
              text: listener + "discovery:\n  provider: etcd\n", line: 5, key: "discovery.provider",
              says: "write 'providers: [{type: etcd, ...}]'"),
    BadConfig(name: "provider and providers together",
              text: listener + "discovery:\n  file: s.yml\n  providers: [{type: file, file: s.yml}]\n", line: 5, key: "discovery.file",
              says: "cannot be combined"),
    BadConfig(name: "misspelt etcd key suggests the right one",
              text: listener + "discovery:\n  providers:\n    - type: etcd\n      endpoints: [http://127.0.0.1:2379]\n      prefx: /a/\n", line: 8,
              key: "discovery.providers[0].prefx", says: "did you mean 'prefix'?"),
    BadConfig(name: "etcd endpoint without scheme",
              text: listener + "discovery:\n  providers:\n    - {type: etcd, endpoints: [127.0.0.1:2379]}\n", line: 6,
              key: "discovery.providers[0].endpoints[0]", says: "is not an http:// or https:// URL"),
    BadConfig(name: "dns server given as a name",
              text: listener + "discovery:\n  providers:\n    - {type: dns, server: resolver.local, services: {web: {name: tasks.web, port: 80}}}\n", line: 6,
              key: "discovery.providers[0].server", says: "is not a resolver address"),
    BadConfig(name: "dns A lookup without a port",
              text: listener + "discovery:\n  providers:\n    - {type: dns, server: 127.0.0.1, services: {web: {name: tasks.web}}}\n", line: 6,
              key: "discovery.providers[0].services.web.port", says: "A and AAAA records carry no port"),
    BadConfig(name: "dns SRV lookup with a port",
              text: listener + "discovery:\n  providers:\n    - {type: dns, server: 127.0.0.1, services: {web: {srv: _web._tcp.x, port: 80}}}\n", line: 6,
              key: "discovery.providers[0].services.web.port", says: "does not apply to an SRV lookup"),
    BadConfig(name: "dns ttl max below min",
              text: listener + "discovery:\n  providers:\n    - {type: dns, server: 127.0.0.1, ttl: {min: 5s, max: 1s}, services: {web: {name: a.b, port: 80}}}\n", line: 6,
              key: "discovery.providers[0].ttl.max", says: "must be at least min"),
    BadConfig(name: "duplicate provider names",
              text: listener + "discovery:\n  providers:\n    - {type: file, file: a.yml, name: x}\n    - {type: file, file: b.yml, name: x}\n", line: 7,
              key: "discovery.providers[1].name", says: "duplicate provider name 'x'"),
    BadConfig(name: "quiescence max below min",
              text: listener + "discovery:\n  quiescence: {min: 2s, max: 1s}\n", line: 5,
              key: "discovery.quiescence.max", says: "must be at least min"),
    BadConfig(name: "empty provider list",
              text: listener + "discovery:\n  providers: []\n", line: 5,
              key: "discovery.providers", says: "at least one provider is required"),
]

@Suite struct DiscoveryConfigNamesFileLineAndKey {
    @Test(arguments: bad)
    func badDiscoveryIsRejectedWithFileLineKeyAndAdvice(_ bad: BadConfig) {
        guard let error = configError({ () throws(ConfigError) in try ConfigLoader.loadConfig(text: bad.text, path: "conf/bad.yml") }) else { return }
        #expect(error.line == bad.line, "\(error)")
        #expect(error.key == bad.key, "\(error)")
        #expect(error.message.contains(bad.says), "\(error)")
    }
}

// MARK: - Shipped examples

@Suite struct DiscoveryExamplesLoad {
    @Test(arguments: ["examples/etcd.yml", "examples/dns.yml"])
    func shippedExampleLoads(_ name: String) throws {
        let config = try ConfigLoader.loadConfig(path: shippedConfPath(name))
        #expect(!config.discovery.providers.isEmpty)
    }
}
