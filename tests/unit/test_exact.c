/* test_exact: exact search over the vectors an index keeps (shard/index/exact.h), the reference of recall
 * monitoring. For IVF,Flat, IVF-PQ with an RFlat refine (built, and saved then loaded: vectors in the mapped
 * file), HNSW and HNSW,SQ8 (float vectors kept) and Flat, under L2, inner product and cosine, batches of 1
 * and 150 queries (more than one sgemm block): the same ids as the Flat oracle and distances within
 * float rounding. Indexes keeping only quantised vectors (PQ without refine, an SQ8 refine) are refused with
 * VS_ERR_UNSUPPORTED; bad k and NaN queries with VS_ERR_INVALID_ARGUMENT; an index with no items answers
 * padding. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shard/index/index.h"
#include "tests/testlib.h"

#define T "exact"
#define N 2500
#define D 24
#define NQ 150
#define K 12

static float base[N * D], queries[NQ * D];

static vs_index_t *build(const char *factory, vs_metric m)
{
    char err[VS_ERR_LEN] = "";
    vs_index_t *idx = NULL;
    CHECKF(vs_index_create(D, m, factory, &idx, err) == VS_OK, "%s: %s", factory, err);
    if (!idx)
        return NULL;
    if (vs_index_needs_training(idx))
        CHECKF(vs_index_train(idx, N, base, 1, NULL, err) == VS_OK, "%s", err);
    CHECKF(vs_index_add(idx, N, base, NULL, 1, NULL, err) == VS_OK, "%s", err);
    return idx;
}

static void compare(const char *what, const vs_index_t *idx, const vs_index_t *flat, size_t nq)
{
    static float d1[NQ * K], d2[NQ * K];
    static int64_t i1[NQ * K], i2[NQ * K];
    char err[VS_ERR_LEN] = "";
    CHECKF(vs_index_search_exact(idx, nq, queries, K, 2, d1, i1, err) == VS_OK, "%s: %s", what, err);
    CHECKF(vs_index_search(flat, nq, queries, K, NULL, 1, d2, i2, err) == VS_OK, "%s", err);
    size_t same = 0, close = 0;
    for (size_t i = 0; i < nq * K; i++) {
        same += i1[i] == i2[i];
        close += fabsf(d1[i] - d2[i]) <= 1e-4f * (1.0f + fabsf(d2[i]));
    }
    CHECKF(same == nq * K && close == nq * K, "%s, %zu queries: %zu ids and %zu distances of %zu equal", what,
           nq, same, close, nq * K);
}

static void test_kinds(void)
{
    static const vs_metric metrics[] = {VS_METRIC_L2, VS_METRIC_IP, VS_METRIC_COSINE};
    static const char *const ok[] = {"IVF16,Flat", "IVF16,PQ8x4fs,RFlat", "HNSW16", "HNSW16,SQ8"};
    for (size_t mi = 0; mi < 3; mi++) {
        vs_index_t *flat = build("Flat", metrics[mi]);
        CHECK(flat != NULL);
        for (size_t f = 0; f < sizeof ok / sizeof ok[0]; f++) {
            vs_index_t *idx = build(ok[f], metrics[mi]);
            if (!idx || !flat)
                continue;
            char what[96];
            snprintf(what, sizeof what, "%s %s", ok[f], vs_metric_name(metrics[mi]));
            compare(what, idx, flat, 1);
            compare(what, idx, flat, NQ);
            if (f == 1) { /* the vectors of a mapped file */
                char err[VS_ERR_LEN] = "";
                const char *path = vs_test_path(T, "ivf.vsi");
                vs_index_t *loaded = NULL;
                CHECKF(vs_index_save(idx, path, "", 0, err) == VS_OK, "%s", err);
                CHECKF(vs_index_load(path, &loaded, err) == VS_OK, "%s", err);
                if (loaded)
                    compare("loaded IVF16,PQ8x4fs,RFlat", loaded, flat, NQ);
                vs_index_destroy(loaded);
            }
            vs_index_destroy(idx);
        }
        compare("Flat", flat, flat, NQ);
        vs_index_destroy(flat);
    }
}

static void test_refused(void)
{
    char err[VS_ERR_LEN] = "";
    float d[K];
    int64_t ids[K];
    static const char *const no[] = {"IVF16,PQ8x4fs", "IVF16,PQ8x4fs,RSQ8", "IVF16,PQ8"};
    for (size_t f = 0; f < sizeof no / sizeof no[0]; f++) {
        vs_index_t *idx = build(no[f], VS_METRIC_L2);
        if (!idx)
            continue;
        vs_status st = vs_index_search_exact(idx, 1, queries, K, 1, d, ids, err);
        CHECKF(st == VS_ERR_UNSUPPORTED && strstr(err, "exact"), "%s: %d %s", no[f], (int)st, err);
        vs_index_destroy(idx);
    }
    /* an index with no items (a partition nothing hashed to): every answer padding */
    vs_index_t *empty = NULL;
    CHECK(vs_index_create(D, VS_METRIC_L2, "IVF16,PQ8x4fs,RFlat", &empty, err) == VS_OK);
    if (empty) {
        CHECK(vs_index_train(empty, N, base, 1, NULL, err) == VS_OK);
        CHECK(vs_index_search_exact(empty, 1, queries, K, 1, d, ids, err) == VS_OK && ids[0] == -1 &&
              ids[K - 1] == -1);
        vs_index_destroy(empty);
    }
    vs_index_t *idx = build("IVF16,Flat", VS_METRIC_L2);
    if (idx) {
        CHECK(vs_index_search_exact(idx, 1, queries, 0, 1, d, ids, err) == VS_ERR_INVALID_ARGUMENT);
        float bad[D];
        memcpy(bad, queries, sizeof bad);
        bad[5] = NAN;
        CHECK(vs_index_search_exact(idx, 1, bad, K, 1, d, ids, err) == VS_ERR_INVALID_ARGUMENT);
    }
    vs_index_destroy(idx);
}

int main(void)
{
    uint64_t rng = 7;
    for (size_t i = 0; i < N * D; i++)
        base[i] = (float)vs_test_gauss(&rng) + (float)((i / D) % 10);
    for (size_t i = 0; i < NQ * D; i++)
        queries[i] = (float)vs_test_gauss(&rng) + (float)((i / D) % 10);
    vs_test_tmpdir(T);
    RUN(test_kinds);
    RUN(test_refused);
    vs_test_cleanup(T);
    return vs_test_finish();
}
