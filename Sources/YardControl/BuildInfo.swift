#if canImport(Glibc)
import Glibc
#endif
internal import CYardBuildInfo
internal import CYardNghttp2
internal import CYardOpenSSL

/// What this binary is: its version, the commit and time it was built from, and the
/// OpenSSL and nghttp2 it runs with (`switchyard --version`, `switchyard_build_info`).
///
/// The commit and date are compiled into the CYardBuildInfo target from `SWITCHYARD_COMMIT`
/// and `SWITCHYARD_BUILD_DATE` (Package.swift; scripts/test and scripts/image set them);
/// a plain `swift build` says "unknown" and the time build_info.c was compiled. The library
/// versions are read at run time: the shared libraries on the host may be newer than the
/// headers the binary was built against.
///
/// Threading: immutable values; any thread.
public enum BuildInfo {
    /// The release this source tree is.
    public static let version = "0.1.0"
    /// The git commit built (with `-dirty` if the tree had uncommitted changes), or "unknown".
    public static let commit = String(cString: yard_build_commit())
    /// When it was built, ISO 8601.
    public static let date = String(cString: yard_build_date())
    /// The OpenSSL library in use, e.g. "3.0.17" (OPENSSL_VERSION_STRING).
    public static var openSSL: String { String(cString: OpenSSL_version(OPENSSL_VERSION_STRING)) }
    /// OpenSSL's full banner, e.g. "OpenSSL 3.0.17 1 Jul 2025".
    public static var openSSLBanner: String { String(cString: OpenSSL_version(OPENSSL_VERSION)) }
    /// The libnghttp2 in use, e.g. "1.52.0".
    public static var nghttp2: String {
        guard let info = nghttp2_version(0), let text = info.pointee.version_str else { return "unknown" }
        return String(cString: text)
    }

    /// The `--version` text: the version, then one `key: value` line each.
    public static var versionText: String {
        """
        switchyard \(version)
        commit: \(commit)
        built: \(date)
        openssl: \(openSSLBanner)
        nghttp2: \(nghttp2)
        """
    }
}
