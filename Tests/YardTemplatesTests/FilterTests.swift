// The filters and the context, one inline template each.

import Testing
import YardModel
import YardTestSupport
@testable import YardTemplates

private func render(_ text: String, _ input: TemplateInput) throws -> String {
    try TemplateRenderer.render(text: text, name: "inline.stencil", input: input)
}

@Suite struct TemplateFiltersSelectAndFormat {
    @Test func healthyDropsUnhealthyAndDrainingButKeepsUnknown() throws {
        let text = "{% for i in services.0.instances|healthy %}[{{ i.endpoint }}]{% endfor %}"
        #expect(try render(text, fixtureInput()) == "[10.0.1.2:8080][10.0.1.1:8080][10.0.2.1:8080]")
        let api = "{% for i in services.1.instances|healthy %}[{{ i.endpoint }} {{ i.health }}]{% endfor %}"
        #expect(try render(api, fixtureInput()) == "[[::1]:9001 unknown][10.0.3.1:9001 unknown]")
    }

    @Test func byTrackKeepsOneTracksInstances() throws {
        let text = "{{ services.0.instances|by_track:\"green\"|pluck:\"endpoint\"|joined }}"
        #expect(try render(text, fixtureInput()) == "10.0.2.1:8080, 10.0.2.2:8080")
    }

    @Test func byTrackTakesAVariableSuchAsTheActiveTrack() throws {
        let text = "{{ services.0.instances|by_track:services.0.traffic.active|pluck:\"id\"|joined:\" \" }}"
        #expect(try render(text, fixtureInput()) == "shop-blue-2 shop-blue-1")
    }

    @Test func byLabelMatchesANameOrANameAndValue() throws {
        #expect(try render("{{ instances|by_label:\"zone\"|pluck:\"port\"|joined }}", fixtureInput()) == "8080, 8080, 8080")
        #expect(try render("{{ instances|by_label:\"zone\",\"a\"|pluck:\"endpoint\"|joined }}", fixtureInput()) == "10.0.1.1:8080, 10.0.2.1:8080")
    }

    @Test func byTagMatchesInstancesCarryingTheTag() throws {
        #expect(try render("{{ instances|by_tag:\"v2\"|pluck:\"endpoint\"|joined }}", fixtureInput()) == "[::1]:9001")
        #expect(try render("{{ instances|by_tag:\"nope\"|pluck:\"endpoint\"|joined }}", fixtureInput()) == "")
    }

    @Test func sortedOrdersInstancesByAddressThenPortAndServicesByName() throws {
        #expect(try render("{{ services.0.instances|sorted|pluck:\"endpoint\"|joined }}", fixtureInput())
            == "10.0.1.1:8080, 10.0.1.2:8080, 10.0.2.1:8080, 10.0.2.2:8080")
        #expect(try render("{{ services|sorted|pluck:\"name\"|joined }}", fixtureInput()) == "api, shop")
        #expect(try render("{{ instances|sorted:\"weight\"|pluck:\"weight\"|joined }}", fixtureInput()) == "0, 1, 1, 1, 1, 1, 3")
    }

    @Test func portsSortNumericallyNotAsText() throws {
        let catalog = ServiceCatalog(services: [ServiceDefinition(name: "s", instances: [
            InstanceDefinition(address: "127.0.0.1", port: 10_000), InstanceDefinition(address: "127.0.0.1", port: 9_000),
        ])])
        #expect(try render("{{ instances|sorted|pluck:\"port\"|joined }}", TemplateInput(catalog: catalog)) == "9000, 10000")
    }

    @Test func yamlQuotesTextSoServicesYmlReadsItBack() throws {
        #expect(TemplateFilters.yamlScalar("web \"core\"\\x") == "\"web \\\"core\\\"\\\\x\"")
        #expect(TemplateFilters.yamlScalar(8080) == "8080")
        #expect(TemplateFilters.yamlScalar(true) == "true")
        #expect(TemplateFilters.yamlScalar("a\u{1}") == "\"a\\x01\"")
    }

    /// Smart whitespace: a line holding only a tag leaves nothing behind, and the text
    /// right before an inline block tag loses its trailing blanks (put them inside).
    @Test func contextExposesTracksTrafficLabelsAndAllowedEnvironment() throws {
        let text = """
            {% for t in services.0.tracks %}[{{ t.name }}:{{ t.instances.count }}{% if t.active %}*{% endif %}{% if t.canary %}~{% endif %}]{% endfor %}
            /{{ services.0.traffic.canary_track }} {{ services.0.traffic.canary_percent }} {{ services.0.traffic.canary_sticky }}
            {{ services.0.instances.2.labels.zone }} {{ env.DEPLOY_ENV }} [{{ env.HOME }}]
            """
        #expect(try render(text, fixtureInput()) == "[blue:2*][green:2~]/green 12.5 cookie:uid\na test []")
    }

    @Test func environmentReadsOnlyAllowedNames() {
        let values = TemplateInput.environment(allowed: ["PATH", "SWITCHYARD_SURELY_UNSET_VARIABLE"])
        #expect(Array(values.keys) == ["PATH"])
    }
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
