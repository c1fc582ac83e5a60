// How an exchange leaves its connections, as values: every reason a client connection
// closes after a relayed response or after the proxy's own answer, when it lingers, and when
// the upstream connection goes back to its pool.

import Testing
import YardHTTP
@testable import YardProxy

@Suite struct ExchangeEndTests {
    typealias Facts = ExchangeEnd.ClientFacts

    private func head(keepAlive: Bool = true) -> ResponseHead {
        var head = ResponseHead()
        head.status = 200
        head.keepAlive = keepAlive
        head.framing = .contentLength(2)
        return head
    }

    @Test func aKeepAliveExchangeKeepsBothConnections() {
        #expect(ExchangeEnd.client(afterResponse: Facts(), closeDelimited: false) == .keepAlive)
        #expect(ExchangeEnd.upstreamReusable(head(), closeDelimited: false, requestBodyDone: true, draining: false))
        // Pipelined bytes after a half-close are still answered.
        #expect(ExchangeEnd.client(afterResponse: Facts(readClosed: true, unreadInput: true), closeDelimited: false) == .keepAlive)
    }

    @Test func eachReasonToCloseTheClientAfterAResponse() {
        let reasons: [(String, Facts, Bool)] = [
            ("the client does not keep the connection", Facts(keepAlive: false), false),
            ("the request body was not read whole", Facts(requestBodyDone: false), false),
            ("the proxy drains", Facts(draining: true), false),
            ("the body ended by the upstream's close", Facts(), true),
            ("the client half-closed and nothing is buffered", Facts(readClosed: true), false),
        ]
        for (reason, facts, closeDelimited) in reasons {
            guard case .close = ExchangeEnd.client(afterResponse: facts, closeDelimited: closeDelimited) else {
                Issue.record("kept the connection although \(reason)")
                continue
            }
        }
    }

    @Test func onlyAPlainClientThatAskedForTheCloseAndLeftNothingUnreadSkipsTheLinger() {
        let asked = Facts(keepAlive: false, askedClose: true)
        #expect(ExchangeEnd.client(afterResponse: asked, closeDelimited: false) == .close(linger: false))
        var tls = asked
        tls.secure = true
        #expect(ExchangeEnd.client(afterResponse: tls, closeDelimited: false) == .close(linger: true))
        var unread = asked
        unread.unreadInput = true
        #expect(ExchangeEnd.client(afterResponse: unread, closeDelimited: false) == .close(linger: true))
        var bodyLeft = asked
        bodyLeft.requestBodyDone = false
        #expect(ExchangeEnd.client(afterResponse: bodyLeft, closeDelimited: false) == .close(linger: true))
        // Closed for another reason (draining): the client did not say it sends nothing more.
        #expect(ExchangeEnd.client(afterResponse: Facts(draining: true), closeDelimited: false) == .close(linger: true))
    }

    @Test func anOwnAnswerKeepsTheConnectionOnlyWhenTheRequestsFramingIsNotInDoubt() {
        for status in [404, 502, 503, 504] {
            #expect(ExchangeEnd.client(afterOwnAnswer: status, Facts()) == .keepAlive, "\(status)")
        }
        for status in [400, 403, 405, 408, 413, 414, 429, 431, 500, 501] {
            #expect(ExchangeEnd.client(afterOwnAnswer: status, Facts()) == .close(linger: true), "\(status)")
        }
        for facts in [Facts(keepAlive: false), Facts(requestBodyDone: false), Facts(draining: true), Facts(readClosed: true)] {
            #expect(ExchangeEnd.client(afterOwnAnswer: 502, facts) == .close(linger: true), "\(facts)")
        }
    }

    @Test func eachReasonNotToPoolTheUpstreamConnection() {
        #expect(!ExchangeEnd.upstreamReusable(head(keepAlive: false), closeDelimited: false, requestBodyDone: true, draining: false))
        #expect(!ExchangeEnd.upstreamReusable(head(), closeDelimited: true, requestBodyDone: true, draining: false))
        #expect(!ExchangeEnd.upstreamReusable(head(), closeDelimited: false, requestBodyDone: false, draining: false))
        #expect(!ExchangeEnd.upstreamReusable(head(), closeDelimited: false, requestBodyDone: true, requestVersionMinor: 0, draining: false))
        #expect(!ExchangeEnd.upstreamReusable(head(), closeDelimited: false, requestBodyDone: true, draining: true))
    }
}
