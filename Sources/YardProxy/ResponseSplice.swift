#if canImport(Glibc)
import Glibc
#endif
import CYardLinux
import YardIO

// Large plain-to-plain response bodies move with splice(2): upstream socket → pipe → client
// socket, so their bytes never cross into user space (no read copy, no write copy). Only a
// Content-Length body of at least `spliceMinimum` bytes still to come qualifies, once its head
// and every body byte already buffered have been relayed the ordinary way; chunked bodies
// (whose framing the reader must see), TLS on either side, HTTP/2, gzip and forward_auth
// answers never splice. HAProxy's `option splice-response` is the model.
//
// The pipe belongs to the exchange while it splices and goes back to the worker's pool (up to
// `splicePoolLimit` pipes) once it is empty; a pipe with bytes in it when the exchange ends
// is closed, never reused.

/// A pipe carrying one response body from its upstream to its client.
final class SplicePipe {
    let readFD: Int32
    let writeFD: Int32
    /// Bytes spliced in from the upstream and not yet out to the client.
    var inPipe = 0

    init(readFD: Int32, writeFD: Int32) {
        self.readFD = readFD
        self.writeFD = writeFD
    }

    func close() {
        Glibc.close(readFD)
        Glibc.close(writeFD)
    }
}

extension Worker {
    /// Bodies shorter than this are cheaper to copy through the buffers (two splices per
    /// step instead of a read and a write).
    static let spliceMinimum: Int64 = 32 * 1024
    static let splicePoolLimit = 32

    /// Starts splicing the rest of the response when it qualifies. Called by `relayResponse`
    /// after it relayed what was buffered; true when the splice took over.
    func startSpliceIfWorthIt(_ c: ClientConnection, _ u: UpstreamConnection) -> Bool {
        guard u.splice == nil, u.headDone, !u.responseDone, u.inBuf.isEmpty,
              u.response.body.remainingLength >= Worker.spliceMinimum,
              c.exchange.gzip == nil, c.tls == nil, u.tls == nil, c.h2 == nil, u.h2 == nil, c.exchange.auth == nil || c.exchange.auth?.passed == true,
              let pipe = takePipe() else { return false }
        u.splice = pipe
        spliceResponse(u)
        return true
    }

    /// Moves body bytes upstream → pipe → client until both sides would block, and ends the
    /// exchange when the body is through.
    func spliceResponse(_ u: UpstreamConnection) {
        guard let pipe = u.splice, let c = u.client else { return }
        let flags = UInt32(SPLICE_F_NONBLOCK | SPLICE_F_MOVE)
        while true {
            var moved = false
            let toRead = Int(truncatingIfNeeded: min(u.response.body.remainingLength, Int64(Worker.pipeCapacity - pipe.inPipe)))
            if toRead > 0 {
                let n = splice(u.fd, nil, pipe.writeFD, nil, toRead, flags)
                if n > 0 {
                    pipe.inPipe += n
                    u.response.bodyPassedAround(n)
                    u.responseBytes += n
                    metrics.add(u.endpoint.poolKey, WorkerMetrics.Field.bytesIn, UInt64(n))
                    u.deadline = now + responseIdleTimeout(c.exchange.route)
                    moved = true
                } else if n == 0 {
                    u.eof = true
                    abortExchange(c, status: 502, reason: "\(u.endpoint.id) closed the connection mid-response")
                    return
                } else {
                    let err = yard_errno()
                    if err != EAGAIN && err != EWOULDBLOCK && err != EINTR {
                        abortExchange(c, status: 502, reason: "read from \(u.endpoint.id): \(IOError(call: "splice", errno: err))")
                        return
                    }
                }
            }
            if pipe.inPipe > 0 && c.outBuf.isEmpty {
                let n = splice(pipe.readFD, nil, c.fd, nil, pipe.inPipe, flags)
                if n > 0 {
                    pipe.inPipe -= n
                    c.exchange.bytesToClient &+= n
                    moved = true
                } else {
                    let err = n == 0 ? EPIPE : yard_errno()
                    if err != EAGAIN && err != EWOULDBLOCK && err != EINTR {
                        // The client is gone: the exchange ends with it.
                        closeClient(c)
                        return
                    }
                }
            }
            if u.responseDone && pipe.inPipe == 0 {
                u.splice = nil
                returnPipe(pipe)
                finishExchange(c, u)
                return
            }
            if !moved { return }
        }
    }

    /// Ends a splice that will not finish (the exchange is aborted or its connection closed).
    func dropSplice(_ u: UpstreamConnection) {
        guard let pipe = u.splice else { return }
        u.splice = nil
        if pipe.inPipe == 0 { returnPipe(pipe) } else { pipe.close() }
    }

    private func takePipe() -> SplicePipe? {
        if let pipe = pipes.popLast() { return pipe }
        var fds: [Int32] = [-1, -1]
        guard pipe2(&fds, Int32(O_NONBLOCK | O_CLOEXEC)) == 0 else { return nil }
        return SplicePipe(readFD: fds[0], writeFD: fds[1])
    }

    private func returnPipe(_ pipe: SplicePipe) {
        if pipes.count < Worker.splicePoolLimit { pipes.append(pipe) } else { pipe.close() }
    }
}
