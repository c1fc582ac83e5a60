#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
@testable import YardControl
import YardTestSupport

// The admin API's door, as pure functions: the request reader never traps and refuses what
// is ambiguous; the guard turns away other hosts, other origins, non-JSON writes and
// writes without a token; token files are owner-only and name their tokens.

private func parse(_ text: String) -> AdminParse {
    Array(text.utf8).withUnsafeBytes { AdminRequestParser.parse($0) }
}

private func request(_ text: String) throws -> AdminRequest {
    guard case .request(let request, _) = parse(text) else {
        throw HarnessFailure("expected a whole request from \(text.debugDescription), got \(parse(text))")
    }
    return request
}

private func refusal(_ text: String) -> Int? {
    if case .refused(let response) = parse(text) { return response.status }
    return nil
}

struct HarnessFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

@Suite struct AdminRequestParserNeverTraps {
    /// Every query the old splitter crashed on is an answer now: 400 or a parsed query.
    @Test func emptyQueryKeyDoesNotCrashTheAdminAPI() {
        for query in ["?=", "?=b", "?a=%", "?a=%4", "?a=%zz", "?%=1", "?a=1&a=2", "?a=%ff%fe"] {
            #expect(refusal("GET /healthz\(query) HTTP/1.1\r\nHost: localhost\r\n\r\n") == 400, "\(query)")
        }
    }

    @Test func emptyPairsAndNamesWithoutValuesAreAccepted() throws {
        #expect(try request("GET /healthz?& HTTP/1.1\r\nHost: localhost\r\n\r\n").query == [:])
        #expect(try request("GET /healthz?a HTTP/1.1\r\nHost: localhost\r\n\r\n").query == ["a": ""])
        #expect(try request("GET /x?a=1&&b=%41+c HTTP/1.1\r\nHost: localhost\r\n\r\n").query == ["a": "1", "b": "A+c"])
        #expect(try request("GET /x? HTTP/1.1\r\nHost: localhost\r\n\r\n").path == "/x")
    }

    /// Every prefix of a request is incomplete or refused, never a trap; the whole one parses.
    @Test func everySplitPointOfARequestWithABodyIsIncomplete() throws {
        let body = #"{"to":"green"}"#
        let text = "POST /services/shop/flip HTTP/1.1\r\nHost: 127.0.0.1:9901\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
        let bytes = Array(text.utf8)
        for cut in 0..<bytes.count {
            let result = Array(bytes[..<cut]).withUnsafeBytes { AdminRequestParser.parse($0) }
            guard case .incomplete = result else { Issue.record("cut at \(cut): \(result)"); continue }
        }
        let whole = try request(text)
        guard case .trafficChange(let change) = whole.json else { Issue.record("\(whole.json)"); return }
        #expect(change.to == "green")
    }

    @Test func aBodyOverOneMebibyteIs413BeforeItArrives() {
        #expect(refusal("POST /render HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1048577\r\n\r\n") == 413)
        #expect(refusal("POST /render HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n") == 411)
    }

    /// A head without a line feed is refused once it passes the limit, so a reader that
    /// parses again only on a line feed or past the limit never buffers more.
    @Test func aLongHeadWithoutALineFeedIsRefusedPastTheLimit() {
        let line = "GET /" + String(repeating: "a", count: AdminRequestParser.limits.maxHeadBytes + 1)
        #expect(refusal(line) == 414)
        let header = "GET / HTTP/1.1\r\nHost: localhost\r\nX: " + String(repeating: "a", count: AdminRequestParser.limits.maxHeadBytes)
        #expect(refusal(header) == 431)
    }

    @Test func aDoorHeaderSentTwiceIsRefused() {
        #expect(refusal("GET / HTTP/1.1\r\nHost: localhost\r\nOrigin: a\r\nOrigin: b\r\n\r\n") == 400)
        #expect(refusal("POST /render HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer a\r\nAuthorization: Bearer b\r\n\r\n") == 400)
    }

    @Test func aBodyThatIsNotTheRoutesJSONIsKeptAsInvalidForTheHandler() throws {
        let bad = try request("POST /services/shop/canary HTTP/1.1\r\nHost: localhost\r\nContent-Length: 8\r\n\r\nnot json")
        guard case .invalid(let message) = bad.json else { Issue.record("\(bad.json)"); return }
        #expect(message.contains("not the JSON"))
        let drain = try request("POST /endpoints/shop%2F127.0.0.1:1/drain HTTP/1.1\r\nHost: localhost\r\nContent-Length: 15\r\n\r\n{\"drain\":false}")
        guard case .drain(let body) = drain.json else { Issue.record("\(drain.json)"); return }
        #expect(body.drain == false)
    }

    /// Random bytes and random mutations of a good request: always an answer.
    @Test func randomBytesNeverTrap() {
        var generator = SystemRandomNumberGenerator()
        let seed = Array("POST /services/a/canary?x=%41&y HTTP/1.1\r\nHost: [::1]:9901\r\nContent-Length: 20\r\n\r\n{\"action\":\"set\",\"x\"".utf8)
        for _ in 0..<3_000 {
            var bytes = seed
            for _ in 0..<Int.random(in: 1...6, using: &generator) {
                let at = Int.random(in: 0..<bytes.count, using: &generator)
                switch Int.random(in: 0..<3, using: &generator) {
                case 0: bytes[at] = UInt8.random(in: 0...255, using: &generator)
                case 1: bytes.remove(at: at)
                default: bytes.insert(Array("%=&?\r\n:".utf8).randomElement(using: &generator) ?? 0, at: at)
                }
            }
            _ = bytes.withUnsafeBytes { AdminRequestParser.parse($0) }
        }
    }
}

@Suite struct AdminGuardDoor {
    let door = AdminGuard(boundHost: "127.0.0.1", port: 9901, allowedHosts: ["switchyard.internal"])
    let tokens = try! AdminTokens(parsing: "ci:s3cret\nops:other-token\n")

    func admit(_ method: String, headers: [String: String], body: String = "", tokens: AdminTokens? = nil) -> Int? {
        var request = AdminRequest(method: method, path: "/services/shop/flip", headers: headers, body: Array(body.utf8))
        return door.admit(&request, tokens: tokens)?.status
    }

    @Test func aHostThatIsNotThisListenerGets421() {
        for host in ["evil.example:9901", "evil.example", "127.0.0.1:80", "localhost:1", "[::1]:9902", "", "a:b:c"] {
            #expect(admit("GET", headers: ["host": host]) == 421, "\(host)")
        }
        for host in ["127.0.0.1:9901", "localhost:9901", "LOCALHOST", "[::1]:9901", "switchyard.internal", "switchyard.internal:443"] {
            #expect(admit("GET", headers: ["host": host]) == nil, "\(host)")
        }
    }

    @Test func aWildcardBindAcceptsIPLiteralsButNotNames() {
        let open = AdminGuard(boundHost: "0.0.0.0", port: 9901)
        #expect(open.accepts(authority: "10.1.2.3:9901"))
        #expect(!open.accepts(authority: "rebind.example:9901"))
    }

    @Test func aTextPlainFormPostFromAnotherOriginIsRefused() {
        let form = ["host": "127.0.0.1:9901", "origin": "http://evil.example", "content-type": "text/plain"]
        #expect(admit("POST", headers: form, body: "{\"to\":\"green\"}") == 403)
        #expect(admit("POST", headers: ["host": "127.0.0.1:9901", "content-type": "text/plain"], body: "x") == 415)
        #expect(admit("POST", headers: ["host": "127.0.0.1:9901", "content-type": "application/x-www-form-urlencoded"]) == 415)
        #expect(admit("POST", headers: ["host": "127.0.0.1:9901", "origin": "null", "content-type": "application/json"]) == 403)
        #expect(admit("POST", headers: ["host": "127.0.0.1:9901", "origin": "http://localhost:9901", "content-type": "application/json; charset=utf-8"], body: "{}") == nil)
        #expect(admit("POST", headers: ["host": "127.0.0.1:9901", "sec-fetch-site": "cross-site", "content-type": "application/json"]) == 403)
        #expect(admit("POST", headers: ["host": "127.0.0.1:9901", "sec-fetch-site": "same-origin", "content-type": "application/json"]) == nil)
        // `curl -X POST` without a body sends no Content-Type: not a browser form.
        #expect(admit("POST", headers: ["host": "127.0.0.1:9901"]) == nil)
    }

    @Test func everyWriteNeedsOneOfTheTokensAndRecordsItsName() {
        let json = ["host": "127.0.0.1:9901", "content-type": "application/json"]
        for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
            #expect(admit(method, headers: json, tokens: tokens) == 401, "\(method)")
        }
        #expect(admit("GET", headers: json, tokens: tokens) == nil)
        #expect(admit("POST", headers: json.merging(["authorization": "Bearer s3cre"]) { $1 }, tokens: tokens) == 401)
        #expect(admit("POST", headers: json.merging(["authorization": "Basic s3cret"]) { $1 }, tokens: tokens) == 401)
        var request = AdminRequest(method: "POST", path: "/render", headers: json.merging(["authorization": "Bearer other-token"]) { $1 })
        #expect(door.admit(&request, tokens: tokens) == nil)
        #expect(request.tokenName == "ops")
        // The whole `NAME:TOKEN` line is accepted too (a CLI reading a one-line named file).
        request.headers["authorization"] = "Bearer ci:s3cret"
        #expect(door.admit(&request, tokens: tokens) == nil)
        #expect(request.tokenName == "ci")
    }

    @Test func historyWhoIsTheTokensNameWithTheClientsClaimBeside() {
        #expect(recordedWho(tokenName: "ci", sent: "alice") == "ci (sent: alice)")
        #expect(recordedWho(tokenName: "ci", sent: nil) == "ci")
        #expect(recordedWho(tokenName: nil, sent: "alice\nFORGED") == "aliceFORGED")
        #expect(recordedWho(tokenName: nil, sent: nil) == "admin-api")
    }
}

@Suite struct AdminTokenFiles {
    @Test func aBareTokenLineIsNamedAdminAndNamedLinesKeepTheirNames() throws {
        #expect(try AdminTokens(parsing: "s3cret\n").entries == [.init(name: "admin", token: Array("s3cret".utf8))])
        let named = try AdminTokens(parsing: "# who may write\nci:abc\n\nops:d:e\n")
        #expect(named.names == ["ci", "ops"])
        #expect(named.name(of: Array("d:e".utf8)) == "ops")
    }

    @Test func malformedFilesAreRefusedWithoutEchoingATokenPart() {
        for text in ["", "\n# only a comment\n", "a\nb\n", "ci:\n", ":abc\n", "ci:a\nci:b\n", "bad name:x\n"] {
            #expect(throws: AdminTokenFileError.self, "\(text.debugDescription)") { try AdminTokens(parsing: text) }
        }
        do {
            _ = try AdminTokens(parsing: "ci:abc\nsupersecretvalue\n")
        } catch {
            #expect(!error.message.contains("supersecretvalue"))
        }
    }

    @Test func aTokenFileOthersMayReadIsRefusedNamingItsMode() throws {
        let dir = try TempDir()
        let path = try dir.write("token", "s3cret\n")
        chmod(path, 0o644)
        #expect {
            try AdminTokens.load(path: path)
        } throws: { error in
            let message = (error as? AdminTokenFileError)?.message ?? ""
            return message.contains(path) && message.contains("0644") && !message.contains("s3cret")
        }
        chmod(path, 0o600)
        #expect(try AdminTokens.load(path: path).names == ["admin"])
    }
}

@Suite struct GateQueryValues {
    /// `-inf`, `nan` and huge numbers are refused naming the parameter, not converted.
    @Test func nonFiniteOrHugeGateThresholdsAre400NamingTheParameter() {
        for value in ["-inf", "inf", "nan", "-1e300", "1e300", "-1"] {
            #expect {
                try GateRequest(query: ["max_error_rate_increase": value])
            } throws: { error in
                (error as? AdminRequestError)?.message.contains("max_error_rate_increase") == true
            }
        }
        #expect(throws: AdminRequestError.self) { try GateRequest(query: ["window": "1e300"]) }
        #expect(throws: AdminRequestError.self) { try GateRequest(query: ["min_requests": "-5"]) }
        #expect(throws: AdminRequestError.self) { try GateRequest(query: ["p99_floor_ms": "ten"]) }
    }
}
