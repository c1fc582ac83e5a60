#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
import YardTestSupport

// conf/systemd/switchyard.service and the readiness protocol the binary speaks to it
// (Sources/YardControl/SystemdNotify.swift), against a notify socket the test binds.

extension Integration {
    /// Running under systemd (docs/deploy.md): `Type=notify` readiness, reload and stop.
    @Suite(.serialized) struct SystemdTests {
        /// READY=1 only once the listeners answer; a SIGHUP reload, applied or rejected, is
        /// RELOADING=1 (with MONOTONIC_USEC) then READY=1; SIGTERM says STOPPING=1 and drains.
        @Test(.timeLimit(.minutes(1)))
        func tellsTheServiceManagerReadyReloadingAndStopping() throws {
            let dir = try ScratchDir("systemd-notify")
            let backend = try Backend.demo("blue", dir: dir)
            defer { backend.stop() }
            try dir.write("services.yml", servicesYAML([ServiceSpec(name: "shop", instances: [InstanceSpec(port: backend.port)])]))
            let config = ProxySpec(workers: 1).yaml
            try dir.write("switchyard.yml", config)
            let notify = try NotifySocket(abstract: true)
            let proxy = try ProcessRunner(SwitchyardBinary.path, arguments: ["run", "--config", dir.file("switchyard.yml")],
                                          environment: ["NOTIFY_SOCKET": notify.address])
            defer { proxy.stop() }

            try notify.waitForMessage("READY=1 after startup") { $0 == "READY=1" }
            // Ready means serving: the port is printed and a request goes through.
            let line = try proxy.waitForLine(matching: "listening 127.0.0.1:", in: .stdout, deadline: .seconds(1))
            let port = try #require(line.split(separator: ":").last.flatMap { UInt16($0) }, "\(line)")
            #expect(try curl("http://127.0.0.1:\(port)/", dir: dir).body.contains("blue"))
            #expect(notify.messages == ["READY=1"], "nothing else is sent at startup")

            // A good reload.
            proxy.terminate(signal: SIGHUP)
            let reloading = try notify.waitForMessage("RELOADING=1 after SIGHUP") { $0.hasPrefix("RELOADING=1") }
            let stamp = reloading.split(separator: "\n").last.flatMap { $0.hasPrefix("MONOTONIC_USEC=") ? UInt64($0.dropFirst(15)) : nil }
            #expect(stamp.map { $0 > 0 } == true, "RELOADING=1 without MONOTONIC_USEC: \(reloading)")
            try notify.waitForMessage("READY=1 after the reload") { $0 == "READY=1" }
            try proxy.waitForLine(matching: "config reloaded", in: .stderr)

            // A rejected reload still ends in READY=1: the running config keeps serving.
            try dir.write("switchyard.yml", "listeners: [{name: web, address: nowhere}]\n")
            proxy.terminate(signal: SIGHUP)
            try notify.waitForMessage("RELOADING=1 after a bad SIGHUP") { $0.hasPrefix("RELOADING=1") }
            try notify.waitForMessage("READY=1 after the rejected reload") { $0 == "READY=1" }
            try proxy.waitForLine(matching: "config reload rejected", in: .stderr)
            #expect(try curl("http://127.0.0.1:\(port)/", dir: dir).body.contains("blue"))

            proxy.terminate(signal: SIGTERM)
            try notify.waitForMessage("STOPPING=1 after SIGTERM") { $0 == "STOPPING=1" }
            #expect(try proxy.waitForExit(deadline: .seconds(15)) == .exited(0))
            #expect(notify.messages.map { $0.split(separator: "\n")[0] }
                == ["READY=1", "RELOADING=1", "READY=1", "RELOADING=1", "READY=1", "STOPPING=1"])
        }

        /// `systemctl reload` (SIGUSR2, a takeover): RELOADING=1, then the old process names
        /// the one that took over as the service's main process (MAINPID=, READY=1), since
        /// under NotifyAccess=main systemd hears only the main process; the new one says
        /// nothing before that, and STOPPING=1 when it is stopped in turn.
        @Test(.timeLimit(.minutes(1)))
        func aTakeoverHandsTheMainPIDToTheNewProcess() throws {
            let dir = try ScratchDir("systemd-takeover")
            let backend = try Backend.demo("blue", dir: dir)
            defer { backend.stop() }
            try dir.write("services.yml", servicesYAML([ServiceSpec(name: "shop", instances: [InstanceSpec(port: backend.port)])]))
            try dir.write("switchyard.yml", ProxySpec(workers: 1).yaml)
            let notify = try NotifySocket(abstract: true)
            let proxy = try ProcessRunner(SwitchyardBinary.path, arguments: ["run", "--config", dir.file("switchyard.yml")],
                                          environment: ["NOTIFY_SOCKET": notify.address])
            defer { proxy.stop() }
            try notify.waitForMessage("READY=1 after startup") { $0 == "READY=1" }
            try proxy.waitForLine(matching: "takeover: offering", in: .stderr)
            let line = try proxy.waitForLine(matching: "listening 127.0.0.1:", in: .stdout)
            let port = try #require(line.split(separator: ":").last.flatMap { UInt16($0) }, "\(line)")

            proxy.terminate(signal: SIGUSR2)
            try notify.waitForMessage("RELOADING=1 after SIGUSR2") { $0.hasPrefix("RELOADING=1") }
            let handover = try notify.waitForMessage("MAINPID= from the old process", deadline: .seconds(20)) { $0.hasPrefix("MAINPID=") }
            let newPID = try #require(handover.split(separator: "\n").first.flatMap { Int32($0.dropFirst("MAINPID=".count)) }, "\(handover)")
            defer { if kill(newPID, 0) == 0 { kill(newPID, SIGKILL) } }
            #expect(handover == "MAINPID=\(newPID)\nREADY=1")
            #expect(newPID != proxy.pid)
            // Not reaped through the runner until the end: reaping its leader kills the
            // process group, which the new process belongs to.
            try waitFor("the old process to exit", timeout: .seconds(15)) { processGone(proxy.pid) }
            #expect(try curl("http://127.0.0.1:\(port)/", dir: dir).body.contains("blue"), "\(proxy.stderr)")

            kill(newPID, SIGTERM)
            try notify.waitForMessage("STOPPING=1 from the new main process") { $0 == "STOPPING=1" }
            #expect(notify.messages.map { $0.split(separator: "\n")[0] } == ["READY=1", "RELOADING=1", "MAINPID=\(newPID)", "STOPPING=1"])
            try waitFor("the new process to exit", timeout: .seconds(15)) { kill(newPID, 0) != 0 }
        }

        /// Without NOTIFY_SOCKET (not under systemd) nothing changes; with one nobody
        /// listens on, the proxy logs it and serves anyway.
        @Test(.timeLimit(.minutes(1)))
        func aNotifySocketNobodyListensOnDoesNotStopTheProxy() throws {
            let dir = try ScratchDir("systemd-gone")
            try dir.write("services.yml", servicesYAML([ServiceSpec(name: "shop", instances: [])]))
            try dir.write("switchyard.yml", ProxySpec(workers: 1).yaml)
            let proxy = try ProcessRunner(SwitchyardBinary.path, arguments: ["run", "--config", dir.file("switchyard.yml")],
                                          environment: ["NOTIFY_SOCKET": dir.file("nobody.sock")])
            defer { proxy.stop() }
            try proxy.waitForLine(matching: "systemd notification", in: .stderr)
            let line = try proxy.waitForLine(matching: "listening 127.0.0.1:", in: .stdout)
            let port = try #require(line.split(separator: ":").last.flatMap { UInt16($0) })
            #expect(try curl("http://127.0.0.1:\(port)/", dir: dir).httpStatus == 503)
            proxy.terminate(signal: SIGTERM)
            #expect(try proxy.waitForExit(deadline: .seconds(15)) == .exited(0))
        }

        /// The shipped unit passes `systemd-analyze verify` (with ExecStart pointed at the
        /// binary under test, since verify checks that the program exists) and its sandbox
        /// rates "OK" or better in `systemd-analyze security`.
        @Test(.timeLimit(.minutes(1)))
        func shippedUnitPassesSystemdAnalyzeVerify() throws {
            let dir = try ScratchDir("systemd-unit")
            let shipped = try String(contentsOfFile: SwitchyardBinary.repositoryRoot + "/conf/systemd/switchyard.service", encoding: .utf8)
            for directive in ["Type=notify", "ExecReload=/bin/kill -USR2 $MAINPID", "RuntimeDirectory=switchyard", "DynamicUser=yes", "ProtectSystem=strict",
                              "NoNewPrivileges=yes", "AmbientCapabilities=CAP_NET_BIND_SERVICE", "LimitNOFILE=", "StateDirectory=switchyard"] {
                #expect(shipped.contains(directive), "the unit lacks \(directive)")
            }
            try dir.write("switchyard.service", shipped.replacingOccurrences(of: "/usr/local/bin/switchyard", with: SwitchyardBinary.path))
            guard let analyze = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
                Issue.record("systemd-analyze is missing: scripts/install-deps installs the systemd package")
                return
            }
            let verify = try runCommand(analyze, ["verify", dir.file("switchyard.service")], dir: dir, label: "verify")
            #expect(verify.status == 0, "systemd-analyze verify: \(verify.stdout)\(verify.stderr)")
            #expect(verify.stderr.isEmpty && verify.stdout.isEmpty, "systemd-analyze verify warned: \(verify.stdout)\(verify.stderr)")

            let security = try runCommand(analyze, ["security", "--offline=yes", "--no-pager", dir.file("switchyard.service")], dir: dir, label: "security")
            let overall = security.stdout.split(separator: "\n").first { $0.contains("Overall exposure level") }
            let score = overall.flatMap { $0.split(separator: ":").last?.split(separator: " ").first.flatMap { Double($0) } }
            #expect(score.map { $0 <= 2.0 } == true, "exposure: \(overall ?? "?")\n\(security.stderr)")
        }
    }
}
