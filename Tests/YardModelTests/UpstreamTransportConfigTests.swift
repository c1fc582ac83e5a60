import Testing
@testable import YardModel

// A service's `upstream:` block: HTTP/1.1 or HTTP/2, plain or TLS.

@Suite struct UpstreamTransportConfigParsing {
    private func load(_ body: String) throws(ConfigError) -> ServiceCatalog {
        let yaml = "services:\n  api:\n    instances: [{address: 127.0.0.1, port: 9000}]\n" + body
        return try ConfigLoader.loadCatalog(text: yaml, path: "/etc/switchyard/services.yml")
    }

    private func service(_ body: String) throws -> ServiceDefinition {
        try #require(try load(body).services.first)
    }

    private func failure(_ body: String) -> ConfigError? {
        configError({ () throws(ConfigError) in try load(body) })
    }

    @Test func withoutTheBlockEndpointsArePlainHTTP1AndKeepTheirPoolKeys() throws {
        let api = try service("")
        #expect(api.upstream == UpstreamTransport())
        #expect(api.upstream.poolFlavor == "")
        #expect(!api.upstream.multiplexed)
    }

    @Test func h2cNeedsNoTLSAndH2NeedsIt() throws {
        let h2c = try service("    upstream: {protocol: h2c}\n")
        #expect(h2c.upstream.protocol == .h2c)
        #expect(h2c.upstream.multiplexed)
        let h2 = try service("    upstream: {protocol: h2, tls: {ca_file: ca.pem, server_name: api.internal}}\n")
        #expect(h2.upstream.protocol == .h2)
        #expect(h2.upstream.tls == UpstreamTLS(caFile: "/etc/switchyard/ca.pem", serverName: "api.internal"))

        let bare = try #require(failure("    upstream: {protocol: h2}\n"))
        #expect(bare.message.contains("needs a 'tls:' block"))
        let mixed = try #require(failure("    upstream: {protocol: h2c, tls: true}\n"))
        #expect(mixed.message.contains("write 'protocol: h2'"))
    }

    @Test func tlsTrueMeansTheSystemStoreAndVerifyFalseRefusesACAFile() throws {
        let api = try service("    upstream: {tls: true}\n")
        #expect(api.upstream.tls == UpstreamTLS())
        #expect(api.upstream.protocol == .http1)
        let both = try #require(failure("    upstream: {tls: {verify: false, ca_file: ca.pem}}\n"))
        #expect(both.message.contains("ignores 'ca_file'"))
    }

    @Test func unknownProtocolsAndKeysAreNamedWithTheirLine() throws {
        let proto = try #require(failure("    upstream: {protocol: http3}\n"))
        #expect(proto.message.contains("unknown upstream protocol 'http3'"))
        #expect(proto.line == 4)
        let key = try #require(failure("    upstream: {tls: {cafile: ca.pem}}\n"))
        #expect(key.key?.contains("cafile") == true || key.message.contains("cafile"))
    }

    @Test func anHTTPCheckOnAnHTTP2OnlyServiceIsRefusedWithTheFix() throws {
        let error = try #require(failure("    health: {type: http}\n    upstream: {protocol: h2c}\n"))
        #expect(error.message.contains("use 'type: grpc' (gRPC servers) or 'type: tcp'"))
        let tcp = try service("    health: {type: tcp}\n    upstream: {protocol: h2c}\n")
        #expect(tcp.health.kind == .tcp)
    }

    @Test func servicesReachedDifferentlyNeverSharePoolKeys() throws {
        let keys = PoolKeys()
        let plain = keys.key(address: "127.0.0.1", port: 9000)
        let h2c = keys.key(address: "127.0.0.1", port: 9000, flavor: UpstreamTransport(protocol: .h2c).poolFlavor)
        let tls = keys.key(address: "127.0.0.1", port: 9000, flavor: UpstreamTransport(tls: UpstreamTLS(caFile: "/ca.pem")).poolFlavor)
        #expect(Set([plain, h2c, tls]).count == 3)
        #expect(keys.key(address: "127.0.0.1", port: 9000) == plain)
    }
}
