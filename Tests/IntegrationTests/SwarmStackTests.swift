import Foundation
import Testing

// conf/examples/swarm-stack.yml and the swarm.yml it deploys (docs/deploy-swarm.md): no
// Swarm runs here, so the test checks what `docker stack deploy` would be given — that the
// stack file parses, that the Switchyard config inside it passes `switchyard check`, and
// that the two agree with each other (secret and token file, etcd services and endpoints,
// networks, ports).

extension Integration {
    @Suite(.serialized) struct SwarmStackTests {
        static let examples = SwitchyardBinary.repositoryRoot + "/conf/examples"

        /// The stack: a global Switchyard with host-mode ports, a 3-member etcd as its state
        /// store, the admin API on an internal attachable network with a token from a secret.
        @Test(.timeLimit(.minutes(1)))
        func swarmStackParsesAndItsSwitchyardConfigPassesCheck() throws {
            let dir = try ScratchDir("swarm-stack")
            let stack = try yamlDocument(Self.examples + "/swarm-stack.yml", dir: dir)
            let services = try #require(stack["services"] as? [String: Any], "no services")
            let networks = try #require(stack["networks"] as? [String: Any], "no networks")
            let switchyard = try #require(services["switchyard"] as? [String: Any], "no switchyard service")
            let deploy = switchyard["deploy"] as? [String: Any]
            #expect(deploy?["mode"] as? String == "global")
            let ports = switchyard["ports"] as? [[String: Any]] ?? []
            #expect(!ports.isEmpty && ports.allSatisfy { $0["mode"] as? String == "host" }, "ports: \(ports)")
            #expect((switchyard["hostname"] as? String)?.contains("{{.Node.Hostname}}") == true)

            // The config the stack mounts is the file it names, at the path the command reads.
            let command = switchyard["command"] as? [String] ?? []
            let configPath = command.firstIndex(of: "--config").flatMap { command.indices.contains($0 + 1) ? command[$0 + 1] : nil }
            let mounted = (switchyard["configs"] as? [[String: Any]])?.first
            #expect(mounted?["target"] as? String == configPath, "command \(command) vs config \(String(describing: mounted))")
            let configSource = try #require(mounted?["source"] as? String)
            let configFile = try #require(((stack["configs"] as? [String: Any])?[configSource] as? [String: Any])?["file"] as? String)
            let configPathOnDisk = (Self.examples as NSString).appendingPathComponent(configFile)
            let check = try runCommand(SwitchyardBinary.path, ["check", "--config", configPathOnDisk], dir: dir, label: "check")
            #expect(check.status == 0, "switchyard check \(configFile): \(check.stdout)\(check.stderr)")
            let config = try yamlDocument(configPathOnDisk, dir: dir)

            // Admin: a token file that is the stack's secret, on an internal attachable network.
            let admin = config["admin"] as? [String: Any]
            let secret = (switchyard["secrets"] as? [[String: Any]])?.first
            let secretTarget = secret?["target"] as? String ?? secret?["source"] as? String ?? "?"
            #expect(admin?["token_file"] as? String == "/run/secrets/" + secretTarget)
            #expect(((stack["secrets"] as? [String: Any])?[secret?["source"] as? String ?? ""]) != nil, "secret \(String(describing: secret)) not declared")
            let attached = switchyard["networks"] as? [String] ?? []
            let adminNetworks = attached.compactMap { networks[$0] as? [String: Any] }.filter { $0["attachable"] as? Bool == true && $0["internal"] as? Bool == true }
            #expect(adminNetworks.map { $0["name"] as? String } == ["switchyard_admin"], "the admin network docs/deploy-swarm.md joins")

            // The state store: etcd, every endpoint a one-member service of the stack on a
            // network Switchyard shares, the three forming one cluster.
            let store = try #require(config["state_store"] as? [String: Any])
            #expect(store["type"] as? String == "etcd")
            let endpoints = store["endpoints"] as? [String] ?? []
            #expect(endpoints.count == 3)
            let members = endpoints.compactMap { URL(string: $0)?.host }
            for member in members {
                let service = services[member] as? [String: Any]
                #expect(service != nil, "\(member) is not a service of the stack")
                #expect((service?["deploy"] as? [String: Any])?["replicas"] as? Int == 1)
                let memberNetworks = Set(service?["networks"] as? [String] ?? [])
                #expect(!memberNetworks.isDisjoint(with: attached), "\(member) shares no network with switchyard")
                let environment = service?["environment"] as? [String: Any]
                #expect(environment?["ETCD_NAME"] as? String == member)
                let cluster = environment?["ETCD_INITIAL_CLUSTER"] as? String ?? ""
                #expect(members.allSatisfy { cluster.contains("\($0)=http://\($0):2380") }, "\(member)'s initial cluster: \(cluster)")
            }

            // Discovery: the swarm provider's network is one the stack attaches Switchyard to,
            // and the listener's port is the one the stack publishes.
            let providers = (config["discovery"] as? [String: Any])?["providers"] as? [[String: Any]] ?? []
            let swarm = providers.first { $0["type"] as? String == "swarm" }
            let networkNames = attached.map { (networks[$0] as? [String: Any])?["name"] as? String ?? $0 }
            #expect(networkNames.contains(swarm?["network"] as? String ?? "?"), "swarm provider network vs \(networkNames)")
            let listener = (config["listeners"] as? [[String: Any]])?.first?["address"] as? String ?? ""
            #expect(ports.contains { listener.hasSuffix(":\($0["target"] as? Int ?? -1)") }, "listener \(listener) vs ports \(ports)")
        }

        /// The YAML at `path` as JSON objects, parsed by PyYAML (merge keys included).
        func yamlDocument(_ path: String, dir: ScratchDir) throws -> [String: Any] {
            let script = "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))"
            let parsed = try runCommand("/usr/bin/python3", ["-c", script, path], dir: dir, label: "yaml-\((path as NSString).lastPathComponent)")
            try #require(parsed.status == 0, "\(path) does not parse as YAML: \(parsed.stderr)")
            return try #require(JSONSerialization.jsonObject(with: Data(parsed.stdout.utf8)) as? [String: Any], "\(path) is not a mapping")
        }
    }
}
