// Recognising the header fields the proxy treats specially, by name, without allocating.

// MARK: Classification

extension HeaderKind {
    /// The kind of the field whose name is `count` token bytes at `p + start` (names are
    /// case-insensitive). Dispatches on length first, so most names cost one comparison.
    ///
    /// Threading: a pure function of its arguments.
    @inline(__always)
    static func classify(_ p: UnsafePointer<UInt8>, _ start: Int, _ count: Int) -> HeaderKind {
        switch count {
        case 2:
            return bytesEqualFolded(p, start, 2, "te") ? .te : .other
        case 3:
            return bytesEqualFolded(p, start, 3, "via") ? .via : .other
        case 4:
            return bytesEqualFolded(p, start, 4, "host") ? .host : .other
        case 6:
            return bytesEqualFolded(p, start, 6, "expect") ? .expect : .other
        case 7:
            if bytesEqualFolded(p, start, 7, "upgrade") { return .upgrade }
            return bytesEqualFolded(p, start, 7, "trailer") ? .trailer : .other
        case 9:
            return bytesEqualFolded(p, start, 9, "forwarded") ? .forwarded : .other
        case 10:
            if bytesEqualFolded(p, start, 10, "connection") { return .connection }
            return bytesEqualFolded(p, start, 10, "keep-alive") ? .keepAlive : .other
        case 14:
            if bytesEqualFolded(p, start, 14, "content-length") { return .contentLength }
            return bytesEqualFolded(p, start, 14, "http2-settings") ? .http2Settings : .other
        case 15:
            return bytesEqualFolded(p, start, 15, "x-forwarded-for") ? .xForwardedFor : .other
        case 16:
            if bytesEqualFolded(p, start, 16, "x-forwarded-host") { return .xForwardedHost }
            return bytesEqualFolded(p, start, 16, "proxy-connection") ? .proxyConnection : .other
        case 17:
            if bytesEqualFolded(p, start, 17, "transfer-encoding") { return .transferEncoding }
            return bytesEqualFolded(p, start, 17, "x-forwarded-proto") ? .xForwardedProto : .other
        default:
            return .other
        }
    }

    /// Hop-by-hop by definition (RFC 9110 §7.6.1), whatever the Connection header says.
    @inline(__always) var isAlwaysHopByHop: Bool {
        switch self {
        case .connection, .keepAlive, .proxyConnection, .te, .trailer, .upgrade, .http2Settings: return true
        default: return false
        }
    }

    /// The kind of the field named `name` (any case): `classify` for a name outside a parsed head.
    public static func named(_ name: UnsafeRawBufferPointer) -> HeaderKind {
        guard let base = name.baseAddress, !name.isEmpty else { return .other }
        return classify(base.assumingMemoryBound(to: UInt8.self), 0, name.count)
    }

    /// Never relayed in a trailer section: the connection-specific fields (RFC 9113 §8.2.2
    /// makes them malformed in HTTP/2, trailers included) and the ones that frame or route
    /// the message, which mean nothing once the body has gone (RFC 9110 §6.5.1).
    public var isDroppedFromTrailers: Bool { isAlwaysHopByHop || isProtectedFromConnection }

    /// Fields a Connection header cannot make hop-by-hop. Content-Length and Transfer-Encoding
    /// frame the body the proxy forwards verbatim, and Host routes the request: letting a client
    /// strip them with `Connection: host` would desynchronise framing or routing downstream.
    @inline(__always) var isProtectedFromConnection: Bool {
        switch self {
        case .host, .contentLength, .transferEncoding: return true
        default: return false
        }
    }
}
