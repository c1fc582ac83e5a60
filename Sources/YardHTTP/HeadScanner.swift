// Finding where an HTTP/1.1 head ends, incrementally, before anything in it is parsed.
//
// The scanner walks line feeds with `memchr` and resumes where the previous call stopped, so a
// peer that drips a head one byte at a time costs linear work in total. While it walks, it
// enforces what must be refused before the head is complete: a bare LF, a start line longer than
// its limit (414 even without a line end yet) and a head larger than its limit (431).

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: Result

/// Where a complete head's parts are, once its blank line has been found.
struct HeadBoundary {
    /// First byte of the start line (after skipped empty lines).
    var startLineStart: Int
    /// Index of the CR that ends the start line.
    var startLineEnd: Int
    /// Bytes of the head, including the blank line that ends it.
    var headLength: Int
}

enum HeadScanOutcome {
    case incomplete
    case invalid(HTTPParseError)
    case complete(HeadBoundary)
}

// MARK: Scanner

/// Limits and policies of one kind of head (request or response).
struct HeadScanPolicy {
    var maxStartLine: Int
    var maxHeadBytes: Int
    /// Empty lines (CRLF) ignored before the start line. RFC 9112 §2.2 asks servers to ignore at
    /// least one before a request line; a bound keeps the resume cost constant.
    var maxLeadingEmptyLines: Int
    /// What a start line over `maxStartLine` is: 414 for a request line.
    var startLineTooLong: HTTPParseError
}

/// The resume state packed in the caller's `scanFrom`: the next byte to examine, shifted left
/// once, with the low bit set once the start line's end has been seen. 0 is a fresh head.
@inline(__always) private func packState(position: Int, pastStartLine: Bool) -> Int {
    position << 1 | (pastStartLine ? 1 : 0)
}

/// The first LF in `p[from ..< to]`, or nil.
@inline(__always) private func findLF(_ p: UnsafePointer<UInt8>, _ from: Int, _ to: Int) -> Int? {
    guard from < to, let hit = memchr(p + from, Int32(asciiLF), to &- from) else { return nil }
    return UnsafeRawPointer(hit) - UnsafeRawPointer(p)
}

/// Looks for the blank line that ends a head in `p[0 ..< count]`, resuming at `state`.
///
/// Threading: a pure function of its arguments; `state` belongs to the caller's connection.
/// On `.complete`, `state` is left so that calling again with the same bytes finds the same end.
func scanHead(_ p: UnsafePointer<UInt8>, count: Int, policy: HeadScanPolicy, state: inout Int) -> HeadScanOutcome {
    var position = state >> 1
    var pastStartLine = state & 1 == 1

    // Leading empty lines are recounted on every call while the start line is open; there are
    // at most `maxLeadingEmptyLines` of them, so this is constant work.
    var lineStart = 0
    var empties = 0
    while lineStart &+ 1 < count, p[lineStart] == asciiCR, p[lineStart &+ 1] == asciiLF {
        empties &+= 1
        if empties > policy.maxLeadingEmptyLines {
            return .invalid(HTTPParseError(status: 400, reason: "empty line before the start line"))
        }
        lineStart &+= 2
    }

    var startLineEnd = -1
    if !pastStartLine {
        position = max(position, lineStart)
        // The line may hold maxStartLine bytes and its CR; its LF must come within this bound.
        let bound = lineStart &+ policy.maxStartLine &+ 2
        guard let lf = findLF(p, position, min(count, bound)) else {
            if count >= bound { return .invalid(policy.startLineTooLong) }
            state = packState(position: count, pastStartLine: false)
            return .incomplete
        }
        guard lf > lineStart, p[lf &- 1] == asciiCR else {
            return .invalid(HTTPParseError(status: 400, reason: "bare LF in head"))
        }
        startLineEnd = lf &- 1
        pastStartLine = true
        position = lf &+ 1
    }

    // Field lines: each LF must follow a CR; an LF right after the previous line's LF ends the head.
    let limit = min(count, policy.maxHeadBytes)
    while true {
        guard let lf = findLF(p, position, limit) else {
            if count >= policy.maxHeadBytes {
                return .invalid(HTTPParseError(status: 431, reason: "header section too large"))
            }
            state = packState(position: count, pastStartLine: true)
            return .incomplete
        }
        guard p[lf &- 1] == asciiCR else {
            return .invalid(HTTPParseError(status: 400, reason: "bare LF in head"))
        }
        if p[lf &- 2] == asciiLF {
            state = packState(position: lf &- 1, pastStartLine: true)
            if startLineEnd < 0 {
                // Found on a later call: find the start line's end again (bounded by maxStartLine).
                startLineEnd = findLF(p, lineStart, lf)! &- 1
            }
            return .complete(HeadBoundary(startLineStart: lineStart, startLineEnd: startLineEnd, headLength: lf &+ 1))
        }
        position = lf &+ 1
    }
}
