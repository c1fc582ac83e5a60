// Turning a store's access options (YardModel's StoreAccessConfig) into what the control
// HTTP client uses: a loaded TLS configuration and the Consul token.

import Foundation
import YardControlHTTP
import YardModel

extension StoreAccessConfig {
    /// The TLS files loaded (nil when none are set: `https://` then trusts the system
    /// store). The error names the option and the file that failed.
    public func loadTLS() throws(ControlHTTPError) -> ControlTLS? {
        do {
            return try ControlTLS.load(ControlTLSFiles(caFile: caFile, certFile: certFile, keyFile: keyFile))
        } catch {
            throw ControlHTTPError("TLS (\(tlsFiles.map { "\($0.option) \($0.path)" }.joined(separator: ", "))): \(error.description)")
        }
    }

    /// Consul's ACL token: `token`, the trimmed content of `token_file`, or `token_env`'s
    /// value (an unset variable means no token). A token file that cannot be read is an error.
    public func consulToken() throws(ControlHTTPError) -> String? {
        if let tokenFile {
            guard let data = FileManager.default.contents(atPath: tokenFile) else {
                throw ControlHTTPError("token_file \(tokenFile): cannot read it")
            }
            let token = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            guard !token.isEmpty else { throw ControlHTTPError("token_file \(tokenFile) is empty") }
            return token
        }
        if let tokenEnvironment { return ProcessInfo.processInfo.environment[tokenEnvironment] }
        return token
    }
}
