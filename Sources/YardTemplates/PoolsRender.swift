// The pools template: the discovered catalog in, services.yml text out, parsed and
// validated by the same loader as conf/services.yml, so a render can never route
// anything a hand-written services file could not.

import YardModel

/// Why a render produced nothing usable.
///
/// Threading: a value.
public enum RenderError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The template did not load, parse or render.
    case template(TemplateError)
    /// The template rendered, but its output is not a valid services file. The error's
    /// file is "<template> (rendered)" and its line is the output's line.
    case invalidPools(ConfigError, outputLine: String?)

    public var description: String {
        switch self {
        case .template(let error):
            return error.description
        case .invalidPools(let error, let outputLine):
            var text = "\(error) (the pools template rendered an invalid services file)"
            if let outputLine { text += "\n    output line: \(outputLine)" }
            return text
        }
    }
}

/// A successful pools render: the text and what it means.
///
/// Threading: a value.
public struct PoolsResult: Sendable, Equatable {
    public var text: String
    public var catalog: ServiceCatalog
}

/// Renders and validates the pools template. Pure apart from reading the template file.
///
/// Threading: stateless; `render(template:)` reads a file (control plane).
public enum PoolsRender {
    public static func render(template path: String, input: TemplateInput) throws(RenderError) -> PoolsResult {
        let text: String
        do {
            text = try TemplateRenderer.render(file: path, input: input)
        } catch {
            throw .template(error)
        }
        return PoolsResult(text: text, catalog: try validate(text: text, template: path))
    }

    /// Parses rendered text as services.yml; errors name the template and the output line.
    public static func validate(text: String, template: String) throws(RenderError) -> ServiceCatalog {
        do {
            return try ConfigLoader.loadCatalog(text: text, path: "\(template) (rendered)")
        } catch {
            var outputLine: String?
            if let line = error.line {
                let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
                if line >= 1, line <= lines.count { outputLine = String(lines[line - 1]) }
            }
            throw .invalidPools(error, outputLine: outputLine)
        }
    }
}
