/* sq8.c: see sq8.h. */
#include "shard/index/sq8.h"

#include <math.h>
#include <stdlib.h>

#include "common/cpu.h"
#include "shard/index/ifile.h"

int vs_sq8_train(vs_sq8_t *sq, uint32_t d, const float *x, size_t n)
{
    float *vmin = malloc(d * sizeof(float)), *step = malloc(d * sizeof(float));
    if (vmin == NULL || step == NULL) {
        free(vmin);
        free(step);
        return -1;
    }
    for (uint32_t i = 0; i < d; i++) {
        float lo = n ? x[i] : 0.0f, hi = lo;
        for (size_t r = 1; r < n; r++) {
            lo = fminf(lo, x[r * d + i]);
            hi = fmaxf(hi, x[r * d + i]);
        }
        vmin[i] = lo;
        step[i] = hi > lo ? (hi - lo) / 255.0f : 1.0f;
    }
    sq->d = d;
    sq->vmin = vmin;
    sq->step = step;
    sq->owned = 1;
    return 0;
}

void vs_sq8_fini(vs_sq8_t *sq)
{
    if (sq->owned) {
        free(sq->vmin);
        free(sq->step);
    }
    sq->vmin = sq->step = NULL;
    sq->owned = 0;
}

void vs_sq8_encode(const vs_sq8_t *sq, const float *x, uint8_t *code)
{
    for (uint32_t i = 0; i < sq->d; i++) {
        long c = lrintf((x[i] - sq->vmin[i]) / sq->step[i]);
        code[i] = (uint8_t)(c < 0 ? 0 : c > 255 ? 255 : c);
    }
}

void vs_sq8_decode(const vs_sq8_t *sq, const uint8_t *code, float *out)
{
    for (uint32_t i = 0; i < sq->d; i++)
        out[i] = sq->vmin[i] + (float)code[i] * sq->step[i];
}

vs_status vs_sq8_write_section(const vs_sq8_t *sq, vs_ifile_writer_t *w, char err[VS_ERR_LEN])
{
    vs_status st = vs_ifile_writer_begin_section(w, "sq8.params", err);
    if (st == VS_OK)
        st = vs_ifile_writer_append(w, sq->vmin, sq->d * sizeof(float), err);
    if (st == VS_OK)
        st = vs_ifile_writer_append(w, sq->step, sq->d * sizeof(float), err);
    if (st == VS_OK)
        st = vs_ifile_writer_end_section(w, err);
    return st;
}

vs_status vs_sq8_read_section(vs_sq8_t *sq, uint32_t d, const vs_ifile_t *f, const char *path,
                              char err[VS_ERR_LEN])
{
    const void *data;
    vs_status st = vs_ifile_section_sized(f, path, "sq8.params", 2 * (size_t)d * sizeof(float), &data, err);
    if (st != VS_OK)
        return st;
    const float *v = data;
    for (uint32_t i = 0; i < d; i++)
        if (!isfinite(v[i]) || !isfinite(v[d + i]) || !(v[d + i] > 0))
            return vs_errf(err, VS_ERR_CORRUPT, "%s: section 'sq8.params': dimension %u has a bad range",
                           path, i);
    sq->d = d;
    sq->vmin = (float *)v;
    sq->step = (float *)v + d;
    sq->owned = 0;
    return VS_OK;
}

/* ---- asymmetric distance kernels ---------------------------------------------------------------- */

static float l2w_scalar(const float *a, const float *w, const uint8_t *code, size_t d)
{
    float s = 0.0f;
    for (size_t i = 0; i < d; i++) {
        float t = a[i] - (float)code[i];
        s += w[i] * t * t;
    }
    return s;
}

static float ip_scalar(const float *a, const uint8_t *code, size_t d)
{
    float s = 0.0f;
    for (size_t i = 0; i < d; i++)
        s += a[i] * (float)code[i];
    return s;
}

#if defined(__x86_64__)
#include <immintrin.h>

#define SQ8_AVX2 __attribute__((target("avx2,fma")))
#define SQ8_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")))

SQ8_AVX2 static float hsum256(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

SQ8_AVX2 static inline __m256 load8_u8(const uint8_t *p)
{
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}

SQ8_AVX2 static float l2w_avx2(const float *a, const float *w, const uint8_t *code, size_t d)
{
    __m256 acc = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 8 <= d; i += 8) {
        __m256 t = _mm256_sub_ps(_mm256_loadu_ps(a + i), load8_u8(code + i));
        acc = _mm256_fmadd_ps(_mm256_mul_ps(t, t), _mm256_loadu_ps(w + i), acc);
    }
    return hsum256(acc) + l2w_scalar(a + i, w + i, code + i, d - i);
}

SQ8_AVX2 static float ip_avx2(const float *a, const uint8_t *code, size_t d)
{
    __m256 acc = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 8 <= d; i += 8)
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), load8_u8(code + i), acc);
    return hsum256(acc) + ip_scalar(a + i, code + i, d - i);
}

SQ8_AVX512 static inline __m512 load16_u8(__mmask16 m, const uint8_t *p)
{
    return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, p)));
}

SQ8_AVX512 static float l2w_avx512(const float *a, const float *w, const uint8_t *code, size_t d)
{
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= d; i += 32) {
        __m512 t0 = _mm512_sub_ps(_mm512_loadu_ps(a + i), load16_u8(0xffff, code + i));
        __m512 t1 = _mm512_sub_ps(_mm512_loadu_ps(a + i + 16), load16_u8(0xffff, code + i + 16));
        acc0 = _mm512_fmadd_ps(_mm512_mul_ps(t0, t0), _mm512_loadu_ps(w + i), acc0);
        acc1 = _mm512_fmadd_ps(_mm512_mul_ps(t1, t1), _mm512_loadu_ps(w + i + 16), acc1);
    }
    for (; i < d; i += 16) {
        __mmask16 m = d - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (d - i)) - 1u);
        __m512 t = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, a + i), load16_u8(m, code + i));
        acc0 = _mm512_fmadd_ps(_mm512_mul_ps(t, t), _mm512_maskz_loadu_ps(m, w + i), acc0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

SQ8_AVX512 static float ip_avx512(const float *a, const uint8_t *code, size_t d)
{
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= d; i += 32) {
        acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), load16_u8(0xffff, code + i), acc0);
        acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), load16_u8(0xffff, code + i + 16), acc1);
    }
    for (; i < d; i += 16) {
        __mmask16 m = d - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (d - i)) - 1u);
        acc0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), load16_u8(m, code + i), acc0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}
#endif

vs_sq8_l2w_fn vs_sq8_l2w_kernel(void)
{
#if defined(__x86_64__)
    switch (vs_cpu_simd_level()) {
    case VS_SIMD_AVX512:
        return l2w_avx512;
    case VS_SIMD_AVX2:
        return l2w_avx2;
    default:
        break;
    }
#endif
    return l2w_scalar;
}

vs_sq8_ip_fn vs_sq8_ip_kernel(void)
{
#if defined(__x86_64__)
    switch (vs_cpu_simd_level()) {
    case VS_SIMD_AVX512:
        return ip_avx512;
    case VS_SIMD_AVX2:
        return ip_avx2;
    default:
        break;
    }
#endif
    return ip_scalar;
}

/* ---- exact integer kernels (vs_sq8_dot_fn) ------------------------------------------------------- */

static int32_t dot_scalar(const uint8_t *code, const int8_t *q, size_t d)
{
    int32_t acc = 0;
    for (size_t i = 0; i < d; i++)
        acc += (int32_t)code[i] * (int32_t)q[i];
    return acc;
}

#if defined(__x86_64__)
/* AVX2: codes and query widened to 16 bits, pairs multiplied and added into 32 bits (vpmaddwd: exact,
 * unlike vpmaddubsw, whose 16-bit sums of two 255*127 products saturate). */
__attribute__((target("avx2"))) static int32_t dot_avx2(const uint8_t *code, const int8_t *q, size_t d)
{
    __m256i acc = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 16 <= d; i += 16) {
        __m256i c = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(code + i)));
        __m256i v = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(q + i)));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(c, v));
    }
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s) + dot_scalar(code + i, q + i, d - i);
}

/* AVX-512 VNNI: vpdpbusd multiplies 64 unsigned code bytes by 64 signed query bytes and adds each group
 * of four into a 32-bit lane (no saturation in the non-"s" form). */
__attribute__((target("avx512f,avx512bw,avx512vnni"))) static int32_t dot_vnni(const uint8_t *code,
                                                                               const int8_t *q, size_t d)
{
    __m512i acc0 = _mm512_setzero_si512(), acc1 = _mm512_setzero_si512();
    size_t i = 0;
    for (; i + 128 <= d; i += 128) {
        acc0 = _mm512_dpbusd_epi32(acc0, _mm512_loadu_si512(code + i), _mm512_loadu_si512(q + i));
        acc1 = _mm512_dpbusd_epi32(acc1, _mm512_loadu_si512(code + i + 64), _mm512_loadu_si512(q + i + 64));
    }
    for (; i < d; i += 64) {
        __mmask64 m = d - i >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << (d - i)) - 1);
        acc0 = _mm512_dpbusd_epi32(acc0, _mm512_maskz_loadu_epi8(m, code + i),
                                   _mm512_maskz_loadu_epi8(m, q + i));
    }
    return _mm512_reduce_add_epi32(_mm512_add_epi32(acc0, acc1));
}
#endif

vs_sq8_dot_fn vs_sq8_dot_kernel_for(int level)
{
#if defined(__x86_64__)
    if (level >= VS_SIMD_AVX512)
        return __builtin_cpu_supports("avx512vnni") && vs_cpu_simd_supported() >= VS_SIMD_AVX512 ? dot_vnni
                                                                                                 : NULL;
    if (level == VS_SIMD_AVX2)
        return vs_cpu_simd_supported() >= VS_SIMD_AVX2 ? dot_avx2 : NULL;
#endif
    return level == VS_SIMD_SCALAR ? dot_scalar : NULL;
}

vs_sq8_dot_fn vs_sq8_dot_kernel(void)
{
    for (int lvl = (int)vs_cpu_simd_level(); lvl >= VS_SIMD_SCALAR; lvl--) {
        vs_sq8_dot_fn f = vs_sq8_dot_kernel_for(lvl);
        if (f)
            return f;
    }
    return dot_scalar;
}
