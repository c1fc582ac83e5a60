#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing

// `switchyard --version` and the switchyard_build_info metric (docs/deploy.md, "What a
// build is"), checked against git, openssl and pkg-config on this machine.

extension Integration {
    @Suite(.serialized) struct BuildInfoTests {
        /// The version, the commit it was built from, an ISO 8601 build date, and the
        /// OpenSSL and nghttp2 the process loaded, one `key: value` line each; exit 0.
        @Test(.timeLimit(.minutes(1)))
        func versionNamesTheCommitTheBuildDateAndTheLibrariesInUse() throws {
            let dir = try ScratchDir("version")
            let result = try runCommand(SwitchyardBinary.path, ["--version"], dir: dir, label: "version")
            #expect(result.status == 0, "\(result.stderr)")
            let info = try BuildInfoFacts(versionOutput: result.stdout)
            #expect(info.version.split(separator: ".").count == 3, "version \(info.version)")
            #expect(info.commit == "unknown" || info.commit.range(of: "^[0-9a-f]{40}(-dirty)?$", options: .regularExpression) != nil,
                    "commit \(info.commit)")
            // scripts/test passes the checkout's commit to the build (and to this test).
            let given = ProcessInfo.processInfo.environment["SWITCHYARD_COMMIT"].flatMap { $0.isEmpty ? nil : $0 }
            #expect(info.commit == given ?? "unknown", "built with SWITCHYARD_COMMIT=\(given ?? "(unset)")")
            #expect(info.built.range(of: "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z?$", options: .regularExpression) != nil,
                    "build date \(info.built)")
            let openssl = try runCommand("/usr/bin/openssl", ["version"], dir: dir, label: "openssl")
            #expect(openssl.stdout.contains(info.openssl), "switchyard says \(info.openssl); openssl version says \(openssl.stdout)")
            let nghttp2 = try runCommand("/usr/bin/pkg-config", ["--modversion", "libnghttp2"], dir: dir, label: "pkg-config")
            #expect(info.nghttp2 == nghttp2.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "nghttp2 \(info.nghttp2)")
        }

        /// /metrics carries `switchyard_build_info{version,commit,openssl,nghttp2} 1` with the
        /// same values `--version` prints.
        @Test(.timeLimit(.minutes(1)))
        func buildInfoMetricMatchesVersion() throws {
            let dir = try ScratchDir("build-info")
            let info = try BuildInfoFacts(versionOutput: runCommand(SwitchyardBinary.path, ["--version"], dir: dir, label: "version").stdout)
            try dir.write("services.yml", servicesYAML([ServiceSpec(name: "shop", instances: [])]))
            try dir.write("switchyard.yml", ProxySpec(workers: 1).yaml + "admin:\n  address: 127.0.0.1:0\n")
            let (proxy, _, adminPort) = try startProxyWithAdmin(dir: dir)
            defer { proxy.stop() }
            let scrape = try curl("http://127.0.0.1:\(adminPort)/metrics", dir: dir)
            let metrics = try Exposition(parsing: scrape.body)
            #expect(metrics.types["switchyard_build_info"] == "gauge")
            let samples = metrics.samples.filter { $0.name == "switchyard_build_info" }
            #expect(samples.count == 1)
            #expect(samples.first?.value == 1)
            // openssl is the short version ("3.0.17"), the banner's second word.
            let shortOpenSSL = info.openssl.split(separator: " ").dropFirst().first.map(String.init) ?? ""
            #expect(samples.first?.labels == ["version": info.version, "commit": info.commit, "openssl": shortOpenSSL, "nghttp2": info.nghttp2])
        }
    }
}

/// What `switchyard --version` printed, line by line.
struct BuildInfoFacts {
    var version: String
    var commit: String
    var built: String
    var openssl: String
    var nghttp2: String

    init(versionOutput text: String) throws {
        let lines = text.split(separator: "\n").map(String.init)
        guard let first = lines.first, first.hasPrefix("switchyard ") else { throw HarnessError("--version printed \(text)") }
        var fields: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { throw HarnessError("--version line without a key: \(line)") }
            fields[String(line[..<colon])] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        guard let commit = fields["commit"], let built = fields["built"], let openssl = fields["openssl"], let nghttp2 = fields["nghttp2"] else {
            throw HarnessError("--version lacks commit, built, openssl or nghttp2: \(text)")
        }
        (version, self.commit, self.built, self.openssl, self.nghttp2) = (String(first.dropFirst("switchyard ".count)), commit, built, openssl, nghttp2)
    }
}
