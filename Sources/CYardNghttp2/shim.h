#ifndef C_YARD_NGHTTP2_SHIM_H
#define C_YARD_NGHTTP2_SHIM_H
/* Links the system libnghttp2 (pkg-config `libnghttp2`). Debian 12 ships 1.52, which has
   nghttp2_session_mem_send and nghttp2_submit_response but not their `2` variants (1.61+);
   code is written against 1.52, and this shim exposes the version for checks. */
#include <nghttp2/nghttp2.h>
#include <string.h>

static inline int yard_nghttp2_version_num(void) { return NGHTTP2_VERSION_NUM; }

/* `nghttp2_frame` is a C union; Swift imports it, but reading a member through the union
   needs the caller to know which member is live. These accessors name the member read, so
   the Swift side never reinterprets the union by hand. */
static inline uint8_t yard_nghttp2_frame_type(const nghttp2_frame *frame) { return frame->hd.type; }
static inline uint8_t yard_nghttp2_frame_flags(const nghttp2_frame *frame) { return frame->hd.flags; }
static inline int32_t yard_nghttp2_frame_stream_id(const nghttp2_frame *frame) { return frame->hd.stream_id; }
static inline size_t yard_nghttp2_frame_length(const nghttp2_frame *frame) { return frame->hd.length; }
static inline int yard_nghttp2_frame_headers_category(const nghttp2_frame *frame) { return (int)frame->headers.cat; }
static inline uint32_t yard_nghttp2_frame_rst_error_code(const nghttp2_frame *frame) { return frame->rst_stream.error_code; }
static inline int32_t yard_nghttp2_frame_goaway_last_stream_id(const nghttp2_frame *frame) { return frame->goaway.last_stream_id; }
static inline uint32_t yard_nghttp2_frame_goaway_error_code(const nghttp2_frame *frame) { return frame->goaway.error_code; }
/* The 8 opaque bytes of a PING, as one integer (the sender's own token comes back in its ACK). */
static inline uint64_t yard_nghttp2_frame_ping_opaque(const nghttp2_frame *frame) {
    uint64_t value = 0;
    for (int i = 0; i < 8; i++) value = (value << 8) | frame->ping.opaque_data[i];
    return value;
}
static inline int yard_nghttp2_submit_ping(nghttp2_session *session, uint64_t opaque) {
    uint8_t data[8];
    for (int i = 7; i >= 0; i--) { data[i] = (uint8_t)(opaque & 0xff); opaque >>= 8; }
    return nghttp2_submit_ping(session, NGHTTP2_FLAG_NONE, data);
}

/* The data provider's source is a union of an fd and a pointer; the pointer member is the one
   Switchyard uses (an unretained reference to the stream's response body). */
static inline nghttp2_data_provider yard_nghttp2_data_provider(void *source, nghttp2_data_source_read_callback read) {
    nghttp2_data_provider provider;
    memset(&provider, 0, sizeof provider);
    provider.source.ptr = source;
    provider.read_callback = read;
    return provider;
}
static inline void *yard_nghttp2_data_source_ptr(const nghttp2_data_source *source) { return source->ptr; }

#endif
