import YardHTTP
import YardModel

/// What one request/response exchange on a client connection knows: its route, framing,
/// attempts, track, log fields. A connection (or an HTTP/2 stream) starts each request
/// with a fresh value (`c.exchange = ExchangeState()` in `dispatch` and `resetForStream`),
/// so nothing of one request leaks into the next and no field is reset by hand.
///
/// Threading: a field of `ClientConnection`, confined to its worker.
struct ExchangeState {
    var route: Route?
    /// The request's own head asked for the connection to close.
    var clientAskedClose = false
    /// The route compresses and the client takes gzip; `gzip` is the response's stream once
    /// its head qualified (ResponseCompression.swift).
    var acceptsGzip = false
    var gzip: GzipStream?
    /// The route's forward_auth sub-request and what it answered (ForwardAuthCheck.swift).
    var auth: ForwardAuthExchange?
    /// The mirror's copy of this request, held while its body arrives (Mirror.swift).
    var mirror: PendingMirror?
    var requestMethod: HTTPMethod = .get
    var requestVersionMinor: UInt8 = 1
    /// Keep the client connection after this response (the client allows it, we are not draining).
    var keepAlive = true
    /// Where the request body stands: its framing and how much has passed.
    var requestBody = BodyProgress()
    var requestBodyDone: Bool { requestBody.isComplete }
    /// The request's path was normalized in place (`normalizeRequestPath`): the request
    /// line is rebuilt when forwarded.
    var pathRewritten = false
    /// Request body timing, for `client_body` and `min_body_rate` (BodyClock.swift).
    var bodyClock = BodyClock()
    /// Some byte of the response (or our own answer) was queued for the client: no retry,
    /// and a failure from now on can only close the connection.
    var responseStarted = false
    /// Connect attempts for this request (retries go to another endpoint).
    var attempts = 0
    /// Retries after a failure on an established connection (idempotent requests only).
    var retries = 0
    /// Endpoints (indices into the service's active endpoints) this request already tried.
    var triedEndpoints: UInt64 = 0
    /// The balancer slot the current attempt holds (released when the exchange ends).
    var balancer: ServiceBalancer?
    var balancerIndex = -1
    /// When the current attempt started (ns), for latency-aware balancing only.
    var attemptStartNanos: UInt64 = 0
    /// The request's start and response size for the access-log line.
    var logStartNanos: UInt64 = 0
    var bytesToClient = 0
    /// The endpoint and status of the current request (for log lines of failed exchanges).
    var lastEndpoint: Endpoint?
    var lastStatus = 0
    /// The request's track was chosen (stable or canary); retries keep it.
    var trackDecided = false
    var onCanary = false
    /// The track the override header pinned this request to (index into
    /// `Service.trackEndpoints`), or -1.
    var overrideTrack = -1
    /// Sticky-canary point of the current request in [0, 1000), or -1.
    var stickyPoint = -1
    /// The current request carries no valid proxy-set sticky cookie: one is assigned when its
    /// track is chosen, and `stickyCookiePoint` (else -1) goes on the response's Set-Cookie.
    var assignsStickyCookie = false
    var stickyCookiePoint = -1
    /// Consistent-hash key of the current request (computed while its head is buffered).
    var hashKey: UInt64 = 0
    /// The current request asks to switch protocols (WebSocket): a 101 turns the
    /// connection into a tunnel.
    var upgradeRequested = false
    /// When the request head was complete, monotonic microseconds (latency histograms).
    var requestStart: Int64 = 0
}
