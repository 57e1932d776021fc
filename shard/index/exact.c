/* exact.c: see exact.h. Flat's BLAS path over segments instead of one array: per block of QBLOCK queries,
 * sgemm against BBLOCK rows of each segment, keys |q|^2 + |x|^2 - 2 q.x (L2) or -q.x (similarities) into a
 * pool of k + max(k, 16) candidates, then the pool re-ranked with the direct kernel. */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "common/parallel.h"
#include "common/topk.h"
#include "shard/index/exact.h"

#define QBLOCK 64
#define BBLOCK 1024

typedef struct ctx {
    vs_metric metric;
    uint32_t d;
    const vs_exact_seg_t *segs;
    size_t n_segs, nq, k, pool;
    const float *q;
    float *out_dist;
    int64_t *out_ids;
    struct scratch {
        float *qbuf, *qnorm, *prod, *rnorm, *pkeys, *fkeys;
        int64_t *pref, *fids; /* pool entries: (segment << 40) | row */
    } * scratch;
} ctx_t;

static void block_task(void *arg, size_t block, size_t worker)
{
    ctx_t *c = arg;
    struct scratch *s = &c->scratch[worker];
    const size_t d = c->d, q0 = block * QBLOCK, nqb = c->nq - q0 < QBLOCK ? c->nq - q0 : QBLOCK;
    const int is_l2 = c->metric == VS_METRIC_L2, larger = vs_metric_larger_is_better(c->metric);
    const vs_distance_kernels_t *kern = vs_distance_kernels();
    memcpy(s->qbuf, c->q + q0 * d, nqb * d * sizeof(float));
    if (c->metric == VS_METRIC_COSINE)
        vs_normalize_rows(s->qbuf, nqb, (uint32_t)d);
    vs_topk_t heaps[QBLOCK];
    for (size_t i = 0; i < nqb; i++) {
        s->qnorm[i] = is_l2 ? kern->norm_sqr(s->qbuf + i * d, (uint32_t)d) : 0.0f;
        vs_topk_init(&heaps[i], c->pool, s->pkeys + i * c->pool, s->pref + i * c->pool);
    }
    for (size_t g = 0; g < c->n_segs; g++) {
        const vs_exact_seg_t *seg = &c->segs[g];
        for (size_t b0 = 0; b0 < seg->n; b0 += BBLOCK) {
            const size_t nb = seg->n - b0 < BBLOCK ? seg->n - b0 : BBLOCK;
            const float *rows = seg->rows + b0 * d;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nqb, (int)nb, (int)d,
                        is_l2 ? -2.0f : 1.0f, s->qbuf, (int)d, rows, (int)d, 0.0f, s->prod, (int)nb);
            if (is_l2)
                for (size_t j = 0; j < nb; j++)
                    s->rnorm[j] = kern->norm_sqr(rows + j * d, (uint32_t)d);
            for (size_t i = 0; i < nqb; i++) {
                const float *row = s->prod + i * nb;
                vs_topk_t *h = &heaps[i];
                float thr = vs_topk_threshold(h);
                const float qn = s->qnorm[i];
                for (size_t j = 0; j < nb; j++) {
                    float key = is_l2 ? qn + s->rnorm[j] + row[j] : -row[j];
                    if (key <= thr) {
                        vs_topk_push(h, key, (int64_t)((uint64_t)g << 40 | (uint64_t)(b0 + j)));
                        thr = vs_topk_threshold(h);
                    }
                }
            }
        }
    }
    for (size_t i = 0; i < nqb; i++) { /* the pool re-ranked with the direct kernel */
        const float *q = s->qbuf + i * d;
        vs_topk_t fin;
        vs_topk_init(&fin, c->k, s->fkeys, s->fids);
        for (size_t p = 0; p < heaps[i].size; p++) {
            const uint64_t ref = (uint64_t)heaps[i].ids[p];
            const vs_exact_seg_t *seg = &c->segs[ref >> 40];
            const size_t r = (size_t)(ref & ((1ull << 40) - 1));
            const float *x = seg->rows + r * d;
            float dist = is_l2 ? kern->l2sqr(q, x, (uint32_t)d) : kern->ip(q, x, (uint32_t)d);
            vs_topk_push(&fin, vs_topk_key(dist, larger), seg->ids ? seg->ids[r] : seg->id0 + (int64_t)r);
        }
        vs_topk_emit(&fin, larger, c->out_dist + (q0 + i) * c->k, c->out_ids + (q0 + i) * c->k);
    }
}

static void free_scratch(ctx_t *c, size_t n)
{
    for (size_t w = 0; c->scratch && w < n; w++) {
        struct scratch *s = &c->scratch[w];
        free(s->qbuf);
        free(s->qnorm);
        free(s->prod);
        free(s->rnorm);
        free(s->pkeys);
        free(s->fkeys);
        free(s->pref);
        free(s->fids);
    }
    free(c->scratch);
}

vs_status vs_exact_search(vs_metric metric, uint32_t dim, const vs_exact_seg_t *segs, size_t n_segs,
                          size_t nq, const float *q, size_t k, size_t n_threads, float *out_dist,
                          int64_t *out_ids, char err[VS_ERR_LEN])
{
    if (k == 0 || k > VS_TOPK_MAX_K)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "k = %zu is out of range 1..%u", k, VS_TOPK_MAX_K);
    vs_status st = vs_check_finite(q, nq, dim, "query", err);
    if (st != VS_OK || nq == 0)
        return st;
    if (n_segs >= (1u << 23))
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "exact search: %zu segments (at most 2^23)", n_segs);
    if (n_threads == 0)
        n_threads = vs_parallel_cpus();
    const size_t n_blocks = (nq + QBLOCK - 1) / QBLOCK,
                 n_workers = n_threads < n_blocks ? n_threads : n_blocks;
    ctx_t c = {.metric = metric,
               .d = dim,
               .segs = segs,
               .n_segs = n_segs,
               .nq = nq,
               .k = k,
               .pool = k + (k > 16 ? k : 16),
               .q = q,
               .out_dist = out_dist,
               .out_ids = out_ids};
    if (!(c.scratch = calloc(n_workers, sizeof *c.scratch)))
        return vs_errf(err, VS_ERR_NOMEM, "exact search: out of memory");
    for (size_t w = 0; w < n_workers; w++) {
        struct scratch *s = &c.scratch[w];
        s->qbuf = malloc(QBLOCK * dim * sizeof(float));
        s->qnorm = malloc(QBLOCK * sizeof(float));
        s->prod = malloc((size_t)QBLOCK * BBLOCK * sizeof(float));
        s->rnorm = malloc(BBLOCK * sizeof(float));
        s->pkeys = malloc(QBLOCK * c.pool * sizeof(float));
        s->pref = malloc(QBLOCK * c.pool * sizeof(int64_t));
        s->fkeys = malloc(k * sizeof(float));
        s->fids = malloc(k * sizeof(int64_t));
        if (!s->qbuf || !s->qnorm || !s->prod || !s->rnorm || !s->pkeys || !s->pref || !s->fkeys ||
            !s->fids) {
            free_scratch(&c, n_workers);
            return vs_errf(err, VS_ERR_NOMEM, "exact search: out of memory for scratch");
        }
    }
    vs_parallel_blas_single();
    st = vs_parallel_for(n_blocks, n_workers, block_task, &c, err);
    free_scratch(&c, n_workers);
    return st;
}
