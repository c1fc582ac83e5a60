// The linear-time regex engine as a table: pattern, input, and the groups Go's regexp
// (RE2 semantics, what Traefik runs) reports — each row worked by hand with leftmost-first
// priority — plus the patterns that take a backtracking engine down, and the refusals.

#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Synchronization
import Testing
@testable import YardModel

/// CPU time `body` took on this thread, in milliseconds: what the engine costs, whatever
/// else the loaded machine runs meanwhile.
private func cpuMilliseconds(_ body: () -> Void) -> Double {
    var start = timespec()
    var end = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &start)
    body()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &end)
    return Double(end.tv_sec - start.tv_sec) * 1_000 + Double(end.tv_nsec - start.tv_nsec) / 1_000_000
}

/// The groups of the first match of `pattern` in `input` as substrings (nil for a group
/// that did not take part), or nil when nothing matches.
private func groups(_ pattern: String, _ input: String) throws -> [String?]? {
    let regex = try LinearRegex(pattern)
    guard let match = regex.firstMatch(in: input) else { return nil }
    let bytes = Array(input.utf8)
    return (0...min(regex.groupCount, 9)).map { group in
        match.range(group).map { String(decoding: bytes[$0], as: UTF8.self) }
    }
}

private func refusal(_ pattern: String) -> String {
    do {
        _ = try LinearRegex(pattern)
        return "accepted"
    } catch {
        return error.message
    }
}

@Suite struct LinearRegexMatching {
    /// (pattern, input, expected groups 0...n; nil: no match). Go: regexp.MustCompile(p).FindStringSubmatch(s).
    static let table: [(String, String, [String?]?)] = [
        ("abc", "xabcx", ["abc"]),
        ("a+", "baaa", ["aaa"]),
        ("a+?", "baaa", ["a"]),
        ("a*", "baaa", [""]),                                   // the empty match at 0 is leftmost
        ("(a|ab)(c|bcd)(d*)", "abcd", ["abcd", "a", "bcd", ""]), // leftmost-first, not longest
        ("(a*)(a*)", "aaa", ["aaa", "aaa", ""]),
        ("(a*?)(a*)", "aaa", ["aaa", "", "aaa"]),
        ("(a??)(a*)", "aa", ["aa", "", "aa"]),
        ("a??b", "ab", ["ab"]),
        ("(a*)+", "b", ["", ""]),
        // x* of an x that can match empty is (x+)? in Go (golang.org/issue/46123): the empty
        // iteration records its group, and no second empty iteration follows (Python's re does one).
        ("(a*)*", "b", ["", ""]),
        ("(a*)*", "aab", ["aa", "aa"]),
        ("(|a)*", "aa", ["", ""]),
        ("(|a)+", "aa", ["", ""]),
        ("(a|b)*c", "abac", ["abac", "a"]),                    // a group reports its last iteration
        ("(a+)(b+)?", "aac", ["aa", "aa", nil]),
        ("(a)|b", "b", ["b", nil]),
        ("a|ab", "ab", ["a"]),
        ("ab|a", "ab", ["ab"]),
        ("x*", "", [""]),
        ("^$", "", [""]),
        ("^$", "a", nil),
        ("a$", "aa", ["a"]),
        ("^a", "ba", nil),
        ("\\Aa\\z", "a", ["a"]),
        ("a{2,3}", "aaaa", ["aaa"]),
        ("a{2,3}?", "aaaa", ["aa"]),
        ("a{2}", "a", nil),
        ("a{2,}", "aaaaa", ["aaaaa"]),
        ("a{0}b", "ab", ["b"]),
        ("a{,2}", "xa{,2}", ["a{,2}"]),                        // not a count: literal, as in Go
        ("[^/]+", "/ab/c", ["ab"]),
        ("\\d+-\\w+", "x 12-ab_c!", ["12-ab_c"]),
        ("[\\d.]+", "v1.25x", ["1.25"]),
        ("\\S+\\s\\D", "ab c1", ["ab c"]),
        ("\\W", "ab/c", ["/"]),
        (".", "\n", nil),
        ("[^a]", "\n", ["\n"]),
        ("(?:ab)+", "ababa", ["abab"]),
        ("[]a]+", "x]a]", ["]a]"]),
        ("[a-]+", "xa-a", ["a-a"]),
        ("[a\\-z]+", "b-az", ["-az"]),
        ("\\.", "a.b", ["."]),
        ("\\x41\\x2f", "xA/", ["A/"]),
        ("^https?://([^/:]+)(?::\\d+)?(/.*)?$", "https://example.com:8443/a/b?x=1", ["https://example.com:8443/a/b?x=1", "example.com", "/a/b?x=1"]),
        ("^http://www\\.(.+)", "http://www.example.com/p?q", ["http://www.example.com/p?q", "example.com/p?q"]),
        ("/old/(\\d+)(/.*)?", "http://h/old/42", ["/old/42", "42", nil]),
        ("(((a)))", "a", ["a", "a", "a", "a"]),
        ("(a)(b)(c)(d)(e)(f)(g)(h)(i)(j)", "abcdefghij", ["abcdefghij", "a", "b", "c", "d", "e", "f", "g", "h", "i"]),
        ("", "abc", [""]),
        ("a||b", "b", [""]),
    ]

    @Test func theTableMatchesWhatGoRegexpReports() throws {
        for (pattern, input, expected) in LinearRegexMatching.table {
            let got = try groups(pattern, input)
            #expect(got == expected, "/\(pattern)/ on \"\(input)\"")
            #expect(try LinearRegex(pattern).matches(input) == (expected != nil), "matches agrees with firstMatch: /\(pattern)/")
        }
    }

    @Test func offsetsAreBytesAndNonASCIIBytesMatchDotAndNegatedClasses() throws {
        let input: [UInt8] = [0x2F, 0xC3, 0xA9, 0x2F, 0xFF]
        let dot = try LinearRegex("/(..)/(.)")
        let match = try #require(input.withUnsafeBytes { dot.firstMatch(in: $0) })
        #expect(match.range(0) == 0..<5 && match.range(1) == 1..<3 && match.range(2) == 4..<5)
        #expect(input.withUnsafeBytes { try! LinearRegex("^/[^/]+/").matches($0) })
        #expect(!input.withUnsafeBytes { try! LinearRegex("^/\\w").matches($0) }, "\\w is ASCII")
    }

    /// Each thread has its own scratch: threads matching at once never see each other's lists.
    @Test func threadsMatchingAtOnceEachGetTheirOwnAnswer() throws {
        let regex = try LinearRegex("^/users/([0-9]+)/(posts|likes)$")
        final class Failures: Sendable { let count = Atomic<Int>(0) }
        let failures = Failures()
        DispatchQueue.concurrentPerform(iterations: 8) { worker in
            for i in 0..<2_000 {
                let id = String(worker * 100_000 + i)
                let kind = i % 2 == 0 ? "posts" : "likes"
                let match = regex.firstMatch(in: "/users/\(id)/\(kind)")
                if match?.range(1) != 7..<(7 + id.utf8.count) || match?.range(2)?.count != 5 { failures.count.add(1, ordering: .relaxed) }
                if regex.matches("/users/\(id)/other") { failures.count.add(1, ordering: .relaxed) }
            }
        }
        #expect(failures.count.load(ordering: .relaxed) == 0)
    }

    @Test func aPatternIsOneProgramForEveryThreadAndCall() throws {
        let regex = try LinearRegex("^/api/v(\\d+)/")
        for _ in 0..<1_000 { #expect(regex.firstMatch(in: "/api/v2/users")?.range(1) == 6..<7) }
        #expect(regex == (try LinearRegex("^/api/v(\\d+)/")) && regex.description == "^/api/v(\\d+)/")
    }
}

@Suite struct LinearRegexAttacks {
    /// What a backtracking engine needs 2^n steps for is one pass here: 100,000 bytes each,
    /// well under a second of CPU even in a debug build (a release build: ~10 ms each).
    @Test(arguments: ["(a*)*b", "(a|a)*b", "(a+)+$", "(a|aa)+$", "^(a+)+b", "(x+x+)+y"])
    func catastrophicPatternsFinishInLinearTime(_ pattern: String) throws {
        let regex = try LinearRegex(pattern)
        let input = String(repeating: "a", count: 100_000) + "!"
        var matched = true
        let elapsed = cpuMilliseconds { matched = regex.firstMatch(in: input) != nil }
        #expect(!matched, "none of them matches a run of a's ending in '!'")
        #expect(elapsed < 500, "/\(pattern)/ on 100,000 a's took \(elapsed) ms of CPU")
    }

    /// The cost is input × program: a pattern of 250 instructions on 10,000 bytes is the
    /// same work as one of 25 on 100,000.
    @Test(arguments: ["(.*a){20}x", "(a?){50}a{50}b"])
    func largeProgramsCostInProportionToTheirSize(_ pattern: String) throws {
        let regex = try LinearRegex(pattern)
        #expect(regex.programSize > 100 && regex.programSize < 300)
        let input = String(repeating: "a", count: 10_000) + "!"
        var matched = true
        let elapsed = cpuMilliseconds { matched = regex.firstMatch(in: input) != nil }
        #expect(!matched)
        #expect(elapsed < 500, "/\(pattern)/ on 10,000 a's took \(elapsed) ms of CPU")
    }

    @Test func noMatchIsFoundWhereThereIsNone() throws {
        let input = String(repeating: "a", count: 100_000) + "!"
        for pattern in ["(a*)*b", "(a|a)*b", "(a+)+$", "^(a+)+b"] {
            #expect(try LinearRegex(pattern).firstMatch(in: input) == nil, "/\(pattern)/")
        }
        #expect(try LinearRegex("(a+)+!$").firstMatch(in: input)?.range(0) == 0..<100_001)
    }
}

@Suite struct LinearRegexRefusals {
    @Test func unsupportedSyntaxIsNamed() {
        #expect(refusal("(?=a)b").contains("lookaround"))
        #expect(refusal("(?<!a)b").contains("lookaround"))
        #expect(refusal("(?P<id>\\d+)").contains("named groups"))
        #expect(refusal("(?<id>\\d+)").contains("named groups"))
        #expect(refusal("(a)\\1").contains("backreference"))
        #expect(refusal("(?i)abc").contains("not supported"))
        #expect(refusal("\\bword").contains("word boundary"))
        #expect(refusal("\\p{L}").contains("Unicode class"))
        #expect(refusal("[[:alpha:]]").contains("POSIX"))
        #expect(refusal("\\q").contains("unknown escape \\q"))
        #expect(refusal("café").contains("non-ASCII"))
    }

    @Test func malformedPatternsSayWhere() {
        #expect(refusal("(a") == "missing ')' for the group opened at offset 0")
        #expect(refusal("a)").contains("unmatched ')' at offset 1"))
        #expect(refusal("*a").contains("repeats nothing"))
        #expect(refusal("a|+").contains("repeats nothing"))
        #expect(refusal("a**").contains("second repetition"))
        #expect(refusal("[abc").contains("missing ']'"))
        #expect(refusal("[z-a]").contains("runs backwards"))
        #expect(refusal("a{3,2}").contains("below the minimum"))
        #expect(refusal("abc\\").contains("lone '\\'"))
        #expect(refusal("\\x4").contains("two hex digits"))
    }

    @Test func programsThatWouldBeLargeAreRefused() {
        #expect(refusal("a{101}").contains("counts above 100"))
        #expect(refusal("(a{100}){100}").contains("more than \(LinearRegex.maxInstructions) instructions"))
        #expect(refusal("((a{20}){20}){20}").contains("instructions"))
        #expect(refusal(String(repeating: "a", count: 1_001)).contains("at most 1000"))
        #expect(refusal(String(repeating: "(", count: 60) + String(repeating: ")", count: 60)).contains("nested deeper"))
        #expect(refusal("(a{100}){20}") == "accepted", "2,000 instructions are fine")
    }
}
