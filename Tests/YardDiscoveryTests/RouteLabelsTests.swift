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

    @Test func aBrokenRouteLabelNamesTheContainerAndTheKey() {
        #expect(problem(["switchyard.route.web.path": "store"]) == "container shop-1 (3f2a9c1b): label switchyard.route.web.path 'store' must start with '/'")
        #expect(problem(["switchyard.route.web.priority": "high"]).contains("label switchyard.route.web.priority 'high' is not a priority"))
        #expect(problem(["switchyard.route.web.priority": "99999"]).contains("is not a priority from -1000 to 1000"))
        #expect(problem(["switchyard.route.web.host": "a.example,,b.example"]).contains("label switchyard.route.web.host: an empty host"))
        #expect(problem(["switchyard.route.web.host": "bad host"]).contains("label switchyard.route.web.host: route host"))
        #expect(problem(["switchyard.route.web.hots": "a.example"]).contains("container shop-1 (3f2a9c1b): label \"switchyard.route.web.hots\": the field is one of host, path, priority"))
        #expect(problem(["switchyard.route.web.middlewares": "auth"]).contains("middlewares are not read from labels yet"))
        #expect(problem(["switchyard.route.path": "/x"]).contains("is not switchyard.route.NAME.FIELD"))
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
