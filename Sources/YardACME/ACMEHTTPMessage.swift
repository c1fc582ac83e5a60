/// An `https://` (or, for tests behind a trusted proxy, `http://`) URL split for a
/// request. Pure. Threading: a value.
public struct ACMEURL: Sendable, Equatable, CustomStringConvertible {
    public var secure: Bool
    public var host: String
    public var port: UInt16
    /// Path and query, at least "/".
    public var target: String

    /// Parses `scheme://host[:port][/path?query]`; IPv6 hosts in brackets. No user info.
    public init(_ text: String) throws(ACMEError) {
        var rest = Substring(text)
        if rest.hasPrefix("https://") {
            secure = true
            rest = rest.dropFirst(8)
        } else if rest.hasPrefix("http://") {
            secure = false
            rest = rest.dropFirst(7)
        } else {
            throw ACMEError.badRequest("'\(text)' is not an https:// URL")
        }
        let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" } ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        let path = rest[authorityEnd...]
        target = path.isEmpty ? "/" : (path.hasPrefix("?") ? "/" + path : String(path))
        guard !authority.contains("@") else { throw ACMEError.badRequest("'\(text)': user info in a URL is not supported") }
        let hostPart: Substring
        var portText: Substring = ""
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { throw ACMEError.badRequest("'\(text)': unclosed '['") }
            hostPart = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if after.hasPrefix(":") { portText = after.dropFirst() } else if !after.isEmpty {
                throw ACMEError.badRequest("'\(text)': unexpected '\(after)' after the address")
            }
        } else if let colon = authority.lastIndex(of: ":") {
            hostPart = authority[..<colon]
            portText = authority[authority.index(after: colon)...]
        } else {
            hostPart = authority
        }
        guard !hostPart.isEmpty, hostPart.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw ACMEError.badRequest("'\(text)': no host, or a host with spaces or non-ASCII")
        }
        host = String(hostPart)
        if portText.isEmpty {
            port = secure ? 443 : 80
        } else {
            guard let parsed = UInt16(portText), parsed > 0 else { throw ACMEError.badRequest("'\(text)': bad port '\(portText)'") }
            port = parsed
        }
        guard target.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw ACMEError.badRequest("'\(text)': the path has spaces or non-ASCII")
        }
    }

    /// The Host header's value.
    var hostHeader: String {
        let bracketed = host.contains(":") ? "[\(host)]" : host
        return port == (secure ? 443 : 80) ? bracketed : "\(bracketed):\(port)"
    }

    public var description: String { "\(secure ? "https" : "http")://\(hostHeader)\(target)" }
}

/// A complete HTTP/1.1 response read off a `Connection: close` exchange.
/// Threading: a value.
public struct ACMEHTTPResponse: Sendable, Equatable {
    public var status: Int
    /// Header names lower-cased, in arrival order.
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    public static func == (a: ACMEHTTPResponse, b: ACMEHTTPResponse) -> Bool {
        a.status == b.status && a.body == b.body && a.headers.map(\.name) == b.headers.map(\.name)
            && a.headers.map(\.value) == b.headers.map(\.value)
    }

    /// The first value of header `name` (case-insensitive).
    public func header(_ name: String) -> String? {
        let wanted = name.lowercased()
        return headers.first { $0.name == wanted }?.value
    }

    /// Every `Link` target with relation `rel` (RFC 8288), e.g. `up` or `alternate`.
    public func links(rel: String) -> [String] {
        headers.filter { $0.name == "link" }.flatMap { $0.value.split(separator: ",") }.compactMap { entry in
            let parts = entry.split(separator: ";").map { $0.trimmingSpaces() }
            guard let first = parts.first, first.hasPrefix("<"), first.hasSuffix(">"),
                  parts.dropFirst().contains(where: { $0 == "rel=\"\(rel)\"" || $0 == "rel=\(rel)" }) else { return nil }
            return String(first.dropFirst().dropLast())
        }
    }

    /// Parses everything the server sent before closing. The body is delimited by
    /// Content-Length, chunked transfer coding, or the close; `headRequest` means no body.
    /// Refuses (never traps on) malformed or oversized input.
    public static func parse(_ bytes: [UInt8], headRequest: Bool = false, maximumBody: Int) throws(ACMEError) -> ACMEHTTPResponse {
        let operation = "reading the response"
        guard let headEnd = find([13, 10, 13, 10], in: bytes, from: 0) else {
            throw ACMEError.malformedResponse(operation: operation, reason: "the connection closed before the end of the headers")
        }
        let lines = bytes[..<headEnd].split(separator: 10, omittingEmptySubsequences: false).map {
            String(decoding: $0.last == 13 ? $0.dropLast() : $0, as: UTF8.self)
        }
        let statusLine = lines.first ?? ""
        let statusParts = statusLine.split(separator: " ", maxSplits: 2)
        guard statusParts.count >= 2, statusParts[0].hasPrefix("HTTP/1."), statusParts[1].count == 3,
              let status = Int(statusParts[1]), (100...599).contains(status) else {
            throw ACMEError.malformedResponse(operation: operation, reason: "bad status line '\(statusLine.prefix(80))'")
        }
        var headers: [(name: String, value: String)] = []
        for line in lines.dropFirst() where !line.isEmpty {
            guard let colon = line.firstIndex(of: ":") else {
                throw ACMEError.malformedResponse(operation: operation, reason: "bad header line '\(line.prefix(80))'")
            }
            headers.append((line[..<colon].lowercased().trimmingSpaces(), line[line.index(after: colon)...].trimmingSpaces()))
        }
        var response = ACMEHTTPResponse(status: status, headers: headers, body: [])
        let rest = bytes[(headEnd + 4)...]
        if headRequest || status == 204 || status == 304 || status < 200 { return response }
        if response.header("transfer-encoding")?.lowercased().contains("chunked") == true {
            response.body = try dechunk(Array(rest), maximumBody: maximumBody)
        } else if let lengthText = response.header("content-length") {
            guard let length = Int(lengthText), length >= 0 else {
                throw ACMEError.malformedResponse(operation: operation, reason: "bad Content-Length '\(lengthText.prefix(40))'")
            }
            guard length <= maximumBody else {
                throw ACMEError.malformedResponse(operation: operation, reason: "a \(length)-byte body is over the \(maximumBody)-byte limit")
            }
            guard rest.count >= length else {
                throw ACMEError.malformedResponse(operation: operation, reason: "the body ended after \(rest.count) of \(length) bytes")
            }
            response.body = Array(rest.prefix(length))
        } else {
            guard rest.count <= maximumBody else {
                throw ACMEError.malformedResponse(operation: operation, reason: "the body is over the \(maximumBody)-byte limit")
            }
            response.body = Array(rest)
        }
        return response
    }

    private static func dechunk(_ bytes: [UInt8], maximumBody: Int) throws(ACMEError) -> [UInt8] {
        let operation = "reading a chunked body"
        var out: [UInt8] = []
        var index = 0
        while true {
            guard let lineEnd = find([13, 10], in: bytes, from: index) else {
                throw ACMEError.malformedResponse(operation: operation, reason: "a chunk size line is cut short")
            }
            let sizeText = String(decoding: bytes[index..<lineEnd], as: UTF8.self).split(separator: ";").first.map(String.init) ?? ""
            guard sizeText.count <= 8, let size = Int(sizeText.trimmingSpaces(), radix: 16), size >= 0 else {
                throw ACMEError.malformedResponse(operation: operation, reason: "bad chunk size '\(sizeText.prefix(20))'")
            }
            index = lineEnd + 2
            if size == 0 { return out }
            guard size <= maximumBody - out.count else {
                throw ACMEError.malformedResponse(operation: operation, reason: "the body is over the \(maximumBody)-byte limit")
            }
            guard bytes.count - index >= size + 2 else {
                throw ACMEError.malformedResponse(operation: operation, reason: "a chunk is cut short")
            }
            out.append(contentsOf: bytes[index..<(index + size)])
            index += size + 2
        }
    }

    static func find(_ needle: [UInt8], in bytes: [UInt8], from start: Int) -> Int? {
        guard needle.count <= bytes.count, start <= bytes.count - needle.count else { return nil }
        var index = start
        while index <= bytes.count - needle.count {
            if bytes[index] == needle[0], Array(bytes[index..<(index + needle.count)]) == needle { return index }
            index += 1
        }
        return nil
    }
}

extension StringProtocol {
    func trimmingSpaces() -> String {
        String(drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed())
    }
}
