// The YAML loaders: any text gives a value or a ConfigError.

import YardModel

enum ModelTargets {
    static func config(_ bytes: UnsafeRawBufferPointer) {
        _ = try? ConfigLoader.loadConfig(text: String(decoding: bytes, as: UTF8.self), path: "fuzz/switchyard.yml")
    }

    static func catalog(_ bytes: UnsafeRawBufferPointer) {
        _ = try? ConfigLoader.loadCatalog(text: String(decoding: bytes, as: UTF8.self), path: "fuzz/services.yml")
    }
}
