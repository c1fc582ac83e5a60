// Micro-benchmark of the hot path: prints the cost, asserts only correctness (timing depends on
// the machine and on the build configuration; run `swift test -c release` for real figures).

import Testing
import YardHTTP

@Suite struct ParserBenchmarkTests {
    @Test func printsNanosecondsPerBrowserRequestParse() {
        let all = bytes(browserRequest)
        let limits = HTTPLimits()
        let fields = UnsafeMutablePointer<HeaderField>.allocate(capacity: limits.maxHeaders)
        fields.initialize(repeating: .empty, count: limits.maxHeaders)
        defer { fields.deallocate() }
        var head = RequestHead()
        let iterations = 50_000
        var completed = 0
        let elapsed = all.withUnsafeBytes { buffer in
            ContinuousClock().measure {
                for _ in 0 ..< iterations {
                    var scanFrom = 0
                    if parseRequestHead(buffer, limits: limits, head: &head, fields: fields, scanFrom: &scanFrom) == .complete {
                        completed += 1
                    }
                }
            }
        }
        #expect(completed == iterations)
        let ns = Double(elapsed.components.seconds) * 1e9 + Double(elapsed.components.attoseconds) / 1e9
        print("parseRequestHead: \(all.count)-byte browser request, \(Int(ns / Double(iterations))) ns per parse")
    }

    @Test func printsNanosecondsPerChunkedBodyScan() {
        // 64 chunks of 1 KiB: the cost is in the size lines, the data is skipped.
        var body = [UInt8]()
        for _ in 0 ..< 64 { body += bytes("400\r\n") + [UInt8](repeating: 0x61, count: 1024) + bytes("\r\n") }
        body += bytes("0\r\n\r\n")
        let iterations = 20_000
        var finished = 0
        let elapsed = body.withUnsafeBytes { buffer in
            ContinuousClock().measure {
                for _ in 0 ..< iterations {
                    var decoder = ChunkedDecoder()
                    if decoder.consume(buffer) == .done(consumed: buffer.count) { finished += 1 }
                }
            }
        }
        #expect(finished == iterations)
        let ns = Double(elapsed.components.seconds) * 1e9 + Double(elapsed.components.attoseconds) / 1e9
        print("ChunkedDecoder: \(body.count)-byte body in 64 chunks, \(Int(ns / Double(iterations))) ns per body")
    }
}
