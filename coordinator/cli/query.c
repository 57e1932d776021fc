/* query.c: the load generator behind `vecshard query`. One thread keeps up to --concurrency asynchronous
 * calls in flight on one completion queue (a thread per call in flight cost the client 4x the CPU of the
 * calls themselves in thread wake-ups: docs/benchmarks.md), each batch of rows sent exactly once.
 * Closed loop (default): a call leaves as soon as another completes. Open loop (--rate): call i is due at
 * a Poisson arrival time and its latency counts from then, so when every slot is busy the wait shows in
 * the latency instead of silently lowering the rate (no coordinated omission; give enough --concurrency
 * for the rate). Outcomes go into one slot per batch; the report is built once every call is done. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/cli/timing.h"
#include "common/net/rpc.h"
#include "common/vecio.h"
#include "common/net/pbfilter.h"
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
} run_t;

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

/* The request every call shares; only its queries change. */
typedef struct sender {
    Vecshard__V1__SearchParams sp;
    Vecshard__V1__SearchRequest req;
    vs_filter_spec_t spec; /* --filter */
    vs_filter_pb_t filter;
    Vecshard__V1__GroupBy group_by;
    uint8_t *buf;
    size_t cap;
} sender_t;

static void sender_init(sender_t *s, const run_t *r)
{
    const vs_admin_opts_t *o = r->o;
    memset(s, 0, sizeof *s);
    vecshard__v1__search_params__init(&s->sp);
    s->sp.nprobe = o->nprobe;
    s->sp.ef_search = o->ef_search;
    s->sp.quantizer_ef_search = o->quantizer_ef_search;
    s->sp.k_factor = o->k_factor;
    vecshard__v1__search_request__init(&s->req);
    s->req.dim = r->dim;
    s->req.k = o->k;
    s->req.params = (o->nprobe || o->ef_search || o->k_factor != 0 || o->quantizer_ef_search) ? &s->sp : NULL;
    s->req.index_version = (char *)(o->index_version ? o->index_version : "");
    s->req.model_version = (char *)(o->model_version ? o->model_version : "");
    s->req.min_coverage = o->min_coverage;
    s->req.priority = (Vecshard__V1__Priority)o->priority;
    char err[VS_ERR_LEN];
    if (o->filter && vs_filter_spec_parse(o->filter, &s->spec, err) == VS_OK) { /* checked by the parser */
        vs_filter_spec_to_pb(&s->spec, &s->filter);
        s->req.filter = &s->filter.msg;
    }
    if (o->group_by[0]) {
        vecshard__v1__group_by__init(&s->group_by);
        s->group_by.field = (char *)o->group_by;
        s->group_by.size = o->group_size;
        s->req.group_by = &s->group_by;
    }
}

/* Starts call i on q (its slot's row0/nq set here); on failure records the outcome and returns -1. */
static int send_call(run_t *r, sender_t *s, vs_rpc_queue_t *q, vs_rpc_channel_t *ch, size_t i)
{
    const vs_admin_opts_t *o = r->o;
    vs_admin_call_t *c = &r->calls[i];
    s->req.queries = (float *)(r->queries + c->row0 * r->dim);
    s->req.n_queries = (size_t)c->nq * r->dim;
    size_t len = vecshard__v1__search_request__get_packed_size(&s->req);
    if (len > s->cap) {
        uint8_t *nb = realloc(s->buf, len);
        if (!nb) {
            c->outcome = VS_ADMIN_OUTCOME_CLIENT_ERROR;
            snprintf(c->message, sizeof c->message, "no memory for a %zu-byte request", len);
            return -1;
        }
        s->buf = nb;
        s->cap = len;
    }
    vecshard__v1__search_request__pack(&s->req, s->buf);
    char err[VS_ERR_LEN];
    if (vs_rpc_queue_call(q, ch, SEARCH_METHOD, s->buf, len, o->timeout_ms, c, err) != VS_OK) {
        c->outcome = VS_ADMIN_OUTCOME_CLIENT_ERROR;
        keep_message(c, err);
        return -1;
    }
    return 0;
}

/* Records a completed call's outcome. sent_s: when its latency counts from (send time, or the due time
 * in the open loop). */
static void finish_call(run_t *r, vs_rpc_result_t *res, double sent_s)
{
    vs_admin_call_t *c = res->user;
    c->latency_ms = (vs_now_s() - sent_s) * 1e3;
    if (res->code != 0) {
        c->outcome = res->code > 0 && res->code <= 16 ? res->code : 2 /* UNKNOWN */;
        keep_message(c, res->message);
    } else {
        c->outcome = take_response(r, c, res->body, res->body_len) == 0 ? 0 : VS_ADMIN_OUTCOME_BAD_RESPONSE;
    }
    free(res->body);
}

/* The load generator: one thread, up to --concurrency calls in flight on one queue. Closed loop: a new
 * call leaves as soon as one completes. Open loop: call i leaves at its arrival time, or as soon as a
 * slot frees when all are taken (its latency still counts from the arrival time). */
static void drive(run_t *r, double *sent_s)
{
    const vs_admin_opts_t *o = r->o;
    char err[VS_ERR_LEN];
    vs_rpc_channel_t *ch = NULL;
    vs_rpc_queue_t *q = NULL;
    vs_status st = vs_rpc_channel_create_env(o->coordinator, 0, &ch, err);
    if (st == VS_OK)
        st = vs_rpc_queue_create(&q, err);
    for (size_t i = 0; i < r->n_calls; i++) {
        vs_admin_call_t *c = &r->calls[i];
        c->row0 = i * o->batch;
        c->nq = (uint32_t)(r->n_rows - c->row0 < o->batch ? r->n_rows - c->row0 : o->batch);
        if (st != VS_OK) {
            c->outcome = VS_ADMIN_OUTCOME_CLIENT_ERROR;
            keep_message(c, err);
        }
    }
    if (st != VS_OK) {
        vs_rpc_channel_destroy(ch);
        return;
    }
    sender_t s;
    sender_init(&s, r);
    size_t next = 0, limit = o->concurrency ? o->concurrency : 1;
    while (next < r->n_calls || vs_rpc_queue_in_flight(q) > 0) {
        double due = 0;
        while (next < r->n_calls && vs_rpc_queue_in_flight(q) < limit) {
            double now = vs_now_s();
            due = r->arrival_s ? r->start_s + r->arrival_s[next] : now;
            if (due > now)
                break;
            sent_s[next] = r->arrival_s ? due : now;
            send_call(r, &s, q, ch, next);
            next++;
            due = 0;
        }
        vs_rpc_result_t res; /* (open loop, nothing in flight: this sleeps to the next arrival) */
        if (vs_rpc_queue_next(q, due, &res))
            finish_call(r, &res, sent_s[(vs_admin_call_t *)res.user - r->calls]);
    }
    free(s.buf);
    vs_filter_spec_fini(&s.spec);
    vs_rpc_queue_destroy(q);
    vs_rpc_channel_destroy(ch);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Reads the first n rows of the query file (n = limit, or all) and, with --gt, their ground truth rows. */
static vs_status load_inputs(const vs_admin_opts_t *o, float **out_q, size_t *out_n, uint32_t *out_dim,
                             int64_t **out_gt, uint32_t *out_gt_dim, char err[VS_ERR_LEN])
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
    int64_t *gt = NULL;
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
                st = vs_vecfile_read_i64(gf, 0, n, gt, err);
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
    int64_t *gt = NULL;
    uint32_t gt_dim = 0;
    vs_status st = load_inputs(o, &queries, &r.n_rows, &r.dim, &gt, &gt_dim, err);
    if (st != VS_OK)
        return st;
    r.queries = queries;
    r.n_calls = (r.n_rows + o->batch - 1) / o->batch;
    r.ids = malloc(r.n_rows * o->k * sizeof *r.ids);
    r.calls = calloc(r.n_calls, sizeof *r.calls);
    double *sent_s = malloc(r.n_calls * sizeof *sent_s);
    if (!r.ids || !r.calls || !sent_s) {
        st = vs_errf(err, VS_ERR_NOMEM, "no memory for %zu results of %u ids", r.n_rows, o->k);
        goto done;
    }
    for (size_t i = 0; i < r.n_rows * o->k; i++)
        r.ids[i] = -1;
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
    drive(&r, sent_s);
    double seconds = vs_now_s() - t0;

    st = vs_admin_report_build(r.calls, r.n_calls, r.ids, r.n_rows, o->k, gt, gt_dim, seconds, out, err);
    if (st == VS_OK && gt && out->recall == 0 && out->ids_returned > 0 && out->queries_answered >= 10)
        st = vs_errf(err, VS_ERR_FAILED_PRECONDITION,
                     "recall@%u is 0: over %zu answered queries not one id of %s is in the answers. %s", o->k,
                     out->queries_answered, o->gt_path,
                     ends_with(o->gt_path, ".npy")
                         ? "It holds item ids the index does not answer with (was it written for this base? "
                           "for base rows, use vecshard-gt without --ids)"
                         : "It holds base row numbers (.ivecs) and the index answers with the items' own ids "
                           "(built with --ids?): write it with vecshard-gt --ids FILE --out gt.npy");
done:
    free(r.arrival_s);
    free(sent_s);
    free(r.calls);
    free(r.ids);
    free(gt);
    free(queries);
    return st;
}
