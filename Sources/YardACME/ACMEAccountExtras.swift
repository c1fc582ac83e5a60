#if canImport(Glibc)
import Glibc
#endif
import Foundation
internal import CYardOpenSSL

// MARK: - External account binding (RFC 8555 §7.3.4)

/// The key id and MAC key a CA hands out (ZeroSSL, a company's step-ca) to tie a new ACME
/// account to an account the operator already has there.
///
/// Threading: a value.
public struct ACMEExternalAccountBinding: Sendable, Equatable {
    public var keyID: String
    public var macKey: [UInt8]

    /// `macKey` is the base64url text the CA shows (padding and standard base64 accepted).
    public init(keyID: String, macKeyText: String) throws(ACMEError) {
        let trimmed = macKeyText.trimmingSpaces().replacingOccurrences(of: "=", with: "")
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
        guard !keyID.isEmpty else { throw ACMEError.badRequest("the external account key id is empty") }
        guard let key = Base64URL.decode(trimmed), key.count >= 16 else {
            throw ACMEError.badRequest("the external account MAC key is not base64url of at least 16 bytes")
        }
        self.keyID = keyID
        self.macKey = key
    }

    /// The `externalAccountBinding` member of a newAccount payload: a JWS over the account's
    /// public key, HS256 with the MAC key, `kid` the key id and `url` newAccount's.
    func jws(accountKey: ECPublicJWK, newAccountURL: String) throws(ACMEError) -> String {
        let header = JSONText.object([("alg", "HS256"), ("kid", keyID), ("url", newAccountURL)])
        let key = macKey
        return try JWS.flattened(protectedHeader: header, payload: accountKey.json) { (input) throws(ACMEError) in
            try Digest.hmacSHA256(key: key, message: input)
        }
    }
}

extension Digest {
    static func hmacSHA256(key: [UInt8], message: [UInt8]) throws(ACMEError) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        guard HMAC(EVP_sha256(), key, Int32(key.count), message, message.count, &out, &length) != nil, length == 32 else {
            throw cryptoError("HMAC-SHA256")
        }
        return out
    }
}

// MARK: - Renewal information (RFC 9773, ARI)

/// When the CA suggests renewing a certificate (RFC 9773 §4.2): a window in Unix seconds.
public struct ACMERenewalWindow: Sendable, Equatable {
    public var start: Int64
    public var end: Int64

    public init(start: Int64, end: Int64) {
        self.start = start
        self.end = end
    }

    /// Parses the renewalInfo body: `{"suggestedWindow": {"start": RFC 3339, "end": RFC 3339}}`.
    /// Nil for anything else, or a window that ends before it starts.
    public static func parse(_ body: [UInt8]) -> ACMERenewalWindow? {
        struct Body: Decodable {
            struct Window: Decodable { var start: String; var end: String }
            var suggestedWindow: Window
        }
        guard let decoded = try? JSONDecoder().decode(Body.self, from: Data(body)),
              let start = RFC3339.unixSeconds(decoded.suggestedWindow.start),
              let end = RFC3339.unixSeconds(decoded.suggestedWindow.end), end >= start else { return nil }
        return ACMERenewalWindow(start: start, end: end)
    }

    /// A uniformly random moment in the window (RFC 9773 §4.2: spread the fleet's renewals).
    public func pick(random: UInt64 = UInt64.random(in: 0...UInt64.max)) -> Int64 {
        let span = UInt64(clamping: end - start)
        return span == 0 ? start : start + Int64(random % span)
    }
}

extension ACMEClient {
    /// The CA's suggested renewal window for a certificate (its `renewalID`), or nil when
    /// the directory offers no `renewalInfo` (then renew at two thirds of the lifetime).
    public func renewalWindow(certificateID: String) throws(ACMEError) -> ACMERenewalWindow? {
        guard let base = try loadDirectory().renewalInfo, !base.isEmpty else { return nil }
        let parts = certificateID.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, parts.allSatisfy({ !$0.isEmpty && Base64URL.decode(String($0)) != nil }) else {
            throw ACMEError.badRequest("'\(certificateID)' is not an ARI certificate id")
        }
        let url = try ACMEURL(base.hasSuffix("/") ? base + certificateID : base + "/" + certificateID)
        let response = try http.send("GET", url, accept: "application/json")
        guard response.status == 200 else {
            throw ACMEError.server(operation: "GET renewalInfo", status: response.status, problem: ACMEProblem(response: response))
        }
        guard let window = ACMERenewalWindow.parse(response.body) else {
            throw ACMEError.malformedResponse(operation: "GET renewalInfo", reason: "no suggestedWindow with RFC 3339 start and end")
        }
        return window
    }
}

/// RFC 3339 timestamps (`2025-01-02T03:04:05Z`, fractions and offsets allowed) to Unix
/// seconds, without a formatter (Foundation's differ across platforms). Pure.
enum RFC3339 {
    static func unixSeconds(_ text: String) -> Int64? {
        let bytes = Array(text.utf8)
        guard bytes.count >= 20, bytes.count <= 40 else { return nil }
        func number(_ from: Int, _ count: Int) -> Int? {
            guard from + count <= bytes.count else { return nil }
            var value = 0
            for byte in bytes[from..<from + count] {
                guard byte >= 0x30, byte <= 0x39 else { return nil }
                value = value * 10 + Int(byte - 0x30)
            }
            return value
        }
        guard let year = number(0, 4), bytes[4] == UInt8(ascii: "-"), let month = number(5, 2), bytes[7] == UInt8(ascii: "-"),
              let day = number(8, 2), bytes[10] | 0x20 == UInt8(ascii: "t"), let hour = number(11, 2), bytes[13] == UInt8(ascii: ":"),
              let minute = number(14, 2), bytes[16] == UInt8(ascii: ":"), let second = number(17, 2),
              (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second <= 60 else { return nil }
        var index = 19
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            index += 1
            while index < bytes.count, bytes[index] >= 0x30, bytes[index] <= 0x39 { index += 1 }
        }
        guard index < bytes.count else { return nil }
        var offset = 0
        if bytes[index] | 0x20 == UInt8(ascii: "z") {
            guard index + 1 == bytes.count else { return nil }
        } else {
            guard bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-"), index + 6 == bytes.count,
                  let hours = number(index + 1, 2), bytes[index + 3] == UInt8(ascii: ":"), let minutes = number(index + 4, 2),
                  hours < 24, minutes < 60 else { return nil }
            offset = (hours * 60 + minutes) * 60 * (bytes[index] == UInt8(ascii: "-") ? -1 : 1)
        }
        // Days from the civil date (Howard Hinnant's algorithm), valid for any year here.
        let y = month <= 2 ? year - 1 : year
        let era = y / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        let days = era * 146_097 + dayOfEra - 719_468
        return Int64(days * 86_400 + hour * 3600 + minute * 60 + second - offset)
    }
}
