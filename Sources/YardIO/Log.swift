#if canImport(Glibc)
import Glibc
#endif
import Logging

/// The process log's facade for the data plane (YardProxy, YardHTTP, YardHTTP2, YardIO):
/// `Log.warning("upstream refused", ["endpoint": "…"])`. Its sink is `logger`, a swift-log
/// `Logger` whose handler is `SwitchyardLogHandler`; the control plane logs through that
/// same `Logger` directly (each module's ProcessLogger.swift), and `LoggingSystem` gives
/// any other `Logger(label:)` the same handler once `bootstrap` ran, so every process log
/// line has one format, one level and one escaping.
///
/// Why a facade at all: the data plane's call sites (a failure answered once, where it is
/// answered; never per successful request) stay a static call that evaluates nothing below
/// the level, with no `Logger` value to thread through the loops; `KeyValuePairs` keep the
/// call sites short. Threading: any thread; `bootstrap` runs once at startup, before any
/// loop or thread starts, and is the only writer of `logger`.
public enum Log {
    /// How a line is written (`log: {format: …}`, `--log-format`).
    public enum Format: String, Sendable, CaseIterable {
        case text, json
    }

    /// The process logger. Before `bootstrap` (unit tests, client commands) it writes text
    /// lines at info and above to standard error, through the same handler.
    nonisolated(unsafe) public private(set) static var logger = Logger(label: "switchyard") { label in
        SwitchyardLogHandler(label: label, format: .text, logLevel: .info)
    }
    nonisolated(unsafe) private static var bootstrapped = false

    /// Makes `SwitchyardLogHandler` (in `format`, keeping `level` and above) the handler of
    /// every swift-log `Logger` in the process, this facade's included. Once per process,
    /// at startup (swift-log's `LoggingSystem` takes one bootstrap); a second call only
    /// changes this facade's logger.
    public static func bootstrap(format: Format, level: Logger.Level) {
        let factory: @Sendable (String) -> any LogHandler = { label in
            SwitchyardLogHandler(label: label, format: format, logLevel: level)
        }
        if !bootstrapped {
            bootstrapped = true
            LoggingSystem.bootstrap(factory)
        }
        logger = Logger(label: "switchyard", factory: factory)
    }

    public static func debug(_ message: @autoclosure () -> String, _ fields: KeyValuePairs<String, String> = [:]) { emit(.debug, message, fields) }
    public static func info(_ message: @autoclosure () -> String, _ fields: KeyValuePairs<String, String> = [:]) { emit(.info, message, fields) }
    public static func warning(_ message: @autoclosure () -> String, _ fields: KeyValuePairs<String, String> = [:]) { emit(.warning, message, fields) }
    public static func error(_ message: @autoclosure () -> String, _ fields: KeyValuePairs<String, String> = [:]) { emit(.error, message, fields) }

    /// Out of line so a call site on the data plane stays one call; the level check comes
    /// first (swift-log's, on the handler's `logLevel`), before the message or the fields
    /// are built.
    @inline(never)
    private static func emit(_ level: Logger.Level, _ message: () -> String, _ fields: KeyValuePairs<String, String>) {
        logger.log(level: level, "\(message())", metadata: metadata(fields))
    }

    static func metadata(_ fields: KeyValuePairs<String, String>) -> Logger.Metadata? {
        if fields.isEmpty { return nil }
        var metadata = Logger.Metadata(minimumCapacity: fields.count)
        for (key, value) in fields { metadata[key] = .string(value) }
        return metadata
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
