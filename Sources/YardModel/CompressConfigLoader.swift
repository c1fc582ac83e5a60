// Loading a `compress` middleware:
//
//   gzip: {compress: {types: [text/*, application/json], min_bytes: 1KiB, level: 5}}

extension ConfigLoader {
    static func parseCompress(_ node: ConfigNode) throws(ConfigError) -> Compress {
        let fields = try node.fields(allowed: ["types", "min_bytes", "level"])
        var settings = Compress()
        if let typesNode = fields.optional("types") {
            var types: [String] = []
            for item in try typesNode.list() {
                let type = try item.string(expected: "a media type like text/html or text/*")
                let parts = type.split(separator: "/", omittingEmptySubsequences: false)
                guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty, parts[0] != "*",
                      type.utf8.allSatisfy({ RouteText.isTokenCharacter($0) || $0 == UInt8(ascii: "/") }),
                      parts[1] == "*" || !parts[1].contains("*") else {
                    throw item.error("'\(type)' is not a media type; write type/subtype or type/*, e.g. text/html or text/*")
                }
                types.append(type)
            }
            guard !types.isEmpty else { throw typesNode.error("list at least one media type, e.g. [text/*, application/json]") }
            settings.types = types
        }
        if let minNode = fields.optional("min_bytes") { settings.minBytes = try minNode.bytes(in: 0...1_073_741_824) }
        if let levelNode = fields.optional("level") { settings.level = try levelNode.integer(in: 1...9, expected: "a gzip level from 1 (fastest) to 9 (smallest)") }
        return settings
    }
}
