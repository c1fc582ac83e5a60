#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing

// Hitless restart and binary upgrade (Sources/YardControl/Takeover.swift): a new process
// takes the listening sockets of the running one, then the old one drains. Processes
// started by SIGUSR2 are children of the proxy, not of the test: they are found by the pid
// the new process logs, and killed by that pid at the end.

/// Whether process `pid` has exited (gone, or a zombie nobody reaped yet).
func processGone(_ pid: Int32) -> Bool {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return true }
    // "pid (comm) S ...": the state follows the last ')'.
    guard let close = stat.lastIndex(of: ")") else { return true }
    return stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).hasPrefix("Z")
}

/// Puts a fresh copy of the binary under test at `path` (a new file renamed over the old
/// one, as a package upgrade does): a process started from `path` afterwards runs the new
/// file, one started before keeps the old, now deleted, one.
private func installBinary(at path: String) throws {
    let temporary = path + ".new"
    try? FileManager.default.removeItem(atPath: temporary)
    try FileManager.default.copyItem(atPath: SwitchyardBinary.path, toPath: temporary)
    guard rename(temporary, path) == 0 else { throw HarnessError("rename over \(path) failed: errno \(errno)") }
}

/// The pid that logged `takeover: pid OLD drains; pid NEW serves` in the log at `path`.
private func waitForTakeover(from old: Int32, log path: String, timeout: Duration = .seconds(30)) throws -> Int32 {
    let marker = "takeover: pid \(old) drains; pid "
    var taker: Int32?
    try waitFor("a process to take over from pid \(old) (\(path))", timeout: timeout) {
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        guard let line = text.split(separator: "\n").first(where: { $0.contains(marker) }),
              let range = line.range(of: marker) else { return false }
        taker = Int32(line[range.upperBound...].prefix { $0.isNumber })
        return taker != nil
    }
    return taker!
}

/// Waits until `log` says the process offers its sockets `count` times or more (every
/// process logs it once, when it is ready to be taken over in turn).
private func waitForOffers(_ count: Int, log path: String) throws {
    try waitFor("\(count) takeover offers in \(path)", timeout: .seconds(30)) {
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        return text.components(separatedBy: "takeover: offering the listening sockets").count - 1 >= count
    }
}

/// `switchyard run` on `config` in front of one demo backend (service `shop`), offering its
/// sockets; `stop` ends it, the backend, and every process a takeover started (`pids`).
private final class TakeoverScene {
    let dir: ScratchDir
    let backend: Backend
    let proxy: ChildProcess
    let port: UInt16
    var pids: [Int32] = []

    init(_ label: String, config: String) throws {
        dir = try ScratchDir(label)
        backend = try Backend.demo("shop", dir: dir)
        do {
            try dir.write("services.yml", servicesYAML([ServiceSpec(name: "shop", instances: [.init(port: backend.port)])]))
            try dir.write("switchyard.yml", config)
            proxy = try ChildProcess(SwitchyardBinary.path, ["run", "--config", dir.file("switchyard.yml")], dir: dir, label: "proxy")
        } catch {
            backend.stop()
            throw error
        }
        do {
            port = try proxy.waitForListeningPort()
            try waitForOffers(1, log: proxy.stderrPath)
        } catch {
            proxy.stop()
            backend.stop()
            throw error
        }
    }

    var url: String { "http://127.0.0.1:\(port)/" }

    func stop() {
        for pid in pids where !processGone(pid) { kill(pid, SIGKILL) }
        proxy.stop()
        backend.stop()
    }
}

/// `yaml` (a `ProxySpec`'s) with a second HTTP listener, `extra`, on `port`.
private func withExtraListener(_ yaml: String, port: UInt16) -> String {
    yaml.replacingOccurrences(of: "routes:\n", with: "  - name: extra\n    address: 127.0.0.1:\(port)\n    protocol: http\nroutes:\n")
}

extension Integration {
    @Suite(.serialized) struct Takeover {
        /// wrk -c64 on keep-alive connections and wrk -c8 opening a new connection per request
        /// run (with h2load -c4 -m4 over HTTP/2 across each round) while the proxy is
        /// replaced five times in a row, alternately by
        /// SIGUSR2 (after a new binary was put in place: an upgrade) and by a second
        /// `switchyard run --takeover`: no socket error, no non-2xx answer, every old
        /// process exits, and the last one (running the new binary) serves, admin API too.
        @Test(.timeLimit(.minutes(3)))
        func replacedFiveTimesUnderLoadLosesNoConnectionAndNoRequest() throws {
            let dir = try ScratchDir("takeover")
            let backend = try Backend.demo("shop", dir: dir)
            defer { backend.stop() }
            let binary = dir.file("switchyard")
            try installBinary(at: binary)
            try dir.write("services.yml", servicesYAML([ServiceSpec(name: "shop", instances: [.init(port: backend.port)])]))
            var spec = ProxySpec(workers: 2)
            spec.extraYAML = "admin:\n  address: 127.0.0.1:0\n"
            try dir.write("switchyard.yml", spec.yaml)

            let first = try ChildProcess(binary, ["run", "--config", dir.file("switchyard.yml")], dir: dir, label: "proxy-0")
            var started = [first]
            var pids: [Int32] = [first.pid]
            defer {
                for pid in pids where !processGone(pid) { kill(pid, SIGKILL) }
                for child in started { child.stop() }
            }
            let port = try first.waitForListeningPort()
            let adminPort = try first.waitForAdminPort()
            try waitForOffers(1, log: first.stderrPath)
            let url = "http://127.0.0.1:\(port)/"

            let loadSeconds = 30
            let keepAlive = try ChildProcess("/usr/bin/wrk", ["-t1", "-c64", "-d\(loadSeconds)s", "--timeout", "5s", url], dir: dir, label: "wrk-keepalive")
            let fresh = try ChildProcess("/usr/bin/wrk", ["-t1", "-c8", "-d\(loadSeconds)s", "--timeout", "5s", "-H", "Connection: close", url],
                                         dir: dir, label: "wrk-close")
            // HTTP/2 (prior knowledge), one h2load per round across its takeover: a draining
            // process sends GOAWAY and finishes the streams it has. (h2load does not open a
            // new connection after GOAWAY, so one run cannot span several takeovers.)
            var multiplexed: [ChildProcess] = []
            defer {
                keepAlive.stop()
                fresh.stop()
                for run in multiplexed { run.stop() }
            }
            let loadStarted = ContinuousClock.now
            try waitFor("wrk's keep-alive connections", timeout: .seconds(5)) { try establishedConnections(toPort: port, dir: dir) >= 32 }

            var current = first.pid
            var log = first.stderrPath
            var offers = 1
            for round in 1...5 {
                multiplexed.append(try ChildProcess("/usr/bin/h2load", ["-c", "4", "-m", "4", "-D", "3", "--log-file", dir.file("h2load-\(round).log"), url],
                                                    dir: dir, label: "h2load-\(round)"))
                // Load on the current process for a moment before it is replaced.
                pause(.milliseconds(1_500))
                if round % 2 == 1 {
                    try installBinary(at: binary)
                    kill(current, SIGUSR2)
                    // The new process is the old one's child and writes to the same log.
                } else {
                    let child = try ChildProcess(binary, ["run", "--config", dir.file("switchyard.yml"), "--takeover"], dir: dir, label: "proxy-\(round)")
                    started.append(child)
                    log = child.stderrPath
                    offers = 0
                }
                let next = try waitForTakeover(from: current, log: log)
                pids.append(next)
                offers += 1
                try waitForOffers(offers, log: log)
                current = next
            }
            let replaced = ContinuousClock.now - loadStarted
            #expect(replaced < .seconds(loadSeconds - 1), "the five takeovers took \(replaced), longer than the load ran")
            #expect(keepAlive.isRunning && fresh.isRunning)

            #expect(keepAlive.waitExit(timeout: .seconds(Int64(loadSeconds) + 15)) == 0, "wrk: \(keepAlive.stderrText)")
            #expect(fresh.waitExit(timeout: .seconds(15)) == 0, "wrk: \(fresh.stderrText)")
            for (name, output) in [("keep-alive", keepAlive.stdoutText), ("connection per request", fresh.stdoutText)] {
                let report = WrkReport(output)
                print("takeover ×5 under load, \(name):\n\(output)")
                #expect(report.requests > 1_000, "\(name): \(output)")
                #expect(report.socketErrors == nil, "\(name): \(output)")
                #expect(report.non2xx3xx == 0, "\(name): \(output)")
            }

            // Every request h2load sent was answered 2xx. Its per-request log has a line for
            // each stream: the time the request was sent, the status ("-1" for a stream reset
            // or refused), the duration. A request h2load had queued but not yet sent when the
            // GOAWAY arrived is never sent (nghttp2 refuses to open a stream after a GOAWAY),
            // and h2load logs it as failed with a send time of 0 (RequestStat's
            // request_wall_time, never set); in timed mode (-D) it also counts the request it
            // could no longer *submit* as failed, without a log line (h2load.cc,
            // process_request_failure). Neither left the client. A browser sends such a
            // request on a new connection; the test allows as many as h2load may hold (4
            // connections × 4 streams) and requires every request that was sent to be
            // answered 200.
            for (round, run) in multiplexed.enumerated() {
                #expect(run.waitExit(timeout: .seconds(15)) == 0, "h2load: \(run.stderrText)")
                let h2 = run.stdoutText
                let finished = h2.split(separator: "\n").first { $0.hasPrefix("requests:") }.map(String.init) ?? ""
                print("takeover round \(round + 1), HTTP/2: \(finished)")
                let streams = ((try? String(contentsOfFile: dir.file("h2load-\(round + 1).log"), encoding: .utf8)) ?? "")
                    .split(separator: "\n").map { $0.split(separator: "\t") }
                let neverSent = streams.filter { $0.count == 3 && $0[0] == "0" && $0[1] == "-1" }.count
                let answered = streams.filter { $0.count == 3 && $0[1] == "200" }.count
                #expect(answered > 100 && answered + neverSent == streams.count,
                        "streams that were sent but not answered 200: \(streams.filter { $0.count != 3 || ($0[1] != "200" && $0[0] != "0") }.prefix(5))\n\(h2)")
                let failed = Int(finished.components(separatedBy: " succeeded, ").last?.split(separator: " ").first ?? "") ?? -1
                #expect((0...16).contains(failed) && failed >= neverSent && finished.hasSuffix(" 0 timeout"), "\(h2)")
                #expect(h2.contains(" 0 3xx, 0 4xx, 0 5xx"), "\(h2)")
            }

            let old = pids.dropLast()
            try waitFor("the five replaced processes to exit", timeout: .seconds(15)) { old.allSatisfy(processGone) }
            #expect(!processGone(current))
            // The last process runs the binary installed last; its predecessors' were replaced.
            let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(current)/exe")) ?? "?"
            #expect(exe == binary, "the last process runs \(exe)")
            let answer = try curl(url, dir: dir)
            #expect(answer.httpStatus == 200 && answer.body.hasPrefix("hello from shop"), "\(answer)")
            #expect(try curl("http://127.0.0.1:\(adminPort)/healthz", dir: dir).httpStatus == 200)

            kill(current, SIGTERM)
            try waitFor("the last process to drain and exit", timeout: .seconds(15)) { processGone(current) }
        }

        /// A takeover onto a config that does not load, or that loads but cannot start (a
        /// new listener on a port another process holds), changes nothing: the new process
        /// fails and says why, the old one goes on serving on the same port, and a later
        /// takeover onto a good config still works.
        @Test(.timeLimit(.minutes(2)))
        func aTakeoverThatFailsLeavesTheOldProcessServing() throws {
            let good = ProxySpec(workers: 2).yaml
            let scene = try TakeoverScene("takeover-bad", config: good)
            defer { scene.stop() }
            let (dir, proxy, url) = (scene.dir, scene.proxy, scene.url)

            // 1. SIGUSR2 onto a file that is not a config.
            try dir.write("switchyard.yml", "listeners: [{name: web, address: nowhere}]\n")
            proxy.signal(SIGUSR2)
            try waitFor("the relaunched process to fail", timeout: .seconds(20)) {
                proxy.stderrText.contains("before taking over; pid \(proxy.pid) goes on serving, unchanged")
            }
            #expect(proxy.isRunning)
            #expect(try curl(url, dir: dir).body.hasPrefix("hello from shop"))

            // 2. `run --takeover` onto it: an error, exit 2, the old process untouched.
            let refused = try runCommand(SwitchyardBinary.path, ["run", "--config", dir.file("switchyard.yml"), "--takeover"], dir: dir, label: "bad-takeover")
            #expect(refused.status == 2, "\(refused.stderr)")
            #expect(refused.stderr.contains("nowhere"), "the error names the bad value: \(refused.stderr)")

            // 3. A config that loads, with a second listener on a port that is taken: the
            // new process receives the sockets, cannot bind, exits; the old one serves on.
            let holder = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(holder) }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let held = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(holder, $0, length) == 0 && listen(holder, 8) == 0 && getsockname(holder, $0, &length) == 0 }
            }
            #expect(held)
            let takenPort = UInt16(bigEndian: address.sin_port)
            try dir.write("switchyard.yml", withExtraListener(good, port: takenPort))
            let blocked = try runCommand(SwitchyardBinary.path, ["run", "--config", dir.file("switchyard.yml"), "--takeover"], dir: dir, label: "blocked-takeover")
            #expect(blocked.status == 2, "\(blocked.stderr)")
            #expect(blocked.stderr.contains("received"), "it did take the sockets: \(blocked.stderr)")
            #expect(blocked.stderr.contains("listener 'extra' cannot listen on 127.0.0.1:\(takenPort)"), "\(blocked.stderr)")
            try waitFor("the old process to log the failed takeover", timeout: .seconds(10)) {
                proxy.stderrText.contains("did not complete")
            }
            #expect(proxy.isRunning)
            for _ in 0..<5 { #expect(try curl(url, dir: dir).body.hasPrefix("hello from shop")) }

            // 4. Back to a good config: the takeover goes through on the same port.
            try dir.write("switchyard.yml", good)
            proxy.signal(SIGUSR2)
            let next = try waitForTakeover(from: proxy.pid, log: proxy.stderrPath)
            scene.pids.append(next)
            #expect(proxy.waitExit(timeout: .seconds(15)) == 0)
            #expect(try curl(url, dir: dir).body.hasPrefix("hello from shop"))
            kill(next, SIGTERM)
            try waitFor("the new process to exit", timeout: .seconds(15)) { processGone(next) }
        }

        /// Listeners follow the new config: one it adds is bound (the old process never had
        /// it), one it drops closes once the old process has drained, and one it keeps
        /// stays on its port. The worker count may change too (2, 3, then 1): every
        /// SO_REUSEPORT socket of the old process is kept, one worker accepting on several
        /// if need be, and new connections on any of them are served.
        @Test(.timeLimit(.minutes(1)))
        func listenersAddedAndRemovedByTheNewConfigOpenAndClose() throws {
            let extraPort = try closedPort()
            let withExtra = withExtraListener(ProxySpec(workers: 2).yaml, port: extraPort)
            let scene = try TakeoverScene("takeover-listeners", config: withExtra)
            defer { scene.stop() }
            let (dir, proxy, port) = (scene.dir, scene.proxy, scene.port)
            #expect(try curl("http://127.0.0.1:\(extraPort)/", dir: dir).httpStatus == 200)

            // Drop `extra`: after the takeover its port refuses, `web` still serves.
            try dir.write("switchyard.yml", ProxySpec(workers: 3).yaml)
            proxy.signal(SIGUSR2)
            let second = try waitForTakeover(from: proxy.pid, log: proxy.stderrPath)
            scene.pids.append(second)
            #expect(proxy.waitExit(timeout: .seconds(15)) == 0)
            #expect(proxy.stderrText.contains("listener 'extra' on 127.0.0.1:\(extraPort) is not in the new config; closed"))
            #expect(proxy.stderrText.contains("received 4 listening socket(s)"), "2 workers × 2 listeners")
            #expect(proxy.stderrText.contains("with 3 worker(s)"))
            for _ in 0..<10 { #expect(try curl("http://127.0.0.1:\(port)/", dir: dir).httpStatus == 200) }
            #expect(throws: RawConnection.ConnectError.self) { _ = try RawConnection(port: extraPort) }

            // Add it back: the next process binds it anew.
            try waitForOffers(2, log: proxy.stderrPath)
            try dir.write("switchyard.yml", withExtraListener(ProxySpec(workers: 1).yaml, port: extraPort))
            kill(second, SIGUSR2)
            let third = try waitForTakeover(from: second, log: proxy.stderrPath)
            scene.pids.append(third)
            #expect(proxy.stderrText.contains("received 3 listening socket(s)"), "2 inherited and 1 bound by the 3-worker process")
            #expect(try curl("http://127.0.0.1:\(extraPort)/", dir: dir).httpStatus == 200)
            try waitFor("the second process to exit", timeout: .seconds(15)) { processGone(second) }
            for _ in 0..<10 { #expect(try curl("http://127.0.0.1:\(port)/", dir: dir).httpStatus == 200) }
            kill(third, SIGTERM)
            try waitFor("the third process to exit", timeout: .seconds(15)) { processGone(third) }
        }

        /// A TLS listener moves too: after SIGUSR2 the same port answers over TLS, with
        /// the certificates the new process loaded, over HTTP/1.1 and HTTP/2 (ALPN).
        @Test(.timeLimit(.minutes(1)))
        func aTLSListenerMovesWithTheRest() throws {
            let f = try TLSFixture("takeover-tls")
            var taker: Int32?
            defer { if let taker, !processGone(taker) { kill(taker, SIGKILL) } }
            try waitForOffers(1, log: f.proxy.child.stderrPath)
            #expect(try f.curlTLS("a.test", paths: ["/"]).body.contains("hello from a"))

            f.proxy.child.signal(SIGUSR2)
            let next = try waitForTakeover(from: f.proxy.pid, log: f.proxy.child.stderrPath)
            taker = next
            #expect(f.proxy.child.waitExit(timeout: .seconds(15)) == 0)
            let h1 = try f.curlTLS("a.test", paths: ["/"])
            #expect(h1.exitStatus == 0 && h1.body.contains("hello from a"), "\(h1.stderr)")
            let h2 = try curl("https://b.test:\(f.port)/", ["--http2", "--cacert", f.pki.caFile, "--resolve", "b.test:\(f.port):127.0.0.1"],
                              extra: ["%{http_version}"], dir: f.dir)
            #expect(h2.exitStatus == 0 && h2.body.contains("hello from a") && h2.written.first == "2", "\(h2)")
            #expect(try f.presentedName(serverName: "b.test") == "b.test")
            kill(next, SIGTERM)
            try waitFor("the new process to exit", timeout: .seconds(15)) { processGone(next) }
        }
    }
}
