import Testing
@testable import YardModel

/// `tls: {acme: ...}`: what it parses to, what it refuses, and the route-host allow-list.
@Suite struct ListenerACMEConfigTests {
    static let listener = "listeners:\n  - name: secure\n    address: 127.0.0.1:8443\n    tls:\n"

    @Test func acmeAloneIsEnoughForATLSListenerAndPathsResolveAgainstTheConfigFolder() throws {
        let config = try ConfigLoader.loadConfig(text: Self.listener + """
                  acme:
                    directory: https://acme-staging-v02.api.letsencrypt.org/directory
                    email: ops@example.com
                    ca_file: ca.pem
                    challenge: tls-alpn-01
                    names: [Shop.Example.com]
                    domains: ["*.example.com"]
                    storage: acme
                    eab: {kid: key-1, hmac_key_file: eab.key}
            """, path: "conf/switchyard.yml")
        let tls = try #require(config.listeners.first?.tls)
        let acme = try #require(tls.acme)
        #expect(tls.certificates.isEmpty)
        #expect(acme.challenge == .tlsALPN01)
        #expect(acme.names == ["shop.example.com"])
        #expect(acme.email == ["ops@example.com"])
        #expect(acme.storage == "conf/acme" && acme.caFile == "conf/ca.pem" && acme.eabMACKeyFile == "conf/eab.key")
        #expect(acme.eabKeyID == "key-1")
        #expect(acme.keyType == .ecdsaP256 && acme.leaseMs == 60_000 && acme.retryMs == 60_000, "the defaults")
    }

    @Test func keyTypeLeaseAndRetryAreRead() throws {
        let config = try ConfigLoader.loadConfig(text: Self.listener
            + "      acme: {directory: https://ca/dir, names: [a.example.com], key_type: RSA2048, lease: 5s, retry: 2s}\n", path: "s.yml")
        let acme = try #require(config.listeners.first?.tls?.acme)
        #expect(acme.keyType == .rsa2048 && acme.leaseMs == 5000 && acme.retryMs == 2000)
    }

    @Test(arguments: [
        ("      acme: {names: [a.example.com]}\n", "directory"),
        ("      acme: {directory: https://ca/dir}\n", "needs 'names'"),
        ("      acme: {directory: https://ca/dir, names: [a.example.com], challenge: dns-01}\n", "unknown challenge"),
        ("      acme: {directory: https://ca/dir, names: [\"a.example.com,DNS:evil.com\"]}\n", "is not a DNS name"),
        ("      acme: {directory: ftp://ca/dir, names: [a.example.com]}\n", "not an http(s) URL"),
        ("      acme: {directory: https://ca/dir, names: [a.example.com], email: not-an-address}\n", "not an e-mail"),
        ("      acme: {directory: https://ca/dir, names: [a.example.com], key_type: rsa1024}\n", "unknown key_type"),
        ("      acme: {directory: https://ca/dir, names: [a.example.com], retry: 100ms}\n", "retry must be"),
    ])
    func badACMEBlocksAreRefusedWithAReason(_ yaml: String, _ says: String) {
        guard let error = configError({ () throws(ConfigError) in try ConfigLoader.loadConfig(text: Self.listener + yaml, path: "s.yml") }) else { return }
        #expect(error.description.contains(says), "\(error)")
    }

    @Test func aLabelCannotMakeTheProxyOrderANameNoPatternAllows() {
        var acme = ListenerACMEConfig(directory: "https://ca/dir", storage: "/tmp/acme")
        acme.names = ["fixed.example.org"]
        acme.domains = ["*.example.com", "exact.example.net"]
        let hosts = ["shop.example.com", "a.b.example.com", "example.com", "evil.com", "exact.example.net", "x.exact.example.net",
                     "notexample.com", "SHOP.example.com"]
        #expect(acme.managedNames(routeHosts: hosts) == ["fixed.example.org", "shop.example.com", "a.b.example.com", "exact.example.net"])
        acme.domains = []
        #expect(acme.managedNames(routeHosts: hosts) == ["fixed.example.org"])
    }
}
