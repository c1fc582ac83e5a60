#if canImport(Glibc)
import Glibc
#endif
import YardModel

// forward_auth addresses given as `host:port`: the control plane resolves the host at load
// and on every reload (getaddrinfo blocks, so never on an event loop), and the routing table
// carries the address (ForwardAuth.resolvedAddress). A name that stops resolving keeps its
// last address; one that never resolved refuses the load.

extension Runtime {
    /// Resolves the forward_auth host names of `config` (see
    /// `SwitchyardConfig.resolvingHostNames`), logging each address kept after a failure.
    static func resolveForwardAuthHosts(_ config: inout SwitchyardConfig, previous: SwitchyardConfig?) throws(ConfigError) {
        let warnings = try config.resolvingHostNames(previous: previous, resolve: resolveHost)
        for warning in warnings { logger.warning("config: \(warning)") }
    }

    /// The first address getaddrinfo gives for `host` (an IPv4 one if there is any), as text.
    static func resolveHost(_ host: String) -> Result<String, ResolveFailure> {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, nil, &hints, &list)
        guard status == 0 else { return .failure(ResolveFailure(String(cString: gai_strerror(status)))) }
        defer { freeaddrinfo(list) }
        var chosen: UnsafeMutablePointer<addrinfo>?
        var cursor = list
        while let entry = cursor {
            if chosen == nil || (entry.pointee.ai_family == AF_INET && chosen?.pointee.ai_family != AF_INET) { chosen = entry }
            cursor = entry.pointee.ai_next
        }
        guard let entry = chosen, let address = entry.pointee.ai_addr else { return .failure(ResolveFailure("no address")) }
        var text = [CChar](repeating: 0, count: Int(truncatingIfNeeded: NI_MAXHOST))
        let named = getnameinfo(address, entry.pointee.ai_addrlen, &text, socklen_t(text.count), nil, 0, NI_NUMERICHOST)
        guard named == 0 else { return .failure(ResolveFailure(String(cString: gai_strerror(named)))) }
        return .success(String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
    }
}
