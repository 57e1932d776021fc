/* writes.c: Upsert and Delete onto the write log (writes.h). */
#include "coordinator/writes.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/cli/ident.h"
#include "common/distance.h"
#include "common/net/wlog.h"
#include "common/topk.h"
#include "vecshard/v1/coordinator.pb-c.h"
#include "vecshard/v1/writelog.pb-c.h"

#define MAX_IDS_PER_WRITE 100000u

typedef struct job {
    int is_delete;
    uint8_t *req;
    size_t len;
    vs_writes_done_fn done;
    void *user;
    struct job *next;
} job_t;

struct vs_writes {
    vs_coord_t *coord;
    char url[512], cluster[128];
    pthread_mutex_t mu; /* log (re)connection */
    vs_wlog_t *log;
    atomic_ullong ok, refused, failed;
    pthread_mutex_t qmu; /* the queue */
    pthread_cond_t qcv;
    job_t *head, *tail;
    size_t queued;
    int stopping, joined;
    pthread_t thread;
};

static void *writer_main(void *arg);

vs_status vs_writes_create(const char *nats_url, const char *cluster, vs_coord_t *coord, vs_writes_t **out,
                           char err[VS_ERR_LEN])
{
    *out = NULL;
    vs_writes_t *w = calloc(1, sizeof *w);
    if (!w)
        return vs_errf(err, VS_ERR_NOMEM, "writes: out of memory");
    w->coord = coord;
    snprintf(w->url, sizeof w->url, "%s", nats_url);
    snprintf(w->cluster, sizeof w->cluster, "%s", cluster);
    pthread_mutex_init(&w->mu, NULL);
    pthread_mutex_init(&w->qmu, NULL);
    pthread_cond_init(&w->qcv, NULL);
    if (pthread_create(&w->thread, NULL, writer_main, w) != 0) {
        free(w);
        return vs_errf(err, VS_ERR_INTERNAL, "writes: cannot start the writer thread");
    }
    *out = w;
    return VS_OK;
}

void vs_writes_stop(vs_writes_t *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->qmu);
    int joined = w->joined;
    w->stopping = 1;
    w->joined = 1;
    pthread_cond_broadcast(&w->qcv);
    pthread_mutex_unlock(&w->qmu);
    if (!joined)
        pthread_join(w->thread, NULL);
}

void vs_writes_destroy(vs_writes_t *w)
{
    if (!w)
        return;
    vs_writes_stop(w);
    vs_wlog_close(w->log);
    pthread_mutex_destroy(&w->mu);
    pthread_mutex_destroy(&w->qmu);
    pthread_cond_destroy(&w->qcv);
    free(w);
}

vs_status vs_writes_submit(vs_writes_t *w, int is_delete, const uint8_t *req, size_t len,
                           vs_writes_done_fn done, void *user, char err[VS_ERR_LEN])
{
    job_t *j = calloc(1, sizeof *j);
    uint8_t *copy = j ? malloc(len ? len : 1) : NULL;
    if (!copy) {
        free(j);
        return vs_errf(err, VS_ERR_RESOURCE_EXHAUSTED, "no memory to queue a %zu-byte write", len);
    }
    memcpy(copy, req, len);
    *j = (job_t){.is_delete = is_delete, .req = copy, .len = len, .done = done, .user = user};
    pthread_mutex_lock(&w->qmu);
    vs_status st = VS_OK;
    if (w->stopping) {
        st = vs_errf(err, VS_ERR_UNAVAILABLE, "the coordinator is shutting down");
    } else if (w->queued >= VS_WRITES_MAX_QUEUE) {
        st = vs_errf(err, VS_ERR_RESOURCE_EXHAUSTED, "%d writes are waiting for the log already; retry later",
                     VS_WRITES_MAX_QUEUE);
    } else {
        if (w->tail)
            w->tail->next = j;
        else
            w->head = j;
        w->tail = j;
        w->queued++;
        pthread_cond_signal(&w->qcv);
    }
    pthread_mutex_unlock(&w->qmu);
    if (st != VS_OK) {
        free(copy);
        free(j);
    }
    return st;
}

static void *writer_main(void *arg)
{
    vs_writes_t *w = arg;
    for (;;) {
        pthread_mutex_lock(&w->qmu);
        while (!w->head && !w->stopping)
            pthread_cond_wait(&w->qcv, &w->qmu);
        job_t *j = w->head;
        if (j) {
            w->head = j->next;
            if (!w->head)
                w->tail = NULL;
            w->queued--;
        }
        pthread_mutex_unlock(&w->qmu);
        if (!j)
            break; /* stopping, and every queued write answered */
        /* queued writes are logged also while stopping: only new submissions are refused */
        char err[VS_ERR_LEN] = "";
        uint8_t *body = NULL;
        size_t blen = 0;
        vs_status st = j->is_delete ? vs_writes_delete_pb(w, j->req, j->len, &body, &blen, err)
                                    : vs_writes_upsert_pb(w, j->req, j->len, &body, &blen, err);
        j->done(j->user, st, err, body, blen);
        free(j->req);
        free(j);
    }
    return NULL;
}

void vs_writes_counts(vs_writes_t *w, uint64_t *ok, uint64_t *refused, uint64_t *failed)
{
    *ok = atomic_load(&w->ok);
    *refused = atomic_load(&w->refused);
    *failed = atomic_load(&w->failed);
}

static vs_status check_ids(const int64_t *ids, size_t n, char *err)
{
    if (n > MAX_IDS_PER_WRITE)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "%zu ids in one write; at most %u (split the request)",
                       n, MAX_IDS_PER_WRITE);
    vs_status st = vs_ids_check_write(ids, n, err);
    return st == VS_ERR_NOMEM ? VS_ERR_RESOURCE_EXHAUSTED : st;
}

/* The client's write id (checked) or a new random one. */
static vs_status write_id(const char *given, char out[VS_WLOG_WRITE_ID_MAX + 1], char *err)
{
    if (given && given[0]) {
        if (!vs_ident_valid(given, VS_WLOG_WRITE_ID_MAX))
            return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "write_id must be 1..%d printable ASCII characters",
                           VS_WLOG_WRITE_ID_MAX);
        snprintf(out, VS_WLOG_WRITE_ID_MAX + 1, "%s", given);
        return VS_OK;
    }
    vs_ident_random(out);
    return VS_OK;
}

/* Logs the message and answers with its position. */
static vs_status log_and_answer(vs_writes_t *w, Vecshard__V1__LogWrite *m, uint8_t **out, size_t *out_len,
                                char *err)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    m->logged_unix_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    size_t len = vecshard__v1__log_write__get_packed_size(m);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        return vs_errf(err, VS_ERR_RESOURCE_EXHAUSTED, "no memory for a %zu-byte write", len);
    vecshard__v1__log_write__pack(m, buf);
    pthread_mutex_lock(&w->mu);
    vs_status st = VS_OK;
    if (!w->log) {
        vs_wlog_opts_t o = {.url = w->url, .cluster = w->cluster, .timeout_ms = 5000};
        st = vs_wlog_open(&o, 1, &w->log, err);
    }
    vs_wlog_t *log = w->log;
    pthread_mutex_unlock(&w->mu);
    uint64_t seq = 0;
    int dup = 0;
    if (st == VS_OK)
        st = vs_wlog_append(log, buf, len, m->write_id, &seq, &dup, err);
    free(buf);
    if (st != VS_OK) {
        if (st == VS_ERR_INVALID_ARGUMENT) {
            atomic_fetch_add(&w->refused, 1);
        } else {
            atomic_fetch_add(&w->failed, 1);
            char tmp[VS_ERR_LEN];
            snprintf(tmp, sizeof tmp, "%s (write_id %s)", err, m->write_id);
            snprintf(err, VS_ERR_LEN, "%s", tmp);
            if (st != VS_ERR_RESOURCE_EXHAUSTED)
                st = VS_ERR_UNAVAILABLE;
        }
        return st;
    }
    Vecshard__V1__WriteResponse r = VECSHARD__V1__WRITE_RESPONSE__INIT;
    r.log_seq = seq;
    r.duplicate = dup != 0;
    r.write_id = m->write_id;
    *out_len = vecshard__v1__write_response__get_packed_size(&r);
    *out = malloc(*out_len ? *out_len : 1);
    if (!*out)
        return vs_errf(err, VS_ERR_RESOURCE_EXHAUSTED, "no memory for the answer");
    vecshard__v1__write_response__pack(&r, *out);
    atomic_fetch_add(&w->ok, 1);
    return VS_OK;
}

vs_status vs_writes_upsert_pb(vs_writes_t *w, const uint8_t *req, size_t len, uint8_t **out, size_t *out_len,
                              char err[VS_ERR_LEN])
{
    *out = NULL;
    *out_len = 0;
    Vecshard__V1__UpsertRequest *r = vecshard__v1__upsert_request__unpack(NULL, len, req);
    if (!r) {
        atomic_fetch_add(&w->refused, 1);
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "malformed vecshard.v1.UpsertRequest (%zu bytes)", len);
    }
    char model[128], wid[VS_WLOG_WRITE_ID_MAX + 1];
    uint32_t dim = 0;
    int ivf = 0;
    vs_status st = check_ids(r->ids, r->n_ids, err);
    if (st == VS_OK && !vs_coord_model_dim(w->coord, r->model_version, model, &dim, &ivf))
        st = r->model_version[0]
                 ? vs_errf(err, VS_ERR_FAILED_PRECONDITION,
                           "no index version of embedding model '%s' is held: its vectors cannot be served",
                           r->model_version)
                 : vs_errf(err, VS_ERR_FAILED_PRECONDITION, "no active index version yet");
    if (st == VS_OK && !ivf)
        st = vs_errf(
            err, VS_ERR_FAILED_PRECONDITION,
            "the index versions of '%s' are not IVF: only IVF versions take fresh writes (HNSW and Flat "
            "versions change only with a new build)",
            model);
    if (st == VS_OK && r->dim != dim)
        st = vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                     "vectors of dimension %u; the index versions of '%s' have %u", r->dim, model, dim);
    if (st == VS_OK && r->n_vectors != r->n_ids * (size_t)dim)
        st = vs_errf(err, VS_ERR_INVALID_ARGUMENT, "%zu floats for %zu ids of dimension %u", r->n_vectors,
                     r->n_ids, dim);
    if (st == VS_OK)
        st = vs_check_finite(r->vectors, r->n_ids, dim, "vector", err);
    if (st == VS_OK)
        st = write_id(r->write_id, wid, err);
    if (st != VS_OK) {
        atomic_fetch_add(&w->refused, 1);
        vecshard__v1__upsert_request__free_unpacked(r, NULL);
        return st == VS_ERR_FAILED_PRECONDITION || st == VS_ERR_RESOURCE_EXHAUSTED ? st
                                                                                   : VS_ERR_INVALID_ARGUMENT;
    }
    Vecshard__V1__LogWrite m = VECSHARD__V1__LOG_WRITE__INIT;
    m.op = VECSHARD__V1__LOG_WRITE__OP__OP_UPSERT;
    m.ids = r->ids;
    m.n_ids = r->n_ids;
    m.dim = dim;
    m.vectors = r->vectors;
    m.n_vectors = r->n_vectors;
    m.model_version = model;
    m.write_id = wid;
    st = log_and_answer(w, &m, out, out_len, err);
    vecshard__v1__upsert_request__free_unpacked(r, NULL);
    return st;
}

vs_status vs_writes_delete_pb(vs_writes_t *w, const uint8_t *req, size_t len, uint8_t **out, size_t *out_len,
                              char err[VS_ERR_LEN])
{
    *out = NULL;
    *out_len = 0;
    Vecshard__V1__DeleteRequest *r = vecshard__v1__delete_request__unpack(NULL, len, req);
    if (!r) {
        atomic_fetch_add(&w->refused, 1);
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "malformed vecshard.v1.DeleteRequest (%zu bytes)", len);
    }
    char wid[VS_WLOG_WRITE_ID_MAX + 1];
    vs_status st = check_ids(r->ids, r->n_ids, err);
    if (st == VS_OK)
        st = write_id(r->write_id, wid, err);
    if (st != VS_OK) {
        atomic_fetch_add(&w->refused, 1);
        vecshard__v1__delete_request__free_unpacked(r, NULL);
        return st;
    }
    Vecshard__V1__LogWrite m = VECSHARD__V1__LOG_WRITE__INIT;
    m.op = VECSHARD__V1__LOG_WRITE__OP__OP_DELETE;
    m.ids = r->ids;
    m.n_ids = r->n_ids;
    m.write_id = wid;
    st = log_and_answer(w, &m, out, out_len, err);
    vecshard__v1__delete_request__free_unpacked(r, NULL);
    return st;
}
