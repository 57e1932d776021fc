/* redis.c: see redis.h. hiredis 0.14 formats the commands (redisFormatCommandArgv) and parses the replies
 * (redisReader); the connection is our own socket, optionally wrapped in OpenSSL, because Debian 12's
 * hiredis has no TLS (issue 18; the alternative, a TLS sidecar such as stunnel, would be one more process
 * per client and plain text on the loopback). Timeouts on every socket operation (SO_RCVTIMEO and
 * SO_SNDTIMEO), error replies mapped to statuses, a connection marked dead after any I/O error. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <fcntl.h>
#include <arpa/inet.h>

#include <hiredis/hiredis.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "common/cli/secret.h"
#include "common/net/redis.h"

struct vs_redis {
    int fd;
    SSL_CTX *ctx; /* TLS ($VECSHARD_REDIS_CA); NULL = plain text */
    SSL *ssl;
    redisReader *reader;
    char *out; /* formatted commands not yet sent */
    size_t out_len, out_cap;
    char addr[300];
    size_t pending;
    vs_status dead; /* VS_OK while usable */
    char dead_msg[VS_ERR_LEN];
};

static vs_status reply_error(const vs_redis_t *r, const redisReply *rep, char err[VS_ERR_LEN])
{
    const char *s = rep->str ? rep->str : "";
    vs_status st = VS_ERR_INTERNAL;
    if (strncmp(s, "OOM", 3) == 0)
        st = VS_ERR_RESOURCE_EXHAUSTED;
    else if (strncmp(s, "NOPERM", 6) == 0 || strncmp(s, "NOAUTH", 6) == 0 ||
             strncmp(s, "WRONGPASS", 9) == 0 || strncmp(s, "READONLY", 8) == 0)
        st = VS_ERR_FAILED_PRECONDITION;
    else if (strncmp(s, "VSFENCE", 7) == 0)
        st = VS_ERR_FAILED_PRECONDITION;
    else if (strncmp(s, "LOADING", 7) == 0 || strncmp(s, "MISCONF", 7) == 0 || strncmp(s, "BUSY", 4) == 0)
        st = VS_ERR_UNAVAILABLE;
    return vs_errf(err, st, "redis %s: %s", r->addr, s);
}

/* Marks r dead with what (the first failure wins) and returns its error. */
static vs_status fail(vs_redis_t *r, const char *what, char err[VS_ERR_LEN])
{
    if (r->dead == VS_OK) {
        r->dead = VS_ERR_UNAVAILABLE;
        snprintf(r->dead_msg, sizeof r->dead_msg, "redis %.200s: %.250s", r->addr, what);
    }
    return vs_errf(err, r->dead, "%s", r->dead_msg);
}

/* The reason of a failed socket or TLS call. */
static const char *io_reason(vs_redis_t *r, int ret, char *buf, size_t n)
{
    if (r->ssl) {
        int e = SSL_get_error(r->ssl, ret);
        unsigned long q = ERR_get_error();
        if (q) {
            ERR_error_string_n(q, buf, n);
            return buf;
        }
        if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && errno == 0))
            return "connection closed by the server";
    } else if (ret == 0) {
        return "connection closed by the server";
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK)
        return "timed out";
    snprintf(buf, n, "%s", strerror(errno));
    return buf;
}

static vs_status write_all(vs_redis_t *r, const char *p, size_t n, char err[VS_ERR_LEN])
{
    char why[256];
    while (n > 0) {
        int chunk = n > (1u << 30) ? 1 << 30 : (int)n;
        errno = 0;
        ssize_t w = r->ssl ? SSL_write(r->ssl, p, chunk) : send(r->fd, p, (size_t)chunk, MSG_NOSIGNAL);
        if (w <= 0) {
            if (!r->ssl && w < 0 && errno == EINTR)
                continue;
            return fail(r, io_reason(r, (int)w, why, sizeof why), err);
        }
        p += w;
        n -= (size_t)w;
    }
    return VS_OK;
}

/* Reads one reply; VS_OK with *out set, or the connection's error. */
static vs_status read_reply(vs_redis_t *r, redisReply **out, char err[VS_ERR_LEN])
{
    char buf[16384], why[256];
    for (;;) {
        void *rep = NULL;
        if (redisReaderGetReply(r->reader, &rep) != REDIS_OK) {
            snprintf(why, sizeof why, "protocol error: %s", r->reader->errstr);
            return fail(r, why, err);
        }
        if (rep) {
            *out = rep;
            return VS_OK;
        }
        errno = 0;
        ssize_t n = r->ssl ? SSL_read(r->ssl, buf, sizeof buf) : recv(r->fd, buf, sizeof buf, 0);
        if (n <= 0) {
            if (!r->ssl && n < 0 && errno == EINTR)
                continue;
            return fail(r, io_reason(r, (int)n, why, sizeof why), err);
        }
        if (redisReaderFeed(r->reader, buf, (size_t)n) != REDIS_OK)
            return fail(r, "out of memory", err);
    }
}

/* A TCP connection to host:port within timeout_ms (<= 0: the system's), with timeout_ms on every later
 * read and write. -1 with err. */
static int tcp_connect(const char *host, int port, int timeout_ms, char err[VS_ERR_LEN], const char *addr)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    int gai = getaddrinfo(host, ps, &hints, &res);
    if (gai != 0) {
        vs_errf(err, VS_ERR_UNAVAILABLE, "redis %s: cannot connect: %s", addr, gai_strerror(gai));
        return -1;
    }
    int fd = -1, last = 0;
    for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            last = errno;
            continue;
        }
        int fl = fcntl(fd, F_GETFL);
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
        int rc = connect(fd, a->ai_addr, a->ai_addrlen);
        if (rc != 0 && errno == EINPROGRESS) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            int pr = poll(&pfd, 1, timeout_ms > 0 ? timeout_ms : -1);
            int soerr = 0;
            socklen_t sl = sizeof soerr;
            if (pr == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0)
                rc = 0;
            else
                errno = pr == 0 ? ETIMEDOUT : soerr ? soerr : errno;
        }
        if (rc != 0) {
            last = errno;
            close(fd);
            fd = -1;
            continue;
        }
        fcntl(fd, F_SETFL, fl);
    }
    freeaddrinfo(res);
    if (fd < 0) {
        vs_errf(err, VS_ERR_UNAVAILABLE, "redis %s: cannot connect: %s", addr, strerror(last));
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (timeout_ms > 0) {
        struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    }
    return fd;
}

/* TLS over r->fd when $VECSHARD_REDIS_CA is set: the server's certificate must chain to it and name host
 * (or $VECSHARD_REDIS_SERVER_NAME); $VECSHARD_REDIS_CERT + _KEY are the client certificate (Redis's
 * default tls-auth-clients asks for one). */
static vs_status tls_start(vs_redis_t *r, const char *host, char err[VS_ERR_LEN])
{
    const char *ca = vs_secret_getenv("VECSHARD_REDIS_CA"), *cert = vs_secret_getenv("VECSHARD_REDIS_CERT");
    const char *key = vs_secret_getenv("VECSHARD_REDIS_KEY"),
               *name = vs_secret_getenv("VECSHARD_REDIS_SERVER_NAME");
    char why[256];
    if (!ca)
        return VS_OK;
    if (!cert != !key)
        return vs_errf(
            err, VS_ERR_INVALID_ARGUMENT,
            "redis: a client certificate needs its key: $VECSHARD_REDIS_CERT, $VECSHARD_REDIS_KEY");
    if (!name)
        name = host;
    r->ctx = SSL_CTX_new(TLS_client_method());
    if (!r->ctx)
        return vs_errf(err, VS_ERR_NOMEM, "redis: cannot create a TLS context");
    SSL_CTX_set_min_proto_version(r->ctx, TLS1_2_VERSION);
    SSL_CTX_set_default_passwd_cb(r->ctx, vs_secret_no_passphrase);
    SSL_CTX_set_verify(r->ctx, SSL_VERIFY_PEER, NULL);
    if (SSL_CTX_load_verify_locations(r->ctx, ca, NULL) != 1)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "redis: $VECSHARD_REDIS_CA %s: %s", ca,
                       ERR_error_string(ERR_get_error(), why));
    if (cert && (SSL_CTX_use_certificate_chain_file(r->ctx, cert) != 1 ||
                 SSL_CTX_use_PrivateKey_file(r->ctx, key, SSL_FILETYPE_PEM) != 1 ||
                 SSL_CTX_check_private_key(r->ctx) != 1))
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "redis: client certificate %s / key %s: %s", cert, key,
                       ERR_error_string(ERR_get_error(), why));
    r->ssl = SSL_new(r->ctx);
    if (!r->ssl || SSL_set_fd(r->ssl, r->fd) != 1)
        return vs_errf(err, VS_ERR_NOMEM, "redis: cannot create a TLS connection");
    /* the name to verify: an IP address is matched against the certificate's IP SANs, a name against its
     * DNS SANs (and sent as SNI) */
    struct in6_addr a6;
    struct in_addr a4;
    int is_ip = inet_pton(AF_INET, name, &a4) == 1 || inet_pton(AF_INET6, name, &a6) == 1;
    X509_VERIFY_PARAM *vp = SSL_get0_param(r->ssl);
    if (is_ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, name) != 1 : SSL_set1_host(r->ssl, name) != 1)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "redis: cannot verify the server name '%s'", name);
    if (!is_ip)
        SSL_set_tlsext_host_name(r->ssl, name);
    ERR_clear_error();
    errno = 0;
    int rc = SSL_connect(r->ssl);
    if (rc != 1) {
        long v = SSL_get_verify_result(r->ssl);
        const char *reason =
            v != X509_V_OK ? X509_verify_cert_error_string(v) : io_reason(r, rc, why, sizeof why);
        return vs_errf(err, VS_ERR_UNAVAILABLE, "redis %s: TLS handshake failed: %s", r->addr, reason);
    }
    return VS_OK;
}

vs_status vs_redis_open(const char *addr, int timeout_ms, const char *user, const char *password,
                        vs_redis_t **out, char err[VS_ERR_LEN])
{
    char host[256];
    int port = 6379;
    const char *colon = strrchr(addr, ':');
    size_t hl = colon ? (size_t)(colon - addr) : strlen(addr);
    if (hl == 0 || hl >= sizeof host)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "redis address '%s': expected host:port", addr);
    memcpy(host, addr, hl);
    host[hl] = 0;
    if (colon) {
        char *end;
        long p = strtol(colon + 1, &end, 10);
        if (*end || p < 1 || p > 65535)
            return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "redis address '%s': bad port", addr);
        port = (int)p;
    }
    vs_redis_t *r = calloc(1, sizeof *r);
    if (!r)
        return vs_errf(err, VS_ERR_NOMEM, "redis: out of memory");
    r->fd = -1;
    snprintf(r->addr, sizeof r->addr, "%s:%d", host, port);
    vs_status st = VS_OK;
    if (!(r->reader = redisReaderCreate()))
        st = vs_errf(err, VS_ERR_NOMEM, "redis: out of memory");
    else if ((r->fd = tcp_connect(host, port, timeout_ms, err, r->addr)) < 0)
        st = VS_ERR_UNAVAILABLE;
    else
        st = tls_start(r, host, err);
    if (st == VS_OK && password) {
        st = user ? vs_redis_commandl(r, NULL, err, "AUTH", user, password, (char *)NULL)
                  : vs_redis_commandl(r, NULL, err, "AUTH", password, (char *)NULL);
        if (r->out)
            memset(r->out, 0, r->out_cap); /* the AUTH command's bytes */
    }
    if (st != VS_OK) {
        vs_redis_close(r);
        return st;
    }
    *out = r;
    return VS_OK;
}

void vs_redis_close(vs_redis_t *r)
{
    if (!r)
        return;
    if (r->ssl)
        SSL_free(r->ssl); /* no close_notify: a blocked peer must not stall close */
    if (r->ctx)
        SSL_CTX_free(r->ctx);
    if (r->fd >= 0)
        close(r->fd);
    if (r->reader)
        redisReaderFree(r->reader);
    free(r->out);
    free(r);
}

const char *vs_redis_addr(const vs_redis_t *r)
{
    return r->addr;
}

void vs_redis_reply_free(struct redisReply *reply)
{
    if (reply)
        freeReplyObject(reply);
}

vs_status vs_redis_append(vs_redis_t *r, int argc, const char *const *argv, const size_t *lens,
                          char err[VS_ERR_LEN])
{
    if (r->dead != VS_OK)
        return vs_errf(err, r->dead, "%s", r->dead_msg);
    if (r->pending >= VS_REDIS_PIPELINE_MAX)
        return vs_errf(err, VS_ERR_OUT_OF_RANGE, "redis: more than %d commands queued",
                       VS_REDIS_PIPELINE_MAX);
    char *cmd = NULL;
    int len = redisFormatCommandArgv(&cmd, argc, (const char **)argv, lens);
    if (len < 0 || !cmd)
        return vs_errf(err, VS_ERR_NOMEM, "redis: out of memory formatting a command");
    if (r->out_len + (size_t)len > r->out_cap) {
        size_t cap = r->out_cap ? r->out_cap : 65536;
        while (cap < r->out_len + (size_t)len)
            cap *= 2;
        char *p = realloc(r->out, cap);
        if (!p) {
            redisFreeCommand(cmd);
            return vs_errf(err, VS_ERR_NOMEM, "redis: out of memory queueing a command");
        }
        r->out = p;
        r->out_cap = cap;
    }
    memcpy(r->out + r->out_len, cmd, (size_t)len);
    r->out_len += (size_t)len;
    memset(cmd, 0, (size_t)len); /* it may be AUTH's */
    redisFreeCommand(cmd);
    r->pending++;
    return VS_OK;
}

vs_status vs_redis_flush(vs_redis_t *r, char err[VS_ERR_LEN])
{
    if (r->dead != VS_OK)
        return vs_errf(err, r->dead, "%s", r->dead_msg);
    vs_status st = write_all(r, r->out, r->out_len, err);
    r->out_len = 0;
    return st;
}

vs_status vs_redis_collect(vs_redis_t *r, char err[VS_ERR_LEN])
{
    vs_status first = VS_OK;
    if (r->out_len > 0 && (first = vs_redis_flush(r, err)) != VS_OK)
        return first;
    while (r->pending > 0) {
        if (r->dead != VS_OK)
            return vs_errf(err, r->dead, "%s", r->dead_msg);
        redisReply *rep = NULL;
        vs_status st = read_reply(r, &rep, first == VS_OK ? err : NULL);
        if (st != VS_OK)
            return first != VS_OK ? first : st;
        r->pending--;
        if (rep->type == REDIS_REPLY_ERROR && first == VS_OK)
            first = reply_error(r, rep, err);
        freeReplyObject(rep);
    }
    return first;
}

size_t vs_redis_pending(const vs_redis_t *r)
{
    return r->pending;
}

vs_status vs_redis_command(vs_redis_t *r, int argc, const char *const *argv, const size_t *lens,
                           struct redisReply **out_reply, char err[VS_ERR_LEN])
{
    vs_status st = vs_redis_collect(r, err); /* a command is never read before what was queued ahead */
    if (st != VS_OK)
        return st;
    if ((st = vs_redis_append(r, argc, argv, lens, err)) != VS_OK || (st = vs_redis_flush(r, err)) != VS_OK)
        return st;
    redisReply *rep = NULL;
    if ((st = read_reply(r, &rep, err)) != VS_OK)
        return st;
    r->pending--;
    if (rep->type == REDIS_REPLY_ERROR) {
        st = reply_error(r, rep, err);
        freeReplyObject(rep);
        return st;
    }
    if (out_reply)
        *out_reply = rep;
    else
        freeReplyObject(rep);
    return VS_OK;
}

vs_status vs_redis_commandl(vs_redis_t *r, struct redisReply **out_reply, char err[VS_ERR_LEN], ...)
{
    const char *argv[16];
    int argc = 0;
    va_list ap;
    va_start(ap, err);
    for (const char *a; (a = va_arg(ap, const char *)) != NULL;) {
        if (argc == 16) {
            va_end(ap);
            return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "redis: more than 16 arguments");
        }
        argv[argc++] = a;
    }
    va_end(ap);
    return vs_redis_command(r, argc, argv, NULL, out_reply, err);
}

vs_status vs_redis_info_str(vs_redis_t *r, const char *section, const char *field, char *buf, size_t n,
                            char err[VS_ERR_LEN])
{
    redisReply *rep = NULL;
    vs_status st = vs_redis_commandl(r, &rep, err, "INFO", section, (char *)NULL);
    if (st != VS_OK)
        return st;
    st = vs_errf(err, VS_ERR_NOT_FOUND, "redis %s: INFO %s has no field %s", r->addr, section, field);
    size_t fl = strlen(field);
    if (rep->type == REDIS_REPLY_STRING || rep->type == REDIS_REPLY_STATUS)
        for (const char *p = rep->str; p && *p;) {
            const char *nl = strchr(p, '\n');
            if (strncmp(p, field, fl) == 0 && p[fl] == ':') {
                size_t vl = nl ? (size_t)(nl - p) - fl - 1 : strlen(p + fl + 1);
                while (vl > 0 && (p[fl + 1 + vl - 1] == '\r'))
                    vl--;
                snprintf(buf, n, "%.*s", (int)vl, p + fl + 1);
                st = VS_OK;
                break;
            }
            p = nl ? nl + 1 : NULL;
        }
    freeReplyObject(rep);
    return st;
}

vs_status vs_redis_info_u64(vs_redis_t *r, const char *section, const char *field, uint64_t *out,
                            char err[VS_ERR_LEN])
{
    char buf[32];
    vs_status st = vs_redis_info_str(r, section, field, buf, sizeof buf, err);
    if (st == VS_OK)
        *out = strtoull(buf, NULL, 10);
    return st;
}
