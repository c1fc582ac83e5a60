#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing

// The admin listener's /metrics, /status and /explain, the access log, and the status and
// explain commands, against the real binary with real backends and clients.

extension Integration {
    /// Observability (docs/observability.md): what a scrape, the access log and the CLI
    /// report must match what clients were actually sent.
    @Suite(.serialized) struct ObservabilityTests {
        // MARK: Metrics match the traffic

        /// 300 requests over four keep-alive connections (both workers), 2xx, 4xx and 5xx
        /// mixed: the scrape counts each class exactly, summed over the service's endpoints.
        @Test(.timeLimit(.minutes(1)))
        func scrapeCountsEveryResponseByStatusClassExactly() throws {
            let dir = try ScratchDir("obs-classes")
            let backends = try [Backend.demo("a", dir: dir), Backend.demo("b", dir: dir)]
            defer { backends.forEach { $0.stop() } }
            let proxy = try ObservedProxy(ProxySpec(workers: 2), services: [
                ServiceSpec(name: "shop", instances: backends.map { InstanceSpec(port: $0.port) }),
            ], dir: dir)
            defer { proxy.stop() }

            // Never two 5xx in a row on one endpoint, so passive ejection stays out of it.
            func path(_ i: Int) -> String {
                switch i % 10 {
                case 3: return "/status/500"
                case 5, 8: return "/status/404"
                case 7: return "/status/201"
                default: return "/"
                }
            }
            let connections = try (0..<4).map { _ in try RawConnection(port: proxy.port) }
            var sent = [2: 0, 4: 0, 5: 0]
            for i in 0..<300 {
                let connection = connections[i % connections.count]
                try connection.send("GET \(path(i)) HTTP/1.1\r\nHost: shop.test\r\n\r\n")
                let response = try connection.readResponse()
                sent[response.status / 100, default: 0] += 1
            }
            #expect(sent == [2: 210, 4: 60, 5: 30], "the backend answered \(sent)")

            let metrics = try proxy.scrape(dir)
            #expect(metrics.sum("switchyard_requests_total", ["code": "1xx"]) == 0)
            #expect(metrics.sum("switchyard_requests_total", ["code": "2xx"]) == 210)
            #expect(metrics.sum("switchyard_requests_total", ["code": "3xx"]) == 0)
            #expect(metrics.sum("switchyard_requests_total", ["code": "4xx"]) == 60)
            #expect(metrics.sum("switchyard_requests_total", ["code": "5xx"]) == 30)
            #expect(metrics.sum("switchyard_request_duration_seconds_count") == 300)
            // Round robin used both endpoints, and each one's histogram is consistent.
            for backend in backends {
                let endpoint = ["endpoint": "127.0.0.1:\(backend.port)"]
                #expect(metrics.sum("switchyard_requests_total", endpoint) > 0, "no requests counted for \(endpoint)")
                let buckets = metrics.samples.filter { $0.name == "switchyard_request_duration_seconds_bucket" && $0.matches(endpoint) }
                #expect(buckets.map(\.value) == buckets.map(\.value).sorted(), "buckets not cumulative: \(buckets)")
                #expect(buckets.last?.labels["le"] == "+Inf")
                #expect(buckets.last?.value == metrics.sum("switchyard_request_duration_seconds_count", endpoint))
                #expect(metrics.sum("switchyard_request_duration_seconds_sum", endpoint) > 0)
            }
            #expect(metrics.sum("switchyard_connections_accepted_total") == 4)
            #expect(metrics.sum("switchyard_connections_open") == 4)
            #expect(metrics.sum("switchyard_workers") == 2)
            #expect(metrics.sum("switchyard_routing_table_version") >= 1)

            // Text format 0.0.4: "All lines for a given metric must be provided as one single
            // group, with the optional HELP and TYPE lines first." Prometheus' own parsers
            // accept interleaving, stricter ones need not.
            #expect(metrics.splitFamilies.isEmpty, "families split into several groups: \(metrics.splitFamilies.sorted())")
        }

        /// Scrapes while wrk -c16 loads the proxy: every scrape answers and parses, counters
        /// never go back, and afterwards the totals match wrk's count and the access log.
        @Test(.timeLimit(.minutes(1)))
        func scrapesDuringWrkLoadParseAndTheTotalsMatchAfterwards() throws {
            let dir = try ScratchDir("obs-wrk")
            let backends = try [Backend.demo("a", dir: dir), Backend.demo("b", dir: dir)]
            defer { backends.forEach { $0.stop() } }
            let log = dir.file("access.log")
            let proxy = try ObservedProxy(ProxySpec(workers: 2), services: [
                ServiceSpec(name: "shop", instances: backends.map { InstanceSpec(port: $0.port) }),
            ], accessLog: log, dir: dir)
            defer { proxy.stop() }

            // The others: requests that are not wrk's.
            let connection = try RawConnection(port: proxy.port)
            for path in Array(repeating: "/status/404", count: 10) + Array(repeating: "/", count: 5) + ["/status/500", "/", "/status/503"] {
                try connection.send("GET \(path) HTTP/1.1\r\nHost: shop.test\r\n\r\n")
                _ = try connection.readResponse()
            }
            let others2xx = 6.0

            // 5 s: each scrape spawns curl and parses the page in a debug build, which takes
            // a few hundred ms while wrk holds both cores.
            let wrk = try ChildProcess("/usr/bin/wrk", ["-t2", "-c16", "-d5s", proxy.url + "/"], dir: dir, label: "wrk")
            defer { wrk.stop() }
            var scrapes = 0
            var last2xx = 0.0
            let deadline = ContinuousClock.now + .seconds(15)
            while wrk.isRunning && ContinuousClock.now < deadline {
                let metrics = try proxy.scrape(dir)
                let total = metrics.sum("switchyard_requests_total", ["code": "2xx"])
                #expect(total >= last2xx, "2xx went back from \(last2xx) to \(total)")
                last2xx = total
                scrapes += 1
                pause(.milliseconds(150))
            }
            #expect(wrk.waitExit(timeout: .seconds(10)) == 0, "wrk: \(wrk.stderrText)")
            #expect(scrapes >= 10, "only \(scrapes) scrapes during the load")
            let report = WrkReport(wrk.stdoutText)
            #expect(report.requests > 1_000 && report.non2xx3xx == 0 && report.socketErrors == nil, "wrk: \(wrk.stdoutText)")

            try waitFor("wrk's connections to close", timeout: .seconds(5)) {
                try proxy.scrape(dir).sum("switchyard_connections_open") == 1
            }
            let metrics = try proxy.scrape(dir)
            let total2xx = metrics.sum("switchyard_requests_total", ["code": "2xx"])
            #expect(metrics.sum("switchyard_requests_total", ["code": "4xx"]) == 10)
            #expect(metrics.sum("switchyard_requests_total", ["code": "5xx"]) == 2)
            // Exact would be total2xx == others + wrk. But the proxy counts a response when
            // its head arrives from the backend, and wrk counts it when it has read all of it:
            // when wrk stops at 3 s it closes its connections with up to one response per
            // connection in flight, counted here and not by wrk (measured: 0 to 16 more).
            let unreadByWrk = total2xx - others2xx - Double(report.requests)
            #expect(unreadByWrk >= 0 && unreadByWrk <= 16, "2xx \(total2xx) against \(Int(others2xx)) + wrk \(report.requests)")
            // The proxy's own two records of the same traffic agree exactly: one access-log
            // line per counted response.
            let counted = metrics.sum("switchyard_requests_total")
            #expect(metrics.sum("switchyard_request_duration_seconds_count") == counted)
            var lines = 0
            do {
                try waitFor("one access-log line per counted response (\(Int(counted)))", timeout: .seconds(5)) {
                    lines = lineCount(log)
                    return Double(lines) >= counted
                }
            } catch {}
            #expect(Double(lines) == counted, "access log has \(lines) lines, metrics count \(Int(counted)) responses")
        }

        /// `promtool check metrics` (the Prometheus project's own parser and linter) accepts
        /// a scrape with traffic of every kind in it.
        @Test(.timeLimit(.minutes(1)),
              .enabled(if: FileManager.default.isExecutableFile(atPath: promtoolPath),
                       "promtool is not installed at \(promtoolPath) (Debian package 'prometheus'); skipping the lint of /metrics"))
        func promtoolAcceptsTheExposition() throws {
            let dir = try ScratchDir("obs-promtool")
            let backend = try Backend.demo("blue-1", dir: dir)
            defer { backend.stop() }
            let proxy = try ObservedProxy(ProxySpec(routes: [RouteSpec(host: "shop.test", service: "shop")]), services: [
                ServiceSpec(name: "shop", active: "blue", instances: [InstanceSpec(port: backend.port, track: "blue")]),
            ], dir: dir)
            defer { proxy.stop() }
            let connection = try RawConnection(port: proxy.port)
            for path in ["/", "/status/404", "/status/500", "/status/201"] {
                try connection.send("GET \(path) HTTP/1.1\r\nHost: shop.test\r\n\r\n")
                _ = try connection.readResponse()
            }
            #expect(try rawExchange(port: proxy.port, "GET / HTTP/1.1\r\nHost: elsewhere.test\r\n\r\n").status == 404)

            let scrape = try curl(proxy.adminURL + "/metrics", dir: dir)
            #expect(scrape.httpStatus == 200)
            try dir.write("scrape.txt", scrape.body)
            let child = try ChildProcess(promtoolPath, ["check", "metrics"], dir: dir, label: "promtool",
                                         stdin: FileHandle(forReadingAtPath: dir.file("scrape.txt")))
            defer { child.stop() }
            let status = child.waitExit(timeout: .seconds(20))
            let output = (child.stdoutText + child.stderrText).split(separator: "\n").map(String.init)
            // Exit 1 is a parse error; 3 means lint problems only (naming, units), which are
            // printed for the log rather than failed on.
            #expect(status == 0 || status == 3, "promtool exited \(String(describing: status)): \(output)")
            let errors = output.filter { $0.lowercased().contains("error") }
            #expect(errors.isEmpty, "promtool: \(errors)")
            for line in output { print("promtool check metrics: \(line)") }
        }

        /// Answers the proxy gives itself are counted by reason.
        @Test(.timeLimit(.minutes(1)))
        func proxyAnswersAreCountedByReason() throws {
            let dir = try ScratchDir("obs-answers")
            let backend = try Backend.demo("a", dir: dir)
            defer { backend.stop() }
            var spec = ProxySpec(routes: [RouteSpec(host: "shop.test", service: "shop"), RouteSpec(host: "empty.test", service: "empty")])
            spec.timeouts["upstream_response"] = "300ms"
            let proxy = try ObservedProxy(spec, services: [
                ServiceSpec(name: "shop", instances: [InstanceSpec(port: backend.port)]),
                ServiceSpec(name: "empty", instances: []),
            ], dir: dir)
            defer { proxy.stop() }
            let before = try proxy.scrape(dir)
            for reason in ["no_route", "no_endpoint", "bad_request", "bad_gateway", "gateway_timeout"] {
                #expect(before.sum("switchyard_proxy_answers_total", ["reason": reason]) == 0, "\(reason) before any request")
            }

            #expect(try rawExchange(port: proxy.port, "GET / HTTP/1.1\r\nHost: elsewhere.test\r\n\r\n").status == 404)
            var metrics = try proxy.scrape(dir)
            #expect(metrics.sum("switchyard_proxy_answers_total", ["reason": "no_route"]) == 1)
            // Not an endpoint's response: the per-endpoint counters do not move.
            #expect(metrics.sum("switchyard_requests_total") == 0)

            #expect(try rawExchange(port: proxy.port, "GET / HTTP/1.1\r\nHost: empty.test\r\n\r\n").status == 503)
            #expect(try rawExchange(port: proxy.port, "GET / HTTP/1.1\r\nHost: shop.test\r\nHost: again.test\r\n\r\n").status == 400)
            metrics = try proxy.scrape(dir)
            #expect(metrics.sum("switchyard_proxy_answers_total", ["reason": "no_endpoint"]) == 1)
            #expect(metrics.sum("switchyard_proxy_answers_total", ["reason": "bad_request"]) == 1)
            #expect(metrics.sum("switchyard_proxy_answers_total", ["reason": "no_route"]) == 1)

            // The upstream timeout: the 504 is the proxy's own answer, counted against the
            // endpoint as a 5xx and as a timeout...
            #expect(try rawExchange(port: proxy.port, "GET /slow?ms=1500 HTTP/1.1\r\nHost: shop.test\r\n\r\n").status == 504)
            metrics = try proxy.scrape(dir)
            #expect(metrics.sum("switchyard_upstream_timeouts_total") == 1)
            #expect(metrics.sum("switchyard_requests_total", ["code": "5xx"]) == 1)
            // ...and as the proxy's own answer.
            #expect(metrics.sum("switchyard_proxy_answers_total", ["reason": "gateway_timeout"]) == 1)
        }

        // MARK: Access log

        /// One JSON line per request with every field and the status the client got; after
        /// logrotate's `mv` and SIGUSR1, new lines go to a new file at the configured path.
        @Test(.timeLimit(.minutes(1)))
        func accessLogWritesOneJSONLinePerRequestAndReopensOnSIGUSR1() throws {
            let dir = try ScratchDir("obs-access-log")
            let backend = try Backend.demo("blue-1", dir: dir)
            defer { backend.stop() }
            let log = dir.file("access.log")
            let proxy = try ObservedProxy(ProxySpec(routes: [RouteSpec(host: "shop.test", service: "shop")]), services: [
                ServiceSpec(name: "shop", active: "blue", instances: [InstanceSpec(port: backend.port, track: "blue")]),
            ], accessLog: log, dir: dir)
            defer { proxy.stop() }

            let paths = (0..<40).map { ["/", "/status/404", "/", "/status/500", "/status/201"][$0 % 5] + "?i=\($0)" }
            let connection = try RawConnection(port: proxy.port)
            for path in paths {
                try connection.send("GET \(path) HTTP/1.1\r\nHost: shop.test\r\n\r\n")
                _ = try connection.readResponse()
            }
            try connection.send("GET /nowhere HTTP/1.1\r\nHost: elsewhere.test\r\n\r\n")
            #expect(try connection.readResponse().status == 404)
            try waitFor("41 access-log lines", timeout: .seconds(5)) { lineCount(log) >= 41 }

            let entries = try accessLogEntries(log)
            #expect(entries.count == 41)
            // One connection is served by one worker, which logs in order.
            #expect(entries.prefix(40).map { $0["path"] as? String } == paths)
            for entry in entries.prefix(40) {
                let path = entry["path"] as? String ?? ""
                let expected = path.hasPrefix("/status/") ? Int(path.dropFirst(8).prefix(3))! : 200
                #expect(entry["status"] as? Int == expected, "\(entry)")
                #expect(entry["method"] as? String == "GET")
                #expect(entry["host"] as? String == "shop.test")
                #expect(entry["client"] as? String == "127.0.0.1")
                #expect(entry["service"] as? String == "shop")
                #expect(entry["track"] as? String == "blue")
                #expect(entry["endpoint"] as? String == "127.0.0.1:\(backend.port)")
                #expect(entry["retries"] as? Int == 0)
                #expect((entry["bytes"] as? Int ?? 0) > 0)
                #expect((entry["duration_ms"] as? Double ?? -1) >= 0)
                #expect(abs((entry["time"] as? Double ?? 0) - Date().timeIntervalSince1970) < 60)
            }
            // No endpoint was chosen: the line has no service, track or endpoint.
            let unrouted = entries[40]
            #expect(unrouted["status"] as? Int == 404 && unrouted["host"] as? String == "elsewhere.test")
            #expect(unrouted["service"] == nil && unrouted["endpoint"] == nil)

            // logrotate: move the file away, then SIGUSR1.
            #expect(rename(log, log + ".1") == 0)
            proxy.child.signal(SIGUSR1)
            try waitFor("the proxy to reopen the access log", timeout: .seconds(5)) {
                FileManager.default.fileExists(atPath: log)
            }
            for i in 0..<5 {
                try connection.send("GET /after-rotation/\(i) HTTP/1.1\r\nHost: shop.test\r\n\r\n")
                #expect(try connection.readResponse().status == 200)
            }
            try waitFor("5 lines in the new access log", timeout: .seconds(5)) { lineCount(log) >= 5 }
            pause(.milliseconds(250))  // two flush ticks: nothing more may arrive
            #expect(try accessLogEntries(log).map { $0["path"] as? String } == (0..<5).map { "/after-rotation/\($0)" })
            #expect(lineCount(log + ".1") == 41)
            #expect(proxy.child.isRunning)
        }

        // MARK: CLI

        /// `switchyard status` against a replica: the service, its tracks, how many endpoints
        /// are healthy and the requests each track served.
        @Test(.timeLimit(.minutes(1)))
        func statusCommandShowsTracksHealthAndRequests() throws {
            let dir = try ScratchDir("obs-status")
            let blue = try [Backend.demo("blue-1", dir: dir), Backend.demo("blue-2", dir: dir)]
            let green = try Backend.demo("green-1", dir: dir)
            defer { (blue + [green]).forEach { $0.stop() } }
            let proxy = try ObservedProxy(ProxySpec(routes: [RouteSpec(host: "shop.test", service: "shop")]), services: [
                ServiceSpec(name: "shop", active: "blue", instances: blue.map { InstanceSpec(port: $0.port, track: "blue") }
                            + [InstanceSpec(port: green.port, track: "green")]),
            ], dir: dir)
            defer { proxy.stop() }
            let connection = try RawConnection(port: proxy.port)
            for i in 0..<20 {
                try connection.send("GET /\(i) HTTP/1.1\r\nHost: shop.test\r\n\r\n")
                #expect(try connection.readResponse().status == 200)
            }

            let status = try switchyard(["status", "--admin", proxy.adminURL, "--interval", "0.2"], dir: dir)
            #expect(status.status == 0, "\(status.stderr)")
            let rows = status.stdout.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
            #expect(rows.first?.contains("HEALTHY") == true && rows.first?.last == "REQUESTS", "\(status.stdout)")
            // SERVICE TRACK [*] SPLIT HEALTHY REQ/S ERR% REQUESTS
            let blueRow = rows.first { $0.count > 1 && $0[0] == "shop" && $0[1] == "blue" }
            let greenRow = rows.first { $0.count > 1 && $0[0] == "shop" && $0[1] == "green" }
            #expect(blueRow == ["shop", "blue", "*", "100.0%", "2/2", "0.0", "0.00", "20"], "\(status.stdout)")
            #expect(greenRow == ["shop", "green", "0.0%", "1/1", "0.0", "0.00", "0"], "\(status.stdout)")
            #expect(status.stdout.contains("providers: file ok"))

            let only = try switchyard(["status", "shop", "--admin", proxy.adminURL, "--interval", "0"], dir: dir)
            #expect(only.stdout.contains("shop") && only.stdout.contains("2/2"), "\(only.stdout)")
            let missing = try switchyard(["status", "cart", "--admin", proxy.adminURL, "--interval", "0"], dir: dir)
            #expect(missing.stdout.contains("no service named 'cart'"), "\(missing.stdout)")

            let json = try switchyard(["status", "--admin", proxy.adminURL, "--json"], dir: dir)
            #expect(json.status == 0)
            let document = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
            let services = try #require(document["services"] as? [[String: Any]])
            #expect(services.map { $0["name"] as? String } == ["shop"])
            let tracks = try #require(services.first?["tracks"] as? [[String: Any]])
            #expect(tracks.map { $0["name"] as? String } == ["blue", "green"])
            #expect(tracks.map { $0["requests"] as? Int } == [20, 0])
            #expect(services.first?["active_track"] as? String == "blue")
        }

        /// `switchyard explain` names the route and service a request would get, and says
        /// `404 no route` when nothing matches.
        @Test(.timeLimit(.minutes(1)))
        func explainCommandNamesRouteAndServiceOrNoRoute() throws {
            let dir = try ScratchDir("obs-explain")
            let backend = try Backend.demo("blue-1", dir: dir)
            defer { backend.stop() }
            let proxy = try ObservedProxy(ProxySpec(routes: [RouteSpec(host: "shop.test", service: "shop")]), services: [
                ServiceSpec(name: "shop", active: "blue", instances: [InstanceSpec(port: backend.port, track: "blue")]),
            ], dir: dir)
            defer { proxy.stop() }

            let routed = try switchyard(["explain", "--admin", proxy.adminURL, "--host", "shop.test", "--path", "/"], dir: dir)
            #expect(routed.status == 0, "\(routed.stderr)")
            #expect(routed.stdout.contains("route     shop.test/"), "\(routed.stdout)")
            #expect(routed.stdout.contains("service   shop  (active track blue)"), "\(routed.stdout)")
            #expect(routed.stdout.contains("candidate shop/127.0.0.1:\(backend.port)"), "\(routed.stdout)")

            let unrouted = try switchyard(["explain", "--admin", proxy.adminURL, "--host", "elsewhere.test", "--path", "/"], dir: dir)
            #expect(unrouted.status == 0, "\(unrouted.stderr)")
            #expect(unrouted.stdout.contains("404 no route"), "\(unrouted.stdout)")
            #expect(unrouted.stdout.contains("route     none"), "\(unrouted.stdout)")

            let json = try switchyard(["explain", "--admin", proxy.adminURL, "--host", "shop.test", "--path", "/a b", "--json"], dir: dir)
            let answer = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
            #expect(answer["route"] as? String == "shop.test/")
            #expect(answer["service"] as? String == "shop")
            #expect(answer["path"] as? String == "/a b")
            #expect((answer["answer"] as? String)?.hasPrefix("forwarded by") == true, "\(answer)")
            let noRoute = try switchyard(["explain", "--admin", proxy.adminURL, "--host", "elsewhere.test", "--json"], dir: dir)
            let noAnswer = try #require(try JSONSerialization.jsonObject(with: Data(noRoute.stdout.utf8)) as? [String: Any])
            #expect(noAnswer["answer"] as? String == "404 no route")
            #expect(noAnswer["route"] == nil)
        }
    }
}

// MARK: - Support

private let promtoolPath = "/usr/bin/promtool"

/// `switchyard run` with the admin listener on a kernel-chosen port, and the access log
/// when `accessLog` names a file.
private final class ObservedProxy {
    let child: ChildProcess
    let port: UInt16
    let adminPort: UInt16

    init(_ spec: ProxySpec, services: [ServiceSpec], accessLog: String? = nil, dir: ScratchDir) throws {
        var yaml = spec.yaml + "admin:\n  address: 127.0.0.1:0\n"
        if let accessLog { yaml += "access_log:\n  path: \(accessLog)\n" }
        try dir.write("services.yml", servicesYAML(services))
        try dir.write("switchyard.yml", yaml)
        (child, port, adminPort) = try startProxyWithAdmin(dir: dir)
    }

    var url: String { "http://127.0.0.1:\(port)" }
    var adminURL: String { "http://127.0.0.1:\(adminPort)" }

    func stop() { child.stop() }

    /// GET /metrics with curl, checked for status and content type, parsed strictly.
    func scrape(_ dir: ScratchDir) throws -> Exposition {
        let result = try curl(adminURL + "/metrics", extra: ["%{content_type}"], dir: dir)
        guard result.httpStatus == 200 else { throw HarnessError("/metrics answered \(result.httpStatus): \(result.body)") }
        guard result.written.first?.hasPrefix("text/plain; version=0.0.4") == true else {
            throw HarnessError("/metrics content type \(result.written)")
        }
        return try Exposition(parsing: result.body)
    }
}

/// The Prometheus text format 0.0.4, parsed strictly: every line is a `# HELP`, a
/// `# TYPE`, or `name{label="value",...} value`; anything else throws.
struct Exposition {
    struct Sample: CustomStringConvertible {
        var name: String
        var labels: [String: String]
        var value: Double

        func matches(_ selector: [String: String]) -> Bool {
            selector.allSatisfy { labels[$0.key] == $0.value }
        }

        var description: String { "\(name)\(labels.sorted { $0.key < $1.key }) \(value)" }
    }

    var samples: [Sample] = []
    var types: [String: String] = [:]
    /// Families whose lines come in more than one group.
    var splitFamilies: Set<String> = []

    init(parsing text: String) throws {
        var current: String?
        var finished = Set<String>()
        func enter(_ family: String) {
            guard family != current else { return }
            if let current { finished.insert(current) }
            if finished.contains(family) { splitFamilies.insert(family) }
            current = family
        }
        for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            func fail(_ why: String) -> HarnessError { HarnessError("/metrics line \(number + 1): \(why): \(line)") }
            if line.isEmpty { continue }
            if line.hasPrefix("#") {
                let parts = line.split(separator: " ", maxSplits: 3, omittingEmptySubsequences: false)
                guard parts.count >= 3, parts[0] == "#", parts[1] == "HELP" || parts[1] == "TYPE",
                      Self.isMetricName(parts[2]) else { throw fail("not a HELP or TYPE line") }
                if parts[1] == "TYPE" {
                    let type = parts.count == 4 ? String(parts[3]) : ""
                    guard ["counter", "gauge", "histogram", "summary", "untyped"].contains(type) else { throw fail("unknown type") }
                    guard types[String(parts[2])] == nil else { throw fail("second TYPE line") }
                    types[String(parts[2])] = type
                }
                enter(String(parts[2]))
                continue
            }
            guard let sample = Self.sample(line) else { throw fail("not a sample") }
            enter(family(of: sample.name))
            samples.append(sample)
        }
    }

    /// The sum of `name` over the samples whose labels include `selector`.
    func sum(_ name: String, _ selector: [String: String] = [:]) -> Double {
        samples.filter { $0.name == name && $0.matches(selector) }.reduce(0) { $0 + $1.value }
    }

    private func family(of name: String) -> String {
        for suffix in ["_bucket", "_sum", "_count"] where name.hasSuffix(suffix) {
            let base = String(name.dropLast(suffix.count))
            if types[base] == "histogram" || types[base] == "summary" { return base }
        }
        return name
    }

    static func isMetricName(_ text: Substring) -> Bool {
        guard let first = text.first, first.isASCII, first.isLetter || first == "_" || first == ":" else { return false }
        return text.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == ":") }
    }

    /// `name{a="x",b="y"} value [timestamp]`, or nil.
    static func sample(_ line: Substring) -> Sample? {
        var rest = line[...]
        let nameEnd = rest.firstIndex { $0 == "{" || $0 == " " } ?? rest.endIndex
        let name = rest[..<nameEnd]
        guard isMetricName(name) else { return nil }
        rest = rest[nameEnd...]
        var labels: [String: String] = [:]
        if rest.first == "{" {
            rest = rest.dropFirst()
            while rest.first != "}" {
                guard let equals = rest.firstIndex(of: "=") else { return nil }
                let label = rest[..<equals]
                guard isMetricName(label), !label.contains(":"), labels[String(label)] == nil else { return nil }
                rest = rest[rest.index(after: equals)...]
                guard rest.first == "\"" else { return nil }
                rest = rest.dropFirst()
                var value = ""
                while true {
                    guard let c = rest.first else { return nil }
                    rest = rest.dropFirst()
                    if c == "\"" { break }
                    if c == "\\" {
                        guard let escaped = rest.first else { return nil }
                        rest = rest.dropFirst()
                        switch escaped {
                        case "\\": value.append("\\")
                        case "\"": value.append("\"")
                        case "n": value.append("\n")
                        default: return nil
                        }
                    } else {
                        value.append(c)
                    }
                }
                labels[String(label)] = value
                if rest.first == "," { rest = rest.dropFirst() } else if rest.first != "}" { return nil }
            }
            rest = rest.dropFirst()
        }
        guard rest.first == " " else { return nil }
        let fields = rest.dropFirst().split(separator: " ", omittingEmptySubsequences: false)
        guard fields.count == 1 || (fields.count == 2 && Int64(fields[1]) != nil) else { return nil }
        let value: Double
        switch fields[0] {
        case "+Inf": value = .infinity
        case "-Inf": value = -.infinity
        case "NaN": value = .nan
        default:
            guard let parsed = Double(fields[0]), parsed.isFinite else { return nil }
            value = parsed
        }
        return Sample(name: String(name), labels: labels, value: value)
    }
}

/// Runs the switchyard binary (a CLI command) to completion.
private func switchyard(_ arguments: [String], dir: ScratchDir) throws -> CommandResult {
    try runCommand(SwitchyardBinary.path, arguments, dir: dir, label: "cli-\(arguments[0])-\(cliCounter.next())",
                   timeout: .seconds(15))
}

private let cliCounter = Counter()

/// Complete lines in a file (0 if it does not exist).
private func lineCount(_ path: String) -> Int {
    guard let data = FileManager.default.contents(atPath: path) else { return 0 }
    return data.withUnsafeBytes { bytes in
        guard var next = bytes.baseAddress else { return 0 }
        let end = next + bytes.count
        var count = 0
        while next < end, let newline = memchr(next, 0x0A, end - next) {
            count += 1
            next = UnsafeRawPointer(newline) + 1
        }
        return count
    }
}

/// The access log's lines, each parsed as a JSON object (throws on any line that is not).
private func accessLogEntries(_ path: String) throws -> [[String: Any]] {
    let text = try String(contentsOfFile: path, encoding: .utf8)
    return try text.split(separator: "\n").map { line in
        guard let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
            throw HarnessError("access-log line is not a JSON object: \(line)")
        }
        return object
    }
}
