// TLS for control-plane connections (etcd, Consul, a Docker Engine on TCP): which CA to
// trust and which client certificate to present.

import YardTLS

/// The files a control-plane TLS connection needs; all optional.
public struct ControlTLSFiles: Sendable, Equatable {
    /// PEM file of the CAs that signed the server's certificate; nil: the system store.
    public var caFile: String?
    /// Client certificate (PEM chain) for servers that require one, and its key.
    public var certFile: String?
    public var keyFile: String?
    /// The name to verify the server's certificate against, when it is not the host dialled
    /// (e.g. dialling an IP whose certificate names only `etcd.internal`).
    public var serverName: String?

    public init(caFile: String? = nil, certFile: String? = nil, keyFile: String? = nil, serverName: String? = nil) {
        self.caFile = caFile
        self.certFile = certFile
        self.keyFile = keyFile
        self.serverName = serverName
    }

    public var isEmpty: Bool { caFile == nil && certFile == nil && keyFile == nil && serverName == nil }
}

/// A loaded TLS client configuration: the files are read once, when this is made, so a
/// missing or broken file is an error at startup (or in `switchyard check`), not at the
/// first request.
///
/// Threading: immutable; shared by every request of a store or provider.
public final class ControlTLS: Sendable {
    public let files: ControlTLSFiles
    let context: TLSClientContext

    public init(_ files: ControlTLSFiles) throws(ControlHTTPError) {
        if (files.certFile == nil) != (files.keyFile == nil) {
            throw ControlHTTPError(files.certFile == nil ? "key_file \(files.keyFile ?? "") needs a cert_file" : "cert_file \(files.certFile ?? "") needs a key_file")
        }
        do {
            context = try TLSClientContext(caFile: files.caFile, certificateFile: files.certFile, keyFile: files.keyFile)
        } catch {
            throw ControlHTTPError(error.description)
        }
        self.files = files
    }

    /// Trusts the system's CA store, presents no certificate: `https://` without options.
    public static let system: Result<ControlTLS, ControlHTTPError> = Result { () throws(ControlHTTPError) in try ControlTLS(ControlTLSFiles()) }

    /// A TLS configuration for `files`, or nil when there is nothing to configure (plain
    /// `https://` then uses `system`).
    public static func load(_ files: ControlTLSFiles) throws(ControlHTTPError) -> ControlTLS? {
        files.isEmpty ? nil : try ControlTLS(files)
    }
}

/// A TLS failure with what an operator should check, when OpenSSL's reason says it.
func describeTLSFailure(_ error: TLSError) -> String {
    let text = error.description
    if text.contains("alert bad certificate") || text.contains("certificate required") || text.contains("alert unknown ca") {
        return "\(text) (the server refused the client certificate: none was given, or its CA is not one the server trusts; check cert_file and key_file)"
    }
    if text.contains("certificate verify failed") {
        return "\(text) (the server's certificate is not trusted or does not name this host; check ca_file)"
    }
    return text
}
