import Foundation
import Testing

// A proxy with an admin listener and a state store, and the CLI that drives it: what the
// traffic-shifting tests (flips, canaries, gates, replicas, tokens) share.

/// `switchyard run` with its admin API on a free loopback port.
final class TrafficProxy {
    let dir: ScratchDir
    let child: ChildProcess
    let port: UInt16
    let adminPort: UInt16
    let label: String

    var url: String { "http://127.0.0.1:\(port)" }
    var adminURL: String { "http://127.0.0.1:\(adminPort)" }

    /// - Parameters:
    ///   - services: the services file's text (written as `services.yml` in `dir` unless
    ///     `servicesFile` names another one).
    ///   - store: the `state_store:` section body (indented two spaces), nil for the
    ///     default file store in `dir`.
    convenience init(dir: ScratchDir, services: String, label: String = "proxy", store: String? = nil,
                     adminExtra: String = "", workers: Int = 2, servicesFile: String = "services.yml") throws {
        try dir.write(servicesFile, services)
        var spec = ProxySpec(workers: workers)
        spec.extraYAML = "admin:\n  address: 127.0.0.1:0\n\(adminExtra)"
        if let store { spec.extraYAML += "state_store:\n\(store)" }
        let config = spec.yaml.replacingOccurrences(of: "file: services.yml", with: "file: \(servicesFile)")
        try self.init(dir: dir, configText: config, label: label)
    }

    /// With a whole config of the test's own (it must enable the admin listener).
    init(dir: ScratchDir, configText: String, label: String = "proxy") throws {
        self.dir = dir
        self.label = label
        try dir.write("\(label).yml", configText)
        child = try ChildProcess(SwitchyardBinary.path, ["run", "--config", dir.file("\(label).yml")], dir: dir, label: label)
        do {
            port = try child.waitForListeningPort()
            adminPort = try child.waitForAdminPort()
        } catch {
            child.stop()
            throw error
        }
    }

    func stop() { child.stop() }

    /// Runs a CLI command against this proxy's admin API.
    @discardableResult
    func cli(_ arguments: [String], timeout: Duration = .seconds(60)) throws -> CommandResult {
        try runCommand(SwitchyardBinary.path, arguments + ["--admin", adminURL], dir: dir, label: "cli-\(label)", timeout: timeout)
    }

    /// The backend that answers one request on a fresh connection.
    func backend(path: String = "/") throws -> String {
        let response = try rawExchange(port: port, "GET \(path) HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n")
        return response.header("X-Backend") ?? "status \(response.status)"
    }

    /// GET on the admin API, parsed as JSON.
    func adminJSON(_ path: String) throws -> [String: Any] {
        let response = try rawExchange(port: adminPort, "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(adminPort)\r\nConnection: close\r\n\r\n")
        guard let json = try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any] else {
            throw HarnessError("admin \(path) answered \(response.status): \(String(decoding: response.body, as: UTF8.self).prefix(300))")
        }
        return json
    }

    /// A POST on the admin API with an optional bearer token: status and body.
    func adminPost(_ path: String, _ body: String, token: String? = nil) throws -> (status: Int, body: String) {
        var head = "POST \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(adminPort)\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n"
        if let token { head += "Authorization: Bearer \(token)\r\n" }
        let response = try rawExchange(port: adminPort, head + "\r\n" + body)
        return (response.status, String(decoding: response.body, as: UTF8.self))
    }
}

/// A services file with blue and green instances for `shop`.
func blueGreenServices(blue: [UInt16], green: [UInt16], active: String = "blue", canary: String? = nil) -> String {
    var text = "services:\n  shop:\n    active: \(active)\n"
    if let canary { text += "    canary:\n\(canary)" }
    text += "    health: {type: none}\n    instances:\n"
    for port in blue { text += "      - {address: 127.0.0.1, port: \(port), track: blue}\n" }
    for port in green { text += "      - {address: 127.0.0.1, port: \(port), track: green}\n" }
    return text
}

/// Sends `count` requests on one keep-alive connection; the backend names, in order.
func sendSequential(_ count: Int, port: UInt16, path: String = "/", headers: (Int) -> String = { _ in "" }) throws -> [String] {
    let connection = try RawConnection(port: port)
    var names: [String] = []
    names.reserveCapacity(count)
    for i in 0..<count {
        try connection.send("GET \(path) HTTP/1.1\r\nHost: shop\r\n\(headers(i))\r\n")
        let response = try connection.readResponse()
        names.append(response.header("x-backend") ?? "status \(response.status)")
    }
    return names
}
