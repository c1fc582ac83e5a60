import Foundation
import Testing

extension Integration {
    /// Slow start on every canary step (docs/traffic.md): a rising canary share ramps over
    /// the service's `slow_start` instead of jumping, and is exact again once the ramp ends.
    @Suite(.serialized) struct CanarySlowStart {
        static func services(blue: UInt16, green: UInt16, percent: Int) -> String {
            """
            services:
              shop:
                active: blue
                canary:
                  track: green
                  percent: \(percent)
                health:
                  type: tcp
                  interval: 200ms
                  timeout: 150ms
                  slow_start: 3s
                instances:
                  - {address: 127.0.0.1, port: \(blue), track: blue}
                  - {address: 127.0.0.1, port: \(green), track: green}

            """
        }

        @Test(.timeLimit(.minutes(1)))
        func canaryStepRampsOverSlowStartThenIsExact() throws {
            let dir = try ScratchDir("canary-slow-start")
            let blue = try Backend.demo("blue-1", dir: dir)
            let green = try Backend.demo("green-1", dir: dir)
            defer { blue.stop(); green.stop() }
            try dir.write("services.yml", Self.services(blue: blue.port, green: green.port, percent: 10))
            try dir.write("switchyard.yml", ProxySpec(workers: 1).yaml)
            let child = try ChildProcess(SwitchyardBinary.path, ["run", "--config", dir.file("switchyard.yml")], dir: dir, label: "proxy")
            defer { child.stop() }
            let port = try child.waitForListeningPort()
            // At startup the share is in force at once (no ramp): exact.
            let start = try CanarySplit.send(1_000, port: port).filter { $0 == "green-1" }.count
            #expect(abs(start - 100) <= 1, "canary got \(start) of 1000 at 10 %")

            // The step 10 % → 50 %: the first requests after it still see about 10 %.
            let before = child.stderrText.components(separatedBy: "published").count
            try dir.write("services.yml", Self.services(blue: blue.port, green: green.port, percent: 50))
            try waitFor("the 50 % table", timeout: .seconds(5)) {
                child.stderrText.components(separatedBy: "published").count > before
            }
            let steppedAt = ContinuousClock.now
            var shares: [Double] = []
            while ContinuousClock.now < steppedAt + .milliseconds(2_500) {
                let names = try CanarySplit.send(100, port: port)
                shares.append(Double(names.filter { $0 == "green-1" }.count) / 100)
            }
            print("canary share per 100 requests during the ramp: \(shares)")
            #expect((shares.first ?? 1) < 0.25, "the first 100 requests after the step: \(shares)")
            #expect(shares.count >= 2 && shares.last! > shares.first! + 0.1, "the share rises during the ramp: \(shares)")
            #expect(shares.allSatisfy { $0 <= 0.51 }, "never above the new share: \(shares)")

            // After slow_start (3 s): exactly 50 %.
            try waitFor("the end of the 3 s ramp", timeout: .seconds(5)) { ContinuousClock.now >= steppedAt + .milliseconds(3_100) }
            let after = try CanarySplit.send(2_000, port: port).filter { $0 == "green-1" }.count
            #expect(abs(after - 1_000) <= 1, "canary got \(after) of 2000 at 50 % after the ramp")
        }
    }
}
