import YardHTTP
import YardIO

/// Field lines written into a buffer as `name: value\r\n`, with each field's spans recorded
/// (relative to the buffer's readable start) while `recording`, for a head completed from its
/// spans instead of parsed (`completeLaidOutRequestHead`, `completeLaidOutResponseHead`): the
/// HTTP/2 paths, whose fields nghttp2 has checked. Up to `capacity` fields are recorded; past
/// that `overflowed` is set (the head is then refused, or parsed and refused, as too large).
///
/// Threading: a value over the caller's buffers, used on one worker's loop.
struct LaidOutFields {
    let fields: UnsafeMutablePointer<HeaderField>
    let capacity: Int
    let recording: Bool
    private(set) var count = 0
    private(set) var overflowed = false
    /// Where the head ends, when bytes follow it in the same buffer (a trailers-only gRPC
    /// response's chunked end); nil when the head is the last thing written.
    private(set) var headLength: Int?

    init(fields: UnsafeMutablePointer<HeaderField>, capacity: Int, recording: Bool) {
        self.fields = fields
        self.capacity = capacity
        self.recording = recording
    }

    mutating func append(_ name: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer, to out: inout ByteBuffer) {
        _ = out.reserve(name.count + value.count + 4)
        append(name, to: &out) { $0.append(value) }
    }

    /// A field whose value `writeValue` appends (a joined list).
    mutating func append(_ name: UnsafeRawBufferPointer, to out: inout ByteBuffer, writeValue: (inout ByteBuffer) -> Void) {
        let nameStart = out.readableBytes
        out.append(name)
        out.append(": ")
        let valueStart = out.readableBytes
        writeValue(&out)
        let valueEnd = out.readableBytes
        out.append("\r\n")
        guard recording else { return }
        guard count < capacity else {
            overflowed = true
            return
        }
        fields[count] = HeaderField(name: ByteSpan(start: nameStart, count: name.count),
                                    value: ByteSpan(start: valueStart, count: valueEnd &- valueStart), kind: .other, hopByHop: false)
        count &+= 1
    }

    mutating func headEnds(at length: Int) { headLength = length }
}
