import Foundation
import YardDiscovery
import YardControlHTTP

/// A blocking HTTP/1.1 client for the CLI to reach a replica's admin API.
///
/// CLI only (never the data plane): one request per connection, over the control-plane
/// `ControlHTTPClient`.
public struct AdminClient: Sendable {
    public let target: ControlHTTPTarget
    public var token: String?
    public var timeoutSeconds: Int = 10

    /// Parses `http://HOST:PORT` (the `--admin` option).
    public init(url: String, token: String? = nil) throws {
        do {
            self.target = try ControlHTTPTarget(url: url)
        } catch {
            throw AdminClientError("cannot parse admin URL '\(url)': \(error.description); expected http://IP:PORT")
        }
        self.token = token
    }

    /// The first token of an admin token file (either format), for a CLI command that
    /// finds the file in the config; nil when it cannot be read or parsed.
    public static func firstToken(inFile path: String?) -> String? {
        guard let path, let text = try? String(contentsOfFile: path, encoding: .utf8),
              let tokens = try? AdminTokens(parsing: text), let first = tokens.entries.first else { return nil }
        return String(decoding: first.token, as: UTF8.self)
    }

    public struct Response: Sendable {
        public var status: Int
        public var body: [UInt8]
        public var text: String { String(decoding: body, as: UTF8.self) }
    }

    public func request(_ method: String, _ path: String, body: [UInt8] = []) throws -> Response {
        var headers: [(String, String)] = []
        if let token { headers.append(("Authorization", "Bearer \(token)")) }
        // The admin API takes writes as JSON only (a browser form cannot send that type).
        if method != "GET" && method != "HEAD" { headers.append(("Content-Type", "application/json")) }
        let client = ControlHTTPClient(target: target, timeout: .seconds(timeoutSeconds), headers: headers)
        do {
            let response = try client.send(method, path, body: body)
            return Response(status: response.status, body: response.body)
        } catch {
            throw AdminClientError("cannot reach the admin API at \(target): \(error.description); is switchyard running with an admin listener there?")
        }
    }
}

public struct AdminClientError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
