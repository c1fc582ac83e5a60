// The one validator for values a discovery source supplies (a container's labels, a
// Consul registration, an etcd key, a DNS answer, the services file): what an address,
// a port, a track or service name, a health path, a route, a label, a tag may look
// like before it reaches the routing table or a rendered nginx/HAProxy file.
//
// Why so strict: these values are written by whoever can start a container or
// register a service, and they end up inside other programs' configuration. A track
// name holding a newline and `server { ... }` must not become an nginx directive.

/// Rules for discovered values, and the screen that drops what breaks them.
///
/// Pure: values in, values out. Threading: none (static functions on values).
public enum DiscoveredValues {
    /// The longest service or track name (bytes).
    public static let maxNameLength = 128
    /// The longest host name (RFC 1123: 253 bytes, labels of at most 63).
    public static let maxHostLength = 253
    /// The longest health or route path (bytes).
    public static let maxPathLength = 1_024
    /// The longest label key, label value, tag or instance id (bytes).
    public static let maxTextLength = 4_096

    /// What is wrong with one value: the field (the metrics' `reason`) and a message
    /// that shows the value escaped, so a log line stays one line.
    public struct Problem: Error, Sendable, Equatable, CustomStringConvertible {
        /// `address`, `port`, `service`, `track`, `health_path`, `health`, `route`, `label`, `tag`, `id`.
        public var field: String
        public var message: String
        public init(field: String, message: String) {
            self.field = field
            self.message = message
        }
        public var description: String { message }
    }

    // MARK: Single values

    /// An IPv4 or IPv6 literal (without brackets), or an RFC 1123 host name: letters,
    /// digits and hyphens in dot-separated labels of 1 to 63 bytes, no label starting or
    /// ending with a hyphen, 253 bytes at most (one trailing dot allowed).
    public static func checkAddress(_ address: String) -> Problem? {
        if ConfigValues.isIPLiteral(address) { return nil }
        guard isHostName(address) else {
            return Problem(field: "address", message: "address \(shown(address)) is neither an IP address nor a host name (letters, digits, '-' and '.')")
        }
        return nil
    }

    /// A host name by RFC 1123 (see `checkAddress`).
    public static func isHostName(_ text: String) -> Bool {
        var bytes = Array(text.utf8)
        if bytes.last == UInt8(ascii: ".") { bytes.removeLast() }
        guard !bytes.isEmpty, bytes.count <= maxHostLength else { return false }
        for label in bytes.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false) {
            guard (1...63).contains(label.count), label.first != UInt8(ascii: "-"), label.last != UInt8(ascii: "-"),
                  label.allSatisfy({ isLetterOrDigit($0) || $0 == UInt8(ascii: "-") }) else { return false }
        }
        return true
    }

    /// A port a connection can go to: 1...65535.
    public static func checkPort(_ port: Int) -> Problem? {
        (1...65_535).contains(port) ? nil : Problem(field: "port", message: "port \(port) is not from 1 to 65535")
    }

    /// A service or track name: 1 to `maxNameLength` letters, digits, '-', '_' and '.'.
    /// `field` is `service` or `track`.
    public static func checkName(_ name: String, field: String) -> Problem? {
        guard isName(name) else {
            return Problem(field: field, message: "\(field) name \(shown(name)) may only use letters, digits, '-', '_' and '.' (1 to \(maxNameLength) of them)")
        }
        return nil
    }

    /// Whether `name` is a valid service or track name.
    public static func isName(_ name: String) -> Bool {
        let bytes = name.utf8
        return !bytes.isEmpty && bytes.count <= maxNameLength && bytes.allSatisfy { byte in
            isLetterOrDigit(byte) || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: ".")
        }
    }

    /// A health-check or route path: starts with '/', no whitespace or control
    /// character, at most `maxPathLength` bytes. `field` is `health_path` or `route`.
    public static func checkPath(_ path: String, field: String) -> Problem? {
        guard path.hasPrefix("/"), path.utf8.count <= maxPathLength,
              path.unicodeScalars.allSatisfy({ !isControl($0) && !$0.properties.isWhitespace }) else {
            return Problem(field: field, message: "\(field == "route" ? "route path" : "health path") \(shown(path)) must start with '/' and hold no whitespace or control character")
        }
        return nil
    }

    /// Free text (a label key or value, a tag, an id): no control character (C0, DEL,
    /// C1), at most `maxTextLength` bytes. `what` names it in the message.
    public static func checkText(_ text: String, field: String, what: String) -> Problem? {
        guard text.utf8.count <= maxTextLength, !text.unicodeScalars.contains(where: isControl) else {
            return Problem(field: field, message: "\(what) \(shown(text)) holds a control character (or is longer than \(maxTextLength) bytes)")
        }
        return nil
    }

    /// A route's host: a host name, optionally starting with `*.`.
    public static func checkRouteHost(_ host: String) -> Problem? {
        let bare = host.hasPrefix("*.") ? String(host.dropFirst(2)) : host
        guard isHostName(bare) else {
            return Problem(field: "route", message: "route host \(shown(host)) is not a host name (letters, digits, '-' and '.', optionally starting with '*.')")
        }
        return nil
    }

    // MARK: Instances and services

    /// The first problem of one instance (address, port, track, labels, tags, id), or nil.
    public static func check(_ instance: InstanceDefinition) -> Problem? {
        if let problem = checkAddress(instance.address) { return problem }
        if let problem = checkPort(Int(instance.port)) { return problem }
        if let track = instance.track, let problem = checkName(track, field: "track") { return problem }
        for key in instance.labels.keys.sorted() {
            if let problem = checkText(key, field: "label", what: "label key") { return problem }
            if let problem = checkText(instance.labels[key] ?? "", field: "label", what: "label \(shown(key))") { return problem }
        }
        for tag in instance.tags {
            if let problem = checkText(tag, field: "tag", what: "tag") { return problem }
        }
        if let id = instance.id, let problem = checkText(id, field: "id", what: "instance id") { return problem }
        return nil
    }

    /// The first problem of a service's own fields (name, active track, health path and
    /// host, routes, canary track), not its instances', or nil.
    public static func checkServiceFields(_ service: ServiceDefinition) -> Problem? {
        if let problem = checkName(service.name, field: "service") { return problem }
        if let active = service.activeTrack, let problem = checkName(active, field: "track") { return problem }
        if let canary = service.canary, let problem = checkName(canary.track, field: "track") { return problem }
        if service.health.kind == .http, let problem = checkPath(service.health.path, field: "health_path") { return problem }
        if service.health.kind == .http, !isName(service.health.method) {
            return Problem(field: "health", message: "health method \(shown(service.health.method)) is not an HTTP method like GET")
        }
        if let host = service.health.host, let problem = checkText(host, field: "health", what: "health host") { return problem }
        for route in service.routes {
            if let problem = checkPath(route.pathPrefix, field: "route") { return problem }
            if let host = route.host, let problem = checkRouteHost(host) { return problem }
            if let pattern = route.pathRegex {
                do {
                    _ = try LinearRegex(pattern)
                } catch {
                    return Problem(field: "route", message: "path_regex \(shown(pattern)): \(error.message)")
                }
            }
        }
        return nil
    }

    /// One value dropped by `screen`: the service, the instance (nil when the whole
    /// service went), and why.
    public struct Rejection: Sendable, Equatable, CustomStringConvertible {
        public var service: String
        /// The instance's id (container, task, Consul service id, etcd key) or
        /// `address:port`; nil when the service itself was dropped.
        public var instance: String?
        public var problem: Problem
        /// The route dropped (its name), when only a route of the service was.
        public var route: String? = nil

        public var description: String {
            let subject = route.map { "route \(shown($0)) of service \(shown(service))" }
                ?? instance.map { "instance \($0) of service \(shown(service))" } ?? "service \(shown(service))"
            return "dropped \(subject): \(problem.message)"
        }
    }

    /// `catalog` without the instances and services that break the rules, and what was
    /// dropped. A service whose own fields are bad goes whole; a service with a bad
    /// instance keeps its others (and loses an active or canary track no instance has
    /// any more, so the routing table never names an empty track).
    public static func screen(_ catalog: ServiceCatalog) -> (catalog: ServiceCatalog, rejections: [Rejection]) {
        var rejections: [Rejection] = []
        var services: [ServiceDefinition] = []
        for var service in catalog.services {
            if let problem = checkServiceFields(service) {
                rejections.append(Rejection(service: service.name, instance: nil, problem: problem))
                continue
            }
            let before = service.instances.count
            service.instances = service.instances.filter { instance in
                guard let problem = check(instance) else { return true }
                let name = instance.id ?? "\(instance.address):\(instance.port)"
                rejections.append(Rejection(service: service.name, instance: shown(name, quoted: false), problem: problem))
                return false
            }
            if service.instances.count != before {
                let tracks = Set(service.instances.compactMap(\.track))
                if let active = service.activeTrack, !tracks.contains(active) { service.activeTrack = nil }
                if let canary = service.canary, !tracks.contains(canary.track) { service.canary = nil }
            }
            services.append(service)
        }
        var screened = catalog
        screened.services = services
        return (screened, rejections)
    }

    // MARK: Helpers

    /// `text` quoted, with control characters escaped (`\n`, `\u{1b}`) and cut at 80
    /// characters: safe to put in a one-line message.
    public static func shown(_ text: String, quoted: Bool = true) -> String {
        var out = ""
        var count = 0
        for scalar in text.unicodeScalars {
            if count == 80 { out += "…"; break }
            count += 1
            switch scalar {
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\"" where quoted: out += "\\\""
            case "\\": out += "\\\\"
            default:
                if isControl(scalar) { out += "\\u{\(String(scalar.value, radix: 16))}" } else { out.unicodeScalars.append(scalar) }
            }
        }
        return quoted ? "\"\(out)\"" : out
    }

    static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value)
    }

    private static func isLetterOrDigit(_ byte: UInt8) -> Bool {
        (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
    }
}
