// The front half of LinearRegex: pattern bytes → syntax tree → VM program. Pure values;
// runs at config load only. LinearRegex.swift has the syntax and the VM.

/// A parsed pattern.
indirect enum RegexNode {
    case empty
    case literal(UInt8)
    case set(ByteSet)
    /// `.`: any byte but `\n`.
    case any
    /// `^` / `\A` and `$` / `\z`: the start and the end of the text.
    case begin, end
    case capture(RegexNode, Int)
    case concat([RegexNode])
    case alternate([RegexNode])
    /// `max` nil: no upper bound.
    case repetition(RegexNode, min: Int, max: Int?, greedy: Bool)

    /// Whether it can match the empty string.
    var isNullable: Bool {
        switch self {
        case .empty, .begin, .end: true
        case .literal, .set, .any: false
        case .capture(let inner, _): inner.isNullable
        case .concat(let items): items.allSatisfy(\.isNullable)
        case .alternate(let items): items.contains { $0.isNullable }
        case .repetition(let inner, let min, _, _): min == 0 || inner.isNullable
        }
    }

    /// Whether every match must start at offset 0 (each alternative begins with `^`).
    var isAnchoredAtStart: Bool {
        switch self {
        case .begin: true
        case .capture(let inner, _): inner.isAnchoredAtStart
        case .concat(let items): items.first?.isAnchoredAtStart ?? false
        case .alternate(let items): !items.isEmpty && items.allSatisfy(\.isAnchoredAtStart)
        default: false
        }
    }
}

/// Recursive descent over the pattern's bytes; errors name the construct and its offset.
struct RegexParser {
    private let bytes: [UInt8]
    private var at = 0
    private var depth = 0
    private(set) var groupCount = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    mutating func parse() throws(RegexProblem) -> RegexNode {
        let tree = try alternation()
        if at < bytes.count {
            throw RegexProblem("unmatched ')' at offset \(at); escape it as \\) for a literal parenthesis")
        }
        return tree
    }

    private var peek: UInt8? { at < bytes.count ? bytes[at] : nil }

    private mutating func alternation() throws(RegexProblem) -> RegexNode {
        var branches = [try concatenation()]
        while peek == UInt8(ascii: "|") {
            at += 1
            branches.append(try concatenation())
        }
        return branches.count == 1 ? branches[0] : .alternate(branches)
    }

    private mutating func concatenation() throws(RegexProblem) -> RegexNode {
        var items: [RegexNode] = []
        while let byte = peek, byte != UInt8(ascii: "|"), byte != UInt8(ascii: ")") {
            var item = try atom()
            var quantified = false
            while let (min, max) = try quantifier() {
                if quantified {
                    throw RegexProblem("a second repetition operator at offset \(at - 1) (as in a** or a{2}+) is not allowed; group it: (?:a*)*")
                }
                quantified = true
                var greedy = true
                if peek == UInt8(ascii: "?") {
                    greedy = false
                    at += 1
                }
                item = .repetition(item, min: min, max: max, greedy: greedy)
            }
            items.append(item)
        }
        switch items.count {
        case 0: return .empty
        case 1: return items[0]
        default: return .concat(items)
        }
    }

    /// `*`, `+`, `?`, `{m}`, `{m,}`, `{m,n}` at the cursor (consumed), or nil. A `{` that
    /// does not start a valid count is a literal, as in Go.
    private mutating func quantifier() throws(RegexProblem) -> (Int, Int?)? {
        guard let byte = peek else { return nil }
        switch byte {
        case UInt8(ascii: "*"): at += 1; return (0, nil)
        case UInt8(ascii: "+"): at += 1; return (1, nil)
        case UInt8(ascii: "?"): at += 1; return (0, 1)
        case UInt8(ascii: "{"):
            var cursor = at + 1
            func number() -> Int? {
                let start = cursor
                var value = 0
                while cursor < bytes.count, bytes[cursor] >= UInt8(ascii: "0"), bytes[cursor] <= UInt8(ascii: "9") {
                    value = min(value * 10 + Int(truncatingIfNeeded: bytes[cursor] &- UInt8(ascii: "0")), 100_000)
                    cursor += 1
                }
                return cursor > start ? value : nil
            }
            guard let low = number() else { return nil }
            var high: Int? = low
            if cursor < bytes.count && bytes[cursor] == UInt8(ascii: ",") {
                cursor += 1
                high = number()
            }
            guard cursor < bytes.count && bytes[cursor] == UInt8(ascii: "}") else { return nil }
            let text = String(decoding: bytes[at...cursor], as: UTF8.self)
            if let high, high < low {
                throw RegexProblem("\(text) at offset \(at): the maximum is below the minimum")
            }
            if low > LinearRegex.maxRepeat || (high ?? 0) > LinearRegex.maxRepeat {
                throw RegexProblem("\(text) at offset \(at): counts above \(LinearRegex.maxRepeat) are refused (they multiply the program)")
            }
            at = cursor + 1
            return (low, high)
        default:
            return nil
        }
    }

    private mutating func atom() throws(RegexProblem) -> RegexNode {
        let start = at
        let byte = bytes[at]
        at += 1
        switch byte {
        case UInt8(ascii: "("):
            var index: Int?
            if peek == UInt8(ascii: "?") {
                guard at + 1 < bytes.count, bytes[at + 1] == UInt8(ascii: ":") else {
                    throw RegexProblem(groupSyntaxProblem(at: start))
                }
                at += 2
            } else {
                groupCount += 1
                index = groupCount
            }
            depth += 1
            guard depth <= LinearRegex.maxNesting else {
                throw RegexProblem("groups nested deeper than \(LinearRegex.maxNesting) at offset \(start)")
            }
            let inner = try alternation()
            depth -= 1
            guard peek == UInt8(ascii: ")") else { throw RegexProblem("missing ')' for the group opened at offset \(start)") }
            at += 1
            return index.map { .capture(inner, $0) } ?? inner
        case UInt8(ascii: ")"):
            throw RegexProblem("unmatched ')' at offset \(start)")
        case UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "?"):
            throw RegexProblem("'\(Character(Unicode.Scalar(byte)))' at offset \(start) repeats nothing; escape it (\\\(Character(Unicode.Scalar(byte)))) for a literal")
        case UInt8(ascii: "["):
            return .set(try characterClass(start: start))
        case UInt8(ascii: "."):
            return .any
        case UInt8(ascii: "^"):
            return .begin
        case UInt8(ascii: "$"):
            return .end
        case UInt8(ascii: "\\"):
            switch try escape(inClass: false, start: start) {
            case .byte(let value): return .literal(value)
            case .set(let set): return .set(set)
            case .begin: return .begin
            case .end: return .end
            }
        default:
            return .literal(byte)
        }
    }

    private func groupSyntaxProblem(at offset: Int) -> String {
        let rest = bytes[(offset + 2)...]
        let text = String(decoding: rest.prefix(3), as: UTF8.self)
        if text.hasPrefix("=") || text.hasPrefix("!") || text.hasPrefix("<=") || text.hasPrefix("<!") {
            return "lookaround (?\(text.prefix(text.hasPrefix("<") ? 2 : 1)) at offset \(offset) is not supported: it needs backtracking; match more of the text instead"
        }
        if text.hasPrefix("P<") || text.hasPrefix("<") || text.hasPrefix("'") {
            return "named groups at offset \(offset) are not supported; use a plain group ( ) and refer to it by number ($1)"
        }
        return "the group syntax (?\(text.prefix(1)) at offset \(offset) is not supported (flags and special groups); only (?: ) is"
    }

    private enum Escape {
        case byte(UInt8), set(ByteSet), begin, end
    }

    /// The escape after a `\` (the cursor is past it).
    private mutating func escape(inClass: Bool, start: Int) throws(RegexProblem) -> Escape {
        guard let byte = peek else { throw RegexProblem("the pattern ends in a lone '\\'; write \\\\ for a backslash") }
        at += 1
        switch byte {
        case UInt8(ascii: "d"): return .set(.digits)
        case UInt8(ascii: "D"): return .set(ByteSet.digits.inverted)
        case UInt8(ascii: "w"): return .set(.word)
        case UInt8(ascii: "W"): return .set(ByteSet.word.inverted)
        case UInt8(ascii: "s"): return .set(.space)
        case UInt8(ascii: "S"): return .set(ByteSet.space.inverted)
        case UInt8(ascii: "n"): return .byte(0x0A)
        case UInt8(ascii: "t"): return .byte(0x09)
        case UInt8(ascii: "r"): return .byte(0x0D)
        case UInt8(ascii: "f"): return .byte(0x0C)
        case UInt8(ascii: "v"): return .byte(0x0B)
        case UInt8(ascii: "A") where !inClass: return .begin
        case UInt8(ascii: "z") where !inClass: return .end
        case UInt8(ascii: "x"):
            guard at + 1 < bytes.count, let high = hexValue(bytes[at]), let low = hexValue(bytes[at + 1]) else {
                throw RegexProblem("\\x at offset \(start) takes two hex digits, e.g. \\x2F")
            }
            at += 2
            return .byte(high << 4 | low)
        case UInt8(ascii: "1")...UInt8(ascii: "9"):
            throw RegexProblem("backreference \\\(Character(Unicode.Scalar(byte))) at offset \(start) is not supported: it cannot be matched in linear time")
        case UInt8(ascii: "b"), UInt8(ascii: "B"):
            throw RegexProblem("word boundary \\\(Character(Unicode.Scalar(byte))) at offset \(start) is not supported")
        case UInt8(ascii: "p"), UInt8(ascii: "P"):
            throw RegexProblem("Unicode class \\\(Character(Unicode.Scalar(byte))) at offset \(start) is not supported; the engine matches bytes")
        default:
            let isLetterOrDigit = (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
                || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
            if isLetterOrDigit {
                throw RegexProblem("unknown escape \\\(Character(Unicode.Scalar(byte))) at offset \(start)")
            }
            return .byte(byte)  // \. \/ \\ \- ... : punctuation stands for itself
        }
    }

    private func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    /// `[...]` (the cursor is past `[`): items, ranges, `^` negation; `]` first is literal.
    private mutating func characterClass(start: Int) throws(RegexProblem) -> ByteSet {
        var set = ByteSet()
        var negated = false
        if peek == UInt8(ascii: "^") {
            negated = true
            at += 1
        }
        var first = true
        while true {
            guard let byte = peek else { throw RegexProblem("missing ']' for the class opened at offset \(start)") }
            if byte == UInt8(ascii: "]") && !first {
                at += 1
                break
            }
            first = false
            if byte == UInt8(ascii: "[") && at + 1 < bytes.count && bytes[at + 1] == UInt8(ascii: ":") {
                throw RegexProblem("POSIX classes like [:alpha:] (offset \(at)) are not supported; write the ranges, e.g. [a-zA-Z]")
            }
            let itemStart = at
            guard let low = try classItem(into: &set) else { continue }
            // A range `low-high`, unless the '-' is last before ']'.
            if peek == UInt8(ascii: "-"), at + 1 < bytes.count, bytes[at + 1] != UInt8(ascii: "]") {
                at += 1
                var ignored = ByteSet()
                guard let high = try classItem(into: &ignored) else {
                    throw RegexProblem("a range at offset \(itemStart) ends in a class like \\d; ranges take single characters")
                }
                guard high >= low else {
                    throw RegexProblem("the range \(String(decoding: bytes[itemStart..<at], as: UTF8.self)) at offset \(itemStart) runs backwards")
                }
                set.insert(low, through: high)
            } else {
                set.insert(low)
            }
        }
        return negated ? set.inverted : set
    }

    /// One class member: a byte (returned, not yet inserted) or an escape class (inserted, nil returned).
    private mutating func classItem(into set: inout ByteSet) throws(RegexProblem) -> UInt8? {
        let byte = bytes[at]
        at += 1
        guard byte == UInt8(ascii: "\\") else { return byte }
        switch try escape(inClass: true, start: at - 1) {
        case .byte(let value): return value
        case .set(let escaped):
            set.formUnion(escaped)
            return nil
        case .begin, .end: return nil  // not produced inside a class
        }
    }
}

/// Emits the VM program for a tree, refusing programs over `LinearRegex.maxInstructions`.
struct RegexCompiler {
    private(set) var program: [Instruction] = []
    private(set) var classes: [ByteSet] = []

    @discardableResult
    mutating func add(_ instruction: Instruction) throws(RegexProblem) -> Int {
        guard program.count < LinearRegex.maxInstructions else {
            throw RegexProblem("the pattern compiles to more than \(LinearRegex.maxInstructions) instructions; make the counts {m,n} smaller or the pattern shorter")
        }
        program.append(instruction)
        return program.count - 1
    }

    private var here: Int32 { Int32(truncatingIfNeeded: program.count) }

    mutating func emit(_ node: RegexNode) throws(RegexProblem) {
        switch node {
        case .empty:
            break
        case .literal(let byte):
            try add(Instruction(.byte, x: Int32(byte)))
        case .set(let set):
            var index = classes.count
            if let known = classes.firstIndex(of: set) { index = known } else { classes.append(set) }
            try add(Instruction(.set, x: Int32(truncatingIfNeeded: index)))
        case .any:
            try add(Instruction(.any))
        case .begin:
            try add(Instruction(.begin))
        case .end:
            try add(Instruction(.end))
        case .capture(let inner, let index):
            try add(Instruction(.save, x: Int32(truncatingIfNeeded: 2 * index)))
            try emit(inner)
            try add(Instruction(.save, x: Int32(truncatingIfNeeded: 2 * index + 1)))
        case .concat(let items):
            for item in items { try emit(item) }
        case .alternate(let branches):
            // split L1, next; L1: a; jump end; next: split L2, next2; ... last: z; end:
            var jumps: [Int] = []
            for (index, branch) in branches.enumerated() {
                if index == branches.count - 1 {
                    try emit(branch)
                } else {
                    let split = try add(Instruction(.split, x: here + 1))
                    try emit(branch)
                    jumps.append(try add(Instruction(.jump)))
                    program[split].y = here
                }
            }
            for jump in jumps { program[jump].x = here }
        case .repetition(let inner, let min, let max, let greedy):
            if max == nil && min > 0 {
                // x{m,} = x{m-1} then x+ (L: x; split L, next).
                for _ in 0..<(min - 1) { try emit(inner) }
                let loop = here
                try emit(inner)
                let split = try add(Instruction(.split))
                program[split].x = greedy ? loop : here
                program[split].y = greedy ? here : loop
                return
            }
            if max == nil && inner.isNullable {
                // x* of an x that can match empty is (x+)?, as Go compiles it
                // (golang.org/issue/46123): the empty iteration then records its groups.
                let skip = try add(Instruction(.split))
                let loop = here
                try emit(inner)
                let split = try add(Instruction(.split))
                program[split].x = greedy ? loop : here
                program[split].y = greedy ? here : loop
                program[skip].x = greedy ? loop : here
                program[skip].y = greedy ? here : loop
                return
            }
            for _ in 0..<min { try emit(inner) }
            guard let max else {
                // x*: L: split body, end; body: x; jump L; end:
                let split = try add(Instruction(.split))
                try emit(inner)
                try add(Instruction(.jump, x: Int32(truncatingIfNeeded: split)))
                program[split].x = greedy ? Int32(truncatingIfNeeded: split + 1) : here
                program[split].y = greedy ? here : Int32(truncatingIfNeeded: split + 1)
                return
            }
            // x{0,k} as nested optionals (x(x(x)?)?)?: each skip goes to the end.
            var splits: [Int] = []
            for _ in 0..<(max - min) {
                splits.append(try add(Instruction(.split)))
                try emit(inner)
            }
            for split in splits {
                program[split].x = greedy ? Int32(truncatingIfNeeded: split + 1) : here
                program[split].y = greedy ? here : Int32(truncatingIfNeeded: split + 1)
            }
        }
    }
}
