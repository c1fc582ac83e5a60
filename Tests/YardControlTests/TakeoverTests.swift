#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import Testing
@testable import YardControl
import YardIO
import YardModel
import YardProxy

/// The takeover exchange between an offering process and a new one, in one process over a
/// real unix socket: which sockets travel, when the old side hands over, and what a
/// refusal or a vanished new process leaves behind.
@Suite(.timeLimit(.minutes(1)))
struct TakeoverExchangeTests {
    private func uniqueName() -> String { "@switchyard-takeover-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))" }

    /// A real listening TCP socket on 127.0.0.1 (port chosen by the kernel), as a worker has.
    private func tcpListener() throws -> ListeningSocket {
        let address = try #require(SocketAddress(host: "127.0.0.1", port: 0))
        let fd = try Socket.listen(on: address, reusePort: true)
        return ListeningSocket(name: "web", address: try Socket.localAddress(fd), fd: fd)
    }

    @Test func theNewProcessGetsEverySocketAndTheOldHandsOverOnlyWhenToldReady() throws {
        let listener = try tcpListener()
        defer { close(listener.fd) }
        let handedOver = Mutex<[Int32]>([])
        let offer = try TakeoverOffer(
            path: uniqueName(),
            sockets: { .success([listener, listener].map { ListeningSocket(name: $0.name, address: $0.address, fd: dup($0.fd)) }) },
            handOver: { pid in handedOver.withLock { $0.append(pid) } })
        offer.start()
        defer { offer.stop() }

        let client = try #require(try TakeoverClient.connect(path: offer.path))
        #expect(client.oldPID == getpid())
        let received = try client.receiveSockets()
        defer { for socket in received { close(socket.fd) } }
        #expect(received.map(\.name) == ["web", "web"])
        #expect(received.allSatisfy { $0.address == listener.address })
        // The same socket: its bound address comes back from the received descriptor.
        #expect(try received.map { try Socket.localAddress($0.fd) } == [listener.address, listener.address])
        #expect(handedOver.withLock { $0 }.isEmpty, "nothing changes before the new process is ready")

        try client.confirmReady()
        #expect(handedOver.withLock { $0 } == [getpid()])
        // The name is free for the new process's own offer once it heard "draining".
        let next = try TakeoverOffer(path: offer.path, sockets: { .success([]) }, handOver: { _ in })
        next.stop()
    }

    @Test func aNewProcessThatGoesAwayBeforeReadyChangesNothing() throws {
        let listener = try tcpListener()
        defer { close(listener.fd) }
        let handedOver = Atomic<Int>(0)
        let served = Atomic<Int>(0)
        let offer = try TakeoverOffer(
            path: uniqueName(),
            sockets: {
                served.wrappingAdd(1, ordering: .relaxed)
                return .success([ListeningSocket(name: "web", address: listener.address, fd: dup(listener.fd))])
            },
            handOver: { _ in handedOver.wrappingAdd(1, ordering: .relaxed) })
        offer.start()
        defer { offer.stop() }

        do {
            let client = try #require(try TakeoverClient.connect(path: offer.path))
            let received = try client.receiveSockets()
            for socket in received { close(socket.fd) }
        }  // the client closes here, as a process that failed to start does
        // The offer serves the next one as before.
        let again = try #require(try TakeoverClient.connect(path: offer.path))
        let second = try again.receiveSockets()
        for socket in second { close(socket.fd) }
        #expect(served.load(ordering: .relaxed) == 2)
        #expect(handedOver.load(ordering: .relaxed) == 0)
    }

    @Test func aStoppingProcessRefusesWithItsReason() throws {
        let offer = try TakeoverOffer(path: uniqueName(), sockets: { .failure(.refused("pid 1 is stopping")) }, handOver: { _ in })
        offer.start()
        defer { offer.stop() }
        let client = try #require(try TakeoverClient.connect(path: offer.path))
        do {
            _ = try client.receiveSockets()
            Issue.record("a stopping process handed its sockets over")
        } catch {
            #expect("\(error)".contains("refused by the running process") && "\(error)".contains("is stopping"), "\(error)")
        }
    }

    /// A process SIGUSR2 started takes over from its parent only, never from another
    /// process that happens to offer at the same name.
    @Test func aClientExpectingAnotherPidRefusesTheOffer() throws {
        let offer = try TakeoverOffer(path: uniqueName(), sockets: { .success([]) }, handOver: { _ in })
        offer.start()
        defer { offer.stop() }
        do {
            _ = try TakeoverClient.connect(path: offer.path, expecting: getpid() &+ 1)
            Issue.record("connected to a process it did not expect")
        } catch {
            #expect("\(error)".contains("not pid \(getpid() &+ 1)"), "\(error)")
        }
        #expect(try TakeoverClient.connect(path: offer.path, expecting: getpid()) != nil)
    }

    @Test func nothingOfferingIsNoTakeoverNotAnError() throws {
        #expect(try TakeoverClient.connect(path: uniqueName()) == nil)
        #expect(try TakeoverClient.connect(path: "/tmp/switchyard-no-offer-\(getpid()).takeover") == nil)
    }

    @Test func aListenerIsMatchedByAddressOrForPortZeroByNameAndHost() throws {
        let bound = ListeningSocket(name: "web", address: try #require(SocketAddress(host: "127.0.0.1", port: 8080)), fd: -1)
        #expect(bound.serves(name: "other", host: "127.0.0.1", port: 8080))
        #expect(!bound.serves(name: "web", host: "127.0.0.1", port: 8081))
        #expect(!bound.serves(name: "web", host: "0.0.0.0", port: 8080))
        #expect(bound.serves(name: "web", host: "127.0.0.1", port: 0))
        #expect(!bound.serves(name: "api", host: "127.0.0.1", port: 0))
        #expect(!bound.serves(name: "web", host: "::1", port: 0))
        #expect(!bound.serves(name: "web", host: "not an address", port: 0))
    }

    @Test func theDefaultSocketFollowsTheRuntimeDirectoryAndTheConfigPath() {
        let abstract = TakeoverSocket.defaultPath(configPath: "/etc/switchyard/switchyard.yml", environment: [:])
        #expect(abstract.hasPrefix("@switchyard-") && abstract.hasSuffix(".takeover"))
        #expect(abstract != TakeoverSocket.defaultPath(configPath: "/etc/switchyard/other.yml", environment: [:]))
        let file = TakeoverSocket.defaultPath(configPath: "/etc/switchyard/switchyard.yml", environment: ["RUNTIME_DIRECTORY": "/run/switchyard:/run/other"])
        #expect(file == "/run/switchyard/" + abstract.dropFirst())
        let xdg = TakeoverSocket.defaultPath(configPath: "/etc/switchyard/switchyard.yml", environment: ["XDG_RUNTIME_DIR": "/run/user/1000"])
        #expect(xdg.hasPrefix("/run/user/1000/switchyard-"))
        // A directory too long for a unix socket name: the abstract name instead.
        let long = TakeoverSocket.defaultPath(configPath: "/x.yml", environment: ["RUNTIME_DIRECTORY": "/" + String(repeating: "d", count: 120)])
        #expect(long.hasPrefix("@"))
    }

    @Test func theRelaunchCommandIsTheSameRunWithTakeover() {
        let command = TakeoverSettings.relaunchCommand(arguments: ["/usr/local/bin/switchyard", "run", "--config", "a.yml", "--takeover", "--workers", "2"])
        #expect(command == ["/usr/local/bin/switchyard", "run", "--config", "a.yml", "--workers", "2", "--takeover"])
        #expect(TakeoverSettings.relaunchCommand(arguments: []) == nil)
    }
}
