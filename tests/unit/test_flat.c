/* test_flat: exact search against a double-precision brute force; the sgemm path and the scan path
 * agree bit for bit; threads do not change results; bad input is refused with outputs untouched. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "shard/index/flat.h"
#include "tests/testlib.h"

typedef struct dk {
    double key;
    int64_t id;
} dk_t;

static int dk_cmp(const void *a, const void *b)
{
    const dk_t *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

static double dkey(vs_metric m, const float *a, const float *b, size_t d)
{
    double s = 0;
    for (size_t i = 0; i < d; i++)
        s += m == VS_METRIC_L2 ? ((double)a[i] - b[i]) * ((double)a[i] - b[i]) : (double)a[i] * b[i];
    return m == VS_METRIC_L2 ? s : -s;
}

static float *rand_matrix(size_t n, size_t d, uint64_t seed, int integer)
{
    uint64_t st = seed;
    float *x = malloc(n * d * sizeof(float));
    for (size_t i = 0; i < n * d; i++)
        x[i] = integer ? (float)(vs_test_rand(&st) % 256) : vs_test_randf(&st);
    return x;
}

/* Checks results of nq queries against a double brute force. Integer data must agree exactly (rank by
 * rank, exact distance ties allowed); float data within a relative 1e-5 at each rank. */
static void check_against_double(vs_metric m, const float *base, size_t n, const float *q, size_t nq,
                                 size_t d, size_t k, const float *dist, const int64_t *ids, int integer)
{
    dk_t *all = malloc(n * sizeof *all);
    float *qn = malloc(d * sizeof(float));
    for (size_t i = 0; i < nq; i++) {
        memcpy(qn, q + i * d, d * sizeof(float));
        if (m == VS_METRIC_COSINE)
            vs_normalize_rows(qn, 1, d);
        for (size_t j = 0; j < n; j++)
            all[j] = (dk_t){dkey(m == VS_METRIC_COSINE ? VS_METRIC_IP : m, qn, base + j * d, d), (int64_t)j};
        qsort(all, n, sizeof *all, dk_cmp);
        for (size_t r = 0; r < k && r < n; r++) {
            double got = dkey(m == VS_METRIC_COSINE ? VS_METRIC_IP : m, qn, base + ids[i * k + r] * d, d);
            double reported = m == VS_METRIC_L2 ? dist[i * k + r] : -dist[i * k + r];
            if (integer) {
                CHECKF(got == all[r].key, "%s q%zu rank %zu: id %lld key %.1f want %.1f", vs_metric_name(m),
                       i, r, (long long)ids[i * k + r], got, all[r].key);
                CHECKF(reported == got, "reported distance %.1f is not exact %.1f", reported, got);
            } else {
                CHECKF(fabs(got - all[r].key) <= 1e-5 * (fabs(all[r].key) + 1.0),
                       "%s q%zu rank %zu: %.9g vs %.9g", vs_metric_name(m), i, r, got, all[r].key);
            }
        }
    }
    free(all);
    free(qn);
}

static void run_case(vs_metric m, size_t n, size_t d, size_t nq, size_t k, int integer)
{
    char err[VS_ERR_LEN];
    float *base = rand_matrix(n, d, 1000 + d, integer);
    float *q = rand_matrix(nq, d, 2000 + d, integer);
    vs_flat_t *f;
    CHECK(vs_flat_create((uint32_t)d, m, &f, err) == VS_OK);
    CHECK(vs_flat_add(f, n, base, NULL, err) == VS_OK);
    float *d_scan = malloc(nq * k * sizeof(float)), *d_blas = malloc(nq * k * sizeof(float));
    int64_t *i_scan = malloc(nq * k * sizeof(int64_t)), *i_blas = malloc(nq * k * sizeof(int64_t));
    CHECK(vs_flat_search(f, nq, q, k, 1, 0, d_scan, i_scan, err) == VS_OK);
    CHECK(vs_flat_search(f, nq, q, k, 2, 1, d_blas, i_blas, err) == VS_OK);
    CHECKF(memcmp(i_scan, i_blas, nq * k * sizeof(int64_t)) == 0, "%s d=%zu: scan and sgemm ids differ",
           vs_metric_name(m), d);
    CHECKF(memcmp(d_scan, d_blas, nq * k * sizeof(float)) == 0, "%s d=%zu: scan and sgemm distances differ",
           vs_metric_name(m), d);
    const float *stored = m == VS_METRIC_COSINE ? vs_flat_data(f) : base;
    check_against_double(m, stored, n, q, nq, d, k, d_blas, i_blas, integer);
    vs_flat_destroy(f);
    free(base);
    free(q);
    free(d_scan);
    free(d_blas);
    free(i_scan);
    free(i_blas);
}

static void test_float_data_all_metrics(void)
{
    run_case(VS_METRIC_L2, 3000, 37, 150, 10, 0);
    run_case(VS_METRIC_IP, 3000, 37, 150, 10, 0);
    run_case(VS_METRIC_COSINE, 3000, 64, 150, 10, 0);
    run_case(VS_METRIC_L2, 2500, 128, 300, 100, 0);
}

static void test_integer_data_exact(void)
{
    /* uint8 pixels like Fashion-MNIST: distances are exact integers and so must the results be */
    run_case(VS_METRIC_L2, 2000, 784, 60, 20, 1);
}

static void test_k_above_n_pads(void)
{
    char err[VS_ERR_LEN];
    float base[] = {0, 0, 1, 1, 2, 2}, q[] = {0.1f, 0.1f};
    int64_t ids[] = {100, 200, 300};
    vs_flat_t *f;
    CHECK(vs_flat_create(2, VS_METRIC_L2, &f, err) == VS_OK);
    CHECK(vs_flat_add(f, 3, base, ids, err) == VS_OK);
    float d[5];
    int64_t i[5];
    CHECK(vs_flat_search(f, 1, q, 5, 1, -1, d, i, err) == VS_OK);
    CHECK(i[0] == 100 && i[1] == 200 && i[2] == 300 && i[3] == -1 && i[4] == -1);
    CHECK(d[3] == INFINITY);
    vs_flat_destroy(f);
}

static void test_bad_input(void)
{
    char err[VS_ERR_LEN];
    vs_flat_t *f;
    CHECK(vs_flat_create(0, VS_METRIC_L2, &f, err) == VS_ERR_INVALID_ARGUMENT);
    CHECK(vs_flat_create(65537, VS_METRIC_L2, &f, err) == VS_ERR_INVALID_ARGUMENT);
    CHECK(vs_flat_create(2, VS_METRIC_L2, &f, err) == VS_OK);
    float good[] = {1, 2, 3, 4}, bad[] = {1, NAN};
    int64_t neg[] = {-5};
    CHECK(vs_flat_add(f, 2, good, NULL, err) == VS_OK);
    CHECK(vs_flat_add(f, 1, bad, NULL, err) == VS_ERR_INVALID_ARGUMENT && strstr(err, "NaN"));
    CHECK(vs_flat_add(f, 1, good, neg, err) == VS_ERR_INVALID_ARGUMENT && strstr(err, "negative id"));
    CHECK(vs_flat_count(f) == 2);
    float d[2] = {42, 42};
    int64_t i[2] = {42, 42};
    CHECK(vs_flat_search(f, 1, good, 0, 1, -1, d, i, err) == VS_ERR_INVALID_ARGUMENT);
    CHECK(vs_flat_search(f, 1, good, VS_TOPK_MAX_K + 1, 1, -1, d, i, err) == VS_ERR_INVALID_ARGUMENT);
    float qinf[] = {INFINITY, 0};
    CHECK(vs_flat_search(f, 1, qinf, 2, 1, -1, d, i, err) == VS_ERR_INVALID_ARGUMENT &&
          strstr(err, "query 0"));
    CHECK(d[0] == 42 && i[0] == 42); /* outputs untouched on failure */
    vs_flat_destroy(f);
    vs_flat_destroy(NULL);
}

static void test_threads_do_not_change_results(void)
{
    char err[VS_ERR_LEN];
    size_t n = 5000, d = 24, nq = 777, k = 7;
    float *base = rand_matrix(n, d, 5, 0), *q = rand_matrix(nq, d, 6, 0);
    vs_flat_t *f;
    CHECK(vs_flat_create((uint32_t)d, VS_METRIC_L2, &f, err) == VS_OK);
    CHECK(vs_flat_add(f, n, base, NULL, err) == VS_OK);
    int64_t *a = malloc(nq * k * sizeof(int64_t)), *b = malloc(nq * k * sizeof(int64_t));
    float *da = malloc(nq * k * sizeof(float)), *db = malloc(nq * k * sizeof(float));
    CHECK(vs_flat_search(f, nq, q, k, 1, -1, da, a, err) == VS_OK);
    CHECK(vs_flat_search(f, nq, q, k, 3, -1, db, b, err) == VS_OK);
    CHECK(memcmp(a, b, nq * k * sizeof(int64_t)) == 0);
    vs_flat_destroy(f);
    free(base);
    free(q);
    free(a);
    free(b);
    free(da);
    free(db);
}

int main(void)
{
    RUN(test_float_data_all_metrics);
    RUN(test_integer_data_exact);
    RUN(test_k_above_n_pads);
    RUN(test_bad_input);
    RUN(test_threads_do_not_change_results);
    return vs_test_finish();
}
