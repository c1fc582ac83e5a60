import Foundation
import Testing

// The admin API is not an open door: nothing a client sends stops the process, every
// write needs the token, a browser page cannot drive it, and slow clients cannot use up
// the process. Each test runs the real binary and attacks it over loopback.

extension Integration {
    @Suite(.serialized) struct AdminSecurity {
        /// A raw request to the admin API: status and body text.
        static func admin(_ proxy: TrafficProxy, _ method: String, _ target: String, headers: [String] = [],
                          body: String = "") throws -> (status: Int, body: String) {
            var head = "\(method) \(target) HTTP/1.1\r\nConnection: close\r\nContent-Length: \(body.utf8.count)\r\n"
            if !headers.contains(where: { $0.lowercased().hasPrefix("host:") }) { head += "Host: 127.0.0.1:\(proxy.adminPort)\r\n" }
            for header in headers { head += header + "\r\n" }
            let response = try rawExchange(port: proxy.adminPort, head + "\r\n" + body, method: method)
            return (response.status, String(decoding: response.body, as: UTF8.self))
        }

        static func revision(_ proxy: TrafficProxy) throws -> Int {
            ((try proxy.adminJSON("/services/shop")["state"] as? [String: Any])?["revision"] as? Int) ?? -1
        }

        /// Blue and green demo backends behind a proxy whose admin section gets `adminExtra`.
        final class Stack {
            let blue: Backend
            let green: Backend
            let proxy: TrafficProxy
            init(_ dir: ScratchDir, adminExtra: String = "") throws {
                blue = try Backend.demo("blue-1", dir: dir)
                green = try Backend.demo("green-1", dir: dir)
                do {
                    proxy = try TrafficProxy(dir: dir, services: blueGreenServices(blue: [blue.port], green: [green.port]), adminExtra: adminExtra)
                } catch {
                    blue.stop()
                    green.stop()
                    throw error
                }
            }
            func stop() { proxy.stop(); blue.stop(); green.stop() }
        }

        /// Owner-only, as the token file must be.
        static func writeToken(_ dir: ScratchDir, _ text: String) throws {
            try dir.write("token", text)
            #expect(chmod(dir.file("token"), 0o600) == 0)
        }

        @Test(.timeLimit(.minutes(1)))
        func malformedQueriesAndExtremeGateValuesAreAnsweredNotCrashes() throws {
            let dir = try ScratchDir("admin-queries")
            let stack = try Stack(dir)
            defer { stack.stop() }
            let proxy = stack.proxy
            for query in ["?=", "?=b", "?a=%", "?a=%4", "?a=1&a=2"] {
                #expect(try Self.admin(proxy, "GET", "/healthz\(query)").status == 400, "\(query)")
            }
            for query in ["?&", "?a", "?a=b"] {
                #expect(try Self.admin(proxy, "GET", "/healthz\(query)").status == 200, "\(query)")
            }
            for value in ["-inf", "nan", "inf", "-1e300", "1e300"] {
                let answer = try Self.admin(proxy, "GET", "/services/shop/gate?canary=green&stable=blue&max_error_rate_increase=\(value)")
                #expect(answer.status == 400 && answer.body.contains("max_error_rate_increase"), "\(value): \(answer)")
            }
            let window = try Self.admin(proxy, "GET", "/services/shop/gate?canary=green&stable=blue&window=-1e300")
            #expect(window.status == 400 && window.body.contains("window"), "\(window)")
            let huge = try rawExchange(port: proxy.adminPort, "POST /render HTTP/1.1\r\nHost: localhost:\(proxy.adminPort)\r\nContent-Type: application/json\r\nContent-Length: 2000000\r\n\r\n", method: "POST")
            #expect(huge.status == 413)
            let endless = try RawConnection(port: proxy.adminPort)
            try endless.send("GET /" + String(repeating: "a", count: 40_000))  // all read before the 414, so no reset
            #expect(try endless.readResponse().status == 414)
            #expect(proxy.child.isRunning)
            #expect(try proxy.backend() == "blue-1")
        }

        /// Every write route, without a token, is 401 and changes nothing, `POST
        /// /render?force=true` included; with the token, the history records its name.
        @Test(.timeLimit(.minutes(1)))
        func everyWriteWithoutTheTokenIs401AndChangesNothing() throws {
            let dir = try ScratchDir("admin-writes")
            try Self.writeToken(dir, "ci:ci-token-1\nops:ops-token-2\n")
            let stack = try Stack(dir, adminExtra: "  token_file: token\n")
            defer { stack.stop() }
            let proxy = stack.proxy
            let json = ["Content-Type: application/json"]
            let writes: [(String, String, String)] = [
                ("POST", "/services/shop/flip", #"{"to":"green"}"#),
                ("POST", "/services/shop/canary", #"{"action":"set","percent":50,"track":"green"}"#),
                ("POST", "/services/shop/other", "{}"),
                ("PUT", "/services/shop/flip", "{}"),
                ("DELETE", "/services/shop", ""),
                ("POST", "/endpoints/shop%2F127.0.0.1:\(stack.blue.port)/drain", #"{"drain":true}"#),
                ("POST", "/render", ""),
                ("POST", "/render?force=true", ""),
                ("POST", "/status", ""),
            ]
            for (method, path, body) in writes {
                let plain = try Self.admin(proxy, method, path, headers: body.isEmpty ? [] : json, body: body)
                #expect(plain.status == 401, "\(method) \(path): \(plain)")
                let wrong = try Self.admin(proxy, method, path, headers: json + ["Authorization: Bearer ci-token-"], body: body)
                #expect(wrong.status == 401, "\(method) \(path) with a wrong token: \(wrong)")
            }
            #expect(try Self.revision(proxy) == 0)
            #expect(Set(try sendSequential(6, port: proxy.port)) == ["blue-1"])
            #expect(!proxy.child.stderrText.contains("--force"))

            let flip = try Self.admin(proxy, "POST", "/services/shop/flip",
                                      headers: json + ["Authorization: Bearer ops-token-2"], body: #"{"to":"green","who":"alice"}"#)
            #expect(flip.status == 200, "\(flip)")
            let history = (try proxy.adminJSON("/services/shop")["state"] as? [String: Any])?["history"] as? [[String: Any]]
            #expect(history?.last?["who"] as? String == "ops (sent: alice)", "\(String(describing: history))")
            #expect(try proxy.backend() == "green-1")
            let log = proxy.child.stderrText
            #expect(!log.contains("ci-token-1") && !log.contains("ops-token-2"))
        }

        /// A render the guards held back is applied by `POST /render?force=true` only with
        /// the token (it used to skip the check); `switchyard render --force` sends the
        /// config's token.
        @Test(.timeLimit(.minutes(1)))
        func renderForceNeedsTheTokenLikeEveryWrite() throws {
            let dir = try ScratchDir("admin-render-force")
            let a = try Backend.demo("a", dir: dir)
            defer { a.stop() }
            try Self.writeToken(dir, "ci:render-token-cccc\n")
            try dir.write("pools.yml.stencil", try shippedTemplate("pools.yml.stencil"))
            try dir.write("services.yml", servicesYAML([ServiceSpec(name: "shop", instances: [.init(port: a.port)])]))
            let config = templatedConfigYAML(templates: "  pools: pools.yml.stencil\n")
                .replacingOccurrences(of: "admin: {address: 127.0.0.1:0}", with: "admin: {address: 127.0.0.1:0, token_file: token}")
            try dir.write("switchyard.yml", config)
            let (proxy, port, adminPort) = try startProxyWithAdmin(dir: dir)
            defer { proxy.stop() }
            let url = "http://127.0.0.1:\(port)"
            #expect(try backendsAnswering(2, at: url, dir: dir) == ["a", "a"])
            try dir.write("services.yml", servicesYAML([ServiceSpec(name: "shop", instances: [])]))
            try waitFor("the guard to hold the render back", timeout: .seconds(10)) { proxy.stderrText.contains("render held back") }

            let bare = try rawExchange(port: adminPort, "POST /render?force=true HTTP/1.1\r\nHost: 127.0.0.1:\(adminPort)\r\nConnection: close\r\n\r\n", method: "POST")
            #expect(bare.status == 401)
            #expect(try backendsAnswering(2, at: url, dir: dir) == ["a", "a"], "the held render stays held")
            #expect(!proxy.stderrText.contains("render applied with --force"))

            let forced = try runCommand(SwitchyardBinary.path, ["render", "--config", dir.file("switchyard.yml"), "--force", "--admin", "http://127.0.0.1:\(adminPort)"], dir: dir, label: "render-force")
            #expect(forced.status == 0, "\(forced.stdout) \(forced.stderr)")
            try waitFor("the forced empty pool to answer 503", timeout: .seconds(5)) { try curl(url + "/", dir: dir).httpStatus == 503 }
        }

        /// DNS rebinding and CSRF: a Host naming another site is 421; a `text/plain` form
        /// post, or any write from another origin, is refused and nothing changes.
        @Test(.timeLimit(.minutes(1)))
        func aBrowserPageOfAnotherSiteCannotDriveTheAdminAPI() throws {
            let dir = try ScratchDir("admin-browser")
            let stack = try Stack(dir, adminExtra: "  allowed_hosts: [switchyard.internal]\n")
            defer { stack.stop() }
            let proxy = stack.proxy
            let port = proxy.adminPort
            #expect(try Self.admin(proxy, "GET", "/status", headers: ["Host: rebind.example:\(port)"]).status == 421)
            #expect(try Self.admin(proxy, "POST", "/services/shop/flip", headers: ["Host: rebind.example:\(port)", "Content-Type: application/json"], body: "{}").status == 421)
            #expect(try Self.admin(proxy, "GET", "/status", headers: ["Host: switchyard.internal"]).status == 200)
            #expect(try Self.admin(proxy, "GET", "/status", headers: ["Host: localhost:\(port)"]).status == 200)
            let form = try Self.admin(proxy, "POST", "/services/shop/flip",
                                      headers: ["Content-Type: text/plain", "Origin: http://evil.example"], body: #"{"to":"green"}"#)
            #expect(form.status == 403, "\(form)")
            let noOrigin = try Self.admin(proxy, "POST", "/services/shop/flip", headers: ["Content-Type: text/plain"], body: #"{"to":"green"}"#)
            #expect(noOrigin.status == 415, "\(noOrigin)")
            let urlencoded = try Self.admin(proxy, "POST", "/render?force=true", headers: ["Content-Type: application/x-www-form-urlencoded"])
            #expect(urlencoded.status == 415, "\(urlencoded)")
            let foreignJSON = try Self.admin(proxy, "POST", "/services/shop/flip",
                                             headers: ["Content-Type: application/json", "Origin: http://evil.example:\(port)"], body: "{}")
            #expect(foreignJSON.status == 403, "\(foreignJSON)")
            #expect(try Self.revision(proxy) == 0)
            #expect(try proxy.backend() == "blue-1")
            // The admin's own page (same origin) and the CLI still write.
            let own = try Self.admin(proxy, "POST", "/services/shop/flip",
                                     headers: ["Content-Type: application/json", "Origin: http://127.0.0.1:\(port)"], body: #"{"to":"green"}"#)
            #expect(own.status == 200, "\(own)")
            let back = try proxy.cli(["flip", "shop", "--to", "blue"])
            #expect(back.status == 0, "\(back.stdout) \(back.stderr)")
            #expect(try proxy.backend() == "blue-1")
        }

        /// A token file others may read stops startup, naming it and its mode; SIGHUP reads
        /// it again (a new token works, a bad file keeps the old one and says why); no
        /// token ever reaches the log.
        @Test(.timeLimit(.minutes(1)))
        func theTokenFileIsOwnerOnlyAndReReadOnSIGHUP() throws {
            let dir = try ScratchDir("admin-token-file")
            try dir.write("services.yml", blueGreenServices(blue: [1], green: [2]))
            var spec = ProxySpec()
            spec.extraYAML = "admin:\n  address: 127.0.0.1:0\n  token_file: token\n"
            try dir.write("open.yml", spec.yaml)
            try dir.write("token", "first-token-aaaa\n")
            #expect(chmod(dir.file("token"), 0o640) == 0)
            let refused = try runCommand(SwitchyardBinary.path, ["run", "--config", dir.file("open.yml")], dir: dir, label: "readable", timeout: .seconds(10))
            #expect(refused.status != 0 && refused.status != nil)
            #expect(refused.stderr.contains(dir.file("token")) && refused.stderr.contains("0640"), "\(refused.stderr)")
            #expect(!refused.stderr.contains("first-token-aaaa"))

            try Self.writeToken(dir, "first-token-aaaa\n")
            let stack = try Stack(dir, adminExtra: "  token_file: token\n")
            defer { stack.stop() }
            let proxy = stack.proxy
            func flip(_ to: String, _ token: String) throws -> Int {
                try Self.admin(proxy, "POST", "/services/shop/flip",
                               headers: ["Content-Type: application/json", "Authorization: Bearer \(token)"], body: "{\"to\":\"\(to)\"}").status
            }
            #expect(try flip("green", "first-token-aaaa") == 200)
            try Self.writeToken(dir, "ci:second-token-bbbb\n")
            proxy.child.signal(SIGHUP)
            try waitFor("the tokens to be reloaded", timeout: .seconds(5)) { proxy.child.stderrText.contains("admin tokens reloaded") }
            #expect(try flip("blue", "first-token-aaaa") == 401)
            #expect(try flip("blue", "second-token-bbbb") == 200)
            // Now readable by others: refused, and the token in force stays.
            #expect(chmod(dir.file("token"), 0o644) == 0)
            proxy.child.signal(SIGHUP)
            try waitFor("the refusal in the log", timeout: .seconds(5)) { proxy.child.stderrText.contains("not reloaded") }
            #expect(try flip("green", "second-token-bbbb") == 200)
            let log = proxy.child.stderrText
            #expect(log.contains("0644"), "\(log)")
            #expect(!log.contains("first-token-aaaa") && !log.contains("second-token-bbbb"))
        }

        /// 2,000 idle admin sockets: the admin listener serves at most 64 of them (the rest
        /// get 503 and are closed), the process's descriptors stay bounded, proxy traffic
        /// keeps getting 200, and the admin answers again once they are gone. A client
        /// dripping a byte a second is cut at the 10 s request deadline.
        @Test(.timeLimit(.minutes(2)))
        func slowAdminClientsAreBoundedAndTheDataPlaneKeepsServing() throws {
            var limit = rlimit()
            getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
            if limit.rlim_cur < 4_096 {
                limit.rlim_cur = min(4_096, limit.rlim_max)
                setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
            }
            let dir = try ScratchDir("admin-slow")
            let stack = try Stack(dir)
            defer { stack.stop() }
            let proxy = stack.proxy
            let count = min(2_000, Int(limit.rlim_cur) - 200)
            var idle: [RawConnection] = []
            idle.reserveCapacity(count)
            let started = ContinuousClock.now
            for _ in 0..<count {
                guard let connection = try? RawConnection(port: proxy.adminPort) else { break }
                idle.append(connection)
            }
            #expect(idle.count >= count * 9 / 10, "opened \(idle.count) of \(count)")
            #expect(try proxy.backend() == "blue-1")
            #expect(Set(try sendSequential(20, port: proxy.port)) == ["blue-1"])
            #expect(openDescriptors(pid: proxy.child.pid) < 400, "\(openDescriptors(pid: proxy.child.pid)) descriptors open")
            let busy = try Self.admin(proxy, "GET", "/healthz")
            #expect(busy.status == 503 || ContinuousClock.now - started > .seconds(10), "\(busy)")
            idle.removeAll()
            try waitFor("the admin API to answer again", timeout: .seconds(15), interval: .milliseconds(200)) {
                (try? Self.admin(proxy, "GET", "/healthz").status) == 200
            }

            // The deadline is for the whole request, not per read.
            let drip = try RawConnection(port: proxy.adminPort)
            let dripStart = ContinuousClock.now
            let request = Array("GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: \(String(repeating: "a", count: 40))".utf8)
            var cut = false
            for byte in request {
                do { try drip.send([byte], timeout: .seconds(1)) } catch { cut = true; break }
                if drip.readSome(deadline: ContinuousClock.now + .seconds(1)) != .timedOut { cut = true; break }
            }
            let elapsed = ContinuousClock.now - dripStart
            #expect(cut, "the dripping client was never cut")
            #expect(elapsed >= .seconds(9) && elapsed < .seconds(14), "cut after \(elapsed)")
        }
    }
}
