import YardModel

/// JSON written by hand where the bytes matter: the JWS protected header and the JWK whose
/// thumbprint must be computed over one exact serialization (RFC 7638 §3: members sorted,
/// no whitespace). Threading: stateless.
enum JSONText {
    /// `text` as a JSON string literal, quotes included (YardModel's escaping).
    static func string(_ text: String) -> String { "\"" + jsonEscaped(text) + "\"" }

    /// An object of string members, in the order given (the caller decides the order).
    static func object(_ members: [(String, String)]) -> String {
        "{" + members.map { "\(string($0.0)):\(string($0.1))" }.joined(separator: ",") + "}"
    }

    /// An object whose values are already JSON (`rawMembers`), in the order given.
    static func object(raw members: [(String, String)]) -> String {
        "{" + members.map { "\(string($0.0)):\($0.1)" }.joined(separator: ",") + "}"
    }
}
