// The template stage's outputs: a reload command that failed is retried with backoff
// until it succeeds, even though the rendered text never changes again, and the report
// shows the failure and the recovery.

import Foundation
import Testing
@testable import YardControl
import YardDiscovery
import YardModel
import YardTestSupport

@Suite(.timeLimit(.minutes(1)))
struct TemplateStageReloadRetry {
    private func shop() -> ServiceCatalog {
        ServiceCatalog(services: [ServiceDefinition(name: "shop", activeTrack: nil, instances: [InstanceDefinition(address: "10.0.0.1", port: 80)])])
    }

    /// A reload command that fails its first `failures` runs, then succeeds; it counts its
    /// runs in `count`.
    private func countingReload(_ dir: TempDir, failures: Int) -> String {
        let count = dir.file("count")
        return "n=$(cat \(count) 2>/dev/null || echo 0); n=$((n+1)); echo $n > \(count); [ $n -gt \(failures) ] || { echo \"reload refused ($n)\"; exit 1; }"
    }

    private func runs(_ dir: TempDir) -> Int {
        Int((try? String(contentsOfFile: dir.file("count"), encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 0
    }

    @Test func aFailedReloadIsRetriedWithBackoffUntilItSucceedsThoughTheTextNeverChanges() throws {
        let dir = try TempDir()
        let template = try dir.write("out.stencil", "{% for service in services %}{{ service.name }}\n{% endfor %}")
        let destination = dir.file("out.conf")
        let stage = TemplateStage(reloadBackoff: Backoff(initialMs: 20, maximumMs: 80, floorMs: 10))
        stage.configure(TemplatesConfig(outputs: [OutputConfig(
            template: template, destination: destination, reload: countingReload(dir, failures: 3), waitMinMs: 0, waitMaxMs: 0,
            commandTimeoutMs: 5_000)]))
        #expect(stage.admit(shop(), running: ServiceCatalog(services: [])) != nil)

        // The failure shows while it lasts...
        try waitUntil("the first reload fails", deadline: .seconds(10), poll: .milliseconds(2)) { runs(dir) >= 1 }
        try waitUntil("the report shows it", deadline: .seconds(10), poll: .milliseconds(2)) {
            (stage.report().outputs.first?.reloadFailures ?? 0) >= 1
        }
        // ...and the retries go on, without any new render, until a reload succeeds.
        try waitUntil("the fourth run succeeds", deadline: .seconds(20)) { stage.report().outputs.first?.reloadFailing == false }
        let report = try #require(stage.report().outputs.first)
        #expect(runs(dir) == 4)
        #expect(report.writes == 1)
        #expect(report.reloadFailures == 3)
        #expect(report.lastReloadError?.contains("reload refused (3)") == true)
        #expect(report.lastOutcome?.contains("recovered after 3 failed reload(s)") == true, "\(report)")
        #expect(try String(contentsOfFile: destination, encoding: .utf8) == "shop\n")

        // Recovered: no more runs.
        Thread.sleep(forTimeInterval: 0.3)
        #expect(runs(dir) == 4)
    }

    @Test func aReloadThatSucceedsIsNotRepeated() throws {
        let dir = try TempDir()
        let template = try dir.write("out.stencil", "{% for service in services %}{{ service.name }}\n{% endfor %}")
        let stage = TemplateStage(reloadBackoff: Backoff(initialMs: 20, maximumMs: 80, floorMs: 10))
        stage.configure(TemplatesConfig(outputs: [OutputConfig(
            template: template, destination: dir.file("out.conf"), reload: countingReload(dir, failures: 0), waitMinMs: 0, waitMaxMs: 0)]))
        _ = stage.admit(shop(), running: ServiceCatalog(services: []))
        try waitUntil("the reload runs", deadline: .seconds(10)) { stage.report().outputs.first?.writes == 1 && runs(dir) == 1 }
        _ = stage.admit(shop(), running: shop())
        Thread.sleep(forTimeInterval: 0.3)
        #expect(runs(dir) == 1)
        #expect(stage.report().outputs.first?.reloadFailures == 0)
    }
}
