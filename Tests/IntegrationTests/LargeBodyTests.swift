import Foundation
import Testing

/// The transfer size: 1 GiB, or `SWITCHYARD_ITEST_LARGE_BYTES`.
private let largeBytes = Int(ProcessInfo.processInfo.environment["SWITCHYARD_ITEST_LARGE_BYTES"] ?? "") ?? 1 << 30

/// The proxy's resident memory must stay under this during a transfer of any size.
private let rssCeiling = 100 * 1024 * 1024

/// Samples a process's resident memory every 50 ms while `running` holds (until `timeout`);
/// the peak seen.
private func peakResidentBytes(pid: Int32, timeout: Duration, while running: () -> Bool) throws -> Int {
    var peak = 0
    try waitFor("the transfer to finish", timeout: timeout, interval: .milliseconds(50)) {
        peak = max(peak, residentBytes(pid: pid) ?? 0)
        return !running()
    }
    return peak
}

extension Integration {
    @Suite struct LargeBodies {
        let dir: ScratchDir
        let backend: Backend
        let proxy: RunningProxy

        init() throws {
            dir = try ScratchDir("large")
            backend = try Backend.demo("big", dir: dir)
            do {
                var spec = ProxySpec()
                spec.timeouts["upstream_response"] = "10s"
                proxy = try RunningProxy(spec, services: [ServiceSpec(name: "shop", instances: [.init(port: backend.port)])], dir: dir)
            } catch {
                backend.stop()
                throw error
            }
        }

        private func stop() {
            proxy.stop()
            backend.stop()
        }

        @Test(.timeLimit(.minutes(1)))
        func largeDownloadPassesWithBoundedProxyMemory() throws {
            defer { stop() }
            let started = ContinuousClock.now
            let download = try BackgroundCurl(proxy.url + "/size/\(largeBytes)", extra: ["%{size_download}"], dir: dir,
                                              discardBody: true)
            defer { download.child.stop() }
            let peak = try peakResidentBytes(pid: proxy.pid, timeout: .seconds(55)) { download.child.isRunning }
            let result = download.finish(timeout: .seconds(1))
            let elapsed = ContinuousClock.now - started
            print("download of \(largeBytes) bytes through the proxy: \(elapsed), proxy peak RSS \(peak / 1024) KiB")
            #expect(result.exitStatus == 0, "\(result.stderr)")
            #expect(result.httpStatus == 200)
            #expect(result.written.first == "\(largeBytes)")
            #expect(peak > 0 && peak < rssCeiling, "proxy peak RSS \(peak / 1024) KiB")
        }

        @Test(.timeLimit(.minutes(1)))
        func largeChunkedUploadFromAGeneratorPassesWithBoundedProxyMemory() throws {
            defer { stop() }
            // head -c N /dev/zero | curl -T - : a chunked upload of unknown length, echoed back.
            let pipe = Pipe()
            let generator = try ChildProcess("/usr/bin/head", ["-c", "\(largeBytes)", "/dev/zero"], dir: dir, label: "generator",
                                             stdout: pipe.fileHandleForWriting)
            defer { generator.stop() }
            let started = ContinuousClock.now
            let upload = try BackgroundCurl(proxy.url + "/echo", ["-T", "-"], extra: ["%{size_upload}", "%{size_download}"],
                                            dir: dir, stdin: pipe.fileHandleForReading, discardBody: true)
            defer { upload.child.stop() }
            // Only the children hold the pipe now: curl sees the end when head exits.
            try pipe.fileHandleForWriting.close()
            try pipe.fileHandleForReading.close()
            let peak = try peakResidentBytes(pid: proxy.pid, timeout: .seconds(55)) { upload.child.isRunning }
            let result = upload.finish(timeout: .seconds(1))
            let elapsed = ContinuousClock.now - started
            print("upload of \(largeBytes) bytes through the proxy (echoed): \(elapsed), proxy peak RSS \(peak / 1024) KiB")
            #expect(result.exitStatus == 0, "\(result.stderr)")
            #expect(result.httpStatus == 200)
            // curl counts the chunk framing it sent as uploaded bytes.
            #expect((Int(result.written.first ?? "") ?? 0) >= largeBytes, "uploaded \(result.written.first ?? "?")")
            #expect(result.written.dropFirst().first == "\(largeBytes)", "echoed \(result.written.dropFirst().first ?? "?")")
            #expect(peak > 0 && peak < rssCeiling, "proxy peak RSS \(peak / 1024) KiB")
        }
    }
}
