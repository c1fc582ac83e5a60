import Dispatch
import Foundation
import Testing

/// SplitMix64: a small seeded generator, so a failing run can be replayed exactly.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Well-formed requests the mutations start from.
private let fuzzTemplates: [String] = [
    "GET / HTTP/1.1\r\nHost: shop.test\r\nUser-Agent: fuzz\r\nAccept: */*\r\n\r\n",
    "GET /headers?x=1&y=%20 HTTP/1.1\r\nHost: shop.test\r\nX-Forwarded-For: 10.0.0.1\r\nConnection: keep-alive\r\n\r\n",
    "HEAD /size/100 HTTP/1.1\r\nHost: shop.test\r\n\r\n",
    "GET /status/204 HTTP/1.0\r\nHost: shop.test\r\n\r\n",
    "POST /echo HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 11\r\nContent-Type: text/plain\r\n\r\nhello world",
    "POST /echo HTTP/1.1\r\nHost: shop.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nT: v\r\n\r\n",
    "PUT /echo HTTP/1.1\r\nHost: shop.test\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\nbody",
    "GET /a HTTP/1.1\r\nHost: shop.test\r\n\r\nGET /b HTTP/1.1\r\nHost: shop.test\r\n\r\n",
    "OPTIONS * HTTP/1.1\r\nHost: shop.test\r\n\r\n",
    "GET http://shop.test/absolute HTTP/1.1\r\nHost: shop.test\r\n\r\n",
]

/// One fuzz case: a template mutated one to three times, or random bytes.
func fuzzCase(_ rng: inout SplitMix64) -> [UInt8] {
    if Int.random(in: 0..<20, using: &rng) == 0 {
        return (0..<Int.random(in: 0...2048, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
    }
    var bytes = Array(fuzzTemplates.randomElement(using: &rng)!.utf8)
    for _ in 0..<Int.random(in: 1...3, using: &rng) {
        guard !bytes.isEmpty else { break }
        let at = Int.random(in: 0..<bytes.count, using: &rng)
        switch Int.random(in: 0..<9, using: &rng) {
        case 0: // Cut at a random point.
            bytes.removeSubrange(at...)
        case 1: // Flip bytes.
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                bytes[Int.random(in: 0..<bytes.count, using: &rng)] ^= UInt8.random(in: 1...255, using: &rng)
            }
        case 2: // Duplicate a header line (or any line).
            let lines = String(decoding: bytes, as: UTF8.self).components(separatedBy: "\r\n")
            guard lines.count > 2 else { continue }
            var copy = lines
            let line = Int.random(in: 1..<(lines.count - 1), using: &rng)
            copy.insert(lines[line], at: line)
            bytes = Array(copy.joined(separator: "\r\n").utf8)
        case 3: // Insert special bytes.
            let specials: [UInt8] = [0, 9, 10, 13, 32, 58, 127, 255, 0x2C, 0x3B]
            bytes.insert(specials.randomElement(using: &rng)!, at: at)
        case 4: // Turn CRLF into LF or CR.
            if let index = bytes[at...].firstIndex(of: 13), index + 1 < bytes.count {
                bytes.remove(at: Bool.random(using: &rng) ? index : index + 1)
            }
        case 5: // Insert a framing header.
            let fields = ["Content-Length: 5\r\n", "Content-Length: -1\r\n", "Transfer-Encoding: chunked\r\n",
                          "Content-Length: 99999999999999999999\r\n", "Transfer-Encoding: identity\r\n", "Upgrade: websocket\r\n",
                          "Host: other.test\r\n", "Connection: close\r\n", " folded\r\n"]
            if let line = bytes.firstIndex(of: 10), line + 1 <= bytes.count {
                bytes.insert(contentsOf: Array(fields.randomElement(using: &rng)!.utf8), at: line + 1)
            }
        case 6: // A long run of one byte.
            bytes.insert(contentsOf: [UInt8](repeating: UInt8.random(in: 32...126, using: &rng),
                                             count: Int.random(in: 100...20000, using: &rng)), at: at)
        case 7: // Random bytes in the middle.
            bytes.insert(contentsOf: (0..<Int.random(in: 1...64, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }, at: at)
        default: // Swap the version.
            let versions = ["HTTP/1.1", "HTTP/1.0", "HTTP/0.9", "HTTP/2.0", "HTTP/1.10", "http/1.1", "HTTP/1.1 "]
            let text = String(decoding: bytes, as: UTF8.self)
            bytes = Array(text.replacingOccurrences(of: "HTTP/1.1", with: versions.randomElement(using: &rng)!).utf8)
        }
    }
    return bytes
}

/// Tallies of what the proxy did with the fuzz cases. Shared by the sending threads.
final class FuzzTally: @unchecked Sendable {
    // `lock` protects every field.
    private let lock = NSLock()
    private(set) var statuses: [Int: Int] = [:]
    private(set) var closedWithoutAnswer = 0
    private(set) var stuck: [Int] = []
    private(set) var connectFailures = 0
    private(set) var done = 0

    func record(_ index: Int, status: Int?, closed: Bool, connected: Bool) {
        lock.lock()
        defer { lock.unlock() }
        done += 1
        if !connected { connectFailures += 1; return }
        if let status { statuses[status, default: 0] += 1 } else { closedWithoutAnswer += 1 }
        if !closed { stuck.append(index) }
    }
}

extension Integration {
    @Suite struct Fuzz {
        /// Ten thousand random and mutated requests over raw sockets; the proxy survives,
        /// closes every connection, and still serves. Replay a run with SWITCHYARD_FUZZ_SEED.
        @Test(.timeLimit(.minutes(1)))
        func tenThousandMutatedRequestsLeaveTheProxyServing() throws {
            let seed = ProcessInfo.processInfo.environment["SWITCHYARD_FUZZ_SEED"].flatMap { UInt64($0) } ?? UInt64.random(in: 0...UInt64.max)
            print("fuzz seed: \(seed) (replay with SWITCHYARD_FUZZ_SEED=\(seed))")
            let dir = try ScratchDir("fuzz")
            let backend = try Backend.demo("a", dir: dir)
            defer { backend.stop() }
            let proxy = try RunningProxy(ProxySpec(), services: [ServiceSpec(name: "shop", instances: [.init(port: backend.port)])], dir: dir)
            defer { proxy.stop() }
            #expect(try rawExchange(port: proxy.port, "GET / HTTP/1.1\r\nHost: shop.test\r\n\r\n").status == 200)
            let baseline = openDescriptors(pid: proxy.pid)

            let cases = 10_000
            let senders = 4
            let tally = FuzzTally()
            let port = proxy.port
            let budget = ContinuousClock.now + .seconds(30)
            DispatchQueue.concurrentPerform(iterations: senders) { sender in
                for index in stride(from: sender, to: cases, by: senders) {
                    if ContinuousClock.now >= budget { return }
                    var rng = SplitMix64(seed: seed ^ (UInt64(index) &* 0xD6E8_FEB8_6659_FD93))
                    let bytes = fuzzCase(&rng)
                    guard let connection = try? RawConnection(port: port) else {
                        tally.record(index, status: nil, closed: true, connected: false)
                        continue
                    }
                    try? connection.send(bytes, timeout: .seconds(2))
                    connection.shutdownWrite()
                    let closed = connection.readUntilClosed(timeout: .seconds(3))
                    let answer = String(decoding: connection.buffered.prefix(12), as: UTF8.self)
                    let status = answer.hasPrefix("HTTP/1.1 ") ? Int(answer.dropFirst(9).prefix(3)) : nil
                    tally.record(index, status: status, closed: closed, connected: true)
                }
            }
            print("fuzz seed \(seed): \(tally.done) cases; statuses \(tally.statuses.sorted { $0.key < $1.key }); "
                + "closed without answer \(tally.closedWithoutAnswer); connect failures \(tally.connectFailures)")
            #expect(tally.done == cases, "only \(tally.done) cases ran within the 30 s budget (seed \(seed))")
            #expect(tally.connectFailures == 0, "seed \(seed)")
            let stuckCases = tally.stuck.prefix(5).map { index -> String in
                var rng = SplitMix64(seed: seed ^ (UInt64(index) &* 0xD6E8_FEB8_6659_FD93))
                let bytes = fuzzCase(&rng)
                let text = { (part: ArraySlice<UInt8>) in String(reflecting: String(decoding: part, as: UTF8.self)) }
                return "#\(index) (\(bytes.count) bytes): \(text(bytes.prefix(120))) ... \(text(bytes.suffix(120)))"
            }
            #expect(tally.stuck.isEmpty, "connections still open 3 s after the client's half-close (seed \(seed)): \(stuckCases)")
            #expect(proxy.child.isRunning, "the proxy died (seed \(seed)): \(proxy.child.stderrText.suffix(2000))")
            let after = try rawExchange(port: proxy.port, "GET / HTTP/1.1\r\nHost: shop.test\r\n\r\n")
            #expect(after.status == 200)
            #expect(after.bodyText.hasPrefix("hello from a"))
            // Every client connection is gone; at most a few pooled upstream ones remain.
            var descriptors = 0
            let settled = (try? waitFor("the proxy's descriptors to settle", timeout: .seconds(5), interval: .milliseconds(100)) {
                descriptors = openDescriptors(pid: proxy.pid)
                return descriptors <= baseline + 16
            }) != nil
            #expect(settled, "descriptors stayed at \(descriptors), baseline \(baseline) (seed \(seed))")
        }
    }
}
