import Foundation
import Testing
@testable import YardIO

/// The process log's two formats: a text line, or one JSON object per line that any JSON
/// reader takes whatever the message carries.
@Suite struct LogFormat {
    @Test func jsonLineIsOneObjectWithTimeLevelMessageAndFields() throws {
        let line = Log.line(.warning, "render held back", ["service": "shop", "reason": "min endpoints"], stamp: "2026-12-07T05:20:00.123Z", format: .json)
        #expect(line.hasSuffix("}\n"))
        #expect(line.dropLast().contains("\n") == false)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(object["ts"] as? String == "2026-12-07T05:20:00.123Z")
        #expect(object["level"] as? String == "warn")
        #expect(object["msg"] as? String == "render held back")
        #expect(object["fields"] as? [String: String] == ["service": "shop", "reason": "min endpoints"])
    }

    @Test func aMessageWithQuotesNewlinesAndControlBytesStaysOneJSONLine() throws {
        let hostile = "bad header \"X\\\"\n{\"level\":\"error\"}\r\t\u{01}\u{7F}\u{2028} ünïcode"
        let line = Log.line(.info, hostile, ["k\"ey": "va\nlue"], stamp: "2026-12-07T05:20:00.123Z", format: .json)
        #expect(line.filter { $0 == "\n" }.count == 1, "one line: \(line)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(object["msg"] as? String == hostile)
        #expect(object["fields"] as? [String: String] == ["k\"ey": "va\nlue"])
    }

    @Test func textLineKeepsItsShapeAndAppendsFields() {
        #expect(Log.line(.info, "started", [:], stamp: "T", format: .text) == "T info started\n")
        #expect(Log.line(.error, "failed", ["provider": "etcd"], stamp: "T", format: .text) == "T error failed provider=etcd\n")
    }
}
