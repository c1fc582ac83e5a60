// Taking chunked bodies apart for HTTP/2: the same data and trailers at every split point.

import Testing
@testable import YardHTTP

@Suite struct DechunkerTests {
    /// Feeds `parts` in order; the data and trailer bytes, and whether the end was seen.
    private func run(_ parts: [[UInt8]]) -> (data: [UInt8], trailers: [UInt8], ended: Bool) {
        var d = Dechunker()
        var data: [UInt8] = [], trailers: [UInt8] = []
        for part in parts {
            part.withUnsafeBytes { raw in
                var offset = 0
                while offset < raw.count {
                    let rest = UnsafeRawBufferPointer(rebasing: raw[offset...])
                    let (count, piece) = d.next(rest)
                    if count == 0 { break }
                    switch piece {
                    case .data(let r): data += rest[r]
                    case .trailer(let r): trailers += rest[r]
                    case .framing, .end: break
                    }
                    offset += count
                }
            }
        }
        return (data, trailers, d.isDone)
    }

    @Test func dataAndTrailersAreTheSameAtEverySplitPoint() {
        let body = Array("5\r\nhello\r\n6;ext=1\r\n world\r\nA\r\n0123456789\r\n0\r\ngrpc-status: 0\r\nx-b: y\r\n\r\n".utf8)
        for split in 0...body.count {
            let (data, trailers, ended) = run([Array(body[0..<split]), Array(body[split...])])
            #expect(String(decoding: data, as: UTF8.self) == "hello world0123456789", "split at \(split)")
            #expect(String(decoding: trailers, as: UTF8.self) == "grpc-status: 0\r\nx-b: y\r\n", "split at \(split)")
            #expect(ended, "split at \(split)")
        }
    }

    @Test func aBodyWithoutTrailersEndsAtTheLastChunk() {
        let body = Array("3\r\nabc\r\n0\r\n\r\n".utf8)
        for split in 0...body.count {
            let (data, trailers, ended) = run([Array(body[0..<split]), Array(body[split...])])
            #expect(data == Array("abc".utf8) && trailers.isEmpty && ended, "split at \(split)")
        }
    }

    @Test func byteAtATimeGivesTheSameData() {
        let body = Array("1f\r\n\(String(repeating: "z", count: 31))\r\n0\r\n\r\n".utf8)
        let (data, _, ended) = run(body.map { [$0] })
        #expect(data == Array(repeating: UInt8(ascii: "z"), count: 31) && ended)
    }
}
