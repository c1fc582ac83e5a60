import Foundation
import Testing
import YardTestSupport

// The compress middleware through the real binary: curl --compressed (HTTP/1.1 and HTTP/2)
// must get back the origin's exact bytes, and what must not be compressed is not.

/// Text that compresses but not to nothing: numbered lines of mixed words.
private func sampleText(bytes: Int) -> String {
    let words = ["switchyard", "route", "canary", "blue", "green", "gzip", "upstream", "listener", "drain", "flip"]
    var text = ""
    var i = 0
    while text.utf8.count < bytes {
        text += "\(i) \(words[i % 7]) \(words[(i * 3) % 10]) \(i * 7919 % 1000)\n"
        i += 1
    }
    return String(text.prefix(bytes))
}

private func headText(_ dir: ScratchDir, _ name: String) -> String {
    dir.read(name).lowercased()
}

/// Fetches `path` with curl --compressed (HTTP/1.1, or HTTP/2 with prior knowledge) and checks
/// that it came gzipped and decompresses to `expected`: Content-Encoding, Vary, a weak ETag,
/// no Content-Length, and under a third of the bytes on the wire.
private func expectGzipped(_ url: String, _ path: String, expected: String, h2: Bool, dir: ScratchDir, tag: String) throws {
    let headName = "head-\(tag).txt"
    let result = try curl(url + path, ["--compressed", "-D", dir.file(headName)] + (h2 ? ["--http2-prior-knowledge"] : []),
                          extra: ["%{size_download}"], dir: dir)
    #expect(result.httpStatus == 200, "\(path) h2=\(h2): \(result.stderr)")
    #expect(result.body == expected, "\(path) h2=\(h2): the body decompresses to the origin's bytes")
    let head = headText(dir, headName)
    #expect(head.contains("content-encoding: gzip"), "\(path) h2=\(h2): \(head)")
    #expect(head.contains("vary: accept-encoding"))
    #expect(head.contains("etag: w/\"v1\""), "a compressed body's ETag is weak: \(head)")
    #expect(!head.contains("content-length"), "the origin's length is not the gzip's: \(head)")
    let sent = Int(result.written.first ?? "") ?? 0
    #expect(sent > 0 && sent < expected.utf8.count / 3, "\(path) h2=\(h2): \(sent) bytes on the wire")
}

/// The origin's `/stream` pauses 3 s after its first piece: through gzip, that piece must
/// reach curl (-N writes what it decompressed at once) before the second is sent.
private func expectFirstPieceBeforeThePause(_ url: String, h2: Bool, dir: ScratchDir, tag: String) throws {
    let started = ContinuousClock.now
    let client = try BackgroundCurl(url + "/stream", ["-N", "--compressed", "-D", dir.file("stream-head-\(tag).txt")]
                                    + (h2 ? ["--http2-prior-knowledge"] : []), dir: dir)
    defer { client.child.stop() }
    try waitFor("the first piece through gzip", timeout: .milliseconds(2_500)) {
        ((try? String(contentsOfFile: client.bodyPath, encoding: .utf8)) ?? "").contains("piece-one")
    }
    #expect(ContinuousClock.now - started < .milliseconds(2_500))
    let result = client.finish(timeout: .seconds(10))
    #expect(result.httpStatus == 200, "h2=\(h2)")
    #expect(result.body == String(repeating: "piece-one\n", count: 300) + String(repeating: "piece-two\n", count: 300))
    #expect(dir.read("stream-head-\(tag).txt").lowercased().contains("content-encoding: gzip"))
}

extension Integration {
    @Suite struct CompressThroughTheBinary {
        static let config = """
            middlewares:
              gzip: {compress: {min_bytes: 1KiB, level: 5}}
              gzip-fast: {compress: {level: 1}}
            routes:
              - {path: /plain, service: site}
              - {path: /fast, service: site, middlewares: [gzip-fast]}
              - {service: site, middlewares: [gzip]}
            """

        @Test(.timeLimit(.minutes(1)))
        func gzipDecompressesToTheOriginsExactBytesForLengthAndChunkedBodiesOverHTTP1AndHTTP2() throws {
            let dir = try ScratchDir("compress-bytes")
            let big = sampleText(bytes: 1 << 20)
            try dir.write("big.txt", big)
            try dir.write("page.html", sampleText(bytes: 64 * 1024))
            let (origin, originPort) = try startFileOrigin(dir)
            defer { origin.stop() }
            let (proxy, url) = try startMiddlewareProxy(dir, originPort: originPort, Self.config)
            defer { proxy.stop() }

            // Streams are reused between responses, also across levels (/fast is level 1).
            for (index, (path, expected)) in [("/big.txt", big), ("/fast/big.txt", big), ("/big.txt?chunked=1", big), ("/fast/big.txt?chunked=1", big),
                                              ("/page.html?type=text/html;%20charset=utf-8", dir.read("page.html"))].enumerated() {
                for h2 in [false, true] {
                    try expectGzipped(url, path, expected: expected, h2: h2, dir: dir, tag: "\(index)-\(h2)")
                }
            }
            // A route without compress relays the same file as it is.
            let plain = try curl(url + "/plain?x=1", ["--compressed", "-D", dir.file("plain-head.txt")], dir: dir)
            #expect(plain.httpStatus == 404 || plain.httpStatus == 200)
            #expect(!headText(dir, "plain-head.txt").contains("content-encoding"))
        }

        @Test(.timeLimit(.minutes(1)))
        func responsesTheClientOrTheOriginRuleOutStayAsTheyAre() throws {
            let dir = try ScratchDir("compress-refusals")
            try dir.write("page.txt", sampleText(bytes: 8 * 1024))
            try dir.write("small.txt", sampleText(bytes: 500))
            let (origin, originPort) = try startFileOrigin(dir)
            defer { origin.stop() }
            let (proxy, url) = try startMiddlewareProxy(dir, originPort: originPort, Self.config)
            defer { proxy.stop() }

            let cases: [(String, [String], String)] = [
                ("/page.txt", [], "no Accept-Encoding"),
                ("/page.txt", ["-H", "Accept-Encoding: gzip;q=0, deflate"], "gzip;q=0 refuses"),
                ("/page.txt", ["-H", "Accept-Encoding: br, *;q=0"], "only br"),
                ("/small.txt", ["-H", "Accept-Encoding: gzip"], "under min_bytes"),
                ("/page.txt?type=image/png", ["-H", "Accept-Encoding: gzip"], "not a listed type"),
                ("/page.txt?cc=public,%20no-transform", ["-H", "Accept-Encoding: gzip"], "Cache-Control: no-transform"),
                ("/page.txt?status=204", ["-H", "Accept-Encoding: gzip"], "204"),
            ]
            for (index, (path, options, why)) in cases.enumerated() {
                let name = "refused-\(index).txt"
                let result = try curl(url + path, options + ["-D", dir.file(name)], dir: dir)
                let head = headText(dir, name)
                #expect(!head.contains("content-encoding"), "\(why): \(head)")
                if result.httpStatus == 200 {
                    #expect(result.body == dir.read(path.hasPrefix("/small") ? "small.txt" : "page.txt"), "\(why)")
                    #expect(head.contains("content-length:"), "\(why): the origin's length stays: \(head)")
                    #expect(head.contains("etag: \"v1\""), "\(why): the ETag stays strong")
                }
            }
            // The origin's own encoding is passed through untouched (not compressed twice).
            let encoded = try curl(url + "/page.txt?ce=br", ["-H", "Accept-Encoding: gzip, br", "-D", dir.file("br.txt")], dir: dir)
            #expect(encoded.httpStatus == 200)
            #expect(headText(dir, "br.txt").contains("content-encoding: br"))
            #expect(encoded.body == dir.read("page.txt"))
            // HEAD: the head as the origin sent it.
            _ = try curl(url + "/page.txt", ["-I", "-H", "Accept-Encoding: gzip", "-D", dir.file("head.txt")], dir: dir)
            #expect(!headText(dir, "head.txt").contains("content-encoding"))
            // q-values: x-gzip with a weight, or * alone, allow gzip.
            for (index, accept) in ["x-gzip;q=0.5", "*", "identity;q=1, gzip;q=0.001"].enumerated() {
                let name = "allowed-\(index).txt"
                let result = try curl(url + "/page.txt", ["-H", "Accept-Encoding: \(accept)", "-D", dir.file(name)], dir: dir)
                #expect(result.httpStatus == 200)
                #expect(headText(dir, name).contains("content-encoding: gzip"), "\(accept)")
            }
        }

        @Test(.timeLimit(.minutes(1)))
        func aStreamingOriginsFirstPieceReachesTheClientBeforeItsLastIsSent() throws {
            let dir = try ScratchDir("compress-stream")
            let (origin, originPort) = try startFileOrigin(dir)
            defer { origin.stop() }
            let (proxy, url) = try startMiddlewareProxy(dir, originPort: originPort, Self.config)
            defer { proxy.stop() }
            for h2 in [false, true] { try expectFirstPieceBeforeThePause(url, h2: h2, dir: dir, tag: "\(h2)") }
        }

        @Test(.timeLimit(.minutes(1)))
        func nghttpSeesAGzipStreamBesideAnUncompressedOneOnOneConnection() throws {
            let dir = try ScratchDir("compress-nghttp")
            try dir.write("page.txt", sampleText(bytes: 32 * 1024))
            let (origin, originPort) = try startFileOrigin(dir)
            defer { origin.stop() }
            let (proxy, url) = try startMiddlewareProxy(dir, originPort: originPort, Self.config)
            defer { proxy.stop() }
            let streams = try runCommand("/usr/bin/nghttp", ["-nv", "-H", "accept-encoding: gzip", url + "/page.txt", url + "/plain/x"],
                                         dir: dir, label: "nghttp")
            #expect(streams.status == 0, "\(streams.stderr)")
            let shown = streams.stdout.lowercased()
            #expect(shown.contains("content-encoding: gzip"))
            #expect(shown.contains("vary: accept-encoding"))
            #expect(streams.stdout.contains("END_STREAM"))
        }

        // MARK: From an HTTP/2 (h2c) origin

        /// The file origin behind Debian's nginx speaking h2c (`listen ... http2`), the service
        /// saying `upstream: {protocol: h2c}`: the compressed relay from HTTP/2 upstream streams.
        @Test(.timeLimit(.minutes(2)))
        func gzipFromAnH2cOriginDecompressesToItsExactBytesForHTTP1AndHTTP2Clients() throws {
            let dir = try ScratchDir("compress-h2c")
            let big = sampleText(bytes: 1 << 20)
            try dir.write("big.txt", big)
            try dir.write("page.txt", sampleText(bytes: 8 * 1024))
            try dir.write("small.txt", sampleText(bytes: 500))
            let (origin, originPort) = try startFileOrigin(dir)
            defer { origin.stop() }
            let nginx = try H2Nginx(dir: dir, originPort: originPort)
            defer { nginx.stop() }
            let (proxy, url) = try startMiddlewareProxy(dir, originPort: nginx.port, Self.config, siteYAML: "upstream: {protocol: h2c}")
            defer { proxy.stop() }

            // With a Content-Length from nginx, and without one (a chunked origin: DATA until END_STREAM).
            for (index, path) in ["/big.txt", "/fast/big.txt", "/big.txt?chunked=1", "/fast/big.txt?chunked=1"].enumerated() {
                for h2 in [false, true] {
                    try expectGzipped(url, path, expected: big, h2: h2, dir: dir, tag: "h2c-\(index)-\(h2)")
                }
            }
            // A slow client: the stream's window (given back only as bytes leave for the client)
            // holds the origin back, and the bytes still arrive whole.
            for h2 in [false, true] {
                let result = try curl(url + "/big.txt?chunked=1", ["--compressed", "--limit-rate", "400k"] + (h2 ? ["--http2-prior-knowledge"] : []), dir: dir)
                #expect(result.httpStatus == 200 && result.body == big, "slow client h2=\(h2): \(result.stderr)")
            }
            // nghttp inflates a gzip body itself: what it writes is the file, and its frames show the encoding.
            for path in ["/big.txt", "/big.txt?chunked=1"] {
                let check = try runCommand("/bin/sh", ["-c", "/usr/bin/nghttp -H 'accept-encoding: gzip' '\(url + path)' | cmp - big.txt"],
                                           dir: dir, label: "nghttp-body")
                #expect(check.status == 0, "\(path): \(check.stdout) \(check.stderr)")
                let frames = try runCommand("/usr/bin/nghttp", ["-nv", "-H", "accept-encoding: gzip", url + path], dir: dir, label: "nghttp-frames")
                #expect(frames.status == 0 && frames.stdout.lowercased().contains("content-encoding: gzip"), "\(path): \(frames.stderr)")
                #expect(!frames.stdout.lowercased().contains("content-length"), "\(path)")
            }

            // The same refusals as from an HTTP/1.1 origin.
            let cases: [(String, [String], String)] = [
                ("/page.txt", [], "no Accept-Encoding"),
                ("/page.txt", ["-H", "Accept-Encoding: gzip;q=0, deflate"], "gzip;q=0 refuses"),
                ("/small.txt", ["-H", "Accept-Encoding: gzip"], "under min_bytes"),
                ("/page.txt?type=image/png", ["-H", "Accept-Encoding: gzip"], "not a listed type"),
                ("/page.txt?cc=public,%20no-transform", ["-H", "Accept-Encoding: gzip"], "Cache-Control: no-transform"),
                ("/page.txt?status=204", ["-H", "Accept-Encoding: gzip"], "204"),
                ("/page.txt?status=304", ["-H", "Accept-Encoding: gzip"], "304"),
                ("/page.txt?status=206", ["-H", "Accept-Encoding: gzip"], "206"),
                ("/page.txt?ce=br", ["-H", "Accept-Encoding: gzip, br"], "already encoded"),
                ("/page.txt", ["-I", "-H", "Accept-Encoding: gzip"], "HEAD"),
            ]
            for (index, (path, options, why)) in cases.enumerated() {
                for h2 in [false, true] {
                    let name = "h2c-refused-\(index)-\(h2).txt"
                    let result = try curl(url + path, options + ["-D", dir.file(name)] + (h2 ? ["--http2-prior-knowledge"] : []), dir: dir)
                    let head = headText(dir, name)
                    #expect(!head.contains("content-encoding: gzip"), "\(why) h2=\(h2): \(head)")
                    if result.httpStatus == 200 && !options.contains("-I") {
                        #expect(result.body == dir.read(path.hasPrefix("/small") ? "small.txt" : "page.txt"), "\(why) h2=\(h2)")
                        #expect(head.contains("etag: \"v1\""), "\(why): the ETag stays strong")
                    }
                }
            }

            // A pause of the origin flushes what zlib holds: the first piece is out before the second is sent.
            for h2 in [false, true] { try expectFirstPieceBeforeThePause(url, h2: h2, dir: dir, tag: "h2c-\(h2)") }
        }

        /// The same over TLS: nginx `listen ... ssl http2`, the service `upstream: {protocol: h2, tls: ...}`.
        @Test(.timeLimit(.minutes(1)))
        func gzipFromAnH2OverTLSOriginIsTheOriginsExactBytes() throws {
            let dir = try ScratchDir("compress-h2-tls")
            let big = sampleText(bytes: 1 << 20)
            try dir.write("big.txt", big)
            let pki = try TestCertificates()
            let leaf = try pki.issue(file: "h2-origin", names: ["origin.internal"])
            let (origin, originPort) = try startFileOrigin(dir)
            defer { origin.stop() }
            let nginx = try H2Nginx(dir: dir, originPort: originPort, tls: (leaf.certificate, leaf.key))
            defer { nginx.stop() }
            let (proxy, url) = try startMiddlewareProxy(dir, originPort: nginx.port, Self.config,
                                                        siteYAML: "upstream: {protocol: h2, tls: {ca_file: \(pki.caFile), server_name: origin.internal}}")
            defer { proxy.stop() }
            for (index, path) in ["/big.txt", "/big.txt?chunked=1"].enumerated() {
                for h2 in [false, true] {
                    try expectGzipped(url, path, expected: big, h2: h2, dir: dir, tag: "h2-tls-\(index)-\(h2)")
                }
            }
        }
    }
}
