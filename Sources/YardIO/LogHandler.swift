#if canImport(Glibc)
import Glibc
#endif
import Logging

/// The process log's swift-log handler: every process log line, the control plane's and the
/// data plane's rare failure lines (through `Log`), is written by this one type, so the
/// format, the level and the escaping are decided in one place.
///
/// A line is text (`2026-12-07T05:20:00.123Z info message k=v`) or one JSON object
/// (`{"ts":"…","level":"info","msg":"message","fields":{"k":"v"}}`), written to standard
/// error with one `write(2)`. Metadata (the logger's own, then the call's, the call's
/// winning on a clash) become the fields, sorted by key so a line reads the same on every
/// run; a nested array or dictionary stays a JSON array or object. Whatever a message or a
/// field carries (a client's header, a label, a file's content), a line stays one line:
/// JSON escapes quotes, backslashes and control characters, and text escapes control
/// characters the same way, so a newline cannot forge a second line.
///
/// Threading: a value type; `log` may run on any thread (the kernel keeps one `write(2)` of
/// a line under PIPE_BUF whole among concurrent writers).
public struct SwitchyardLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    public let format: Log.Format
    public let label: String
    /// Where lines go; standard error, or a pipe in a test.
    let fd: Int32

    public init(label: String, format: Log.Format, logLevel: Logger.Level, fd: Int32 = 2) {
        self.label = label
        self.format = format
        self.logLevel = logLevel
        self.fd = fd
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var fields = self.metadata
        if let metadata = event.metadata { fields.merge(metadata) { _, call in call } }
        var text = Self.line(event.level, event.message.description, fields, stamp: Log.timestamp(), format: format)
        text.withUTF8 { bytes in Self.writeAll(fd, bytes) }
    }

    // MARK: Formatting (pure)

    /// One line, newline included, in `format`.
    static func line(_ level: Logger.Level, _ message: String, _ fields: Logger.Metadata, stamp: String, format: Log.Format) -> String {
        let keys = fields.keys.sorted()
        switch format {
        case .text:
            var line = "\(stamp) \(level.switchyardLabel) "
            appendEscaped(message, to: &line)
            for key in keys {
                line += " "
                appendEscaped(key, to: &line)
                line += "="
                appendEscaped(fields[key]?.description ?? "", to: &line)
            }
            return line + "\n"
        case .json:
            var line = "{\"ts\":\"\(stamp)\",\"level\":\"\(level.switchyardLabel)\",\"msg\":"
            appendJSONString(message, to: &line)
            line += ",\"fields\":{"
            for (index, key) in keys.enumerated() {
                if index > 0 { line += "," }
                appendJSONString(key, to: &line)
                line += ":"
                if let value = fields[key] { appendJSON(value, to: &line) } else { line += "null" }
            }
            return line + "}}\n"
        }
    }

    /// A metadata value as JSON: strings (and anything string-convertible) as strings,
    /// arrays as arrays, dictionaries as objects with sorted keys.
    static func appendJSON(_ value: Logger.Metadata.Value, to out: inout String) {
        switch value {
        case .string(let text): appendJSONString(text, to: &out)
        case .stringConvertible(let convertible): appendJSONString(convertible.description, to: &out)
        case .array(let values):
            out += "["
            for (index, element) in values.enumerated() {
                if index > 0 { out += "," }
                appendJSON(element, to: &out)
            }
            out += "]"
        case .dictionary(let object):
            out += "{"
            for (index, key) in object.keys.sorted().enumerated() {
                if index > 0 { out += "," }
                appendJSONString(key, to: &out)
                out += ":"
                if let element = object[key] { appendJSON(element, to: &out) } else { out += "null" }
            }
            out += "}"
        }
    }

    /// `text` as a JSON string: quotes, backslashes and control characters escaped, so a
    /// message carrying a newline or a quote stays one line and one value.
    static func appendJSONString(_ text: String, to out: inout String) {
        out += "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            default: appendEscapingControl(scalar, to: &out)
            }
        }
        out += "\""
    }

    /// `text` for a text line: as it is, but control characters escaped as in JSON.
    static func appendEscaped(_ text: String, to out: inout String) {
        for scalar in text.unicodeScalars { appendEscapingControl(scalar, to: &out) }
    }

    /// A scalar as it is, or its escape if it is a control character (C0, DEL, or a
    /// Unicode line or paragraph separator, which some readers split lines on).
    private static func appendEscapingControl(_ scalar: Unicode.Scalar, to out: inout String) {
        switch scalar {
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

    /// Writes the whole line, retrying EINTR and short writes; a failed write (a closed
    /// standard error) loses the line, as there is nowhere left to report it.
    private static func writeAll(_ fd: Int32, _ bytes: UnsafeBufferPointer<UInt8>) {
        guard var pointer = bytes.baseAddress else { return }
        var left = bytes.count
        while left > 0 {
            let written = Glibc.write(fd, pointer, left)
            if written < 0 {
                if errno == EINTR { continue }
                return
            }
            if written == 0 { return }
            pointer += written
            left -= written
        }
    }
}

extension Logger.Level {
    /// The word a line carries: swift-log's names, but `warn` for warning (the word the
    /// config's `log.level` and the lines used before swift-log).
    var switchyardLabel: String {
        switch self {
        case .trace: return "trace"
        case .debug: return "debug"
        case .info: return "info"
        case .notice: return "notice"
        case .warning: return "warn"
        case .error: return "error"
        case .critical: return "critical"
        }
    }
}
