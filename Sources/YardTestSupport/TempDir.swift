#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// A fresh directory under `$TMPDIR` (or /tmp), removed with everything in it on `deinit`.
///
/// Set `SWITCHYARD_KEEP_TEMP=1` to keep it (its path is in test failures' output).
/// Threading: immutable; file writes go straight to the file system.
public final class TempDir: Sendable {
    public let path: String

    public init(prefix: String = "switchyard-test") throws {
        let base = ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        var template = Array("\(base)/\(prefix).XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        guard made != nil else {
            throw TestSupportError("mkdtemp in \(base): \(String(cString: strerror(errno)))")
        }
        path = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    deinit {
        if ProcessInfo.processInfo.environment["SWITCHYARD_KEEP_TEMP"] == "1" { return }
        try? FileManager.default.removeItem(atPath: path)
    }

    /// The path of `name` inside the directory (not created).
    public func file(_ name: String) -> String { "\(path)/\(name)" }

    /// Writes `contents` to `name` atomically (temp file + rename, as an editor would) and
    /// returns its path.
    @discardableResult
    public func write(_ name: String, _ contents: String) throws -> String {
        let target = file(name)
        try contents.write(toFile: target, atomically: true, encoding: .utf8)
        return target
    }

    /// Reads `name` as UTF-8 text.
    public func read(_ name: String) throws -> String {
        try String(contentsOfFile: file(name), encoding: .utf8)
    }
}
