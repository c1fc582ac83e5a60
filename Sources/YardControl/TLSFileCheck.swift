// `switchyard check`'s look at every TLS file a config names beyond its listeners: the CA
// files of upstream TLS, and the CA files, client certificates and token files of the
// etcd and Consul stores and providers. Each is loaded the way `run` loads it, so a file
// that would fail at startup fails here, named with its owner and OpenSSL's reason.

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
