import Foundation
import Testing

extension Integration {
    /// Blue/green flips and canaries driven through the CLI and the admin API, with the
    /// default file state store (DESIGN.md "Traffic semantics").
    @Suite(.serialized) struct TrafficShifting {
        /// wrk -c64 for 20 s while blue and green are flipped 10 times with `switchyard
        /// flip`: no client sees an error; the first request after each flip returns reaches
        /// the new track; a slow request in flight at a flip finishes on the old track.
        @Test(.timeLimit(.minutes(2)))
        func flipUnderLoadMovesNewRequestsButLetsInFlightFinish() throws {
            let dir = try ScratchDir("flip-load")
            let blue = try Backend.demo("blue-1", dir: dir)
            let green = try Backend.demo("green-1", dir: dir)
            defer { blue.stop(); green.stop() }
            let proxy = try TrafficProxy(dir: dir, services: blueGreenServices(blue: [blue.port], green: [green.port]))
            defer { proxy.stop() }
            #expect(try proxy.backend() == "blue-1")

            let wrk = try ChildProcess("/usr/bin/wrk", ["-t1", "-c64", "-d20s", proxy.url + "/"], dir: dir, label: "wrk")
            defer { wrk.stop() }
            try waitFor("wrk's connections", timeout: .seconds(5)) {
                try establishedConnections(toPort: proxy.port, dir: dir) >= 32
            }
            var lags: [Double] = []
            var firstAnswers: [String] = []
            var expectedAnswers: [String] = []
            var slowResult: CurlResult?
            for flip in 1...10 {
                let target = flip % 2 == 1 ? "green" : "blue"
                let old = target == "green" ? "blue" : "green"
                // A slow request on the old track, in flight across this flip.
                var slow: BackgroundCurl?
                if flip == 5 {
                    slow = try BackgroundCurl(proxy.url + "/slow?ms=1500", extra: ["%header{x-backend}"], dir: dir)
                    try waitFor("the slow request to reach \(old)", timeout: .seconds(5)) {
                        let status = try proxy.adminJSON("/status")
                        return activeRequests(status, track: old) > 0
                    }
                }
                let result = try proxy.cli(["flip", "shop", "--to", target, "--why", "flip \(flip)"])
                #expect(result.status == 0, "flip \(flip): \(result.stdout) \(result.stderr)")
                // `flip` answers once every event loop serves the new table: the very first
                // request sent after it must already reach the new track.
                let flipped = ContinuousClock.now
                let first = try proxy.backend()
                let lag = ContinuousClock.now - flipped
                firstAnswers.append(first)
                expectedAnswers.append("\(target)-1")
                lags.append(Double(lag.components.attoseconds) / 1e15 + Double(lag.components.seconds) * 1000)
                if let slow { slowResult = slow.finish(timeout: .seconds(10)) }
                pause(.milliseconds(1500))
            }
            let status = wrk.waitExit(timeout: .seconds(30))
            #expect(status == 0, "wrk: \(wrk.stderrText)")
            let report = WrkReport(wrk.stdoutText)
            print(wrk.stdoutText)
            print("first answer after each flip (ms): \(lags.map { String(format: "%.1f", $0) })")
            #expect(report.requests > 1000)
            #expect(report.non2xx3xx == 0, "\(wrk.stdoutText)")
            #expect(report.socketErrors == nil, "\(wrk.stdoutText)")
            #expect(firstAnswers == expectedAnswers, "first answers after each flip: \(firstAnswers)")
            // The first answer's own latency: the request raced 64 wrk connections. The
            // median must be under 100 ms; single outliers are printed, not failed (a loaded
            // 2-core host schedules one request late now and then).
            let sorted = lags.sorted()
            print("median first-answer latency \(sorted[sorted.count / 2]) ms, max \(sorted.last ?? 0) ms")
            #expect(sorted[sorted.count / 2] <= 100, "first answers took \(lags) ms")
            #expect(slowResult?.httpStatus == 200, "slow request: \(String(describing: slowResult))")
            #expect(slowResult?.written.first == "blue-1", "the slow request moved off its track: \(String(describing: slowResult))")

            // Ten flips, ten revisions, each in the history with who and why.
            let service = try proxy.adminJSON("/services/shop")
            let state = service["state"] as? [String: Any]
            #expect(state?["revision"] as? Int == 10)
            #expect(state?["active_track"] as? String == "blue")
            #expect((state?["history"] as? [[String: Any]])?.last?["why"] as? String == "flip 10")
        }

        /// At 10 %, 10,000 sequential requests put exactly 1,000 ± 1 on the canary; 0 % puts
        /// none there, 100 % all of them. Set with `switchyard canary set`.
        @Test(.timeLimit(.minutes(2)))
        func canarySetThroughTheCLIIsExactAndZeroSendsNothing() throws {
            let dir = try ScratchDir("canary-cli")
            let blue = try [Backend.demo("blue-1", dir: dir), Backend.demo("blue-2", dir: dir), Backend.demo("blue-3", dir: dir)]
            let green = try Backend.demo("green-1", dir: dir)
            defer { (blue + [green]).forEach { $0.stop() } }
            let proxy = try TrafficProxy(dir: dir, services: blueGreenServices(blue: blue.map(\.port), green: [green.port]), workers: 1)
            defer { proxy.stop() }

            let set = try proxy.cli(["canary", "set", "shop", "10"])
            #expect(set.status == 0, "\(set.stdout) \(set.stderr)")
            #expect(set.stdout.contains("canary green 0% -> 10%"), "\(set.stdout)")
            let names = try sendSequential(10_000, port: proxy.port)
            let canary = names.filter { $0.hasPrefix("green") }.count
            #expect(abs(canary - 1_000) <= 1, "canary got \(canary) of 10000 at 10 %")

            #expect(try proxy.cli(["canary", "set", "shop", "0"]).status == 0)
            #expect(try sendSequential(2_000, port: proxy.port).allSatisfy { $0.hasPrefix("blue") })
            #expect(try proxy.cli(["canary", "set", "shop", "100"]).status == 0)
            #expect(try sendSequential(2_000, port: proxy.port).allSatisfy { $0 == "green-1" })
            #expect(try proxy.cli(["canary", "set", "shop", "0.5"]).status == 0)
            let half = try sendSequential(2_000, port: proxy.port).filter { $0 == "green-1" }.count
            #expect(abs(half - 10) <= 1, "0.5 % of 2000 gave \(half)")
        }

        /// Sticky by header: 1,000 client ids at 10 % put 100 ± 20 on the canary; raising
        /// it to 25 % through the CLI moves no id back to stable (checked id by id).
        @Test(.timeLimit(.minutes(2)))
        func stickyCanaryRaisedThroughTheCLIOnlyMovesClientsForward() throws {
            let dir = try ScratchDir("canary-sticky-cli")
            let blue = try Backend.demo("blue-1", dir: dir)
            let green = try Backend.demo("green-1", dir: dir)
            defer { blue.stop(); green.stop() }
            let proxy = try TrafficProxy(dir: dir, services: blueGreenServices(
                blue: [blue.port], green: [green.port], canary: "      track: green\n      sticky: header:X-User\n"))
            defer { proxy.stop() }
            #expect(try proxy.cli(["canary", "set", "shop", "10"]).status == 0)
            let users = 1_000
            let at10 = try sendSequential(users, port: proxy.port) { "X-User: user-\($0)\r\n" }
            let canaryAt10 = Set((0..<users).filter { at10[$0] == "green-1" })
            #expect(abs(canaryAt10.count - 100) <= 20, "\(canaryAt10.count) of \(users) ids on the canary at 10 %")
            #expect(try proxy.cli(["canary", "set", "shop", "25"]).status == 0)
            let at25 = try sendSequential(users, port: proxy.port) { "X-User: user-\($0)\r\n" }
            let canaryAt25 = Set((0..<users).filter { at25[$0] == "green-1" })
            #expect(canaryAt10.isSubset(of: canaryAt25), "ids moved back to stable: \(canaryAt10.subtracting(canaryAt25).sorted())")
            #expect(abs(canaryAt25.count - 250) <= 40)
        }

        /// A canary that answers 5 % of its requests with 500: `canary step` exits 1 and
        /// prints the comparison; the next step is refused before it moves; with
        /// --rollback-on-fail the canary ends at 0 %.
        @Test(.timeLimit(.minutes(2)))
        func failingCanaryFailsTheGateAndRollsBack() throws {
            let dir = try ScratchDir("gate-fail")
            let blue = try Backend.demo("blue-1", dir: dir)
            let greenChild = try ChildProcess(SwitchyardBinary.path, ["backend", "--name", "green-1", "--port", "0", "--fail-every", "20"], dir: dir, label: "green")
            defer { blue.stop(); greenChild.stop() }
            let greenPort = try greenChild.waitForListeningPort()
            let proxy = try TrafficProxy(dir: dir, services: blueGreenServices(blue: [blue.port], green: [greenPort]))
            defer { proxy.stop() }
            let wrk = try ChildProcess("/usr/bin/wrk", ["-t1", "-c4", "-d40s", proxy.url + "/"], dir: dir, label: "wrk")
            defer { wrk.stop() }

            let step = try proxy.cli(["canary", "step", "shop", "--bake", "3s", "--min-requests", "50", "--gate", "errors=1%"])
            print(step.stdout)
            #expect(step.status == 1, "\(step.stdout) \(step.stderr)")
            #expect(step.stdout.contains("canary green 0% -> 5%"))
            #expect(step.stdout.contains("FAILED"), "\(step.stdout)")
            #expect(step.stdout.contains("canary error rate"), "\(step.stdout)")
            #expect(step.stdout.contains("baking canary green"), "\(step.stdout)")

            // Still at 5 % (no rollback asked); the next step is refused before moving.
            let again = try proxy.cli(["canary", "step", "shop", "--min-requests", "50", "--gate", "errors=1%", "--rollback-on-fail"])
            print(again.stdout)
            #expect(again.status == 1, "\(again.stdout) \(again.stderr)")
            #expect(again.stdout.contains("not stepped"), "\(again.stdout)")
            #expect(again.stdout.contains("rolled back"), "\(again.stdout)")
            let state = try proxy.adminJSON("/services/shop")["state"] as? [String: Any]
            #expect(state?["canary_permille"] as? Int == 0, "\(String(describing: state))")
            #expect(state?["active_track"] as? String == "blue")
        }

        /// A healthy canary steps through 5, 25, 50 and 100 %, each baked and gated, and
        /// is promoted: green becomes the active track.
        @Test(.timeLimit(.minutes(2)))
        func healthyCanaryStepsThroughThePlanAndIsPromoted() throws {
            let dir = try ScratchDir("gate-pass")
            let blue = try Backend.demo("blue-1", dir: dir)
            let green = try Backend.demo("green-1", dir: dir)
            defer { blue.stop(); green.stop() }
            let proxy = try TrafficProxy(dir: dir, services: blueGreenServices(blue: [blue.port], green: [green.port]))
            defer { proxy.stop() }
            let wrk = try ChildProcess("/usr/bin/wrk", ["-t1", "-c4", "-d40s", proxy.url + "/"], dir: dir, label: "wrk")
            defer { wrk.stop() }

            for expected in ["0% -> 5%", "5% -> 25%", "25% -> 50%", "50% -> 100%"] {
                // The latency gate is left wide: on a shared 2-core machine one slow
                // millisecond decides a p99 of a few hundred requests (unit-tested instead).
                let step = try proxy.cli(["canary", "step", "shop", "--bake", "1s", "--min-requests", "20", "--gate", "p99-floor=1s", "--json"])
                #expect(step.status == 0, "step \(expected): \(step.stdout) \(step.stderr)")
                #expect(step.stdout.contains(expected), "\(step.stdout)")
                #expect(step.stdout.contains("\"passed\":true"), "\(step.stdout)")
            }
            let top = try proxy.cli(["canary", "step", "shop"])
            // At the top of the plan a step is refused (exit 1, like a failed gate), not an error.
            #expect(top.status == 1 && top.stderr.contains("promote it"), "\(top.stdout) \(top.stderr)")
            let promote = try proxy.cli(["canary", "promote", "shop", "--why", "all steps passed"])
            #expect(promote.status == 0, "\(promote.stdout) \(promote.stderr)")
            #expect(promote.stdout.contains("now green"), "\(promote.stdout)")
            #expect(try sendSequential(200, port: proxy.port).allSatisfy { $0 == "green-1" })
            let status = try proxy.cli(["status", "shop", "--interval", "0"])
            #expect(status.stdout.contains("green *"), "\(status.stdout)")
        }

        /// A write names a revision that is no longer current: 409, exit 1, nothing changes.
        @Test(.timeLimit(.minutes(1)))
        func staleRevisionIsRefusedWithConflict() throws {
            let dir = try ScratchDir("stale")
            let blue = try Backend.demo("blue-1", dir: dir)
            let green = try Backend.demo("green-1", dir: dir)
            defer { blue.stop(); green.stop() }
            let proxy = try TrafficProxy(dir: dir, services: blueGreenServices(blue: [blue.port], green: [green.port]))
            defer { proxy.stop() }
            #expect(try proxy.cli(["flip", "shop", "--revision", "0"]).status == 0)
            let stale = try proxy.cli(["flip", "shop", "--revision", "0"])
            #expect(stale.status == 1, "\(stale.stdout) \(stale.stderr)")
            #expect(stale.stderr.contains("stale revision"), "\(stale.stderr)")
            let raw = try proxy.adminPost("/services/shop/flip", "{\"revision\": 0}")
            #expect(raw.status == 409 && raw.body.contains("\"error\""), "\(raw)")
            #expect(try proxy.backend() == "green-1")
            // Bad input: 400 and 404 with JSON bodies.
            #expect(try proxy.adminPost("/services/shop/flip", "{\"to\": \"purple\"}").status == 400)
            #expect(try proxy.adminPost("/services/shop/canary", "{\"action\": \"fly\"}").status == 400)
            #expect(try proxy.adminPost("/services/shop/canary", "not json").status == 400)
            #expect(try proxy.adminPost("/services/nope/flip", "{}").status == 404)
        }

        /// With a token configured, a write without it or with a wrong one gets 401, and
        /// the right one (from --token-file) works; an admin bound to 0.0.0.0 without a
        /// token refuses to start.
        @Test(.timeLimit(.minutes(1)))
        func writesNeedTheTokenAndAnOpenAdminWithoutOneRefusesToStart() throws {
            let dir = try ScratchDir("token")
            let blue = try Backend.demo("blue-1", dir: dir)
            let green = try Backend.demo("green-1", dir: dir)
            defer { blue.stop(); green.stop() }
            try dir.write("token", "s3cret-token\n")
            #expect(chmod(dir.file("token"), 0o600) == 0)  // owner-only, or startup refuses it
            let proxy = try TrafficProxy(dir: dir, services: blueGreenServices(blue: [blue.port], green: [green.port]),
                                         adminExtra: "  token_file: token\n")
            defer { proxy.stop() }
            let none = try proxy.adminPost("/services/shop/flip", "{}")
            #expect(none.status == 401 && none.body.contains("Authorization: Bearer"), "\(none)")
            #expect(try proxy.adminPost("/services/shop/flip", "{}", token: "wrong").status == 401)
            #expect(try proxy.adminPost("/services/shop/flip", "{}", token: "s3cret-token-but-longer").status == 401)
            let cliWithout = try proxy.cli(["flip", "shop"])
            #expect(cliWithout.status == 2 && cliWithout.stderr.contains("401"), "\(cliWithout.stderr)")
            #expect(try proxy.backend() == "blue-1")
            let cliWith = try proxy.cli(["flip", "shop", "--token-file", dir.file("token")])
            #expect(cliWith.status == 0, "\(cliWith.stdout) \(cliWith.stderr)")
            #expect(try proxy.backend() == "green-1")
            // Reads stay open.
            #expect(try proxy.adminJSON("/services/shop")["service"] as? String == "shop")

            var open = ProxySpec()
            open.extraYAML = "admin:\n  address: 0.0.0.0:0\n"
            try dir.write("open.yml", open.yaml)
            let refused = try runCommand(SwitchyardBinary.path, ["run", "--config", dir.file("open.yml")], dir: dir, label: "open", timeout: .seconds(10))
            #expect(refused.status != 0 && refused.status != nil)
            #expect(refused.stderr.contains("without a token"), "\(refused.stderr)")
            // The same from the command line.
            try dir.write("plain.yml", ProxySpec().yaml)
            let flag = try runCommand(SwitchyardBinary.path, ["run", "--config", dir.file("plain.yml"), "--admin", "0.0.0.0:0"], dir: dir, label: "open-flag", timeout: .seconds(10))
            #expect(flag.status != 0 && flag.status != nil)
            #expect(flag.stderr.contains("without a token"), "\(flag.stderr)")
        }

        /// POST /endpoints/ID/drain takes one endpoint out of rotation on this replica and
        /// puts it back; an unknown id is a 404.
        @Test(.timeLimit(.minutes(1)))
        func endpointDrainThroughTheAdminAPI() throws {
            let dir = try ScratchDir("endpoint-drain")
            let blue = try [Backend.demo("blue-1", dir: dir), Backend.demo("blue-2", dir: dir)]
            let green = try Backend.demo("green-1", dir: dir)
            defer { (blue + [green]).forEach { $0.stop() } }
            let proxy = try TrafficProxy(dir: dir, services: blueGreenServices(blue: blue.map(\.port), green: [green.port]))
            defer { proxy.stop() }
            #expect(Set(try sendSequential(10, port: proxy.port)) == ["blue-1", "blue-2"])
            let drained = try proxy.adminPost("/endpoints/shop%2F127.0.0.1:\(blue[0].port)/drain", "{\"drain\": true}")
            #expect(drained.status == 200, "\(drained)")
            #expect(try sendSequential(20, port: proxy.port).allSatisfy { $0 == "blue-2" })
            #expect(try proxy.adminPost("/endpoints/shop%2F127.0.0.1:\(blue[0].port)/drain", "{\"drain\": false}").status == 200)
            #expect(Set(try sendSequential(10, port: proxy.port)) == ["blue-1", "blue-2"])
            #expect(try proxy.adminPost("/endpoints/shop%2F127.0.0.1:1/drain", "{}").status == 404)
        }

        /// Flip with --drain waits for the old track's slow request to finish, showing
        /// progress, and reports when it drained.
        @Test(.timeLimit(.minutes(1)))
        func flipWithDrainWaitsForTheOldTracksInFlightRequests() throws {
            let dir = try ScratchDir("flip-drain")
            let blue = try Backend.demo("blue-1", dir: dir)
            let green = try Backend.demo("green-1", dir: dir)
            defer { blue.stop(); green.stop() }
            let proxy = try TrafficProxy(dir: dir, services: blueGreenServices(blue: [blue.port], green: [green.port]))
            defer { proxy.stop() }
            // Keep-alive connections to blue sit idle in the proxy's pools.
            _ = try sendSequential(50, port: proxy.port)
            #expect(try establishedConnections(toPort: blue.port, dir: dir) >= 1)
            let slow = try BackgroundCurl(proxy.url + "/slow?ms=1200", extra: ["%header{x-backend}"], dir: dir)
            try waitFor("the slow request on blue", timeout: .seconds(5)) {
                activeRequests(try proxy.adminJSON("/status"), track: "blue") > 0
            }
            let flip = try proxy.cli(["flip", "shop", "--to", "green", "--drain", "10s"])
            #expect(flip.status == 0, "\(flip.stdout) \(flip.stderr)")
            #expect(flip.stdout.contains("blue drained"), "\(flip.stdout)")
            let result = slow.finish(timeout: .seconds(5))
            #expect(result.httpStatus == 200)
            #expect(result.written.first == "blue-1", "\(result)")
            // Blue takes no new request: its idle pooled connections were closed at the flip,
            // and the slow request's connection when it finished.
            try waitFor("no connection left to blue", timeout: .seconds(3)) {
                try establishedConnections(toPort: blue.port, dir: dir) == 0
            }
        }
    }
}

/// Requests in flight on `track` of shop, from a /status document.
func activeRequests(_ status: [String: Any], track: String) -> Int {
    let services = status["services"] as? [[String: Any]] ?? []
    let tracks = services.first { $0["name"] as? String == "shop" }?["tracks"] as? [[String: Any]] ?? []
    let endpoints = tracks.first { $0["name"] as? String == track }?["endpoints"] as? [[String: Any]] ?? []
    return endpoints.reduce(0) { $0 + ($1["active_requests"] as? Int ?? 0) }
}
