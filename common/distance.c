/* distance.c: scalar, AVX2 and AVX-512 distance kernels and their run-time dispatch.
 *
 * SIMD variants are compiled with per-function target attributes (no global -m flags), so the
 * library runs on any x86-64. Tails (d not a multiple of the lane count) use masked loads, never a
 * scalar epilogue, so the cost is the same for every d. The batched forms compare one query with 4
 * base rows per pass: the query chunk is loaded once and 8 accumulators hide the FMA latency. */
#include "common/distance.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define VS_HAVE_X86 1
#endif

const char *vs_metric_name(vs_metric m)
{
    switch (m) {
    case VS_METRIC_L2:
        return "l2";
    case VS_METRIC_IP:
        return "ip";
    case VS_METRIC_COSINE:
        return "cosine";
    }
    return "unknown";
}

vs_status vs_metric_parse(const char *s, vs_metric *out, char err[VS_ERR_LEN])
{
    if (strcmp(s, "l2") == 0 || strcmp(s, "L2") == 0 || strcmp(s, "euclidean") == 0)
        *out = VS_METRIC_L2;
    else if (strcmp(s, "ip") == 0 || strcmp(s, "IP") == 0 || strcmp(s, "inner_product") == 0)
        *out = VS_METRIC_IP;
    else if (strcmp(s, "cosine") == 0 || strcmp(s, "angular") == 0)
        *out = VS_METRIC_COSINE;
    else
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "unknown metric '%s' (use l2, ip or cosine)", s);
    return VS_OK;
}

/* ---- scalar ------------------------------------------------------------------------------------- */

static float l2sqr_scalar(const float *a, const float *b, size_t d)
{
    float s = 0.0f;
    for (size_t i = 0; i < d; i++) {
        float t = a[i] - b[i];
        s += t * t;
    }
    return s;
}

static float ip_scalar(const float *a, const float *b, size_t d)
{
    float s = 0.0f;
    for (size_t i = 0; i < d; i++)
        s += a[i] * b[i];
    return s;
}

static float norm_sqr_scalar(const float *a, size_t d)
{
    return ip_scalar(a, a, d);
}

static void l2sqr_batch_scalar(const float *q, const float *base, size_t n, size_t d, float *out)
{
    for (size_t i = 0; i < n; i++)
        out[i] = l2sqr_scalar(q, base + i * d, d);
}

static void ip_batch_scalar(const float *q, const float *base, size_t n, size_t d, float *out)
{
    for (size_t i = 0; i < n; i++)
        out[i] = ip_scalar(q, base + i * d, d);
}

static void ip_batch_multi_scalar(const float *q, size_t nq, const float *base, size_t n, size_t d,
                                  float *out)
{
    for (size_t j = 0; j < nq; j++)
        ip_batch_scalar(q + j * d, base, n, d, out + j * n);
}

static const vs_distance_kernels_t kernels_scalar = {
    "scalar",        l2sqr_scalar,          ip_scalar, norm_sqr_scalar, l2sqr_batch_scalar,
    ip_batch_scalar, ip_batch_multi_scalar,
};

#ifdef VS_HAVE_X86

/* Canonical accumulation order shared by every SIMD kernel: the vector is cut in chunks of W lanes
 * (W = 8 for AVX2, 16 for AVX-512; the last chunk masked), chunk c is accumulated into acc[c & 1],
 * and the result is the horizontal sum of acc[0] + acc[1]. The single and the 4-row batched kernels
 * follow it exactly, so a distance is bit-identical whichever path computed it. */

/* ---- AVX2 + FMA --------------------------------------------------------------------------------- */

#define VS_AVX2 __attribute__((target("avx2,fma")))

VS_AVX2 static inline __m256i tail_mask8(size_t rem)
{
    /* lanes [0, rem) set; rem in 1..7 */
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)rem), idx);
}

VS_AVX2 static inline float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Accumulates chunk values of n_rows rows (1 or 4) in the canonical order. is_l2 and n_rows are
 * compile-time constants at every call site, so the branches fold away. */
VS_AVX2 __attribute__((always_inline)) static inline void
accumulate_avx2(const float *q, const float *const *x, int n_rows, size_t d, int is_l2, float *out)
{
    __m256 acc0[4], acc1[4];
    for (int r = 0; r < 4; r++)
        acc0[r] = acc1[r] = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= d; i += 16) {
        __m256 vq0 = _mm256_loadu_ps(q + i), vq1 = _mm256_loadu_ps(q + i + 8);
        for (int r = 0; r < n_rows; r++) {
            __m256 v0 = _mm256_loadu_ps(x[r] + i), v1 = _mm256_loadu_ps(x[r] + i + 8);
            if (is_l2) {
                v0 = _mm256_sub_ps(vq0, v0);
                v1 = _mm256_sub_ps(vq1, v1);
                acc0[r] = _mm256_fmadd_ps(v0, v0, acc0[r]);
                acc1[r] = _mm256_fmadd_ps(v1, v1, acc1[r]);
            } else {
                acc0[r] = _mm256_fmadd_ps(vq0, v0, acc0[r]);
                acc1[r] = _mm256_fmadd_ps(vq1, v1, acc1[r]);
            }
        }
    }
    int tail_in_acc1 = 0; /* parity of the next chunk index */
    if (i + 8 <= d) {
        __m256 vq = _mm256_loadu_ps(q + i);
        for (int r = 0; r < n_rows; r++) {
            __m256 v = _mm256_loadu_ps(x[r] + i);
            if (is_l2) {
                v = _mm256_sub_ps(vq, v);
                acc0[r] = _mm256_fmadd_ps(v, v, acc0[r]);
            } else {
                acc0[r] = _mm256_fmadd_ps(vq, v, acc0[r]);
            }
        }
        i += 8;
        tail_in_acc1 = 1;
    }
    if (i < d) {
        __m256i m = tail_mask8(d - i);
        __m256 vq = _mm256_maskload_ps(q + i, m);
        for (int r = 0; r < n_rows; r++) {
            __m256 v = _mm256_maskload_ps(x[r] + i, m);
            __m256 a = is_l2 ? _mm256_sub_ps(vq, v) : vq, b = is_l2 ? a : v;
            if (tail_in_acc1)
                acc1[r] = _mm256_fmadd_ps(a, b, acc1[r]);
            else
                acc0[r] = _mm256_fmadd_ps(a, b, acc0[r]);
        }
    }
    for (int r = 0; r < n_rows; r++)
        out[r] = hsum8(_mm256_add_ps(acc0[r], acc1[r]));
}

VS_AVX2 static float l2sqr_avx2(const float *a, const float *b, size_t d)
{
    float out;
    accumulate_avx2(a, &b, 1, d, 1, &out);
    return out;
}

VS_AVX2 static float ip_avx2(const float *a, const float *b, size_t d)
{
    float out;
    accumulate_avx2(a, &b, 1, d, 0, &out);
    return out;
}

VS_AVX2 static float norm_sqr_avx2(const float *a, size_t d)
{
    return ip_avx2(a, a, d);
}

VS_AVX2 static void l2sqr_batch_avx2(const float *q, const float *base, size_t n, size_t d, float *out)
{
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const float *x[4] = {base + i * d, base + (i + 1) * d, base + (i + 2) * d, base + (i + 3) * d};
        accumulate_avx2(q, x, 4, d, 1, out + i);
    }
    for (; i < n; i++)
        out[i] = l2sqr_avx2(q, base + i * d, d);
}

VS_AVX2 static void ip_batch_avx2(const float *q, const float *base, size_t n, size_t d, float *out)
{
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const float *x[4] = {base + i * d, base + (i + 1) * d, base + (i + 2) * d, base + (i + 3) * d};
        accumulate_avx2(q, x, 4, d, 0, out + i);
    }
    for (; i < n; i++)
        out[i] = ip_avx2(q, base + i * d, d);
}

VS_AVX2 static void ip_batch_multi_avx2(const float *q, size_t nq, const float *base, size_t n, size_t d,
                                        float *out)
{
    for (size_t j = 0; j < nq; j++)
        ip_batch_avx2(q + j * d, base, n, d, out + j * n);
}

static const vs_distance_kernels_t kernels_avx2 = {
    "avx2", l2sqr_avx2, ip_avx2, norm_sqr_avx2, l2sqr_batch_avx2, ip_batch_avx2, ip_batch_multi_avx2,
};

/* ---- AVX-512 ------------------------------------------------------------------------------------ */

#define VS_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")))

VS_AVX512 __attribute__((always_inline)) static inline void
accumulate_avx512(const float *q, const float *const *x, int n_rows, size_t d, int is_l2, float *out)
{
    __m512 acc0[4], acc1[4];
    for (int r = 0; r < 4; r++)
        acc0[r] = acc1[r] = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= d; i += 32) {
        __m512 vq0 = _mm512_loadu_ps(q + i), vq1 = _mm512_loadu_ps(q + i + 16);
        for (int r = 0; r < n_rows; r++) {
            __m512 v0 = _mm512_loadu_ps(x[r] + i), v1 = _mm512_loadu_ps(x[r] + i + 16);
            if (is_l2) {
                v0 = _mm512_sub_ps(vq0, v0);
                v1 = _mm512_sub_ps(vq1, v1);
                acc0[r] = _mm512_fmadd_ps(v0, v0, acc0[r]);
                acc1[r] = _mm512_fmadd_ps(v1, v1, acc1[r]);
            } else {
                acc0[r] = _mm512_fmadd_ps(vq0, v0, acc0[r]);
                acc1[r] = _mm512_fmadd_ps(vq1, v1, acc1[r]);
            }
        }
    }
    int tail_in_acc1 = 0; /* parity of the next chunk index */
    if (i + 16 <= d) {
        __m512 vq = _mm512_loadu_ps(q + i);
        for (int r = 0; r < n_rows; r++) {
            __m512 v = _mm512_loadu_ps(x[r] + i);
            if (is_l2) {
                v = _mm512_sub_ps(vq, v);
                acc0[r] = _mm512_fmadd_ps(v, v, acc0[r]);
            } else {
                acc0[r] = _mm512_fmadd_ps(vq, v, acc0[r]);
            }
        }
        i += 16;
        tail_in_acc1 = 1;
    }
    if (i < d) {
        __mmask16 m = (__mmask16)((1u << (d - i)) - 1u);
        __m512 vq = _mm512_maskz_loadu_ps(m, q + i);
        for (int r = 0; r < n_rows; r++) {
            __m512 v = _mm512_maskz_loadu_ps(m, x[r] + i);
            __m512 a = is_l2 ? _mm512_sub_ps(vq, v) : vq, b = is_l2 ? a : v;
            if (tail_in_acc1)
                acc1[r] = _mm512_fmadd_ps(a, b, acc1[r]);
            else
                acc0[r] = _mm512_fmadd_ps(a, b, acc0[r]);
        }
    }
    for (int r = 0; r < n_rows; r++)
        out[r] = _mm512_reduce_add_ps(_mm512_add_ps(acc0[r], acc1[r]));
}

VS_AVX512 static float l2sqr_avx512(const float *a, const float *b, size_t d)
{
    float out;
    accumulate_avx512(a, &b, 1, d, 1, &out);
    return out;
}

VS_AVX512 static float ip_avx512(const float *a, const float *b, size_t d)
{
    float out;
    accumulate_avx512(a, &b, 1, d, 0, &out);
    return out;
}

VS_AVX512 static float norm_sqr_avx512(const float *a, size_t d)
{
    return ip_avx512(a, a, d);
}

VS_AVX512 static void l2sqr_batch_avx512(const float *q, const float *base, size_t n, size_t d, float *out)
{
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const float *x[4] = {base + i * d, base + (i + 1) * d, base + (i + 2) * d, base + (i + 3) * d};
        accumulate_avx512(q, x, 4, d, 1, out + i);
    }
    for (; i < n; i++)
        out[i] = l2sqr_avx512(q, base + i * d, d);
}

VS_AVX512 static void ip_batch_avx512(const float *q, const float *base, size_t n, size_t d, float *out)
{
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const float *x[4] = {base + i * d, base + (i + 1) * d, base + (i + 2) * d, base + (i + 3) * d};
        accumulate_avx512(q, x, 4, d, 0, out + i);
    }
    for (; i < n; i++)
        out[i] = ip_avx512(q, base + i * d, d);
}

/* Inner products of two queries with four rows, each (query, row) accumulated exactly as
 * accumulate_avx512 does it (two accumulators over 32-float steps, the same 16-float and masked tails,
 * the same reduction), so the results are bit-identical to ip_batch_avx512's; the rows are loaded once
 * for both queries, halving the loads that bound the single-query kernel. */
VS_AVX512 static void ip_2x4_avx512(const float *q0, const float *q1, const float *const *x, size_t d,
                                    float *out0, float *out1)
{
    __m512 a0[4], a1[4], b0[4], b1[4]; /* a: query 0, b: query 1; 0/1: the two accumulators */
    for (int r = 0; r < 4; r++)
        a0[r] = a1[r] = b0[r] = b1[r] = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= d; i += 32) {
        __m512 p0 = _mm512_loadu_ps(q0 + i), p1 = _mm512_loadu_ps(q0 + i + 16);
        __m512 s0 = _mm512_loadu_ps(q1 + i), s1 = _mm512_loadu_ps(q1 + i + 16);
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) {
            __m512 v0 = _mm512_loadu_ps(x[r] + i), v1 = _mm512_loadu_ps(x[r] + i + 16);
            a0[r] = _mm512_fmadd_ps(p0, v0, a0[r]);
            a1[r] = _mm512_fmadd_ps(p1, v1, a1[r]);
            b0[r] = _mm512_fmadd_ps(s0, v0, b0[r]);
            b1[r] = _mm512_fmadd_ps(s1, v1, b1[r]);
        }
    }
    int tail_in_acc1 = 0;
    if (i + 16 <= d) {
        __m512 p = _mm512_loadu_ps(q0 + i), s = _mm512_loadu_ps(q1 + i);
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) {
            __m512 v = _mm512_loadu_ps(x[r] + i);
            a0[r] = _mm512_fmadd_ps(p, v, a0[r]);
            b0[r] = _mm512_fmadd_ps(s, v, b0[r]);
        }
        i += 16;
        tail_in_acc1 = 1;
    }
    if (i < d) {
        __mmask16 m = (__mmask16)((1u << (d - i)) - 1u);
        __m512 p = _mm512_maskz_loadu_ps(m, q0 + i), s = _mm512_maskz_loadu_ps(m, q1 + i);
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) {
            __m512 v = _mm512_maskz_loadu_ps(m, x[r] + i);
            if (tail_in_acc1) {
                a1[r] = _mm512_fmadd_ps(p, v, a1[r]);
                b1[r] = _mm512_fmadd_ps(s, v, b1[r]);
            } else {
                a0[r] = _mm512_fmadd_ps(p, v, a0[r]);
                b0[r] = _mm512_fmadd_ps(s, v, b0[r]);
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++) {
        out0[r] = _mm512_reduce_add_ps(_mm512_add_ps(a0[r], a1[r]));
        out1[r] = _mm512_reduce_add_ps(_mm512_add_ps(b0[r], b1[r]));
    }
}

#define MULTI_ROWS 32 /* rows per block: read from memory once, then from L1 for every pair of queries */

VS_AVX512 static void ip_batch_multi_avx512(const float *q, size_t nq, const float *base, size_t n, size_t d,
                                            float *out)
{
    for (size_t r0 = 0; r0 < n; r0 += MULTI_ROWS) {
        const size_t r1 = n - r0 < MULTI_ROWS ? n : r0 + MULTI_ROWS;
        size_t j = 0;
        for (; j + 2 <= nq; j += 2) {
            const float *q0 = q + j * d, *q1 = q0 + d;
            float *o0 = out + j * n, *o1 = o0 + n;
            size_t i = r0;
            for (; i + 4 <= r1; i += 4) {
                const float *x[4] = {base + i * d, base + (i + 1) * d, base + (i + 2) * d,
                                     base + (i + 3) * d};
                ip_2x4_avx512(q0, q1, x, d, o0 + i, o1 + i);
            }
            for (; i < r1; i++) {
                o0[i] = ip_avx512(q0, base + i * d, d);
                o1[i] = ip_avx512(q1, base + i * d, d);
            }
        }
        if (j < nq) /* per row the same arithmetic whatever the range: rows are independent */
            ip_batch_avx512(q + j * d, base + r0 * d, r1 - r0, d, out + j * n + r0);
    }
}

static const vs_distance_kernels_t kernels_avx512 = {
    "avx512",        l2sqr_avx512,          ip_avx512, norm_sqr_avx512, l2sqr_batch_avx512,
    ip_batch_avx512, ip_batch_multi_avx512,
};

#endif /* VS_HAVE_X86 */

/* ---- dispatch ----------------------------------------------------------------------------------- */

const vs_distance_kernels_t *vs_distance_kernels_for(vs_simd_level level)
{
    if (level > vs_cpu_simd_supported())
        return NULL;
    switch (level) {
    case VS_SIMD_SCALAR:
        return &kernels_scalar;
#ifdef VS_HAVE_X86
    case VS_SIMD_AVX2:
        return &kernels_avx2;
    case VS_SIMD_AVX512:
        return &kernels_avx512;
#endif
    default:
        return NULL;
    }
}

const vs_distance_kernels_t *vs_distance_kernels(void)
{
    static const vs_distance_kernels_t *cached; /* benign race: same value from every thread */
    const vs_distance_kernels_t *k = __atomic_load_n(&cached, __ATOMIC_ACQUIRE);
    if (k == NULL) {
        k = vs_distance_kernels_for(vs_cpu_simd_level());
        if (k == NULL)
            k = &kernels_scalar;
        __atomic_store_n(&cached, k, __ATOMIC_RELEASE);
    }
    return k;
}

float vs_l2sqr(const float *a, const float *b, size_t d)
{
    return vs_distance_kernels()->l2sqr(a, b, d);
}

float vs_ip(const float *a, const float *b, size_t d)
{
    return vs_distance_kernels()->ip(a, b, d);
}

float vs_distance(vs_metric m, const float *a, const float *b, size_t d)
{
    return m == VS_METRIC_L2 ? vs_l2sqr(a, b, d) : vs_ip(a, b, d);
}

void vs_distance_batch(vs_metric m, const float *q, const float *base, size_t n, size_t d, float *out)
{
    const vs_distance_kernels_t *k = vs_distance_kernels();
    if (m == VS_METRIC_L2)
        k->l2sqr_batch(q, base, n, d, out);
    else
        k->ip_batch(q, base, n, d, out);
}

void vs_normalize_rows(float *x, size_t n, size_t d)
{
    for (size_t i = 0; i < n; i++) {
        float *row = x + i * d;
        /* the norm in double so that re-normalising a unit vector is a no-op to the last bit */
        double s = 0.0;
        for (size_t j = 0; j < d; j++)
            s += (double)row[j] * row[j];
        if (s > 0.0) {
            float inv = (float)(1.0 / sqrt(s));
            for (size_t j = 0; j < d; j++)
                row[j] *= inv;
        }
    }
}

vs_status vs_check_finite(const float *x, size_t n, size_t d, const char *what, char err[VS_ERR_LEN])
{
    for (size_t i = 0; i < n; i++) {
        const float *row = x + i * d;
        double sq = 0;
        for (size_t j = 0; j < d; j++) {
            if (!isfinite(row[j]))
                return vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                               "%s %zu has a non-finite value (%s) at component %zu", what, i,
                               isnan(row[j]) ? "NaN" : "Inf", j);
            sq += (double)row[j] * row[j];
        }
        if (sq > VS_MAX_SQUARED_NORM)
            return vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                           "%s %zu has a squared norm of %.3g, above %.3g where float distances overflow",
                           what, i, sq, VS_MAX_SQUARED_NORM);
    }
    return VS_OK;
}
