// What discovery sources send: DNS answers, Engine/Consul/etcd JSON, labels.

@testable import YardDiscovery
import YardModel

enum DiscoveryTargets {
    static func dns(_ bytes: UnsafeRawBufferPointer) {
        _ = try? DNSMessage.decode(Array(bytes))
    }

    /// `GET /containers/json` through the mapping, and the same bytes as one `/events` line.
    static func docker(_ bytes: UnsafeRawBufferPointer) {
        let body = Array(bytes)
        if case .success(let containers) = JSONAnswer.decode([DockerContainer].self, from: body, what: "containers") {
            _ = DockerCatalog.catalog(containers, mapping: DockerMapping(), leaving: [])
            _ = DockerCatalog.catalog(containers, mapping: DockerMapping(network: "bridge", hostAddress: "::1"))
        }
        if case .success(let event) = JSONAnswer.decode(DockerEvent.self, from: body, what: "event") {
            _ = (event.verb, event.containerID)
        }
    }

    /// A JSON object `{"services": [...], "tasks": [...], "nodes": [...]}` (each field a
    /// Swarm API answer) through the mapping.
    static func swarm(_ bytes: UnsafeRawBufferPointer) {
        struct Answers: Decodable {
            var services: [SwarmService]?
            var tasks: [SwarmTask]?
            var nodes: [SwarmNode]?
        }
        guard case .success(let answers) = JSONAnswer.decode(Answers.self, from: Array(bytes), what: "swarm") else { return }
        _ = SwarmCatalog.catalog(services: answers.services ?? [], tasks: answers.tasks ?? [], nodes: answers.nodes ?? [], network: nil)
        _ = SwarmCatalog.catalog(services: answers.services ?? [], tasks: answers.tasks ?? [], nodes: answers.nodes ?? [], network: "web")
    }

    /// `GET /v1/health/service/NAME` through the mapping, and the catalog service list.
    static func consul(_ bytes: UnsafeRawBufferPointer) {
        let body = Array(bytes)
        if case .success(let entries) = JSONAnswer.decode([ConsulHealthEntry].self, from: body, what: "health") {
            let (items, _) = ConsulCatalog.instances(entries, service: "web")
            _ = LabeledCatalog.assemble(items)
        }
        _ = JSONAnswer.decode([String: [String]].self, from: body, what: "services")
    }

    /// Input: `key NUL value NUL key NUL value ...`, keys under `/switchyard/`.
    static func etcd(_ bytes: UnsafeRawBufferPointer) {
        let parts = bytes.split(separator: 0, omittingEmptySubsequences: false)
        var values: [String: [UInt8]] = [:]
        var i = 0
        while i + 1 < parts.count {
            values[String(decoding: parts[i], as: UTF8.self)] = Array(parts[i + 1])
            i += 2
        }
        var catalog = EtcdCatalog(prefix: "/switchyard/")
        _ = catalog.build(values)
        values.removeValue(forKey: values.keys.first ?? "")
        _ = catalog.build(values)
    }

    /// Input: `key=value` lines (a container's labels).
    static func labels(_ bytes: UnsafeRawBufferPointer) {
        var labels: [String: String] = [:]
        for line in bytes.split(separator: UInt8(ascii: "\n")) {
            let text = String(decoding: line, as: UTF8.self)
            guard let equals = text.firstIndex(of: "=") else { continue }
            labels[String(text[..<equals])] = String(text[text.index(after: equals)...])
        }
        for (address, port) in [("10.0.0.5", UInt16(8080)), (nil, nil)] as [(String?, UInt16?)] {
            if case .success(let item?) = SwitchyardLabels.read(labels: labels, owner: "fuzz", address: address, defaultPort: port, id: "c1") {
                _ = LabeledCatalog.assemble([item])
            }
        }
    }
}
