import Foundation
import Testing

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
