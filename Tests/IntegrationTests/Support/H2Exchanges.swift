import Foundation

// Requests over one HTTP/2 connection made by Python's h2 (Tests/Fixtures/h2_exchanges.py),
// a client the proxy did not write, which reports what arrived frame by frame: the raw
// header list of each stream, whether its HEADERS ended it, its DATA, trailers and resets.

/// One request of a plan: HEADERS, then `pieces` as DATA (each `text` repeated `count`
/// times, `afterHeaders`: only once the response's HEADERS arrived), then `trailers`.
struct H2Request: Encodable {
    struct Piece: Encodable {
        var text: String
        var count = 1
        var afterHeaders = false
    }

    var name: String
    var method = "GET"
    var path: String
    /// nil: `shop.test` over h2c, the TLS server name over TLS.
    var authority: String? = nil
    var headers: [[String]] = []
    var pieces: [Piece] = []
    var trailers: [[String]]? = nil
    /// Seconds after which the client resets the stream (CANCEL) if it has not ended.
    var cancelAfter: Double? = nil
    /// Send the whole body even after the response ended (as clients that upload blindly do).
    var sendAll = false

    init(_ name: String, _ path: String, authority: String? = nil, headers: [[String]] = [], cancelAfter: Double? = nil) {
        self.init(name, "GET", path, authority: authority, headers: headers, cancelAfter: cancelAfter)
    }

    init(_ name: String, _ method: String, _ path: String, authority: String? = nil,
         headers: [[String]] = [], pieces: [Piece] = [], trailers: [[String]]? = nil, cancelAfter: Double? = nil,
         sendAll: Bool = false) {
        self.name = name
        self.method = method
        self.path = path
        self.authority = authority
        self.headers = headers
        self.pieces = pieces
        self.trailers = trailers
        self.cancelAfter = cancelAfter
        self.sendAll = sendAll
    }
}

/// What the client saw on one stream.
struct H2StreamSeen: Decodable {
    var id: Int
    var round: Int
    var method: String
    var status: String?
    /// The response's header list as it came off the wire (not validated, not normalised).
    var headers: [[String]]
    var headersEndStream: Bool
    var informational: [String?]
    /// `headers`, `headers+end`, `data`, `data+end`, `trailers`, `reset:CODE`, in order.
    var events: [String]
    /// When each of `events` arrived, in seconds from the stream's HEADERS.
    var eventTimes: [Double]
    var dataFrames: Int
    var body: String
    var decoded: String?
    var decodedError: String?
    var trailers: [[String]]
    var ended: Bool
    var reset: Int?
    /// Request body bytes the client sent.
    var sent: Int
    /// The client reset the stream (`cancelAfter`); `reset` is then its CANCEL.
    var cancelled: Bool

    var statusCode: Int { Int(status ?? "") ?? 0 }
    var bodyBytes: Data { Data(base64Encoded: body) ?? Data() }
    var bodyText: String { String(decoding: bodyBytes, as: UTF8.self) }
    var decodedText: String? { decoded.flatMap { Data(base64Encoded: $0) }.map { String(decoding: $0, as: UTF8.self) } }

    /// Every value of the field `name` (lower case) in the response head.
    func values(_ name: String) -> [String] { headers.filter { $0.first == name }.compactMap { $0.last } }
    func header(_ name: String) -> String? { values(name).first }
    func trailer(_ name: String) -> String? { trailers.first { $0.first == name }?.last }
}

/// The whole connection as the client saw it.
struct H2Report: Decodable {
    var alpn: String?
    var goaway: Int?
    var closed: Bool
    var error: String?
    var streams: [String: H2StreamSeen]

    /// The stream of the request named `name`; fails the run's expectations if it is missing.
    subscript(_ name: String) -> H2StreamSeen {
        get throws {
            guard let seen = streams[name] else { throw HarnessError("no stream \(name) in the report: \(streams.keys.sorted())") }
            return seen
        }
    }

    /// The connection carried every round: no GOAWAY, no close, no client error.
    var survived: Bool { goaway == nil && !closed && error == nil }
}

/// The fields RFC 9113 §8.2.2 forbids in HTTP/2 (`te` only with a value other than
/// "trailers"), present in `headers`.
func connectionSpecificFields(_ headers: [[String]]) -> [[String]] {
    headers.filter { field in
        guard let name = field.first else { return false }
        if name == "te" { return field.last != "trailers" }
        return ["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"].contains(name)
    }
}

/// Runs `rounds` of requests over one HTTP/2 connection to 127.0.0.1:`port` (h2c with prior
/// knowledge, or TLS with ALPN h2 given `tls`: the CA file and the server name).
/// `window`: the client's initial stream window (SETTINGS_INITIAL_WINDOW_SIZE), opened again
/// only by what arrives.
func runH2Exchanges(port: UInt16, _ rounds: [[H2Request]], tls: (caFile: String, serverName: String)? = nil,
                    window: Int? = nil, dir: ScratchDir, label: String = "h2-exchanges") throws -> H2Report {
    let encoder = JSONEncoder()
    encoder.keyEncodingStrategy = .convertToSnakeCase
    let plan = dir.file("\(label).json")
    try encoder.encode(rounds).write(to: URL(fileURLWithPath: plan))
    let script = SwitchyardBinary.repositoryRoot + "/Tests/Fixtures/h2_exchanges.py"
    let extra = (tls.map { ["--tls", $0.caFile, $0.serverName] } ?? []) + (window.map { ["--window", String($0)] } ?? [])
    let result = try runCommand("/usr/bin/env", ["python3", script, String(port), plan] + extra, dir: dir, label: label,
                                timeout: .seconds(40))
    guard result.status == 0, let line = result.stdout.split(separator: "\n").last else {
        throw HarnessError("h2_exchanges.py failed (\(result.status.map(String.init) ?? "killed")): \(result.stderr.suffix(2000))")
    }
    let decoder = JSONDecoder()
    decoder.keyDecodingStrategy = .convertFromSnakeCase
    return try decoder.decode(H2Report.self, from: Data(line.utf8))
}
