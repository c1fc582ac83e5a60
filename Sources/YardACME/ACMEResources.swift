import Foundation

/// The resources of RFC 8555 §7.1 as this client reads them: only the members it uses,
/// decoded leniently (unknown members ignored) but never trapping. Threading: values.

/// The directory (§7.1.1): where each operation lives.
public struct ACMEDirectory: Decodable, Sendable, Equatable {
    public var newNonce: String
    public var newAccount: String
    public var newOrder: String
    /// RFC 9773 (ARI): where renewal windows are asked for; nil when the CA has none.
    public var renewalInfo: String?
    public var meta: Meta?

    public struct Meta: Decodable, Sendable, Equatable {
        public var termsOfService: String?
        public var externalAccountRequired: Bool?
    }
}

/// An identifier: always `dns` here.
public struct ACMEIdentifier: Decodable, Sendable, Equatable {
    public var type: String
    public var value: String
}

/// An order (§7.1.3): `pending` → `ready` → `processing` → `valid` (or `invalid`).
public struct ACMEOrder: Decodable, Sendable, Equatable {
    public var status: String
    public var identifiers: [ACMEIdentifier]
    public var authorizations: [String]
    public var finalize: String
    public var certificate: String?
    public var error: ProblemBody?
}

/// An authorization (§7.1.4) for one identifier, with the challenges that can prove it.
public struct ACMEAuthorization: Decodable, Sendable, Equatable {
    public var status: String
    public var identifier: ACMEIdentifier
    public var challenges: [ACMEChallenge]
    public var wildcard: Bool?
}

/// A challenge (§7.1.5, §8): `http-01`, `tls-alpn-01`, `dns-01`...
public struct ACMEChallenge: Decodable, Sendable, Equatable {
    public var type: String
    public var url: String
    public var status: String
    public var token: String?
    public var error: ProblemBody?
}

/// A problem document embedded in a resource (an order's or a challenge's `error`).
public struct ProblemBody: Decodable, Sendable, Equatable {
    public var type: String
    public var detail: String?
    public var status: Int?

    public var problem: ACMEProblem { ACMEProblem(type: type, detail: detail ?? "", status: status) }
}

extension ACMEDirectory {
    static func decode<T: Decodable>(_ type: T.Type, from body: [UInt8], operation: String) throws(ACMEError) -> T {
        do {
            return try JSONDecoder().decode(T.self, from: Data(body))
        } catch {
            throw ACMEError.malformedResponse(operation: operation, reason: "not a valid \(T.self): \(error)")
        }
    }
}

/// How long to wait before polling again (RFC 8555 §8.2, RFC 9110 §10.2.3): the
/// server's `Retry-After` in seconds when it sends one, else `fallback`; never more than
/// `maximum`, never negative. An HTTP-date `Retry-After` is not parsed (the fallback is
/// used). Pure.
public enum ACMEPolling {
    public static func delay(retryAfter: String?, fallback: Duration, maximum: Duration) -> Duration {
        min(self.retryAfter(retryAfter) ?? fallback, maximum)
    }

    /// A `Retry-After` of delay-seconds; nil when absent, an HTTP-date, or not a number.
    public static func retryAfter(_ header: String?) -> Duration? {
        guard let text = header?.trimmingSpaces(), !text.isEmpty, text.utf8.count <= 9,
              text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }), let seconds = Int(text) else {
            return nil
        }
        return .seconds(seconds)
    }
}

/// DNS names a certificate may be ordered for: lower-cased, letters, digits, `-` and
/// `.`, an optional leading `*.`, at most 253 characters, labels of 1...63. Pure.
public enum ACMEIdentifiers {
    public static func validated(_ names: [String]) throws(ACMEError) -> [String] {
        guard !names.isEmpty else { throw ACMEError.badRequest("a certificate needs at least one name (--name)") }
        guard names.count <= 100 else { throw ACMEError.badRequest("\(names.count) names: at most 100 per certificate") }
        var out: [String] = []
        for name in names {
            let lowered = name.lowercased()
            let body = lowered.hasPrefix("*.") ? String(lowered.dropFirst(2)) : lowered
            let labels = body.split(separator: ".", omittingEmptySubsequences: false)
            let ok = !body.isEmpty && lowered.utf8.count <= 253 && labels.count >= 2 && labels.allSatisfy { label in
                !label.isEmpty && label.utf8.count <= 63 && !label.hasPrefix("-") && !label.hasSuffix("-")
                    && label.utf8.allSatisfy { ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2D }
            }
            guard ok else {
                throw ACMEError.badRequest("'\(name)' is not a DNS name a CA can issue for (letters, digits, '-', '.', at least two labels, optional leading '*.')")
            }
            if !out.contains(lowered) { out.append(lowered) }
        }
        return out
    }
}
