// Resolving the middleware names that discovered routes carry
// (`switchyard.route.NAME.middlewares=a,b`) against switchyard.yml's `middlewares:`.

/// The labels only name middlewares; what each one does is defined once in switchyard.yml.
/// The aggregator resolves every snapshot's routes here, after `DiscoveredValues.screen`.
public enum DiscoveredRouteMiddlewares {
    /// `catalog` with each discovered route's `middlewares` resolved from `defined`; a
    /// route naming a middleware that is not defined (or a list `RouteSteps` refuses) is
    /// dropped and reported with who declared it and the label key. The service, its
    /// instances and its other routes stay: a route is never served without a middleware
    /// it asked for (an `ip_allow` left out would open it).
    ///
    /// Pure; call from any thread.
    public static func resolve(
        _ catalog: ServiceCatalog, defined: [String: MiddlewareKind]
    ) -> (catalog: ServiceCatalog, rejections: [DiscoveredValues.Rejection]) {
        var rejections: [DiscoveredValues.Rejection] = []
        var resolved = catalog
        for index in resolved.services.indices where resolved.services[index].routes.contains(where: { !$0.middlewareNames.isEmpty }) {
            let service = resolved.services[index].name
            resolved.services[index].routes = resolved.services[index].routes.compactMap { route in
                guard !route.middlewareNames.isEmpty else { return route }
                switch RouteSteps.build(names: route.middlewareNames, defined: defined) {
                case .success:
                    var route = route
                    route.middlewares = route.middlewareNames.compactMap { name in defined[name].map { RouteMiddleware(name: name, kind: $0) } }
                    return route
                case .failure(let problem):
                    let message = "\(route.declaredBy ?? "a label"): \(problem.message); the route is left out, the rest serves"
                    rejections.append(DiscoveredValues.Rejection(
                        service: service, instance: nil, problem: DiscoveredValues.Problem(field: "route", message: message),
                        route: route.name ?? route.pathPrefix))
                    return nil
                }
            }
        }
        return (resolved, rejections)
    }
}
