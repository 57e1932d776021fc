/* etcd_fixture.c: a real etcd for tests (etcd_fixture.h) on the generic process fixture (proc_fixture.h):
 * etcd's arguments (a one-member cluster on two loopback ports) and its health check (GET /health,
 * polled with libcurl). */
#include "tests/integration/etcd_fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "tests/integration/proc_fixture.h"

struct vs_etcd_fixture {
    vs_proc_fixture_t *p;
    char endpoint[96];
};

typedef struct small_body {
    char buf[256];
    size_t n;
} small_body_t;

static size_t keep_head(char *p, size_t size, size_t nmemb, void *ud)
{
    small_body_t *b = ud;
    size_t n = size * nmemb, room = sizeof b->buf - 1 - b->n;
    size_t take = n < room ? n : room;
    memcpy(b->buf + b->n, p, take);
    b->n += take;
    b->buf[b->n] = '\0';
    return n;
}

/* One GET /health; 1 when etcd says {"health":"true"}. */
static int healthy(const vs_proc_fixture_t *p)
{
    CURL *h = curl_easy_init();
    if (h == NULL)
        return 0;
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/health", vs_proc_fixture_port(p, 0));
    small_body_t b = {{0}, 0};
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 1000L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, keep_head);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    long code = 0;
    int ok = curl_easy_perform(h) == CURLE_OK &&
             curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code) == CURLE_OK && code == 200;
    curl_easy_cleanup(h);
    return ok && strstr(b.buf, "\"health\":\"true\"") != NULL;
}

/* etcd's command line: ports[0] is the client port, ports[1] the peer port. */
static void etcd_argv(const vs_proc_fixture_t *p, char **argv, char *buf, size_t cap)
{
    const char *name = vs_proc_fixture_name(p);
    int cp = vs_proc_fixture_port(p, 0), pp = vs_proc_fixture_port(p, 1);
    size_t off = 0;
    char *client = vs_proc_fixture_arg(buf, cap, &off, "http://127.0.0.1:%d", cp);
    char *peer = vs_proc_fixture_arg(buf, cap, &off, "http://127.0.0.1:%d", pp);
    char *cluster = vs_proc_fixture_arg(buf, cap, &off, "%s=http://127.0.0.1:%d", name, pp);
    char *data = vs_proc_fixture_arg(buf, cap, &off, "%s/data", vs_proc_fixture_dir(p));
    const char *v[] = {vs_proc_fixture_bin(p),
                       "--name",
                       name,
                       "--data-dir",
                       data,
                       "--listen-client-urls",
                       client,
                       "--advertise-client-urls",
                       client,
                       "--listen-peer-urls",
                       peer,
                       "--initial-advertise-peer-urls",
                       peer,
                       "--initial-cluster",
                       cluster,
                       "--initial-cluster-state",
                       "new",
                       NULL};
    for (size_t i = 0; i < sizeof v / sizeof *v; i++)
        argv[i] = (char *)v[i];
}

static const vs_proc_spec_t etcd_spec = {.what = "etcd",
                                         .bin_name = "etcd",
                                         .bin_env = "VS_ETCD_BIN",
                                         .package = "etcd-server",
                                         .n_ports = 2,
                                         .argv = etcd_argv,
                                         .ready = healthy,
                                         .data_subdir = "data"};

vs_status vs_etcd_fixture_start(const char *name, vs_etcd_fixture_t **out, char err[VS_ERR_LEN])
{
    static int curl_ready = 0;
    if (!curl_ready) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        curl_ready = 1;
    }
    *out = NULL;
    vs_etcd_fixture_t *f = calloc(1, sizeof *f);
    if (f == NULL)
        return vs_errf(err, VS_ERR_NOMEM, "etcd fixture: out of memory");
    vs_status st = vs_proc_fixture_start(&etcd_spec, name, NULL, &f->p, err);
    if (st != VS_OK) {
        free(f);
        return st;
    }
    snprintf(f->endpoint, sizeof f->endpoint, "http://127.0.0.1:%d", vs_proc_fixture_port(f->p, 0));
    *out = f;
    return VS_OK;
}

const char *vs_etcd_fixture_endpoint(const vs_etcd_fixture_t *f)
{
    return f->endpoint;
}

const char *vs_etcd_fixture_dir(const vs_etcd_fixture_t *f)
{
    return vs_proc_fixture_dir(f->p);
}

vs_status vs_etcd_fixture_stop(vs_etcd_fixture_t *f, char err[VS_ERR_LEN])
{
    return vs_proc_fixture_stop(f->p, err);
}

vs_status vs_etcd_fixture_kill(vs_etcd_fixture_t *f, char err[VS_ERR_LEN])
{
    return vs_proc_fixture_kill(f->p, err);
}

vs_status vs_etcd_fixture_pause(vs_etcd_fixture_t *f, char err[VS_ERR_LEN])
{
    return vs_proc_fixture_pause(f->p, err);
}

vs_status vs_etcd_fixture_resume(vs_etcd_fixture_t *f, char err[VS_ERR_LEN])
{
    return vs_proc_fixture_resume(f->p, err);
}

vs_status vs_etcd_fixture_restart(vs_etcd_fixture_t *f, char err[VS_ERR_LEN])
{
    return vs_proc_fixture_restart(f->p, err);
}

void vs_etcd_fixture_destroy(vs_etcd_fixture_t *f)
{
    if (f == NULL)
        return;
    vs_proc_fixture_destroy(f->p);
    free(f);
}
