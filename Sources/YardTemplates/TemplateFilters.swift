// The filters templates use beyond Stencil's own: healthy, by_track, by_label, by_tag,
// sorted, joined, pluck, yaml, slug, nginx_quote, haproxy_quote. Each is a pure function of its input, registered on a
// Stencil `Extension`; a wrong argument is a `TemplateSyntaxError`, which the renderer
// reports with the template's file and line.

import Stencil

/// Builds the Stencil extension holding Switchyard's filters.
///
/// Threading: Stencil's `Extension` is a non-Sendable class: make one per render, on the
/// rendering thread (cheap: a dictionary of closures).
enum TemplateFilters {
    static func makeExtension() -> Extension {
        let ext = Extension()
        ext.registerFilter("healthy") { value in try instances(value, "healthy").filter(isHealthy) }
        ext.registerFilter("by_track") { value, arguments in
            let track = try stringArgument(arguments, filter: "by_track", example: "by_track:\"green\"")
            return try instances(value, "by_track").filter { ($0["track"] as? String) == track }
        }
        ext.registerFilter("by_label") { value, arguments in
            guard (1...2).contains(arguments.count), let name = arguments[0].map(describe) else {
                throw TemplateSyntaxError("'by_label' takes a label name and optionally a value, e.g. by_label:\"zone\",\"a\"")
            }
            let wanted = arguments.count == 2 ? arguments[1].map(describe) : nil
            return try instances(value, "by_label").filter { instance in
                guard let labels = instance["labels"] as? [String: String], let found = labels[name] else { return false }
                return wanted == nil || found == wanted
            }
        }
        ext.registerFilter("by_tag") { value, arguments in
            let tag = try stringArgument(arguments, filter: "by_tag", example: "by_tag:\"primary\"")
            return try instances(value, "by_tag").filter { ($0["tags"] as? [String])?.contains(tag) ?? false }
        }
        ext.registerFilter("sorted") { value, arguments in try sorted(value, arguments) }
        ext.registerFilter("joined") { value, arguments in
            guard arguments.count <= 1 else { throw TemplateSyntaxError("'joined' takes at most one separator, e.g. joined:\", \"") }
            let separator = arguments.first.flatMap { $0.map(describe) } ?? ", "
            guard let items = value as? [Any] else { throw TemplateSyntaxError("'joined' needs a list, got \(kind(value))") }
            return items.map(describe).joined(separator: separator)
        }
        ext.registerFilter("pluck") { value, arguments in
            let key = try stringArgument(arguments, filter: "pluck", example: "pluck:\"endpoint\"")
            guard let items = value as? [[String: Any]] else { throw TemplateSyntaxError("'pluck' needs a list of mappings, got \(kind(value))") }
            return items.compactMap { $0[key] }
        }
        ext.registerFilter("yaml") { value in yamlScalar(value) }
        ext.registerFilter("nginx_quote") { value in nginxQuoted(value) }
        ext.registerFilter("haproxy_quote") { value in haproxyQuoted(value) }
        ext.registerFilter("slug") { value in
            String(describe(value ?? "").map { $0.isLetter || $0.isNumber || $0 == "_" || $0 == "." ? $0 : "-" })
        }
        return ext
    }

    // MARK: Filters

    /// Not known to be failing: "healthy" or "unknown" (not checked yet, or rendered
    /// offline), and not draining. Unknown counts so that a render without health data
    /// never empties a pool.
    static func isHealthy(_ instance: [String: Any]) -> Bool {
        let health = instance["health"] as? String ?? "unknown"
        return (health == "healthy" || health == "unknown") && (instance["drain"] as? Bool) != true
    }

    /// Instances by address then port (numerically); services and tracks by name; strings
    /// and numbers by value; `sorted:"key"` sorts mappings by that key.
    static func sorted(_ value: Any?, _ arguments: [Any?]) throws -> Any? {
        guard arguments.count <= 1 else { throw TemplateSyntaxError("'sorted' takes at most one key, e.g. sorted:\"port\"") }
        let key = arguments.first.flatMap { $0.map(describe) }
        if let mappings = value as? [[String: Any]] {
            let keys = key.map { [$0] } ?? (mappings.first?["address"] != nil ? ["address", "port"] : ["name"])
            return mappings.sorted { left, right in
                for key in keys {
                    let order = compare(left[key], right[key])
                    if order != 0 { return order < 0 }
                }
                return false
            }
        }
        if let items = value as? [Any] { return items.sorted { compare($0, $1) < 0 } }
        throw TemplateSyntaxError("'sorted' needs a list, got \(kind(value))")
    }

    private static func compare(_ left: Any?, _ right: Any?) -> Int {
        if let l = left as? Int, let r = right as? Int { return l < r ? -1 : (l == r ? 0 : 1) }
        let l = left.map(describe) ?? "", r = right.map(describe) ?? ""
        return l < r ? -1 : (l == r ? 0 : 1)
    }

    // MARK: YAML

    /// A value as a YAML scalar services.yml reads back unchanged: numbers and booleans
    /// bare, everything else double-quoted with JSON escapes.
    static func yamlScalar(_ value: Any?) -> String {
        switch value {
        case let number as Int: return String(number)
        case let flag as Bool: return flag ? "true" : "false"
        case nil: return "\"\""
        default: break
        }
        return doubleQuoted(describe(value ?? ""), escaping: [:], control: hexEscape)
    }

    // MARK: Quoting for other programs' configuration

    /// Whether `text` can stand bare as one nginx or HAProxy word: letters, digits and
    /// `_ . : - [ ] /` only (names, addresses, `[::1]:80`, simple paths).
    static func isBareWord(_ text: String) -> Bool {
        !text.isEmpty && text.utf8.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                || byte == UInt8(ascii: "_") || byte == UInt8(ascii: ".") || byte == UInt8(ascii: ":") || byte == UInt8(ascii: "-")
                || byte == UInt8(ascii: "[") || byte == UInt8(ascii: "]") || byte == UInt8(ascii: "/")
        }
    }

    /// A value as exactly one nginx configuration word: bare when it is a plain word,
    /// else double-quoted with nginx's escapes (`\"`, `\\`, `\n`, `\r`, `\t`), so a
    /// newline, `;`, `{` or `}` inside it stays inside the word. nginx has no escape for
    /// other control characters: they become `?`. A `$` stays as it is (nginx has no
    /// escape for it either): do not insert values into directives that expand
    /// variables; discovery already refuses `$` in names, addresses and paths.
    static func nginxQuoted(_ value: Any?) -> String {
        let text = value.map(describe) ?? ""
        return isBareWord(text) ? text : doubleQuoted(text, escaping: [:], control: { _ in "?" })
    }

    /// A value as exactly one HAProxy configuration word: bare when it is a plain word,
    /// else in HAProxy's weak (double) quotes with its escapes: `\"`, `\\`, `\$` (no
    /// environment expansion), `\n`, `\r`, `\t` and `\xNN` for other control characters.
    static func haproxyQuoted(_ value: Any?) -> String {
        let text = value.map(describe) ?? ""
        return isBareWord(text) ? text : doubleQuoted(text, escaping: ["$": "\\$"], control: hexEscape)
    }

    /// `text` in double quotes with C-style escapes for `"`, `\\`, newline, tab and
    /// carriage return, `escaping`'s own, and `control` for other control characters
    /// (C0 and DEL).
    static func doubleQuoted(_ text: String, escaping: [Unicode.Scalar: String], control: (Unicode.Scalar) -> String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            default:
                if let escaped = escaping[scalar] {
                    out += escaped
                } else if scalar.value < 0x20 || scalar.value == 0x7F {
                    out += control(scalar)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }

    /// `\xNN` for a control character.
    static func hexEscape(_ scalar: Unicode.Scalar) -> String {
        "\\x" + (scalar.value < 0x10 ? "0" : "") + String(scalar.value, radix: 16)
    }

    // MARK: Helpers

    private static func instances(_ value: Any?, _ filter: String) throws -> [[String: Any]] {
        if value == nil { return [] }
        guard let list = value as? [[String: Any]] else {
            throw TemplateSyntaxError("'\(filter)' needs a list of instances (service.instances or instances), got \(kind(value))")
        }
        return list
    }

    private static func stringArgument(_ arguments: [Any?], filter: String, example: String) throws -> String {
        guard arguments.count == 1, let value = arguments[0] else {
            throw TemplateSyntaxError("'\(filter)' takes one argument, e.g. \(example)")
        }
        return describe(value)
    }

    static func describe(_ value: Any) -> String {
        switch value {
        case let text as String: text
        case let number as Int: String(number)
        case let flag as Bool: flag ? "true" : "false"
        case let number as Double: number == number.rounded() ? String(Int(number)) : String(number)
        default: String(describing: value)
        }
    }

    private static func kind(_ value: Any?) -> String {
        switch value {
        case nil: "nothing"
        case is String: "a string"
        case is Int, is Double: "a number"
        case is [String: Any]: "a mapping"
        case is [Any]: "a list"
        default: "\(type(of: value!))"
        }
    }
}
