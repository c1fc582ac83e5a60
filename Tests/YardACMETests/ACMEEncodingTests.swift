import Foundation
import Testing
@testable import YardACME

/// The pure parts of the ACME client, as values: base64url, the JWS and JWK text, ECDSA
/// signature forms, problem documents, URLs, HTTP responses, polling and names.
@Suite struct ACMEEncodingTests {
    // MARK: base64url

    @Test func base64URLMatchesTheRFC4648VectorsWithoutPadding() {
        let vectors = ["": "", "f": "Zg", "fo": "Zm8", "foo": "Zm9v", "foob": "Zm9vYg", "fooba": "Zm9vYmE", "foobar": "Zm9vYmFy"]
        for (plain, encoded) in vectors {
            #expect(Base64URL.encode(plain) == encoded)
            #expect(Base64URL.decode(encoded) == Array(plain.utf8))
        }
    }

    @Test func base64URLUsesTheURLAlphabet() {
        #expect(Base64URL.encode([0xFB, 0xFF, 0xBF]) == "-_-_")
        #expect(Base64URL.decode("-_-_") == [0xFB, 0xFF, 0xBF])
    }

    @Test func base64URLRefusesPaddingTheStandardAlphabetAndImpossibleLengths() {
        for bad in ["Zg==", "+/+/", "Z", "Zm9vY", "Zm 9v", "Zm9v\n"] {
            #expect(Base64URL.decode(bad) == nil, "\(bad)")
        }
    }

    @Test func base64URLRoundTripsEveryByteAtEveryLength() {
        let bytes = (0..<256).map { UInt8($0) }
        for length in 0...bytes.count {
            #expect(Base64URL.decode(Base64URL.encode(bytes.prefix(length))) == Array(bytes.prefix(length)))
        }
    }

    // MARK: JWK, JWS

    static let jwk = ECPublicJWK(x: [UInt8](repeating: 1, count: 32), y: [UInt8](repeating: 2, count: 32))!

    @Test func jwkIsTheCanonicalRFC7638FormSortedWithoutWhitespace() {
        #expect(Self.jwk.json == #"{"crv":"P-256","kty":"EC","x":"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE","y":"AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI"}"#)
    }

    @Test func jwkRefusesCoordinatesOfTheWrongSize() {
        #expect(ECPublicJWK(x: [1], y: [UInt8](repeating: 2, count: 32)) == nil)
        #expect(ECPublicJWK(uncompressedPoint: [0x02] + [UInt8](repeating: 1, count: 64)) == nil)
    }

    @Test func keyAuthorizationIsTheTokenDotTheThumbprint() {
        let thumbprint = Base64URL.encode(Digest.sha256(Array(Self.jwk.json.utf8)))
        #expect(Self.jwk.thumbprint == thumbprint)
        #expect(Self.jwk.keyAuthorization(token: "tok_en-1") == "tok_en-1.\(thumbprint)")
    }

    @Test func sha256MatchesTheFIPSVector() {
        #expect(Digest.sha256(Array("abc".utf8)).map { String(format: "%02x", $0) }.joined()
                == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }

    @Test func firstRequestCarriesTheJWKAndLaterOnesTheKid() {
        let first = JWS.protectedHeader(signer: .jwk(Self.jwk), nonce: "n1", url: "https://ca/new-acct")
        #expect(first == #"{"alg":"ES256","jwk":\#(Self.jwk.json),"nonce":"n1","url":"https://ca/new-acct"}"#)
        let later = JWS.protectedHeader(signer: .kid("https://ca/acct/1"), nonce: "n\"2", url: "https://ca/order")
        #expect(later == #"{"alg":"ES256","kid":"https://ca/acct/1","nonce":"n\"2","url":"https://ca/order"}"#)
    }

    @Test func flattenedJWSSignsProtectedDotPayloadAndPostAsGetHasAnEmptyPayload() throws {
        var signed: [UInt8] = []
        let body = try JWS.flattened(protectedHeader: "{\"a\":1}", payload: "{}") { (input) throws(ACMEError) in
            signed = input
            return [9, 9]
        }
        #expect(String(decoding: signed, as: UTF8.self) == "\(Base64URL.encode("{\"a\":1}")).\(Base64URL.encode("{}"))")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: String])
        #expect(object == ["protected": Base64URL.encode("{\"a\":1}"), "payload": Base64URL.encode("{}"), "signature": "CQk"])

        let postAsGet = try JWS.flattened(protectedHeader: "{}", payload: nil) { (_) throws(ACMEError) in [1] }
        #expect(postAsGet.contains(#""payload":"""#))
    }

    @Test func jsonTextEscapesQuotesBackslashesAndControlCharacters() {
        #expect(JSONText.string("a\"b\\c\n\u{1}") == #""a\"b\\c\n\u0001""#)
    }

    // MARK: ECDSA signature forms

    @Test func derSignatureBecomesFixedSizeRAndS() {
        // r with a leading zero (high bit set), s short: both padded to 32 bytes.
        let r = [UInt8](repeating: 0x80, count: 32)
        let s: [UInt8] = [0x01, 0x02]
        let der: [UInt8] = [0x30, UInt8(2 + 33 + 2 + 2), 0x02, 33, 0x00] + r + [0x02, 2] + s
        let raw = ECDSASignature.raw(fromDER: der)
        #expect(raw == r + [UInt8](repeating: 0, count: 30) + s)
        #expect(ECDSASignature.der(fromRaw: raw ?? []) == der)
    }

    @Test func malformedDERSignaturesAreRefusedNotTrapped() {
        let bad: [[UInt8]] = [[], [0x30], [0x30, 0x05, 0x02], [0x30, 0x04, 0x02, 0x09, 0x01, 0x02], [0x31, 0x00],
                              [0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01, 0x00],
                              [0x30, 0x25, 0x02, 0x21] + [UInt8](repeating: 0x7F, count: 33) + [0x02, 0x00]]
        for der in bad { #expect(ECDSASignature.raw(fromDER: der) == nil, "\(der)") }
        for raw in [[], [1], [UInt8](repeating: 0xFF, count: 1000)] { #expect(ECDSASignature.der(fromRaw: raw) == nil) }
    }

    // MARK: Problems

    @Test func problemDocumentKeepsTypeDetailStatusAndSubproblems() throws {
        let body = #"""
            {"type":"urn:ietf:params:acme:error:rejectedIdentifier","detail":"Error creating new order",
             "status":400,"subproblems":[{"type":"urn:ietf:params:acme:error:malformed","detail":"bad name",
             "identifier":{"type":"dns","value":"x..example"}}]}
            """#
        let problem = try #require(ACMEProblem.parse(Array(body.utf8)))
        #expect(problem.code == "rejectedIdentifier")
        #expect(problem.detail == "Error creating new order")
        #expect(problem.status == 400)
        #expect(problem.subproblems.first?.identifier == "x..example")
        #expect(problem.description.contains("x..example: malformed: bad name"))
    }

    @Test func badNonceAndRateLimitedAreRecognised() {
        #expect(ACMEProblem(type: "urn:ietf:params:acme:error:badNonce").isBadNonce)
        #expect(ACMEProblem(type: "urn:ietf:params:acme:error:rateLimited").isRateLimited)
        #expect(!ACMEProblem(type: "about:blank").isBadNonce)
    }

    @Test func bodiesThatAreNotProblemsGiveNil() {
        for body in ["", "[]", "{}", "{\"type\":3}", "not json", "{\"type\":\"x\",\"status\":1e400}"] {
            #expect(ACMEProblem.parse(Array(body.utf8), status: 500) == nil, "\(body)")
        }
        // A status that is not an integer is ignored (no trapping conversion); the response's is used.
        let odd = ACMEProblem.parse(Array(#"{"type":"x","status":1.5e300}"#.utf8), status: 500)
        #expect(odd?.type == "x" && odd?.status == 500)
    }

    @Test func aRateLimitAnswerKeepsItsRetryAfterForTheScheduler() throws {
        let body = #"{"type":"urn:ietf:params:acme:error:rateLimited","detail":"too many certs"}"#
        let head = "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3600\r\nContent-Length: \(body.utf8.count)\r\n\r\n"
        let response = try ACMEHTTPResponse.parse(Self.bytes(head + body), maximumBody: 1000)
        let problem = ACMEProblem(response: response)
        #expect(problem.isRateLimited && problem.status == 429 && problem.retryAfter == .seconds(3600))
        #expect(problem.description == "rateLimited: too many certs (retry after 3600 s)")
        let html = ACMEProblem(response: ACMEHTTPResponse(status: 502, headers: [], body: Self.bytes("<html>bad gateway</html>")))
        #expect(html.type == "about:blank" && html.status == 502 && html.retryAfter == nil)
    }

    @Test func errorsCarryTheProblemDocument() {
        let problem = ACMEProblem(type: "urn:ietf:params:acme:error:unauthorized", detail: "wrong key authorization")
        let error = ACMEError.server(operation: "finalize", status: 403, problem: problem)
        #expect(error.problem == problem)
        #expect(error.description == "finalize: the CA answered 403: unauthorized: wrong key authorization")
    }

    // MARK: URLs

    @Test func urlsSplitIntoHostPortAndTarget() throws {
        let url = try ACMEURL("https://acme-v02.api.letsencrypt.org/directory")
        #expect(url.secure && url.host == "acme-v02.api.letsencrypt.org" && url.port == 443 && url.target == "/directory")
        #expect(url.hostHeader == "acme-v02.api.letsencrypt.org")
        let local = try ACMEURL("https://127.0.0.1:14000")
        #expect(local.port == 14000 && local.target == "/" && local.hostHeader == "127.0.0.1:14000")
        let v6 = try ACMEURL("http://[::1]:8080/x?y=1")
        #expect(v6.host == "::1" && v6.port == 8080 && v6.target == "/x?y=1" && v6.hostHeader == "[::1]:8080")
    }

    @Test func badURLsAreRefusedWithAReason() {
        for bad in ["ftp://x/", "https://", "https://:443/", "https://host:0/", "https://host:99999/", "https://u@host/",
                    "https://[::1/", "https://host/a b", "acme.example/dir"] {
            #expect(throws: ACMEError.self, "\(bad)") { try ACMEURL(bad) }
        }
    }

    // MARK: HTTP responses

    static func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    @Test func responseWithContentLengthKeepsHeadersAndExactBody() throws {
        let response = try ACMEHTTPResponse.parse(Self.bytes("HTTP/1.1 201 Created\r\nReplay-Nonce: abc\r\nLocation: https://ca/o/1\r\nLink: <https://ca/dir>;rel=\"index\"\r\nContent-Length: 2\r\n\r\n{}"), maximumBody: 100)
        #expect(response.status == 201)
        #expect(response.header("REPLAY-NONCE") == "abc")
        #expect(response.header("location") == "https://ca/o/1")
        #expect(response.links(rel: "index") == ["https://ca/dir"])
        #expect(response.body == Self.bytes("{}"))
    }

    @Test func chunkedResponseIsDechunked() throws {
        let response = try ACMEHTTPResponse.parse(Self.bytes("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), maximumBody: 100)
        #expect(response.body == Self.bytes("abcde"))
    }

    @Test func headResponseHasNoBodyEvenWithAContentLength() throws {
        let response = try ACMEHTTPResponse.parse(Self.bytes("HTTP/1.1 200 OK\r\nContent-Length: 50\r\nReplay-Nonce: n\r\n\r\n"), headRequest: true, maximumBody: 10)
        #expect(response.body.isEmpty && response.header("replay-nonce") == "n")
    }

    @Test func oversizedTruncatedAndMalformedResponsesAreRefused() {
        let bad = [
            "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n01234567890",     // over the 10-byte cap
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab",                // cut short
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffff\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nb\r\n0123456789ab\r\n0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
            "HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
            "SSH-2.0-OpenSSH\r\n\r\n",
            "HTTP/1.1 200 OK\r\n",                                            // no end of head
            "HTTP/1.1 200 OK\r\n\r\n01234567890",                            // close-delimited, over the cap
        ]
        for text in bad {
            #expect(throws: ACMEError.self, "\(text.debugDescription)") { try ACMEHTTPResponse.parse(Self.bytes(text), maximumBody: 10) }
        }
    }

    // MARK: Polling and names

    @Test func retryAfterSecondsAreFollowedUpToTheMaximum() {
        #expect(ACMEPolling.delay(retryAfter: "3", fallback: .seconds(1), maximum: .seconds(10)) == .seconds(3))
        #expect(ACMEPolling.delay(retryAfter: "3600", fallback: .seconds(1), maximum: .seconds(10)) == .seconds(10))
        #expect(ACMEPolling.delay(retryAfter: nil, fallback: .seconds(1), maximum: .seconds(10)) == .seconds(1))
        for odd in ["-5", "1.5", "99999999999999999999", "Wed, 21 Oct 2015 07:28:00 GMT", ""] {
            #expect(ACMEPolling.delay(retryAfter: odd, fallback: .seconds(2), maximum: .seconds(10)) == .seconds(2), "\(odd)")
        }
    }

    @Test func namesAreLowerCasedDeduplicatedAndChecked() throws {
        #expect(try ACMEIdentifiers.validated(["Test.Example", "*.test.example", "test.example"]) == ["test.example", "*.test.example"])
        for bad in ["", "localhost", "a..example", "-a.example", "a_b.example", "a.example,DNS:evil.example", "*.*.example",
                    "a.example.", String(repeating: "a", count: 64) + ".example", "é.example"] {
            #expect(throws: ACMEError.self, "\(bad)") { try ACMEIdentifiers.validated([bad]) }
        }
        #expect(throws: ACMEError.self) { try ACMEIdentifiers.validated([]) }
    }
}
