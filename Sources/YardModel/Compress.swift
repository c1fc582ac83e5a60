// The `compress` middleware: gzip for text responses the client accepts gzip for. This file
// holds the configured values and the pure decisions (Accept-Encoding, the media types,
// the response conditions); Sources/YardProxy/ResponseCompression.swift deflates.
//
//   middlewares:
//     gzip: {compress: {min_bytes: 1024, level: 5, types: [text/*, application/json]}}

/// A `compress` middleware as configured.
public struct Compress: Sendable, Equatable {
    /// Media types to compress: `type/subtype`, or `type/*` for every subtype.
    public var types: [String]
    /// A response whose Content-Length is below this stays as is.
    public var minBytes: Int
    /// zlib's level, 1 (fastest) to 9 (smallest).
    public var level: Int

    public static let defaultTypes = [
        "text/*", "application/json", "application/javascript", "application/xml", "application/xhtml+xml",
        "application/rss+xml", "application/atom+xml", "application/manifest+json", "application/ld+json",
        "application/wasm", "image/svg+xml",
    ]

    public init(types: [String] = Compress.defaultTypes, minBytes: Int = 1_024, level: Int = 5) {
        self.types = types
        self.minBytes = minBytes
        self.level = level
    }
}

/// A `compress` middleware in the byte form the data plane reads.
/// Threading: immutable, `Sendable`, read by every event loop.
public struct CompressRule: Sendable {
    /// Lower-cased `type/subtype` (exact) or `type/` (a `type/*` entry, matched as a prefix).
    let exact: [[UInt8]]
    let prefixes: [[UInt8]]
    public let minBytes: Int64
    public let level: Int32

    public init(_ settings: Compress) {
        var exact: [[UInt8]] = []
        var prefixes: [[UInt8]] = []
        for type in settings.types {
            let lowered = type.lowercased()
            if lowered.hasSuffix("/*") { prefixes.append(Array(lowered.utf8.dropLast())) } else { exact.append(Array(lowered.utf8)) }
        }
        self.exact = exact
        self.prefixes = prefixes
        self.minBytes = Int64(settings.minBytes)
        self.level = Int32(settings.level)
    }

    /// Whether a Content-Type value (parameters after `;` ignored, any case) is one to compress.
    public func matches(contentType value: UnsafeRawBufferPointer) -> Bool {
        var end = 0
        while end < value.count && value[end] != UInt8(ascii: ";") { end += 1 }
        while end > 0 && (value[end - 1] == 0x20 || value[end - 1] == 0x09) { end -= 1 }
        var start = 0
        while start < end && (value[start] == 0x20 || value[start] == 0x09) { start += 1 }
        let type = UnsafeRawBufferPointer(rebasing: value[start..<end])
        for wanted in exact where wanted.count == type.count && RouteMatcher.caseBlindEqual(type, at: 0, wanted) {
            return true
        }
        for prefix in prefixes where prefix.count < type.count && RouteMatcher.caseBlindEqual(type, at: 0, prefix) {
            return true
        }
        return false
    }
}

/// What the client's Accept-Encoding fields say about gzip (RFC 9110 §12.5.3), read field by
/// field: `gzip` (or `x-gzip`) with a q-value above 0 allows it, `gzip;q=0` refuses it
/// whatever `*` says, and `*` above 0 allows it when gzip is not named. No field: no gzip
/// (an identity-only client is the safe reading for a proxy).
public struct AcceptEncoding: Sendable {
    /// q of the `gzip` entry (thousandths), -1 when none was named.
    private var gzip = -1
    private var star = -1

    public init() {}

    /// Reads one Accept-Encoding field value.
    public mutating func add(_ value: UnsafeRawBufferPointer) {
        var i = 0
        let n = value.count
        while i < n {
            // One element: coding *( OWS ";" OWS param ), up to the next ",".
            var end = i
            while end < n && value[end] != UInt8(ascii: ",") { end += 1 }
            let element = UnsafeRawBufferPointer(rebasing: value[i..<end])
            read(element)
            i = end + 1
        }
    }

    public var allowsGzip: Bool { gzip >= 0 ? gzip > 0 : star > 0 }

    private mutating func read(_ element: UnsafeRawBufferPointer) {
        var start = 0
        var end = 0
        while end < element.count && element[end] != UInt8(ascii: ";") { end += 1 }
        let paramsStart = end
        while end > start && (element[end - 1] == 0x20 || element[end - 1] == 0x09) { end -= 1 }
        while start < end && (element[start] == 0x20 || element[start] == 0x09) { start += 1 }
        let coding = UnsafeRawBufferPointer(rebasing: element[start..<end])
        let isGzip = RouteSteps.sameName(coding, "gzip") || RouteSteps.sameName(coding, "x-gzip")
        let isStar = coding.count == 1 && coding[0] == UInt8(ascii: "*")
        guard isGzip || isStar else { return }
        let q = AcceptEncoding.quality(UnsafeRawBufferPointer(rebasing: element[paramsStart...]))
        if isGzip { gzip = max(gzip, q) } else { star = max(star, q) }
    }

    /// The `q=` parameter in thousandths (1000 when absent; 0 for one that does not parse,
    /// so a malformed weight never turns compression on).
    static func quality(_ params: UnsafeRawBufferPointer) -> Int {
        var i = 0
        let n = params.count
        while i < n {
            while i < n && (params[i] == UInt8(ascii: ";") || params[i] == 0x20 || params[i] == 0x09) { i += 1 }
            var end = i
            while end < n && params[end] != UInt8(ascii: ";") { end += 1 }
            if end - i >= 2 && (params[i] | 0x20) == UInt8(ascii: "q") && params[i + 1] == UInt8(ascii: "=") {
                var j = i + 2
                var last = end
                while last > j && (params[last - 1] == 0x20 || params[last - 1] == 0x09) { last -= 1 }
                guard j < last else { return 0 }
                let whole = params[j]
                guard whole == UInt8(ascii: "0") || whole == UInt8(ascii: "1") else { return 0 }
                var thousandths = whole == UInt8(ascii: "1") ? 1_000 : 0
                j += 1
                guard j < last else { return thousandths }
                guard params[j] == UInt8(ascii: "."), last - j <= 4 else { return 0 }
                var scale = 100
                j += 1
                while j < last {
                    let d = params[j]
                    guard d >= UInt8(ascii: "0") && d <= UInt8(ascii: "9") else { return 0 }
                    if whole == UInt8(ascii: "1") && d != UInt8(ascii: "0") { return 0 }
                    thousandths += Int(truncatingIfNeeded: d &- UInt8(ascii: "0")) * scale
                    scale /= 10
                    j += 1
                }
                return thousandths
            }
            i = end
        }
        return 1_000
    }
}

/// Whether a Cache-Control value has the `no-transform` directive (any case).
public func cacheControlForbidsTransform(_ value: UnsafeRawBufferPointer) -> Bool {
    var i = 0
    let n = value.count
    while i < n {
        while i < n && (value[i] == UInt8(ascii: ",") || value[i] == 0x20 || value[i] == 0x09) { i += 1 }
        var end = i
        while end < n && value[end] != UInt8(ascii: ",") && value[end] != 0x20 && value[end] != 0x09 && value[end] != UInt8(ascii: "=") { end += 1 }
        if RouteSteps.sameName(UnsafeRawBufferPointer(rebasing: value[i..<end]), "no-transform") { return true }
        while end < n && value[end] != UInt8(ascii: ",") { end += 1 }
        i = end
    }
    return false
}

/// The size of a gzip stream's zlib state: `windowBits` (9...15) and `memLevel` (1...8).
/// zlib's deflate state costs about 2^(windowBits+2) + 2^(memLevel+9) bytes: 256 KiB at
/// the defaults (15, 8), which a 2 KiB body does not need.
public struct DeflateSize: Sendable, Equatable {
    public var windowBits: Int32
    public var memLevel: Int32

    public static let full = DeflateSize(windowBits: 15, memLevel: 8)

    public init(windowBits: Int32, memLevel: Int32) {
        self.windowBits = windowBits
        self.memLevel = memLevel
    }

    /// The state for a body of `contentLength` bytes (nil: unknown, the full size), as
    /// nginx's gzip filter sizes it: the window halves (and memLevel drops with it) while
    /// half of it still holds the whole body beside zlib's 262-byte lookahead, so the
    /// output is as small as with the full window. zlib's gzip wrapper takes 9 bits at least.
    public static func forBody(contentLength: Int64?) -> DeflateSize {
        guard let length = contentLength, length > 0 else { return .full }
        var size = DeflateSize.full
        while size.windowBits > 9 && length < (Int64(1) << (size.windowBits - 1)) - 262 {
            size.windowBits -= 1
            size.memLevel -= 1
        }
        size.memLevel = max(size.memLevel, 1)
        return size
    }

    /// Approximate bytes of zlib state at this size (zlib's zconf.h formula).
    public var stateBytes: Int { (1 << (Int(truncatingIfNeeded: windowBits) + 2)) + (1 << (Int(truncatingIfNeeded: memLevel) + 9)) }

    /// Whether a stream of this size serves a body that wants `other` (a bigger window
    /// compresses at least as well; a smaller one would not).
    public func covers(_ other: DeflateSize) -> Bool {
        windowBits >= other.windowBits && memLevel >= other.memLevel
    }
}
