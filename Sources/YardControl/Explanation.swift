import YardModel

/// `switchyard explain`: which route, service, track and endpoints a request would get,
/// and why. Pure: reads a routing table.
struct Explanation: Codable {
    var host: String
    var path: String
    var route: String?
    var service: String?
    var activeTrack: String?
    var balancer: String?
    var candidates: [String]
    var answer: String
    var reasons: [String]

    enum CodingKeys: String, CodingKey {
        case host, path, route, service, balancer, candidates, answer, reasons
        case activeTrack = "active_track"
    }

    static func explain(table: RoutingTable, query: [String: String]) -> Explanation {
        let host = query["host"] ?? ""
        let path = query["path"].map { $0.isEmpty ? "/" : $0 } ?? "/"
        var result = Explanation(host: host, path: path, route: nil, service: nil, activeTrack: nil, balancer: nil,
                                 candidates: [], answer: "", reasons: [])
        let hostBytes = Array(host.utf8)
        let pathBytes = Array((path.split(separator: "?", maxSplits: 1).first.map(String.init) ?? path).utf8)
        let route = hostBytes.withUnsafeBytes { h in pathBytes.withUnsafeBytes { p in table.route(host: h, path: p) } }
        guard let route else {
            result.answer = "404 no route"
            result.reasons.append("no route matches host '\(host)' and path '\(path)'; routes are tried host-specific first, then by longest path prefix")
            return result
        }
        let routeHost = route.host.map { String(decoding: $0, as: UTF8.self) } ?? "*"
        result.route = "\(routeHost)\(String(decoding: route.pathPrefix, as: UTF8.self))"
        result.reasons.append("route \(result.route!) matched (\(route.host == nil ? "any host" : "host \(routeHost)"), path prefix \(String(decoding: route.pathPrefix, as: UTF8.self)))")
        result.service = route.serviceName
        guard let service = route.service else {
            result.answer = "503 service not discovered"
            result.reasons.append("service '\(route.serviceName)' is not in discovery")
            return result
        }
        result.activeTrack = service.activeTrack
        result.balancer = service.balancer.rawValue
        result.reasons.append(service.activeTrack.map { "track '\($0)' is active" } ?? "the service has no tracks: every endpoint serves")
        for endpoint in service.endpoints {
            let inTrack = service.activeTrack == nil || endpoint.track == service.activeTrack
            if !inTrack { continue }
            if endpoint.draining {
                result.reasons.append("\(endpoint.id) is draining")
            } else if endpoint.ejected {
                result.reasons.append("\(endpoint.id) is ejected after consecutive failures")
            } else if endpoint.effectiveWeight == 0 {
                result.reasons.append("\(endpoint.id) is \(endpoint.health)")
            }
        }
        result.candidates = service.activeEndpoints.map { "\($0.id) weight \(Double($0.effectiveWeight) / 100)" }
        if service.activeEndpoints.isEmpty {
            result.answer = "503 no endpoint"
        } else {
            result.answer = "forwarded by \(service.balancer.rawValue) to one of \(service.activeEndpoints.count) endpoint(s)"
            if service.panicking { result.reasons.append("panic mode: no endpoint is healthy, all are used") }
        }
        return result
    }
}
