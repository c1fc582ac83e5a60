import Foundation
import Testing
import YardTestSupport

extension Integration {
    /// switchyard.route.NAME.* labels on podman containers (podman's Docker API): the
    /// labelled routes serve (with the middlewares their `.middlewares` label names), and a
    /// container with a broken route label, or a route naming an undefined middleware, is
    /// reported by name and key while the others keep serving; a traffic split set by
    /// labels alone is exact; in JSON process logs.
    @Suite struct RouteLabelsFromPodman {
        @Test(.timeLimit(.minutes(2)))
        func labelledRoutesServeAndABrokenLabelIsNamedWhileTheRestWorks() throws {
            let dir = try ScratchDir("route-labels")
            let engine = try PodmanEngine()
            let shopPort = try freePort()
            let brokenPort = try freePort()
            let shop = try engine.createHTTPContainer(name: "labels-shop", port: shopPort, labels: [
                "switchyard.service": "shop", "switchyard.port": "\(shopPort)",
                "switchyard.route.tenants.host": "*.shop.test", "switchyard.route.api.path": "/api",
                "switchyard.route.api.priority": "-10", "switchyard.route.api.middlewares": "strip-api",
                "switchyard.route.admin.path": "/admin", "switchyard.route.admin.middlewares": "strip-api,office",
            ])
            let broken = try engine.createHTTPContainer(name: "labels-broken", port: brokenPort, labels: [
                "switchyard.service": "other", "switchyard.port": "\(brokenPort)", "switchyard.route.web.path": "store",
            ])
            // A traffic split from labels alone: blue active, green the canary at 25 %.
            var split: [String] = []
            for track in ["blue", "green"] {
                let port = try freePort()
                split.append(try engine.createHTTPContainer(name: "labels-split-\(track)", port: port, labels: [
                    "switchyard.service": "split", "switchyard.port": "\(port)", "switchyard.track": track,
                    "switchyard.route.s.host": "split.test", "switchyard.active": "blue",
                    "switchyard.canary.track": "green", "switchyard.canary.percent": "25", "switchyard.balancer": "least_conn",
                ]))
            }
            try engine.start(shop)
            try engine.start(broken)
            for id in split { try engine.start(id) }
            try dir.write("switchyard.yml", """
                listeners:
                  - {name: web, address: 127.0.0.1:0}
                discovery:
                  quiescence: {min: 50ms, max: 300ms}
                  providers:
                    - {type: docker, socket: '\(engine.socketPath)'}
                workers: 1
                log: {format: json}
                middlewares:
                  strip-api: {strip_prefix: [/api]}

                """)
            let proxy = try ChildProcess(SwitchyardBinary.path, ["run", "--config", dir.file("switchyard.yml")], dir: dir, label: "proxy")
            defer { proxy.stop() }
            let port = try proxy.waitForListeningPort()
            func answer(host: String, path: String = "/") -> String {
                guard let response = try? rawExchange(port: port, "GET \(path) HTTP/1.1\r\nHost: \(host)\r\n\r\n", timeout: .seconds(2)) else { return "-" }
                if response.status == 200 { return response.bodyText.trimmingCharacters(in: .whitespacesAndNewlines) }
                // The proxy's own 404 says "no route"; the container's httpd answers 404 for a missing file.
                return response.bodyText.hasPrefix("no route") ? "no route" : "backend \(response.status)"
            }
            try waitFor("the wildcard label route serving", timeout: .seconds(10)) { answer(host: "eu.shop.test") == "labels-shop" }
            #expect(answer(host: "a.eu.shop.test") == "no route", "a wildcard is one label")
            #expect(answer(host: "anything.test", path: "/api/x") == "backend 404", "the /api label route reaches the container's httpd")
            #expect(answer(host: "anything.test", path: "/api/") == "labels-shop", "the .middlewares label strips /api before the container sees it")
            #expect(answer(host: "anything.test", path: "/admin") == "no route", "a route naming an undefined middleware is left out, not served without it")
            try waitFor("the unknown middleware reported by container and label key", timeout: .seconds(5)) {
                proxy.stderrText.contains("labels-shop") && proxy.stderrText.contains("label switchyard.route.admin.middlewares: no middleware named 'office'")
            }
            #expect(answer(host: "anything.test", path: "/store") == "no route", "the broken container's route is not there")
            try waitFor("the broken label reported by container and key", timeout: .seconds(5)) {
                proxy.stderrText.contains("labels-broken") && proxy.stderrText.contains("switchyard.route.web.path 'store' must start with '/'")
            }
            try waitFor("the labelled canary serving", timeout: .seconds(10)) {
                (0..<8).contains { _ in answer(host: "split.test") == "labels-split-green" }
            }
            let answers = (0..<20).map { _ in answer(host: "split.test") }
            #expect(answers.filter { $0 == "labels-split-green" }.count == 5, "exactly 25 % to the canary: \(answers)")
            #expect(answers.filter { $0 == "labels-split-blue" }.count == 15, "\(answers)")
            // The process log is JSON lines: messages quoting label values (with quotes,
            // escaped) stay one object per line.
            let lines = proxy.stderrText.split(separator: "\n")
            #expect(lines.contains { $0.contains(#"dropped route \"admin\" of service \"shop\""#) }, "\(proxy.stderrText)")
            for line in lines {
                let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
                #expect(object?["msg"] is String, "one JSON object per line: \(line)")
            }
        }
    }
}
