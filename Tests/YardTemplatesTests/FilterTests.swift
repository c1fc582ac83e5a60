// The filters and the context, one inline template each.

import Testing
import YardModel
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
