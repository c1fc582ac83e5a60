#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
import YardIO
import YardTestSupport
@testable import YardTLS

/// Both ends of a TLS connection over a non-blocking socketpair, driven step by step on the
/// test's thread: the way an event loop drives them, without one.
final class TLSPair {
    let serverFD: Int32
    let clientFD: Int32
    let server: TLSConnection
    let client: TLSConnection

    init(server context: TLSServerContext, client clientContext: TLSClientContext, name: String) throws {
        var fds: [Int32] = [0, 0]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0 else { throw TestSupportError("socketpair") }
        for fd in fds { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
        serverFD = fds[0]
        clientFD = fds[1]
        server = try #require(TLSConnection(accepting: serverFD, context: context))
        client = try TLSConnection(connecting: clientFD, context: clientContext, serverName: name)
    }

    deinit {
        close(serverFD)
        close(clientFD)
    }

    /// Steps both handshakes until both are done or one fails (bounded).
    func handshake() -> (server: TLSStep, client: TLSStep) {
        var serverStep = TLSStep.wantRead
        var clientStep = TLSStep.wantRead
        for _ in 0..<50 {
            if clientStep != .done { clientStep = client.handshake() }
            if serverStep != .done { serverStep = server.handshake() }
            if serverStep == .done && clientStep == .done { break }
            if case .failed = serverStep { break }
            if case .failed = clientStep { break }
            if serverStep == .closed || clientStep == .closed { break }
        }
        return (serverStep, clientStep)
    }
}

@Suite struct TLSContextTests {
    static let certificates = Result { try TestCertificates() }

    func pki() throws -> TestCertificates { try Self.certificates.get() }

    func serverContext(alpn: [String] = ["h2", "http/1.1"]) throws -> TLSServerContext {
        let pki = try pki()
        return try TLSServerContext(TLSServerConfiguration(certificates: [
            TLSCertificateSource(certificatePath: pki.fallback.certificate, keyPath: pki.fallback.key),
            TLSCertificateSource(certificatePath: pki.a.certificate, keyPath: pki.a.key),
            TLSCertificateSource(certificatePath: pki.b.certificate, keyPath: pki.b.key),
        ], alpn: alpn))
    }

    // MARK: Names

    @Test func serverNamesMatchExactlyOrByOneWildcardLabel() {
        var table = ServerNameTable()
        table.add("a.test", index: 1)
        table.add("*.b.test", index: 2)
        table.add("A.TEST", index: 3)
        #expect(table.lookup("a.test") == 1)
        #expect(table.lookup("A.Test.") == 1, "case and a trailing dot do not matter")
        #expect(table.lookup("x.b.test") == 2)
        #expect(table.lookup("b.test") == nil, "a wildcard does not match its own parent")
        #expect(table.lookup("y.x.b.test") == nil, "a wildcard covers one label only")
        #expect(table.lookup("c.test") == nil)
    }

    @Test func certificateNamesAreReadFromSubjectAltNames() throws {
        let context = try serverContext()
        #expect(context.certificateNames == [["default.test"], ["a.test"], ["b.test", "*.b.test"]])
        #expect(context.certificateIndex(forServerName: "a.test") == 1)
        #expect(context.certificateIndex(forServerName: "www.b.test") == 2)
        #expect(context.certificateIndex(forServerName: "nobody.test") == 0)
        #expect(context.certificateIndex(forServerName: nil) == 0)
    }

    @Test func aKeyThatDoesNotMatchItsCertificateIsRefusedNamingBothFiles() throws {
        let pki = try pki()
        #expect {
            _ = try TLSServerContext(TLSServerConfiguration(certificates: [
                TLSCertificateSource(certificatePath: pki.a.certificate, keyPath: pki.b.key)]))
        } throws: { error in
            let text = "\(error)"
            return text.contains(pki.b.key) && text.contains(pki.a.certificate)
        }
        #expect {
            _ = try TLSServerContext(TLSServerConfiguration(certificates: [
                TLSCertificateSource(certificatePath: "/nonexistent/cert.pem", keyPath: pki.a.key)]))
        } throws: { error in "\(error)".contains("/nonexistent/cert.pem") }
    }

    // MARK: Handshakes

    @Test func sniChoosesTheCertificateAndTheClientVerifiesIt() throws {
        let server = try serverContext()
        let client = try TLSClientContext(caFile: try pki().caFile)
        for name in ["a.test", "b.test", "www.b.test", "default.test"] {
            let pair = try TLSPair(server: server, client: client, name: name)
            let steps = pair.handshake()
            #expect(steps.server == .done && steps.client == .done, "\(name): \(steps)")
            #expect(pair.server.serverName == name)
        }
    }

    @Test func anUnknownNameGetsTheDefaultCertificateWhichFailsHostnameVerification() throws {
        let pair = try TLSPair(server: try serverContext(), client: try TLSClientContext(caFile: try pki().caFile), name: "other.test")
        let steps = pair.handshake()
        guard case .failed(let error) = steps.client else {
            Issue.record("expected a verification failure, got \(steps)")
            return
        }
        #expect(error.description.contains("verify") || error.description.contains("mismatch"), "\(error)")
    }

    @Test func aClientThatTrustsAnotherCARefusesTheServer() throws {
        let other = try TestCertificates()
        let pair = try TLSPair(server: try serverContext(), client: try TLSClientContext(caFile: other.caFile), name: "a.test")
        guard case .failed = pair.handshake().client else {
            Issue.record("a certificate from an untrusted CA was accepted")
            return
        }
    }

    @Test func alpnPicksTheServersFirstChoiceAmongWhatTheClientOffers() throws {
        let ca = try pki().caFile
        let both = try TLSPair(server: try serverContext(alpn: ["h2", "http/1.1"]),
                               client: try TLSClientContext(caFile: ca, alpn: ["http/1.1", "h2"]), name: "a.test")
        _ = both.handshake()
        #expect(both.server.applicationProtocol == .h2)
        #expect(both.client.alpn == "h2")

        let onlyHTTP1 = try TLSPair(server: try serverContext(alpn: ["http/1.1"]),
                                    client: try TLSClientContext(caFile: ca, alpn: ["h2", "http/1.1"]), name: "a.test")
        _ = onlyHTTP1.handshake()
        #expect(onlyHTTP1.server.applicationProtocol == .http1_1)

        let noOverlap = try TLSPair(server: try serverContext(alpn: ["http/1.1"]),
                                    client: try TLSClientContext(caFile: ca, alpn: ["h2"]), name: "a.test")
        let steps = noOverlap.handshake()
        #expect(steps.server == .done && steps.client == .done, "no overlap continues without ALPN")
        #expect(noOverlap.server.applicationProtocol == ApplicationProtocol.none)
    }

    @Test func readAndWriteMoveBytesAndWouldBlockIsAResultNotAnError() throws {
        let pair = try TLSPair(server: try serverContext(), client: try TLSClientContext(caFile: try pki().caFile), name: "a.test")
        _ = pair.handshake()
        var buffer = ByteBuffer(capacity: 64 * 1024)
        defer { buffer.deallocate() }
        #expect(pair.server.read(into: &buffer) == .wantRead)
        let request = Array("GET / HTTP/1.1\r\nHost: a.test\r\n\r\n".utf8)
        let written = request.withUnsafeBytes { pair.client.write($0) }
        #expect(written == .bytes(request.count))
        #expect(pair.server.read(into: &buffer) == .bytes(request.count))
        #expect(Array(buffer.readable) == request)
        // Fill the socket until OpenSSL reports WANT_WRITE.
        let chunk = [UInt8](repeating: 0x61, count: 16 * 1024)
        var sawWantWrite = false
        for _ in 0..<1000 {
            let result = chunk.withUnsafeBytes { pair.server.write($0) }
            if result == .wantWrite { sawWantWrite = true; break }
        }
        #expect(sawWantWrite)
        #expect(pair.client.shutdown() == .done)
        buffer.clear()
        var sawClose = false
        for _ in 0..<10_000 {
            buffer.clear()
            let result = pair.server.read(into: &buffer)
            if result == .closed { sawClose = true; break }
            if result == .wantRead { break }
        }
        #expect(sawClose, "close_notify reads as .closed")
    }

    // MARK: Tickets and reloads

    @Test func rotationKeepsThePreviousTicketKey() {
        let ring = TicketKeyRing(previousKeysAccepted: 1)
        let first = ring.keyNames
        ring.rotate()
        #expect(ring.keyNames.count == 2 && ring.keyNames[1] == first[0])
        ring.rotate()
        #expect(ring.keyNames.count == 2 && !ring.keyNames.contains(first[0]))
    }

    @Test func reloadIfChangedRebuildsOnlyAfterAFileChanges() throws {
        let pki = try pki()
        let dir = try TempDir(prefix: "switchyard-reload")
        let cert = dir.file("served.pem")
        let key = dir.file("served.key")
        try FileManager.default.copyItem(atPath: pki.a.certificate, toPath: cert)
        try FileManager.default.copyItem(atPath: pki.a.key, toPath: key)
        let reloader = try TLSCertificateReloader(TLSServerConfiguration(certificates: [
            TLSCertificateSource(certificatePath: cert, keyPath: key)]))
        let first = reloader.current
        #expect(try reloader.reloadIfChanged() == nil)

        // A new certificate before its key: refused once, the running context stays.
        try FileManager.default.removeItem(atPath: cert)
        try FileManager.default.copyItem(atPath: pki.b.certificate, toPath: cert)
        #expect(throws: TLSError.self) { _ = try reloader.reloadIfChanged() }
        #expect(try reloader.reloadIfChanged() == nil, "the same broken state is reported once")
        #expect(reloader.current === first)

        try FileManager.default.removeItem(atPath: key)
        try FileManager.default.copyItem(atPath: pki.b.key, toPath: key)
        let second = try #require(try reloader.reloadIfChanged())
        #expect(second !== first && reloader.current === second)
        #expect(second.certificateNames == [["b.test", "*.b.test"]])
        #expect(second.ticketKeys === first.ticketKeys, "tickets survive a certificate reload")
    }
}
