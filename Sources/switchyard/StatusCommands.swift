#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import Foundation
import YardControl
import YardModel

/// Options every command that talks to a running replica shares.
///
/// The admin API is, in order: `--admin`, `$SWITCHYARD_ADMIN`, the `--config` file's
/// `admin.address`, `http://127.0.0.1:9901`. The token: `--token-file`, `$SWITCHYARD_TOKEN`,
/// `$SWITCHYARD_TOKEN_FILE`, the `--config` file's `admin.token_file`.
struct AdminOptions: ParsableArguments {
    @Option(help: "The replica's admin API (default: $SWITCHYARD_ADMIN, else the --config file's admin.address, else http://127.0.0.1:9901).")
    var admin: String?

    @Option(name: .shortAndLong, help: "Read the admin address and token file from this config file.")
    var config: String?

    @Option(help: "A file holding the admin bearer token for writes (default: $SWITCHYARD_TOKEN, $SWITCHYARD_TOKEN_FILE, the --config file's admin.token_file).")
    var tokenFile: String?

    @Flag(help: "Print JSON for machines instead of text for people.")
    var json = false

    func client() throws -> AdminClient {
        let env = ProcessInfo.processInfo.environment
        func nonEmpty(_ key: String) -> String? { env[key].flatMap { $0.isEmpty ? nil : $0 } }
        var loaded: SwitchyardConfig?
        if let config {
            do { loaded = try ConfigLoader.loadConfig(path: config) } catch { fail("\(error)") }
        }
        var url = defaultAdminURL
        if let admin {
            url = admin
        } else if let fromEnv = nonEmpty("SWITCHYARD_ADMIN") {
            url = fromEnv
        } else if let loaded, let config {
            guard loaded.admin.enabled else { fail("\(config) has no admin: section; pass --admin URL") }
            url = adminURL(loaded.admin)
        }
        if !url.contains("://") { url = "http://" + url }
        var token: String?
        if let path = tokenFile ?? (nonEmpty("SWITCHYARD_TOKEN") == nil ? nonEmpty("SWITCHYARD_TOKEN_FILE") ?? loaded?.admin.tokenFile : nil) {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                fail("cannot read the token file \(path)")
            }
            token = text.trimmingCharacters(in: .whitespacesAndNewlines)
        } else if let fromEnv = nonEmpty("SWITCHYARD_TOKEN") {
            token = fromEnv.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        return try AdminClient(url: url, token: token)
    }
}

let defaultAdminURL = "http://127.0.0.1:9901"

/// The URL a client on this machine reaches a config's admin listener at (a wildcard
/// address is reached over loopback).
func adminURL(_ admin: AdminConfig) -> String {
    let host = admin.host == "0.0.0.0" ? "127.0.0.1" : admin.host == "::" ? "::1" : admin.host
    return host.contains(":") ? "http://[\(host)]:\(admin.port)" : "http://\(host):\(admin.port)"
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show services, tracks, split, health and traffic of a running replica.")

    @OptionGroup var options: AdminOptions

    @Argument(help: "Only this service.")
    var service: String?

    @Option(help: "Seconds between the two samples used for rates (0: no rates).")
    var interval: Double = 1

    @Flag(help: """
        Exit 0 when every service has a healthy endpoint on its active track, every provider \
        and the state store answer, every replica applied the stored revisions and no ACME \
        certificate is expired or in the last sixth of its lifetime; else print one line per \
        problem and exit 1 (for a HEALTHCHECK or a CI gate).
        """)
    var check = false

    func run() throws {
        let client = options.makeClient()
        let first = client.checked(client.request("GET", "/status"))
        if check {
            let status = decode(StatusDocument.self, first)
            let replicasAnswer = client.request("GET", "/replicas")
            // A replica without a state store has no /replicas (404): nothing to compare.
            let replicas = replicasAnswer.status == 200 ? decode(ReplicasAnswer.self, replicasAnswer) : nil
            var verdict = StatusCheck(status: status, replicas: replicas)
            if let service {
                guard status.services.contains(where: { $0.name == service }) else { fail("no service named '\(service)'") }
                verdict = StatusCheck(
                    status: status.only(service), replicas: replicas)
            }
            if service == nil, let certificates = Self.certificates(client) {
                verdict.problems += certificates.problems(now: Int64(Date().timeIntervalSince1970))
                verdict.healthy = verdict.problems.isEmpty
            }
            if options.json {
                say(String(decoding: AdminJSON.encode(verdict), as: UTF8.self))
            } else if verdict.healthy {
                say("ok: \(verdict.checked)")
            } else {
                for problem in verdict.problems { say(problem) }
            }
            throw ExitCode(verdict.healthy ? CLIExit.done : CLIExit.refused)
        }
        if options.json {
            FileHandleWriter.stdout(first.text + "\n")
            return
        }
        var second = first
        // At most a minute; NaN or infinity (ArgumentParser reads them) would trap UInt32().
        let seconds = interval.isFinite ? min(max(interval, 0), 60) : 0
        if seconds > 0 {
            usleep(UInt32(seconds * 1_000_000))
            second = client.checked(client.request("GET", "/status"))
        }
        let before = decode(StatusDocument.self, first)
        let after = decode(StatusDocument.self, second)
        FileHandleWriter.stdout(StatusDocument.render(before: before, after: after, seconds: seconds, only: service))
        if service == nil, let certificates = Self.certificates(client) {
            for line in certificates.warnings(now: Int64(Date().timeIntervalSince1970)) { FileHandleWriter.stdout("warning: \(line)\n") }
        }
    }

    /// The replica's ACME certificates (`GET /certs`), nil when it does not answer them.
    private static func certificates(_ client: CLIClient) -> ACMECertificateStatus? {
        guard let answer = try? client.client.request("GET", "/certs") else { return nil }
        guard answer.status == 200 else { return nil }
        return try? JSONDecoder().decode(ACMECertificateStatus.self, from: Data(answer.body))
    }
}

struct Explain: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the route, service, track and endpoints a request would get, and why.")

    @OptionGroup var options: AdminOptions

    @Option(help: "The request's Host.")
    var host = ""

    @Option(help: "The request's path.")
    var path = "/"

    @Option(help: "The request's method.") var method = "GET"

    @Option(help: "A request header, K:V (repeatable), e.g. X-Switchyard-Track:green or Cookie:user=42.")
    var header: [String] = []

    @Option(help: "The client's IP address (for an override header limited to some networks).")
    var client: String?

    func run() throws {
        let admin = options.makeClient()
        func encode(_ text: String) -> String {
            text.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~/"))) ?? text
        }
        var query = "host=\(encode(host))&path=\(encode(path))&method=\(encode(method))"
        if !header.isEmpty { query += "&headers=\(encode(header.joined(separator: "\n")))" }
        if let client { query += "&client=\(encode(client))" }
        let answer = admin.checked(admin.request("GET", "/explain?\(query)"))
        if options.json {
            FileHandleWriter.stdout(answer.text + "\n")
            return
        }
        let view = decode(Explanation.self, answer)
        var lines = ["request   host '\(view.host)' path '\(view.path)'"]
        lines.append("route     \(view.route ?? "none")")
        lines.append("service   \(view.service ?? "-")" + (view.activeTrack.map { "  (active track \($0))" } ?? ""))
        if let track = view.track { lines.append("track     \(track)" + (view.rule.map { "  (decided by \($0))" } ?? "")) }
        lines.append("answer    \(view.answer)")
        for candidate in view.candidates { lines.append("  candidate \(candidate)") }
        lines.append("why:")
        for reason in view.reasons { lines.append("  - \(reason)") }
        FileHandleWriter.stdout(lines.joined(separator: "\n") + "\n")
    }
}

// MARK: - The status table

extension StatusDocument {
    /// The document with only `service` (for `status NAME --check`).
    func only(_ service: String) -> StatusDocument {
        var copy = self
        copy.services = services.filter { $0.name == service }
        return copy
    }
}

extension StatusDocument {
    static func render(before: StatusDocument, after: StatusDocument, seconds: Double, only: String?) -> String {
        var rows = [["SERVICE", "TRACK", "SPLIT", "HEALTHY", "REQ/S", "ERR%", "REQUESTS"]]
        for service in after.services where only == nil || service.name == only {
            let old = before.services.first { $0.name == service.name }
            for track in service.tracks {
                let previous = old?.tracks.first { $0.name == track.name }
                let healthy = track.endpoints.filter { $0.effectiveWeight > 0 }.count
                var rate = "-"
                var errors = "-"
                if seconds > 0, let previous {
                    let delta = Double(track.requests &- previous.requests)
                    let errorDelta = Double(track.errors5xx &- previous.errors5xx)
                    rate = String(format: "%.1f", delta / seconds)
                    errors = delta > 0 ? String(format: "%.2f", 100 * errorDelta / delta) : "0.00"
                }
                rows.append([
                    service.name + (service.panic ? " (PANIC)" : ""),
                    track.name + (track.active ? " *" : ""),
                    String(format: "%.1f%%", track.sharePercent),
                    "\(healthy)/\(track.endpoints.count)",
                    rate, errors, "\(track.requests)",
                ])
            }
        }
        if rows.count == 1 && only != nil { return "no service named '\(only!)'\n" }
        let widths = (0..<rows[0].count).map { column in rows.map { $0[column].count }.max() ?? 0 }
        var text = rows.map { row in
            row.enumerated().map { $0.element.padding(toLength: widths[$0.offset], withPad: " ", startingAt: 0) }
                .joined(separator: "  ").trimmingCharacters(in: .whitespaces)
        }.joined(separator: "\n") + "\n"
        let providers = after.providers.map { provider -> String in
            guard !provider.healthy else { return "\(provider.name) ok" }
            var stale = ""
            if let since = provider.staleSinceUnix {
                stale = " (stale \(max(0, after.generatedUnix - since).wholeText) s, serving its last snapshot)"
            }
            return "\(provider.name) FAILING\(stale): \(provider.lastError ?? "?")"
        }.joined(separator: ", ")
        text += "\nrouting table v\(after.tableVersion), up \(after.uptimeSeconds.wholeText) s; providers: \(providers); * = active track\n"
        for service in after.services where only == nil || service.name == only {
            let revision = service.revision
            let source = revision > 0 ? "revision \(revision)" : "from discovery (nothing stored)"
            let last = service.lastChange.map { "; last: \($0.action) by \($0.who)" } ?? ""
            let noActive = service.activeTrack == nil && service.tracks.count > 1 ? "; no active track: every endpoint serves, by weight" : ""
            text += "\(service.name): traffic \(source)\(last)\(noActive)\n"
        }
        let store = after.stateStore
        let replica = store.replica.map { " (replica \($0))" } ?? ""
        if store.reachable {
            text += "state store: \(store.kind)\(replica) ok\n"
        } else {
            let since = store.unreachableSinceUnix.map { " for \((after.generatedUnix - $0).wholeText) s" } ?? ""
            text += "state store: \(store.kind)\(replica) UNREACHABLE\(since): \(store.error ?? "?"); serving the last traffic state\n"
        }
        return text
    }
}
