import Foundation
import Testing

extension Integration {
    /// `redirect` with regex + replacement and the `path_regex` matcher through the real
    /// binary, with curl over HTTP/1.1 and HTTP/2 (prior knowledge) and nghttp.
    @Suite struct RegexRoutingThroughTheBinary {
        static let config = """
            middlewares:
              www: {redirect: {regex: "^http://www\\\\.([^/]+)/(.*)", replacement: "https://${1}/$2"}}
              old-items: {redirect: {regex: "^http://[^/]+/items/([0-9]+)$", replacement: "/catalog/item-$1", permanent: false}}
              go: {redirect: {regex: "^http://[^/]+/go/(.*)", replacement: "https://target.example/$1"}}
            routes:
              - {name: users, path_regex: '^/v[0-9]+/users/[^/]+$', service: users}
              - {name: items, path: /items, service: main, middlewares: [old-items]}
              - {name: go, path: /go, service: main, middlewares: [go]}
              - {name: default, service: main, middlewares: [www]}

            """

        @Test(.timeLimit(.minutes(1)))
        func regexRedirectsAnswerWithTheExactLocationAndPathRegexRoutesTakeTheirPaths() throws {
            let dir = try ScratchDir("regex-routing")
            let names = ["main", "users"]
            let backends = try names.map { try Backend.demo($0, dir: dir) }
            defer { backends.forEach { $0.stop() } }
            try dir.write("services.yml", servicesYAML(zip(names, backends).map { ServiceSpec(name: $0, instances: [.init(port: $1.port)]) }))
            try dir.write("switchyard.yml", """
                listeners:
                  - {name: web, address: 127.0.0.1:0}
                \(Self.config)discovery: {provider: file, file: services.yml}
                workers: 1

                """)
            let proxy = try ChildProcess(SwitchyardBinary.path, ["run", "--config", dir.file("switchyard.yml")], dir: dir, label: "proxy")
            defer { proxy.stop() }
            let port = try proxy.waitForListeningPort()
            let url = "http://127.0.0.1:\(port)"

            for h2 in [false, true] {
                let mode = h2 ? ["--http2-prior-knowledge"] : []
                /// (status, Location as sent, backend name when forwarded)
                func get(_ path: String, _ options: [String] = []) throws -> (Int, String, String) {
                    let result = try curl(url + path, mode + options, extra: ["%header{location}"], dir: dir)
                    let backend = result.httpStatus == 200 ? (result.body.split(separator: " ").dropFirst(2).first.map(String.init) ?? result.body) : ""
                    return (result.httpStatus, result.written.first ?? "", backend)
                }
                let www = try get("/a/b?x=1&y=%2F", ["-H", "Host: www.example.com"])
                #expect(www.0 == 301 && www.1 == "https://example.com/a/b?x=1&y=%2F", "h2 \(h2): \(www)")
                let wwwPost = try get("/form", ["-H", "Host: www.example.com", "-d", "a=1"])
                #expect(wwwPost.0 == 308 && wwwPost.1 == "https://example.com/form", "a POST keeps its method: h2 \(h2): \(wwwPost)")
                #expect(try get("/a", ["-H", "Host: example.com"]) == (200, "", "main"), "no match: forwarded")

                let item = try get("/items/42")
                #expect(item.0 == 302 && item.1 == "/catalog/item-42", "h2 \(h2): \(item)")
                #expect(try get("/items/42", ["-X", "PUT", "-d", "x"]).0 == 307)
                #expect(try get("/items/42?x=1").0 == 200, "the regex ends with $ and the URL has a query: no match, as in Traefik")

                #expect(try get("/v2/users/alice") == (200, "", "users"))
                #expect(try get("/v10/users/bob?tab=posts") == (200, "", "users"), "the query is not part of the path")
                #expect(try get("/v2/users/alice/posts").2 == "main")
                #expect(try get("/vx/users/alice").2 == "main")

                // The attack: CR LF captured into the Location stays percent-encoded in one
                // value (in the path the request hardening already refuses an encoded control byte).
                #expect(try get("/go/x%0d%0aSet-Cookie:%20a=b").0 == 400)
                let headFile = dir.file("attack-\(h2).txt")
                let attack = try curl(url + "/go/x?next=%0d%0aSet-Cookie:%20a=b", mode + ["-D", headFile], extra: ["%header{location}"], dir: dir)
                let head = (try? String(contentsOfFile: headFile, encoding: .utf8)) ?? ""
                #expect(attack.httpStatus == 301 && attack.written.first == "https://target.example/x?next=%0d%0aSet-Cookie:%20a=b", "h2 \(h2): \(head)")
                #expect(!head.lowercased().split(separator: "\r\n").contains { $0.hasPrefix("set-cookie") }, "h2 \(h2): \(head)")
            }

            // A raw non-ASCII byte never reaches a Location: the parser refuses it first (and
            // were one to pass, RegexRedirect refuses the Location: RegexRedirectLocations).
            let connection = try RawConnection(port: port)
            try connection.send([UInt8]("GET /go/".utf8) + [0xC3, 0xA9] + [UInt8](" HTTP/1.1\r\nHost: h\r\n\r\n".utf8))
            let raw = try connection.readResponse()
            #expect(raw.status == 400 && raw.header("Location") == nil, "\(raw.status)")

            // nghttp: a regex redirect and a path_regex route on two streams of one connection.
            let streams = try runCommand("/usr/bin/nghttp", ["-nv", url + "/go/deep/link?q=1", url + "/v3/users/carol"], dir: dir, label: "nghttp")
            #expect(streams.status == 0, "\(streams.stderr)")
            #expect(streams.stdout.contains(":status: 301") && streams.stdout.contains("location: https://target.example/deep/link?q=1"),
                    "\(streams.stdout)")
            #expect(streams.stdout.contains(":status: 200"), "\(streams.stdout)")
        }

        /// `switchyard check` refuses a bad regex with the engine's reason.
        @Test(.timeLimit(.minutes(1)))
        func checkRefusesABadRegexWithItsKey() throws {
            let dir = try ScratchDir("regex-check")
            try dir.write("services.yml", "services: {}\n")
            try dir.write("bad.yml", """
                listeners:
                  - {name: web, address: 127.0.0.1:0}
                routes:
                  - {path_regex: '^/(a|b', service: main}
                discovery: {provider: file, file: services.yml}

                """)
            let bad = try runCommand(SwitchyardBinary.path, ["check", "--config", dir.file("bad.yml")], dir: dir, label: "check-bad")
            #expect(bad.status != 0)
            #expect((bad.stdout + bad.stderr).contains("path_regex '^/(a|b': missing ')' for the group opened at offset 2"), "\(bad.stdout)\(bad.stderr)")
        }
    }
}
