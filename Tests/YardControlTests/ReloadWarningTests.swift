// SIGHUP: every key it does not apply is named.

import Testing
@testable import YardControl
import YardModel

@Suite struct ReloadWarningNamesEveryKey {
    static let base = """
        listeners:
          - {name: web, address: 127.0.0.1:8080}
        discovery: {provider: file, file: services.yml}
        admin: {address: 127.0.0.1:9901}

        """

    func keys(_ extra: String) throws -> [String] {
        let running = try ConfigLoader.loadConfig(text: Self.base, path: "/tmp/switchyard.yml")
        let reloaded = try ConfigLoader.loadConfig(text: Self.base + extra, path: "/tmp/switchyard.yml")
        return Runtime.keysApplyingAtRestart(running: running, reloaded: reloaded)
    }

    @Test func anUnchangedFileNamesNothing() throws {
        #expect(try keys("") == [])
    }

    @Test func accessLogStateStoreWorkersAndTimeoutsAreNamed() throws {
        #expect(try keys("access_log:\n  path: access.log\n") == ["access_log"])
        #expect(try keys("state_store: {type: file, path: other.json}\n") == ["state_store"])
        #expect(try keys("workers: 3\n") == ["workers"])
        #expect(try keys("timeouts: {client_idle: 5s}\n") == ["timeouts/limits/upstream/trusted_proxies"])
    }

    @Test func routesAreAppliedNotNamed() throws {
        #expect(try keys("routes:\n  - {path: /api, service: api}\n") == [])
    }
}
