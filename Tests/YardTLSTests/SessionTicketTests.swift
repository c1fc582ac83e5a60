import CYardOpenSSL
import Testing
import YardTestSupport
@testable import YardTLS

/// Resumption through the ticket key ring, end to end between two TLSConnections: a ticket
/// survives one rotation (the previous key still decrypts) and not two.
@Suite struct SessionTicketTests {
    @Test func aTicketResumesAfterOneRotationButNotAfterTwo() throws {
        let pki = try TLSContextTests.certificates.get()
        let ring = TicketKeyRing(previousKeysAccepted: 1)
        let server = try TLSServerContext(TLSServerConfiguration(certificates: [
            TLSCertificateSource(certificatePath: pki.a.certificate, keyPath: pki.a.key)]), ticketKeys: ring)
        let client = try TLSClientContext(caFile: pki.caFile)
        // TLS 1.2: the ticket is part of the handshake, no read needed to receive it.
        _ = yard_SSL_CTX_set_max_proto_version(client.context, TLS1_2_VERSION)

        let first = try TLSPair(server: server, client: client, name: "a.test")
        #expect(first.handshake() == (TLSStep.done, TLSStep.done))
        #expect(!first.server.resumed)
        _ = first.client.shutdown()
        let session = try #require(SSL_get1_session(first.client.ssl))
        defer { SSL_SESSION_free(session) }

        func resumes() throws -> Bool {
            let pair = try TLSPair(server: server, client: client, name: "a.test")
            #expect(SSL_set_session(pair.client.ssl, session) == 1)
            let steps = pair.handshake()
            #expect(steps.server == .done && steps.client == .done)
            // A client that closes without close_notify marks its session not resumable.
            _ = pair.client.shutdown()
            return pair.server.resumed
        }
        #expect(try resumes(), "the current key")
        ring.rotate()
        #expect(try resumes(), "the previous key is still accepted")
        ring.rotate()
        #expect(try !resumes(), "two rotations later the key is gone: a full handshake")
    }
}
