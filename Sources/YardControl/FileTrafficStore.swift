// The default state store: one JSON file, for a single machine (several Switchyard
// processes on it may share the file). Writes take an exclusive flock on `PATH.lock`,
// re-read, compare the revision, write a temporary file, fsync it, rename it over the
// old one and fsync the folder: a crash leaves the old or the new file, never half of one.
// Replica reports are files under `PATH.replicas/`, expired by their timestamp.

#if canImport(Glibc)
import Glibc
#endif
import Foundation
import YardModel

/// Traffic states in one JSON file.
///
/// Threading: every call is self-contained (file locks serialise writers across threads
/// and processes); safe from any thread.
public struct FileTrafficStore: TrafficStore {
    public let path: String

    public init(path: String) { self.path = path }

    public var description: String { "file \(path)" }

    private struct Document: Codable {
        var services: [String: TrafficState]
    }

    // MARK: States

    public func load() throws(StoreError) -> StoreSnapshot {
        StoreSnapshot(states: try read(), cursor: signature())
    }

    public func waitForChange(after cursor: Int64, timeout: Duration) throws(StoreError) -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if signature() != cursor { return true }
            pause(milliseconds: 100)
        }
        return signature() != cursor
    }

    public func compareAndSwap(service: String, state: TrafficState) throws(StoreError) -> StoreWrite {
        try withLock { () throws(StoreError) -> StoreWrite in
            var states = try read()
            let stored = states[service]
            guard (stored?.revision ?? 0) == state.revision - 1 else { return .conflict(current: stored) }
            states[service] = state
            try atomicWrite(path, StoreCoding.encode(Document(services: states)))
            return .applied
        }
    }

    // MARK: Replicas

    public func report(_ replica: ReplicaReport, ttl: Duration) throws(StoreError) {
        let folder = path + ".replicas"
        if mkdir(folder, 0o755) != 0 && errno != EEXIST {
            throw StoreError("cannot create \(folder): \(String(cString: strerror(errno)))")
        }
        try atomicWrite("\(folder)/\(fileName(replica.id)).json", StoreCoding.encode(ReplicaRecord(report: replica, ttlSeconds: ttl.seconds)))
    }

    public func replicas() throws(StoreError) -> [ReplicaReport] {
        let folder = path + ".replicas"
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return [] }
        let now = Date().timeIntervalSince1970
        var reports: [ReplicaReport] = []
        for name in names.sorted() where name.hasSuffix(".json") {
            guard let bytes = FileManager.default.contents(atPath: "\(folder)/\(name)"),
                  let record = try? StoreCoding.decode(ReplicaRecord.self, Array(bytes), what: name) else { continue }
            if record.report.reportedUnix + record.ttlSeconds >= now { reports.append(record.report) }
        }
        return reports
    }

    public func withdraw(replica id: String) {
        unlink("\(path).replicas/\(fileName(id)).json")
    }

    // MARK: Files

    private func read() throws(StoreError) -> [String: TrafficState] {
        guard let data = FileManager.default.contents(atPath: path) else {
            if access(path, F_OK) != 0 { return [:] }
            throw StoreError("cannot read \(path): \(String(cString: strerror(errno)))")
        }
        if data.isEmpty { return [:] }
        return try StoreCoding.decode(Document.self, Array(data), what: path).services
    }

    /// Changes whenever the file is replaced or rewritten.
    private func signature() -> Int64 {
        var info = stat()
        guard stat(path, &info) == 0 else { return 0 }
        var hasher = Hasher()
        hasher.combine(info.st_ino)
        hasher.combine(info.st_size)
        hasher.combine(info.st_mtim.tv_sec)
        hasher.combine(info.st_mtim.tv_nsec)
        return Int64(hasher.finalize())
    }

    private func withLock<T>(_ body: () throws(StoreError) -> T) throws(StoreError) -> T {
        let lockPath = path + ".lock"
        let fd = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw StoreError("cannot open \(lockPath): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        while flock(fd, LOCK_EX) != 0 {
            guard errno == EINTR else { throw StoreError("cannot lock \(lockPath): \(String(cString: strerror(errno)))") }
        }
        defer { flock(fd, LOCK_UN) }
        return try body()
    }

    private func fileName(_ id: String) -> String {
        String(id.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." ? $0 : "_" })
    }
}

/// A replica report with the TTL its writer promised to renew within.
struct ReplicaRecord: Codable {
    var report: ReplicaReport
    var ttlSeconds: Double
}

/// Writes `bytes` to `target` atomically and durably: temporary file in the same folder,
/// fsync, rename, fsync of the folder.
func atomicWrite(_ target: String, _ bytes: [UInt8]) throws(StoreError) {
    let folder = (target as NSString).deletingLastPathComponent
    let temporary = "\(target).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw StoreError("cannot create \(temporary): \(String(cString: strerror(errno)))") }
    var offset = 0
    while offset < bytes.count {
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, bytes.count - offset) }
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else {
            let message = String(cString: strerror(errno))
            close(fd)
            unlink(temporary)
            throw StoreError("cannot write \(temporary): \(message)")
        }
        offset += n
    }
    guard fsync(fd) == 0 else {
        let message = String(cString: strerror(errno))
        close(fd)
        unlink(temporary)
        throw StoreError("cannot fsync \(temporary): \(message)")
    }
    close(fd)
    guard rename(temporary, target) == 0 else {
        let message = String(cString: strerror(errno))
        unlink(temporary)
        throw StoreError("cannot replace \(target): \(message)")
    }
    let dir = open(folder.isEmpty ? "." : folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    if dir >= 0 {
        fsync(dir)
        close(dir)
    }
}

func pause(milliseconds: Int) {
    var request = timespec(tv_sec: milliseconds / 1000, tv_nsec: (milliseconds % 1000) * 1_000_000)
    var remaining = timespec()
    while nanosleep(&request, &remaining) != 0 && errno == EINTR { request = remaining }
}

extension Duration {
    var seconds: Double {
        let (whole, fraction) = components
        return Double(whole) + Double(fraction) / 1e18
    }
}
