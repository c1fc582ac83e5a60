// A small DNS wire codec (RFC 1035, RFC 3596 AAAA, RFC 2782 SRV): encodes one question,
// decodes an answer. Enough for service discovery, and strict: every length is checked
// against the bytes that are there, and compression pointers may only point backwards,
// so a malformed or hostile answer is an error, never a crash or a loop.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Types

/// The record types the provider asks for or reads.
public enum DNSRecordType: UInt16, Sendable {
    case a = 1
    case cname = 5
    case aaaa = 28
    case srv = 33
}

/// A decoded resource record's data.
public enum DNSRecordData: Sendable, Equatable {
    /// An IPv4 or IPv6 address, as text (`127.0.0.1`, `::1`).
    case address(String)
    case srv(priority: UInt16, weight: UInt16, port: UInt16, target: String)
    case cname(String)
    /// A type this codec does not interpret.
    case other(type: UInt16)
}

/// One resource record.
public struct DNSRecord: Sendable, Equatable {
    /// Lower-case, without the trailing dot.
    public var name: String
    public var type: UInt16
    public var ttl: UInt32
    public var data: DNSRecordData
}

/// A decoded response.
public struct DNSResponse: Sendable, Equatable {
    public var id: UInt16
    /// TC: the answer did not fit in UDP; ask again over TCP.
    public var truncated: Bool
    /// RCODE: 0 no error, 2 server failure, 3 no such name, 5 refused.
    public var responseCode: UInt8
    public var answers: [DNSRecord]
    public var additional: [DNSRecord]
}

/// Why an answer could not be decoded. The description is for logs and status.
public enum DNSDecodeError: Error, Sendable, Equatable, CustomStringConvertible {
    case truncated(at: Int)
    case notAResponse
    case pointerLoop(at: Int)
    case labelTooLong(at: Int)
    case nameTooLong
    case badRecordLength(type: UInt16, length: Int)

    public var description: String {
        switch self {
        case .truncated(let at): "the answer ends early (at byte \(at))"
        case .notAResponse: "the packet is not a response (QR bit clear)"
        case .pointerLoop(let at): "a name's compression pointer at byte \(at) does not point backwards (a loop or garbage)"
        case .labelTooLong(let at): "a name label at byte \(at) uses reserved length bits"
        case .nameTooLong: "a name is longer than 255 bytes"
        case .badRecordLength(let type, let length): "a type-\(type) record has a \(length)-byte body"
        }
    }
}

// MARK: - Encoding

public enum DNSMessage {
    /// A query for `name` and `type`, recursion desired, no EDNS.
    /// Returns nil when `name` has an empty or over-long label (config validates names).
    public static func query(id: UInt16, name: String, type: DNSRecordType) -> [UInt8]? {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(18 + name.utf8.count)
        append16(&bytes, id)
        append16(&bytes, 0x0100)  // RD
        append16(&bytes, 1)  // QDCOUNT
        append16(&bytes, 0)
        append16(&bytes, 0)
        append16(&bytes, 0)
        let trimmed = name.hasSuffix(".") ? String(name.dropLast()) : name
        guard trimmed.utf8.count <= 253 else { return nil }
        for label in trimmed.split(separator: ".", omittingEmptySubsequences: false) {
            let utf8 = Array(label.utf8)
            guard !utf8.isEmpty, utf8.count <= 63 else { return nil }
            bytes.append(UInt8(utf8.count))
            bytes.append(contentsOf: utf8)
        }
        bytes.append(0)
        append16(&bytes, type.rawValue)
        append16(&bytes, 1)  // IN
        return bytes
    }

    private static func append16(_ bytes: inout [UInt8], _ value: UInt16) {
        bytes.append(UInt8(value >> 8))
        bytes.append(UInt8(value & 0xFF))
    }

    // MARK: Decoding

    /// Decodes a response. Authority records are skipped; unknown types are kept as
    /// `.other`.
    public static func decode(_ bytes: [UInt8]) throws(DNSDecodeError) -> DNSResponse {
        var reader = Reader(bytes: bytes)
        let id = try reader.u16()
        let flags = try reader.u16()
        guard flags & 0x8000 != 0 else { throw .notAResponse }
        let questions = try reader.u16()
        let answerCount = try reader.u16()
        let authorityCount = try reader.u16()
        let additionalCount = try reader.u16()
        for _ in 0..<questions {
            _ = try reader.name()
            try reader.skip(4)
        }
        var answers: [DNSRecord] = []
        var additional: [DNSRecord] = []
        let truncated = flags & 0x0200 != 0
        do {
            for _ in 0..<answerCount { answers.append(try reader.record()) }
            for _ in 0..<authorityCount { _ = try reader.record() }
            for _ in 0..<additionalCount { additional.append(try reader.record()) }
        } catch .truncated(let at) where truncated {
            // A truncated UDP answer may stop mid-record; the caller retries over TCP.
            _ = at
        }
        return DNSResponse(
            id: id, truncated: truncated, responseCode: UInt8(flags & 0x000F), answers: answers, additional: additional)
    }

    /// The question's id in a response (to match answers to queries), if there are two bytes.
    static func id(of bytes: [UInt8]) -> UInt16? {
        bytes.count >= 2 ? UInt16(bytes[0]) << 8 | UInt16(bytes[1]) : nil
    }
}

// MARK: - Reader

/// A cursor over a message. Threading: a value used by one decode.
private struct Reader {
    let bytes: [UInt8]
    var offset = 0

    mutating func u8() throws(DNSDecodeError) -> UInt8 {
        guard offset < bytes.count else { throw .truncated(at: offset) }
        defer { offset += 1 }
        return bytes[offset]
    }

    mutating func u16() throws(DNSDecodeError) -> UInt16 {
        let high = try u8()
        return UInt16(high) << 8 | UInt16(try u8())
    }

    mutating func u32() throws(DNSDecodeError) -> UInt32 {
        let high = try u16()
        return UInt32(high) << 16 | UInt32(try u16())
    }

    mutating func skip(_ count: Int) throws(DNSDecodeError) {
        guard count <= bytes.count - offset else { throw .truncated(at: bytes.count) }
        offset += count
    }

    /// A possibly compressed name at the cursor; the cursor moves past its in-place part.
    ///
    /// Each pointer must point strictly before the pointer itself, and before every
    /// earlier pointer of this name: positions only decrease, so a loop is impossible
    /// and the walk ends within the message's length.
    mutating func name() throws(DNSDecodeError) -> String {
        var labels: [String] = []
        var position = offset
        var length = 0
        var jumped = false
        var lowestPointer = position
        while true {
            guard position < bytes.count else { throw .truncated(at: position) }
            let size = Int(bytes[position])
            switch size & 0xC0 {
            case 0x00:
                if size == 0 {
                    if !jumped { offset = position + 1 }
                    return labels.joined(separator: ".")
                }
                guard position + 1 + size <= bytes.count else { throw .truncated(at: bytes.count) }
                length += size + 1
                guard length <= 255 else { throw .nameTooLong }
                let label = bytes[(position + 1)..<(position + 1 + size)].map { byte -> Character in
                    let scalar = Unicode.Scalar(byte)
                    return Character(("A"..."Z").contains(scalar) ? Unicode.Scalar(byte + 32) : scalar)
                }
                labels.append(String(label))
                position += 1 + size
            case 0xC0:
                guard position + 1 < bytes.count else { throw .truncated(at: bytes.count) }
                let target = (size & 0x3F) << 8 | Int(bytes[position + 1])
                guard target < lowestPointer else { throw .pointerLoop(at: position) }
                if !jumped { offset = position + 2 }
                jumped = true
                lowestPointer = target
                position = target
            default:
                throw .labelTooLong(at: position)
            }
        }
    }

    mutating func record() throws(DNSDecodeError) -> DNSRecord {
        let name = try name()
        let type = try u16()
        _ = try u16()  // class
        let ttl = try u32()
        let length = Int(try u16())
        guard length <= bytes.count - offset else { throw .truncated(at: bytes.count) }
        let end = offset + length
        defer { offset = end }
        let data: DNSRecordData
        switch DNSRecordType(rawValue: type) {
        case .a:
            guard length == 4 else { throw .badRecordLength(type: type, length: length) }
            data = .address(Self.text(family: AF_INET, bytes[offset..<end]))
        case .aaaa:
            guard length == 16 else { throw .badRecordLength(type: type, length: length) }
            data = .address(Self.text(family: AF_INET6, bytes[offset..<end]))
        case .srv:
            guard length >= 7 else { throw .badRecordLength(type: type, length: length) }
            let priority = try u16(), weight = try u16(), port = try u16()
            let target = try self.name()
            guard offset <= end else { throw .badRecordLength(type: type, length: length) }
            data = .srv(priority: priority, weight: weight, port: port, target: target)
        case .cname:
            let target = try self.name()
            guard offset <= end else { throw .badRecordLength(type: type, length: length) }
            data = .cname(target)
        case nil:
            data = .other(type: type)
        }
        return DNSRecord(name: name, type: type, ttl: ttl, data: data)
    }

    /// An address's text form (inet_ntop).
    private static func text(family: Int32, _ raw: ArraySlice<UInt8>) -> String {
        var output = [CChar](repeating: 0, count: 64)
        let bytes = Array(raw)
        let ok = bytes.withUnsafeBytes { source in
            inet_ntop(family, source.baseAddress, &output, socklen_t(output.count)) != nil
        }
        return ok ? String(decoding: output.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) : "?"
    }
}
