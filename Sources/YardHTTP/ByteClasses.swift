// Byte classes of RFC 9110/9112 and small allocation-free comparisons used by the parsers.
//
// Everything here works on `UnsafePointer<UInt8>` and plain integers: the hot path never builds a
// `String`, and the classes are bit tests on constants, not table lookups in a global array
// (which would cost a lazy-initialisation check and a bounds check per byte).

// MARK: Byte constants

let asciiCR: UInt8 = 0x0D
let asciiLF: UInt8 = 0x0A
let asciiSP: UInt8 = 0x20
let asciiHTAB: UInt8 = 0x09
let asciiColon: UInt8 = 0x3A
let asciiComma: UInt8 = 0x2C
let asciiSemicolon: UInt8 = 0x3B
let asciiEquals: UInt8 = 0x3D
let asciiQuote: UInt8 = 0x22
let asciiBackslash: UInt8 = 0x5C
let asciiSlash: UInt8 = 0x2F
let asciiQuestion: UInt8 = 0x3F
let asciiAt: UInt8 = 0x40
let asciiStar: UInt8 = 0x2A
let asciiDot: UInt8 = 0x2E
let asciiPercent: UInt8 = 0x25

// MARK: Classes

/// `tchar` (RFC 9110 §5.6.2) as a table of `0`/`1` characters, one per byte value, 64 a line
/// (0x00–0x3F, 0x40–0x7F, then the 128 non-ASCII bytes).
/// A string literal is constant data addressed directly: one load per byte, no range branches.
private let tokenTableLiteral: StaticString = """
0000000000000000000000000000000001011111001101101111111111000000\
0111111111111111111111111110001111111111111111111111111111101010\
0000000000000000000000000000000000000000000000000000000000000000\
0000000000000000000000000000000000000000000000000000000000000000
"""

/// Whether `b` may appear in a token (method, field name, coding, connection option).
@inline(__always) func isTokenByte(_ b: UInt8) -> Bool {
    tokenTableLiteral.utf8Start[Int(b)] == 0x31
}

/// Bytes of `uri-host [":" port]` (RFC 3986 reg-name, IP literals, IPv4), 0x00–0x3F and 0x40–0x7F.
private let hostLow: UInt64 = 0x2FFF_7FF2_0000_0000
private let hostHigh: UInt64 = 0x47FF_FFFE_AFFF_FFFE

/// Whether `b` may appear in a Host value or an authority (no `/`, `?`, `#`, `@`, whitespace).
@inline(__always) func isHostByte(_ b: UInt8) -> Bool {
    if b < 64 { return (hostLow >> UInt64(b)) & 1 == 1 }
    if b < 128 { return (hostHigh >> UInt64(b &- 64)) & 1 == 1 }
    return false
}

/// Optional whitespace (OWS/BWS): SP or HTAB.
@inline(__always) func isWhitespace(_ b: UInt8) -> Bool {
    b == asciiSP || b == asciiHTAB
}

/// A visible field byte: VCHAR or obs-text (0x80–0xFF). SP and HTAB are handled by the caller.
@inline(__always) func isVisibleOrObsText(_ b: UInt8) -> Bool {
    b > asciiSP && b != 0x7F
}

@inline(__always) func isDigit(_ b: UInt8) -> Bool {
    b &- 0x30 < 10
}

/// The value of a hex digit, or 0xFF when `b` is not one.
@inline(__always) func hexValue(_ b: UInt8) -> UInt8 {
    if b &- 0x30 < 10 { return b &- 0x30 }
    let lower = b | 0x20
    if lower &- 0x61 < 6 { return lower &- 0x61 &+ 10 }
    return 0xFF
}

// MARK: Comparisons

/// Whether `count` bytes at `p + start` equal `literal` exactly (case-sensitive: methods, versions).
@inline(__always)
func bytesEqual(_ p: UnsafePointer<UInt8>, _ start: Int, _ count: Int, _ literal: StaticString) -> Bool {
    guard count == literal.utf8CodeUnitCount else { return false }
    let l = literal.utf8Start
    var i = 0
    while i < count {
        if p[start &+ i] != l[i] { return false }
        i &+= 1
    }
    return true
}

/// Whether `count` bytes at `p + start` equal the lowercase `literal` ignoring ASCII case.
///
/// Folds with `| 0x20`, which is exact only for letters, digits and `-`. That is enough because the
/// callers compare bytes already validated as tokens or field values against literals made of those,
/// and no other validated byte folds onto a letter, a digit or `-`.
@inline(__always)
func bytesEqualFolded(_ p: UnsafePointer<UInt8>, _ start: Int, _ count: Int, _ literal: StaticString) -> Bool {
    guard count == literal.utf8CodeUnitCount else { return false }
    let l = literal.utf8Start
    var i = 0
    while i < count {
        if p[start &+ i] | 0x20 != l[i] { return false }
        i &+= 1
    }
    return true
}

/// Whether two runs of the same buffer are equal ignoring ASCII case (token against field name).
@inline(__always)
func spansEqualFolded(_ p: UnsafePointer<UInt8>, _ a: Int, _ b: Int, _ count: Int) -> Bool {
    var i = 0
    while i < count {
        let x = p[a &+ i], y = p[b &+ i]
        if x != y {
            // Only letters may differ, and only in the case bit.
            guard x ^ y == 0x20, (x | 0x20) &- 0x61 < 26 else { return false }
        }
        i &+= 1
    }
    return true
}

// MARK: Lists

/// The elements of a comma-separated list value (RFC 9110 §5.6.1), each without surrounding OWS;
/// empty elements are skipped as the RFC asks recipients to do.
struct ListElements {
    private let p: UnsafePointer<UInt8>
    private var i: Int
    private let end: Int

    init(_ p: UnsafePointer<UInt8>, _ span: ByteSpan) {
        self.p = p
        self.i = Int(span.start)
        self.end = Int(span.start) + Int(span.count)
    }

    /// The next non-empty element as `(start, count)`, or nil after the last.
    mutating func next() -> (start: Int, count: Int)? {
        while i < end {
            while i < end, isWhitespace(p[i]) { i &+= 1 }
            let start = i
            var last = i
            while i < end, p[i] != asciiComma {
                if !isWhitespace(p[i]) { last = i &+ 1 }
                i &+= 1
            }
            if i < end { i &+= 1 }  // the comma
            if last > start { return (start, last &- start) }
        }
        return nil
    }
}

/// Whether `count` bytes at `p + start` are all token bytes (and there is at least one).
@inline(__always)
func isToken(_ p: UnsafePointer<UInt8>, _ start: Int, _ count: Int) -> Bool {
    guard count > 0 else { return false }
    var i = start
    while i < start &+ count {
        if !isTokenByte(p[i]) { return false }
        i &+= 1
    }
    return true
}

// MARK: Eight bytes at a time

/// Field values and request targets are scanned a word at a time (SWAR), falling back to the byte
/// loop at the first word holding anything unusual: that halves the cost of a typical head.
/// The tests below are exact as yes/no answers (borrows only disturb bytes after a hit).
private let ones: UInt64 = 0x0101_0101_0101_0101
private let highBits: UInt64 = 0x8080_8080_8080_8080

/// Whether any byte of `w` is below 0x20 (a control byte, including CR and HTAB) or is DEL.
@inline(__always) func hasControlOrDelete(_ w: UInt64) -> Bool {
    let below = (w &- ones &* 0x20) & ~w
    let x = w ^ (ones &* 0x7F)
    let delete = (x &- ones) & ~x
    return (below | delete) & highBits != 0
}

/// Whether any byte of `w` is outside 0x21–0x7E (the bytes a request target may hold).
@inline(__always) func hasNonTargetByte(_ w: UInt64) -> Bool {
    let below = (w &- ones &* 0x21) & ~w
    let above = (w &+ ones) | w
    return (below | above) & highBits != 0
}

/// The eight bytes at `p + i`, in memory order.
@inline(__always) func loadWord(_ p: UnsafePointer<UInt8>, _ i: Int) -> UInt64 {
    UnsafeRawPointer(p + i).loadUnaligned(as: UInt64.self)
}
