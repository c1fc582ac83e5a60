import Testing

extension Integration {
    /// The data plane's canary split (DESIGN.md "Traffic semantics"): exact, independent of
    /// each track's replica count, 0 % sends nothing, sticky clients only move forward.
    @Suite(.serialized) struct CanarySplit {
        static func services(blue: [UInt16], green: [UInt16], percent: String, sticky: String? = nil) -> String {
            var text = "services:\n  shop:\n    active: blue\n    canary:\n      track: green\n      percent: \(percent)\n"
            if let sticky { text += "      sticky: \(sticky)\n" }
            text += "    instances:\n"
            for port in blue { text += "      - {address: 127.0.0.1, port: \(port), track: blue}\n" }
            for port in green { text += "      - {address: 127.0.0.1, port: \(port), track: green}\n" }
            return text
        }

        /// Sends `count` requests on one keep-alive connection; returns the backend names.
        static func send(_ count: Int, port: UInt16, headers: (Int) -> String = { _ in "" }) throws -> [String] {
            let connection = try RawConnection(port: port)
            var names: [String] = []
            for i in 0..<count {
                try connection.send("GET / HTTP/1.1\r\nHost: shop\r\n\(headers(i))\r\n")
                let response = try connection.readResponse()
                #expect(response.status == 200)
                names.append(response.header("x-backend") ?? "?")
            }
            return names
        }

        @Test(.timeLimit(.minutes(1)))
        func canaryAtTenPercentIsExactOverTwoThousandRequests() throws {
            let dir = try ScratchDir("canary-exact")
            let blue = try [Backend.demo("blue-1", dir: dir), Backend.demo("blue-2", dir: dir)]
            let green = try Backend.demo("green-1", dir: dir)
            defer { (blue + [green]).forEach { $0.stop() } }
            try dir.write("services.yml", Self.services(blue: blue.map(\.port), green: [green.port], percent: "10"))
            try dir.write("switchyard.yml", ProxySpec(workers: 1).yaml)
            let child = try ChildProcess(SwitchyardBinary.path, ["run", "--config", dir.file("switchyard.yml")], dir: dir, label: "proxy")
            defer { child.stop() }
            let port = try child.waitForListeningPort()

            let names = try Self.send(2_000, port: port)
            let canary = names.filter { $0.hasPrefix("green") }.count
            #expect(abs(canary - 200) <= 1, "canary got \(canary) of 2000 at 10 %")
            // Blue's two replicas share the stable 90 % evenly; green's one replica does not
            // get more because it is alone.
            let blue1 = names.filter { $0 == "blue-1" }.count
            #expect(abs(blue1 - 900) <= 2)
        }

        @Test(.timeLimit(.minutes(1)))
        func canaryAtZeroPercentSendsNothingAndAtHundredSendsEverything() throws {
            let dir = try ScratchDir("canary-bounds")
            let blue = try Backend.demo("blue-1", dir: dir)
            let green = try Backend.demo("green-1", dir: dir)
            defer { blue.stop(); green.stop() }
            try dir.write("services.yml", Self.services(blue: [blue.port], green: [green.port], percent: "0"))
            try dir.write("switchyard.yml", ProxySpec(workers: 2).yaml)
            let child = try ChildProcess(SwitchyardBinary.path, ["run", "--config", dir.file("switchyard.yml")], dir: dir, label: "proxy")
            defer { child.stop() }
            let port = try child.waitForListeningPort()
            #expect(try Self.send(500, port: port).allSatisfy { $0 == "blue-1" })

            let before = child.stderrText.components(separatedBy: "published").count
            try dir.write("services.yml", Self.services(blue: [blue.port], green: [green.port], percent: "100"))
            try waitFor("the 100 % table", timeout: .seconds(5)) {
                child.stderrText.components(separatedBy: "published").count > before
            }
            #expect(try Self.send(500, port: port).allSatisfy { $0 == "green-1" })
        }

        @Test(.timeLimit(.minutes(1)))
        func stickyClientsOnlyMoveForwardWhenTheShareRises() throws {
            let dir = try ScratchDir("canary-sticky")
            let blue = try Backend.demo("blue-1", dir: dir)
            let green = try Backend.demo("green-1", dir: dir)
            defer { blue.stop(); green.stop() }
            try dir.write("services.yml", Self.services(blue: [blue.port], green: [green.port], percent: "10", sticky: "header:X-User"))
            try dir.write("switchyard.yml", ProxySpec(workers: 2).yaml)
            let child = try ChildProcess(SwitchyardBinary.path, ["run", "--config", dir.file("switchyard.yml")], dir: dir, label: "proxy")
            defer { child.stop() }
            let port = try child.waitForListeningPort()

            let users = 1_000
            let at10 = try Self.send(users, port: port) { "X-User: user-\($0)\r\n" }
            let canaryAt10 = Set((0..<users).filter { at10[$0] == "green-1" })
            #expect(abs(canaryAt10.count - 100) <= 20, "\(canaryAt10.count) of \(users) users on the canary at 10 %")
            // The same user always lands on the same track.
            let again = try Self.send(users, port: port) { "X-User: user-\($0)\r\n" }
            #expect(again == at10)

            let before = child.stderrText.components(separatedBy: "published").count
            try dir.write("services.yml", Self.services(blue: [blue.port], green: [green.port], percent: "25", sticky: "header:X-User"))
            try waitFor("the 25 % table", timeout: .seconds(5)) {
                child.stderrText.components(separatedBy: "published").count > before
            }
            let at25 = try Self.send(users, port: port) { "X-User: user-\($0)\r\n" }
            let canaryAt25 = Set((0..<users).filter { at25[$0] == "green-1" })
            #expect(canaryAt10.isSubset(of: canaryAt25), "users moved back from canary to stable: \(canaryAt10.subtracting(canaryAt25).sorted())")
            #expect(abs(canaryAt25.count - 250) <= 40)
        }
    
        @Test(.timeLimit(.minutes(1)))
        func overrideHeaderPinsATrackOnlyForAllowedNetworks() throws {
            let dir = try ScratchDir("track-override")
            let blue = try Backend.demo("blue-1", dir: dir)
            let green = try Backend.demo("green-1", dir: dir)
            defer { blue.stop(); green.stop() }
            func services(_ override: String) -> String {
                "services:\n  shop:\n    active: blue\n\(override)    instances:\n"
                    + "      - {address: 127.0.0.1, port: \(blue.port), track: blue}\n"
                    + "      - {address: 127.0.0.1, port: \(green.port), track: green}\n"
            }
            try dir.write("services.yml", services(""))
            try dir.write("switchyard.yml", ProxySpec(workers: 1).yaml)
            let child = try ChildProcess(SwitchyardBinary.path, ["run", "--config", dir.file("switchyard.yml")], dir: dir, label: "proxy")
            defer { child.stop() }
            let port = try child.waitForListeningPort()
            let pinned = { try Self.send(20, port: port) { _ in "X-Switchyard-Track: green\r\n" } }

            // On by default: the header pins the request to green although blue is active.
            #expect(try pinned().allSatisfy { $0 == "green-1" })
            #expect(try Self.send(10, port: port).allSatisfy { $0 == "blue-1" })

            for (override, expected) in [("    override:\n      allow: [10.0.0.0/8]\n", "blue-1"),
                                         ("    override:\n      allow: [127.0.0.0/8]\n", "green-1"),
                                         ("    override: false\n", "blue-1")] {
                let before = child.stderrText.components(separatedBy: "published").count
                try dir.write("services.yml", services(override))
                try waitFor("the new table", timeout: .seconds(5)) {
                    child.stderrText.components(separatedBy: "published").count > before
                }
                #expect(try pinned().allSatisfy { $0 == expected }, "with \(override)")
            }
        }
    }
}
