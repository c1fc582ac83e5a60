import Foundation
import Testing
import YardTestSupport
@testable import YardACME

/// The OpenSSL-backed parts: P-256 keys, ES256 signatures, PEM, the CSR; checked against
/// OpenSSL's own CLI where a second opinion is possible.
@Suite struct ACMECryptoTests {
    @Test func es256SignaturesVerifyAndAreBoundToTheMessage() throws {
        let key = try ACMEPrivateKey.generateP256()
        let message = Array("protected.payload".utf8)
        let signature = try key.signES256(message)
        #expect(signature.count == 64)
        #expect(key.verifyES256(signature, of: message))
        #expect(!key.verifyES256(signature, of: Array("protected.payloaD".utf8)))
        #expect(!(try ACMEPrivateKey.generateP256()).verifyES256(signature, of: message))
    }

    @Test func keyRoundTripsThroughPEMWithTheSamePublicKey() throws {
        let key = try ACMEPrivateKey.generateP256()
        let pem = try key.pem()
        #expect(pem.hasPrefix("-----BEGIN PRIVATE KEY-----"))
        #expect(try ACMEPrivateKey(pem: pem).publicJWK() == key.publicJWK())
    }

    @Test func rsaKeysAndGarbageAreRefusedAsAccountKeys() throws {
        let certificates = try TestCertificates()
        let rsa = try String(contentsOfFile: certificates.fallback.key, encoding: .utf8)
        #expect(throws: ACMEError.self) { try ACMEPrivateKey(pem: rsa) }
        #expect(throws: ACMEError.self) { try ACMEPrivateKey(pem: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n") }
        #expect(throws: ACMEError.self) { try ACMEPrivateKey(pem: "") }
    }

    @Test func thumbprintMatchesOpenSSLsSHA256OfTheCanonicalJWK() throws {
        let jwk = try ACMEPrivateKey.generateP256().publicJWK()
        let directory = try TempDir(prefix: "switchyard-acme-jwk")
        let path = try directory.write("jwk.json", jwk.json)
        let digest = try openssl(["dgst", "-sha256", "-binary", "-out", directory.file("digest"), path])
        _ = digest
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: directory.file("digest"))))
        #expect(jwk.thumbprint == Base64URL.encode(bytes))
        #expect(jwk.thumbprint.count == 43)
    }

    @Test func csrNamesEveryNameAsASubjectAltNameAndVerifies() throws {
        let key = try ACMEPrivateKey.generateP256()
        let der = try certificateSigningRequest(names: ["test.example", "www.test.example"], key: key)
        let directory = try TempDir(prefix: "switchyard-acme-csr")
        let path = directory.file("request.der")
        try Data(der).write(to: URL(fileURLWithPath: path))
        let text = try openssl(["req", "-inform", "DER", "-in", path, "-noout", "-text", "-verify"])
        #expect(text.contains("DNS:test.example, DNS:www.test.example"))
        #expect(text.contains("CN = test.example") || text.contains("CN=test.example"))
        #expect(text.contains("prime256v1") || text.contains("P-256"))
        #expect(text.contains("ecdsa-with-SHA256"))
    }

    @Test func csrForANameLongerThanACommonNameStillCarriesItAsASubjectAltName() throws {
        let long = String(repeating: "a", count: 60) + ".test.example"
        let der = try certificateSigningRequest(names: [long], key: try ACMEPrivateKey.generateP256())
        let directory = try TempDir(prefix: "switchyard-acme-csr")
        let path = directory.file("request.der")
        try Data(der).write(to: URL(fileURLWithPath: path))
        #expect(try openssl(["req", "-inform", "DER", "-in", path, "-noout", "-text"]).contains("DNS:\(long)"))
    }

}
