import Foundation
import Testing

/// A WebSocket origin (Python `websockets`): answers every message with `NAME:message`.
private let websocketOriginSource = #"""
import asyncio, sys
import websockets
NAME = sys.argv[1]
async def echo(ws):
    async for message in ws:
        await ws.send("%s:%s" % (NAME, message))
async def main():
    async with websockets.serve(echo, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        print("listening 127.0.0.1:%d" % port, flush=True)
        await asyncio.Future()
asyncio.run(main())
"""#

/// A WebSocket client: `count` round trips, printing each answer; with `hold`, it keeps
/// sending one message every 100 ms until the connection closes, then prints how long it
/// lived after the first answer.
private let websocketClientSource = #"""
import asyncio, sys, time
import websockets
URL, COUNT, MODE = sys.argv[1], int(sys.argv[2]), sys.argv[3]
async def main():
    async with websockets.connect(URL, open_timeout=5) as ws:
        for i in range(COUNT):
            await ws.send("m%d" % i)
            print("answer", await asyncio.wait_for(ws.recv(), 5), flush=True)
        if MODE != "hold":
            return
        start = time.monotonic()
        try:
            i = 0
            while time.monotonic() - start < 20:
                await ws.send("h%d" % i)
                print("held", await asyncio.wait_for(ws.recv(), 5), flush=True)
                i += 1
                await asyncio.sleep(0.1)
        except websockets.ConnectionClosed:
            pass
        print("closed after %.2f" % (time.monotonic() - start), flush=True)
asyncio.run(main())
"""#

extension Integration {
    /// HTTP/1.1 Upgrade (WebSocket) through the proxy: the 101 turns the connection into a
    /// tunnel; a long-lived WebSocket stays on its track through a flip until flip_drain.
    @Suite(.serialized) struct WebSocket {
        static func origin(_ name: String, dir: ScratchDir) throws -> (ChildProcess, UInt16) {
            let script = dir.file("ws-origin.py")
            if !FileManager.default.fileExists(atPath: script) {
                try Data(websocketOriginSource.utf8).write(to: URL(fileURLWithPath: script))
            }
            let child = try ChildProcess("/usr/bin/env", ["python3", script, name], dir: dir, label: "ws-\(name)")
            return (child, try child.waitForListeningPort())
        }

        static func client(_ url: String, count: Int, hold: Bool, dir: ScratchDir, label: String) throws -> ChildProcess {
            let script = dir.file("ws-client.py")
            if !FileManager.default.fileExists(atPath: script) {
                try Data(websocketClientSource.utf8).write(to: URL(fileURLWithPath: script))
            }
            return try ChildProcess("/usr/bin/env", ["python3", script, url, "\(count)", hold ? "hold" : "once"], dir: dir, label: label)
        }

        static func services(blue: UInt16, green: UInt16) -> String {
            "services:\n  shop:\n    active: blue\n    health: {type: none}\n    instances:\n"
                + "      - {address: 127.0.0.1, port: \(blue), track: blue}\n"
                + "      - {address: 127.0.0.1, port: \(green), track: green}\n"
        }

        @Test(.timeLimit(.minutes(1)))
        func messagesGoBothWaysThroughTheUpgradedConnection() throws {
            let dir = try ScratchDir("ws-echo")
            let (blue, bluePort) = try Self.origin("blue-1", dir: dir)
            let (green, greenPort) = try Self.origin("green-1", dir: dir)
            defer { blue.stop(); green.stop() }
            let proxy = try TrafficProxy(dir: dir, services: Self.services(blue: bluePort, green: greenPort))
            defer { proxy.stop() }
            let client = try Self.client("ws://127.0.0.1:\(proxy.port)/chat", count: 200, hold: false, dir: dir, label: "ws-client")
            defer { client.stop() }
            #expect(client.waitExit(timeout: .seconds(20)) == 0, "client: \(client.stderrText.suffix(1500))")
            let answers = client.stdoutText.split(separator: "\n").filter { $0.hasPrefix("answer ") }
            #expect(answers.count == 200)
            #expect(answers.first == "answer blue-1:m0" && answers.last == "answer blue-1:m199")
            // Plain requests on the same listener still work.
            let plain = try rawExchange(port: proxy.port, "GET / HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n")
            #expect(plain.status == 400 || plain.status == 426 || plain.status == 200 || plain.status == 404, "\(plain.status)")
        }

        @Test(.timeLimit(.minutes(1)))
        func aWebSocketStaysOnItsTrackThroughAFlipUntilTheFlipDrain() throws {
            let dir = try ScratchDir("ws-flip")
            let (blue, bluePort) = try Self.origin("blue-1", dir: dir)
            let (green, greenPort) = try Self.origin("green-1", dir: dir)
            defer { blue.stop(); green.stop() }
            try dir.write("services.yml", Self.services(blue: bluePort, green: greenPort))
            var spec = ProxySpec()
            spec.timeouts["flip_drain"] = "1500ms"
            spec.extraYAML = "admin:\n  address: 127.0.0.1:0\n"
            let proxy = try TrafficProxy(dir: dir, configText: spec.yaml)
            defer { proxy.stop() }
            let held = try Self.client("ws://127.0.0.1:\(proxy.port)/chat", count: 1, hold: true, dir: dir, label: "ws-held")
            defer { held.stop() }
            try waitFor("the held WebSocket's first answer", timeout: .seconds(10)) {
                held.stdoutText.contains("answer blue-1:m0")
            }
            #expect(try proxy.cli(["flip", "shop", "--to", "green"]).status == 0)
            let fresh = try Self.client("ws://127.0.0.1:\(proxy.port)/chat", count: 3, hold: false, dir: dir, label: "ws-fresh")
            defer { fresh.stop() }
            #expect(fresh.waitExit(timeout: .seconds(10)) == 0, "\(fresh.stderrText.suffix(800))")
            #expect(fresh.stdoutText.contains("answer green-1:m2"), "\(fresh.stdoutText)")
            #expect(held.waitExit(timeout: .seconds(15)) == 0, "\(held.stderrText.suffix(800))")
            let lines = held.stdoutText.split(separator: "\n")
            let heldAnswers = lines.filter { $0.hasPrefix("held ") }
            #expect(!heldAnswers.isEmpty && heldAnswers.allSatisfy { $0.hasPrefix("held blue-1:") }, "\(heldAnswers)")
            let lived = lines.last.flatMap { Double($0.split(separator: " ").last ?? "") } ?? 0
            #expect(lived > 1.0 && lived < 4.0, "the held WebSocket lived \(lived) s after the flip (flip_drain 1.5 s): \(held.stdoutText)")
        }
    }
}
