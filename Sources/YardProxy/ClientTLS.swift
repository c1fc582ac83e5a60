#if canImport(Glibc)
import Glibc
#endif
import YardIO
import YardTLS

// TLS on client connections: the handshake as a connection phase, and the reads and writes
// the HTTP/1.1 path makes, routed through OpenSSL when the connection has TLS. A plain
// connection pays one nil check per call (`c.tls`), nothing else.

extension Worker {
    // MARK: Handshake

    /// Advances the handshake; WANT_READ/WANT_WRITE become the epoll interest. When it is
    /// done the connection becomes an ordinary idle HTTP/1.1 connection.
    func continueHandshake(_ c: ClientConnection) {
        guard let tls = c.tls else { return }
        switch tls.handshake() {
        case .done:
            c.tlsWant = 0
            metrics.tlsHandshakes &+= 1
            // ALPN chose h2: the connection becomes an HTTP/2 connection over TLS records.
            if tls.applicationProtocol == .h2 {
                switchToHTTP2(c, tls: tls)
                return
            }
            // The header timeout from accept goes on (Worker.acceptConnections).
            c.phase = .idle
            // The request may already have arrived behind the client's Finished.
            readClient(c)
            if c.phase != .closed { updateInterest(c) }
        case .wantRead:
            c.tlsWant = Epoll.readable
            updateInterest(c)
        case .wantWrite:
            c.tlsWant = Epoll.writable
            updateInterest(c)
        case .closed:
            metrics.tlsHandshakeFailures &+= 1
            closeClient(c)
        case .failed(let error):
            // Scanners and plain-HTTP clients end here: not worth more than a debug line.
            metrics.tlsHandshakeFailures &+= 1
            Log.debug("TLS handshake with \(String(decoding: c.peerText, as: UTF8.self)) failed: \(error)")
            closeClient(c)
        }
    }

    // MARK: Reads and writes

    /// Reads into the client's buffer, through TLS when the connection has it.
    @inline(__always)
    func receive(_ c: ClientConnection) -> IOResult {
        guard let tls = c.tls else { return Socket.read(c.fd, into: &c.inBuf) }
        switch tls.read(into: &c.inBuf) {
        case .bytes(let n):
            c.tlsWant &= ~Epoll.writable
            if c.inBuf.writableBytes == 0 && tls.hasBufferedInput { tlsPendingReads.append(c) }
            return .bytes(n)
        case .wantRead:
            return .wouldBlock
        case .wantWrite:
            c.tlsWant |= Epoll.writable
            return .wouldBlock
        case .closed:
            return .closed
        case .failed(let error):
            Log.debug("TLS read from \(String(decoding: c.peerText, as: UTF8.self)): \(error)")
            return .failed(EPROTO)
        }
    }

    /// Writes the client's queued bytes, through TLS when the connection has it.
    @inline(__always)
    func send(_ c: ClientConnection) -> IOResult {
        guard let tls = c.tls else { return Socket.flush(c.fd, &c.outBuf) }
        switch tls.flush(&c.outBuf) {
        case .bytes(let n):
            c.tlsWant &= ~Epoll.readable
            return .bytes(n)
        case .wantWrite:
            return .wouldBlock
        case .wantRead:
            c.tlsWant |= Epoll.readable
            return .wouldBlock
        case .closed:
            return .closed
        case .failed(let error):
            Log.debug("TLS write to \(String(decoding: c.peerText, as: UTF8.self)): \(error)")
            return .failed(EPROTO)
        }
    }

    /// Reads input OpenSSL decrypted ahead while the client's buffer was full; a
    /// connection whose buffer is still full waits for the next batch.
    func readPendingTLS() {
        let pending = tlsPendingReads
        tlsPendingReads.removeAll(keepingCapacity: true)
        for c in pending where c.phase != .closed {
            guard let tls = c.tls, tls.hasBufferedInput else { continue }
            if c.inBuf.writableBytes == 0 && c.phase == .forwarding {
                tlsPendingReads.append(c)
                continue
            }
            clientEvent(c, Epoll.readable)
        }
    }
}
