// The decisions of the file provider, separate from the polling: given what `stat` and
// `read` observed, should a snapshot or an error go out? A pure state machine, so every
// case (touch, rename, half-written file, recovery) is testable without timers.

import YardModel

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - FileSignature

/// What `stat` says about a file: enough to notice an in-place rewrite (size, mtime,
/// ctime) and an atomic rename (device, inode) without reading the file.
struct FileSignature: Equatable, Sendable {
    var device: UInt64
    var inode: UInt64
    var size: Int64
    var modified: (seconds: Int64, nanoseconds: Int64)
    var changed: (seconds: Int64, nanoseconds: Int64)

    static func == (lhs: FileSignature, rhs: FileSignature) -> Bool {
        lhs.device == rhs.device && lhs.inode == rhs.inode && lhs.size == rhs.size
            && lhs.modified == rhs.modified && lhs.changed == rhs.changed
    }

    /// The signature of `path`, or the `errno` of a failed `stat`.
    static func of(path: String) -> Result<FileSignature, StatError> {
        var info = stat()
        guard stat(path, &info) == 0 else { return .failure(StatError(code: errno)) }
        #if canImport(Darwin)
        let modified = (Int64(info.st_mtimespec.tv_sec), Int64(info.st_mtimespec.tv_nsec))
        let changed = (Int64(info.st_ctimespec.tv_sec), Int64(info.st_ctimespec.tv_nsec))
        #else
        let modified = (Int64(info.st_mtim.tv_sec), Int64(info.st_mtim.tv_nsec))
        let changed = (Int64(info.st_ctim.tv_sec), Int64(info.st_ctim.tv_nsec))
        #endif
        return .success(FileSignature(
            device: UInt64(info.st_dev), inode: UInt64(info.st_ino), size: Int64(info.st_size),
            modified: modified, changed: changed
        ))
    }

    struct StatError: Error {
        let code: Int32
        var description: String { strerror(code).map { String(cString: $0) } ?? "errno \(code)" }
    }
}

// MARK: - FileWatchState

/// What the file provider has seen and sent. Threading: a value owned by one poller.
struct FileWatchState {
    /// What the provider should do after an observation.
    enum Action: Equatable {
        case none
        case deliver(ServiceCatalog)
        case report(ConfigError)
    }

    /// The signature at the last poll; nil before the first and after a failed read.
    private var signature: FileSignature?
    /// The bytes last read, parsed or not; the same bytes are never parsed twice.
    private var content: [UInt8]?
    /// The catalog last delivered.
    private(set) var delivered: ServiceCatalog?
    /// An error reported since the last delivery, if any.
    private(set) var reported: ConfigError?

    /// A file modified this recently may change again without its signature changing.
    static let racyWindowSeconds: Int64 = 2

    /// Records `signature` and says whether the file must be read. Taken *before* the
    /// read, so a write racing with the read shows up as a new signature next poll.
    ///
    /// Also true while the file's mtime is within `racyWindowSeconds` of `now` (wall
    /// clock seconds): the kernel stamps files from a coarse clock (one jiffy), so two
    /// same-size writes in one tick leave identical signatures. Git calls such files
    /// "racily clean" and compares content; so do we, and the content check keeps the
    /// extra reads from delivering anything twice.
    mutating func shouldRead(_ signature: FileSignature, now: Int64) -> Bool {
        defer { self.signature = signature }
        if signature != self.signature { return true }
        return now - signature.modified.seconds < Self.racyWindowSeconds
    }

    /// Whether `bytes` (read from a file last modified at `modifiedSeconds`) look like a
    /// writer caught between its truncate and its write — empty, and modified within
    /// `racyWindowSeconds` — as editors and shell redirection leave a file for a moment.
    /// Such a read is not recorded and the next poll reads again; an empty file is
    /// reported only once it stays empty past the window.
    mutating func holdsHalfWritten(_ bytes: [UInt8], modifiedSeconds: Int64, now: Int64) -> Bool {
        guard bytes.isEmpty, now - modifiedSeconds < Self.racyWindowSeconds else { return false }
        signature = nil
        return true
    }

    /// Records `bytes` and says whether they need parsing: a touch, or a rewrite with
    /// identical content, changes the signature but not the bytes.
    mutating func isNewContent(_ bytes: [UInt8]) -> Bool {
        guard bytes != content else { return false }
        content = bytes
        return true
    }

    /// The outcome of parsing new content.
    ///
    /// A broken file is reported once (its bytes are not parsed again) and the last good
    /// catalog stays. A good catalog is delivered when it differs from the last one, or
    /// when an error was reported since, so the caller learns that the file is healthy
    /// again even if it was restored to exactly the old content.
    mutating func parsed(_ result: Result<ServiceCatalog, ConfigError>) -> Action {
        switch result {
        case .failure(let error):
            reported = error
            return .report(error)
        case .success(let catalog):
            if catalog == delivered, reported == nil { return .none }
            delivered = catalog
            reported = nil
            return .deliver(catalog)
        }
    }

    /// The file could not be stat'ed or read (missing, permissions). Reported once per
    /// distinct error; forgets signature and content so the file's return is noticed.
    mutating func unreadable(_ error: ConfigError) -> Action {
        signature = nil
        content = nil
        guard error != reported else { return .none }
        reported = error
        return .report(error)
    }
}
