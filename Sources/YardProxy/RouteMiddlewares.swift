import YardHTTP
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
