// Taking a chunked HTTP/1.1 body apart: data, framing, trailers.

/// Splits a chunked body (RFC 9112 §7.1) into its data and its trailer section, for relaying
/// it into a protocol with its own framing (HTTP/2 DATA frames and trailers).
///
/// Lenient by design: the bytes were validated by `ChunkedDecoder` first, which also says
/// where the body ends; this only has to find the pieces. Every split of the input gives the
/// same pieces in the same order (data may come in more, smaller runs).
///
/// Threading: a value owned by one exchange.
public struct Dechunker: Sendable {
    enum State: UInt8, Sendable { case size, extension_, data, dataEnd, trailers, done }

    /// One run of input bytes.
    public enum Piece: Equatable, Sendable {
        /// Body data at this range of the input.
        case data(Range<Int>)
        /// Bytes of the trailer section (field lines with their CRLFs; the final empty line
        /// is not included).
        case trailer(Range<Int>)
        /// Chunk sizes, extensions and CRLFs: nothing to relay.
        case framing
        /// The body ended (after the final empty line).
        case end
    }

    var state = State.size
    var remaining: Int64 = 0
    /// Bytes of the current trailer line other than CR.
    var lineLength = 0

    public init() {}

    public var isDone: Bool { state == .done }

    /// The next piece of `bytes` and how many input bytes it covers (at least 1, unless
    /// `bytes` is empty or the body already ended).
    public mutating func next(_ bytes: UnsafeRawBufferPointer) -> (count: Int, piece: Piece) {
        let n = bytes.count
        guard n > 0, state != .done else { return (0, .end) }
        switch state {
        case .data:
            let take = Int(min(Int64(n), remaining))
            remaining -= Int64(take)
            if remaining == 0 { state = .dataEnd }
            return (take, .data(0..<take))
        case .trailers:
            var i = 0
            while i < n {
                let byte = bytes[i]
                i += 1
                if byte == UInt8(ascii: "\n") {
                    if lineLength == 0 {
                        state = .done
                        // The empty line's CR (if any) is not trailer content.
                        let content = i - 1 - (i >= 2 && bytes[i - 2] == UInt8(ascii: "\r") ? 1 : 0)
                        return content > 0 ? (content, .trailer(0..<content)) : (i, .end)
                    }
                    lineLength = 0
                } else if byte != UInt8(ascii: "\r") {
                    lineLength += 1
                }
            }
            // A CR that may start the final empty line is not trailer content.
            let end = lineLength == 0 && bytes[n - 1] == UInt8(ascii: "\r") ? n - 1 : n
            return (n, .trailer(0..<end))
        default:
            var i = 0
            while i < n {
                let byte = bytes[i]
                i += 1
                switch state {
                case .size:
                    if let v = hexDigit(byte) {
                        remaining = remaining &* 16 &+ Int64(v)
                    } else if byte == UInt8(ascii: "\n") {
                        if remaining == 0 {
                            state = .trailers
                            lineLength = 0
                        } else {
                            state = .data
                        }
                        return (i, .framing)
                    } else if byte != UInt8(ascii: "\r") {
                        state = .extension_
                    }
                case .extension_:
                    if byte == UInt8(ascii: "\n") {
                        state = remaining == 0 ? .trailers : .data
                        lineLength = 0
                        return (i, .framing)
                    }
                case .dataEnd:
                    if byte == UInt8(ascii: "\n") {
                        state = .size
                        remaining = 0
                        return (i, .framing)
                    }
                default:
                    break
                }
            }
            return (n, .framing)
        }
    }

    private func hexDigit(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
