import Testing
import YardHTTP

// Which fields a trailer section may carry across the proxy, by name in any case.

@Suite struct HeaderKindTests {
    private func kind(_ name: String) -> HeaderKind {
        Array(name.utf8).withUnsafeBytes { HeaderKind.named($0) }
    }

    @Test func namedClassifiesInAnyCase() {
        #expect(kind("Transfer-Encoding") == .transferEncoding)
        #expect(kind("CONNECTION") == .connection)
        #expect(kind("keep-alive") == .keepAlive)
        #expect(kind("x-checksum") == .other)
        #expect(kind("") == .other)
    }

    @Test func connectionSpecificAndFramingFieldsAreDroppedFromTrailers() {
        for name in ["Connection", "Keep-Alive", "Proxy-Connection", "TE", "Upgrade", "Trailer", "HTTP2-Settings",
                     "Transfer-Encoding", "Content-Length", "Host"] {
            #expect(kind(name).isDroppedFromTrailers, "\(name)")
        }
        for name in ["x-checksum", "grpc-status", "grpc-message", "Server-Timing", "Via", "X-Forwarded-For"] {
            #expect(!kind(name).isDroppedFromTrailers, "\(name)")
        }
    }
}
