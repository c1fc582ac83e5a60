import Foundation
import Testing
import YardTestSupport

extension Integration {
    @Suite struct CheckCommand {
        @Test(.timeLimit(.minutes(1)))
        func shippedConfigChecksClean() throws {
            let dir = try ScratchDir("check")
            let result = try runCommand(SwitchyardBinary.path,
                                        ["check", "--config", SwitchyardBinary.repositoryRoot + "/conf/switchyard.yml"],
                                        dir: dir, label: "check")
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stdout.contains(": ok"))
        }

        /// Every CA file, client certificate and token file of the stores and providers is
        /// loaded by check; the ones that fail are named with their owner and the reason.
        @Test(.timeLimit(.minutes(1)))
        func checkLoadsTheStoreAndProviderTLSFilesAndNamesTheOneThatFails() throws {
            let dir = try ScratchDir("check-tls")
            let certificates = try TestCertificates()
            let client = try certificates.issue(file: "client", names: ["switchyard"], client: true)
            try dir.write("services.yml", servicesYAML([ServiceSpec(name: "shop", instances: [.init(port: 9101)])]))
            try dir.write("garbage.pem", "not a certificate\n")
            func config(storeCA: String, consulCert: String) -> String {
                """
                listeners:
                  - name: web
                    address: 127.0.0.1:0
                routes:
                  - path: /
                    service: shop
                discovery:
                  providers:
                    - {type: file, file: services.yml}
                    - {type: consul, name: registry, address: https://127.0.0.1:8501, ca_file: \(certificates.caFile), cert_file: \(consulCert), key_file: \(client.key)}
                state_store: {type: etcd, endpoints: [https://127.0.0.1:2379], ca_file: \(storeCA), cert_file: \(client.certificate), key_file: \(client.key), username: root, password: pw}

                """
            }
            try dir.write("good.yml", config(storeCA: certificates.caFile, consulCert: client.certificate))
            let good = try runCommand(SwitchyardBinary.path, ["check", "--config", dir.file("good.yml")], dir: dir, label: "check")
            #expect(good.status == 0, "\(good.stderr)")
            #expect(good.stdout.contains("tls state_store: ca_file \(certificates.caFile)"), "\(good.stdout)")
            #expect(good.stdout.contains("tls provider registry:"), "\(good.stdout)")

            try dir.write("bad.yml", config(storeCA: dir.file("missing-ca.pem"), consulCert: dir.file("garbage.pem")))
            let bad = try runCommand(SwitchyardBinary.path, ["check", "--config", dir.file("bad.yml")], dir: dir, label: "check")
            #expect(bad.status == 1, "\(bad.stdout) \(bad.stderr)")
            #expect(bad.stderr.contains("state_store: TLS") && bad.stderr.contains("missing-ca.pem"), "\(bad.stderr)")
            #expect(bad.stderr.contains("provider registry: TLS") && bad.stderr.contains("garbage.pem"), "\(bad.stderr)")
        }

        /// A port another process holds: run exits naming the listener and its address.
        @Test(.timeLimit(.minutes(1)))
        func aTakenPortNamesTheListenerAndItsAddress() throws {
            let dir = try ScratchDir("taken-port")
            let holder = try Backend.demo("holder", dir: dir)
            defer { holder.stop() }
            try dir.write("services.yml", servicesYAML([ServiceSpec(name: "shop", instances: [.init(port: 9101)])]))
            try dir.write("switchyard.yml", """
                listeners:
                  - name: public-web
                    address: 127.0.0.1:\(holder.port)
                routes:
                  - path: /
                    service: shop
                discovery: {provider: file, file: services.yml}

                """)
            let result = try runCommand(SwitchyardBinary.path, ["run", "--config", dir.file("switchyard.yml")], dir: dir, label: "run", timeout: .seconds(20))
            #expect(result.status != 0 && result.status != nil)
            #expect(result.stderr.contains("listener 'public-web' cannot listen on 127.0.0.1:\(holder.port)"), "\(result.stderr)")
            #expect(result.stderr.contains("Address already in use"), "\(result.stderr)")
        }

        @Test(.timeLimit(.minutes(1)))
        func brokenConfigFailsNamingFileAndLine() throws {
            let dir = try ScratchDir("check-broken")
            try dir.write("services.yml", servicesYAML([ServiceSpec(name: "shop", instances: [.init(port: 9101)])]))
            // Line 7 holds the broken value.
            try dir.write("switchyard.yml", """
                listeners:
                  - name: web
                    address: 127.0.0.1:0
                routes:
                  - path: /
                    service: shop
                workers: lots
                discovery: {provider: file, file: services.yml}

                """)
            let result = try runCommand(SwitchyardBinary.path, ["check", "--config", dir.file("switchyard.yml")], dir: dir, label: "check")
            #expect(result.status != 0 && result.status != nil)
            #expect(result.stderr.contains("switchyard.yml:7"), "stderr: \(result.stderr)")
        }

        @Test(.timeLimit(.minutes(1)))
        func brokenServicesFileFailsNamingFileAndLine() throws {
            let dir = try ScratchDir("check-services")
            try dir.write("services.yml", "services:\n  shop:\n    instances:\n      - address: 127.0.0.1\n        port: many\n")
            try dir.write("switchyard.yml", ProxySpec().yaml)
            let result = try runCommand(SwitchyardBinary.path, ["check", "--config", dir.file("switchyard.yml")], dir: dir, label: "check")
            #expect(result.status != 0 && result.status != nil)
            #expect(result.stderr.contains("services.yml:5"), "stderr: \(result.stderr)")
        }
    }
}
