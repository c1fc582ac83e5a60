// The admin API's request reader (YardControl's AdminRequestParser): head, target and
// query, headers, body and the JSON bodies of the routes that take one.

import YardControl

enum AdminTarget {
    /// The input as the bytes an admin connection received: requests are parsed one after
    /// the other while whole ones come (pipelining), as AdminServer does.
    static func request(_ bytes: UnsafeRawBufferPointer) {
        var offset = 0
        while offset < bytes.count {
            switch AdminRequestParser.parse(UnsafeRawBufferPointer(rebasing: bytes[offset...])) {
            case .incomplete, .refused:
                return
            case .request(let request, let consumed):
                guard consumed > 0, consumed <= bytes.count - offset else { fatalError("consumed \(consumed) of \(bytes.count - offset)") }
                _ = (request.method, request.path, request.query.count, request.json)
                offset += consumed
            }
        }
    }
}
