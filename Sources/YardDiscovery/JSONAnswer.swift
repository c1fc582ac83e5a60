// Decoding a backend's JSON answer with a message that says where it went wrong, for
// the Docker, Swarm and Consul providers' "garbage JSON" reports.

import Foundation
import YardControlHTTP

/// JSON decoding for control-plane answers, with errors that name the request and the
/// JSON path that did not parse (`GET /containers/json: at [2].Labels: expected an
/// object`), never the decoder's debug dump.
///
/// Threading: stateless; callable from any thread.
enum JSONAnswer {
    /// Decodes `body` as `T`; the error message starts with `what` (the request).
    static func decode<T: Decodable>(_ type: T.Type, from body: [UInt8], what: String) -> Result<T, AnswerProblem> {
        do {
            return .success(try JSONDecoder().decode(T.self, from: Data(body)))
        } catch let error as DecodingError {
            return .failure(AnswerProblem("\(what): \(describe(error)) (\(body.count) bytes)"))
        } catch {
            return .failure(AnswerProblem("\(what): not JSON: \(error)"))
        }
    }

    /// A one-line reading of a `DecodingError`.
    static func describe(_ error: DecodingError) -> String {
        func path(_ keys: [any CodingKey]) -> String {
            let text = keys.map { key in key.intValue.map { "[\($0)]" } ?? ".\(key.stringValue)" }.joined()
            return text.isEmpty ? "the top level" : String(text.drop { $0 == "." })
        }
        switch error {
        case .dataCorrupted(let context):
            if context.codingPath.isEmpty { return "invalid JSON (truncated or not JSON)" }
            return "invalid value at \(path(context.codingPath))"
        case .keyNotFound(let key, let context):
            return "missing key '\(key.stringValue)' at \(path(context.codingPath))"
        case .typeMismatch(let type, let context):
            return "expected \(describeType(type)) at \(path(context.codingPath))"
        case .valueNotFound(let type, let context):
            return "null where \(describeType(type)) was expected at \(path(context.codingPath))"
        @unknown default:
            return "cannot decode the answer"
        }
    }

    private static func describeType(_ type: Any.Type) -> String {
        let name = String(describing: type)
        if name == "String" { return "a string" }
        if name == "Bool" { return "true or false" }
        if name.hasPrefix("Int") || name.hasPrefix("UInt") || name == "Double" { return "a number" }
        if name.hasPrefix("Array") { return "an array" }
        return "an object"
    }
}

/// A backend answer a provider could not use (bad JSON, an unexpected status).
struct AnswerProblem: Error, Sendable, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

// MARK: - Requests

extension ControlHTTPClient {
    /// `GET path` decoded as `T`, with the response (for its headers); every failure
    /// (unreachable, an HTTP error, bad JSON) as a message starting `GET <shown>`.
    func getJSON<T: Decodable>(_ path: String, shown: String, as type: T.Type) -> Result<(T, ControlHTTPResponse), AnswerProblem> {
        let what = "GET \(shown)"
        let response: ControlHTTPResponse
        do {
            response = try send("GET", path)
        } catch {
            return .failure(AnswerProblem("\(what): \(error.description); keeping the last snapshot"))
        }
        guard response.status == 200 else {
            return .failure(AnswerProblem("\(what): HTTP \(response.status) \(response.text.prefix(200))"))
        }
        return JSONAnswer.decode(T.self, from: response.body, what: what).map { ($0, response) }
    }
}
