#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing

// Memory follows work: idle keep-alive client connections hold no buffers (they are parked
// in the worker's pool), and memory a burst of connections used goes back to the system once
// it ends. Measured as the one-worker process's RSS, like bench/run's idlemem scenario.

extension Integration {
    @Suite struct IdleMemory {
        @Test(.timeLimit(.minutes(2)))
        func idleKeepAliveConnectionsHoldAboutAKilobyteAndABurstGivesItsMemoryBack() throws {
            try withDescriptorLimit(atLeast: 8_192) { try idleConnections() }
        }

        private func idleConnections() throws {
            let count = 3_000
            let dir = try ScratchDir("idle-memory")
            let backend = try Backend.demo("idle", dir: dir)
            defer { backend.stop() }
            var spec = ProxySpec(workers: 1)
            spec.timeouts["client_idle"] = "120s"
            spec.limits["max_connections"] = "20000"
            let proxy = try RunningProxy(spec, services: [ServiceSpec(name: "shop", instances: [.init(port: backend.port)])], dir: dir)
            defer { proxy.stop() }

            func exchange(_ connection: RawConnection) throws {
                try connection.send("GET / HTTP/1.1\r\nHost: shop.test\r\n\r\n")
                let response = try connection.readResponse()
                #expect(response.status == 200)
            }
            // Warm up (pools, tables, the first allocations), then the base.
            for _ in 0..<50 { try exchange(RawConnection(port: proxy.port)) }
            let base = try waitForSteadyResidentBytes(pid: proxy.pid)

            var idle: [RawConnection] = []
            for _ in 0..<count {
                let connection = try RawConnection(port: proxy.port)
                try exchange(connection)
                idle.append(connection)
            }
            // Parked buffers past the pool's high-water mark are freed, and the heap is
            // trimmed at most every 5 s.
            let withIdle = try waitForSteadyResidentBytes(pid: proxy.pid)
            let perConnection = Double(withIdle - base) / Double(count)
            print("idle memory: base \(base / 1024) KiB, \(count) idle \(withIdle / 1024) KiB, \(Int(perConnection)) bytes per idle connection")
            #expect(perConnection < 3_072, "\(Int(perConnection)) bytes per idle keep-alive connection")

            // Every idle connection still works.
            for connection in idle.prefix(100) { try exchange(connection) }

            idle.removeAll()
            let after = try waitForSteadyResidentBytes(pid: proxy.pid, atMost: base + base / 4)
            print("idle memory: \(after / 1024) KiB after they closed (base \(base / 1024) KiB)")
            #expect(after <= base + base / 4 + 2 << 20, "RSS \(after / 1024) KiB after the burst, base \(base / 1024) KiB")
        }
    }
}

/// The process's RSS once it stops moving (two samples 1.5 s apart within 64 KiB), or once
/// it is at most `atMost`; bounded by `timeout`.
private func waitForSteadyResidentBytes(pid: Int32, atMost: Int? = nil, timeout: Duration = .seconds(20)) throws -> Int {
    let deadline = ContinuousClock.now + timeout
    var previous = residentBytes(pid: pid) ?? 0
    while ContinuousClock.now < deadline {
        Thread.sleep(forTimeInterval: 1.5)
        let current = residentBytes(pid: pid) ?? 0
        if let atMost, current <= atMost { return current }
        if atMost == nil, abs(current - previous) < 64 * 1024 { return current }
        previous = current
    }
    return previous
}
