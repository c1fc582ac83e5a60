import Foundation
import Testing

extension Integration {
    /// The retry budget (`retries.budget_percent`): retries of failed idempotent requests
    /// add at most that share of extra load (a token bucket per event loop that starts
    /// with 10 retries), and `switchyard_retries_refused_total` counts the ones it refused.
    @Suite(.serialized) struct RetryBudget {
        /// Two origins that read every request and hang up without answering: each GET
        /// fails, and would be retried once. At 10 % only the starting 10 tokens plus one
        /// per ten requests are spent; at 100 % every request is retried.
        @Test(.timeLimit(.minutes(1)))
        func retriesStopAtTheBudgetAndTheRefusedOnesAreCounted() throws {
            let dir = try ScratchDir("retry-budget")
            try dir.write("hangup-origin.py", hangUpOrigin)
            let origins = try (0..<2).map { i in
                try ChildProcess("/usr/bin/env", ["python3", dir.file("hangup-origin.py")], dir: dir, label: "hangup-\(i)")
            }
            defer { origins.forEach { $0.stop() } }
            let ports = try origins.map { try $0.waitForListeningPort() }
            let requests = 100
            for (budget, maxRetries) in [(10, 10 + requests / 10), (100, requests)] {
                var services = "services:\n  shop:\n    health: {type: none, consecutive_failures: 0}\n"
                services += "    retries: {attempts: 1, budget_percent: \(budget)}\n    instances:\n"
                for port in ports { services += "      - {address: 127.0.0.1, port: \(port)}\n" }
                let proxy = try TrafficProxy(dir: dir, services: services, label: "budget-\(budget)", workers: 1)
                defer { proxy.stop() }
                for _ in 0..<requests {
                    let answer = try rawExchange(port: proxy.port, "GET / HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n")
                    #expect(answer.status == 502)
                }
                let metrics = try rawExchange(port: proxy.adminPort, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:\(proxy.adminPort)\r\nConnection: close\r\n\r\n")
                let text = String(decoding: metrics.body, as: UTF8.self)
                let retried = sum(text, "switchyard_retries_total")
                let refused = sum(text, "switchyard_retries_refused_total")
                print("budget \(budget) %: \(requests) failing requests, \(retried) retried, \(refused) refused by the budget")
                #expect(retried + refused == requests, "every failed first attempt is either retried or refused")
                if budget == 100 {
                    #expect(retried == requests && refused == 0)
                } else {
                    #expect(retried <= maxRetries && retried >= maxRetries - 2, "\(retried) retries with a budget of \(maxRetries)")
                }
            }
        }

        /// The sum of a counter's samples for service "shop".
        private func sum(_ metrics: String, _ name: String) -> Int {
            metrics.split(separator: "\n")
                .filter { $0.hasPrefix(name + "{") && $0.contains("service=\"shop\"") }
                .compactMap { $0.split(separator: " ").last.flatMap { Int($0) } }
                .reduce(0, +)
        }
    }
}

/// An origin that reads each request head and closes the connection without answering.
private let hangUpOrigin = """
import socket, sys, threading
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen(128)
print("listening 127.0.0.1:%d" % server.getsockname()[1], flush=True)
def serve(conn):
    data = b""
    try:
        while b"\\r\\n\\r\\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
    finally:
        conn.close()
while True:
    conn, _ = server.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""
