// Normalizing a request path before it is routed and forwarded, in place.
//
// Routing decides by path prefix, so every spelling of a path that a backend would read as
// the same path must route the same way: `/public/../admin` and `/public/%2e%2e/admin` are
// `/admin`, for the router and the backend alike. The rule (docs/ARCHITECTURE.md, "Paths"):
//
// 1. Percent-encoded unreserved characters (`A-Z a-z 0-9 - . _ ~`, RFC 3986 §2.3) are
//    decoded: `%2e` is `.`, `%61` is `a` (RFC 3986 §6.2.2.2 says they are equivalent).
//    Other escapes are kept as they are.
// 2. Dot segments are removed (RFC 3986 §5.2.4): `/a/./b` is `/a/b`, `/a/../b` is `/b`, and
//    `..` never climbs above `/`.
// 3. Empty segments are merged: `//x` is `/x` (like nginx's `merge_slashes`).
// 4. Refused with 400, because backends disagree on what they mean: an encoded slash or
//    backslash (`%2f`, `%5c`: a separator to some servers, a byte to others), a literal
//    backslash (a separator on Windows servers), an encoded control character (`%00`-`%1f`,
//    `%7f`), and a malformed escape (`%zz`, `%4`).
//
// The query is not part of the path and is never touched.

/// What `normalizeRequestPath` did.
public enum PathNormalization: Equatable, Sendable {
    /// The path was already normal; no byte was written.
    case unchanged
    /// The normal path is the first `count` bytes of the span (it only ever gets shorter).
    case rewritten(count: Int)
    /// The path is refused (status 400).
    case invalid(HTTPParseError)
}

/// Normalizes the path in `p[start ..< start + count]` in place (see the rule above). The
/// path starts with `/` (origin form, or the path of an absolute-form target); an empty
/// span means `/` and is left alone.
///
/// Allocation-free; a path without `.`, `%`, `\` or `//` costs one read per byte.
///
/// Threading: a pure function of the bytes it is given.
public func normalizeRequestPath(_ p: UnsafeMutablePointer<UInt8>, start: Int, count: Int) -> PathNormalization {
    let end = start &+ count
    guard count > 0, p[start] == asciiSlash else { return .unchanged }
    var i = start
    var previous: UInt8 = 0
    while i < end {
        let b = p[i]
        if b == asciiDot || b == asciiPercent || b == asciiBackslash || (b == asciiSlash && previous == asciiSlash) { break }
        previous = b
        i &+= 1
    }
    if i == end { return .unchanged }

    var r = start &+ 1
    var w = start &+ 1
    var segmentStart = w
    while true {
        if r == end || p[r] == asciiSlash {
            let length = w &- segmentStart
            if length == 1 && p[segmentStart] == asciiDot {
                w = segmentStart
            } else if length == 2 && p[segmentStart] == asciiDot && p[segmentStart &+ 1] == asciiDot {
                w = segmentStart
                if w &- start > 1 {
                    // Back over the previous segment: `p[w - 1]` is its closing slash.
                    var k = w &- 2
                    while p[k] != asciiSlash { k &-= 1 }
                    w = k &+ 1
                }
            } else if length > 0 && r < end {
                p[w] = asciiSlash
                w &+= 1
            }
            segmentStart = w
            if r == end { break }
            r &+= 1
            continue
        }
        let b = p[r]
        if b == asciiBackslash { return .invalid(HTTPParseError(status: 400, reason: "backslash in path")) }
        if b == asciiPercent {
            guard end &- r >= 3 else { return .invalid(HTTPParseError(status: 400, reason: "malformed percent-encoding in path")) }
            let high = hexValue(p[r &+ 1])
            let low = hexValue(p[r &+ 2])
            guard high != 0xFF, low != 0xFF else {
                return .invalid(HTTPParseError(status: 400, reason: "malformed percent-encoding in path"))
            }
            let decoded = high &<< 4 | low
            if decoded == asciiSlash || decoded == asciiBackslash {
                return .invalid(HTTPParseError(status: 400, reason: "encoded slash or backslash in path"))
            }
            if decoded < asciiSP || decoded == 0x7F {
                return .invalid(HTTPParseError(status: 400, reason: "encoded control character in path"))
            }
            if isUnreserved(decoded) {
                p[w] = decoded
                w &+= 1
            } else {
                p[w] = b
                p[w &+ 1] = p[r &+ 1]
                p[w &+ 2] = p[r &+ 2]
                w &+= 3
            }
            r &+= 3
            continue
        }
        p[w] = b
        w &+= 1
        r &+= 1
    }
    // After removing the last segment (`/a/..`), the path ends in its slash: keep it.
    let newCount = w &- start
    if newCount == count { return .unchanged }
    return .rewritten(count: newCount)
}

/// RFC 3986 §2.3 unreserved: ALPHA / DIGIT / "-" / "." / "_" / "~".
@inline(__always) private func isUnreserved(_ b: UInt8) -> Bool {
    (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || isDigit(b)
        || b == 0x2D || b == asciiDot || b == 0x5F || b == 0x7E
}
