#if canImport(Glibc)
import Glibc
#endif

// Files of certificates and keys: read bounded, written atomically with their mode from
// the start (a key is never readable by others, even for a moment). Blocking; any thread.

/// A file the ACME code could not read or write, with the path and the reason.
public struct ACMEFileError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(message: String) { self.message = message }
    public var description: String { message }
}

public enum ACMEFiles {
    public static func makeDirectory(_ path: String, mode: mode_t = 0o755) throws(ACMEFileError) {
        if mkdir(path, mode) == 0 || errno == EEXIST { return }
        throw ACMEFileError(message: "cannot create \(path): \(String(cString: strerror(errno)))")
    }

    /// The file's text, or nil if it does not exist. At most 1 MiB.
    public static func readFile(_ path: String) throws(ACMEFileError) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw ACMEFileError(message: "cannot read \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 8192)
        while true {
            let count = read(fd, &chunk, chunk.count)
            if count < 0, errno == EINTR { continue }
            guard count >= 0 else { throw ACMEFileError(message: "cannot read \(path): \(String(cString: strerror(errno)))") }
            if count == 0 { break }
            bytes.append(contentsOf: chunk.prefix(count))
            guard bytes.count <= 1 << 20 else { throw ACMEFileError(message: "\(path) is larger than 1 MiB") }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Writes `text` to a new file beside `path` with `mode` from the start (a key is never
    /// readable by others, even briefly), then renames it over `path`.
    public static func writeAtomically(_ path: String, _ text: String, mode: mode_t) throws(ACMEFileError) {
        let temporary = "\(path).tmp-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode)
        guard fd >= 0 else { throw ACMEFileError(message: "cannot write \(temporary): \(String(cString: strerror(errno)))") }
        _ = fchmod(fd, mode)   // O_CREAT's mode is masked by the umask
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if written < 0, errno == EINTR { continue }
            guard written > 0 else {
                let reason = String(cString: strerror(errno))
                close(fd)
                unlink(temporary)
                throw ACMEFileError(message: "cannot write \(temporary): \(reason)")
            }
            offset += written
        }
        let synced = fsync(fd) == 0
        let closed = close(fd) == 0
        guard synced, closed, rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw ACMEFileError(message: "cannot write \(path): \(reason)")
        }
    }
}
