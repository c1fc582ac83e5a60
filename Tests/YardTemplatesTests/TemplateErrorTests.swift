// Template errors: syntax errors, bad filter calls, missing files and invalid pools name
// the template file and line.

import Testing
import YardModel
import YardTestSupport
@testable import YardTemplates

private func render(_ text: String, _ input: TemplateInput) throws -> String {
    try TemplateRenderer.render(text: text, name: "inline.stencil", input: input)
}

@Suite struct TemplateErrorsNameTheTemplateAndLine {
    @Test func aSyntaxErrorNamesTheFileAndLine() {
        let text = "line one\n{% for i in instances %}\n{{ i.address }}\n"
        #expect {
            try render(text, TemplateInput(catalog: ServiceCatalog(services: [])))
        } throws: { error in
            guard let error = error as? TemplateError else { return false }
            return error.template == "inline.stencil" && error.line == 2 && error.description.contains("inline.stencil:2: template error")
                && error.description.contains("endfor")
        }
    }

    @Test func anUnknownFilterNamesTheLine() throws {
        let text = "a\nb\n{{ instances|healthyy }}\n"
        do {
            _ = try render(text, try fixtureInput())
            Issue.record("rendered")
        } catch let error as TemplateError {
            #expect(error.line == 3)
            #expect(error.description.contains("healthyy"))
            #expect(error.sourceLine == "{{ instances|healthyy }}")
        }
    }

    @Test func aFilterGivenTheWrongArgumentsSaysHowToCallIt() throws {
        do {
            _ = try render("\n{{ instances|by_track }}", try fixtureInput())
            Issue.record("rendered")
        } catch let error as TemplateError {
            #expect(error.line == 2)
            #expect(error.message.contains("by_track:\"green\""))
        }
    }

    @Test func aMissingTemplateFileNamesIt() {
        #expect {
            try TemplateRenderer.render(file: "/nonexistent/pools.yml.stencil", input: TemplateInput(catalog: ServiceCatalog(services: [])))
        } throws: { error in
            (error as? TemplateError)?.description.hasPrefix("/nonexistent/pools.yml.stencil: template error: cannot open") ?? false
        }
    }

    @Test func poolsThatDoNotValidateNameTheTemplateAndTheOutputLine() throws {
        let dir = try TempDir()
        let template = try dir.write("bad-pools.yml.stencil", "services:\n{% for s in services %}\n  {{ s.name }}:\n    instances:\n      - {address: nowhere, port: 80}\n{% endfor %}\n")
        let input = try fixtureInput()
        do {
            _ = try PoolsRender.render(template: template, input: input)
            Issue.record("validated")
        } catch {
            guard case .invalidPools(let config, let outputLine, _) = error else { Issue.record("\(error)"); return }
            #expect(config.file == "\(template) (rendered)")
            #expect(config.line == 4)
            #expect(outputLine == "      - {address: nowhere, port: 80}")
            #expect(error.description.contains("'nowhere' is not an IP address"))
            #expect(error.description.contains("the pools template rendered an invalid services file"))
        }
    }
}

@Suite struct TemplateErrorLinesSurviveRepeatedLines {
    /// Stencil 0.15 alone reports line 0 for a tag on a line that repeats an earlier line.
    @Test func anErrorOnARepeatedLineStillGetsItsOwnLine() {
        let text = "{% if a %}\nx\n{% else %}\ny\n{% endif %}\n{% for i in instances %}\n{% else %}\n{% endfor %}\n"
        #expect {
            try render(text, TemplateInput(catalog: ServiceCatalog(services: [])))
        } throws: { error in
            guard let error = error as? TemplateError else { return false }
            return error.line == 7 && error.message.contains("else") && error.sourceLine == "{% else %}"
        }
    }

    @Test func tagsAreCountedAcrossMultiLineTagsAndComments() {
        #expect(TagLocator.line(ofTag: 0, in: "a {{ x }}") == 1)
        #expect(TagLocator.line(ofTag: 2, in: "{# one\ntwo #}\n{{ a }} {% b %}\n") == 3)
        #expect(TagLocator.line(ofTag: 1, in: "{ not a tag }\n{{ a\n}}\n\n{% b %}") == 5)
        #expect(TagLocator.line(ofTag: 3, in: "{{ a }}") == nil)
    }
}

@Suite struct InvalidPoolsPointBackAtTheTemplate {
    @Test func theOneTemplateLineWhoseTextFitsTheOutputLineIsNamed() {
        let template = "services:\n  x:\n    instances:\n      - address: {{ a }}\n        port: {{ p }}0\n        weight: {{ w }}\n"
        #expect(TemplateLineGuess.line(producing: "        port: 80800", in: template) == 5)
        #expect(TemplateLineGuess.line(producing: "        weight: 1", in: template) == 6)
    }

    @Test func noLineIsNamedWhenSeveralFitOrNoneDoes() {
        let template = "{% for s in services %}\n{{ s.name }}:\n  {{ s.a }}: {{ s.b }}\n  {{ s.c }}: {{ s.d }}\n{% endfor %}\n"
        #expect(TemplateLineGuess.line(producing: "  x: y", in: template) == nil, "tag-only lines say too little")
        #expect(TemplateLineGuess.line(producing: "nothing like it", in: "a: {{ b }}\n") == nil)
    }

    @Test func literalPiecesAreTheTextBetweenTags() {
        #expect(TemplateLineGuess.literalPieces("  port: {{ p }}0{% if x %}!{% endif %}") == ["  port: ", "0", "!", ""])
        #expect(TemplateLineGuess.literalPieces("plain") == ["plain"])
    }

    @Test func theShippedPoolsTemplateWithABadPortNamesItsPortLine() throws {
        let dir = try TempDir()
        let shipped = try String(contentsOfFile: repositoryPath("templates/pools.yml.stencil"), encoding: .utf8)
        let template = try dir.write("pools.yml.stencil", shipped.replacingOccurrences(of: "port: {{ instance.port }}", with: "port: {{ instance.port }}0"))
        let portLine = shipped.split(separator: "\n", omittingEmptySubsequences: false).firstIndex { $0.contains("port: {{ instance.port }}") }! + 1
        let input = try fixtureInput()
        do {
            _ = try PoolsRender.render(template: template, input: input)
            Issue.record("validated")
        } catch {
            #expect(error.description.contains("comes from \(template):\(portLine)"), "\(error)")
        }
    }
}
