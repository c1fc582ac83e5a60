import Testing

extension Integration {
    @Suite struct HalfClose {
        /// Pipelined requests followed by the client's half-close are all answered, then
        /// the proxy closes: the half-close must not drop a request already received.
        @Test(.timeLimit(.minutes(1)))
        func pipelinedRequestsBeforeAHalfCloseAreAllAnswered() throws {
            let dir = try ScratchDir("half-close")
            let backend = try Backend.demo("a", dir: dir)
            defer { backend.stop() }
            let proxy = try RunningProxy(ProxySpec(workers: 1),
                                         services: [ServiceSpec(name: "shop", instances: [.init(port: backend.port)])], dir: dir)
            defer { proxy.stop() }
            let connection = try RawConnection(port: proxy.port)
            try connection.send("GET /one HTTP/1.1\r\nHost: shop\r\n\r\nGET /two HTTP/1.1\r\nHost: shop\r\n\r\n")
            connection.shutdownWrite()
            let first = try connection.readResponse()
            let second = try connection.readResponse()
            #expect(first.status == 200 && second.status == 200)
            #expect(first.header("connection") == nil, "the first answer must not close: a second request is pending")
            #expect(second.header("connection")?.lowercased() == "close")
            #expect(connection.readUntilClosed(timeout: .seconds(3)))
        }
    }
}
