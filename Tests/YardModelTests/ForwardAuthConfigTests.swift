// forward_auth's config: the address names a service, copied fields are dropped from the
// client's request, and bad settings are named.

import Testing
@testable import YardModel

@Suite struct ForwardAuthConfig {
    private func load(_ middleware: String) throws(ConfigError) -> SwitchyardConfig {
        try ConfigLoader.loadConfig(text: "listeners:\n  - address: :8080\nmiddlewares:\n  sso: \(middleware)\nroutes:\n  - {service: s, middlewares: [sso]}\n",
                                    path: "switchyard.yml")
    }

    @Test func forwardAuthNamesAServiceAndDropsTheClientsCopiesOfCopiedFields() throws {
        let config = try load("{forward_auth: {address: \"http://auth/verify?app=shop\", auth_response_headers: [X-User], timeout: 2s}}")
        #expect(config.routes[0].middlewares[0].kind == .forwardAuth(
            ForwardAuth(service: "auth", path: "/verify?app=shop", responseHeaders: ["X-User"], timeoutMs: 2_000)))
        let steps = RouteSteps(names: ["sso"], kinds: [config.routes[0].middlewares[0].kind])
        #expect(Array("x-USER".utf8).withUnsafeBytes { steps.drops($0) })
        #expect(String(decoding: steps.forwardAuth?.requestStart ?? [], as: UTF8.self) == "GET /verify?app=shop HTTP/1.1\r\nHost: auth\r\n")
        #expect(steps.forwardAuth?.requestHeaders == [Array("authorization".utf8), Array("cookie".utf8)])
        #expect(try load("{forward_auth: {address: \"http://auth\"}}").routes[0].middlewares[0].kind == .forwardAuth(ForwardAuth(service: "auth")))
        let fixed = try load("{forward_auth: {address: \"http://10.0.0.5:9000/verify\"}}").routes[0].middlewares[0].kind
        #expect(fixed == .forwardAuth(ForwardAuth(service: "10.0.0.5:9000", path: "/verify")))
        if case .forwardAuth(let auth) = fixed { #expect(auth.fixedAddress?.host == "10.0.0.5" && auth.fixedAddress?.port == 9000) }
        let v6 = ForwardAuth(service: "[fd00::5]:9000")
        #expect(v6.fixedAddress?.host == "fd00::5")
        #expect(ForwardAuth(service: "auth").fixedAddress == nil)
    }

    @Test func badForwardAuthSettingsAreNamed() {
        for (bad, message) in [("{forward_auth: {}}", "address"),
                               ("{forward_auth: {address: \"https://auth/x\"}}", "http://"),
                               ("{forward_auth: {address: \"http://auth_internal:9000/x\"}}", "a host name and port"),
                               ("{forward_auth: {address: \"http://-auth.internal:9000/x\"}}", "a host name and port"),
                               ("{forward_auth: {address: \"http://auth.internal:0/x\"}}", "a host name and port"),
                               ("{forward_auth: {address: \"http://10.0.0.1:99999/x\"}}", "IP address and port"),
                               ("{forward_auth: {address: \"http://10.0.0.256:80/x\"}}", "IP address and port"),
                               ("{forward_auth: {address: \"http://10.0.0.1.5:80/x\"}}", "IP address and port"),
                               ("{forward_auth: {address: \"http://auth/a b\"}}", "space"),
                               ("{forward_auth: {address: \"http://auth/\", auth_response_headers: [Content-Length]}}", "cannot copy"),
                               ("{forward_auth: {address: \"http://auth/\", auth_request_headers: [X-Forwarded-For]}}", "cannot copy"),
                               ("{forward_auth: {address: \"http://auth/\", timeout: soon}}", "duration")] {
            do {
                _ = try load(bad)
                Issue.record("\(bad) loaded")
            } catch {
                #expect(error.description.contains(message), "\(bad): \(error.description)")
            }
        }
    }

    // MARK: Host names

    /// A resolver that answers from `names` and records what it was asked.
    final class FakeResolver {
        var names: [String: String]
        var asked: [String] = []

        init(_ names: [String: String]) { self.names = names }

        func resolve(_ host: String) -> Result<String, ResolveFailure> {
            asked.append(host)
            return names[host].map { .success($0) } ?? .failure(ResolveFailure("Name or service not known"))
        }
    }

    private func authOf(_ config: SwitchyardConfig) -> ForwardAuth? {
        if case .forwardAuth(let auth) = config.routes[0].middlewares[0].kind { return auth }
        return nil
    }

    @Test func aHostNameAndPortIsResolvedAtLoadAndTheTableConnectsToItsAddress() throws {
        var config = try load("{forward_auth: {address: \"http://auth.internal:9000/verify\"}}")
        #expect(authOf(config)?.service == "auth.internal:9000")
        #expect(authOf(config)?.hostName == "auth.internal")
        let resolver = FakeResolver(["auth.internal": "10.1.2.3"])
        #expect(try config.resolvingHostNames(previous: nil, resolve: resolver.resolve).isEmpty)
        #expect(authOf(config)?.fixedAddress?.host == "10.1.2.3" && authOf(config)?.fixedAddress?.port == 9000)
        // The sub-request still names the host, not the address.
        let steps = RouteSteps(names: ["sso"], kinds: [config.routes[0].middlewares[0].kind])
        #expect(String(decoding: steps.forwardAuth?.requestStart ?? [], as: UTF8.self) == "GET /verify HTTP/1.1\r\nHost: auth.internal:9000\r\n")
        let table = buildRoutingTable(version: 1, routes: config.routes, catalog: ServiceCatalog(services: []))
        let service = table.services.first { $0.name == "auth.internal:9000" }
        #expect(service?.endpoints.map(\.address) == ["10.1.2.3"] && service?.endpoints.first?.port == 9000)
    }

    @Test func addressesAndServiceNamesAreNeverLookedUp() throws {
        let resolver = FakeResolver([:])
        for address in ["http://10.0.0.5:9000/v", "http://[fd00::5]:9000/v", "http://auth/v"] {
            var config = try load("{forward_auth: {address: \"\(address)\"}}")
            _ = try config.resolvingHostNames(previous: nil, resolve: resolver.resolve)
            #expect(authOf(config)?.resolvedAddress == nil, "\(address)")
        }
        #expect(resolver.asked.isEmpty)
    }

    @Test func aNameThatDoesNotResolveAtLoadIsRefusedAndAtReloadKeepsItsLastAddress() throws {
        var first = try load("{forward_auth: {address: \"http://auth.internal:9000/verify\"}}")
        do {
            _ = try first.resolvingHostNames(previous: nil, resolve: FakeResolver([:]).resolve)
            Issue.record("an unresolvable name loaded")
        } catch {
            #expect(error.description.contains("middlewares.sso.forward_auth.address"), "\(error.description)")
            #expect(error.description.contains("'auth.internal' does not resolve (Name or service not known)"), "\(error.description)")
        }
        _ = try first.resolvingHostNames(previous: nil, resolve: FakeResolver(["auth.internal": "10.1.2.3"]).resolve)
        // The reload: the name no longer resolves; the running address stays, with a warning.
        var reloaded = try load("{forward_auth: {address: \"http://auth.internal:9000/verify\"}}")
        let warnings = try reloaded.resolvingHostNames(previous: first, resolve: FakeResolver([:]).resolve)
        #expect(authOf(reloaded)?.fixedAddress?.host == "10.1.2.3")
        #expect(warnings.count == 1 && warnings[0].contains("keeping its last address 10.1.2.3"), "\(warnings)")
        // A reload that resolves anew moves to the new address.
        var moved = try load("{forward_auth: {address: \"http://auth.internal:9000/verify\"}}")
        _ = try moved.resolvingHostNames(previous: reloaded, resolve: FakeResolver(["auth.internal": "10.9.9.9"]).resolve)
        #expect(authOf(moved)?.fixedAddress?.host == "10.9.9.9")
    }
}
