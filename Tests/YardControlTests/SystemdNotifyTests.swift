#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import YardControl
import YardTestSupport

/// sd_notify(3) without libsystemd: what reaches a unix datagram socket, and that a bad
/// `NOTIFY_SOCKET` is refused with a clear error instead of trapping.
@Suite(.timeLimit(.minutes(1)))
struct SystemdNotifyTests {
    @Test func readyReachesASocketFile() throws {
        let socket = try NotifySocket(abstract: false)
        try SystemdNotify.send(SystemdNotify.Message.ready.text, to: socket.address)
        #expect(socket.receive(deadline: .seconds(2)) == "READY=1")
    }

    @Test func stoppingReachesAnAbstractSocketNamedWithAnAt() throws {
        let socket = try NotifySocket(abstract: true)
        #expect(socket.address.hasPrefix("@"))
        try SystemdNotify.send(SystemdNotify.Message.stopping.text, to: socket.address)
        #expect(socket.receive(deadline: .seconds(2)) == "STOPPING=1")
    }

    @Test func reloadingCarriesTheMonotonicClockInMicroseconds() throws {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let before = UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec / 1000)
        let lines = SystemdNotify.Message.reloading.text.split(separator: "\n")
        #expect(lines.first == "RELOADING=1")
        let stamp = lines.dropFirst().first.flatMap { $0.hasPrefix("MONOTONIC_USEC=") ? UInt64($0.dropFirst(15)) : nil }
        #expect(stamp.map { $0 >= before && $0 < before + 5_000_000 } == true, "\(lines)")
    }

    @Test(arguments: ["", "relative/notify.sock", "notify", "@", "/" + String(repeating: "x", count: 200), "@" + String(repeating: "y", count: 200), "/tmp/a\u{0}b"])
    func anAddressThatIsNotAUnixSocketNameIsRefused(_ address: String) {
        if address == "@" {
            // "@" alone is the empty abstract name: valid to the kernel, but nobody listens.
            #expect(throws: SystemdNotify.Failure.self) { try SystemdNotify.send("READY=1", to: address) }
            return
        }
        #expect(throws: SystemdNotify.Failure.badAddress(address)) { try SystemdNotify.send("READY=1", to: address) }
    }

    @Test func aSocketNobodyListensOnIsAnErrorNotATrap() throws {
        let dir = try TempDir(prefix: "switchyard-notify-gone")
        #expect(throws: SystemdNotify.Failure.self) { try SystemdNotify.send("READY=1", to: dir.file("nobody.sock")) }
    }
}
