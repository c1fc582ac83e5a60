import Synchronization

/// Client contexts by what makes them differ (CA file, verification, ALPN list), built
/// once and shared: every routing table, health check and event loop that needs the same
/// trust gets the same `SSL_CTX`. A CA file that changed on disk (modification time, size
/// or inode) is loaded again on the next request for it, so a rotated CA applies at the
/// next table without a restart; a CA file that no longer loads keeps nothing cached and
/// the caller decides what keeps serving.
///
/// Threading: any thread (the control plane: table publication, health probes); one
/// mutex around the dictionary, never taken on the request path.
public final class TLSClientContextCache: Sendable {
    public struct Key: Hashable, Sendable {
        public var caFile: String?
        public var verify: Bool
        public var alpn: [String]

        public init(caFile: String?, verify: Bool, alpn: [String]) {
            // Without verification the CA file plays no part: one context for all.
            self.caFile = verify ? caFile : nil
            self.verify = verify
            self.alpn = alpn
        }
    }

    private struct Entry {
        var context: TLSClientContext
        var signature: FileSignature?
    }

    private let entries = Mutex<[Key: Entry]>([:])

    public init() {}

    /// The context for `key`, loading (or reloading) its CA file when needed.
    public func context(for key: Key) throws(TLSError) -> TLSClientContext {
        let signature = key.caFile.map(FileSignature.init(path:))
        if let cached = entries.withLock({ $0[key] }), cached.signature == signature {
            return cached.context
        }
        let context: TLSClientContext
        do {
            context = try TLSClientContext(caFile: key.caFile, alpn: key.alpn, verify: key.verify)
        } catch {
            entries.withLock { _ = $0.removeValue(forKey: key) }
            throw error
        }
        entries.withLock { $0[key] = Entry(context: context, signature: signature) }
        return context
    }
}
