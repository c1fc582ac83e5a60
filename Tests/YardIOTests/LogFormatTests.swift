import Foundation
import Logging
import Testing
@testable import YardIO

/// The process log's handler (swift-log `LogHandler`): a text line, or one JSON object per
/// line that any JSON reader takes whatever the message carries; the level it keeps.
@Suite struct LogFormat {
    let stamp = "2026-12-07T05:20:00.123Z"

    @Test func jsonLineIsOneObjectWithTimeLevelMessageAndFields() throws {
        let line = SwitchyardLogHandler.line(.warning, "render held back", ["service": "shop", "reason": "min endpoints"], stamp: stamp, format: .json)
        #expect(line.hasSuffix("}\n"))
        #expect(line.dropLast().contains("\n") == false)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(object["ts"] as? String == stamp)
        #expect(object["level"] as? String == "warn")
        #expect(object["msg"] as? String == "render held back")
        #expect(object["fields"] as? [String: String] == ["service": "shop", "reason": "min endpoints"])
    }

    @Test func aMessageWithQuotesNewlinesAndControlBytesStaysOneJSONLine() throws {
        let hostile = "bad header \"X\\\"\n{\"level\":\"error\"}\r\t\u{01}\u{7F}\u{2028} ünïcode"
        let line = SwitchyardLogHandler.line(.info, hostile, ["k\"ey": "va\nlue"], stamp: stamp, format: .json)
        #expect(line.filter { $0 == "\n" }.count == 1, "one line: \(line)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(object["msg"] as? String == hostile)
        #expect(object["fields"] as? [String: String] == ["k\"ey": "va\nlue"])
    }

    /// The attack: a container label or a URL that a log line quotes, carrying quotes, a
    /// newline that starts a forged JSON line, a NUL and ESC (a terminal escape), written
    /// through a real swift-log `Logger` into a pipe.
    @Test func aHostileLabelAndURLThroughTheLoggerStayOneValidJSONLine() throws {
        let label = "switchyard.route.x\"}\n{\"level\":\"error\",\"msg\":\"forged\"}\u{00}\u{1B}[31m.host"
        let url = "/shop?q=\"\r\n\u{1B}]0;title\u{07}\\"
        let lines = try logged(format: .json, level: .info) { logger in
            logger.warning("label \(label) rejected", metadata: ["label": .string(label), "url": .string(url), "attempts": .stringConvertible(3)])
        }
        #expect(lines.count == 1, "\(lines)")
        let first = try #require(lines.first)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(first.utf8)) as? [String: Any])
        #expect(object["msg"] as? String == "label \(label) rejected")
        #expect(object["level"] as? String == "warn")
        #expect(object["fields"] as? [String: String] == ["label": label, "url": url, "attempts": "3"])
        #expect(first.unicodeScalars.allSatisfy { $0.value >= 0x20 && $0.value != 0x7F }, "no raw control byte: \(first)")
    }

    @Test func aTextLineEscapesControlCharactersSoANewlineCannotForgeALine() throws {
        let lines = try logged(format: .text, level: .info) { logger in
            logger.error("bad \"label\"\nT info forged", metadata: ["key": "a\nb\u{1B}"])
        }
        #expect(lines.count == 1, "\(lines)")
        #expect(lines[0].hasSuffix(" error bad \"label\"\\nT info forged key=a\\nb\\u001b"), "\(lines[0])")
    }

    @Test func metadataBecomesJSONFieldsWithNestedValuesKept() throws {
        var handler = SwitchyardLogHandler(label: "t", format: .json, logLevel: .info)
        handler[metadataKey: "replica"] = "r1"
        handler[metadataKey: "service"] = "logger's"
        let fields: Logger.Metadata = [
            "service": "call's", "endpoints": .array(["a", "b"]), "split": .dictionary(["blue": "90", "green": "10"]),
        ]
        var merged = handler.metadata
        merged.merge(fields) { _, call in call }
        let line = SwitchyardLogHandler.line(.info, "m", merged, stamp: stamp, format: .json)
        #expect(line == #"{"ts":"2026-12-07T05:20:00.123Z","level":"info","msg":"m","fields":{"endpoints":["a","b"],"replica":"r1","service":"call's","split":{"blue":"90","green":"10"}}}"# + "\n")
    }

    @Test func linesBelowTheLevelAreDroppedWithoutBuildingTheMessage() throws {
        nonisolated(unsafe) var built = 0
        func message(_ text: String) -> Logger.Message { built += 1; return "\(text)" }
        let lines = try logged(format: .text, level: .warning) { logger in
            logger.debug(message("debug"))
            logger.info(message("info"))
            logger.notice(message("notice"))
            logger.warning(message("warning"))
            logger.error(message("error"))
            logger.critical(message("critical"))
        }
        #expect(lines.map { $0.split(separator: " ").dropFirst().joined(separator: " ") } == ["warn warning", "error error", "critical critical"])
        #expect(built == 3, "messages below the level are never built")
    }

    @Test func textLineKeepsItsShapeAndAppendsFields() {
        #expect(SwitchyardLogHandler.line(.info, "started", [:], stamp: "T", format: .text) == "T info started\n")
        #expect(SwitchyardLogHandler.line(.error, "failed", ["provider": "etcd"], stamp: "T", format: .text) == "T error failed provider=etcd\n")
    }

    @Test func theFacadesFieldsArriveAsStringMetadata() {
        #expect(Log.metadata([:]) == nil)
        #expect(Log.metadata(["service": "shop", "endpoint": "127.0.0.1:1"]) == ["service": "shop", "endpoint": "127.0.0.1:1"])
    }

    // MARK: Helpers

    /// The lines a logger writes through a `SwitchyardLogHandler` into a pipe.
    func logged(format: Log.Format, level: Logger.Level, _ body: (Logger) -> Void) throws -> [String] {
        var fds: [Int32] = [0, 0]
        try #require(pipe(&fds) == 0)
        let logger = Logger(label: "test") { SwitchyardLogHandler(label: $0, format: format, logLevel: level, fd: fds[1]) }
        body(logger)
        close(fds[1])
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = read(fds[0], &chunk, chunk.count)
            if count <= 0 { break }
            bytes += chunk[0..<count]
        }
        close(fds[0])
        return String(decoding: bytes, as: UTF8.self).split(separator: "\n").map(String.init)
    }
}
