// A regular expression engine that cannot be made slow: parse → compile to a small
// program → Pike VM (a Thompson NFA simulation that carries capture slots per thread).
// Every input byte is looked at once, by at most one thread per instruction, so a match
// costs O(len(input) × len(program)) whatever the pattern; nothing backtracks. The
// semantics are RE2's / Go's `regexp` (what Traefik's redirectRegex and PathRegexp use):
// leftmost-first, greedy and lazy quantifiers, `^`/`$` at the ends of the text, `.` not
// matching `\n`.
//
// Bytes, not characters: ASCII classes; a non-ASCII byte matches `.` and negated classes.
// The pattern itself is ASCII (a URL carries anything else percent-encoded).
//
// Supported: literals, `\` escapes of punctuation, `\n \t \r \f \v \xHH`, `.`, classes
// `[a-z0-9_-]` and `[^/]`, `\d \w \s \D \W \S` (also inside classes), `^ $ \A \z`,
// `( )`, `(?: )`, `|`, `* + ?`, `{m} {m,} {m,n}` (n ≤ 100) and their lazy forms with `?`.
// Refused with a message naming the construct: backreferences, lookaround, named groups,
// flags, `\b`, Unicode and POSIX classes.

#if canImport(Glibc)
internal import Glibc
#endif

/// A compiled regular expression, matched in linear time without backtracking.
///
/// Threading: immutable and `Sendable`; match from any thread. Matching allocates nothing
/// once a thread has matched once: the VM's lists live in a scratch area kept per thread
/// (`RegexScratch`), grown to the largest program the thread has run.
public struct LinearRegex: Sendable, Hashable, CustomStringConvertible {
    /// The largest count a `{m,n}` may give.
    public static let maxRepeat = 100
    /// The largest program accepted (instructions); bigger patterns are refused.
    public static let maxInstructions = 3_000
    /// The longest pattern accepted, in bytes.
    public static let maxPatternLength = 1_000
    /// Groups deeper than this are refused (the parser and compiler recurse on them).
    public static let maxNesting = 50
    /// Groups 0...9 have their bounds reported by `firstMatch` (`$1`..`$9` of a replacement).
    public static let reportedGroups = 10

    /// The pattern as written.
    public let pattern: String
    /// Capturing groups, not counting group 0 (the whole match).
    public let groupCount: Int
    let program: [Instruction]
    let classes: [ByteSet]
    /// Every alternative starts with `^`: only a match at offset 0 is possible.
    let anchoredStart: Bool

    /// Compiles `pattern`, or throws a `RegexProblem` saying what is wrong and where.
    public init(_ pattern: String) throws(RegexProblem) {
        let bytes = Array(pattern.utf8)
        guard bytes.count <= LinearRegex.maxPatternLength else {
            throw RegexProblem("the pattern is \(bytes.count) bytes long; at most \(LinearRegex.maxPatternLength) are accepted")
        }
        if let offset = bytes.firstIndex(where: { $0 < 0x20 || $0 >= 0x7f }) {
            throw RegexProblem("byte \(offset + 1) is a control or non-ASCII character; write it percent-encoded as the URL carries it (e.g. %C3%A9), or as \\xHH")
        }
        var parser = RegexParser(bytes)
        let tree = try parser.parse()
        var compiler = RegexCompiler()
        try compiler.emit(.capture(tree, 0))
        try compiler.add(Instruction(.match))
        self.pattern = pattern
        self.groupCount = parser.groupCount
        self.program = compiler.program
        self.classes = compiler.classes
        self.anchoredStart = tree.isAnchoredAtStart
    }

    public var description: String { pattern }
    public static func == (lhs: LinearRegex, rhs: LinearRegex) -> Bool { lhs.pattern == rhs.pattern }
    public func hash(into hasher: inout Hasher) { hasher.combine(pattern) }

    /// The number of instructions the pattern compiled to (what a match costs per byte, at most).
    public var programSize: Int { program.count }

    // MARK: Matching

    /// Whether the pattern matches anywhere in `input` (use `^...$` for the whole input).
    public func matches(_ input: UnsafeRawBufferPointer) -> Bool {
        RegexScratch.with(ints: scratchInts(slots: 0), bytes: 0, orElse: false) { ints, _ in
            run(input, slots: 0, scratch: ints) != nil
        }
    }

    /// Whether the pattern matches anywhere in `text`.
    public func matches(_ text: String) -> Bool {
        var text = text
        return text.withUTF8 { matches(UnsafeRawBufferPointer($0)) }
    }

    /// The leftmost-first match in `input` with the bounds of groups 0...9, or nil.
    public func firstMatch(in input: UnsafeRawBufferPointer) -> RegexMatch? {
        let slots = 2 * min(groupCount + 1, LinearRegex.reportedGroups)
        return RegexScratch.with(ints: scratchInts(slots: slots), bytes: 0, orElse: nil) { ints, _ in
            run(input, slots: slots, scratch: ints)
        }
    }

    /// `firstMatch` on a String's UTF-8 bytes (tests and the control plane).
    public func firstMatch(in text: String) -> RegexMatch? {
        var text = text
        return text.withUTF8 { firstMatch(in: UnsafeRawBufferPointer($0)) }
    }

    /// Int32s of scratch a run with `slots` capture slots needs: two thread lists (sparse
    /// and dense visited sets, thread pcs, slots per thread), the add stack (3 per entry),
    /// and two slot rows.
    func scratchInts(slots: Int) -> Int {
        let count = program.count
        return 2 * ThreadList.ints(count: count, slots: slots) + 3 * (count + 1) + 2 * slots
    }

    /// The Pike VM. `slots` is 0 (only whether it matches; stops at the first match) or
    /// an even count of capture slots to report. `scratch` holds `scratchInts(slots:)`.
    func run(_ input: UnsafeRawBufferPointer, slots: Int, scratch: UnsafeMutablePointer<Int32>) -> RegexMatch? {
        let count = program.count
        let listInts = ThreadList.ints(count: count, slots: slots)
        var current = ThreadList(base: scratch, count: count)
        var next = ThreadList(base: scratch + listInts, count: count)
        let stack = scratch + 2 * listInts
        let working = stack + 3 * (count + 1)
        let best = working + slots
        var matched = false
        let end = input.count
        return program.withUnsafeBufferPointer { program in classes.withUnsafeBufferPointer { classes in
            var position = 0
            while true {
                if current.threads == 0 {
                    if matched || (anchoredStart && position > 0) { break }
                }
                if !matched && (position == 0 || !anchoredStart) {
                    working.update(repeating: -1, count: slots)
                    add(&current, pc: 0, at: position, end: end, slots: slots, caps: working, stack: stack, program: program)
                }
                let byte: Int = position < end ? Int(truncatingIfNeeded: input[position]) : -1
                var index = 0
                while index < current.threads {
                    let pc = Int(truncatingIfNeeded: current.pcs[index])
                    let instruction = program[pc]
                    var advance = false
                    switch instruction.op {
                    case .match:
                        if slots == 0 { return RegexMatch() }
                        best.update(from: current.caps + index * slots, count: slots)
                        matched = true
                        // Threads after this one have lower priority: leftmost-first drops them.
                        index = current.threads
                        continue
                    case .byte: advance = byte == Int(truncatingIfNeeded: instruction.x)
                    case .set: advance = byte >= 0 && classes[Int(truncatingIfNeeded: instruction.x)].contains(UInt8(truncatingIfNeeded: byte))
                    case .any: advance = byte >= 0 && byte != 0x0A
                    default: break
                    }
                    if advance {
                        working.update(from: current.caps + index * slots, count: slots)
                        add(&next, pc: pc + 1, at: position + 1, end: end, slots: slots, caps: working, stack: stack, program: program)
                    }
                    index += 1
                }
                if position >= end { break }
                position += 1
                swap(&current, &next)
                next.clear()
            }
            guard matched else { return nil }
            var result = RegexMatch()
            withUnsafeMutableBytes(of: &result.slots) { raw in
                let out = raw.bindMemory(to: Int32.self)
                for slot in 0..<min(slots, out.count) { out[slot] = best[slot] }
            }
            return result
        } }
    }

    /// Follows the empty-width instructions from `pc` at `position` and puts every thread
    /// that reaches a byte test or `match` on `list`, in priority order. `caps` is restored
    /// before returning. An explicit stack (entries of 3: kind/pc, slot, old value), no recursion.
    private func add(_ list: inout ThreadList, pc start: Int, at position: Int, end: Int, slots: Int,
                     caps: UnsafeMutablePointer<Int32>, stack: UnsafeMutablePointer<Int32>,
                     program: UnsafeBufferPointer<Instruction>) {
        var depth = 0
        stack[0] = Int32(truncatingIfNeeded: start)
        stack[1] = -1
        depth = 1
        while depth > 0 {
            depth -= 1
            let entry = stack + 3 * depth
            if entry[1] >= 0 {  // a slot to restore
                caps[Int(truncatingIfNeeded: entry[1])] = entry[2]
                continue
            }
            var pc = Int(truncatingIfNeeded: entry[0])
            following: while true {
                guard list.visit(pc) else { break following }
                let instruction = program[pc]
                switch instruction.op {
                case .jump:
                    pc = Int(truncatingIfNeeded: instruction.x)
                case .split:
                    let other = stack + 3 * depth
                    other[0] = instruction.y
                    other[1] = -1
                    depth += 1
                    pc = Int(truncatingIfNeeded: instruction.x)
                case .save:
                    let slot = Int(truncatingIfNeeded: instruction.x)
                    if slot < slots {
                        let restore = stack + 3 * depth
                        restore[0] = 0
                        restore[1] = Int32(truncatingIfNeeded: slot)
                        restore[2] = caps[slot]
                        depth += 1
                        caps[slot] = Int32(truncatingIfNeeded: position)
                    }
                    pc += 1
                case .begin:
                    guard position == 0 else { break following }
                    pc += 1
                case .end:
                    guard position == end else { break following }
                    pc += 1
                case .byte, .set, .any, .match:
                    list.addThread(pc: pc, caps: caps, slots: slots)
                    break following
                }
            }
        }
    }
}

/// The bounds of groups 0...9 of a match (byte offsets; -1 for a group that did not take part).
public struct RegexMatch: Sendable {
    var slots: (Int32, Int32, Int32, Int32, Int32, Int32, Int32, Int32, Int32, Int32,
                Int32, Int32, Int32, Int32, Int32, Int32, Int32, Int32, Int32, Int32) =
        (-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1)

    /// The byte range of `group` (0 is the whole match), nil when it did not take part or
    /// is beyond 9.
    public func range(_ group: Int) -> Range<Int>? {
        guard group >= 0 && group < LinearRegex.reportedGroups else { return nil }
        return withUnsafeBytes(of: slots) { raw in
            let values = raw.bindMemory(to: Int32.self)
            let (start, end) = (Int(truncatingIfNeeded: values[2 * group]), Int(truncatingIfNeeded: values[2 * group + 1]))
            return start >= 0 && end >= start ? start..<end : nil
        }
    }
}

/// Why a pattern is refused: the message names the construct and, where it helps, the offset.
public struct RegexProblem: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    init(_ message: String) { self.message = message }
    public var description: String { message }
}

// MARK: - Program

enum Opcode: UInt8 {
    case byte, set, any, split, jump, save, begin, end, match
}

/// One VM instruction: `byte` x, `set` class x, `split` prefer x then y, `jump` x, `save` slot x.
struct Instruction: Sendable {
    var op: Opcode
    var x: Int32 = 0
    var y: Int32 = 0
    init(_ op: Opcode, x: Int32 = 0, y: Int32 = 0) {
        self.op = op
        self.x = x
        self.y = y
    }
}

/// 256 bits: which bytes a class takes.
struct ByteSet: Sendable, Equatable {
    var bits: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)

    func contains(_ byte: UInt8) -> Bool {
        let word: UInt64
        switch byte >> 6 {
        case 0: word = bits.0
        case 1: word = bits.1
        case 2: word = bits.2
        default: word = bits.3
        }
        return word & (1 << UInt64(byte & 63)) != 0
    }

    mutating func insert(_ byte: UInt8) {
        let bit = UInt64(1) << UInt64(byte & 63)
        switch byte >> 6 {
        case 0: bits.0 |= bit
        case 1: bits.1 |= bit
        case 2: bits.2 |= bit
        default: bits.3 |= bit
        }
    }

    mutating func insert(_ low: UInt8, through high: UInt8) {
        for byte in low...high { insert(byte) }
    }

    mutating func formUnion(_ other: ByteSet) {
        bits = (bits.0 | other.bits.0, bits.1 | other.bits.1, bits.2 | other.bits.2, bits.3 | other.bits.3)
    }

    var inverted: ByteSet { ByteSet(bits: (~bits.0, ~bits.1, ~bits.2, ~bits.3)) }

    static func ==(lhs: ByteSet, rhs: ByteSet) -> Bool {
        lhs.bits.0 == rhs.bits.0 && lhs.bits.1 == rhs.bits.1 && lhs.bits.2 == rhs.bits.2 && lhs.bits.3 == rhs.bits.3
    }

    static let digits: ByteSet = { var set = ByteSet(); set.insert(UInt8(ascii: "0"), through: UInt8(ascii: "9")); return set }()
    static let word: ByteSet = {
        var set = digits
        set.insert(UInt8(ascii: "a"), through: UInt8(ascii: "z"))
        set.insert(UInt8(ascii: "A"), through: UInt8(ascii: "Z"))
        set.insert(UInt8(ascii: "_"))
        return set
    }()
    /// RE2's `\s`: tab, newline, form feed, carriage return, space.
    static let space: ByteSet = { var set = ByteSet(); for byte: UInt8 in [9, 10, 12, 13, 32] { set.insert(byte) }; return set }()
}

/// One step's threads: a sparse set of the program counters visited while following empty
/// instructions (Briggs–Torczon: insert, membership and clear in O(1)), and the threads
/// that stopped at a byte test or `match`, in priority order, with their capture slots.
struct ThreadList {
    let sparse: UnsafeMutablePointer<Int32>
    let dense: UnsafeMutablePointer<Int32>
    let pcs: UnsafeMutablePointer<Int32>
    let caps: UnsafeMutablePointer<Int32>
    var visited = 0
    var threads = 0

    static func ints(count: Int, slots: Int) -> Int { 3 * count + count * slots }

    init(base: UnsafeMutablePointer<Int32>, count: Int) {
        sparse = base
        dense = base + count
        pcs = base + 2 * count
        caps = base + 3 * count
    }

    /// Marks `pc` visited; false when it already was in this step.
    mutating func visit(_ pc: Int) -> Bool {
        let at = Int(truncatingIfNeeded: sparse[pc])
        if at >= 0 && at < visited && Int(truncatingIfNeeded: dense[at]) == pc { return false }
        sparse[pc] = Int32(truncatingIfNeeded: visited)
        dense[visited] = Int32(truncatingIfNeeded: pc)
        visited += 1
        return true
    }

    mutating func addThread(pc: Int, caps source: UnsafeMutablePointer<Int32>, slots: Int) {
        pcs[threads] = Int32(truncatingIfNeeded: pc)
        (caps + threads * slots).update(from: source, count: slots)
        threads += 1
    }

    mutating func clear() {
        visited = 0
        threads = 0
    }
}

// MARK: - Scratch

/// The per-thread scratch memory of the VM: grown (malloc) to the largest need a thread has
/// met, then reused, so a match allocates nothing in steady state. A nested use on the same
/// thread (none exists today) gets a fresh allocation instead of clobbering the outer one.
///
/// Threading: each thread owns its area through a pthread key; the key's destructor frees
/// it when the thread ends. No lock: nothing is shared.
enum RegexScratch {
    /// Header of an area: capacity in bytes, and whether a call is using it.
    private struct Header {
        var capacity: Int
        var busy: Bool
    }

    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        _ = pthread_key_create(&key) { area in free(area) }
        return key
    }()

    /// Calls `body` with room for `ints` Int32s and `bytes` bytes (each uninitialized), or
    /// answers `fallback` when the memory cannot be had (the caller's "no match").
    static func with<T>(ints: Int, bytes: Int, orElse fallback: T,
                        _ body: (UnsafeMutablePointer<Int32>, UnsafeMutablePointer<UInt8>) -> T) -> T {
        let headerSize = (MemoryLayout<Header>.stride + 15) & ~15
        let need = headerSize + ((ints * 4 + 15) & ~15) + bytes + 16
        let key = RegexScratch.key
        var area = pthread_getspecific(key)
        if let existing = area, existing.assumingMemoryBound(to: Header.self).pointee.busy {
            // Re-entered on this thread: a private area for this call only.
            guard let own = calloc(need, 1) else { return fallback }
            defer { free(own) }
            return call(own, headerSize: headerSize, ints: ints, body)
        }
        if area == nil || area.map({ $0.assumingMemoryBound(to: Header.self).pointee.capacity < need }) == true {
            free(area)
            // Zeroed once: the sparse sets are read before written (any value is safe, but
            // uninitialized memory is not), and stay valid between calls.
            guard let grown = calloc(need, 1) else { return fallback }
            grown.assumingMemoryBound(to: Header.self).initialize(to: Header(capacity: need, busy: false))
            _ = pthread_setspecific(key, grown)
            area = grown
        }
        guard let area else { return fallback }
        let header = area.assumingMemoryBound(to: Header.self)
        header.pointee.busy = true
        defer { header.pointee.busy = false }
        return call(area, headerSize: headerSize, ints: ints, body)
    }

    private static func call<T>(_ area: UnsafeMutableRawPointer, headerSize: Int, ints: Int,
                                _ body: (UnsafeMutablePointer<Int32>, UnsafeMutablePointer<UInt8>) -> T) -> T {
        let intBase = (area + headerSize).bindMemory(to: Int32.self, capacity: ints)
        let byteBase = (area + headerSize + ((ints * 4 + 15) & ~15)).assumingMemoryBound(to: UInt8.self)
        return body(intBase, byteBase)
    }
}
