import Testing
import YardIO

@Suite struct ByteBufferTests {
    @Test func consumeToEmptyRewindsToTheStart() {
        var buffer = ByteBuffer(capacity: 16)
        defer { buffer.deallocate() }
        buffer.append("hello")
        buffer.consume(5)
        #expect(buffer.readerIndex == 0 && buffer.writerIndex == 0)
    }

    @Test func reserveCompactsBeforeGrowing() {
        var buffer = ByteBuffer(capacity: 8)
        defer { buffer.deallocate() }
        buffer.append("abcdefgh")
        buffer.consume(6)
        let reserved = buffer.reserve(6)
        #expect(reserved)
        #expect(buffer.capacity == 8)
        #expect(Array(buffer.readable) == Array("gh".utf8))
    }

    @Test func reserveRespectsItsLimit() {
        var buffer = ByteBuffer(capacity: 8)
        defer { buffer.deallocate() }
        buffer.append("abcdefgh")
        let tooLarge = buffer.reserve(100, limit: 64)
        #expect(!tooLarge)
        let fits = buffer.reserve(40, limit: 64)
        #expect(fits)
        #expect(buffer.capacity <= 64)
    }

    @Test func appendDecimalWritesDigits() {
        var buffer = ByteBuffer(capacity: 64)
        defer { buffer.deallocate() }
        for value in [0, 7, 10, 65_536, Int(Int32.max)] {
            buffer.clear()
            buffer.appendDecimal(value)
            #expect(String(decoding: buffer.readable, as: UTF8.self) == String(value))
        }
    }
}

@Suite struct SocketAddressTests {
    @Test func parsesIPv4IPv6AndLocalhost() throws {
        #expect(try #require(SocketAddress(hostPort: "127.0.0.1:8080")).description == "127.0.0.1:8080")
        #expect(try #require(SocketAddress(hostPort: "[::1]:443")).description == "[::1]:443")
        #expect(try #require(SocketAddress(host: "localhost", port: 1)).description == "127.0.0.1:1")
        #expect(try #require(SocketAddress(hostPort: ":80")).description == "0.0.0.0:80")
    }

    @Test func refusesHostNamesAndBadPorts() {
        #expect(SocketAddress(hostPort: "example.com:80") == nil)
        #expect(SocketAddress(hostPort: "127.0.0.1:99999") == nil)
        #expect(SocketAddress(hostPort: "127.0.0.1") == nil)
    }
}
