#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
import YardTestSupport

extension Integration {
    /// Several replicas on one etcd with `tls.acme` and a `store_key_file`: the order lease
    /// is renewed while an order runs, a holder killed mid-order is replaced by another
    /// replica that finishes the name, and the whole fleet is one ACME account.
    @Suite(.serialized) struct ACMEFleet {
        typealias Setup = ACMEProxy.Setup

        /// Stands between pebble's HTTP-01 validation and the proxies: pebble's DNS points
        /// the name at 127.0.0.3, where this relay holds each validation request `delay`
        /// seconds before passing it to the replicas on 127.0.0.1 (any replica answers, from
        /// the store). An order then takes at least `delay`: longer than a short lease.
        final class SlowValidation {
            let child: ChildProcess

            init(port: UInt16, delay: Double, dir: ScratchDir) throws {
                try dir.write("slow-validation.py", Self.source)
                child = try ChildProcess("/usr/bin/env", ["python3", dir.file("slow-validation.py"), String(port), String(delay)],
                                         dir: dir, label: "slow-validation")
                // Generous: python's start on a loaded machine.
                _ = try child.waitForListeningPort(timeout: .seconds(30))
            }

            deinit { child.stop() }

            /// Validation requests received so far.
            var received: Int { child.stdoutText.components(separatedBy: "\nvalidation ").count - 1 }

            static let source = #"""
                import socket, sys, threading, time

                PORT, DELAY = int(sys.argv[1]), float(sys.argv[2])

                def relay(client):
                    try:
                        data = b""
                        while b"\r\n\r\n" not in data:
                            chunk = client.recv(4096)
                            if not chunk:
                                return
                            data += chunk
                        print("validation " + data.split(b"\r\n")[0].decode("latin-1"), flush=True)
                        time.sleep(DELAY)
                        upstream = socket.create_connection(("127.0.0.1", PORT), timeout=10)
                        upstream.sendall(data)
                        while True:
                            chunk = upstream.recv(65536)
                            if not chunk:
                                break
                            client.sendall(chunk)
                        upstream.close()
                    finally:
                        client.close()

                server = socket.socket()
                server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                server.bind(("127.0.0.3", PORT))
                server.listen(16)
                print("\nlistening 127.0.0.3:%d" % PORT, flush=True)
                while True:
                    conn, _ = server.accept()
                    threading.Thread(target=relay, args=(conn,), daemon=True).start()
                """#
        }

        static func etcdYAML(_ etcd: EtcdCluster, _ prefix: String) -> String {
            "state_store: {type: etcd, endpoints: [\(etcd.endpoints[0])], prefix: /\(prefix)/}"
        }

        /// Three replicas on one etcd ordering `name` with a `lease`, its validation held
        /// `delay` seconds by a `SlowValidation` relay.
        final class SlowFleet {
            let etcd: EtcdCluster
            let key: (dir: ScratchDir, file: String)
            let relay: SlowValidation
            let setup: Setup

            init(_ label: String, name: String, lease: String, delay: Double) throws {
                let etcd = try EtcdCluster(size: 1)
                let key = try ACMEProxy.storeKey()
                self.etcd = etcd
                self.key = key
                var relay: SlowValidation?
                let dir = key.dir
                setup = try Setup(label, challenge: "http-01", names: [name], replicas: 3,
                                  extraACME: "store_key_file: \(key.file)\n        lease: \(lease)",
                                  extraYAML: ACMEFleet.etcdYAML(etcd, label)) { pebble in
                    try pebble.addARecord(host: name, address: "127.0.0.3")
                    relay = try SlowValidation(port: pebble.httpPort, delay: delay, dir: dir)
                }
                self.relay = try #require(relay)
            }

            /// The replicas whose log says they ordered `name`.
            func ordering(_ name: String, among replicas: [Int]? = nil) -> [Int] {
                (replicas ?? Array(setup.proxies.indices)).filter { setup.proxies[$0].stderrText.contains("ordering the certificate for \(name)") }
            }
        }

        @Test(.timeLimit(.minutes(3)))
        func theOrderLeaseIsRenewedWhileAnOrderOutlastsIt() throws {
            // A 3 s lease (renewed every second); every validation is held 8 s. Without
            // renewal, a second replica would take the lease over and place a second order.
            let fleet = try SlowFleet("acme-lease-renewed", name: "renew.example", lease: "3s", delay: 8)
            let setup = fleet.setup
            try waitFor("every replica to hold the certificate", timeout: .seconds(60), interval: .milliseconds(500)) {
                try (0..<3).allSatisfy { try setup.notAfter("renew.example", replica: $0) != nil }
            }
            #expect(fleet.relay.received >= 1, "validation went through the slow relay")
            #expect(setup.pebbleCount("Added order") == 1, "\(setup.pebbleCount("Added order")) orders for one name")
            #expect(setup.pebbleCount("Issued certificate serial") == 1)
            #expect(fleet.ordering("renew.example").count == 1, "\(fleet.ordering("renew.example")) ordered")
        }

        @Test(.timeLimit(.minutes(3)))
        func aHolderKilledMidOrderIsReplacedAndAnotherReplicaFinishesTheName() throws {
            let fleet = try SlowFleet("acme-holder-killed", name: "killed.example", lease: "3s", delay: 3)
            let setup = fleet.setup
            // The holder's order is pending: pebble is validating its challenge (held by the relay).
            try waitFor("the holder's challenge to be validated", timeout: .seconds(30), interval: .milliseconds(50)) {
                fleet.relay.received >= 1
            }
            let holders = fleet.ordering("killed.example")
            try #require(holders.count == 1, "\(holders)")
            let holder = holders[0]
            #expect(setup.pebbleCount("Issued certificate serial") == 0, "the holder finished before it was killed")
            setup.proxies[holder].stop()
            let survivors = setup.proxies.indices.filter { $0 != holder }

            // After the lease (3 s) a survivor orders and every survivor serves the name.
            try waitFor("the survivors to hold the certificate", timeout: .seconds(60), interval: .milliseconds(500)) {
                try survivors.allSatisfy { try setup.notAfter("killed.example", replica: $0) != nil }
            }
            #expect(setup.pebbleCount("Added order") == 2, "the dead holder's order and the survivor's")
            #expect(setup.pebbleCount("Issued certificate serial") == 1)
            let finishers = fleet.ordering("killed.example", among: survivors)
            #expect(finishers.count == 1, "\(finishers)")
            for _ in 0..<4 {
                let served = try setup.verifiedGet("killed.example")
                #expect(served.exitStatus == 0 && served.httpStatus == 200, "\(served.stderr)")
            }
            // The survivor used the account the dead holder created (one account key, shared).
            #expect(setup.pebbleCount("There are now 1 accounts in memory") == 1 && setup.pebbleCount("There are now 2 accounts") == 0,
                    "\(setup.pebble.log.suffix(1500))")
        }

        @Test(.timeLimit(.minutes(3)))
        func threeReplicasOrderingDifferentNamesAreOneAccountAtTheCA() throws {
            let etcd = try EtcdCluster(size: 1)
            let key = try ACMEProxy.storeKey()
            // Each replica has a name of its own, so each orders (and needs the account).
            let setup = try Setup("acme-one-account", challenge: "http-01", names: [], replicas: 3,
                                  replicaNames: [["own0.example"], ["own1.example"], ["own2.example"]],
                                  extraACME: "store_key_file: \(key.file)", extraYAML: Self.etcdYAML(etcd, "sy-account"))
            try waitFor("each replica to hold its own name's certificate", timeout: .seconds(60), interval: .milliseconds(500)) {
                try (0..<3).allSatisfy { try setup.notAfter("own\($0).example", replica: $0) != nil }
            }
            #expect(setup.pebbleCount("Issued certificate serial") == 3)
            #expect(setup.pebbleCount("There are now 1 accounts in memory") == 1 && setup.pebbleCount("There are now 2 accounts") == 0,
                    "\(setup.pebble.log.suffix(1500))")
            // Every replica keeps the fleet's key on disk too, the same bytes.
            let keys = Set((0..<3).map { setup.dir.read("acme-\($0)/account.key") })
            #expect(keys.count == 1 && keys.first?.contains("PRIVATE KEY") == true)
            // In the store it is sealed: no PEM private key in etcd.
            let stored = try curl("\(etcd.endpoints[0])/v3/kv/range", ["-X", "POST", "-d",
                "{\"key\":\"\(Data("/sy-account/acme/account-key".utf8).base64EncodedString())\"}"], dir: setup.dir)
            let kvs = (try JSONSerialization.jsonObject(with: Data(stored.body.utf8)) as? [String: Any])?["kvs"] as? [[String: Any]]
            let value = try #require(kvs?.first?["value"] as? String, "\(stored.body)")
            let record = try #require(Data(base64Encoded: value))
            #expect(record.prefix(4) == Data("SYA1".utf8) && !String(decoding: record, as: UTF8.self).contains("PRIVATE KEY"))
        }
    }
}
