#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import Dispatch
import YardControl
import YardIO
import YardModel

@main
struct Switchyard: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "switchyard",
        abstract: "An ingress proxy and load balancer for blue/green and canary releases.",
        subcommands: [Run.self, Check.self])
}

/// Exits with a message on standard error (exit code 2: an error, not a refusal).
func fail(_ message: String) -> Never {
    FileHandleWriter.stderr("switchyard: \(message)\n")
    exit(2)
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

    @Flag(help: "Log debug lines.")
    var verbose = false

    func run() throws {
        if verbose { Log.minimumLevel = .debug }
        let runtime = Runtime(configPath: config, workers: workers)
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
            var catalog = ServiceCatalog(services: [])
            switch loaded.discovery {
            case .file(let path):
                catalog = try ConfigLoader.loadCatalog(path: path)
            }
            let table = buildRoutingTable(version: 1, routes: loaded.routes, catalog: catalog)
            var lines = ["\(config): ok"]
            lines.append("  listeners: " + loaded.listeners.map { "\($0.name)=\($0.host):\($0.port)" }.joined(separator: ", "))
            for route in table.routes {
                let host = route.host.map { String(decoding: $0, as: UTF8.self) } ?? "*"
                let target = route.service.map { "\($0.name) (\($0.activeEndpoints.count) active of \($0.endpoints.count))" }
                    ?? "\(route.serviceName) (not discovered: requests get 503)"
                lines.append("  route \(host)\(String(decoding: route.pathPrefix, as: UTF8.self)) -> \(target)")
            }
            FileHandleWriter.stdout(lines.joined(separator: "\n") + "\n")
        } catch {
            FileHandleWriter.stderr("\(error)\n")
            throw ExitCode(1)
        }
    }
}

