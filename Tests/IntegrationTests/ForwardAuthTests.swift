import Foundation
import Testing

// forward_auth through the real binary, with a real auth service (the Python origin's /auth/
// paths): allowed requests carry the auth service's X-User and never the client's; a 401 or
// a redirect goes back as the auth service sent it; an auth service that is down or slow is a
// 502 or 504, never a request let through. HTTP/1.1 and HTTP/2 clients.

extension Integration {
    @Suite struct ForwardAuthThroughTheBinary {
        @Test(.timeLimit(.minutes(1)))
        func theAuthServiceDecidesAndItsAnswerReachesTheClientAsItIs() throws {
            let dir = try ScratchDir("forward-auth")
            let (origin, originPort) = try startFileOrigin(dir)
            defer { origin.stop() }
            let down = try closedPort()
            try dir.write("body.bin", String(repeating: "0123456789abcdef", count: 20_000))
            let (proxy, url) = try startMiddlewareProxy(dir, originPort: originPort, """
                middlewares:
                  sso: {forward_auth: {address: "http://auth/auth/check", auth_response_headers: [X-User, X-Auth-Saw], timeout: 1s}}
                  sso-down: {forward_auth: {address: "http://authdown/check"}}
                  sso-ip: {forward_auth: {address: "http://127.0.0.1:\(originPort)/auth/check", auth_response_headers: [X-User]}}
                  sso-ip-down: {forward_auth: {address: "http://127.0.0.1:\(down)/check"}}
                  sso-host: {forward_auth: {address: "http://localhost:\(originPort)/auth/check", auth_response_headers: [X-User, X-Auth-Saw]}}
                routes:
                  - {path: /down, service: site, middlewares: [sso-down]}
                  - {path: /ip-down, service: site, middlewares: [sso-ip-down]}
                  - {path: /ip, service: site, middlewares: [sso-ip]}
                  - {path: /host, service: site, middlewares: [sso-host]}
                  - {service: site, middlewares: [sso]}
                """, more: [ServiceSpec(name: "auth", instances: [.init(port: originPort)]),
                            ServiceSpec(name: "authdown", instances: [.init(port: down)])])
            defer { proxy.stop() }

            for h2 in [false, true] {
                let mode = h2 ? ["--http2-prior-knowledge"] : []
                let tag = h2 ? "h2" : "h1"
                // Allowed: the auth service's fields replace the client's own.
                let allowed = try curl(url + "/private/echo-headers?x=1", mode + ["-H", "Authorization: Bearer good", "-H", "X-User: mallory"], dir: dir)
                #expect(allowed.httpStatus == 200, "\(tag): \(allowed.body)")
                let seen = allowed.body.lowercased()
                #expect(seen.contains("x-user: alice"), "\(tag): \(seen)")
                #expect(!seen.contains("mallory"), "\(tag): the client's X-User never reaches the backend")
                #expect(seen.contains("x-auth-saw: get /private/echo-headers?x=1 127.0.0.1"), "\(tag): \(seen)")
                #expect(!seen.contains("x-not-copied"), "\(tag): only auth_response_headers are copied")
                #expect(seen.contains("authorization: bearer good"), "\(tag): the request goes on with its own fields")

                // A body waits for the check, then goes to the backend whole; a denied one never does.
                let posted = try curl(url + "/private/upload", mode + ["-H", "Authorization: Bearer good", "--data-binary", "@" + dir.file("body.bin")], dir: dir)
                #expect(posted.httpStatus == 200, "\(tag)")
                #expect(posted.body == dir.read("body.bin"), "\(tag): the body arrives as sent")
                #expect(try curl(url + "/private/upload", mode + ["--data-binary", "@" + dir.file("body.bin")], dir: dir).httpStatus == 401)

                // The auth service as an address and port, not a service.
                let byAddress = try curl(url + "/ip/echo-headers", mode + ["-H", "Authorization: Bearer good"], dir: dir)
                #expect(byAddress.httpStatus == 200, "\(tag)")
                #expect(byAddress.body.lowercased().contains("x-user: alice"))
                #expect(try curl(url + "/ip/echo-headers", mode, dir: dir).httpStatus == 401)
                #expect(try curl(url + "/ip-down/echo-headers", mode + ["-H", "Authorization: Bearer good"], dir: dir).httpStatus == 502)

                // The auth service as a host name and port, resolved by the control plane at load.
                let byName = try curl(url + "/host/echo-headers", mode + ["-H", "Authorization: Bearer good"], dir: dir)
                #expect(byName.httpStatus == 200, "\(tag): \(byName.body)")
                #expect(byName.body.lowercased().contains("x-user: alice"), "\(tag)")
                #expect(try curl(url + "/host/echo-headers", mode, dir: dir).httpStatus == 401)

                // Denied: the 401 with its WWW-Authenticate and body.
                let headName = "denied-\(tag).txt"
                let denied = try curl(url + "/private/echo-headers", mode + ["-D", dir.file(headName)], dir: dir)
                #expect(denied.httpStatus == 401)
                #expect(dir.read(headName).lowercased().contains("www-authenticate: bearer realm=\"site\""), "\(tag): \(dir.read(headName))")
                #expect(denied.body == "token needed\n")

                // A redirect to the login page, Location as sent.
                let loginHead = "login-\(tag).txt"
                let login = try curl(url + "/login/next", mode + ["-D", dir.file(loginHead)], dir: dir)
                #expect(login.httpStatus == 302)
                #expect(dir.read(loginHead).contains("https://sso.example/login?rd=/login/next"), "\(tag): \(dir.read(loginHead))")

                // Down: 502; too slow: 504. Never the backend's answer.
                let unreachable = try curl(url + "/down/echo-headers", mode + ["-H", "Authorization: Bearer good"], dir: dir)
                #expect(unreachable.httpStatus == 502, "\(tag)")
                #expect(!unreachable.body.lowercased().contains("authorization"))
                let slow = try curl(url + "/slow/echo-headers", mode + ["-H", "Authorization: Bearer good"], dir: dir)
                #expect(slow.httpStatus == 504, "\(tag)")
                #expect(!slow.body.lowercased().contains("authorization"))
            }
            // A denial keeps the HTTP/1.1 connection: the second request reuses it.
            let twice = try runCommand("/usr/bin/curl", ["-s", "-o", "/dev/null", "-o", "/dev/null", "-w", "%{http_code} %{num_connects}\\n",
                                                         url + "/private/a", url + "/private/b"], dir: dir, label: "curl-twice")
            #expect(twice.stdout == "401 1\n401 0\n", "\(twice.stdout)")
        }
    }
}
