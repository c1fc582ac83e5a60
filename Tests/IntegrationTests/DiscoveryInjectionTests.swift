import Foundation
import Testing
import YardTestSupport

/// A container whose labels try to write nginx configuration: podman's Docker API,
/// `switchyard run` with the docker provider rendering the shipped nginx upstream
/// template for a real nginx. The bad container is left out and reported; its
/// correctly labelled neighbour keeps being rendered and served.
extension Integration {
    @Suite struct DiscoveryInjection {
        @Test(.timeLimit(.minutes(2)))
        func aContainerLabelledWithAnNginxBlockChangesNothingInTheRenderedFileAndIsReported() throws {
            let dir = try ScratchDir("docker-injection")
            let engine = try PodmanEngine()
            let goodPort = try freePort()
            let evilPort = try freePort()
            let hijackPort = try closedPort()
            let nginx = try RunningNginx(dir: dir)
            defer { nginx.stop() }
            let good = try engine.createHTTPContainer(name: "shop-good", port: goodPort, labels: [
                "switchyard.service": "shop", "switchyard.port": "\(goodPort)", "switchyard.track": "blue",
            ])
            let evil = try engine.createHTTPContainer(name: "shop-evil", port: evilPort, labels: [
                "switchyard.service": "shop", "switchyard.port": "\(evilPort)",
                "switchyard.track": "blue;\n}\nserver { listen 127.0.0.1:\(hijackPort); location / { return 200 owned; } }\nupstream x {",
            ])
            try engine.start(good)

            try dir.write("nginx-upstream.conf.stencil", try shippedTemplate("nginx-upstream.conf.stencil"))
            try dir.write("switchyard.yml", """
                listeners:
                  - {name: web, address: 127.0.0.1:0}
                routes:
                  - {path: /, service: shop}
                discovery:
                  quiescence: {min: 50ms, max: 300ms}
                  providers:
                    - {type: docker, socket: '\(engine.socketPath)'}
                admin: {address: 127.0.0.1:0}
                workers: 1
                templates:
                  outputs:
                    - template: nginx-upstream.conf.stencil
                      destination: \(nginx.upstreamPath)
                      check: \(nginx.checkCommand)
                      reload: \(nginx.reloadCommand)
                      wait: {min: 50ms, max: 300ms}

                """)
            let proxy = try ChildProcess(SwitchyardBinary.path, ["run", "--config", dir.file("switchyard.yml")], dir: dir, label: "proxy")
            defer { proxy.stop() }
            let port = try proxy.waitForListeningPort()
            let adminPort = try proxy.waitForAdminPort()
            func body(_ port: UInt16) -> String {
                ((try? rawExchange(port: port, "GET / HTTP/1.1\r\nHost: shop.test\r\n\r\n", timeout: .seconds(2)))?.bodyText ?? "-")
                    .trimmingCharacters(in: .whitespacesAndNewlines)
            }

            try waitFor("the upstream file to list the good container", timeout: .seconds(10)) {
                dir.read("nginx/conf/upstream.conf").contains("server 127.0.0.1:\(goodPort);")
            }
            let before = dir.read("nginx/conf/upstream.conf")
            try nginx.start()
            try waitFor("shop-good served through nginx", timeout: .seconds(10)) { body(nginx.port) == "shop-good" }

            // The bad container starts: it is reported, and nothing else changes.
            try engine.start(evil)
            let metricsURL = "http://127.0.0.1:\(adminPort)/metrics"
            try waitFor("the rejection counted on /metrics", timeout: .seconds(10)) {
                try curl(metricsURL, dir: dir, timeout: .seconds(5)).body
                    .contains(#"switchyard_discovery_rejected_total{provider="docker",reason="track"} 1"#)
            }
            #expect(proxy.stderrText.contains("container shop-evil"), "\(proxy.stderrText.suffix(2000))")
            #expect(proxy.stderrText.contains(#"track name "blue;\n}\nserver { listen"#), "logged on one line, escaped")
            let status = try curl("http://127.0.0.1:\(adminPort)/status", dir: dir, timeout: .seconds(5)).body
            #expect(status.contains("last_rejected") && status.contains("shop-evil"), "\(status.prefix(2000))")

            // Give a render the time it would take (quiescence max 300 ms), then compare.
            Thread.sleep(forTimeInterval: 1)
            #expect(dir.read("nginx/conf/upstream.conf") == before)
            #expect(!nginx.errorLog.contains("emerg"), "\(nginx.errorLog)")
            for _ in 0..<5 {
                #expect(body(nginx.port) == "shop-good")
                #expect(body(port) == "shop-good")
            }
            #expect(throws: (any Error).self, "nothing listens on the port the label tried to open") {
                try rawExchange(port: hijackPort, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", timeout: .seconds(1))
            }
        }
    }
}
