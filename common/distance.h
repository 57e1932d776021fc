/* distance.h: distances between float32 vectors: squared L2, inner product, and cosine through
 * normalisation, in scalar, AVX2 and AVX-512 variants chosen at run time.
 *
 * Conventions (as in FAISS): for VS_METRIC_L2 a result "distance" is the squared L2 distance and
 * smaller is better; for VS_METRIC_IP and VS_METRIC_COSINE it is the inner product (cosine: of unit
 * vectors, normalised at build and at query time) and larger is better.
 * The scalar variant sums left to right; the SIMD variants keep 8 or 16 partial sums, so results
 * differ from scalar in the last bits (tests bound the difference against a double reference).
 * Not here: quantised distances (PQ, SQ8) live with their index. */
#ifndef VS_COMMON_DISTANCE_H
#define VS_COMMON_DISTANCE_H

#include <stddef.h>
#include <stdint.h>

#include "common/cpu.h"
#include "common/status.h"

typedef enum vs_metric {
    VS_METRIC_L2 = 0,     /* squared Euclidean; smaller is better */
    VS_METRIC_IP = 1,     /* inner product (MIPS); larger is better */
    VS_METRIC_COSINE = 2, /* inner product of unit-normalised vectors; larger is better */
} vs_metric;

/* "l2", "ip", "cosine"; parse accepts those and "L2", "inner_product", "angular". */
const char *vs_metric_name(vs_metric m);
vs_status vs_metric_parse(const char *s, vs_metric *out, char err[VS_ERR_LEN]);

/* 1 when larger distances are better (IP, cosine), 0 for L2. */
static inline int vs_metric_larger_is_better(vs_metric m)
{
    return m != VS_METRIC_L2;
}

/* One variant's kernels. Shapes: a, b: d floats; base: n*d floats, row-major; out: n floats. */
typedef struct vs_distance_kernels {
    const char *name;
    float (*l2sqr)(const float *a, const float *b, size_t d);
    float (*ip)(const float *a, const float *b, size_t d);
    float (*norm_sqr)(const float *a, size_t d);
    /* out[i] = distance(q, base + i*d) for i in [0, n). */
    void (*l2sqr_batch)(const float *q, const float *base, size_t n, size_t d, float *out);
    void (*ip_batch)(const float *q, const float *base, size_t n, size_t d, float *out);
    /* ip_batch for nq queries (nq*d floats): out[j*n + i] = <q_j, base_i>, bit for bit what nq calls of
     * ip_batch give (each product accumulates in the same order), with each base row loaded once for
     * several queries. */
    void (*ip_batch_multi)(const float *q, size_t nq, const float *base, size_t n, size_t d, float *out);
} vs_distance_kernels_t;

/* The kernels of one level, or NULL when the CPU lacks it (used by tests to compare variants). */
const vs_distance_kernels_t *vs_distance_kernels_for(vs_simd_level level);

/* The kernels in use (vs_cpu_simd_level()); never NULL. Borrowed, static. */
const vs_distance_kernels_t *vs_distance_kernels(void);

/* Dispatched shorthands. */
float vs_l2sqr(const float *a, const float *b, size_t d);
float vs_ip(const float *a, const float *b, size_t d);

/* Distance of the given metric (cosine assumes both sides are already unit-normalised). */
float vs_distance(vs_metric m, const float *a, const float *b, size_t d);
void vs_distance_batch(vs_metric m, const float *q, const float *base, size_t n, size_t d, float *out);

/* Scales each of the n rows of x (n*d floats) to unit L2 norm in place; a zero row stays zero. */
void vs_normalize_rows(float *x, size_t n, size_t d);

/* Largest squared norm a vector may have: |x-y|^2 <= 2|x|^2 + 2|y|^2 must stay below FLT_MAX with room
 * for sums of code-book terms, or distances become inf and comparisons NaN (found by fuzzing). */
#define VS_MAX_SQUARED_NORM 4.0e37

/* Checks that n*d floats are finite and each row's squared norm is at most VS_MAX_SQUARED_NORM.
 * Returns VS_ERR_INVALID_ARGUMENT naming the first bad row (and component; what says e.g. "query"),
 * VS_OK otherwise. */
vs_status vs_check_finite(const float *x, size_t n, size_t d, const char *what, char err[VS_ERR_LEN]);

#endif
