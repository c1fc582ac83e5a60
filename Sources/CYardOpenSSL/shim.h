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
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <openssl/core_names.h>
#include <openssl/params.h>

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

/* SSL_CTX_set_mode is a macro over SSL_CTX_ctrl. */
static inline long yard_SSL_CTX_set_mode(SSL_CTX *ctx, long mode) { return SSL_CTX_set_mode(ctx, mode); }
/* SSL_CTX_set1_groups_list is a macro over SSL_CTX_ctrl. */
static inline long yard_SSL_CTX_set1_groups_list(SSL_CTX *ctx, const char *list) {
    return SSL_CTX_set1_groups_list(ctx, list);
}
/* SSL_CTX_set_read_ahead is a macro over SSL_CTX_ctrl. */
static inline long yard_SSL_CTX_set_read_ahead(SSL_CTX *ctx, int yes) { return SSL_CTX_set_read_ahead(ctx, yes); }
/* SSL_CTX_set_max_proto_version is a macro over SSL_CTX_ctrl. */
static inline long yard_SSL_CTX_set_max_proto_version(SSL_CTX *ctx, int version) {
    return SSL_CTX_set_max_proto_version(ctx, version);
}
/* SSL_CTX_set_tlsext_servername_callback is a macro over SSL_CTX_callback_ctrl, whose
   callback parameter is an untyped `void (*)(void)`; this gives Swift the real type. */
typedef int (*yard_servername_cb)(SSL *ssl, int *alert, void *arg);
static inline long yard_SSL_CTX_set_tlsext_servername_callback(SSL_CTX *ctx, yard_servername_cb cb) {
    return SSL_CTX_set_tlsext_servername_callback(ctx, cb);
}
/* SSL_CTX_set_tlsext_servername_arg is a macro over SSL_CTX_ctrl. */
static inline long yard_SSL_CTX_set_tlsext_servername_arg(SSL_CTX *ctx, void *arg) {
    return SSL_CTX_set_tlsext_servername_arg(ctx, arg);
}
/* SSL_CTX_set_tlsext_ticket_key_evp_cb's HMAC key goes in through an OSSL_PARAM array,
   whose builders take C string constants (OSSL_MAC_PARAM_*) Swift sees only as macros. */
static inline int yard_ticket_hmac_init(EVP_MAC_CTX *hctx, unsigned char *key, size_t length) {
    OSSL_PARAM params[3];
    params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, key, length);
    params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
    params[2] = OSSL_PARAM_construct_end();
    return EVP_MAC_CTX_set_params(hctx, params);
}
/* sk_GENERAL_NAME_num / sk_GENERAL_NAME_value are type-safe macros over OPENSSL_sk_*. */
static inline int yard_sk_GENERAL_NAME_num(const GENERAL_NAMES *names) { return sk_GENERAL_NAME_num(names); }
static inline const GENERAL_NAME *yard_sk_GENERAL_NAME_value(const GENERAL_NAMES *names, int i) {
    return sk_GENERAL_NAME_value(names, i);
}
/* A DNS subjectAltName's text: GENERAL_NAME's payload is a union the importer exposes
   awkwardly; NULL when the entry is not a dNSName. */
static inline const ASN1_IA5STRING *yard_GENERAL_NAME_dns(const GENERAL_NAME *name) {
    return name->type == GEN_DNS ? name->d.dNSName : NULL;
}

/* SSL_OP_* are built with the function-like macro SSL_OP_BIT, which the importer skips.
   The server's options: no renegotiation (a DoS vector, gone in TLS 1.3), a client's EOF
   without close_notify is a close and not an error (most HTTP clients do that), no
   compression (CRIME), and the server's cipher order. */
static const uint64_t yard_SSL_OP_server_defaults = SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF
    | SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE;
/* The client's options: the same minus the cipher order (the server decides), and minus
   IGNORE_UNEXPECTED_EOF: an upstream's EOF without close_notify must stay visible, because a
   response body delimited by the close is then possibly truncated (TLSConnection reports it
   as a close with `endedWithoutCloseNotify`). */
static const uint64_t yard_SSL_OP_client_defaults = SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION;

#endif
