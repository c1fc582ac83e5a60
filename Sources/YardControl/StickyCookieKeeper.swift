// The fleet's key for the sticky-canary cookie: one per state store, created once by
// compare-and-set (whoever first needs it), loaded by every other replica, so a cookie one
// replica set is honoured by all of them.

import Synchronization
import YardIO
import YardModel
import YardTLS

/// Loads (or creates) the key when a service first asks for proxy-set sticky cookies, and
/// keeps the 1000 signed values for every table after.
///
/// Threading: called from the control plane (table builds); the mutex guards the loaded
/// values and the time of the last failed attempt, held across the store call so two
/// builds never race to create the key (the compare-and-set settles races between replicas).
final class StickyCookieKeeper: Sendable {
    /// The record under the state store's shared keys (beside the ACME records).
    static let record = "sticky-cookie-key"
    /// A store that failed is asked again after this long (table builds are frequent).
    static let retryMs: Int64 = 5_000

    private let config: StateStoreConfig
    private struct State {
        var values: StickyCookieValues?
        var lastFailureMs: Int64?
    }
    private let state = Mutex(State())

    init(stateStore: StateStoreConfig) { config = stateStore }

    /// The signed values, or nil while no service sets sticky cookies or the key cannot be
    /// had yet (then no cookie is set or trusted; the split stays exact).
    func values(for catalog: ServiceCatalog, now: Int64 = monotonicMilliseconds()) -> StickyCookieValues? {
        guard catalog.services.contains(where: { $0.canary?.stickyCookie != nil }) else {
            return state.withLock { $0.values }
        }
        return state.withLock { state in
            if let values = state.values { return values }
            if let failed = state.lastFailureMs, now - failed < Self.retryMs { return nil }
            do {
                let key = try Self.sharedKey(ACMESharedStores.make(config))
                let values = StickyCookieValues { HMACSHA256.mac(key: key, message: $0) }
                state.values = values
                state.lastFailureMs = nil
                return values
            } catch {
                state.lastFailureMs = now
                logger.error("sticky cookie: the key could not be read or created in the state store (\(error)); no sticky cookie is set until it can (next try in \(Self.retryMs / 1000) s)")
                return nil
            }
        }
    }

    /// The key in `store`, or a new random one stored by compare-and-set (a replica that
    /// loses the race loads the winner's).
    static func sharedKey(_ store: ACMESharedStore) throws(StoreError) -> [UInt8] {
        for _ in 0..<5 {
            if let stored = try store.get(record) {
                guard stored.value.count >= 16 else {
                    throw StoreError("\(record) holds \(stored.value.count) bytes, fewer than 16; delete it and a new key is made")
                }
                return stored.value
            }
            let key = HMACSHA256.randomKey()
            if try store.put(record, key, ifVersion: 0) { return key }
        }
        throw StoreError("\(record): five replicas raced to create the key; try again")
    }
}
