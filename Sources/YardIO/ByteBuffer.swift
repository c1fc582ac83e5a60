#if canImport(Glibc)
import Glibc
#endif

/// A fixed-capacity byte buffer over malloc'd memory, owned by one connection.
///
/// Readable bytes are `[readerIndex, writerIndex)`; free space is `[writerIndex, capacity)`.
/// It is a struct of raw pointers so the event loop reaches it without ARC, exclusivity or
/// copy-on-write checks (see research/io-spike.md: `[UInt8]` buffers cost 4× the
/// instructions). Threading: confined to the loop that owns the connection. The owner calls
/// `deallocate()` exactly once.
public struct ByteBuffer {
    public var base: UnsafeMutableRawPointer?
    public var capacity: Int
    public var readerIndex: Int = 0
    public var writerIndex: Int = 0

    /// A buffer with no memory yet; `reserve` allocates on first use.
    @inlinable public init() {
        self.base = nil
        self.capacity = 0
    }

    @inlinable public init(capacity: Int) {
        self.base = malloc(capacity)
        self.capacity = capacity
    }

    @inlinable public var readableBytes: Int { writerIndex - readerIndex }
    @inlinable public var writableBytes: Int { capacity - writerIndex }
    @inlinable public var isEmpty: Bool { readerIndex == writerIndex }

    /// The readable bytes, valid until the buffer is next mutated.
    @inlinable public var readable: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: base.map { $0 + readerIndex }, count: readableBytes)
    }

    /// Marks `count` readable bytes consumed; resets to the start when empty, so a buffer
    /// that drains never needs a move.
    @inlinable public mutating func consume(_ count: Int) {
        readerIndex &+= count
        if readerIndex == writerIndex {
            readerIndex = 0
            writerIndex = 0
        }
    }

    /// Drops every byte.
    @inlinable public mutating func clear() {
        readerIndex = 0
        writerIndex = 0
    }

    /// Moves readable bytes to the front so all free space is contiguous.
    @inlinable public mutating func compact() {
        guard readerIndex > 0, let base else { return }
        let count = readableBytes
        if count > 0 { memmove(base, base + readerIndex, count) }
        readerIndex = 0
        writerIndex = count
    }

    /// Makes room for at least `count` more bytes at the end: compacts first, then grows
    /// (to at most `limit` bytes of capacity). Returns false if the room cannot be made.
    @inlinable @discardableResult
    public mutating func reserve(_ count: Int, limit: Int = Int.max) -> Bool {
        if writableBytes >= count { return true }
        compact()
        if writableBytes >= count { return true }
        let needed = writerIndex + count
        guard needed <= limit else { return false }
        var newCapacity = Swift.max(capacity * 2, 4096)
        while newCapacity < needed { newCapacity *= 2 }
        newCapacity = Swift.min(newCapacity, limit)
        guard let grown = realloc(base, newCapacity) else { return false }
        base = grown
        capacity = newCapacity
        return true
    }

    /// Appends bytes; the caller has reserved room (traps otherwise: a logic error).
    @inlinable public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        let count = bytes.count
        guard count > 0 else { return }
        precondition(writableBytes >= count, "ByteBuffer.append without reserve")
        memcpy(base! + writerIndex, bytes.baseAddress!, count)
        writerIndex &+= count
    }

    /// Appends as many of `bytes` as fit; returns how many.
    @inlinable public mutating func appendSome(_ bytes: UnsafeRawBufferPointer) -> Int {
        let count = Swift.min(bytes.count, writableBytes)
        if count > 0 {
            memcpy(base! + writerIndex, bytes.baseAddress!, count)
            writerIndex &+= count
        }
        return count
    }

    /// Appends static ASCII (pre-encoded header pieces).
    @inlinable public mutating func append(_ text: StaticString) {
        append(UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    /// Appends an array of bytes (routing-table strings held as `[UInt8]`).
    @inlinable public mutating func append(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { append($0) }
    }

    /// Appends a non-negative integer in decimal.
    @inlinable public mutating func appendDecimal(_ value: Int) {
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                     UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var v = value
        var i = 20
        withUnsafeMutableBytes(of: &digits) { raw in
            repeat {
                i -= 1
                raw[i] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: v % 10)
                v /= 10
            } while v > 0 && i > 0
            append(UnsafeRawBufferPointer(rebasing: raw[i..<20]))
        }
    }

    /// Frees the memory. The buffer is empty and unallocated afterwards.
    @inlinable public mutating func deallocate() {
        free(base)
        base = nil
        capacity = 0
        readerIndex = 0
        writerIndex = 0
    }
}
