import Foundation
import Testing

extension Integration {
    /// Output files with a real nginx: switchyard (file provider) renders nginx's upstream
    /// file from the shipped template, checks it with `nginx -t`, replaces it atomically
    /// and reloads nginx; a broken render is refused and nginx keeps serving.
    @Suite struct TemplateOutputs {
        @Test(.timeLimit(.minutes(2)))
        func nginxFollowsServiceChangesAndABrokenRenderIsRefusedByNginxCheck() throws {
            let dir = try ScratchDir("template-nginx")
            let a = try Backend.demo("a", dir: dir)
            defer { a.stop() }
            let b = try Backend.demo("b", dir: dir)
            defer { b.stop() }
            let nginx = try RunningNginx(dir: dir)
            defer { nginx.stop() }

            try dir.write("nginx-upstream.conf.stencil", try shippedTemplate("nginx-upstream.conf.stencil"))
            try dir.write("services.yml", servicesYAML([ServiceSpec(name: "shop", instances: [.init(port: a.port)])]))
            try dir.write("switchyard.yml", templatedConfigYAML(templates: """
                  outputs:
                    - template: nginx-upstream.conf.stencil
                      destination: \(nginx.upstreamPath)
                      check: \(nginx.checkCommand)
                      reload: \(nginx.reloadCommand)
                      wait: {min: 100ms, max: 500ms}
                      mode: "0644"
                """))
            let proxy = try ChildProcess(SwitchyardBinary.path, ["run", "--config", dir.file("switchyard.yml")], dir: dir, label: "proxy")
            defer { proxy.stop() }
            _ = try proxy.waitForListeningPort()
            let adminPort = try proxy.waitForAdminPort()

            // The first render writes the upstream file nginx starts with.
            try waitFor("the upstream file to be rendered", timeout: .seconds(10)) {
                dir.read("nginx/conf/upstream.conf").contains("server 127.0.0.1:\(a.port);")
            }
            try nginx.start()
            try waitForBackend("a", at: nginx.url, dir: dir)

            // services.yml changes: the file is rendered again and nginx reloaded.
            try dir.write("services.yml", servicesYAML([ServiceSpec(name: "shop", instances: [.init(port: a.port), .init(port: b.port)])]))
            try waitFor("the upstream file to list b", timeout: .seconds(10)) {
                dir.read("nginx/conf/upstream.conf").contains("server 127.0.0.1:\(b.port);")
            }
            try waitForBackend("b", at: nginx.url, dir: dir)
            // nginx's old worker may still take a connection or two right after a reload.
            var seen = Set<String>()
            try waitFor("nginx to answer from a and b", timeout: .seconds(5)) {
                seen.formUnion(try backendsAnswering(4, at: nginx.url, dir: dir))
                return seen == ["a", "b"]
            }
            let attributes = try FileManager.default.attributesOfItem(atPath: nginx.upstreamPath)
            #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o644)

            // A template that renders a broken nginx config: `nginx -t` refuses it.
            let good = dir.read("nginx/conf/upstream.conf")
            let broken = try shippedTemplate("nginx-upstream.conf.stencil")
                .replacingOccurrences(of: "upstream {{ service.name|nginx_quote }} {", with: "upstream {{ service.name|nginx_quote }} {\n    server_bogus_directive on;")
            try dir.write("nginx-upstream.conf.stencil", broken)
            let answer = try curl("http://127.0.0.1:\(adminPort)/render", ["-X", "POST"], dir: dir)
            #expect(answer.httpStatus == 200, "\(answer.body)")
            try waitFor("switchyard to report the refused check", timeout: .seconds(10)) {
                proxy.stderrText.contains("check failed")
            }
            #expect(proxy.stderrText.contains("server_bogus_directive"), "the check's own message is reported: \(proxy.stderrText.suffix(1500))")
            #expect(dir.read("nginx/conf/upstream.conf") == good, "the old file stays")
            let after = Set(try backendsAnswering(6, at: nginx.url, dir: dir))
            #expect(!after.isEmpty && after.isSubset(of: ["a", "b"]), "nginx keeps serving: \(after)")
            // Polled: a later render (the broken template is tried again) may hold a candidate
            // for the moment its `nginx -t` runs; what must not exist is one that stays.
            try waitFor("no candidate file left behind in \(nginx.prefix)/conf", timeout: .seconds(10)) {
                try FileManager.default.contentsOfDirectory(atPath: nginx.prefix + "/conf").allSatisfy { !$0.contains("switchyard-") }
            }
        }

        /// Quiescence end to end: a services file rewritten every 50 ms for a second gets
        /// at most one render (and reload) per `wait.max` window, and the last one wins.
        @Test(.timeLimit(.minutes(1)))
        func flappingDiscoveryReloadsAtMostOncePerQuiescenceWindow() throws {
            let dir = try ScratchDir("template-quiescence")
            try dir.write("count.stencil", "{{ instances|pluck:\"port\"|joined }}\n")
            try dir.write("services.yml", servicesYAML([ServiceSpec(name: "shop", instances: [.init(port: 10_000)])]))
            try dir.write("switchyard.yml", templatedConfigYAML(templates: """
                  guards: {max_removed_percent: 100}
                  outputs:
                    - template: count.stencil
                      destination: \(dir.file("out.txt"))
                      reload: echo reload >> \(dir.file("reloads.log"))
                      wait: {min: 300ms, max: 600ms}
                """))
            let proxy = try ChildProcess(SwitchyardBinary.path, ["run", "--config", dir.file("switchyard.yml")], dir: dir, label: "proxy")
            defer { proxy.stop() }
            _ = try proxy.waitForListeningPort()
            try waitFor("the first render", timeout: .seconds(5)) { dir.read("reloads.log").contains("reload") }
            let started = ContinuousClock.now
            for round in 1...20 {
                try dir.write("services.yml", servicesYAML([ServiceSpec(name: "shop", instances: [.init(port: UInt16(10_000 + round))])]))
                pause(.milliseconds(50))
            }
            let flapping = ContinuousClock.now - started
            try waitFor("the last change to be rendered", timeout: .seconds(5)) { dir.read("out.txt") == "10020\n" }
            let reloads = dir.read("reloads.log").split(separator: "\n").count - 1
            let windows = Int((flapping / .milliseconds(600)).rounded(.up)) + 1
            #expect(reloads >= 1)
            #expect(reloads <= windows, "\(reloads) reloads in \(flapping) of flapping (at most \(windows) windows)")
        }
        /// Health reaches the outputs: an instance whose health check fails leaves the
        /// `healthy` list of a rendered file.
        @Test(.timeLimit(.minutes(1)))
        func anInstanceFailingItsHealthCheckLeavesTheRenderedHealthyList() throws {
            let dir = try ScratchDir("template-health")
            let a = try Backend.demo("a", dir: dir)
            defer { a.stop() }
            let b = try Backend.demo("b", dir: dir)
            defer { b.stop() }
            try dir.write("healthy.stencil", "{{ instances|healthy|sorted|pluck:\"port\"|joined }}\n")
            let pool = ShopPool(instances: [a.port, b.port], health: [
                ("type", "tcp"), ("interval", "200ms"), ("timeout", "100ms"), ("rise", "1"), ("fall", "1"),
            ])
            try dir.write("services.yml", pool.yaml)
            try dir.write("switchyard.yml", templatedConfigYAML(templates: """
                  outputs:
                    - template: healthy.stencil
                      destination: \(dir.file("healthy.txt"))
                      wait: {min: 50ms, max: 200ms}
                """))
            let proxy = try ChildProcess(SwitchyardBinary.path, ["run", "--config", dir.file("switchyard.yml")], dir: dir, label: "proxy")
            defer { proxy.stop() }
            _ = try proxy.waitForListeningPort()
            let both = [a.port, b.port].sorted().map(String.init).joined(separator: ", ") + "\n"
            try waitFor("both instances in the healthy list", timeout: .seconds(5)) { dir.read("healthy.txt") == both }

            b.stop()
            try waitFor("b to leave the healthy list", timeout: .seconds(5)) { dir.read("healthy.txt") == "\(a.port)\n" }
        }
    }
}
