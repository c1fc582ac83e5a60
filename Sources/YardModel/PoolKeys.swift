import Synchronization

/// Interns `address:port` pairs to small stable integers for the lifetime of the process.
///
/// Threading: called by the control plane while it builds a table (never on the request
/// path); the mutex protects the dictionary and the counter.
public final class PoolKeys: Sendable {
    public static let shared = PoolKeys()

    private let state = Mutex<(keys: [String: Int], next: Int)>(([:], 0))

    public init() {}

    /// The key for `address:port` reached as `flavor` (`UpstreamTransport.poolFlavor`),
    /// allocating the next integer the first time.
    public func key(address: String, port: UInt16, flavor: String = "") -> Int {
        let name = flavor.isEmpty ? "\(address)|\(port)" : "\(address)|\(port)|\(flavor)"
        return state.withLock { state in
            if let key = state.keys[name] { return key }
            let key = state.next
            state.keys[name] = key
            state.next += 1
            return key
        }
    }
}
