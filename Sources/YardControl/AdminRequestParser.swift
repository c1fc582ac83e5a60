// The admin API's request reader: bytes in, a request (or a refusal) out. Pure, so every
// input can be tried in a unit test or a fuzzer without a socket, and nothing a client
// sends can trap the process: a malformed query, a cut-short percent-escape, a body that
// is not the JSON a route takes are all answers, never crashes.

import Foundation
import YardHTTP

/// What `AdminRequestParser.parse` made of the bytes received so far.
public enum AdminParse: Sendable {
    /// More bytes are needed. `needed`: the whole request's length once the head is known
    /// (so the reader need not parse again before that many bytes are in), nil before.
    case incomplete(needed: Int?)
    /// A whole request; `consumed` bytes belong to it (a pipelined request may follow).
    case request(AdminRequest, consumed: Int)
    /// Refused before any handler sees it: answer this and close the connection.
    case refused(AdminResponse)
}

/// A body a route takes, decoded by the parser (a decoding failure is kept, not thrown,
/// so it is reported after the request is authorized, like any other bad argument).
public enum AdminBody: Sendable {
    case none
    case trafficChange(TrafficChangeRequest)
    case drain(DrainRequest)
    /// The body is not the JSON the route takes: the 400's message.
    case invalid(String)
}

/// The body of `POST /endpoints/ID/drain`.
public struct DrainRequest: Codable, Sendable, Equatable {
    public var drain: Bool?
    public init(drain: Bool? = nil) { self.drain = drain }
}

/// A request refused while reading it: the status and what to tell the client.
public struct AdminRequestError: Error, Equatable, Sendable {
    public var status: Int
    public var message: String
    public init(_ status: Int, _ message: String) {
        self.status = status
        self.message = message
    }

    var response: AdminResponse { .error(status, message) }
}

/// Reads admin API requests. Threading: stateless; call from any thread.
public enum AdminRequestParser {
    /// The largest body a request may carry (413 beyond it).
    public static let maxBodyBytes = 1 << 20
    static let limits = HTTPLimits(maxStartLine: 8_192, maxHeadBytes: 32_768, maxHeaders: 100)
    /// Headers that decide who may do what: a second copy is ambiguous and refused.
    static let singletonHeaders: Set<String> = ["host", "origin", "content-type", "authorization", "content-length"]

    /// Parses one whole request from the start of `bytes`: head, target and query, body,
    /// and the JSON body of the routes that take one. No I/O; never traps.
    public static func parse(_ bytes: UnsafeRawBufferPointer) -> AdminParse {
        let fields = UnsafeMutablePointer<HeaderField>.allocate(capacity: limits.maxHeaders)
        fields.initialize(repeating: .empty, count: limits.maxHeaders)
        defer { fields.deallocate() }
        var head = RequestHead()
        var scanFrom = 0
        switch parseRequestHead(bytes, limits: limits, head: &head, fields: fields, scanFrom: &scanFrom) {
        case .incomplete:
            return .incomplete(needed: nil)
        case .invalid(let error):
            return .refused(AdminRequestError(error.status, "bad request: \(error.reason)").response)
        case .complete:
            break
        }
        func text(_ span: ByteSpan) -> String { String(decoding: span.bytes(in: bytes), as: UTF8.self) }
        var headers: [String: String] = [:]
        for field in UnsafeBufferPointer(start: fields, count: min(head.headerCount, limits.maxHeaders)) {
            let name = text(field.name).lowercased()
            if headers[name] != nil, singletonHeaders.contains(name) {
                return .refused(AdminRequestError(400, "the \(name) header is sent twice").response)
            }
            headers[name] = text(field.value)
        }
        let bodyLength: Int
        switch head.framing {
        case .contentLength(let length):
            guard length >= 0, length <= Int64(maxBodyBytes) else {
                return .refused(AdminRequestError(413, "the request body is over \(maxBodyBytes) bytes (1 MiB)").response)
            }
            bodyLength = Int(truncatingIfNeeded: length)
        case .chunked:
            return .refused(AdminRequestError(411, "send a Content-Length, not a chunked body").response)
        case .none, .untilClose:
            bodyLength = 0
        }
        let total = head.headLength + bodyLength
        guard bytes.count >= total else { return .incomplete(needed: total) }
        let method = text(head.methodSpan)
        let path: String
        let query: [String: String]
        do throws(AdminRequestError) {
            (path, query) = try parseTarget(Array(head.targetSpan.bytes(in: bytes)))
        } catch {
            return .refused(error.response)
        }
        let body = Array(UnsafeRawBufferPointer(rebasing: bytes[head.headLength ..< total]))
        var request = AdminRequest(method: method, path: path, query: query, headers: headers, body: body)
        request.json = decodeBody(method: method, path: path, body: body)
        request.keepAlive = head.keepAlive
        return .request(request, consumed: total)
    }

    /// Splits an origin-form target into its path (still percent-encoded, as routes match
    /// it) and its decoded query parameters. Refuses an empty name (`?=b`), a name given
    /// twice, and a percent-escape that is cut short or not hex; `?a` is `a` = "" and
    /// empty pairs (`?&`) are skipped.
    public static func parseTarget(_ target: [UInt8]) throws(AdminRequestError) -> (path: String, query: [String: String]) {
        guard target.first == UInt8(ascii: "/") else {
            throw AdminRequestError(400, "the request target must be a path starting with '/'")
        }
        guard let mark = target.firstIndex(of: UInt8(ascii: "?")) else {
            return (String(decoding: target, as: UTF8.self), [:])
        }
        var query: [String: String] = [:]
        for pair in target[(mark + 1)...].split(separator: UInt8(ascii: "&"), omittingEmptySubsequences: true) {
            let equals = pair.firstIndex(of: UInt8(ascii: "="))
            let rawName = equals.map { pair[pair.startIndex ..< $0] } ?? pair[...]
            let rawValue = equals.map { pair[($0 + 1)...] } ?? []
            let name = try percentDecoded(rawName, what: "a query parameter name")
            guard !name.isEmpty else { throw AdminRequestError(400, "a query parameter has an empty name") }
            guard query[name] == nil else {
                throw AdminRequestError(400, "the query parameter '\(name)' is given twice")
            }
            query[name] = try percentDecoded(rawValue, what: "the query parameter '\(name)'")
        }
        return (String(decoding: target[..<mark], as: UTF8.self), query)
    }

    /// `%XX` escapes decoded; the result must be UTF-8. `+` stays a plus sign.
    static func percentDecoded(_ raw: ArraySlice<UInt8>, what: String) throws(AdminRequestError) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(raw.count)
        var i = raw.startIndex
        while i < raw.endIndex {
            let byte = raw[i]
            guard byte == UInt8(ascii: "%") else {
                out.append(byte)
                i += 1
                continue
            }
            guard raw.endIndex - i >= 3, let high = hexValue(raw[i + 1]), let low = hexValue(raw[i + 2]) else {
                throw AdminRequestError(400, "\(what) has a percent-escape that is not '%' and two hex digits")
            }
            out.append(high << 4 | low)
            i += 3
        }
        guard let text = String(validating: out, as: UTF8.self) else {
            throw AdminRequestError(400, "\(what) is not UTF-8 once decoded")
        }
        return text
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    /// The JSON body of the routes that take one; `.none` for the others and for an empty body.
    static func decodeBody(method: String, path: String, body: [UInt8]) -> AdminBody {
        guard method == "POST", !body.isEmpty else { return .none }
        let parts = path.split(separator: "/", omittingEmptySubsequences: true)
        let decoder = JSONDecoder()
        do {
            switch (parts.count, parts.first, parts.last) {
            case (3, "services", "flip"), (3, "services", "canary"):
                return .trafficChange(try decoder.decode(TrafficChangeRequest.self, from: Data(body)))
            case (3, "endpoints", "drain"):
                return .drain(try decoder.decode(DrainRequest.self, from: Data(body)))
            default:
                return .none
            }
        } catch {
            return .invalid("the body is not the JSON this call takes: \(error)")
        }
    }
}
