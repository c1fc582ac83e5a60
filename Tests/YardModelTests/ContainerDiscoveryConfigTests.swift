import Foundation
import Testing
@testable import YardModel

private let header = "listeners:\n  - name: web\n    address: 127.0.0.1:8080\n"

private func providers(_ discovery: String) throws(ConfigError) -> [ProviderConfig] {
    try ConfigLoader.loadConfig(text: header + discovery, path: "/etc/yard/switchyard.yml").discovery.providers
}

// MARK: - Valid

@Suite struct DockerSwarmAndConsulProviderEntries {
    @Test func dockerSwarmAndConsulEntriesKeepTheirSettings() throws {
        let list = try providers("""
            discovery:
              providers:
                - {type: docker, socket: /run/podman/podman.sock, network: backend, host_address: 127.0.0.2, resync: 10s}
                - {type: swarm, socket: unix:///var/run/docker.sock, network: app_net, refresh: 250ms}
                - type: consul
                  address: 127.0.0.1:8500
                  services: [web, api]
                  passing_only: false
                  datacenter: dc2
                  token_env: CONSUL_HTTP_TOKEN
                  wait: 30s
                  min_interval: 500ms

            """)
        #expect(list.map(\.name) == ["docker", "swarm", "consul"])
        #expect(list[0].source == .docker(DockerSourceConfig(
            endpoint: "unix:///run/podman/podman.sock", network: "backend", hostAddress: "127.0.0.2", resyncIntervalMs: 10_000)))
        #expect(list[1].source == .swarm(SwarmSourceConfig(endpoint: "unix:///var/run/docker.sock", network: "app_net", refreshIntervalMs: 250)))
        #expect(list[2].source == .consul(ConsulSourceConfig(
            address: "http://127.0.0.1:8500", services: ["web", "api"], passingOnly: false, datacenter: "dc2",
            access: StoreAccessConfig(tokenEnvironment: "CONSUL_HTTP_TOKEN"), waitMs: 30_000, minimumIntervalMs: 500)))
    }

    @Test func defaultsAreTheLocalSocketTheLocalAgentAllServicesAndPassingOnly() throws {
        let list = try providers("discovery:\n  providers:\n    - {type: docker}\n    - {type: swarm}\n    - {type: consul, services: all}\n")
        #expect(list[0].source == .docker(DockerSourceConfig()))
        #expect(list[1].source == .swarm(SwarmSourceConfig()))
        #expect(list[2].source == .consul(ConsulSourceConfig()))
        guard case .consul(let consul) = list[2].source else { return }
        #expect(consul.services == nil && consul.passingOnly && consul.address == "http://127.0.0.1:8500")
    }

    @Test func aSwarmServiceNameWorksAsTheConsulHost() throws {
        let list = try providers("discovery:\n  providers:\n    - {type: consul, address: 'http://consul:8500'}\n")
        guard case .consul(let consul) = list[0].source else { Issue.record("not consul"); return }
        #expect(consul.address == "http://consul:8500")
    }
}

// MARK: - Invalid

private let badEntries: [BadConfig] = [
    BadConfig(name: "docker socket that is not a path or URL",
              text: header + "discovery:\n  providers:\n    - {type: docker, socket: docker.sock}\n", line: 6,
              key: "discovery.providers[0].socket", says: "is not an engine address"),
    BadConfig(name: "docker over TLS",
              text: header + "discovery:\n  providers:\n    - {type: docker, socket: 'https://10.0.0.1:2376'}\n", line: 6,
              key: "discovery.providers[0].socket", says: "TLS to the engine is not supported yet"),
    BadConfig(name: "docker misspelt key",
              text: header + "discovery:\n  providers:\n    - {type: docker, netwrk: x}\n", line: 6,
              key: "discovery.providers[0].netwrk", says: "did you mean 'network'?"),
    BadConfig(name: "swarm refresh that is not a duration",
              text: header + "discovery:\n  providers:\n    - {type: swarm, refresh: often}\n", line: 6,
              key: "discovery.providers[0].refresh", says: "expected a duration"),
    BadConfig(name: "consul address without a port",
              text: header + "discovery:\n  providers:\n    - {type: consul, address: 'http://consul'}\n", line: 6,
              key: "discovery.providers[0].address", says: "is not a Consul address"),
    BadConfig(name: "consul services neither all nor a list",
              text: header + "discovery:\n  providers:\n    - {type: consul, services: some}\n", line: 6,
              key: "discovery.providers[0].services", says: "expected 'all' or a list"),
    BadConfig(name: "consul wait beyond Consul's cap",
              text: header + "discovery:\n  providers:\n    - {type: consul, wait: 20m}\n", line: 6,
              key: "discovery.providers[0].wait", says: "from 1s to 10m"),
    BadConfig(name: "consul token and token_env together",
              text: header + "discovery:\n  providers:\n    - {type: consul, token: abc, token_env: T}\n", line: 6,
              key: "discovery.providers[0].token_env", says: "give one of token, token_file and token_env"),
    BadConfig(name: "consul passing_only not a boolean",
              text: header + "discovery:\n  providers:\n    - {type: consul, passing_only: maybe}\n", line: 6,
              key: "discovery.providers[0].passing_only", says: "expected true or false"),
]

@Suite struct DockerSwarmAndConsulEntriesNameFileLineAndKey {
    @Test(arguments: badEntries)
    func aBadEntryIsRejectedWithFileLineKeyAndAdvice(_ bad: BadConfig) {
        guard let error = configError({ () throws(ConfigError) in try ConfigLoader.loadConfig(text: bad.text, path: "conf/bad.yml") }) else { return }
        #expect(error.line == bad.line, "\(error)")
        #expect(error.key == bad.key, "\(error)")
        #expect(error.message.contains(bad.says), "\(error)")
    }
}

// MARK: - Shipped examples

@Suite struct ContainerDiscoveryExamplesLoad {
    @Test(arguments: ["examples/docker.yml", "examples/swarm.yml", "examples/consul.yml"])
    func shippedExampleLoads(_ name: String) throws {
        let config = try ConfigLoader.loadConfig(path: shippedConfPath(name))
        #expect(config.discovery.providers.count == 1)
    }

    @Test func theSwarmStackDeploysSwitchyardGloballyWithHostPortsInFrontOfBlueAndGreen() throws {
        let text = try String(contentsOfFile: shippedConfPath("examples/swarm-stack.yml"), encoding: .utf8)
        #expect(text.contains("mode: global"))
        #expect(text.contains("mode: host"))
        #expect(text.contains("switchyard.track: blue") && text.contains("switchyard.track: green"))
        #expect(text.contains("file: ./swarm.yml"))
    }
}
