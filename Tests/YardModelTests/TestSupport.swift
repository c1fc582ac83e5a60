// Helpers shared by the YardModel tests: temporary folders, the shipped conf files, and
// waiting for asynchronous deliveries with a deadline.

import Foundation
import Testing
import YardModel

// MARK: - Files

/// A fresh folder under the system temp dir, removed by `remove()`.
struct TemporaryDirectory {
    let path: String

    init() throws {
        var template = Array((NSTemporaryDirectory() + "/yardmodel-XXXXXX").utf8CString)
        let created = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        guard let created else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
        path = String(cString: created)
    }

    func file(_ name: String) -> String { path + "/" + name }

    /// Writes `text` in place (truncate and rewrite, keeping the inode).
    func write(_ name: String, _ text: String) throws {
        let handle = FileHandle(forWritingAtPath: file(name))
        if let handle {
            try handle.truncate(atOffset: 0)
            try handle.write(contentsOf: Data(text.utf8))
            try handle.close()
        } else {
            try Data(text.utf8).write(to: URL(fileURLWithPath: file(name)))
        }
    }

    /// Writes `text` to a temporary file and renames it over `name`, as editors and `mv` do.
    func replaceAtomically(_ name: String, _ text: String) throws {
        let temporary = file(".\(name).tmp")
        try Data(text.utf8).write(to: URL(fileURLWithPath: temporary))
        guard rename(temporary, file(name)) == 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
    }

    /// Sets the modification time to now without changing the content.
    func touch(_ name: String) throws {
        guard utimes(file(name), nil) == 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// The repository's `conf/` folder, found from this source file.
func shippedConfPath(_ name: String, filePath: String = #filePath) -> String {
    URL(fileURLWithPath: filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("conf").appendingPathComponent(name).path
}

// MARK: - Errors

/// The `ConfigError` that `body` throws, or a recorded failure if it succeeds.
func configError<T>(_ body: () throws(ConfigError) -> T, sourceLocation: SourceLocation = #_sourceLocation) -> ConfigError? {
    do {
        let value = try body()
        Issue.record("expected a ConfigError, got \(value)", sourceLocation: sourceLocation)
        return nil
    } catch {
        return error
    }
}

// MARK: - Waiting

/// Polls `condition` every few milliseconds until it holds or `timeout` passes; returns
/// whether it held. Used instead of bare sleeps: the test proceeds as soon as the event
/// happened, and a slow machine only makes it slower, not flaky.
func eventually(timeout: Duration = .seconds(5), _ condition: () -> Bool) async -> Bool {
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    while clock.now < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(5))
    }
    return condition()
}
