// The chunked framing tracker: where a body ends, at every split point and byte by byte, and
// which framings it refuses.

import Testing
import YardHTTP

// MARK: Harness

/// Where feeding a body ended up, with the end given as an offset into the whole input.
enum ChunkedOutcome: Equatable {
    case needMore
    case done(end: Int)
    case invalid(HTTPParseError)
}

/// Feeds `all` to a fresh decoder in pieces that end at each of `cuts` (ascending, last = count).
func decodeChunked(_ all: [UInt8], cuts: [Int], maxTrailerBytes: Int = 32_768, request: Bool = false) -> ChunkedOutcome {
    var decoder = ChunkedDecoder(maxTrailerBytes: maxTrailerBytes, refusingForbiddenTrailers: request)
    var start = 0
    return all.withUnsafeBytes { buffer in
        for cut in cuts {
            switch decoder.consume(UnsafeRawBufferPointer(rebasing: buffer[start ..< cut])) {
            case .needMore: start = cut
            case .done(let consumed): return .done(end: start + consumed)
            case .invalid(let error): return .invalid(error)
            }
        }
        return .needMore
    }
}

/// Decodes `text` one-shot, split in two at every point, and byte by byte; expects the same
/// outcome each way and returns it.
@discardableResult
func decodeChunkedAtEverySplit(_ text: String, maxTrailerBytes: Int = 32_768, request: Bool = false,
                               sourceLocation: SourceLocation = #_sourceLocation) -> ChunkedOutcome {
    let all = bytes(text)
    let oneShot = decodeChunked(all, cuts: [all.count], maxTrailerBytes: maxTrailerBytes, request: request)
    for split in 0 ... all.count {
        let outcome = decodeChunked(all, cuts: [split, all.count], maxTrailerBytes: maxTrailerBytes, request: request)
        #expect(outcome == oneShot, "split at \(split)", sourceLocation: sourceLocation)
    }
    let dripped = decodeChunked(all, cuts: Array(0 ... all.count), maxTrailerBytes: maxTrailerBytes, request: request)
    #expect(dripped == oneShot, "byte at a time", sourceLocation: sourceLocation)
    return oneShot
}

func chunkedStatus(_ outcome: ChunkedOutcome) -> Int? {
    if case .invalid(let error) = outcome { return error.status }
    return nil
}

// MARK: Tests

@Suite struct ChunkedDecoderTests {
    @Test func bodyEndsAfterTheLastChunkAndItsCRLF() {
        let body = "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        #expect(decodeChunkedAtEverySplit(body) == .done(end: body.utf8.count))
    }

    @Test func bytesAfterTheBodyAreLeftForTheNextMessage() {
        let body = "3\r\nabc\r\n0\r\n\r\n"
        #expect(decodeChunkedAtEverySplit(body + "GET / HTTP/1.1\r\n") == .done(end: body.utf8.count))
    }

    @Test func emptyBodyIsJustTheLastChunk() {
        #expect(decodeChunkedAtEverySplit("0\r\n\r\n") == .done(end: 5))
    }

    @Test func hexSizesAreCaseInsensitiveAndMayHaveLeadingZeros() {
        let body = "A\r\n0123456789\r\n00b\r\nhello world\r\n000\r\n\r\n"
        #expect(decodeChunkedAtEverySplit(body) == .done(end: body.utf8.count))
        #expect(decodeChunkedAtEverySplit("a\r\n0123456789\r\n0\r\n\r\n") == .done(end: 20))
    }

    @Test func chunkDataMayContainCRLFAndLookLikeFraming() {
        let body = "7\r\n0\r\n\r\n\r\n\r\n0\r\n\r\n"
        #expect(decodeChunkedAtEverySplit(body) == .done(end: body.utf8.count))
    }

    @Test func extensionsWithTokensAndQuotedStringsAreSkipped() {
        let body = "5;a;b=c ; d = \"x;\\\"y\\\\\" ;e=f\r\nhello\r\n0;last=\"\"\r\n\r\n"
        #expect(decodeChunkedAtEverySplit(body) == .done(end: body.utf8.count))
    }

    @Test func trailerFieldsAreValidatedAndSkipped() {
        let body = "2\r\nhi\r\n0\r\nX-Checksum: abc \t def\r\nX-Empty:\r\nServer-Timing: db;dur=53\r\n\r\n"
        #expect(decodeChunkedAtEverySplit(body) == .done(end: body.utf8.count))
    }

    @Test func largestChunkSizeIsFifteenHexDigits() {
        #expect(decodeChunkedAtEverySplit("fffffffffffffff\r\nabc") == .needMore)
        #expect(decodeChunkedAtEverySplit("000000000000005\r\nhello\r\n0\r\n\r\n") == .done(end: 29))
    }

    @Test func incompleteBodiesNeedMore() {
        #expect(decodeChunkedAtEverySplit("5\r\nhel") == .needMore)
        #expect(decodeChunkedAtEverySplit("5\r\nhello\r\n0\r\nX-A: 1\r\n") == .needMore)
    }

    @Test func largeChunksAreSkippedInBulk() {
        var decoder = ChunkedDecoder()
        let size = 1 << 20
        let head = bytes("100000\r\n"), tail = bytes("\r\n0\r\n\r\n")
        let data = [UInt8](repeating: 0x0A, count: size)
        #expect(head.withUnsafeBytes { decoder.consume($0) } == .needMore)
        #expect(data.withUnsafeBytes { decoder.consume($0) } == .needMore)
        #expect(tail.withUnsafeBytes { decoder.consume($0) } == .done(consumed: tail.count))
        #expect(decoder.isDone)
    }

    @Test func aFinishedDecoderReportsDoneWithNothingConsumed() {
        var decoder = ChunkedDecoder()
        let body = bytes("0\r\n\r\n")
        #expect(body.withUnsafeBytes { decoder.consume($0) } == .done(consumed: 5))
        #expect(body.withUnsafeBytes { decoder.consume($0) } == .done(consumed: 0))
    }

    @Test func aFailedDecoderKeepsItsError() {
        var decoder = ChunkedDecoder()
        let first = bytes("zz\r\n").withUnsafeBytes { decoder.consume($0) }
        #expect(first == .invalid(HTTPParseError(status: 400, reason: "invalid chunk size")))
        #expect(bytes("0\r\n\r\n").withUnsafeBytes { decoder.consume($0) } == first)
    }

    @Test func emptyInputNeedsMore() {
        var decoder = ChunkedDecoder()
        #expect(decoder.consume(UnsafeRawBufferPointer(start: nil, count: 0)) == .needMore)
    }

    // MARK: Refusals

    static let refusals: [Refusal] = [
        Refusal("a size that is not hex", "zz\r\n"),
        Refusal("an empty size", "\r\nhello\r\n0\r\n\r\n"),
        Refusal("a negative size", "-1\r\n"),
        Refusal("a 0x prefix", "0x5\r\nhello\r\n0\r\n\r\n"),
        Refusal("a size over fifteen hex digits", "ffffffffffffffffff\r\n"),
        Refusal("sixteen digits even with leading zeros", "0000000000000005\r\nhello\r\n0\r\n\r\n"),
        Refusal("a size followed by a letter", "5g\r\nhello\r\n0\r\n\r\n"),
        Refusal("whitespace after a size without an extension", "5 \r\nhello\r\n0\r\n\r\n"),
        Refusal("whitespace before a size", " 5\r\nhello\r\n0\r\n\r\n"),
        Refusal("a bare LF after the size", "5\nhello\r\n0\r\n\r\n"),
        Refusal("a bare CR after the size", "5\rhello\r\n0\r\n\r\n"),
        Refusal("data longer than its size", "5\r\nhelloX\r\n0\r\n\r\n"),
        Refusal("data followed by a bare LF", "5\r\nhello\n0\r\n\r\n"),
        Refusal("data followed by a bare CR", "5\r\nhello\r0\r\n\r\n"),
        Refusal("an extension without a name", "5;\r\nhello\r\n0\r\n\r\n"),
        Refusal("an extension with an empty value", "5;a=\r\nhello\r\n0\r\n\r\n"),
        Refusal("whitespace at the end of an extension", "5;a \r\nhello\r\n0\r\n\r\n"),
        Refusal("a separator in an extension name", "5;a(b)\r\nhello\r\n0\r\n\r\n"),
        Refusal("an unterminated quoted extension", "5;a=\"b\r\nhello\r\n0\r\n\r\n"),
        Refusal("a bare LF in an extension", "5;a=b\nhello\r\n0\r\n\r\n"),
        Refusal("a NUL in a quoted extension", "5;a=\"\u{0}\"\r\nhello\r\n0\r\n\r\n"),
        Refusal("obs-fold in the trailers", "0\r\nX-A: 1\r\n 2\r\n\r\n"),
        Refusal("whitespace before a trailer colon", "0\r\nX-A : 1\r\n\r\n"),
        Refusal("a trailer without colon", "0\r\nX-A\r\n\r\n"),
        Refusal("a bare CR in a trailer", "0\r\nX-A: 1\r2\r\n\r\n"),
        Refusal("a bare LF ending a trailer", "0\r\nX-A: 1\n\r\n"),
        Refusal("a NUL in a trailer", "0\r\nX-A: \u{0}\r\n\r\n"),
        Refusal("a bare LF as the final line", "0\r\n\n"),
        Refusal("a bare CR as the final line", "0\r\n\rX"),
    ]

    @Test(arguments: refusals)
    func malformedFramingIsRefusedAtEverySplit(_ refusal: Refusal) {
        #expect(chunkedStatus(decodeChunkedAtEverySplit(refusal.request)) == refusal.status)
    }

    @Test func chunkSizeLinesAreCapped() {
        let ext = String(repeating: ";a", count: ChunkedDecoder.maxChunkSizeLine / 2)
        #expect(chunkedStatus(decodeChunkedAtEverySplit("5" + ext + "\r\nhello\r\n0\r\n\r\n")) == 400)
        let fits = String(repeating: ";a", count: ChunkedDecoder.maxChunkSizeLine / 2 - 2)
        let body = "5" + fits + "\r\nhello\r\n0\r\n\r\n"
        #expect(decodeChunked(bytes(body), cuts: [body.utf8.count]) == .done(end: body.utf8.count))
    }

    @Test func trailerSectionsAreCapped() {
        let body = "0\r\nX-A: " + String(repeating: "v", count: 40) + "\r\n\r\n"
        #expect(chunkedStatus(decodeChunkedAtEverySplit(body, maxTrailerBytes: 32)) == 400)
        #expect(decodeChunkedAtEverySplit(body, maxTrailerBytes: 52) == .done(end: body.utf8.count))
    }
}
