// HTTP/1.1 head parsers and the chunked decoders.

import YardHTTP

enum HTTPTargets {
    /// The whole input, then the same input in two pieces (the first byte picks the split)
    /// through the resumable scan: both must agree.
    static func request(_ bytes: UnsafeRawBufferPointer) {
        let limits = HTTPLimits()
        let fields = UnsafeMutablePointer<HeaderField>.allocate(capacity: limits.maxHeaders)
        fields.initialize(repeating: .empty, count: limits.maxHeaders)
        defer { fields.deallocate() }
        var head = RequestHead()
        var scan = 0
        let whole = parseRequestHead(bytes, limits: limits, head: &head, fields: fields, scanFrom: &scan)
        if case .complete = whole { touch(head.headerCount, fields, bytes, head.headLength) }

        let split = splitPoint(bytes)
        var resumed = RequestHead()
        scan = 0
        var status = parseRequestHead(UnsafeRawBufferPointer(rebasing: bytes[..<split]), limits: limits, head: &resumed, fields: fields, scanFrom: &scan)
        if status == .incomplete {
            status = parseRequestHead(bytes, limits: limits, head: &resumed, fields: fields, scanFrom: &scan)
        }
        if case .complete = whole, case .complete = status, head != resumed { fatalError("split parse differs from whole parse") }
    }

    static func response(_ bytes: UnsafeRawBufferPointer) {
        let limits = HTTPLimits()
        let fields = UnsafeMutablePointer<HeaderField>.allocate(capacity: limits.maxHeaders)
        fields.initialize(repeating: .empty, count: limits.maxHeaders)
        defer { fields.deallocate() }
        let methods: [HTTPMethod] = [.get, .head, .post, .connect]
        let method = bytes.isEmpty ? .get : methods[Int(bytes[bytes.count - 1]) % methods.count]
        var head = ResponseHead()
        var scan = 0
        let whole = parseResponseHead(bytes, limits: limits, requestMethod: method, head: &head, fields: fields, scanFrom: &scan)
        if case .complete = whole { touch(head.headerCount, fields, bytes, head.headLength) }

        var resumed = ResponseHead()
        scan = 0
        var status = parseResponseHead(UnsafeRawBufferPointer(rebasing: bytes[..<splitPoint(bytes)]), limits: limits, requestMethod: method, head: &resumed, fields: fields, scanFrom: &scan)
        if status == .incomplete {
            status = parseResponseHead(bytes, limits: limits, requestMethod: method, head: &resumed, fields: fields, scanFrom: &scan)
        }
        if case .complete = whole, case .complete = status, head != resumed { fatalError("split parse differs from whole parse") }
    }

    /// Validates the input as a chunked body in pieces of varying size, then takes what was
    /// accepted apart with `Dechunker` (which relies on that validation).
    static func chunked(_ bytes: UnsafeRawBufferPointer) {
        var decoder = ChunkedDecoder(maxTrailerBytes: 1_024)
        var offset = 0
        var step = 1
        var end: Int?
        while offset < bytes.count {
            let n = min(step, bytes.count - offset)
            switch decoder.consume(UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + n)])) {
            case .needMore:
                offset += n
                step = step % 7 + 1
                continue
            case .done(let consumed):
                guard consumed >= 0, consumed <= n else { fatalError("consumed \(consumed) of \(n)") }
                end = offset + consumed
            case .invalid:
                break
            }
            break
        }
        guard let end else { return }
        var dechunker = Dechunker()
        var at = 0
        var dataBytes = 0
        while at < end {
            let (count, piece) = dechunker.next(UnsafeRawBufferPointer(rebasing: bytes[at..<end]))
            guard count > 0 || piece == .end else { fatalError("Dechunker made no progress at \(at) of \(end)") }
            if case .data(let range) = piece { dataBytes += range.count }
            if piece == .end && count == 0 { break }
            at += count
        }
        if !dechunker.isDone { fatalError("ChunkedDecoder accepted a body Dechunker did not finish") }
        _ = dataBytes
    }

    private static func splitPoint(_ bytes: UnsafeRawBufferPointer) -> Int {
        bytes.isEmpty ? 0 : Int(bytes[0]) % (bytes.count + 1)
    }

    /// Reads every span a complete head points at, so ASan sees any that is out of range.
    private static func touch(_ count: Int, _ fields: UnsafeMutablePointer<HeaderField>, _ bytes: UnsafeRawBufferPointer, _ headLength: Int) {
        guard headLength <= bytes.count else { fatalError("head length \(headLength) past \(bytes.count)") }
        var sum = 0
        for i in 0..<count {
            for span in [fields[i].name, fields[i].value] {
                let start = Int(span.start), n = Int(span.count)
                guard start >= 0, n >= 0, start + n <= headLength else { fatalError("span \(start)+\(n) outside the head") }
                for j in start..<(start + n) { sum &+= Int(bytes[j]) }
            }
        }
        _ = sum
    }
}
