// Parsing the `templates:` section of `conf/switchyard.yml`, with the same file:line:key
// errors and did-you-mean suggestions as the rest of the file.

extension ConfigLoader {
    // MARK: templates

    static func parseTemplates(_ node: ConfigNode?, directory: String) throws(ConfigError) -> TemplatesConfig? {
        guard let node else { return nil }
        let fields = try node.fields(allowed: ["pools", "outputs", "guards", "env"])
        var config = TemplatesConfig()
        if let poolsNode = fields.optional("pools") {
            config.pools = resolve(try poolsNode.string(expected: "a template path like ../templates/pools.yml.stencil"), against: directory)
        }
        var destinations: [String: Int?] = [:]
        for item in try fields.optional("outputs")?.list() ?? [] {
            let output = try parseOutput(item, directory: directory)
            if let previous = destinations[output.destination] {
                throw item.error("another output\(lineSuffix(previous)) already writes \(output.destination); give each output its own destination")
            }
            destinations[output.destination] = item.line
            config.outputs.append(output)
        }
        if let guardsNode = fields.optional("guards") {
            let guardFields = try guardsNode.fields(allowed: ["max_removed_percent", "allow_empty"])
            if let v = guardFields.optional("max_removed_percent") {
                config.guards.maxRemovedPercent = try v.integer(in: 0...100, expected: "a percentage from 0 to 100 (100 turns the check off)")
            }
            if let v = guardFields.optional("allow_empty") { config.guards.allowEmpty = try v.boolean() }
        }
        for item in try fields.optional("env")?.list() ?? [] {
            let name = try item.string(expected: "an environment variable name like DEPLOY_ENV")
            let valid = name.unicodeScalars.allSatisfy { scalar in
                ("A"..."Z").contains(scalar) || ("a"..."z").contains(scalar) || ("0"..."9").contains(scalar) || scalar == "_"
            }
            guard valid, !name.first!.isNumber else {
                throw item.error("'\(name)' is not an environment variable name; use letters, digits and '_'")
            }
            config.environment.append(name)
        }
        return config
    }

    private static func parseOutput(_ node: ConfigNode, directory: String) throws(ConfigError) -> OutputConfig {
        let fields = try node.fields(allowed: ["template", "destination", "check", "reload", "wait", "mode", "command_timeout"])
        let template = try fields.required("template", hint: "e.g. 'template: ../templates/nginx-upstream.conf.stencil'")
            .string(expected: "a template path")
        let destination = try fields.required("destination", hint: "e.g. 'destination: /etc/nginx/conf.d/upstream.conf'")
            .string(expected: "a file path")
        var output = OutputConfig(template: resolve(template, against: directory), destination: resolve(destination, against: directory))
        output.check = try fields.optional("check")?.string(expected: "a shell command like 'nginx -t -c {{path}}'")
        output.reload = try fields.optional("reload")?.string(expected: "a shell command like 'nginx -s reload'")
        if let waitNode = fields.optional("wait") {
            let waitFields = try waitNode.fields(allowed: ["min", "max"])
            let minNode = waitFields.optional("min"), maxNode = waitFields.optional("max")
            if let minNode { output.waitMinMs = try minNode.durationMilliseconds(allowZero: true) }
            if let maxNode { output.waitMaxMs = try maxNode.durationMilliseconds(allowZero: true) }
            // One bound alone moves the other's default out of its way.
            if minNode == nil { output.waitMinMs = min(output.waitMinMs, output.waitMaxMs) }
            if maxNode == nil { output.waitMaxMs = max(output.waitMaxMs, output.waitMinMs * 4) }
            if output.waitMaxMs < output.waitMinMs {
                throw (waitFields.optional("max") ?? waitNode).error("wait.max (\(output.waitMaxMs) ms) is shorter than wait.min (\(output.waitMinMs) ms); make max at least min")
            }
        }
        if let modeNode = fields.optional("mode") {
            let text = try modeNode.text(expected: "an octal file mode like 0644")
            guard let mode = UInt32(text.hasPrefix("0o") ? String(text.dropFirst(2)) : text, radix: 8), mode <= 0o7777 else {
                throw modeNode.error("expected an octal file mode like 0644 or 0600, found '\(text)'")
            }
            output.mode = mode
        }
        if let v = fields.optional("command_timeout") { output.commandTimeoutMs = try v.durationMilliseconds() }
        return output
    }
}
