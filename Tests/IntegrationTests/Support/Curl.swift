import Foundation

// curl as the tests' HTTP client: a real, independent implementation of the protocol.

/// What one curl run reported.
struct CurlResult {
    /// curl's exit status (nil if it was killed at the timeout).
    var exitStatus: Int32?
    /// The HTTP status (`%{http_code}`), 0 if there was no response.
    var httpStatus: Int
    /// The response body, unless it was sent to a file.
    var body: String
    var stderr: String
    /// Values of the `-w` fields requested with `extra`, in order.
    var written: [String]
}

/// The curl arguments that make its output machine-readable: the body to `bodyPath`,
/// then `%{http_code}` and the `extra` write-out fields on stdout, one per line.
func curlArguments(_ url: String, _ options: [String], bodyPath: String, extra: [String]) -> [String] {
    let writeOut = (["%{http_code}"] + extra).joined(separator: "\\n") + "\\n"
    return ["-sS", "--max-time", "50", "-o", bodyPath, "-w", writeOut] + options + [url]
}

/// Parses what `curlArguments` made curl print.
func curlResult(exitStatus: Int32?, stdout: String, stderr: String, body: String) -> CurlResult {
    let lines = stdout.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    return CurlResult(exitStatus: exitStatus, httpStatus: Int(lines.first ?? "") ?? 0, body: body,
                      stderr: stderr, written: Array(lines.dropFirst()))
}

private let curlCounter = Counter()

/// Runs curl once against `url`; `options` go before the URL.
func curl(_ url: String, _ options: [String] = [], extra: [String] = [], dir: ScratchDir,
          timeout: Duration = .seconds(55)) throws -> CurlResult {
    let label = "curl-\(curlCounter.next())"
    let bodyPath = dir.file("\(label).body")
    let result = try runCommand("/usr/bin/curl", curlArguments(url, options, bodyPath: bodyPath, extra: extra),
                                dir: dir, label: label, timeout: timeout)
    let body = (try? String(contentsOfFile: bodyPath, encoding: .utf8)) ?? ""
    return curlResult(exitStatus: result.status, stdout: result.stdout, stderr: result.stderr, body: body)
}

/// A curl run in the background; `finish` waits for it and parses its output.
final class BackgroundCurl {
    let child: ChildProcess
    let bodyPath: String

    /// `discardBody` sends the body to /dev/null (for transfers too big to keep).
    init(_ url: String, _ options: [String] = [], extra: [String] = [], dir: ScratchDir,
         stdin: FileHandle? = nil, discardBody: Bool = false) throws {
        let label = "curl-\(curlCounter.next())"
        bodyPath = discardBody ? "/dev/null" : dir.file("\(label).body")
        child = try ChildProcess("/usr/bin/curl", curlArguments(url, options, bodyPath: bodyPath, extra: extra),
                                 dir: dir, label: label, stdin: stdin)
    }

    func finish(timeout: Duration) -> CurlResult {
        let status = child.waitExit(timeout: timeout)
        child.stop()
        let body = bodyPath == "/dev/null" ? "" : (try? String(contentsOfFile: bodyPath, encoding: .utf8)) ?? ""
        return curlResult(exitStatus: status, stdout: child.stdoutText, stderr: child.stderrText, body: body)
    }
}

/// A thread-safe counter for unique labels.
final class Counter: @unchecked Sendable {
    // `lock` protects `value`; labels are made from several test threads.
    private let lock = NSLock()
    private var value = 0

    func next() -> Int {
        lock.lock()
        defer { lock.unlock() }
        value += 1
        return value
    }
}
