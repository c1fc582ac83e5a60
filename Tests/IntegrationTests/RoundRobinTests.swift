import Testing

extension Integration {
    @Suite struct RoundRobin {
        /// One worker: round-robin order is kept per event loop, so with one the order is
        /// exact across connections.
        @Test(.timeLimit(.minutes(1)))
        func tenRequestsThroughCurlAlternateBetweenTwoBackends() throws {
            let dir = try ScratchDir("round-robin")
            let a = try Backend.demo("a", dir: dir)
            defer { a.stop() }
            let b = try Backend.demo("b", dir: dir)
            defer { b.stop() }
            let proxy = try RunningProxy(ProxySpec(workers: 1),
                                         services: [ServiceSpec(name: "shop", instances: [.init(port: a.port), .init(port: b.port)])],
                                         dir: dir)
            defer { proxy.stop() }

            var names: [String] = []
            for _ in 0..<10 {
                let result = try curl(proxy.url + "/", extra: ["%header{x-backend}"], dir: dir)
                #expect(result.httpStatus == 200)
                names.append(result.written.first ?? "")
            }
            #expect(Set(names) == ["a", "b"])
            for i in 1..<names.count {
                #expect(names[i] != names[i - 1], "request \(i) went to \(names[i]) again: \(names)")
            }
        }
    }
}
