// The sticky-canary cookie on the request path: verify the client's signed cookie, give a
// client without one its point (by the exact split), and set it on the response.
// The signed values come with the routing table (YardModel/StickyCookie.swift).

import YardBalancing
import YardIO
import YardModel

extension Worker {
    /// The point of the request's proxy-set sticky cookie, or -1 (and the request is marked
    /// to get one) when it has none, or one that was not signed with the fleet's key.
    /// Before the key is loaded nothing is trusted or set: the split is the plain exact one.
    func signedStickyPoint(_ c: ClientConnection, service: Service) -> Int {
        guard let signed = table.stickyCookies else { return -1 }
        let base = c.inBuf.readable
        if let cookies = headerValue(c, named: HeaderName.cookie, base: base),
           let value = cookieValue(cookies, named: service.stickyKeyName) {
            let point = signed.point(of: value)
            if point >= 0 { return point }
        }
        c.exchange.assignsStickyCookie = true
        return -1
    }

    /// Gives the client a point on the side of the split the counter just chose for it.
    func assignStickyCookie(_ c: ClientConnection, _ top: ServiceBalancer) {
        c.exchange.stickyCookiePoint = TrafficSplit.assignedPoint(canary: c.exchange.onCanary, share: top.split.share(now: now), using: &top.stickyRandom)
    }

    /// The `Set-Cookie` line for the client's assigned point (Secure on TLS), or nothing.
    func stickyCookieLine(_ c: ClientConnection) -> [UInt8] {
        guard let signed = table.stickyCookies, let service = c.exchange.route?.service,
              let settings = service.canary?.stickyCookie else { return [] }
        return signed.setCookieLine(name: service.stickyKeyName, point: c.exchange.stickyCookiePoint,
                                    maxAgeSeconds: settings.maxAgeSeconds, secure: c.secure)
    }

    /// Appends the `Set-Cookie` line to an HTTP/1.1 response head.
    func appendStickyCookie(_ c: ClientConnection, into out: inout ByteBuffer) {
        let line = stickyCookieLine(c)
        _ = out.reserve(line.count)
        out.append(line)
    }
}
