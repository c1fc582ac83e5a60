// Rendering one template file against a `TemplateInput`, with errors that name the
// template file and line.

import Foundation
import Stencil
import YardModel

/// A template that failed to load, parse or render: file, 1-based line, and what is wrong.
///
/// Threading: a value.
public struct TemplateError: Error, Sendable, Equatable, CustomStringConvertible {
    public var template: String
    /// 1-based line in the template, or nil when the error is about the whole file.
    public var line: Int?
    public var message: String
    /// The template line the error points at, for the message.
    public var sourceLine: String?

    public init(template: String, line: Int?, message: String, sourceLine: String? = nil) {
        self.template = template
        self.line = line
        self.message = message
        self.sourceLine = sourceLine
    }

    public var description: String {
        var text = template
        if let line { text += ":\(line)" }
        text += ": template error: \(message)"
        if let sourceLine { text += "\n    \(sourceLine.trimmingCharacters(in: .whitespaces))" }
        return text
    }
}

/// Loads and renders Stencil templates with Switchyard's context and filters.
///
/// Whitespace: Stencil's `smart` trimming, so a line holding only a `{% %}` tag leaves no
/// blank line behind and templates can be indented like the text they produce.
///
/// Threading: stateless; each call builds its own Stencil environment. `render(file:)`
/// reads the file (blocking I/O, control plane).
public enum TemplateRenderer {
    /// Templates are small; anything bigger is the wrong file.
    static let maxTemplateBytes = 1_048_576

    /// Reads and renders the template at `path`.
    public static func render(file path: String, input: TemplateInput) throws(TemplateError) -> String {
        try render(text: try load(path), name: path, input: input)
    }

    /// Renders `text` as the template named `name` (the file path, for messages).
    public static func render(text: String, name: String, input: TemplateInput) throws(TemplateError) -> String {
        let environment = Environment(extensions: [TemplateFilters.makeExtension()], trimBehaviour: .smart)
        let template = Template(templateString: text, environment: environment, name: name)
        do {
            return try template.render(TemplateContext.make(input))
        } catch let error as TemplateSyntaxError {
            throw describe(error, name: name, text: text, tokens: template.tokens)
        } catch {
            throw TemplateError(template: name, line: nil, message: "\(error)")
        }
    }

    /// The template's text; a missing or unreadable file is an error naming it.
    public static func load(_ path: String) throws(TemplateError) -> String {
        let bytes: [UInt8]
        do {
            bytes = try ConfigLoader.readFile(path: path)
        } catch {
            throw TemplateError(template: path, line: nil, message: error.message)
        }
        guard bytes.count <= maxTemplateBytes else {
            throw TemplateError(template: path, line: nil, message: "the template is larger than 1 MiB; is this the right file?")
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw TemplateError(template: path, line: nil, message: "the template is not valid UTF-8 text")
        }
        return text
    }

    // MARK: Errors

    /// Where the error's token is. Stencil 0.15's own line numbers are unreliable: its
    /// lexer finds each line by searching for the line's text, so a token on a line that
    /// repeats an earlier one (a second `{% else %}`) gets line 0, or the wrong line. The
    /// token objects are the template's own, in order, so the error token's position among
    /// the tags gives the line exactly.
    private static func describe(_ error: TemplateSyntaxError, name: String, text: String, tokens: [Token]) -> TemplateError {
        guard let token = error.token ?? error.stackTrace.last else {
            return TemplateError(template: name, line: nil, message: error.reason)
        }
        if let index = tokens.firstIndex(where: { $0 === token }) {
            let tagIndex = tokens[..<index].count { $0.kind != .text }
            if token.kind != .text, let line = TagLocator.line(ofTag: tagIndex, in: text) {
                return TemplateError(template: name, line: line, message: error.reason, sourceLine: TagLocator.lineText(line, in: text))
            }
        }
        let map = token.sourceMap
        guard map.location.lineNumber > 0 else { return TemplateError(template: map.filename ?? name, line: nil, message: error.reason) }
        return TemplateError(
            template: map.filename ?? name, line: Int(map.location.lineNumber), message: error.reason,
            sourceLine: map.location.content)
    }
}

/// Finds tags (`{{ }}`, `{% %}`, `{# #}`) in template text the way Stencil's scanner does.
///
/// Threading: stateless.
enum TagLocator {
    /// The 1-based line on which the `index`-th tag (0-based, in order) starts.
    static func line(ofTag index: Int, in text: String) -> Int? {
        let bytes = Array(text.utf8)
        var position = 0
        var seen = 0
        var line = 1
        while position + 1 < bytes.count {
            let byte = bytes[position]
            if byte == UInt8(ascii: "\n") { line += 1 }
            guard byte == UInt8(ascii: "{"), let close = closer(bytes[position + 1]) else {
                position += 1
                continue
            }
            if seen == index { return line }
            seen += 1
            // Skip to the end of this tag, counting the lines it spans.
            var end = position + 2
            while end + 1 < bytes.count, !(bytes[end] == close && bytes[end + 1] == UInt8(ascii: "}")) {
                if bytes[end] == UInt8(ascii: "\n") { line += 1 }
                end += 1
            }
            position = end + 2
        }
        return nil
    }

    static func lineText(_ line: Int, in text: String) -> String? {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        return line >= 1 && line <= lines.count ? String(lines[line - 1]) : nil
    }

    private static func closer(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "{"): UInt8(ascii: "}")
        case UInt8(ascii: "%"): UInt8(ascii: "%")
        case UInt8(ascii: "#"): UInt8(ascii: "#")
        default: nil
        }
    }
}
