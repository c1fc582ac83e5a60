#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
import YardTestSupport

/// A WebSocket origin for the wss tests: echoes every message prefixed with `NAME:`;
/// `bye` makes it close with code 4000 (the upstream ends the conversation).
private let wssOriginSource = #"""
import asyncio, sys
import websockets
NAME = sys.argv[1]
async def echo(ws):
    async for message in ws:
        if message == "bye":
            await ws.close(4000, "origin says bye")
            return
        await ws.send(("%s:" % NAME).encode() + message if isinstance(message, bytes) else "%s:%s" % (NAME, message))
async def main():
    async with websockets.serve(echo, "127.0.0.1", 0, max_size=None) as server:
        port = server.sockets[0].getsockname()[1]
        print("listening 127.0.0.1:%d" % port, flush=True)
        await asyncio.Future()
asyncio.run(main())
"""#

/// A wss client trusting the test CA: `COUNT` round trips, a 2 MiB binary message both
/// ways, then a close from the client (`client`) or a `bye` the origin answers by closing
/// (`origin`). Prints one line per finding; exits non-zero on any mismatch.
private let wssClientSource = #"""
import asyncio, ssl, sys, os
import websockets
URL, CA, COUNT, CLOSER = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
async def main():
    ctx = ssl.create_default_context(cafile=CA)
    async with websockets.connect(URL, ssl=ctx, server_hostname="a.test", open_timeout=5, max_size=None) as ws:
        for i in range(COUNT):
            await ws.send("m%d" % i)
            answer = await asyncio.wait_for(ws.recv(), 5)
            assert answer.endswith(":m%d" % i), answer
        print("echoed", COUNT, "prefix", answer.split(":")[0], flush=True)
        big = os.urandom(2 << 20)
        await ws.send(big)
        back = await asyncio.wait_for(ws.recv(), 20)
        assert back.endswith(big) and len(back) > len(big), len(back)
        print("large", len(big), "intact", flush=True)
        if CLOSER == "origin":
            await ws.send("bye")
            try:
                await asyncio.wait_for(ws.recv(), 5)
                print("no close from origin", flush=True)
                sys.exit(3)
            except websockets.ConnectionClosed as closed:
                print("origin closed", closed.rcvd.code if closed.rcvd else None, flush=True)
        elif CLOSER == "hold":
            try:
                await asyncio.wait_for(ws.recv(), 20)
            except websockets.ConnectionClosed:
                print("held closed", flush=True)
        else:
            await ws.close(1000, "client done")
            print("client closed", ws.close_code, flush=True)
asyncio.run(main())
"""#

extension Integration {
    /// WebSocket over a TLS listener (the tunnel relays through OpenSSL in user space),
    /// and h2 over TLS with real clients (nghttp, h2load, curl).
    @Suite(.serialized) struct TLSStreams {
        static func tlsBlock(_ pki: TestCertificates) -> String {
            "certificates:\n  - {cert: \(pki.a.certificate), key: \(pki.a.key)}\nalpn: [h2, http/1.1]"
        }

        static func wssOrigin(_ name: String, dir: ScratchDir) throws -> (ChildProcess, UInt16) {
            let script = dir.file("wss-origin.py")
            try Data(wssOriginSource.utf8).write(to: URL(fileURLWithPath: script))
            let child = try ChildProcess("/usr/bin/env", ["python3", script, name], dir: dir, label: "wss-\(name)")
            return (child, try child.waitForListeningPort())
        }

        static func wssClient(port: UInt16, ca: String, count: Int, closer: String, dir: ScratchDir) throws -> ChildProcess {
            let script = dir.file("wss-client.py")
            try Data(wssClientSource.utf8).write(to: URL(fileURLWithPath: script))
            return try ChildProcess("/usr/bin/env", ["python3", script, "wss://127.0.0.1:\(port)/chat", ca, "\(count)", closer],
                                    dir: dir, label: "wss-client-\(closer)")
        }

        static func blueOnly(_ port: UInt16) -> String {
            "services:\n  shop:\n    active: blue\n    health: {type: none}\n    instances:\n"
                + "      - {address: 127.0.0.1, port: \(port), track: blue}\n"
        }

        /// A TLS proxy (admin on) in front of the blue/green services of `services`.
        static func proxy(dir: ScratchDir, pki: TestCertificates, services: String, flipDrain: String? = nil) throws -> TrafficProxy {
            try dir.write("services.yml", services)
            var spec = ProxySpec(workers: 1, tls: tlsBlock(pki))
            if let flipDrain { spec.timeouts["flip_drain"] = flipDrain }
            spec.extraYAML = "admin:\n  address: 127.0.0.1:0\n"
            return try TrafficProxy(dir: dir, configText: spec.yaml)
        }

        @Test(.timeLimit(.minutes(1)))
        func wssEchoesManyMessagesAndALargeOneBothWaysAndTheClientCloses() throws {
            let dir = try ScratchDir("wss-echo")
            let pki = try TestCertificates()
            let (blue, bluePort) = try Self.wssOrigin("blue-1", dir: dir)
            defer { blue.stop() }
            let proxy = try Self.proxy(dir: dir, pki: pki, services: Self.blueOnly(bluePort))
            defer { proxy.stop() }
            let client = try Self.wssClient(port: proxy.port, ca: pki.caFile, count: 500, closer: "client", dir: dir)
            defer { client.stop() }
            #expect(client.waitExit(timeout: .seconds(40)) == 0, "client: \(client.stdoutText) \(client.stderrText.suffix(1500))")
            #expect(client.stdoutText.contains("echoed 500 prefix blue-1"), "\(client.stdoutText)")
            #expect(client.stdoutText.contains("large 2097152 intact"), "\(client.stdoutText)")
            #expect(client.stdoutText.contains("client closed 1000"), "\(client.stdoutText)")
        }

        @Test(.timeLimit(.minutes(1)))
        func wssEndsCleanlyWhenTheOriginCloses() throws {
            let dir = try ScratchDir("wss-origin-close")
            let pki = try TestCertificates()
            let (blue, bluePort) = try Self.wssOrigin("blue-1", dir: dir)
            defer { blue.stop() }
            let proxy = try Self.proxy(dir: dir, pki: pki, services: Self.blueOnly(bluePort))
            defer { proxy.stop() }
            let client = try Self.wssClient(port: proxy.port, ca: pki.caFile, count: 20, closer: "origin", dir: dir)
            defer { client.stop() }
            #expect(client.waitExit(timeout: .seconds(30)) == 0, "client: \(client.stdoutText) \(client.stderrText.suffix(1500))")
            #expect(client.stdoutText.contains("origin closed 4000"), "\(client.stdoutText)")
        }

        /// The plain WebSocket flip test's client, over wss: the held connection stays on
        /// blue through a flip until flip_drain; a fresh one goes to green.
        @Test(.timeLimit(.minutes(1)))
        func aWssTunnelStaysOnItsTrackThroughAFlipUntilTheFlipDrain() throws {
            let dir = try ScratchDir("wss-flip")
            let pki = try TestCertificates()
            let (blue, bluePort) = try Self.wssOrigin("blue-1", dir: dir)
            let (green, greenPort) = try Self.wssOrigin("green-1", dir: dir)
            defer { blue.stop(); green.stop() }
            let proxy = try Self.proxy(dir: dir, pki: pki, services: WebSocket.services(blue: bluePort, green: greenPort), flipDrain: "1500ms")
            defer { proxy.stop() }
            let held = try Self.wssClient(port: proxy.port, ca: pki.caFile, count: 1, closer: "hold", dir: dir)
            defer { held.stop() }
            try waitFor("the held wss connection's first answers", timeout: .seconds(15)) {
                held.stdoutText.contains("large 2097152 intact")
            }
            #expect(try proxy.cli(["flip", "shop", "--to", "green"]).status == 0)
            let fresh = try Self.wssClient(port: proxy.port, ca: pki.caFile, count: 3, closer: "client", dir: dir)
            defer { fresh.stop() }
            #expect(fresh.waitExit(timeout: .seconds(15)) == 0, "\(fresh.stderrText.suffix(800))")
            #expect(fresh.stdoutText.contains("echoed 3 prefix green-1"), "\(fresh.stdoutText)")
            // The held client waits after the large message ("hold"): the flip drain
            // ends its tunnel.
            #expect(held.waitExit(timeout: .seconds(10)) == 0, "\(held.stderrText.suffix(800))")
            #expect(held.stdoutText.contains("held closed"), "the flip drain closed the held tunnel: \(held.stdoutText)")
            #expect(held.stdoutText.contains("echoed 1 prefix blue-1"), "\(held.stdoutText)")
        }

        // MARK: h2 over TLS

        @Test(.timeLimit(.minutes(2)))
        func nghttpAndH2loadOverTLSGetEveryStreamAndLargeBodies() throws {
            let f = try TLSFixture("tls-h2-clients")
            // Several streams on one connection, one of them 6 MiB, and an upload.
            let upload = f.dir.file("upload.bin")
            try Data((0..<(3 << 20)).map { UInt8(ascii: "a") + UInt8(truncatingIfNeeded: ($0 &* 7) % 26) }).write(to: URL(fileURLWithPath: upload))
            let base = "https://127.0.0.1:\(f.port)"
            let many = try runCommand("/usr/bin/nghttp", ["-v", "-n", "-t", "30", "\(base)/one", "\(base)/two", "\(base)/size/6291456", "\(base)/three"],
                                      dir: f.dir, label: "nghttp-streams", timeout: .seconds(40))
            #expect(many.status == 0, "\(many.stderr.suffix(800))")
            #expect(many.stdout.contains("h2 negotiated") || many.stdout.contains("The negotiated protocol: h2"), "\(many.stdout.prefix(1500))")
            let statuses = many.stdout.components(separatedBy: ":status: 200").count - 1
            #expect(statuses == 4, "four streams answered 200: \(statuses)")
            let sized = try runCommand("/usr/bin/nghttp", ["-t", "30", "\(base)/size/6291456"], dir: f.dir, label: "nghttp-size", timeout: .seconds(40))
            #expect(sized.status == 0 && sized.stdout.utf8.count == 6_291_456, "\(sized.stdout.utf8.count) bytes: \(sized.stderr.suffix(400))")
            let echoed = try runCommand("/usr/bin/nghttp", ["-t", "30", "-d", upload, "\(base)/echo"], dir: f.dir, label: "nghttp-upload", timeout: .seconds(40))
            #expect(echoed.status == 0 && echoed.stdout.utf8.count == 3 << 20, "echoed \(echoed.stdout.utf8.count) bytes: \(echoed.stderr.suffix(400))")
            // Load: every request succeeds.
            let load = try runCommand("/usr/bin/h2load", ["-n", "2000", "-c", "4", "-m", "10", "\(base)/one"], dir: f.dir, label: "h2load-tls", timeout: .seconds(60))
            #expect(load.status == 0, "\(load.stderr.suffix(800))")
            #expect(load.stdout.contains("2000 total") && load.stdout.contains("2000 succeeded, 0 failed, 0 errored"), "\(load.stdout.suffix(1500))")
            #expect(load.stdout.contains("h2"), "\(load.stdout.prefix(600))")
        }
    }
}
