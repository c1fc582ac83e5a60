import Foundation

/// The package root: the nearest directory above `filePath` holding Package.swift.
public func packageRoot(filePath: String = #filePath) throws -> String {
    var directory = URL(fileURLWithPath: filePath).deletingLastPathComponent()
    while directory.path != "/" {
        if FileManager.default.fileExists(atPath: directory.appendingPathComponent("Package.swift").path) {
            return directory.path
        }
        directory = directory.deletingLastPathComponent()
    }
    throw TestSupportError("no Package.swift above \(filePath)")
}

/// The `switchyard` executable the integration tests run: `$SWITCHYARD_BIN` if set (as
/// scripts/test does), else the one built beside the running test bundle (right for any
/// `--scratch-path`), else `.build/debug/switchyard` under the package root. Throws, saying
/// how to build it, if the file is not there.
public func switchyardBinaryPath(filePath: String = #filePath) throws -> String {
    let path: String
    if let override = ProcessInfo.processInfo.environment["SWITCHYARD_BIN"], !override.isEmpty {
        path = override
    } else {
        var candidates: [String] = []
        if let running = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            // The test bundle sits in <scratch>/<triple>/debug/ (or one level below it).
            var directory = URL(fileURLWithPath: running).deletingLastPathComponent()
            for _ in 0..<2 {
                candidates.append(directory.appendingPathComponent("switchyard").path)
                directory = directory.deletingLastPathComponent()
            }
        }
        candidates.append(try packageRoot(filePath: filePath) + "/.build/debug/switchyard")
        path = candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? candidates.last!
    }
    guard FileManager.default.isExecutableFile(atPath: path) else {
        throw TestSupportError("switchyard binary not found at \(path): run `swift build` (or set SWITCHYARD_BIN)")
    }
    return path
}
