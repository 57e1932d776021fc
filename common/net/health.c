/* health.c: the grpc.health.v1 registry and its two handlers (health.h). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/net/health.h"
#include "grpc/health/v1/health.pb-c.h"

#define MAX_SERVICES 16
#define MAX_WATCHERS 64
#define NAME_LEN 128

typedef struct watcher {
    vs_rpc_stream_t *stream;
    char service[NAME_LEN];
} watcher_t;

struct vs_health {
    pthread_mutex_t mu;
    char names[MAX_SERVICES][NAME_LEN];
    vs_health_status status[MAX_SERVICES];
    size_t n;
    watcher_t watchers[MAX_WATCHERS];
    size_t n_watchers;
    int closed;
};

vs_status vs_health_create(vs_health_t **out, char err[VS_ERR_LEN])
{
    vs_health_t *h = calloc(1, sizeof *h);
    if (!h)
        return vs_errf(err, VS_ERR_NOMEM, "health: out of memory");
    pthread_mutex_init(&h->mu, NULL);
    *out = h;
    return VS_OK;
}

void vs_health_close_watchers(vs_health_t *h)
{
    pthread_mutex_lock(&h->mu);
    h->closed = 1;
    for (size_t i = 0; i < h->n_watchers; i++) {
        vs_rpc_stream_finish(h->watchers[i].stream, VS_GRPC_OK, "");
        vs_rpc_stream_release(h->watchers[i].stream);
    }
    h->n_watchers = 0;
    pthread_mutex_unlock(&h->mu);
}

void vs_health_destroy(vs_health_t *h)
{
    if (!h)
        return;
    vs_health_close_watchers(h);
    pthread_mutex_destroy(&h->mu);
    free(h);
}

static int find(const vs_health_t *h, const char *service)
{
    for (size_t i = 0; i < h->n; i++)
        if (strcmp(h->names[i], service) == 0)
            return (int)i;
    return -1;
}

/* Encodes a HealthCheckResponse into buf (a few bytes). */
static size_t encode(vs_health_status st, uint8_t buf[16])
{
    Grpc__Health__V1__HealthCheckResponse r = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    r.status = (Grpc__Health__V1__HealthCheckResponse__ServingStatus)st;
    return grpc__health__v1__health_check_response__pack(&r, buf);
}

/* Sends st to the watchers of service when send is set (h->mu held); drops closed streams. */
static void notify(vs_health_t *h, const char *service, vs_health_status st, int send)
{
    uint8_t buf[16];
    size_t len = encode(st, buf);
    size_t j = 0;
    for (size_t i = 0; i < h->n_watchers; i++) {
        watcher_t *w = &h->watchers[i];
        if (vs_rpc_stream_closed(w->stream)) {
            vs_rpc_stream_release(w->stream);
            continue;
        }
        if (send && strcmp(w->service, service) == 0)
            vs_rpc_stream_send(w->stream, buf, len);
        h->watchers[j++] = *w;
    }
    h->n_watchers = j;
}

void vs_health_set(vs_health_t *h, const char *service, vs_health_status st)
{
    pthread_mutex_lock(&h->mu);
    int i = find(h, service);
    if (i < 0 && h->n < MAX_SERVICES && strlen(service) < NAME_LEN) {
        i = (int)h->n++;
        snprintf(h->names[i], NAME_LEN, "%s", service);
    }
    if (i >= 0 && h->status[i] != st) {
        h->status[i] = st;
        notify(h, service, st, 1);
    }
    pthread_mutex_unlock(&h->mu);
}

vs_health_status vs_health_get(vs_health_t *h, const char *service)
{
    pthread_mutex_lock(&h->mu);
    int i = find(h, service);
    vs_health_status st = i < 0 ? VS_HEALTH_SERVICE_UNKNOWN : h->status[i];
    pthread_mutex_unlock(&h->mu);
    return st;
}

static void check(void *user, const vs_rpc_call_t *call, const uint8_t *req, size_t len,
                  vs_rpc_reply_t *reply)
{
    (void)call;
    vs_health_t *h = user;
    Grpc__Health__V1__HealthCheckRequest *r = grpc__health__v1__health_check_request__unpack(NULL, len, req);
    if (!r) {
        reply->code = VS_GRPC_INVALID_ARGUMENT;
        snprintf(reply->message, sizeof reply->message, "malformed HealthCheckRequest");
        return;
    }
    vs_health_status st = vs_health_get(h, r->service ? r->service : "");
    if (st == VS_HEALTH_SERVICE_UNKNOWN) {
        reply->code = VS_GRPC_NOT_FOUND;
        snprintf(reply->message, sizeof reply->message, "unknown service \"%.200s\"", r->service);
    } else {
        reply->body = malloc(16);
        if (!reply->body) {
            reply->code = VS_GRPC_INTERNAL;
        } else {
            reply->body_len = encode(st, reply->body);
        }
    }
    grpc__health__v1__health_check_request__free_unpacked(r, NULL);
}

static void watch(void *user, vs_rpc_stream_t *stream, const uint8_t *req, size_t len)
{
    vs_health_t *h = user;
    Grpc__Health__V1__HealthCheckRequest *r = grpc__health__v1__health_check_request__unpack(NULL, len, req);
    if (!r) {
        vs_rpc_stream_finish(stream, VS_GRPC_INVALID_ARGUMENT, "malformed HealthCheckRequest");
        vs_rpc_stream_release(stream);
        return;
    }
    const char *service = r->service ? r->service : "";
    pthread_mutex_lock(&h->mu);
    notify(h, "", VS_HEALTH_UNKNOWN, 0); /* drop watchers whose client has gone */
    if (h->closed || h->n_watchers == MAX_WATCHERS || strlen(service) >= NAME_LEN) {
        pthread_mutex_unlock(&h->mu);
        vs_rpc_stream_finish(stream, VS_GRPC_UNAVAILABLE,
                             h->closed ? "server stopping" : "too many health watchers");
        vs_rpc_stream_release(stream);
        grpc__health__v1__health_check_request__free_unpacked(r, NULL);
        return;
    }
    int i = find(h, service);
    uint8_t buf[16];
    size_t n = encode(i < 0 ? VS_HEALTH_SERVICE_UNKNOWN : h->status[i], buf);
    vs_rpc_stream_send(stream, buf, n);
    watcher_t *w = &h->watchers[h->n_watchers++];
    w->stream = stream;
    snprintf(w->service, NAME_LEN, "%s", service);
    pthread_mutex_unlock(&h->mu);
    grpc__health__v1__health_check_request__free_unpacked(r, NULL);
}

void vs_health_methods(vs_health_t *h, vs_rpc_method_t out[2])
{
    out[0] = (vs_rpc_method_t){.path = "/grpc.health.v1.Health/Check", .unary = check, .user = h};
    out[1] = (vs_rpc_method_t){.path = "/grpc.health.v1.Health/Watch", .stream = watch, .user = h};
}
