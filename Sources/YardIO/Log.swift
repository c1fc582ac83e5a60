#if canImport(Glibc)
import Glibc
#endif

/// Minimal structured logging to standard error, one line per event.
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

    /// Lines below this level are dropped. Set once at startup, before loops start.
    nonisolated(unsafe) public static var minimumLevel: Level = .info

    public static func debug(_ message: @autoclosure () -> String) { emit(.debug, message) }
    public static func info(_ message: @autoclosure () -> String) { emit(.info, message) }
    public static func warning(_ message: @autoclosure () -> String) { emit(.warning, message) }
    public static func error(_ message: @autoclosure () -> String) { emit(.error, message) }

    private static func emit(_ level: Level, _ message: () -> String) {
        guard level >= minimumLevel else { return }
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
        var line = "\(stamp) \(level.label) \(message())\n"
        line.withUTF8 { bytes in
            _ = Glibc.write(2, bytes.baseAddress, bytes.count)
        }
    }
}
