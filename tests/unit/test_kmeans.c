/* test_kmeans: k-means training on separated blobs (exact recovery, objective at the noise floor),
 * determinism across thread counts, empty-cluster splitting on duplicate data, sampling, and the sgemm
 * nearest-centroid searches (assign, nearest for L2 and IP) against a double-precision brute force.
 * Not here: speed (tests/bench), recall of IVF built on these centroids (tests/recall). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/kmeans.h"
#include "tests/testlib.h"

static float *rand_matrix(size_t n, size_t d, uint64_t seed)
{
    uint64_t st = seed;
    float *x = malloc(n * d * sizeof(float));
    for (size_t i = 0; i < n * d; i++)
        x[i] = vs_test_randf(&st);
    return x;
}

/* Standard normal by Box-Muller. */
static double gauss(uint64_t *st)
{
    double u1 = ((double)(vs_test_rand(st) >> 11) + 1.0) * 0x1.0p-53; /* (0, 1] */
    double u2 = (double)(vs_test_rand(st) >> 11) * 0x1.0p-53;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static double dist2(const float *a, const float *b, size_t d)
{
    double s = 0;
    for (size_t j = 0; j < d; j++)
        s += ((double)a[j] - b[j]) * ((double)a[j] - b[j]);
    return s;
}

static double dot(const float *a, const float *b, size_t d)
{
    double s = 0;
    for (size_t j = 0; j < d; j++)
        s += (double)a[j] * b[j];
    return s;
}

static int all_finite(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return 0;
    return 1;
}

typedef struct progress_log {
    size_t calls, last_done, last_total;
    int monotone;
} progress_log_t;

static void log_progress(void *ctx, size_t done, size_t total)
{
    progress_log_t *p = ctx;
    if (done < p->last_done)
        p->monotone = 0;
    p->calls++;
    p->last_done = done;
    p->last_total = total;
}

/* 16 gaussian blobs in d = 32: centres uniform in [-1, 1]^32 (squared distances between centres around
 * 21, rarely below 5), noise sigma = 0.01 per coordinate. Point i belongs to blob i % 16. */
static void test_blobs(void)
{
    enum { K = 16, D = 32, N = 4000 };
    uint64_t st = 7;
    float *centres = rand_matrix(K, D, 99);
    float *x = malloc((size_t)N * D * sizeof(float));
    for (size_t i = 0; i < N; i++)
        for (size_t j = 0; j < D; j++)
            x[i * D + j] = centres[(i % K) * D + j] + (float)(0.01 * gauss(&st));

    /* the noise floor: sum of squared distances to each blob's own mean, the optimum of any clustering
     * that recovers the blobs */
    double mean[K][D] = {{0}};
    for (size_t i = 0; i < N; i++)
        for (size_t j = 0; j < D; j++)
            mean[i % K][j] += x[i * D + j] / (double)(N / K);
    double floor_obj = 0;
    for (size_t i = 0; i < N; i++)
        for (size_t j = 0; j < D; j++)
            floor_obj += (x[i * D + j] - mean[i % K][j]) * (x[i * D + j] - mean[i % K][j]);

    vs_kmeans_params_t p = {.k = K, .n_iter = 50, .seed = 42, .n_threads = 2};
    float cent[K * D];
    vs_kmeans_stats_t stats;
    progress_log_t log = {0, 0, 0, 1};
    vs_progress_cb_t cb = {log_progress, &log};
    char err[VS_ERR_LEN];
    CHECK(vs_kmeans_train(x, N, D, &p, cent, &stats, &cb, err) == VS_OK);
    CHECK(stats.n_train == N);
    CHECK(all_finite(cent, K * D));

    int32_t *labels = malloc(N * sizeof(int32_t));
    float *dist = malloc(N * sizeof(float));
    CHECK(vs_kmeans_assign(x, N, cent, K, D, 2, labels, dist, err) == VS_OK);
    int32_t blob_label[K];
    int used[K] = {0}, consistent = 1;
    for (size_t b = 0; b < K; b++)
        blob_label[b] = labels[b];
    for (size_t i = 0; i < N; i++)
        consistent &= labels[i] == blob_label[i % K];
    for (size_t b = 0; b < K; b++)
        used[blob_label[b]]++;
    int bijective = 1;
    for (size_t c = 0; c < K; c++)
        bijective &= used[c] == 1;
    CHECKF(consistent && bijective, "blobs are not mapped one-to-one onto centroids");

    /* The float centroids sit within rounding of the blob means, so the objective matches the floor to
     * far better than 0.1%; a single misplaced point would add about 20 (a squared distance between
     * centres), over 1000 times that margin (the floor is about 4000 * 32 * 1e-4 = 12.8). */
    CHECKF(fabs(stats.final_objective - floor_obj) <= 1e-3 * floor_obj, "objective %.6f, noise floor %.6f",
           stats.final_objective, floor_obj);
    double obj = 0;
    for (size_t i = 0; i < N; i++)
        obj += dist[i];
    CHECKF(fabs(obj - stats.final_objective) <= 1e-6 * obj, "assign objective %.6f vs stats %.6f", obj,
           stats.final_objective);

    /* separated blobs converge early; progress still ends at (n_iter, n_iter) */
    CHECKF(stats.iterations < p.n_iter, "iterations %u", stats.iterations);
    CHECK(log.calls == stats.iterations + 1 && log.last_done == p.n_iter && log.last_total == p.n_iter);
    CHECK(log.monotone);
    /* stopping at the fixed point gives exactly what running just those iterations gives */
    vs_kmeans_params_t p2 = p;
    p2.n_iter = stats.iterations;
    float cent2[K * D];
    vs_kmeans_stats_t stats2;
    CHECK(vs_kmeans_train(x, N, D, &p2, cent2, &stats2, NULL, err) == VS_OK);
    CHECK(memcmp(cent, cent2, sizeof cent) == 0);
    CHECK(stats2.final_objective == stats.final_objective && stats2.iterations == stats.iterations);

    free(labels);
    free(dist);
    free(centres);
    free(x);
}

static void test_determinism(void)
{
    enum { N = 3000, D = 20, K = 32 };
    float *x = rand_matrix(N, D, 3);
    /* max_points_per_centroid 64: a 2048-point sample, so sampling is exercised too */
    vs_kmeans_params_t p = {
        .k = K, .n_iter = 12, .max_points_per_centroid = 64, .seed = 1234, .n_threads = 1};
    float c1[K * D], c3[K * D], c_other[K * D];
    vs_kmeans_stats_t s1, s3, s_other;
    char err[VS_ERR_LEN];
    CHECK(vs_kmeans_train(x, N, D, &p, c1, &s1, NULL, err) == VS_OK);
    p.n_threads = 3;
    CHECK(vs_kmeans_train(x, N, D, &p, c3, &s3, NULL, err) == VS_OK);
    CHECK(memcmp(c1, c3, sizeof c1) == 0);
    CHECK(s1.final_objective == s3.final_objective && s1.iterations == s3.iterations &&
          s1.empty_splits == s3.empty_splits && s1.n_train == 2048 && s3.n_train == 2048);
    p.seed = 1235;
    CHECK(vs_kmeans_train(x, N, D, &p, c_other, &s_other, NULL, err) == VS_OK);
    CHECK(memcmp(c1, c_other, sizeof c1) != 0);

    /* spherical: unit centroids, also identical across thread counts */
    p.spherical = 1;
    p.n_threads = 1;
    CHECK(vs_kmeans_train(x, N, D, &p, c1, NULL, NULL, err) == VS_OK);
    p.n_threads = 3;
    CHECK(vs_kmeans_train(x, N, D, &p, c3, NULL, NULL, err) == VS_OK);
    CHECK(memcmp(c1, c3, sizeof c1) == 0);
    for (size_t c = 0; c < K; c++)
        CHECKF(fabs(dot(c1 + c * D, c1 + c * D, D) - 1.0) < 1e-5, "centroid %zu not unit", c);

    /* assignment labels do not depend on threads either (different block owners, same blocks) */
    int32_t l1[N], l3[N];
    CHECK(vs_kmeans_assign(x, N, c1, K, D, 1, l1, NULL, err) == VS_OK);
    CHECK(vs_kmeans_assign(x, N, c1, K, D, 3, l3, NULL, err) == VS_OK);
    CHECK(memcmp(l1, l3, sizeof l1) == 0);
    free(x);
}

/* vs_kmeans_assign against a double argmin. Tolerance: 1e-5 relative, well above the float error of a
 * d <= 40 dot product (about 1e-6 relative on this data, where distances do not cancel). */
static void check_assign(size_t n, uint32_t k, uint32_t d, uint64_t seed)
{
    float *x = rand_matrix(n, d, seed), *c = rand_matrix(k, d, seed + 1);
    int32_t *labels = malloc(n * sizeof(int32_t));
    float *dist = malloc(n * sizeof(float));
    char err[VS_ERR_LEN];
    CHECK(vs_kmeans_assign(x, n, c, k, d, 3, labels, dist, err) == VS_OK);
    size_t bad_label = 0, bad_dist = 0, unsure = 0;
    for (size_t i = 0; i < n; i++) {
        double best = INFINITY, second = INFINITY;
        int32_t arg = -1;
        for (uint32_t j = 0; j < k; j++) {
            double dd = dist2(x + i * d, c + (size_t)j * d, d);
            if (dd < best) {
                second = best;
                best = dd;
                arg = (int32_t)j;
            } else if (dd < second) {
                second = dd;
            }
        }
        if (!(labels[i] >= 0 && (uint32_t)labels[i] < k)) {
            bad_label++;
            continue;
        }
        if (fabs(dist[i] - best) > 1e-5 * best)
            bad_dist++;
        if (second - best > 1e-5 * best) {
            if (labels[i] != arg)
                bad_label++;
        } else {
            unsure++;
        }
    }
    CHECKF(bad_label == 0 && bad_dist == 0, "n %zu k %u d %u: %zu wrong labels, %zu wrong distances", n, k, d,
           bad_label, bad_dist);
    CHECK(unsure < n / 10 + 1); /* near ties are rare on random data; many would hide a bug */
    free(x);
    free(c);
    free(labels);
    free(dist);
}

static void test_assign(void)
{
    check_assign(1000, 700, 37, 11); /* two centroid blocks, ragged SIMD tails, 4 point blocks */
    check_assign(300, 1, 8, 12);
    check_assign(257, 5, 3, 13);
    check_assign(50, 64, 40, 14);
}

typedef struct ref {
    double key;
    int32_t id;
} ref_t;

static int ref_cmp(const void *a, const void *b)
{
    const ref_t *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* vs_kmeans_nearest against a sorted double brute force: at each rank the distance matches the
 * reference within 1e-5 * (1 + |d|) (absolute near 0 for inner products), and a different id than the
 * reference's is accepted only when its own reference key ties the rank's within that tolerance. */
static void check_nearest(vs_metric metric, size_t n, uint32_t k, uint32_t d, uint32_t nprobe)
{
    float *x = rand_matrix(n, d, 21 + nprobe), *c = rand_matrix(k, d, 22 + k);
    int larger = vs_metric_larger_is_better(metric);
    int32_t *lists = malloc(n * nprobe * sizeof(int32_t));
    float *dist = malloc(n * nprobe * sizeof(float));
    ref_t *ref = malloc(k * sizeof(ref_t));
    double *key_of = malloc(k * sizeof(double));
    char err[VS_ERR_LEN];
    CHECK(vs_kmeans_nearest(x, n, c, k, d, metric, nprobe, 2, lists, dist, err) == VS_OK);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        for (uint32_t j = 0; j < k; j++) {
            double v = metric == VS_METRIC_L2 ? dist2(x + i * d, c + (size_t)j * d, d)
                                              : dot(x + i * d, c + (size_t)j * d, d);
            key_of[j] = larger ? -v : v;
            ref[j] = (ref_t){key_of[j], (int32_t)j};
        }
        qsort(ref, k, sizeof *ref, ref_cmp);
        const int32_t *li = lists + i * nprobe;
        const float *di = dist + i * nprobe;
        int seen_ok = 1;
        for (uint32_t r = 0; r < nprobe; r++) {
            if (r >= k) {
                bad += !(li[r] == -1 && di[r] == (larger ? -INFINITY : INFINITY));
                continue;
            }
            double want = larger ? -ref[r].key : ref[r].key, tol = 1e-5 * (1.0 + fabs(want));
            if (fabs(di[r] - want) > tol) {
                bad++;
                continue;
            }
            if (li[r] != ref[r].id &&
                !(li[r] >= 0 && (uint32_t)li[r] < k && fabs(key_of[li[r]] - ref[r].key) <= tol))
                bad++;
            for (uint32_t q = 0; q < r; q++)
                seen_ok &= li[q] != li[r];
        }
        bad += !seen_ok;
    }
    CHECKF(bad == 0, "%s n %zu k %u d %u nprobe %u: %zu mismatches", vs_metric_name(metric), n, k, d, nprobe,
           bad);
    free(x);
    free(c);
    free(lists);
    free(dist);
    free(ref);
    free(key_of);
}

static void test_nearest(void)
{
    const uint32_t k = 600; /* two centroid blocks */
    uint32_t probes[] = {1, 5, k, k + 3};
    for (size_t m = 0; m < 2; m++) {
        vs_metric metric = m == 0 ? VS_METRIC_L2 : VS_METRIC_IP;
        for (size_t t = 0; t < sizeof probes / sizeof probes[0]; t++)
            check_nearest(metric, 300, k, 24, probes[t]);
        check_nearest(metric, 40, 7, 5, 3);
    }
    /* nearest with nprobe = 1 is the assignment argmin: identical labels */
    float *x = rand_matrix(500, 16, 5), *c = rand_matrix(100, 16, 6);
    int32_t la[500], ln[500];
    char err[VS_ERR_LEN];
    CHECK(vs_kmeans_assign(x, 500, c, 100, 16, 2, la, NULL, err) == VS_OK);
    CHECK(vs_kmeans_nearest(x, 500, c, 100, 16, VS_METRIC_L2, 1, 2, ln, NULL, err) == VS_OK);
    size_t differ = 0;
    for (size_t i = 0; i < 500; i++)
        differ += la[i] != ln[i];
    CHECK(differ == 0);
    free(x);
    free(c);
}

/* 300 points with only 10 distinct values and k = 20: at least 10 centroids start on duplicates, lose
 * every tie to a lower index and must be re-seeded by splits each iteration, without NaN. */
static void test_empty_clusters(void)
{
    enum { N = 300, D = 8, K = 20, DISTINCT = 10 };
    float *values = rand_matrix(DISTINCT, D, 77);
    float *x = malloc((size_t)N * D * sizeof(float));
    for (size_t i = 0; i < N; i++)
        memcpy(x + i * D, values + (i % DISTINCT) * D, D * sizeof(float));
    vs_kmeans_params_t p = {.k = K, .n_iter = 10, .seed = 5, .n_threads = 2};
    float cent[K * D];
    vs_kmeans_stats_t stats;
    char err[VS_ERR_LEN];
    CHECK(vs_kmeans_train(x, N, D, &p, cent, &stats, NULL, err) == VS_OK);
    CHECK(all_finite(cent, K * D));
    CHECKF(stats.empty_splits > 0, "empty_splits %u", stats.empty_splits);
    /* k-means++ seeds every distinct value, and a split only scales a copy of a value's centroid by
     * 1 +- 1/1024 per coordinate, so each point stays within squared distance |x|^2 / 1024^2 */
    double bound = 0;
    for (size_t i = 0; i < N; i++)
        bound += dot(x + i * D, x + i * D, D) / (1024.0 * 1024.0);
    CHECKF(isfinite(stats.final_objective) && stats.final_objective <= 1.01 * bound, "objective %g, bound %g",
           stats.final_objective, bound);

    /* all points identical, including a zero vector: splits cannot separate, but nothing breaks */
    memset(x, 0, (size_t)N * D * sizeof(float));
    p.spherical = 1;
    CHECK(vs_kmeans_train(x, N, D, &p, cent, &stats, NULL, err) == VS_OK);
    CHECK(all_finite(cent, K * D) && stats.final_objective == 0.0 && stats.empty_splits > 0);
    free(values);
    free(x);
}

static void test_sampling(void)
{
    const size_t n = 100000;
    const uint32_t d = 4;
    float *x = rand_matrix(n, d, 8);
    vs_kmeans_params_t p = {.k = 10, .n_iter = 5, .max_points_per_centroid = 256, .seed = 3};
    float cent[10 * 4];
    vs_kmeans_stats_t stats;
    char err[VS_ERR_LEN];
    CHECK(vs_kmeans_train(x, n, d, &p, cent, &stats, NULL, err) == VS_OK);
    CHECK(stats.n_train == 2560);
    CHECK(all_finite(cent, 10 * 4));
    /* default cap is 256 per centroid too; a larger cap than n trains on everything */
    p.max_points_per_centroid = 0;
    CHECK(vs_kmeans_train(x, n, d, &p, cent, &stats, NULL, err) == VS_OK && stats.n_train == 2560);
    p.max_points_per_centroid = 20000;
    CHECK(vs_kmeans_train(x, n, d, &p, cent, &stats, NULL, err) == VS_OK && stats.n_train == n);
    free(x);
}

static void test_bad_input(void)
{
    enum { N = 100, D = 4 };
    float *x = rand_matrix(N, D, 9);
    float cent[256 * D], sentinel[256 * D];
    for (size_t i = 0; i < 256 * D; i++)
        cent[i] = sentinel[i] = -7.0f;
    vs_kmeans_stats_t stats = {.iterations = 12345}, stats0 = stats;
    char err[VS_ERR_LEN] = "";
    vs_kmeans_params_t p = {.k = 256, .seed = 1};

    CHECK(vs_kmeans_train(x, N, D, &p, cent, &stats, NULL, err) == VS_ERR_INVALID_ARGUMENT);
    CHECKF(strstr(err, "100 points cannot train 256 centroids") != NULL, "%s", err);
    p.k = 10;
    p.min_points_per_centroid = 20; /* 200 needed */
    CHECK(vs_kmeans_train(x, N, D, &p, cent, &stats, NULL, err) == VS_ERR_INVALID_ARGUMENT);
    p.min_points_per_centroid = 0;
    p.k = 0;
    CHECK(vs_kmeans_train(x, N, D, &p, cent, &stats, NULL, err) == VS_ERR_INVALID_ARGUMENT);
    p.k = 4;
    CHECK(vs_kmeans_train(x, N, 0, &p, cent, &stats, NULL, err) == VS_ERR_INVALID_ARGUMENT);
    CHECK(vs_kmeans_train(x, N, 65537, &p, cent, &stats, NULL, err) == VS_ERR_INVALID_ARGUMENT);
    CHECK(vs_kmeans_train(x, N, D, NULL, cent, &stats, NULL, err) == VS_ERR_INVALID_ARGUMENT);
    x[7 * D + 2] = NAN;
    CHECK(vs_kmeans_train(x, N, D, &p, cent, &stats, NULL, err) == VS_ERR_INVALID_ARGUMENT);
    CHECKF(strstr(err, "vector 7 ") != NULL && strstr(err, "NaN") != NULL, "%s", err);
    /* the sampled path names the row too: every row from 10 on is bad, and 3 of 100 rows are drawn */
    for (size_t i = 10; i < N; i++)
        x[i * D] = INFINITY;
    x[7 * D + 2] = 0.5f;
    p.k = 3;
    p.max_points_per_centroid = 1;
    CHECK(vs_kmeans_train(x, N, D, &p, cent, &stats, NULL, err) == VS_ERR_INVALID_ARGUMENT);
    CHECKF(strstr(err, "training vector") != NULL && strstr(err, "Inf") != NULL, "%s", err);
    CHECK(memcmp(cent, sentinel, sizeof cent) == 0);
    CHECK(memcmp(&stats, &stats0, sizeof stats) == 0);

    /* assign and nearest */
    for (size_t i = 10; i < N; i++)
        x[i * D] = 0.25f;
    int32_t labels[N], lab0[N];
    for (size_t i = 0; i < N; i++)
        labels[i] = lab0[i] = -9;
    float c4[4 * D];
    for (size_t i = 0; i < 4 * D; i++)
        c4[i] = (float)i;
    CHECK(vs_kmeans_assign(x, N, c4, 0, D, 1, labels, NULL, err) == VS_ERR_INVALID_ARGUMENT);
    CHECK(vs_kmeans_assign(x, N, c4, 4, 0, 1, labels, NULL, err) == VS_ERR_INVALID_ARGUMENT);
    c4[5] = NAN;
    CHECK(vs_kmeans_assign(x, N, c4, 4, D, 1, labels, NULL, err) == VS_ERR_INVALID_ARGUMENT);
    CHECKF(strstr(err, "centroid 1 ") != NULL, "%s", err);
    c4[5] = 1.0f;
    x[3 * D] = -INFINITY;
    CHECK(vs_kmeans_assign(x, N, c4, 4, D, 1, labels, NULL, err) == VS_ERR_INVALID_ARGUMENT);
    CHECKF(strstr(err, "vector 3 ") != NULL, "%s", err);
    CHECK(vs_kmeans_nearest(x, N, c4, 4, D, VS_METRIC_L2, 2, 1, labels, NULL, err) ==
          VS_ERR_INVALID_ARGUMENT);
    x[3 * D] = 0.0f;
    CHECK(vs_kmeans_nearest(x, N, c4, 4, D, VS_METRIC_L2, 0, 1, labels, NULL, err) ==
          VS_ERR_INVALID_ARGUMENT);
    CHECK(vs_kmeans_nearest(x, N, c4, 4, D, (vs_metric)9, 1, 1, labels, NULL, err) ==
          VS_ERR_INVALID_ARGUMENT);
    CHECK(memcmp(labels, lab0, sizeof labels) == 0);
    /* n == 0 is fine */
    CHECK(vs_kmeans_assign(x, 0, c4, 4, D, 1, labels, NULL, err) == VS_OK);
    CHECK(vs_kmeans_nearest(x, 0, c4, 4, D, VS_METRIC_IP, 1, 1, labels, NULL, err) == VS_OK);
    free(x);
}

int main(void)
{
    RUN(test_blobs);
    RUN(test_determinism);
    RUN(test_assign);
    RUN(test_nearest);
    RUN(test_empty_clusters);
    RUN(test_sampling);
    RUN(test_bad_input);
    return vs_test_finish();
}
