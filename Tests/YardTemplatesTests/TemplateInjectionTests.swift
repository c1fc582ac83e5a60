// The shipped nginx and HAProxy templates quote what they insert: a value that slipped
// past discovery's validation (a track holding a newline and `server { ... }`) stays
// one word of the rendered file and cannot add a directive, a block or a line.

import Testing
import YardModel
@testable import YardTemplates

private let injectedTrack = "blue;\n}\nserver { listen 80; location / { return 200 owned; } }\nupstream x {"

/// A catalog no provider would deliver (validation refuses it): what the templates must
/// survive anyway.
private func poisonedInput() -> TemplateInput {
    var shop = ServiceDefinition(name: "shop", activeTrack: "blue", instances: [
        InstanceDefinition(address: "10.0.1.1", port: 8080, track: "blue", id: "web-1"),
        InstanceDefinition(address: "10.0.9.9", port: 8080, track: injectedTrack, labels: ["note": "x\n}\nserver {"], id: "evil\n}\n"),
    ])
    shop.health.kind = .http
    shop.health.path = "/ok\n    server evil 6.6.6.6:80 # $HOME"
    return TemplateInput(catalog: ServiceCatalog(services: [shop]))
}

@Suite struct TemplateInjection {
    @Test func nginxQuoteKeepsPlainWordsBareAndQuotesEverythingElse() {
        #expect(TemplateFilters.nginxQuoted("shop-blue") == "shop-blue")
        #expect(TemplateFilters.nginxQuoted("[::1]:9001") == "[::1]:9001")
        #expect(TemplateFilters.nginxQuoted("a\n}\"\\") == #""a\n}\"\\""#)
        #expect(TemplateFilters.nginxQuoted("") == #""""#)
        #expect(TemplateFilters.nginxQuoted("a\u{1}b") == #""a?b""#)
    }

    @Test func haproxyQuoteEscapesQuotesBackslashesDollarsAndControlCharacters() {
        #expect(TemplateFilters.haproxyQuoted("shop") == "shop")
        #expect(TemplateFilters.haproxyQuoted("/ok $HOME\n\u{1}") == #""/ok \$HOME\n\x01""#)
    }

    @Test func aTrackHoldingANewlineAndAServerBlockAddsNoNginxDirective() throws {
        let text = try TemplateRenderer.render(file: repositoryPath("templates/nginx-upstream.conf.stencil"), input: poisonedInput())
        let config = try NginxStructure.parse(text)
        // Top level: upstream blocks only, each holding server directives only.
        #expect(config.allSatisfy { $0.words.first == "upstream" && $0.words.count == 2 && $0.block != nil }, "\(text)")
        #expect(config.flatMap { $0.block ?? [] }.allSatisfy { $0.words.first == "server" && $0.block == nil }, "\(text)")
        #expect(config.map { $0.words[1] } == ["shop", "shop-blue", "shop-\(injectedTrack)"])
        #expect(config.first?.block?.map(\.words) == [["server", "10.0.1.1:8080"]])
        #expect(config.last?.block?.map(\.words) == [["server", "10.0.9.9:8080"]])
        // Every line of the file is one the template writes.
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            #expect(line.hasPrefix("upstream ") || line.hasPrefix("    server ") || line == "}", "injected line: \(line)")
        }
    }

    @Test func aHealthPathHoldingANewlineAddsNoHAProxyLine() throws {
        let text = try TemplateRenderer.render(file: repositoryPath("templates/haproxy-backend.cfg.stencil"), input: poisonedInput())
        let keywords = ["backend ", "    balance ", "    option httpchk", "    http-check ", "    server "]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            #expect(keywords.contains { line.hasPrefix($0) }, "injected line: \(line)")
        }
        #expect(text.contains(#"http-check send meth GET uri "/ok\n    server evil 6.6.6.6:80 # \$HOME""#))
        #expect(!text.contains("\n    server evil 6.6.6.6"))
    }
}

/// nginx's reading of a configuration, as far as these tests need it: words (with its
/// quoting and escapes), `;` ending a directive, `{ }` holding a block, `#` comments.
struct NginxStructure {
    struct Directive {
        var words: [String]
        var block: [Directive]?
    }

    struct Unbalanced: Error {}

    static func parse(_ text: String) throws -> [Directive] {
        var scalars = Array(text.unicodeScalars)[...]
        return try parseBlock(&scalars, nested: false)
    }

    private static func parseBlock(_ input: inout ArraySlice<Unicode.Scalar>, nested: Bool) throws -> [Directive] {
        var directives: [Directive] = []
        var words: [String] = []
        while let scalar = input.first {
            switch scalar {
            case " ", "\t", "\n", "\r":
                input.removeFirst()
            case "#":
                while let next = input.first, next != "\n" { input.removeFirst() }
            case ";":
                input.removeFirst()
                directives.append(Directive(words: words, block: nil))
                words = []
            case "{":
                input.removeFirst()
                directives.append(Directive(words: words, block: try parseBlock(&input, nested: true)))
                words = []
            case "}":
                input.removeFirst()
                guard nested, words.isEmpty else { throw Unbalanced() }
                return directives
            case "\"", "'":
                input.removeFirst()
                var word = ""
                while let next = input.popFirst(), next != scalar {
                    if next == "\\", let escaped = input.popFirst() {
                        switch escaped {
                        case "n": word += "\n"
                        case "r": word += "\r"
                        case "t": word += "\t"
                        case "\"", "'", "\\": word.unicodeScalars.append(escaped)
                        default: word += "\\"; word.unicodeScalars.append(escaped)
                        }
                    } else {
                        word.unicodeScalars.append(next)
                    }
                }
                words.append(word)
            default:
                var word = ""
                while let next = input.first, !" \t\n\r;{}\"'".unicodeScalars.contains(next) {
                    word.unicodeScalars.append(next)
                    input.removeFirst()
                }
                words.append(word)
            }
        }
        guard !nested, words.isEmpty else { throw Unbalanced() }
        return directives
    }
}
