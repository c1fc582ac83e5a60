#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// Let's Encrypt's ACME test CA (Debian `pebble`) on loopback, with `pebble-challtestsrv`
/// as its DNS server answering every name with 127.0.0.1, so validation of `test.example`
/// (HTTP-01 on `httpPort`, TLS-ALPN-01 on `tlsPort`) reaches the test's own listeners.
///
/// Pebble cannot bind port 0 and report it, so its ports come from `freePort()`. Its HTTPS
/// (the ACME API and the management API) uses a certificate from its own `TestCertificates`
/// CA: trust `caFile`. Its issuing root is made at start and is fetched with
/// `rootCertificatePEM()`. Both processes are stopped by PID on `deinit`.
/// `PEBBLE_VA_NOSLEEP=1` (no random validation delay) and `PEBBLE_WFE_NONCEREJECT=0` (no
/// random nonce refusal) unless `environment` says otherwise.
/// Threading: immutable after init; methods may be called from any thread.
public final class PebbleServer: Sendable {
    public static let binary = "/usr/bin/pebble"
    public static let challengeServerBinary = "/usr/bin/pebble-challtestsrv"

    public let port: UInt16
    public let managementPort: UInt16
    public let dnsPort: UInt16
    public let httpPort: UInt16
    public let tlsPort: UInt16
    /// pebble-challtestsrv's management API (`addARecord`).
    public let dnsManagementPort: UInt16
    /// Trust this for pebble's own HTTPS (`--ca-file`, `curl --cacert`).
    public let caFile: String
    public let certificates: TestCertificates
    public let directory: TempDir
    private let pebble: ProcessRunner
    private let dns: ProcessRunner

    /// `https://127.0.0.1:PORT/dir`.
    public var directoryURL: String { "https://127.0.0.1:\(port)/dir" }

    /// `config`: more members of pebble's config object, as JSON values
    /// (`["certificateValidityPeriod": "30"]` for 30-second certificates).
    /// `deadline`: generous, since a start on a loaded two-core machine once took over 20 s.
    public init(httpPort: UInt16, tlsPort: UInt16, environment: [String: String] = [:], config extra: [String: String] = [:],
                deadline: Deadline = .seconds(45)) throws {
        for binary in [Self.binary, Self.challengeServerBinary] where !FileManager.default.isExecutableFile(atPath: binary) {
            throw TestSupportError("\(binary) is not installed (scripts/install-deps installs Debian's pebble)")
        }
        self.httpPort = httpPort
        self.tlsPort = tlsPort
        directory = try TempDir(prefix: "switchyard-pebble")
        certificates = try TestCertificates()
        caFile = certificates.caFile
        let serving = try certificates.issue(file: "pebble", names: ["localhost", "127.0.0.1"])
        port = try freePort()
        managementPort = try freePort()
        dnsPort = try freePort()
        let dnsManagementPort = try freePort()
        self.dnsManagementPort = dnsManagementPort

        dns = try ProcessRunner(Self.challengeServerBinary, arguments: [
            "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
            "-dns01", "127.0.0.1:\(dnsPort)", "-http01", "", "-https01", "", "-tlsalpn01", "",
            "-management", "127.0.0.1:\(dnsManagementPort)",
        ])
        let config = """
            {"pebble": {
              "listenAddress": "127.0.0.1:\(port)",
              "managementListenAddress": "127.0.0.1:\(managementPort)",
              "certificate": "\(serving.certificate)",
              "privateKey": "\(serving.key)",
              "httpPort": \(httpPort),
              "tlsPort": \(tlsPort),
              "ocspResponderURL": "",
              "externalAccountBindingRequired": false\(extra.sorted { $0.key < $1.key }.map { ",\n  \"\($0.key)\": \($0.value)" }.joined())
            }}
            """
        let configPath = try directory.write("pebble-config.json", config)
        var env = ["PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"]
        for (key, value) in environment { env[key] = value }
        pebble = try ProcessRunner(Self.binary, arguments: ["-config", configPath, "-dnsserver", "127.0.0.1:\(dnsPort)"],
                                   environment: env, workingDirectory: directory.path)
        let (pebble, dns, port, managementPort) = (pebble, dns, port, managementPort)
        try waitUntil("pebble on 127.0.0.1:\(port) and its DNS on 127.0.0.1:\(dnsPort)", deadline: deadline, poll: .milliseconds(50)) {
            guard dns.isRunning else { throw TestSupportError("pebble-challtestsrv exited: \(dns.outputSummary)") }
            guard pebble.isRunning else { throw TestSupportError("pebble exited: \(pebble.outputSummary)") }
            return isListening(port: dnsManagementPort) && isListening(port: port) && isListening(port: managementPort)
        }
    }

    deinit {
        pebble.stop()
        dns.stop()
    }

    public var pid: pid_t { pebble.pid }
    /// Pebble's log so far (orders, validations), for assertions and failure messages.
    public var log: String { pebble.stdout + pebble.stderr }
    public var outputSummary: String { pebble.outputSummary + "\n" + dns.outputSummary }

    /// The root that signs pebble's certificates (made at its start), from its management
    /// API: what `openssl verify -CAfile` and `curl --cacert` trust for issued chains.
    public func rootCertificatePEM() throws -> String {
        try fetchManagement("/roots/0")
    }

    /// Makes pebble's DNS answer `host` with `address` from now on (a validation that then
    /// fails to reach this machine's listeners).
    public func addARecord(host: String, address: String) throws {
        try manageDNS("/add-a", "{\"host\":\"\(host)\",\"addresses\":[\"\(address)\"]}")
    }

    /// Removes `host`'s A records: it resolves to 127.0.0.1 (the default) again. (`add-a`
    /// adds to the records a name has; it does not replace them.)
    public func clearARecords(host: String) throws {
        try manageDNS("/clear-a", "{\"host\":\"\(host)\"}")
    }

    private func manageDNS(_ path: String, _ body: String) throws {
        let curl = try ProcessRunner("/usr/bin/curl", arguments: [
            "-sS", "--fail", "--max-time", "10", "-d", body, "http://127.0.0.1:\(dnsManagementPort)\(path)",
        ])
        defer { curl.stop() }
        let status = try curl.waitForExit(deadline: .seconds(15))
        guard status == .exited(0) else { throw TestSupportError("\(path) \(body) on pebble-challtestsrv \(status)\n\(curl.outputSummary)") }
    }

    /// GET `path` on the management API over HTTPS (curl, trusting `caFile`).
    public func fetchManagement(_ path: String) throws -> String {
        let curl = try ProcessRunner("/usr/bin/curl", arguments: [
            "-sS", "--fail", "--max-time", "10", "--cacert", caFile, "https://127.0.0.1:\(managementPort)\(path)",
        ])
        defer { curl.stop() }
        let status = try curl.waitForExit(deadline: .seconds(15))
        guard status == .exited(0) else { throw TestSupportError("curl \(path) on pebble's management API \(status)\n\(curl.outputSummary)") }
        return curl.stdout
    }
}
