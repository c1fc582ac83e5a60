import Foundation
import Testing
import YardTestSupport
@testable import YardACME

/// Renewal inputs (certificate dates, ARI windows, RFC 3339), the self-signed default and
/// TLS-ALPN-01 certificates, and external account binding.
@Suite struct ACMERenewalTests {
    @Test(arguments: [
        ("1970-01-01T00:00:00Z", Int64(0)),
        ("2025-01-02T03:04:05Z", Int64(1_735_787_045)),
        ("2025-01-02T03:04:05.123456Z", Int64(1_735_787_045)),
        ("2025-01-02T05:04:05+02:00", Int64(1_735_787_045)),
        ("2024-02-29T00:00:00Z", Int64(1_709_164_800)),
    ])
    func rfc3339TimestampsBecomeUnixSeconds(_ text: String, _ seconds: Int64) {
        #expect(RFC3339.unixSeconds(text) == seconds)
    }

    @Test(arguments: ["", "2025-01-02", "2025-13-02T03:04:05Z", "2025-01-02T03:04:05", "2025-01-02T03:04:05Zjunk", "９９９９-01-02T03:04:05Z"])
    func malformedTimestampsAreNil(_ text: String) {
        #expect(RFC3339.unixSeconds(text) == nil)
    }

    @Test func anARIWindowParsesAndAPickFallsInsideIt() throws {
        let body = Array(#"{"suggestedWindow":{"start":"2025-01-02T00:00:00Z","end":"2025-01-03T00:00:00Z"},"explanationURL":"x"}"#.utf8)
        let window = try #require(ACMERenewalWindow.parse(body))
        #expect(window.end - window.start == 86_400)
        for random in [UInt64(0), 1, UInt64.max] { #expect((window.start..<window.end).contains(window.pick(random: random))) }
        #expect(ACMERenewalWindow.parse(Array(#"{"suggestedWindow":{"start":"2025-01-03T00:00:00Z","end":"2025-01-02T00:00:00Z"}}"#.utf8)) == nil)
        #expect(ACMERenewalWindow.parse(Array("not json".utf8)) == nil)
    }

    @Test func aSelfSignedCertificateReadsBackWithItsNamesAndValidity() throws {
        let made = try ACMESelfSigned.make(names: ["a.example", "b.example"], validitySeconds: 3 * 86_400)
        let info = try ACMECertificateInfo(pem: made.certificatePEM)
        #expect(info.names == ["a.example", "b.example"])
        #expect(info.notAfter - info.notBefore == 3 * 86_400 + 3600)
        #expect(info.twoThirds > info.notBefore && info.twoThirds < info.notAfter)
        #expect(info.issuer == "a.example")
        #expect(throws: ACMEError.self) { try ACMECertificateInfo(pem: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n") }
    }

    @Test func theTLSALPN01CertificateCarriesTheCriticalAcmeIdentifierWithTheDigest() throws {
        let made = try ACMESelfSigned.make(names: ["alpn.example"], keyAuthorization: "token.thumbprint")
        let directory = try TempDir(prefix: "switchyard-acme-alpn")
        let path = try directory.write("challenge.pem", made.certificatePEM)
        let text = try openssl(["x509", "-in", path, "-noout", "-text"])
        #expect(text.contains("1.3.6.1.5.5.7.1.31: critical"), "\(text)")
        // The extension's value is the DER OCTET STRING (04 20) of SHA-256(key authorization).
        let digest = Digest.sha256(Array("token.thumbprint".utf8)).map { String(format: "%02X", $0) }.joined()
        #expect(try openssl(["asn1parse", "-in", path]).contains("[HEX DUMP]:0420" + digest))
    }

    @Test func sealedRecordsOpenOnlyWithTheSameKeyAndName() throws {
        let key = try ACMESealKey(text: String(repeating: "ab", count: 32) + "\n")
        let other = try ACMESealKey(text: Base64URL.encode([UInt8](repeating: 7, count: 32)))
        let plaintext = Array("-----BEGIN PRIVATE KEY-----\nsecret\n".utf8)
        let sealed = try key.seal(plaintext, name: "a.example")
        #expect(!String(decoding: sealed, as: UTF8.self).contains("PRIVATE KEY"))
        #expect(try key.open(sealed, name: "a.example") == plaintext)
        #expect(try key.seal(plaintext, name: "a.example") != sealed, "a fresh nonce each time")
        #expect(throws: ACMEError.self) { try key.open(sealed, name: "b.example") }
        #expect(throws: ACMEError.self) { try other.open(sealed, name: "a.example") }
        var tampered = sealed
        tampered[20] ^= 1
        #expect(throws: ACMEError.self) { try key.open(tampered, name: "a.example") }
        #expect(throws: ACMEError.self) { try key.open(Array(sealed.prefix(10)), name: "a.example") }
        for bad in ["", "abc", String(repeating: "zz", count: 32), Base64URL.encode([UInt8](repeating: 1, count: 16))] {
            #expect(throws: ACMEError.self) { try ACMESealKey(text: bad) }
        }
    }

    @Test func serialsWithTheTopBitSetGetALeadingZeroInTheARIIdentifier() {
        #expect(serialContent([0x87, 0x65]) == [0x00, 0x87, 0x65])
        #expect(serialContent([0x07, 0x65]) == [0x07, 0x65])
    }

    @Test func externalAccountBindingIsAnHS256JWSOverTheAccountKey() throws {
        let binding = try ACMEExternalAccountBinding(keyID: "kid-1", macKeyText: "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W")
        let jwk = try ACMEPrivateKey.generateP256().publicJWK()
        let jws = try binding.jws(accountKey: jwk, newAccountURL: "https://ca/new-acct")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(jws.utf8)) as? [String: String])
        let protected = String(decoding: try #require(Base64URL.decode(object["protected"] ?? "")), as: UTF8.self)
        #expect(protected == #"{"alg":"HS256","kid":"kid-1","url":"https://ca/new-acct"}"#)
        #expect(Base64URL.decode(object["payload"] ?? "") == Array(jwk.json.utf8))
        let expected = try Digest.hmacSHA256(key: binding.macKey, message: Array("\(object["protected"] ?? "").\(object["payload"] ?? "")".utf8))
        #expect(Base64URL.decode(object["signature"] ?? "") == expected)
        #expect(throws: ACMEError.self) { try ACMEExternalAccountBinding(keyID: "k", macKeyText: "short") }
        #expect(throws: ACMEError.self) { try ACMEExternalAccountBinding(keyID: "", macKeyText: "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajV") }
    }

}
