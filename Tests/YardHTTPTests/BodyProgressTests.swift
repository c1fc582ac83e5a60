// BodyProgress: where a body ends for each framing, at every split point of its bytes, and
// what a close means for it.

import Testing
import YardHTTP

/// Where feeding `all` in pieces ending at `cuts` left the body: its end as an offset into
/// `all` when complete, nil when more is expected, or the framing error.
private func bodyEnd(_ framing: BodyFraming, _ all: [UInt8], cuts: [Int], request: Bool = false) -> Result<Int?, HTTPParseError> {
    var progress = BodyProgress(framing, refusingForbiddenTrailers: request)
    var start = 0
    return all.withUnsafeBytes { buffer in
        for cut in cuts {
            switch progress.advance(over: UnsafeRawBufferPointer(rebasing: buffer[start ..< cut])) {
            case .body(let count):
                if progress.isComplete { return .success(start + count) }
                #expect(count == cut - start, "an incomplete body takes every byte given")
                start = cut
            case .invalid(let error):
                return .failure(error)
            }
        }
        return .success(nil)
    }
}

/// Every way of cutting `all` in two.
private func everySplit(_ all: [UInt8]) -> [[Int]] {
    (0 ... all.count).map { [$0, all.count] }
}

@Suite struct BodyProgressTests {
    @Test func aMessageWithoutBodyIsCompleteAndTakesNothing() {
        var progress = BodyProgress(.none)
        #expect(progress.isComplete)
        let step = [UInt8]("GET / HTTP/1.1\r\n".utf8).withUnsafeBytes { progress.advance(over: $0) }
        #expect(step == .body(count: 0))
        #expect(BodyProgress().isComplete)
        #expect(BodyProgress(.contentLength(0)).isComplete)
    }

    @Test func aContentLengthBodyEndsAfterItsLengthAtEverySplit() throws {
        let all = Array("hello worldGET /next".utf8)
        for cuts in everySplit(all) {
            #expect(try bodyEnd(.contentLength(11), all, cuts: cuts).get() == 11, "cuts \(cuts)")
        }
        var progress = BodyProgress(.contentLength(11))
        #expect(progress.remainingLength == 11)
        _ = Array("hello".utf8).withUnsafeBytes { progress.advance(over: $0) }
        #expect(progress.remainingLength == 6)
        let endedComplete = progress.inputEnded()
        #expect(!endedComplete, "a close before the length is reached cuts the body short")
    }

    @Test func aChunkedBodyWithTrailersEndsAfterItsFinalCRLFAtEverySplit() throws {
        let body = "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nx-checksum: 42\r\n\r\n"
        let all = Array((body + "HTTP/1.1 200 OK\r\n").utf8)
        for cuts in everySplit(all) {
            #expect(try bodyEnd(.chunked, all, cuts: cuts).get() == body.utf8.count, "cuts \(cuts)")
        }
        // Byte by byte.
        #expect(try bodyEnd(.chunked, all, cuts: Array(1 ... all.count)).get() == body.utf8.count)
        #expect(BodyProgress(.chunked).isChunked)
    }

    @Test func aRequestBodyWithAFramingTrailerIsInvalid() throws {
        let all = Array("0\r\nContent-Length: 5\r\n\r\n".utf8)
        guard case .failure(let error) = bodyEnd(.chunked, all, cuts: [all.count], request: true) else {
            Issue.record("a Content-Length trailer was accepted in a request")
            return
        }
        #expect(error.status == 400)
        // A response's trailers are the backend's business.
        #expect(try bodyEnd(.chunked, all, cuts: [all.count]).get() == all.count)
    }

    @Test func brokenChunkFramingIsInvalidWhereverItIsCut() {
        let all = Array("5\r\nhelloX\r\n".utf8)
        for cuts in everySplit(all) {
            guard case .failure = bodyEnd(.chunked, all, cuts: cuts) else {
                Issue.record("cuts \(cuts): broken framing accepted")
                continue
            }
        }
    }

    @Test func aCloseDelimitedBodyEndsOnlyWithACleanClose() {
        var progress = BodyProgress(.untilClose)
        #expect(progress.isCloseDelimited)
        let step = Array("everything".utf8).withUnsafeBytes { progress.advance(over: $0) }
        #expect(step == .body(count: 10))
        #expect(!progress.isComplete)
        var truncated = progress
        let afterUncleanClose = truncated.inputEnded(cleanly: false)
        #expect(!afterUncleanClose, "a TLS close without close_notify may be a truncation")
        let afterCleanClose = progress.inputEnded(cleanly: true)
        #expect(afterCleanClose)
        #expect(progress.isComplete)
    }

    @Test func aNegativeLengthFramesNothing() {
        // The parsers never produce one; the type still does not trap or wait on it.
        #expect(BodyProgress(.contentLength(-1)).isComplete)
    }
}
