// What `switchyard certs` and `switchyard status` read from `GET /certs`, and what
// `status` and `status --check` say about it. Pure: the time is passed in.

import Foundation

/// The `GET /certs` document: one item per ACME name a replica holds (or orders).
///
/// Threading: a value.
public struct ACMECertificateStatus: Decodable, Sendable {
    public struct Item: Decodable, Sendable {
        public var listener: String
        public var name: String
        public var issuer: String?
        public var not_before: Int64?
        public var not_after: Int64?
        public var next_renewal: Int64?
        public var last_error: String?
        public var failures: Int
        public var next_attempt: Int64?
        public var lease_holder: String?
    }

    public var certificates: [Item]

    /// `status`: one line per certificate whose renewal is due (its renewal window is open)
    /// and not done yet, or that has expired. A renewal normally ends within seconds of its
    /// window opening, so a line that stays means renewals are failing.
    public func warnings(now: Int64) -> [String] {
        certificates.compactMap { item in
            guard let notAfter = item.not_after else { return nil }
            if now >= notAfter { return Self.line(item, "expired at \(Self.time(notAfter))") }
            guard let due = item.next_renewal, now >= due else { return nil }
            return Self.line(item, "in its renewal window since \(Self.time(due)), expires \(Self.time(notAfter))")
        }
    }

    /// `status --check`: one line per certificate that has expired or has less than a
    /// sixth of its lifetime left (15 days of a 90-day certificate, renewals failing for
    /// about two weeks): a problem worth a failing check, where a renewal window that just
    /// opened is not.
    public func problems(now: Int64) -> [String] {
        certificates.compactMap { item in
            guard let notAfter = item.not_after else { return nil }
            if now >= notAfter { return Self.line(item, "expired at \(Self.time(notAfter))") }
            guard let notBefore = item.not_before, notAfter - now < max(notAfter - notBefore, 0) / 6 else { return nil }
            return Self.line(item, "expires \(Self.time(notAfter)), less than a sixth of its lifetime left")
        }
    }

    private static func line(_ item: Item, _ what: String) -> String {
        var text = "certificate \(item.name) (listener \(item.listener)): \(what)"
        if let error = item.last_error { text += "; \(item.failures) failed renewal(s), last: \(error)" }
        return text
    }

    public static func time(_ seconds: Int64) -> String {
        ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: TimeInterval(seconds)))
    }
}
