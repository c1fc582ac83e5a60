// The byte classes behind the parsers, checked against their RFC definitions for every byte
// value, and the word-at-a-time tests against a byte-by-byte reference.

import Testing
@testable import YardHTTP

@Suite struct ByteClassTests {
    @Test func tokenBytesAreExactlyTheRFCTchars() {
        let tchars = Set("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".utf8)
        for b in 0 ... 255 {
            #expect(isTokenByte(UInt8(b)) == tchars.contains(UInt8(b)), "byte \(b)")
        }
    }

    @Test func hostBytesAreRegNameIPLiteralAndPortCharacters() {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~%!$&'()*+,;=:[]".utf8)
        for b in 0 ... 255 {
            #expect(isHostByte(UInt8(b)) == allowed.contains(UInt8(b)), "byte \(b)")
        }
    }

    @Test func hexValuesCoverBothCasesAndNothingElse() {
        let digits = Array("0123456789abcdef".utf8), upper = Array("ABCDEF".utf8)
        for b in 0 ... 255 {
            let byte = UInt8(b)
            let expected = digits.firstIndex(of: byte) ?? upper.firstIndex(of: byte).map { $0 + 10 }
            #expect(hexValue(byte) == expected.map(UInt8.init) ?? 0xFF, "byte \(b)")
        }
    }

    @Test func wordTestsAgreeWithByteTestsForEveryByteInEveryLane() {
        // Each byte value in each lane, among neighbours that are plain and that are extremes.
        for filler: UInt8 in [0x61, 0x21, 0x7E, 0x80, 0xFF] {
            for lane in 0 ..< 8 {
                for b in 0 ... 255 {
                    var word = [UInt8](repeating: filler, count: 8)
                    word[lane] = UInt8(b)
                    let w = word.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
                    let control = word.contains { $0 < 0x20 || $0 == 0x7F }
                    let nonTarget = word.contains { $0 <= 0x20 || $0 >= 0x7F }
                    #expect(hasControlOrDelete(w) == control, "byte \(b) lane \(lane) filler \(filler)")
                    #expect(hasNonTargetByte(w) == nonTarget, "byte \(b) lane \(lane) filler \(filler)")
                }
            }
        }
    }

    @Test func caseFoldedComparisonsMatchOnlyLettersAcrossCase() {
        let name = bytes("Content-LENGTH x-a X-A")
        name.withUnsafeBufferPointer { buffer in
            let p = buffer.baseAddress!
            #expect(bytesEqualFolded(p, 0, 14, "content-length"))
            #expect(!bytesEqualFolded(p, 0, 13, "content-length"))
            #expect(spansEqualFolded(p, 15, 19, 3))
            #expect(!spansEqualFolded(p, 0, 15, 3))
        }
    }
}
