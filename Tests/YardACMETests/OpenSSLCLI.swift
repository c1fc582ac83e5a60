import YardTestSupport

/// Runs the `openssl` CLI (a second opinion on what OpenSSL's library made); its output.
func openssl(_ arguments: [String]) throws -> String {
    let runner = try ProcessRunner("/usr/bin/openssl", arguments: arguments)
    defer { runner.stop() }
    let status = try runner.waitForExit(deadline: .seconds(20))
    guard status == .exited(0) else { throw TestSupportError("openssl \(arguments.first ?? "") \(status)\n\(runner.outputSummary)") }
    return runner.stdout + runner.stderr
}
