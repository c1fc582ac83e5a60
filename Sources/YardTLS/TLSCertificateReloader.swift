#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Rebuilds a listener's `TLSServerContext` when its certificate or key files change
/// (renewed by certbot, a mounted secret rotated), or when asked (SIGHUP).
///
/// Change detection is a stat(2) per file: device, inode, size and mtime. An editor's
/// save-by-rename changes the inode, an in-place write the size or mtime. A change that
/// does not load (a new certificate written before its key) leaves the running context
/// in place and is reported once; the reload succeeds when the pair is consistent again.
///
/// Threading: call from the control plane (blocking file I/O); any thread; the mutex
/// guards the last signatures and context.
public final class TLSCertificateReloader: Sendable {
    private struct State {
        var configuration: TLSServerConfiguration
        var signatures: [FileSignature]
        var failedSignatures: [FileSignature]?
        var context: TLSServerContext
    }

    private let state: Mutex<State>
    public let ticketKeys: TicketKeyRing
    /// TLS-ALPN-01 challenges every context of this listener answers (nil: none).
    public let acmeChallenges: TLSALPNChallenges?

    /// Builds the first context (throws if it does not load).
    public init(_ configuration: TLSServerConfiguration, ticketKeys: TicketKeyRing = TicketKeyRing(),
                acmeChallenges: TLSALPNChallenges? = nil) throws(TLSError) {
        self.ticketKeys = ticketKeys
        self.acmeChallenges = acmeChallenges
        let signatures = configuration.files.map(FileSignature.init(path:))
        let context = try TLSServerContext(configuration, ticketKeys: ticketKeys, acmeChallenges: acmeChallenges)
        state = Mutex(State(configuration: configuration, signatures: signatures, failedSignatures: nil, context: context))
    }

    /// The context new connections should use.
    public var current: TLSServerContext { state.withLock { $0.context } }

    /// A new context if any file changed since the last (successful or failed) load; nil
    /// when nothing changed. Throws when the changed files do not load, once per change.
    public func reloadIfChanged() throws(TLSError) -> TLSServerContext? {
        let (configuration, known, failed) = state.withLock { ($0.configuration, $0.signatures, $0.failedSignatures) }
        let now = configuration.files.map(FileSignature.init(path:))
        if now == known || now == failed { return nil }
        return try load(configuration, signatures: now)
    }

    /// Rebuilds from the files (and `configuration`, when the config file changed it),
    /// whether or not they changed.
    public func reload(_ configuration: TLSServerConfiguration? = nil) throws(TLSError) -> TLSServerContext {
        let configuration = configuration ?? state.withLock { $0.configuration }
        return try load(configuration, signatures: configuration.files.map(FileSignature.init(path:)))
    }

    private func load(_ configuration: TLSServerConfiguration, signatures: [FileSignature]) throws(TLSError) -> TLSServerContext {
        do throws(TLSError) {
            let context = try TLSServerContext(configuration, ticketKeys: ticketKeys, acmeChallenges: acmeChallenges)
            state.withLock {
                $0.configuration = configuration
                $0.signatures = signatures
                $0.failedSignatures = nil
                $0.context = context
            }
            return context
        } catch {
            state.withLock { $0.failedSignatures = signatures }
            throw error
        }
    }
}

/// What stat(2) says about a file, enough to notice it changed.
struct FileSignature: Equatable, Sendable {
    var device: UInt64 = 0
    var inode: UInt64 = 0
    var size: Int64 = -1
    var modifiedSeconds: Int = 0
    var modifiedNanoseconds: Int = 0

    init(path: String) {
        var info = stat()
        guard stat(path, &info) == 0 else { return }
        device = UInt64(info.st_dev)
        inode = UInt64(info.st_ino)
        size = Int64(info.st_size)
        modifiedSeconds = Int(info.st_mtim.tv_sec)
        modifiedNanoseconds = Int(info.st_mtim.tv_nsec)
    }
}
