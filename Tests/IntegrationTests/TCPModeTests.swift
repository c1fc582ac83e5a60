import Foundation
import Testing

/// A TCP origin for tunnel tests: greets each connection with its name and a newline, then
/// echoes every byte back; when the client half-closes, it finishes echoing and closes.
private let echoOriginSource = #"""
import socket, sys, threading
NAME = sys.argv[1].encode()
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", 0))
server.listen(256)
print("listening 127.0.0.1:%d" % server.getsockname()[1], flush=True)
def serve(conn):
    try:
        conn.sendall(NAME + b"\n")
        while True:
            data = conn.recv(65536)
            if not data:
                break
            conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    finally:
        conn.close()
while True:
    conn, _ = server.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""#

/// A running TCP echo origin.
final class EchoOrigin {
    let child: ChildProcess
    let port: UInt16

    init(_ name: String, dir: ScratchDir) throws {
        let script = dir.file("echo-origin.py")
        if !FileManager.default.fileExists(atPath: script) {
            try Data(echoOriginSource.utf8).write(to: URL(fileURLWithPath: script))
        }
        child = try ChildProcess("/usr/bin/env", ["python3", script, name], dir: dir, label: "echo-\(name)")
        port = try child.waitForListeningPort()
    }

    func stop() { child.stop() }
}

extension Integration {
    /// `protocol: tcp` listeners: raw bytes to one service's endpoints, with its tracks,
    /// blue/green flips and exact canary share applied per connection.
    @Suite(.serialized) struct TCPMode {
        static func start(dir: ScratchDir, services: String, flipDrain: String = "1s", workers: Int = 1) throws -> TrafficProxy {
            // TrafficProxy writes an HTTP listener; add the TCP one before the admin section.
            try dir.write("services.yml", services)
            let config = """
            listeners:
              - name: web
                address: 127.0.0.1:0
              - name: db
                address: 127.0.0.1:0
                protocol: tcp
                service: shop
            discovery:
              provider: file
              file: services.yml
            workers: \(workers)
            timeouts:
              flip_drain: \(flipDrain)
              drain: 2s
            admin:
              address: 127.0.0.1:0

            """
            return try TrafficProxy(dir: dir, configText: config)
        }

        /// The port of the TCP listener (the second `listening` address).
        static func tcpPort(_ proxy: TrafficProxy) throws -> UInt16 {
            let line = proxy.child.stdoutText.split(separator: "\n").first { $0.hasPrefix("listening ") } ?? ""
            let addresses = line.split(separator: " ").dropFirst()
            guard addresses.count >= 2, let port = addresses.dropFirst().first?.split(separator: ":").last.flatMap({ UInt16($0) }) else {
                throw HarnessError("no second listener in '\(line)'")
            }
            return port
        }

        /// Connects and reads the origin's greeting: which backend got the connection.
        static func connect(_ port: UInt16) throws -> (RawConnection, String) {
            let connection = try RawConnection(port: port)
            guard connection.readUntil(contains: "\n", timeout: .seconds(5)) else {
                throw HarnessError("no greeting through the tunnel")
            }
            let name = String(decoding: connection.buffered, as: UTF8.self).split(separator: "\n").first.map(String.init) ?? ""
            return (connection, name)
        }

        @Test(.timeLimit(.minutes(1)))
        func bytesGoBothWaysUntouchedAndHalfCloseIsPassedOn() throws {
            let dir = try ScratchDir("tcp-bytes")
            let blue = try EchoOrigin("blue-1", dir: dir)
            defer { blue.stop() }
            let proxy = try Self.start(dir: dir, services: blueGreenServices(blue: [blue.port], green: []))
            defer { proxy.stop() }
            let (connection, name) = try Self.connect(try Self.tcpPort(proxy))
            #expect(name == "blue-1")
            var payload = [UInt8](repeating: 0, count: 4 << 20)
            for i in payload.indices { payload[i] = UInt8(truncatingIfNeeded: i &* 2_654_435_761 >> 13) }
            // In 64 KiB rounds, each echoed before the next is sent (no thread needed).
            let greeting = "blue-1\n".utf8.count
            for start in stride(from: 0, to: payload.count, by: 65_536) {
                try connection.send(Array(payload[start..<min(start + 65_536, payload.count)]))
                let want = greeting + min(start + 65_536, payload.count)
                let deadline = ContinuousClock.now + .seconds(10)
                while connection.buffered.count < want, case .bytes = connection.readSome(deadline: deadline) {}
            }
            connection.shutdownWrite()
            #expect(connection.readUntilClosed(timeout: .seconds(30)), "the tunnel did not close after the echo")
            let echoed = Array(connection.buffered.dropFirst("blue-1\n".utf8.count))
            #expect(echoed.count == payload.count)
            #expect(echoed == payload)
        }

        /// A flip sends new connections to green; a connection open on blue keeps working
        /// after the flip and is closed when `flip_drain` (1 s) has passed.
        @Test(.timeLimit(.minutes(1)))
        func flipMovesNewConnectionsAndOldOnesEndAfterTheFlipDrain() throws {
            let dir = try ScratchDir("tcp-flip")
            let blue = try EchoOrigin("blue-1", dir: dir)
            let green = try EchoOrigin("green-1", dir: dir)
            defer { blue.stop(); green.stop() }
            let proxy = try Self.start(dir: dir, services: blueGreenServices(blue: [blue.port], green: [green.port]))
            defer { proxy.stop() }
            let port = try Self.tcpPort(proxy)
            let (old, oldName) = try Self.connect(port)
            #expect(oldName == "blue-1")
            let flip = try proxy.cli(["flip", "shop", "--to", "green"])
            #expect(flip.status == 0, "\(flip.stderr)")
            let flipped = ContinuousClock.now
            let (_, newName) = try Self.connect(port)
            #expect(newName == "green-1")
            try old.send("still here\n")
            #expect(old.readUntil(contains: "still here", timeout: .seconds(2)), "the old tunnel stopped at the flip")
            #expect(old.readUntilClosed(timeout: .seconds(5)), "the old tunnel outlived flip_drain")
            let lived = ContinuousClock.now - flipped
            #expect(lived >= .milliseconds(900) && lived < .seconds(3), "closed after \(lived)")
        }

        /// At 10 %, 200 connections put exactly 20 on the canary (one worker: the split is
        /// exact per worker over every 1000).
        @Test(.timeLimit(.minutes(1)))
        func canaryShareAppliesPerConnection() throws {
            let dir = try ScratchDir("tcp-canary")
            let blue = try EchoOrigin("blue-1", dir: dir)
            let green = try EchoOrigin("green-1", dir: dir)
            defer { blue.stop(); green.stop() }
            let proxy = try Self.start(dir: dir, services: blueGreenServices(blue: [blue.port], green: [green.port]))
            defer { proxy.stop() }
            #expect(try proxy.cli(["canary", "set", "shop", "10"]).status == 0)
            let port = try Self.tcpPort(proxy)
            var names: [String] = []
            for _ in 0..<200 {
                let (connection, name) = try Self.connect(port)
                names.append(name)
                connection.shutdownWrite()
                _ = connection.readUntilClosed(timeout: .seconds(2))
            }
            let canary = names.filter { $0 == "green-1" }.count
            #expect(abs(canary - 20) <= 1, "\(canary) of 200 connections on the canary at 10 %")
        }

        /// An endpoint that refuses connections is skipped: every client connection lands.
        @Test(.timeLimit(.minutes(1)))
        func aRefusingEndpointIsSkipped() throws {
            let dir = try ScratchDir("tcp-refused")
            let blue = try EchoOrigin("blue-1", dir: dir)
            defer { blue.stop() }
            let dead = try closedPort()
            let proxy = try Self.start(dir: dir, services: blueGreenServices(blue: [dead, blue.port], green: []))
            defer { proxy.stop() }
            let port = try Self.tcpPort(proxy)
            for _ in 0..<10 {
                let (_, name) = try Self.connect(port)
                #expect(name == "blue-1")
            }
        }
    }
}
