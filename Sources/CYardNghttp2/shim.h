#ifndef C_YARD_NGHTTP2_SHIM_H
#define C_YARD_NGHTTP2_SHIM_H
/* Links the system libnghttp2 (pkg-config `libnghttp2`). Debian 12 ships 1.52, which has
   nghttp2_session_mem_send and nghttp2_submit_response but not their `2` variants (1.61+);
   code is written against 1.52, and this shim exposes the version for checks. */
#include <nghttp2/nghttp2.h>

static inline int yard_nghttp2_version_num(void) { return NGHTTP2_VERSION_NUM; }

#endif
