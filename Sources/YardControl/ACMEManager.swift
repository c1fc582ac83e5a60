#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Synchronization
import YardACME
import YardIO
import YardModel
import YardProxy
import YardTLS

/// The running proxy's ACME side: for every TLS listener with `tls.acme`, holds one
/// certificate per name (its `names`, and the route hosts its `domains` allow), orders a
/// missing one, renews at two thirds of the lifetime (or in the CA's ARI window), and
/// installs each new certificate in the listener without a restart.
///
/// Challenges are answered by the proxy itself: HTTP-01 by a loopback responder that the
/// routing table reaches through a synthetic route for `/.well-known/acme-challenge/`
/// on every host (more specific than any configured route, see `withChallengeRoutes`);
/// TLS-ALPN-01 by the listener's `TLSALPNChallenges`. A failed order keeps the running
/// certificate, is logged and shown by `switchyard certs`, and is retried with backoff.
///
/// Threading: one worker thread does every order (blocking I/O, one `ACMEClient` per
/// listener, confined to it). The mutex guards `State`, read by the admin API and the
/// table builder on other threads.
final class ACMEManager: Sendable {
    /// The synthetic service the challenge routes point at.
    static let challengeService = "switchyard-acme-http-01"
    /// The most a failed order waits before the next attempt (the first wait is `acme.retry`).
    static let maximumRetrySeconds: Int64 = 3600

    struct Listener: Sendable {
        var index: Int
        var name: String
        var tls: ListenerTLSConfig
        var acme: ListenerACMEConfig
        /// Set with `store_key_file`: the name's order and certificate are the fleet's.
        var seal: ACMESealKey?
    }

    /// What `switchyard certs` shows for one name.
    struct Certificate: Sendable {
        var listener: String
        var name: String
        var issuer: String?
        var notBefore: Int64?
        var notAfter: Int64?
        var nextRenewal: Int64?
        var lastError: String?
        var failures = 0
        var retryAt: Int64 = 0
        var renewalID: String?
        /// When the ARI window was last asked for (Unix seconds).
        var askedARI: Int64 = 0
        /// The replica ordering it now (fleet), if any.
        var leaseHolder: String?
        /// The version of the shared record last looked at.
        var storeVersion: Int64 = 0
    }

    private struct State {
        var routeHosts: [String] = []
        var certificates: [String: Certificate] = [:]
        var attached: (server: ProxyServer, tls: TLSListeners)?
        var stopping = false
    }

    private let listeners: [Listener]
    let responder: ACMEChallengeResponder?
    /// The state store's ACME records, when a listener shares its certificates.
    private let shared: ACMESharedStore?
    private let replicaID: String
    private let state = Mutex<State>(State())
    private let wake = DispatchSemaphore(value: 0)

    /// nil when no listener uses ACME. Starts the HTTP-01 responder (127.0.0.1, a kernel
    /// port) when one listener answers HTTP-01; reads every `store_key_file` (a missing or
    /// malformed one stops the start, naming the file).
    init?(_ configured: [ListenerConfig], stateStore: StateStoreConfig, replicaID: String) throws {
        var listeners: [Listener] = []
        for (index, listener) in configured.enumerated() {
            guard let tls = listener.tls, let acme = tls.acme else { continue }
            var seal: ACMESealKey?
            if let file = acme.storeKeyFile {
                do {
                    guard let text = try ACMEFiles.readFile(file) else { throw ACMEFileError(message: "\(file) does not exist") }
                    seal = try ACMESealKey(text: text)
                } catch {
                    throw TLSConfigError(description: "\(acme.origin) store_key_file \(file): \(error)")
                }
            }
            listeners.append(Listener(index: index, name: listener.name, tls: tls, acme: acme, seal: seal))
        }
        guard !listeners.isEmpty else { return nil }
        self.listeners = listeners
        self.replicaID = replicaID
        responder = listeners.contains { $0.acme.challenge == .http01 } ? try ACMEChallengeResponder(address: "127.0.0.1", port: 0) : nil
        shared = listeners.contains { $0.seal != nil } ? try ACMESharedStores.make(stateStore) : nil
        if let shared, let responder {
            // The CA may reach any replica: answer the tokens the others published. At most
            // 20 store reads a second: random tokens from the Internet must not become load
            // on etcd or Consul.
            let budget = Mutex<(second: Int64, used: Int)>((0, 0))
            responder.answerUnknownTokens { token in
                let second = Int64(Date().timeIntervalSince1970)
                let allowed = budget.withLock { state -> Bool in
                    if state.second != second { state = (second, 0) }
                    state.used += 1
                    return state.used <= 20
                }
                guard allowed, let value = try? shared.get("http-01/\(token)")?.value, !value.isEmpty else { return nil }
                return String(decoding: value, as: UTF8.self)
            }
        }
    }

    /// Hands over what a stored certificate is installed into, and starts ordering.
    func start(server: ProxyServer, tls: TLSListeners) {
        state.withLock { $0.attached = (server, tls) }
        let thread = Thread { [self] in work() }
        thread.name = "acme"
        thread.start()
    }

    func stop() {
        state.withLock { $0.stopping = true }
        wake.signal()
        responder?.stop()
    }

    // MARK: Routes (called by the table builder)

    /// Adds the HTTP-01 challenge routes and their loopback service to a table's input:
    /// one route per host (each route's host and each managed name) and one for any host,
    /// so the challenge path beats every configured route. Records the route hosts (the
    /// names `domains` may allow) and wakes the worker when they changed.
    func withChallengeRoutes(_ routes: [RouteConfig], _ catalog: ServiceCatalog) -> ([RouteConfig], ServiceCatalog) {
        var hosts: [String] = []
        for host in routes.compactMap(\.host) + catalog.services.flatMap({ $0.routes.compactMap(\.host) }) where !hosts.contains(host.lowercased()) {
            hosts.append(host.lowercased())
        }
        let changed = state.withLock { state -> Bool in
            defer { state.routeHosts = hosts }
            return state.routeHosts != hosts
        }
        if changed { wake.signal() }
        guard let responder else { return (routes, catalog) }
        let path = ACMEChallengeResponder.pathPrefix
        var names = hosts
        for listener in listeners { for name in listener.acme.names where !names.contains(name) { names.append(name) } }
        var services = catalog.services
        services.append(ServiceDefinition(name: Self.challengeService, instances: [InstanceDefinition(address: "127.0.0.1", port: responder.port)]))
        let challengeRoutes = names.map { RouteConfig(host: $0, pathPrefix: path, service: Self.challengeService) }
            + [RouteConfig(host: nil, pathPrefix: path, service: Self.challengeService)]
        return (challengeRoutes + routes, ServiceCatalog(services: services))
    }

    // MARK: Reload

    /// SIGHUP: the reloaded listeners with each TLS listener's `acme` block as it runs, and
    /// the names of the listeners whose block changed. The ACME worker, its responder and
    /// its store are made at start, so a changed block applies at the next restart; until
    /// then the running block keeps ordering and renewing (and its storage keeps serving).
    static func keepingRunningACME(_ reloaded: [ListenerConfig], running: [ListenerConfig]) -> (listeners: [ListenerConfig], changed: [String]) {
        var listeners = reloaded
        var changed: [String] = []
        for index in listeners.indices where index < running.count && running[index].name == listeners[index].name
            && listeners[index].tls != nil && running[index].tls != nil {
            let old = running[index].tls?.acme
            guard listeners[index].tls?.acme != old else { continue }
            changed.append(listeners[index].name)
            listeners[index].tls?.acme = old
            if old == nil, listeners[index].tls?.certificates.isEmpty == true {
                // An acme block added to a listener of certificate files: those stay.
                listeners[index].tls?.certificates = running[index].tls?.certificates ?? []
            }
        }
        return (listeners, changed)
    }

    // MARK: Status

    var certificates: [Certificate] {
        state.withLock { Array($0.certificates.values) }.sorted { ($0.listener, $0.name) < ($1.listener, $1.name) }
    }

    /// `GET /certs`.
    func statusJSON() -> String {
        let items = certificates.map { item in
            var members: [(String, String)] = [("listener", jsonString(item.listener)), ("name", jsonString(item.name))]
            members.append(("issuer", item.issuer.map(jsonString) ?? "null"))
            members.append(("not_before", item.notBefore.map { String($0) } ?? "null"))
            members.append(("not_after", item.notAfter.map { String($0) } ?? "null"))
            members.append(("next_renewal", item.nextRenewal.map { String($0) } ?? "null"))
            members.append(("last_error", item.lastError.map(jsonString) ?? "null"))
            members.append(("failures", String(item.failures)))
            members.append(("next_attempt", item.failures > 0 ? String(item.retryAt) : "null"))
            members.append(("lease_holder", item.leaseHolder.map(jsonString) ?? "null"))
            return "{" + members.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}"
        }
        return "{\"certificates\":[" + items.joined(separator: ",") + "]}\n"
    }

    /// Prometheus lines appended to `/metrics`.
    func metricsText() -> String {
        let held = certificates.filter { $0.notAfter != nil }
        var text = "# HELP switchyard_tls_certificate_expiry_timestamp_seconds When each ACME certificate expires (Unix time).\n"
        text += "# TYPE switchyard_tls_certificate_expiry_timestamp_seconds gauge\n"
        for item in held {
            text += "switchyard_tls_certificate_expiry_timestamp_seconds{name=\"\(prometheusEscaped(item.name))\"} \(item.notAfter ?? 0)\n"
        }
        text += "# HELP switchyard_acme_order_failures Consecutive failed ACME orders per name.\n"
        text += "# TYPE switchyard_acme_order_failures gauge\n"
        for item in certificates {
            text += "switchyard_acme_order_failures{name=\"\(prometheusEscaped(item.name))\"} \(item.failures)\n"
        }
        return text
    }

    // MARK: The worker

    private func work() {
        var clients: [Int: ACMEClient] = [:]
        while !state.withLock({ $0.stopping }) {
            for listener in listeners {
                let hosts = state.withLock { $0.routeHosts }
                for name in listener.acme.managedNames(routeHosts: hosts) {
                    if state.withLock({ $0.stopping }) { return }
                    step(listener, name: name, clients: &clients)
                }
            }
            _ = wake.wait(timeout: .now() + .seconds(1))
        }
    }

    /// Orders `name`'s certificate if it is missing or due and not backing off.
    private func step(_ listener: Listener, name: String, clients: inout [Int: ACMEClient]) {
        let key = "\(listener.name)|\(name)"
        let now = Int64(Date().timeIntervalSince1970)
        let storage = ACMEStorage(listener.acme.storage)
        var item = state.withLock { $0.certificates[key] } ?? Self.fromStorage(storage, listener: listener.name, name: name)
        defer {
            let final = item
            state.withLock { $0.certificates[key] = final }
        }
        guard (try? ACMEIdentifiers.validated([name])) != nil else {
            item.lastError = "'\(name)' is not a DNS name a CA can issue for"
            return
        }
        let fleet = listener.seal.flatMap { seal in shared.map { ($0, seal) } }
        if let (store, seal) = fleet { adopt(from: store, seal: seal, listener, name: name, &item) }
        if item.notAfter != nil, let renewalID = item.renewalID, now - item.askedARI > 6 * 3600,
           let client = try? client(for: listener, clients: &clients) {
            item.askedARI = now
            if let window = try? client.renewalWindow(certificateID: renewalID) { item.nextRenewal = window.pick() }
        }
        if let nextRenewal = item.nextRenewal, now < nextRenewal { return }
        guard now >= item.retryAt else { return }
        if let (store, seal) = fleet {
            // One replica orders; the others install what it stores.
            do {
                if let holder = try store.takeLease(name, holder: replicaID, ttlSeconds: Double(listener.acme.leaseMs) / 1000) {
                    item.leaseHolder = holder
                    return
                }
            } catch {
                item.lastError = "state store: \(error)"
                item.retryAt = now + 5
                return
            }
            item.leaseHolder = replicaID
            adopt(from: store, seal: seal, listener, name: name, &item)
            if let nextRenewal = item.nextRenewal, now < nextRenewal {
                store.releaseLease(name, holder: replicaID)
                item.leaseHolder = nil
                return
            }
        }
        // The lease is renewed while the order runs, so `lease` may be shorter than an order.
        let keeper = fleet.map { ACMELeaseKeeper(store: $0.0, name: name, holder: replicaID, ttlSeconds: Double(listener.acme.leaseMs) / 1000) }
        defer {
            if let (store, _) = fleet {
                keeper?.stop()
                store.releaseLease(name, holder: replicaID)
                item.leaseHolder = nil
            }
        }
        do {
            let client = try client(for: listener, clients: &clients)
            let solver = Solver(challenge: listener.acme.challenge, responder: responder,
                                alpn: state.withLock { $0.attached?.tls.acmeChallenges(listener: listener.index) },
                                shared: fleet?.0, keeper: keeper)
            logger.info("acme: \(item.notAfter == nil ? "ordering" : "renewing") the certificate for \(name) (listener '\(listener.name)', \(listener.acme.challenge.rawValue))")
            let issued = try client.issueCertificate(names: [name], solver: solver, deadline: .seconds(180),
                                                     keyType: ACMEKeyType(rawValue: listener.acme.keyType.rawValue) ?? .ecdsaP256)
            try storage.store(name, issued)
            let info = try ACMECertificateInfo(pem: issued.chainPEM)
            let version = item.storeVersion
            item = Self.certificate(listener: listener.name, name: name, info: info)
            item.storeVersion = version
            if let (store, seal) = fleet {
                do {
                    let record = try seal.seal(Array(storage.text(name).utf8), name: name)
                    try store.overwrite("certificates/\(name)", record)
                } catch {
                    logger.error("acme: \(name): the certificate could not be shared through the state store (\(error)); the other replicas order their own when it is due")
                }
            }
            if let attached = state.withLock({ $0.attached }) {
                try attached.tls.refresh(listener: listener.index, tls: listener.tls, server: attached.server)
            }
            logger.info("acme: \(name): certificate stored and served, valid until \(iso8601(info.notAfter)); renewal from \(iso8601(item.nextRenewal ?? 0))")
        } catch {
            item.failures += 1
            let first = max(Int64(listener.acme.retryMs / 1000), 1)
            var delay = min(first << Int64(min(item.failures - 1, 12)), Self.maximumRetrySeconds)
            // A rate limit says when to come back: never sooner (RFC 8555 §6.6).
            if case .server(_, _, let problem)? = error as? ACMEError, let retryAfter = problem.retryAfter {
                delay = max(delay, min(retryAfter.components.seconds, 7 * 86_400))
            }
            // From the failure, not from the start of the attempt (an order takes seconds).
            item.retryAt = Int64(Date().timeIntervalSince1970) + delay
            item.lastError = "\(error)"
            logger.error("acme: \(name): order failed (\(error)); \(item.notAfter == nil ? "the default certificate answers" : "the current certificate keeps serving"); next attempt in \(delay) s")
        }
    }

    /// Installs the certificate another replica stored for `name` when it is newer than
    /// the one held.
    private func adopt(from store: ACMESharedStore, seal: ACMESealKey, _ listener: Listener, name: String, _ item: inout Certificate) {
        do {
            guard let record = try store.get("certificates/\(name)"), record.version != item.storeVersion else { return }
            item.storeVersion = record.version
            let text = String(decoding: try seal.open(record.value, name: name), as: UTF8.self)
            let info = try ACMECertificateInfo(pem: text)
            guard info.notAfter > (item.notAfter ?? 0) else { return }
            let storage = ACMEStorage(listener.acme.storage)
            try ACMEFiles.writeAtomically(storage.certificatePath(name), text, mode: 0o600)
            let version = item.storeVersion
            item = Self.certificate(listener: listener.name, name: name, info: info)
            item.storeVersion = version
            if let attached = state.withLock({ $0.attached }) {
                try attached.tls.refresh(listener: listener.index, tls: listener.tls, server: attached.server)
            }
            logger.info("acme: \(name): installed the certificate the fleet stored (valid until \(iso8601(info.notAfter)))")
        } catch {
            item.lastError = "shared certificate: \(error)"
        }
    }

    private func client(for listener: Listener, clients: inout [Int: ACMEClient]) throws -> ACMEClient {
        if let client = clients[listener.index] { return client }
        let acme = listener.acme
        let client = try ACMEClient(directoryURL: acme.directory, accountKey: try accountKey(listener), caFile: acme.caFile)
        client.log = { logger.info("acme: \($0)") }
        var binding: ACMEExternalAccountBinding?
        if let keyID = acme.eabKeyID, let file = acme.eabMACKeyFile {
            guard let text = try ACMEFiles.readFile(file) else { throw ACMEFileError(message: "eab.hmac_key_file \(file) does not exist") }
            binding = try ACMEExternalAccountBinding(keyID: keyID, macKeyText: text)
        }
        do {
            try client.register(contact: acme.email, externalAccount: binding)
        } catch {
            // Replicas registering the fleet's new key at once: the CA may refuse all but
            // one (pebble: "account with key already exists", 500). Asking again finds it.
            guard listener.seal != nil, Self.isServerError(error) else { throw error }
            Thread.sleep(forTimeInterval: Double.random(in: 0.5...1.5))
            try client.register(contact: acme.email, externalAccount: binding)
        }
        clients[listener.index] = client
        return client
    }

    private static func isServerError(_ error: any Error) -> Bool {
        if case .server(_, let status, _)? = error as? ACMEError { return status >= 500 }
        return false
    }

    /// The account key: in a fleet, the one in the state store (sealed with the store key),
    /// created by the first replica that needs one; else `storage/account.key`. The fleet's
    /// key is also kept in `storage/account.key`.
    private func accountKey(_ listener: Listener) throws -> ACMEPrivateKey {
        let storage = ACMEStorage(listener.acme.storage)
        guard let seal = listener.seal, let shared else { return try storage.accountKey() }
        let (key, created) = try shared.sharedAccountKey(seal: seal) { try storage.accountKey() }
        if created {
            logger.info("acme: this replica's account key is now the fleet's (\(shared.description), record account-key)")
        } else {
            try storage.keepAccountKey(key)
        }
        return key
    }

    private static func fromStorage(_ storage: ACMEStorage, listener: String, name: String) -> Certificate {
        guard let info = storage.stored(name) else { return Certificate(listener: listener, name: name) }
        return certificate(listener: listener, name: name, info: info)
    }

    /// A held certificate, renewing at two thirds of its lifetime less a jitter of up to
    /// 1/30 of it (so a fleet's or a batch's renewals spread out).
    private static func certificate(listener: String, name: String, info: ACMECertificateInfo) -> Certificate {
        let lifetime = max(info.notAfter - info.notBefore, 1)
        let jitter = Int64.random(in: 0...max(lifetime / 30, 0))
        return Certificate(listener: listener, name: name, issuer: info.issuer, notBefore: info.notBefore, notAfter: info.notAfter,
                           nextRenewal: info.twoThirds - jitter, renewalID: info.renewalID)
    }
}

/// Answers one order's challenges of the listener's type. Threading: the ACME worker.
private final class Solver: ACMEChallengeSolver {
    let challenge: ListenerACMEConfig.Challenge
    let responder: ACMEChallengeResponder?
    let alpn: TLSALPNChallenges?
    /// The fleet's store: HTTP-01 answers go there too, for the replica the CA reaches.
    let shared: ACMESharedStore?
    /// The order's lease (fleet): once another replica took it over, no more challenges.
    let keeper: ACMELeaseKeeper?

    init(challenge: ListenerACMEConfig.Challenge, responder: ACMEChallengeResponder?, alpn: TLSALPNChallenges?,
         shared: ACMESharedStore?, keeper: ACMELeaseKeeper?) {
        self.challenge = challenge
        self.responder = responder
        self.alpn = alpn
        self.shared = shared
        self.keeper = keeper
    }

    var challengeType: String { challenge.rawValue }

    func publish(name: String, token: String, keyAuthorization: String) throws(ACMEError) {
        if let other = keeper?.lostTo { throw ACMEError.badRequest("\(other) took the order lease over; it orders \(name) now") }
        switch challenge {
        case .http01:
            guard let responder else { throw ACMEError.badRequest("no HTTP-01 responder is running") }
            responder.publish(token: token, keyAuthorization: keyAuthorization)
            if let shared {
                do {
                    try shared.overwrite("http-01/\(token)", Array(keyAuthorization.utf8))
                } catch {
                    throw ACMEError.transport(operation: "publishing the HTTP-01 answer in the state store", reason: "\(error)")
                }
            }
        case .tlsALPN01:
            guard let alpn else { throw ACMEError.badRequest("the listener does not answer TLS-ALPN-01") }
            let made = try ACMESelfSigned.make(names: [name], validitySeconds: 86_400, keyAuthorization: keyAuthorization)
            do {
                try alpn.publish(name: name, certificatePEM: made.certificatePEM, keyPEM: made.keyPEM)
            } catch {
                throw ACMEError.crypto(operation: "installing the TLS-ALPN-01 certificate for \(name)", reason: "\(error)")
            }
        }
    }

    func withdraw(name: String, token: String) {
        responder?.withdraw(token: token)
        if challenge == .http01 { try? shared?.overwrite("http-01/\(token)", []) }
        alpn?.withdraw(name: name)
    }
}

private func jsonString(_ text: String) -> String { "\"\(jsonEscaped(text))\"" }

private func prometheusEscaped(_ text: String) -> String {
    text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n")
}

private func iso8601(_ seconds: Int64) -> String {
    ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: TimeInterval(seconds)))
}
