import Foundation

// Python origins for the compress and forward_auth tests: each answers what the request's
// path and query ask for, so one process serves every case of a test.

/// An HTTP/1.1 origin serving the files of its directory. Query parameters shape the answer:
/// `type` (Content-Type, default text/plain), `chunked=1` (Transfer-Encoding: chunked, 4000-byte
/// chunks), `cc` (Cache-Control), `ce` (Content-Encoding), `status`. Every answer has
/// `ETag: "v1"`. A path ending in `/echo-headers` answers with the request's fields, one per line;
/// a path under `/auth/` answers as an auth service: 302 to an SSO for an X-Forwarded-Uri under
/// /login, 200 with X-User: alice for `Authorization: Bearer good` (after 3 s for /slow), else 401.
/// POST answers with the request body. A path ending in `/stream` sends 3000 bytes of text,
/// waits 3 s, then 3000 more (chunked).
func startFileOrigin(_ dir: ScratchDir, label: String = "origin") throws -> (ChildProcess, UInt16) {
    let script = dir.file("file-origin.py")
    if !FileManager.default.fileExists(atPath: script) {
        try Data(fileOriginSource.utf8).write(to: URL(fileURLWithPath: script))
    }
    let child = try ChildProcess("/usr/bin/env", ["python3", script, dir.path], dir: dir, label: label)
    do {
        return (child, try child.waitForListeningPort())
    } catch {
        child.stop()
        throw error
    }
}

private let fileOriginSource = #"""
import http.server, os, sys, time, urllib.parse

ROOT = sys.argv[1]

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def auth(self):
        # The auth service: decides by X-Forwarded-Uri and Authorization.
        uri = self.headers.get("X-Forwarded-Uri", "")
        seen = "%s %s %s %s" % (self.headers.get("X-Forwarded-Method"), uri, self.headers.get("X-Forwarded-Host"),
                                self.headers.get("X-Forwarded-Proto"))
        if uri.startswith("/slow"):
            time.sleep(3)
        if uri.startswith("/login"):
            self.send_response(302)
            self.send_header("Location", "https://sso.example/login?rd=" + uri)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.headers.get("Authorization") == "Bearer good":
            self.send_response(200)
            self.send_header("X-User", "alice")
            self.send_header("X-Auth-Saw", seen)
            self.send_header("X-Not-Copied", "1")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            body = b"token needed\n"
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Bearer realm="site"')
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def stream(self):
        # A chunked text body in two pieces, 3 s apart.
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for piece, pause in ((b"piece-one\n" * 300, 3), (b"piece-two\n" * 300, 0)):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.flush()
            time.sleep(pause)
        self.wfile.write(b"0\r\n\r\n")

    def echo_headers(self):
        body = "".join("%s: %s\n" % (k, v) for k, v in self.headers.items()).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def answer(self, head_only):
        url = urllib.parse.urlsplit(self.path)
        if url.path.startswith("/auth/"):
            return self.auth()
        if url.path.endswith("/echo-headers"):
            return self.echo_headers()
        if url.path.endswith("/stream"):
            return self.stream()
        query = dict(urllib.parse.parse_qsl(url.query))
        path = os.path.join(ROOT, os.path.basename(url.path))
        try:
            with open(path, "rb") as f:
                body = f.read()
        except OSError:
            body = b"not found\n"
            query["status"] = "404"
        status = int(query.get("status", "200"))
        if status in (204, 304):
            head_only = True
        self.send_response(status)
        self.send_header("Content-Type", query.get("type", "text/plain"))
        self.send_header("ETag", '"v1"')
        for key, field in (("cc", "Cache-Control"), ("ce", "Content-Encoding")):
            if key in query:
                self.send_header(field, query[key])
        self.send_header("X-Origin-Saw-Accept-Encoding", self.headers.get("Accept-Encoding", "-"))
        if query.get("chunked") == "1":
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if head_only:
                return
            for i in range(0, len(body), 4000):
                piece = body[i:i + 4000]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        else:
            if status != 204:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head_only:
                self.wfile.write(body)

    def do_GET(self):
        self.answer(False)

    def do_POST(self):
        if self.path.startswith("/auth/"):
            return self.auth()
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self):
        self.answer(True)

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print("listening 127.0.0.1:%d" % server.server_address[1], flush=True)
server.serve_forever()
"""#

/// `switchyard run` with one listener, the service `site` at `originPort`, and `body` (the
/// middlewares and routes; `siteYAML` goes into the service's block, e.g. its upstream protocol).
/// Returns the proxy and its base URL.
func startMiddlewareProxy(_ dir: ScratchDir, originPort: UInt16, _ body: String, siteYAML: String = "",
                          more: [ServiceSpec] = []) throws -> (ChildProcess, String) {
    try dir.write("services.yml", servicesYAML([ServiceSpec(name: "site", instances: [.init(port: originPort)], extraYAML: siteYAML)] + more))
    try dir.write("switchyard.yml", """
        listeners:
          - {name: web, address: 127.0.0.1:0}
        \(body)
        discovery: {provider: file, file: services.yml}
        workers: 1

        """)
    let proxy = try ChildProcess(SwitchyardBinary.path, ["run", "--config", dir.file("switchyard.yml")], dir: dir, label: "proxy")
    do {
        return (proxy, "http://127.0.0.1:\(try proxy.waitForListeningPort())")
    } catch {
        proxy.stop()
        throw error
    }
}
