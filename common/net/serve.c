/* serve.c: see serve.h. */
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "common/net/serve.h"

vs_status vs_rpc_metrics_init(vs_rpc_metrics_t *m, vs_metrics_t *reg, char err[VS_ERR_LEN])
{
    static const char *const labels[] = {"grpc_type", "grpc_service", "grpc_method", "grpc_code"};
    m->handled =
        vs_metrics_counter(reg, "grpc_server_handled_total",
                           "RPCs completed on the server, regardless of success or failure.", 4, labels);
    m->handling =
        vs_metrics_histogram(reg, "grpc_server_handling_seconds",
                             "Response latency of RPCs handled by the server (arrival at a worker to the "
                             "reply being queued).",
                             3, labels, vs_metrics_fine_buckets, VS_METRICS_FINE_BUCKETS_N);
    if (!m->handled || !m->handling)
        return vs_errf(err, VS_ERR_INTERNAL, "metrics: %s", vs_metrics_last_error(reg));
    return VS_OK;
}

void vs_rpc_metrics_on_done(void *user, const char *path, int code, double seconds)
{
    vs_rpc_metrics_t *m = user;
    char service[128] = "unknown", method[128] = "unknown";
    const char *slash = path && path[0] == '/' ? strchr(path + 1, '/') : NULL;
    if (slash) {
        snprintf(service, sizeof service, "%.*s", (int)(slash - path - 1), path + 1);
        snprintf(method, sizeof method, "%s", slash + 1);
    }
    vs_counter_inc(VS_COUNTER_WITH(m->handled, "unary", service, method, vs_grpc_code_label(code)));
    if (slash)
        vs_histogram_observe(VS_HISTOGRAM_WITH(m->handling, "unary", service, method), seconds);
}

void vs_serve_raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    rlim_t want = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > 65536 ? 65536 : rl.rlim_max;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
        rl.rlim_cur = want;
        (void)setrlimit(RLIMIT_NOFILE, &rl); /* best effort: the HTTP server sizes itself to what it got */
    }
}

/* /readyz: health's "" service. */
static int readyz(void *user, char **out_body, size_t *out_len, const char **out_content_type)
{
    int ok = vs_health_get(user, "") == VS_HEALTH_SERVING;
    *out_body = strdup(ok ? "SERVING\n" : "NOT_SERVING\n");
    *out_len = *out_body ? strlen(*out_body) : 0;
    *out_content_type = "text/plain; charset=utf-8";
    return ok ? 200 : 503;
}

vs_status vs_serve_http(const char *listen, vs_metrics_t *reg, vs_health_t *health, vs_http_t **out,
                        int *out_port, char err[VS_ERR_LEN])
{
    *out = NULL;
    *out_port = 0;
    if (!listen || strcmp(listen, "none") == 0)
        return VS_OK;
    const char *colon = strrchr(listen, ':');
    char host[256], *end;
    long port = colon ? strtol(colon + 1, &end, 10) : -1;
    if (!colon || colon == listen || *end || port < 0 || port > 65535 ||
        (size_t)(colon - listen) >= sizeof host)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "metrics address '%s' is not host:port", listen);
    snprintf(host, sizeof host, "%.*s", (int)(colon - listen), listen);
    uint16_t bound = 0;
    vs_status st = vs_http_start(host, (uint16_t)port, reg, out, &bound, err);
    if (st == VS_OK && health && (st = vs_http_add_handler(*out, "/readyz", readyz, health)) != VS_OK) {
        vs_http_stop(*out);
        *out = NULL;
        return vs_errf(err, st, "metrics: cannot add /readyz");
    }
    if (st == VS_OK)
        *out_port = bound;
    return st;
}

int vs_serve_write_port_file(const char *path, int grpc_port, int metrics_port)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return -1;
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -1;
    int ok = fprintf(f, "grpc=%d\nmetrics=%d\n", grpc_port, metrics_port) > 0;
    ok &= fclose(f) == 0;
    return ok && rename(tmp, path) == 0 ? 0 : -1;
}

void vs_serve_block_signals(sigset_t *out)
{
    sigemptyset(out);
    sigaddset(out, SIGTERM);
    sigaddset(out, SIGINT);
    pthread_sigmask(SIG_BLOCK, out, NULL);
    signal(SIGPIPE, SIG_IGN);
}
