// Golden tests for every template in templates/: the fixture catalog renders to the
// expected text byte for byte, and the pools output means what the catalog means.

import Testing
import YardModel
@testable import YardTemplates

@Suite struct ShippedTemplates {
    @Test func poolsTemplateRendersTheFixtureCatalogAsItsGoldenServicesFile() throws {
        let text = try TemplateRenderer.render(file: repositoryPath("templates/pools.yml.stencil"), input: fixtureInput())
        try expectGolden(text, "pools.yml")
    }

    @Test func poolsOutputParsesBackToTheSameCatalog() throws {
        let input = try fixtureInput()
        let result = try PoolsRender.render(template: repositoryPath("templates/pools.yml.stencil"), input: input)
        #expect(result.catalog == input.catalog)
    }

    @Test func poolsTemplateRoundTripsTheShippedServicesFile() throws {
        let catalog = try ConfigLoader.loadCatalog(path: repositoryPath("conf/services.yml"))
        let result = try PoolsRender.render(template: repositoryPath("templates/pools.yml.stencil"), input: TemplateInput(catalog: catalog))
        #expect(result.catalog == catalog)
    }

    @Test func poolsTemplateWritesAnEmptyCatalogAsAnExplicitEmptyMapping() throws {
        let result = try PoolsRender.render(
            template: repositoryPath("templates/pools.yml.stencil"), input: TemplateInput(catalog: ServiceCatalog(services: [])))
        #expect(result.text.hasSuffix("services: {}\n"))
        #expect(result.catalog.services.isEmpty)
    }

    @Test func nginxUpstreamTemplateRendersItsGoldenFile() throws {
        let text = try TemplateRenderer.render(file: repositoryPath("templates/nginx-upstream.conf.stencil"), input: fixtureInput())
        try expectGolden(text, "nginx-upstream.conf")
    }

    @Test func haproxyBackendTemplateRendersItsGoldenFile() throws {
        let text = try TemplateRenderer.render(file: repositoryPath("templates/haproxy-backend.cfg.stencil"), input: fixtureInput())
        try expectGolden(text, "haproxy-backend.cfg")
    }
}
