// Paths to the shipped templates and the golden fixtures, and the golden comparison.

import Foundation
import Testing
import YardModel
import YardTemplates

/// The repository root, from this file's path.
func repositoryPath(_ relative: String, filePath: String = #filePath) -> String {
    URL(fileURLWithPath: filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent(relative).path
}

func goldenPath(_ name: String, filePath: String = #filePath) -> String {
    URL(fileURLWithPath: filePath).deletingLastPathComponent().appendingPathComponent("Golden").appendingPathComponent(name).path
}

/// The fixture catalog with health for a few endpoints (the rest stay "unknown").
func fixtureInput() throws -> TemplateInput {
    let catalog = try ConfigLoader.loadCatalog(path: goldenPath("catalog.yml"))
    return TemplateInput(
        catalog: catalog,
        health: [
            TemplateInput.healthKey(service: "shop", address: "10.0.1.1", port: 8080): "healthy",
            TemplateInput.healthKey(service: "shop", address: "10.0.1.2", port: 8080): "healthy",
            TemplateInput.healthKey(service: "api", address: "10.0.3.2", port: 9001): "unhealthy",
        ],
        environment: ["DEPLOY_ENV": "test"])
}

/// Compares `text` with the golden file byte for byte. `SWITCHYARD_UPDATE_GOLDEN=1`
/// rewrites the golden file instead (review the diff before committing it).
func expectGolden(_ text: String, _ name: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
    let path = goldenPath(name)
    if ProcessInfo.processInfo.environment["SWITCHYARD_UPDATE_GOLDEN"] == "1" {
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return
    }
    let expected = try String(contentsOfFile: path, encoding: .utf8)
    #expect(text == expected, "differs from \(name):\n\(TextDiff.unified(old: expected, new: text, oldName: name, newName: "rendered"))", sourceLocation: sourceLocation)
}

