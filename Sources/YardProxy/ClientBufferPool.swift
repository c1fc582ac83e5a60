#if canImport(Glibc)
import Glibc
#endif
import YardHTTP
import YardIO

// Memory follows work: an idle keep-alive client connection holds no read buffer, no write
// buffer and no header-field array. They are parked in the worker's pool when the
// connection goes idle with nothing buffered, and taken back when its next event arrives
// (HAProxy and nginx do the same). 8,000 idle clients held ~11.7 KiB each with two 32 KiB
// buffers (one touched page each) and a 100-entry field array per connection.

/// Spare client buffers and header-field arrays of one worker.
///
/// Threading: owned by one worker (event loop); never shared.
struct ClientBufferPool {
    /// Capacity of every pooled buffer; a buffer that grew (a large head) is freed instead.
    let bufferSize: Int
    let maxHeaders: Int
    /// At most this many spares of each kind are kept; past it memory goes back to malloc,
    /// so a burst of connections does not pin its peak for the process's life.
    let highWater: Int
    private var buffers: ContiguousArray<UnsafeMutableRawPointer> = []
    private var fieldArrays: ContiguousArray<UnsafeMutablePointer<HeaderField>> = []
    /// Stands in for a parked connection's field array, so that no path can reach freed or
    /// shared memory through it.
    let placeholderFields: UnsafeMutablePointer<HeaderField>
    /// Bytes handed back to malloc past the high-water mark since the last heap trim.
    var freedSinceTrim = 0

    init(bufferSize: Int, maxHeaders: Int, highWater: Int = 256) {
        self.bufferSize = bufferSize
        self.maxHeaders = maxHeaders
        self.highWater = highWater
        placeholderFields = .allocate(capacity: maxHeaders)
        placeholderFields.initialize(repeating: .empty, count: maxHeaders)
    }

    /// A buffer of `bufferSize` bytes, empty.
    mutating func takeBuffer() -> ByteBuffer {
        if let base = buffers.popLast() {
            var buffer = ByteBuffer()
            buffer.base = base
            buffer.capacity = bufferSize
            return buffer
        }
        return ByteBuffer(capacity: bufferSize)
    }

    /// Takes `buffer`'s memory (kept, or freed past the high-water mark); `buffer` is left
    /// empty and unallocated.
    mutating func give(_ buffer: inout ByteBuffer) {
        if let base = buffer.base, buffer.capacity == bufferSize, buffers.count < highWater {
            buffers.append(base)
            buffer = ByteBuffer()
        } else {
            freedSinceTrim &+= buffer.capacity
            buffer.deallocate()
        }
    }

    mutating func takeFields() -> UnsafeMutablePointer<HeaderField> {
        if let fields = fieldArrays.popLast() { return fields }
        let fields = UnsafeMutablePointer<HeaderField>.allocate(capacity: maxHeaders)
        fields.initialize(repeating: .empty, count: maxHeaders)
        return fields
    }

    mutating func give(fields: UnsafeMutablePointer<HeaderField>) {
        guard fields != placeholderFields else { return }
        if fieldArrays.count < highWater {
            fieldArrays.append(fields)
        } else {
            freedSinceTrim &+= maxHeaders &* MemoryLayout<HeaderField>.stride
            fields.deallocate()
        }
    }

    /// Frees the spares past `count` of each kind (a burst of connections has ended: the
    /// high-water mark's worth of spares would otherwise stay resident for good).
    mutating func shrink(keeping count: Int) {
        while buffers.count > count, let base = buffers.popLast() {
            free(base)
            freedSinceTrim &+= bufferSize
        }
        while fieldArrays.count > count, let fields = fieldArrays.popLast() {
            fields.deallocate()
            freedSinceTrim &+= maxHeaders &* MemoryLayout<HeaderField>.stride
        }
    }

    /// Frees every spare (the worker is stopping).
    mutating func releaseAll() {
        for base in buffers { free(base) }
        buffers.removeAll()
        for fields in fieldArrays { fields.deallocate() }
        fieldArrays.removeAll()
        placeholderFields.deallocate()
    }
}

extension Worker {
    /// Connections fewer than the recent peak, or bytes freed by the pool, before a trim is
    /// worth its heap walk; and the shortest time between two trims.
    static let heapTrimDrop = 512
    static let heapTrimFreedBytes = 8 << 20
    static let heapTrimIntervalMs: Int64 = 5_000
    /// Spares of each kind the pool keeps once a burst has ended.
    static let sparesAfterBurst = 32

    /// Once a burst of connections has ended (far fewer now than the peak since the last
    /// trim), or many idle connections parked their buffers past the pool's high-water mark,
    /// and at most every 5 s: return the freed pages to the system — after a burst, with
    /// the pool's spares past `sparesAfterBurst`. Called per tick.
    func trimHeapAfterBurst() {
        let count = clients.count
        if count > peakClientsSinceTrim { peakClientsSinceTrim = count }
        let burstEnded = peakClientsSinceTrim - count >= Worker.heapTrimDrop
        guard burstEnded || bufferPool.freedSinceTrim >= Worker.heapTrimFreedBytes,
              now - lastHeapTrim >= Worker.heapTrimIntervalMs else { return }
        if burstEnded {
            bufferPool.shrink(keeping: Worker.sparesAfterBurst)
            shrinkSpareH2Streams(keeping: Worker.sparesAfterBurst)
        }
        releaseFreeHeapMemory()
        lastHeapTrim = now
        peakClientsSinceTrim = count
        bufferPool.freedSinceTrim = 0
    }

    /// Parks the buffers of a plain HTTP/1.1 client connection that is idle with nothing
    /// buffered in either direction (nor inside OpenSSL).
    @inline(__always)
    func parkBuffersIfIdle(_ c: ClientConnection) {
        guard c.phase == .idle, !c.buffersParked, c.h2 == nil, c.upstream == nil,
              c.inBuf.isEmpty, c.outBuf.isEmpty, c.tls?.hasBufferedInput != true else { return }
        bufferPool.give(&c.inBuf)
        bufferPool.give(&c.outBuf)
        bufferPool.give(fields: c.fields)
        c.fields = bufferPool.placeholderFields
        c.buffersParked = true
    }

    /// Gives a parked connection its buffers back before any of its I/O.
    @inline(__always)
    func unparkBuffers(_ c: ClientConnection) {
        guard c.buffersParked else { return }
        c.inBuf = bufferPool.takeBuffer()
        c.outBuf = bufferPool.takeBuffer()
        c.fields = bufferPool.takeFields()
        c.scanFrom = 0
        c.buffersParked = false
    }
}
