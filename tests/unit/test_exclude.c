/* test_exclude: exclude_ids (issue 17) in process, without a network.
 * - The id set: every id put is found, ids never put are not (100,000 probes), repeats count once,
 *   negative ids are refused with their position; ids differing only in high bits do not pile up.
 * - Every index type skips excluded ids inside its scan or traversal: with each query's 5 exact nearest
 *   neighbours and 500 random ids excluded, no excluded id is ever returned, k results still come back,
 *   and the answers are those of the same index built without the excluded items: identical for exact
 *   configurations (Flat, IVF-Flat probing every list), recall within 0.02 of it otherwise (IVF-PQ fast
 *   scan with refine, 8-bit PQ, HNSW, HNSW,SQ8).
 * - Exclusions near the query cost no results: HNSW at its default efSearch (16) with each query's 7
 *   nearest excluded still answers k (a second, larger search when skipped nodes crowded the pool); Flat
 *   one query per call (its scan path) answers exactly.
 * - Fresh writes: an excluded fresh item is skipped too (with enough fresh records per list that whole
 *   32-record blocks are scanned by the SIMD kernel), through both IVF search paths (the shard's own
 *   probing and lists given by the coordinator), and through an HNSW version's fresh graph. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/idset.h"
#include "shard/index/fresh.h"
#include "shard/index/index.h"
#include "shard/index/ivf.h"
#include "tests/testlib.h"

#define N 3000
#define D 16
#define NQ 40
#define K 10
#define NEAR 5     /* each query's nearest neighbours excluded */
#define RANDOM 500 /* random ids excluded */

static float base[N * D], queries[NQ * D];

static int contains(const int64_t *ids, size_t n, int64_t id)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] == id)
            return 1;
    return 0;
}

static void test_idset(void)
{
    char err[VS_ERR_LEN];
    enum { M = 10000 };
    int64_t *ids = malloc((M + 1) * sizeof *ids);
    uint64_t rng = 3;
    for (size_t i = 0; i < M; i++)
        ids[i] = (int64_t)(vs_test_rand(&rng) >> 2);
    ids[M] = ids[17]; /* a repeat */
    vs_idset_t *s;
    CHECK(vs_idset_create(ids, M + 1, &s, err) == VS_OK);
    CHECK(s->n == M);
    for (size_t i = 0; i < M; i++)
        CHECK(vs_idset_has(s, ids[i]));
    size_t false_hits = 0;
    for (size_t i = 0; i < 100000; i++) {
        int64_t x = (int64_t)(vs_test_rand(&rng) >> 2);
        false_hits += vs_idset_has(s, x) && !contains(ids, M, x);
    }
    CHECKF(false_hits == 0, "%zu ids never put were found", false_hits);
    CHECK(!vs_idset_has(NULL, ids[0]));
    vs_idset_destroy(s);
    int64_t bad[3] = {1, -5, 2};
    CHECK(vs_idset_create(bad, 3, &s, err) == VS_ERR_INVALID_ARGUMENT && strstr(err, "1") &&
          strstr(err, "-5"));
    CHECK(vs_idset_create(NULL, 0, &s, err) == VS_OK && s->n == 0 && !vs_idset_has(s, 0));
    vs_idset_destroy(s);
    /* ids that differ only in high bits (a client picks them) spread over the table: every home slot
     * holds few of them, so building and probing stay short */
    for (size_t i = 0; i < M; i++)
        ids[i] = (int64_t)(i + 1) << 44;
    CHECK(vs_idset_create(ids, M, &s, err) == VS_OK && s->n == M);
    size_t longest = 0, run = 0;
    for (uint64_t i = 0; i <= 2 * s->mask + 1; i++) { /* the longest run of occupied slots, wrapping */
        run = s->slots[i & s->mask] >= 0 ? run + 1 : 0;
        longest = run > longest ? run : longest;
    }
    CHECKF(longest < 200, "ids i << 44: a run of %zu occupied slots", longest);
    for (size_t i = 0; i < M; i++)
        CHECK(vs_idset_has(s, ids[i]));
    vs_idset_destroy(s);
    free(ids);
}

static vs_index_t *build(const char *factory, const unsigned char *skip)
{
    char err[VS_ERR_LEN];
    vs_index_t *idx;
    CHECK(vs_index_create(D, VS_METRIC_L2, factory, &idx, err) == VS_OK);
    CHECK(vs_index_train(idx, N, base, 1, NULL, err) == VS_OK);
    float *x = malloc(N * D * sizeof *x);
    int64_t *ids = malloc(N * sizeof *ids);
    size_t n = 0;
    for (size_t i = 0; i < N; i++)
        if (!skip || !skip[i]) {
            memcpy(x + n * D, base + i * D, D * sizeof(float));
            ids[n++] = (int64_t)i;
        }
    CHECKF(vs_index_add(idx, n, x, ids, 1, NULL, err) == VS_OK, "%s", err);
    free(x);
    free(ids);
    return idx;
}

/* The excluded ids: each query's NEAR exact neighbours and RANDOM random ids; *out and skip[N] marks. */
static size_t exclusions(int64_t *out, unsigned char *skip)
{
    char err[VS_ERR_LEN];
    vs_index_t *flat = build("Flat", NULL);
    float d[NQ * NEAR];
    int64_t near[NQ * NEAR];
    CHECK(vs_index_search(flat, NQ, queries, NEAR, NULL, 1, d, near, err) == VS_OK);
    vs_index_destroy(flat);
    size_t n = 0;
    memset(skip, 0, N);
    uint64_t rng = 11;
    for (size_t i = 0; i < NQ * NEAR + RANDOM; i++) {
        int64_t id = i < NQ * NEAR ? near[i] : (int64_t)(vs_test_rand(&rng) % N);
        if (!skip[id]) {
            skip[id] = 1;
            out[n++] = id;
        }
    }
    return n;
}

static void test_every_index_type(void)
{
    struct {
        const char *factory;
        vs_search_params_t p;
        int exact;
    } cases[] = {
        {"Flat", {0}, 1},
        {"IVF16,Flat", {.nprobe = 16}, 1},
        {"IVF16,PQ8x4fs,RFlat", {.nprobe = 6, .k_factor = 8}, 0},
        {"IVF16,PQ8", {.nprobe = 6}, 0},
        {"HNSW16", {.ef_search = 64}, 0},
        {"HNSW16,SQ8", {.ef_search = 64, .k_factor = 4}, 0},
    };
    char err[VS_ERR_LEN];
    int64_t excl[NQ * NEAR + RANDOM];
    unsigned char skip[N];
    size_t n_excl = exclusions(excl, skip);
    vs_idset_t *set;
    CHECK(vs_idset_create(excl, n_excl, &set, err) == VS_OK);
    vs_index_t *oracle = build("Flat", skip);
    float od[NQ * K];
    int64_t gt[NQ * K];
    CHECK(vs_index_search(oracle, NQ, queries, K, NULL, 1, od, gt, err) == VS_OK);
    vs_index_destroy(oracle);
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        vs_index_t *idx = build(cases[c].factory, NULL), *without = build(cases[c].factory, skip);
        vs_search_params_t p = cases[c].p;
        float d1[NQ * K], d2[NQ * K];
        int64_t i1[NQ * K], i2[NQ * K];
        CHECK(vs_index_search(without, NQ, queries, K, &p, 1, d2, i2, err) == VS_OK);
        p.exclude = set;
        CHECKF(vs_index_search(idx, NQ, queries, K, &p, 1, d1, i1, err) == VS_OK, "%s", err);
        size_t bad = 0, missing = 0;
        for (size_t i = 0; i < NQ * K; i++) {
            bad += i1[i] >= 0 && skip[i1[i]];
            missing += i1[i] < 0;
        }
        CHECKF(bad == 0 && missing == 0, "%s: %zu excluded and %zu missing results", cases[c].factory, bad,
               missing);
        double r1 = vs_test_recall(i1, K, gt, K, NQ, K), r2 = vs_test_recall(i2, K, gt, K, NQ, K);
        if (cases[c].exact)
            CHECKF(memcmp(i1, gt, sizeof i1) == 0, "%s: not the exact answers without the excluded items",
                   cases[c].factory);
        CHECKF(r1 >= r2 - 0.02 && r1 > 0.5, "%s: recall %.4f with exclusions, %.4f built without them",
               cases[c].factory, r1, r2);
        vs_index_destroy(idx);
        vs_index_destroy(without);
    }
    vs_idset_destroy(set);
}

static void test_near_exclusions(void)
{
    const char *factories[] = {"HNSW16", "HNSW16,SQ8", "Flat"};
    char err[VS_ERR_LEN];
    vs_index_t *flat = build("Flat", NULL);
    for (size_t f = 0; f < 3; f++) {
        vs_index_t *idx = build(factories[f], NULL);
        size_t short_answers = 0, bad = 0, differ = 0;
        for (size_t i = 0; i < NQ; i++) {
            float d[K + 7], dx[K];
            int64_t near[K + 7], ids[K];
            CHECK(vs_index_search(flat, 1, queries + i * D, K + 7, NULL, 1, d, near, err) == VS_OK);
            vs_idset_t *set;
            CHECK(vs_idset_create(near, 7, &set, err) == VS_OK);
            vs_search_params_t p = {.exclude = set}; /* HNSW: the default efSearch, 16 */
            CHECKF(vs_index_search(idx, 1, queries + i * D, K, &p, 1, dx, ids, err) == VS_OK, "%s", err);
            for (size_t j = 0; j < K; j++) {
                short_answers += ids[j] < 0;
                bad += contains(near, 7, ids[j]);
            }
            differ += memcmp(ids, near + 7, sizeof ids) != 0; /* the exact next ten */
            vs_idset_destroy(set);
        }
        CHECKF(short_answers == 0 && bad == 0, "%s: %zu missing and %zu excluded results", factories[f],
               short_answers, bad);
        if (strcmp(factories[f], "Flat") == 0)
            CHECKF(differ == 0, "Flat, one query per call: %zu answers differ from the exact next ten",
                   differ);
        vs_index_destroy(idx);
    }
    vs_index_destroy(flat);
}

/* Fresh items excluded: the upserted copy of a query's own vector comes first until it is excluded. */
static void test_fresh_items(void)
{
    const char *factories[] = {"IVF16,PQ8x4fs,RFlat", "HNSW16"};
    char err[VS_ERR_LEN];
    for (size_t f = 0; f < 2; f++) {
        vs_index_t *idx = build(factories[f], NULL);
        vs_fresh_t *fr;
        CHECKF(vs_fresh_create(idx, 2000, &fr, err) == VS_OK, "%s", err);
        /* 1,000 other fresh items first: about 60 per list, so full 32-record blocks are packed */
        int64_t *other = malloc(1000 * sizeof *other);
        for (size_t i = 0; i < 1000; i++)
            other[i] = 7000000 + (int64_t)i;
        CHECK(vs_fresh_upsert(fr, 1000, other, base + 1000 * D, err) == VS_OK);
        free(other);
        int64_t fid[NQ];
        for (size_t i = 0; i < NQ; i++)
            fid[i] = 9000000 + (int64_t)i;
        CHECK(vs_fresh_upsert(fr, NQ, fid, queries, err) == VS_OK); /* each query's own vector */
        vs_search_params_t p =
            f ? (vs_search_params_t){.ef_search = 64} : (vs_search_params_t){.nprobe = 16, .k_factor = 8};
        float d[NQ * K];
        int64_t ids[NQ * K];
        CHECK(vs_fresh_search(fr, NQ, queries, K, &p, 1, d, ids, err) == VS_OK);
        size_t first = 0;
        for (size_t i = 0; i < NQ; i++)
            first += ids[i * K] == fid[i];
        CHECKF(first == NQ, "%s: %zu of %d queries found their fresh copy first", factories[f], first, NQ);
        vs_idset_t *set;
        CHECK(vs_idset_create(fid, NQ, &set, err) == VS_OK);
        p.exclude = set;
        CHECK(vs_fresh_search(fr, NQ, queries, K, &p, 1, d, ids, err) == VS_OK);
        size_t bad = 0;
        for (size_t i = 0; i < NQ * K; i++)
            bad += contains(fid, NQ, ids[i]) || ids[i] < 0;
        CHECKF(bad == 0, "%s: %zu excluded fresh ids or missing results", factories[f], bad);
        if (f == 0) { /* lists given by the coordinator */
            int32_t lists[NQ * 16];
            const struct vs_ivf *ivf = vs_index_impl_ivf(idx);
            for (size_t i = 0; i < NQ; i++)
                CHECK(vs_ivf_probe(ivf, queries + i * D, 16, 0, lists + i * 16, err) == VS_OK);
            const vs_search_params_t sel = {.exclude = set};
            CHECK(vs_fresh_search_lists(fr, NQ, queries, K, lists, 16, 8, &sel, 1, d, ids, err) == VS_OK);
            for (size_t i = 0; i < NQ * K; i++)
                bad += contains(fid, NQ, ids[i]) || ids[i] < 0;
            CHECKF(bad == 0, "search_lists: %zu excluded fresh ids or missing results", bad);
        }
        vs_idset_destroy(set);
        vs_fresh_destroy(fr);
        vs_index_destroy(idx);
    }
}

int main(void)
{
    uint64_t rng = 5;
    for (size_t i = 0; i < N * D; i++)
        base[i] = vs_test_randf(&rng);
    for (size_t i = 0; i < NQ * D; i++)
        queries[i] = vs_test_randf(&rng);
    RUN(test_idset);
    RUN(test_every_index_type);
    RUN(test_near_exclusions);
    RUN(test_fresh_items);
    return vs_test_finish();
}
