// switchyard.route.NAME.* labels as values: labels in, routes (or the broken label, named) out.

import Testing
import YardDiscovery
import YardModel

@Suite struct RouteLabels {
    private func read(_ extra: [String: String]) -> Result<LabeledInstance?, LabelProblem> {
        SwitchyardLabels.read(labels: ["switchyard.service": "shop", "switchyard.port": "8080"].merging(extra) { $1 },
                              owner: "container shop-1 (3f2a9c1b)", address: "10.0.0.5", defaultPort: nil)
    }

    private func problem(_ extra: [String: String]) -> String {
        if case .failure(let problem) = read(extra) { return problem.description }
        return "no problem"
    }

    @Test func namedRoutesGiveOneRoutePerHostWithPathAndPriority() throws {
        let item = try read([
            "switchyard.route.web.host": "shop.example, *.shop.example",
            "switchyard.route.web.path": "/store",
            "switchyard.route.admin.path": "/admin",
            "switchyard.route.admin.priority": "-5",
        ]).get()
        #expect(item?.namedRoutes == [
            DiscoveredRoute(host: nil, pathPrefix: "/admin", name: "admin", priority: -5),
            DiscoveredRoute(host: "shop.example", pathPrefix: "/store", name: "web"),
            DiscoveredRoute(host: "*.shop.example", pathPrefix: "/store", name: "web"),
        ])
        let catalog = LabeledCatalog.assemble([try #require(item)])
        let table = buildRoutingTable(version: 1, routes: [], catalog: catalog)
        #expect(table.routes.map { $0.match.summary } == ["shop.example/store", "*.shop.example/store", "*/admin priority -5"])
    }

    @Test func aPathRegexLabelRoutesByTheRegex() throws {
        let item = try read(["switchyard.route.avatars.path_regex": "^/users/[0-9]+/avatar\\.png$"]).get()
        var expected = DiscoveredRoute(host: nil, pathPrefix: "/", name: "avatars")
        expected.pathRegex = "^/users/[0-9]+/avatar\\.png$"
        #expect(item?.namedRoutes == [expected])
        let table = buildRoutingTable(version: 1, routes: [], catalog: LabeledCatalog.assemble([try #require(item)]))
        #expect(table.routes.map { $0.match.summary } == ["* ~^/users/[0-9]+/avatar\\.png$"])
    }

    @Test func aBrokenPathRegexLabelNamesTheContainerTheKeyAndTheFault() {
        #expect(problem(["switchyard.route.web.path_regex": "^/(a|b"])
            .hasPrefix("container shop-1 (3f2a9c1b): label switchyard.route.web.path_regex '^/(a|b': missing ')'"))
        #expect(problem(["switchyard.route.web.path_regex": "^/(a)\\1$"]).contains("label switchyard.route.web.path_regex"))
        #expect(problem(["switchyard.route.web.path_regex": "^/a", "switchyard.route.web.path": "/a"])
            == "container shop-1 (3f2a9c1b): label switchyard.route.web.path_regex: a route has either .path (a prefix) or .path_regex, not both")
    }

    @Test func aBrokenRouteLabelNamesTheContainerAndTheKey() {
        #expect(problem(["switchyard.route.web.path": "store"]) == "container shop-1 (3f2a9c1b): label switchyard.route.web.path 'store' must start with '/'")
        #expect(problem(["switchyard.route.web.priority": "high"]).contains("label switchyard.route.web.priority 'high' is not a priority"))
        #expect(problem(["switchyard.route.web.priority": "99999"]).contains("is not a priority from -1000 to 1000"))
        #expect(problem(["switchyard.route.web.host": "a.example,,b.example"]).contains("label switchyard.route.web.host: an empty host"))
        #expect(problem(["switchyard.route.web.host": "bad host"]).contains("label switchyard.route.web.host: route host"))
        #expect(problem(["switchyard.route.web.hots": "a.example"]).contains("container shop-1 (3f2a9c1b): label \"switchyard.route.web.hots\": the field is one of host, path, path_regex, priority, middlewares"))
        #expect(problem(["switchyard.route.web.middlewares": "strip,,auth"]) == "container shop-1 (3f2a9c1b): label switchyard.route.web.middlewares: an empty name in the list")
        #expect(problem(["switchyard.route.web.middlewares": "strip,a\nb"]).contains("label switchyard.route.web.middlewares: 'a\\nb' is not a middleware name"))
        #expect(problem(["switchyard.route.path": "/x"]).contains("is not switchyard.route.NAME.FIELD"))
    }

    // MARK: .middlewares

    private let defined: [String: MiddlewareKind] = ["strip": .stripPrefix(["/api"]), "strip2": .stripPrefix(["/v1"])]

    private func catalog(_ extra: [String: String]) throws -> ServiceCatalog {
        LabeledCatalog.assemble([try #require(try read(extra).get())])
    }

    @Test func aMiddlewaresLabelNamesMiddlewaresOfTheConfigThatTheRouteRunsInOrder() throws {
        let labelled = try catalog(["switchyard.route.api.path": "/api", "switchyard.route.api.middlewares": " strip "])
        #expect(labelled.services[0].routes[0].middlewareNames == ["strip"])
        #expect(labelled.services[0].routes[0].declaredBy == "container shop-1 (3f2a9c1b): label switchyard.route.api.middlewares")
        let (resolved, rejections) = DiscoveredRouteMiddlewares.resolve(labelled, defined: defined)
        #expect(rejections.isEmpty)
        let table = buildRoutingTable(version: 1, routes: [], catalog: resolved)
        #expect(table.routes.map(\.steps.names) == [["strip"]])
    }

    @Test func anUnknownMiddlewareDropsThatRouteNamesTheContainerAndTheKeyAndTheRestServes() throws {
        let labelled = try catalog([
            "switchyard.route.api.path": "/api", "switchyard.route.api.middlewares": "strip,auth",
            "switchyard.route.web.path": "/",
        ])
        let (resolved, rejections) = DiscoveredRouteMiddlewares.resolve(labelled, defined: defined)
        #expect(rejections.count == 1)
        let message = try #require(rejections.first).description
        #expect(message == #"dropped route "api" of service "shop": container shop-1 (3f2a9c1b): label switchyard.route.api.middlewares: no middleware named 'auth'; defined: strip, strip2; the route is left out, the rest serves"#)
        #expect(rejections.first?.problem.field == "route")
        #expect(resolved.services[0].instances.count == 1, "the instance still serves")
        let table = buildRoutingTable(version: 1, routes: [], catalog: resolved)
        #expect(table.routes.map { $0.match.summary } == ["*/"], "the other route serves")
        // Two path changes of one kind are refused the same way.
        let twice = try catalog(["switchyard.route.api.middlewares": "strip,strip2"])
        #expect(DiscoveredRouteMiddlewares.resolve(twice, defined: defined).rejections.first?.description.contains("are both strip_prefix") == true)
    }

    @Test func aRouteWhoseMiddlewaresWereNeverResolvedIsNotServedWithoutThem() throws {
        let labelled = try catalog(["switchyard.route.api.path": "/api", "switchyard.route.api.middlewares": "strip"])
        #expect(buildRoutingTable(version: 1, routes: [], catalog: labelled).routes.isEmpty)
    }
}

/// The service-wide labels: what services.yml says per service, said on a container.
@Suite struct ServiceSettingLabels {
    private func read(_ extra: [String: String], track: String = "blue") -> Result<LabeledInstance?, LabelProblem> {
        SwitchyardLabels.read(labels: ["switchyard.service": "shop", "switchyard.port": "8080", "switchyard.track": track].merging(extra) { $1 },
                              owner: "container shop-1 (3f2a9c1b)", address: "10.0.0.5", defaultPort: nil)
    }

    private func problem(_ extra: [String: String]) -> String {
        if case .failure(let problem) = read(extra) { return problem.description }
        return "no problem"
    }

    @Test func labelsSetTheBalancerHealthTimingsRetriesAndUpstreamProtocol() throws {
        let item = try #require(try read([
            "switchyard.balancer": "least_conn", "switchyard.health.interval": "5s", "switchyard.health.timeout": "500ms",
            "switchyard.health.rise": "3", "switchyard.health.fall": "4", "switchyard.retries": "1", "switchyard.upstream.protocol": "h2c",
        ]).get())
        let service = LabeledCatalog.assemble([item]).services[0]
        #expect(service.balancer == .leastConnections)
        #expect(service.health.intervalMs == 5_000)
        #expect(service.health.timeoutMs == 500)
        #expect(service.health.rise == 3)
        #expect(service.health.fall == 4)
        #expect(service.retry.attempts == 1)
        #expect(service.upstream.protocol == .h2c)
    }

    @Test func consistentHashHashesOnTheLabelledKeyOrTheSourceAddress() throws {
        let bySource = try #require(try read(["switchyard.balancer": "consistent_hash"]).get())
        #expect(LabeledCatalog.assemble([bySource]).services[0].hashOn == .sourceAddress)
        let byHeader = try #require(try read(["switchyard.balancer": "consistent_hash", "switchyard.hash_on": "header:X-User"]).get())
        #expect(LabeledCatalog.assemble([byHeader]).services[0].hashOn == .header("X-User"))
    }

    @Test func labelsSetTheTrafficSplitWhateverEachTracksReplicaCount() throws {
        let split = ["switchyard.active": "blue", "switchyard.canary.track": "green", "switchyard.canary.percent": "2.5", "switchyard.canary.sticky": "cookie:uid"]
        let blue = try #require(try read(split).get())
        var greens: [LabeledInstance] = []
        for port in ["9001", "9002", "9003"] {
            greens.append(try #require(try read(split.merging(["switchyard.port": port]) { $1 }, track: "green").get()))
        }
        let service = LabeledCatalog.assemble([blue] + greens).services[0]
        #expect(service.activeTrack == "blue")
        #expect(service.canary == CanaryConfig(track: "green", permille: 25, sticky: .cookie("uid")))
    }

    @Test func aStickyCookieLabelLetsTheProxySetTheCookie() throws {
        let split = ["switchyard.active": "blue", "switchyard.canary.track": "green", "switchyard.canary.percent": "10",
                     "switchyard.canary.sticky": "cookie:uid", "switchyard.canary.sticky_cookie": "2h"]
        let blue = try #require(try read(split).get())
        let green = try #require(try read(split.merging(["switchyard.port": "9001"]) { $1 }, track: "green").get())
        let service = LabeledCatalog.assemble([blue, green]).services[0]
        #expect(service.canary?.stickyCookie == StickyCookieSettings(maxAgeSeconds: 7200))
        let on = try #require(try read(split.merging(["switchyard.canary.sticky_cookie": "true"]) { $1 }).get())
        #expect(LabeledCatalog.assemble([on, green]).services[0].canary?.stickyCookie == StickyCookieSettings())
    }

    @Test func theStateStoreStillWinsOnceTheServiceWasChanged() throws {
        let split = ["switchyard.active": "blue", "switchyard.canary.track": "green", "switchyard.canary.percent": "10"]
        let catalog = LabeledCatalog.assemble([try #require(try read(split).get()), try #require(try read(split.merging(["switchyard.port": "9001"]) { $1 }, track: "green").get())])
        var state = TrafficState(activeTrack: "green")
        state.revision = 3
        let applied = catalog.applying(["shop": state]).services[0]
        #expect(applied.activeTrack == "green")
        #expect(applied.canary == nil)
    }

    @Test func aCanaryWithoutItsTracksWaitsForThem() throws {
        let onlyBlue = try #require(try read(["switchyard.active": "blue", "switchyard.canary.track": "green", "switchyard.canary.percent": "10"]).get())
        #expect(LabeledCatalog.assemble([onlyBlue]).services[0].canary == nil)
        let noActive = try #require(try read(["switchyard.canary.track": "green"]).get())
        #expect(LabeledCatalog.assemble([noActive]).services[0].canary == nil)
    }

    @Test func theFirstLabelledInstanceWinsFieldByField() throws {
        let a = try #require(try read(["switchyard.balancer": "p2c_ewma"]).get())
        let b = try #require(try read(["switchyard.port": "9001", "switchyard.balancer": "least_conn", "switchyard.retries": "0"]).get())
        let service = LabeledCatalog.assemble([a, b]).services[0]
        #expect(service.balancer == .p2cEWMA)
        #expect(service.retry.attempts == 0)
    }

    @Test func aBrokenSettingLabelNamesTheContainerAndTheKey() {
        let owner = "container shop-1 (3f2a9c1b): label "
        #expect(problem(["switchyard.balancer": "random"]) == owner + "switchyard.balancer 'random' is not a balancer (round_robin, least_conn, p2c_ewma or consistent_hash)")
        #expect(problem(["switchyard.health.interval": "soon"]).hasPrefix(owner + "switchyard.health.interval 'soon' is not a duration"))
        #expect(problem(["switchyard.health.interval": "0s"]).hasPrefix(owner + "switchyard.health.interval '0s' is not a duration"))
        #expect(problem(["switchyard.health.interval": "1s", "switchyard.health.timeout": "2s"]).contains("switchyard.health.timeout (2000 ms) is longer than the health interval (1000 ms)"))
        #expect(problem(["switchyard.health.rise": "0"]) == owner + "switchyard.health.rise '0' is not a whole number from 1 to 100")
        #expect(problem(["switchyard.health.fall": "99999999999999999999999"]).hasPrefix(owner + "switchyard.health.fall"))
        #expect(problem(["switchyard.retries": "-1"]).hasPrefix(owner + "switchyard.retries '-1' is not a whole number from 0 to 5"))
        #expect(problem(["switchyard.upstream.protocol": "h2"]).contains("h2 needs upstream TLS settings"))
        #expect(problem(["switchyard.upstream.protocol": "h2c", "switchyard.health.path": "/healthz"]).contains("does not answer the HTTP/1.1 check"))
        #expect(problem(["switchyard.canary.percent": "12.34"]).hasPrefix(owner + "switchyard.canary.percent '12.34' is not a percentage"))
        #expect(problem(["switchyard.canary.percent": "nan"]).hasPrefix(owner + "switchyard.canary.percent"))
        #expect(problem(["switchyard.canary.percent": "1e308"]).hasPrefix(owner + "switchyard.canary.percent"))
        #expect(problem(["switchyard.canary.sticky": "ip"]).hasPrefix(owner + "switchyard.canary.sticky 'ip' is not cookie:NAME or header:NAME"))
        #expect(problem(["switchyard.canary.sticky": "header:a b"]).hasPrefix(owner + "switchyard.canary.sticky"))
        #expect(problem(["switchyard.canary.sticky_cookie": "true"]).hasPrefix(owner + "switchyard.canary.sticky_cookie 'true' is not true, false, or the cookie's max age"))
        #expect(problem(["switchyard.canary.sticky": "cookie:uid", "switchyard.canary.sticky_cookie": "10ms"]).hasPrefix(owner + "switchyard.canary.sticky_cookie"))
        #expect(problem(["switchyard.canary.track": "gr een"]).hasPrefix(owner + "switchyard.canary.track"))
        #expect(problem(["switchyard.hash_on": "body"]).hasPrefix(owner + "switchyard.hash_on 'body' is not header:NAME"))
    }
}

/// `switchyard.max_connections`, `.max_pending` and `.queue_timeout`: service settings read
/// from any instance's labels (the first in address order that has one).
@Suite struct LimitLabels {
    private func read(_ address: String, _ extra: [String: String]) -> Result<LabeledInstance?, LabelProblem> {
        SwitchyardLabels.read(labels: ["switchyard.service": "shop", "switchyard.port": "8080"].merging(extra) { $1 },
                              owner: "container shop-1 (3f2a9c1b)", address: address, defaultPort: nil)
    }

    @Test func limitLabelsBecomeTheServiceLimits() throws {
        let a = try #require(try read("10.0.0.5", ["switchyard.max_connections": "8", "switchyard.max_pending": "50", "switchyard.queue_timeout": "2s"]).get())
        let b = try #require(try read("10.0.0.6", ["switchyard.max_connections": "3"]).get())
        let catalog = LabeledCatalog.assemble([b, a])
        #expect(catalog.services.first?.limits == EndpointLimits(maxConnections: 8, maxPending: 50, queueTimeoutMs: 2_000))
    }

    @Test func aMalformedLimitLabelNamesTheLabelAndSkipsTheWorkload() {
        for (key, value) in [("switchyard.max_connections", "lots"), ("switchyard.max_pending", "-2"), ("switchyard.queue_timeout", "0")] {
            guard case .failure(let problem) = read("10.0.0.5", [key: value]) else {
                Issue.record("\(key)=\(value) accepted")
                continue
            }
            #expect(problem.description.contains(key), "\(problem)")
            #expect(problem.field == "limits")
        }
    }
}
