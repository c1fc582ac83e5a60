import YardHTTP

// An exchange whose client left (an HTTP/2 stream reset, a closed client connection) while
// its upstream connection carried a complete request: the connection is kept if the rest
// of the response is near, read into the void and pooled once it ends.
//
// Browsers cancel streams all the time (navigation, a closed tab), and load tools stop with
// hundreds of streams in flight; closing every such upstream connection turns each cancel
// into a new connect (and TLS handshake) for the next request. Kept only when the response
// can be told apart from what follows (a known framing, not close-delimited, not an
// upgrade), at most `orphanDiscardLimit` more bytes arrive, and within
// `orphanDiscardTimeoutMs`; anything else closes the connection as before.

extension Worker {
    /// Bytes of an abandoned response read and dropped before giving up on its connection.
    static let orphanDiscardLimit = 64 * 1024
    /// How long an abandoned response may take to end.
    static let orphanDiscardTimeoutMs: Int64 = 5_000

    /// The client of `u`'s exchange (`c`, already unbound) left: keep `u` to read the rest of
    /// the response and pool it, or close it.
    func orphanOrClose(_ u: UpstreamConnection, leftBy c: ClientConnection) {
        let requestComplete = c.exchange.requestBodyDone && u.sentIndex == u.outBuf.writerIndex
        let endKnown = !u.headDone || (!u.response.body.isCloseDelimited && u.response.body.remainingLength <= Int64(Worker.orphanDiscardLimit))
        guard u.h2 == nil, u.splice == nil, u.phase == .active, requestComplete, endKnown, !c.exchange.upgradeRequested, !draining else {
            closeUpstream(u)
            return
        }
        u.discardMethod = c.exchange.requestMethod
        u.discardBudget = Worker.orphanDiscardLimit
        u.deadline = now + Worker.orphanDiscardTimeoutMs
        discardResponse(u)
        if u.phase != .closed { updateInterest(u) }
    }

    /// Reads what arrived of an abandoned response and drops it; pools the connection at
    /// its end, closes it on anything unexpected or over the budget.
    func discardResponse(_ u: UpstreamConnection) {
        guard let method = u.discardMethod else { return closeUpstream(u) }
        while true {
            let event = u.response.next(u.inBuf.readable, room: u.discardBudget, close: u.closeState,
                                        limits: responseLimits, requestMethod: method, fields: u.fields)
            switch event {
            case .needBytes:
                if u.headDone && u.discardBudget <= 0 { return closeUpstream(u) }
                if u.inBuf.writableBytes == 0 { u.inBuf.compact() }
                return
            case .interimHead:
                u.inBuf.consume(u.head.headLength)
                u.response.acceptHead()
            case .finalHead:
                guard u.head.keepAlive, u.head.framing != .untilClose,
                      u.head.contentLength <= Int64(u.discardBudget) else { return closeUpstream(u) }
                u.inBuf.consume(u.head.headLength)
                u.response.acceptHead()
            case .body(let count):
                u.inBuf.consume(count)
                u.discardBudget -= count
            case .complete:
                u.discardMethod = nil
                metrics.orphansPooled &+= 1
                releaseToPool(u)
                return
            case .switchingProtocols, .invalidHead, .invalidBody, .closedMidHead, .closedMidBody, .truncated:
                return closeUpstream(u)
            }
        }
    }
}
