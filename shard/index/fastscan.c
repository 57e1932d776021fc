/* fastscan.c: packing, table quantisation and the scan kernels (scalar reference, AVX2, AVX-512).
 * All three compute the same integer sums, so they offer exactly the same candidates.
 *
 * SIMD accumulation: the two lookups of a pair are added as bytes (each <= 127), then added into 16-bit
 * lanes twice: "all" gets the whole 16-bit word (low byte = even vector, high byte = odd vector, wrapping
 * is harmless) and "odd" gets the word shifted right by 8; at the end even = all - (odd << 8). */
#include "shard/index/fastscan.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define VS_HAVE_X86 1
#endif

void vs_fs_put(uint8_t *blocks, uint32_t m, size_t pos, const uint8_t *codes)
{
    uint32_t P = vs_fs_pairs(m);
    uint8_t *b = blocks + pos / VS_FS_BLOCK * (size_t)P * VS_FS_BLOCK + pos % VS_FS_BLOCK;
    for (uint32_t j = 0; j < m; j++)
        b[(j / 2) * VS_FS_BLOCK] |= (uint8_t)((codes[j] & 15) << ((j & 1) * 4));
}

void vs_fs_clear(uint8_t *blocks, uint32_t m, size_t pos)
{
    uint32_t P = vs_fs_pairs(m);
    uint8_t *b = blocks + pos / VS_FS_BLOCK * (size_t)P * VS_FS_BLOCK + pos % VS_FS_BLOCK;
    for (uint32_t p = 0; p < P; p++)
        b[p * VS_FS_BLOCK] = 0;
}

uint8_t vs_fs_get(const uint8_t *blocks, uint32_t m, size_t pos, uint32_t j)
{
    uint32_t P = vs_fs_pairs(m);
    const uint8_t *b = blocks + pos / VS_FS_BLOCK * (size_t)P * VS_FS_BLOCK + pos % VS_FS_BLOCK;
    return (uint8_t)((b[(j / 2) * VS_FS_BLOCK] >> ((j & 1) * 4)) & 15);
}

/* Writes the 16 quantised entries of sub-quantizer j twice (for the two 128-bit lanes of a pair load). */
static void put_table(uint8_t *qlut, uint32_t P, uint32_t j, const uint8_t q[16])
{
    uint8_t *t = qlut + (j & 1) * (size_t)P * 32 + (j / 2) * 32;
    memcpy(t, q, 16);
    memcpy(t + 16, q, 16);
}

static void quantize_scalar(const float *lut, uint32_t m, uint8_t *qlut, float *out_bias, float *out_scale)
{
    uint32_t P = vs_fs_pairs(m);
    float range = 0.0f, bias = 0.0f, mins[VS_FS_MAX_M];
    for (uint32_t j = 0; j < m; j++) {
        float lo = lut[j * 16], hi = lut[j * 16];
        for (int c = 1; c < 16; c++) {
            float v = lut[j * 16 + c];
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
        }
        mins[j] = lo;
        bias += lo;
        range = hi - lo > range ? hi - lo : range;
    }
    float scale = range > 0.0f ? 127.0f / range : 1.0f;
    memset(qlut, 0, (size_t)P * 64);
    for (uint32_t j = 0; j < m; j++) {
        uint8_t q[16];
        for (int c = 0; c < 16; c++) {
            long v = lrintf((lut[j * 16 + c] - mins[j]) * scale);
            q[c] = (uint8_t)(v < 0 ? 0 : v > 127 ? 127 : v);
        }
        put_table(qlut, P, j, q);
    }
    *out_bias = bias;
    *out_scale = scale;
}

#ifdef VS_HAVE_X86
#define VS_AVX512Q __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl")))

/* The minimum (is_max 0) or maximum of each of 16 tables of 16 entries (rows[16*16]), row r in lane r: a
 * transposing tree of 15 shuffles pairs and 15 min/max instead of 16 horizontal reductions. */
VS_AVX512Q __attribute__((always_inline)) static inline __m512 rows16_extreme(const float *rows, int is_max)
{
#define VS_OP(a, b) (is_max ? _mm512_max_ps(a, b) : _mm512_min_ps(a, b))
    __m512 w[8], x[4], y[2];
    for (int i = 0; i < 8; i++) { /* lanes 0-1: row 2i, 2-3: row 2i+1 */
        __m512 a = _mm512_loadu_ps(rows + 32 * i), b = _mm512_loadu_ps(rows + 32 * i + 16);
        w[i] = VS_OP(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xee));
    }
    for (int i = 0; i < 4; i++) /* 128-bit lane L: row 4i + L */
        x[i] = VS_OP(_mm512_shuffle_f32x4(w[2 * i], w[2 * i + 1], 0x88),
                     _mm512_shuffle_f32x4(w[2 * i], w[2 * i + 1], 0xdd));
    for (int i = 0; i < 2; i++) /* lane L: rows 8i + L (first two) and 8i + 4 + L (last two) */
        y[i] = VS_OP(_mm512_shuffle_ps(x[2 * i], x[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                     _mm512_shuffle_ps(x[2 * i], x[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    /* element 4L + k: row L + 4k */
    __m512 z = VS_OP(_mm512_shuffle_ps(y[0], y[1], _MM_SHUFFLE(2, 0, 2, 0)),
                     _mm512_shuffle_ps(y[0], y[1], _MM_SHUFFLE(3, 1, 3, 1)));
#undef VS_OP
    const __m512i order = _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0);
    return _mm512_permutexvar_ps(order, z);
}

/* One 16-entry table is one zmm. Rounding is to nearest-even like lrintf, so the bytes equal the
 * scalar version's exactly (minima, maxima and the range are exact; only the bias's summation order
 * differs). */
VS_AVX512Q static void quantize_avx512(const float *lut, uint32_t m, uint8_t *qlut, float *out_bias,
                                       float *out_scale)
{
    uint32_t P = vs_fs_pairs(m);
    float mins[VS_FS_MAX_M], bias = 0.0f, range = 0.0f;
    __m512 vbias = _mm512_setzero_ps(), vrange = _mm512_setzero_ps();
    uint32_t j = 0;
    for (; j + 16 <= m; j += 16) {
        __m512 lo = rows16_extreme(lut + j * 16, 0), hi = rows16_extreme(lut + j * 16, 1);
        _mm512_storeu_ps(mins + j, lo);
        vbias = _mm512_add_ps(vbias, lo);
        vrange = _mm512_max_ps(vrange, _mm512_sub_ps(hi, lo));
    }
    if (j > 0) {
        bias = _mm512_reduce_add_ps(vbias);
        range = _mm512_reduce_max_ps(vrange);
    }
    for (; j < m; j++) {
        __m512 v = _mm512_loadu_ps(lut + j * 16);
        float lo = _mm512_reduce_min_ps(v), hi = _mm512_reduce_max_ps(v);
        mins[j] = lo;
        bias += lo;
        range = hi - lo > range ? hi - lo : range;
    }
    float scale = range > 0.0f ? 127.0f / range : 1.0f;
    if (m & 1)
        memset(qlut, 0, (size_t)P * 64);
    const __m512 vs = _mm512_set1_ps(scale);
    const __m512i hi127 = _mm512_set1_epi32(127), zero = _mm512_setzero_si512();
    for (j = 0; j < m; j++) {
        __m512 v = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(lut + j * 16), _mm512_set1_ps(mins[j])), vs);
        __m512i q = _mm512_cvt_roundps_epi32(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        q = _mm512_min_epi32(_mm512_max_epi32(q, zero), hi127);
        __m128i b = _mm512_cvtepi32_epi8(q);
        uint8_t *t = qlut + (j & 1) * (size_t)P * 32 + (j / 2) * 32;
        _mm_storeu_si128((__m128i *)t, b);
        _mm_storeu_si128((__m128i *)(t + 16), b);
    }
    *out_bias = bias;
    *out_scale = scale;
}
#endif

void vs_fs_quantize_lut(const float *lut, uint32_t m, uint8_t *qlut, float *out_bias, float *out_scale)
{
#ifdef VS_HAVE_X86
    if (vs_cpu_simd_level() >= VS_SIMD_AVX512) {
        quantize_avx512(lut, m, qlut, out_bias, out_scale);
        return;
    }
#endif
    quantize_scalar(lut, m, qlut, out_bias, out_scale);
}

void vs_fs_transpose_codebook(const float *centroids, uint32_t m, uint32_t dsub, float *cbt)
{
    for (uint32_t j = 0; j < m; j++)
        for (uint32_t c = 0; c < 16; c++)
            for (uint32_t t = 0; t < dsub; t++)
                cbt[((size_t)j * dsub + t) * 16 + c] = centroids[((size_t)j * 16 + c) * dsub + t];
}

static void table_scalar(const float *cbt, uint32_t m, uint32_t dsub, const float *r, int l2, float *table)
{
    for (uint32_t j = 0; j < m; j++) {
        float acc[16] = {0};
        for (uint32_t t = 0; t < dsub; t++) {
            const float *col = cbt + ((size_t)j * dsub + t) * 16;
            float x = r[j * dsub + t];
            for (int c = 0; c < 16; c++) {
                float v = l2 ? x - col[c] : x * col[c];
                acc[c] = l2 ? acc[c] + v * v : acc[c] + v;
            }
        }
        for (int c = 0; c < 16; c++)
            table[j * 16 + c] = l2 ? acc[c] : -acc[c];
    }
}

#ifdef VS_HAVE_X86
__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma"))) static void
table_avx512(const float *cbt, uint32_t m, uint32_t dsub, const float *r, int l2, float *table)
{
    for (uint32_t j = 0; j < m; j++) {
        __m512 acc = _mm512_setzero_ps();
        const float *col = cbt + (size_t)j * dsub * 16;
        for (uint32_t t = 0; t < dsub; t++) {
            __m512 x = _mm512_set1_ps(r[j * dsub + t]), p = _mm512_loadu_ps(col + t * 16);
            if (l2) {
                __m512 v = _mm512_sub_ps(x, p);
                acc = _mm512_fmadd_ps(v, v, acc);
            } else {
                acc = _mm512_fmadd_ps(x, p, acc);
            }
        }
        _mm512_storeu_ps(table + j * 16, l2 ? acc : _mm512_sub_ps(_mm512_setzero_ps(), acc));
    }
}
#endif

void vs_fs_table(const float *cbt, uint32_t m, uint32_t dsub, const float *r, int l2, float *table)
{
#ifdef VS_HAVE_X86
    if (vs_cpu_simd_level() >= VS_SIMD_AVX512) {
        table_avx512(cbt, m, dsub, r, l2, table);
        return;
    }
#endif
    table_scalar(cbt, m, dsub, r, l2, table);
}

void vs_fs_encode(const float *cbt, uint32_t m, uint32_t dsub, const float *x, uint8_t *codes, float *table)
{
    vs_fs_table(cbt, m, dsub, x, 1, table);
    for (uint32_t j = 0; j < m; j++) {
        const float *t = table + (size_t)j * 16;
        uint32_t best = 0;
        for (uint32_t c = 1; c < 16; c++)
            if (t[c] < t[best])
                best = c;
        codes[j] = (uint8_t)best;
    }
}

/* Exposed for the tests: the scalar quantiser, to compare with the dispatched one. */
void vs_fs_quantize_lut_scalar(const float *lut, uint32_t m, uint8_t *qlut, float *out_bias, float *out_scale)
{
    quantize_scalar(lut, m, qlut, out_bias, out_scale);
}

/* ---- scalar reference --------------------------------------------------------------------------- */

static uint16_t scan_scalar(const uint8_t *blocks, size_t n, uint32_t m, const uint8_t *qlut, uint16_t thr,
                            vs_fs_offer_fn offer, void *ctx)
{
    uint32_t P = vs_fs_pairs(m);
    const uint8_t *lo = qlut, *hi = qlut + (size_t)P * 32;
    for (size_t pos = 0; pos < n; pos++) {
        const uint8_t *b = blocks + pos / VS_FS_BLOCK * (size_t)P * VS_FS_BLOCK + pos % VS_FS_BLOCK;
        uint32_t sum = 0;
        for (uint32_t p = 0; p < P; p++) {
            uint8_t c = b[p * VS_FS_BLOCK];
            sum += lo[p * 32 + (c & 15)] + hi[p * 32 + (c >> 4)];
        }
        if (sum <= thr)
            thr = offer(ctx, pos, (uint16_t)sum);
    }
    return thr;
}

#ifdef VS_HAVE_X86

/* Offers the vectors of one block whose sums pass the threshold (rare once the heap is full). */
static uint16_t offer_block(const uint16_t *sums, uint32_t mask, size_t base, size_t n, uint16_t thr,
                            vs_fs_offer_fn offer, void *ctx)
{
    while (mask) {
        unsigned i = (unsigned)__builtin_ctz(mask);
        mask &= mask - 1;
        size_t pos = base + i;
        if (pos < n && sums[i] <= thr)
            thr = offer(ctx, pos, sums[i]);
    }
    return thr;
}

/* ---- AVX2 --------------------------------------------------------------------------------------- */

#define VS_AVX2 __attribute__((target("avx2,fma,bmi,bmi2")))

VS_AVX2 static uint16_t scan_avx2(const uint8_t *blocks, size_t n, uint32_t m, const uint8_t *qlut,
                                  uint16_t thr, vs_fs_offer_fn offer, void *ctx)
{
    const uint32_t P = vs_fs_pairs(m);
    const uint8_t *lo = qlut, *hi = qlut + (size_t)P * 32;
    const __m256i nib = _mm256_set1_epi8(0x0f);
    size_t n_blocks = (n + VS_FS_BLOCK - 1) / VS_FS_BLOCK;
    uint16_t sums[32];
    for (size_t blk = 0; blk < n_blocks; blk++) {
        const uint8_t *b = blocks + blk * (size_t)P * VS_FS_BLOCK;
        __m256i all = _mm256_setzero_si256(), odd = _mm256_setzero_si256();
        for (uint32_t p = 0; p < P; p++) {
            __m256i c = _mm256_loadu_si256((const __m256i *)(b + p * 32));
            __m256i cl = _mm256_and_si256(c, nib);
            __m256i ch = _mm256_and_si256(_mm256_srli_epi16(c, 4), nib);
            __m256i s =
                _mm256_add_epi8(_mm256_shuffle_epi8(_mm256_loadu_si256((const __m256i *)(lo + p * 32)), cl),
                                _mm256_shuffle_epi8(_mm256_loadu_si256((const __m256i *)(hi + p * 32)), ch));
            all = _mm256_add_epi16(all, s);
            odd = _mm256_add_epi16(odd, _mm256_srli_epi16(s, 8));
        }
        __m256i even = _mm256_sub_epi16(all, _mm256_slli_epi16(odd, 8));
        /* lane i of even/odd is vector 2i / 2i+1: interleave into vector order */
        __m256i a = _mm256_unpacklo_epi16(even, odd), c2 = _mm256_unpackhi_epi16(even, odd);
        __m256i v0 = _mm256_permute2x128_si256(a, c2, 0x20), v1 = _mm256_permute2x128_si256(a, c2, 0x31);
        __m256i t = _mm256_set1_epi16((short)thr);
        uint32_t m0 = (uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi16(_mm256_min_epu16(v0, t), v0));
        uint32_t m1 = (uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi16(_mm256_min_epu16(v1, t), v1));
        uint32_t mask = _pext_u32(m0, 0x55555555u) | (_pext_u32(m1, 0x55555555u) << 16);
        if (mask) {
            _mm256_storeu_si256((__m256i *)sums, v0);
            _mm256_storeu_si256((__m256i *)(sums + 16), v1);
            thr = offer_block(sums, mask, blk * VS_FS_BLOCK, n, thr, offer, ctx);
        }
    }
    return thr;
}

/* ---- AVX-512 ------------------------------------------------------------------------------------ */

#define VS_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,bmi,bmi2")))

/* The AVX-512 kernel for NQ queries (a constant in each instantiation; 1 is the single-query kernel).
 * Per block of 32 vectors, two pairs of sub-quantizers per 64-byte load: the codes are loaded and split
 * into nibbles once, then each query does its own two shuffles and adds, so each query's sums (and every
 * offer) are exactly what it gets alone. */
VS_AVX512 __attribute__((always_inline)) static inline void
scan_multi_avx512_n(const uint8_t *blocks, size_t n, uint32_t m, const int NQ, const uint8_t *const *qluts,
                    uint16_t *thr, vs_fs_offer_fn offer, void *const *ctx)
{
    const uint32_t P = vs_fs_pairs(m);
    const __m512i nib = _mm512_set1_epi8(0x0f);
    const __m512i order = _mm512_set_epi16(47, 15, 46, 14, 45, 13, 44, 12, 43, 11, 42, 10, 41, 9, 40, 8, 39,
                                           7, 38, 6, 37, 5, 36, 4, 35, 3, 34, 2, 33, 1, 32, 0);
    const size_t n_blocks = (n + VS_FS_BLOCK - 1) / VS_FS_BLOCK;
    uint16_t sums[32];
    for (size_t blk = 0; blk < n_blocks; blk++) {
        const uint8_t *b = blocks + blk * (size_t)P * VS_FS_BLOCK;
        if (blk + 2 < n_blocks)
            _mm_prefetch((const char *)(b + 2 * (size_t)P * VS_FS_BLOCK), _MM_HINT_T0);
        __m512i all[VS_FS_MULTI], odd[VS_FS_MULTI];
        for (int j = 0; j < NQ; j++)
            all[j] = odd[j] = _mm512_setzero_si512();
        uint32_t p = 0;
        for (; p + 2 <= P; p += 2) {
            __m512i c = _mm512_loadu_si512(b + p * 32);
            __m512i cl = _mm512_and_si512(c, nib);
            __m512i ch = _mm512_and_si512(_mm512_srli_epi16(c, 4), nib);
            for (int j = 0; j < NQ; j++) {
                const uint8_t *lo = qluts[j], *hi = lo + (size_t)P * 32;
                __m512i sj = _mm512_add_epi8(_mm512_shuffle_epi8(_mm512_loadu_si512(lo + p * 32), cl),
                                             _mm512_shuffle_epi8(_mm512_loadu_si512(hi + p * 32), ch));
                all[j] = _mm512_add_epi16(all[j], sj);
                odd[j] = _mm512_add_epi16(odd[j], _mm512_srli_epi16(sj, 8));
            }
        }
        __m256i tcl = _mm256_setzero_si256(), tch = _mm256_setzero_si256();
        if (p < P) {
            const __m256i nib2 = _mm256_set1_epi8(0x0f);
            __m256i c = _mm256_loadu_si256((const __m256i *)(b + p * 32));
            tcl = _mm256_and_si256(c, nib2);
            tch = _mm256_and_si256(_mm256_srli_epi16(c, 4), nib2);
        }
        for (int j = 0; j < NQ; j++) {
            __m256i all2 =
                _mm256_add_epi16(_mm512_castsi512_si256(all[j]), _mm512_extracti64x4_epi64(all[j], 1));
            __m256i odd2 =
                _mm256_add_epi16(_mm512_castsi512_si256(odd[j]), _mm512_extracti64x4_epi64(odd[j], 1));
            if (p < P) {
                const uint8_t *lo = qluts[j], *hi = lo + (size_t)P * 32;
                __m256i sj = _mm256_add_epi8(
                    _mm256_shuffle_epi8(_mm256_loadu_si256((const __m256i *)(lo + p * 32)), tcl),
                    _mm256_shuffle_epi8(_mm256_loadu_si256((const __m256i *)(hi + p * 32)), tch));
                all2 = _mm256_add_epi16(all2, sj);
                odd2 = _mm256_add_epi16(odd2, _mm256_srli_epi16(sj, 8));
            }
            __m256i even = _mm256_sub_epi16(all2, _mm256_slli_epi16(odd2, 8));
            __m512i v =
                _mm512_permutex2var_epi16(_mm512_castsi256_si512(even), order, _mm512_castsi256_si512(odd2));
            uint32_t mask = (uint32_t)_mm512_cmple_epu16_mask(v, _mm512_set1_epi16((short)thr[j]));
            if (mask) {
                _mm512_storeu_si512(sums, v);
                thr[j] = offer_block(sums, mask, blk * VS_FS_BLOCK, n, thr[j], offer, ctx[j]);
            }
        }
    }
}

VS_AVX512 static uint16_t scan_avx512(const uint8_t *blocks, size_t n, uint32_t m, const uint8_t *qlut,
                                      uint16_t thr, vs_fs_offer_fn offer, void *ctx)
{
    scan_multi_avx512_n(blocks, n, m, 1, &qlut, &thr, offer, &ctx);
    return thr;
}

VS_AVX512 static void scan_multi_avx512(const uint8_t *blocks, size_t n, uint32_t m, uint32_t nq,
                                        const uint8_t *const *qluts, uint16_t *thr, vs_fs_offer_fn offer,
                                        void *const *ctx)
{
    switch (nq) {
    case 1:
        scan_multi_avx512_n(blocks, n, m, 1, qluts, thr, offer, ctx);
        break;
    case 2:
        scan_multi_avx512_n(blocks, n, m, 2, qluts, thr, offer, ctx);
        break;
    case 3:
        scan_multi_avx512_n(blocks, n, m, 3, qluts, thr, offer, ctx);
        break;
    default:
        scan_multi_avx512_n(blocks, n, m, 4, qluts, thr, offer, ctx);
        break;
    }
}

#endif /* VS_HAVE_X86 */

vs_fs_scan_fn vs_fs_scan_for(vs_simd_level level)
{
    if (level > vs_cpu_simd_supported())
        return NULL;
    switch (level) {
    case VS_SIMD_SCALAR:
        return scan_scalar;
#ifdef VS_HAVE_X86
    case VS_SIMD_AVX2:
        return __builtin_cpu_supports("bmi2") ? scan_avx2 : NULL;
    case VS_SIMD_AVX512:
        return __builtin_cpu_supports("bmi2") ? scan_avx512 : NULL;
#endif
    default:
        return NULL;
    }
}

vs_fs_scan_fn vs_fs_scan(void)
{
    static vs_fs_scan_fn cached;
    vs_fs_scan_fn f = __atomic_load_n(&cached, __ATOMIC_ACQUIRE);
    if (f == NULL) {
        for (int lvl = (int)vs_cpu_simd_level(); lvl >= 0 && f == NULL; lvl--)
            f = vs_fs_scan_for((vs_simd_level)lvl);
        __atomic_store_n(&cached, f, __ATOMIC_RELEASE);
    }
    return f;
}

/* Without a multi-query kernel at a level: the single-query kernel, query by query (same offers). */
static void scan_multi_loop(const uint8_t *blocks, size_t n, uint32_t m, uint32_t nq,
                            const uint8_t *const *qluts, uint16_t *thr, vs_fs_offer_fn offer,
                            void *const *ctx)
{
    vs_fs_scan_fn single = vs_fs_scan();
    for (uint32_t j = 0; j < nq; j++)
        thr[j] = single(blocks, n, m, qluts[j], thr[j], offer, ctx[j]);
}

vs_fs_scan_multi_fn vs_fs_scan_multi(void)
{
#ifdef VS_HAVE_X86
    if (vs_fs_scan() == scan_avx512)
        return scan_multi_avx512;
#endif
    return scan_multi_loop;
}
