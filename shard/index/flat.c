/* flat.c: exact search. See flat.h for the design; the per-thread scratch of one search call is
 * allocated once per worker, never per query or per vector. */
#include "shard/index/attrs.h"
#include "shard/index/exact.h"
#include "shard/index/flat.h"

#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "common/idset.h"
#include "common/topk.h"
#include "common/parallel.h"

#define QBLOCK 128  /* queries per sgemm block (also the task unit of the BLAS path) */
#define BBLOCK 1024 /* base rows per sgemm block: QBLOCK*BBLOCK floats of products stay in L2 */

struct vs_flat {
    uint32_t dim;
    vs_metric metric;
    size_t n, cap;
    float *data;  /* n*dim */
    float *norms; /* n squared norms, for the L2 expansion */
    int64_t *ids; /* n user ids */
};

vs_status vs_flat_create(uint32_t dim, vs_metric metric, vs_flat_t **out, char err[VS_ERR_LEN])
{
    if (dim == 0 || dim > 65536)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "dim %u is out of range 1..65536", dim);
    vs_flat_t *f = calloc(1, sizeof *f);
    if (f == NULL)
        return vs_errf(err, VS_ERR_NOMEM, "flat index: out of memory");
    f->dim = dim;
    f->metric = metric;
    *out = f;
    return VS_OK;
}

void vs_flat_destroy(vs_flat_t *f)
{
    if (f == NULL)
        return;
    free(f->data);
    free(f->norms);
    free(f->ids);
    free(f);
}

size_t vs_flat_count(const vs_flat_t *f)
{
    return f->n;
}

const float *vs_flat_data(const vs_flat_t *f)
{
    return f->data;
}

vs_status vs_flat_add(vs_flat_t *f, size_t n, const float *x, const int64_t *ids, char err[VS_ERR_LEN])
{
    vs_status st = vs_check_finite(x, n, f->dim, "vector", err);
    if (st != VS_OK)
        return st;
    if (ids != NULL) {
        for (size_t i = 0; i < n; i++)
            if (ids[i] < 0)
                return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "vector %zu has negative id %lld", i,
                               (long long)ids[i]);
    }
    size_t need = f->n + n;
    if (need < f->n || need > SIZE_MAX / f->dim / sizeof(float))
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "flat index: %zu vectors is too many", need);
    if (need > f->cap) {
        size_t cap = f->cap ? f->cap : 1024;
        while (cap < need)
            cap = cap > SIZE_MAX / 2 ? need : cap * 2;
        float *data = realloc(f->data, cap * f->dim * sizeof(float));
        if (data == NULL)
            return vs_errf(err, VS_ERR_NOMEM, "flat index: out of memory for %zu vectors", cap);
        f->data = data;
        float *norms = realloc(f->norms, cap * sizeof(float));
        if (norms == NULL)
            return vs_errf(err, VS_ERR_NOMEM, "flat index: out of memory for %zu vectors", cap);
        f->norms = norms;
        int64_t *nids = realloc(f->ids, cap * sizeof(int64_t));
        if (nids == NULL)
            return vs_errf(err, VS_ERR_NOMEM, "flat index: out of memory for %zu vectors", cap);
        f->ids = nids;
        f->cap = cap;
    }
    float *dst = f->data + f->n * f->dim;
    memcpy(dst, x, n * f->dim * sizeof(float));
    if (f->metric == VS_METRIC_COSINE)
        vs_normalize_rows(dst, n, f->dim);
    const vs_distance_kernels_t *kern = vs_distance_kernels();
    for (size_t i = 0; i < n; i++) {
        f->norms[f->n + i] = kern->norm_sqr(dst + i * f->dim, f->dim);
        f->ids[f->n + i] = ids ? ids[i] : (int64_t)(f->n + i);
    }
    f->n = need;
    return VS_OK;
}

/* ---- search ------------------------------------------------------------------------------------- */

struct search_ctx;
static inline int rejected(const struct search_ctx *c, size_t row);

typedef struct search_ctx {
    const vs_flat_t *f;
    const float *q;
    size_t nq, k, pool;
    int larger;
    const vs_idset_t *excl;    /* ids never returned (NULL: none) */
    const vs_filter_t *filter; /* attribute filter over rows (NULL: none) */
    float *out_dist;
    int64_t *out_ids;
    /* per worker scratch, worker w owns scratch[w] */
    struct scratch {
        float *qbuf;    /* QBLOCK*dim: normalised queries (cosine) */
        float *qnorm;   /* QBLOCK */
        float *prod;    /* QBLOCK*BBLOCK: sgemm output, or BBLOCK distances in the scan path */
        float *pkeys;   /* QBLOCK*pool */
        int64_t *prows; /* QBLOCK*pool: candidate rows */
        float *fkeys;   /* k */
        int64_t *fids;  /* k */
    } * scratch;
} search_ctx_t;

/* Query vector i of the call, normalised into the worker's buffer for cosine. */
static const float *query_ptr(search_ctx_t *c, struct scratch *s, size_t i, size_t slot)
{
    const float *qi = c->q + i * c->f->dim;
    if (c->f->metric != VS_METRIC_COSINE)
        return qi;
    float *dst = s->qbuf + slot * c->f->dim;
    memcpy(dst, qi, c->f->dim * sizeof(float));
    vs_normalize_rows(dst, 1, c->f->dim);
    return dst;
}

/* Scan path: one query against every row with the direct SIMD kernel. */
static void scan_task(void *arg, size_t qi, size_t worker)
{
    search_ctx_t *c = arg;
    struct scratch *s = &c->scratch[worker];
    const vs_flat_t *f = c->f;
    const float *q = query_ptr(c, s, qi, 0);
    vs_topk_t h;
    vs_topk_init(&h, c->k, s->fkeys, s->fids);
    float thr = vs_topk_threshold(&h);
    for (size_t b0 = 0; b0 < f->n; b0 += BBLOCK) {
        size_t nb = f->n - b0 < BBLOCK ? f->n - b0 : BBLOCK;
        vs_distance_batch(f->metric, q, f->data + b0 * f->dim, nb, f->dim, s->prod);
        for (size_t j = 0; j < nb; j++) {
            float key = vs_topk_key(s->prod[j], c->larger);
            if (key <= thr && !rejected(c, b0 + j)) {
                vs_topk_push(&h, key, f->ids[b0 + j]);
                thr = vs_topk_threshold(&h);
            }
        }
    }
    vs_topk_emit(&h, c->larger, c->out_dist + qi * c->k, c->out_ids + qi * c->k);
}

/* BLAS path: a block of up to QBLOCK queries against all rows through sgemm, then an exact re-rank. */
static void blas_task(void *arg, size_t block, size_t worker)
{
    search_ctx_t *c = arg;
    struct scratch *s = &c->scratch[worker];
    const vs_flat_t *f = c->f;
    const size_t d = f->dim;
    size_t q0 = block * QBLOCK;
    size_t nqb = c->nq - q0 < QBLOCK ? c->nq - q0 : QBLOCK;
    const int is_l2 = f->metric == VS_METRIC_L2;

    /* gather (and for cosine normalise) the block's queries contiguously */
    const float *qb = c->q + q0 * d;
    if (f->metric == VS_METRIC_COSINE) {
        for (size_t i = 0; i < nqb; i++)
            query_ptr(c, s, q0 + i, i);
        qb = s->qbuf;
    }
    const vs_distance_kernels_t *kern = vs_distance_kernels();
    vs_topk_t heaps[QBLOCK];
    for (size_t i = 0; i < nqb; i++) {
        s->qnorm[i] = is_l2 ? kern->norm_sqr(qb + i * d, d) : 0.0f;
        vs_topk_init(&heaps[i], c->pool, s->pkeys + i * c->pool, s->prows + i * c->pool);
    }
    for (size_t b0 = 0; b0 < f->n; b0 += BBLOCK) {
        size_t nb = f->n - b0 < BBLOCK ? f->n - b0 : BBLOCK;
        /* prod = -2 q.x for L2 (so key = |q|^2 + |x|^2 + prod), q.x for similarities */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nqb, (int)nb, (int)d, is_l2 ? -2.0f : 1.0f,
                    qb, (int)d, f->data + b0 * d, (int)d, 0.0f, s->prod, (int)nb);
        const float *bn = f->norms + b0;
        for (size_t i = 0; i < nqb; i++) {
            const float *row = s->prod + i * nb;
            vs_topk_t *h = &heaps[i];
            float thr = vs_topk_threshold(h);
            if (is_l2) {
                float qn = s->qnorm[i];
                for (size_t j = 0; j < nb; j++) {
                    float key = qn + bn[j] + row[j];
                    if (key <= thr && !rejected(c, b0 + j)) {
                        vs_topk_push(h, key, (int64_t)(b0 + j));
                        thr = vs_topk_threshold(h);
                    }
                }
            } else {
                for (size_t j = 0; j < nb; j++) {
                    float key = -row[j];
                    if (key <= thr && !rejected(c, b0 + j)) {
                        vs_topk_push(h, key, (int64_t)(b0 + j));
                        thr = vs_topk_threshold(h);
                    }
                }
            }
        }
    }
    /* re-rank each query's pool with the direct kernel: same distances as the scan path */
    for (size_t i = 0; i < nqb; i++) {
        const float *q = qb + i * d;
        vs_topk_t fin;
        vs_topk_init(&fin, c->k, s->fkeys, s->fids);
        for (size_t p = 0; p < heaps[i].size; p++) {
            size_t r = (size_t)heaps[i].ids[p];
            float dist = is_l2 ? kern->l2sqr(q, f->data + r * d, d) : kern->ip(q, f->data + r * d, d);
            vs_topk_push(&fin, vs_topk_key(dist, c->larger), f->ids[r]);
        }
        vs_topk_emit(&fin, c->larger, c->out_dist + (q0 + i) * c->k, c->out_ids + (q0 + i) * c->k);
    }
}

static void free_scratch(search_ctx_t *c, size_t n_workers)
{
    if (c->scratch == NULL)
        return;
    for (size_t w = 0; w < n_workers; w++) {
        struct scratch *s = &c->scratch[w];
        free(s->qbuf);
        free(s->qnorm);
        free(s->prod);
        free(s->pkeys);
        free(s->prows);
        free(s->fkeys);
        free(s->fids);
    }
    free(c->scratch);
}

/* 1 when row must not be a result: excluded by id, or failing the filter. */
static inline int rejected(const search_ctx_t *c, size_t row)
{
    return !vs_filter_match(c->filter, row) || vs_idset_has(c->excl, c->f->ids[row]);
}

static vs_status flat_search(const vs_flat_t *f, size_t nq, const float *q, size_t k, size_t n_threads,
                             int use_blas, const vs_idset_t *excl, const vs_filter_t *filter, float *out_dist,
                             int64_t *out_ids, char *err)
{
    if (k == 0 || k > VS_TOPK_MAX_K)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "k = %zu is out of range 1..%u", k, VS_TOPK_MAX_K);
    vs_status st = vs_check_finite(q, nq, f->dim, "query", err);
    if (st != VS_OK)
        return st;
    if (nq == 0)
        return VS_OK;
    if (n_threads == 0)
        n_threads = vs_parallel_cpus();
    int blas = use_blas < 0 ? nq >= VS_FLAT_BLAS_MIN_NQ : use_blas;
    size_t n_tasks = blas ? (nq + QBLOCK - 1) / QBLOCK : nq;
    size_t n_workers = n_threads < n_tasks ? n_threads : n_tasks;

    search_ctx_t c = {.f = f,
                      .q = q,
                      .nq = nq,
                      .k = k,
                      .larger = vs_metric_larger_is_better(f->metric),
                      .excl = excl,
                      .filter = vs_filter_active(filter) ? filter : NULL,
                      .out_dist = out_dist,
                      .out_ids = out_ids};
    c.pool = k + (k > 16 ? k : 16);
    c.scratch = calloc(n_workers, sizeof *c.scratch);
    if (c.scratch == NULL)
        return vs_errf(err, VS_ERR_NOMEM, "flat search: out of memory");
    size_t qslots = blas ? QBLOCK : 1;
    for (size_t w = 0; w < n_workers; w++) {
        struct scratch *s = &c.scratch[w];
        s->qbuf = malloc(qslots * f->dim * sizeof(float));
        s->qnorm = malloc(QBLOCK * sizeof(float));
        s->prod = malloc((blas ? (size_t)QBLOCK * BBLOCK : BBLOCK) * sizeof(float));
        s->pkeys = blas ? malloc(QBLOCK * c.pool * sizeof(float)) : NULL;
        s->prows = blas ? malloc(QBLOCK * c.pool * sizeof(int64_t)) : NULL;
        s->fkeys = malloc(k * sizeof(float));
        s->fids = malloc(k * sizeof(int64_t));
        if (!s->qbuf || !s->qnorm || !s->prod || (blas && (!s->pkeys || !s->prows)) || !s->fkeys ||
            !s->fids) {
            free_scratch(&c, n_workers);
            return vs_errf(err, VS_ERR_NOMEM, "flat search: out of memory for scratch");
        }
    }
    if (blas)
        vs_parallel_blas_single();
    st = vs_parallel_for(n_tasks, n_workers, blas ? blas_task : scan_task, &c, err);
    free_scratch(&c, n_workers);
    return st;
}

/* ---- vs_index_t glue ---------------------------------------------------------------------------- */

static vs_status ops_train(void *impl, size_t n, const float *x, size_t n_threads,
                           const vs_progress_cb_t *progress, char *err)
{
    (void)impl, (void)n, (void)x, (void)n_threads, (void)progress, (void)err;
    return VS_OK;
}

static vs_status ops_add(void *impl, size_t n, const float *x, const int64_t *ids, size_t n_threads,
                         const vs_progress_cb_t *progress, char *err)
{
    (void)n_threads;
    vs_status st = vs_flat_add(impl, n, x, ids, err);
    if (st == VS_OK)
        vs_progress_call(progress, n, n);
    return st;
}

vs_status vs_flat_search(const vs_flat_t *f, size_t nq, const float *q, size_t k, size_t n_threads,
                         int use_blas, float *out_dist, int64_t *out_ids, char err[VS_ERR_LEN])
{
    return flat_search(f, nq, q, k, n_threads, use_blas, NULL, NULL, out_dist, out_ids, err);
}

static vs_status ops_search(const void *impl, size_t nq, const float *q, size_t k,
                            const vs_search_params_t *params, size_t n_threads, float *out_dist,
                            int64_t *out_ids, char *err)
{
    return flat_search(impl, nq, q, k, n_threads, -1, params->exclude, params->filter, out_dist, out_ids,
                       err);
}

static size_t ops_count(const void *impl)
{
    return ((const vs_flat_t *)impl)->n;
}

static size_t ops_memory_bytes(const void *impl)
{
    const vs_flat_t *f = impl;
    return f->n * (f->dim * sizeof(float) + sizeof(float) + sizeof(int64_t));
}

static int ops_needs_training(const void *impl)
{
    (void)impl;
    return 0;
}

static void ops_destroy(void *impl)
{
    vs_flat_destroy(impl);
}

static void ops_ids_in_order(const void *impl, int64_t *out)
{
    const vs_flat_t *f = impl;
    memcpy(out, f->ids, f->n * sizeof *out);
}

static size_t ops_exact_segs(const void *impl, vs_exact_seg_t *out, size_t cap)
{
    const vs_flat_t *f = impl;
    if (cap > 0)
        out[0] = (vs_exact_seg_t){.rows = f->data, .ids = f->ids, .n = f->n};
    return 1;
}

const vs_index_ops_t vs_flat_ops = {
    ops_train,          ops_add,     ops_search,       ops_count, ops_memory_bytes,
    ops_needs_training, ops_destroy, ops_ids_in_order, NULL,      NULL,
    ops_exact_segs,
};
