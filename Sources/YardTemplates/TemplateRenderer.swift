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
            throw describe(error, name: name)
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

    /// The innermost token with a line wins (an included template's own line), falling
    /// back to the outer template.
    private static func describe(_ error: TemplateSyntaxError, name: String) -> TemplateError {
        let token = error.token ?? error.stackTrace.last
        guard let token, token.sourceMap.location.lineNumber > 0 else {
            return TemplateError(template: name, line: nil, message: error.reason)
        }
        let map = token.sourceMap
        return TemplateError(
            template: map.filename ?? name, line: Int(map.location.lineNumber), message: error.reason,
            sourceLine: map.location.content)
    }
}
