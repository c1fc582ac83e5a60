// zlib (Debian's zlib1g-dev): gzip for the `compress` middleware.
// deflateInit2 is a macro (it passes ZLIB_VERSION and the struct size), which the Swift
// importer cannot call: this shim does.
#include <zlib.h>

/// Starts a gzip stream (window bits 15 + 16 asks for the gzip wrapper) at `level`.
static inline int yard_deflate_init_gzip(z_streamp stream, int level) {
    return deflateInit2(stream, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
}
