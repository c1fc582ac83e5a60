#if canImport(Glibc)
import Glibc
#endif
import YardHTTP
import YardIO
import YardModel
import YardTLS

// Per-connection state. Both classes are confined to the worker (event loop) that created
// them: no locks, no atomics. The worker holds the only strong references (its `clients` and
// `upstreams` arrays, slot-indexed), and epoll carries an unretained, tagged pointer.

/// A connection kept in one of the worker's slot-indexed arrays (its `slot` is its index).
protocol Slotted: AnyObject {
    var slot: Int { get set }
}

extension ClientConnection: Slotted {}
extension UpstreamConnection: Slotted {}
extension TunnelConnection: Slotted {}
extension H2Connection: Slotted {}

/// Where a client connection is in its request/response cycle.
enum ClientPhase: UInt8 {
    /// TLS handshake in progress (TLS listeners only; header timeout applies).
    case handshaking
    /// Between requests, no byte of the next request yet (idle timeout applies).
    case idle
    /// Some bytes of a request head have arrived (header timeout applies).
    case readingHead
    /// A request is being forwarded and its response relayed.
    case forwarding
    /// The last response is queued; close once it is written.
    case closingAfterFlush
    /// The last response is written and FIN sent; discarding input until EOF or a deadline.
    case lingering
    case closed
}

/// A downstream (client) connection.
final class ClientConnection {
    let fd: Int32
    /// Index in the worker's `clients` array.
    var slot: Int = 0
    var phase: ClientPhase = .idle
    /// The epoll interest currently registered (to skip redundant epoll_ctl calls).
    var interest: UInt32 = 0
    /// The socket is in the worker's epoll set (`registerClient`). A plain connection read
    /// at once after a deferred accept joins it only when it has to wait on its client
    /// (`updateInterest`).
    var registered = false
    /// When the current timeout fires (monotonic ms), 0 for none.
    var deadline: Int64 = 0
    /// TLS on this connection (nil on plain listeners: every I/O call branches on this).
    var tls: TLSConnection?
    /// The client reached us over TLS (directly, or as a stream of an h2 connection over
    /// TLS): `X-Forwarded-Proto: https`.
    var secure = false
    /// Interest a TLS operation asked for beyond the usual (a read that must write, a
    /// write that must read, or the handshake's next step).
    var tlsWant: UInt32 = 0

    /// Bytes received and not yet consumed: the head being parsed, body bytes, pipelined requests.
    var inBuf: ByteBuffer
    /// Bytes to send to the client: response heads, body pieces, our own answers.
    var outBuf: ByteBuffer
    /// Header-field storage for the request parser (`maxHeaders` entries).
    var fields: UnsafeMutablePointer<HeaderField>
    /// The connection is idle and its buffers and field array are in the worker's pool
    /// (`inBuf`/`outBuf` unallocated, `fields` the pool's placeholder): ClientBufferPool.swift.
    var buffersParked = false
    var head = RequestHead()
    var scanFrom = 0

    /// The client's address as text, for X-Forwarded-For and logs.
    let peerText: [UInt8]
    /// The client's IP address bytes (4 or 16), for source-network checks.
    let peerBytes: [UInt8]
    /// The peer is in `trusted_proxies`: its Forwarded/X-Forwarded-* fields are kept and
    /// extended rather than replaced.
    var trustedPeer = false
    /// The client's place in `max_connections_per_client` (PerClientLimit.swift); handed
    /// on when the connection becomes a tunnel or an HTTP/2 connection.
    var perClientTicket: PerClientTicket?
    /// Close without a clean end (no TLS close_notify): the response was cut short, and
    /// the client must not take what it got for the whole.
    var abortiveClose = false
    /// Close as soon as the response is out, without the lingering half-close: the client
    /// itself asked for the close (`Connection: close`, or HTTP/1.0 without keep-alive), so
    /// it sends nothing after its request (RFC 9112 §9.6), and nothing of it was left unread.
    var closeAfterResponse = false
    /// The client shut down its sending side after a complete request; answer, then close.
    var readClosed = false
    /// Requests answered on this connection.
    var served = 0
    /// Access-log fields captured from the head (client, method, host, path), kept
    /// allocated from one request to the next (ExchangeState has the rest of the line).
    var logHead = ByteBuffer()

    // MARK: The exchange in progress
    var upstream: UpstreamConnection?
    /// Everything the current request knows, reset as a whole for the next one.
    var exchange = ExchangeState()
    /// Set when this is a stream of an HTTP/2 connection (no socket of its own; H2Streams.swift).
    var h2: H2StreamLink?
    /// The endpoint slot the request holds, or its place in a wait queue (EndpointLimits.swift).
    var hold = SlotHold()

    convenience init(fd: Int32, peer: SocketAddress, maxHeaders: Int, bufferSize: Int) {
        let peerBytes = withUnsafeBytes(of: peer.storage) { raw in
            peer.family == AF_INET6 ? Array(raw[8..<24]) : Array(raw[4..<8])
        }
        self.init(fd: fd, peerText: Array(peer.ipText.utf8), peerBytes: peerBytes, maxHeaders: maxHeaders,
                  bufferSize: bufferSize, outBufferSize: bufferSize)
    }

    init(fd: Int32, peerText: [UInt8], peerBytes: [UInt8], maxHeaders: Int, bufferSize: Int, outBufferSize: Int) {
        self.fd = fd
        self.inBuf = ByteBuffer(capacity: bufferSize)
        self.outBuf = outBufferSize > 0 ? ByteBuffer(capacity: outBufferSize) : ByteBuffer()
        self.fields = .allocate(capacity: maxHeaders)
        self.fields.initialize(repeating: .empty, count: maxHeaders)
        self.peerText = peerText
        self.peerBytes = peerBytes
    }

    deinit {
        inBuf.deallocate()
        outBuf.deallocate()
        logHead.deallocate()
        if !buffersParked { fields.deallocate() }
    }
}

/// Where an upstream connection is.
enum UpstreamPhase: UInt8 {
    /// Non-blocking connect in progress.
    case connecting
    /// Carrying an exchange for `client`.
    case active
    /// Parked in its endpoint's pool (idle timeout applies).
    case idle
    case closed
}

/// A connection to one endpoint, reused across requests through the worker's pools.
final class UpstreamConnection {
    let fd: Int32
    var slot: Int = 0
    var phase: UpstreamPhase
    var interest: UInt32 = 0
    var deadline: Int64 = 0
    let endpoint: Endpoint

    /// Response bytes received and not yet relayed.
    var inBuf: ByteBuffer
    /// The request being sent. Bytes before `sentIndex` were written; they are kept (from
    /// `readerIndex`) until the response head arrives so a request that met a stale
    /// keep-alive connection can be replayed (`replayable`).
    var outBuf: ByteBuffer
    var sentIndex = 0
    /// Everything of the request is still in `outBuf` (it was never compacted away).
    var replayable = true
    /// This connection came from the pool (it served an earlier request).
    var reused = false
    /// TLS to the endpoint (nil for plain services: every I/O call branches on this).
    /// UpstreamTLS.swift has the handshake and the reads and writes through it.
    var tls: TLSConnection?
    /// Interest a TLS operation asked for beyond the usual (a read that must write, a
    /// write that must read, or the handshake's next step).
    var tlsWant: UInt32 = 0
    /// TCP is up and the TLS handshake is in progress (the phase stays `.connecting`, so
    /// the connect timeout bounds both, and a failure is a connect failure).
    var handshaking = false
    /// This connection's TLS session was offered to its pool for resumption.
    var sessionKept = false

    let fields: UnsafeMutablePointer<HeaderField>
    var client: ClientConnection?

    // MARK: The response in progress
    /// The response's state machine: head, body, end (ResponseReader.swift).
    var response = ResponseReader()
    /// The head parsed last.
    var head: ResponseHead { response.head }
    /// The final head has been taken; body bytes follow.
    var headDone: Bool { response.headDone }
    /// The whole response (head and body) has arrived.
    var responseDone: Bool { response.isComplete }
    /// How the upstream's side stands, for the reader.
    var closeState: ResponseReader.Close {
        guard eof else { return .open }
        return tls?.endedWithoutCloseNotify == true ? .withoutCloseNotify : .clean
    }
    /// Set while the response of an exchange whose client left is read and dropped
    /// (OrphanedResponses.swift): the request's method, and the bytes still allowed.
    var discardMethod: HTTPMethod?
    var discardBudget = 0
    /// The upstream closed its side; what is buffered is the rest of the response.
    var eof = false
    /// Bytes of response received for this exchange (0 means a failure may be retried).
    var responseBytes = 0
    /// Set when this exchange is a stream of an upstream HTTP/2 connection (no socket of
    /// its own; H2UpstreamStreams.swift).
    var h2: H2UpstreamStream?
    /// Set while the rest of a large body moves by splice(2) (ResponseSplice.swift).
    var splice: SplicePipe?

    init(fd: Int32, endpoint: Endpoint, connecting: Bool, maxHeaders: Int, bufferSize: Int) {
        self.fd = fd
        self.endpoint = endpoint
        self.phase = connecting ? .connecting : .active
        self.inBuf = ByteBuffer(capacity: bufferSize)
        self.outBuf = ByteBuffer(capacity: bufferSize)
        self.fields = .allocate(capacity: maxHeaders)
        self.fields.initialize(repeating: .empty, count: maxHeaders)
    }

    deinit {
        inBuf.deallocate()
        outBuf.deallocate()
        fields.deallocate()
    }

    /// Makes a closed HTTP/2 upstream stream, a spare of its endpoint's pool, ready for a
    /// new exchange on `connection` (H2UpstreamStreams.swift): one object, two buffers and a
    /// field array fewer to allocate and free per request.
    func reuseAsStream(on connection: H2UpstreamConnection, connecting: Bool) {
        resetExchange()
        phase = connecting ? .connecting : .active
        interest = 0
        deadline = 0
        reused = false
        client = nil
        discardBudget = 0
        splice = nil
        h2?.reset(connection: connection)
    }

    /// Clears per-exchange state before the connection carries a new request.
    func resetExchange() {
        response = ResponseReader()
        discardMethod = nil
        eof = false
        responseBytes = 0
        sentIndex = 0
        replayable = true
        inBuf.clear()
        outBuf.clear()
    }
}

/// Idle keep-alive connections to one endpoint, owned by one worker.
final class UpstreamPool {
    let address: SocketAddress?
    var idle: [UpstreamConnection] = []
    /// HTTP/1.1 connections bound to an exchange right now.
    var busy = 0
    /// Most `busy` seen in the current and the previous sizing window: the pool keeps as many
    /// connections as the recent peak of concurrent exchanges needs, so steady load reuses
    /// connections instead of closing and reopening them (idle ones past the peak expire
    /// by the idle timeout).
    var peakBusy = 0
    var previousPeakBusy = 0
    var peakWindowStart: Int64 = 0
    /// False while the endpoint takes no new request (its track is not served, it drains
    /// or is ejected): connections are closed when their exchange ends instead of pooled.
    var routable = true
    /// HTTP/2 connections to the endpoint (services with `upstream.protocol: h2c`/`h2`).
    var h2: [H2UpstreamConnection] = []
    /// Closed HTTP/2 stream exchanges with this endpoint, kept for the next requests (up to
    /// the recent peak of concurrent ones; `recycleH2Streams`).
    var spareH2Streams: [UpstreamConnection] = []
    /// HTTP/2 stream exchanges with this endpoint open now, and the most since the last
    /// trim after a burst.
    var h2Streams = 0
    var peakH2Streams = 0
    /// The last TLS session with this endpoint, offered by new connections for resumption.
    var tlsSession: TLSSession?
    /// The last TLS failure logged for this endpoint (logged once, not per request).
    var tlsProblem: String?

    init(address: SocketAddress?) {
        self.address = address
    }

    /// A sizing window: long enough to span a burst's gaps, short enough that a pool sized for
    /// yesterday's peak stops parking connections soon after the load falls.
    static let peakWindowMs: Int64 = 10_000

    /// Counts an exchange taking a connection, and rolls the peak window.
    @inline(__always)
    func exchangeStarted(now: Int64) {
        busy &+= 1
        if now &- peakWindowStart >= Self.peakWindowMs {
            previousPeakBusy = peakBusy
            peakBusy = busy
            peakWindowStart = now
        } else if busy > peakBusy {
            peakBusy = busy
        }
    }

    /// Whether a connection whose exchange just ended may be parked: the pool holds at most
    /// `floor` idle connections, or as many as the recent peak of concurrent exchanges.
    @inline(__always)
    func hasRoomForIdle(floor: Int) -> Bool {
        idle.count &+ busy < max(floor, max(peakBusy, previousPeakBusy))
    }
}
