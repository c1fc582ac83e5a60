#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
@testable import YardControlHTTP

/// A server on 127.0.0.1 port 0 that answers every connection with the same bytes (after
/// reading the request head) and closes it: a control-plane server that misbehaves.
private final class CannedServer: Sendable {
    let port: UInt16
    private let fd: Int32

    init(_ response: [UInt8]) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard fd >= 0, bound, listen(fd, 16) == 0 else { throw ControlHTTPError("canned server: cannot listen") }
        self.fd = fd
        self.port = UInt16(bigEndian: address.sin_port)
        Thread.detachNewThread {
            while true {
                let client = accept(fd, nil, nil)
                // The listening fd is closed here, once accept failed, never by `stop()`: a
                // number closed under a blocked accept could be reused by the next test's
                // server, and this thread would answer its connections.
                guard client >= 0 else { close(fd); return }
                var head: [UInt8] = []
                var byte: UInt8 = 0
                while !head.suffix(4).elementsEqual([13, 10, 13, 10]), recv(client, &byte, 1, 0) == 1 { head.append(byte) }
                var offset = 0
                while offset < response.count {
                    let n = response.withUnsafeBytes { send(client, $0.baseAddress! + offset, response.count - offset, Int32(MSG_NOSIGNAL)) }
                    guard n > 0 else { break }
                    offset += n
                }
                close(client)
            }
        }
    }

    /// Stops accepting (the accept thread returns).
    func stop() { shutdown(fd, Int32(SHUT_RDWR)) }
}

private func answer(_ response: String, maxBodyBytes: Int = ControlHTTPClient.defaultMaxBodyBytes) throws -> Result<ControlHTTPResponse, ControlHTTPError> {
    let server = try CannedServer(Array(response.utf8))
    defer { server.stop() }
    var client = ControlHTTPClient(target: .tcp(host: "127.0.0.1", port: server.port), timeout: .seconds(5))
    client.maxBodyBytes = maxBodyBytes
    do { return .success(try client.send("GET", "/v1/kv")) } catch { return .failure(error) }
}

private func failure(_ result: Result<ControlHTTPResponse, ControlHTTPError>) -> String? {
    if case .failure(let error) = result { return error.description }
    return nil
}

@Suite struct ControlHTTPClientAgainstABadServer {
    @Test func aNegativeContentLengthIsAnErrorNotACrash() throws {
        let message = failure(try answer("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n{}"))
        #expect(message?.contains("invalid Content-Length") == true, "\(message ?? "no error")")
    }

    @Test func aContentLengthThatIsNotDigitsIsAnError() throws {
        for value in ["+5", "5x", "", "0x10", "99999999999999999999999"] {
            let message = failure(try answer("HTTP/1.1 200 OK\r\nContent-Length: \(value)\r\n\r\nhello"))
            #expect(message?.contains("Content-Length") == true, "\(value): \(message ?? "no error")")
        }
    }

    @Test func conflictingContentLengthsAreRefusedAndEqualOnesAccepted() throws {
        let message = failure(try answer("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\nhello"))
        #expect(message?.contains("Content-Length") == true, "\(message ?? "no error")")
        let same = try answer("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\nhello").get()
        #expect(same.text == "hello")
    }

    @Test func aContentLengthOverTheBodyCapIsRefusedBeforeReadingTheBody() throws {
        let message = failure(try answer("HTTP/1.1 200 OK\r\nContent-Length: 1000000000000\r\n\r\nabc"))
        #expect(message?.contains("over the 64 MiB cap") == true, "\(message ?? "no error")")
    }

    @Test func chunkedAndUntilCloseBodiesStopAtTheCap() throws {
        let chunk = String(repeating: "x", count: 600)
        let chunked = failure(try answer("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n258\r\n\(chunk)\r\n258\r\n\(chunk)\r\n0\r\n\r\n", maxBodyBytes: 1_000))
        #expect(chunked?.contains("over the 1000-byte cap") == true, "\(chunked ?? "no error")")
        let untilClose = failure(try answer("HTTP/1.1 200 OK\r\n\r\n\(chunk)\(chunk)", maxBodyBytes: 1_000))
        #expect(untilClose?.contains("over the 1000-byte cap") == true, "\(untilClose ?? "no error")")
        let fits = try answer("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n258\r\n\(chunk)\r\n0\r\n\r\n", maxBodyBytes: 1_000).get()
        #expect(fits.body.count == 600)
    }

    @Test func aChunkSizeThatIsNotHexDigitsIsAnError() throws {
        for size in ["-5", "+5", " ", "fffffffffffffffff"] {
            let message = failure(try answer("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\(size)\r\nhello\r\n0\r\n\r\n"))
            #expect(message?.contains("bad chunked body") == true, "\(size): \(message ?? "no error")")
        }
    }

    @Test func aStreamLineLongerThanTheCapIsAnError() throws {
        let server = try CannedServer(Array(("HTTP/1.1 200 OK\r\n\r\n" + String(repeating: "y", count: 5_000)).utf8))
        defer { server.stop() }
        var client = ControlHTTPClient(target: .tcp(host: "127.0.0.1", port: server.port), timeout: .seconds(5))
        client.maxBodyBytes = 1_000
        let stream = try client.openStream("GET", "/events")
        #expect(throws: ControlHTTPError.self) { _ = try stream.nextLine(timeout: .seconds(5)) }
    }

    @Test func aHugeTimeoutDoesNotOverflowTheDeadline() {
        let deadline = Deadline(after: .seconds(Int64.max))
        #expect(deadline.pollTimeout > 0)
    }
}
