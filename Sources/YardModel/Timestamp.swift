// Points in time as the admin API and the CLI's --json write them: RFC 3339 in UTC with
// milliseconds (`2026-12-07T05:20:00.123Z`), under keys ending in `_at` or `_since`
// (docs/api.md). Internally a time stays a Unix time in seconds (a Double); these
// functions convert at the edge, without Foundation, so YardModel stays pure.

public enum RFC3339 {
    /// `2026-12-07T05:20:00.123Z` for a Unix time; a value outside years 0001…9999 (or
    /// not finite) is clamped to that range rather than trapping.
    public static func string(unix: Double) -> String {
        let limit = 253_402_300_799.0  // 9999-12-31T23:59:59Z
        let clamped = unix.isFinite ? min(max(unix, -62_135_596_800), limit) : 0
        var millis = Int64((clamped * 1000).rounded(.down))
        if millis > Int64(limit) * 1000 + 999 { millis = Int64(limit) * 1000 + 999 }
        let seconds = millis >= 0 ? millis / 1000 : (millis - 999) / 1000
        let fraction = millis - seconds * 1000
        let days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
        let secondOfDay = seconds - days * 86_400
        let (year, month, day) = civil(fromDays: days)
        return pad(year, 4) + "-" + pad(month, 2) + "-" + pad(day, 2) + "T" + pad(secondOfDay / 3600, 2) + ":"
            + pad(secondOfDay / 60 % 60, 2) + ":" + pad(secondOfDay % 60, 2) + "." + pad(fraction, 3) + "Z"
    }

    /// The Unix time of an RFC 3339 date-time (`Z` or a `±hh:mm` offset, any fraction),
    /// or nil when the text is not one.
    public static func unix(_ text: String) -> Double? {
        let bytes = Array(text.utf8)
        guard bytes.count >= 20 else { return nil }
        func number(_ from: Int, _ count: Int) -> Int64? {
            guard from + count <= bytes.count else { return nil }
            var value: Int64 = 0
            for byte in bytes[from..<(from + count)] {
                guard byte >= 0x30, byte <= 0x39 else { return nil }
                value = value * 10 + Int64(byte - 0x30)
            }
            return value
        }
        guard let year = number(0, 4), bytes[4] == UInt8(ascii: "-"), let month = number(5, 2), bytes[7] == UInt8(ascii: "-"),
              let day = number(8, 2), bytes[10] == UInt8(ascii: "T") || bytes[10] == UInt8(ascii: "t") || bytes[10] == UInt8(ascii: " "),
              let hour = number(11, 2), bytes[13] == UInt8(ascii: ":"), let minute = number(14, 2), bytes[16] == UInt8(ascii: ":"),
              let second = number(17, 2),
              (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61
        else { return nil }
        var index = 19
        var fraction = 0.0
        if bytes[index] == UInt8(ascii: ".") {
            index += 1
            var scale = 0.1
            let start = index
            while index < bytes.count, bytes[index] >= 0x30, bytes[index] <= 0x39 {
                fraction += Double(bytes[index] - 0x30) * scale
                scale /= 10
                index += 1
            }
            guard index > start else { return nil }
        }
        guard index < bytes.count else { return nil }
        var offset: Int64 = 0
        switch bytes[index] {
        case UInt8(ascii: "Z"), UInt8(ascii: "z"):
            guard index + 1 == bytes.count else { return nil }
        case UInt8(ascii: "+"), UInt8(ascii: "-"):
            guard index + 6 == bytes.count, let hours = number(index + 1, 2), bytes[index + 3] == UInt8(ascii: ":"),
                  let minutes = number(index + 4, 2), hours < 24, minutes < 60 else { return nil }
            offset = (hours * 60 + minutes) * 60 * (bytes[index] == UInt8(ascii: "+") ? 1 : -1)
        default:
            return nil
        }
        let days = self.days(fromCivil: year, month, day)
        return Double(days * 86_400 + hour * 3600 + minute * 60 + second - offset) + fraction
    }

    // Howard Hinnant's days_from_civil / civil_from_days (proleptic Gregorian).
    static func days(fromCivil year: Int64, _ month: Int64, _ day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    static func civil(fromDays days: Int64) -> (Int64, Int64, Int64) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }

    private static func pad(_ value: Int64, _ width: Int) -> String {
        let text = String(value)
        return text.count >= width ? text : String(repeating: "0", count: width - text.count) + text
    }
}

// MARK: - Codable

extension CodingUserInfoKey {
    /// Set (to `true`) by the state stores' encoder: types the stores persist write the
    /// form earlier versions read (camelCase keys, Unix seconds as numbers), so replicas of
    /// an earlier version in the same fleet keep reading what a newer one writes. Their
    /// decoders read both forms.
    public static let storedDocument = CodingUserInfoKey(rawValue: "switchyard.storedDocument")!
}

extension Encoder {
    /// Whether this encoder writes a state-store document (see `CodingUserInfoKey.storedDocument`).
    public var writesStoredDocument: Bool { userInfo[.storedDocument] as? Bool == true }
}

extension KeyedEncodingContainer {
    /// A Unix time as an RFC 3339 string.
    public mutating func encodeTimestamp(_ unix: Double, forKey key: Key) throws {
        try encode(RFC3339.string(unix: unix), forKey: key)
    }

    public mutating func encodeTimestampIfPresent(_ unix: Double?, forKey key: Key) throws {
        if let unix { try encode(RFC3339.string(unix: unix), forKey: key) }
    }
}

extension KeyedDecodingContainer {
    /// A time written as an RFC 3339 string, or as Unix seconds (earlier versions).
    public func decodeTimestamp(forKey key: Key) throws -> Double {
        if let seconds = try? decode(Double.self, forKey: key) { return seconds }
        let text = try decode(String.self, forKey: key)
        guard let unix = RFC3339.unix(text) else {
            throw DecodingError.dataCorruptedError(forKey: key, in: self, debugDescription: "'\(text)' is not an RFC 3339 time")
        }
        return unix
    }

    public func decodeTimestampIfPresent(forKey key: Key) throws -> Double? {
        guard contains(key), try !decodeNil(forKey: key) else { return nil }
        return try decodeTimestamp(forKey: key)
    }
}
