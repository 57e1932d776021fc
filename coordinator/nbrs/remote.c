/* remote.c: see remote.h. A block is cut into calls; up to `concurrency` calls are in flight on one
 * completion queue; a failed call is started again after its backoff while the others proceed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/cli/timing.h"
#include "common/net/rpc.h"
#include "coordinator/nbrs/remote.h"
#include "vecshard/v1/coordinator.pb-c.h"

#define SEARCH_METHOD "/vecshard.v1.Coordinator/Search"
#define STATUS_METHOD "/vecshard.v1.Coordinator/Status"
#define MAX_ATTEMPTS 6
#define MAX_SHEDS 10000 /* overload refusals of one call before the job gives up */

struct vs_nbrs_remote {
    vs_rpc_channel_t *ch;
    vs_rpc_queue_t *q;
    char version[128];
    int timeout_ms;
    size_t call_queries, concurrency;
    vs_metric metric;
};

void vs_nbrs_remote_close(vs_nbrs_remote_t *r)
{
    if (!r)
        return;
    vs_rpc_queue_destroy(r->q);
    vs_rpc_channel_destroy(r->ch);
    free(r);
}

vs_status vs_nbrs_remote_open(const char *addr, const char *version, int timeout_ms, size_t call_queries,
                              size_t concurrency, vs_nbrs_remote_t **out, char err[VS_ERR_LEN])
{
    vs_nbrs_remote_t *r = calloc(1, sizeof *r);
    if (!r)
        return vs_errf(err, VS_ERR_NOMEM, "batch: out of memory");
    r->timeout_ms = timeout_ms;
    r->call_queries = call_queries ? call_queries : 256;
    r->concurrency = concurrency ? concurrency : 4;
    vs_status st = vs_rpc_channel_create_env(addr, 64u << 20, &r->ch, err);
    if (st == VS_OK)
        st = vs_rpc_queue_create(&r->q, err);
    if (st == VS_OK && version) {
        snprintf(r->version, sizeof r->version, "%s", version);
    } else if (st == VS_OK) {
        Vecshard__V1__StatusRequest req = VECSHARD__V1__STATUS_REQUEST__INIT;
        uint8_t buf[16];
        size_t len = vecshard__v1__status_request__pack(&req, buf);
        int code = 0;
        char msg[VS_ERR_LEN] = "";
        uint8_t *body = NULL;
        size_t blen = 0;
        st = vs_rpc_call_unary(r->ch, STATUS_METHOD, buf, len, timeout_ms, &code, msg, &body, &blen);
        if (st == VS_OK && code != 0)
            st = vs_errf(err, vs_status_from_grpc(code), "coordinator %s: Status: %s: %s", addr,
                         vs_grpc_code_label(code), msg);
        Vecshard__V1__StatusResponse *resp =
            st == VS_OK ? vecshard__v1__status_response__unpack(NULL, blen, body) : NULL;
        if (st == VS_OK && !resp)
            st = vs_errf(err, VS_ERR_CORRUPT, "coordinator %s: StatusResponse does not decode", addr);
        else if (st == VS_OK && (!resp->active_version || !resp->active_version[0]))
            st = vs_errf(err, VS_ERR_NOT_FOUND, "coordinator %s has no active version", addr);
        else if (st == VS_OK)
            snprintf(r->version, sizeof r->version, "%s", resp->active_version);
        if (resp)
            vecshard__v1__status_response__free_unpacked(resp, NULL);
        free(body);
    }
    if (st != VS_OK) {
        vs_nbrs_remote_close(r);
        return st;
    }
    *out = r;
    return VS_OK;
}

const char *vs_nbrs_remote_version(const vs_nbrs_remote_t *r)
{
    return r->version;
}

vs_metric vs_nbrs_remote_metric(const vs_nbrs_remote_t *r)
{
    return r->metric;
}

typedef struct call {
    size_t row0, nq;
    int attempts, sheds;
    double retry_at; /* > 0: waiting to be sent again */
    int done;
} call_t;

static int retryable(int code)
{
    return code == VS_GRPC_UNAVAILABLE || code == VS_GRPC_DEADLINE_EXCEEDED ||
           code == VS_GRPC_RESOURCE_EXHAUSTED;
}

/* Checks and copies an answer; VS_OK or the reason it is unusable. */
static vs_status take(vs_nbrs_remote_t *r, const call_t *c, const uint8_t *body, size_t len, size_t k,
                      float *dist, int64_t *ids, char *err)
{
    Vecshard__V1__SearchResponse *resp = vecshard__v1__search_response__unpack(NULL, len, body);
    if (!resp)
        return vs_errf(err, VS_ERR_CORRUPT, "SearchResponse does not decode (%zu bytes)", len);
    vs_status st = VS_OK;
    if (resp->nq != c->nq || resp->k != k || resp->n_ids != c->nq * k || resp->n_distances != c->nq * k)
        st = vs_errf(err, VS_ERR_CORRUPT, "answer of %u queries, k %u for a call of %zu, k %zu", resp->nq,
                     resp->k, c->nq, k);
    else if (!resp->index_version || strcmp(resp->index_version, r->version) != 0)
        st = vs_errf(err, VS_ERR_CORRUPT, "answer from version %s, the run is pinned to %s",
                     resp->index_version ? resp->index_version : "?", r->version);
    else if (resp->coverage && resp->coverage->partial)
        st = vs_errf(err, VS_ERR_UNAVAILABLE, "partial answer despite min_coverage 1");
    else if (resp->metric == VECSHARD__V1__METRIC__METRIC_UNSPECIFIED)
        st = vs_errf(err, VS_ERR_UNSUPPORTED,
                     "the coordinator does not say the version's metric (SearchResponse.metric, since 0.8): "
                     "upgrade it, or run in process with --manifest");
    if (st == VS_OK) {
        memcpy(ids + c->row0 * k, resp->ids, c->nq * k * sizeof *ids);
        memcpy(dist + c->row0 * k, resp->distances, c->nq * k * sizeof *dist);
        r->metric = resp->metric == VECSHARD__V1__METRIC__METRIC_INNER_PRODUCT ? VS_METRIC_IP
                    : resp->metric == VECSHARD__V1__METRIC__METRIC_COSINE      ? VS_METRIC_COSINE
                                                                               : VS_METRIC_L2;
    }
    vecshard__v1__search_response__free_unpacked(resp, NULL);
    return st;
}

vs_status vs_nbrs_remote_search(vs_nbrs_remote_t *r, size_t nq, const float *q, uint32_t dim, size_t k,
                                const vs_search_params_t *params, float *out_dist, int64_t *out_ids,
                                char err[VS_ERR_LEN])
{
    size_t n_calls = (nq + r->call_queries - 1) / r->call_queries;
    call_t *calls = calloc(n_calls ? n_calls : 1, sizeof *calls);
    if (!calls)
        return vs_errf(err, VS_ERR_NOMEM, "batch: out of memory");
    for (size_t i = 0; i < n_calls; i++) {
        calls[i].row0 = i * r->call_queries;
        calls[i].nq = nq - calls[i].row0 < r->call_queries ? nq - calls[i].row0 : r->call_queries;
    }
    Vecshard__V1__SearchParams sp = VECSHARD__V1__SEARCH_PARAMS__INIT;
    sp.nprobe = params->nprobe;
    sp.ef_search = params->ef_search;
    sp.k_factor = params->k_factor;
    sp.quantizer_ef_search = params->quantizer_ef_search;
    Vecshard__V1__SearchRequest req = VECSHARD__V1__SEARCH_REQUEST__INIT;
    req.dim = dim;
    req.k = (uint32_t)k;
    req.params = &sp;
    req.index_version = r->version;
    req.min_coverage = 1.0f;
    req.priority = VECSHARD__V1__PRIORITY__PRIORITY_BATCH; /* shed before online traffic */
    uint8_t *buf = NULL;
    vs_status st = VS_OK;
    size_t next = 0, finished = 0;
    uint64_t jitter = (uint64_t)(vs_now_s() * 1e9);
    while (st == VS_OK && finished < n_calls) {
        /* start calls: new ones in order, and retries whose backoff is over */
        double now = vs_now_s(), wake = 0;
        for (size_t i = 0; i < n_calls && st == VS_OK && vs_rpc_queue_in_flight(r->q) < r->concurrency; i++) {
            call_t *c = &calls[i];
            int fresh = i == next && c->attempts == 0;
            int due = c->retry_at > 0 && c->retry_at <= now;
            if (c->retry_at > now && (wake == 0 || c->retry_at < wake))
                wake = c->retry_at;
            if (!fresh && !due)
                continue;
            if (fresh)
                next++;
            c->retry_at = 0;
            c->attempts++;
            req.queries = (float *)(q + c->row0 * dim);
            req.n_queries = c->nq * dim;
            size_t len = vecshard__v1__search_request__get_packed_size(&req);
            uint8_t *nb = realloc(buf, len);
            if (!nb) {
                st = vs_errf(err, VS_ERR_NOMEM, "batch: out of memory");
                break;
            }
            buf = nb;
            vecshard__v1__search_request__pack(&req, buf);
            st = vs_rpc_queue_call(r->q, r->ch, SEARCH_METHOD, buf, len, r->timeout_ms, c, err);
        }
        if (st != VS_OK)
            break;
        vs_rpc_result_t res;
        if (!vs_rpc_queue_next(r->q, vs_rpc_queue_in_flight(r->q) ? 0 : wake, &res))
            continue; /* a backoff ended */
        call_t *c = res.user;
        char why[VS_ERR_LEN] = "";
        vs_status cst = res.code == 0 ? take(r, c, res.body, res.body_len, k, out_dist, out_ids, why)
                                      : vs_status_from_grpc(res.code);
        if (res.code != 0)
            snprintf(why, sizeof why, "%s: %.400s", vs_grpc_code_label(res.code), res.message);
        free(res.body);
        if (cst == VS_OK) {
            c->done = 1;
            finished++;
        } else if (res.code == VS_GRPC_RESOURCE_EXHAUSTED && res.retry_after_ms > 0 && c->sheds < MAX_SHEDS) {
            /* shed for overload (online traffic comes first): wait as the server says and try again; a
             * shed is not a failed attempt */
            c->sheds++;
            c->attempts--;
            double wait = res.retry_after_ms > 0 ? (double)res.retry_after_ms * 1e-3 : 0.1;
            jitter = jitter * 6364136223846793005ULL + 1442695040888963407ULL; /* spread calls shed together */
            c->retry_at = vs_now_s() + wait * (1.0 + 0.5 * (double)(jitter >> 11) / 9007199254740992.0);
        } else if ((res.code ? retryable(res.code) : cst == VS_ERR_UNAVAILABLE) &&
                   c->attempts < MAX_ATTEMPTS) {
            c->retry_at = vs_now_s() + 0.1 * (double)(1 << (c->attempts - 1));
        } else {
            st = vs_errf(err, cst, "Search of queries %zu..%zu (attempt %d): %s", c->row0,
                         c->row0 + c->nq - 1, c->attempts, why);
        }
    }
    /* calls still in flight after a failure: drained so the queue can be reused */
    for (vs_rpc_result_t res; vs_rpc_queue_in_flight(r->q) > 0;)
        if (vs_rpc_queue_next(r->q, 0, &res))
            free(res.body);
    free(buf);
    free(calls);
    return st;
}
