import Foundation
import Testing
@testable import YardModel

private let head = "listeners:\n  - {name: web, address: 127.0.0.1:8080}\nroutes:\n  - {path: /, service: shop}\n"

private func load(_ text: String) throws(ConfigError) -> SwitchyardConfig {
    try ConfigLoader.loadConfig(text: head + text, path: "/etc/yard/switchyard.yml")
}

private func failure(_ text: String) -> ConfigError? {
    do { _ = try load(text); return nil } catch { return error }
}

/// TLS files and credentials for etcd and Consul: one set of option names for the providers
/// and the state stores, each mistake reported on its own line.
@Suite struct StoreAccessConfigParsing {
    @Test func etcdProviderAndStoreTakeTheSameTLSAndAuthOptions() throws {
        let access = "ca_file: ca.pem, cert_file: /pki/client.pem, key_file: /pki/client.key, username: sy, password: pw"
        let config = try load("""
            discovery:
              providers:
                - {type: etcd, endpoints: [https://10.0.0.1:2379], \(access)}
            state_store: {type: etcd, endpoints: [https://10.0.0.1:2379], \(access)}

            """)
        let expected = StoreAccessConfig(caFile: "/etc/yard/ca.pem", certFile: "/pki/client.pem", keyFile: "/pki/client.key", username: "sy", password: "pw")
        guard case .etcd(let etcd) = config.discovery.providers[0].source else { Issue.record("not etcd"); return }
        #expect(etcd.endpoints == ["https://10.0.0.1:2379"])
        #expect(etcd.access == expected)
        #expect(config.stateStore.access == expected)
    }

    @Test func consulProviderAndStoreTakeATokenFile() throws {
        let config = try load("""
            discovery:
              providers:
                - {type: consul, address: https://127.0.0.1:8501, ca_file: /pki/ca.pem, token_file: token}
            state_store: {type: consul, address: https://127.0.0.1:8501, ca_file: /pki/ca.pem, token_file: token}

            """)
        let expected = StoreAccessConfig(caFile: "/pki/ca.pem", tokenFile: "/etc/yard/token")
        guard case .consul(let consul) = config.discovery.providers[0].source else { Issue.record("not consul"); return }
        #expect(consul.address == "https://127.0.0.1:8501")
        #expect(consul.access == expected)
        #expect(config.stateStore.access == expected)
    }

    @Test func mistakesAreNamedOnTheirLine() {
        let cases: [(String, String, String)] = [
            ("state_store: {type: etcd, endpoints: [http://10.0.0.1:2379], ca_file: ca.pem}\n", "state_store.endpoints[0]", "write https://HOST:PORT"),
            ("state_store: {type: etcd, endpoints: [https://10.0.0.1:2379], cert_file: c.pem}\n", "state_store.cert_file", "needs key_file"),
            ("state_store: {type: etcd, endpoints: [https://10.0.0.1:2379], username: sy}\n", "state_store.username", "needs password"),
            ("state_store: {type: etcd, endpoints: [https://10.0.0.1:2379], token: t}\n", "state_store.token", "token"),
            ("state_store: {type: consul, token: a, token_file: f}\n", "state_store.token_file", "give one of token, token_file and token_env"),
            ("discovery:\n  providers:\n    - {type: consul, address: http://127.0.0.1:8500, ca_file: ca.pem}\n", "discovery.providers[0].address", "write https://HOST:PORT"),
        ]
        for (text, key, says) in cases {
            let error = failure(text)
            #expect(error?.key == key && error?.message.contains(says) == true, "\(text): \(error.map { "\($0)" } ?? "accepted")")
        }
    }

    @Test func theTLSExampleLoads() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        let config = try ConfigLoader.loadConfig(path: root + "/conf/examples/etcd-tls.yml")
        #expect(config.stateStore.access.certFile == "/etc/switchyard/etcd/client.pem")
        #expect(config.stateStore.access.username == "switchyard")
    }
}
