// Writing one rendered output (the consul-template job): skip when unchanged, check the
// candidate, replace atomically, reload.

#if canImport(Glibc)
import Glibc
#endif
import Foundation
import YardModel

/// What writing an output did.
///
/// Threading: a value.
public enum OutputOutcome: Sendable, Equatable, CustomStringConvertible {
    /// The file already holds this text: nothing written, no reload.
    case unchanged
    /// Replaced; `reload` is the reload command's result (nil when none is configured).
    case written(reload: CommandResult?)
    /// The check command refused the candidate; the old file is untouched.
    case checkFailed(CommandResult)
    /// The file could not be written; the old file is untouched.
    case writeFailed(String)
    /// The file already holds this text, but its last reload failed: the reload command
    /// ran again (its result).
    case reloadRetried(CommandResult)

    public var description: String {
        switch self {
        case .unchanged: "unchanged"
        case .written(let reload?) where !reload.succeeded: "written; reload failed (\(reload.summary))"
        case .written(.some): "written and reloaded"
        case .written(nil): "written"
        case .checkFailed(let result): "check failed (\(result.summary)); the old file stays"
        case .writeFailed(let message): "write failed (\(message)); the old file stays"
        case .reloadRetried(let result) where !result.succeeded: "unchanged; reload failed again (\(result.summary))"
        case .reloadRetried: "unchanged; reloaded"
        }
    }

    /// The reload command's result, when one ran.
    public var reload: CommandResult? {
        switch self {
        case .written(let reload): reload
        case .reloadRetried(let result): result
        case .unchanged, .checkFailed, .writeFailed: nil
        }
    }
}

/// Writes rendered text to an output's destination.
///
/// The candidate is written to a temporary file in the destination's folder (same file
/// system, so the rename is atomic), synced, checked, then renamed over the destination
/// and the folder synced: a reader sees the old file or the new one, never half of one,
/// and a crash leaves one of the two.
///
/// Threading: blocking file I/O and child processes; one output at a time per
/// destination (the caller's queue serialises them).
public enum OutputFile {
    /// The check command's placeholder for the candidate's path (shell-quoted when replaced).
    public static let pathPlaceholder = "{{path}}"

    /// Writes `text` to `output`'s destination (checked, atomically) and reloads.
    /// `reloadPending`: the last reload of this output failed, so an unchanged file is
    /// reloaded anyway (the running program may still hold an older file).
    public static func write(_ text: String, output: OutputConfig, reloadPending: Bool = false) -> OutputOutcome {
        let destination = output.destination
        if let current = FileManager.default.contents(atPath: destination), current == Data(text.utf8) {
            guard reloadPending, let reload = output.reload else { return .unchanged }
            return .reloadRetried(runReload(reload, output: output))
        }
        let candidate: String
        switch writeCandidate(text, next: destination, mode: output.mode) {
        case .success(let path): candidate = path
        case .failure(let message): return .writeFailed(message.text)
        }
        if let check = output.check {
            let command = check.replacingOccurrences(of: pathPlaceholder, with: CommandRunner.shellQuoted(candidate))
            let result = CommandRunner.run(
                command, environment: ["SWITCHYARD_CANDIDATE": candidate, "SWITCHYARD_DESTINATION": destination],
                timeoutMs: output.commandTimeoutMs)
            guard result.succeeded else {
                unlink(candidate)
                return .checkFailed(result)
            }
        }
        guard rename(candidate, destination) == 0 else {
            let message = "cannot rename \(candidate) over \(destination): \(errorText())"
            unlink(candidate)
            return .writeFailed(message)
        }
        syncDirectory(of: destination)
        guard let reload = output.reload else { return .written(reload: nil) }
        return .written(reload: runReload(reload, output: output))
    }

    private static func runReload(_ command: String, output: OutputConfig) -> CommandResult {
        CommandRunner.run(command, environment: ["SWITCHYARD_DESTINATION": output.destination], timeoutMs: output.commandTimeoutMs)
    }

    // MARK: Files

    struct Failure: Error { var text: String }

    /// A new file `.<name>.switchyard-XXXXXX` next to `destination` holding `text`, with
    /// `mode`, synced to disk.
    static func writeCandidate(_ text: String, next destination: String, mode: UInt32) -> Result<String, Failure> {
        let folder = (destination as NSString).deletingLastPathComponent
        let name = (destination as NSString).lastPathComponent
        var template = Array(((folder.isEmpty ? "." : folder) + "/.\(name).switchyard-XXXXXX").utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else {
            return .failure(Failure(text: "cannot create a file in \(folder): \(errorText())"))
        }
        let path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        defer { close(fd) }
        var bytes = Array(text.utf8)
        var written = 0
        while written < bytes.count {
            let count = bytes.withUnsafeMutableBytes { Glibc.write(fd, $0.baseAddress! + written, $0.count - written) }
            if count < 0 {
                if errno == EINTR { continue }
                let message = "cannot write \(path): \(errorText())"
                unlink(path)
                return .failure(Failure(text: message))
            }
            written += count
        }
        guard fchmod(fd, mode_t(mode)) == 0, fsync(fd) == 0 else {
            let message = "cannot set the mode of or sync \(path): \(errorText())"
            unlink(path)
            return .failure(Failure(text: message))
        }
        return .success(path)
    }

    /// fsync on the folder makes the rename itself durable.
    static func errorText() -> String { String(validatingCString: strerror(errno)) ?? "errno \(errno)" }

    private static func syncDirectory(of path: String) {
        let folder = (path as NSString).deletingLastPathComponent
        let fd = open(folder.isEmpty ? "." : folder, O_RDONLY | O_DIRECTORY)
        guard fd >= 0 else { return }
        fsync(fd)
        close(fd)
    }
}
