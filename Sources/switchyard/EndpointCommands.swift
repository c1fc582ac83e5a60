import ArgumentParser
import Foundation
import YardControl
import YardModel

// The HAProxy runtime API's per-server verbs, for every replica at once: `endpoint weight`
// (set server weight), `endpoint maint|ready|drain` (set server state), `endpoint status`
// (show servers state). Changes are stored revisions of the service's traffic state.
// Exit codes: 0 done, 1 refused (stale revision, --wait timed out), 2 error.

struct EndpointCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "endpoint",
        abstract: "Weight, drain or take down one endpoint of a service, on every replica, until changed back.",
        subcommands: [EndpointWeight.self, EndpointMaint.self, EndpointReady.self, EndpointDrain.self, EndpointStatus.self])
}

/// What every endpoint change takes besides its verb.
struct EndpointChangeOptions: ParsableArguments {
    @OptionGroup var admin: AdminOptions
    @Argument(help: "The service.") var service: String
    @Argument(help: "The endpoint, ADDRESS:PORT ([v6]:PORT for IPv6).") var endpoint: String
    @Flag(help: "Wait until every live replica serves the change.") var wait = false
    @Option(help: "How long --wait waits before giving up (exit 1).") var waitTimeout = "30s"
    @Option(help: "Refuse unless the stored revision is this one (optimistic lock).") var revision: Int64?
    @Option(help: "Why, for the history.") var why = ""

    func send(_ body: EndpointChangeRequest) throws {
        var body = body
        body.revision = revision
        body.who = whoAmI()
        body.why = why
        let client = admin.makeClient()
        let answer = client.write("/services/\(pathEscaped(service))/endpoints/\(pathEscaped(endpoint))", body)
        let changed = decode(ChangeAnswer.self, answer)
        if !admin.json {
            say("\(service): \(changed.state.history.last?.action ?? "changed") (revision \(changed.state.revision), on replica \(changed.replica))")
        }
        if wait {
            try waitForReplicas(client, service: service, revision: changed.state.revision, timeout: parseDuration(waitTimeout), json: admin.json)
        }
        if admin.json { say(answer.text) }
    }
}

struct EndpointWeight: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "weight",
        abstract: "Set an endpoint's weight (0 to 256; 'reset' returns to discovery's). Health and slow start still scale it.")
    @OptionGroup var options: EndpointChangeOptions
    @Argument(help: "The weight, 0 to 256, or 'reset'.") var weight: String

    func run() throws {
        if weight == "reset" { return try options.send(EndpointChangeRequest(weightReset: true)) }
        guard let value = Int(weight), EndpointOverride.weightRange.contains(value) else {
            fail("'\(weight)' is not a weight; write a whole number from 0 to 256, or 'reset'")
        }
        try options.send(EndpointChangeRequest(weight: value))
    }
}

struct EndpointMaint: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "maint", abstract: "Maintenance: no traffic; requests in flight finish; health checks go on.")
    @OptionGroup var options: EndpointChangeOptions
    func run() throws { try options.send(EndpointChangeRequest(state: EndpointAdminState.maint.rawValue)) }
}

struct EndpointReady: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ready", abstract: "Back in rotation (out of maint or drain); a runtime weight stays.")
    @OptionGroup var options: EndpointChangeOptions
    func run() throws { try options.send(EndpointChangeRequest(state: EndpointAdminState.ready.rawValue)) }
}

struct EndpointDrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drain", abstract: "No new requests; requests in flight finish; sticky clients move elsewhere.")
    @OptionGroup var options: EndpointChangeOptions
    func run() throws { try options.send(EndpointChangeRequest(state: EndpointAdminState.drain.rawValue)) }
}

struct EndpointStatus: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Every endpoint's state, weights and health as this replica routes them.")
    @OptionGroup var admin: AdminOptions
    @Argument(help: "Only this service.") var service: String?

    func run() throws {
        let client = admin.makeClient()
        let path = service.map { "/services/\(pathEscaped($0))/endpoints" } ?? "/endpoints"
        let answer = client.checked(client.request("GET", path))
        if admin.json { return say(answer.text) }
        let view = decode(EndpointsAnswer.self, answer)
        func column(_ text: String, _ width: Int) -> String { text.padding(toLength: max(width, text.count + 1), withPad: " ", startingAt: 0) }
        say("replica \(view.replica)")
        for service in view.services {
            say("\(service.service) (revision \(service.revision))")
            say("  " + column("endpoint", 24) + column("track", 8) + column("state", 7) + column("weight", 16) + column("effective", 10) + "health")
            for e in service.endpoints {
                let weight = e.override_weight.map { "\($0) (was \(e.discovered_weight.map(String.init) ?? "-"))" } ?? (e.discovered_weight.map(String.init) ?? "-")
                let effective = e.effective_weight.map { $0 % 100 == 0 ? "\($0 / 100)" : String(format: "%.2f", Double($0) / 100) } ?? "-"
                let health = e.present ? (e.health ?? "-") + (e.ejected == true ? ", ejected" : "") : "not discovered (override kept)"
                say("  " + column(e.endpoint, 24) + column(e.track ?? "-", 8) + column(e.state, 7) + column(weight, 16) + column(effective, 10) + health)
            }
        }
    }
}
