// Value syntaxes that services.yml and discovery labels share, as pure parsers: a label
// says `switchyard.canary.percent=2.5` where the file says `percent: 2.5`, and both mean
// the same thing.

public enum LabelValues {
    /// A percentage from 0 to 100 with at most one decimal, as tenths of a percent
    /// (`2.5` → 25); nil for anything else (finer than 0.1 %, out of range, not a number).
    public static func permille(_ text: String) -> Int? {
        guard let value = Double(text), value >= 0, value <= 100 else { return nil }
        guard let permille = Int(exactly: (value * 10).rounded()) else { return nil }
        guard abs(Double(permille) / 10 - value) < 1e-9 else { return nil }
        return permille
    }

    /// A duration (`10s`, `500ms`, a bare number of seconds) in milliseconds, above zero
    /// and at most 24 h; nil otherwise.
    public static func durationMilliseconds(_ text: String) -> Int? {
        guard let ms = ConfigValues.parseDurationMilliseconds(text), ms > 0, ms <= ConfigValues.maxDurationMilliseconds else { return nil }
        return ms
    }

    /// A whole number in `range`; nil otherwise (never traps, whatever the text).
    public static func integer(_ text: String, in range: ClosedRange<Int>) -> Int? {
        guard let value = ConfigValues.parseInteger(text), range.contains(value) else { return nil }
        return value
    }

    /// `cookie:NAME` or `header:NAME` (a canary's sticky key); nil otherwise.
    public static func sticky(_ text: String) -> StickySource? {
        if text.hasPrefix("cookie:"), text.count > 7 { return .cookie(String(text.dropFirst(7))) }
        if text.hasPrefix("header:"), text.count > 7 { return .header(String(text.dropFirst(7))) }
        return nil
    }
}
