#if canImport(Glibc)
import Glibc
#endif
import YardHTTP
import YardBalancing
import YardIO
import YardModel
import Synchronization

// The request-path side of routing beyond host and path: header conditions read in place
// from the parsed head, the request-head edits of a route's middlewares (HeadWriter.swift
// calls them), and the answers its middlewares give themselves (redirects, 401, 403, 429)
// for HTTP/1.1 and HTTP/2 clients.

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

extension RouteSteps {
    /// Room the route's edits may add to a request head beyond what it had: the added
    /// lines, a path prefix or replacement, X-Forwarded-Prefix / X-Replaced-Path (at most
    /// the path again), a request ID and a traceparent.
    func extraRequestBytes(_ head: RequestHead) -> Int {
        addLines.count + addPrefix.count + (replacePath?.count ?? 0) + Int(head.pathSpan.count) + requestIDName.count + 160
    }
}

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
    func appendMiddlewareFields(_ c: ClientConnection, _ steps: RouteSteps, base: UnsafeRawBufferPointer, stripped: Int,
                                newTrace: Bool, into out: inout ByteBuffer) {
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
        if newTrace {
            // version 00, a new trace-id, a new parent-id (the first half of another ID).
            out.append("traceparent: 00-")
            appendRequestID(into: &out)
            out.append("-")
            let parentStart = out.writerIndex
            appendRequestID(into: &out)
            out.writerIndex = parentStart + 16
            out.append(steps.traceSampled ? "-01\r\n" : "-00\r\n")
        }
    }

    /// Whether the request carries exactly one `traceparent` and it is valid (TraceContext.swift).
    func hasValidTraceparent(_ c: ClientConnection, base: UnsafeRawBufferPointer) -> Bool {
        var valid = false
        for i in 0..<c.head.headerCount {
            let field = c.fields[i]
            let name = field.name.bytes(in: base)
            guard name.count == 11, RouteSteps.sameName(name, "traceparent") else { continue }
            if valid { return false }
            valid = TraceContext.isValidTraceparent(field.value.bytes(in: base))
            if !valid { return false }
        }
        return valid
    }

    func isTraceField(_ name: UnsafeRawBufferPointer) -> Bool {
        (name.count == 11 && RouteSteps.sameName(name, "traceparent")) || (name.count == 10 && RouteSteps.sameName(name, "tracestate"))
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

// MARK: - Answers of our own (called from dispatch, after routing)

extension Worker {
    /// Runs the route's gates in the route's order: ip_allow (403), redirect_scheme and
    /// redirect (3xx with a Location; a regex redirect whose Location would be invalid
    /// forwards instead), rate_limit (429), basic_auth (401). Returns true when
    /// one of them answered the request. Threading: the worker's loop; nothing allocated.
    func answeredByGates(_ c: ClientConnection, _ steps: RouteSteps, base: UnsafeRawBufferPointer) -> Bool {
        let head = c.head
        for gate in steps.gates {
            switch gate {
            case .allow(let networks):
                let allowed = withClientAddress(c, base: base) { address in
                    guard let address else { return false }
                    // An IPv4-mapped IPv6 peer is checked as the IPv4 address it is.
                    let mapped = address.count == 16 && address[0..<10].allSatisfy { $0 == 0 } && address[10] == 0xFF && address[11] == 0xFF
                    let v4 = mapped ? UnsafeRawBufferPointer(rebasing: address[12..<16]) : address
                    return networks.contains { $0.contains(v4) || $0.contains(address) }
                }
                if !allowed {
                    respondError(c, status: 403, reason: "client address not in the route's ip_allow")
                    return true
                }
            case .redirectScheme(let redirect):
                guard !redirect.isSatisfied(secure: c.secure) else { continue }
                let host = head.hostSpan.bytes(in: base)
                guard !host.isEmpty else {
                    respondError(c, status: 400, reason: "redirect_scheme needs a Host to redirect to")
                    return true
                }
                answerFields.clear()
                appendLocation { append in
                    redirect.writeLocation(host: host, path: head.pathSpan.bytes(in: base), query: queryIfAny(head, base), append)
                }
                respondDirect(c, status: RedirectStatus.code(permanent: redirect.permanent, safeMethod: head.method == .get || head.method == .head))
                return true
            case .redirect(let redirect):
                let path = head.pathSpan.bytes(in: base)
                guard let matched = redirect.matchedLength(path) else { continue }
                answerFields.clear()
                appendLocation { append in
                    redirect.writeLocation(path: path, matched: matched, query: queryIfAny(head, base), append)
                }
                respondDirect(c, status: RedirectStatus.code(permanent: redirect.permanent, safeMethod: head.method == .get || head.method == .head))
                return true
            case .redirectRegex(let redirect):
                answerFields.clear()
                _ = answerFields.reserve(12)
                answerFields.append("Location: ")
                let outcome = redirect.writeLocation(secure: c.secure, host: head.hostSpan.bytes(in: base), path: head.pathSpan.bytes(in: base),
                                                     query: queryIfAny(head, base)) { piece in
                    _ = answerFields.reserve(piece.count)
                    answerFields.append(piece)
                }
                guard outcome == .redirected else {
                    answerFields.clear()
                    if outcome == .refused { logRefusedLocation(redirect) }
                    continue
                }
                _ = answerFields.reserve(2)
                answerFields.append("\r\n")
                respondDirect(c, status: RedirectStatus.code(permanent: redirect.permanent, safeMethod: head.method == .get || head.method == .head))
                return true
            case .rateLimit(let limiter, let header):
                let hash = rateLimitKey(c, header: header, seed: limiter.seed, base: base)
                let wait = limiter.admit(hash: hash, nowMicros: monotonicMicroseconds())
                guard wait > 0 else { continue }
                answerFields.clear()
                _ = answerFields.reserve(40)
                answerFields.append("Retry-After: ")
                answerFields.appendDecimal(RateLimiter.retryAfterSeconds(wait))
                answerFields.append("\r\n")
                respondDirect(c, status: 429, body: "too many requests: wait for the time in Retry-After\n")
                return true
            case .basicAuth(let auth):
                if basicAuthPasses(c, auth, base: base) { continue }
                answerFields.clear()
                _ = answerFields.reserve(auth.challenge.count)
                answerFields.append(auth.challenge)
                respondDirect(c, status: 401, body: "unauthorized: this route needs a user name and password\n")
                return true
            }
        }
        return false
    }

    /// A regex redirect's replacement gave a Location a header cannot carry: the request
    /// was forwarded. Logged at the 1st, 2nd, 4th, 8th... refusal so a flood cannot fill the log.
    private func logRefusedLocation(_ redirect: RegexRedirect) {
        let count = redirect.refusals.count.load(ordering: .relaxed)
        guard count & (count &- 1) == 0 else { return }
        Log.warning("redirect regex '\(redirect.regex.pattern)' -> '\(redirect.replacement)' built a Location with a space, control or non-ASCII byte; forwarded instead of redirected (\(count) so far)")
    }

    /// Whether the request's (only) Authorization field names a user of the gate's file.
    private func basicAuthPasses(_ c: ClientConnection, _ auth: BasicAuthGate, base: UnsafeRawBufferPointer) -> Bool {
        var value: UnsafeRawBufferPointer?
        for i in 0..<c.head.headerCount {
            let field = c.fields[i]
            guard RouteSteps.sameName(field.name.bytes(in: base), "authorization") else { continue }
            if value != nil { return false }
            value = field.value.bytes(in: base)
        }
        guard let value else { return false }
        return auth.check(authorization: value)
    }

    /// Appends `Location: ...` CRLF to `answerFields`, the value written by `write`.
    private func appendLocation(_ write: ((UnsafeRawBufferPointer) -> Void) -> Void) {
        _ = answerFields.reserve(12)
        answerFields.append("Location: ")
        write { piece in
            _ = answerFields.reserve(piece.count)
            answerFields.append(piece)
        }
        _ = answerFields.reserve(2)
        answerFields.append("\r\n")
    }

    /// The bytes after `?`, or nil when the target has no `?`.
    private func queryIfAny(_ head: RequestHead, _ base: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer? {
        Int(head.queryStart) < Int(head.targetSpan.start) + Int(head.targetSpan.count) ? head.queryBytes(in: base) : nil
    }

    /// The rate_limit key's hash: the named header's value when the request has it, else
    /// the client address.
    private func rateLimitKey(_ c: ClientConnection, header: [UInt8], seed: UInt64, base: UnsafeRawBufferPointer) -> UInt64 {
        if !header.isEmpty {
            for i in 0..<c.head.headerCount {
                let field = c.fields[i]
                let name = field.name.bytes(in: base)
                if name.count == header.count && zip(name, header).allSatisfy({ ($0 >= 65 && $0 <= 90 ? $0 | 0x20 : $0) == $1 }) {
                    return HashKey.hash(field.value.bytes(in: base), seed: seed)
                }
            }
        }
        return withClientAddress(c, base: base) { address in
            address.map { HashKey.hash($0, seed: seed) } ?? HashKey.hash(UnsafeRawBufferPointer(start: nil, count: 0), seed: seed)
        }
    }

    /// Answers the request with `status`, the field lines in `answerFields` and `body`
    /// (text/plain; none when empty), over HTTP/1.1 or as an HTTP/2 response.
    func respondDirect(_ c: ClientConnection, status: Int, body: StaticString = "") {
        // A HEAD request gets the head only (its Content-Length then says 0).
        let bodyBytes = UnsafeRawBufferPointer(start: body.utf8Start, count: c.head.method == .head ? 0 : body.utf8CodeUnitCount)
        if c.h2 != nil { return h2SendOwnAnswer(c, status: status, fieldLines: answerFields.readable, body: bodyBytes) }
        let close = !c.exchange.keepAlive || !c.exchange.requestBodyDone || draining || c.readClosed
        sendOwnAnswer(c, status: status, close: close) { out in
            let start = out.writerIndex
            _ = out.reserve(answerFields.readableBytes + bodyBytes.count + 128)
            out.append("HTTP/1.1 ")
            out.appendDecimal(status)
            out.append(" ")
            out.append(Worker.reasonPhrase(status))
            out.append("\r\n")
            out.append(answerFields.readable)
            if !bodyBytes.isEmpty { out.append("Content-Type: text/plain\r\n") }
            out.append("Content-Length: ")
            out.appendDecimal(bodyBytes.count)
            if close {
                out.append("\r\nConnection: close\r\n\r\n")
            } else {
                out.append(c.exchange.requestVersionMinor == 0 ? "\r\nConnection: keep-alive\r\n\r\n" : "\r\n\r\n")
            }
            out.append(bodyBytes)
            return out.writerIndex - start
        }
    }

    static func reasonPhrase(_ status: Int) -> StaticString {
        switch status {
        case 301: "Moved Permanently"
        case 302: "Found"
        case 307: "Temporary Redirect"
        case 308: "Permanent Redirect"
        case 401: "Unauthorized"
        case 429: "Too Many Requests"
        default: "Answer"
        }
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
            guard let start = buffer.baseAddress else { return 0 }
            let pointer = start.assumingMemoryBound(to: CChar.self)
            if inet_pton(AF_INET, pointer, &address) == 1 { return 4 }
            if inet_pton(AF_INET6, pointer, &address) == 1 { return 16 }
            return 0
        }
    }
}

/// Calls `body` with each `Name: value` CRLF line's name and value.
func forEachFieldLine(_ lines: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) -> Void) {
    var lineStart = 0
    var i = 0
    while i + 1 < lines.count {
        if lines[i] == 13 && lines[i + 1] == 10 {
            var colon = lineStart
            while colon < i && lines[colon] != UInt8(ascii: ":") { colon += 1 }
            var valueStart = min(colon + 1, i)
            while valueStart < i && lines[valueStart] == 32 { valueStart += 1 }
            if colon < i {
                body(UnsafeRawBufferPointer(rebasing: lines[lineStart..<colon]), UnsafeRawBufferPointer(rebasing: lines[valueStart..<i]))
            }
            i += 2
            lineStart = i
        } else {
            i += 1
        }
    }
}
