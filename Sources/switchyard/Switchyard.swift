#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import Logging
import Dispatch
import YardControl
import YardDemo
import YardDiscovery
import YardIO
import YardModel

@main
struct Switchyard: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "switchyard",
        abstract: "An ingress proxy and load balancer for blue/green and canary releases.",
        discussion: """
            Exit codes, for every command: 0 done; 1 refused or not met (a gate failed, a \
            stale --revision, the canary at the top of its plan, `flip --wait` timed out, \
            `status --check` found a problem, `check` found the config invalid, a render's \
            check or reload failed); 2 error (usage, config, the admin API unreachable or \
            answering an error). docs/api.md has the table.
            """,
        version: BuildInfo.versionText,
        subcommands: [Run.self, Check.self, Render.self, Status.self, Flip.self, Canary.self, EndpointCommand.self, Explain.self, Demo.self, Backend.self, ACME.self, Certs.self])

    /// Runs the command with the documented exit codes: ArgumentParser's usage errors
    /// (which it would exit 64 for) and any error a command throws exit 2; `ExitCode`s a
    /// command throws are kept.
    static func main() {
        Glibc.exit(exitStatus(running: Array(CommandLine.arguments.dropFirst())))
    }

    static func exitStatus(running arguments: [String]) -> Int32 {
        do {
            var command = try parseAsRoot(arguments)
            try command.run()
            return 0
        } catch {
            let code = exitCode(for: error)
            if code == .success {
                // --help, --version: ArgumentParser prints them.
                let message = fullMessage(for: error)
                if !message.isEmpty { FileHandleWriter.stdout(message + "\n") }
                return 0
            }
            if error is ExitCode { return code.rawValue }
            let message = fullMessage(for: error)
            if !message.isEmpty { FileHandleWriter.stderr(message + "\n") }
            return CLIExit.error
        }
    }
}

/// The exit codes of every command (docs/api.md, "Exit codes").
enum CLIExit {
    static let done: Int32 = 0
    /// Refused, or a condition not met: a gate, a stale revision, `status --check`, `check`.
    static let refused: Int32 = 1
    /// Usage, config or connection errors; the admin API answered an error.
    static let error: Int32 = 2
}

/// Exits with a message on standard error (exit code 2: an error, not a refusal).
func fail(_ message: String) -> Never {
    FileHandleWriter.stderr("switchyard: \(message)\n")
    exit(CLIExit.error)
}

enum FileHandleWriter {
    static func stderr(_ text: String) {
        var text = text
        text.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
    }

    static func stdout(_ text: String) {
        var text = text
        text.withUTF8 { _ = write(1, $0.baseAddress, $0.count) }
    }
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the proxy on a config file.")

    @Option(name: .shortAndLong, help: "The config file.")
    var config = "conf/switchyard.yml"

    @Option(help: "Event loops to run (default: the config's `workers`, else one per core).")
    var workers: Int?

    @Option(help: "Bind the admin API here instead of the config's admin.address (beyond loopback only with admin.token_file).")
    var admin: String?

    @Flag(help: "Log debug lines.")
    var verbose = false

    @Flag(help: "Take the listening sockets over from the switchyard running on this config, then let it drain (a restart or upgrade that refuses no connection); with none running, bind as usual.")
    var takeover = false

    @Option(help: "The unix socket a running switchyard offers its listening sockets on (a path, or @name for an abstract socket; `off`: none). Default: derived from the config file's path, in $RUNTIME_DIRECTORY or $XDG_RUNTIME_DIR if set.")
    var takeoverSocket: String?

    @Option(help: "The process log's format: text, or json (one object per line: ts, level, msg, fields). Default: the config's log.format, else text.")
    var logFormat: String?

    func run() throws {
        applyLogSettings(config: config, format: logFormat, verbose: verbose)
        let settings = TakeoverSettings(takeOver: takeover, socketPath: takeoverSocket, relaunch: TakeoverSettings.relaunchCommand())
        let runtime = Runtime(configPath: config, workers: workers, admin: admin, takeover: settings)
        do {
            let code = try runtime.run { addresses in
                FileHandleWriter.stdout("listening " + addresses.map(\.description).joined(separator: " ") + "\n")
            }
            throw ExitCode(code)
        } catch let error as ExitCode {
            throw error
        } catch {
            fail("\(error)")
        }
    }
}

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Validate a config file and its services file, then exit.")

    @Option(name: .shortAndLong, help: "The config file.")
    var config = "conf/switchyard.yml"

    func run() throws {
        do {
            let loaded = try ConfigLoader.loadConfig(path: config)
            let (catalog, skipped) = try fileProvidersCatalog(loaded.discovery)
            let notes = skipped.map { "  provider \($0): not contacted by check" }
            let table = buildRoutingTable(version: 1, routes: loaded.routes, catalog: catalog)
            var lines = ["\(config): ok"] + notes
            lines.append("  listeners: " + loaded.listeners.map { "\($0.name)=\($0.host):\($0.port)" }.joined(separator: ", "))
            lines += try checkTLSListeners(loaded.listeners)
            let tlsFiles = checkTLSFiles(loaded, services: table.routes.compactMap(\.service))
            guard tlsFiles.failures.isEmpty else {
                throw CheckFailure("\(config): TLS files that do not load:\n" + tlsFiles.failures.map { "  \($0)" }.joined(separator: "\n"))
            }
            lines += tlsFiles.lines
            for route in table.routes {
                let host = route.host.map { String(decoding: $0, as: UTF8.self) } ?? "*"
                let target = route.service.map { service in
                    let transport = service.upstream.protocol == .http1 ? (service.upstream.tls == nil ? "" : ", https") : ", \(service.upstream.protocol.rawValue)"
                    return "\(service.name) (\(service.activeEndpoints.count) active of \(service.endpoints.count)\(transport))"
                }
                    ?? "\(route.serviceName) (not discovered: requests get 503)"
                let path = route.matcher.pathRegex.map { " ~\($0.pattern)" } ?? String(decoding: route.pathPrefix, as: UTF8.self)
                lines.append("  route \(host)\(path) -> \(target)")
            }
            FileHandleWriter.stdout(lines.joined(separator: "\n") + "\n")
        } catch {
            FileHandleWriter.stderr("\(error)\n")
            throw ExitCode(1)
        }
    }
}

/// Sets the process log's format and level before anything logs, by bootstrapping
/// swift-log's `LoggingSystem` with our handler (`Log.bootstrap`, once per process):
/// `--log-format` and `--verbose` win over the config's `log:` section (read here too, so
/// the first lines are already in the configured format; a config that does not load is
/// reported by the run).
func applyLogSettings(config path: String, format: String?, verbose: Bool) {
    let configured = (try? ConfigLoader.loadConfig(path: path))?.log ?? ProcessLogConfig()
    let name = format ?? configured.format
    guard let chosen = Log.Format(rawValue: name) else { fail("--log-format is text or json, not '\(name)'") }
    let levels: [String: Logger.Level] = ["debug": .debug, "info": .info, "warn": .warning, "error": .error]
    Log.bootstrap(format: chosen, level: verbose ? .debug : levels[configured.level] ?? .info)
}

/// What `check` found wrong, already worded for the operator.
struct CheckFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

struct Backend: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a demo/test HTTP backend that answers with its name (for demos and tests).")

    @Option(help: "The name it answers with.")
    var name = "backend"

    @Option(help: "Address to bind.")
    var host = "127.0.0.1"

    @Option(help: "Port (0 picks a free one; the chosen port is printed).")
    var port: UInt16 = 0

    @Option(help: "Answer every Nth request with 500 (0: never), e.g. 20 for 5 %.")
    var failEvery = 0

    @Option(help: "Milliseconds to wait before every answer.")
    var delayMs = 0

    func run() throws {
        signal(SIGPIPE, SIG_IGN)
        let backend = try DemoBackend(name: name, host: host, port: port, failEvery: failEvery, delayMs: delayMs)
        backend.start()
        FileHandleWriter.stdout("listening \(host):\(backend.port)\n")
        let done = DispatchSemaphore(value: 0)
        let queue = DispatchQueue(label: "backend.signals")
        var sources: [DispatchSourceSignal] = []
        for number in [SIGTERM, SIGINT] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
            source.setEventHandler { done.signal() }
            source.resume()
            sources.append(source)
        }
        done.wait()
        backend.stop()
        _ = sources
    }
}

struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run demo blue and green backends and the proxy in front of them (file discovery).")

    @Option(name: .shortAndLong, help: "The config file.")
    var config = "conf/switchyard.yml"

    @Option(help: "The process log's format: text or json (default: the config's log.format, else text).")
    var logFormat: String?

    func run() throws {
        signal(SIGPIPE, SIG_IGN)
        applyLogSettings(config: config, format: logFormat, verbose: false)
        let loaded: SwitchyardConfig
        let catalog: ServiceCatalog
        let servicesPath: String
        do {
            loaded = try ConfigLoader.loadConfig(path: config)
            guard let path = loaded.discovery.filePaths.first else { fail("the demo needs file discovery") }
            servicesPath = path
            catalog = try ConfigLoader.loadCatalog(path: path)
        } catch {
            fail("\(error)")
        }
        var backends: [DemoBackend] = []
        for service in catalog.services {
            for instance in service.instances where instance.address == "127.0.0.1" || instance.address == "localhost" {
                let name = "\(service.name)-\(instance.track ?? "default")"
                do {
                    let backend = try DemoBackend(name: name, host: "127.0.0.1", port: instance.port)
                    backend.start()
                    backends.append(backend)
                } catch {
                    fail("cannot start demo backend \(name) on port \(instance.port): \(error)")
                }
            }
        }
        let runtime = Runtime(configPath: config)
        let backendCount = backends.count
        // The printed commands reach this demo's admin API, wherever the config puts it.
        let adminTarget = loaded.admin.enabled && adminURL(loaded.admin) != defaultAdminURL ? " --admin \(adminURL(loaded.admin))" : ""
        let cli = (CommandLine.arguments.first ?? "switchyard")
        let admin = loaded.admin.enabled ? adminURL(loaded.admin) + "/" : "admin listener disabled"
        let code = try runtime.run { addresses in
            let listen = addresses.first.map { "http://\($0)" } ?? "http://127.0.0.1:8080"
            let tracks = catalog.services.map { service in
                let tracks = Set(service.instances.compactMap(\.track)).sorted().joined(separator: ", ")
                return "  \(service.name): tracks \(tracks.isEmpty ? "-" : tracks), active \(service.activeTrack ?? "all")"
            }.joined(separator: "\n")
            FileHandleWriter.stdout("""

            Switchyard demo is up.
            \(tracks)
            \(backendCount) demo backends answer with their name and track.

            Try:
              curl -s \(listen)/                      # answered by the active track, round-robin
              for i in 1 2 3 4; do curl -s \(listen)/; done

            Flip to green on every replica, and back (the state store remembers it):
              \(cli) flip shop --to green\(adminTarget)
              \(cli) flip shop --to blue\(adminTarget)
            Canary: 10 % of new requests to green, exact; then step it through 5, 25, 50, 100 %:
              \(cli) canary set shop 10\(adminTarget)
              \(cli) canary step shop --bake 10s --min-requests 20\(adminTarget)
              \(cli) canary promote shop\(adminTarget)
            See it: \(cli) status\(adminTarget)   (or the dashboard, \(admin))
            Discovery: edit \(servicesPath); the change is live within a second.

            Ctrl-C drains in-flight requests and stops.

            """)
        }
        for backend in backends { backend.stop() }
        throw ExitCode(code)
    }
}

/// The merge of the file providers' catalogs (what `check` and `render` can read without
/// contacting anything), and the network providers skipped, as `name (type)`.
func fileProvidersCatalog(_ discovery: DiscoveryConfig) throws(ConfigError) -> (catalog: ServiceCatalog, skipped: [String]) {
    var snapshots: [String: ServiceCatalog] = [:]
    var skipped: [String] = []
    for provider in discovery.providers {
        if case .file(let file) = provider.source {
            snapshots[provider.name] = try ConfigLoader.loadCatalog(path: file.path)
        } else {
            skipped.append("\(provider.name) (\(provider.source.typeName))")
        }
    }
    return (AggregatorState.merge(order: discovery.providers.map(\.name), snapshots: snapshots).catalog, skipped)
}
