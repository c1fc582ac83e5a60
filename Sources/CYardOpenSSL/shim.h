#ifndef C_YARD_OPENSSL_SHIM_H
#define C_YARD_OPENSSL_SHIM_H
/* Links the system OpenSSL (pkg-config `openssl`). Swift cannot import OpenSSL's
   function-like macros, so each one the project needs is wrapped here with a `yard_`
   prefix. */
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/bio.h>
#include <openssl/opensslv.h>

/* SSL_CTX_set_min_proto_version is a macro over SSL_CTX_ctrl. */
static inline long yard_SSL_CTX_set_min_proto_version(SSL_CTX *ctx, int version) {
    return SSL_CTX_set_min_proto_version(ctx, version);
}
/* SSL_set_tlsext_host_name is a macro over SSL_ctrl. */
static inline long yard_SSL_set_tlsext_host_name(SSL *ssl, const char *name) {
    return SSL_set_tlsext_host_name(ssl, name);
}
/* BIO_pending is a macro over BIO_ctrl. */
static inline int yard_BIO_pending(BIO *bio) { return (int)BIO_pending(bio); }

#endif
