// `switchyard render`: render the templates of a config once, show what would change, or
// tell a running replica to apply a render its guards held back.

#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import Foundation
import YardControl
import YardModel
import YardTemplates

struct Render: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Render the config's templates: write the output files, or show what would change.",
        discussion: """
            Without flags: renders every output file now (check, atomic replace, reload when changed), \
            validates the pools, and asks a running replica to render again.
            --dry-run: prints each rendered output and the pools with a diff against what runs \
            (the files on disk; the running table from the admin API), and changes nothing.
            --force: tells the running replica to apply a render its guards held back.
            """)

    @Option(name: .shortAndLong, help: "The config file.")
    var config = "conf/switchyard.yml"

    @Flag(help: "Print what would be applied and the diff against what runs; change nothing.")
    var dryRun = false

    @Flag(help: "Tell the running replica to apply a render its guards held back.")
    var force = false

    @Option(help: "The running replica's admin API (default: the config's admin address).")
    var admin: String?

    func run() throws {
        let loaded: SwitchyardConfig
        let discovered: ServiceCatalog
        do {
            loaded = try ConfigLoader.loadConfig(path: config)
            // Only file providers are read; network providers' services are absent here.
            let (catalog, skipped) = try fileProvidersCatalog(loaded.discovery)
            discovered = catalog
            if !skipped.isEmpty {
                FileHandleWriter.stderr("render reads file providers only; not contacted: \(skipped.joined(separator: ", "))\n")
            }
        } catch {
            fail("\(error)")
        }
        let client = adminClient(loaded)
        if force {
            throw ExitCode(forceRunning(client))
        }
        let running = RunningReplica.fetch(client)
        // The traffic state (active track, canary) outputs render with: the running
        // replica's, else the configured state store's; never services.yml's alone when a
        // flip is stored, so this render writes what the replica would.
        let traffic = TrafficSource.read(loaded, client: running == nil ? nil : client, services: discovered)
        FileHandleWriter.stdout("traffic state: \(traffic.source)\n")
        let templates = loaded.templates ?? TemplatesConfig()
        if loaded.templates == nil {
            FileHandleWriter.stdout("\(config) has no templates: section; the provider's catalog is routed as it is.\n")
        }
        let input = TemplateInput(
            catalog: discovered, health: running?.health ?? [:], environment: TemplateInput.environment(allowed: templates.environment))

        var failed = false
        // MARK: Pools
        var routed = discovered
        if let pools = templates.pools {
            do {
                let result = try PoolsRender.render(template: pools, input: input)
                routed = result.catalog
                if dryRun { FileHandleWriter.stdout("==> pools (\(pools))\n\(result.text)") }
            } catch {
                FileHandleWriter.stderr("\(error)\n")
                failed = true
            }
        }
        routed = routed.applying(traffic.states)
        if !failed {
            failed = !reportPools(routed, running: running, guards: templates.guards) && !dryRun
        }

        // MARK: Outputs
        for output in templates.outputs {
            let text: String
            do {
                text = try TemplateRenderer.render(file: output.template, input: TemplateInput(
                    catalog: routed, health: input.health, environment: input.environment))
            } catch {
                FileHandleWriter.stderr("\(error)\n")
                failed = true
                continue
            }
            if dryRun {
                let current = (try? String(contentsOfFile: output.destination, encoding: .utf8))
                FileHandleWriter.stdout("==> \(output.destination) (from \(output.template))\n\(text)")
                let diff = TextDiff.unified(
                    old: current ?? "", new: text, oldName: current == nil ? "/dev/null" : output.destination, newName: "\(output.destination) (rendered)")
                FileHandleWriter.stdout(diff.isEmpty ? "--- no change: \(output.destination) holds this text\n" : diff)
                continue
            }
            let outcome = OutputFile.write(text, output: output)
            FileHandleWriter.stdout("\(output.destination): \(outcome)\n")
            switch outcome {
            case .checkFailed, .writeFailed: failed = true
            case .written(let reload?) where !reload.succeeded: failed = true
            default: break
            }
        }
        if !dryRun, running != nil, let client, let answer = try? client.request("POST", "/render") {
            FileHandleWriter.stdout("running replica re-rendered: \(answer.text)\n")
        }
        if failed { throw ExitCode(1) }
    }

    /// Prints the pools' diff against the running table and any guard that would hold the
    /// change back; false when a guard would.
    private func reportPools(_ routed: ServiceCatalog, running: RunningReplica?, guards: GuardPolicy) -> Bool {
        let next = PoolsSummary.text(PoolsSummary.services(of: routed))
        guard let running else {
            if dryRun { FileHandleWriter.stdout("==> routing (switchyard is not running, or its admin API is not reachable)\n\(next)") }
            return true
        }
        if dryRun {
            let diff = TextDiff.unified(
                old: PoolsSummary.text(running.services), new: next, oldName: "running routing table", newName: "after this render")
            FileHandleWriter.stdout("==> routing\n" + (diff.isEmpty ? "--- no change to the running routing table\n" : diff))
        }
        let violations = Guards.check(running: running.catalog, candidate: routed, policy: guards)
        for violation in violations {
            FileHandleWriter.stdout("held back by a guard: \(violation)\n")
        }
        return violations.isEmpty
    }

    private func forceRunning(_ client: AdminClient?) -> Int32 {
        guard let client else { fail("no admin API to talk to: enable `admin:` in \(config) or pass --admin") }
        do {
            let answer = try client.request("POST", "/render?force=true")
            FileHandleWriter.stdout(answer.text + "\n")
            // 409: the forced render failed or changed nothing routable (refused, 1);
            // anything else but 200 is an error (no token, 404 from an older replica: 2).
            switch answer.status {
            case 200: return CLIExit.done
            case 409: return CLIExit.refused
            default: return CLIExit.error
            }
        } catch {
            fail("\(error)")
        }
    }

    private func adminClient(_ loaded: SwitchyardConfig) -> AdminClient? {
        // `POST /render?force=true` is a write: it carries the config's admin token, if any.
        let token = AdminClient.firstToken(inFile: loaded.admin.tokenFile)
        if let admin { return try? AdminClient(url: admin, token: token) }
        guard loaded.admin.enabled else { return nil }
        return try? AdminClient(url: adminURL(loaded.admin), token: token)
    }
}

// MARK: - Traffic state

/// Where `render` took the traffic states from, and the states.
struct TrafficSource {
    var states: [String: TrafficState]
    var source: String

    /// The running replica's states (`GET /services/NAME`), else the configured state
    /// store's; with neither, discovery's (services.yml) and says so.
    static func read(_ config: SwitchyardConfig, client: AdminClient?, services: ServiceCatalog) -> TrafficSource {
        if let client {
            var states: [String: TrafficState] = [:]
            var reached = true
            for service in services.services {
                guard let answer = try? client.request("GET", "/services/\(pathEscaped(service.name))") else { reached = false; break }
                guard answer.status == 200, let view = try? AdminJSON.decode(ServiceView.self, from: answer.body) else { continue }
                states[service.name] = view.state
            }
            if reached {
                let stored = states.values.filter { $0.revision > 0 }.count
                return TrafficSource(states: states, source: "from the running replica at \(client.target) (\(stored) service(s) with a stored state)")
            }
        }
        let store: TrafficStore
        do {
            store = try TrafficStores.make(config.stateStore)
        } catch {
            return TrafficSource(states: [:], source: "from discovery only: the state store cannot be opened (\(error)); a stored flip or canary is not in this render")
        }
        do {
            let snapshot = try store.load()
            return TrafficSource(states: snapshot.states, source: "from the state store (\(store.description)); no running replica answered")
        } catch {
            return TrafficSource(states: [:], source: "from discovery only: the state store (\(store.description)) is unreachable (\(error)); a stored flip or canary is not in this render")
        }
    }

    /// The part of `GET /services/NAME` this reads.
    private struct ServiceView: Decodable {
        var state: TrafficState
    }
}

// MARK: - The running replica

/// What the running replica routes, read from `GET /status`.
struct RunningReplica {
    var services: [PoolsSummary.Service]
    var health: [String: String]

    /// The running table as a catalog (for the guards).
    var catalog: ServiceCatalog {
        ServiceCatalog(services: services.map { service in
            ServiceDefinition(name: service.name, activeTrack: service.activeTrack, instances: service.endpoints.map {
                InstanceDefinition(address: $0.address, port: UInt16(clamping: $0.port), track: $0.track, weight: $0.weight)
            })
        })
    }

    static func fetch(_ client: AdminClient?) -> RunningReplica? {
        guard let client, let answer = try? client.request("GET", "/status"), answer.status == 200,
              let status = try? AdminJSON.decode(StatusDocument.self, from: answer.body) else { return nil }
        var health: [String: String] = [:]
        let services = status.services.map { service in
            let endpoints = service.tracks.flatMap(\.endpoints).map { endpoint in
                health[TemplateInput.healthKey(service: service.name, address: endpoint.address, port: UInt16(clamping: endpoint.port))] =
                    endpoint.ejected ? "ejected" : endpoint.health
                return PoolsSummary.Endpoint(
                    address: endpoint.address, port: endpoint.port, track: endpoint.track, weight: endpoint.weight, draining: endpoint.draining)
            }
            let canary = service.canary.map { canary in
                "\(canary.track) \(canary.percent == canary.percent.rounded() ? canary.percent.wholeText : String(canary.percent))%"
            }
            return PoolsSummary.Service(name: service.name, activeTrack: service.activeTrack, canary: canary, endpoints: endpoints)
        }
        return RunningReplica(services: services, health: health)
    }
}
