// Reading a config file's bytes and turning them into text, with errors that name the file.
// The only I/O in YardModel: plain POSIX reads, so the module needs no Foundation.

#if canImport(Glibc)
internal import Glibc
#elseif canImport(Musl)
internal import Musl
#elseif canImport(Darwin)
internal import Darwin
#endif

extension ConfigLoader {
    /// Config files are small; anything bigger is a mistake (a log file, a binary).
    public static let maxFileBytes = 16 * 1_048_576

    // MARK: Reading

    /// The whole content of `path`.
    ///
    /// Threading: blocking I/O; call from the control plane, never from an event loop.
    public static func readFile(path: String) throws(ConfigError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw fileError(path, "cannot open: \(describeErrno(errno))") }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count == 0 { break }
            if count < 0 {
                if errno == EINTR { continue }
                throw fileError(path, "cannot read: \(describeErrno(errno))")
            }
            bytes.append(contentsOf: chunk[0..<count])
            if bytes.count > maxFileBytes {
                throw fileError(path, "the file is larger than \(maxFileBytes / 1_048_576) MiB; is this the right file?")
            }
        }
        return bytes
    }

    /// `bytes` as UTF-8 text without a leading byte-order mark.
    public static func decodeText(_ bytes: [UInt8], path: String) throws(ConfigError) -> String {
        var body = bytes[...]
        if body.starts(with: [0xEF, 0xBB, 0xBF]) { body = body.dropFirst(3) }
        guard let text = String(validating: body, as: UTF8.self) else {
            throw fileError(path, "the file is not valid UTF-8 text; save it as UTF-8")
        }
        return text
    }

    static func readText(path: String) throws(ConfigError) -> String {
        try decodeText(try readFile(path: path), path: path)
    }

    // MARK: Paths

    /// The folder of `path` (`conf/switchyard.yml` → `conf`), `.` when it has none.
    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        if slash == path.startIndex { return "/" }
        return String(path[..<slash])
    }

    /// `relative` resolved against `directory`; absolute paths are returned unchanged.
    static func resolve(_ relative: String, against directory: String) -> String {
        if relative.hasPrefix("/") { return relative }
        if directory == "." { return relative }
        return directory.hasSuffix("/") ? directory + relative : directory + "/" + relative
    }

    /// `path` made absolute against the current working directory.
    static func absolutePath(_ path: String) -> String {
        if path.hasPrefix("/") { return path }
        guard let cwd = getcwd(nil, 0) else { return path }
        defer { free(cwd) }
        return resolve(path.hasPrefix("./") ? String(path.dropFirst(2)) : path, against: String(cString: cwd))
    }

    // MARK: Errors

    static func fileError(_ path: String, _ message: String) -> ConfigError {
        ConfigError(file: path, line: nil, key: nil, message: message)
    }

    private static func describeErrno(_ code: Int32) -> String {
        guard let text = strerror(code) else { return "errno \(code)" }
        return String(cString: text)
    }
}
