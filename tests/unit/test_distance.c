/* test_distance: every kernel variant the CPU has (scalar, AVX2, AVX-512) against a double-precision
 * reference for every dim from 1 to 1024, single and batched; batched equals single bit for bit, and so do
 * the multi-query products. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/distance.h"
#include "tests/testlib.h"

#define MAXD 1024
#define NB 7 /* batch rows: one 4-row block plus a 3-row remainder */

/* Forward error bound of a float sum of d terms of magnitude sum_abs (Higham's gamma_n, with room for
 * the subtraction rounding in L2 and the tree reduction of SIMD lanes). */
static double bound(size_t d, double sum_abs)
{
    double u = ldexp(1.0, -24);
    double n = (double)d + 8.0;
    return n * u / (1.0 - n * u) * sum_abs * 2.0 + 1e-30;
}

static void fill(float *x, size_t n, uint64_t *st)
{
    for (size_t i = 0; i < n; i++)
        x[i] = vs_test_randf(st) * 4.0f;
}

static void check_variant(const vs_distance_kernels_t *k)
{
    uint64_t st = 42;
    float *a = malloc(MAXD * sizeof(float));
    float *b = malloc(NB * MAXD * sizeof(float));
    float out[NB];
    for (size_t d = 1; d <= MAXD; d++) {
        fill(a, d, &st);
        fill(b, NB * d, &st);
        for (size_t r = 0; r < NB; r++) {
            const float *br = b + r * d;
            double l2 = 0, ip = 0, ipabs = 0, nn = 0;
            for (size_t i = 0; i < d; i++) {
                double t = (double)a[i] - br[i];
                l2 += t * t;
                ip += (double)a[i] * br[i];
                ipabs += fabs((double)a[i] * br[i]);
                nn += (double)a[i] * a[i];
            }
            float got_l2 = k->l2sqr(a, br, d), got_ip = k->ip(a, br, d);
            CHECKF(fabs(got_l2 - l2) <= bound(d, l2), "%s l2sqr d=%zu got %.9g want %.9g", k->name, d, got_l2,
                   l2);
            CHECKF(fabs(got_ip - ip) <= bound(d, ipabs), "%s ip d=%zu got %.9g want %.9g", k->name, d, got_ip,
                   ip);
            if (r == 0) {
                float got_n = k->norm_sqr(a, d);
                CHECKF(fabs(got_n - nn) <= bound(d, nn), "%s norm d=%zu", k->name, d);
            }
        }
        k->l2sqr_batch(a, b, NB, d, out);
        for (size_t r = 0; r < NB; r++)
            CHECKF(out[r] == k->l2sqr(a, b + r * d, d), "%s l2sqr_batch d=%zu row %zu differs from single",
                   k->name, d, r);
        k->ip_batch(a, b, NB, d, out);
        for (size_t r = 0; r < NB; r++)
            CHECKF(out[r] == k->ip(a, b + r * d, d), "%s ip_batch d=%zu row %zu differs from single", k->name,
                   d, r);
    }
    free(a);
    free(b);
}

static void test_all_variants(void)
{
    int n = 0;
    for (int lvl = 0; lvl < VS_SIMD_LEVELS_; lvl++) {
        const vs_distance_kernels_t *k = vs_distance_kernels_for((vs_simd_level)lvl);
        if (k == NULL) {
            printf("skip: %s not supported by this CPU\n", vs_simd_level_name((vs_simd_level)lvl));
            continue;
        }
        check_variant(k);
        n++;
    }
    CHECK(n >= 1);
    CHECK(vs_distance_kernels() != NULL);
}

/* Tails must not read past the end: vectors placed at the very end of a page-sized malloc under ASan
 * would be caught; here we also check that garbage after the end does not change the result. */
/* ip_batch_multi: nq queries at once must give, bit for bit, what ip_batch gives each query (the IVF
 * batch path's coarse lists must equal the ones a single query, or the coordinator, computes): odd and
 * even query counts, row counts that end mid-block, dimensions with every tail shape. */
static void test_multi_query_products(void)
{
    static const size_t dims[] = {1, 7, 16, 31, 32, 48, 100, 128, 200, 784};
    static const size_t nqs[] = {1, 2, 3, 8};
    static const size_t ns[] = {1, 5, 33, 70};
    uint64_t st = 7;
    for (int lvl = VS_SIMD_SCALAR; lvl <= VS_SIMD_AVX512; lvl++) {
        const vs_distance_kernels_t *k = vs_distance_kernels_for((vs_simd_level)lvl);
        if (k == NULL)
            continue;
        for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++)
            for (size_t qi = 0; qi < sizeof nqs / sizeof nqs[0]; qi++)
                for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
                    const size_t d = dims[di], nq = nqs[qi], n = ns[ni];
                    float *q = malloc(nq * d * sizeof(float)), *b = malloc(n * d * sizeof(float));
                    float *want = malloc(nq * n * sizeof(float)), *got = malloc(nq * n * sizeof(float));
                    fill(q, nq * d, &st);
                    fill(b, n * d, &st);
                    for (size_t j = 0; j < nq; j++)
                        k->ip_batch(q + j * d, b, n, d, want + j * n);
                    k->ip_batch_multi(q, nq, b, n, d, got);
                    CHECKF(memcmp(want, got, nq * n * sizeof(float)) == 0, "%s: d=%zu nq=%zu n=%zu", k->name,
                           d, nq, n);
                    free(q);
                    free(b);
                    free(want);
                    free(got);
                }
    }
}

static void test_no_overread_effect(void)
{
    for (int lvl = 0; lvl < VS_SIMD_LEVELS_; lvl++) {
        const vs_distance_kernels_t *k = vs_distance_kernels_for((vs_simd_level)lvl);
        if (k == NULL)
            continue;
        for (size_t d = 1; d <= 40; d++) {
            float *a = malloc(d * sizeof(float)), *b = malloc(d * sizeof(float));
            for (size_t i = 0; i < d; i++)
                a[i] = b[i] = (float)i;
            CHECKF(k->l2sqr(a, b, d) == 0.0f, "%s d=%zu", k->name, d);
            free(a);
            free(b);
        }
    }
}

static void test_integer_data_is_exact(void)
{
    /* Fashion-MNIST-like uint8 data: every partial sum is an integer below 2^24, so SIMD distances
     * must equal the exact integer distance. */
    uint64_t st = 7;
    float a[784], b[784];
    for (int rep = 0; rep < 50; rep++) {
        int64_t want = 0;
        for (int i = 0; i < 784; i++) {
            a[i] = (float)(vs_test_rand(&st) % 256);
            b[i] = (float)(vs_test_rand(&st) % 256);
            want += (int64_t)(a[i] - b[i]) * (int64_t)(a[i] - b[i]);
        }
        if (want >= (1 << 24))
            continue; /* outside the exactness argument */
        CHECK((int64_t)vs_l2sqr(a, b, 784) == want);
    }
    /* nearer pairs: small differences */
    for (int rep = 0; rep < 50; rep++) {
        int64_t want = 0;
        for (int i = 0; i < 784; i++) {
            a[i] = (float)(vs_test_rand(&st) % 256);
            b[i] = a[i] + (float)((int)(vs_test_rand(&st) % 41) - 20);
            want += (int64_t)(a[i] - b[i]) * (int64_t)(a[i] - b[i]);
        }
        CHECK((int64_t)vs_l2sqr(a, b, 784) == want);
    }
}

static void test_normalize_and_metric(void)
{
    float x[6] = {3, 4, 0, 0, 0, 0};
    vs_normalize_rows(x, 2, 3);
    CHECK(fabsf(x[0] - 0.6f) < 1e-7f && fabsf(x[1] - 0.8f) < 1e-7f);
    CHECK(x[3] == 0 && x[4] == 0 && x[5] == 0); /* zero row stays zero, no NaN */
    vs_metric m;
    char err[VS_ERR_LEN];
    CHECK(vs_metric_parse("l2", &m, err) == VS_OK && m == VS_METRIC_L2);
    CHECK(vs_metric_parse("inner_product", &m, err) == VS_OK && m == VS_METRIC_IP);
    CHECK(vs_metric_parse("angular", &m, err) == VS_OK && m == VS_METRIC_COSINE);
    CHECK(vs_metric_parse("manhattan", &m, err) == VS_ERR_INVALID_ARGUMENT && strstr(err, "manhattan"));
    CHECK(vs_metric_larger_is_better(VS_METRIC_IP) && !vs_metric_larger_is_better(VS_METRIC_L2));
}

static void test_check_finite(void)
{
    float x[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    char err[VS_ERR_LEN];
    CHECK(vs_check_finite(x, 2, 4, "query", err) == VS_OK);
    x[6] = NAN;
    CHECK(vs_check_finite(x, 2, 4, "query", err) == VS_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err, "query 1") && strstr(err, "NaN") && strstr(err, "component 2"));
    x[6] = INFINITY;
    CHECK(vs_check_finite(x, 2, 4, "query", err) == VS_ERR_INVALID_ARGUMENT && strstr(err, "Inf"));
}

int main(void)
{
    RUN(test_all_variants);
    RUN(test_multi_query_products);
    RUN(test_no_overread_effect);
    RUN(test_integer_data_is_exact);
    RUN(test_normalize_and_metric);
    RUN(test_check_finite);
    return vs_test_finish();
}
