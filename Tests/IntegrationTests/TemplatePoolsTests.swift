import Foundation
import Testing

extension Integration {
    /// The pools template in the running binary: what it renders is what is routed; a
    /// template that does not render, renders invalid pools, or would empty a pool changes
    /// nothing that was working, says why, and `switchyard render --force` overrides a guard.
    @Suite struct TemplatePools {
        /// A proxy whose pools come from a copy of the shipped pools template.
        private func start(_ dir: ScratchDir, services: [ServiceSpec]) throws -> (ChildProcess, proxy: String, admin: String) {
            try dir.write("pools.yml.stencil", try shippedTemplate("pools.yml.stencil"))
            try dir.write("services.yml", servicesYAML(services))
            try dir.write("switchyard.yml", templatedConfigYAML(templates: "  pools: pools.yml.stencil\n"))
            let proxy = try ChildProcess(SwitchyardBinary.path, ["run", "--config", dir.file("switchyard.yml")], dir: dir, label: "proxy")
            let port = try proxy.waitForListeningPort()
            let admin = try proxy.waitForAdminPort()
            return (proxy, "http://127.0.0.1:\(port)", "http://127.0.0.1:\(admin)")
        }

        @Test(.timeLimit(.minutes(1)))
        func theRenderedPoolsAreWhatIsRouted() throws {
            let dir = try ScratchDir("pools-routed")
            let a = try Backend.demo("a", dir: dir)
            defer { a.stop() }
            let b = try Backend.demo("b", dir: dir)
            defer { b.stop() }
            // A pools template that keeps only instances on ports other than a's: what the
            // template says wins over what discovery found.
            let (proxy, url, _) = try start(dir, services: [ServiceSpec(name: "shop", instances: [.init(port: a.port), .init(port: b.port)])])
            defer { proxy.stop() }
            #expect(Set(try backendsAnswering(4, at: url, dir: dir)) == ["a", "b"])
            let filtering = try shippedTemplate("pools.yml.stencil").replacingOccurrences(
                of: "{% for instance in service.instances %}", with: "{% for instance in service.instances|by_track:\"keep\" %}")
            try dir.write("pools.yml.stencil", filtering)
            try dir.write("services.yml", servicesYAML([ServiceSpec(name: "shop", instances: [.init(port: a.port), .init(port: b.port, track: "keep")])]))
            try waitFor("only b to answer", timeout: .seconds(10)) { try backendsAnswering(3, at: url, dir: dir) == ["b", "b", "b"] }
        }

        @Test(.timeLimit(.minutes(1)))
        func aTemplateSyntaxErrorNamesTheTemplateAndLineAndTheRunningTableStays() throws {
            let dir = try ScratchDir("pools-syntax")
            let a = try Backend.demo("a", dir: dir)
            defer { a.stop() }
            let b = try Backend.demo("b", dir: dir)
            defer { b.stop() }
            let (proxy, url, admin) = try start(dir, services: [ServiceSpec(name: "shop", instances: [.init(port: a.port)])])
            defer { proxy.stop() }
            try waitForBackend("a", at: url, dir: dir)

            // A misspelt filter on the service-name line.
            var lines = try shippedTemplate("pools.yml.stencil").components(separatedBy: "\n")
            let index = try #require(lines.firstIndex(of: "  {{ service.name|yaml }}:"))
            lines[index] = "  {{ service.name|yml }}:"
            try dir.write("pools.yml.stencil", lines.joined(separator: "\n"))
            try dir.write("services.yml", servicesYAML([ServiceSpec(name: "shop", instances: [.init(port: b.port)])]))
            try waitFor("the template error in the log", timeout: .seconds(10)) { proxy.stderrText.contains("template error") }
            let line = proxy.stderrText.components(separatedBy: "\n").first { $0.contains("template error") } ?? ""
            #expect(line.contains("pools.yml.stencil:\(index + 1): template error"), "\(line)")
            #expect(line.contains("the running routing table stays"), "\(line)")
            #expect(line.contains("Unknown filter 'yml'"), "\(line)")
            #expect(try backendsAnswering(4, at: url, dir: dir) == ["a", "a", "a", "a"])
            let report = try curl(admin + "/render", dir: dir)
            #expect(report.body.contains("pools.yml.stencil:\(index + 1)"), "GET /render reports the error: \(report.body)")
        }

        @Test(.timeLimit(.minutes(1)))
        func aTemplateRenderingInvalidPoolsNamesTheTemplateAndOutputLineAndTheRunningTableStays() throws {
            let dir = try ScratchDir("pools-invalid")
            let a = try Backend.demo("a", dir: dir)
            defer { a.stop() }
            let b = try Backend.demo("b", dir: dir)
            defer { b.stop() }
            let (proxy, url, _) = try start(dir, services: [ServiceSpec(name: "shop", instances: [.init(port: a.port)])])
            defer { proxy.stop() }
            try waitForBackend("a", at: url, dir: dir)

            let invalid = try shippedTemplate("pools.yml.stencil").replacingOccurrences(
                of: "port: {{ instance.port }}", with: "port: {{ instance.port }}0")
            try dir.write("pools.yml.stencil", invalid)
            try dir.write("services.yml", servicesYAML([ServiceSpec(name: "shop", instances: [.init(port: b.port)])]))
            try waitFor("the invalid pools error in the log", timeout: .seconds(10)) { proxy.stderrText.contains("invalid services file") }
            let log = proxy.stderrText
            #expect(log.contains("pools.yml.stencil (rendered):"), "\(log.suffix(1500))")
            #expect(log.contains("services.shop.instances[0].port: \(b.port)0 is out of range"), "\(log.suffix(1500))")
            #expect(log.contains("output line:         port: \(b.port)0"), "\(log.suffix(1500))")
            let portLine = try #require(invalid.components(separatedBy: "\n").firstIndex { $0.contains("port: {{ instance.port }}0") }) + 1
            #expect(log.contains("comes from \(dir.file("pools.yml.stencil")):\(portLine)"), "\(log.suffix(1500))")
            #expect(try backendsAnswering(4, at: url, dir: dir) == ["a", "a", "a", "a"])
        }

        @Test(.timeLimit(.minutes(1)))
        func aRenderThatWouldEmptyAPoolIsHeldBackUntilRenderForce() throws {
            let dir = try ScratchDir("pools-guard")
            let a = try Backend.demo("a", dir: dir)
            defer { a.stop() }
            let b = try Backend.demo("b", dir: dir)
            defer { b.stop() }
            let (proxy, url, admin) = try start(dir, services: [ServiceSpec(name: "shop", instances: [.init(port: a.port), .init(port: b.port)])])
            defer { proxy.stop() }
            #expect(Set(try backendsAnswering(4, at: url, dir: dir)) == ["a", "b"])

            try dir.write("services.yml", servicesYAML([ServiceSpec(name: "shop", instances: [])]))
            try waitFor("the guard to hold the render back", timeout: .seconds(10)) { proxy.stderrText.contains("render held back") }
            #expect(proxy.stderrText.contains("service 'shop' would go from 2 endpoint(s) to none"))
            #expect(Set(try backendsAnswering(4, at: url, dir: dir)) == ["a", "b"], "the running table stays")

            // --dry-run shows the change against the running table and changes nothing.
            let dry = try runCommand(SwitchyardBinary.path, ["render", "--config", dir.file("switchyard.yml"), "--dry-run", "--admin", admin], dir: dir, label: "render-dry")
            #expect(dry.status == 0, "\(dry.stderr)")
            #expect(dry.stdout.contains("--- running routing table"), "\(dry.stdout)")
            #expect(dry.stdout.contains("-  127.0.0.1:\(a.port) track=- weight=1"), "\(dry.stdout)")
            #expect(dry.stdout.contains("held back by a guard: service 'shop' would go from 2 endpoint(s) to none"), "\(dry.stdout)")
            #expect(Set(try backendsAnswering(2, at: url, dir: dir)).isSubset(of: ["a", "b"]))

            let forced = try runCommand(SwitchyardBinary.path, ["render", "--config", dir.file("switchyard.yml"), "--force", "--admin", admin], dir: dir, label: "render-force")
            #expect(forced.status == 0, "\(forced.stdout) \(forced.stderr)")
            #expect(forced.stdout.contains("\"applied\":true") || forced.stdout.contains("\"applied\" : true"), "\(forced.stdout)")
            try waitFor("the forced empty pool to answer 503", timeout: .seconds(5)) {
                try curl(url + "/", dir: dir).httpStatus == 503
            }
        }
    }
}
