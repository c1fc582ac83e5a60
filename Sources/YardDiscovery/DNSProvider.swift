// The DNS provider: services from A/AAAA records (Swarm's `tasks.NAME`) or SRV records
// (Consul's `_NAME._tcp.service.consul`), polled again when the answers' TTL runs out,
// within configured bounds.

import Synchronization
import YardIO
import YardModel

/// Polls a DNS server for each configured service and pushes complete snapshots.
///
/// Behaviour:
/// - A poll asks every configured query; the next poll comes after the smallest TTL
///   seen, clamped to `ttl.min ... ttl.max` (a TTL of 0, as Swarm and Consul often give,
///   polls at `ttl.min`).
/// - "No such name" and "no records" are answers: the service has no instances. A
///   timeout, a refused or failed server, or a malformed answer fails the whole poll:
///   `.failing` is reported, the last snapshot keeps serving, and the poll is retried
///   with `Backoff` (from `ttl.min`, capped at `ttl.max`).
/// - SRV targets are resolved from the answer's additional section when it has them,
///   otherwise by an A (or AAAA) query per target.
///
/// Threading: polls run on the provider's own thread and callbacks on its `ProviderRun`
/// queue (serial, none starting after `stop()` returns); `start` and `stop` may be called
/// from any thread; see `DiscoveryProvider`.
public final class DNSProvider: DiscoveryProvider {
    public let name: String
    public let config: DNSSourceConfig
    public var source: String { "\(client.server)" }
    private let client: DNSClient
    private let run: ProviderRun
    /// The poll count and the next poll's delay (from the last answers' TTL); touched by
    /// the poll thread and read by tests.
    private let state = Mutex<(polls: Int, nextPollMs: Int64)>((0, 0))

    public init(name: String, config: DNSSourceConfig, callbacks: ProviderCallbacks) {
        self.name = name
        self.config = config
        let server = SocketAddress(host: config.serverHost, port: config.serverPort)
            ?? SocketAddress(host: "127.0.0.1", port: 53)!  // config validated the literal
        client = DNSClient(server: server, timeoutMs: config.timeoutMs)
        run = ProviderRun(name: name, callbacks: callbacks)
    }

    // MARK: Lifecycle

    public func start() {
        guard run.begin() else { return }
        run.spawn("poll") { [self] in pollLoop() }
    }

    public func stop() { run.stop() }

    /// Completed polls (for tests).
    public var pollCount: Int { state.withLock { $0.polls } }

    // MARK: Polling

    /// Polls until stopped: again after the answers' TTL (clamped to the configured
    /// bounds), or after a backoff delay from `ttl.min` when a poll failed.
    private func pollLoop() {
        let backoff = Backoff(initialMs: Int64(config.ttlMinMs), maximumMs: Int64(config.ttlMaxMs),
                              seed: UInt64(truncatingIfNeeded: name.hashValue))
        run.listLoop(backoff: backoff, intervalMs: { state.withLock { $0.nextPollMs } }) {
            let outcome = Result { () throws(DNSLookupError) -> (ServiceCatalog, Int64) in try resolveAll() }
            state.withLock { $0.polls += 1 }
            switch outcome {
            case .success(let (catalog, ttlMs)):
                state.withLock { $0.nextPollMs = min(max(ttlMs, Int64(config.ttlMinMs)), Int64(config.ttlMaxMs)) }
                run.publish(catalog)
                return .success(())
            case .failure(let error):
                return .failure(AnswerProblem(error.message))
            }
        }
    }

    /// Every query, grouped into services in config order; and the smallest TTL (ms).
    private func resolveAll() throws(DNSLookupError) -> (ServiceCatalog, Int64) {
        var services: [ServiceDefinition] = []
        var minimumTTL = Int64(config.ttlMaxMs)
        for query in config.queries {
            let (instances, ttl) = try resolve(query)
            minimumTTL = min(minimumTTL, ttl)
            if let index = services.firstIndex(where: { $0.name == query.service }) {
                let known = Set(services[index].instances.map { "\($0.address)|\($0.port)" })
                services[index].instances += instances.filter { !known.contains("\($0.address)|\($0.port)") }
            } else {
                services.append(ServiceDefinition(name: query.service, instances: instances))
            }
        }
        return (ServiceCatalog(services: services), minimumTTL)
    }

    /// One query's instances, sorted (DNS servers rotate record order), and its TTL (ms).
    private func resolve(_ query: DNSQueryConfig) throws(DNSLookupError) -> ([InstanceDefinition], Int64) {
        var endpoints: [(address: String, port: UInt16, id: String)] = []
        var ttl = UInt32.max
        switch query.lookup {
        case .address(let host, let port, let family):
            for type in Self.types(family) {
                let answer = try ask(host, type)
                for record in answer.records {
                    ttl = min(ttl, record.ttl)
                    if case .address(let address) = record.data { endpoints.append((address, port, "\(host)/\(address)")) }
                }
                ttl = min(ttl, answer.negativeTTL)
            }
        case .srv(let srvName):
            let answer = try ask(srvName, .srv)
            ttl = min(ttl, answer.negativeTTL)
            for record in answer.records {
                guard case .srv(_, _, let port, let target) = record.data, !target.isEmpty, port != 0 else { continue }
                ttl = min(ttl, record.ttl)
                var addresses = answer.response.additional.compactMap { extra -> (String, UInt32)? in
                    guard extra.name == target, case .address(let address) = extra.data else { return nil }
                    return (address, extra.ttl)
                }
                if addresses.isEmpty {
                    for type in [DNSRecordType.a, .aaaa] {
                        let targetAnswer = try ask(target, type)
                        addresses += targetAnswer.records.compactMap { extra in
                            guard case .address(let address) = extra.data else { return nil }
                            return (address, extra.ttl)
                        }
                        if !addresses.isEmpty { break }
                    }
                }
                for (address, addressTTL) in addresses {
                    ttl = min(ttl, addressTTL)
                    endpoints.append((address, port, "\(target):\(port)"))
                }
            }
        }
        var seen = Set<String>()
        let instances = endpoints
            .filter { seen.insert("\($0.address)|\($0.port)").inserted }
            .sorted { ($0.address, $0.port) < ($1.address, $1.port) }
            .map { InstanceDefinition(address: $0.address, port: $0.port, track: query.track, weight: query.weight, id: $0.id) }
        let ttlMs = ttl == .max ? Int64(config.ttlMinMs) : Int64(ttl) * 1_000
        return (instances, ttlMs)
    }

    /// The records of `type` in an answer (CNAME chains followed by the server), or
    /// none for "no such name"; any other server error fails the poll.
    private func ask(_ host: String, _ type: DNSRecordType) throws(DNSLookupError) -> Answer {
        let response = try client.lookup(host, type)
        switch response.responseCode {
        case 0, 3:
            let records = response.answers.filter { $0.type == type.rawValue }
            return Answer(response: response, records: records, negativeTTL: records.isEmpty ? UInt32(config.ttlMinMs / 1_000) : .max)
        default:
            let reason = [1: "format error", 2: "server failure", 4: "not implemented", 5: "refused"][Int(response.responseCode)]
                ?? "response code \(response.responseCode)"
            throw DNSLookupError(message: "\(client.server) answered \(host) \(Self.typeName(type)) with \(reason)")
        }
    }

    private struct Answer {
        var response: DNSResponse
        var records: [DNSRecord]
        var negativeTTL: UInt32
    }

    private static func types(_ family: DNSQueryConfig.AddressFamily) -> [DNSRecordType] {
        switch family {
        case .ipv4: [.a]
        case .ipv6: [.aaaa]
        case .both: [.a, .aaaa]
        }
    }

    private static func typeName(_ type: DNSRecordType) -> String {
        switch type {
        case .a: "A"
        case .aaaa: "AAAA"
        case .srv: "SRV"
        case .cname: "CNAME"
        }
    }
}
