// The `templates:` section of switchyard.yml: values, defaults, and errors that name
// file, line and key.

import Testing
@testable import YardModel

private let listener = "listeners:\n  - address: 127.0.0.1:8080\n"

@Suite struct TemplatesSectionParses {
    @Test func absentSectionMeansNoTemplates() throws {
        #expect(try ConfigLoader.loadConfig(text: listener, path: "/etc/yard/switchyard.yml").templates == nil)
    }

    @Test func everyKeyIsReadAndPathsResolveAgainstTheConfigFolder() throws {
        let text = listener + """
            templates:
              pools: ../templates/pools.yml.stencil
              env: [DEPLOY_ENV, REGION]
              guards: {max_removed_percent: 30, allow_empty: true}
              outputs:
                - template: /srv/nginx-upstream.conf.stencil
                  destination: nginx/upstream.conf
                  check: nginx -t -c {{path}}
                  reload: nginx -s reload
                  wait: {min: 500ms, max: 3s}
                  mode: "0640"
                  command_timeout: 10s
            """
        let templates = try #require(try ConfigLoader.loadConfig(text: text, path: "/etc/yard/switchyard.yml").templates)
        #expect(templates.pools == "/etc/yard/../templates/pools.yml.stencil")
        #expect(templates.environment == ["DEPLOY_ENV", "REGION"])
        #expect(templates.guards == GuardPolicy(maxRemovedPercent: 30, allowEmpty: true))
        #expect(templates.outputs == [OutputConfig(
            template: "/srv/nginx-upstream.conf.stencil", destination: "/etc/yard/nginx/upstream.conf",
            check: "nginx -t -c {{path}}", reload: "nginx -s reload", waitMinMs: 500, waitMaxMs: 3_000, mode: 0o640,
            commandTimeoutMs: 10_000)])
    }

    @Test func defaultsAreHalfTheEndpointsNoEmptyPoolsAndAOneToFiveSecondWait() throws {
        let text = listener + "templates:\n  outputs:\n    - {template: a.stencil, destination: /tmp/a}\n"
        let templates = try #require(try ConfigLoader.loadConfig(text: text, path: "switchyard.yml").templates)
        #expect(templates.pools == nil)
        #expect(templates.guards == GuardPolicy(maxRemovedPercent: 50, allowEmpty: false))
        #expect(templates.outputs[0].waitMinMs == 1_000)
        #expect(templates.outputs[0].waitMaxMs == 5_000)
        #expect(templates.outputs[0].mode == 0o644)
    }

    @Test func oneWaitBoundAloneMovesTheOtherDefaultOutOfItsWay() throws {
        func wait(_ yaml: String) throws -> (Int, Int) {
            let text = listener + "templates:\n  outputs:\n    - {template: a, destination: /tmp/a, wait: \(yaml)}\n"
            let output = try #require(try ConfigLoader.loadConfig(text: text, path: "s.yml").templates?.outputs.first)
            return (output.waitMinMs, output.waitMaxMs)
        }
        #expect(try wait("{max: 500ms}") == (500, 500))
        #expect(try wait("{min: 3s}") == (3_000, 12_000))
        #expect(try wait("{min: 0s, max: 0s}") == (0, 0))
    }

    @Test func theShippedConfigDocumentsTheSectionInComments() throws {
        let text = try ConfigLoader.readText(path: shippedConfPath("switchyard.yml"))
        #expect(text.contains("# templates:"))
        #expect(try ConfigLoader.loadConfig(path: shippedConfPath("switchyard.yml")).templates == nil)
    }
}

private let badTemplates: [BadConfig] = [
    BadConfig(name: "misspelt templates key suggests the near one",
              text: listener + "templates:\n  pool: p.stencil\n", line: 4, key: "templates.pool", says: "did you mean 'pools'?"),
    BadConfig(name: "output without a destination",
              text: listener + "templates:\n  outputs:\n    - template: a.stencil\n", line: 5, key: "templates.outputs[0].destination",
              says: "missing required key 'destination'"),
    BadConfig(name: "misspelt output key",
              text: listener + "templates:\n  outputs:\n    - {template: a, destination: /tmp/a, relaod: x}\n", line: 5,
              key: "templates.outputs[0].relaod", says: "did you mean 'reload'?"),
    BadConfig(name: "wait max shorter than min",
              text: listener + "templates:\n  outputs:\n    - template: a\n      destination: /tmp/a\n      wait: {min: 5s, max: 1s}\n",
              line: 7, key: "templates.outputs[0].wait.max", says: "shorter than wait.min"),
    BadConfig(name: "mode that is not octal",
              text: listener + "templates:\n  outputs:\n    - {template: a, destination: /tmp/a, mode: rw-r--r--}\n", line: 5,
              key: "templates.outputs[0].mode", says: "octal file mode like 0644"),
    BadConfig(name: "two outputs writing one file",
              text: listener + "templates:\n  outputs:\n    - {template: a, destination: /tmp/a}\n    - {template: b, destination: /tmp/a}\n",
              line: 6, key: "templates.outputs[1]", says: "another output at line 5 already writes /tmp/a"),
    BadConfig(name: "guard percentage out of range",
              text: listener + "templates:\n  guards: {max_removed_percent: 150}\n", line: 4, key: "templates.guards.max_removed_percent",
              says: "150 is out of range; expected 0...100"),
    BadConfig(name: "environment name with a space",
              text: listener + "templates:\n  env: [\"MY VAR\"]\n", line: 4, key: "templates.env[0]",
              says: "'MY VAR' is not an environment variable name"),
]

@Suite struct TemplatesSectionErrorsNameFileLineAndKey {
    @Test(arguments: badTemplates)
    func badTemplatesSectionIsRejected(_ bad: BadConfig) {
        guard let error = configError({ () throws(ConfigError) in try ConfigLoader.loadConfig(text: bad.text, path: "conf/bad.yml") }) else { return }
        #expect(error.file == "conf/bad.yml")
        #expect(error.line == bad.line, "\(error)")
        #expect(error.key == bad.key, "\(error)")
        #expect(error.message.contains(bad.says), "\(error)")
    }
}
