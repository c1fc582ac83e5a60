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

    /// (The template renders no `upstream:` yet, so a `type: grpc` service, which needs an
    /// HTTP/2 upstream, cannot pass through it; its `grpc_service` does.)
    @Test func poolsTemplateKeepsOutlierRulesAndTheGRPCServiceName() throws {
        let yaml = """
            services:
              shop:
                health: {type: tcp, grpc_service: shop.Cart, outlier_interval: 2s, success_rate_stdev_factor: 1.25,
                         success_rate_minimum_hosts: 3, success_rate_request_volume: 20, latency_p99_factor: 3.5,
                         latency_minimum_hosts: 4, latency_request_volume: 50}
                instances: [{address: 127.0.0.1, port: 9101}]
            """
        let catalog = try ConfigLoader.loadCatalog(text: yaml, path: "services.yml")
        let result = try PoolsRender.render(template: repositoryPath("templates/pools.yml.stencil"), input: TemplateInput(catalog: catalog))
        #expect(result.catalog == catalog)
        #expect(result.catalog.services.first?.health.latencyP99Factor == 3.5)
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
