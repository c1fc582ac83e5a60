import Testing
@testable import YardDiscovery

// MARK: - Building answers byte by byte

private func u16(_ value: Int) -> [UInt8] { [UInt8(value >> 8 & 0xFF), UInt8(value & 0xFF)] }
private func u32(_ value: Int) -> [UInt8] { u16(value >> 16) + u16(value & 0xFFFF) }

private func name(_ text: String) -> [UInt8] {
    text.split(separator: ".").flatMap { [UInt8($0.utf8.count)] + Array($0.utf8) } + [0]
}

private func header(id: Int = 0x1234, flags: Int = 0x8180, questions: Int = 1, answers: Int, additional: Int = 0) -> [UInt8] {
    u16(id) + u16(flags) + u16(questions) + u16(answers) + u16(0) + u16(additional)
}

private func record(_ owner: [UInt8], type: Int, ttl: Int = 30, _ data: [UInt8]) -> [UInt8] {
    owner + u16(type) + u16(1) + u32(ttl) + u16(data.count) + data
}

/// An answer for `tasks.web` A with two records, the second owner compressed to the question.
private let twoARecords: [UInt8] = {
    var bytes = header(answers: 2)
    bytes += name("tasks.web") + u16(1) + u16(1)  // question at offset 12
    bytes += record([0xC0, 12], type: 1, ttl: 5, [127, 0, 0, 11])
    bytes += record([0xC0, 12], type: 1, ttl: 7, [127, 0, 0, 12])
    return bytes
}()

// MARK: - Encoding

@Suite struct DNSQueryEncoding {
    @Test func aQueryHasTheHeaderTheLabelsAndTheType() {
        let bytes = DNSMessage.query(id: 0xBEEF, name: "tasks.web.", type: .srv)
        #expect(bytes == [0xBE, 0xEF, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0] + name("tasks.web") + [0, 33, 0, 1])
    }

    @Test func emptyOrOverlongLabelsAreRefused() {
        #expect(DNSMessage.query(id: 1, name: "a..b", type: .a) == nil)
        #expect(DNSMessage.query(id: 1, name: String(repeating: "x", count: 64) + ".com", type: .a) == nil)
    }
}

// MARK: - Decoding

@Suite struct DNSAnswerDecoding {
    @Test func aRecordsWithCompressedOwnersDecode() throws {
        let response = try DNSMessage.decode(twoARecords)
        #expect(response.id == 0x1234)
        #expect(response.responseCode == 0 && !response.truncated)
        #expect(response.answers.map(\.data) == [.address("127.0.0.11"), .address("127.0.0.12")])
        #expect(response.answers.map(\.name) == ["tasks.web", "tasks.web"])
        #expect(response.answers.map(\.ttl) == [5, 7])
    }

    @Test func srvRecordsWithCompressedTargetsAndAdditionalAddressesDecode() throws {
        var bytes = header(answers: 1, additional: 1)
        bytes += name("_web._tcp.service.consul") + u16(33) + u16(1)  // offset 12
        let targetOffset = bytes.count + 12 + 6  // answer owner (2) + type/class/ttl/len (10) + prio/weight/port (6)
        bytes += record([0xC0, 12], type: 33, u16(1) + u16(5) + u16(8080) + [4] + Array("web1".utf8) + [0xC0, 22])
        bytes += record([0xC0, UInt8(targetOffset)], type: 1, [10, 0, 0, 1])
        let response = try DNSMessage.decode(bytes)
        #expect(response.answers.first?.data == .srv(priority: 1, weight: 5, port: 8080, target: "web1.service.consul"))
        #expect(response.additional.first?.name == "web1.service.consul")
        #expect(response.additional.first?.data == .address("10.0.0.1"))
    }

    @Test func aaaaRecordsDecodeToTheirTextForm() throws {
        var bytes = header(answers: 1)
        bytes += name("v6.test") + u16(28) + u16(1)
        bytes += record([0xC0, 12], type: 28, [UInt8](repeating: 0, count: 15) + [1])
        #expect(try DNSMessage.decode(bytes).answers.first?.data == .address("::1"))
    }

    @Test func namesAreLowerCased() throws {
        var bytes = header(answers: 1)
        bytes += name("Tasks.WEB") + u16(1) + u16(1)
        bytes += record([0xC0, 12], type: 1, [1, 2, 3, 4])
        #expect(try DNSMessage.decode(bytes).answers.first?.name == "tasks.web")
    }

    @Test func nxdomainAndTheTruncationFlagAreReported() throws {
        var nx = header(flags: 0x8183, answers: 0)
        nx += name("nope.test") + u16(1) + u16(1)
        #expect(try DNSMessage.decode(nx).responseCode == 3)
        var cut = twoARecords
        cut[2] |= 0x02  // TC
        cut.removeLast(6)  // the UDP answer stops mid-record
        let response = try DNSMessage.decode(cut)
        #expect(response.truncated)
        #expect(response.answers.count == 1)
    }
}

// MARK: - Malformed answers

@Suite struct DNSMalformedAnswers {
    @Test func everyTruncationOfAnAnswerIsAnErrorNeverACrash() {
        for length in 0..<twoARecords.count {
            #expect(throws: DNSDecodeError.self, "cut at \(length)") { try DNSMessage.decode(Array(twoARecords.prefix(length))) }
        }
    }

    @Test func aPointerToItselfIsALoop() {
        var bytes = header(answers: 1)
        bytes += name("a.test") + u16(1) + u16(1)
        let at = bytes.count
        bytes += record([0xC0, UInt8(at)], type: 1, [1, 2, 3, 4])
        #expect(throws: DNSDecodeError.pointerLoop(at: at)) { try DNSMessage.decode(bytes) }
    }

    @Test func twoPointersToEachOtherAreALoop() {
        // The question's name is "x" then a pointer to the answer owner, which points back.
        var bytes = header(answers: 1)
        bytes += [1, UInt8(ascii: "x"), 0xC0, 20] + u16(1) + u16(1)  // offset 12..; answer owner at 20
        bytes += record([0xC0, 12], type: 1, [1, 2, 3, 4])
        #expect(throws: DNSDecodeError.self) { try DNSMessage.decode(bytes) }
    }

    @Test func aForwardPointerIsRefused() {
        var bytes = header(answers: 1)
        bytes += [0xC0, 40] + u16(1) + u16(1)
        bytes += record([0xC0, 12], type: 1, [1, 2, 3, 4])
        bytes += [UInt8](repeating: 0, count: 30)
        #expect(throws: DNSDecodeError.pointerLoop(at: 12)) { try DNSMessage.decode(bytes) }
    }

    @Test func reservedLabelBitsAreRefused() {
        var bytes = header(answers: 0)
        bytes += [0x40, 1, 0] + u16(1) + u16(1)
        #expect(throws: DNSDecodeError.labelTooLong(at: 12)) { try DNSMessage.decode(bytes) }
    }

    @Test func anARecordWithAFiveByteBodyIsRefused() {
        var bytes = header(answers: 1)
        bytes += name("a.test") + u16(1) + u16(1)
        bytes += record([0xC0, 12], type: 1, [1, 2, 3, 4, 5])
        #expect(throws: DNSDecodeError.badRecordLength(type: 1, length: 5)) { try DNSMessage.decode(bytes) }
    }

    @Test func aNameLongerThan255BytesIsRefused() {
        var bytes = header(answers: 0)
        for _ in 0..<5 { bytes += [63] + [UInt8](repeating: UInt8(ascii: "a"), count: 63) }
        bytes += [0] + u16(1) + u16(1)
        #expect(throws: DNSDecodeError.nameTooLong) { try DNSMessage.decode(bytes) }
    }

    @Test func aQueryIsNotAnAnswer() {
        let query = DNSMessage.query(id: 7, name: "tasks.web", type: .a)!
        #expect(throws: DNSDecodeError.notAResponse) { try DNSMessage.decode(query) }
    }

    @Test func randomBytesNeverCrashTheDecoder() {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        for _ in 0..<5_000 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            let length = Int(state >> 58)
            var bytes = twoARecords
            for index in 0..<min(length, bytes.count) {
                state = state &* 6_364_136_223_846_793_005 &+ 1
                if state >> 61 == 0 { bytes[index] = UInt8(truncatingIfNeeded: state >> 32) }
            }
            _ = try? DNSMessage.decode(bytes)
        }
    }
}
