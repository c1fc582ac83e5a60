#if canImport(Glibc)
import Glibc
#endif
import YardIO
import YardTLS

// An upgraded connection (WebSocket) whose client side is TLS: splice(2) cannot see
// through OpenSSL, so the bytes pass through user space, one buffer per direction:
// decrypted client bytes → `TLSTunnelBuffers.up` → upstream socket, and upstream socket →
// `down` → encrypted to the client. A full buffer stops reading its source (flow
// control); a close_notify or EOF from the client shuts down the upstream's write half,
// an upstream EOF sends close_notify and FIN to the client. WANT_READ/WANT_WRITE become
// epoll interest. Timeouts and the flip drain are the plain tunnel's (TCPTunnel.swift).

/// The user-space side of a TLS tunnel.
///
/// Threading: owned by the tunnel, so by its worker.
final class TLSTunnelBuffers {
    let tls: TLSConnection
    /// Decrypted client bytes not yet written upstream.
    var up: ByteBuffer
    /// Upstream bytes not yet encrypted to the client.
    var down: ByteBuffer
    /// A TLS read must write first (TLS 1.3 housekeeping): retry it when writable.
    var readWantsWrite = false
    /// A TLS write must read first: retry it when readable.
    var writeWantsRead = false

    static let capacity = 64 * 1024

    init(tls: TLSConnection) {
        self.tls = tls
        up = ByteBuffer(capacity: TLSTunnelBuffers.capacity)
        down = ByteBuffer(capacity: TLSTunnelBuffers.capacity)
    }

    deinit {
        up.deallocate()
        down.deallocate()
    }
}

extension Worker {
    // MARK: Moving bytes

    /// Moves what can move in both directions of a TLS tunnel until nothing does (OpenSSL
    /// may hold decrypted input that no epoll event will announce). False on an error
    /// that ends the tunnel.
    func pumpTLSTunnel(_ t: TunnelConnection, _ b: TLSTunnelBuffers, moved: inout Int) -> Bool {
        b.readWantsWrite = false
        b.writeWantsRead = false
        var progress = true
        while progress {
            progress = false
            // Client → upstream.
            if !t.up.sourceEOF {
                if b.up.writableBytes == 0 { b.up.compact() }
                if b.up.writableBytes > 0 {
                    switch b.tls.read(into: &b.up) {
                    case .bytes: progress = true
                    case .wantRead: break
                    case .wantWrite: b.readWantsWrite = true
                    case .closed: t.up.sourceEOF = true
                    case .failed: return false
                    }
                }
            }
            t.up.blocked = false
            if !b.up.isEmpty {
                switch Socket.flush(t.upstreamFD, &b.up) {
                case .bytes(let n): moved += n; progress = true
                case .wouldBlock: t.up.blocked = true
                case .closed, .failed: return false
                }
            }
            if b.up.isEmpty { b.up.clear() }
            if t.up.sourceEOF && b.up.isEmpty && !t.up.shutDown {
                Socket.shutdownWrite(t.upstreamFD)
                t.up.shutDown = true
            }
            // Upstream → client.
            if !t.down.sourceEOF {
                if b.down.writableBytes == 0 { b.down.compact() }
                if b.down.writableBytes > 0 {
                    switch Socket.read(t.upstreamFD, into: &b.down) {
                    case .bytes: progress = true
                    case .wouldBlock: break
                    case .closed: t.down.sourceEOF = true
                    case .failed(let err):
                        // A reset upstream ends this direction like an EOF would.
                        guard err == ECONNRESET else { return false }
                        t.down.sourceEOF = true
                    }
                }
            }
            t.down.blocked = false
            if !b.down.isEmpty {
                switch b.tls.flush(&b.down) {
                case .bytes(let n): moved += n; progress = true
                case .wantWrite: t.down.blocked = true
                case .wantRead: b.writeWantsRead = true
                case .closed, .failed: return false
                }
            }
            if b.down.isEmpty { b.down.clear() }
            if t.down.sourceEOF && b.down.isEmpty && !t.down.shutDown {
                // close_notify, then FIN (a pending close_notify is not waited for: the
                // client has every data byte, and the FIN ends the stream anyway).
                _ = b.tls.shutdown()
                Socket.shutdownWrite(t.clientFD)
                t.down.shutDown = true
            }
        }
        return true
    }

    /// Epoll interest of a TLS tunnel: read a side while its buffer has room, write it
    /// while bytes for it wait, plus what OpenSSL asked for.
    func updateTLSTunnelInterest(_ t: TunnelConnection, _ b: TLSTunnelBuffers) {
        var client: UInt32 = 0
        var upstream: UInt32 = 0
        if (!t.up.sourceEOF && b.up.writableBytes > 0) || b.writeWantsRead { client |= Epoll.readable }
        if t.down.blocked || b.readWantsWrite { client |= Epoll.writable }
        if !t.down.sourceEOF && b.down.writableBytes > 0 { upstream |= Epoll.readable }
        if t.up.blocked { upstream |= Epoll.writable }
        setTunnelInterest(t, client: client, upstream: upstream)
    }
}
