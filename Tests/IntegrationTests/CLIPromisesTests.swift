import Foundation
import Testing

extension Integration {
    /// What README.md and docs/ promise about the CLI, through the real binary: explain
    /// runs the request path's split, errors are printed as messages with the documented
    /// exit codes, client commands find the admin API from the config or the environment,
    /// render uses the running replica's traffic state, SIGHUP names what it cannot apply.
    @Suite(.serialized) struct CLIPromises {
        @Test(.timeLimit(.minutes(1)))
        func explainRunsTheSameSplitAsTheRequestPath() throws {
            let dir = try ScratchDir("cli-explain")
            let blue = try Backend.demo("blue-1", dir: dir)
            let green = try Backend.demo("green-1", dir: dir)
            defer { blue.stop(); green.stop() }
            let proxy = try TrafficProxy(dir: dir, services: blueGreenServices(
                blue: [blue.port], green: [green.port], canary: "      track: green\n      percent: 10\n      sticky: header:X-User\n"))
            defer { proxy.stop() }

            // The override header pins green, as curl with that header gets green.
            let pinned = try proxy.cli(["explain", "--host", "shop", "--path", "/", "--header", "X-Switchyard-Track:green", "--json"])
            #expect(pinned.status == 0, "\(pinned.stderr)")
            #expect(pinned.stdout.contains("\"rule\":\"override_header\""), "\(pinned.stdout)")
            #expect(pinned.stdout.contains("\"track\":\"green\""), "\(pinned.stdout)")
            let viaCurl = try sendSequential(5, port: proxy.port, headers: { _ in "X-Switchyard-Track: green\r\n" })
            #expect(Set(viaCurl) == ["green-1"])

            // No header: the canary share decides, and explain lists both tracks.
            let shared = try proxy.cli(["explain", "--host", "shop", "--path", "/"])
            #expect(shared.status == 0)
            #expect(shared.stdout.contains("decided by canary_share"), "\(shared.stdout)")
            #expect(shared.stdout.contains("10%"), "\(shared.stdout)")
            #expect(shared.stdout.contains("(green)") && shared.stdout.contains("(blue)"), "\(shared.stdout)")

            // A sticky key: explain names the client's point and the track it always gets,
            // and requests with that key all go there.
            for user in ["u-1", "u-2", "u-3", "u-4", "u-5", "u-6"] {
                let sticky = try proxy.cli(["explain", "--host", "shop", "--header", "X-User:\(user)", "--json"])
                #expect(sticky.stdout.contains("\"rule\":\"sticky_key\""), "\(sticky.stdout)")
                let track = sticky.stdout.contains("\"track\":\"green\"") ? "green-1" : "blue-1"
                let answers = try sendSequential(3, port: proxy.port, headers: { _ in "X-User: \(user)\r\n" })
                #expect(Set(answers) == [track], "user \(user): explain said \(track), requests went to \(answers)")
            }
        }

        @Test(.timeLimit(.minutes(1)))
        func canaryStepAtTheTopOfThePlanIsRefusedWithItsMessage() throws {
            let dir = try ScratchDir("cli-top-of-plan")
            let blue = try Backend.demo("blue-1", dir: dir)
            let green = try Backend.demo("green-1", dir: dir)
            defer { blue.stop(); green.stop() }
            let proxy = try TrafficProxy(dir: dir, services: blueGreenServices(blue: [blue.port], green: [green.port]))
            defer { proxy.stop() }
            #expect(try proxy.cli(["canary", "set", "shop", "100", "--track", "green"]).status == 0)
            let step = try proxy.cli(["canary", "step", "shop", "--min-requests", "0"])
            #expect(step.status == 1, "refused, not an error: \(step.stdout) \(step.stderr)")
            #expect(step.stderr.contains("top of its plan"), "\(step.stderr)")
            #expect(!step.stderr.contains("DecodingError") && !step.stderr.contains("{\""), "the message, not the JSON: \(step.stderr)")

            // Durations and intervals from the command line never trap the CLI.
            for arguments in [["canary", "step", "shop", "--bake", "inf"], ["canary", "step", "shop", "--bake", "1e300s"], ["status", "--interval", "nan"]] {
                let result = try proxy.cli(arguments)
                #expect(result.status == 0 || result.status == 1 || result.status == 2, "\(arguments): \(result.status.map(String.init) ?? "killed") \(result.stderr)")
            }

            // Any other error answer: its message, exit 2.
            let unknown = try proxy.cli(["flip", "nosuch", "--to", "green"])
            #expect(unknown.status == 2)
            #expect(unknown.stderr.contains("no service 'nosuch' is discovered"), "\(unknown.stderr)")
            #expect(!unknown.stderr.contains("{\""), "\(unknown.stderr)")
        }

        @Test(.timeLimit(.minutes(1)))
        func clientCommandsFindTheAdminAPIFromConfigOrEnvironmentAndSayConnectionRefused() throws {
            let dir = try ScratchDir("cli-admin-address")
            let blue = try Backend.demo("blue-1", dir: dir)
            let green = try Backend.demo("green-1", dir: dir)
            defer { blue.stop(); green.stop() }
            try dir.write("token", "s3cret-token\n")
            #expect(chmod(dir.file("token"), 0o600) == 0)  // owner-only: newer replicas refuse a readable token file
            let proxy = try TrafficProxy(dir: dir, services: blueGreenServices(blue: [blue.port], green: [green.port]),
                                         adminExtra: "  token_file: token\n")
            defer { proxy.stop() }
            try dir.write("client.yml", """
                listeners:
                  - {name: web, address: 127.0.0.1:0}
                discovery: {provider: file, file: services.yml}
                admin:
                  address: 127.0.0.1:\(proxy.adminPort)
                  token_file: token

                """)
            let bin = SwitchyardBinary.path
            let byConfig = try runCommand(bin, ["status", "--config", dir.file("client.yml"), "--interval", "0"], dir: dir, label: "by-config")
            #expect(byConfig.status == 0, "\(byConfig.stderr)")
            #expect(byConfig.stdout.contains("blue *"), "\(byConfig.stdout)")
            #expect(!byConfig.stderr.contains("token"), "a read needs no token: \(byConfig.stderr)")
            let byEnv = try runCommand("/usr/bin/env", ["SWITCHYARD_ADMIN=127.0.0.1:\(proxy.adminPort)", bin, "status", "--interval", "0"], dir: dir, label: "by-env")
            #expect(byEnv.status == 0, "\(byEnv.stderr)")
            #expect(byEnv.stdout.contains("blue *"), "\(byEnv.stdout)")

            // Writes: the token from the config's token_file, or from the environment.
            let flipByConfig = try runCommand(bin, ["flip", "shop", "--to", "green", "--config", dir.file("client.yml")], dir: dir, label: "flip-config")
            #expect(flipByConfig.status == 0, "\(flipByConfig.stderr)")
            let flipByEnv = try runCommand("/usr/bin/env", ["SWITCHYARD_ADMIN=\(proxy.adminURL)", "SWITCHYARD_TOKEN=s3cret-token", bin, "flip", "shop", "--to", "blue"],
                                           dir: dir, label: "flip-env")
            #expect(flipByEnv.status == 0, "\(flipByEnv.stderr)")
            let flipByEnvFile = try runCommand("/usr/bin/env", ["SWITCHYARD_ADMIN=\(proxy.adminURL)", "SWITCHYARD_TOKEN_FILE=\(dir.file("token"))", bin, "flip", "shop", "--to", "green"],
                                               dir: dir, label: "flip-env-file")
            #expect(flipByEnvFile.status == 0, "\(flipByEnvFile.stderr)")
            let noToken = try runCommand("/usr/bin/env", ["SWITCHYARD_ADMIN=\(proxy.adminURL)", bin, "flip", "shop", "--to", "blue"], dir: dir, label: "flip-none")
            #expect(noToken.status == 2 && noToken.stderr.contains("needs a token"), "\(noToken.stderr)")

            let closed = try closedPort()
            let refused = try runCommand(bin, ["status", "--admin", "http://127.0.0.1:\(closed)"], dir: dir, label: "refused")
            #expect(refused.status == 2)
            #expect(refused.stderr.contains("connection refused"), "\(refused.stderr)")
            #expect(!refused.stderr.contains("timed out"), "\(refused.stderr)")
        }

        @Test(.timeLimit(.minutes(1)))
        func statusWithNoActiveTrackMarksNoTrackActive() throws {
            let dir = try ScratchDir("cli-no-active")
            let blue = try Backend.demo("blue-1", dir: dir)
            let green = try Backend.demo("green-1", dir: dir)
            defer { blue.stop(); green.stop() }
            let services = blueGreenServices(blue: [blue.port], green: [green.port]).replacingOccurrences(of: "    active: blue\n", with: "")
            let proxy = try TrafficProxy(dir: dir, services: services)
            defer { proxy.stop() }
            let status = try proxy.cli(["status", "--interval", "0"])
            #expect(status.status == 0, "\(status.stderr)")
            #expect(!status.stdout.contains("blue *") && !status.stdout.contains("green *"), "\(status.stdout)")
            #expect(status.stdout.contains("50.0%"), "two equal tracks share by weight: \(status.stdout)")
            #expect(status.stdout.contains("no active track"), "\(status.stdout)")
        }

        @Test(.timeLimit(.minutes(1)))
        func renderUsesTheRunningReplicasTrafficStateAndSaysSo() throws {
            let dir = try ScratchDir("cli-render-traffic")
            let blue = try Backend.demo("blue-1", dir: dir)
            let green = try Backend.demo("green-1", dir: dir)
            defer { blue.stop(); green.stop() }
            try dir.write("upstream.stencil", """
                {% for service in services %}upstream {{ service.name }} active={{ service.traffic.active }}
                {% endfor %}
                """)
            try dir.write("services.yml", blueGreenServices(blue: [blue.port], green: [green.port]))
            var spec = ProxySpec(workers: 1)
            spec.extraYAML = """
                admin:
                  address: 127.0.0.1:0
                templates:
                  outputs:
                    - template: upstream.stencil
                      destination: upstream.conf
                      wait: {min: 0s, max: 0s}

                """
            let proxy = try TrafficProxy(dir: dir, configText: spec.yaml)
            defer { proxy.stop() }
            #expect(try proxy.cli(["flip", "shop", "--to", "green"]).status == 0)
            try waitFor("the replica to render green", timeout: .seconds(5)) { dir.read("upstream.conf").contains("active=green") }

            let dryRun = try runCommand(SwitchyardBinary.path, ["render", "--config", dir.file("proxy.yml"), "--dry-run", "--admin", proxy.adminURL],
                                        dir: dir, label: "render-dry")
            #expect(dryRun.status == 0, "\(dryRun.stdout) \(dryRun.stderr)")
            #expect(dryRun.stdout.contains("traffic state: from the running replica"), "\(dryRun.stdout)")
            #expect(dryRun.stdout.contains("no change: "), "renders what the replica wrote: \(dryRun.stdout)")
            #expect(!dryRun.stdout.contains("active=blue"), "\(dryRun.stdout)")

            // With the replica stopped, the state store answers.
            proxy.stop()
            let offline = try runCommand(SwitchyardBinary.path, ["render", "--config", dir.file("proxy.yml"), "--dry-run", "--admin", proxy.adminURL],
                                         dir: dir, label: "render-offline")
            #expect(offline.stdout.contains("traffic state: from the state store"), "\(offline.stdout)")
            #expect(offline.stdout.contains("active=green") && !offline.stdout.contains("active=blue"), "\(offline.stdout)")
        }

        /// The shipped `conf/nginx-check` tests the candidate in place of the live file: a
        /// template emitting an unknown directive fails the check and the good file stays
        /// (plain `nginx -t` would have passed it: it tests the live file).
        @Test(.timeLimit(.minutes(1)), .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/sbin/nginx")))
        func shippedNginxCheckRefusesABrokenCandidate() throws {
            let dir = try ScratchDir("cli-nginx-check")
            let prefix = dir.file("nginx")
            for sub in ["conf", "logs"] { try FileManager.default.createDirectory(atPath: "\(prefix)/\(sub)", withIntermediateDirectories: true) }
            try Data("""
                pid logs/nginx.pid;
                error_log logs/error.log;
                events { worker_connections 64; }
                http {
                    include upstream.conf;
                    server { listen 127.0.0.1:1; location / { proxy_pass http://shop; } }
                }

                """.utf8).write(to: URL(fileURLWithPath: "\(prefix)/conf/nginx.conf"))
            try dir.write("services.yml", blueGreenServices(blue: [9101], green: [9102]))
            let good = "{% for service in services %}upstream {{ service.name }} {\n{% for i in service.instances %}    server {{ i.endpoint }};\n{% endfor %}}\n{% endfor %}"
            try dir.write("upstream.stencil", good)
            let check = "\(SwitchyardBinary.repositoryRoot)/conf/nginx-check \(prefix)/conf/nginx.conf -p \(prefix)/"
            var spec = ProxySpec(workers: 1)
            spec.extraYAML = """
                admin: {enabled: false}
                templates:
                  outputs:
                    - template: upstream.stencil
                      destination: nginx/conf/upstream.conf
                      check: \(check)

                """
            try dir.write("proxy.yml", spec.yaml)
            let first = try runCommand(SwitchyardBinary.path, ["render", "--config", dir.file("proxy.yml")], dir: dir, label: "render-good")
            #expect(first.status == 0, "\(first.stdout) \(first.stderr)")
            let written = dir.read("nginx/conf/upstream.conf")
            #expect(written.contains("server 127.0.0.1:9101;"), "\(written)")

            try dir.write("upstream.stencil", good.replacingOccurrences(of: "{{ service.name }} {\n", with: "{{ service.name }} {\n    server_bogus_directive on;\n"))
            let broken = try runCommand(SwitchyardBinary.path, ["render", "--config", dir.file("proxy.yml")], dir: dir, label: "render-broken")
            #expect(broken.status == 1, "\(broken.stdout) \(broken.stderr)")
            #expect(broken.stdout.contains("server_bogus_directive"), "nginx's own message: \(broken.stdout)")
            #expect(dir.read("nginx/conf/upstream.conf") == written, "the good file stays")
            let leftovers = try FileManager.default.contentsOfDirectory(atPath: "\(prefix)/conf").filter { $0.hasPrefix(".") }
            #expect(leftovers.isEmpty, "no candidate or wrapper left behind: \(leftovers)")
        }

        /// `POST /render` answers with this render's outcome (not the previous one's), and
        /// a failed check counts in `failures` of `GET /render`.
        @Test(.timeLimit(.minutes(1)))
        func postRenderReportsThisRenderAndAFailedCheckCounts() throws {
            let dir = try ScratchDir("cli-render-report")
            let blue = try Backend.demo("blue-1", dir: dir)
            defer { blue.stop() }
            try dir.write("out.stencil", "{% for service in services %}{{ service.name }}{% endfor %}\n")
            try dir.write("services.yml", blueGreenServices(blue: [blue.port], green: []))
            var spec = ProxySpec(workers: 1)
            spec.extraYAML = """
                admin:
                  address: 127.0.0.1:0
                templates:
                  outputs:
                    - template: out.stencil
                      destination: out.txt
                      check: test ! -e refuse
                      wait: {min: 5s, max: 10s}

                """
            let proxy = try TrafficProxy(dir: dir, configText: spec.yaml)
            defer { proxy.stop() }
            let first = try proxy.adminPost("/render", "")
            #expect(first.status == 200, "\(first.body)")
            #expect(first.body.contains("written"), "this render's outcome, not the quiescence's later one: \(first.body)")

            try dir.write("refuse", "")
            try dir.write("out.stencil", "changed {% for service in services %}{{ service.name }}{% endfor %}\n")
            let refused = try proxy.adminPost("/render", "")
            #expect(refused.body.contains("check failed"), "\(refused.body)")
            let report = try proxy.adminJSON("/render")
            #expect((report["failures"] as? Int ?? 0) >= 1, "\(report)")
            #expect((report["last_error"] as? String ?? "").contains("check failed"), "\(report)")
            #expect(dir.read("out.txt").hasPrefix("shop"), "the old file stays")
        }

        @Test(.timeLimit(.minutes(1)))
        func sighupNamesEveryKeyItCannotApply() throws {
            let dir = try ScratchDir("cli-sighup")
            let blue = try Backend.demo("blue-1", dir: dir)
            defer { blue.stop() }
            let proxy = try TrafficProxy(dir: dir, services: blueGreenServices(blue: [blue.port], green: []))
            defer { proxy.stop() }
            let config = dir.read("proxy.yml")
            try dir.write("proxy.yml", config + "access_log:\n  path: access.log\n")
            proxy.child.signal(SIGHUP)
            try waitFor("the reload warning", timeout: .seconds(5)) { proxy.child.stderrText.contains("apply at the next restart") }
            #expect(proxy.child.stderrText.contains("access_log"), "\(proxy.child.stderrText.suffix(800))")
        }
    }
}
