import Testing
@testable import YardHealth

/// The two protobuf messages of grpc.health.v1, by hand, byte for byte.
@Suite struct GRPCHealthCheckTests {
    @Test func requestNamesTheServiceInField1() {
        #expect(GRPCHealthCheck.requestMessage(service: "") == [0, 0, 0, 0, 0])
        #expect(GRPCHealthCheck.requestMessage(service: "shop.Cart") == [0, 0, 0, 0, 11, 0x0A, 9] + Array("shop.Cart".utf8))
        let long = String(repeating: "x", count: 200)
        #expect(Array(GRPCHealthCheck.requestMessage(service: long).prefix(8)) == [0, 0, 0, 0, 203, 0x0A, 0xC8, 0x01])
    }

    @Test func responseStatusIsField1AndDefaultsToUnknown() {
        #expect(GRPCHealthCheck.servingStatus([0, 0, 0, 0, 2, 0x08, 1]) == 1)
        #expect(GRPCHealthCheck.servingStatus([0, 0, 0, 0, 2, 0x08, 2]) == 2)
        #expect(GRPCHealthCheck.servingStatus([0, 0, 0, 0, 0]) == 0, "an empty message is UNKNOWN")
        // Unknown fields (a string in 2, a fixed32 in 3) are skipped.
        #expect(GRPCHealthCheck.servingStatus([0, 0, 0, 0, 11, 0x12, 2, 0x41, 0x42, 0x1D, 1, 2, 3, 4, 0x08, 1]) == 1)
    }

    @Test func malformedResponsesAreNotTrustedAndDoNotTrap() {
        #expect(GRPCHealthCheck.servingStatus([]) == nil)
        #expect(GRPCHealthCheck.servingStatus([1, 0, 0, 0, 2, 0x08, 1]) == nil, "compressed")
        #expect(GRPCHealthCheck.servingStatus([0, 0, 0, 0, 9, 0x08, 1]) == nil, "length beyond the bytes")
        #expect(GRPCHealthCheck.servingStatus([0, 0, 0, 0, 2, 0x08, 0x80]) == nil, "truncated varint")
        #expect(GRPCHealthCheck.servingStatus([0, 0, 0, 0, 3, 0x12, 0x7F, 0]) == nil, "a field longer than the message")
        #expect(GRPCHealthCheck.servingStatus([0, 0, 0, 0, 2, 0x0D, 1]) == nil, "a fixed32 cut short")
        #expect(GRPCHealthCheck.servingStatus([0, 0, 0, 0, 2, 0x0F, 1]) == nil, "wire type 7")
        let endless = [UInt8](repeating: 0xFF, count: 20)
        #expect(GRPCHealthCheck.servingStatus([0, 0, 0, 0, 21, 0x08] + endless) == nil, "a varint over 64 bits")
        #expect(GRPCHealthCheck.statusName(3) == "SERVICE_UNKNOWN" && GRPCHealthCheck.statusName(9) == "status 9")
    }
}
