/* http.c: /metrics, /healthz and owner-added endpoints on libmicrohttpd (internal polling thread).
 *
 * Every request is answered from the first call of the access handler: only GET and HEAD are served,
 * and request bodies are never read (a body-carrying method gets 405 and MHD closes the connection).
 * Bind errors are captured through MHD's logger while starting, so the caller gets them in err. Idle and
 * slow clients cannot starve scrapes: see connection_limit(). */
#include "common/net/http.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>

typedef struct handler {
    char *path;
    vs_http_handler_fn fn;
    void *user;
} handler_t;

struct vs_http {
    struct MHD_Daemon *daemon;
    vs_metrics_t *reg;
    pthread_mutex_t mu; /* guards handlers and log */
    handler_t handlers[VS_HTTP_MAX_HANDLERS];
    size_t nhandlers;
    int starting; /* MHD log lines go to log only while starting */
    char log[VS_ERR_LEN];
};

static void on_log(void *cls, const char *fmt, va_list ap)
{
    vs_http_t *h = cls;
    pthread_mutex_lock(&h->mu);
    if (h->starting && h->log[0] == '\0') {
        vsnprintf(h->log, sizeof h->log, fmt, ap);
        size_t n = strlen(h->log);
        while (n > 0 && (h->log[n - 1] == '\n' || h->log[n - 1] == ' '))
            h->log[--n] = '\0';
    }
    pthread_mutex_unlock(&h->mu);
}

/* Queues a response; body (malloc'd or NULL) is taken. */
static enum MHD_Result reply(struct MHD_Connection *conn, unsigned code, char *body, size_t len,
                             const char *content_type, int allow_header)
{
    struct MHD_Response *r = body ? MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE)
                                  : MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    if (allow_header)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    enum MHD_Result ret = MHD_queue_response(conn, code, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result reply_text(struct MHD_Connection *conn, unsigned code, const char *text,
                                  int allow_header)
{
    char *body = strdup(text);
    if (!body)
        return MHD_NO;
    return reply(conn, code, body, strlen(body), "text/plain; charset=utf-8", allow_header);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **req_cls)
{
    (void)version;
    (void)upload_data;
    (void)upload_data_size;
    (void)req_cls;
    vs_http_t *h = cls;
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return reply_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n", 1);
    if (strcmp(url, "/metrics") == 0 && h->reg) {
        char *text;
        size_t len;
        if (vs_metrics_format(h->reg, &text, &len) != VS_OK)
            return reply_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n", 0);
        return reply(conn, MHD_HTTP_OK, text, len, VS_HTTP_METRICS_CONTENT_TYPE, 0);
    }
    if (strcmp(url, "/healthz") == 0)
        return reply_text(conn, MHD_HTTP_OK, "ok\n", 0);

    vs_http_handler_fn fn = NULL;
    void *user = NULL;
    pthread_mutex_lock(&h->mu);
    for (size_t i = 0; i < h->nhandlers; i++)
        if (strcmp(h->handlers[i].path, url) == 0) {
            fn = h->handlers[i].fn;
            user = h->handlers[i].user;
        }
    pthread_mutex_unlock(&h->mu);
    if (!fn)
        return reply_text(conn, MHD_HTTP_NOT_FOUND, "not found\n", 0);
    char *body = NULL;
    size_t len = 0;
    const char *ctype = "text/plain; charset=utf-8";
    int code = fn(user, &body, &len, &ctype);
    if (code < 100 || code > 599) {
        free(body);
        return reply_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "bad handler status\n", 0);
    }
    return reply(conn, (unsigned)code, body, body ? len : 0, ctype ? ctype : "text/plain; charset=utf-8", 0);
}

/* The connection table must outlast hostile clients: one polling thread (epoll) serves every connection
 * without blocking, so idle or slow (1 byte/s) connections only hold a slot, and a scrape succeeds as
 * long as a slot is free. VS_HTTP_MAX_CONNECTIONS slots, but at most half the descriptors the process may
 * open (the rest are the gRPC server's and clients'), and never fewer than 64. */
static unsigned connection_limit(void)
{
    struct rlimit rl;
    rlim_t n = VS_HTTP_MAX_CONNECTIONS;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur / 2 < n)
        n = rl.rlim_cur / 2;
    return n < 64 ? 64u : (unsigned)n;
}

static void http_free(vs_http_t *h)
{
    for (size_t i = 0; i < h->nhandlers; i++)
        free(h->handlers[i].path);
    pthread_mutex_destroy(&h->mu);
    free(h);
}

vs_status vs_http_start(const char *bind_addr, uint16_t port, vs_metrics_t *reg, vs_http_t **out,
                        uint16_t *out_port, char *err)
{
    if (!out)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "vs_http_start: out is NULL");
    if (!bind_addr)
        bind_addr = "0.0.0.0";
    struct sockaddr_in a4;
    struct sockaddr_in6 a6;
    struct sockaddr *sa;
    unsigned flags = MHD_USE_AUTO | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
    memset(&a4, 0, sizeof a4);
    memset(&a6, 0, sizeof a6);
    if (inet_pton(AF_INET, bind_addr, &a4.sin_addr) == 1) {
        a4.sin_family = AF_INET;
        a4.sin_port = htons(port);
        sa = (struct sockaddr *)&a4;
    } else if (inet_pton(AF_INET6, bind_addr, &a6.sin6_addr) == 1) {
        a6.sin6_family = AF_INET6;
        a6.sin6_port = htons(port);
        sa = (struct sockaddr *)&a6;
        flags |= MHD_USE_IPv6;
    } else {
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "http: bind address '%s' is not a numeric IP address",
                       bind_addr);
    }

    vs_http_t *h = calloc(1, sizeof *h);
    if (!h)
        return vs_errf(err, VS_ERR_NOMEM, "http: out of memory");
    if (pthread_mutex_init(&h->mu, NULL) != 0) {
        free(h);
        return vs_errf(err, VS_ERR_INTERNAL, "http: mutex init failed");
    }
    h->reg = reg;
    h->starting = 1;
    h->daemon =
        MHD_start_daemon(flags, port, NULL, NULL, on_request, h, MHD_OPTION_SOCK_ADDR, sa,
                         MHD_OPTION_CONNECTION_LIMIT, connection_limit(), MHD_OPTION_CONNECTION_TIMEOUT,
                         (unsigned)10, MHD_OPTION_EXTERNAL_LOGGER, on_log, h, MHD_OPTION_END);
    pthread_mutex_lock(&h->mu);
    h->starting = 0;
    pthread_mutex_unlock(&h->mu);
    if (!h->daemon) {
        vs_status s = vs_errf(err, VS_ERR_UNAVAILABLE, "http: cannot serve on %s:%u: %s", bind_addr,
                              (unsigned)port, h->log[0] ? h->log : "libmicrohttpd refused to start");
        http_free(h);
        return s;
    }
    if (out_port) {
        const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
        if (!info || info->port == 0) {
            MHD_stop_daemon(h->daemon);
            http_free(h);
            return vs_errf(err, VS_ERR_INTERNAL, "http: cannot read the bound port");
        }
        *out_port = info->port;
    }
    *out = h;
    return VS_OK;
}

void vs_http_stop(vs_http_t *h)
{
    if (!h)
        return;
    MHD_stop_daemon(h->daemon);
    http_free(h);
}

vs_status vs_http_add_handler(vs_http_t *h, const char *path, vs_http_handler_fn fn, void *user)
{
    if (!h || !path || path[0] != '/' || !fn || strcmp(path, "/metrics") == 0 ||
        strcmp(path, "/healthz") == 0)
        return VS_ERR_INVALID_ARGUMENT;
    vs_status s = VS_OK;
    pthread_mutex_lock(&h->mu);
    size_t i = 0;
    while (i < h->nhandlers && strcmp(h->handlers[i].path, path) != 0)
        i++;
    if (i < h->nhandlers) {
        h->handlers[i].fn = fn;
        h->handlers[i].user = user;
    } else if (h->nhandlers == VS_HTTP_MAX_HANDLERS) {
        s = VS_ERR_RESOURCE_EXHAUSTED;
    } else {
        char *p = strdup(path);
        if (!p) {
            s = VS_ERR_NOMEM;
        } else {
            h->handlers[i] = (handler_t){p, fn, user};
            h->nhandlers++;
        }
    }
    pthread_mutex_unlock(&h->mu);
    return s;
}
