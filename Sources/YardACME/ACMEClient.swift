#if canImport(Glibc)
import Glibc
#endif

/// Proves control of a name for one challenge type: `http-01` (the key authorization at
/// `http://NAME/.well-known/acme-challenge/TOKEN`) or `tls-alpn-01` (RFC 8737: a
/// certificate for NAME with the key authorization's digest, served to `acme-tls/1`
/// handshakes). `ACMEChallengeResponder` is an HTTP-01 solver; the proxy's certificate
/// manager is either. Threading: called from the issuing thread.
public protocol ACMEChallengeSolver: AnyObject {
    var challengeType: String { get }
    func publish(name: String, token: String, keyAuthorization: String) throws(ACMEError)
    func withdraw(name: String, token: String)
}

/// A certificate chain (PEM, leaf first) and its private key (PEM).
public struct ACMECertificate: Sendable {
    public var chainPEM: String
    public var privateKeyPEM: String
    /// The order it came from (for logs).
    public var orderURL: String
}

/// An RFC 8555 client: one account key, one CA directory.
///
/// Every request is a JWS signed with the account key (ES256): the public key as `jwk` in
/// the account request, the account URL as `kid` afterwards. Nonces come from each answer's
/// `Replay-Nonce` (or `newNonce` when none is left); a `badNonce` refusal is retried with
/// the nonce it carried, up to `badNonceRetries` times in a row (RFC 8555 §6.5: badNonce is
/// meant to be retried; pebble refuses 5% of good nonces by default, and any share a test
/// asks for). Polling follows the CA's `Retry-After`.
///
/// Blocking, control plane only. Threading: not thread-safe; use one client from one
/// thread (it holds the nonce and the account URL).
public final class ACMEClient {
    public let directoryURL: ACMEURL
    public let accountKey: ACMEPrivateKey
    public let jwk: ECPublicJWK
    let http: ACMEHTTPClient
    public private(set) var accountURL: String?
    private var directory: ACMEDirectory?
    /// The next nonce to use (internal: tests forge a stale one to exercise the badNonce retry).
    var nonce: String?
    /// Progress lines (one per step), for an operator's log.
    public var log: (String) -> Void = { _ in }
    /// Poll interval when the CA sends no `Retry-After`, and the most any wait lasts.
    public var pollInterval: Duration = .seconds(1)
    public var maximumPollInterval: Duration = .seconds(10)
    /// How many `badNonce` refusals of one request are retried before it fails.
    public var badNonceRetries = 10

    /// - Parameters:
    ///   - directoryURL: the CA's directory (`https://acme-v02.api.letsencrypt.org/directory`).
    ///   - caFile: PEM CAs to trust for the CA's own HTTPS (a private CA); nil: the system's.
    public init(directoryURL: String, accountKey: ACMEPrivateKey, caFile: String? = nil,
                timeout: Duration = .seconds(30)) throws(ACMEError) {
        self.directoryURL = try ACMEURL(directoryURL)
        self.accountKey = accountKey
        jwk = try accountKey.publicJWK()
        http = try ACMEHTTPClient(caFile: caFile, timeout: timeout)
    }

    // MARK: Directory and nonces

    public func loadDirectory() throws(ACMEError) -> ACMEDirectory {
        if let directory { return directory }
        let response = try http.send("GET", directoryURL, accept: "application/json")
        guard response.status == 200 else {
            throw ACMEError.server(operation: "GET directory \(directoryURL)", status: response.status, problem: ACMEProblem(response: response))
        }
        let loaded = try ACMEDirectory.decode(ACMEDirectory.self, from: response.body, operation: "GET directory \(directoryURL)")
        directory = loaded
        return loaded
    }

    private func takeNonce() throws(ACMEError) -> String {
        if let nonce {
            self.nonce = nil
            return nonce
        }
        let url = try ACMEURL(try loadDirectory().newNonce)
        let response = try http.send("HEAD", url)
        guard (200..<300).contains(response.status), let fresh = response.header("replay-nonce"), !fresh.isEmpty else {
            throw ACMEError.malformedResponse(operation: "HEAD newNonce", reason: "status \(response.status) without a Replay-Nonce")
        }
        return fresh
    }

    // MARK: Signed requests

    /// POSTs a JWS to `url` (`payload` nil: POST-as-GET). Retries `badNonce` (up to
    /// `badNonceRetries` times);
    /// throws `.server` with the problem document for any 4xx/5xx.
    @discardableResult
    func post(_ url: String, payload: String?, operation: String, accept: String? = nil) throws(ACMEError) -> ACMEHTTPResponse {
        let target = try ACMEURL(url)
        var attempt = 0
        while true {
            attempt += 1
            let signer: JWS.Signer = accountURL.map { .kid($0) } ?? .jwk(jwk)
            let header = JWS.protectedHeader(signer: signer, nonce: try takeNonce(), url: url)
            let key = accountKey
            let body = try JWS.flattened(protectedHeader: header, payload: payload) { (input) throws(ACMEError) in try key.signES256(input) }
            let response = try http.send("POST", target, body: Array(body.utf8), accept: accept)
            if let fresh = response.header("replay-nonce"), !fresh.isEmpty { nonce = fresh }
            if response.status < 400 { return response }
            let problem = ACMEProblem(response: response)
            if problem.isBadNonce, attempt <= badNonceRetries {
                log("\(operation): the CA refused the nonce; retrying with a fresh one (\(attempt) of \(badNonceRetries))")
                continue
            }
            throw ACMEError.server(operation: operation, status: response.status, problem: problem)
        }
    }

    // MARK: Account

    /// Creates the account for this key, or finds the existing one (the CA answers 200 with
    /// the same URL); either way `accountURL` is set. `contact`: e-mail addresses.
    @discardableResult
    /// `externalAccount`: the binding a CA that requires one (ZeroSSL, a company's CA)
    /// handed out (RFC 8555 §7.3.4).
    public func register(contact: [String] = [], agreeToTermsOfService: Bool = true,
                         externalAccount: ACMEExternalAccountBinding? = nil) throws(ACMEError) -> String {
        if let accountURL { return accountURL }
        let directory = try loadDirectory()
        var members: [(String, String)] = [("termsOfServiceAgreed", agreeToTermsOfService ? "true" : "false")]
        if !contact.isEmpty {
            members.append(("contact", "[" + contact.map { JSONText.string("mailto:\($0)") }.joined(separator: ",") + "]"))
        }
        if let externalAccount {
            members.append(("externalAccountBinding", try externalAccount.jws(accountKey: jwk, newAccountURL: directory.newAccount)))
        } else if directory.meta?.externalAccountRequired == true {
            throw ACMEError.badRequest("the CA requires an external account binding (eab: {kid:, hmac_key_file:} from the CA's account page)")
        }
        let response = try post(directory.newAccount, payload: JSONText.object(raw: members), operation: "new account")
        guard let location = response.header("location"), !location.isEmpty else {
            throw ACMEError.malformedResponse(operation: "new account", reason: "no Location (account URL) in the answer")
        }
        accountURL = location
        log("account \(location)")
        return location
    }

    // MARK: Orders

    public func newOrder(names: [String]) throws(ACMEError) -> (url: String, order: ACMEOrder) {
        let names = try ACMEIdentifiers.validated(names)
        let identifiers = names.map { JSONText.object([("type", "dns"), ("value", $0)]) }.joined(separator: ",")
        let response = try post(try loadDirectory().newOrder, payload: "{\"identifiers\":[\(identifiers)]}", operation: "new order")
        guard let location = response.header("location"), !location.isEmpty else {
            throw ACMEError.malformedResponse(operation: "new order", reason: "no Location (order URL) in the answer")
        }
        return (location, try ACMEDirectory.decode(ACMEOrder.self, from: response.body, operation: "new order"))
    }

    public func authorization(at url: String) throws(ACMEError) -> ACMEAuthorization {
        let response = try post(url, payload: nil, operation: "authorization \(url)")
        return try ACMEDirectory.decode(ACMEAuthorization.self, from: response.body, operation: "authorization \(url)")
    }

    /// Tells the CA the challenge is ready to be checked (§7.5.1: an empty object).
    public func respond(toChallenge url: String) throws(ACMEError) {
        try post(url, payload: "{}", operation: "challenge \(url)")
    }

    public func order(at url: String) throws(ACMEError) -> ACMEOrder {
        let response = try post(url, payload: nil, operation: "order \(url)")
        return try ACMEDirectory.decode(ACMEOrder.self, from: response.body, operation: "order \(url)")
    }

    /// Downloads the certificate chain (PEM, leaf first).
    public func certificateChain(at url: String) throws(ACMEError) -> String {
        let response = try post(url, payload: nil, operation: "certificate \(url)", accept: "application/pem-certificate-chain")
        let pem = String(decoding: response.body, as: UTF8.self)
        guard pem.contains("-----BEGIN CERTIFICATE-----") else {
            throw ACMEError.malformedResponse(operation: "certificate \(url)", reason: "the body is not a PEM certificate chain")
        }
        return pem
    }

    // MARK: Issuance

    /// Orders a certificate for `names` and answers each authorization's challenge of
    /// `solver.challengeType` through `solver`: account, order, challenges, a fresh key of
    /// `keyType` and its CSR, finalize, the chain. Gives up (`.timedOut`) when `deadline`
    /// passes while polling.
    public func issueCertificate(names: [String], solver: ACMEChallengeSolver, deadline: Duration = .seconds(120),
                                 keyType: ACMEKeyType = .ecdsaP256) throws(ACMEError) -> ACMECertificate {
        let until = ContinuousClock.now.advanced(by: deadline)
        let names = try ACMEIdentifiers.validated(names)
        try register()
        let (orderURL, placed) = try newOrder(names: names)
        log("order \(orderURL) for \(names.joined(separator: ", ")): \(placed.status)")
        let type = solver.challengeType
        var published: [(name: String, token: String)] = []
        defer { for (name, token) in published { solver.withdraw(name: name, token: token) } }

        for url in placed.authorizations {
            let authorization = try authorization(at: url)
            if authorization.status == "valid" { continue }
            let name = authorization.identifier.value
            guard let challenge = authorization.challenges.first(where: { $0.type == type }), let token = challenge.token,
                  !token.isEmpty, Base64URL.decode(token) != nil else {
                throw ACMEError.malformedResponse(operation: "authorization for \(name)",
                                                  reason: "no \(type) challenge with a base64url token (offered: \(authorization.challenges.map(\.type).joined(separator: ", ")))")
            }
            try solver.publish(name: name, token: token, keyAuthorization: jwk.keyAuthorization(token: token))
            published.append((name, token))
            try respond(toChallenge: challenge.url)
            let final = try poll(url, operation: "authorization for \(name)", until: until, as: ACMEAuthorization.self,
                                 status: \.status, done: ["valid", "invalid", "deactivated", "expired", "revoked"])
            guard final.status == "valid" else {
                let problem = final.challenges.first(where: { $0.type == type })?.error?.problem
                throw ACMEError.invalid(operation: "\(type) challenge for \(name)", problem: problem.map {
                    var named = $0
                    named.identifier = name
                    return named
                })
            }
            log("\(name): authorized")
        }

        var order = try poll(orderURL, operation: "order", until: until, as: ACMEOrder.self, status: \.status,
                             done: ["ready", "valid", "invalid"])
        let certificateKey = try ACMEPrivateKey.generate(keyType)
        if order.status == "ready" {
            let csr = try certificateSigningRequest(names: names, key: certificateKey)
            let response = try post(order.finalize, payload: "{\"csr\":\"\(Base64URL.encode(csr))\"}", operation: "finalize")
            order = try ACMEDirectory.decode(ACMEOrder.self, from: response.body, operation: "finalize")
            if order.status != "valid" && order.status != "invalid" {
                order = try poll(orderURL, operation: "order after finalize", until: until, as: ACMEOrder.self, status: \.status,
                                 done: ["valid", "invalid"])
            }
        }
        guard order.status == "valid", let certificateURL = order.certificate else {
            throw ACMEError.invalid(operation: "order \(orderURL) (\(order.status))", problem: order.error?.problem)
        }
        let chain = try certificateChain(at: certificateURL)
        log("certificate \(certificateURL)")
        return ACMECertificate(chainPEM: chain, privateKeyPEM: try certificateKey.pem(), orderURL: orderURL)
    }

    /// POST-as-GETs `url` until its status is in `done`, waiting as the CA's `Retry-After`
    /// says (bounded by `maximumPollInterval`) between attempts.
    private func poll<T: Decodable>(_ url: String, operation: String, until deadline: ContinuousClock.Instant, as type: T.Type,
                                    status: (T) -> String, done: Set<String>) throws(ACMEError) -> T {
        while true {
            let response = try post(url, payload: nil, operation: operation)
            let value = try ACMEDirectory.decode(T.self, from: response.body, operation: operation)
            let current = status(value)
            if done.contains(current) { return value }
            let wait = ACMEPolling.delay(retryAfter: response.header("retry-after"), fallback: pollInterval, maximum: maximumPollInterval)
            guard ContinuousClock.now.advanced(by: wait) < deadline else {
                throw ACMEError.timedOut(operation: operation, lastStatus: current)
            }
            pause(wait)
        }
    }
}

/// Blocks the calling thread for `duration` (polling a CA between attempts).
func pause(_ duration: Duration) {
    let (seconds, attoseconds) = duration.components
    var request = timespec(tv_sec: Int(seconds), tv_nsec: Int(attoseconds / 1_000_000_000))
    var remaining = timespec()
    while nanosleep(&request, &remaining) != 0, errno == EINTR { request = remaining }
}
