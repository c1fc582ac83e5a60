// The etcd state store: `PREFIX/traffic/SERVICE` holds a service's TrafficState as JSON;
// `PREFIX/replicas/ID` holds a replica's report under a lease, so a replica that dies
// drops out by itself once its lease runs out.
//
// A compare-and-set reads the key, checks Switchyard's revision, and writes in one etcd
// transaction conditioned on the key's mod_revision: a concurrent writer makes the
// transaction fail, and the caller gets the value that won.

import Synchronization
import YardDiscovery
import YardModel

/// Traffic states in etcd. Threading: safe from any thread (the lease id sits behind a mutex).
public final class EtcdTrafficStore: TrafficStore {
    private let client: EtcdClient
    private let prefix: String
    private let lease = Mutex<Int64>(0)

    public init(endpoints: [String], prefix: String, access: StoreAccessConfig = StoreAccessConfig()) throws(StoreError) {
        do {
            client = try EtcdClient(endpoints: endpoints, timeout: .seconds(3), access: access)
        } catch {
            throw StoreError(error.description)
        }
        self.prefix = prefix.hasSuffix("/") ? prefix : prefix + "/"
    }

    public var description: String { "etcd \(client.endpoints.map(\.description).joined(separator: ",")) \(prefix)" }

    private var trafficPrefix: String { prefix + "traffic/" }
    private var replicaPrefix: String { prefix + "replicas/" }

    public func load() throws(StoreError) -> StoreSnapshot {
        let listed = try etcd { () throws(EtcdError) in try client.list(prefix: trafficPrefix) }
        var states: [String: TrafficState] = [:]
        for kv in listed.kvs {
            let service = String(kv.key.dropFirst(trafficPrefix.count))
            states[service] = try StoreCoding.decode(TrafficState.self, kv.value, what: "etcd key \(kv.key)")
        }
        return StoreSnapshot(states: states, cursor: listed.revision)
    }

    public func waitForChange(after cursor: Int64, timeout: Duration) throws(StoreError) -> Bool {
        let watch = try etcd { () throws(EtcdError) in try client.watch(trafficPrefix, prefix: true, startRevision: cursor + 1) }
        defer { watch.cancel() }
        let deadline = ContinuousClock.now + timeout
        while true {
            let left = deadline - ContinuousClock.now
            guard left > .zero else { return false }
            let message: EtcdWatchResponse?
            do {
                message = try watch.next(timeout: left)
            } catch {
                // A quiet watch that reached its deadline is not an error.
                if ContinuousClock.now >= deadline, error.description.contains("timed out") { return false }
                throw StoreError(error.description)
            }
            guard let message else { throw StoreError("etcd closed the watch on \(trafficPrefix)") }
            if message.compactRevision > 0 || message.canceled || !message.events.isEmpty { return true }
        }
    }

    public func compareAndSwap(service: String, state: TrafficState) throws(StoreError) -> StoreWrite {
        let key = trafficPrefix + service
        let current = try etcd { () throws(EtcdError) in try client.get(key) }
        let stored = try current.kv.map { kv throws(StoreError) in try StoreCoding.decode(TrafficState.self, kv.value, what: "etcd key \(key)") }
        guard (stored?.revision ?? 0) == state.revision - 1 else { return .conflict(current: stored) }
        let outcome = try etcd { () throws(EtcdError) in
            try client.compareAndSet(key, value: StoreCoding.encode(state), expectedModRevision: current.kv?.modRevision ?? 0)
        }
        switch outcome {
        case .applied:
            return .applied
        case .conflict(let winner):
            return .conflict(current: try winner.map { kv throws(StoreError) in try StoreCoding.decode(TrafficState.self, kv.value, what: "etcd key \(key)") })
        }
    }

    public func report(_ replica: ReplicaReport, ttl: Duration) throws(StoreError) {
        var id = lease.withLock { $0 }
        if id != 0 {
            let remaining = try etcd { () throws(EtcdError) in try client.keepAlive(lease: id) }
            if remaining <= 0 { id = 0 }
        }
        if id == 0 {
            id = try etcd { () throws(EtcdError) in try client.grantLease(ttlSeconds: max(2, Int(ttl.seconds.rounded(.up)))) }.id
            lease.withLock { $0 = id }
        }
        let leaseID = id
        _ = try etcd { () throws(EtcdError) in
            try client.put(replicaPrefix + replica.id, value: StoreCoding.encode(replica), lease: leaseID)
        }
    }

    public func replicas() throws(StoreError) -> [ReplicaReport] {
        let listed = try etcd { () throws(EtcdError) in try client.list(prefix: replicaPrefix) }
        return listed.kvs.compactMap { try? StoreCoding.decode(ReplicaReport.self, $0.value, what: $0.key) }
    }

    public func withdraw(replica id: String) {
        let leaseID = lease.withLock { $0 }
        _ = try? client.delete(replicaPrefix + id)
        if leaseID != 0 { try? client.revoke(lease: leaseID) }
    }

    private func etcd<T>(_ body: () throws(EtcdError) -> T) throws(StoreError) -> T {
        do {
            return try body()
        } catch {
            throw StoreError(error.description)
        }
    }
}
