#if canImport(Glibc)
import Glibc
#endif

/// A request head this process wrote itself, split into its parts without checking its bytes
/// again: the head writer's output, whose received parts were checked by the parser when they
/// arrived and whose added parts are the proxy's own. The HTTP/2 upstream path turns it into a
/// header list; a scan and a full parse of the same text would only find what is known.
///
/// `init` finds the request line's method and target and the blank line ending the head;
/// `nextField` walks the field lines (value without its surrounding whitespace). Bytes that
/// are not such a head make `init` fail (the caller answers 502, as for a head it cannot
/// send); they are never read past the buffer.
///
/// Threading: a value over the caller's buffer, used on the caller's thread.
public struct OwnRequestHead {
    public let method: ByteSpan
    public let target: ByteSpan
    /// The head's length, its blank line included.
    public let headLength: Int
    private let p: UnsafePointer<UInt8>
    private var next: Int

    public init?(_ buffer: UnsafeRawBufferPointer) {
        guard let base = buffer.baseAddress, buffer.count >= 4 else { return nil }
        let p = base.assumingMemoryBound(to: UInt8.self)
        let count = buffer.count
        guard let lineEnd = Self.lineFeed(p, from: 0, to: count), lineEnd > 0, p[lineEnd &- 1] == asciiCR,
              let methodEnd = Self.find(asciiSP, p, from: 0, to: lineEnd &- 1), methodEnd > 0,
              let targetEnd = Self.find(asciiSP, p, from: methodEnd &+ 1, to: lineEnd &- 1), targetEnd > methodEnd &+ 1 else {
            return nil
        }
        var i = lineEnd &+ 1
        while true {
            guard i &+ 1 < count else { return nil }
            if p[i] == asciiCR {
                guard p[i &+ 1] == asciiLF else { return nil }
                break
            }
            guard let end = Self.lineFeed(p, from: i, to: count), p[end &- 1] == asciiCR,
                  let colon = Self.find(asciiColon, p, from: i, to: end), colon > i else { return nil }
            i = end &+ 1
        }
        self.p = p
        self.method = ByteSpan(start: 0, count: methodEnd)
        self.target = ByteSpan(start: methodEnd &+ 1, count: targetEnd &- methodEnd &- 1)
        self.headLength = i &+ 2
        self.next = lineEnd &+ 1
    }

    /// The next field line's name and value, nil after the last.
    public mutating func nextField() -> (name: ByteSpan, value: ByteSpan)? {
        guard next &+ 2 < headLength, let end = Self.lineFeed(p, from: next, to: headLength),
              let colon = Self.find(asciiColon, p, from: next, to: end) else { return nil }
        let name = ByteSpan(start: next, count: colon &- next)
        var valueStart = colon &+ 1
        var valueEnd = end &- 1
        while valueStart < valueEnd, isWhitespace(p[valueStart]) { valueStart &+= 1 }
        while valueEnd > valueStart, isWhitespace(p[valueEnd &- 1]) { valueEnd &-= 1 }
        next = end &+ 1
        return (name, ByteSpan(start: valueStart, count: valueEnd &- valueStart))
    }

    @inline(__always)
    private static func lineFeed(_ p: UnsafePointer<UInt8>, from: Int, to: Int) -> Int? {
        find(asciiLF, p, from: from, to: to)
    }

    @inline(__always)
    private static func find(_ byte: UInt8, _ p: UnsafePointer<UInt8>, from: Int, to: Int) -> Int? {
        guard from < to, let hit = memchr(p + from, Int32(byte), to &- from) else { return nil }
        return UnsafeRawPointer(hit) - UnsafeRawPointer(p)
    }
}
