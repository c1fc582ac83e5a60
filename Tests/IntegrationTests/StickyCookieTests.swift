import Foundation
import Testing
import YardTestSupport

extension Integration {
    /// Sticky canaries that need nothing from the client: the proxy assigns a client
    /// without a valid cookie its track by the exact split and sets a signed cookie that
    /// every replica sharing the state store honours.
    @Suite(.serialized) struct StickyCanaryCookies {
        static func services(blue: UInt16, green: UInt16, percent: String) -> String {
            """
            services:
              shop:
                active: blue
                canary:
                  track: green
                  percent: \(percent)
                  sticky: cookie:shop_track
                  sticky_cookie: {max_age: 1h}
                instances:
                  - {address: 127.0.0.1, port: \(blue), track: blue}
                  - {address: 127.0.0.1, port: \(green), track: green}

            """
        }

        /// One request on `connection`: the backend and the value the proxy set (nil: none).
        static func exchange(_ connection: RawConnection, cookie: String? = nil) throws -> (backend: String, setCookie: String?) {
            try connection.send("GET / HTTP/1.1\r\nHost: shop\r\n\(cookie.map { "Cookie: other=1; shop_track=\($0)\r\n" } ?? "")\r\n")
            let response = try connection.readResponse()
            #expect(response.status == 200)
            let set = response.header("set-cookie")
            if let set {
                #expect(set.contains("; Path=/; Max-Age=3600; HttpOnly; SameSite=Lax"), "\(set)")
                #expect(!set.contains("Secure"), "a plain listener's cookie is not Secure: \(set)")
            }
            let value = set.flatMap { $0.split(separator: ";").first }.map { String($0.dropFirst("shop_track=".count)) }
            return (response.header("x-backend") ?? "?", value)
        }

        @Test(.timeLimit(.minutes(1)))
        func aFreshCurlClientGetsASignedCookieAndStaysOnItsTrack() throws {
            let dir = try ScratchDir("sticky-cookie-curl")
            let blue = try Backend.demo("blue-1", dir: dir)
            let green = try Backend.demo("green-1", dir: dir)
            defer { blue.stop(); green.stop() }
            let proxy = try TrafficProxy(dir: dir, services: Self.services(blue: blue.port, green: green.port, percent: "50"))
            defer { proxy.stop() }
            for (client, http2) in [("h1", false), ("h2", true)] {
                let jar = dir.file("\(client).jar")
                var backends: [String] = []
                var setCookies: [String] = []
                for _ in 0..<20 {
                    let options = ["-b", jar, "-c", jar, "-H", "Host: shop"] + (http2 ? ["--http2-prior-knowledge"] : [])
                    let result = try curl(proxy.url + "/", options, extra: ["%header{x-backend}", "%header{set-cookie}"], dir: dir)
                    #expect(result.httpStatus == 200, "\(result.stderr)")
                    backends.append(result.written.first ?? "?")
                    setCookies.append(result.written.dropFirst().first ?? "")
                }
                #expect(setCookies[0].hasPrefix("shop_track="), "\(client): \(setCookies[0])")
                #expect(setCookies.dropFirst().allSatisfy { $0.isEmpty }, "\(client): the cookie is set once: \(setCookies)")
                #expect(Set(backends).count == 1, "\(client) moved between tracks: \(backends)")
                let jarText = try String(contentsOfFile: jar, encoding: .utf8)
                #expect(jarText.contains("#HttpOnly_") && jarText.contains("shop_track"), "\(jarText)")
            }
        }

        @Test(.timeLimit(.minutes(1)))
        func freshClientsSplitExactlyAndOnlyMoveForwardWhenTheShareRises() throws {
            let dir = try ScratchDir("sticky-cookie-split")
            let blue = try Backend.demo("blue-1", dir: dir)
            let green = try Backend.demo("green-1", dir: dir)
            defer { blue.stop(); green.stop() }
            let proxy = try TrafficProxy(dir: dir, services: Self.services(blue: blue.port, green: green.port, percent: "30"), workers: 1)
            defer { proxy.stop() }
            let connection = try RawConnection(port: proxy.port)
            var clients: [(backend: String, cookie: String)] = []
            for _ in 0..<200 {
                let (backend, cookie) = try Self.exchange(connection)
                clients.append((backend, try #require(cookie, "a fresh client gets a cookie")))
            }
            let canary = clients.filter { $0.backend == "green-1" }.count
            #expect(canary == 60, "\(canary) of 200 fresh clients on the canary at 30 %")
            // With its cookie, each client keeps its track (and gets no new cookie).
            for client in clients {
                let again = try Self.exchange(connection, cookie: client.cookie)
                #expect(again.backend == client.backend && again.setCookie == nil)
            }
            // 30 % → 60 %: canary clients stay, about 3/7 of the stable ones move forward.
            let before = proxy.child.stderrText.components(separatedBy: "published").count
            try proxy.dir.write("services.yml", Self.services(blue: blue.port, green: green.port, percent: "60"))
            try waitFor("the 60 % table", timeout: .seconds(5)) {
                proxy.child.stderrText.components(separatedBy: "published").count > before
            }
            var moved = 0
            for client in clients {
                let now = try Self.exchange(connection, cookie: client.cookie).backend
                if client.backend == "green-1" { #expect(now == "green-1", "a canary client moved back") }
                if client.backend == "blue-1" && now == "green-1" { moved += 1 }
            }
            #expect(abs(moved - 60) <= 25, "\(moved) of 140 stable clients moved at 60 %")
        }

        @Test(.timeLimit(.minutes(1)))
        func aTamperedCookieIsIgnoredAndReplaced() throws {
            let dir = try ScratchDir("sticky-cookie-tamper")
            let blue = try Backend.demo("blue-1", dir: dir)
            let green = try Backend.demo("green-1", dir: dir)
            defer { blue.stop(); green.stop() }
            let proxy = try TrafficProxy(dir: dir, services: Self.services(blue: blue.port, green: green.port, percent: "10"), workers: 1)
            defer { proxy.stop() }
            let connection = try RawConnection(port: proxy.port)
            // A stable client's genuine cookie, its point moved under the canary's share.
            var genuine: String?
            for _ in 0..<20 where genuine == nil {
                let (backend, cookie) = try Self.exchange(connection)
                if backend == "blue-1" { genuine = cookie }
            }
            let value = try #require(genuine)
            let mac = try #require(value.split(separator: ".").last)
            for forged in ["0.\(mac)", "0.0000000000000000", "0", "0.\(mac)x", value + "0"] {
                let (_, replaced) = try Self.exchange(connection, cookie: forged)
                let fresh = try #require(replaced, "a forged cookie '\(forged)' must be replaced")
                #expect(fresh != forged)
                // The replacement is genuine: sent back, it is kept.
                #expect(try Self.exchange(connection, cookie: fresh).setCookie == nil)
            }
            #expect(try Self.exchange(connection, cookie: value) == ("blue-1", nil))
        }

        @Test(.timeLimit(.minutes(2)))
        func twoReplicasOnOneEtcdHonourEachOthersCookies() throws {
            let dir = try ScratchDir("sticky-cookie-replicas")
            let blue = try Backend.demo("blue-1", dir: dir)
            let green = try Backend.demo("green-1", dir: dir)
            defer { blue.stop(); green.stop() }
            let etcd = try EtcdCluster(size: 1)
            let store = "  type: etcd\n  endpoints: [\(etcd.endpoints[0])]\n  prefix: /sy-sticky/\n"
            let services = Self.services(blue: blue.port, green: green.port, percent: "50")
            let one = try TrafficProxy(dir: dir, services: services, label: "r1", store: store + "  replica_id: r1\n")
            defer { one.stop() }
            let two = try TrafficProxy(dir: dir, services: services, label: "r2", store: store + "  replica_id: r2\n")
            defer { two.stop() }
            let toOne = try RawConnection(port: one.port)
            let toTwo = try RawConnection(port: two.port)
            for (from, to) in [(toOne, toTwo), (toTwo, toOne)] {
                for _ in 0..<40 {
                    let (backend, cookie) = try Self.exchange(from)
                    let value = try #require(cookie)
                    #expect(try Self.exchange(to, cookie: value) == (backend, nil), "the other replica honours \(value)")
                }
            }
        }

        @Test(.timeLimit(.minutes(1)))
        func aTLSListenersCookieIsSecureOverHTTP1AndHTTP2() throws {
            let dir = try ScratchDir("sticky-cookie-tls")
            let pki = try TestCertificates()
            let blue = try Backend.demo("blue-1", dir: dir)
            let green = try Backend.demo("green-1", dir: dir)
            defer { blue.stop(); green.stop() }
            try dir.write("services.yml", Self.services(blue: blue.port, green: green.port, percent: "50"))
            let tls = "certificates:\n  - {cert: \(pki.a.certificate), key: \(pki.a.key)}\nalpn: [h2, http/1.1]"
            try dir.write("switchyard.yml", ProxySpec(workers: 1, tls: tls).yaml)
            let child = try ChildProcess(SwitchyardBinary.path, ["run", "--config", dir.file("switchyard.yml")], dir: dir, label: "proxy")
            defer { child.stop() }
            let port = try child.waitForListeningPort()
            for version in ["--http1.1", "--http2"] {
                let result = try curl("https://a.test:\(port)/", [version, "--cacert", pki.caFile, "--resolve", "a.test:\(port):127.0.0.1"],
                                      extra: ["%header{set-cookie}", "%{http_version}"], dir: dir)
                #expect(result.httpStatus == 200, "\(result.stderr)")
                let set = result.written.first ?? ""
                #expect(set.hasPrefix("shop_track=") && set.hasSuffix("; HttpOnly; SameSite=Lax; Secure"), "\(version): \(set)")
                #expect(result.written.dropFirst().first == (version == "--http2" ? "2" : "1.1"))
            }
        }
    }
}
