#if canImport(Glibc)
import Glibc
#endif
import Testing
import YardIO

/// Descriptors over unix SOCK_SEQPACKET sockets (the takeover's transport), within this
/// process: a listener under an abstract name or a file, a client, and one accepted peer.
@Suite struct FileDescriptorPassingTests {
    /// A connected pair through `listen(at:)`: (client, accepted).
    private func connectedPair(_ path: String) throws -> (client: Int32, server: Int32, listener: Int32) {
        let listener = try FileDescriptorPassing.listen(at: path)
        let client = try FileDescriptorPassing.connect(to: path)
        let server = try FileDescriptorPassing.accept(listener)
        return (client, server, listener)
    }

    private func uniqueName() -> String { "@switchyard-fdpass-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))" }

    @Test func aDescriptorSentArrivesAsAWorkingCopyWithItsMessage() throws {
        let (client, server, listener) = try connectedPair(uniqueName())
        defer { close(client); close(server); close(listener) }
        var ends: [Int32] = [0, 0]
        #expect(pipe(&ends) == 0)
        defer { close(ends[0]) }
        try FileDescriptorPassing.send(server, bytes: Array("the write end".utf8), descriptors: [ends[1]])
        close(ends[1])

        let message = try #require(try FileDescriptorPassing.receive(client))
        #expect(String(decoding: message.bytes, as: UTF8.self) == "the write end")
        #expect(message.descriptors.count == 1)
        let copy = message.descriptors[0]
        #expect(fcntl(copy, F_GETFD) & FD_CLOEXEC != 0, "received descriptors are close-on-exec")
        #expect(write(copy, "hi", 2) == 2)
        close(copy)
        var read = [UInt8](repeating: 0, count: 8)
        #expect(Glibc.read(ends[0], &read, 8) == 2)
        #expect(Array(read.prefix(2)) == Array("hi".utf8))
    }

    @Test func messageBoundariesHoldAndAClosedPeerReadsAsNil() throws {
        let (client, server, listener) = try connectedPair(uniqueName())
        defer { close(client); close(listener) }
        try FileDescriptorPassing.send(server, bytes: [1, 2, 3])
        try FileDescriptorPassing.send(server, bytes: [4])
        close(server)
        #expect(try FileDescriptorPassing.receive(client)?.bytes == [1, 2, 3])
        #expect(try FileDescriptorPassing.receive(client)?.bytes == [4])
        #expect(try FileDescriptorPassing.receive(client) == nil)
    }

    @Test func aMessageLongerThanTheBufferIsAnErrorAndItsDescriptorsAreClosed() throws {
        let (client, server, listener) = try connectedPair(uniqueName())
        defer { close(client); close(server); close(listener) }
        var ends: [Int32] = [0, 0]
        #expect(pipe(&ends) == 0)
        defer { close(ends[0]); close(ends[1]) }
        try FileDescriptorPassing.send(server, bytes: [UInt8](repeating: 7, count: 100), descriptors: [ends[1]])
        #expect(throws: IOError(call: "recvmsg", errno: EMSGSIZE)) { _ = try FileDescriptorPassing.receive(client, capacity: 10) }
    }

    @Test func thePeerIsThisProcessAndUser() throws {
        let (client, server, listener) = try connectedPair(uniqueName())
        defer { close(client); close(server); close(listener) }
        let peer = try FileDescriptorPassing.peer(client)
        #expect(peer.pid == getpid())
        #expect(peer.uid == geteuid())
    }

    @Test func aSocketFileIsOnlyForItsOwnerAndReplacesAnOlderOne() throws {
        var template = Array("/tmp/switchyard-fdpass-XXXXXX".utf8CString)
        let directory = try #require(mkdtemp(&template).map { String(cString: $0) })
        let path = directory + "/offer.sock"
        defer { unlink(path); rmdir(directory) }
        let first = try FileDescriptorPassing.listen(at: path)
        defer { close(first) }
        let second = try FileDescriptorPassing.listen(at: path)
        defer { close(second) }
        var status = stat()
        #expect(stat(path, &status) == 0)
        #expect(status.st_mode & 0o777 == 0o600)
        // The name now reaches the second listener.
        let client = try FileDescriptorPassing.connect(to: path)
        defer { close(client) }
        let accepted = try FileDescriptorPassing.accept(second)
        close(accepted)
    }

    @Test func nothingListeningIsConnectionRefusedOrNoSuchFile() {
        #expect(throws: IOError(call: "connect", errno: ECONNREFUSED)) { _ = try FileDescriptorPassing.connect(to: uniqueName()) }
        #expect(throws: IOError(call: "connect", errno: ENOENT)) { _ = try FileDescriptorPassing.connect(to: "/tmp/switchyard-no-such-\(getpid()).sock") }
        #expect(FileDescriptorPassing.unixAddress("/" + String(repeating: "x", count: 200)) == nil)
    }
}
