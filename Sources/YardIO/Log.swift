#if canImport(Glibc)
import Glibc
#endif

/// Minimal structured logging to standard error, one line per event: text
/// (`2026-12-07T05:20:00.123Z info message k=v`) or, with `format = .json` (config
/// `log: {format: json}`, `switchyard run --log-format json`), one JSON object per line:
/// `{"ts":"2026-12-07T05:20:00.123Z","level":"info","msg":"message","fields":{"k":"v"}}`.
///
/// For the control plane and for failures on the data plane (each failure is logged once,
/// where it is answered). Never called per successful request. Threading: any thread; each
/// line is one `write(2)`, which the kernel keeps whole for lines under PIPE_BUF.
public enum Log {
    public enum Level: Int, Sendable, Comparable {
        case debug, info, warning, error
        public static func < (lhs: Level, rhs: Level) -> Bool { lhs.rawValue < rhs.rawValue }
        var label: String {
            switch self {
            case .debug: return "debug"
            case .info: return "info"
            case .warning: return "warn"
            case .error: return "error"
            }
        }
    }

    /// How a line is written.
    public enum Format: String, Sendable, CaseIterable {
        case text, json
    }

    /// Lines below this level are dropped. Set once at startup, before loops start.
    nonisolated(unsafe) public static var minimumLevel: Level = .info
    /// Set once at startup, before loops start.
    nonisolated(unsafe) public static var format: Format = .text

    public static func debug(_ message: @autoclosure () -> String, _ fields: KeyValuePairs<String, String> = [:]) { emit(.debug, message, fields) }
    public static func info(_ message: @autoclosure () -> String, _ fields: KeyValuePairs<String, String> = [:]) { emit(.info, message, fields) }
    public static func warning(_ message: @autoclosure () -> String, _ fields: KeyValuePairs<String, String> = [:]) { emit(.warning, message, fields) }
    public static func error(_ message: @autoclosure () -> String, _ fields: KeyValuePairs<String, String> = [:]) { emit(.error, message, fields) }

    private static func emit(_ level: Level, _ message: () -> String, _ fields: KeyValuePairs<String, String>) {
        guard level >= minimumLevel else { return }
        var line = self.line(level, message(), fields, stamp: timestamp(), format: format)
        line.withUTF8 { bytes in
            _ = Glibc.write(2, bytes.baseAddress, bytes.count)
        }
    }

    /// One line, newline included, in `format`.
    static func line(_ level: Level, _ message: String, _ fields: KeyValuePairs<String, String>, stamp: String, format: Format) -> String {
        switch format {
        case .text:
            var line = "\(stamp) \(level.label) \(message)"
            for (key, value) in fields { line += " \(key)=\(value)" }
            return line + "\n"
        case .json:
            var line = "{\"ts\":\"\(stamp)\",\"level\":\"\(level.label)\",\"msg\":"
            appendJSONString(message, to: &line)
            line += ",\"fields\":{"
            var first = true
            for (key, value) in fields {
                if !first { line += "," }
                first = false
                appendJSONString(key, to: &line)
                line += ":"
                appendJSONString(value, to: &line)
            }
            return line + "}}\n"
        }
    }

    /// `text` as a JSON string: quotes, backslashes and control characters escaped, so a
    /// message carrying a newline or a quote (a client's header, a file's content) stays
    /// one line and one value.
    static func appendJSONString(_ text: String, to out: inout String) {
        out += "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F || scalar.value == 0x2028 || scalar.value == 0x2029 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        out += "\""
    }

    /// The current UTC time, RFC 3339 with milliseconds.
    static func timestamp() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var tmValue = tm()
        var seconds = ts.tv_sec
        gmtime_r(&seconds, &tmValue)
        let millis = Int(ts.tv_nsec / 1_000_000)
        func pad(_ v: Int32, _ width: Int = 2) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        let stamp = "\(tmValue.tm_year + 1900)-\(pad(tmValue.tm_mon + 1))-\(pad(tmValue.tm_mday))T"
            + "\(pad(tmValue.tm_hour)):\(pad(tmValue.tm_min)):\(pad(tmValue.tm_sec)).\(pad(Int32(millis), 3))Z"
        return stamp
    }
}
