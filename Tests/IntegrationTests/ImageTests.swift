#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
import YardTestSupport

// The container image (Dockerfile, scripts/image, scripts/image-rootfs), built with podman on
// this machine without any registry, run on the host network, and used as a proxy.

extension Integration {
    /// docs/deploy.md: `scripts/image` builds a runnable image here.
    @Suite(.serialized, .enabled(if: ImageBuild.missingTools.isEmpty, ImageBuild.skipMessage))
    struct ImageTests {
        /// The image (the debug binary under test, with its Swift runtime as ldd lists it)
        /// runs as a non-root user, binds a port below 1024 by its file capability, proxies
        /// to a backend on the host, answers its HEALTHCHECK, and drains cleanly on stop.
        @Test(.timeLimit(.minutes(5)))
        func imageBuiltWithoutARegistryProxiesToABackendAsANonRootUser() throws {
            let dir = try ScratchDir("image")
            let engine = try PodmanEngine()
            let (podman, podmanEnvironment) = engine.commandLine
            let tag = "localhost/switchyard-test:\(getpid())"
            let build = try ProcessRunner(SwitchyardBinary.repositoryRoot + "/scripts/image",
                                          arguments: ["--binary", SwitchyardBinary.path, "--tag", tag],
                                          environment: podmanEnvironment.merging(["PODMAN": podman.joined(separator: " ")]) { $1 })
            let built = try build.waitForExit(deadline: .seconds(240))
            try #require(built == .exited(0), "scripts/image \(built)\n\(build.outputSummary)")

            #expect(try engine.podman(["image", "inspect", "--format", "{{.User}}", tag]) == "10001:10001")
            let healthcheck = try engine.podman(["image", "inspect", "--format", "{{json .HealthCheck}}", tag])
            #expect(healthcheck.contains("/healthz"), "image HEALTHCHECK: \(healthcheck)")

            let backend = try Backend.demo("blue", dir: dir)
            defer { backend.stop() }
            let web = try freePort()
            let admin = try freePort()
            let privileged = ImageBuild.freePrivilegedPort()
            var listeners = "  - {name: web, address: '127.0.0.1:\(web)'}\n"
            if let privileged { listeners += "  - {name: low, address: '127.0.0.1:\(privileged)'}\n" }
            try dir.write("services.yml", servicesYAML([ServiceSpec(name: "shop", instances: [InstanceSpec(port: backend.port)])]))
            try dir.write("switchyard.yml", """
                listeners:
                \(listeners)routes:
                  - {path: /, service: shop}
                discovery: {provider: file, file: services.yml}
                admin: {address: '127.0.0.1:\(admin)'}
                state_store: {type: file, path: /var/lib/switchyard/state.json}
                workers: 1

                """)
            // The container's user must read the mounted config.
            chmod(dir.path, 0o755)

            let name = "switchyard-image-test-\(getpid())"
            defer { _ = try? engine.podman(["rm", "-f", "-t", "0", name]) }
            try engine.podman(["run", "-d", "--name", name, "--network", "host",
                               "-e", "SWITCHYARD_ADMIN=http://127.0.0.1:\(admin)",
                               "-v", "\(dir.path):/etc/switchyard:ro", tag], deadline: .seconds(60))

            var answer = ""
            try waitFor("the containerised proxy to answer through to the backend", timeout: .seconds(30), interval: .milliseconds(200)) {
                answer = (try? curl("http://127.0.0.1:\(web)/", ["--max-time", "2"], dir: dir).body) ?? ""
                return answer.contains("blue")
            }
            if let privileged {
                let low = try curl("http://127.0.0.1:\(privileged)/", dir: dir)
                #expect(low.body.contains("blue"), "port \(privileged) (below 1024) as a non-root user: \(low.stderr)")
            }
            #expect(try engine.podman(["exec", name, "/usr/local/bin/busybox", "id", "-u"]) == "10001")
            let version = try engine.podman(["exec", name, "/usr/local/bin/switchyard", "--version"])
            #expect(version.contains("openssl: OpenSSL 3") && version.contains("nghttp2: 1."), "\(version)")
            // The HEALTHCHECK command itself, as the engine runs it.
            let health = try engine.podman(["healthcheck", "run", name])
            #expect(health.isEmpty || health.contains("healthy"), "healthcheck: \(health)")

            try engine.podman(["stop", "-t", "20", name], deadline: .seconds(40))
            #expect(try engine.podman(["inspect", "--format", "{{.State.ExitCode}}", name]) == "0", "the proxy did not drain and exit 0 on SIGTERM")
            _ = try? engine.podman(["rmi", "-f", tag])
        }
    }

    enum ImageBuild {
        /// What `scripts/image` needs that this machine lacks.
        static let missingTools: [String] = ["podman", "runc", "busybox", "setcap", "ldd"].filter { tool in
            !["/usr/bin/", "/usr/sbin/", "/bin/", "/sbin/"].contains { FileManager.default.isExecutableFile(atPath: $0 + tool) }
        }
        static let skipMessage = Comment(rawValue:
            "scripts/image needs \(missingTools.joined(separator: ", ")) (Debian: podman runc busybox-static libcap2-bin): run scripts/install-deps")

        /// A port in 1000..<1024 nothing listens on (probed by binding it: this test runs as
        /// root); nil when not root, then the below-1024 check is left out.
        static func freePrivilegedPort() -> UInt16? {
            guard getuid() == 0 else { return nil }
            for port in UInt16(1000)..<1024 {
                let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
                guard fd >= 0 else { return nil }
                defer { close(fd) }
                var address = sockaddr_in()
                address.sin_family = sa_family_t(AF_INET)
                address.sin_port = port.bigEndian
                address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
                let bound = withUnsafePointer(to: &address) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
                }
                if bound == 0 { return port }
            }
            return nil
        }
    }
}
