#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
import YardIO
import YardTestSupport
@testable import YardTLS

/// Client contexts for upstreams: shared per trust, reloaded when the CA file changes,
/// `verify: false`, and session resumption (over a socketpair, both ends OpenSSL).
@Suite struct TLSClientContextCacheTests {
    func pki() throws -> TestCertificates { try TLSContextTests.certificates.get() }

    func server() throws -> TLSServerContext { try TLSContextTests().serverContext(alpn: ["http/1.1"]) }

    @Test func oneContextServesEveryUserOfTheSameTrustUntilTheCAFileChanges() throws {
        let dir = try TempDir(prefix: "client-cache")
        let ca = dir.file("ca.pem")
        try FileManager.default.copyItem(atPath: try pki().caFile, toPath: ca)
        let cache = TLSClientContextCache()
        let key = TLSClientContextCache.Key(caFile: ca, verify: true, alpn: ["http/1.1"])
        let first = try cache.context(for: key)
        #expect(try cache.context(for: key) === first)
        #expect(try cache.context(for: .init(caFile: ca, verify: true, alpn: ["h2"])) !== first, "another ALPN list, another context")

        // A rotated CA (new content, new inode) is loaded on the next request for it.
        try FileManager.default.removeItem(atPath: ca)
        let otherCA = try TestCertificates()
        try FileManager.default.copyItem(atPath: otherCA.caFile, toPath: ca)
        let rotated = try cache.context(for: key)
        #expect(rotated !== first)
        let pair = try TLSPair(server: try server(), client: rotated, name: "a.test")
        guard case .failed = pair.handshake().client else {
            Issue.record("the rotated CA (which did not sign a.test) was not used")
            return
        }
    }

    @Test func aCAFileThatDoesNotLoadIsAnErrorNamingItAndIsNotCached() throws {
        let dir = try TempDir(prefix: "client-cache-bad")
        let ca = dir.file("ca.pem")
        try Data("not a certificate\n".utf8).write(to: URL(fileURLWithPath: ca))
        let cache = TLSClientContextCache()
        let key = TLSClientContextCache.Key(caFile: ca, verify: true, alpn: [])
        #expect { try cache.context(for: key) } throws: { error in
            "\(error)".contains("loading CA file \(ca)")
        }
        // Fixed on disk: the next request loads it.
        try FileManager.default.removeItem(atPath: ca)
        try FileManager.default.copyItem(atPath: try pki().caFile, toPath: ca)
        _ = try cache.context(for: key)
    }

    @Test func withoutVerificationAnyCertificateIsAcceptedAndTheCAFilePlaysNoPart() throws {
        #expect(TLSClientContextCache.Key(caFile: "/x.pem", verify: false, alpn: []) == .init(caFile: nil, verify: false, alpn: []))
        let lax = try TLSClientContextCache().context(for: .init(caFile: nil, verify: false, alpn: []))
        let pair = try TLSPair(server: try server(), client: lax, name: "not-its-name.test")
        let steps = pair.handshake()
        #expect(steps.server == .done && steps.client == .done, "\(steps)")
    }

    @Test func aSecondConnectionResumesTheFirstsSession() throws {
        let server = try server()
        let client = try TLSClientContext(caFile: try pki().caFile)
        let first = try TLSPair(server: server, client: client, name: "a.test")
        #expect(first.handshake() == (.done, .done))
        // TLS 1.3 tickets come after the handshake: the client reads them with the first data.
        var reply = ByteBuffer(capacity: 64)
        defer { reply.deallocate() }
        _ = "ping".utf8CString.withUnsafeBytes { first.server.write(UnsafeRawBufferPointer(rebasing: $0.dropLast())) }
        #expect(first.client.read(into: &reply) == .bytes(4))
        let session = try #require(first.client.resumableSession)
        #expect(!first.client.resumed)

        var fds: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0)
        for fd in fds { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
        defer { fds.forEach { close($0) } }
        let serverSide = try #require(TLSConnection(accepting: fds[0], context: server))
        let clientSide = try TLSConnection(connecting: fds[1], context: client, serverName: "a.test", resuming: session)
        var steps = (TLSStep.wantRead, TLSStep.wantRead)
        for _ in 0..<50 where steps != (.done, .done) {
            if steps.1 != .done { steps.1 = clientSide.handshake() }
            if steps.0 != .done { steps.0 = serverSide.handshake() }
        }
        #expect(steps == (.done, .done))
        #expect(clientSide.resumed && serverSide.resumed)
    }
}
