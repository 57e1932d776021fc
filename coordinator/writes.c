/* writes.c: Upsert and Delete onto the write log (writes.h). */
#include "coordinator/writes.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/cli/ident.h"
#include "common/cli/timing.h"
#include "common/log.h"
#include "common/distance.h"
#include "common/net/pbfilter.h"
#include "common/net/wlog.h"
#include "common/topk.h"
#include "vecshard/v1/coordinator.pb-c.h"
#include "vecshard/v1/writelog.pb-c.h"

#define MAX_IDS_PER_WRITE 100000u

struct vs_writes {
    vs_coord_t *coord;
    char url[512], cluster[128];
    pthread_mutex_t mu; /* log, stopping */
    pthread_cond_t cv;  /* wakes the connecting thread at stop; signals in_flight reaching 0 */
    /* held (read) by a submission from its stopping check until the log has its message, and (write) by
     * stop to set stopping: after stop, nothing more is handed to the log */
    pthread_rwlock_t gate;
    vs_wlog_t *log; /* NULL until connected (never reset after: libnats reconnects on its own) */
    int stopping, joined;
    pthread_t thread;
    atomic_ullong ok, refused, failed;
    atomic_long in_flight; /* handed to the log, not yet answered */
    /* the fullest replica's fill, re-read from the view at most every FILL_EVERY_S (mu) */
    double fill_at;
    uint32_t fill;
    char fill_replica[128], fill_model[128];
    int replicas; /* of the stream, when this coordinator creates it */
};

static void *connect_main(void *arg);
static vs_status upsert(vs_writes_t *w, const uint8_t *req, size_t len, vs_writes_done_fn done, void *user,
                        char *err);
static vs_status delete (vs_writes_t *w, const uint8_t *req, size_t len, vs_writes_done_fn done, void *user,
                         char *err);

vs_status vs_writes_create(const char *nats_url, const char *cluster, int replicas, vs_coord_t *coord,
                           vs_writes_t **out, char err[VS_ERR_LEN])
{
    *out = NULL;
    vs_writes_t *w = calloc(1, sizeof *w);
    if (!w)
        return vs_errf(err, VS_ERR_NOMEM, "writes: out of memory");
    w->coord = coord;
    w->replicas = replicas;
    snprintf(w->url, sizeof w->url, "%s", nats_url);
    snprintf(w->cluster, sizeof w->cluster, "%s", cluster);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    pthread_rwlock_init(&w->gate, NULL);
    if (pthread_create(&w->thread, NULL, connect_main, w) != 0) {
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->cv);
        pthread_rwlock_destroy(&w->gate);
        free(w);
        return vs_errf(err, VS_ERR_INTERNAL, "writes: cannot start the thread that connects to the log");
    }
    *out = w;
    return VS_OK;
}

/* Connects to the log (creating its stream when missing), again every second until it works or the
 * writes stop. Writes before that are refused UNAVAILABLE. */
static void *connect_main(void *arg)
{
    vs_writes_t *w = arg;
    vs_log_limit_t lim = {0};
    for (;;) {
        pthread_mutex_lock(&w->mu);
        int stop = w->stopping;
        pthread_mutex_unlock(&w->mu);
        if (stop)
            break;
        char err[VS_ERR_LEN] = "";
        vs_wlog_opts_t o = {
            .url = w->url, .cluster = w->cluster, .timeout_ms = 5000, .replicas = w->replicas};
        vs_wlog_t *log = NULL;
        if (vs_wlog_open(&o, 1, &log, err) == VS_OK) {
            pthread_mutex_lock(&w->mu);
            w->log = log;
            pthread_mutex_unlock(&w->mu);
            vs_log(VS_LOG_INFO, "write log: connected to %s", w->url);
            break;
        }
        vs_log_limited(&lim, VS_LOG_WARN, "writes are refused until the write log answers: %s", err);
        struct timespec until = vs_timespec_in_ms(CLOCK_REALTIME, 1000);
        pthread_mutex_lock(&w->mu);
        if (!w->stopping)
            pthread_cond_timedwait(&w->cv, &w->mu, &until);
        pthread_mutex_unlock(&w->mu);
    }
    return NULL;
}

void vs_writes_stop(vs_writes_t *w)
{
    if (!w)
        return;
    pthread_rwlock_wrlock(&w->gate); /* waits for submissions under way */
    pthread_mutex_lock(&w->mu);
    int joined = w->joined;
    w->stopping = 1;
    w->joined = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_rwlock_unlock(&w->gate);
    if (!joined)
        pthread_join(w->thread, NULL);
    /* nothing new reaches the log now: wait for the acknowledgements of what is in flight (the drain
     * answers what is still unanswered after 5 s), then until every answer has been handed over */
    if (w->log)
        vs_wlog_drain(w->log, 5000);
    struct timespec until = vs_timespec_in_ms(CLOCK_REALTIME, 2000);
    pthread_mutex_lock(&w->mu);
    while (atomic_load(&w->in_flight) > 0 && pthread_cond_timedwait(&w->cv, &w->mu, &until) == 0) {
    }
    pthread_mutex_unlock(&w->mu);
}

void vs_writes_destroy(vs_writes_t *w)
{
    if (!w)
        return;
    vs_writes_stop(w);
    vs_wlog_close(w->log);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    pthread_rwlock_destroy(&w->gate);
    free(w);
}

vs_status vs_writes_submit(vs_writes_t *w, int is_delete, const uint8_t *req, size_t len,
                           vs_writes_done_fn done, void *user, char err[VS_ERR_LEN])
{
    pthread_rwlock_rdlock(&w->gate);
    pthread_mutex_lock(&w->mu);
    int stopping = w->stopping;
    vs_wlog_t *log = w->log;
    pthread_mutex_unlock(&w->mu);
    vs_status st = VS_OK;
    if (stopping) {
        st = vs_errf(err, VS_ERR_UNAVAILABLE, "the coordinator is shutting down");
    } else if (!log) {
        st = vs_errf(err, VS_ERR_UNAVAILABLE, "not connected to the write log (%s) yet; retry", w->url);
    } else if (atomic_fetch_add(&w->in_flight, 1) >= VS_WRITES_MAX_IN_FLIGHT) {
        atomic_fetch_sub(&w->in_flight, 1);
        st = vs_errf(err, VS_ERR_RESOURCE_EXHAUSTED,
                     "%d writes are waiting for the log's acknowledgement already; retry later",
                     VS_WRITES_MAX_IN_FLIGHT);
    } else {
        st = is_delete ? delete (w, req, len, done, user, err) : upsert(w, req, len, done, user, err);
        if (st != VS_OK)
            atomic_fetch_sub(&w->in_flight, 1);
    }
    pthread_rwlock_unlock(&w->gate);
    return st;
}

int vs_writes_connected(vs_writes_t *w)
{
    pthread_mutex_lock(&w->mu);
    int c = w->log != NULL;
    pthread_mutex_unlock(&w->mu);
    return c;
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

/* RESOURCE_EXHAUSTED while a replica of the active version (of model; "" = the active one) is near its
 * fresh capacity: a write logged now might wait in the log until a folded version replaces it. */
#define FILL_EVERY_S 0.05 /* well under the time a replica takes to fill its last 5 % */

static vs_status check_room(vs_writes_t *w, const char *model, char *err)
{
    char replica[128];
    double now = vs_now_s();
    pthread_mutex_lock(&w->mu);
    int fresh = now - w->fill_at < FILL_EVERY_S && strcmp(w->fill_model, model) == 0;
    uint32_t fill = w->fill;
    snprintf(replica, sizeof replica, "%s", w->fill_replica);
    pthread_mutex_unlock(&w->mu);
    if (!fresh) { /* (a copy of the view's members: not on every write) */
        fill = vs_coord_fresh_fill(w->coord, model, replica);
        pthread_mutex_lock(&w->mu);
        w->fill_at = now;
        w->fill = fill;
        snprintf(w->fill_replica, sizeof w->fill_replica, "%s", replica);
        snprintf(w->fill_model, sizeof w->fill_model, "%s", model);
        pthread_mutex_unlock(&w->mu);
    }
    if (fill < VS_WRITES_REFUSE_FILL_PCT)
        return VS_OK;
    return vs_errf(err, VS_ERR_RESOURCE_EXHAUSTED,
                   "replica %s holds writes at %u%% of its fresh capacity (writes are refused from %d%%): "
                   "fold the log into a new version (vecshard-fold, vecshard-build --log-upto) and activate "
                   "it, or raise --fresh-capacity",
                   replica, fill, VS_WRITES_REFUSE_FILL_PCT);
}

/* A write handed to the log, answered by its acknowledgement. */
typedef struct inflight {
    vs_writes_t *w;
    vs_writes_done_fn done;
    void *user;
    char write_id[VS_WLOG_WRITE_ID_MAX + 1];
} inflight_t;

/* A write the log did not take (err: why; log_err may be err): counted as failed, its write id added to
 * the message, and the status one the client can act on - RESOURCE_EXHAUSTED (full) and INVALID_ARGUMENT
 * (too large) as they are, everything else UNAVAILABLE (retry with the same write id). */
static vs_status log_failed(vs_writes_t *w, vs_status st, const char *log_err, const char *write_id,
                            char *err)
{
    atomic_fetch_add(&w->failed, 1);
    char tmp[VS_ERR_LEN];
    snprintf(tmp, sizeof tmp, "%s (write_id %s)", log_err, write_id);
    snprintf(err, VS_ERR_LEN, "%s", tmp);
    return st == VS_ERR_RESOURCE_EXHAUSTED || st == VS_ERR_INVALID_ARGUMENT ? st : VS_ERR_UNAVAILABLE;
}

/* The log's answer (a libnats thread): the client's answer. */
static void on_logged(void *user, vs_status st, uint64_t seq, int dup, const char *log_err)
{
    inflight_t *f = user;
    vs_writes_t *w = f->w;
    char err[VS_ERR_LEN] = "";
    uint8_t *body = NULL;
    size_t blen = 0;
    if (st != VS_OK) {
        st = log_failed(w, st, log_err, f->write_id, err);
    } else {
        Vecshard__V1__WriteResponse r = VECSHARD__V1__WRITE_RESPONSE__INIT;
        r.log_seq = seq;
        r.duplicate = dup != 0;
        r.write_id = f->write_id;
        blen = vecshard__v1__write_response__get_packed_size(&r);
        body = malloc(blen ? blen : 1);
        if (!body) {
            st = vs_errf(err, VS_ERR_RESOURCE_EXHAUSTED,
                         "the write was logged at %llu but there is no memory for the answer",
                         (unsigned long long)seq);
        } else {
            vecshard__v1__write_response__pack(&r, body);
            atomic_fetch_add(&w->ok, 1);
        }
    }
    f->done(f->user, st, err, body, blen);
    free(f);
    if (atomic_fetch_sub(&w->in_flight, 1) == 1) { /* the last answer: a stop may wait for it */
        pthread_mutex_lock(&w->mu);
        pthread_cond_broadcast(&w->cv);
        pthread_mutex_unlock(&w->mu);
    }
}

/* Hands the message to the log when the replicas have room for it (check_room, for its model); done is
 * called with its position once the log acknowledged it. On a non-OK return nothing was sent and done is
 * not called. */
static vs_status log_write(vs_writes_t *w, Vecshard__V1__LogWrite *m, vs_writes_done_fn done, void *user,
                           char *err)
{
    vs_status st = check_room(w, m->model_version ? m->model_version : "", err);
    if (st != VS_OK) {
        atomic_fetch_add(&w->failed, 1);
        return st;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    m->logged_unix_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    size_t len = vecshard__v1__log_write__get_packed_size(m);
    uint8_t *buf = malloc(len ? len : 1);
    inflight_t *f = calloc(1, sizeof *f);
    if (!buf || !f) {
        free(buf);
        free(f);
        return vs_errf(err, VS_ERR_RESOURCE_EXHAUSTED, "no memory for a %zu-byte write", len);
    }
    vecshard__v1__log_write__pack(m, buf);
    *f = (inflight_t){.w = w, .done = done, .user = user};
    snprintf(f->write_id, sizeof f->write_id, "%s", m->write_id);
    pthread_mutex_lock(&w->mu);
    vs_wlog_t *log = w->log;
    pthread_mutex_unlock(&w->mu);
    st = vs_wlog_append_async(log, buf, len, m->write_id, on_logged, f, err);
    free(buf);
    if (st != VS_OK) {
        free(f);
        if (st == VS_ERR_INVALID_ARGUMENT)
            atomic_fetch_add(&w->refused, 1); /* refused before it was sent: a bad request */
        else
            st = log_failed(w, st, err, m->write_id, err);
    }
    return st;
}

/* An UpsertRequest (req, len bytes), checked whole and handed to the log; done answers it. On a non-OK
 * return (refused, or not sent) done is not called. */
static vs_status upsert(vs_writes_t *w, const uint8_t *req, size_t len, vs_writes_done_fn done, void *user,
                        char *err)
{
    Vecshard__V1__UpsertRequest *r = vecshard__v1__upsert_request__unpack(NULL, len, req);
    if (!r) {
        atomic_fetch_add(&w->refused, 1);
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "malformed vecshard.v1.UpsertRequest (%zu bytes)", len);
    }
    char model[128], wid[VS_WLOG_WRITE_ID_MAX + 1];
    uint32_t dim = 0;
    int writable = 0;
    vs_status st = check_ids(r->ids, r->n_ids, err);
    if (st == VS_OK && !vs_coord_model_dim(w->coord, r->model_version, model, &dim, &writable))
        st = r->model_version[0]
                 ? vs_errf(err, VS_ERR_FAILED_PRECONDITION,
                           "no index version of embedding model '%s' is held: its vectors cannot be served",
                           r->model_version)
                 : vs_errf(err, VS_ERR_FAILED_PRECONDITION, "no active index version yet");
    if (st == VS_OK && !writable)
        st = vs_errf(err, VS_ERR_FAILED_PRECONDITION,
                     "the index versions of '%s' are Flat (or of an unknown factory): only IVF and HNSW "
                     "versions take fresh writes; Flat versions change only with a new build",
                     model);
    if (st == VS_OK && r->dim != dim)
        st = vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                     "vectors of dimension %u; the index versions of '%s' have %u", r->dim, model, dim);
    if (st == VS_OK && r->n_vectors != r->n_ids * (size_t)dim)
        st = vs_errf(err, VS_ERR_INVALID_ARGUMENT, "%zu floats for %zu ids of dimension %u", r->n_vectors,
                     r->n_ids, dim);
    if (st == VS_OK)
        st = vs_check_finite(r->vectors, r->n_ids, dim, "vector", err);
    if (st == VS_OK && r->n_attributes) { /* against the schema of the version the write is checked with */
        vs_attr_field_t fields[VS_ATTR_MAX_FIELDS];
        size_t nf = vs_coord_model_attrs(w->coord, r->model_version, fields);
        st = vs_attr_columns_check(r->attributes, r->n_attributes, fields, nf, r->n_ids, err);
    }
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
    m.attributes = r->attributes;
    m.n_attributes = r->n_attributes;
    st = log_write(w, &m, done, user, err);
    vecshard__v1__upsert_request__free_unpacked(r, NULL);
    return st;
}

/* A DeleteRequest, as upsert. */
static vs_status delete (vs_writes_t *w, const uint8_t *req, size_t len, vs_writes_done_fn done, void *user,
                         char *err)
{
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
    m.write_id = wid; /* (no model: a delete takes room too, a tombstone per id, in the active version) */
    st = log_write(w, &m, done, user, err);
    vecshard__v1__delete_request__free_unpacked(r, NULL);
    return st;
}
