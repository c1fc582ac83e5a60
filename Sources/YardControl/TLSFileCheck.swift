// `switchyard check`'s look at every TLS file a config names beyond its listeners: the CA
// files of upstream TLS, and the CA files, client certificates and token files of the
// etcd and Consul stores and providers. Each is loaded the way `run` loads it, so a file
// that would fail at startup fails here, named with its owner and OpenSSL's reason.

import YardACME
import YardControlHTTP
import YardDiscovery
import YardModel
import YardTLS

/// What `check` found: a line per owner that loaded, and every failure.
public struct TLSFileReport: Sendable {
    public var lines: [String] = []
    public var failures: [String] = []
}

/// Loads the TLS files of the state store, the discovery providers and the routed
/// services' upstream TLS (listeners are `checkTLSListeners`'s).
public func checkTLSFiles(_ config: SwitchyardConfig, services: [Service]) -> TLSFileReport {
    var report = TLSFileReport()
    func store(_ owner: String, _ access: StoreAccessConfig, consul: Bool) {
        do throws(ControlHTTPError) {
            if access.hasTLSFiles {
                _ = try access.loadTLS()
                report.lines.append("  tls \(owner): " + access.tlsFiles.map { "\($0.option) \($0.path)" }.joined(separator: ", ") + ": loaded")
            }
            if consul, access.tokenFile != nil { _ = try access.consulToken() }
        } catch {
            report.failures.append("\(owner): \(error.description)")
        }
    }
    switch config.stateStore.kind {
    case .etcd: store("state_store", config.stateStore.access, consul: false)
    case .consul: store("state_store", config.stateStore.access, consul: true)
    case .file: break
    }
    for provider in config.discovery.providers {
        switch provider.source {
        case .etcd(let etcd): store("provider \(provider.name)", etcd.access, consul: false)
        case .consul(let consul): store("provider \(provider.name)", consul.access, consul: true)
        default: break
        }
    }
    for listener in config.listeners {
        guard let acme = listener.tls?.acme else { continue }
        report.check(acme, listener: listener.name)
    }
    var seen: Set<String> = []
    for service in services {
        guard let tls = service.upstream.tls, tls.verify, let caFile = tls.caFile, seen.insert(caFile).inserted else { continue }
        do {
            _ = try TLSClientContext(caFile: caFile)
            report.lines.append("  tls upstream \(service.name): ca_file \(caFile): loaded")
        } catch {
            report.failures.append("upstream TLS of service \(service.name): ca_file \(caFile): \(error.description)")
        }
    }
    return report
}

extension TLSFileReport {
    /// An ACME listener's files: the directory's CA file, the EAB MAC key, the store key.
    mutating func check(_ acme: ListenerACMEConfig, listener: String) {
        let owner = "listener \(listener) acme"
        if let caFile = acme.caFile {
            do {
                _ = try TLSClientContext(caFile: caFile)
                lines.append("  tls \(owner): ca_file \(caFile): loaded")
            } catch {
                failures.append("\(owner): ca_file \(caFile): \(error.description)")
            }
        }
        func read(_ option: String, _ file: String, _ parse: (String) throws -> Void) {
            do {
                guard let text = try ACMEFiles.readFile(file) else { throw ACMEFileError(message: "the file does not exist") }
                try parse(text)
                lines.append("  tls \(owner): \(option) \(file): loaded")
            } catch {
                failures.append("\(owner): \(option) \(file): \(error)")
            }
        }
        if let keyID = acme.eabKeyID, let file = acme.eabMACKeyFile {
            read("eab.hmac_key_file", file) { _ = try ACMEExternalAccountBinding(keyID: keyID, macKeyText: $0) }
        }
        if let file = acme.storeKeyFile {
            read("store_key_file", file) { _ = try ACMESealKey(text: $0) }
        }
    }
}
