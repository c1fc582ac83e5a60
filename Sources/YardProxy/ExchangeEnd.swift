import YardHTTP

/// How an exchange leaves its connections when it ends: whether the upstream connection goes
/// back to its pool, and whether the client connection stays for the next request, closes
/// once its answer is written, or closes after a lingering half-close — pure rules over what
/// the exchange knows, shared by the HTTP/1.1 relay, the HTTP/2 streams, forward_auth and the
/// proxy's own answers, and tested as values (ExchangeEndTests).
///
/// Threading: pure; used on a worker's loop.
enum ExchangeEnd {
    /// What becomes of the client connection.
    enum Client: Equatable {
        /// It stays: the next request (maybe already buffered) is read.
        case keepAlive
        /// It closes once the answer is written. `linger`: first a half-close, then input is
        /// read and dropped for a moment (nginx's lingering close), so a reset cannot destroy
        /// the answer; without it the socket closes at once.
        case close(linger: Bool)
    }

    /// What the client side of an exchange knows when its answer is complete.
    struct ClientFacts: Equatable {
        /// The client allows the connection to stay (its head's keep-alive, and the proxy was
        /// not draining when the request came).
        var keepAlive = true
        /// The request's own head asked for the close (`Connection: close`, or HTTP/1.0
        /// without keep-alive).
        var askedClose = false
        /// The whole request body was read.
        var requestBodyDone = true
        /// The proxy is draining (a takeover, a shutdown).
        var draining = false
        /// The client shut down its sending side.
        var readClosed = false
        /// Bytes of the client's are buffered and not yet read as a request (pipelined).
        var unreadInput = false
        /// The connection is TLS: a close sends close_notify, and the records the client may
        /// still send must not meet a closed socket.
        var secure = false
    }

    /// The upstream connection of a relayed response may carry the next request: the
    /// upstream keeps it (`keepAlive` in its head), the body did not end by the close, the
    /// whole request went upstream (a request cut short leaves the connection mid-message),
    /// it spoke HTTP/1.1 (`requestVersionMinor`: an HTTP/1.0 request line was forwarded as
    /// sent), and the proxy is not draining.
    static func upstreamReusable(_ head: ResponseHead, closeDelimited: Bool, requestBodyDone: Bool,
                                 requestVersionMinor: UInt8 = 1, draining: Bool) -> Bool {
        head.keepAlive && !closeDelimited && requestBodyDone && requestVersionMinor == 1 && !draining
    }

    /// The client connection after a relayed response. It closes when the client or the
    /// upstream asked for it (a close-delimited body ends only by the close), when a body is
    /// left unread, when the proxy drains, or when the client half-closed with nothing more
    /// buffered. No linger for a plain client that asked for the close and left nothing
    /// unread: the half-close, its event and the read of the FIN cost more than the request,
    /// and it sends nothing after its request (RFC 9112 §9.6).
    static func client(afterResponse facts: ClientFacts, closeDelimited: Bool) -> Client {
        guard facts.keepAlive && facts.requestBodyDone && !facts.draining && !closeDelimited
                && !(facts.readClosed && !facts.unreadInput) else {
            return .close(linger: !(facts.askedClose && facts.requestBodyDone && !facts.unreadInput && !facts.secure))
        }
        return .keepAlive
    }

    /// The client connection after an answer of the proxy's own with `status`. It stays only
    /// when the request was read whole, the client allows it, the proxy is not draining, the
    /// client has not half-closed, and the status does not say the request's framing is in
    /// doubt (404, 502, 503 and 504 are about routing and upstreams; a 400, 408, 413 or 431
    /// may leave the client mid-message). It always lingers.
    static func client(afterOwnAnswer status: Int, _ facts: ClientFacts) -> Client {
        let framingKnown = status == 404 || status == 502 || status == 503 || status == 504
        guard framingKnown && facts.keepAlive && facts.requestBodyDone && !facts.draining && !facts.readClosed else {
            return .close(linger: true)
        }
        return .keepAlive
    }
}

extension Worker {
    /// The response was taken completely from `u`: the exchange is logged and gives up its
    /// endpoint, and the upstream connection goes to its pool or is closed. The client
    /// side's next step is the caller's (an HTTP/1.1 connection or an HTTP/2 stream).
    func endUpstreamExchange(_ c: ClientConnection, _ u: UpstreamConnection) {
        if accessLog != nil { endLogLine(c, status: u.head.status, endpoint: u.endpoint) }
        releaseEndpoint(c)
        unbind(c, u)
        c.exchange.route = nil
        c.served += 1
        if ExchangeEnd.upstreamReusable(u.head, closeDelimited: u.response.body.isCloseDelimited, requestBodyDone: c.exchange.requestBodyDone,
                                        requestVersionMinor: c.exchange.requestVersionMinor, draining: draining) {
            releaseToPool(u)
        } else {
            closeUpstream(u)
        }
    }

    /// What the exchange in progress on `c` knows, for `ExchangeEnd`'s rules.
    func endFacts(_ c: ClientConnection) -> ExchangeEnd.ClientFacts {
        ExchangeEnd.ClientFacts(keepAlive: c.exchange.keepAlive, askedClose: c.exchange.clientAskedClose,
                                requestBodyDone: c.exchange.requestBodyDone, draining: draining, readClosed: c.readClosed,
                                unreadInput: !c.inBuf.isEmpty, secure: c.tls != nil)
    }
}
