/* kmeans.c: k-means training and nearest-centroid search; see kmeans.h for the contracts.
 *
 * Not here: clocks, printing, threads that outlive a call, allocation per point or per iteration in a
 * hot loop (every buffer is sized once per call). Key design choices: the nearest-centroid passes are
 * sgemm on fixed blocks of XB points x CB centroids followed by a SIMD argmin (or, for nprobe > 1, a
 * candidate buffer pruned by quickselect), and the centroid update is partitioned by centroid, not by
 * point: points are counting-sorted by label and each centroid's mean is summed in double, in point
 * order, by exactly one task. Every result is therefore a function of the data and the seed alone,
 * whatever the number of threads, with no reduction of per-thread partial sums (which would cost k*d
 * doubles per thread). */
#include "common/kmeans.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "common/cpu.h"
#include "common/parallel.h"
#include "common/topk.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define VS_HAVE_X86 1
#endif

#define XB 256 /* points per sgemm block: the task unit of assign and nearest */
#define CB 512 /* centroids per sgemm block: XB*CB floats of products (512 KB) stay in L2 */
#define MAX_DIM 65536u
#define DEFAULT_N_ITER 20
#define DEFAULT_MAX_PPC 256
#define SPLIT_EPS (1.0f / 1024.0f)
#define SEED_PER_CENTROID 16           /* k-means++ runs on min(n_train, max(16k, 8192)) points */
#define SEED_MIN_POINTS 8192           /* (its cost is then ~1/16 of one Lloyd iteration's flops) */
#define SEED_CHUNK 1024                /* points per task of the k-means++ distance update */
#define NEAREST_POOL_BUDGET (1u << 20) /* candidate slots per worker in vs_kmeans_nearest */

/* ---- deterministic random numbers (splitmix64) -------------------------------------------------- */

typedef struct rng {
    uint64_t s;
} rng_t;

static uint64_t rng_next(rng_t *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Independent streams for sampling, seeding and splitting, so that one's draws never shift another's. */
static void rng_init(rng_t *r, uint64_t seed, uint64_t stream)
{
    r->s = seed ^ (stream * 0xd1b54a32d192ed03ull);
    (void)rng_next(r);
}

/* Uniform in [0, n), n >= 1, without modulo bias (Lemire's multiply-and-reject). */
static uint64_t rng_below(rng_t *r, uint64_t n)
{
    unsigned __int128 m = (unsigned __int128)rng_next(r) * n;
    uint64_t lo = (uint64_t)m;
    if (lo < n) {
        uint64_t t = (0 - n) % n;
        while (lo < t) {
            m = (unsigned __int128)rng_next(r) * n;
            lo = (uint64_t)m;
        }
    }
    return (uint64_t)(m >> 64);
}

/* Uniform in [0, 1). */
static double rng_unit(rng_t *r)
{
    return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

/* ---- argmin of |c|^2 - 2 x.c over one sgemm block ----------------------------------------------- */

/* For rows i < m of prod (m x nb, row-major) the key of centroid c0 + j is cn[j] + prod[i*nb + j]. When
 * a row's smallest key (first j on ties) is below best[i], it replaces best[i] and label[i]. Keys are a
 * single float addition, so every variant computes the same keys and returns the same labels. */
typedef void (*argmin_fn)(const float *prod, size_t m, size_t nb, const float *cn, int32_t c0, float *best,
                          int32_t *label);

static void argmin_scalar(const float *prod, size_t m, size_t nb, const float *cn, int32_t c0, float *best,
                          int32_t *label)
{
    for (size_t i = 0; i < m; i++) {
        const float *row = prod + i * nb;
        float b = best[i];
        int32_t l = label[i];
        for (size_t j = 0; j < nb; j++) {
            float key = cn[j] + row[j];
            if (key < b) {
                b = key;
                l = c0 + (int32_t)j;
            }
        }
        best[i] = b;
        label[i] = l;
    }
}

#ifdef VS_HAVE_X86

#define VS_AVX2 __attribute__((target("avx2,fma")))
#define VS_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")))

VS_AVX2 static void argmin_avx2(const float *prod, size_t m, size_t nb, const float *cn, int32_t c0,
                                float *best, int32_t *label)
{
    const __m256i step = _mm256_set1_epi32(8);
    for (size_t i = 0; i < m; i++) {
        const float *row = prod + i * nb;
        __m256 vmin = _mm256_set1_ps(INFINITY);
        __m256i vidx = _mm256_setzero_si256();
        __m256i cur = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        size_t j = 0;
        for (; j + 8 <= nb; j += 8) {
            __m256 key = _mm256_add_ps(_mm256_loadu_ps(cn + j), _mm256_loadu_ps(row + j));
            __m256 lt = _mm256_cmp_ps(key, vmin, _CMP_LT_OQ);
            vmin = _mm256_blendv_ps(vmin, key, lt);
            vidx = _mm256_castps_si256(
                _mm256_blendv_ps(_mm256_castsi256_ps(vidx), _mm256_castsi256_ps(cur), lt));
            cur = _mm256_add_epi32(cur, step);
        }
        float lanes[8];
        int32_t idx[8];
        _mm256_storeu_ps(lanes, vmin);
        _mm256_storeu_si256((__m256i *)idx, vidx);
        float mv = INFINITY;
        int32_t mi = 0;
        for (int t = 0; t < 8; t++) {
            if (lanes[t] < mv || (lanes[t] == mv && idx[t] < mi)) {
                mv = lanes[t];
                mi = idx[t];
            }
        }
        for (; j < nb; j++) { /* tail indices exceed every lane's, so strict < keeps the first */
            float key = cn[j] + row[j];
            if (key < mv) {
                mv = key;
                mi = (int32_t)j;
            }
        }
        if (mv < best[i]) {
            best[i] = mv;
            label[i] = c0 + mi;
        }
    }
}

VS_AVX512 static void argmin_avx512(const float *prod, size_t m, size_t nb, const float *cn, int32_t c0,
                                    float *best, int32_t *label)
{
    const __m512i step = _mm512_set1_epi32(16);
    for (size_t i = 0; i < m; i++) {
        const float *row = prod + i * nb;
        __m512 vmin = _mm512_set1_ps(INFINITY);
        __m512i vidx = _mm512_setzero_si512();
        __m512i cur = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        size_t j = 0;
        for (; j + 16 <= nb; j += 16) {
            __m512 key = _mm512_add_ps(_mm512_loadu_ps(cn + j), _mm512_loadu_ps(row + j));
            __mmask16 lt = _mm512_cmp_ps_mask(key, vmin, _CMP_LT_OQ);
            vmin = _mm512_mask_mov_ps(vmin, lt, key);
            vidx = _mm512_mask_mov_epi32(vidx, lt, cur);
            cur = _mm512_add_epi32(cur, step);
        }
        if (j < nb) {
            __mmask16 tm = (__mmask16)((1u << (nb - j)) - 1);
            __m512 key = _mm512_add_ps(_mm512_maskz_loadu_ps(tm, cn + j), _mm512_maskz_loadu_ps(tm, row + j));
            __mmask16 lt = _mm512_mask_cmp_ps_mask(tm, key, vmin, _CMP_LT_OQ);
            vmin = _mm512_mask_mov_ps(vmin, lt, key);
            vidx = _mm512_mask_mov_epi32(vidx, lt, cur);
        }
        float mv = _mm512_reduce_min_ps(vmin);
        if (mv < best[i]) {
            /* each lane holds its first minimum; the smallest index among the minimal lanes is the first */
            __mmask16 eq = _mm512_cmp_ps_mask(vmin, _mm512_set1_ps(mv), _CMP_EQ_OQ);
            __m512i cand = _mm512_mask_mov_epi32(_mm512_set1_epi32(INT32_MAX), eq, vidx);
            best[i] = mv;
            label[i] = c0 + _mm512_reduce_min_epi32(cand);
        }
    }
}

#endif /* VS_HAVE_X86 */

static argmin_fn argmin_kernel(void)
{
    switch (vs_cpu_simd_level()) {
#ifdef VS_HAVE_X86
    case VS_SIMD_AVX512:
        return argmin_avx512;
    case VS_SIMD_AVX2:
        return argmin_avx2;
#endif
    default:
        return argmin_scalar;
    }
}

/* ---- shared checks ------------------------------------------------------------------------------ */

static vs_status check_shape(uint32_t k, uint32_t d, const char *who, char *err)
{
    if (k == 0 || k > INT32_MAX)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "%s: k = %u is out of range 1..%d", who, k, INT32_MAX);
    if (d == 0 || d > MAX_DIM)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "%s: dim %u is out of range 1..%u", who, d, MAX_DIM);
    return VS_OK;
}

static size_t min_size(size_t a, size_t b)
{
    return a < b ? a : b;
}

/* ---- assignment: the engine of vs_kmeans_assign and of every Lloyd iteration ---------------------- */

#define ASSIGN_SCRATCH ((size_t)XB * CB + XB) /* floats per worker: products, then best keys */

/* Buffers of one assignment shape, allocated once and reused across Lloyd iterations. */
typedef struct assigner {
    size_t n, n_tasks, n_workers;
    uint32_t k, d;
    float *cn;      /* k squared centroid norms */
    float *scratch; /* n_workers * ASSIGN_SCRATCH */
} assigner_t;

typedef struct assign_ctx {
    const assigner_t *as;
    const float *x, *c;
    int32_t *labels;
    float *dist;
    argmin_fn argmin;
    const vs_distance_kernels_t *kern;
} assign_ctx_t;

static void assigner_fini(assigner_t *as)
{
    free(as->cn);
    free(as->scratch);
}

static vs_status assigner_init(assigner_t *as, size_t n, uint32_t k, uint32_t d, size_t n_threads, char *err)
{
    memset(as, 0, sizeof *as);
    as->n = n;
    as->k = k;
    as->d = d;
    as->n_tasks = (n + XB - 1) / XB;
    as->n_workers = min_size(n_threads, as->n_tasks);
    if (as->n_workers == 0)
        as->n_workers = 1;
    as->cn = malloc((size_t)k * sizeof(float));
    as->scratch = malloc(as->n_workers * ASSIGN_SCRATCH * sizeof(float));
    if (as->cn == NULL || as->scratch == NULL) {
        assigner_fini(as);
        return vs_errf(err, VS_ERR_NOMEM, "k-means: out of memory for assignment scratch");
    }
    return VS_OK;
}

static void assign_task(void *arg, size_t block, size_t worker)
{
    const assign_ctx_t *a = arg;
    const assigner_t *as = a->as;
    const size_t d = as->d;
    const size_t i0 = block * XB, m = min_size(XB, as->n - i0);
    float *prod = as->scratch + worker * ASSIGN_SCRATCH;
    float *best = prod + (size_t)XB * CB;
    int32_t *lab = a->labels + i0;
    const float *xb = a->x + i0 * d;
    for (size_t i = 0; i < m; i++) {
        best[i] = INFINITY;
        lab[i] = 0;
    }
    for (size_t c0 = 0; c0 < as->k; c0 += CB) {
        size_t nb = min_size(CB, as->k - c0);
        /* prod = -2 x.c; the argmin adds |c|^2 (|x|^2 is the same for every centroid) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)nb, (int)d, -2.0f, xb, (int)d,
                    a->c + c0 * d, (int)d, 0.0f, prod, (int)nb);
        a->argmin(prod, m, nb, as->cn + c0, (int32_t)c0, best, lab);
    }
    if (a->dist != NULL) {
        for (size_t i = 0; i < m; i++)
            a->dist[i0 + i] = a->kern->l2sqr(xb + i * d, a->c + (size_t)lab[i] * d, d);
    }
}

/* labels[n] and dist[n] (may be NULL) of as->n points x against centroids c. VS_ERR_NOMEM only, and
 * then before anything is written. */
static vs_status assigner_run(assigner_t *as, const float *x, const float *c, int32_t *labels, float *dist,
                              char *err)
{
    const vs_distance_kernels_t *kern = vs_distance_kernels();
    for (size_t j = 0; j < as->k; j++)
        as->cn[j] = kern->norm_sqr(c + j * as->d, as->d);
    assign_ctx_t a = {as, x, c, labels, dist, argmin_kernel(), kern};
    vs_parallel_blas_single();
    return vs_parallel_for(as->n_tasks, as->n_workers, assign_task, &a, err);
}

vs_status vs_kmeans_assign(const float *x, size_t n, const float *centroids, uint32_t k, uint32_t d,
                           size_t n_threads, int32_t *out_labels, float *out_dist, char err[VS_ERR_LEN])
{
    vs_status st = check_shape(k, d, "k-means assign", err);
    if (st != VS_OK || n == 0)
        return st;
    if ((st = vs_check_finite(centroids, k, d, "centroid", err)) != VS_OK ||
        (st = vs_check_finite(x, n, d, "vector", err)) != VS_OK)
        return st;
    if (n_threads == 0)
        n_threads = vs_parallel_cpus();
    assigner_t as;
    if ((st = assigner_init(&as, n, k, d, n_threads, err)) != VS_OK)
        return st;
    st = assigner_run(&as, x, centroids, out_labels, out_dist, err);
    assigner_fini(&as);
    return st;
}

/* ---- nearest nprobe centroids ------------------------------------------------------------------- */

/* Candidates of one query live in a vs_reservoir_t of cap slots (common/topk.h): keys up to the
 * threshold are appended; when the buffer is full the pool best are kept (quickselect on (key, id)) and
 * the threshold becomes the pool-th best key. Amortised O(1) per candidate, against O(log pool) for a
 * heap, which on random data (many early improvements) costs more than the sgemm itself. */

typedef struct nearest_scratch {
    float *prod;          /* qb*CB sgemm output, turned into keys in place */
    float *ckeys;         /* qb*cap candidate keys */
    int64_t *cids;        /* qb*cap candidate centroids */
    size_t *cn_count;     /* qb: candidates held */
    float *cthr;          /* qb: key a candidate must be below */
    float *fkeys, *edist; /* kk each: final heap, emitted distances */
    int64_t *fids, *eids; /* kk each */
} nearest_scratch_t;

typedef struct nearest_ctx {
    const float *x, *c, *cn;
    size_t n, qb, pool, cap, kk, nprobe;
    uint32_t k, d;
    int is_l2, larger;
    int32_t *out_lists;
    float *out_dist;
    const vs_distance_kernels_t *kern;
    argmin_fn argmin;     /* nprobe == 1 */
    nearest_scratch_t *s; /* one per worker */
} nearest_ctx_t;

static const float zero_norms[CB]; /* the |c|^2 term of similarity keys in the argmin */

/* nprobe == 1: the SIMD argmin of the sgemm key, as vs_kmeans_assign, then the exact distance. */
static void nearest1_task(void *arg, size_t block, size_t worker)
{
    const nearest_ctx_t *c = arg;
    nearest_scratch_t *s = &c->s[worker];
    const size_t d = c->d;
    const size_t i0 = block * c->qb, m = min_size(c->qb, c->n - i0);
    const float *xb = c->x + i0 * d;
    float *best = s->cthr;
    int32_t *lab = c->out_lists + i0;
    for (size_t i = 0; i < m; i++) {
        best[i] = INFINITY;
        lab[i] = 0;
    }
    for (size_t c0 = 0; c0 < c->k; c0 += CB) {
        size_t nb = min_size(CB, c->k - c0);
        /* L2 key |c|^2 - 2 x.c, similarity key -x.c */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)nb, (int)d,
                    c->is_l2 ? -2.0f : -1.0f, xb, (int)d, c->c + c0 * d, (int)d, 0.0f, s->prod, (int)nb);
        c->argmin(s->prod, m, nb, c->is_l2 ? c->cn + c0 : zero_norms, (int32_t)c0, best, lab);
    }
    if (c->out_dist != NULL) {
        for (size_t i = 0; i < m; i++) {
            const float *q = xb + i * d, *cent = c->c + (size_t)lab[i] * d;
            c->out_dist[i0 + i] = c->is_l2 ? c->kern->l2sqr(q, cent, d) : c->kern->ip(q, cent, d);
        }
    }
}

static void nearest_task(void *arg, size_t block, size_t worker)
{
    const nearest_ctx_t *c = arg;
    nearest_scratch_t *s = &c->s[worker];
    const size_t d = c->d, cap = c->cap, pool = c->pool;
    const size_t i0 = block * c->qb, m = min_size(c->qb, c->n - i0);
    const float *xb = c->x + i0 * d;
    for (size_t i = 0; i < m; i++) {
        s->cn_count[i] = 0;
        s->cthr[i] = INFINITY;
    }
    for (size_t c0 = 0; c0 < c->k; c0 += CB) {
        size_t nb = min_size(CB, c->k - c0);
        /* L2: prod = -2 x.c and key = |c|^2 + prod; similarities: prod = x.c and key = -prod */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)nb, (int)d, c->is_l2 ? -2.0f : 1.0f,
                    xb, (int)d, c->c + c0 * d, (int)d, 0.0f, s->prod, (int)nb);
        for (size_t i = 0; i < m; i++) {
            float *row = s->prod + i * nb;
            if (c->is_l2) {
                const float *cn = c->cn + c0;
                for (size_t j = 0; j < nb; j++)
                    row[j] += cn[j];
            } else {
                for (size_t j = 0; j < nb; j++)
                    row[j] = -row[j];
            }
            /* the query's candidates: a reservoir cut back to the pool best whenever it fills */
            vs_reservoir_t res = {s->ckeys + i * cap, s->cids + i * cap, pool, cap,
                                  s->cn_count[i],     s->cthr[i]};
            for (size_t j = 0; j < nb; j++)
                if (row[j] <= res.threshold)
                    vs_reservoir_push(&res, row[j], (int64_t)(c0 + j));
            s->cn_count[i] = res.size;
            s->cthr[i] = res.threshold;
        }
    }
    /* re-rank the pool best of each query with the direct kernel; emit nearest first, pad past k */
    for (size_t i = 0; i < m; i++) {
        const float *q = xb + i * d;
        vs_reservoir_t res = {s->ckeys + i * cap, s->cids + i * cap, pool, cap, s->cn_count[i], s->cthr[i]};
        size_t cnt = vs_reservoir_finish(&res);
        const int64_t *ids = res.ids;
        vs_topk_t fin;
        vs_topk_init(&fin, c->kk, s->fkeys, s->fids);
        for (size_t p = 0; p < cnt; p++) {
            const float *cent = c->c + (size_t)ids[p] * d;
            float dist = c->is_l2 ? c->kern->l2sqr(q, cent, d) : c->kern->ip(q, cent, d);
            vs_topk_push(&fin, vs_topk_key(dist, c->larger), ids[p]);
        }
        vs_topk_emit(&fin, c->larger, s->edist, s->eids);
        int32_t *ol = c->out_lists + (i0 + i) * c->nprobe;
        float *od = c->out_dist ? c->out_dist + (i0 + i) * c->nprobe : NULL;
        for (size_t r = 0; r < c->nprobe; r++) {
            ol[r] = r < c->kk ? (int32_t)s->eids[r] : -1;
            if (od != NULL)
                od[r] = r < c->kk ? s->edist[r] : vs_topk_pad_distance(c->larger);
        }
    }
}

static void free_nearest_scratch(nearest_scratch_t *s, size_t n_workers)
{
    if (s == NULL)
        return;
    for (size_t w = 0; w < n_workers; w++) {
        free(s[w].prod);
        free(s[w].ckeys);
        free(s[w].cids);
        free(s[w].cn_count);
        free(s[w].cthr);
        free(s[w].fkeys);
        free(s[w].edist);
        free(s[w].fids);
        free(s[w].eids);
    }
    free(s);
}

static vs_status nearest(const float *x, size_t n, const float *centroids, uint32_t k, uint32_t d,
                         vs_metric metric, uint32_t nprobe, size_t n_threads, int32_t *out_lists,
                         float *out_dist, int check_centroids, char err[VS_ERR_LEN]);

vs_status vs_kmeans_nearest(const float *x, size_t n, const float *centroids, uint32_t k, uint32_t d,
                            vs_metric metric, uint32_t nprobe, size_t n_threads, int32_t *out_lists,
                            float *out_dist, char err[VS_ERR_LEN])
{
    return nearest(x, n, centroids, k, d, metric, nprobe, n_threads, out_lists, out_dist, 1, err);
}

vs_status vs_kmeans_nearest_trusted(const float *x, size_t n, const float *centroids, uint32_t k, uint32_t d,
                                    vs_metric metric, uint32_t nprobe, size_t n_threads, int32_t *out_lists,
                                    float *out_dist, char err[VS_ERR_LEN])
{
    return nearest(x, n, centroids, k, d, metric, nprobe, n_threads, out_lists, out_dist, 0, err);
}

static vs_status nearest(const float *x, size_t n, const float *centroids, uint32_t k, uint32_t d,
                         vs_metric metric, uint32_t nprobe, size_t n_threads, int32_t *out_lists,
                         float *out_dist, int check_centroids, char err[VS_ERR_LEN])
{
    vs_status st = check_shape(k, d, "k-means nearest", err);
    if (st != VS_OK)
        return st;
    if (metric != VS_METRIC_L2 && metric != VS_METRIC_IP && metric != VS_METRIC_COSINE)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "k-means nearest: unknown metric %d", (int)metric);
    if (nprobe == 0)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "k-means nearest: nprobe must be at least 1");
    if (n == 0)
        return VS_OK;
    if (n > SIZE_MAX / sizeof(float) / nprobe)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "k-means nearest: %zu queries x nprobe %u is too large",
                       n, nprobe);
    if ((check_centroids && (st = vs_check_finite(centroids, k, d, "centroid", err)) != VS_OK) ||
        (st = vs_check_finite(x, n, d, "query", err)) != VS_OK)
        return st;
    if (n_threads == 0)
        n_threads = vs_parallel_cpus();

    nearest_ctx_t c = {.x = x,
                       .c = centroids,
                       .n = n,
                       .nprobe = nprobe,
                       .k = k,
                       .d = d,
                       .is_l2 = metric == VS_METRIC_L2,
                       .larger = vs_metric_larger_is_better(metric),
                       .out_lists = out_lists,
                       .out_dist = out_dist,
                       .kern = vs_distance_kernels(),
                       .argmin = argmin_kernel()};
    c.kk = min_size(nprobe, k);
    c.pool = min_size(k, c.kk + (c.kk > 16 ? c.kk : 16));
    c.cap = min_size(k, 2 * c.pool);
    c.qb = NEAREST_POOL_BUDGET / c.cap; /* bounds the candidate memory when nprobe is large */
    c.qb = c.qb < 1 ? 1 : c.qb > XB ? XB : c.qb;
    size_t n_tasks = (n + c.qb - 1) / c.qb;
    size_t n_workers = min_size(n_threads, n_tasks);

    float *cn = NULL;
    if (c.is_l2) {
        cn = malloc((size_t)k * sizeof(float));
        if (cn == NULL)
            return vs_errf(err, VS_ERR_NOMEM, "k-means nearest: out of memory");
        for (size_t j = 0; j < k; j++)
            cn[j] = c.kern->norm_sqr(centroids + j * d, d);
    }
    c.cn = cn;
    c.s = calloc(n_workers, sizeof *c.s);
    int ok = c.s != NULL;
    for (size_t w = 0; ok && w < n_workers; w++) {
        nearest_scratch_t *s = &c.s[w];
        s->prod = malloc(c.qb * CB * sizeof(float));
        s->ckeys = malloc(c.qb * c.cap * sizeof(float));
        s->cids = malloc(c.qb * c.cap * sizeof(int64_t));
        s->cn_count = malloc(c.qb * sizeof(size_t));
        s->cthr = malloc(c.qb * sizeof(float));
        s->fkeys = malloc(c.kk * sizeof(float));
        s->edist = malloc(c.kk * sizeof(float));
        s->fids = malloc(c.kk * sizeof(int64_t));
        s->eids = malloc(c.kk * sizeof(int64_t));
        ok = s->prod && s->ckeys && s->cids && s->cn_count && s->cthr && s->fkeys && s->edist && s->fids &&
             s->eids;
    }
    if (!ok) {
        free_nearest_scratch(c.s, c.s ? n_workers : 0);
        free(cn);
        return vs_errf(err, VS_ERR_NOMEM, "k-means nearest: out of memory for scratch");
    }
    vs_parallel_blas_single();
    st = vs_parallel_for(n_tasks, n_workers, nprobe == 1 ? nearest1_task : nearest_task, &c, err);
    free_nearest_scratch(c.s, n_workers);
    free(cn);
    return st;
}

/* ---- training: sampling ------------------------------------------------------------------------- */

static int row_finite(const float *row, size_t d, size_t *bad)
{
    for (size_t j = 0; j < d; j++) {
        if (!isfinite(row[j])) {
            *bad = j;
            return 0;
        }
    }
    return 1;
}

/* Copies a uniform sample of m of the n rows of x (m < n) into dst, in their original order, with
 * selection sampling (Knuth, TAOCP vol. 2, 3.4.2, Algorithm S): row i is taken with probability
 * (rows still needed) / (rows left). Only the sampled rows are read, and each is checked finite. */
static vs_status sample_rows(const float *x, size_t n, size_t d, size_t m, rng_t *r, float *dst, char *err)
{
    size_t need = m;
    for (size_t i = 0; i < n && need > 0; i++) {
        if (rng_below(r, n - i) >= need)
            continue;
        const float *row = x + i * d;
        size_t bad;
        if (!row_finite(row, d, &bad))
            return vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                           "k-means: training vector %zu has a non-finite value (%s) at component %zu", i,
                           isnan(row[bad]) ? "NaN" : "Inf", bad);
        memcpy(dst + (m - need) * d, row, d * sizeof(float));
        need--;
    }
    return VS_OK;
}

/* ---- training: k-means++ seeding (Arthur & Vassilvitskii 2007) ----------------------------------- */

typedef struct seed_ctx {
    const float *xs; /* ns*d seeding points */
    size_t ns, d;
    const float *cent; /* the centroid just chosen */
    float *mind;       /* ns: squared distance to the nearest chosen centroid */
    double *chunk_sum; /* per SEED_CHUNK chunk: sum of mind, in point order */
    float *tmp;        /* per worker SEED_CHUNK floats */
    const vs_distance_kernels_t *kern;
} seed_ctx_t;

static void seed_task(void *arg, size_t chunk, size_t worker)
{
    seed_ctx_t *s = arg;
    size_t i0 = chunk * SEED_CHUNK, m = min_size(SEED_CHUNK, s->ns - i0);
    float *tmp = s->tmp + worker * SEED_CHUNK;
    s->kern->l2sqr_batch(s->cent, s->xs + i0 * s->d, m, s->d, tmp);
    double sum = 0.0;
    for (size_t i = 0; i < m; i++) {
        float *md = &s->mind[i0 + i];
        if (tmp[i] < *md)
            *md = tmp[i];
        sum += *md;
    }
    s->chunk_sum[chunk] = sum;
}

/* Chooses k distinct rows of xs (ns >= k rows) as centroids: the first uniformly, each next one with
 * probability proportional to its squared distance to the nearest chosen so far; when every remaining
 * row coincides with a chosen one (duplicate data), uniformly among the rows not chosen yet. */
static vs_status seed_kmeanspp(const float *xs, size_t ns, uint32_t d, uint32_t k, size_t n_threads, rng_t *r,
                               float *cent, char *err)
{
    size_t n_chunks = (ns + SEED_CHUNK - 1) / SEED_CHUNK;
    size_t n_workers = min_size(n_threads, n_chunks);
    seed_ctx_t s = {.xs = xs, .ns = ns, .d = d, .kern = vs_distance_kernels()};
    s.mind = malloc(ns * sizeof(float));
    s.chunk_sum = malloc(n_chunks * sizeof(double));
    s.tmp = malloc(n_workers * SEED_CHUNK * sizeof(float));
    uint8_t *chosen = calloc(ns, 1);
    vs_status st = VS_OK;
    if (s.mind == NULL || s.chunk_sum == NULL || s.tmp == NULL || chosen == NULL) {
        st = vs_errf(err, VS_ERR_NOMEM, "k-means: out of memory for seeding");
        goto done;
    }
    for (size_t i = 0; i < ns; i++)
        s.mind[i] = INFINITY;
    size_t pick = (size_t)rng_below(r, ns);
    for (uint32_t t = 0;; t++) {
        chosen[pick] = 1;
        memcpy(cent + (size_t)t * d, xs + pick * d, d * sizeof(float));
        if (t + 1 == k)
            break;
        s.cent = cent + (size_t)t * d;
        if ((st = vs_parallel_for(n_chunks, n_workers, seed_task, &s, err)) != VS_OK)
            goto done;
        double total = 0.0;
        for (size_t c = 0; c < n_chunks; c++)
            total += s.chunk_sum[c];
        pick = SIZE_MAX;
        if (total > 0.0) {
            /* walk the chunk sums, then the chosen chunk's rows, to the first row whose cumulative
             * weight passes the target; rounding can only leave the target past the end, and then the
             * last row of positive weight takes it */
            double target = rng_unit(r) * total, acc = 0.0;
            size_t c = 0;
            while (c + 1 < n_chunks && acc + s.chunk_sum[c] <= target)
                acc += s.chunk_sum[c++];
            for (size_t i = c * SEED_CHUNK; i < min_size(ns, (c + 1) * SEED_CHUNK); i++) {
                acc += s.mind[i];
                if (s.mind[i] > 0.0f && acc > target) {
                    pick = i;
                    break;
                }
            }
            for (size_t i = ns; pick == SIZE_MAX && i-- > 0;)
                if (s.mind[i] > 0.0f)
                    pick = i;
        }
        if (pick == SIZE_MAX) { /* no positive weight: every row left duplicates a chosen one */
            uint64_t u = rng_below(r, ns - (t + 1));
            for (size_t i = 0; i < ns; i++) {
                if (!chosen[i] && u-- == 0) {
                    pick = i;
                    break;
                }
            }
        }
    }
done:
    free(s.mind);
    free(s.chunk_sum);
    free(s.tmp);
    free(chosen);
    return st;
}

/* ---- training: centroid update ------------------------------------------------------------------ */

typedef struct update_ctx {
    const float *x; /* n_train*d */
    size_t d;
    const size_t *order; /* point indices sorted by label (stable) */
    const size_t *off;   /* k+1 offsets into order */
    float *cent;         /* k*d, written for non-empty clusters */
    double *acc;         /* per worker d doubles */
} update_ctx_t;

/* Mean of one centroid's points, summed in double in increasing point order. */
static void update_task(void *arg, size_t c, size_t worker)
{
    const update_ctx_t *u = arg;
    size_t lo = u->off[c], hi = u->off[c + 1], d = u->d;
    if (lo == hi)
        return;
    double *acc = u->acc + worker * d;
    memset(acc, 0, d * sizeof(double));
    for (size_t p = lo; p < hi; p++) {
        const float *row = u->x + u->order[p] * d;
        for (size_t j = 0; j < d; j++)
            acc[j] += row[j];
    }
    double inv = 1.0 / (double)(hi - lo);
    float *dst = u->cent + c * d;
    for (size_t j = 0; j < d; j++)
        dst[j] = (float)(acc[j] * inv);
}

/* Fenwick tree over k int64 weights (tree[1..k]): the size - 1 of each cluster, for size-proportional
 * choice of the cluster to split in O(log k). */
static void fenwick_build(int64_t *tree, const size_t *counts, size_t k)
{
    tree[0] = 0;
    for (size_t i = 1; i <= k; i++)
        tree[i] = counts[i - 1] > 0 ? (int64_t)counts[i - 1] - 1 : 0;
    for (size_t i = 1; i <= k; i++) {
        size_t j = i + (i & (0 - i));
        if (j <= k)
            tree[j] += tree[i];
    }
}

static void fenwick_add(int64_t *tree, size_t k, size_t idx, int64_t delta)
{
    for (size_t i = idx + 1; i <= k; i += i & (0 - i))
        tree[i] += delta;
}

/* The index whose weight interval contains r, for 0 <= r < total weight (zero weights never match). */
static size_t fenwick_find(const int64_t *tree, size_t k, int64_t r)
{
    size_t pos = 0, step = 1;
    while (step * 2 <= k)
        step *= 2;
    for (; step > 0; step /= 2) {
        if (pos + step <= k && tree[pos + step] <= r) {
            pos += step;
            r -= tree[pos];
        }
    }
    return pos;
}

/* Re-seeds every empty cluster (in index order) by splitting a cluster drawn with probability
 * proportional to its size - 1: its centroid is copied, the two copies scaled by 1 +- SPLIT_EPS on
 * alternating coordinates, and its points are shared out. Returns the number of splits. Needs
 * n_train >= k, which guarantees a splittable cluster for every empty one. */
static uint32_t split_empty(float *cent, size_t *counts, int64_t *tree, size_t k, size_t d, size_t n_train,
                            rng_t *r)
{
    size_t nonempty = 0;
    for (size_t c = 0; c < k; c++)
        nonempty += counts[c] > 0;
    if (nonempty == k)
        return 0;
    fenwick_build(tree, counts, k);
    int64_t total = (int64_t)(n_train - nonempty);
    uint32_t splits = 0;
    for (size_t c = 0; c < k; c++) {
        if (counts[c] > 0)
            continue;
        size_t from = fenwick_find(tree, k, (int64_t)rng_below(r, (uint64_t)total));
        float *src = cent + from * d, *dst = cent + c * d;
        for (size_t j = 0; j < d; j++) {
            float v = src[j];
            dst[j] = j % 2 == 0 ? v * (1.0f + SPLIT_EPS) : v * (1.0f - SPLIT_EPS);
            src[j] = j % 2 == 0 ? v * (1.0f - SPLIT_EPS) : v * (1.0f + SPLIT_EPS);
        }
        size_t half = counts[from] / 2;
        counts[c] = half;
        counts[from] -= half;
        fenwick_add(tree, k, from, -(int64_t)half);
        fenwick_add(tree, k, c, (int64_t)half - 1);
        total -= 1;
        splits++;
    }
    return splits;
}

/* ---- training: driver --------------------------------------------------------------------------- */

typedef struct train_bufs {
    float *sample, *seed_x, *cent, *dist;
    int32_t *labels, *prev;
    size_t *order, *off, *counts;
    int64_t *tree;
    double *acc;
} train_bufs_t;

static void train_bufs_free(train_bufs_t *b)
{
    free(b->sample);
    free(b->seed_x);
    free(b->cent);
    free(b->dist);
    free(b->labels);
    free(b->prev);
    free(b->order);
    free(b->off);
    free(b->counts);
    free(b->tree);
    free(b->acc);
}

static double sum_dist(const float *dist, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += dist[i];
    return s;
}

vs_status vs_kmeans_train(const float *x, size_t n, uint32_t d, const vs_kmeans_params_t *p,
                          float *out_centroids, vs_kmeans_stats_t *out_stats,
                          const vs_progress_cb_t *progress, char err[VS_ERR_LEN])
{
    if (p == NULL)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "k-means: no parameters");
    const uint32_t k = p->k;
    vs_status st = check_shape(k, d, "k-means", err);
    if (st != VS_OK)
        return st;
    const uint32_t n_iter = p->n_iter ? p->n_iter : DEFAULT_N_ITER;
    const uint64_t max_ppc = p->max_points_per_centroid ? p->max_points_per_centroid : DEFAULT_MAX_PPC;
    const uint64_t min_ppc = p->min_points_per_centroid ? p->min_points_per_centroid : 1;
    const uint64_t need = (uint64_t)k * min_ppc, cap = (uint64_t)k * max_ppc;
    if ((uint64_t)n < need)
        return vs_errf(
            err, VS_ERR_INVALID_ARGUMENT,
            "k-means: %zu points cannot train %u centroids (at least %llu needed: %llu per centroid)", n, k,
            (unsigned long long)need, (unsigned long long)min_ppc);
    const size_t n_train = (uint64_t)n > cap ? (size_t)cap : n; /* >= k since n >= k and cap >= k */
    const size_t n_threads = p->n_threads ? p->n_threads : vs_parallel_cpus();
    if (n_train > SIZE_MAX / sizeof(double) / d)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "k-means: %zu training points of dim %u is too large",
                       n_train, d);

    train_bufs_t b = {0};
    assigner_t as = {0};
    const size_t seed_n =
        min_size(n_train, (size_t)k * SEED_PER_CENTROID > SEED_MIN_POINTS ? (size_t)k * SEED_PER_CENTROID
                                                                          : SEED_MIN_POINTS);
    const size_t upd_workers = min_size(n_threads, k);
    if (n_train < n)
        b.sample = malloc(n_train * d * sizeof(float));
    if (seed_n < n_train)
        b.seed_x = malloc(seed_n * d * sizeof(float));
    b.cent = malloc((size_t)k * d * sizeof(float));
    b.dist = malloc(n_train * sizeof(float));
    b.labels = malloc(n_train * sizeof(int32_t));
    b.prev = malloc(n_train * sizeof(int32_t));
    b.order = malloc(n_train * sizeof(size_t));
    b.off = malloc(((size_t)k + 1) * sizeof(size_t));
    b.counts = malloc((size_t)k * sizeof(size_t));
    b.tree = malloc(((size_t)k + 1) * sizeof(int64_t));
    b.acc = malloc(upd_workers * d * sizeof(double));
    if ((n_train < n && b.sample == NULL) || (seed_n < n_train && b.seed_x == NULL) || b.cent == NULL ||
        b.dist == NULL || b.labels == NULL || b.prev == NULL || b.order == NULL || b.off == NULL ||
        b.counts == NULL || b.tree == NULL || b.acc == NULL) {
        st = vs_errf(err, VS_ERR_NOMEM, "k-means: out of memory for %zu training points", n_train);
        goto done;
    }
    if ((st = assigner_init(&as, n_train, k, d, n_threads, err)) != VS_OK)
        goto done;

    /* 1. the training sample */
    const float *xt = x;
    rng_t rng;
    if (n_train < n) {
        rng_init(&rng, p->seed, 1);
        if ((st = sample_rows(x, n, d, n_train, &rng, b.sample, err)) != VS_OK)
            goto done;
        xt = b.sample;
    } else if ((st = vs_check_finite(x, n, d, "k-means: training vector", err)) != VS_OK) {
        goto done;
    }

    /* 2. seeding: k distinct random training points (random_init, as FAISS), or k-means++ on a random
     * subset (the first seed_n of a partial Fisher-Yates shuffle) */
    rng_init(&rng, p->seed, 2);
    const float *xs = xt;
    if (p->random_init) {
        for (size_t i = 0; i < n_train; i++)
            b.order[i] = i;
        for (uint32_t i = 0; i < k; i++) {
            size_t j = i + (size_t)rng_below(&rng, n_train - i);
            size_t t = b.order[i];
            b.order[i] = b.order[j];
            b.order[j] = t;
            memcpy(b.cent + (size_t)i * d, xt + b.order[i] * d, d * sizeof(float));
        }
    } else if (seed_n < n_train) {
        for (size_t i = 0; i < n_train; i++)
            b.order[i] = i;
        for (size_t i = 0; i < seed_n; i++) {
            size_t j = i + (size_t)rng_below(&rng, n_train - i);
            size_t t = b.order[i];
            b.order[i] = b.order[j];
            b.order[j] = t;
            memcpy(b.seed_x + i * d, xt + b.order[i] * d, d * sizeof(float));
        }
        xs = b.seed_x;
    }
    if (!p->random_init && (st = seed_kmeanspp(xs, seed_n, d, k, n_threads, &rng, b.cent, err)) != VS_OK)
        goto done;
    if (p->spherical)
        vs_normalize_rows(b.cent, k, d);

    /* 3. Lloyd iterations */
    rng_init(&rng, p->seed, 3);
    update_ctx_t u = {xt, d, b.order, b.off, b.cent, b.acc};
    uint32_t it = 0, splits = 0, prev_splits = 0;
    int converged = 0;
    double objective = 0.0;
    for (it = 0; it < n_iter; it++) {
        if ((st = assigner_run(&as, xt, b.cent, b.labels, b.dist, err)) != VS_OK)
            goto done;
        objective = sum_dist(b.dist, n_train);
        /* same labels as the last update and no split then: the update would reproduce these centroids */
        if (it > 0 && prev_splits == 0 && memcmp(b.labels, b.prev, n_train * sizeof(int32_t)) == 0) {
            converged = 1;
            break;
        }
        /* counting sort of the points by label, stable, so each mean is summed in point order */
        memset(b.counts, 0, (size_t)k * sizeof(size_t));
        for (size_t i = 0; i < n_train; i++)
            b.counts[b.labels[i]]++;
        b.off[0] = 0;
        for (size_t c = 0; c < k; c++)
            b.off[c + 1] = b.off[c] + b.counts[c];
        for (size_t i = 0; i < n_train; i++)
            b.order[b.off[b.labels[i]]++] = i;
        for (size_t c = k; c > 0; c--) /* restore the starts shifted by the fill */
            b.off[c] = b.off[c - 1];
        b.off[0] = 0;
        if ((st = vs_parallel_for(k, upd_workers, update_task, &u, err)) != VS_OK)
            goto done;
        prev_splits = split_empty(b.cent, b.counts, b.tree, k, d, n_train, &rng);
        splits += prev_splits;
        if (p->spherical)
            vs_normalize_rows(b.cent, k, d);
        int32_t *t = b.labels;
        b.labels = b.prev;
        b.prev = t;
        vs_progress_call(progress, it + 1, n_iter);
    }
    if (converged) {
        vs_progress_call(progress, n_iter, n_iter);
    } else if (out_stats != NULL) { /* the objective of the returned centroids costs one more pass */
        if ((st = assigner_run(&as, xt, b.cent, b.labels, b.dist, err)) != VS_OK)
            goto done;
        objective = sum_dist(b.dist, n_train);
    }

    memcpy(out_centroids, b.cent, (size_t)k * d * sizeof(float));
    if (out_stats != NULL) {
        out_stats->final_objective = objective;
        out_stats->iterations = it;
        out_stats->empty_splits = splits;
        out_stats->n_train = n_train;
    }
done:
    assigner_fini(&as);
    train_bufs_free(&b);
    return st;
}
