// The HTTP/2 server session, driven the way H2Downstream drives it.

// @testable: H2HeaderBlock's deallocate() is internal (see the report on its leak).
@testable import YardHTTP2
import YardIO

enum H2Target {
    static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    /// The client preface, then the input as frames in pieces (the first byte picks their
    /// size). After each piece: events are read (every field and DATA range touched),
    /// requests answered 200 with their body consumed, output drained.
    static func server(_ bytes: UnsafeRawBufferPointer) {
        let session = H2Session()
        var out = ByteBuffer(capacity: 64 * 1024)
        defer { out.deallocate() }
        var events: [H2Event] = []
        var block = H2HeaderBlock()
        defer { block.deallocate() }
        var now: Int64 = 1_000

        func feed(_ piece: UnsafeRawBufferPointer) -> Bool {
            now += 7
            guard session.receive(piece, nowMs: now) == .ok else { return false }
            session.takeEvents(into: &events)
            var sum = 0
            for event in events {
                switch event {
                case .request(let stream, let fields, let endStream):
                    for i in fields {
                        let field = session.field(i)
                        sum &+= session.name(field).count &+ session.value(field).count
                    }
                    block.removeAll()
                    block.add(name: "content-type", value: UnsafeRawBufferPointer(start: nil, count: 0))
                    if endStream || stream % 2 == 1 { _ = session.submitResponse(stream: stream, status: 200, headers: &block, body: nil) }
                case .trailers(_, let fields):
                    for i in fields { sum &+= session.value(session.field(i)).count }
                case .data(let stream, let range):
                    sum &+= session.data(range).count
                    session.consume(stream: stream, count: range.count)
                case .reset(let stream, _):
                    sum &+= session.isOpen(stream) ? 1 : 0
                default:
                    break
                }
            }
            // As H2Downstream does after every read: a header block straddling two pieces
            // must survive it (Tests/Fixtures/fuzz/crashes/h2-server-split-header-block,
            // fixed in H2Session.clearStores).
            session.clearStores()
            out.clear()
            return session.send(into: &out)
        }

        let prefaceOK = preface.withUnsafeBytes { feed($0) }
        guard prefaceOK else { fatalError("the session refused the client preface") }
        let size = bytes.isEmpty ? 1 : Int(bytes[0]) % 97 + 1
        var offset = bytes.isEmpty ? 0 : 1
        while offset < bytes.count {
            let n = min(size, bytes.count - offset)
            guard feed(UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + n)])) else { break }
            offset += n
        }
        session.clearStores()
        session.announceShutdown()
        out.clear()
        _ = session.send(into: &out)
        session.terminate(code: 0)
        out.clear()
        _ = session.send(into: &out)
    }
}
