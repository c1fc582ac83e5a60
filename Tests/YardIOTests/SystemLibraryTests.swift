import CYardNghttp2
import CYardOpenSSL
import Testing

/// The C system-library targets link and answer: TLS and HTTP/2 build on these.
@Suite struct SystemLibraryTests {
    @Test func openSSLIsLinkedAndIsVersion3OrLater() {
        let version = OpenSSL_version_num()
        #expect(version >= 0x3000_0000)
        let text = String(cString: OpenSSL_version(OPENSSL_VERSION))
        #expect(text.hasPrefix("OpenSSL"))
    }

    @Test func openSSLShimMacrosWork() throws {
        let context = try #require(SSL_CTX_new(TLS_server_method()))
        defer { SSL_CTX_free(context) }
        #expect(yard_SSL_CTX_set_min_proto_version(context, TLS1_2_VERSION) == 1)
    }

    @Test func nghttp2IsLinkedAndMatchesItsHeaders() throws {
        let info = try #require(nghttp2_version(0))
        let runtime = info.pointee.version_num
        #expect(runtime >= 0x013400)  // 1.52, Debian 12
        #expect(runtime >= yard_nghttp2_version_num())
        let text = String(cString: info.pointee.version_str)
        #expect(text.split(separator: ".").count == 3)
    }
}
