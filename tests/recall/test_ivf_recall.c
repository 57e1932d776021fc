/* test_ivf_recall: IVF indexes against the flat oracle on fixed seeds. Synthetic clustered data
 * (20,000 x 32, 256 centres, sigma 1: clusters overlap, so neighbours spread over several lists) and a
 * Fashion-MNIST sample. Data, k-means and search are deterministic (fixed seeds, results independent
 * of thread count), so each threshold sits about 0.05 below the recall measured when it was written:
 * a real regression (a wrong probe order, a broken table, a lost candidate) costs far more than that.
 * The exhaustive cases (nprobe = nlist, large re-rank pool) must be exactly 1.0. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "shard/index/index.h"
#include "common/idset.h"
#include "common/vecio.h"
#include "shard/index/coarse.h"
#include "shard/index/ivf.h"
#include "tests/testlib.h"

#define K 10

typedef struct set {
    size_t n, nq;
    uint32_t d;
    float *base, *q;
    vs_metric metric;
    int64_t *gt; /* nq*K from Flat */
    float *gt_dist;
} set_t;

static void make_gt(set_t *s)
{
    char err[VS_ERR_LEN];
    vs_index_t *flat;
    s->gt = malloc(s->nq * K * sizeof(int64_t));
    s->gt_dist = malloc(s->nq * K * sizeof(float));
    CHECK(vs_index_create(s->d, s->metric, "Flat", &flat, err) == VS_OK);
    CHECK(vs_index_add(flat, s->n, s->base, NULL, 0, NULL, err) == VS_OK);
    CHECK(vs_index_search(flat, s->nq, s->q, K, NULL, 0, s->gt_dist, s->gt, err) == VS_OK);
    vs_index_destroy(flat);
}

static set_t synthetic(vs_metric metric)
{
    set_t s = {.n = 20000, .nq = 300, .d = 32, .metric = metric};
    s.base = malloc(s.n * s.d * sizeof(float));
    s.q = malloc(s.nq * s.d * sizeof(float));
    vs_test_clustered(s.base, s.n, s.d, 256, 1.0f, 77, 1);
    vs_test_clustered(s.q, s.nq, s.d, 256, 1.0f, 77, 2);
    make_gt(&s);
    return s;
}

static void free_set(set_t *s)
{
    free(s->base);
    free(s->q);
    free(s->gt);
    free(s->gt_dist);
}

static vs_index_t *build(const set_t *s, const char *factory)
{
    char err[VS_ERR_LEN];
    vs_index_t *idx = NULL;
    vs_status st = vs_index_create(s->d, s->metric, factory, &idx, err);
    CHECKF(st == VS_OK, "%s: %s", factory, err);
    if (st != VS_OK)
        return NULL;
    CHECK(vs_index_needs_training(idx));
    CHECKF(vs_index_train(idx, s->n, s->base, 0, NULL, err) == VS_OK, "%s train: %s", factory, err);
    CHECKF(vs_index_add(idx, s->n, s->base, NULL, 0, NULL, err) == VS_OK, "%s add: %s", factory, err);
    CHECK(vs_index_count(idx) == s->n);
    return idx;
}

static double recall(const set_t *s, vs_index_t *idx, uint32_t nprobe, float k_factor, int64_t *ids,
                     float *dist)
{
    char err[VS_ERR_LEN];
    vs_search_params_t p = {.nprobe = nprobe, .k_factor = k_factor};
    vs_status st = vs_index_search(idx, s->nq, s->q, K, &p, 2, dist, ids, err);
    CHECKF(st == VS_OK, "search: %s", err);
    return st == VS_OK ? vs_test_recall(ids, K, s->gt, K, s->nq, K) : 0.0;
}

static void check_recall(const set_t *s, const char *factory, uint32_t nprobe, float kf, double min_recall,
                         const char *why)
{
    vs_index_t *idx = build(s, factory);
    if (idx == NULL)
        return;
    int64_t *ids = malloc(s->nq * K * sizeof(int64_t));
    float *dist = malloc(s->nq * K * sizeof(float));
    double r = recall(s, idx, nprobe, kf, ids, dist);
    printf("  %-26s %-7s nprobe=%-3u k_factor=%-4g recall@10 = %.4f (>= %.2f: %s)\n", factory,
           vs_metric_name(s->metric), nprobe, kf, r, min_recall, why);
    CHECKF(r >= min_recall, "%s nprobe=%u: recall %.4f < %.2f", factory, nprobe, r, min_recall);
    free(ids);
    free(dist);
    vs_index_destroy(idx);
}

/* IVF-Flat scanning every list computes the same distances with the same kernel as Flat: results must
 * be identical, ids and distances, for every metric. */
static void test_ivf_flat_all_lists_equals_flat(void)
{
    vs_metric ms[] = {VS_METRIC_L2, VS_METRIC_IP, VS_METRIC_COSINE};
    for (size_t i = 0; i < 3; i++) {
        set_t s = synthetic(ms[i]);
        vs_index_t *idx = build(&s, "IVF64,Flat");
        int64_t *ids = malloc(s.nq * K * sizeof(int64_t));
        float *dist = malloc(s.nq * K * sizeof(float));
        recall(&s, idx, 64, 0, ids, dist);
        CHECKF(memcmp(ids, s.gt, s.nq * K * sizeof(int64_t)) == 0, "%s: ids differ from Flat",
               vs_metric_name(ms[i]));
        int close = 1;
        for (size_t j = 0; j < s.nq * K; j++)
            close &= fabsf(dist[j] - s.gt_dist[j]) <= 1e-4f * (fabsf(s.gt_dist[j]) + 1.0f);
        CHECKF(close, "%s: distances differ from Flat", vs_metric_name(ms[i]));
        free(ids);
        free(dist);
        vs_index_destroy(idx);
        free_set(&s);
    }
}

static void test_synthetic_l2(void)
{
    set_t s = synthetic(VS_METRIC_L2);
    check_recall(&s, "IVF64,PQ16x4fs,RFlat", 64, 100, 1.0,
                 "every list and 1,000 re-ranked candidates: the exact top-10 are always among them");
    check_recall(&s, "IVF64,PQ16,RFlat", 64, 100, 1.0, "same with 8-bit codes");
    check_recall(&s, "IVF64,Flat", 8, 0, 0.82, "measured 0.868: 8 of 64 lists of overlapping clusters");
    check_recall(&s, "IVF64,PQ16x4fs,RFlat", 8, 10, 0.82, "measured 0.867: IVF-Flat's, less what 100 miss");
    check_recall(&s, "IVF64,PQ16x4fs,RSQ8", 8, 10, 0.80, "measured 0.860: SQ8 re-rank is near-exact");
    check_recall(&s, "IVF64,PQ16", 16, 0, 0.80, "measured 0.858: 8-bit codes of 2 dims, no re-rank");
    check_recall(&s, "IVF64,PQ16x4fs", 16, 0, 0.53, "measured 0.584: 4-bit codes, no re-rank");
    free_set(&s);
}

static void test_synthetic_ip_cosine(void)
{
    set_t s = synthetic(VS_METRIC_IP);
    check_recall(&s, "IVF64,PQ16x4fs,RFlat", 64, 100, 1.0, "exhaustive with a large re-rank pool");
    free_set(&s);
    set_t c = synthetic(VS_METRIC_COSINE);
    check_recall(&c, "IVF64,PQ16x4fs,RFlat", 64, 100, 1.0, "exhaustive with a large re-rank pool");
    check_recall(&c, "IVF64,PQ16x4fs,RFlat", 8, 10, 0.85, "measured 0.906 on unit vectors");
    free_set(&c);
}

static void test_fashion_mnist_sample(void)
{
    uint32_t d;
    float *b, *q;
    if (!vs_test_load_fashion(&d, &b, &q))
        return;
    set_t s = {.n = 12000, .nq = 200, .d = d, .base = b, .q = q, .metric = VS_METRIC_L2};
    make_gt(&s);
    check_recall(&s, "IVF64,PQ56x4fs,RFlat", 64, 100, 1.0, "exhaustive with a large re-rank pool");
    check_recall(&s, "IVF64,PQ56x4fs,RFlat", 8, 10, 0.93, "measured 0.988: image clusters are compact");
    free_set(&s);
}

/* For L2 with d >= 256 and nlist >= 256 search preselects lists in a PCA projection of the centroids
 * and ranks the pool exactly. On Fashion-MNIST (784-d) it must choose the same lists as ranking every
 * centroid in full: at least 99% of the probed lists agree (a miss needs a list that ranks in the exact
 * top nprobe but outside the projected top 2*nprobe+16: only near-ties at the boundary). */
static void test_coarse_preselection(void)
{
    char err[VS_ERR_LEN];
    uint32_t d;
    float *b, *q;
    if (!vs_test_load_fashion(&d, &b, &q))
        return;
    vs_factory_spec_t spec;
    CHECK(vs_factory_parse("IVF256,Flat", &spec, err) == VS_OK);
    vs_index_t *idx;
    CHECK(vs_index_create(d, VS_METRIC_L2, "IVF256,Flat", &idx, err) == VS_OK);
    CHECK(vs_index_train(idx, 12000, b, 0, NULL, err) == VS_OK);
    const vs_ivf_t *ivf = vs_index_impl_ivf(idx);
    CHECK(ivf != NULL);
    const uint32_t nprobes[] = {1, 8, 32};
    for (size_t t = 0; ivf && t < 3; t++) {
        uint32_t np = nprobes[t];
        size_t same = 0, total = 0;
        int32_t a1[32], a2[32];
        for (size_t i = 0; i < 300; i++) {
            CHECK(vs_ivf_probe(ivf, q + i * d, np, 0, a1, err) == VS_OK);
            CHECK(vs_ivf_probe(ivf, q + i * d, np, 1, a2, err) == VS_OK);
            for (uint32_t x = 0; x < np; x++)
                for (uint32_t y = 0; y < np; y++)
                    if (a1[x] == a2[y]) {
                        same++;
                        break;
                    }
            total += np;
        }
        double agree = (double)same / (double)total;
        printf("  coarse preselection, nprobe=%u: %.4f of probed lists equal the exact choice (>= 0.99)\n",
               np, agree);
        CHECKF(agree >= 0.99, "nprobe=%u: only %.4f of lists agree", np, agree);
    }
    vs_index_destroy(idx);
    free(b);
    free(q);
}

static void test_search_lists_and_errors(void)
{
    set_t s = synthetic(VS_METRIC_L2);
    char err[VS_ERR_LEN];
    vs_index_t *idx;
    CHECK(vs_index_create(s.d, s.metric, "IVF64,PQ16x4fs", &idx, err) == VS_OK);
    CHECK(vs_index_add(idx, 10, s.base, NULL, 0, NULL, err) == VS_ERR_FAILED_PRECONDITION);
    CHECK(vs_index_train(idx, 10, s.base, 0, NULL, err) == VS_ERR_INVALID_ARGUMENT);
    vs_index_destroy(idx);
    /* centroid routing: searching the lists vs_ivf_probe picks equals a normal search */
    idx = build(&s, "IVF64,PQ16x4fs,RFlat");
    const vs_ivf_t *ivf = vs_index_impl_ivf(idx);
    int32_t lists[20 * 8];
    for (size_t i = 0; i < 20; i++)
        CHECK(vs_ivf_probe(ivf, s.q + i * s.d, 8, 0, lists + i * 8, err) == VS_OK);
    float d1[20 * K], d2[20 * K];
    int64_t i1[20 * K], i2[20 * K];
    vs_search_params_t sp = {.nprobe = 8, .k_factor = 4};
    CHECK(vs_index_search(idx, 20, s.q, K, &sp, 1, d1, i1, err) == VS_OK);
    CHECK(vs_ivf_search_lists(ivf, 20, s.q, K, lists, 8, 4, NULL, 1, d2, i2, err) == VS_OK);
    CHECK(memcmp(i1, i2, sizeof i1) == 0 && memcmp(d1, d2, sizeof d1) == 0);
    lists[3] = 64; /* out of range */
    CHECK(vs_ivf_search_lists(ivf, 20, s.q, K, lists, 8, 4, NULL, 1, d2, i2, err) == VS_ERR_OUT_OF_RANGE);
    vs_index_destroy(idx);
    idx = build(&s, "IVF64,Flat");
    float d[K];
    int64_t i[K];
    vs_search_params_t p = {.nprobe = 65};
    CHECK(vs_index_search(idx, 1, s.q, K, &p, 1, d, i, err) == VS_ERR_INVALID_ARGUMENT &&
          strstr(err, "nlist"));
    p = (vs_search_params_t){.k_factor = 4};
    CHECK(vs_index_search(idx, 1, s.q, K, &p, 1, d, i, err) == VS_ERR_INVALID_ARGUMENT);
    vs_index_destroy(idx);
    free_set(&s);
}

/* Ties at the threshold: with few sub-quantizers and no refine many candidates share an estimate, and
 * with ids that do not grow with the position in a list the (key, id) rule picks among them. The scan's
 * integer threshold must let every candidate whose key equals the threshold reach the offer, or the
 * answer depends on the order the lists are scanned in (list-major in a batch, nearest first alone). */
static void test_batch_ties_shuffled_ids(void)
{
    static const struct {
        const char *factory;
        vs_metric metric;
    } cases[] = {{"IVF64,PQ2x4fs", VS_METRIC_L2},
                 {"IVF64,PQ2x4fs", VS_METRIC_IP},
                 {"IVF64,PQ1x4fs", VS_METRIC_IP},
                 {"IVF64,PQ8x4fs", VS_METRIC_IP}};
    char err[VS_ERR_LEN];
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        set_t s = synthetic(cases[ci].metric);
        vs_index_t *idx;
        CHECK(vs_index_create(s.d, s.metric, cases[ci].factory, &idx, err) == VS_OK);
        CHECK(vs_index_train(idx, s.n, s.base, 0, NULL, err) == VS_OK);
        int64_t *ids = malloc(s.n * sizeof(int64_t));
        uint64_t rng = 31;
        for (size_t i = 0; i < s.n; i++)
            ids[i] = (int64_t)i;
        for (size_t i = s.n - 1; i > 0; i--) { /* Fisher-Yates */
            size_t j = (size_t)(vs_test_rand(&rng) % (i + 1));
            int64_t t = ids[i];
            ids[i] = ids[j];
            ids[j] = t;
        }
        CHECK(vs_index_add(idx, s.n, s.base, ids, 0, NULL, err) == VS_OK);
        for (size_t kk = 10; kk <= 50; kk += 40) {
            size_t nqk = s.nq * kk, diff = 0;
            float *d1 = malloc(nqk * sizeof(float)), *d2 = malloc(nqk * sizeof(float));
            int64_t *i1 = malloc(nqk * sizeof(int64_t)), *i2 = malloc(nqk * sizeof(int64_t));
            vs_search_params_t p = {.nprobe = 32};
            for (size_t q = 0; q < s.nq; q++)
                CHECK(vs_index_search(idx, 1, s.q + q * s.d, kk, &p, 1, d1 + q * kk, i1 + q * kk, err) ==
                      VS_OK);
            CHECK(vs_index_search(idx, s.nq, s.q, kk, &p, 1, d2, i2, err) == VS_OK);
            for (size_t j = 0; j < nqk; j++)
                diff += i1[j] != i2[j] || memcmp(&d1[j], &d2[j], sizeof(float)) != 0;
            CHECKF(diff == 0, "%s %s k=%zu: %zu of %zu answers differ between the batch and one by one",
                   cases[ci].factory, vs_metric_name(cases[ci].metric), kk, diff, nqk);
            free(d1);
            free(d2);
            free(i1);
            free(i2);
        }
        free(ids);
        vs_index_destroy(idx);
        free_set(&s);
    }
}

/* The coarse products (the lists every probe, batch and coordinator choose): the transposed-centroid
 * kernel must give the same bits at every SIMD level and for any number of queries at once, and the
 * multi-query probe the same lists as one query at a time; centroid counts that end mid-block. */
static void test_coarse_products_identical(void)
{
    static const uint32_t dims[] = {3, 37, 128};
    static const uint32_t nls[] = {1, 100, 1024};
    char err[VS_ERR_LEN];
    uint64_t rng = 5;
    for (size_t di = 0; di < 3; di++)
        for (size_t ni = 0; ni < 3; ni++) {
            const uint32_t d = dims[di], nl = nls[ni], nq = 11;
            float *c = malloc((size_t)nl * d * sizeof(float)), *q = malloc((size_t)nq * d * sizeof(float));
            for (size_t i = 0; i < (size_t)nl * d; i++)
                c[i] = vs_test_randf(&rng);
            for (size_t i = 0; i < (size_t)nq * d; i++)
                q[i] = vs_test_randf(&rng);
            vs_coarse_t cq;
            CHECK(vs_coarse_init(&cq, VS_METRIC_L2, d, nl, c, 0, err) == VS_OK);
            CHECK(cq.ct != NULL);
            float *ref = malloc((size_t)nq * nl * sizeof(float)),
                  *got = malloc((size_t)nq * nl * sizeof(float));
            vs_coarse_products(&cq, q, nq, VS_SIMD_SCALAR, ref);
            for (int lvl = VS_SIMD_SCALAR; lvl <= (int)vs_cpu_simd_supported(); lvl++) {
                vs_coarse_products(&cq, q, nq, (vs_simd_level)lvl, got);
                CHECKF(memcmp(ref, got, (size_t)nq * nl * sizeof(float)) == 0, "d=%u nlist=%u level %d", d,
                       nl, lvl);
                for (size_t j = 0; j < nq; j++) {
                    vs_coarse_products(&cq, q + j * d, 1, (vs_simd_level)lvl, got);
                    CHECKF(memcmp(ref + j * nl, got, nl * sizeof(float)) == 0,
                           "d=%u nlist=%u query %zu alone", d, nl, j);
                }
            }
            const uint32_t np = nl < 8 ? nl : 8;
            int32_t *l1 = malloc((size_t)nq * np * sizeof(int32_t)),
                    *l2 = malloc((size_t)nq * np * sizeof(int32_t));
            float *cd = malloc((size_t)nq * nl * sizeof(float)),
                  *keys = malloc(vs_coarse_pool(np) * sizeof(float));
            int64_t *ids = malloc(vs_coarse_pool(np) * sizeof(int64_t));
            float proj[1];
            for (size_t j = 0; j < nq; j++)
                vs_coarse_probe(&cq, q + j * d, np, 0, 0, cd, keys, ids, proj, l1 + j * np);
            vs_coarse_probe_multi(&cq, nq, q, np, 0, cd, keys, ids, proj, l2);
            CHECKF(memcmp(l1, l2, (size_t)nq * np * sizeof(int32_t)) == 0, "d=%u nlist=%u: multi-query lists",
                   d, nl);
            vs_coarse_fini(&cq);
            free(c);
            free(q);
            free(ref);
            free(got);
            free(l1);
            free(l2);
            free(cd);
            free(keys);
            free(ids);
        }
}

/* A call with many queries is searched list by list in chunks (the multi-query kernels); a call with one
 * query is not. Each query keeps the best estimates by (key, id) whatever the order of its lists, so the
 * answers must be identical, ids and distances: L2, inner product and cosine, with and without refine,
 * an odd number of sub-quantizer pairs (the kernel's 256-bit tail), exclusions, precomputed lists, and
 * 1 or 2 threads. */
static void test_batch_equals_one_by_one(void)
{
    static const struct {
        const char *factory;
        vs_metric metric;
        float kf;
    } cases[] = {
        {"IVF64,PQ16x4fs,RFlat", VS_METRIC_L2, 8},       {"IVF64,PQ16x4fs", VS_METRIC_L2, 0},
        {"IVF64,PQ2x4fs,RFlat", VS_METRIC_L2, 16},       {"IVF64,PQ8x4fs,RSQ8", VS_METRIC_L2, 4},
        {"IVF64,PQ16x4fs,RFlat", VS_METRIC_IP, 8},       {"IVF64,PQ32x4fs,RFlat", VS_METRIC_COSINE, 4},
        {"IVF64_HNSW8,PQ16x4fs,RFlat", VS_METRIC_L2, 8},
    };
    char err[VS_ERR_LEN];
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        set_t s = synthetic(cases[ci].metric);
        vs_index_t *idx = build(&s, cases[ci].factory);
        if (idx == NULL) {
            free_set(&s);
            continue;
        }
        int64_t ex_ids[50];
        for (size_t i = 0; i < 50; i++)
            ex_ids[i] = s.gt[i * K]; /* the true nearest of the first 50 queries */
        vs_idset_t *ex = NULL;
        CHECK(vs_idset_create(ex_ids, 50, &ex, err) == VS_OK);
        for (int with_ex = 0; with_ex < 2; with_ex++) {
            vs_search_params_t p = {.nprobe = 6, .k_factor = cases[ci].kf, .exclude = with_ex ? ex : NULL};
            size_t nqk = s.nq * K;
            float *d1 = malloc(nqk * sizeof(float)), *d2 = malloc(nqk * sizeof(float));
            int64_t *i1 = malloc(nqk * sizeof(int64_t)), *i2 = malloc(nqk * sizeof(int64_t));
            for (size_t q = 0; q < s.nq; q++)
                CHECK(vs_index_search(idx, 1, s.q + q * s.d, K, &p, 1, d1 + q * K, i1 + q * K, err) == VS_OK);
            for (size_t threads = 1; threads <= 2; threads++) {
                CHECK(vs_index_search(idx, s.nq, s.q, K, &p, threads, d2, i2, err) == VS_OK);
                size_t diff = 0;
                for (size_t j = 0; j < nqk; j++)
                    diff += i1[j] != i2[j] || memcmp(&d1[j], &d2[j], sizeof(float)) != 0;
                CHECKF(diff == 0, "%s %s exclude=%d threads=%zu: %zu of %zu answers differ",
                       cases[ci].factory, vs_metric_name(cases[ci].metric), with_ex, threads, diff, nqk);
            }
            if (!with_ex &&
                !strstr(cases[ci].factory, "HNSW")) { /* the lists given, as the coordinator does */
                const vs_ivf_t *ivf = vs_index_impl_ivf(idx);
                int32_t *lists = malloc(s.nq * 6 * sizeof(int32_t));
                float *qn = malloc(s.nq * s.d * sizeof(float));
                memcpy(qn, s.q, s.nq * s.d * sizeof(float));
                if (cases[ci].metric == VS_METRIC_COSINE)
                    vs_normalize_rows(qn, s.nq, s.d);
                for (size_t q = 0; q < s.nq; q++)
                    CHECK(vs_ivf_probe(ivf, qn + q * s.d, 6, 0, lists + q * 6, err) == VS_OK);
                CHECK(vs_ivf_search_lists(ivf, s.nq, s.q, K, lists, 6, cases[ci].kf, NULL, 2, d2, i2, err) ==
                      VS_OK);
                CHECKF(memcmp(i1, i2, nqk * sizeof *i1) == 0 && memcmp(d1, d2, nqk * sizeof *d1) == 0,
                       "%s %s: search_lists of the batch differs", cases[ci].factory,
                       vs_metric_name(cases[ci].metric));
                free(lists);
                free(qn);
            }
            free(d1);
            free(d2);
            free(i1);
            free(i2);
        }
        printf("  %-28s %-7s batch of %zu = one by one (with and without exclusions)\n", cases[ci].factory,
               vs_metric_name(cases[ci].metric), s.nq);
        vs_idset_destroy(ex);
        vs_index_destroy(idx);
        free_set(&s);
    }
}

/* "IVF{n}_HNSW{M}": the lists come from an HNSW graph over the centroids. Synthetic 20,000 x 32 at
 * nlist 1024 (the graph has to be searched: 1024 centroids, efSearch 64): the probed lists must agree
 * with the exact ranking at >= 0.97 (measured 0.994 when written), end-to-end recall must
 * stay within 0.02 of the exact quantizer's, and a saved and reloaded index (the graph is rebuilt at load,
 * never stored) must answer identically. */
static void test_hnsw_coarse(void)
{
    char err[VS_ERR_LEN];
    set_t s = synthetic(VS_METRIC_L2);
    vs_index_t *exact = build(&s, "IVF1024,Flat"), *hq = build(&s, "IVF1024_HNSW32,Flat");
    if (!exact || !hq)
        return;
    const vs_ivf_t *ivf = vs_index_impl_ivf(hq);
    size_t same = 0, total = 0;
    int32_t a1[32], a2[32];
    for (size_t i = 0; i < s.nq; i++) {
        CHECK(vs_ivf_probe(ivf, s.q + i * s.d, 32, 0, a1, err) == VS_OK);
        CHECK(vs_ivf_probe(ivf, s.q + i * s.d, 32, 1, a2, err) == VS_OK);
        for (uint32_t x = 0; x < 32; x++)
            for (uint32_t y = 0; y < 32; y++)
                if (a1[x] == a2[y]) {
                    same++;
                    break;
                }
        total += 32;
    }
    double agree = (double)same / (double)total;
    int64_t *ids = malloc(s.nq * K * sizeof(int64_t)), *ids2 = malloc(s.nq * K * sizeof(int64_t));
    float *dist = malloc(s.nq * K * sizeof(float)), *dist2 = malloc(s.nq * K * sizeof(float));
    double re = recall(&s, exact, 32, 0, ids, dist), rh = recall(&s, hq, 32, 0, ids, dist);
    printf("  IVF1024_HNSW32,Flat nprobe=32: %.4f of probed lists equal the exact choice; recall@10 %.4f "
           "(exact quantizer %.4f)\n",
           agree, rh, re);
    CHECKF(agree >= 0.97, "only %.4f of the HNSW-probed lists agree with the exact ranking", agree);
    CHECKF(rh >= re - 0.02, "recall %.4f with the HNSW quantizer, %.4f exact", rh, re);
    /* quantizer_efSearch: the centroid search's candidate list. At 2,048 (above nlist) the graph search
     * finds the exact lists, so answers equal the exact quantizer's; at nprobe (32) it agrees less. */
    int64_t *ex = malloc(s.nq * K * sizeof(int64_t)), *qi = malloc(s.nq * K * sizeof(int64_t));
    float *qd = malloc(s.nq * K * sizeof(float));
    recall(&s, exact, 32, 0, ex, qd);
    size_t eq_small = 0, eq_large = 0;
    for (int pass = 0; pass < 2; pass++) {
        vs_search_params_t sp = {.nprobe = 32, .quantizer_ef_search = pass ? 2048 : 32};
        CHECKF(vs_index_search(hq, s.nq, s.q, K, &sp, 2, qd, qi, err) == VS_OK, "%s", err);
        size_t eq = 0;
        for (size_t i = 0; i < s.nq; i++)
            eq += memcmp(qi + i * K, ex + i * K, K * sizeof(int64_t)) == 0;
        *(pass ? &eq_large : &eq_small) = eq;
    }
    printf("  quantizer_efSearch 32: %zu of %zu answers equal the exact quantizer's; 2048: %zu\n", eq_small,
           s.nq, eq_large);
    CHECKF(eq_large >= s.nq * 99 / 100 && eq_large >= eq_small,
           "quantizer_efSearch 2048: %zu, 32: %zu of %zu", eq_large, eq_small, s.nq);
    vs_search_params_t bad = {.nprobe = 32, .quantizer_ef_search = 64};
    CHECK(vs_index_search(exact, 1, s.q, K, &bad, 1, qd, qi, err) == VS_ERR_INVALID_ARGUMENT &&
          strstr(err, "quantizer_efSearch"));
    free(ex);
    free(qi);
    free(qd);
    const char *path = vs_test_path("ivf_recall", "hnsw-coarse.vsidx");
    vs_index_t *back = NULL;
    CHECK(vs_index_save(hq, path, "", 0, err) == VS_OK);
    CHECKF(vs_index_load(path, &back, err) == VS_OK, "%s", err);
    if (back) {
        recall(&s, back, 32, 0, ids2, dist2);
        CHECK(memcmp(ids, ids2, s.nq * K * sizeof(int64_t)) == 0 &&
              memcmp(dist, dist2, s.nq * K * sizeof(float)) == 0);
        vs_index_destroy(back);
    }
    free(ids);
    free(ids2);
    free(dist);
    free(dist2);
    vs_index_destroy(exact);
    vs_index_destroy(hq);
    free_set(&s);
}

int main(void)
{
    RUN(test_ivf_flat_all_lists_equals_flat);
    RUN(test_synthetic_l2);
    RUN(test_synthetic_ip_cosine);
    RUN(test_fashion_mnist_sample);
    RUN(test_coarse_preselection);
    RUN(test_hnsw_coarse);
    RUN(test_search_lists_and_errors);
    RUN(test_batch_equals_one_by_one);
    RUN(test_batch_ties_shuffled_ids);
    RUN(test_coarse_products_identical);
    return vs_test_finish();
}
