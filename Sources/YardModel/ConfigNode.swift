// Walking a parsed YAML tree while remembering where each value came from, so every
// error names the file, the line and the key path (`listeners[0].address`).
//
// Values are read from the scalar's raw text, never from Yams's type resolution: YAML 1.1
// would turn `on` into a Bool and `1:30` into 90, which is not what an operator means in
// a proxy config. Each reader below decides what a text means for its key.

internal import Yams

// MARK: - ConfigNode

/// A YAML node with its file and key path. Threading: a value, used on one thread.
struct ConfigNode {
    let node: Node
    /// Dotted key path from the document root; empty for the root itself.
    let path: String
    let file: String

    /// 1-based line of the node (libyaml marks), nil for synthesized nodes.
    var line: Int? { node.mark?.line }

    /// An error about this node, naming its line and key path.
    func error(_ message: String) -> ConfigError {
        ConfigError(file: file, line: line, key: path.isEmpty ? nil : path, message: message)
    }

    /// `key:` with nothing after it, `~` or `null`: treated as if the key were absent.
    var isNull: Bool {
        guard case .scalar(let scalar) = node, scalar.style == .plain || scalar.style == .any else { return false }
        return ["", "~", "null", "Null", "NULL"].contains(scalar.string)
    }

    /// What the node is, in the words of an error message.
    var kind: String {
        switch node {
        case .scalar: "a single value"
        case .mapping: "a mapping (key: value)"
        case .sequence: "a list"
        case .alias: "an alias"
        }
    }

    func child(key: String, node: Node) -> ConfigNode {
        ConfigNode(node: node, path: path.isEmpty ? key : "\(path).\(key)", file: file)
    }

    func element(_ index: Int, node: Node) -> ConfigNode {
        ConfigNode(node: node, path: "\(path)[\(index)]", file: file)
    }
}

// MARK: - Scalars

extension ConfigNode {
    /// The raw text of a scalar, trimmed of surrounding blanks.
    /// - Parameter expected: what the key wants, for the message ("a duration like 10s").
    func text(expected: String) throws(ConfigError) -> String {
        guard case .scalar(let scalar) = node else {
            throw error("expected \(expected), found \(kind)")
        }
        return scalar.string.trimmingBlanks
    }

    /// A non-empty string.
    func string(expected: String = "a string") throws(ConfigError) -> String {
        let value = try text(expected: expected)
        guard !value.isEmpty else { throw error("expected \(expected), found an empty value") }
        return value
    }

    /// A whole number in `range`; `_` may separate digits (`10_000`).
    func integer(in range: ClosedRange<Int>, expected: String = "a whole number") throws(ConfigError) -> Int {
        let value = try text(expected: expected)
        guard let number = ConfigValues.parseInteger(value) else {
            throw error("expected \(expected), found '\(value)'")
        }
        guard range.contains(number) else {
            throw error("\(number) is out of range; expected \(range.lowerBound)...\(range.upperBound)")
        }
        return number
    }

    /// `true`/`false` (also `yes`/`no`, `on`/`off`).
    func boolean() throws(ConfigError) -> Bool {
        let value = try text(expected: "true or false").lowercased()
        switch value {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: throw error("expected true or false, found '\(value)'")
        }
    }

    /// A duration in whole milliseconds, strictly positive.
    func durationMilliseconds(allowZero: Bool = false) throws(ConfigError) -> Int {
        let expected = "a duration like 10s or 500ms (units ms, s, m, h; a bare number means seconds)"
        let value = try text(expected: expected)
        guard let ms = ConfigValues.parseDurationMilliseconds(value) else {
            throw error("expected \(expected), found '\(value)'")
        }
        guard ms > 0 || (allowZero && ms == 0) else { throw error("must be greater than zero") }
        guard ms <= ConfigValues.maxDurationMilliseconds else { throw error("'\(value)' is too long; the limit is 24h") }
        return ms
    }

    /// A size in bytes (`8192`, `8k`, `32KiB`, `1MiB`) in `range`.
    func bytes(in range: ClosedRange<Int>) throws(ConfigError) -> Int {
        let expected = "a size like 8192, 8k, 32KiB or 1MiB"
        let value = try text(expected: expected)
        guard let size = ConfigValues.parseSize(value) else {
            throw error("expected \(expected), found '\(value)'")
        }
        guard range.contains(size) else {
            throw error("\(value) is out of range; expected \(range.lowerBound)...\(range.upperBound) bytes")
        }
        return size
    }
}

// MARK: - Collections

extension ConfigNode {
    /// The elements of a list, each with its `[index]` path.
    func list() throws(ConfigError) -> [ConfigNode] {
        if isNull { return [] }
        guard case .sequence(let sequence) = node else {
            throw error("expected a list (lines starting with '- '), found \(kind)")
        }
        return sequence.enumerated().map { element(Int($0.offset), node: $0.element) }
    }

    /// The entries of a mapping whose keys are names chosen by the user (service names,
    /// labels), in file order.
    func entries() throws(ConfigError) -> [(key: String, value: ConfigNode)] {
        if isNull { return [] }
        guard case .mapping(let mapping) = node else {
            throw error("expected a mapping (key: value), found \(kind)")
        }
        var result: [(key: String, value: ConfigNode)] = []
        for (keyNode, valueNode) in mapping {
            let key = try keyText(keyNode)
            result.append((key, child(key: key, node: valueNode)))
        }
        return result
    }

    /// The fields of a mapping with a fixed schema; any other key is an error that
    /// suggests the closest allowed key.
    func fields(allowed: [String]) throws(ConfigError) -> Fields {
        if isNull { return Fields(owner: self, values: [:]) }
        guard case .mapping(let mapping) = node else {
            throw error("expected a mapping (key: value) with keys \(allowed.joined(separator: ", ")), found \(kind)")
        }
        var values: [String: ConfigNode] = [:]
        for (keyNode, valueNode) in mapping {
            let key = try keyText(keyNode)
            guard allowed.contains(key) else {
                let at = ConfigNode(node: keyNode, path: child(key: key, node: keyNode).path, file: file)
                throw at.error(Suggestion.unknownKeyMessage(key, allowed: allowed))
            }
            values[key] = child(key: key, node: valueNode)
        }
        return Fields(owner: self, values: values)
    }

    private func keyText(_ keyNode: Node) throws(ConfigError) -> String {
        guard case .scalar(let scalar) = keyNode else {
            let at = ConfigNode(node: keyNode, path: path, file: file)
            throw at.error("keys must be plain names, found \(at.kind)")
        }
        return scalar.string
    }
}

// MARK: - Fields

/// The keys of one mapping, looked up by name. Threading: a value.
struct Fields {
    let owner: ConfigNode
    let values: [String: ConfigNode]

    /// The value for `key`, or nil when absent or null.
    func optional(_ key: String) -> ConfigNode? {
        guard let value = values[key], !value.isNull else { return nil }
        return value
    }

    /// The value for `key`; its absence is an error on the owning mapping's line.
    func required(_ key: String, hint: String) throws(ConfigError) -> ConfigNode {
        guard let value = optional(key) else {
            let path = owner.path.isEmpty ? key : "\(owner.path).\(key)"
            throw ConfigError(file: owner.file, line: owner.line, key: path, message: "missing required key '\(key)'; \(hint)")
        }
        return value
    }
}

// MARK: - Suggestions

/// "Did you mean …?" for unknown keys, by edit distance.
enum Suggestion {
    static func unknownKeyMessage(_ key: String, allowed: [String]) -> String {
        if let near = closest(to: key, among: allowed) {
            return "unknown key '\(key)' (did you mean '\(near)'?)"
        }
        return "unknown key '\(key)'; expected one of: \(allowed.joined(separator: ", "))"
    }

    /// The candidate within a small edit distance of `word` (case-insensitive), if any.
    /// The bound grows with the word so `timeout` finds `timeouts` but `x` finds nothing.
    static func closest(to word: String, among candidates: [String]) -> String? {
        let lowered = Array(word.lowercased().unicodeScalars)
        let bound = max(1, min(3, lowered.count / 3))
        var best: (candidate: String, distance: Int)?
        for candidate in candidates {
            let distance = editDistance(lowered, Array(candidate.lowercased().unicodeScalars))
            if distance <= bound, distance < (best?.distance ?? .max) {
                best = (candidate, distance)
            }
        }
        return best?.candidate
    }

    /// Levenshtein distance with adjacent transpositions counted as one edit.
    static func editDistance(_ a: [Unicode.Scalar], _ b: [Unicode.Scalar]) -> Int {
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var previous2 = [Int](repeating: 0, count: b.count + 1)
        var previous = Array(0...b.count)
        var current = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            current[0] = i
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                    current[j] = min(current[j], previous2[j - 2] + 1)
                }
            }
            (previous2, previous, current) = (previous, current, previous2)
        }
        return previous[b.count]
    }
}

// MARK: - Text helpers

extension String {
    /// Without leading and trailing spaces and tabs (no Foundation needed).
    var trimmingBlanks: String {
        let isBlank: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        guard let first = firstIndex(where: { !isBlank($0) }) else { return "" }
        let last = lastIndex(where: { !isBlank($0) })!
        return String(self[first...last])
    }
}
