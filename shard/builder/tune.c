/* tune.c: see tune.h. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/topk.h"
#include "shard/builder/tune.h"
#include "shard/index/index.h"

double vs_tune_recall(const int64_t *ids, const int64_t *gt, size_t nq, size_t k)
{
    size_t hit = 0;
    for (size_t q = 0; q < nq; q++)
        for (size_t i = 0; i < k; i++) {
            int64_t g = gt[q * k + i];
            if (g < 0)
                continue;
            for (size_t j = 0; j < k; j++)
                if (ids[q * k + j] == g) {
                    hit++;
                    break;
                }
        }
    return nq && k ? (double)hit / (double)(nq * k) : 0.0;
}

typedef struct tuner {
    vs_manifest_t *m;
    const vs_tune_opts_t *o;
    vs_index_t *const *parts;
    float *dist, *mdist; /* P x nq x k, nq x k */
    int64_t *ids, *mids;
} tuner_t;

/* recall@k of the version with params (every partition searched, merged per query). */
static vs_status measure(tuner_t *t, const vs_search_params_t *sp, double *out, char err[VS_ERR_LEN])
{
    const size_t nq = t->o->nq, k = t->o->k, P = t->m->n_partitions;
    for (size_t p = 0; p < P; p++) {
        vs_status st = vs_index_search(t->parts[p], nq, t->o->queries, k, sp, 1, t->dist + p * nq * k,
                                       t->ids + p * nq * k, err);
        if (st != VS_OK)
            return st;
    }
    vs_topk_list_t *lists = malloc(P * sizeof *lists);
    if (!lists)
        return vs_errf(err, VS_ERR_NOMEM, "tune: out of memory");
    int larger = t->m->metric != VS_METRIC_L2;
    vs_status st = VS_OK;
    for (size_t q = 0; q < nq && st == VS_OK; q++) {
        for (size_t p = 0; p < P; p++)
            lists[p] = (vs_topk_list_t){t->dist + (p * nq + q) * k, t->ids + (p * nq + q) * k, k};
        st = vs_topk_merge(lists, P, larger, k, t->mdist + q * k, t->mids + q * k, err);
    }
    free(lists);
    if (st == VS_OK)
        *out = vs_tune_recall(t->mids, t->o->gt_ids, nq, k);
    return st;
}

/* Bytes a query touches with these IVF parameters (the cost model of tune.h). */
static double ivf_cost(const vs_factory_spec_t *s, uint32_t dim, double mean_list, uint32_t nprobe, float kf,
                       uint32_t k)
{
    double code = s->codec == VS_CODEC_FLAT  ? 4.0 * dim
                  : s->codec == VS_CODEC_SQ8 ? (double)dim
                                             : (double)s->pq_m * s->pq_nbits / 8.0;
    double lut =
        s->codec == VS_CODEC_PQ ? (double)s->pq_m * (1u << s->pq_nbits) * (s->fastscan ? 1.0 : 4.0) : 0.0;
    double refine = s->refine == VS_REFINE_FLAT ? 4.0 * dim : s->refine == VS_REFINE_SQ8 ? (double)dim : 0.0;
    return nprobe * (mean_list * code + lut) + (double)k * (kf > 0 ? kf : 1.0f) * refine;
}

static void record(vs_search_defaults_t *d, const vs_search_params_t *sp, double recall)
{
    d->nprobe = sp->nprobe;
    d->ef_search = sp->ef_search;
    d->k_factor = sp->k_factor;
    d->measured_recall = recall;
}

static vs_status sweep_ivf(tuner_t *t, const vs_factory_spec_t *s, char err[VS_ERR_LEN])
{
    uint64_t n = 0;
    for (uint32_t p = 0; p < t->m->n_partitions; p++)
        n += t->m->partitions[p].n_vectors;
    const double mean_list = (double)n / s->nlist;
    const float kfs_refine[] = {1, 2, 4, 8, 16}, kfs_none[] = {0};
    const float *kfs = s->refine ? kfs_refine : kfs_none;
    size_t n_kf = s->refine ? 5 : 1;
    vs_search_defaults_t *d = &t->m->defaults;
    double best_cost = INFINITY, best_any = -1;
    vs_search_params_t best_any_sp = {0};
    for (size_t i = 0; i < n_kf; i++) {
        /* the smallest nprobe reaching the target with this k_factor: 1, 2, 3, 4, 6, 8, 12, ... nlist */
        for (uint32_t np = 1;; np = np < 4 ? np + 1 : (np % 3 == 0 ? np / 3 * 4 : np / 2 * 3)) {
            if (np > s->nlist)
                np = s->nlist;
            vs_search_params_t sp = {.nprobe = np, .k_factor = kfs[i]};
            double cost = ivf_cost(s, t->m->dim, mean_list, np, kfs[i], t->o->k);
            if (cost >= best_cost)
                break; /* already costlier than a combination that reached the target */
            double r;
            vs_status st = measure(t, &sp, &r, err);
            if (st != VS_OK)
                return st;
            if (r > best_any) {
                best_any = r;
                best_any_sp = sp;
            }
            if (r >= t->o->target_recall) {
                best_cost = cost;
                record(d, &sp, r);
                break;
            }
            if (np == s->nlist)
                break;
        }
    }
    if (!isfinite(best_cost)) /* the target is out of reach: the best recall found, and say so */
        record(d, &best_any_sp, best_any);
    return VS_OK;
}

static vs_status sweep_hnsw(tuner_t *t, char err[VS_ERR_LEN])
{
    static const uint32_t efs[] = {16,  24,  32,  48,  64,   96,   128,  192,
                                   256, 384, 512, 768, 1024, 1536, 2048, 4096};
    vs_search_defaults_t *d = &t->m->defaults;
    double best = -1;
    vs_search_params_t best_sp = {0};
    for (size_t i = 0; i < sizeof efs / sizeof *efs; i++) {
        vs_search_params_t sp = {.ef_search = efs[i] < t->o->k ? t->o->k : efs[i]};
        double r;
        vs_status st = measure(t, &sp, &r, err);
        if (st != VS_OK)
            return st;
        if (r > best) {
            best = r;
            best_sp = sp;
        }
        if (r >= t->o->target_recall) {
            record(d, &sp, r);
            return VS_OK;
        }
    }
    record(d, &best_sp, best);
    return VS_OK;
}

vs_status vs_tune_version(vs_manifest_t *m, vs_index_t *const *parts, const vs_tune_opts_t *o,
                          char err[VS_ERR_LEN])
{
    if (!(o->target_recall > 0 && o->target_recall <= 1) || o->k < 1 || o->k > 1000 || o->nq < 1 ||
        !o->queries || !o->gt_ids)
        return vs_errf(
            err, VS_ERR_INVALID_ARGUMENT,
            "tune: target recall must be in (0, 1], k in 1..1000, and queries with ground truth given");
    vs_factory_spec_t spec;
    vs_status st = vs_factory_parse(m->factory, &spec, err);
    if (st != VS_OK)
        return st;
    memset(&m->defaults, 0, sizeof m->defaults);
    tuner_t t = {.m = m, .o = o, .parts = parts};
    const size_t P = m->n_partitions, nqk = o->nq * o->k;
    t.dist = malloc(P * nqk * sizeof *t.dist);
    t.ids = malloc(P * nqk * sizeof *t.ids);
    t.mdist = malloc(nqk * sizeof *t.mdist);
    t.mids = malloc(nqk * sizeof *t.mids);
    if (!t.dist || !t.ids || !t.mdist || !t.mids)
        st = vs_errf(err, VS_ERR_NOMEM, "tune: out of memory for %zu queries x k %u x %zu partitions", o->nq,
                     o->k, P);
    if (st == VS_OK) {
        if (spec.type == VS_INDEX_IVF)
            st = sweep_ivf(&t, &spec, err);
        else if (spec.type == VS_INDEX_HNSW)
            st = sweep_hnsw(&t, err);
    }
    if (st == VS_OK && spec.type != VS_INDEX_FLAT) {
        m->defaults.present = 1;
        m->defaults.k = o->k;
        m->defaults.target_recall = o->target_recall;
        m->defaults.n_queries = (uint32_t)o->nq;
        snprintf(m->defaults.source, sizeof m->defaults.source, "%s", o->source ? o->source : "");
    }
    free(t.dist);
    free(t.ids);
    free(t.mdist);
    free(t.mids);
    return st;
}
