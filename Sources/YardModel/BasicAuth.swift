// basic_auth: an htpasswd file (bcrypt $2y$/$2b$ and SHA-crypt $5$/$6$ only, checked with
// libxcrypt's crypt_rn), a realm, 401 with WWW-Authenticate, and the file reloaded when
// it changes. docs/routing.md has the worked example.

#if canImport(Glibc)
internal import Glibc
#endif
internal import CYardCrypt
import Dispatch
import Synchronization

/// `basic_auth` as configured.
public struct BasicAuth: Sendable, Equatable {
    /// The htpasswd file (absolute once loaded).
    public var file: String
    public var realm: String
    /// Send the client's Authorization header on to the backend (off: it is dropped).
    public var forwardAuthorization: Bool

    public init(file: String, realm: String = "switchyard", forwardAuthorization: Bool = false) {
        self.file = file
        self.realm = realm
        self.forwardAuthorization = forwardAuthorization
    }
}

// MARK: - The file

/// One user of an htpasswd file, with the last password verified for it.
///
/// Threading: immutable apart from `verified`, two atomics written after a successful
/// crypt and read before one (a torn pair only costs a crypt call, see `Htpasswd.check`).
public final class HtpasswdUser: Sendable {
    let name: [UInt8]
    /// The hash, NUL-terminated, for crypt_rn's setting.
    let hash: [CChar]
    let verified0 = Atomic<UInt64>(0)
    let verified1 = Atomic<UInt64>(0)

    init(name: [UInt8], hash: [UInt8]) {
        self.name = name
        self.hash = hash.map { CChar(bitPattern: $0) } + [0]
    }
}

/// The users of an htpasswd file.
public final class Htpasswd: Sendable {
    public let users: [HtpasswdUser]
    /// A 128-bit key for the cache of verified passwords (SipHash), new per load.
    let key: (UInt64, UInt64, UInt64, UInt64)

    public init(users: [HtpasswdUser]) {
        self.users = users
        key = (UInt64.random(in: .min ... .max), UInt64.random(in: .min ... .max),
               UInt64.random(in: .min ... .max), UInt64.random(in: .min ... .max))
    }

    /// Parses htpasswd text: `user:hash` lines; blank lines and `#` comments skipped.
    /// Only bcrypt (`$2y$`, `$2b$`) and SHA-crypt (`$5$`, `$6$`) hashes are accepted.
    public static func parse(_ text: String, path: String) -> Result<Htpasswd, MiddlewareProblem> {
        var users: [HtpasswdUser] = []
        var seen = Set<String>()
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = rawLine.hasSuffix("\r") ? rawLine.dropLast() : rawLine
            if line.allSatisfy({ $0 == " " || $0 == "\t" }) || line.hasPrefix("#") { continue }
            let at = "\(path):\(index + 1)"
            guard let colon = line.firstIndex(of: ":"), colon > line.startIndex else {
                return .failure(MiddlewareProblem(message: "\(at): expected 'user:hash' (make lines with htpasswd -B)"))
            }
            let name = String(line[..<colon]), hash = String(line[line.index(after: colon)...])
            guard name.utf8.count <= 255, name.utf8.allSatisfy({ $0 > 0x20 && $0 != 0x7f }) else {
                return .failure(MiddlewareProblem(message: "\(at): the user name has a space or a control character"))
            }
            guard ["$2y$", "$2b$", "$5$", "$6$"].contains(where: { hash.hasPrefix($0) }),
                  hash.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f }) else {
                return .failure(MiddlewareProblem(message: "\(at): user '\(name)' has no bcrypt ($2y$, $2b$) or SHA-crypt ($5$, $6$) hash; "
                    + "plain text, MD5 ($apr1$), {SHA} and DES are refused: make it with 'htpasswd -B'"))
            }
            guard seen.insert(name).inserted else {
                return .failure(MiddlewareProblem(message: "\(at): user '\(name)' is listed twice"))
            }
            users.append(HtpasswdUser(name: Array(name.utf8), hash: Array(hash.utf8)))
        }
        guard !users.isEmpty else { return .failure(MiddlewareProblem(message: "\(path): no users; add lines with 'htpasswd -B \(path) NAME'")) }
        return .success(Htpasswd(users: users))
    }

    /// Whether `user` with `password` is in the file. Takes the same time for an unknown
    /// user as for a wrong password (crypt runs against a real entry's setting), compares
    /// in constant time, and skips crypt for the password last verified for the user.
    public func check(user: UnsafeRawBufferPointer, password: UnsafeRawBufferPointer) -> Bool {
        guard !users.isEmpty else { return false }
        var found: HtpasswdUser?
        for entry in users where Htpasswd.constantTimeEqual(entry.name, user) && found == nil { found = entry }
        let entry = found ?? users[0]
        let digest = (SipHash.hash(password, key.0, key.1), SipHash.hash(password, key.2, key.3))
        if found != nil {
            let cached = (entry.verified0.load(ordering: .relaxed), entry.verified1.load(ordering: .relaxed))
            if (cached.0 ^ digest.0) | (cached.1 ^ digest.1) == 0 && cached.0 | cached.1 != 0 { return true }
        }
        let matches = Htpasswd.cryptMatches(password: password, hash: entry.hash)
        guard matches, found != nil else { return false }
        entry.verified0.store(digest.0, ordering: .relaxed)
        entry.verified1.store(digest.1, ordering: .relaxed)
        return true
    }

    /// crypt_rn(password, hash) equals hash, compared in constant time.
    static func cryptMatches(password: UnsafeRawBufferPointer, hash: [CChar]) -> Bool {
        guard password.count < 1024, !password.contains(0) else { return false }
        return withUnsafeTemporaryAllocation(byteCount: MemoryLayout<crypt_data>.size + password.count + 1, alignment: 16) { raw in
            guard let base = raw.baseAddress else { return false }
            memset(base, 0, raw.count)
            let phrase = (base + MemoryLayout<crypt_data>.size).assumingMemoryBound(to: CChar.self)
            if let source = password.baseAddress, password.count > 0 { memcpy(phrase, source, password.count) }
            return hash.withUnsafeBufferPointer { setting in
                guard let output = crypt_rn(phrase, setting.baseAddress, base, Int32(MemoryLayout<crypt_data>.size)) else { return false }
                var difference: UInt8 = 0
                for i in 0..<(setting.count - 1) {
                    difference |= UInt8(bitPattern: output[i]) ^ UInt8(bitPattern: setting[i])
                    if output[i] == 0 { difference |= 1 }
                }
                difference |= UInt8(bitPattern: output[setting.count - 1])
                memset(base, 0, raw.count)
                return difference == 0
            }
        }
    }

    /// Equal bytes, in time that depends on the lengths only.
    static func constantTimeEqual(_ a: [UInt8], _ b: UnsafeRawBufferPointer) -> Bool {
        var difference = a.count ^ b.count
        for i in 0..<min(a.count, b.count) { difference |= Int(a[i] ^ b[i]) }
        return difference == 0
    }
}

// MARK: - The middleware at run time

/// A basic_auth middleware: the current users, the challenge, and a watcher that reloads
/// the file when it changes (its modification time, size or inode).
///
/// Threading: `check` from any event loop reads the current `Htpasswd` through an atomic;
/// the reload runs on a Dispatch timer, off the event loops. A replaced `Htpasswd` is kept
/// (never freed while the gate lives) so a loop that just loaded it can finish with it.
/// `@unchecked Sendable` for `timer`, which is set up in `init` and only cancelled after.
public final class BasicAuthGate: @unchecked Sendable {
    public let settings: BasicAuth
    /// `WWW-Authenticate: Basic realm="...", charset="UTF-8"` CRLF.
    public let challenge: [UInt8]
    private let current: Atomic<UInt>
    /// The users loaded at start: what `users` answers if `current` ever held no pointer
    /// (it cannot: it starts at this one and is only ever set to another loaded file).
    private let initial: Htpasswd
    /// Every loaded file, so `current`'s pointers stay valid; the lock is taken on reload only.
    private let loaded: Mutex<(all: [Htpasswd], stamp: FileStamp?, problem: String?)>
    private let timer: DispatchSourceTimer

    init(_ settings: BasicAuth, initial: Htpasswd, problem: String? = nil) {
        self.settings = settings
        challenge = Array("WWW-Authenticate: Basic realm=\"\(settings.realm)\", charset=\"UTF-8\"\r\n".utf8)
        self.initial = initial
        current = Atomic(UInt(bitPattern: Unmanaged.passUnretained(initial).toOpaque()))
        loaded = Mutex(([initial], problem == nil ? FileStamp(path: settings.file) : nil, problem))
        timer = DispatchSource.makeTimerSource(queue: DispatchQueue.global(qos: .utility))
        timer.schedule(deadline: .now() + .seconds(1), repeating: .seconds(1), leeway: .milliseconds(200))
        timer.setEventHandler { [weak self] in self?.reloadIfChanged() }
        timer.resume()
    }

    deinit { timer.cancel() }

    /// The users as last loaded.
    public var users: Htpasswd {
        guard let pointer = UnsafeRawPointer(bitPattern: current.load(ordering: .acquiring)) else { return initial }
        return Unmanaged<Htpasswd>.fromOpaque(pointer).takeUnretainedValue()
    }

    /// Whether an `Authorization` value (`Basic base64(user:password)`) names a user of the file.
    public func check(authorization value: UnsafeRawBufferPointer) -> Bool {
        BasicCredentials.withDecoded(value) { user, password in users.check(user: user, password: password) } ?? false
    }

    /// The last reload's problem (the previous users stay), or nil.
    public var reloadProblem: String? { loaded.withLock { $0.problem } }

    /// Rereads the file when its stamp changed; a file that does not parse keeps the old users.
    func reloadIfChanged() {
        let stamp = FileStamp(path: settings.file)
        let unchanged = loaded.withLock { $0.stamp == stamp }
        guard !unchanged else { return }
        let parsed: Result<Htpasswd, MiddlewareProblem>
        do {
            parsed = Htpasswd.parse(try ConfigLoader.readText(path: settings.file), path: settings.file)
        } catch {
            parsed = .failure(MiddlewareProblem(message: error.description))
        }
        loaded.withLock { state in
            state.stamp = stamp
            switch parsed {
            case .success(let users):
                state.all.append(users)
                state.problem = nil
                current.store(UInt(bitPattern: Unmanaged.passUnretained(users).toOpaque()), ordering: .releasing)
            case .failure(let problem):
                state.problem = problem.message
            }
        }
    }
}

/// What identifies a version of a file without reading it.
struct FileStamp: Equatable {
    var seconds: Int
    var nanoseconds: Int
    var size: Int
    var inode: UInt64

    init?(path: String) {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        seconds = Int(info.st_mtim.tv_sec)
        nanoseconds = Int(info.st_mtim.tv_nsec)
        size = Int(info.st_size)
        inode = UInt64(info.st_ino)
    }
}

/// One gate per basic_auth middleware name, kept across routing-table rebuilds (so its
/// verified-password cache and watcher survive a reload) while its settings stay the same.
public final class BasicAuthRegistry: Sendable {
    public static let shared = BasicAuthRegistry()
    private let gates = Mutex<[String: BasicAuthGate]>([:])

    /// The gate for `name`, loading the file for a new one. A file that does not load
    /// (it was checked when the config loaded; it may have gone since) lets nobody in until
    /// the watcher loads it.
    public func gate(name: String, settings: BasicAuth) -> BasicAuthGate {
        if let existing = gates.withLock({ $0[name] }), existing.settings == settings { return existing }
        let made: BasicAuthGate
        switch Result(catching: { () throws(ConfigError) in try ConfigLoader.readText(path: settings.file) }) {
        case .success(let text):
            switch Htpasswd.parse(text, path: settings.file) {
            case .success(let users): made = BasicAuthGate(settings, initial: users)
            case .failure(let problem): made = BasicAuthGate(settings, initial: Htpasswd(users: []), problem: problem.message)
            }
        case .failure(let error):
            made = BasicAuthGate(settings, initial: Htpasswd(users: []), problem: error.description)
        }
        gates.withLock { $0[name] = made }
        return made
    }
}

// MARK: - The header

/// `Authorization: Basic <base64 of user:password>`, decoded on the stack.
public enum BasicCredentials {
    /// Calls `body` with the user and password of a Basic authorization value, or returns
    /// nil when it is not one (another scheme, bad base64, no colon, over 768 bytes).
    public static func withDecoded<T>(_ value: UnsafeRawBufferPointer,
                                      _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) -> T) -> T? {
        var start = 0
        while start < value.count && value[start] == 0x20 { start += 1 }
        let scheme = "basic"
        guard value.count - start > 6 else { return nil }
        for (i, c) in scheme.utf8.enumerated() where value[start + i] | 0x20 != c { return nil }
        guard value[start + 5] == 0x20 else { return nil }
        var from = start + 6
        while from < value.count && value[from] == 0x20 { from += 1 }
        var end = value.count
        while end > from && (value[end - 1] == 0x20 || value[end - 1] == 0x09) { end -= 1 }
        let encoded = UnsafeRawBufferPointer(rebasing: value[from..<end])
        guard encoded.count <= 1024, encoded.count % 4 == 0 else { return nil }
        return withUnsafeTemporaryAllocation(byteCount: 768, alignment: 1) { out -> T? in
            guard let count = decodeBase64(encoded, into: out) else { return nil }
            let decoded = UnsafeRawBufferPointer(rebasing: out[0..<count])
            guard let colon = decoded.firstIndex(of: UInt8(ascii: ":")) else { return nil }
            let result = body(UnsafeRawBufferPointer(rebasing: decoded[0..<colon]), UnsafeRawBufferPointer(rebasing: decoded[(colon + 1)...]))
            if let cleared = out.baseAddress { memset(cleared, 0, out.count) }
            return result
        }
    }

    /// Standard base64 with padding; nil on any other byte.
    static func decodeBase64(_ input: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer) -> Int? {
        func value(_ c: UInt8) -> UInt32? {
            switch c {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): UInt32(c - UInt8(ascii: "A"))
            case UInt8(ascii: "a")...UInt8(ascii: "z"): UInt32(c - UInt8(ascii: "a") + 26)
            case UInt8(ascii: "0")...UInt8(ascii: "9"): UInt32(c - UInt8(ascii: "0") + 52)
            case UInt8(ascii: "+"): 62
            case UInt8(ascii: "/"): 63
            default: nil
            }
        }
        var count = 0
        var i = 0
        while i < input.count {
            let padding = (input[i + 3] == UInt8(ascii: "=") ? 1 : 0) + (input[i + 2] == UInt8(ascii: "=") ? 1 : 0)
            guard padding == 0 || i + 4 == input.count, !(padding == 1 && input[i + 2] == UInt8(ascii: "=")),
                  let a = value(input[i]), let b = value(input[i + 1]),
                  let c = padding >= 2 ? 0 : value(input[i + 2]), let d = padding >= 1 ? 0 : value(input[i + 3]) else { return nil }
            let word = a << 18 | b << 12 | c << 6 | d
            let bytes = 3 - padding
            guard count + bytes <= out.count else { return nil }
            for k in 0..<bytes { out[count + k] = UInt8(truncatingIfNeeded: word >> (16 - 8 * UInt32(k))) }
            count += bytes
            i += 4
        }
        return count
    }
}

/// SipHash-2-4: the keyed hash of the verified-password cache (a PRF, so a client cannot
/// make a wrong password collide with the cached right one without the key).
enum SipHash {
    static func hash(_ bytes: UnsafeRawBufferPointer, _ k0: UInt64, _ k1: UInt64) -> UInt64 {
        var v0: UInt64 = 0x736f_6d65_7073_6575 ^ k0
        var v1: UInt64 = 0x646f_7261_6e64_6f6d ^ k1
        var v2: UInt64 = 0x6c79_6765_6e65_7261 ^ k0
        var v3: UInt64 = 0x7465_6462_7974_6573 ^ k1
        func round() {
            v0 &+= v1; v1 = v1.rotatedLeft(13); v1 ^= v0; v0 = v0.rotatedLeft(32)
            v2 &+= v3; v3 = v3.rotatedLeft(16); v3 ^= v2
            v0 &+= v3; v3 = v3.rotatedLeft(21); v3 ^= v0
            v2 &+= v1; v1 = v1.rotatedLeft(17); v1 ^= v2; v2 = v2.rotatedLeft(32)
        }
        let whole = bytes.count / 8 * 8
        var i = 0
        while i < whole {
            var m: UInt64 = 0
            for k in 0..<8 { m |= UInt64(bytes[i + k]) << (8 * UInt64(k)) }
            v3 ^= m; round(); round(); v0 ^= m
            i += 8
        }
        var last = UInt64(bytes.count & 0xff) << 56
        for k in 0..<(bytes.count - whole) { last |= UInt64(bytes[whole + k]) << (8 * UInt64(k)) }
        v3 ^= last; round(); round(); v0 ^= last
        v2 ^= 0xff
        round(); round(); round(); round()
        return v0 ^ v1 ^ v2 ^ v3
    }
}

private extension UInt64 {
    func rotatedLeft(_ n: UInt64) -> UInt64 { self << n | self >> (64 - n) }
}
