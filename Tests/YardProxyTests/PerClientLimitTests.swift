// Who counts as one client for `limits.max_connections_per_client`.

import Testing
import YardIO
@testable import YardProxy

@Suite struct PerClientLimitTests {
    /// How many of `addresses` (one connection each, in order) get in under a limit of 2.
    private func admitted(_ addresses: [String]) -> Int {
        let table = PerClientLimit(limit: 2)
        var tickets: [PerClientTicket] = []
        for address in addresses {
            guard let peer = SocketAddress(host: address, port: 40_000) else {
                Issue.record("bad test address \(address)")
                continue
            }
            if let ticket = table.enter(peer) { tickets.append(ticket) }
        }
        return tickets.count
    }

    @Test func anIPv4AddressIsOneClient() {
        #expect(admitted(["192.0.2.7", "192.0.2.7", "192.0.2.7"]) == 2)
        #expect(admitted(["192.0.2.7", "192.0.2.8", "192.0.2.9"]) == 3)
    }

    @Test func anIPv6ClientRotatingAddressesInsideItsSlash64IsOneClient() {
        #expect(admitted(["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:abcd::3"]) == 2)
        #expect(admitted(["2001:db8:1:2::1", "2001:db8:1:3::1", "2001:db8:1:4::1"]) == 3, "other /64s are other clients")
    }

    @Test func ipv4MappedAddressesCountPerIPv4Address() {
        // All mapped addresses share their first 64 bits: they must not become one client.
        #expect(admitted(["::ffff:192.0.2.7", "::ffff:192.0.2.8", "::ffff:192.0.2.9"]) == 3)
        #expect(admitted(["::ffff:192.0.2.7", "::ffff:192.0.2.7", "::ffff:192.0.2.7"]) == 2)
    }
}
