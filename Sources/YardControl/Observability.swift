#if canImport(Glibc)
import Glibc
#endif
import Foundation
import YardDiscovery
import YardHealth
import YardIO
import YardModel
import YardProxy

/// Everything a scrape or a status call shows, gathered once.
struct ObservedState {
    var table: RoutingTable
    var metrics: MetricsSnapshot
    var health: [HealthKey: HealthReading]
    var providers: [ProviderStatus]
    var changes: [ChangeRecord]
    var startedUnix: Double
    var workers: Int
    var accessLogDropped: Int
    /// The state store's condition and this replica's name in it.
    var store: StoreStatus?
    var replicaID: String?
    /// The stored traffic states (revision 0 or absent: discovery's own).
    var traffic: [String: TrafficState] = [:]
    /// The revision of each service's traffic state this replica routes.
    var applied: [String: Int64] = [:]
    /// The template stage's counters (nil: no `templates:` section).
    var templates: TemplateStage.Report?
}

// MARK: - Prometheus text format 0.0.4

enum PrometheusText {
    /// `max_connections` and the wait queues (services with a limit only): the limit and
    /// slots in use per endpoint, and per service the requests waiting, the time the served
    /// ones waited, and those refused (queue full, or the wait timed out).
    static func renderLimits(_ table: RoutingTable, rows: [(labels: [(String, String)], endpoint: Endpoint, service: Service)],
                             family: (String, String, String) -> Void, sample: (String, [(String, String)], String) -> Void) {
        let limited = rows.filter { $0.endpoint.slots != nil }
        family("switchyard_endpoint_max_connections", "gauge", "The endpoint's max_connections (services with a limit only).")
        for row in limited { sample("switchyard_endpoint_max_connections", row.labels, "\(row.service.limits.maxConnections)") }
        family("switchyard_endpoint_slots_in_use", "gauge", "Requests holding one of the endpoint's max_connections slots, across event loops.")
        for row in limited { sample("switchyard_endpoint_slots_in_use", row.labels, "\(row.endpoint.slots?.count ?? 0)") }
        let lines = table.services.compactMap { service in service.waitLine.map { (service.name, $0) } }
        family("switchyard_queue_length", "gauge", "Requests waiting for a free endpoint slot (max_pending bounds it).")
        for (name, line) in lines { sample("switchyard_queue_length", [("service", name)], "\(line.waiting)") }
        family("switchyard_queue_wait_seconds", "summary", "Time the requests served from the queue waited for a slot.")
        for (name, line) in lines {
            sample("switchyard_queue_wait_seconds_sum", [("service", name)], format(Double(line.waitMicros.load(ordering: .relaxed)) / 1e6))
            sample("switchyard_queue_wait_seconds_count", [("service", name)], "\(line.served.load(ordering: .relaxed))")
        }
        family("switchyard_queue_refused_total", "counter", "Requests answered 503 by the queue: full (max_pending) or timeout (queue_timeout); TCP connections closed with every endpoint full count as full.")
        for (name, line) in lines {
            sample("switchyard_queue_refused_total", [("service", name), ("reason", "full")], "\(line.refusedFull.load(ordering: .relaxed))")
            sample("switchyard_queue_refused_total", [("service", name), ("reason", "timeout")], "\(line.refusedTimeout.load(ordering: .relaxed))")
        }
    }

    /// Renders the exposition. Metric and label names follow Prometheus conventions
    /// (`_total` counters, `_seconds` and `_bytes` units, base units only).
    static func render(_ state: ObservedState) -> String {
        var out = ""
        func family(_ name: String, _ type: String, _ help: String) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
        }
        func sample(_ name: String, _ labels: [(String, String)], _ value: String) {
            if labels.isEmpty {
                out += "\(name) \(value)\n"
            } else {
                out += name + "{" + labels.map { "\($0.0)=\"\(escape($0.1))\"" }.joined(separator: ",") + "} \(value)\n"
            }
        }
        // One row per endpoint of every service (an address in two services is counted
        // under the first: counters are kept per address:port).
        var seen = Set<Int>()
        var rows: [(labels: [(String, String)], metrics: EndpointMetrics, endpoint: Endpoint, service: Service)] = []
        for service in state.table.services {
            for endpoint in service.endpoints where seen.insert(endpoint.poolKey).inserted {
                let labels = [("service", service.name), ("track", endpoint.track ?? ""),
                              ("endpoint", "\(endpoint.address):\(endpoint.port)")]
                rows.append((labels, state.metrics.endpoint(endpoint.poolKey), endpoint, service))
            }
        }

        family("switchyard_requests_total", "counter", "Responses relayed or answered per endpoint, by status class.")
        for row in rows {
            for (i, count) in row.metrics.responsesByClass.enumerated() {
                sample("switchyard_requests_total", row.labels + [("code", "\(i + 1)xx")], "\(count)")
            }
        }
        family("switchyard_request_duration_seconds", "histogram", "Time from the request head to the response head, per endpoint.")
        for row in rows {
            var cumulative: UInt64 = 0
            for (i, bound) in LatencyBuckets.upperBoundsMicros.enumerated() {
                cumulative &+= row.metrics.latencyBuckets[i]
                sample("switchyard_request_duration_seconds_bucket", row.labels + [("le", seconds(micros: bound))], "\(cumulative)")
            }
            cumulative &+= row.metrics.latencyBuckets.last ?? 0
            sample("switchyard_request_duration_seconds_bucket", row.labels + [("le", "+Inf")], "\(cumulative)")
            sample("switchyard_request_duration_seconds_sum", row.labels, format(Double(row.metrics.latencySumMicros) / 1e6))
            sample("switchyard_request_duration_seconds_count", row.labels, "\(cumulative)")
        }
        let counters: [(String, String, (EndpointMetrics) -> UInt64)] = [
            ("switchyard_upstream_received_bytes_total", "Response bytes received from the endpoint.", { $0.bytesIn }),
            ("switchyard_upstream_sent_bytes_total", "Request bytes sent to the endpoint.", { $0.bytesOut }),
            ("switchyard_upstream_connect_failures_total", "Failed connection attempts to the endpoint.", { $0.connectFailures }),
            ("switchyard_retries_total", "Requests retried after a failure on the endpoint.", { $0.retries }),
            ("switchyard_retries_refused_total", "Retries after a failure on the endpoint that the service's retry budget refused.", { $0.retriesRefused }),
            ("switchyard_upstream_timeouts_total", "Requests the endpoint did not answer in time.", { $0.timeouts }),
        ]
        for (name, help, value) in counters {
            family(name, "counter", help)
            for row in rows { sample(name, row.labels, "\(value(row.metrics))") }
        }
        family("switchyard_endpoint_active_requests", "gauge", "Requests in flight to the endpoint.")
        for row in rows { sample("switchyard_endpoint_active_requests", row.labels, "\(max(0, row.metrics.active))") }

        let readings = rows.map { state.health[HealthKey(service: $0.service.name, endpointKey: $0.endpoint.poolKey)] }
        let endpointFamilies: [(String, String, String, (Int) -> String)] = [
            ("switchyard_endpoint_up", "gauge", "1 when the endpoint is routable (healthy, not ejected, not draining), whether or not its track is active.",
             { rows[$0].endpoint.effectiveWeight > 0 ? "1" : "0" }),
            ("switchyard_endpoint_weight", "gauge", "Effective weight in use (configured weight, ramped by slow start).",
             { format(Double(rows[$0].endpoint.effectiveWeight) / 100) }),
            ("switchyard_endpoint_draining", "gauge", "1 when the endpoint is in drain.", { rows[$0].endpoint.draining ? "1" : "0" }),
            ("switchyard_endpoint_ejected", "gauge", "1 when the endpoint is passively ejected.", { rows[$0].endpoint.ejected ? "1" : "0" }),
            ("switchyard_health_transitions_total", "counter", "Active-check status changes of the endpoint.",
             { "\(readings[$0]?.transitions ?? 0)" }),
            ("switchyard_ejections_total", "counter", "Passive ejections of the endpoint.", { "\(readings[$0]?.health.ejections ?? 0)" }),
        ]
        // Each family is one group (text format 0.0.4): its HELP and TYPE, then its samples.
        for (name, type, help, value) in endpointFamilies {
            family(name, type, help)
            for i in rows.indices { sample(name, rows[i].labels, value(i)) }
        }

        family("switchyard_outlier_ejections_total", "counter",
               "Ejections of the service's endpoints by rule: consecutive_failures, success_rate, latency (docs/health.md).")
        for service in state.table.services {
            for reason in EjectionReason.allCases {
                let count = service.endpoints.reduce(0) {
                    $0 + (state.health[HealthKey(service: service.name, endpointKey: $1.poolKey)]?.health.ejectionsByReason[reason] ?? 0)
                }
                sample("switchyard_outlier_ejections_total", [("service", service.name), ("reason", reason.rawValue)], "\(count)")
            }
        }
        family("switchyard_proxy_answers_total", "counter", "Answers the proxy gave itself, by reason.")
        for (i, reason) in ["no_route", "no_endpoint", "bad_request", "bad_gateway", "gateway_timeout", "redirect", "unauthorized",
                            "rate_limited"].enumerated() where i < state.metrics.ownAnswers.count {
            sample("switchyard_proxy_answers_total", [("reason", reason)], "\(state.metrics.ownAnswers[i])")
        }

        renderLimits(state.table, rows: rows.map { ($0.labels, $0.endpoint, $0.service) }, family: family, sample: sample)

        family("switchyard_service_active_track", "gauge", "1 for the track that gets new requests.")
        family("switchyard_service_endpoints", "gauge", "Endpoints of the service, by state.")
        for service in state.table.services {
            let tracks = Set(service.endpoints.compactMap(\.track)).sorted()
            for track in tracks {
                sample("switchyard_service_active_track", [("service", service.name), ("track", track)], track == service.activeTrack ? "1" : "0")
            }
            sample("switchyard_service_endpoints", [("service", service.name), ("state", "total")], "\(service.endpoints.count)")
            sample("switchyard_service_endpoints", [("service", service.name), ("state", "active")], "\(service.activeEndpoints.count)")
        }
        family("switchyard_canary_percent", "gauge", "Share of new requests sent to the canary track (0 when none).")
        for service in state.table.services {
            let labels = [("service", service.name), ("track", service.canary?.track ?? "")]
            sample("switchyard_canary_percent", labels, format(Double(service.canaryPermille) / 10))
        }
        family("switchyard_traffic_revision", "gauge",
               "Traffic-state revision per service: state=stored is what the state store holds, state=applied what this replica routes (0: discovery's own).")
        for service in state.table.services {
            sample("switchyard_traffic_revision", [("service", service.name), ("state", "stored")], "\(state.traffic[service.name]?.revision ?? 0)")
            sample("switchyard_traffic_revision", [("service", service.name), ("state", "applied")], "\(state.applied[service.name] ?? 0)")
        }
        if let store = state.store {
            family("switchyard_state_store_up", "gauge", "1 when the state store answered its last read or watch (0: the last traffic state keeps serving).")
            sample("switchyard_state_store_up", [], store.reachable ? "1" : "0")
            family("switchyard_state_store_last_load_timestamp_seconds", "gauge", "When the traffic states were last read from the state store (Unix time; 0: never).")
            sample("switchyard_state_store_last_load_timestamp_seconds", [], format(store.lastLoadUnix ?? 0))
        }
        if let templates = state.templates {
            family("switchyard_template_renders_total", "counter",
                   "Renders of the pools template and the output files: applied (routed), held (a guard held it back), failed (render, check, write or reload failed).")
            sample("switchyard_template_renders_total", [("result", "applied")], "\(templates.renders)")
            sample("switchyard_template_renders_total", [("result", "held")], "\(templates.heldBack)")
            sample("switchyard_template_renders_total", [("result", "failed")], "\(templates.failures)")
        }
        family("switchyard_routing_table_version", "gauge", "Version of the routing table the workers serve.")
        sample("switchyard_routing_table_version", [], "\(state.table.version)")

        let providerFamilies: [(String, String, String, (ProviderStatus) -> String)] = [
            ("switchyard_provider_last_update_timestamp_seconds", "gauge", "When the provider last delivered a snapshot (Unix time).",
             { format($0.lastUpdateUnix ?? 0) }),
            ("switchyard_provider_updates_total", "counter", "Snapshots delivered by the provider.", { "\($0.updates)" }),
            ("switchyard_provider_errors_total", "counter", "Errors reported by the provider.", { "\($0.errors)" }),
            ("switchyard_provider_healthy", "gauge", "0 when the provider's last attempt failed (its last snapshot keeps serving).",
             { $0.healthy ? "1" : "0" }),
            ("switchyard_provider_stale_since_timestamp_seconds", "gauge", "When the failing provider's snapshot went stale (Unix time; 0 while healthy).",
             { format($0.staleSinceUnix ?? 0) }),
        ]
        for (name, type, help, value) in providerFamilies {
            family(name, type, help)
            for provider in state.providers { sample(name, [("provider", provider.name)], value(provider)) }
        }
        family("switchyard_discovery_rejected_total", "counter",
               "Workloads left out of a provider's snapshot because a value broke the discovery rules, by field.")
        for provider in state.providers {
            for (reason, count) in provider.rejected.sorted(by: { $0.key < $1.key }) {
                sample("switchyard_discovery_rejected_total", [("provider", provider.name), ("reason", reason)], "\(count)")
            }
        }
        family("switchyard_access_log_dropped_batches_total", "counter", "Access-log batches dropped because the writer fell behind.")
        sample("switchyard_access_log_dropped_batches_total", [], "\(state.accessLogDropped)")

        family("switchyard_connections_open", "gauge", "Client connections open.")
        sample("switchyard_connections_open", [], "\(state.metrics.openConnections)")
        family("switchyard_connections_accepted_total", "counter", "Client connections accepted.")
        sample("switchyard_connections_accepted_total", [], "\(state.metrics.accepted)")
        family("switchyard_client_connections_refused_total", "counter",
               "Client connections accepted and closed at once: over limits.max_connections, or over limits.max_connections_per_client for their address.")
        sample("switchyard_client_connections_refused_total", [("reason", "max_connections")], "\(state.metrics.refusedOverLimit)")
        sample("switchyard_client_connections_refused_total", [("reason", "per_client")], "\(state.metrics.refusedPerClient)")
        family("switchyard_client_slow_bodies_total", "counter",
               "Request bodies cut with 408: no byte for timeouts.client_body, or slower than limits.min_body_rate.")
        sample("switchyard_client_slow_bodies_total", [], "\(state.metrics.slowBodies)")
        family("switchyard_upstream_truncated_responses_total", "counter",
               "Close-delimited responses from TLS upstreams that ended without close_notify (cut short; the client connection was closed without a clean end).")
        sample("switchyard_upstream_truncated_responses_total", [], "\(state.metrics.truncatedResponses)")
        family("switchyard_upstream_orphans_pooled_total", "counter",
               "Upstream connections whose client left mid-exchange, kept: the rest of the response was read and dropped, and the connection pooled.")
        sample("switchyard_upstream_orphans_pooled_total", [], "\(state.metrics.orphansPooled)")
        family("switchyard_mirror_requests_total", "counter",
               "Copies of requests the mirror middleware sent (sent), dropped past the copies in flight per worker (dropped), that got no complete response from the shadow (failed), or were not made because the request body was over the mirror's max_body_bytes (skipped_body).")
        sample("switchyard_mirror_requests_total", [("result", "sent")], "\(state.metrics.mirrored)")
        sample("switchyard_mirror_requests_total", [("result", "dropped")], "\(state.metrics.mirrorsDropped)")
        sample("switchyard_mirror_requests_total", [("result", "failed")], "\(state.metrics.mirrorsFailed)")
        sample("switchyard_mirror_requests_total", [("result", "skipped_body")], "\(state.metrics.mirrorsSkippedBody)")
        family("switchyard_tls_handshakes_total", "counter", "TLS handshakes by outcome.")
        sample("switchyard_tls_handshakes_total", [("result", "ok")], "\(state.metrics.tlsHandshakes)")
        sample("switchyard_tls_handshakes_total", [("result", "failed")], "\(state.metrics.tlsHandshakeFailures)")
        family("switchyard_upstream_tls_handshakes_total", "counter",
               "TLS handshakes with upstream endpoints: full, resumed (from a session ticket), failed (refused or unverified).")
        let upstreamTLS = state.metrics
        sample("switchyard_upstream_tls_handshakes_total", [("result", "full")], "\(upstreamTLS.upstreamTLSHandshakes &- upstreamTLS.upstreamTLSResumed)")
        sample("switchyard_upstream_tls_handshakes_total", [("result", "resumed")], "\(upstreamTLS.upstreamTLSResumed)")
        sample("switchyard_upstream_tls_handshakes_total", [("result", "failed")], "\(upstreamTLS.upstreamTLSFailures)")
        family("switchyard_workers", "gauge", "Event loops serving traffic.")
        sample("switchyard_workers", [], "\(state.workers)")
        family("switchyard_build_info", "gauge", "Always 1: the labels name the build (switchyard --version) and the TLS and HTTP/2 libraries in use.")
        sample("switchyard_build_info", [("version", BuildInfo.version), ("commit", BuildInfo.commit), ("openssl", BuildInfo.openSSL), ("nghttp2", BuildInfo.nghttp2)], "1")
        family("process_resident_memory_bytes", "gauge", "Resident memory of the process.")
        sample("process_resident_memory_bytes", [], "\(ProcessStats.residentBytes())")
        family("process_cpu_seconds_total", "counter", "CPU time of the process (user and system).")
        sample("process_cpu_seconds_total", [], format(ProcessStats.cpuSeconds()))
        family("process_start_time_seconds", "gauge", "Start time of the process (Unix time).")
        sample("process_start_time_seconds", [], format(state.startedUnix))
        return out
    }

    static func escape(_ value: String) -> String {
        value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n")
    }

    /// `0.0001` for 100 µs: a decimal without an exponent (what other exporters write).
    static func seconds(micros: UInt64) -> String {
        let whole = micros / 1_000_000
        var fraction = String(micros % 1_000_000)
        guard fraction != "0" else { return "\(whole)" }
        fraction = String(repeating: "0", count: 6 - fraction.count) + fraction
        while fraction.hasSuffix("0") { fraction.removeLast() }
        return "\(whole).\(fraction)"
    }

    static func format(_ value: Double) -> String {
        if value == value.rounded() && abs(value) < 1e15 { return String(Int64(value)) }
        return String(value)
    }
}

/// Process figures from /proc.
enum ProcessStats {
    static func residentBytes() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
        let fields = text.split(separator: " ")
        guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    static func cpuSeconds() -> Double {
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        return Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6
            + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
    }
}

// MARK: - /status JSON

extension StatusDocument {
    init(_ state: ObservedState) {
        let now = Date().timeIntervalSince1970
        version = BuildInfo.version
        uptimeSeconds = (now - state.startedUnix * 1).rounded(toPlaces: 1)
        tableVersion = state.table.version
        generatedUnix = now
        providers = state.providers
        stateStore = StoreDoc(
            kind: state.store?.kind ?? "none", reachable: state.store?.reachable ?? true, error: state.store?.error,
            unreachableSinceUnix: state.store?.unreachableSinceUnix, replica: state.replicaID)
        recentChanges = Array(state.changes.reversed())
        services = state.table.services.map { service in
            var order: [String] = []
            var byTrack: [String: [Endpoint]] = [:]
            for endpoint in service.endpoints {
                let track = endpoint.track ?? "default"
                if byTrack[track] == nil { order.append(track) }
                byTrack[track, default: []].append(endpoint)
            }
            let tracks = order.map { track -> TrackDoc in
                let endpoints = (byTrack[track] ?? []).map { endpoint -> EndpointDoc in
                    let m = state.metrics.endpoint(endpoint.poolKey)
                    return EndpointDoc(
                        id: endpoint.id, address: endpoint.address, port: Int(endpoint.port), track: endpoint.track,
                        health: endpoint.health, ejected: endpoint.ejected, draining: endpoint.draining,
                        weight: endpoint.weight, effectiveWeight: endpoint.effectiveWeight,
                        requests: m.requests, errors5xx: m.responsesByClass[4], activeRequests: max(0, m.active))
                }
                let canaryShare = Double(service.canaryPermille) / 10
                let active: Bool
                let share: Double
                if service.canary?.track == track && canaryShare > 0 {
                    active = false
                    share = canaryShare
                } else if let activeTrack = service.activeTrack {
                    active = activeTrack == track
                    share = active ? 100 - canaryShare : 0
                } else {
                    // No active track: every endpoint serves, by weight; a track is "the
                    // active one" only when it is the only one.
                    active = order.count == 1
                    let serving = service.activeEndpoints.filter { $0.track != service.canary?.track || canaryShare == 0 }
                    let total = serving.reduce(0) { $0 + $1.effectiveWeight }
                    let mine = serving.filter { ($0.track ?? "default") == track }.reduce(0) { $0 + $1.effectiveWeight }
                    share = total > 0 ? ((100 - canaryShare) * Double(mine) / Double(total)).rounded(toPlaces: 1) : 0
                }
                return TrackDoc(
                    name: track, active: active, sharePercent: share,
                    requests: endpoints.reduce(0) { $0 + $1.requests }, errors5xx: endpoints.reduce(0) { $0 + $1.errors5xx },
                    endpoints: endpoints)
            }
            var doc = ServiceDoc(
                name: service.name, activeTrack: service.activeTrack, balancer: service.balancer.rawValue,
                panic: service.panicking,
                canary: service.canary.map { CanaryDoc(track: $0.track, percent: Double($0.permille) / 10) }, activeEndpoints: service.activeEndpoints.count, tracks: tracks,
                revision: state.traffic[service.name]?.revision ?? 0, lastChange: state.traffic[service.name]?.history.last)
            if let line = service.waitLine {
                var inUse: [String: Int] = [:]
                for endpoint in service.endpoints { inUse[endpoint.id] = endpoint.slots?.count ?? 0 }
                doc.limits = LimitsDoc(maxConnections: service.limits.maxConnections, maxPending: service.limits.maxPending,
                                       queueTimeoutMs: service.limits.queueTimeoutMs, waiting: line.waiting, inUse: inUse)
            }
            return doc
        }
    }
}

extension Double {
    func rounded(toPlaces places: Int) -> Double {
        let factor = pow(10, Double(places))
        return (self * factor).rounded() / factor
    }
}
