/* searcher.c: see searcher.h. One partition (the usual batch set-up) is one vs_index_search call; several
 * go through the coordinator's router and merge, partition by partition, each call multi-threaded. */
#include <stdlib.h>
#include <string.h>

#include "common/topk.h"
#include "coordinator/nbrs/searcher.h"
#include "coordinator/router.h"
#include "shard/index/index.h"
#include "shard/index/ivf.h"
#include "shard/server/shard.h"

struct vs_nbrs_searcher {
    vs_manifest_t m;
    vs_index_t **parts; /* by partition id */
    vs_router_t router;
    int has_router;
    uint32_t nlist;
};

void vs_nbrs_searcher_close(vs_nbrs_searcher_t *s)
{
    if (!s)
        return;
    if (s->parts)
        for (uint32_t p = 0; p < s->m.n_partitions; p++)
            vs_index_destroy(s->parts[p]);
    free(s->parts);
    if (s->has_router)
        vs_router_fini(&s->router);
    vs_manifest_fini(&s->m);
    free(s);
}

vs_status vs_nbrs_searcher_open(const char *manifest_path, vs_nbrs_searcher_t **out, char err[VS_ERR_LEN])
{
    vs_nbrs_searcher_t *s = calloc(1, sizeof *s);
    if (!s)
        return vs_errf(err, VS_ERR_NOMEM, "batch: out of memory");
    vs_status st = vs_manifest_load(manifest_path, &s->m, err);
    if (st != VS_OK) {
        free(s);
        return st;
    }
    if (!(s->parts = calloc(s->m.n_partitions, sizeof *s->parts)))
        st = vs_errf(err, VS_ERR_NOMEM, "batch: out of memory");
    for (uint32_t p = 0; p < s->m.n_partitions && st == VS_OK; p++)
        st = vs_shard_open_partition(&s->m, p, 0, 0, &s->parts[p], err);
    /* several partitions: routed as the coordinator routes them; hash partitions rank their own lists
     * (inside one multi-threaded call each) */
    if (st == VS_OK && s->m.n_partitions > 1) {
        st = vs_router_init_manifest(&s->router, &s->m, 0, err);
        s->has_router = st == VS_OK;
    }
    vs_factory_spec_t spec;
    if (st == VS_OK && vs_factory_parse(s->m.factory, &spec, NULL) == VS_OK && spec.type == VS_INDEX_IVF)
        s->nlist = spec.nlist;
    if (st != VS_OK) {
        vs_nbrs_searcher_close(s);
        return st;
    }
    *out = s;
    return VS_OK;
}

const vs_manifest_t *vs_nbrs_searcher_manifest(const vs_nbrs_searcher_t *s)
{
    return &s->m;
}

vs_search_params_t vs_nbrs_searcher_params(const vs_nbrs_searcher_t *s, const vs_search_params_t *given)
{
    vs_search_params_t p = given ? *given : (vs_search_params_t){0};
    const vs_search_defaults_t *d = &s->m.defaults;
    if (d->present) {
        if (!p.nprobe)
            p.nprobe = d->nprobe;
        if (!p.ef_search)
            p.ef_search = d->ef_search;
        if (p.k_factor == 0)
            p.k_factor = d->k_factor;
    }
    if (s->nlist && p.nprobe > s->nlist)
        p.nprobe = s->nlist;
    return p;
}

/* Part t of the plan: its queries gathered (cluster) or all of them (hash), searched on its partition. */
static vs_status search_part(const vs_nbrs_searcher_t *s, const vs_route_plan_t *plan, size_t t,
                             const float *q, size_t k, const vs_search_params_t *params, size_t n_threads,
                             float *dist, int64_t *ids, char *err)
{
    const vs_route_part_t *part = &plan->parts[t];
    const uint32_t d = s->m.dim;
    const vs_index_t *idx = s->parts[part->partition];
    if (!part->query_idx)
        return vs_index_search(idx, part->nq, q, k, params, n_threads, dist, ids, err);
    float *gq = malloc(part->nq * d * sizeof *gq);
    if (!gq)
        return vs_errf(err, VS_ERR_NOMEM, "batch: out of memory");
    for (size_t i = 0; i < part->nq; i++)
        memcpy(gq + i * d, q + part->query_idx[i] * d, d * sizeof *gq);
    vs_status st = part->lists ? vs_ivf_search_lists(vs_index_impl_ivf(idx), part->nq, gq, k, part->lists,
                                                     plan->lists_per_query, params->k_factor, params,
                                                     n_threads, dist, ids, err)
                               : vs_index_search(idx, part->nq, gq, k, params, n_threads, dist, ids, err);
    free(gq);
    return st;
}

vs_status vs_nbrs_searcher_search(const vs_nbrs_searcher_t *s, size_t nq, const float *q, size_t k,
                                  const vs_search_params_t *params, size_t n_threads, float *out_dist,
                                  int64_t *out_ids, char err[VS_ERR_LEN])
{
    if (!s->has_router)
        return vs_index_search(s->parts[0], nq, q, k, params, n_threads, out_dist, out_ids, err);
    if (k == 0 || k > VS_TOPK_MAX_K)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "k = %zu is out of range 1..%d", k, VS_TOPK_MAX_K);
    vs_status st = vs_check_finite(q, nq, s->m.dim, "query", err);
    if (st != VS_OK)
        return st;
    vs_route_plan_t plan;
    st = s->router.list_partition
                       ? vs_router_plan_ef(&s->router, nq, q, params->nprobe ? params->nprobe : 1,
                                           params->quantizer_ef_search, &plan, err)
                       : vs_router_plan_all(&s->router, nq, &plan, err);
    if (st != VS_OK)
        return st;
    float **pd = calloc(plan.n_parts, sizeof *pd);
    int64_t **pi = calloc(plan.n_parts, sizeof *pi);
    int *answered = calloc(plan.n_parts, sizeof *answered);
    if (!pd || !pi || !answered)
        st = vs_errf(err, VS_ERR_NOMEM, "batch: out of memory");
    for (size_t t = 0; t < plan.n_parts && st == VS_OK; t++) {
        size_t n = plan.parts[t].nq * k;
        pd[t] = malloc(n * sizeof **pd);
        pi[t] = malloc(n * sizeof **pi);
        if (!pd[t] || !pi[t])
            st = vs_errf(err, VS_ERR_NOMEM, "batch: out of memory");
        else if ((st = search_part(s, &plan, t, q, k, params, n_threads, pd[t], pi[t], err)) == VS_OK)
            answered[t] = 1;
    }
    if (st == VS_OK)
        st = vs_route_merge(&plan, k, vs_metric_larger_is_better(s->m.metric), (const float *const *)pd,
                            (const int64_t *const *)pi, answered, out_dist, out_ids, err);
    for (size_t t = 0; pd && pi && t < plan.n_parts; t++) {
        free(pd[t]);
        free(pi[t]);
    }
    free(pd);
    free(pi);
    free(answered);
    vs_route_plan_fini(&plan);
    return st;
}
