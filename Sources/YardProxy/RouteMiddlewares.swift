import YardHTTP
import YardBalancing
import YardIO
import YardModel

// The request-path side of routing beyond host and path: header conditions read in place
// from the parsed head.

/// A request's header fields as `RoutingTable.route` reads them: spans into the client's
/// buffer. Threading: lives for one call on the owning event loop.
struct ParsedRequestFields: RouteFields {
    let base: UnsafeRawBufferPointer
    let fields: UnsafeMutablePointer<HeaderField>
    let count: Int

    func contains(name: [UInt8], value: [UInt8]?) -> Bool {
        for i in 0..<count {
            let field = fields[i]
            guard Int(field.name.count) == name.count else { continue }
            let fieldName = field.name.bytes(in: base)
            var same = true
            for j in 0..<name.count {
                var c = fieldName[j]
                if c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z") { c |= 0x20 }
                if c != name[j] { same = false; break }
            }
            guard same else { continue }
            guard let value else { return true }
            let fieldValue = field.value.bytes(in: base)
            if fieldValue.count == value.count, zip(fieldValue, value).allSatisfy({ $0 == $1 }) { return true }
        }
        return false
    }
}

extension RequestHead {
    /// The query after `?` in `base` (empty when the target has none).
    func queryBytes(in base: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        let start = Int(queryStart) + 1
        let end = Int(targetSpan.start) + Int(targetSpan.count)
        guard start <= end, end <= base.count else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        return UnsafeRawBufferPointer(rebasing: base[start..<end])
    }
}

// MARK: - Request head edits (called from HeadWriter.swift)

/// Per-process seed for generated request IDs, so two replicas (or restarts) do not repeat.
private let requestIDSeed = UInt64.random(in: 1...UInt64.max)

extension Worker {
    /// Writes the path `steps` make of `path` (empty means `/`) and returns how many bytes
    /// strip_prefix removed (0 when none).
    func appendRewrittenPath(_ steps: RouteSteps, path: UnsafeRawBufferPointer, into out: inout ByteBuffer) -> Int {
        if let replacement = steps.replacePath {
            out.append(replacement)
            return 0
        }
        let stripped = steps.strippedLength(path)
        out.append(steps.addPrefix)
        let rest = UnsafeRawBufferPointer(rebasing: path[stripped...])
        if rest.first != UInt8(ascii: "/") { out.append("/") }
        out.append(rest)
        return stripped
    }

    /// Appends the fields the route's middlewares add: headers `set`, X-Forwarded-Prefix for
    /// a stripped prefix, X-Replaced-Path for a replaced path, and a request ID when the
    /// client sent none.
    func appendMiddlewareFields(_ c: ClientConnection, _ steps: RouteSteps, base: UnsafeRawBufferPointer, stripped: Int, into out: inout ByteBuffer) {
        out.append(steps.addLines)
        let path = c.head.pathSpan.bytes(in: base)
        if stripped > 0 {
            out.append("X-Forwarded-Prefix: ")
            out.append(UnsafeRawBufferPointer(rebasing: path[0..<stripped]))
            out.append("\r\n")
        }
        if steps.replacePath != nil {
            out.append("X-Replaced-Path: ")
            if path.isEmpty { out.append("/") } else { out.append(path) }
            out.append("\r\n")
        }
        if !steps.requestIDHeader.isEmpty,
           !ParsedRequestFields(base: base, fields: c.fields, count: c.head.headerCount).contains(name: steps.requestIDHeader, value: nil) {
            out.append(steps.requestIDName)
            out.append(": ")
            appendRequestID(c, into: &out)
            out.append("\r\n")
        }
    }

    /// 32 hex digits, unique per request in practice: the process seed mixed with the
    /// connection's identity, its request count and the clock.
    private func appendRequestID(_ c: ClientConnection, into out: inout ByteBuffer) {
        let identity = UInt64(UInt(bitPattern: ObjectIdentifier(c).hashValue))
        let high = HashKey.mix(requestIDSeed ^ identity &+ UInt64(truncatingIfNeeded: c.served))
        let low = HashKey.mix(high ^ UInt64(bitPattern: now) &+ 0x9E37_79B9_7F4A_7C15)
        let digits: StaticString = "0123456789abcdef"
        var hex = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))  // 32 bytes of stack, no heap
        withUnsafeMutableBytes(of: &hex) { bytes in
            for i in 0..<16 {
                bytes[i] = digits.utf8Start[Int((high >> UInt64(60 - 4 * i)) & 0xf)]
                bytes[16 + i] = digits.utf8Start[Int((low >> UInt64(60 - 4 * i)) & 0xf)]
            }
            out.append(UnsafeRawBufferPointer(bytes))
        }
    }
}
