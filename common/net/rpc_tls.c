/* rpc_tls.c: TLS credentials for rpc.h's servers and channels (gRPC's file-watching certificate provider,
 * so rotated files are picked up without a restart), the start-up check of the PEM files with OpenSSL
 * (gRPC itself only logs a bad file at the first handshake), and the peer identity of mutual-TLS calls. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "common/cli/secret.h"
#include "common/net/rpc.h"
#include "common/net/rpc_ucall.h"

/* The last OpenSSL error as text ("" when none). */
static const char *ssl_reason(char *buf, size_t n)
{
    unsigned long e = ERR_peek_last_error();
    buf[0] = 0;
    if (e)
        ERR_error_string_n(e, buf, n);
    ERR_clear_error();
    return buf;
}

static vs_status check_cert_time(X509 *x, const char *file, char err[VS_ERR_LEN])
{
    if (X509_cmp_current_time(X509_get0_notBefore(x)) > 0)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "tls: %s: certificate is not valid yet", file);
    if (X509_cmp_current_time(X509_get0_notAfter(x)) < 0)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "tls: %s: certificate has expired", file);
    return VS_OK;
}

static vs_status check_ca(const char *file, char err[VS_ERR_LEN])
{
    char why[256];
    FILE *f = fopen(file, "r");
    if (!f)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "tls: cannot read CA file %s", file);
    size_t n = 0;
    X509 *x;
    vs_status st = VS_OK;
    while ((x = PEM_read_X509(f, NULL, NULL, NULL)) != NULL) {
        if (n++ == 0)
            st = check_cert_time(x, file, err);
        X509_free(x);
    }
    fclose(f);
    ERR_clear_error(); /* the read that ended the loop */
    if (st != VS_OK)
        return st;
    if (n == 0)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "tls: CA file %s holds no PEM certificate%s%s", file,
                       *ssl_reason(why, sizeof why) ? ": " : "", why);
    return VS_OK;
}

vs_status vs_rpc_tls_check(const vs_rpc_tls_t *t, int is_server, char err[VS_ERR_LEN])
{
    char why[256];
    if (!t->cert_file != !t->key_file)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                       "tls: a certificate needs its key and a key its certificate");
    if (is_server && !t->cert_file)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "tls: a server needs a certificate and its key");
    if (!is_server && !t->ca_file)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                       "tls: a channel needs the CA file its server must chain to");
    if (t->ca_file && check_ca(t->ca_file, err) != VS_OK)
        return VS_ERR_INVALID_ARGUMENT;
    if (!t->cert_file)
        return VS_OK;
    SSL_CTX *ctx = SSL_CTX_new(TLS_method());
    if (!ctx)
        return vs_errf(err, VS_ERR_NOMEM, "tls: cannot create an OpenSSL context");
    SSL_CTX_set_default_passwd_cb(ctx, vs_secret_no_passphrase);
    vs_status st = VS_OK;
    if (SSL_CTX_use_certificate_chain_file(ctx, t->cert_file) != 1)
        st = vs_errf(err, VS_ERR_INVALID_ARGUMENT, "tls: %s: not a readable PEM certificate chain (%s)",
                     t->cert_file, ssl_reason(why, sizeof why));
    else if (SSL_CTX_use_PrivateKey_file(ctx, t->key_file, SSL_FILETYPE_PEM) != 1)
        st = vs_errf(err, VS_ERR_INVALID_ARGUMENT, "tls: %s: not a readable PEM private key (%s)",
                     t->key_file, ssl_reason(why, sizeof why));
    else if (SSL_CTX_check_private_key(ctx) != 1)
        st = vs_errf(err, VS_ERR_INVALID_ARGUMENT, "tls: %s does not match the certificate in %s",
                     t->key_file, t->cert_file);
    else
        st = check_cert_time(SSL_CTX_get0_certificate(ctx), t->cert_file, err);
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return st;
}

int vs_rpc_tls_from_env(vs_rpc_tls_t *out)
{
    memset(out, 0, sizeof *out);
    const char *ca = getenv("VECSHARD_TLS_CA");
    if (!ca || !*ca)
        return 0;
    out->ca_file = ca;
    const char *cert = getenv("VECSHARD_TLS_CERT"), *key = getenv("VECSHARD_TLS_KEY");
    const char *name = getenv("VECSHARD_TLS_SERVER_NAME");
    out->cert_file = cert && *cert ? cert : NULL;
    out->key_file = key && *key ? key : NULL;
    out->server_name = name && *name ? name : NULL;
    return 1;
}

/* Options watching t's files; the caller adds what is specific to servers or channels. */
static grpc_tls_credentials_options *tls_options(const vs_rpc_tls_t *t)
{
    unsigned refresh = t->refresh_s ? t->refresh_s : VS_RPC_TLS_DEFAULT_REFRESH_S;
    grpc_tls_certificate_provider *p =
        grpc_tls_certificate_provider_file_watcher_create(t->key_file, t->cert_file, t->ca_file, refresh);
    if (!p)
        return NULL;
    grpc_tls_credentials_options *o = grpc_tls_credentials_options_create();
    grpc_tls_credentials_options_set_certificate_provider(o, p); /* takes its own reference */
    grpc_tls_certificate_provider_release(p);
    if (t->ca_file)
        grpc_tls_credentials_options_watch_root_certs(o);
    if (t->cert_file)
        grpc_tls_credentials_options_watch_identity_key_cert_pairs(o);
    return o;
}

grpc_server_credentials *vs_rpc_tls_server_creds(const vs_rpc_tls_t *t)
{
    grpc_tls_credentials_options *o = tls_options(t);
    if (!o)
        return NULL;
    grpc_tls_credentials_options_set_cert_request_type(
        o, t->ca_file ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                      : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
    return grpc_tls_server_credentials_create(o);
}

/* Channel credentials are shared by every channel of one TLS configuration: each set runs a file-watcher
 * thread, and the coordinator opens a channel per shard replica. Kept for the process's life. */
#define CREDS_CACHE 16
static struct {
    char key[3 * 4096 + 16];
    grpc_channel_credentials *creds;
} creds_cache[CREDS_CACHE];
static size_t n_creds_cache;
static pthread_mutex_t creds_mu = PTHREAD_MUTEX_INITIALIZER;

grpc_channel_credentials *vs_rpc_tls_channel_creds(const vs_rpc_tls_t *t, int *owned, char err[VS_ERR_LEN])
{
    char key[sizeof creds_cache[0].key];
    *owned = 0;
    int kl = snprintf(key, sizeof key, "%s\n%s\n%s\n%u", t->cert_file ? t->cert_file : "",
                      t->key_file ? t->key_file : "", t->ca_file ? t->ca_file : "", t->refresh_s);
    if (kl < 0 || (size_t)kl >= sizeof key) {
        vs_errf(err, VS_ERR_INVALID_ARGUMENT, "tls: file names too long");
        return NULL;
    }
    pthread_mutex_lock(&creds_mu);
    grpc_channel_credentials *c = NULL;
    for (size_t i = 0; i < n_creds_cache && !c; i++)
        if (strcmp(creds_cache[i].key, key) == 0)
            c = creds_cache[i].creds;
    if (!c && vs_rpc_tls_check(t, 0, err) == VS_OK) {
        grpc_tls_credentials_options *o = tls_options(t);
        if (o) {
            grpc_tls_credentials_options_set_verify_server_cert(o, 1);
            /* the server's name is checked once, at the handshake; a per-call check only matters to
             * virtual hosting (calls naming another host), which no vecshard client does */
            grpc_tls_credentials_options_set_check_call_host(o, 0);
            c = grpc_tls_credentials_create(o);
        }
        if (!c) {
            vs_errf(err, VS_ERR_INVALID_ARGUMENT, "tls: gRPC refused the TLS configuration");
        } else if (n_creds_cache < CREDS_CACHE) {
            snprintf(creds_cache[n_creds_cache].key, sizeof creds_cache[0].key, "%s", key);
            creds_cache[n_creds_cache++].creds = c; /* the cache's reference, never released */
        } else {
            *owned = 1; /* cache full: this channel's own credentials */
        }
    }
    pthread_mutex_unlock(&creds_mu);
    return c;
}

/* The first value of property name in ctx into out; its length or -1. */
static long auth_property(grpc_auth_context *ctx, const char *name, char *out, size_t n)
{
    grpc_auth_property_iterator it = grpc_auth_context_find_properties_by_name(ctx, name);
    const grpc_auth_property *p = grpc_auth_property_iterator_next(&it);
    if (!p || p->value_length + 1 > n)
        return -1;
    memcpy(out, p->value, p->value_length);
    out[p->value_length] = 0;
    return (long)p->value_length;
}

long vs_rpc_peer_name(grpc_call *call, char *out, size_t n)
{
    grpc_auth_context *ctx = grpc_call_auth_context(call);
    if (!ctx)
        return -1;
    long len = -1;
    /* Only a verified peer: gRPC sets the peer identity after the certificate chain was verified. A CN
     * that does not fit is no name at all (never a fallback to the SAN). */
    if (grpc_auth_context_peer_is_authenticated(ctx)) {
        grpc_auth_property_iterator it =
            grpc_auth_context_find_properties_by_name(ctx, GRPC_X509_CN_PROPERTY_NAME);
        if (grpc_auth_property_iterator_next(&it))
            len = auth_property(ctx, GRPC_X509_CN_PROPERTY_NAME, out, n);
        else
            len = auth_property(ctx, GRPC_X509_SAN_PROPERTY_NAME, out, n);
    }
    grpc_auth_context_release(ctx);
    return len;
}
