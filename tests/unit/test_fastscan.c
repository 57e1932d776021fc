/* test_fastscan: packing round-trips; every SIMD scan kernel offers exactly the candidates and sums of
 * the scalar reference; threshold semantics; table quantisation error within its bound. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "shard/index/fastscan.h"
#include "tests/testlib.h"

typedef struct rec {
    size_t n;
    size_t pos[4096];
    uint16_t sum[4096];
    uint16_t fixed_thr; /* what offer returns */
} rec_t;

static uint16_t record(void *ctx, size_t pos, uint16_t sum)
{
    rec_t *r = ctx;
    r->pos[r->n] = pos;
    r->sum[r->n] = sum;
    r->n++;
    return r->fixed_thr;
}

static void test_pack_roundtrip(void)
{
    uint64_t st = 3;
    const uint32_t ms[] = {1, 2, 3, 8, 17, 64};
    for (size_t t = 0; t < sizeof ms / sizeof *ms; t++) {
        uint32_t m = ms[t];
        size_t n = 77;
        uint8_t *blocks = calloc(vs_fs_code_bytes(n, m), 1), *codes = malloc(n * m);
        for (size_t i = 0; i < n * m; i++)
            codes[i] = (uint8_t)(vs_test_rand(&st) & 15);
        for (size_t i = 0; i < n; i++)
            vs_fs_put(blocks, m, i, codes + i * m);
        int ok = 1;
        for (size_t i = 0; i < n; i++)
            for (uint32_t j = 0; j < m; j++)
                ok &= vs_fs_get(blocks, m, i, j) == codes[i * m + j];
        CHECKF(ok, "m=%u", m);
        vs_fs_clear(blocks, m, 5);
        for (uint32_t j = 0; j < m; j++)
            CHECK(vs_fs_get(blocks, m, 5, j) == 0);
        CHECK(vs_fs_get(blocks, m, 6, 0) == codes[6 * m]);
        free(blocks);
        free(codes);
    }
}

static void test_kernels_equal_scalar(void)
{
    uint64_t st = 11;
    const uint32_t ms[] = {1, 2, 3, 4, 5, 8, 16, 17, 32, 64, 392, 512};
    const size_t ns[] = {1, 31, 32, 33, 100, 1000};
    vs_fs_scan_fn ref = vs_fs_scan_for(VS_SIMD_SCALAR);
    CHECK(ref != NULL && vs_fs_scan() != NULL);
    for (size_t a = 0; a < sizeof ms / sizeof *ms; a++)
        for (size_t b = 0; b < sizeof ns / sizeof *ns; b++) {
            uint32_t m = ms[a];
            size_t n = ns[b];
            uint8_t *blocks = calloc(vs_fs_code_bytes(n, m), 1), *codes = malloc(m);
            for (size_t i = 0; i < n; i++) {
                for (uint32_t j = 0; j < m; j++)
                    codes[j] = (uint8_t)(vs_test_rand(&st) & 15);
                vs_fs_put(blocks, m, i, codes);
            }
            float *lut = malloc(m * 16 * sizeof(float));
            for (uint32_t i = 0; i < m * 16; i++)
                lut[i] = vs_test_randf(&st) * 10.0f;
            uint8_t *qlut = malloc(vs_fs_pairs(m) * 64);
            float bias, scale;
            vs_fs_quantize_lut(lut, m, qlut, &bias, &scale);
            static rec_t want, got;
            memset(&want, 0, sizeof want);
            want.fixed_thr = 65535;
            ref(blocks, n, m, qlut, 65535, record, &want);
            CHECKF(want.n == n, "scalar offered %zu of %zu at threshold 65535", want.n, n);
            /* expected sums computed independently from the codes and the table */
            const uint8_t *lo = qlut, *hi = qlut + vs_fs_pairs(m) * 32;
            for (size_t i = 0; i < want.n; i++) {
                uint32_t s = 0;
                for (uint32_t j = 0; j < m; j++) {
                    uint8_t c = vs_fs_get(blocks, m, want.pos[i], j);
                    s += (j & 1) ? hi[(j / 2) * 32 + c] : lo[(j / 2) * 32 + c];
                }
                CHECKF(s == want.sum[i], "m=%u pos %zu: sum %u want %u", m, want.pos[i], want.sum[i], s);
            }
            for (int lvl = VS_SIMD_AVX2; lvl < VS_SIMD_LEVELS_; lvl++) {
                vs_fs_scan_fn k = vs_fs_scan_for((vs_simd_level)lvl);
                if (k == NULL)
                    continue;
                for (int pass = 0; pass < 2; pass++) {
                    uint16_t thr = pass == 0 ? 65535 : want.sum[n / 2];
                    memset(&got, 0, sizeof got);
                    got.fixed_thr = thr;
                    rec_t exp = {0};
                    exp.fixed_thr = thr;
                    ref(blocks, n, m, qlut, thr, record, &exp);
                    k(blocks, n, m, qlut, thr, record, &got);
                    int same = got.n == exp.n;
                    for (size_t i = 0; same && i < got.n; i++)
                        same = got.pos[i] == exp.pos[i] && got.sum[i] == exp.sum[i];
                    CHECKF(same, "%s m=%u n=%zu thr=%u: %zu offers vs scalar %zu",
                           vs_simd_level_name((vs_simd_level)lvl), m, n, thr, got.n, exp.n);
                }
            }
            free(blocks);
            free(codes);
            free(lut);
            free(qlut);
        }
}

static uint16_t shrinking(void *ctx, size_t pos, uint16_t sum)
{
    (void)pos;
    rec_t *r = ctx;
    r->n++;
    return sum > 0 ? (uint16_t)(sum - 1) : 0; /* like a heap: only strictly better ones after this */
}

static void test_threshold_is_honoured(void)
{
    uint64_t st = 5;
    uint32_t m = 16;
    size_t n = 500;
    uint8_t *blocks = calloc(vs_fs_code_bytes(n, m), 1), codes[16];
    for (size_t i = 0; i < n; i++) {
        for (uint32_t j = 0; j < m; j++)
            codes[j] = (uint8_t)(vs_test_rand(&st) & 15);
        vs_fs_put(blocks, m, i, codes);
    }
    float lut[16 * 16];
    for (int i = 0; i < 256; i++)
        lut[i] = (float)(i % 16);
    uint8_t qlut[8 * 64];
    float bias, scale;
    vs_fs_quantize_lut(lut, m, qlut, &bias, &scale);
    for (int lvl = 0; lvl < VS_SIMD_LEVELS_; lvl++) {
        vs_fs_scan_fn k = vs_fs_scan_for((vs_simd_level)lvl);
        if (k == NULL)
            continue;
        rec_t r = {0};
        uint16_t final = k(blocks, n, m, qlut, 65535, shrinking, &r);
        /* a strictly decreasing threshold admits at most 16*127+1 offers and ends below the first sum */
        CHECK(r.n >= 1 && r.n <= 16u * 127u + 1u);
        CHECK(final < 65535);
        rec_t none = {0};
        k(blocks, n, m, qlut, 0, shrinking, &none);
        CHECK(none.n == 0 || none.n == 1); /* only an all-minimum vector can have sum 0 */
    }
    free(blocks);
}

static void test_quantize_error_bound(void)
{
    uint64_t st = 8;
    for (int rep = 0; rep < 50; rep++) {
        uint32_t m = 1 + (uint32_t)(vs_test_rand(&st) % 64);
        float lut[64 * 16];
        for (uint32_t i = 0; i < m * 16; i++)
            lut[i] = vs_test_randf(&st) * 100.0f;
        uint8_t qlut[32 * 64];
        float bias, scale;
        vs_fs_quantize_lut(lut, m, qlut, &bias, &scale);
        const uint8_t *lo = qlut, *hi = qlut + vs_fs_pairs(m) * 32;
        uint8_t code[64];
        for (uint32_t j = 0; j < m; j++)
            code[j] = (uint8_t)(vs_test_rand(&st) & 15);
        double exact = 0, sum = 0;
        for (uint32_t j = 0; j < m; j++) {
            exact += lut[j * 16 + code[j]];
            uint8_t q = (j & 1) ? hi[(j / 2) * 32 + code[j]] : lo[(j / 2) * 32 + code[j]];
            CHECK(q <= 127);
            sum += q;
        }
        double est = bias + sum / scale;
        /* each entry is rounded to the nearest step of 1/scale: at most half a step each */
        CHECKF(fabs(est - exact) <= m * 0.5 / scale * (1 + 1e-4) + 1e-3, "m=%u err %.6f bound %.6f", m,
               fabs(est - exact), m * 0.5 / scale);
    }
}

static void test_quantize_simd_equals_scalar(void)
{
    uint64_t st = 21;
    for (uint32_t m = 1; m <= 64; m++) {
        float lut[64 * 16];
        for (uint32_t i = 0; i < m * 16; i++)
            lut[i] = vs_test_randf(&st) * 50.0f;
        uint8_t a[32 * 64], b[32 * 64];
        float ba, sa, bb, sb;
        vs_fs_quantize_lut(lut, m, a, &ba, &sa);
        vs_fs_quantize_lut_scalar(lut, m, b, &bb, &sb);
        CHECKF(memcmp(a, b, vs_fs_pairs(m) * 64) == 0 && sa == sb, "m=%u: quantised tables differ", m);
        CHECKF(fabsf(ba - bb) <= 1e-3f * (fabsf(bb) + 1.0f), "m=%u bias %g vs %g", m, ba, bb);
    }
}

/* The ADC table from the transposed codebook equals the direct definition (L2 and IP), every dsub. */
static void test_table_from_transposed_codebook(void)
{
    uint64_t st = 31;
    const uint32_t dsubs[] = {1, 2, 3, 4, 8, 16};
    for (size_t t = 0; t < sizeof dsubs / sizeof *dsubs; t++) {
        uint32_t m = 6, dsub = dsubs[t], d = m * dsub;
        float *cent = malloc(m * 16 * dsub * sizeof(float)), *cbt = malloc(m * 16 * dsub * sizeof(float));
        float r[128], tab[6 * 16];
        for (uint32_t i = 0; i < m * 16 * dsub; i++)
            cent[i] = vs_test_randf(&st);
        for (uint32_t i = 0; i < d; i++)
            r[i] = vs_test_randf(&st);
        vs_fs_transpose_codebook(cent, m, dsub, cbt);
        for (int l2 = 0; l2 <= 1; l2++) {
            vs_fs_table(cbt, m, dsub, r, l2, tab);
            int ok = 1;
            for (uint32_t j = 0; j < m; j++)
                for (uint32_t c = 0; c < 16; c++) {
                    double want = 0;
                    for (uint32_t k = 0; k < dsub; k++) {
                        double a = r[j * dsub + k], b = cent[(j * 16 + c) * dsub + k];
                        want += l2 ? (a - b) * (a - b) : -a * b;
                    }
                    ok &= fabs(tab[j * 16 + c] - want) <= 1e-5 * (fabs(want) + 1);
                }
            CHECKF(ok, "dsub=%u l2=%d", dsub, l2);
        }
        free(cent);
        free(cbt);
    }
}

/* vs_fs_encode picks the nearest centroid of each sub-space (checked against a double argmin; a tie
 * within float rounding may go either way, so only clear winners are compared). */
static void test_encode_nearest(void)
{
    uint64_t st = 41;
    uint32_t m = 12, dsub = 3;
    float cent[12 * 16 * 3], cbt[12 * 16 * 3], table[12 * 16], x[36];
    uint8_t codes[12];
    for (size_t i = 0; i < sizeof cent / sizeof *cent; i++)
        cent[i] = vs_test_randf(&st);
    vs_fs_transpose_codebook(cent, m, dsub, cbt);
    int checked = 0, wrong = 0;
    for (int rep = 0; rep < 200; rep++) {
        for (uint32_t i = 0; i < m * dsub; i++)
            x[i] = vs_test_randf(&st);
        vs_fs_encode(cbt, m, dsub, x, codes, table);
        for (uint32_t j = 0; j < m; j++) {
            double best = 1e300, second = 1e300;
            int arg = -1;
            for (int c = 0; c < 16; c++) {
                double dd = 0;
                for (uint32_t t = 0; t < dsub; t++) {
                    double v = (double)x[j * dsub + t] - cent[(j * 16 + c) * dsub + t];
                    dd += v * v;
                }
                if (dd < best) {
                    second = best;
                    best = dd;
                    arg = c;
                } else if (dd < second) {
                    second = dd;
                }
            }
            if (second - best > 1e-5) {
                checked++;
                wrong += codes[j] != arg;
            }
        }
    }
    CHECK(checked > 2000);
    CHECKF(wrong == 0, "%d of %d codes are not the nearest centroid", wrong, checked);
}

int main(void)
{
    RUN(test_encode_nearest);
    RUN(test_table_from_transposed_codebook);
    RUN(test_quantize_simd_equals_scalar);
    RUN(test_pack_roundtrip);
    RUN(test_kernels_equal_scalar);
    RUN(test_threshold_is_honoured);
    RUN(test_quantize_error_bound);
    return vs_test_finish();
}
