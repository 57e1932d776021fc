/* canary.c: see canary.h. Blocking unary Search calls of 64 queries, the approximate answer and the exact
 * one for the same queries back to back. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cluster/manifest.h"
#include "common/net/rpc.h"
#include "common/topk.h"
#include "common/vecio.h"
#include "coordinator/cli/canary.h"
#include "vecshard/v1/coordinator.pb-c.h"

#define CALL_QUERIES 64

/* One Search of nq queries (exact or with the version's defaults): ids[nq*k]. */
static vs_status search(vs_rpc_channel_t *ch, const char *version, const float *q, size_t nq, uint32_t dim,
                        uint32_t k, int exact, int64_t timeout_ms, int64_t *ids, char *err)
{
    Vecshard__V1__SearchRequest req = VECSHARD__V1__SEARCH_REQUEST__INIT;
    req.dim = dim;
    req.queries = (float *)q;
    req.n_queries = nq * dim;
    req.k = k;
    req.index_version = (char *)version;
    req.priority = VECSHARD__V1__PRIORITY__PRIORITY_CANARY; /* shed before online traffic */
    req.min_coverage = 1.0f;
    req.exact = exact;
    size_t len = vecshard__v1__search_request__get_packed_size(&req);
    uint8_t *buf = malloc(len ? len : 1), *body = NULL;
    if (!buf)
        return vs_errf(err, VS_ERR_NOMEM, "canary: out of memory");
    vecshard__v1__search_request__pack(&req, buf);
    int code = 0;
    char msg[VS_ERR_LEN] = "";
    size_t blen = 0;
    vs_status st = vs_rpc_call_unary(ch, "/vecshard.v1.Coordinator/Search", buf, len, timeout_ms, &code, msg,
                                     &body, &blen);
    free(buf);
    if (st == VS_OK && code != 0)
        st = vs_errf(err, vs_status_from_grpc(code), "%s search of %s: %s: %s",
                     exact ? "exact" : "approximate", version, vs_grpc_code_label(code), msg);
    Vecshard__V1__SearchResponse *resp =
        st == VS_OK ? vecshard__v1__search_response__unpack(NULL, blen, body) : NULL;
    if (st == VS_OK && (!resp || resp->n_ids != nq * k || (exact && !resp->exact) ||
                        strcmp(resp->index_version, version) != 0))
        st = vs_errf(err, VS_ERR_CORRUPT, "%s search of %s: an unexpected answer",
                     exact ? "exact" : "approximate", version);
    if (st == VS_OK)
        memcpy(ids, resp->ids, nq * k * sizeof *ids);
    if (resp)
        vecshard__v1__search_response__free_unpacked(resp, NULL);
    free(body);
    return st;
}

vs_status vs_canary_measure(const char *addr, const char *manifest_path, const char *version, uint32_t k,
                            size_t max_queries, int64_t timeout_ms, vs_canary_result_t *out,
                            char err[VS_ERR_LEN])
{
    vs_manifest_t m;
    vs_status st = vs_manifest_load(manifest_path, &m, err);
    if (st != VS_OK)
        return st;
    vs_canary_result_t r = {.target = m.defaults.present ? m.defaults.target_recall : 0,
                            .build_measured = m.defaults.present ? m.defaults.measured_recall : 0};
    if (!k)
        k = m.defaults.present && m.defaults.k ? m.defaults.k : 10;
    r.k = k;
    char qpath[PATH_MAX];
    size_t n = 0;
    uint32_t d = 0;
    float *q = NULL;
    if ((st = vs_manifest_path(&m, "tune-queries.fvecs", qpath, err)) == VS_OK &&
        (st = vs_vecfile_load_f32(qpath, &n, &d, &q, err)) != VS_OK)
        st = vs_errf(err, VS_ERR_NOT_FOUND,
                     "version %s has no stored query set (%s): build it with vecshard-build --target-recall",
                     version, qpath);
    if (st == VS_OK && d != m.dim)
        st = vs_errf(err, VS_ERR_CORRUPT, "%s: dimension %u, the version has %u", qpath, d, m.dim);
    vs_manifest_fini(&m);
    if (st != VS_OK) {
        free(q);
        return st;
    }
    if (max_queries && n > max_queries)
        n = max_queries;
    vs_rpc_channel_t *ch = NULL;
    int64_t *a = malloc(CALL_QUERIES * k * sizeof *a), *x = malloc(CALL_QUERIES * k * sizeof *x);
    if (!a || !x)
        st = vs_errf(err, VS_ERR_NOMEM, "canary: out of memory");
    if (st == VS_OK)
        st = vs_rpc_channel_create_env(addr, 64u << 20, &ch, err);
    double sum = 0;
    for (size_t i0 = 0; st == VS_OK && i0 < n; i0 += CALL_QUERIES) {
        size_t nq = n - i0 < CALL_QUERIES ? n - i0 : CALL_QUERIES;
        if ((st = search(ch, version, q + i0 * d, nq, d, k, 0, timeout_ms, a, err)) != VS_OK ||
            (st = search(ch, version, q + i0 * d, nq, d, k, 1, timeout_ms, x, err)) != VS_OK)
            break;
        for (size_t i = 0; i < nq; i++)
            sum += vs_ids_recall(a + i * k, x + i * k, k);
    }
    vs_rpc_channel_destroy(ch);
    free(a);
    free(x);
    free(q);
    if (st != VS_OK)
        return st;
    r.queries = n;
    r.recall = n ? sum / (double)n : 1.0;
    *out = r;
    return VS_OK;
}
