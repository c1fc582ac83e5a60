// A head the proxy wrote itself is split, not parsed (the HTTP/2 upstream path): the split
// must find what the parser finds in the same text — method, target, every field's name and
// value, the head's length — and never read past a buffer that is not such a head.

import Testing
import YardHTTP

@Suite struct OwnRequestHeadTests {
    private func split(_ text: String) -> (method: String, target: String, fields: [String], length: Int)? {
        let bytes = Array(text.utf8)
        return bytes.withUnsafeBytes { raw in
            guard var head = OwnRequestHead(raw) else { return nil }
            var fields: [String] = []
            while let (name, value) = head.nextField() {
                fields.append(String(decoding: name.bytes(in: raw), as: UTF8.self) + "=" + String(decoding: value.bytes(in: raw), as: UTF8.self))
            }
            return (String(decoding: head.method.bytes(in: raw), as: UTF8.self), String(decoding: head.target.bytes(in: raw), as: UTF8.self),
                    fields, head.headLength)
        }
    }

    private func parsed(_ text: String) -> (method: String, target: String, fields: [String], length: Int)? {
        let bytes = Array(text.utf8)
        let storage = UnsafeMutablePointer<HeaderField>.allocate(capacity: 100)
        defer { storage.deallocate() }
        storage.initialize(repeating: .empty, count: 100)
        var head = RequestHead()
        var scanFrom = 0
        return bytes.withUnsafeBytes { raw in
            guard parseRequestHead(raw, limits: HTTPLimits(), head: &head, fields: storage, scanFrom: &scanFrom) == .complete else { return nil }
            let fields = (0 ..< head.headerCount).map {
                String(decoding: storage[$0].name.bytes(in: raw), as: UTF8.self) + "=" + String(decoding: storage[$0].value.bytes(in: raw), as: UTF8.self)
            }
            return (String(decoding: head.methodSpan.bytes(in: raw), as: UTF8.self), String(decoding: head.targetSpan.bytes(in: raw), as: UTF8.self),
                    fields, head.headLength)
        }
    }

    static let heads = [
        "GET /a?b=1 HTTP/1.1\r\nHost: shop\r\nX-Forwarded-For: 10.0.0.1, 127.0.0.1\r\nVia: 1.1 switchyard\r\n\r\n",
        "POST /p HTTP/1.1\r\nhost: h\r\ncontent-length: 12\r\nx-empty:\r\nx-ows: \t spaced value \t\r\n\r\n",
        "POST /grpc.Svc/M HTTP/1.1\r\nHost: h:8080\r\nTransfer-Encoding: chunked\r\nTE: trailers\r\ncontent-type: application/grpc\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nX-Time: 12:30:00\r\n\r\n",
    ]

    @Test(arguments: 0 ..< heads.count)
    func theSplitFindsWhatTheParserFinds(index: Int) {
        let text = Self.heads[index]
        let own = split(text), expected = parsed(text)
        #expect(own != nil)
        #expect(own?.method == expected?.method)
        #expect(own?.target == expected?.target)
        #expect(own?.fields == expected?.fields)
        #expect(own?.length == expected?.length)
    }

    @Test func aHeadFollowedByBodyBytesEndsAtItsBlankLine() {
        let own = split("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nGET ")
        #expect(own?.length == 47)
        #expect(own?.fields == ["Host=h", "Content-Length=4"])
    }

    @Test func bytesThatAreNotSuchAHeadAreRefused() {
        for text in ["", "GET / HTTP/1.1\r\n", "GET / HTTP/1.1\r\nHost: h\r\n", "GET / HTTP/1.1\r\nHost: h\r\n\r",
                     "GET/ HTTP/1.1\r\n\r\n", "GET / HTTP/1.1\nHost: h\r\n\r\n", "GET / HTTP/1.1\r\nno colon\r\n\r\n",
                     "GET / HTTP/1.1\r\n: v\r\n\r\n", " / HTTP/1.1\r\n\r\n", "GET  HTTP/1.1\r\n\r\n"] {
            #expect(split(text) == nil, "\(text.debugDescription)")
        }
    }
}
