import Foundation
import Testing

// The admin dashboard, loaded by a real browser: headless Chromium fetches the page from
// the admin listener, runs its script (which polls /status) and dumps the DOM it built.

extension Integration {
    @Suite(.serialized, .enabled(if: DashboardBrowser.path != nil, DashboardBrowser.missingMessage))
    struct Dashboard {
        /// Two blue and two green demo backends, traffic on both tracks (blue, then a flip
        /// to green), and the page as Chromium renders it shows the service, both tracks,
        /// every endpoint, and the same request counts as /status.
        @Test(.timeLimit(.minutes(2)))
        func dashboardShowsServiceTracksEndpointsAndRequestCounts() throws {
            let dir = try ScratchDir("dashboard")
            let backends = try ["blue-1", "blue-2", "green-1", "green-2"].map { try Backend.demo($0, dir: dir) }
            defer { backends.forEach { $0.stop() } }
            let instances = backends.map { InstanceSpec(port: $0.port, track: String($0.name.prefix { $0 != "-" })) }
            let proxy = try DashboardProxy(services: [ServiceSpec(name: "shop", active: "blue", instances: instances)], dir: dir)
            defer { proxy.stop() }

            try proxy.send(20, expecting: "blue")
            try proxy.publish([ServiceSpec(name: "shop", active: "green", instances: instances)])
            try proxy.send(10, expecting: "green")

            // What the page should show: the proxy's own counts, after the traffic.
            let status = try proxy.status()
            let counts = status.trackRequests(service: "shop")
            #expect(counts["blue"] == 20 && counts["green"] == 10, "track requests in /status: \(counts)")

            let page = try curl(proxy.adminURL + "/dashboard", dir: dir)
            #expect(page.httpStatus == 200)
            #expect(page.body.contains("<title>Switchyard</title>") && page.body.contains("fetch(\"/status\""),
                    "GET /dashboard does not serve DashboardPage.html: \(page.body.prefix(300))")

            let dom = try DashboardBrowser.dumpDOM(proxy.adminURL + "/dashboard", dir: dir)
            #expect(dom.contains("id=\"service-shop\""), "no service card in the DOM:\n\(dom.prefix(3000))")
            #expect(dom.contains("class=\"service-name\">shop<"))
            for track in ["blue", "green"] {
                #expect(dom.contains("<span class=\"track-name\">\(track)</span>"), "track \(track) is not shown")
                #expect(DashboardBrowser.tileRequests(in: dom, track: track) == counts[track],
                        "the \(track) tile shows \(String(describing: DashboardBrowser.tileRequests(in: dom, track: track))) requests")
            }
            for backend in backends {
                #expect(dom.contains("data-endpoint=\"shop/127.0.0.1:\(backend.port)\""), "endpoint \(backend.name) is not listed")
            }
            #expect(dom.contains("data-health=\"healthy\""))
            #expect(dom.contains("active: <span class=\"active-track\">green</span>"), "the flip is not shown")
            #expect(dom.firstMatch(of: #/<span id="stale"[^>]*class="on"/#) == nil, "the page could not poll /status")
        }
    }
}

// MARK: The browser

/// Headless Chromium, where Debian puts it (`scripts/install-deps` installs it).
enum DashboardBrowser {
    static let path: String? = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"]
        .first { FileManager.default.isExecutableFile(atPath: $0) }

    static let missingMessage: Comment =
        "chromium is not installed: the dashboard test needs a headless browser; run scripts/install-deps"

    /// Loads `url`, lets its script run for five seconds of virtual time (the first polls
    /// of /status complete), and returns the DOM as the page left it.
    static func dumpDOM(_ url: String, dir: ScratchDir) throws -> String {
        let arguments = ["--headless", "--disable-gpu", "--no-sandbox", "--no-first-run", "--disable-dev-shm-usage",
                         "--user-data-dir=\(dir.file("chromium-profile"))", "--window-size=1280,900",
                         "--virtual-time-budget=5000", "--dump-dom", url]
        let result = try runCommand(path!, arguments, dir: dir, label: "chromium", timeout: .seconds(60))
        guard result.status == 0, result.stdout.contains("</html>") else {
            throw HarnessError("chromium --dump-dom failed (status \(String(describing: result.status))): \(result.stderr.suffix(1500))")
        }
        return result.stdout
    }

    /// The cumulative request count in a track's tile.
    static func tileRequests(in dom: String, track: String) -> UInt64? {
        let pattern = #"class="tile track[^"]*" data-track="\#(track)".*?class="v requests"[^>]*>([0-9,]+)<"#
        guard let regex = try? Regex(pattern).dotMatchesNewlines(),
              let match = dom.firstMatch(of: regex), let digits = match.output[1].substring
        else { return nil }
        return UInt64(digits.filter(\.isNumber))
    }
}

// MARK: The proxy

/// `switchyard run` with the admin listener on a kernel-chosen port.
private final class DashboardProxy {
    let dir: ScratchDir
    let child: ChildProcess
    let port: UInt16
    let adminPort: UInt16

    init(services: [ServiceSpec], dir: ScratchDir) throws {
        self.dir = dir
        try dir.write("services.yml", servicesYAML(services))
        try dir.write("switchyard.yml", ProxySpec(workers: 2).yaml + "admin:\n  address: 127.0.0.1:0\n")
        (child, port, adminPort) = try startProxyWithAdmin(dir: dir)
    }

    var adminURL: String { "http://127.0.0.1:\(adminPort)" }

    func stop() { child.stop() }

    /// Sends `count` requests on one keep-alive connection; each must reach `track`.
    func send(_ count: Int, expecting track: String) throws {
        let connection = try RawConnection(port: port)
        for _ in 0..<count {
            try connection.send("GET / HTTP/1.1\r\nHost: shop\r\n\r\n")
            let response = try connection.readResponse()
            #expect(response.status == 200)
            #expect(response.header("x-backend")?.hasPrefix(track) == true, "answered by \(response.header("x-backend") ?? "?")")
        }
    }

    /// Replaces the services file and waits until the proxy logs the new table.
    func publish(_ services: [ServiceSpec]) throws {
        let before = child.stderrText.components(separatedBy: "published").count
        try dir.write("services.yml", servicesYAML(services))
        try waitFor("the proxy to publish a new routing table", timeout: .seconds(5)) {
            child.stderrText.components(separatedBy: "published").count > before
        }
    }

    /// `GET /status`, decoded.
    func status() throws -> DashboardStatus {
        let result = try curl(adminURL + "/status", dir: dir)
        guard result.httpStatus == 200, let data = result.body.data(using: .utf8),
              let object = try JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { throw HarnessError("GET /status answered \(result.httpStatus): \(result.body.prefix(500))") }
        return DashboardStatus(object: object)
    }
}

/// The parts of `/status` the dashboard test compares with the page.
private struct DashboardStatus {
    let object: [String: Any]

    /// Cumulative requests per track of one service.
    func trackRequests(service: String) -> [String: UInt64] {
        let services = object["services"] as? [[String: Any]] ?? []
        let tracks = services.first { $0["name"] as? String == service }?["tracks"] as? [[String: Any]] ?? []
        var counts: [String: UInt64] = [:]
        for track in tracks {
            if let name = track["name"] as? String, let requests = track["requests"] as? NSNumber {
                counts[name] = requests.uint64Value
            }
        }
        return counts
    }
}
