// The fuzz driver: picks one target by name and hands it to libFuzzer.
//
//   SwitchyardFuzz --list
//   SwitchyardFuzz TARGET [libFuzzer options] [corpus directories]
//
// Built only by scripts/fuzz (SWITCHYARD_FUZZ=1, -sanitize=fuzzer,address). Each target
// feeds the bytes to one parser or decoder the way the proxy or a provider does, and
// only has to not trap: a crash, an ASan report, a leak or a timeout is the finding.

import CYardFuzz

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The target libFuzzer's callback runs; set once in `main` before the driver starts.
nonisolated(unsafe) private var selected: FuzzTarget?

@main
enum SwitchyardFuzz {
    static func main() {
        var arguments = CommandLine.arguments
        guard arguments.count >= 2, let target = FuzzTarget.all.first(where: { $0.name == arguments[1] }) else {
            if arguments.count >= 2 && arguments[1] == "--list" {
                for target in FuzzTarget.all { print("\(target.name)\t\(target.summary)") }
                exit(0)
            }
            let names = FuzzTarget.all.map(\.name).joined(separator: ", ")
            let usage = "usage: SwitchyardFuzz --list | TARGET [libFuzzer options] [corpus]...\ntargets: \(names)\n"
            _ = usage.withCString { write(2, $0, strlen($0)) }
            exit(2)
        }
        selected = target
        arguments.remove(at: 1)
        // libFuzzer keeps argv (it re-executes itself for -fork/-jobs): give it C strings
        // that live until exit.
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        var argc = Int32(arguments.count)
        let status = argv.withUnsafeMutableBufferPointer { buffer -> Int32 in
            var pointer = buffer.baseAddress
            return LLVMFuzzerRunDriver(&argc, &pointer) { data, size in
                let bytes = UnsafeRawBufferPointer(start: data, count: size)
                selected?.run(bytes)
                return 0
            }
        }
        exit(status)
    }
}

/// One fuzz target: a name for the command line and what it does with an input.
struct FuzzTarget: Sendable {
    let name: String
    let summary: String
    let run: @Sendable (UnsafeRawBufferPointer) -> Void

    static let all: [FuzzTarget] = [
        FuzzTarget(name: "http-request", summary: "HTTP/1.1 request head parser (parseRequestHead), whole and split", run: HTTPTargets.request),
        FuzzTarget(name: "http-response", summary: "HTTP/1.1 response head parser (parseResponseHead), whole and split", run: HTTPTargets.response),
        FuzzTarget(name: "chunked", summary: "chunked body validation (ChunkedDecoder) then splitting (Dechunker)", run: HTTPTargets.chunked),
        FuzzTarget(name: "h2-server", summary: "HTTP/2 server session (H2Session) fed raw frames after the preface", run: H2Target.server),
        FuzzTarget(name: "dns", summary: "DNS response decoder (DNSMessage.decode)", run: DiscoveryTargets.dns),
        FuzzTarget(name: "admin-request", summary: "admin API requests (AdminRequestParser.parse): head, query, headers, JSON bodies", run: AdminTarget.request),
        FuzzTarget(name: "config", summary: "switchyard.yml loader (ConfigLoader.loadConfig(text:))", run: ModelTargets.config),
        FuzzTarget(name: "catalog", summary: "services.yml loader (ConfigLoader.loadCatalog(text:))", run: ModelTargets.catalog),
        FuzzTarget(name: "docker", summary: "Docker /containers/json and /events decoding and mapping (DockerCatalog)", run: DiscoveryTargets.docker),
        FuzzTarget(name: "swarm", summary: "Swarm services/tasks/nodes decoding and mapping (SwarmCatalog)", run: DiscoveryTargets.swarm),
        FuzzTarget(name: "consul", summary: "Consul health entries decoding and mapping (ConsulCatalog)", run: DiscoveryTargets.consul),
        FuzzTarget(name: "etcd", summary: "etcd keys to a catalog (EtcdCatalog.build); input: key NUL value NUL ...", run: DiscoveryTargets.etcd),
        FuzzTarget(name: "labels", summary: "container labels (SwitchyardLabels.read); input: key=value lines", run: DiscoveryTargets.labels),
    ]
}
