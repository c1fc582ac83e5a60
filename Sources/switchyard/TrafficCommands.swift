#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import Foundation
import YardControl
import YardModel

// The operator's and CI's traffic verbs: flip, canary set/step/promote/abort.
// Exit codes: 0 done, 1 refused (gate failed, stale revision), 2 error.

// MARK: - flip

struct Flip: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Move new requests of a service to another track (blue/green), on every replica.")

    @OptionGroup var options: AdminOptions

    @Argument(help: "The service.")
    var service: String

    @Option(help: "The track to flip to (default: the other one, when there are two).")
    var to: String?

    @Flag(help: "Wait until every live replica serves the new revision.")
    var wait = false

    @Option(help: "How long --wait waits before giving up (exit 1).")
    var waitTimeout = "30s"

    @Option(help: "After the flip, wait up to this long for the old track's in-flight requests to finish.")
    var drain: String?

    @Option(help: "Refuse unless the stored revision is this one (optimistic lock).")
    var revision: Int64?

    @Option(help: "Why, for the history.")
    var why = ""

    func run() throws {
        let client = options.makeClient()
        let body = TrafficRequest(to: to, revision: revision, who: whoAmI(), why: why)
        let answer = client.write("/services/\(pathEscaped(service))/flip", body)
        let changed = decode(ChangeAnswer.self, answer)
        let previous = changed.state.history.last?.action ?? "flipped"
        if !options.json { say("\(service): \(previous) (revision \(changed.state.revision), on replica \(changed.replica))") }
        if wait {
            try waitForReplicas(client, service: service, revision: changed.state.revision, timeout: parseDuration(waitTimeout), json: options.json)
        }
        // The track the flip moved away from, as the change records it (nil: nothing to drain).
        if let drain, let old = changed.state.history.last?.fromTrack {
            waitForDrain(client, service: service, track: old, timeout: parseDuration(drain), json: options.json)
        }
        if options.json { say(answer.text) }
    }
}

// MARK: - canary

struct Canary: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Set, step (gated), promote or abort a service's canary.",
        subcommands: [CanarySet.self, CanaryStep.self, CanaryPromote.self, CanaryAbort.self])
}

struct CanarySet: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "set", abstract: "Put the canary at a share (0.1 % steps).")

    @OptionGroup var options: AdminOptions
    @Argument(help: "The service.") var service: String
    @Argument(help: "The share, 0 to 100 (e.g. 10 or 0.5).") var percent: Double
    @Option(help: "The canary track (default: the current canary, or the only other track).") var track: String?
    @Option(help: "Refuse unless the stored revision is this one.") var revision: Int64?
    @Option(help: "Why, for the history.") var why = ""

    func run() throws {
        let client = options.makeClient()
        var body = TrafficRequest(action: "set", revision: revision, who: whoAmI(), why: why)
        body.percent = percent
        body.track = track
        let answer = client.write("/services/\(pathEscaped(service))/canary", body)
        reportChange(answer, service: service, json: options.json)
    }
}

struct CanaryPromote: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "promote", abstract: "Make the canary the active track.")
    @OptionGroup var options: AdminOptions
    @Argument(help: "The service.") var service: String
    @Option(help: "Why, for the history.") var why = ""

    func run() throws { sendCanaryAction("promote", service: service, why: why, options: options) }
}

struct CanaryAbort: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "abort", abstract: "Send the canary's share back to 0 %.")
    @OptionGroup var options: AdminOptions
    @Argument(help: "The service.") var service: String
    @Option(help: "Why, for the history.") var why = ""

    func run() throws { sendCanaryAction("abort", service: service, why: why, options: options) }
}

/// A canary verb without arguments (promote, abort), reported like every change.
private func sendCanaryAction(_ action: String, service: String, why: String, options: AdminOptions) {
    let body = TrafficRequest(action: action, who: whoAmI(), why: why)
    reportChange(options.makeClient().write("/services/\(pathEscaped(service))/canary", body), service: service, json: options.json)
}

struct CanaryStep: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "step",
        abstract: "Advance the canary one step of its plan if its traffic holds the gate; bake; check the gate again.",
        discussion: """
        Before stepping, the canary's traffic since its last change must hold the gate (when it \
        has any share). After stepping, with --bake, the command waits, showing progress, and \
        checks the gate over the bake. Exit 0: stepped and healthy; 1: the gate failed (with \
        --rollback-on-fail the canary is back at 0 %); 2: error.
        Gates: --gate errors=1% (canary error rate at most 1 point above stable's), \
        --gate p99=+50% (canary p99 at most 50 % above stable's), --gate p99-floor=10ms \
        (p99s under this are not compared).
        """)

    @OptionGroup var options: AdminOptions
    @Argument(help: "The service.") var service: String
    @Option(help: "A gate: errors=1%, p99=+50%, p99-floor=10ms (repeatable).") var gate: [String] = []
    @Option(help: "Fewest canary requests a gate needs to judge.") var minRequests: UInt64 = 100
    @Option(help: "Wait this long after stepping, then check the gate over that time.") var bake = "0s"
    @Option(help: "The window of the check before stepping.") var window = "60s"
    @Flag(help: "When the gate fails, put the canary at 0 %.") var rollbackOnFail = false
    @Option(help: "Why, for the history.") var why = ""

    func run() throws {
        let client = options.makeClient()
        var policy = GateRequest(min_requests: minRequests, window_seconds: parseDuration(window))
        for spec in gate { policy.apply(spec) }
        let bakeSeconds = parseDuration(bake)

        var body = TrafficRequest(action: "step", who: whoAmI(), why: why)
        body.gate = policy
        let answer = client.request("POST", "/services/\(pathEscaped(service))/canary", body: encodeJSON(body))
        if answer.status == 412 {
            let refusal = decode(GateRefusal.self, answer)
            if options.json { say(answer.text) } else {
                say("\(service): not stepped: the canary's traffic since its last change fails the gate")
                say(renderGate(refusal.gate))
            }
            if rollbackOnFail { rollback(client) }
            throw ExitCode(1)
        }
        let changed = decode(ChangeAnswer.self, client.checked(answer))
        if !options.json {
            say("\(service): \(changed.state.history.last?.action ?? "stepped") (revision \(changed.state.revision))")
        }
        guard bakeSeconds > 0, let canary = changed.state.canaryTrack else {
            if options.json { say(answer.text) }
            return
        }
        let verdict = bakeAndJudge(client, canary: canary, seconds: bakeSeconds, policy: policy)
        if options.json {
            var baked = changed
            baked.bake = verdict
            say(String(decoding: encodeJSON(baked), as: UTF8.self))
        } else {
            say(renderGate(verdict))
        }
        guard verdict.passed else {
            if rollbackOnFail { rollback(client) }
            throw ExitCode(1)
        }
    }

    /// Waits `seconds`, printing progress, then asks for the gate over that time.
    private func bakeAndJudge(_ client: CLIClient, canary: String, seconds: Double, policy: GateRequest) -> GateVerdict {
        let started = Date()
        var lastPrint = -10.0
        while true {
            let elapsed = Date().timeIntervalSince(started)
            if elapsed >= seconds { break }
            if !options.json && elapsed - lastPrint >= progressInterval {
                lastPrint = elapsed
                let so = client.request("GET", gateQuery(canary: nil, seconds: max(1, elapsed), policy: policy))
                let partial = so.status == 200 ? (try? AdminJSON.decode(GateVerdict.self, from: so.body)) : nil
                let numbers = partial.map { " canary \($0.canary.requests) req, \(String(format: "%.2f", $0.canary.errorRatePercent))% errors; stable \($0.stable.requests) req, \(String(format: "%.2f", $0.stable.errorRatePercent))% errors" } ?? ""
                say("baking canary \(canary): \(Int(elapsed)) s of \(Int(seconds)) s, \(Int((seconds - elapsed).rounded(.up))) s left;\(numbers)")
            }
            usleep(100_000)
        }
        let answer = client.checked(client.request("GET", gateQuery(canary: nil, seconds: seconds, policy: policy)))
        return decode(GateVerdict.self, answer)
    }

    private func gateQuery(canary: String?, seconds: Double, policy: GateRequest) -> String {
        var query = "window=\(seconds)"
        if let v = policy.max_error_rate_increase { query += "&max_error_rate_increase=\(v)" }
        if let v = policy.max_p99_increase_percent { query += "&max_p99_increase_percent=\(v)" }
        if let v = policy.p99_floor_ms { query += "&p99_floor_ms=\(v)" }
        if let v = policy.min_requests { query += "&min_requests=\(v)" }
        return "/services/\(pathEscaped(service))/gate?\(query)"
    }

    private func rollback(_ client: CLIClient) {
        let body = TrafficRequest(action: "abort", who: whoAmI(), why: "gate failed (rollback-on-fail)")
        let answer = client.request("POST", "/services/\(pathEscaped(service))/canary", body: encodeJSON(body))
        if answer.status == 200, let changed = try? AdminJSON.decode(ChangeAnswer.self, from: answer.body) {
            if !options.json { say("rolled back: \(changed.state.summary) (revision \(changed.state.revision))") }
        } else {
            FileHandleWriter.stderr("switchyard: rollback failed: \(answer.status) \(answer.text)\n")
        }
    }
}

// MARK: - Shared

typealias TrafficRequest = TrafficChangeRequest

extension GateRequest {
    /// `errors=1%`, `p99=+50%`, `p99-floor=10ms`.
    mutating func apply(_ spec: String) {
        let parts = spec.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
        guard parts.count == 2 else { fail("--gate '\(spec)': expected NAME=VALUE (errors=1%, p99=+50%, p99-floor=10ms)") }
        var value = parts[1]
        value.removeAll { $0 == "%" || $0 == "+" }
        switch parts[0] {
        case "errors", "error-rate":
            guard let v = Double(value) else { fail("--gate \(spec): expected a percentage like errors=1%") }
            max_error_rate_increase = v
        case "p99":
            guard let v = Double(value) else { fail("--gate \(spec): expected a share like p99=+50%") }
            max_p99_increase_percent = v
        case "p99-floor":
            p99_floor_ms = parseDuration(value) * 1000
        default:
            fail("--gate \(spec): unknown gate '\(parts[0])'; use errors, p99 or p99-floor")
        }
    }
}

/// The admin client with the CLI's error handling: transport errors exit 2.
struct CLIClient {
    let client: AdminClient

    func request(_ method: String, _ path: String, body: [UInt8] = []) -> AdminClient.Response {
        do {
            return try client.request(method, path, body: body)
        } catch {
            fail("\(error)")
        }
    }

    /// A write whose refusals exit 1 and whose errors exit 2 (see `checked`).
    func write<T: Encodable>(_ path: String, _ body: T) -> AdminClient.Response {
        checked(request("POST", path, body: encodeJSON(body)))
    }

    /// The answer when it is a 200; otherwise its error message on standard error and the
    /// documented exit code: 1 for a refusal (409: stale revision, canary at the top of its
    /// plan; 412: gate failed), 2 for anything else (invalid request, unknown service,
    /// store unreachable, no token).
    func checked(_ answer: AdminClient.Response) -> AdminClient.Response {
        switch answer.status {
        case 200: return answer
        case 409, 412:
            FileHandleWriter.stderr("switchyard: refused: \(errorText(answer))\n")
            Foundation.exit(1)
        default:
            fail("\(errorText(answer)) (admin API answered \(answer.status))")
        }
    }
}

extension AdminOptions {
    func makeClient() -> CLIClient {
        do {
            return CLIClient(client: try client())
        } catch {
            fail("\(error)")
        }
    }
}

/// The message of an error answer: its JSON `error`, else its text.
func errorText(_ answer: AdminClient.Response) -> String {
    (try? AdminJSON.decode(ErrorAnswer.self, from: answer.body))?.error
        ?? answer.text.trimmingCharacters(in: .whitespacesAndNewlines)
}

func decode<T: Decodable>(_ type: T.Type, _ answer: AdminClient.Response) -> T {
    do {
        return try AdminJSON.decode(type, from: answer.body)
    } catch {
        fail("the admin API answered something this CLI does not understand (\(error)): \(answer.text.prefix(300))")
    }
}

func reportChange(_ answer: AdminClient.Response, service: String, json: Bool) {
    if json { say(answer.text); return }
    let changed = decode(ChangeAnswer.self, answer)
    say("\(service): \(changed.state.history.last?.action ?? "changed") (revision \(changed.state.revision)); now \(changed.state.summary)")
}

func encodeJSON<T: Encodable>(_ value: T) -> [UInt8] { AdminJSON.encode(value) }

func say(_ line: String) { FileHandleWriter.stdout(line + "\n") }

/// Progress lines every second on a terminal, every 5 s in a log.
let progressInterval: Double = isatty(1) != 0 ? 1 : 5

func whoAmI() -> String {
    let env = ProcessInfo.processInfo.environment
    let account = getpwuid(getuid()).map { String(cString: $0.pointee.pw_name) }
    let user = env["SWITCHYARD_WHO"] ?? env["USER"] ?? env["LOGNAME"] ?? account ?? "unknown"
    return "\(user)@cli"
}

func pathEscaped(_ text: String) -> String {
    text.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? text
}

/// `500ms`, `30s`, `2m`, `1h`, or bare seconds, up to a year; exits 2 on anything else
/// (`inf`, `nan` and huge values too: they would trap where seconds become an Int).
func parseDuration(_ text: String) -> Double {
    let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)]
    let year = 366.0 * 86_400
    for (suffix, scale) in units where text.hasSuffix(suffix) {
        if let value = Double(text.dropLast(suffix.count)), value >= 0, value * scale <= year { return value * scale }
    }
    if let value = Double(text), value >= 0, value <= year { return value }
    fail("'\(text)' is not a duration up to a year; write 500ms, 30s, 2m or 1h")
}

/// A gate verdict as a small table.
func renderGate(_ verdict: GateVerdict) -> String {
    func p99(_ value: Double?) -> String {
        guard let value else { return "-" }
        return value >= 1e9 ? "> 10 s" : (value < 1 ? "\(value) ms" : "\(value.wholeText) ms")
    }
    func row(_ name: String, _ s: TrackSummary) -> String {
        name.padding(toLength: 20, withPad: " ", startingAt: 0)
            + String(format: "%10llu %8llu %11.2f%%", s.requests, s.serverErrors + s.connectFailures, s.errorRatePercent)
            + String(repeating: " ", count: max(1, 10 - p99(s.p99Ms).count)) + p99(s.p99Ms)
    }
    var lines = ["gate over the last \(String(format: "%.1f", verdict.windowSeconds)) s: \(verdict.passed ? "passed" : "FAILED")"]
    lines.append("track".padding(toLength: 20, withPad: " ", startingAt: 0) + "  requests   errors   error rate       p99")
    lines.append(row("canary \(verdict.canaryTrack)", verdict.canary))
    lines.append(row("stable \(verdict.stableTrack)", verdict.stable))
    if let replicas = verdict.replicas, replicas.count > 1 {
        lines.append("summed over \(replicas.count) replicas:")
        for replica in replicas {
            let span = String(format: "%.0f", replica.windowSeconds)
            lines.append(row("  \(replica.replica) canary", replica.canary) + "  (\(span) s)")
            lines.append(row("  \(replica.replica) stable", replica.stable))
        }
    }
    for reason in verdict.reasons { lines.append("  - \(reason)") }
    return lines.joined(separator: "\n")
}

// MARK: - Waiting

/// Polls /replicas until every live replica applied `revision` of `service`.
func waitForReplicas(_ client: CLIClient, service: String, revision: Int64, timeout: Double, json: Bool) throws {
    let started = Date()
    var lastPrint = -10.0
    while true {
        let answer = client.checked(client.request("GET", "/replicas"))
        let view = decode(ReplicasAnswer.self, answer)
        let lagging = view.replicas.filter { ($0.applied[service] ?? 0) < revision }
        let elapsed = Date().timeIntervalSince(started)
        if lagging.isEmpty {
            if !json { say("all \(view.replicas.count) replica(s) serve revision \(revision) (\(String(format: "%.2f", elapsed)) s)") }
            return
        }
        let names = lagging.map { "\($0.id) at \($0.applied[service] ?? 0)" }.joined(separator: ", ")
        if elapsed >= timeout {
            FileHandleWriter.stderr("switchyard: after \(Int(timeout)) s, \(lagging.count) of \(view.replicas.count) replica(s) still lag: \(names)\n")
            throw ExitCode(1)
        }
        if !json && elapsed - lastPrint >= progressInterval {
            lastPrint = elapsed
            say("waiting for revision \(revision) on every replica: \(view.replicas.count - lagging.count)/\(view.replicas.count) done, lagging: \(names); \(Int(elapsed)) s of \(Int(timeout)) s")
        }
        usleep(50_000)
    }
}

/// Waits until `track` of `service` has no request in flight, or `timeout` passes.
func waitForDrain(_ client: CLIClient, service: String, track: String, timeout: Double, json: Bool) {
    let started = Date()
    var lastPrint = -10.0
    while true {
        let answer = client.checked(client.request("GET", "/status"))
        let view = decode(StatusDocument.self, answer)
        let inFlight = view.services.first { $0.name == service }?.tracks.first { $0.name == track }?
            .endpoints.reduce(0) { $0 + $1.activeRequests } ?? 0
        let elapsed = Date().timeIntervalSince(started)
        if inFlight == 0 {
            if !json { say("\(track) drained: no request in flight (\(String(format: "%.1f", elapsed)) s)") }
            return
        }
        if elapsed >= timeout {
            if !json { say("drain deadline passed with \(inFlight) request(s) still in flight on \(track)") }
            return
        }
        if !json && elapsed - lastPrint >= progressInterval {
            lastPrint = elapsed
            say("draining \(track): \(inFlight) request(s) in flight; \(Int(elapsed)) s of \(Int(timeout)) s")
        }
        usleep(100_000)
    }
}
