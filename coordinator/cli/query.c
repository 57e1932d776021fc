/* query.c: the load generator behind `vecshard query`. Threads take the next batch from a shared counter,
 * so every row is sent exactly once whatever the concurrency; each thread has its own channel and one
 * blocking call in flight. Closed loop (default): the load is bounded by --concurrency. Open loop
 * (--rate): call i is due at a Poisson arrival time and its latency counts from then, so when every thread
 * is busy the wait shows in the latency instead of silently lowering the rate (no coordinated omission;
 * give enough --concurrency for the rate). Outcomes go into one slot per batch, written by the thread that
 * sent it, and the report is built after the threads are joined. */
#include <pthread.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/cli/timing.h"
#include "common/net/rpc.h"
#include "common/vecio.h"
#include "coordinator/cli/admin.h"
#include "vecshard/v1/coordinator.pb-c.h"

#define SEARCH_METHOD "/vecshard.v1.Coordinator/Search"

typedef struct run {
    const vs_admin_opts_t *o;
    double *arrival_s; /* open loop: when call i is due, from start_s (NULL: closed loop) */
    double start_s;
    const float *queries; /* n_rows*dim */
    uint32_t dim;
    size_t n_rows, n_calls;
    int64_t *ids; /* n_rows*k, -1 until answered */
    vs_admin_call_t *calls;
    atomic_size_t next;
} run_t;

typedef struct worker {
    run_t *run;
    pthread_t tid;
    int started;
} worker_t;

/* Copies a status message into the call's slot, cut to fit. */
static void keep_message(vs_admin_call_t *c, const char *msg)
{
    size_t n = strnlen(msg, sizeof c->message - 1);
    memcpy(c->message, msg, n);
    c->message[n] = 0;
}

/* Checks a decoded response against the batch and copies its ids; returns 0 or -1 with msg set. */
static int take_response(run_t *r, vs_admin_call_t *c, const uint8_t *body, size_t len)
{
    uint32_t k = r->o->k;
    Vecshard__V1__SearchResponse *resp = vecshard__v1__search_response__unpack(NULL, len, body);
    if (!resp) {
        snprintf(c->message, sizeof c->message, "SearchResponse does not decode (%zu bytes)", len);
        return -1;
    }
    int rc = -1;
    if (resp->nq != c->nq || resp->k != k || resp->n_ids != (size_t)c->nq * k) {
        snprintf(c->message, sizeof c->message,
                 "response has nq %u, k %u, %zu ids for a batch of %u with k %u", resp->nq, resp->k,
                 resp->n_ids, c->nq, k);
    } else {
        memcpy(r->ids + c->row0 * k, resp->ids, resp->n_ids * sizeof(int64_t));
        c->partial = resp->coverage && resp->coverage->partial;
        snprintf(c->version, sizeof c->version, "%s", resp->index_version ? resp->index_version : "");
        rc = 0;
    }
    vecshard__v1__search_response__free_unpacked(resp, NULL);
    return rc;
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    run_t *r = w->run;
    const vs_admin_opts_t *o = r->o;
    char err[VS_ERR_LEN];
    vs_rpc_channel_t *ch = NULL;
    vs_status chst = vs_rpc_channel_create(o->coordinator, 0, &ch, err);
    uint8_t *buf = NULL;
    size_t cap = 0;

    Vecshard__V1__SearchParams sp = VECSHARD__V1__SEARCH_PARAMS__INIT;
    sp.nprobe = o->nprobe;
    sp.ef_search = o->ef_search;
    sp.quantizer_ef_search = o->quantizer_ef_search;
    sp.k_factor = o->k_factor;
    Vecshard__V1__SearchRequest req = VECSHARD__V1__SEARCH_REQUEST__INIT;
    req.dim = r->dim;
    req.k = o->k;
    req.params = (o->nprobe || o->ef_search || o->k_factor != 0 || o->quantizer_ef_search) ? &sp : NULL;
    req.index_version = (char *)(o->index_version ? o->index_version : "");
    req.model_version = (char *)(o->model_version ? o->model_version : "");
    req.min_coverage = o->min_coverage;

    for (;;) {
        size_t i = atomic_fetch_add(&r->next, 1);
        if (i >= r->n_calls)
            break;
        vs_admin_call_t *c = &r->calls[i];
        c->row0 = i * o->batch;
        c->nq = (uint32_t)(r->n_rows - c->row0 < o->batch ? r->n_rows - c->row0 : o->batch);
        if (chst != VS_OK) {
            c->outcome = VS_ADMIN_OUTCOME_CLIENT_ERROR;
            keep_message(c, err);
            continue;
        }
        double due = 0;
        if (r->arrival_s) { /* open loop: wait for the call's arrival time; late threads send at once */
            due = r->start_s + r->arrival_s[i];
            double wait = due - vs_now_s();
            if (wait > 0) {
                struct timespec ts = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
                nanosleep(&ts, NULL);
            }
        }
        req.queries = (float *)(r->queries + c->row0 * r->dim);
        req.n_queries = (size_t)c->nq * r->dim;
        size_t len = vecshard__v1__search_request__get_packed_size(&req);
        if (len > cap) {
            uint8_t *nb = realloc(buf, len);
            if (!nb) {
                c->outcome = VS_ADMIN_OUTCOME_CLIENT_ERROR;
                snprintf(c->message, sizeof c->message, "no memory for a %zu-byte request", len);
                continue;
            }
            buf = nb;
            cap = len;
        }
        vecshard__v1__search_request__pack(&req, buf);
        int code = -1;
        char msg[VS_ERR_LEN] = "";
        uint8_t *body = NULL;
        size_t blen = 0;
        uint64_t t0 = vs_now_ns();
        vs_status st =
            vs_rpc_call_unary(ch, SEARCH_METHOD, buf, len, o->timeout_ms, &code, msg, &body, &blen);
        c->latency_ms = r->arrival_s ? (vs_now_s() - due) * 1e3 : (double)(vs_now_ns() - t0) * 1e-6;
        if (st != VS_OK) {
            c->outcome = VS_ADMIN_OUTCOME_CLIENT_ERROR;
            keep_message(c, msg);
        } else if (code != 0) {
            c->outcome = code > 0 && code <= 16 ? code : 2 /* UNKNOWN */;
            keep_message(c, msg);
        } else {
            c->outcome = take_response(r, c, body, blen) == 0 ? 0 : VS_ADMIN_OUTCOME_BAD_RESPONSE;
        }
        free(body);
    }
    free(buf);
    vs_rpc_channel_destroy(ch);
    return NULL;
}

/* Reads the first n rows of the query file (n = limit, or all) and, with --gt, their ground truth rows. */
static vs_status load_inputs(const vs_admin_opts_t *o, float **out_q, size_t *out_n, uint32_t *out_dim,
                             int32_t **out_gt, uint32_t *out_gt_dim, char err[VS_ERR_LEN])
{
    vs_vecfile_t *vf = NULL;
    vs_status st = vs_vecfile_open(o->queries_path, &vf, err);
    if (st != VS_OK)
        return st;
    size_t n = vs_vecfile_count(vf);
    if (o->limit && o->limit < n)
        n = o->limit;
    uint32_t dim = vs_vecfile_dim(vf);
    if (n == 0) {
        vs_vecfile_close(vf);
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "%s holds no query", o->queries_path);
    }
    float *q = malloc(n * dim * sizeof *q);
    if (!q) {
        vs_vecfile_close(vf);
        return vs_errf(err, VS_ERR_NOMEM, "no memory for %zu queries of dimension %u", n, dim);
    }
    st = vs_vecfile_read_f32(vf, 0, n, q, err);
    vs_vecfile_close(vf);
    if (st != VS_OK) {
        free(q);
        return st;
    }
    int32_t *gt = NULL;
    uint32_t gd = 0;
    if (o->gt_path) {
        vs_vecfile_t *gf = NULL;
        st = vs_vecfile_open(o->gt_path, &gf, err);
        if (st == VS_OK) {
            gd = vs_vecfile_dim(gf);
            if (vs_vecfile_count(gf) < n)
                st = vs_errf(err, VS_ERR_INVALID_ARGUMENT, "%s has %zu rows, fewer than the %zu queries sent",
                             o->gt_path, vs_vecfile_count(gf), n);
            else if (gd < o->k)
                st = vs_errf(err, VS_ERR_INVALID_ARGUMENT, "%s has %u ids per row, fewer than k = %u",
                             o->gt_path, gd, o->k);
            else if (!(gt = malloc(n * gd * sizeof *gt)))
                st = vs_errf(err, VS_ERR_NOMEM, "no memory for the ground truth");
            else
                st = vs_vecfile_read_i32(gf, 0, n, gt, err);
            vs_vecfile_close(gf);
        }
        if (st != VS_OK) {
            free(gt);
            free(q);
            return st;
        }
    }
    *out_q = q;
    *out_n = n;
    *out_dim = dim;
    *out_gt = gt;
    *out_gt_dim = gd;
    return VS_OK;
}

void vs_admin_arrivals(size_t n, double rate, uint64_t seed, double *out)
{
    uint64_t s = seed;
    double t = 0;
    for (size_t i = 0; i < n; i++) {
        s += 0x9e3779b97f4a7c15ull; /* splitmix64 */
        uint64_t z = s;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        double u = ((double)(z >> 11) + 0.5) * (1.0 / 9007199254740992.0); /* in (0, 1) */
        t += -log(u) / rate;
        out[i] = t;
    }
}

vs_status vs_admin_query_run(const vs_admin_opts_t *o, vs_admin_report_t *out, char err[VS_ERR_LEN])
{
    run_t r;
    memset(&r, 0, sizeof r);
    r.o = o;
    float *queries = NULL;
    int32_t *gt = NULL;
    uint32_t gt_dim = 0;
    vs_status st = load_inputs(o, &queries, &r.n_rows, &r.dim, &gt, &gt_dim, err);
    if (st != VS_OK)
        return st;
    r.queries = queries;
    r.n_calls = (r.n_rows + o->batch - 1) / o->batch;
    r.ids = malloc(r.n_rows * o->k * sizeof *r.ids);
    r.calls = calloc(r.n_calls, sizeof *r.calls);
    size_t n_threads = o->concurrency < r.n_calls ? o->concurrency : r.n_calls;
    worker_t *workers = calloc(n_threads, sizeof *workers);
    if (!r.ids || !r.calls || !workers) {
        st = vs_errf(err, VS_ERR_NOMEM, "no memory for %zu results of %u ids", r.n_rows, o->k);
        goto done;
    }
    for (size_t i = 0; i < r.n_rows * o->k; i++)
        r.ids[i] = -1;
    atomic_init(&r.next, 0);
    if (o->rate > 0) {
        r.arrival_s = malloc(r.n_calls * sizeof *r.arrival_s);
        if (!r.arrival_s) {
            st = vs_errf(err, VS_ERR_NOMEM, "no memory for %zu arrival times", r.n_calls);
            goto done;
        }
        vs_admin_arrivals(r.n_calls, o->rate, 1, r.arrival_s);
    }

    double t0 = vs_now_s();
    r.start_s = t0;
    for (size_t t = 0; t < n_threads; t++) {
        workers[t].run = &r;
        workers[t].started = pthread_create(&workers[t].tid, NULL, worker_main, &workers[t]) == 0;
    }
    size_t started = 0;
    for (size_t t = 0; t < n_threads; t++)
        started += (size_t)workers[t].started;
    if (started == 0) /* no thread at all: run the work on this one */
        worker_main(&workers[0]);
    for (size_t t = 0; t < n_threads; t++)
        if (workers[t].started)
            pthread_join(workers[t].tid, NULL);
    double seconds = vs_now_s() - t0;

    st = vs_admin_report_build(r.calls, r.n_calls, r.ids, r.n_rows, o->k, gt, gt_dim, seconds, out, err);
done:
    free(r.arrival_s);
    free(workers);
    free(r.calls);
    free(r.ids);
    free(gt);
    free(queries);
    return st;
}
