// A refused connection is reported as refused, not as a timeout (etcd stopped, no admin API).

import Testing
import YardControlHTTP
import YardDiscovery
import YardTestSupport

@Suite struct ControlHTTPClientRefusal {
    @Test func aRefusedConnectionSaysConnectionRefusedNotTimedOut() throws {
        let port = try freePort()   // bound by the kernel's choice, then released: nothing listens
        let client = ControlHTTPClient(target: try ControlHTTPTarget(url: "http://127.0.0.1:\(port)"), timeout: .seconds(5))
        let started = ContinuousClock.now
        do {
            _ = try client.send("GET", "/")
            Issue.record("a request to a closed port succeeded")
        } catch {
            #expect(error.description.contains("connection refused"), "\(error.description)")
            #expect(!error.description.contains("timed out"), "\(error.description)")
        }
        #expect(ContinuousClock.now - started < .seconds(2), "a refusal is reported at once, not at the deadline")
    }
}
