import Foundation

/// An RFC 7807 problem document as an ACME server sends it (RFC 8555 §6.7): what went
/// wrong (`type`, e.g. `urn:ietf:params:acme:error:badNonce`), for a human (`detail`), and
/// per identifier (`subproblems`). Threading: a value.
public struct ACMEProblem: Sendable, Equatable, CustomStringConvertible {
    public static let namespace = "urn:ietf:params:acme:error:"

    public var type: String
    public var detail: String
    /// The HTTP status the document says (or the response had), if any.
    public var status: Int?
    /// The identifier a subproblem is about (`dns` value), when the server names one.
    public var identifier: String?
    public var subproblems: [ACMEProblem]
    /// How long the CA asked the client to wait (`Retry-After` in seconds on the response,
    /// RFC 8555 §6.6: rate limits, 503), for whoever schedules the next attempt.
    public var retryAfter: Duration?

    public init(type: String, detail: String = "", status: Int? = nil, identifier: String? = nil, subproblems: [ACMEProblem] = [],
                retryAfter: Duration? = nil) {
        self.type = type
        self.detail = detail
        self.status = status
        self.identifier = identifier
        self.subproblems = subproblems
        self.retryAfter = retryAfter
    }

    /// The problem an error response carries: its problem document, or (a proxy's HTML
    /// page, an empty body) one that says the status; with the response's `Retry-After`.
    public init(response: ACMEHTTPResponse) {
        self = ACMEProblem.parse(response.body, status: response.status)
            ?? ACMEProblem(type: "about:blank", detail: "HTTP \(response.status) without a problem document", status: response.status)
        retryAfter = ACMEPolling.retryAfter(response.header("retry-after"))
    }

    /// The ACME error name without its namespace (`badNonce`, `rateLimited`), or the whole
    /// type when it is not an ACME one.
    public var code: String {
        type.hasPrefix(Self.namespace) ? String(type.dropFirst(Self.namespace.count)) : type
    }

    public var isBadNonce: Bool { code == "badNonce" }
    public var isRateLimited: Bool { code == "rateLimited" }

    public var description: String {
        var text = detail.isEmpty ? code : "\(code): \(detail)"
        if let identifier { text = "\(identifier): \(text)" }
        if !subproblems.isEmpty { text += " (" + subproblems.map(\.description).joined(separator: "; ") + ")" }
        if let retryAfter { text += " (retry after \(retryAfter.components.seconds) s)" }
        return text
    }

    /// The problem in a JSON body; nil when the body is not a problem document (no `type`).
    /// `status` fills in a missing `status` member. Never traps on hostile input.
    public static func parse(_ body: [UInt8], status: Int? = nil) -> ACMEProblem? {
        guard let object = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] else { return nil }
        return parse(object, status: status)
    }

    static func parse(_ object: [String: Any], status: Int? = nil) -> ACMEProblem? {
        guard let type = object["type"] as? String else { return nil }
        let detail = object["detail"] as? String ?? ""
        let stated = (object["status"] as? NSNumber).flatMap { Int(exactly: $0.doubleValue) }
        let identifier = (object["identifier"] as? [String: Any])?["value"] as? String
        let subproblems = (object["subproblems"] as? [Any] ?? []).prefix(100).compactMap { ($0 as? [String: Any]).flatMap { parse($0) } }
        return ACMEProblem(type: type, detail: detail, status: stated ?? status, identifier: identifier, subproblems: subproblems)
    }
}

/// Why an ACME operation failed. Every case names the operation (`"new order"`,
/// `"finalize https://…"`) so a log line says where; a CA's refusal keeps its problem
/// document. Threading: a value.
public enum ACMEError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The CA answered with an error status and (usually) a problem document.
    case server(operation: String, status: Int, problem: ACMEProblem)
    /// The CA could not be reached, or the connection failed (DNS, TCP, TLS, a timeout).
    case transport(operation: String, reason: String)
    /// The CA's answer was not what RFC 8555 says (missing field, bad JSON, too large).
    case malformedResponse(operation: String, reason: String)
    /// A local crypto step failed (key generation, signing, the CSR); OpenSSL's reason.
    case crypto(operation: String, reason: String)
    /// An authorization or order ended `invalid` (a challenge failed); the CA's reason.
    case invalid(operation: String, problem: ACMEProblem?)
    /// Polling gave up: the order or authorization was still pending at the deadline.
    case timedOut(operation: String, lastStatus: String)
    /// The caller asked for something the client refuses (no names, a bad name or URL).
    case badRequest(String)

    /// The CA's problem document, when there is one.
    public var problem: ACMEProblem? {
        switch self {
        case .server(_, _, let problem): problem
        case .invalid(_, let problem): problem
        default: nil
        }
    }

    public var description: String {
        switch self {
        case .server(let operation, let status, let problem): "\(operation): the CA answered \(status): \(problem)"
        case .transport(let operation, let reason): "\(operation): \(reason)"
        case .malformedResponse(let operation, let reason): "\(operation): unexpected answer from the CA: \(reason)"
        case .crypto(let operation, let reason): "\(operation): \(reason)"
        case .invalid(let operation, let problem): "\(operation): invalid" + (problem.map { ": \($0)" } ?? "")
        case .timedOut(let operation, let lastStatus): "\(operation): still \(lastStatus) at the deadline"
        case .badRequest(let reason): reason
        }
    }
}
