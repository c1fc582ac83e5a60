// Guards: which discovery changes are held back.

import Testing
import YardModel
import YardTemplates

private func catalog(_ services: [String: [UInt16]]) -> ServiceCatalog {
    ServiceCatalog(services: services.keys.sorted().map { name in
        ServiceDefinition(name: name, instances: services[name]!.map { InstanceDefinition(address: "127.0.0.1", port: $0) })
    })
}

@Suite struct GuardsHoldBackDrasticChanges {
    @Test func emptyingAPoolThatHadEndpointsIsHeldBack() {
        let violations = Guards.check(running: catalog(["shop": [1, 2]]), candidate: catalog(["shop": []]), policy: GuardPolicy())
        #expect(violations == [GuardViolation(service: "shop", kind: .emptied, before: 2, after: 0, removed: 2)])
        #expect(violations[0].description.contains("allow_empty or --force"))
    }

    @Test func aServiceThatDisappearsCountsAsEmptied() {
        let violations = Guards.check(running: catalog(["shop": [1], "api": [5]]), candidate: catalog(["api": [5]]), policy: GuardPolicy())
        #expect(violations.map(\.service) == ["shop"])
        #expect(violations.first?.kind == .emptied)
    }

    @Test func allowEmptyLetsAPoolEmpty() {
        #expect(Guards.check(running: catalog(["shop": [1, 2]]), candidate: catalog([:]), policy: GuardPolicy(allowEmpty: true)).isEmpty)
    }

    @Test func removingMoreThanHalfIsHeldBackByDefault() {
        let violations = Guards.check(running: catalog(["shop": [1, 2, 3]]), candidate: catalog(["shop": [3]]), policy: GuardPolicy())
        #expect(violations == [GuardViolation(service: "shop", kind: .tooManyRemoved(percent: 67, limit: 50), before: 3, after: 1, removed: 2)])
    }

    @Test func removingExactlyTheLimitIsAllowed() {
        #expect(Guards.check(running: catalog(["shop": [1, 2]]), candidate: catalog(["shop": [2]]), policy: GuardPolicy()).isEmpty)
    }

    @Test func replacingEveryEndpointCountsAsRemovingThemAll() {
        let violations = Guards.check(running: catalog(["shop": [1, 2]]), candidate: catalog(["shop": [3, 4]]), policy: GuardPolicy())
        #expect(violations.first?.kind == .tooManyRemoved(percent: 100, limit: 50))
    }

    @Test func aConfiguredLimitReplacesTheDefault() {
        let running = catalog(["shop": [1, 2, 3, 4]]), candidate = catalog(["shop": [4]])
        #expect(Guards.check(running: running, candidate: candidate, policy: GuardPolicy(maxRemovedPercent: 75)).isEmpty)
        #expect(!Guards.check(running: running, candidate: candidate, policy: GuardPolicy(maxRemovedPercent: 74)).isEmpty)
    }

    @Test func additionsNewServicesAndAPoolThatWasEmptyAreNeverHeldBack() {
        #expect(Guards.check(running: catalog(["shop": [1]]), candidate: catalog(["shop": [1, 2, 3], "new": [9]]), policy: GuardPolicy()).isEmpty)
        #expect(Guards.check(running: catalog(["shop": []]), candidate: catalog([:]), policy: GuardPolicy()).isEmpty)
        #expect(Guards.check(running: catalog([:]), candidate: catalog(["shop": [1]]), policy: GuardPolicy()).isEmpty)
    }

    @Test func eachServiceIsJudgedOnItsOwn() {
        let violations = Guards.check(
            running: catalog(["a": [1, 2], "b": [1, 2, 3, 4]]), candidate: catalog(["a": [1, 2, 3], "b": [1]]), policy: GuardPolicy())
        #expect(violations.map(\.service) == ["b"])
    }
}
