// swift-tools-version:6.0
// Tools version 6.0: every target compiles in Swift 6 language mode (complete strict concurrency).
import PackageDescription

// MARK: Build identity (`switchyard --version`, the switchyard_build_info metric)
// SWITCHYARD_COMMIT and SWITCHYARD_BUILD_DATE, when set, are compiled into CYardBuildInfo
// (C, because Swift's -D flags carry no values); scripts/test and scripts/image set the
// commit from git. Otherwise the commit is "unknown" and the date is build_info.c's compile
// time. Not Context.gitInformation: SwiftPM caches the evaluated manifest by its text and
// environment, so the commit it gives stays the one of the first build (swiftlang/
// swift-package-manager#8202); an environment variable is part of that cache key.
func buildInfoText(_ name: String) -> String? {
    let text = Context.environment[name] ?? ""
    let kept = String(text.unicodeScalars.filter { $0.isASCII && ($0.properties.isAlphabetic || $0.properties.numericType != nil || "-.:+_".unicodeScalars.contains($0)) }.prefix(64))
    return kept.isEmpty ? nil : kept
}
let buildInfoDefines: [CSetting] = [("YARD_BUILD_COMMIT", "SWITCHYARD_COMMIT"), ("YARD_BUILD_DATE", "SWITCHYARD_BUILD_DATE")].compactMap { define, variable in
    buildInfoText(variable).map { .define(define, to: "\"\($0)\"") }
}

let package = Package(
    name: "Switchyard",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "switchyard", targets: ["switchyard"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/stencilproject/Stencil", from: "0.15.1"),
        // 1.11: `LogHandler.log(event:)`, the entry point our handler implements.
        .package(url: "https://github.com/apple/swift-log", from: "1.11.0"),
    ],
    targets: [
        // MARK: C system libraries (link only) with prefixed shims for what the importer cannot see.
        .systemLibrary(name: "CYardOpenSSL", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CYardNghttp2", pkgConfig: "libnghttp2", providers: [.apt(["libnghttp2-dev"])]),
        // Header-only: epoll, eventfd, accept4 and splice, which Swift's Glibc module does not export.
        .systemLibrary(name: "CYardLinux"),
        // libxcrypt: basic_auth verifies htpasswd hashes with crypt_rn.
        .systemLibrary(name: "CYardCrypt", providers: [.apt(["libcrypt-dev"])]),
        // zlib: the compress middleware's gzip (deflate as the body streams through).
        .systemLibrary(name: "CYardZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),

        // MARK: The data plane
        // The process log's handler lives here so the data plane's rare failure lines and the
        // control plane's lines go through one swift-log handler (docs/ARCHITECTURE.md).
        .target(name: "YardIO", dependencies: ["CYardLinux", .product(name: "Logging", package: "swift-log")]),
        .target(name: "YardHTTP", dependencies: ["YardIO"]),
        .target(name: "YardTLS", dependencies: ["CYardOpenSSL", "YardIO"]),
        // HTTP/2 server sessions over memory (libnghttp2), independent of sockets and TLS.
        .target(
            name: "YardHTTP2", dependencies: ["CYardNghttp2", "YardIO"],
            // The session is confined to one loop, like YardProxy's connections; dynamic
            // exclusivity checks on its stored properties were ~2-3 % of the proxy's CPU
            // under h2load (swift_beginAccess/AccessSet::insert in perf).
            swiftSettings: [.unsafeFlags(["-enforce-exclusivity=unchecked"])]
        ),
        .target(name: "YardModel", dependencies: ["CYardCrypt", .product(name: "Yams", package: "Yams")]),
        .target(name: "YardBalancing"),
        .target(name: "YardHealth", dependencies: ["YardIO", "YardModel", "YardBalancing", "YardTLS", "YardHTTP2", .product(name: "Logging", package: "swift-log")]),
        .target(
            name: "YardProxy",
            dependencies: ["YardIO", "YardHTTP", "YardHTTP2", "YardModel", "YardBalancing", "YardTLS", "CYardZlib"],
            // Connection state lives in loop-confined classes; dynamic exclusivity checks on
            // their stored properties cost ~2-3 % of the proxy's CPU under load (perf,
            // docs/ARCHITECTURE.md) and guard nothing a single-threaded loop can violate.
            swiftSettings: [.unsafeFlags(["-enforce-exclusivity=unchecked"])]
        ),

        // MARK: The control plane
        .target(name: "CYardBuildInfo", cSettings: buildInfoDefines),
        // The HTTP/1.1 client for etcd, Consul, Docker and the admin API (YardHTTP's parsers, YardTLS).
        .target(name: "YardControlHTTP", dependencies: ["YardIO", "YardHTTP", "YardTLS"]),
        .target(name: "YardDiscovery", dependencies: ["YardModel", "YardIO", "YardBalancing", "YardControlHTTP", .product(name: "Logging", package: "swift-log")]),
        .target(name: "YardTemplates", dependencies: ["YardModel", .product(name: "Stencil", package: "Stencil")]),
        // ACME (RFC 8555) certificates: the client, its JWS and CSR crypto, a blocking HTTPS client.
        .target(name: "YardACME", dependencies: ["CYardOpenSSL", "YardModel"]),
        .target(name: "YardControl", dependencies: ["YardModel", "YardACME", "YardProxy", "YardHealth", "YardDiscovery", "YardControlHTTP", "YardTemplates", "YardTLS", "CYardOpenSSL", "CYardNghttp2", "CYardBuildInfo", .product(name: "Logging", package: "swift-log")]),
        // The demo and test origin (`switchyard backend`, `switchyard demo`): never in a `run` path.
        .target(name: "YardDemo"),
        .executableTarget(
            name: "switchyard",
            dependencies: [
                "YardControl", "YardControlHTTP", "YardProxy", "YardModel", "YardDiscovery", "YardTemplates", "YardIO", "YardACME", "YardDemo",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        // MARK: Tests
        .target(name: "YardTestSupport", dependencies: ["YardIO"], path: "Sources/YardTestSupport"),
        .testTarget(name: "YardHTTPTests", dependencies: ["YardHTTP", "YardIO", "YardBalancing"]),
        .testTarget(name: "YardHTTP2Tests", dependencies: ["YardHTTP2", "YardIO", "CYardNghttp2"]),
        .testTarget(name: "YardProxyTests", dependencies: ["YardProxy", "YardHTTP"]),
        .testTarget(name: "YardBalancingTests", dependencies: ["YardBalancing"]),
        .testTarget(name: "YardHealthTests", dependencies: ["YardHealth", "YardModel"]),
        .testTarget(name: "YardModelTests", dependencies: ["YardModel", "YardDiscovery"]),
        .testTarget(name: "YardIOTests", dependencies: ["YardIO", "CYardOpenSSL", "CYardNghttp2", .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "YardControlTests", dependencies: ["YardControl", "YardControlHTTP", "YardACME", "YardModel", "YardTestSupport"]),
        .testTarget(name: "YardControlHTTPTests", dependencies: ["YardControlHTTP", "YardTestSupport"]),
        .testTarget(name: "YardDiscoveryTests", dependencies: ["YardDiscovery", "YardControlHTTP", "YardModel", "YardTestSupport"]),
        .testTarget(name: "YardTemplatesTests", dependencies: ["YardTemplates", "YardModel", "YardTestSupport"], exclude: ["Golden"]),
        .testTarget(name: "YardTLSTests", dependencies: ["YardTLS", "YardIO", "YardTestSupport", "CYardOpenSSL"]),
        .testTarget(name: "YardACMETests", dependencies: ["YardACME", "YardTestSupport", "CYardOpenSSL"]),
        .testTarget(name: "IntegrationTests", dependencies: ["YardTestSupport", "YardModel"]),
    ]
)

// MARK: Fuzzing
// The libFuzzer targets exist only when scripts/fuzz builds them (SWITCHYARD_FUZZ=1, with
// -sanitize=fuzzer,address into .build-fuzz): they cannot link without libFuzzer, and
// `swift build` / scripts/test never see them.
if Context.environment["SWITCHYARD_FUZZ"] == "1" {
    package.targets += [
        .systemLibrary(name: "CYardFuzz", path: "Fuzz/CYardFuzz"),
        .executableTarget(
            name: "SwitchyardFuzz",
            dependencies: ["CYardFuzz", "YardHTTP", "YardHTTP2", "YardIO", "YardModel", "YardDiscovery", "YardControl"],
            path: "Fuzz/SwitchyardFuzz"
        ),
    ]
}
