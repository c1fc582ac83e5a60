import Dispatch
import Foundation
import YardACME
import YardIO
import YardModel
import YardProxy
import YardTLS

/// The TLS side of the control plane: one certificate reloader per TLS listener, the
/// timers that rotate session-ticket keys and look for renewed certificate files, and the
/// SIGHUP reload. New contexts are published to the workers; connections keep theirs.
///
/// Threading: `init` on `run`'s thread; timers and `reload` run on the control queue.
/// Immutable after `init` apart from the reloaders' own (mutex-guarded) state.
final class TLSListeners: Sendable {
    private let reloaders: [TLSCertificateReloader?]
    private let names: [String]
    /// How often certificate files are stat'ed for changes.
    static let fileCheckMs = 2_000
    private let timers: [DispatchSourceTimerBox]

    /// Loads every TLS listener's certificates. Throws a message naming the config entry
    /// of the certificate that does not load.
    /// `preparingACME`: make each ACME listener's storage folder and default certificate
    /// (`run`); false for `check`, which writes nothing.
    init(_ listeners: [ListenerConfig], preparingACME: Bool = true) throws {
        var reloaders: [TLSCertificateReloader?] = []
        for listener in listeners {
            guard let tls = listener.tls else {
                reloaders.append(nil)
                continue
            }
            if let acme = tls.acme {
                if preparingACME {
                    try ACMEStorage(acme.storage).prepare(defaultNames: acme.names, needsDefault: tls.certificates.isEmpty)
                } else if tls.certificates.isEmpty && !ACMEStorage(acme.storage).hasDefault {
                    reloaders.append(nil)
                    continue
                }
            }
            reloaders.append(try Self.makeReloader(listener.name, tls))
        }
        self.reloaders = reloaders
        self.names = listeners.map(\.name)
        self.timers = []
    }

    private init(reloaders: [TLSCertificateReloader?], names: [String], timers: [DispatchSourceTimerBox]) {
        self.reloaders = reloaders
        self.names = names
        self.timers = timers
    }

    /// The contexts to start the workers with (nil for plain listeners).
    var contexts: [TLSServerContext?] { reloaders.map { $0?.current } }

    /// The TLS-ALPN-01 challenges listener `index` answers (nil when it does not).
    func acmeChallenges(listener index: Int) -> TLSALPNChallenges? {
        index < reloaders.count ? reloaders[index]?.acmeChallenges : nil
    }

    /// Rebuilds listener `index`'s context from its files (ACME stored a certificate) and
    /// publishes it; the running context stays when the files do not load.
    func refresh(listener index: Int, tls: ListenerTLSConfig, server: ProxyServer) throws {
        guard index < reloaders.count, let reloader = reloaders[index] else { return }
        let context = try reloader.reload(Self.configuration(tls))
        server.publishTLS(context, listener: index)
        logger.info("listener '\(names[index])': certificates stored by ACME; new TLS handshakes use \(describe(context))")
    }

    var isEmpty: Bool { reloaders.allSatisfy { $0 == nil } }

    /// Starts the ticket-rotation and file-check timers on `queue`; returns the object
    /// that keeps them alive.
    func startTimers(_ listeners: [ListenerConfig], server: ProxyServer, queue: DispatchQueue) -> TLSListeners {
        var timers: [DispatchSourceTimerBox] = []
        for (index, reloader) in reloaders.enumerated() {
            guard let reloader, let tls = listeners[index].tls else { continue }
            let rotation = DispatchSource.makeTimerSource(queue: queue)
            let period = DispatchTimeInterval.milliseconds(tls.ticketRotationMs)
            rotation.schedule(deadline: .now() + period, repeating: period)
            rotation.setEventHandler { reloader.ticketKeys.rotate() }
            rotation.resume()
            timers.append(DispatchSourceTimerBox(rotation))
        }
        if !isEmpty {
            let check = DispatchSource.makeTimerSource(queue: queue)
            let period = DispatchTimeInterval.milliseconds(Self.fileCheckMs)
            check.schedule(deadline: .now() + period, repeating: period)
            check.setEventHandler { [self] in checkFiles(server) }
            check.resume()
            timers.append(DispatchSourceTimerBox(check))
        }
        return TLSListeners(reloaders: reloaders, names: names, timers: timers)
    }

    /// Publishes a new context for every listener whose certificate files changed.
    private func checkFiles(_ server: ProxyServer) {
        for (index, reloader) in reloaders.enumerated() {
            guard let reloader else { continue }
            do {
                if let context = try reloader.reloadIfChanged() {
                    server.publishTLS(context, listener: index)
                    logger.info("listener '\(names[index])': certificate files changed; new TLS handshakes use \(describe(context))")
                }
            } catch {
                logger.error("listener '\(names[index])': changed certificate files do not load (\(error)); the running certificates stay")
            }
        }
    }

    /// SIGHUP: reloads every TLS listener's certificates (with the new config's `tls`
    /// block when the listener is still the same TLS listener). A listener whose files do
    /// not load keeps its running certificates.
    func reload(_ listeners: [ListenerConfig], server: ProxyServer) {
        for (index, reloader) in reloaders.enumerated() {
            guard let reloader else { continue }
            var configuration: TLSServerConfiguration?
            if index < listeners.count, listeners[index].name == names[index], let tls = listeners[index].tls {
                configuration = Self.configuration(tls)
            }
            do {
                let context = try reloader.reload(configuration)
                server.publishTLS(context, listener: index)
                logger.info("listener '\(names[index])': TLS reloaded; new handshakes use \(describe(context))")
            } catch {
                logger.error("listener '\(names[index])': TLS reload rejected (\(error)); the running certificates stay")
            }
        }
    }

    // MARK: Building

    private static func makeReloader(_ listener: String, _ tls: ListenerTLSConfig) throws -> TLSCertificateReloader {
        let configuration = configuration(tls)
        do {
            let challenges = tls.acme?.challenge == .tlsALPN01 ? TLSALPNChallenges() : nil
            return try TLSCertificateReloader(configuration, ticketKeys: TicketKeyRing(), acmeChallenges: challenges)
        } catch {
            // Name the config entry of the certificate that failed.
            let origin = tls.certificates.first { error.description.contains($0.cert) || error.description.contains($0.key) }?.origin
            throw TLSConfigError(description: "\(origin ?? "listener '\(listener)' tls"): \(error)")
        }
    }

    /// The YardTLS configuration for a listener: ALPN limited to what the data plane
    /// serves (in the configured order), HTTP/1.1 if that leaves nothing. An ACME
    /// listener adds the certificates in its storage after the configured ones, and
    /// without configured ones starts with its self-signed default.
    static func configuration(_ tls: ListenerTLSConfig) -> TLSServerConfiguration {
        var alpn = tls.alpn.filter { ProxyServer.servedApplicationProtocols.contains($0) }
        if alpn.isEmpty { alpn = ["http/1.1"] }
        var certificates = tls.certificates.map {
            TLSCertificateSource(certificatePath: $0.cert, keyPath: $0.key, serverNames: $0.names)
        }
        if let acme = tls.acme {
            let storage = ACMEStorage(acme.storage)
            if certificates.isEmpty { certificates.append(storage.defaultSource) }
            certificates += storage.issuedSources()
        }
        return TLSServerConfiguration(
            certificates: certificates,
            alpn: alpn,
            minimumVersion: TLSVersion(rawValue: tls.minVersion) ?? .tls12,
            ciphers: tls.ciphers ?? TLSServerConfiguration.intermediateCiphers,
            ciphersuites: tls.ciphersuites)
    }

    private func describe(_ context: TLSServerContext) -> String {
        context.certificateNames.map { $0.joined(separator: ",") }.joined(separator: " | ")
    }
}

/// A certificate or key in the config that does not load.
struct TLSConfigError: Error, CustomStringConvertible {
    let description: String
}

/// Keeps a dispatch timer alive. `@unchecked Sendable`: the source is only resumed once
/// and never touched again (DispatchSource is thread-safe for that).
final class DispatchSourceTimerBox: @unchecked Sendable {
    let source: DispatchSourceTimer
    init(_ source: DispatchSourceTimer) { self.source = source }
}

/// Loads every TLS listener's certificates and keys (`switchyard check`): one line per TLS
/// listener naming the server names each certificate answers for. Throws naming the config
/// entry whose files do not load.
public func checkTLSListeners(_ listeners: [ListenerConfig]) throws -> [String] {
    let loaded = try TLSListeners(listeners, preparingACME: false)
    return zip(listeners, loaded.contexts).compactMap { listener, context in
        guard let context else {
            return listener.tls?.acme.map { "  tls \(listener.name): ACME (\($0.directory)); the default certificate is made at start" }
        }
        let names = context.certificateNames.map { $0.isEmpty ? "(no name)" : $0.joined(separator: ",") }
        return "  tls \(listener.name): default \(names[0])" + (names.count > 1 ? "; SNI \(names.dropFirst().joined(separator: " | "))" : "")
            + "; ALPN \(context.configuration.alpn.joined(separator: ","))"
    }
}
