import Foundation
import Testing

extension Integration {
    /// The conventions CI and operators build on (docs/api.md): one JSON style checked
    /// against docs/schema on the real binary's answers, one rule for exit codes,
    /// `status --check`, the fleet metrics and JSON process logs.
    @Suite(.serialized) struct Operations {
        @Test(.timeLimit(.minutes(2)))
        func everyAdminAnswerAndJSONOutputMatchesItsSchema() throws {
            let dir = try ScratchDir("ops-schema")
            let blue = try Backend.demo("blue-1", dir: dir)
            let green = try Backend.demo("green-1", dir: dir)
            defer { blue.stop(); green.stop() }
            let proxy = try TrafficProxy(dir: dir, services: blueGreenServices(blue: [blue.port], green: [green.port]))
            defer { proxy.stop() }
            _ = try sendSequential(20, port: proxy.port)

            var documents: [(schema: String, text: String)] = []
            func get(_ path: String, _ schema: String, status: Int = 200) throws {
                let response = try rawExchange(port: proxy.adminPort, "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(proxy.adminPort)\r\nConnection: close\r\n\r\n")
                #expect(response.status == status, "GET \(path)")
                documents.append((schema, String(decoding: response.body, as: UTF8.self)))
            }
            func post(_ path: String, _ body: String, _ schema: String, status: Int = 200) throws {
                let answer = try proxy.adminPost(path, body)
                #expect(answer.status == status, "POST \(path): \(answer.body)")
                documents.append((schema, answer.body))
            }
            func cli(_ arguments: [String], _ schema: String, status: Int32 = 0) throws {
                let result = try proxy.cli(arguments + ["--json"])
                #expect(result.status == status, "\(arguments): \(result.stderr)")
                // Commands that wait print their answer last.
                documents.append((schema, result.stdout.split(separator: "\n").last.map(String.init) ?? ""))
            }

            try get("/status", "status")
            try get("/services", "status")
            try get("/services/shop", "service")
            try get("/services/shop/gate?canary=green&stable=blue", "gate")
            try get("/replicas", "replicas")
            try get("/explain?host=shop&path=/", "explain")
            try get("/render", "render")
            try get("/endpoints", "endpoints")
            try post("/services/shop/endpoints/127.0.0.1:\(blue.port)", #"{"weight": 3}"#, "endpoint-change")
            try get("/services/nothing", "error", status: 404)
            try post("/services/shop/flip", #"{"to": "green", "why": "schema"}"#, "change")
            try post("/services/shop/flip", #"{"to": "blue", "revision": 99}"#, "conflict", status: 409)
            try post("/services/shop/canary", #"{"action": "set", "percent": 10, "track": "green"}"#, "error", status: 400)
            try post("/services/shop/flip", #"{"to": "blue"}"#, "change")
            try post("/services/shop/canary", #"{"action": "set", "percent": 5}"#, "change")
            try post("/services/shop/canary", #"{"action": "step", "gate": {"min_requests": 1000000}}"#, "gate-refusal", status: 412)
            try post("/endpoints/\("shop/127.0.0.1:\(green.port)".addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/")))!)/drain", #"{"drain": false}"#, "endpoint-change")
            try get("/status", "status")
            try cli(["status"], "status")
            try cli(["status", "--check"], "status-check")
            try cli(["flip", "shop", "--to", "green", "--wait"], "change")
            try cli(["canary", "set", "shop", "5"], "change")
            _ = try sendSequential(40, port: proxy.port)
            try cli(["canary", "step", "shop", "--bake", "1s", "--min-requests", "0", "--gate", "p99-floor=10s"], "change")
            #expect(documents.last?.text.contains(#""bake":{"#) == true, "the bake's verdict: \(documents.last?.text ?? "")")
            try cli(["explain", "--host", "shop"], "explain")

            var pairs: [String] = []
            for (index, document) in documents.enumerated() {
                let name = "answer-\(index).json"
                try dir.write(name, document.text)
                pairs.append("\(document.schema)=\(dir.file(name))")
            }
            let root = SwitchyardBinary.repositoryRoot
            let validation = try runCommand(
                "/usr/bin/env", ["python3", root + "/Tests/Fixtures/validate_api.py", root + "/docs/schema"] + pairs,
                dir: dir, label: "validate")
            #expect(validation.status == 0, "\(validation.stdout)\(validation.stderr)")
            let validated = validation.stdout.split(separator: "\n").filter { $0.hasPrefix("ok ") }.count
            #expect(validated == documents.count, "every answer validated: \(validation.stdout)")
        }

        @Test(.timeLimit(.minutes(1)))
        func statusCheckExitsOneNamingEachFailingThing() throws {
            let dir = try ScratchDir("ops-check")
            let blue = try Backend.demo("blue-1", dir: dir)
            let green = try Backend.demo("green-1", dir: dir)
            defer { blue.stop(); green.stop() }
            let services = """
                services:
                  shop:
                    active: blue
                    health: {type: http, path: /, interval: 200ms, timeout: 100ms, rise: 1, fall: 1}
                    instances:
                      - {address: 127.0.0.1, port: \(blue.port), track: blue}
                      - {address: 127.0.0.1, port: \(green.port), track: green}

                """
            let proxy = try TrafficProxy(dir: dir, services: services)
            defer { proxy.stop() }
            try waitFor("both endpoints healthy", timeout: .seconds(10)) {
                try proxy.cli(["status", "--check"]).status == 0
            }
            let healthy = try proxy.cli(["status", "--check"])
            #expect(healthy.stdout.hasPrefix("ok: 1 service(s)"), "\(healthy.stdout)")

            // The active track loses its only endpoint: exit 1 and a line that names it,
            // although green is healthy.
            blue.stop()
            try waitFor("the check to fail", timeout: .seconds(10)) {
                try proxy.cli(["status", "--check"]).status == 1
            }
            let failing = try proxy.cli(["status", "--check"])
            #expect(failing.status == 1)
            #expect(failing.stdout.contains("service shop: no healthy endpoint on its active track blue"), "\(failing.stdout)")
            #expect(failing.stdout.split(separator: "\n").count == 1, "one line per failing thing: \(failing.stdout)")

            // Flipped to green, the service is healthy again.
            #expect(try proxy.cli(["flip", "shop", "--to", "green", "--wait"]).status == 0)
            let flipped = try proxy.cli(["status", "--check", "--json"])
            #expect(flipped.status == 0, "\(flipped.stdout)")
            #expect(flipped.stdout.contains(#""healthy":true"#), "\(flipped.stdout)")
        }

        @Test(.timeLimit(.minutes(1)))
        func everyCommandFollowsOneExitCodeRule() throws {
            let dir = try ScratchDir("ops-exit")
            let blue = try Backend.demo("blue-1", dir: dir)
            let green = try Backend.demo("green-1", dir: dir)
            defer { blue.stop(); green.stop() }
            let proxy = try TrafficProxy(dir: dir, services: blueGreenServices(blue: [blue.port], green: [green.port]))
            defer { proxy.stop() }
            func run(_ arguments: [String]) throws -> CommandResult {
                try runCommand(SwitchyardBinary.path, arguments, dir: dir, label: "exit")
            }
            // 2: usage errors (ArgumentParser alone would exit 64), config errors, no admin API.
            let missing = try run(["flip"])
            #expect(missing.status == 2, "a missing argument: \(missing.stderr)")
            #expect(missing.stderr.contains("Usage"), "\(missing.stderr)")
            #expect(try run(["no-such-command"]).status == 2)
            #expect(try run(["flip", "shop", "--no-such-flag"]).status == 2)
            #expect(try run(["run", "--config", dir.file("absent.yml")]).status == 2)
            #expect(try run(["status", "--admin", "http://127.0.0.1:\(try closedPort())"]).status == 2)
            #expect(try proxy.cli(["flip", "nothing", "--to", "green"]).status == 2, "an error answer (404)")
            // 0: done, and the help and version.
            #expect(try run(["--help"]).status == 0)
            #expect(try run(["--version"]).status == 0)
            #expect(try proxy.cli(["flip", "shop", "--to", "green"]).status == 0)
            // 1: refused or not met.
            let stale = try proxy.cli(["flip", "shop", "--to", "blue", "--revision", "99"])
            #expect(stale.status == 1, "a stale revision: \(stale.stderr)")
            try dir.write("bad.yml", "listeners: []\nnot_a_key: 1\n")
            #expect(try run(["check", "--config", dir.file("bad.yml")]).status == 1, "check found the config invalid")
        }

        @Test(.timeLimit(.minutes(1)))
        func fleetMetricsShowTheStoreTheRevisionsAndSubMillisecondBuckets() throws {
            let dir = try ScratchDir("ops-metrics")
            let blue = try Backend.demo("blue-1", dir: dir)
            let green = try Backend.demo("green-1", dir: dir)
            defer { blue.stop(); green.stop() }
            let proxy = try TrafficProxy(dir: dir, services: blueGreenServices(blue: [blue.port], green: [green.port]))
            defer { proxy.stop() }
            #expect(try proxy.cli(["flip", "shop", "--to", "green", "--wait"]).status == 0)
            _ = try sendSequential(5, port: proxy.port)
            let metrics = String(decoding: try rawExchange(port: proxy.adminPort, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").body, as: UTF8.self)
            for line in [
                "switchyard_state_store_up 1",
                #"switchyard_traffic_revision{service="shop",state="stored"} 1"#,
                #"switchyard_traffic_revision{service="shop",state="applied"} 1"#,
                "# TYPE switchyard_state_store_last_load_timestamp_seconds gauge",
                #"le="0.0001"}"#, #"le="0.00025"}"#, #"le="0.0005"}"#, #"le="0.001"}"#, #"le="10"}"#,
            ] {
                #expect(metrics.contains(line), "\(line) in /metrics")
            }
        }

        @Test(.timeLimit(.minutes(1)))
        func jsonProcessLogsAreOneObjectPerLine() throws {
            let dir = try ScratchDir("ops-jsonlog")
            let blue = try Backend.demo("blue-1", dir: dir)
            defer { blue.stop() }
            try dir.write("services.yml", blueGreenServices(blue: [blue.port], green: []))
            var spec = ProxySpec(workers: 1)
            spec.extraYAML = "admin:\n  address: 127.0.0.1:0\nlog:\n  format: json\n"
            try dir.write("proxy.yml", spec.yaml)
            let child = try ChildProcess(SwitchyardBinary.path, ["run", "--config", dir.file("proxy.yml")], dir: dir, label: "jsonlog")
            defer { child.stop() }
            _ = try child.waitForListeningPort()
            let admin = try child.waitForAdminPort()
            let flip = try runCommand(SwitchyardBinary.path, ["flip", "shop", "--to", "blue", "--admin", "http://127.0.0.1:\(admin)"], dir: dir, label: "flip")
            #expect(flip.status == 0, "\(flip.stderr)")
            try waitFor("the publish's log line", timeout: .seconds(5)) { child.stderrText.contains("published (traffic)") }
            for line in child.stderrText.split(separator: "\n") {
                let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
                #expect(object?["level"] as? String != nil, "\(line)")
                #expect(object?["msg"] as? String != nil, "\(line)")
                #expect(object?["fields"] as? [String: Any] != nil, "\(line)")
                #expect((object?["ts"] as? String)?.hasSuffix("Z") == true, "\(line)")
            }
            // What a line is about is in its fields, for a log pipeline to index.
            let objects = child.stderrText.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            #expect(objects.contains { ($0["fields"] as? [String: String])?["replica"] != nil }, "the state store line names the replica")
            #expect(objects.contains { ($0["fields"] as? [String: String])?["table_version"] != nil }, "a publish names the table version")
            // The flag wins over the config; a bad value is a usage error.
            let bad = try runCommand(SwitchyardBinary.path, ["run", "--config", dir.file("proxy.yml"), "--log-format", "xml"], dir: dir, label: "badlog")
            #expect(bad.status == 2)
            #expect(bad.stderr.contains("--log-format is text or json"), "\(bad.stderr)")
        }
    }
}
