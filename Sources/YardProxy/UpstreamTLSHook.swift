import YardIO
import YardModel
import YardTLS

// Placeholder until TLS to upstreams lands: h2 over TLS needs a client context per
// (UpstreamTLS, ALPN) and a connection per socket.

enum UpstreamALPN { case h2, http1 }

extension Worker {
    func makeUpstreamTLS(fd: Int32, endpoint: Endpoint, tls: UpstreamTLS, alpn: UpstreamALPN) -> TLSConnection? {
        Log.warning("TLS to \(endpoint.id) is not available in this build")
        return nil
    }
}
