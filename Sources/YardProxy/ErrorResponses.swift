import YardIO

/// The answers the proxy gives itself, pre-encoded as static bytes (generated; each
/// Content-Length is exact).
///
/// Each has a short plain-text body saying what failed. Two variants: one that keeps the
/// connection open (the request's framing was fully read) and one with `Connection: close`
/// (framing unknown, or the connection is closing).
enum ErrorResponse {
    static func bytes(status: Int, close: Bool) -> StaticString {
        switch (status, close) {
        case (400, false): return "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 47\r\n\r\nbad request: the request is not valid HTTP/1.1\n"
        case (400, true): return "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 47\r\nConnection: close\r\n\r\nbad request: the request is not valid HTTP/1.1\n"
        case (403, false): return "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 54\r\n\r\nforbidden: the route does not accept this client here\n"
        case (403, true): return "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 54\r\nConnection: close\r\n\r\nforbidden: the route does not accept this client here\n"
        case (404, false): return "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 58\r\n\r\nno route: no service is configured for this host and path\n"
        case (404, true): return "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 58\r\nConnection: close\r\n\r\nno route: no service is configured for this host and path\n"
        case (408, false): return "HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain\r\nContent-Length: 57\r\n\r\nrequest timeout: the request head did not arrive in time\n"
        case (408, true): return "HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain\r\nContent-Length: 57\r\nConnection: close\r\n\r\nrequest timeout: the request head did not arrive in time\n"
        case (413, false): return "HTTP/1.1 413 Content Too Large\r\nContent-Type: text/plain\r\nContent-Length: 54\r\n\r\ncontent too large: the request body is over the limit\n"
        case (413, true): return "HTTP/1.1 413 Content Too Large\r\nContent-Type: text/plain\r\nContent-Length: 54\r\nConnection: close\r\n\r\ncontent too large: the request body is over the limit\n"
        case (414, false): return "HTTP/1.1 414 URI Too Long\r\nContent-Type: text/plain\r\nContent-Length: 49\r\n\r\nuri too long: the request line is over the limit\n"
        case (414, true): return "HTTP/1.1 414 URI Too Long\r\nContent-Type: text/plain\r\nContent-Length: 49\r\nConnection: close\r\n\r\nuri too long: the request line is over the limit\n"
        case (431, false): return "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain\r\nContent-Length: 60\r\n\r\nrequest header fields too large: the head is over the limit\n"
        case (431, true): return "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain\r\nContent-Length: 60\r\nConnection: close\r\n\r\nrequest header fields too large: the head is over the limit\n"
        case (501, false): return "HTTP/1.1 501 Not Implemented\r\nContent-Type: text/plain\r\nContent-Length: 47\r\n\r\nnot implemented: this request is not supported\n"
        case (501, true): return "HTTP/1.1 501 Not Implemented\r\nContent-Type: text/plain\r\nContent-Length: 47\r\nConnection: close\r\n\r\nnot implemented: this request is not supported\n"
        case (502, false): return "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: 43\r\n\r\nbad gateway: the upstream failed to answer\n"
        case (502, true): return "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: 43\r\nConnection: close\r\n\r\nbad gateway: the upstream failed to answer\n"
        case (503, false): return "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 61\r\n\r\nservice unavailable: the service has no endpoint to serve it\n"
        case (503, true): return "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 61\r\nConnection: close\r\n\r\nservice unavailable: the service has no endpoint to serve it\n"
        case (504, false): return "HTTP/1.1 504 Gateway Timeout\r\nContent-Type: text/plain\r\nContent-Length: 53\r\n\r\ngateway timeout: the upstream did not answer in time\n"
        case (504, true): return "HTTP/1.1 504 Gateway Timeout\r\nContent-Type: text/plain\r\nContent-Length: 53\r\nConnection: close\r\n\r\ngateway timeout: the upstream did not answer in time\n"
        case (505, false): return "HTTP/1.1 505 HTTP Version Not Supported\r\nContent-Type: text/plain\r\nContent-Length: 53\r\n\r\nhttp version not supported: use HTTP/1.1 or HTTP/1.0\n"
        case (505, true): return "HTTP/1.1 505 HTTP Version Not Supported\r\nContent-Type: text/plain\r\nContent-Length: 53\r\nConnection: close\r\n\r\nhttp version not supported: use HTTP/1.1 or HTTP/1.0\n"
        default: return "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 47\r\nConnection: close\r\n\r\nbad request: the request is not valid HTTP/1.1\n"
        }
    }

    /// The reason phrase for logs.
    static func reason(_ status: Int) -> String {
        switch status {
        case 400: return "bad request: the request is not valid HTTP/1.1"
        case 403: return "forbidden: the route does not accept this client here"
        case 404: return "no route: no service is configured for this host and path"
        case 408: return "request timeout: the request head did not arrive in time"
        case 413: return "content too large: the request body is over the limit"
        case 414: return "uri too long: the request line is over the limit"
        case 431: return "request header fields too large: the head is over the limit"
        case 501: return "not implemented: this request is not supported"
        case 502: return "bad gateway: the upstream failed to answer"
        case 503: return "service unavailable: the service has no endpoint to serve it"
        case 504: return "gateway timeout: the upstream did not answer in time"
        case 505: return "http version not supported: use HTTP/1.1 or HTTP/1.0"
        default: return "error"
        }
    }
}
