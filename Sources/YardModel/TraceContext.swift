// W3C Trace Context (https://www.w3.org/TR/trace-context/) for request_id: a valid incoming
// `traceparent` is passed on unchanged (the proxy records no spans of its own); anything
// else starts a new trace.

public enum TraceContext {
    /// Whether `value` is a `traceparent` the W3C format accepts:
    /// `version "-" trace-id "-" parent-id "-" trace-flags`, lower-case hex, 2-32-16-2 digits;
    /// version `ff` is invalid; trace-id and parent-id not all zeros; version `00` is exactly
    /// 55 bytes, a later version may carry more after a `-` (read as version 00's fields).
    public static func isValidTraceparent(_ value: UnsafeRawBufferPointer) -> Bool {
        guard value.count >= 55 else { return false }
        guard isLowerHex(value, 0..<2), isLowerHex(value, 3..<35), isLowerHex(value, 36..<52), isLowerHex(value, 53..<55),
              value[2] == UInt8(ascii: "-"), value[35] == UInt8(ascii: "-"), value[52] == UInt8(ascii: "-") else { return false }
        let version = (value[0], value[1])
        if version == (UInt8(ascii: "f"), UInt8(ascii: "f")) { return false }
        if version == (UInt8(ascii: "0"), UInt8(ascii: "0")) {
            guard value.count == 55 else { return false }
        } else if value.count > 55 && value[55] != UInt8(ascii: "-") {
            return false
        }
        return !allZero(value, 3..<35) && !allZero(value, 36..<52)
    }

    private static func isLowerHex(_ value: UnsafeRawBufferPointer, _ range: Range<Int>) -> Bool {
        for i in range {
            let c = value[i]
            guard (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9")) || (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "f")) else { return false }
        }
        return true
    }

    private static func allZero(_ value: UnsafeRawBufferPointer, _ range: Range<Int>) -> Bool {
        for i in range where value[i] != UInt8(ascii: "0") { return false }
        return true
    }
}
