import YardHTTP
import YardIO

// Rewriting heads for forwarding. Kept fields are copied in runs of whole lines straight
// from the received head (one memcpy for a typical request); only dropped fields break a run.

extension Worker {
    /// Writes the request head to send upstream: the request line (rebuilt in origin form
    /// when the path was normalized or the target was absolute), the fields minus
    /// hop-by-hop ones (`Upgrade: h2c` and `HTTP2-Settings` included), one normalized
    /// Content-Length when the client repeated it, the target's authority as Host for an
    /// absolute-form target, then X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host and Via.
    ///
    /// Forwarding fields: from a peer in `trusted_proxies`, the client's X-Forwarded-For is
    /// extended and its Forwarded, X-Forwarded-Proto and X-Forwarded-Host are kept; from any
    /// other peer all four are dropped and replaced by what the proxy saw.
    func writeRequestHead(_ c: ClientConnection, base: UnsafeRawBufferPointer, into out: inout ByteBuffer) {
        let head = c.head
        let host = head.hostSpan.bytes(in: base)
        // The route's middlewares (Middleware.swift): nil for the common route without any.
        let steps = c.exchange.route.flatMap { $0.steps.isEmpty ? nil : $0.steps }
        _ = out.reserve(head.headLength + 192 + c.peerText.count + 3 * host.count + (steps?.extraRequestBytes(head) ?? 0))
        let lineStart = Int(head.methodSpan.start)
        let firstField = head.headerCount > 0 ? Int(c.fields[0].name.start) : head.headLength - 2
        var stripped = 0
        if let steps, steps.rewritesPath {
            // Origin form with the rewritten path (RouteMiddlewares.swift).
            out.append(UnsafeRawBufferPointer(rebasing: base[lineStart..<Int(head.targetSpan.start)]))
            stripped = appendRewrittenPath(steps, path: head.pathSpan.bytes(in: base), into: &out)
            out.append(UnsafeRawBufferPointer(rebasing: base[Int(head.queryStart)..<firstField]))
        } else if head.absoluteForm || c.exchange.pathRewritten {
            // Origin form: method, the (normalized) path, then the query and version as sent.
            out.append(UnsafeRawBufferPointer(rebasing: base[lineStart..<Int(head.targetSpan.start)]))
            if head.pathSpan.count > 0 { out.append(head.pathSpan.bytes(in: base)) } else { out.append("/") }
            out.append(UnsafeRawBufferPointer(rebasing: base[Int(head.queryStart)..<firstField]))
        } else {
            out.append(UnsafeRawBufferPointer(rebasing: base[lineStart..<firstField]))
        }

        // request_id's traceparent: a valid one goes on, else it and its tracestate are replaced.
        let newTrace = steps?.traceparent == true && !hasValidTraceparent(c, base: base)
        let trusted = c.trustedPeer
        var sawForwardedFor = false
        var sawForwardedProto = false
        var sawForwardedHost = false
        var teTrailers = false
        var runStart = -1
        for i in 0..<head.headerCount {
            let field = c.fields[i]
            let start = Int(field.name.start)
            let keep: Bool
            var rewriteUpgrade = false
            switch field.kind {
            case .xForwardedFor:
                sawForwardedFor = true
                keep = false
            case .xForwardedProto:
                sawForwardedProto = trusted
                keep = trusted
            case .xForwardedHost:
                sawForwardedHost = trusted
                keep = trusted
            case .forwarded:
                keep = trusted
            case .upgrade:
                // A list naming h2c is rewritten without it (below).
                keep = c.exchange.upgradeRequested && !head.upgradeListsH2C
                rewriteUpgrade = c.exchange.upgradeRequested && head.upgradeListsH2C
            case .contentLength:
                keep = !head.contentLengthNeedsRewrite
            case .host:
                keep = !head.absoluteForm
            case .te:
                // Hop-by-hop, but "TE: trailers" is how a gRPC client says it reads trailers:
                // an HTTP/2 upstream gets it (H2UpstreamStreams.swift keeps only that value).
                keep = false
                if field.value.count == 8, c.exchange.route?.service?.upstream.multiplexed == true {
                    teTrailers = zip(field.value.bytes(in: base), "trailers".utf8).allSatisfy { $0 | 0x20 == $1 }
                }
            default:
                keep = !field.hopByHop && !(steps.map { $0.drops(field.name.bytes(in: base)) || (newTrace && isTraceField(field.name.bytes(in: base))) } ?? false)
            }
            if keep {
                if runStart < 0 { runStart = start }
            } else if runStart >= 0 {
                out.append(UnsafeRawBufferPointer(rebasing: base[runStart..<start]))
                runStart = -1
            }
            if rewriteUpgrade { appendUpgradeWithoutH2C(field.value.bytes(in: base), into: &out) }
        }
        if runStart >= 0 {
            out.append(UnsafeRawBufferPointer(rebasing: base[runStart..<(head.headLength - 2)]))
        }
        if head.absoluteForm {
            out.append("Host: ")
            out.append(host)
            out.append("\r\n")
        }
        if head.contentLengthNeedsRewrite {
            out.append("Content-Length: ")
            if case .contentLength(let length) = head.framing { out.appendDecimal(Int(length)) } else { out.append("0") }
            out.append("\r\n")
        }

        out.append("X-Forwarded-For: ")
        if sawForwardedFor && trusted {
            for i in 0..<head.headerCount where c.fields[i].kind == .xForwardedFor {
                let value = c.fields[i].value.bytes(in: base)
                if value.isEmpty { continue }
                out.append(value)
                out.append(", ")
            }
        }
        out.append(c.peerText)
        if c.exchange.upgradeRequested { out.append("\r\nConnection: upgrade") }
        if sawForwardedProto {
            out.append("\r\n")
        } else if !c.secure {
            out.append("\r\nX-Forwarded-Proto: http\r\n")
        } else {
            out.append("\r\nX-Forwarded-Proto: https\r\n")
        }
        if !host.isEmpty && !sawForwardedHost {
            out.append("X-Forwarded-Host: ")
            out.append(host)
            out.append("\r\n")
        }
        if teTrailers { out.append("TE: trailers\r\n") }
        if let steps { appendMiddlewareFields(c, steps, base: base, stripped: stripped, newTrace: newTrace, into: &out) }
        if let auth = c.exchange.auth, !auth.lines.isEmpty {
            // forward_auth's copied fields (ForwardAuthCheck.swift).
            _ = out.reserve(auth.lines.count + 32)
            out.append(auth.lines)
        }
        out.append("Via: 1.1 switchyard\r\n\r\n")
    }

    /// Writes the response head to send to the client: the status line (as HTTP/1.1), the
    /// fields minus hop-by-hop ones (a repeated Content-Length as one field), and `Connection: close` when the client connection ends
    /// after this response (or `keep-alive` for an HTTP/1.0 client that keeps it).
    func writeResponseHead(_ c: ClientConnection, _ u: UpstreamConnection, closeAfter: Bool, into out: inout ByteBuffer) {
        let base = u.inBuf.readable
        let head = u.head
        // A headers middleware's response edits (Middleware.swift): nil for most routes.
        let edits = c.exchange.route.flatMap { $0.steps.editsResponse && !head.isInterim ? $0.steps : nil }
        _ = out.reserve(head.headLength + 72 + (edits?.responseAddLines.count ?? 0))
        let firstField = head.headerCount > 0 ? Int(u.fields[0].name.start) : head.headLength - 2
        if head.versionMinor == 0 {
            out.append("HTTP/1.1")
            out.append(UnsafeRawBufferPointer(rebasing: base[8..<firstField]))
        } else {
            out.append(UnsafeRawBufferPointer(rebasing: base[0..<firstField]))
        }
        let switching = head.status == 101
        let gzip = c.exchange.gzip != nil
        let rewriteLength = head.contentLengthNeedsRewrite && !gzip
        var runStart = -1
        for i in 0..<head.headerCount {
            let field = u.fields[i]
            let start = Int(field.name.start)
            if (!field.hopByHop || (switching && field.kind == .upgrade)) && !(rewriteLength && field.kind == .contentLength)
                && !(edits?.dropsFromResponse(field.name.bytes(in: base)) ?? false) && !(gzip && gzipReplaces(field, base: base)) {
                if runStart < 0 { runStart = start }
            } else if runStart >= 0 {
                out.append(UnsafeRawBufferPointer(rebasing: base[runStart..<start]))
                runStart = -1
            }
        }
        if runStart >= 0 {
            out.append(UnsafeRawBufferPointer(rebasing: base[runStart..<(head.headLength - 2)]))
        }
        if rewriteLength {
            // Repeated identical Content-Length fields (RFC 9112 §6.3): one goes on.
            out.append("Content-Length: ")
            out.appendDecimal(Int(head.contentLength))
            out.append("\r\n")
        }
        if let edits { out.append(edits.responseAddLines) }
        if gzip { appendGzipFields(u, into: &out) }
        if c.exchange.stickyCookiePoint >= 0 && !head.isInterim { appendStickyCookie(c, into: &out) }
        if switching {
            out.append("Connection: upgrade\r\n")
        } else if !head.isInterim {
            if closeAfter {
                out.append("Connection: close\r\n")
            } else if c.exchange.requestVersionMinor == 0 {
                out.append("Connection: keep-alive\r\n")
            }
        }
        out.append("\r\n")
    }
}
