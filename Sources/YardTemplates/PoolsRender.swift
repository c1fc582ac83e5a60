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
    /// file is "<template> (rendered)" and its line is the output's line; `templateLine`
    /// is the one template line whose text could have produced it, when only one could.
    case invalidPools(ConfigError, outputLine: String?, templateLine: Int? = nil)

    public var description: String {
        switch self {
        case .template(let error):
            return error.description
        case .invalidPools(let error, let outputLine, let templateLine):
            var text = "\(error) (the pools template rendered an invalid services file)"
            if let outputLine { text += "\n    output line: \(outputLine)" }
            if let templateLine, let line = error.line {
                let template = error.file.hasSuffix(" (rendered)") ? String(error.file.dropLast(11)) : error.file
                text += "\n    output line \(line) comes from \(template):\(templateLine)"
            }
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
        let source: String
        do {
            source = try TemplateRenderer.load(path)
            text = try TemplateRenderer.render(text: source, name: path, input: input)
        } catch {
            throw .template(error)
        }
        do {
            return PoolsResult(text: text, catalog: try validate(text: text, template: path))
        } catch {
            guard case .invalidPools(let config, let outputLine?, _) = error else { throw error }
            throw .invalidPools(config, outputLine: outputLine, templateLine: TemplateLineGuess.line(producing: outputLine, in: source))
        }
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

/// Which template line produced an output line, judged by the template's literal text.
///
/// A rendered line has no link back to the template, but a template line's text outside
/// its tags appears in everything it renders, in order. When exactly one template line's
/// literal text fits the output line, that is where to look.
///
/// Threading: stateless.
enum TemplateLineGuess {
    static func line(producing output: String, in template: String) -> Int? {
        var matches: [Int] = []
        for (offset, line) in template.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let pieces = literalPieces(String(line))
            // A line that is mostly tags says too little to be told apart from others.
            guard pieces.joined().filter({ $0 != " " }).count >= 3, fits(output, pieces) else { continue }
            matches.append(offset + 1)
        }
        return matches.count == 1 ? matches[0] : nil
    }

    /// The text between a line's `{{ }}` and `{% %}` tags, in order; the first piece is
    /// the line's beginning.
    static func literalPieces(_ line: String) -> [String] {
        var pieces: [String] = []
        var piece = ""
        var index = line.startIndex
        while index < line.endIndex {
            let next = line.index(after: index)
            if line[index] == "{", next < line.endIndex, line[next] == "{" || line[next] == "%" {
                let closing = line[next] == "{" ? "}}" : "%}"
                pieces.append(piece)
                piece = ""
                guard let close = line[next...].range(of: closing) else { return pieces }
                index = close.upperBound
                continue
            }
            piece.append(line[index])
            index = next
        }
        pieces.append(piece)
        return pieces
    }

    private static func fits(_ output: String, _ pieces: [String]) -> Bool {
        guard let first = pieces.first, output.hasPrefix(first) else { return false }
        var rest = output.dropFirst(first.count)
        for piece in pieces.dropFirst() where !piece.isEmpty {
            guard let found = rest.range(of: piece) else { return false }
            rest = rest[found.upperBound...]
        }
        return pieces.count > 1 || output == first
    }
}
