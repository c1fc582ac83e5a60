// zlib (Debian's zlib1g-dev): gzip for the `compress` middleware.
// deflateInit2 is a macro (it passes ZLIB_VERSION and the struct size), which the Swift
// importer cannot call: this shim does.
#include <zlib.h>

/// Starts a gzip stream (window bits + 16 asks for the gzip wrapper) at `level`, with a
/// window of 2^`window_bits` (9...15) and `mem_level` (1...8): smaller for small bodies.
static inline int yard_deflate_init_gzip(z_streamp stream, int level, int window_bits, int mem_level) {
    return deflateInit2(stream, level, Z_DEFLATED, window_bits + 16, mem_level, Z_DEFAULT_STRATEGY);
}
