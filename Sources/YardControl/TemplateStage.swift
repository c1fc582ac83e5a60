// Between discovery and routing: renders the pools template, validates and guards the
// result, and schedules the output files with quiescence. `Runtime.apply(catalog:)` asks
// it what to route; a render that fails or is held back routes nothing new.

import Dispatch
import Foundation
import Synchronization
import struct YardDiscovery.Backoff
import YardHealth
import YardIO
import YardModel
import YardTemplates

/// The template stage of the control plane.
///
/// Without a `templates:` section it is a pass-through: the provider's catalog is routed
/// as it is and nothing is rendered (the behaviour before templates existed).
///
/// An output whose reload command failed is retried with `Backoff` (re-rendered, and
/// reloaded even when the text is unchanged) until a reload succeeds: the file on disk
/// is newer than what the program runs, and nothing else would bring them together if
/// discovery goes quiet.
///
/// Threading: `admit` runs on the control queue (the provider's callbacks). State lives
/// behind one mutex. Output files are rendered and written on the stage's own serial
/// queue, so a slow check or reload command never delays routing.
public final class TemplateStage: Sendable {
    private let outputQueue = DispatchQueue(label: "switchyard.templates.outputs")
    private let state = Mutex<State>(State())
    /// The schedule of reload retries each output starts from.
    private let reloadBackoff: Backoff

    private struct State {
        var config: TemplatesConfig?
        /// The last catalog discovery delivered (what `POST /render` re-renders).
        var lastDiscovered: ServiceCatalog?
        /// The last catalog admitted for routing (what outputs render from).
        var lastAdmitted: ServiceCatalog?
        var held: [GuardViolation] = []
        var lastError: String?
        var renders = 0
        var failures = 0
        var heldBack = 0
        var outputs: [String: OutputState] = [:]
        /// Health of a catalog's endpoints, by `TemplateInput.healthKey`; read when rendering.
        var health: @Sendable (ServiceCatalog) -> [String: String] = { _ in [:] }
        /// Lays the state store's traffic states (active track, canary) over a catalog
        /// before outputs render it, so an nginx upstream follows `switchyard flip`.
        var traffic: @Sendable (ServiceCatalog) -> ServiceCatalog = { $0 }
    }

    private struct OutputState {
        var quiescence: Quiescence
        var lastOutcome: String?
        var writes = 0
        /// The last reload failed: the next render reloads even an unchanged file, and a
        /// retry is scheduled.
        var reloadFailing = false
        /// Reload attempts that failed, in all.
        var reloadFailures = 0
        /// Consecutive failed attempts of the current outage.
        var failedAttempts = 0
        /// The last failed reload's summary; kept after recovery for the report.
        var lastReloadError: String?
        var backoff: Backoff
        /// Bumped per scheduled retry; an older retry's timer does nothing.
        var retryGeneration = 0
    }

    /// - Parameter reloadBackoff: the wait between attempts after a failed reload
    ///   (exponential with full jitter, reset by a success).
    public init(reloadBackoff: Backoff = Backoff(initialMs: 1_000, maximumMs: 60_000, floorMs: 200, seed: 0x7E1)) {
        self.reloadBackoff = reloadBackoff
    }

    /// Takes a (re)loaded `templates:` section; nil turns the stage into a pass-through.
    /// `health` gives the endpoints' health when a template renders; `traffic` the stored
    /// traffic states laid over the catalog.
    public func configure(
        _ config: TemplatesConfig?, health: (@Sendable (ServiceCatalog) -> [String: String])? = nil,
        traffic: (@Sendable (ServiceCatalog) -> ServiceCatalog)? = nil
    ) {
        state.withLock { state in
            state.config = config
            if let health { state.health = health }
            if let traffic { state.traffic = traffic }
            var outputs: [String: OutputState] = [:]
            for output in config?.outputs ?? [] {
                let quiescence = Quiescence(minMs: output.waitMinMs, maxMs: output.waitMaxMs)
                var kept = state.outputs[output.destination] ?? OutputState(quiescence: quiescence, backoff: reloadBackoff)
                if kept.quiescence.minMs != quiescence.minMs || kept.quiescence.maxMs != quiescence.maxMs {
                    kept.quiescence = quiescence
                }
                outputs[output.destination] = kept
            }
            state.outputs = outputs
        }
    }

    // MARK: Admission

    /// What to route for a newly discovered catalog, or nil to keep the running table:
    /// the pools render (when configured) must render and validate, and the change from
    /// `running` must pass the guards unless `force`. Schedules the output files.
    public func admit(_ discovered: ServiceCatalog, running: ServiceCatalog, force: Bool = false) -> ServiceCatalog? {
        guard let config = state.withLock({ state -> TemplatesConfig? in
            state.lastDiscovered = discovered
            return state.config
        }) else { return discovered }

        var candidate = discovered
        if let pools = config.pools {
            do {
                candidate = try PoolsRender.render(template: pools, input: input(discovered, config)).catalog
            } catch {
                let message = "\(error)"
                logger.error("pools render failed, the running routing table stays: \(message)")
                state.withLock {
                    $0.failures += 1
                    $0.lastError = message
                }
                return nil
            }
        }
        let violations = force ? [] : Guards.check(running: running, candidate: candidate, policy: config.guards)
        if !violations.isEmpty {
            let reasons = violations.map(\.description).joined(separator: "; ")
            logger.warning("render held back, the running routing table stays: \(reasons)")
            state.withLock {
                $0.held = violations
                $0.heldBack += 1
            }
            return nil
        }
        state.withLock { state in
            state.renders += 1
            state.lastError = nil
            state.held = []
            state.lastAdmitted = candidate
        }
        if force { logger.warning("render applied with --force") }
        scheduleOutputs()
        return candidate
    }

    /// The last discovered catalog, for `POST /render` (re-render, or apply with force).
    public var lastDiscovered: ServiceCatalog? { state.withLock { $0.lastDiscovered } }

    /// Health or traffic changed: outputs render again (within their quiescence).
    public func healthChanged() {
        guard state.withLock({ $0.config != nil && $0.lastAdmitted != nil }) else { return }
        scheduleOutputs()
    }

    // MARK: Outputs

    private func scheduleOutputs() {
        let now = Int(monotonicMilliseconds())
        let due: [(String, Int)] = state.withLock { state in
            state.outputs.keys.sorted().map { key in (key, state.outputs[key]!.quiescence.changed(nowMs: now)) }
        }
        for (destination, dueMs) in due {
            outputQueue.asyncAfter(deadline: .now() + .milliseconds(max(0, dueMs - now))) { [weak self] in
                self?.fireOutput(destination)
            }
        }
    }

    /// Renders and writes one output if its quiescence window has ended (earlier timers of
    /// a burst find it not yet due and do nothing), or, for a reload `retry`, if that
    /// retry is still the latest one scheduled and the reload still failing.
    private func fireOutput(_ destination: String, retry: Int? = nil) {
        let now = Int(monotonicMilliseconds())
        let job: (OutputConfig, TemplatesConfig, ServiceCatalog, Bool)? = state.withLock { state in
            guard let config = state.config, let catalog = state.lastAdmitted,
                  let output = config.outputs.first(where: { $0.destination == destination }),
                  let current = state.outputs[destination] else { return nil }
            if let retry {
                guard current.reloadFailing, current.retryGeneration == retry else { return nil }
            } else {
                guard state.outputs[destination]?.quiescence.fire(nowMs: now) == true else { return nil }
            }
            return (output, config, catalog, current.reloadFailing)
        }
        guard let (output, config, catalog, reloadPending) = job else { return }
        let outcome = Self.renderOutput(output, input: input(catalog, config), reloadPending: reloadPending)
        scheduleReloadRetry(destination, record(destination, outcome))
    }

    /// Renders every output now, past its quiescence, so `POST /render` answers with this
    /// render's outcome (not the previous one's). Runs on the output queue, like the timers.
    public func renderOutputsNow() {
        outputQueue.sync {
            let job = state.withLock { ($0.config, $0.lastAdmitted, $0.outputs) }
            guard let config = job.0, let catalog = job.1 else { return }
            for output in config.outputs {
                let reloadPending = job.2[output.destination]?.reloadFailing ?? false
                let outcome = Self.renderOutput(output, input: input(catalog, config), reloadPending: reloadPending)
                scheduleReloadRetry(output.destination, record(output.destination, outcome))
            }
        }
    }

    /// Keeps an output's outcome for the report (a failed template, check, write or reload
    /// counts as a failure and is the report's last error), and says when a failing reload
    /// is to be retried.
    private func record(_ destination: String, _ outcome: RenderedOutcome) -> (delayMs: Int64, generation: Int)? {
        state.withLock { state in
            if outcome.failed {
                state.failures += 1
                state.lastError = "output \(destination): \(outcome)"
            }
            guard var current = state.outputs[destination] else { return nil }
            defer { state.outputs[destination] = current }
            current.lastOutcome = outcome.description
            let file: OutputOutcome? = if case .file(let file) = outcome { file } else { nil }
            if case .written? = file { current.writes += 1 }
            guard let reload = file?.reload else {
                // No reload ran (the template or the check failed): a pending one is
                // still owed, so keep retrying.
                guard current.reloadFailing else { return nil }
                current.retryGeneration += 1
                return (current.backoff.nextDelayMs(), current.retryGeneration)
            }
            if reload.succeeded {
                if current.reloadFailing {
                    logger.info("output \(destination): reload succeeded after \(current.failedAttempts) failed attempt(s)")
                    current.lastOutcome = "\(outcome); recovered after \(current.failedAttempts) failed reload(s)"
                }
                current.reloadFailing = false
                current.failedAttempts = 0
                current.backoff.reset()
                return nil
            }
            current.reloadFailing = true
            current.reloadFailures += 1
            current.failedAttempts += 1
            current.lastReloadError = reload.summary
            current.retryGeneration += 1
            return (current.backoff.nextDelayMs(), current.retryGeneration)
        }
    }

    private func scheduleReloadRetry(_ destination: String, _ retryAfter: (delayMs: Int64, generation: Int)?) {
        guard let retryAfter else { return }
        logger.warning("output \(destination): reload retried in \(retryAfter.delayMs) ms")
        outputQueue.asyncAfter(deadline: .now() + .milliseconds(Int(retryAfter.delayMs))) { [weak self] in
            self?.fireOutput(destination, retry: retryAfter.generation)
        }
    }

    /// Renders `output`'s template and writes it (reloading an unchanged file when
    /// `reloadPending`); the outcome is logged.
    static func renderOutput(_ output: OutputConfig, input: TemplateInput, reloadPending: Bool = false) -> RenderedOutcome {
        let text: String
        do {
            text = try TemplateRenderer.render(file: output.template, input: input)
        } catch {
            logger.error("output \(output.destination) not written: \(error)")
            return .templateFailed(error)
        }
        let outcome = OutputFile.write(text, output: output, reloadPending: reloadPending)
        switch outcome {
        case .unchanged: logger.debug("output \(output.destination): unchanged")
        case .written(let reload?) where !reload.succeeded:
            logger.error("output \(output.destination) written, but its reload command failed: \(reload.summary)")
        case .reloadRetried(let reload) where !reload.succeeded:
            logger.error("output \(output.destination): its reload command failed again: \(reload.summary)")
        case .written, .reloadRetried: logger.info("output \(output.destination) \(outcome)")
        case .checkFailed, .writeFailed: logger.error("output \(output.destination): \(outcome)")
        }
        return .file(outcome)
    }

    /// An output's render result: the template failed, or what writing the file did.
    enum RenderedOutcome: CustomStringConvertible {
        case templateFailed(TemplateError)
        case file(OutputOutcome)

        var failed: Bool {
            switch self {
            case .templateFailed, .file(.checkFailed), .file(.writeFailed): true
            case .file(.written(let reload?)): !reload.succeeded
            case .file: false
            }
        }

        var description: String {
            switch self {
            case .templateFailed(let error): "template failed: \(error)"
            case .file(let outcome): outcome.description
            }
        }
    }

    private func input(_ catalog: ServiceCatalog, _ config: TemplatesConfig) -> TemplateInput {
        let (health, traffic) = state.withLock { ($0.health, $0.traffic) }
        let shifted = traffic(catalog)
        return TemplateInput(catalog: shifted, health: health(shifted), environment: TemplateInput.environment(allowed: config.environment))
    }

    // MARK: Report

    /// What the stage did last, for `GET /render` and `switchyard render`.
    public struct Report: Sendable, Codable, Equatable {
        public var configured: Bool
        public var pools: String?
        public var renders: Int
        public var failures: Int
        public var heldBack: Int
        public var held: [String]
        public var lastError: String?
        public var outputs: [OutputReport]
        /// Set by `POST /render`: whether that request changed what is routed.
        public var applied: Bool?

        enum CodingKeys: String, CodingKey {
            case configured, pools, renders, failures, held, outputs, applied
            case heldBack = "held_back"
            case lastError = "last_error"
        }
    }

    public struct OutputReport: Sendable, Codable, Equatable {
        public var destination: String
        public var writes: Int
        public var lastOutcome: String?
        /// The last reload failed and is being retried.
        public var reloadFailing: Bool
        /// Reload attempts that failed, in all.
        public var reloadFailures: Int
        /// The last failed reload's output (kept after recovery).
        public var lastReloadError: String?

        enum CodingKeys: String, CodingKey {
            case destination, writes
            case lastOutcome = "last_outcome"
            case reloadFailing = "reload_failing"
            case reloadFailures = "reload_failures"
            case lastReloadError = "last_reload_error"
        }
    }

    public func report() -> Report {
        state.withLock { state in
            Report(
                configured: state.config != nil, pools: state.config?.pools, renders: state.renders,
                failures: state.failures, heldBack: state.heldBack, held: state.held.map(\.description),
                lastError: state.lastError,
                outputs: state.outputs.sorted { $0.key < $1.key }.map { key, output in
                    OutputReport(
                        destination: key, writes: output.writes, lastOutcome: output.lastOutcome, reloadFailing: output.reloadFailing,
                        reloadFailures: output.reloadFailures, lastReloadError: output.lastReloadError)
                },
                applied: nil)
        }
    }
}

// MARK: - Admin API

extension Runtime {
    /// `GET /render`: the stage's report. `POST /render`: render the last discovered
    /// catalog again (a template file was edited); `POST /render?force=true` also applies
    /// a render the guards held back.
    func handleRenderRequest(_ request: AdminRequest) -> AdminResponse {
        switch request.method {
        case "GET":
            return .json(templateStage.report())
        case "POST":
            let force = ["true", "1", "yes"].contains(request.query["force"]?.lowercased() ?? "")
            // On the control queue, like the provider's snapshots: the re-render cannot
            // interleave with a newer snapshot and route the older catalog after it.
            let applied: Bool? = queue.sync {
                guard let discovered = templateStage.lastDiscovered else { return nil }
                return apply(catalog: discovered, force: force)
            }
            guard let applied else { return .json(["error": "nothing discovered yet"], status: 409) }
            templateStage.renderOutputsNow()
            var report = templateStage.report()
            report.applied = applied
            return .json(report, status: applied || report.held.isEmpty && report.lastError == nil ? 200 : 409)
        default:
            return .json(["error": "use GET or POST /render"], status: 405)
        }
    }

    /// Health for templates: "healthy", "unhealthy", "ejected" or "unknown" per endpoint.
    static func templateHealth(_ readings: [HealthKey: HealthReading], catalog: ServiceCatalog) -> [String: String] {
        var health: [String: String] = [:]
        for service in catalog.services {
            for instance in service.instances {
                let key = HealthKey(service: service.name, endpointKey: PoolKeys.shared.key(address: instance.address, port: instance.port, flavor: service.upstream.poolFlavor))
                guard let reading = readings[key] else { continue }
                health[TemplateInput.healthKey(service: service.name, address: instance.address, port: instance.port)] =
                    reading.ejected ? "ejected" : reading.status.rawValue
            }
        }
        return health
    }
}
