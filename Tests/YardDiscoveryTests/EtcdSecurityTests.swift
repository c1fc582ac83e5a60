import Foundation
import Testing
@testable import YardDiscovery
import YardModel
import YardTestSupport
import YardControlHTTP

/// A real etcd serving TLS with `--client-cert-auth` (certificates made here with openssl),
/// and one with username/password auth enabled through etcdctl.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct EtcdSecurityTests {
    /// The CA, etcd's certificate for 127.0.0.1 and a client certificate.
    private static func tlsCluster() throws -> (TestCertificates, EtcdCluster, StoreAccessConfig) {
        let certificates = try TestCertificates()
        // etcd's JSON gateway dials etcd's own gRPC port presenting the server certificate,
        // so with --client-cert-auth that certificate must allow client use too.
        let server = try certificates.issue(file: "etcd-server", names: ["127.0.0.1"], client: true)
        let client = try certificates.issue(file: "etcd-client", names: ["switchyard"], client: true)
        let cluster = try EtcdCluster(size: 1, tls: .init(caFile: certificates.caFile, server: server, client: client))
        let access = StoreAccessConfig(caFile: certificates.caFile, certFile: client.certificate, keyFile: client.key)
        return (certificates, cluster, access)
    }

    @Test func aClientCertificateOpensATLSEtcdToTheClientAndTheProvider() throws {
        let (certificates, cluster, access) = try Self.tlsCluster()
        defer { withExtendedLifetime(certificates) {} }
        #expect(cluster.endpoints[0].hasPrefix("https://"))
        let client = try EtcdClient(endpoints: cluster.endpoints, timeout: .seconds(3), access: access)
        try client.put("/switchyard/services/shop/instances/a", value: Array("{\"address\": \"127.0.0.1\", \"port\": 9001}".utf8))
        #expect(try client.get("/switchyard/services/shop/instances/a").kv != nil)

        var config = EtcdSourceConfig(endpoints: cluster.endpoints, requestTimeoutMs: 2_000)
        config.access = access
        let recorder = ProviderRecorder()
        let provider = EtcdProvider(name: "etcd", config: config, callbacks: recorder.callbacks)
        provider.start()
        defer { provider.stop() }
        try waitUntil("the listed snapshot over TLS", deadline: .seconds(5)) { endpoints(recorder.last, "shop") == ["127.0.0.1:9001"] }
        try waitUntil("the watch over TLS", deadline: .seconds(5)) { provider.counts.watches == 1 }
        try client.put("/switchyard/services/shop/instances/b", value: Array("{\"address\": \"127.0.0.1\", \"port\": 9002}".utf8))
        try waitUntil("a change through the TLS watch", deadline: .seconds(3)) { endpoints(recorder.last, "shop").count == 2 }
    }

    @Test func aClientWithoutACertificateOrWithTheWrongCAIsRefusedWithAClearError() throws {
        let (certificates, cluster, access) = try Self.tlsCluster()
        let noCertificate = try EtcdClient(endpoints: cluster.endpoints, timeout: .seconds(3), access: StoreAccessConfig(caFile: access.caFile))
        let refused = #expect(throws: EtcdError.self) { try noCertificate.put("/k", value: [1]) }
        #expect(refused?.description.contains(cluster.endpoints[0]) == true, "\(refused?.description ?? "")")
        #expect(refused?.description.contains("the server refused the client certificate") == true, "\(refused?.description ?? "")")

        // The system store does not know the test CA: the server's certificate is refused.
        let untrusted = try EtcdClient(endpoints: cluster.endpoints, timeout: .seconds(3), access: StoreAccessConfig(certFile: access.certFile, keyFile: access.keyFile))
        let unverified = #expect(throws: EtcdError.self) { try untrusted.put("/k", value: [1]) }
        #expect(unverified?.description.contains("certificate verify failed") == true, "\(unverified?.description ?? "")")

        // A missing CA file is named before any connection.
        let missing = #expect(throws: ControlHTTPError.self) {
            _ = try EtcdClient(endpoints: cluster.endpoints, timeout: .seconds(3), access: StoreAccessConfig(caFile: certificates.directory.file("nope.pem")))
        }
        #expect(missing?.description.contains("ca_file") == true && missing?.description.contains("nope.pem") == true, "\(missing?.description ?? "")")
    }

    @Test func usernameAndPasswordAuthWorksAndAWrongPasswordSaysSo() throws {
        let cluster = try EtcdCluster(size: 1)
        for step in [["role", "add", "root"], ["user", "add", "root", "--new-user-password", "s3cret"], ["user", "grant-role", "root", "root"], ["auth", "enable"]] {
            let result = try cluster.etcdctl(step)
            try #require(result.status == .exited(0), "etcdctl \(step.joined(separator: " ")): \(result.output)")
        }
        let client = try EtcdClient(endpoints: cluster.endpoints, timeout: .seconds(3), access: StoreAccessConfig(username: "root", password: "s3cret"))
        try client.put("/yard/a", value: Array("one".utf8))
        #expect(try client.get("/yard/a").kv?.text == "one")
        let watch = try client.watch("/yard/", prefix: true, startRevision: 0)
        watch.cancel()

        let anonymous = try EtcdClient(endpoints: cluster.endpoints, timeout: .seconds(3))
        #expect(throws: EtcdError.self) { try anonymous.put("/yard/b", value: [1]) }

        let wrong = try EtcdClient(endpoints: cluster.endpoints, timeout: .seconds(3), access: StoreAccessConfig(username: "root", password: "guess"))
        let refused = #expect(throws: EtcdError.self) { try wrong.put("/yard/b", value: [1]) }
        #expect(refused?.description.contains("authenticating as 'root' failed") == true, "\(refused?.description ?? "")")
        #expect(refused?.description.contains("invalid user ID or password") == true, "\(refused?.description ?? "")")
    }
}
