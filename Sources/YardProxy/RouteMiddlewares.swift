#if canImport(Glibc)
import Glibc
#endif
import YardHTTP
import YardBalancing
import YardIO
import YardModel
import Synchronization

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
/// Requests given an ID by this process: the IDs of one process never repeat. An atomic
/// touched only by routes with request_id (one relaxed add per such request).
private let requestIDCount = Atomic<UInt64>(0)

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
            appendRequestID(into: &out)
            out.append("\r\n")
        }
    }

    /// 32 hex digits: the process seed mixed with a process-wide count (never the same
    /// twice in one process; `mix` is a bijection) and the clock.
    private func appendRequestID(into out: inout ByteBuffer) {
        let count = requestIDCount.wrappingAdd(1, ordering: .relaxed).newValue
        let high = HashKey.mix(requestIDSeed &+ count)
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

// MARK: - Refusals (called from dispatch, after routing)

extension Worker {
    /// The status a route's middlewares answer with instead of forwarding (403 for a
    /// client outside an ip_allow), or nil to forward.
    func routeStepsRefusal(_ c: ClientConnection, _ steps: RouteSteps, base: UnsafeRawBufferPointer) -> (status: Int, reason: String)? {
        guard !steps.allow.isEmpty else { return nil }
        let allowed = withClientAddress(c, base: base) { address in
            guard let address else { return false }
            // An IPv4-mapped IPv6 peer is checked as the IPv4 address it is.
            let mapped = address.count == 16 && address[0..<10].allSatisfy { $0 == 0 } && address[10] == 0xFF && address[11] == 0xFF
            let v4 = mapped ? UnsafeRawBufferPointer(rebasing: address[12..<16]) : address
            return steps.allow.allSatisfy { networks in networks.contains { $0.contains(v4) || $0.contains(address) } }
        }
        return allowed ? nil : (403, "client address not in the route's ip_allow")
    }

    /// Calls `body` with the client's address (4 or 16 bytes): the peer's, or, when the
    /// peer is in `trusted_proxies`, the rightmost X-Forwarded-For entry that is not a
    /// trusted proxy. nil when that entry is not an IP literal (never allowed).
    func withClientAddress<T>(_ c: ClientConnection, base: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer?) -> T) -> T {
        guard c.trustedPeer else { return c.peerBytes.withUnsafeBytes { body($0) } }
        var address = in6_addr()
        var fieldIndex = c.head.headerCount - 1
        while fieldIndex >= 0 {
            defer { fieldIndex -= 1 }
            let field = c.fields[fieldIndex]
            guard field.kind == .xForwardedFor else { continue }
            let value = field.value.bytes(in: base)
            var end = value.count
            while end > 0 {
                var start = end
                while start > 0 && value[start - 1] != UInt8(ascii: ",") { start -= 1 }
                var (from, to) = (start, end)
                while from < to && (value[from] == 0x20 || value[from] == 0x09) { from += 1 }
                while to > from && (value[to - 1] == 0x20 || value[to - 1] == 0x09) { to -= 1 }
                end = start - 1
                guard to > from else { continue }
                let count = parseAddress(UnsafeRawBufferPointer(rebasing: value[from..<to]), into: &address)
                guard count > 0 else { return body(nil) }
                let trusted = withUnsafeBytes(of: &address) { raw in
                    let bytes = UnsafeRawBufferPointer(rebasing: raw[0..<count])
                    return settings.trustedProxies.contains { $0.contains(bytes) }
                }
                if !trusted { return withUnsafeBytes(of: &address) { body(UnsafeRawBufferPointer(rebasing: $0[0..<count])) } }
            }
        }
        // Every hop was a trusted proxy: the peer is as close to the client as we know.
        return c.peerBytes.withUnsafeBytes { body($0) }
    }

    /// Parses an IPv4 or IPv6 literal into `address` (IPv4 in its first 4 bytes); returns
    /// 4, 16, or 0 when the text is neither. No allocation: the text is copied to the stack.
    private func parseAddress(_ text: UnsafeRawBufferPointer, into address: inout in6_addr) -> Int {
        guard text.count < 64 else { return 0 }
        var cString = (UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        return withUnsafeMutableBytes(of: &cString) { buffer in
            buffer.copyMemory(from: text)
            let pointer = buffer.baseAddress!.assumingMemoryBound(to: CChar.self)
            if inet_pton(AF_INET, pointer, &address) == 1 { return 4 }
            if inet_pton(AF_INET6, pointer, &address) == 1 { return 16 }
            return 0
        }
    }
}
