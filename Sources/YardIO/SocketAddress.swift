#if canImport(Glibc)
import Glibc
#endif

/// An IPv4 or IPv6 socket address, stored inline (no heap) so it can live in pools.
public struct SocketAddress: Sendable, Equatable, CustomStringConvertible {
    public var storage: sockaddr_storage
    public var length: socklen_t

    /// Parses an IP literal (`127.0.0.1`, `::1`, `[::1]`) or `localhost` and a port.
    /// Returns nil for anything else (host names are resolved by discovery, not here).
    public init?(host: String, port: UInt16) {
        var host = host
        if host == "localhost" { host = "127.0.0.1" }
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        storage = sockaddr_storage()
        var v4 = in_addr()
        var v6 = in6_addr()
        if inet_pton(AF_INET, host, &v4) == 1 {
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = port.bigEndian
            sin.sin_addr = v4
            withUnsafeMutableBytes(of: &storage) { raw in
                withUnsafeBytes(of: sin) { raw.copyMemory(from: $0) }
            }
            length = socklen_t(MemoryLayout<sockaddr_in>.size)
        } else if inet_pton(AF_INET6, host, &v6) == 1 {
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            sin6.sin6_port = port.bigEndian
            sin6.sin6_addr = v6
            withUnsafeMutableBytes(of: &storage) { raw in
                withUnsafeBytes(of: sin6) { raw.copyMemory(from: $0) }
            }
            length = socklen_t(MemoryLayout<sockaddr_in6>.size)
        } else {
            return nil
        }
    }

    /// Parses `host:port`, `[v6]:port` or `:port` (all addresses).
    public init?(hostPort: String) {
        guard let colon = hostPort.lastIndex(of: ":"),
              let port = UInt16(hostPort[hostPort.index(after: colon)...]) else { return nil }
        var host = String(hostPort[..<colon])
        if host.isEmpty { host = "0.0.0.0" }
        self.init(host: host, port: port)
    }

    public init(storage: sockaddr_storage, length: socklen_t) {
        self.storage = storage
        self.length = length
    }

    public var family: Int32 { Int32(storage.ss_family) }

    public var port: UInt16 {
        withUnsafeBytes(of: storage) { raw in
            if family == AF_INET6 {
                return UInt16(bigEndian: raw.load(fromByteOffset: 2, as: UInt16.self))
            }
            return UInt16(bigEndian: raw.load(fromByteOffset: 2, as: UInt16.self))
        }
    }

    /// The IP as text (`127.0.0.1`, `::1`), without port or brackets.
    public var ipText: String {
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        _ = withUnsafeBytes(of: storage) { raw in
            if family == AF_INET6 {
                inet_ntop(AF_INET6, raw.baseAddress! + 8, &text, socklen_t(text.count))
            } else {
                inet_ntop(AF_INET, raw.baseAddress! + 4, &text, socklen_t(text.count))
            }
        }
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public var description: String {
        family == AF_INET6 ? "[\(ipText)]:\(port)" : "\(ipText):\(port)"
    }

    public static func == (lhs: SocketAddress, rhs: SocketAddress) -> Bool {
        guard lhs.length == rhs.length else { return false }
        return withUnsafeBytes(of: lhs.storage) { l in
            withUnsafeBytes(of: rhs.storage) { r in memcmp(l.baseAddress!, r.baseAddress!, Int(lhs.length)) == 0 }
        }
    }
}
