/* pq.c: codebook training (k-means per sub-space), encoding, decoding and ADC tables. Encoding
 * compares each sub-vector with every centroid of its sub-space directly: with ksub <= 256 and the small
 * dsub of typical PQ (2..32 dims) a straight loop over a cache-resident codebook beats an sgemm call. */
#include "shard/index/pq.h"

#include <stdlib.h>
#include <string.h>

#include "common/distance.h"
#include "common/kmeans.h"
#include "common/parallel.h"
#include "shard/index/fastscan.h"

vs_status vs_pq_init(vs_pq_t *pq, uint32_t d, uint32_t m, uint32_t nbits, char err[VS_ERR_LEN])
{
    if (m == 0 || d == 0)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "PQ needs m >= 1 and d >= 1");
    if (d % m != 0)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "dimension %u is not divisible by PQ m=%u", d, m);
    if (nbits != 4 && nbits != 8)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "PQ nbits must be 4 or 8, not %u", nbits);
    memset(pq, 0, sizeof *pq);
    pq->d = d;
    pq->m = m;
    pq->nbits = nbits;
    pq->ksub = 1u << nbits;
    pq->dsub = d / m;
    return VS_OK;
}

void vs_pq_fini(vs_pq_t *pq)
{
    if (pq->owned)
        free(pq->centroids);
    pq->centroids = NULL;
    pq->owned = 0;
}

vs_status vs_pq_train(vs_pq_t *pq, const float *x, size_t n, uint64_t seed, size_t n_threads,
                      const vs_progress_cb_t *progress, char err[VS_ERR_LEN])
{
    const uint32_t m = pq->m, ksub = pq->ksub, dsub = pq->dsub, d = pq->d;
    if (n < ksub)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "PQ training needs at least %u vectors, got %zu", ksub,
                       n);
    size_t n_use = n < (size_t)ksub * 256 ? n : (size_t)ksub * 256;
    float *cent = malloc((size_t)m * ksub * dsub * sizeof(float));
    float *sub = malloc(n_use * dsub * sizeof(float));
    if (cent == NULL || sub == NULL) {
        free(cent);
        free(sub);
        return vs_errf(err, VS_ERR_NOMEM, "PQ training: out of memory");
    }
    /* a fixed-stride subsample keeps it deterministic and spread over the whole input */
    double stride = (double)n / (double)n_use;
    vs_status st = VS_OK;
    for (uint32_t j = 0; j < m && st == VS_OK; j++) {
        for (size_t i = 0; i < n_use; i++) {
            size_t row = (size_t)((double)i * stride);
            memcpy(sub + i * dsub, x + row * d + (size_t)j * dsub, dsub * sizeof(float));
        }
        vs_kmeans_params_t kp = {.k = ksub,
                                 .n_iter = 25,
                                 .max_points_per_centroid = 256,
                                 .seed = seed + j,
                                 .n_threads = n_threads};
        st = vs_kmeans_train(sub, n_use, dsub, &kp, cent + (size_t)j * ksub * dsub, NULL, NULL, err);
        vs_progress_call(progress, j + 1, m);
    }
    free(sub);
    if (st != VS_OK) {
        free(cent);
        return st;
    }
    vs_pq_fini(pq);
    pq->centroids = cent;
    pq->owned = 1;
    return VS_OK;
}

typedef struct encode_ctx {
    const vs_pq_t *pq;
    const float *x;
    size_t n;
    uint8_t *codes;
    const float *cbt; /* 4-bit: the transposed codebook (one table pass per vector) */
} encode_ctx_t;

#define ENCODE_BLOCK 1024

static void encode_task(void *arg, size_t task, size_t worker)
{
    (void)worker;
    encode_ctx_t *c = arg;
    const vs_pq_t *pq = c->pq;
    const vs_distance_kernels_t *kern = vs_distance_kernels();
    float dist[256];
    size_t i0 = task * ENCODE_BLOCK, i1 = i0 + ENCODE_BLOCK < c->n ? i0 + ENCODE_BLOCK : c->n;
    if (c->cbt != NULL) {
        float table[VS_FS_MAX_M * 16];
        for (size_t i = i0; i < i1; i++)
            vs_fs_encode(c->cbt, pq->m, pq->dsub, c->x + i * pq->d, c->codes + i * pq->m, table);
        return;
    }
    for (size_t i = i0; i < i1; i++) {
        const float *v = c->x + i * pq->d;
        for (uint32_t j = 0; j < pq->m; j++) {
            const float *cb = pq->centroids + (size_t)j * pq->ksub * pq->dsub;
            kern->l2sqr_batch(v + (size_t)j * pq->dsub, cb, pq->ksub, pq->dsub, dist);
            uint32_t best = 0;
            for (uint32_t c2 = 1; c2 < pq->ksub; c2++)
                if (dist[c2] < dist[best])
                    best = c2;
            c->codes[i * pq->m + j] = (uint8_t)best;
        }
    }
}

vs_status vs_pq_encode(const vs_pq_t *pq, const float *x, size_t n, uint8_t *codes, size_t n_threads,
                       char err[VS_ERR_LEN])
{
    if (pq->centroids == NULL)
        return vs_errf(err, VS_ERR_FAILED_PRECONDITION, "PQ is not trained");
    encode_ctx_t c = {pq, x, n, codes, NULL};
    float *cbt = NULL;
    if (pq->ksub == 16 && pq->m <= VS_FS_MAX_M) {
        cbt = malloc((size_t)pq->m * pq->dsub * 16 * sizeof(float));
        if (cbt == NULL)
            return vs_errf(err, VS_ERR_NOMEM, "PQ encode: out of memory");
        vs_fs_transpose_codebook(pq->centroids, pq->m, pq->dsub, cbt);
        c.cbt = cbt;
    }
    vs_status st = vs_parallel_for((n + ENCODE_BLOCK - 1) / ENCODE_BLOCK, n_threads, encode_task, &c, err);
    free(cbt);
    return st;
}

void vs_pq_decode(const vs_pq_t *pq, const uint8_t *code, float *out)
{
    for (uint32_t j = 0; j < pq->m; j++)
        memcpy(out + (size_t)j * pq->dsub, pq->centroids + ((size_t)j * pq->ksub + code[j]) * pq->dsub,
               pq->dsub * sizeof(float));
}

void vs_pq_lut_l2(const vs_pq_t *pq, const float *r, float *lut)
{
    const vs_distance_kernels_t *kern = vs_distance_kernels();
    for (uint32_t j = 0; j < pq->m; j++)
        kern->l2sqr_batch(r + (size_t)j * pq->dsub, pq->centroids + (size_t)j * pq->ksub * pq->dsub, pq->ksub,
                          pq->dsub, lut + (size_t)j * pq->ksub);
}

void vs_pq_lut_ip(const vs_pq_t *pq, const float *q, float *lut)
{
    const vs_distance_kernels_t *kern = vs_distance_kernels();
    for (uint32_t j = 0; j < pq->m; j++)
        kern->ip_batch(q + (size_t)j * pq->dsub, pq->centroids + (size_t)j * pq->ksub * pq->dsub, pq->ksub,
                       pq->dsub, lut + (size_t)j * pq->ksub);
}
