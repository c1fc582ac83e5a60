import Testing
@testable import YardModel

// MARK: - Valid configs

@Suite struct ConfigLoaderAcceptsValidFiles {
    @Test func shippedSwitchyardYmlLoadsWithItsDocumentedValues() throws {
        let path = shippedConfPath("switchyard.yml")
        let config = try ConfigLoader.loadConfig(path: path)
        #expect(config.listeners == [ListenerConfig(name: "web", host: "127.0.0.1", port: 8080, protocol: .http)])
        #expect(config.routes == [RouteConfig(host: nil, pathPrefix: "/", service: "shop")])
        #expect(config.discovery == .file(path: ConfigLoader.absolutePath(shippedConfPath("services.yml"))))
        #expect(config.admin == AdminConfig(host: "127.0.0.1", port: 9901, enabled: true))
        #expect(config.workers == nil)
        #expect(config.proxy == ProxySettings())
        #expect(config.sourcePath == path)
    }

    @Test func minimalConfigNeedsOnlyAListenerAndGetsDefaults() throws {
        let config = try ConfigLoader.loadConfig(text: "listeners:\n  - address: :8080\n", path: "/etc/yard/switchyard.yml")
        #expect(config.listeners == [ListenerConfig(name: "listener-0", host: "0.0.0.0", port: 8080)])
        #expect(config.routes.isEmpty)
        #expect(config.discovery == .file(path: "/etc/yard/services.yml"))
        #expect(config.admin.enabled == false)
        #expect(config.proxy == ProxySettings())
    }

    @Test func durationsSizesAndAddressesAcceptEveryDocumentedSpelling() throws {
        let text = """
            listeners:
              - {name: v4, address: "10.0.0.1:80"}
              - {name: v6, address: "[::1]:8443"}
              - {name: local, address: "localhost:0"}
            routes:
              - {host: Shop.Example.COM., path: /api, service: api}
            discovery: {provider: file, file: /srv/services.json}
            workers: 4
            timeouts: {client_header: 500ms, client_idle: 2m, upstream_connect: 3, upstream_response: 1h, drain: 0010s}
            limits: {max_request_line: 4k, max_header_bytes: 1MiB, max_headers: 1000, max_connections: 10_000}
            upstream: {max_idle_per_endpoint: 0}
            """
        let config = try ConfigLoader.loadConfig(text: text, path: "conf/switchyard.yml")
        #expect(config.listeners.map { "\($0.host)|\($0.port)" } == ["10.0.0.1|80", "::1|8443", "127.0.0.1|0"])
        #expect(config.routes == [RouteConfig(host: "shop.example.com", pathPrefix: "/api", service: "api")])
        #expect(config.discovery == .file(path: "/srv/services.json"))
        #expect(config.workers == 4)
        var expected = ProxySettings()
        expected.clientHeaderTimeoutMs = 500
        expected.clientIdleTimeoutMs = 120_000
        expected.upstreamConnectTimeoutMs = 3_000
        expected.upstreamResponseTimeoutMs = 3_600_000
        expected.drainTimeoutMs = 10_000
        expected.maxRequestLineBytes = 4_096
        expected.maxHeaderBytes = 1_048_576
        expected.maxHeaders = 1_000
        expected.maxConnections = 10_000
        expected.maxIdlePerEndpoint = 0
        #expect(config.proxy == expected)
    }

    @Test func relativeDiscoveryFileResolvesAgainstTheConfigFolder() throws {
        let text = "listeners: [{address: ':80'}]\ndiscovery: {file: more/services.yml}\n"
        #expect(try ConfigLoader.loadConfig(text: text, path: "conf/switchyard.yml").discovery == .file(path: "conf/more/services.yml"))
        #expect(try ConfigLoader.loadConfig(text: text, path: "switchyard.yml").discovery == .file(path: "more/services.yml"))
    }

    @Test func tlsListenerReadsCertificatesAgainstTheConfigFolderAndDefaultsToModernSettings() throws {
        let text = """
            listeners:
              - name: web
                address: 127.0.0.1:8443
                tls:
                  certificates:
                    - {cert: certs/a.pem, key: certs/a.key}
                    - {cert: /etc/b.pem, key: /etc/b.key, names: [b.test, "*.b.test"]}
            """
        let config = try ConfigLoader.loadConfig(text: text, path: "conf/switchyard.yml")
        let tls = try #require(config.listeners[0].tls)
        #expect(tls.certificates == [
            ListenerTLSConfig.Certificate(cert: "conf/certs/a.pem", key: "conf/certs/a.key"),
            ListenerTLSConfig.Certificate(cert: "/etc/b.pem", key: "/etc/b.key", names: ["b.test", "*.b.test"]),
        ])
        #expect(tls.certificates[1].origin == "conf/switchyard.yml:7 listeners[0].tls.certificates[1]")
        #expect(tls.alpn == ["h2", "http/1.1"])
        #expect(tls.minVersion == "1.2")
        #expect(tls.ciphers == nil && tls.ciphersuites == nil)
        #expect(tls.ticketRotationMs == 3_600_000)

        let tuned = try ConfigLoader.loadConfig(text: text + """

                  alpn: [http/1.1]
                  min_version: TLSv1.3
                  ciphers: ECDHE-ECDSA-AES128-GCM-SHA256
                  session_ticket_rotation: 30m
            """, path: "conf/switchyard.yml").listeners[0].tls
        #expect(tuned?.alpn == ["http/1.1"] && tuned?.minVersion == "1.3")
        #expect(tuned?.ciphers == "ECDHE-ECDSA-AES128-GCM-SHA256" && tuned?.ticketRotationMs == 1_800_000)
    }
}

// MARK: - Errors

/// One bad input and where its error must point.
struct BadConfig: Sendable, CustomTestStringConvertible {
    let name: String
    let text: String
    let line: Int?
    let key: String?
    let says: String
    var testDescription: String { name }
}

private let good = "listeners:\n  - name: web\n    address: 127.0.0.1:8080\n"

private let badConfigs: [BadConfig] = [
    BadConfig(name: "unknown root key suggests the near one",
              text: good + "timeout:\n  drain: 5s\n", line: 4, key: "timeout",
              says: "unknown key 'timeout' (did you mean 'timeouts'?)"),
    BadConfig(name: "misspelt listener key suggests 'address'",
              text: "listeners:\n  - name: web\n    adress: 127.0.0.1:8080\n", line: 3, key: "listeners[0].adress",
              says: "did you mean 'address'?"),
    BadConfig(name: "unknown key far from any lists the allowed keys",
              text: good + "frobnicate: 1\n", line: 4, key: "frobnicate",
              says: "expected one of: listeners, routes"),
    BadConfig(name: "bad duration",
              text: good + "timeouts:\n  client_header: 10 sec\n", line: 5, key: "timeouts.client_header",
              says: "expected a duration like 10s or 500ms"),
    BadConfig(name: "zero timeout",
              text: good + "timeouts:\n  drain: 0s\n", line: 5, key: "timeouts.drain", says: "greater than zero"),
    BadConfig(name: "port out of range",
              text: "listeners:\n  - name: web\n    address: 127.0.0.1:70000\n", line: 3, key: "listeners[0].address",
              says: "port '70000' is not a number in 0...65535"),
    BadConfig(name: "host name instead of IP for a listener",
              text: "listeners:\n  - name: web\n    address: shop.internal:8080\n", line: 3, key: "listeners[0].address",
              says: "'shop.internal' is not an IP address"),
    BadConfig(name: "IPv6 without brackets",
              text: "listeners:\n  - address: '::1:8080'\n", line: 2, key: "listeners[0].address", says: "need brackets"),
    BadConfig(name: "address without a port",
              text: "listeners:\n  - address: 127.0.0.1\n", line: 2, key: "listeners[0].address", says: "has no port"),
    BadConfig(name: "duplicate listener name",
              text: good + "  - name: web\n    address: 127.0.0.1:8081\n", line: 4, key: "listeners[1].name",
              says: "duplicate listener name 'web' (first used at line 2)"),
    BadConfig(name: "two listeners on one address",
              text: good + "  - name: api\n    address: 127.0.0.1:8080\n", line: 5, key: "listeners[1].address",
              says: "already used by listener 'web' at line 3"),
    BadConfig(name: "no listeners",
              text: "listeners: []\n", line: 1, key: "listeners", says: "at least one listener is required"),
    BadConfig(name: "listeners missing entirely",
              text: "routes: []\n", line: 1, key: "listeners", says: "missing required key 'listeners'"),
    BadConfig(name: "route without a service",
              text: good + "routes:\n  - path: /api\n", line: 5, key: "routes[0].service",
              says: "missing required key 'service'"),
    BadConfig(name: "route path without a leading slash",
              text: good + "routes:\n  - path: api\n    service: shop\n", line: 5, key: "routes[0].path",
              says: "must start with '/'"),
    BadConfig(name: "route host with a port",
              text: good + "routes:\n  - host: shop.example.com:8080\n    service: shop\n", line: 5, key: "routes[0].host",
              says: "write 'shop.example.com'"),
    BadConfig(name: "duplicate route",
              text: good + "routes:\n  - {path: /a, service: x}\n  - {path: /a, service: y}\n", line: 6, key: "routes[1]",
              says: "duplicates the route at line 5"),
    BadConfig(name: "YAML syntax error names the line",
              text: good + "routes:\n  - path: /\n   service: shop\n", line: 6, key: nil, says: "YAML syntax error"),
    BadConfig(name: "unclosed flow sequence",
              text: good + "routes: [{path: /, service: shop}\n", line: 5, key: nil, says: "YAML syntax error"),
    BadConfig(name: "duplicate YAML key",
              text: good + "workers: 2\nworkers: 3\n", line: 4, key: nil, says: "duplicate key 'workers'"),
    BadConfig(name: "unsupported discovery provider",
              text: good + "discovery:\n  provider: zookeeper\n", line: 5, key: "discovery.provider",
              says: "unsupported provider 'zookeeper'; this build supports: file"),
    BadConfig(name: "max_headers out of range",
              text: good + "limits:\n  max_headers: 5000\n", line: 5, key: "limits.max_headers",
              says: "5000 is out of range; expected 1...1000"),
    BadConfig(name: "bad size unit",
              text: good + "limits:\n  max_header_bytes: 32 kilobytes\n", line: 5, key: "limits.max_header_bytes",
              says: "expected a size like 8192, 8k, 32KiB or 1MiB"),
    BadConfig(name: "head limit below line limit",
              text: good + "limits:\n  max_request_line: 64k\n  max_header_bytes: 32k\n", line: 6, key: "limits.max_header_bytes",
              says: "must be at least max_request_line"),
    BadConfig(name: "workers not a number",
              text: good + "workers: many\n", line: 4, key: "workers", says: "expected 'auto' or a number of workers"),
    BadConfig(name: "a list where a mapping belongs",
              text: good + "timeouts:\n  - 10s\n", line: 5, key: "timeouts", says: "expected a mapping"),
    BadConfig(name: "unsupported listener protocol",
              text: good + "    protocol: gopher\n", line: 4, key: "listeners[0].protocol", says: "supported: http"),
    BadConfig(name: "tls without certificates",
              text: good + "    tls: {alpn: [h2]}\n", line: 4, key: "listeners[0].tls.certificates",
              says: "missing required key 'certificates'"),
    BadConfig(name: "misspelt tls key",
              text: good + "    tls:\n      certificate: [{cert: a.pem, key: a.key}]\n", line: 5, key: "listeners[0].tls.certificate",
              says: "did you mean 'certificates'?"),
    BadConfig(name: "certificate without its key",
              text: good + "    tls:\n      certificates:\n        - {cert: a.pem}\n", line: 6, key: "listeners[0].tls.certificates[0].key",
              says: "missing required key 'key'"),
    BadConfig(name: "empty certificate list",
              text: good + "    tls:\n      certificates: []\n", line: 5, key: "listeners[0].tls.certificates",
              says: "at least one certificate is required"),
    BadConfig(name: "unknown ALPN protocol",
              text: good + "    tls:\n      certificates: [{cert: a.pem, key: a.key}]\n      alpn: [http1.1]\n", line: 6,
              key: "listeners[0].tls.alpn[0]", says: "did you mean 'http/1.1'?"),
    BadConfig(name: "TLS 1.1 as minimum",
              text: good + "    tls:\n      certificates: [{cert: a.pem, key: a.key}]\n      min_version: '1.1'\n", line: 6,
              key: "listeners[0].tls.min_version", says: "expected 1.2 or 1.3"),
    BadConfig(name: "wildcard not in the first label",
              text: good + "    tls:\n      certificates: [{cert: a.pem, key: a.key, names: [a.*.test]}]\n", line: 5,
              key: "listeners[0].tls.certificates[0].names[0]", says: "wildcard may only be the whole first label"),
    BadConfig(name: "unknown process log format",
              text: good + "log:\n  format: xml\n", line: 5, key: "log.format", says: "log.format is text or json"),
    BadConfig(name: "unknown process log level",
              text: good + "log:\n  level: verbose\n", line: 5, key: "log.level", says: "log.level is debug, info, warn or error"),
    BadConfig(name: "empty file",
              text: "# nothing here\n", line: nil, key: nil, says: "the file is empty"),
]

@Suite struct ConfigLoaderNamesFileLineAndKey {
    @Test(arguments: badConfigs)
    func badInputIsRejectedWithFileLineKeyAndAdvice(_ bad: BadConfig) {
        guard let error = configError({ () throws(ConfigError) in try ConfigLoader.loadConfig(text: bad.text, path: "conf/bad.yml") }) else { return }
        #expect(error.file == "conf/bad.yml")
        #expect(error.line == bad.line, "\(error)")
        #expect(error.key == bad.key, "\(error)")
        #expect(error.message.contains(bad.says), "\(error)")
    }

    @Test func descriptionReadsAsFileLineKeyMessage() {
        let error = ConfigError(file: "conf/switchyard.yml", line: 4, key: "timeout", message: "unknown key 'timeout'")
        #expect(error.description == "conf/switchyard.yml:4: timeout: unknown key 'timeout'")
    }

    @Test func missingFileNamesThePath() {
        guard let error = configError({ () throws(ConfigError) in try ConfigLoader.loadConfig(path: "/nonexistent/switchyard.yml") }) else { return }
        #expect(error.file == "/nonexistent/switchyard.yml")
        #expect(error.line == nil)
        #expect(error.message.contains("No such file"))
    }

    @Test func invalidUTF8IsRejected() {
        guard let error = configError({ () throws(ConfigError) in try ConfigLoader.decodeText([0x66, 0xFF, 0x0A], path: "x.yml") }) else { return }
        #expect(error.message.contains("UTF-8"))
    }
}

// MARK: - Value syntaxes

@Suite struct ConfigValueSyntaxes {
    @Test func durationsConvertToMilliseconds() {
        #expect(ConfigValues.parseDurationMilliseconds("500ms") == 500)
        #expect(ConfigValues.parseDurationMilliseconds("10s") == 10_000)
        #expect(ConfigValues.parseDurationMilliseconds("10") == 10_000)
        #expect(ConfigValues.parseDurationMilliseconds("2m") == 120_000)
        #expect(ConfigValues.parseDurationMilliseconds("1h") == 3_600_000)
        for bad in ["", "s", "1.5s", "-1s", "10 sec", "1d", "99999999999999999999s"] {
            #expect(ConfigValues.parseDurationMilliseconds(bad) == nil, "\(bad)")
        }
    }

    @Test func sizesAreBinary() {
        #expect(ConfigValues.parseSize("8192") == 8_192)
        #expect(ConfigValues.parseSize("8k") == 8_192)
        #expect(ConfigValues.parseSize("32KiB") == 32_768)
        #expect(ConfigValues.parseSize("1MiB") == 1_048_576)
        #expect(ConfigValues.parseSize("1 MB") == 1_048_576)
        for bad in ["", "k", "1GiB", "-1", "1.5k", "_1"] {
            #expect(ConfigValues.parseSize(bad) == nil, "\(bad)")
        }
    }

    @Test func ipLiteralsFollowInetPton() {
        for good in ["127.0.0.1", "10.1.2.3", "::1", "fe80::1", "::ffff:10.0.0.1", "2001:db8::8a2e:370:7334"] {
            #expect(ConfigValues.isIPLiteral(good), "\(good)")
        }
        for bad in ["localhost", "1.2.3", "256.1.1.1", "01.2.3.4", "[::1]", "fe80::1%eth0", "1.2.3.4 ", ":::"] {
            #expect(!ConfigValues.isIPLiteral(bad), "\(bad)")
        }
        #expect(ConfigValues.isUnspecifiedAddress("0.0.0.0"))
        #expect(ConfigValues.isUnspecifiedAddress("::"))
        #expect(ConfigValues.isUnspecifiedAddress("0:0::0"))
        #expect(!ConfigValues.isUnspecifiedAddress("::1"))
    }

    @Test func unknownKeySuggestionsStayClose() {
        let keys = ConfigLoader.rootKeys
        #expect(Suggestion.closest(to: "timeout", among: keys) == "timeouts")
        #expect(Suggestion.closest(to: "Listeners", among: keys) == "listeners")
        #expect(Suggestion.closest(to: "lisetners", among: keys) == "listeners")
        #expect(Suggestion.closest(to: "route", among: keys) == "routes")
        #expect(Suggestion.closest(to: "x", among: keys) == nil)
        #expect(Suggestion.closest(to: "tls", among: keys) == nil)
    }
}

@Suite struct ConfigLoaderRefusesTLSOnTCPListeners {
    @Test func aTCPListenerWithATLSBlockIsRefusedWithWhatToDoInstead() {
        let yaml = """
            listeners:
              - name: db
                address: 127.0.0.1:5432
                protocol: tcp
                service: postgres
                tls:
                  certificates: [{cert: a.pem, key: a.key}]
            """
        guard let error = configError({ () throws(ConfigError) in try ConfigLoader.loadConfig(text: yaml, path: "conf/s.yml") }) else { return }
        #expect(error.message.contains("not supported on a tcp listener"))
        #expect(error.key?.hasSuffix("tls") == true)
    }
}
