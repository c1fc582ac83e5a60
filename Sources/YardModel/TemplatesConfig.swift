// The `templates:` section of `conf/switchyard.yml` as plain values: the pools template,
// output files (the consul-template job), guards and the environment allow-list.

/// How much one discovery change may take away before it is held back.
///
/// Threading: a value.
public struct GuardPolicy: Sendable, Equatable {
    /// Most of a service's endpoints one change may remove, in percent (50: half).
    public var maxRemovedPercent = 50
    /// Whether a change may leave a service that had endpoints with none.
    public var allowEmpty = false

    public init(maxRemovedPercent: Int = 50, allowEmpty: Bool = false) {
        self.maxRemovedPercent = maxRemovedPercent
        self.allowEmpty = allowEmpty
    }
}

/// One rendered file: template, destination, check, reload, quiescence and mode.
///
/// Threading: a value.
public struct OutputConfig: Sendable, Equatable {
    /// Absolute path of the template (resolved against the config file's folder).
    public var template: String
    /// Absolute path of the file to write.
    public var destination: String
    /// Shell command run on the candidate text before it replaces `destination`; a non-zero
    /// exit keeps the old file. `{{path}}` (and `$SWITCHYARD_CANDIDATE`) is the candidate.
    public var check: String?
    /// Shell command run after `destination` changed (never when the text is the same).
    public var reload: String?
    /// Quiescence: render `waitMinMs` after the last change, but no later than
    /// `waitMaxMs` after the first one of a burst.
    public var waitMinMs: Int
    public var waitMaxMs: Int
    /// Permission bits of the written file (0o644 by default).
    public var mode: UInt32
    /// How long the check and the reload command may run before they are killed.
    public var commandTimeoutMs: Int

    public init(
        template: String, destination: String, check: String? = nil, reload: String? = nil,
        waitMinMs: Int = 1_000, waitMaxMs: Int = 5_000, mode: UInt32 = 0o644, commandTimeoutMs: Int = 30_000
    ) {
        self.template = template
        self.destination = destination
        self.check = check
        self.reload = reload
        self.waitMinMs = waitMinMs
        self.waitMaxMs = waitMaxMs
        self.mode = mode
        self.commandTimeoutMs = commandTimeoutMs
    }
}

/// `templates:` as a value. Absent from the config: nil, and discovery's catalog is
/// routed as it is.
///
/// Threading: a value.
public struct TemplatesConfig: Sendable, Equatable {
    /// The pools template (absolute path): discovered catalog in, services.yml text out,
    /// which is parsed and validated into what gets routed. Nil: the catalog is routed as is.
    public var pools: String?
    public var outputs: [OutputConfig]
    public var guards: GuardPolicy
    /// Environment variable names templates may read (`env.NAME`); others are not exposed.
    public var environment: [String]

    public init(pools: String? = nil, outputs: [OutputConfig] = [], guards: GuardPolicy = GuardPolicy(), environment: [String] = []) {
        self.pools = pools
        self.outputs = outputs
        self.guards = guards
        self.environment = environment
    }
}
