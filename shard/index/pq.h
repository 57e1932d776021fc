/* pq.h: product quantizer (Jegou, Douze, Schmid, "Product quantization for nearest neighbor search",
 * TPAMI 2011). A d-dim vector is cut into m sub-vectors of dsub = d/m dims; each is replaced by the id of
 * the nearest of ksub = 2^nbits centroids learnt by k-means on that sub-space. Distances to a query are
 * then sums of m table lookups (asymmetric distance computation, ADC).
 *
 * Codes here are one byte per sub-quantizer (nbits 4 or 8); the 4-bit fast-scan layout that packs two
 * codes per byte in blocks of 32 vectors lives in fastscan.h. Not here: the IVF residuals (ivf.c passes
 * residual vectors in) and any file I/O. */
#ifndef VS_SHARD_INDEX_PQ_H
#define VS_SHARD_INDEX_PQ_H

#include <stddef.h>
#include <stdint.h>

#include "common/progress.h"
#include "common/status.h"

typedef struct vs_pq {
    uint32_t d, m, nbits, ksub, dsub;
    float *centroids; /* m * ksub * dsub: sub-quantizer j, centroid c at (j*ksub + c)*dsub */
    int owned;        /* 1 when centroids is malloc'd (trained), 0 when it points into a mapped file */
} vs_pq_t;

/* Sets the shape; VS_ERR_INVALID_ARGUMENT when d is not divisible by m ("dimension 100 is not divisible
 * by PQ m=32"), m is 0, or nbits is not 4 or 8. No allocation. */
vs_status vs_pq_init(vs_pq_t *pq, uint32_t d, uint32_t m, uint32_t nbits, char err[VS_ERR_LEN]);

/* Frees trained centroids (not mapped ones). */
void vs_pq_fini(vs_pq_t *pq);

/* Learns the codebooks from n vectors (n*d floats, borrowed): k-means with ksub centroids per
 * sub-space on at most 256*ksub points, seeded. VS_ERR_INVALID_ARGUMENT if n < ksub. */
vs_status vs_pq_train(vs_pq_t *pq, const float *x, size_t n, uint64_t seed, size_t n_threads,
                      const vs_progress_cb_t *progress, char err[VS_ERR_LEN]);

/* Encodes n vectors into codes[n*m] (one byte per sub-quantizer, nearest centroid in L2). Threads over
 * blocks of vectors. */
vs_status vs_pq_encode(const vs_pq_t *pq, const float *x, size_t n, uint8_t *codes, size_t n_threads,
                       char err[VS_ERR_LEN]);

/* Reconstructs one vector (d floats) from its m codes. */
void vs_pq_decode(const vs_pq_t *pq, const uint8_t *code, float *out);

/* ADC tables, lut[m*ksub]: squared L2 between sub-vectors of r and every centroid, or inner products. */
void vs_pq_lut_l2(const vs_pq_t *pq, const float *r, float *lut);
void vs_pq_lut_ip(const vs_pq_t *pq, const float *q, float *lut);

/* Sum of the m table entries a code selects (8-bit ADC, one vector). */
static inline float vs_pq_adc(const float *lut, const uint8_t *code, uint32_t m, uint32_t ksub)
{
    float s = 0.0f;
    for (uint32_t j = 0; j < m; j++)
        s += lut[j * ksub + code[j]];
    return s;
}

#endif
