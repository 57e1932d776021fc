/* coarse.c: the nearest coarse centroids (coarse.h). The PCA preselection and the |c|^2 - 2<q, c> ranking
 * moved here from ivf.c unchanged, so lists are the ones IVF search always probed. */
#include "shard/index/coarse.h"

#include <cblas.h>
#include <math.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <stdlib.h>
#include <string.h>

#include "common/kmeans.h"
#include "common/parallel.h"
#include "common/topk.h"
#include "shard/index/index.h"

/* Coarse preselection in a PCA projection. With many high-dimensional centroids (Fashion-MNIST:
 * 1024 x 784) the coarse step costs a quarter of a query. Centroid distances live mostly in a few
 * directions, so the query and the centroids are projected on the pdim principal directions of the
 * centroids; the nprobe + max(nprobe, 16) nearest in projection are then ranked exactly and the nprobe
 * best probed. The directions come from subspace iteration on the centroids' covariance (sgemm, fixed
 * seed: the same at train, at load and in the coordinator, so nothing is stored in the index file). */
#define PCA_MIN_D 256
#define PCA_MIN_NLIST 256
#define PCA_ITERS 12

static float *tm_build(const float *src, size_t rows, size_t d);

static vs_status compute_pca(vs_coarse_t *cq, char *err)
{
    const uint32_t d = cq->d, nl = cq->nlist;
    if (cq->metric != VS_METRIC_L2 || d < PCA_MIN_D || nl < PCA_MIN_NLIST)
        return VS_OK;
    const uint32_t p = d / 6 < 128 ? d / 6 : 128;
    float *mean = calloc(d, sizeof(float)), *xc = malloc((size_t)nl * d * sizeof(float));
    float *cov = malloc((size_t)d * d * sizeof(float)), *Q = malloc((size_t)p * d * sizeof(float));
    float *Z = malloc((size_t)p * d * sizeof(float)), *cproj = malloc((size_t)nl * p * sizeof(float));
    vs_status st = VS_OK;
    if (!mean || !xc || !cov || !Q || !Z || !cproj) {
        st = vs_errf(err, VS_ERR_NOMEM, "coarse quantizer: out of memory for the PCA projection");
        goto done;
    }
    for (uint32_t l = 0; l < nl; l++)
        for (uint32_t i = 0; i < d; i++)
            mean[i] += cq->centroids[(size_t)l * d + i] / (float)nl;
    for (uint32_t l = 0; l < nl; l++)
        for (uint32_t i = 0; i < d; i++)
            xc[(size_t)l * d + i] = cq->centroids[(size_t)l * d + i] - mean[i];
    vs_parallel_blas_single();
    /* cov = xc^T xc (d x d) */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)d, (int)d, (int)nl, 1.0f, xc, (int)d, xc,
                (int)d, 0.0f, cov, (int)d);
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < (size_t)p * d; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        Q[i] = (float)((double)(seed >> 11) * 0x1.0p-53 - 0.5);
    }
    for (int it = 0; it <= PCA_ITERS; it++) {
        /* orthonormalise the rows of Q (modified Gram-Schmidt, dots in double) */
        for (uint32_t a = 0; a < p; a++) {
            float *qa = Q + (size_t)a * d;
            for (uint32_t b = 0; b < a; b++) {
                const float *qb = Q + (size_t)b * d;
                double dot = 0;
                for (uint32_t i = 0; i < d; i++)
                    dot += (double)qa[i] * qb[i];
                for (uint32_t i = 0; i < d; i++)
                    qa[i] -= (float)dot * qb[i];
            }
            double nrm = 0;
            for (uint32_t i = 0; i < d; i++)
                nrm += (double)qa[i] * qa[i];
            float inv = nrm > 0 ? (float)(1.0 / sqrt(nrm)) : 0.0f;
            for (uint32_t i = 0; i < d; i++)
                qa[i] *= inv;
        }
        if (it == PCA_ITERS)
            break;
        /* Z = Q cov (p x d); cov is symmetric */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)p, (int)d, (int)d, 1.0f, Q, (int)d, cov,
                    (int)d, 0.0f, Z, (int)d);
        float *t = Q;
        Q = Z;
        Z = t;
    }
    /* cproj = centroids Q^T (nl x p) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nl, (int)p, (int)d, 1.0f, cq->centroids, (int)d,
                Q, (int)d, 0.0f, cproj, (int)p);
    cq->pca = Q;
    cq->cproj = cproj;
    cq->pdim = p;
    Q = NULL;
    cproj = NULL;
    /* the preselection's products from transposed blocks, ranked by |c'|^2 - 2 <q', c'> */
    cq->pcat = tm_build(cq->pca, p, d);
    cq->cprojt = tm_build(cq->cproj, nl, p);
    cq->cpnorm = malloc((size_t)nl * sizeof(float));
    if (!cq->pcat || !cq->cprojt || !cq->cpnorm) {
        st = vs_errf(err, VS_ERR_NOMEM, "coarse quantizer: out of memory for the PCA projection");
        goto done;
    }
    for (uint32_t l = 0; l < nl; l++)
        cq->cpnorm[l] = vs_distance_kernels()->norm_sqr(cq->cproj + (size_t)l * p, p);
done:
    free(mean);
    free(xc);
    free(cov);
    free(Q);
    free(Z);
    free(cproj);
    return st;
}

/* Products with every centroid (the ranking's cost: nlist*d FMAs per query). The centroids are also kept
 * in blocks of 16, transposed (ct[b*stride + t*16 + r] = coordinate t of centroid 16b + r, zero past nlist),
 * so one 64-byte load feeds the products of 16 centroids and no horizontal sum is needed; each product is
 * one chain of fused multiply-adds over t = 0..d-1, so it is the same bits whichever queries and blocks
 * are computed together, on every ISA (the scalar version uses fmaf): a batch, a single query and the
 * coordinator rank alike. Several independent chains (queries x blocks) run at once to hide the FMA
 * latency. Skipped (the row kernel) when the copy would pass CT_MAX_BYTES. */
#define CT_MAX_BYTES (256u << 20)

/* A matrix of `rows` rows of d floats kept in blocks of 16 rows, transposed: t[b*stride + i*16 + r] is
 * element i of row 16b + r (zero past the last row). Floats from one block to the next: d rows of 16 plus
 * one cache line, so that the same row of neighbouring blocks (read together) does not fall in the same
 * L1 set (blocks of d*64 bytes are a multiple of 4 KiB at d = 64, 128, ...). */
static size_t tm_blocks(size_t rows)
{
    return (rows + 15) / 16;
}

static size_t tm_stride(size_t d)
{
    return d * 16 + 16;
}

static size_t tm_bytes(size_t rows, size_t d)
{
    return tm_blocks(rows) * tm_stride(d) * sizeof(float); /* a multiple of 64 */
}

/* The transposed copy of src (rows x d), or NULL when out of memory. */
static float *tm_build(const float *src, size_t rows, size_t d)
{
    const size_t nb = tm_blocks(rows), st = tm_stride(d), bytes = tm_bytes(rows, d);
    float *t = aligned_alloc(64, bytes);
    if (t == NULL)
        return NULL;
    memset(t, 0, bytes);
    for (size_t b = 0; b < nb; b++)
        for (size_t i = 0; i < d; i++)
            for (size_t r = 0; r < 16 && b * 16 + r < rows; r++)
                t[b * st + i * 16 + r] = src[(b * 16 + r) * d + i];
    return t;
}

static void tm_products_scalar(const float *t, size_t rows, size_t d, const float *q, size_t nq, float *out)
{
    const size_t nb = tm_blocks(rows), st = tm_stride(d);
    for (size_t j = 0; j < nq; j++)
        for (size_t b = 0; b < nb; b++)
            for (size_t r = 0; r < 16 && b * 16 + r < rows; r++) {
                const float *x = t + b * st + r;
                float acc = 0.0f;
                for (size_t i = 0; i < d; i++)
                    acc = fmaf(q[j * d + i], x[i * 16], acc);
                out[j * rows + b * 16 + r] = acc;
            }
}

#if defined(__x86_64__)
#define VS_AVX512 __attribute__((target("avx512f")))

/* Q queries x B blocks (Q*B = 8 chains); blocks past the last are computed on the last and dropped. */
VS_AVX512 __attribute__((always_inline)) static inline void tm_step(const float *t, size_t rows, size_t d,
                                                                    const float *q, const int Q, const int B,
                                                                    size_t b0, float *out)
{
    const size_t nb = tm_blocks(rows), st = tm_stride(d);
    const float *x[8];
    for (int i = 0; i < B; i++)
        x[i] = t + (b0 + i < nb ? b0 + i : nb - 1) * st;
    __m512 acc[8];
#pragma GCC unroll 8
    for (int a = 0; a < Q * B; a++)
        acc[a] = _mm512_setzero_ps();
    for (size_t i = 0; i < d; i++) {
        __m512 v[8];
#pragma GCC unroll 8
        for (int k = 0; k < B; k++)
            v[k] = _mm512_load_ps(x[k] + i * 16);
#pragma GCC unroll 8
        for (int j = 0; j < Q; j++) {
            __m512 qj = _mm512_set1_ps(q[j * d + i]);
#pragma GCC unroll 8
            for (int k = 0; k < B; k++)
                acc[j * B + k] = _mm512_fmadd_ps(qj, v[k], acc[j * B + k]);
        }
    }
    for (int j = 0; j < Q; j++)
        for (int k = 0; k < B && b0 + k < nb; k++) {
            size_t r0 = (b0 + k) * 16;
            __mmask16 m = rows - r0 >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (rows - r0)) - 1u);
            _mm512_mask_storeu_ps(out + j * rows + r0, m, acc[j * B + k]);
        }
}

VS_AVX512 static void tm_products_avx512(const float *t, size_t rows, size_t d, const float *q, size_t nq,
                                         float *out)
{
    const size_t nb = tm_blocks(rows);
    size_t j = 0;
    for (; j + 4 <= nq; j += 4)
        for (size_t b = 0; b < nb; b += 2)
            tm_step(t, rows, d, q + j * d, 4, 2, b, out + j * rows);
    for (; j + 2 <= nq; j += 2)
        for (size_t b = 0; b < nb; b += 4)
            tm_step(t, rows, d, q + j * d, 2, 4, b, out + j * rows);
    for (; j < nq; j++)
        for (size_t b = 0; b < nb; b += 8)
            tm_step(t, rows, d, q + j * d, 1, 8, b, out + j * rows);
}

/* AVX2 + FMA: the same chains, a block of 16 as two 8-wide halves, 4 blocks (8 chains) per step. */
__attribute__((target("avx2,fma"))) static void tm_products_avx2(const float *t, size_t rows, size_t d,
                                                                 const float *q, size_t nq, float *out)
{
    const size_t nb = tm_blocks(rows), st = tm_stride(d);
    for (size_t j = 0; j < nq; j++)
        for (size_t b0 = 0; b0 < nb; b0 += 4) {
            const float *x[4];
            for (int k = 0; k < 4; k++)
                x[k] = t + (b0 + k < nb ? b0 + k : nb - 1) * st;
            __m256 acc[8];
            for (int a = 0; a < 8; a++)
                acc[a] = _mm256_setzero_ps();
            for (size_t i = 0; i < d; i++) {
                __m256 qj = _mm256_set1_ps(q[j * d + i]);
#pragma GCC unroll 4
                for (int k = 0; k < 4; k++) {
                    acc[2 * k] = _mm256_fmadd_ps(qj, _mm256_load_ps(x[k] + i * 16), acc[2 * k]);
                    acc[2 * k + 1] = _mm256_fmadd_ps(qj, _mm256_load_ps(x[k] + i * 16 + 8), acc[2 * k + 1]);
                }
            }
            for (int k = 0; k < 4 && b0 + k < nb; k++) {
                float tmp[16];
                _mm256_storeu_ps(tmp, acc[2 * k]);
                _mm256_storeu_ps(tmp + 8, acc[2 * k + 1]);
                size_t r0 = (b0 + k) * 16, m = rows - r0 < 16 ? rows - r0 : 16;
                memcpy(out + j * rows + r0, tmp, m * sizeof(float));
            }
        }
}
#endif

/* out[j*rows + r] = <q_j, row r> for nq queries: one FMA chain per product (the same bits at every level,
 * for any nq). */
static void tm_products(const float *t, size_t rows, size_t d, const float *q, size_t nq, vs_simd_level level,
                        float *out)
{
#if defined(__x86_64__)
    if (level >= VS_SIMD_AVX512) {
        tm_products_avx512(t, rows, d, q, nq, out);
        return;
    }
    if (level >= VS_SIMD_AVX2) {
        tm_products_avx2(t, rows, d, q, nq, out);
        return;
    }
#endif
    (void)level;
    tm_products_scalar(t, rows, d, q, nq, out);
}

static vs_status compute_ct(vs_coarse_t *cq, char *err)
{
    if (tm_bytes(cq->nlist, cq->d) > CT_MAX_BYTES)
        return VS_OK;
    (void)err;
    cq->ct = tm_build(cq->centroids, cq->nlist, cq->d); /* optional: without it, the row kernels */
    return VS_OK;
}

void vs_coarse_products(const vs_coarse_t *cq, const float *q, size_t nq, vs_simd_level level, float *out)
{
    if (cq->ct == NULL) /* the row kernels (their multi-query form gives ip_batch's bits per query) */
        vs_distance_kernels_for(level)->ip_batch_multi(q, nq, cq->centroids, cq->nlist, cq->d, out);
    else
        tm_products(cq->ct, cq->nlist, cq->d, q, nq, level, out);
}

/* out[j*nlist + l] = <q_j, c_l> for nq queries, with the kernels in use. */
static void products(const vs_coarse_t *cq, const float *q, size_t nq, float *out)
{
    vs_coarse_products(cq, q, nq, vs_cpu_simd_level(), out);
}

/* Squared centroid norms: lists are chosen by |c|^2 - 2<q, c> (one FMA per dimension, half the work of
 * (q - c)^2). The expansion cancels when distances are small next to the norms, which can only swap
 * lists whose distances nearly tie at the nprobe boundary: tables, estimates and refine stay exact. */
static vs_status compute_cnorm(vs_coarse_t *cq, char *err)
{
    if (cq->metric != VS_METRIC_L2)
        return VS_OK;
    cq->cnorm = malloc(cq->nlist * sizeof(float));
    if (cq->cnorm == NULL)
        return vs_errf(err, VS_ERR_NOMEM, "coarse quantizer: out of memory for centroid norms");
    const vs_distance_kernels_t *kern = vs_distance_kernels();
    for (uint32_t l = 0; l < cq->nlist; l++)
        cq->cnorm[l] = kern->norm_sqr(cq->centroids + (size_t)l * cq->d, cq->d);
    return compute_pca(cq, err);
}

/* The nprobe best lists of q into lists[nprobe] (-1 past nlist), nearest first. cdist: nlist floats,
 * keys/ids: nprobe + max(nprobe, 16) scratch, proj: pdim floats. exact = 1 skips the preselection. */
uint32_t vs_coarse_default_ef(uint32_t nprobe)
{
    return nprobe * 2 > 64 ? nprobe * 2 : 64;
}

/* The nprobe best lists from cdist[nlist] = <q, c_l> (overwritten with the ranking keys). */
static void rank_products(const vs_coarse_t *cq, float *cdist, uint32_t nprobe, float *keys, int64_t *ids,
                          int32_t *lists)
{
    if (cq->cnorm != NULL) /* L2: rank by |c|^2 - 2<q,c>, i.e. |q - c|^2 - |q|^2 */
        for (uint32_t l = 0; l < cq->nlist; l++)
            cdist[l] = cq->cnorm[l] - 2.0f * cdist[l];
    else /* IP and cosine: larger is better, the key is the negated product */
        for (uint32_t l = 0; l < cq->nlist; l++)
            cdist[l] = vs_topk_key(cdist[l], 1);
    size_t got = vs_topk_best_of(cdist, cq->nlist, nprobe, keys, ids);
    for (size_t i = 0; i < nprobe; i++)
        lists[i] = i < got ? (int32_t)ids[i] : -1;
}

void vs_coarse_probe(const vs_coarse_t *cq, const float *q, uint32_t nprobe, uint32_t ef, int exact,
                     float *cdist, float *keys, int64_t *ids, float *proj, int32_t *lists)
{
    if (cq->hnsw && !exact) {
        uint32_t e = ef ? ef : vs_coarse_default_ef(nprobe);
        vs_search_params_t sp = {.ef_search = e > nprobe ? e : nprobe};
        char err[VS_ERR_LEN];
        uint32_t k = nprobe < cq->nlist ? nprobe : cq->nlist;
        if (vs_index_search(cq->hnsw, 1, q, k, &sp, 1, keys, ids, err) == VS_OK) {
            for (uint32_t i = 0; i < nprobe; i++)
                lists[i] = i < k && ids[i] >= 0 ? (int32_t)ids[i] : -1;
            return;
        } /* only for a non-finite query, which callers never pass: rank exactly below */
    }
    const vs_distance_kernels_t *kern = vs_distance_kernels();
    vs_topk_t h;
    const uint32_t pool = (uint32_t)vs_coarse_pool(nprobe);
    if (cq->pdim > 0 && !exact && 2 * (size_t)pool <= cq->nlist) {
        /* preselect in projection, then rank the pool exactly (cdist's first half holds the pool's keys,
         * its second half their list ids; large pools gain nothing and take the exact path) */
        const vs_simd_level lvl = vs_cpu_simd_level();
        tm_products(cq->pcat, cq->pdim, cq->d, q, 1, lvl, proj);
        tm_products(cq->cprojt, cq->nlist, cq->pdim, proj, 1, lvl, cdist);
        for (uint32_t l = 0; l < cq->nlist; l++)
            cdist[l] = cq->cpnorm[l] - 2.0f * cdist[l];
        vs_topk_init(&h, pool, keys, ids);
        vs_topk_push_below(&h, cdist, cq->nlist, 0);
        size_t got = h.size;
        int32_t *cands = (int32_t *)(cdist + got); /* cdist has nlist >= 2 * got floats of room */
        for (size_t i = 0; i < got; i++) {
            uint32_t l = (uint32_t)ids[i];
            cands[i] = (int32_t)l;
            cdist[i] = cq->cnorm[l] - 2.0f * kern->ip(q, cq->centroids + (size_t)l * cq->d, cq->d);
        }
        vs_topk_init(&h, nprobe, keys, ids);
        for (size_t i = 0; i < got; i++)
            vs_topk_push(&h, cdist[i], cands[i]);
    } else {
        products(cq, q, 1, cdist);
        rank_products(cq, cdist, nprobe, keys, ids, lists);
        return;
    }
    size_t got = vs_topk_sort(&h);
    for (size_t i = 0; i < nprobe; i++)
        lists[i] = i < got ? (int32_t)h.ids[i] : -1;
}

/* 1 when a probe ranks every centroid by its inner product with the query (no HNSW, no preselection). */
static int ranks_all(const vs_coarse_t *cq, uint32_t nprobe)
{
    return !cq->hnsw && !(cq->pdim > 0 && 2 * vs_coarse_pool(nprobe) <= cq->nlist);
}

void vs_coarse_probe_multi(const vs_coarse_t *cq, size_t nq, const float *q, uint32_t nprobe, uint32_t ef,
                           float *cdist, float *keys, int64_t *ids, float *proj, int32_t *lists)
{
    if (nq < 2 || !ranks_all(cq, nprobe)) {
        for (size_t i = 0; i < nq; i++)
            vs_coarse_probe(cq, q + i * cq->d, nprobe, ef, 0, cdist, keys, ids, proj, lists + i * nprobe);
        return;
    }
    products(cq, q, nq, cdist);
    for (size_t i = 0; i < nq; i++)
        rank_products(cq, cdist + i * cq->nlist, nprobe, keys, ids, lists + i * nprobe);
}

/* The HNSW graph over the centroids (coarse.h): one thread, fixed seed, FAISS's efConstruction. */
static vs_status build_hnsw(vs_coarse_t *c, char err[VS_ERR_LEN])
{
    char factory[32];
    snprintf(factory, sizeof factory, "HNSW%u", c->hnsw_m);
    const vs_metric m = c->metric == VS_METRIC_L2 ? VS_METRIC_L2 : VS_METRIC_IP;
    int64_t *ids = malloc((size_t)c->nlist * sizeof(int64_t));
    if (!ids)
        return vs_errf(err, VS_ERR_NOMEM, "coarse quantizer: out of memory for the HNSW graph");
    for (uint32_t l = 0; l < c->nlist; l++)
        ids[l] = l;
    vs_status st = vs_index_create(c->d, m, factory, &c->hnsw, err);
    if (st == VS_OK)
        st = vs_index_set_build_params(c->hnsw, 40, 0x5eed5eedull, err);
    if (st == VS_OK)
        st = vs_index_add(c->hnsw, c->nlist, c->centroids, ids, 1, NULL, err);
    free(ids);
    return st;
}

vs_status vs_coarse_init(vs_coarse_t *c, vs_metric metric, uint32_t d, uint32_t nlist, const float *centroids,
                         uint32_t hnsw_m, char err[VS_ERR_LEN])
{
    *c = (vs_coarse_t){.metric = metric, .d = d, .nlist = nlist, .centroids = centroids, .hnsw_m = hnsw_m};
    vs_status st = compute_cnorm(c, err);
    if (st == VS_OK && hnsw_m)
        st = build_hnsw(c, err);
    if (st == VS_OK && !hnsw_m && c->pdim == 0) /* the probes that rank every centroid */
        st = compute_ct(c, err);
    if (st == VS_OK && vs_coarse_grouped_applies(metric, nlist) && (c->groups = vs_coarse_groups_new()) == NULL)
        st = vs_errf(err, VS_ERR_NOMEM, "coarse quantizer: out of memory");
    if (st != VS_OK)
        vs_coarse_fini(c);
    return st;
}

static void *dup_bytes(const void *src, size_t n, int *fail)
{
    if (src == NULL || n == 0)
        return NULL;
    void *p = malloc(n);
    if (p == NULL)
        *fail = 1;
    else
        memcpy(p, src, n);
    return p;
}

/* dup_bytes for the transposed blocks (64-byte aligned; n is a multiple of 64). */
static void *dup_aligned(const void *src, size_t n, int *fail)
{
    if (src == NULL || n == 0)
        return NULL;
    void *p = aligned_alloc(64, n);
    if (p == NULL)
        *fail = 1;
    else
        memcpy(p, src, n);
    return p;
}

vs_status vs_coarse_copy(vs_coarse_t *dst, const vs_coarse_t *src, const float *centroids,
                         char err[VS_ERR_LEN])
{
    int fail = 0;
    *dst = *src;
    dst->centroids = centroids;
    dst->cnorm = dup_bytes(src->cnorm, src->nlist * sizeof(float), &fail);
    dst->pca = dup_bytes(src->pca, (size_t)src->pdim * src->d * sizeof(float), &fail);
    dst->cproj = dup_bytes(src->cproj, (size_t)src->nlist * src->pdim * sizeof(float), &fail);
    dst->pcat = dup_aligned(src->pcat, src->pcat ? tm_bytes(src->pdim, src->d) : 0, &fail);
    dst->cprojt = dup_aligned(src->cprojt, src->cprojt ? tm_bytes(src->nlist, src->pdim) : 0, &fail);
    dst->cpnorm = dup_bytes(src->cpnorm, src->cpnorm ? (size_t)src->nlist * sizeof(float) : 0, &fail);
    dst->ct = dup_aligned(src->ct, src->ct ? tm_bytes(src->nlist, src->d) : 0, &fail);
    dst->hnsw = NULL;
    dst->groups = NULL; /* made again on first use (deterministic: the same groups) */
    if (src->groups != NULL && (dst->groups = vs_coarse_groups_new()) == NULL)
        fail = 1;
    if (!fail && src->hnsw && build_hnsw(dst, err) != VS_OK) {
        vs_coarse_fini(dst);
        return VS_ERR_NOMEM;
    }
    if (fail) {
        vs_coarse_fini(dst);
        return vs_errf(err, VS_ERR_NOMEM, "coarse quantizer: out of memory copying its tables");
    }
    return VS_OK;
}

void vs_coarse_fini(vs_coarse_t *c)
{
    if (!c)
        return;
    free(c->cnorm);
    free(c->pca);
    free(c->cproj);
    vs_index_destroy(c->hnsw);
    c->hnsw = NULL;
    free(c->ct);
    free(c->pcat);
    free(c->cprojt);
    free(c->cpnorm);
    vs_coarse_groups_free(c->groups);
    c->groups = NULL;
    c->cnorm = c->pca = c->cproj = c->ct = c->pcat = c->cprojt = c->cpnorm = NULL;
    c->pdim = 0;
}

size_t vs_coarse_memory_bytes(const vs_coarse_t *c)
{
    return (c->cnorm ? c->nlist * sizeof(float) : 0) + (size_t)c->pdim * (c->d + c->nlist) * sizeof(float) +
           (c->hnsw ? vs_index_memory_bytes(c->hnsw) : 0) + (c->ct ? tm_bytes(c->nlist, c->d) : 0) +
           (c->pcat ? tm_bytes(c->pdim, c->d) + tm_bytes(c->nlist, c->pdim) + c->nlist * sizeof(float) : 0);
}

size_t vs_coarse_pool(uint32_t nprobe)
{
    return (size_t)nprobe + (nprobe > 16 ? nprobe : 16);
}

vs_status vs_coarse_probe_n(const vs_coarse_t *c, size_t nq, const float *q, uint32_t nprobe, uint32_t ef,
                            int exact, int32_t *lists, char err[VS_ERR_LEN])
{
    if (nprobe == 0 || nprobe > c->nlist)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "nprobe %u is out of range 1..%u", nprobe, c->nlist);
    size_t pool = vs_coarse_pool(nprobe);
    const int cosine = c->metric == VS_METRIC_COSINE;
    float *qn = cosine ? malloc(c->d * sizeof(float)) : NULL, *cdist = malloc(c->nlist * sizeof(float));
    float *keys = malloc(pool * sizeof(float)), *proj = malloc((c->pdim + 1) * sizeof(float));
    int64_t *ids = malloc(pool * sizeof(int64_t));
    vs_status st = VS_OK;
    if ((cosine && !qn) || !cdist || !keys || !proj || !ids) {
        st = vs_errf(err, VS_ERR_NOMEM, "coarse quantizer: out of memory");
    } else {
        for (size_t i = 0; i < nq; i++) {
            const float *qi = q + i * c->d;
            if (cosine) {
                memcpy(qn, qi, c->d * sizeof(float));
                vs_normalize_rows(qn, 1, c->d);
                qi = qn;
            }
            vs_coarse_probe(c, qi, nprobe, ef, exact, cdist, keys, ids, proj, lists + i * nprobe);
        }
    }
    free(qn);
    free(cdist);
    free(keys);
    free(proj);
    free(ids);
    return st;
}

vs_status vs_coarse_assign(const vs_coarse_t *c, size_t n, const float *x, size_t block, size_t n_threads,
                           int exact, int32_t *lists, char err[VS_ERR_LEN])
{
    if (n == 0)
        return VS_OK;
    const vs_metric metric = c->metric == VS_METRIC_L2 ? VS_METRIC_L2 : VS_METRIC_IP;
    size_t chunk = n < block ? n : block;
    float *xc = c->metric == VS_METRIC_COSINE ? malloc(chunk * c->d * sizeof(float)) : NULL;
    if (c->metric == VS_METRIC_COSINE && xc == NULL)
        return vs_errf(err, VS_ERR_NOMEM, "coarse assign: out of memory");
    vs_status st = VS_OK;
    for (size_t i0 = 0; i0 < n && st == VS_OK; i0 += chunk) {
        size_t m = n - i0 < chunk ? n - i0 : chunk;
        const float *src = x + i0 * c->d;
        if (xc != NULL) {
            memcpy(xc, src, m * c->d * sizeof(float));
            vs_normalize_rows(xc, m, c->d);
            src = xc;
        }
        if (c->groups != NULL && !exact)
            st = vs_coarse_assign_grouped(c, m, src, n_threads, lists + i0, err);
        else
            st = vs_kmeans_nearest_trusted(src, m, c->centroids, c->nlist, c->d, metric, 1, n_threads,
                                           lists + i0, NULL, err);
    }
    free(xc);
    return st;
}
