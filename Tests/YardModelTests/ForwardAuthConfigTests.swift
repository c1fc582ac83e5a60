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
                               ("{forward_auth: {address: \"http://auth.internal:9000/x\"}}", "declare the auth server as a service"),
                               ("{forward_auth: {address: \"http://10.0.0.1:99999/x\"}}", "IP address and port"),
                               ("{forward_auth: {address: \"http://10.0.0.256:80/x\"}}", "IP address and port"),
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
}
