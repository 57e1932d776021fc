/* test_fresh: writes since a version was built (shard/index/fresh.h) without a network.
 * - An empty fresh state answers exactly as the index.
 * - After upserts (new ids, replacements of base ids, replacements of fresh ids) and deletes, a search
 *   returns no deleted or superseded copy, and answers as an index rebuilt from scratch over the live
 *   items does: the same ids for IVF-Flat (exact distances), at least its recall (-0.01) against exact
 *   search over the live items for the PQ codecs (their scan sums are the same; only ties at the cut
 *   may fall the other way), for every metric. Lists chosen by the caller (the coordinator's path) give the
 * same.
 * - HNSW versions: the same writes, searched through the base graph (written ids skipped, still
 *   traversed) and the fresh graph, merged: no dead id, no id twice, recall within 0.02 of a graph
 *   rebuilt over the live items, for L2 and cosine, float and SQ8 bases.
 * - Capacity is counted in distinct ids and a write that would pass it is refused whole; bad input is
 *   refused whole; Flat is refused; an HNSW version's graph holds at most twice the capacity in copies.
 * - Rewriting the same ids over and over compacts the lists: records stay within twice the live ones
 *   (plus a small constant per list), and answers stay those of a rebuild over the live items.
 * - Concurrent searches while one thread writes (run under ThreadSanitizer in CI), the writes compacting
 *   lists under the readers: no duplicate id, no deleted id, and an id never written again is found by
 *   its own vector in every search.
 * - The id map: every id put is found with its value and ids never put are not, while its filter grows
 *   from 4,096 ids to 100,000 with a reader looking up every id put so far (a filter swap never hides
 *   an id). */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/topk.h"
#include "shard/index/flat.h"
#include "shard/index/fresh.h"
#include "shard/index/idmap.h"
#include "shard/index/index.h"
#include "shard/index/ivf.h"
#include "tests/testlib.h"

#define N 3000
#define D 16
#define NQ 60
#define K 10
#define NEW 400   /* new ids */
#define REPL 150  /* base ids replaced by new vectors */
#define DEL 200   /* base ids deleted */
#define REREPL 50 /* new ids replaced again */
#define NLIST 16

static float base[N * D], queries[NQ * D], newv[(NEW + REPL + REREPL) * D];

static int64_t base_id(size_t i)
{
    return 1000000 + (int64_t)i * 3;
}

static vs_index_t *build(const char *factory, vs_metric metric, size_t n, const float *x, const int64_t *ids,
                         const vs_index_t *trained)
{
    char err[VS_ERR_LEN];
    vs_index_t *idx = NULL;
    if (trained) {
        CHECK(vs_index_clone_empty(trained, &idx, err) == VS_OK);
    } else {
        CHECK(vs_index_create(D, metric, factory, &idx, err) == VS_OK);
        CHECK(vs_index_train(idx, N, base, 1, NULL, err) == VS_OK);
    }
    CHECKF(vs_index_add(idx, n, x, ids, 1, NULL, err) == VS_OK, "%s", err);
    return idx;
}

/* An index of the N base rows with their base ids. */
static vs_index_t *build_base(const char *factory, vs_metric metric)
{
    int64_t *ids = malloc(N * sizeof *ids);
    for (size_t i = 0; i < N; i++)
        ids[i] = base_id(i);
    vs_index_t *idx = build(factory, metric, N, base, ids, NULL);
    free(ids);
    return idx;
}

/* Exact top-K over the live items (brute force), for recall. */
static void exact(vs_metric metric, size_t n, const float *x, const int64_t *ids, int64_t *out)
{
    char err[VS_ERR_LEN];
    vs_index_t *flat;
    CHECK(vs_index_create(D, metric, "Flat", &flat, err) == VS_OK);
    CHECK(vs_index_add(flat, n, x, ids, 1, NULL, err) == VS_OK);
    float *dist = malloc(NQ * K * sizeof *dist);
    CHECK(vs_index_search(flat, NQ, queries, K, NULL, 1, dist, out, err) == VS_OK);
    free(dist);
    vs_index_destroy(flat);
}

static double recall(const int64_t *got, const int64_t *gt)
{
    return vs_test_recall(got, K, gt, K, NQ, K);
}

static int contains(const int64_t *ids, size_t n, int64_t id)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] == id)
            return 1;
    return 0;
}

static void test_empty_is_the_index(void)
{
    const char *factories[] = {"IVF16,Flat", "IVF16,PQ8", "IVF16,PQ8x4fs,RFlat", "IVF16,PQ4x4fs,RSQ8"};
    char err[VS_ERR_LEN];
    for (size_t f = 0; f < 4; f++) {
        vs_index_t *idx = build_base(factories[f], VS_METRIC_L2);
        vs_fresh_t *fr;
        CHECK(vs_fresh_create(idx, 1000, &fr, err) == VS_OK);
        vs_search_params_t p = {.nprobe = 4, .k_factor = strstr(factories[f], ",R") ? 4 : 0};
        float d1[NQ * K], d2[NQ * K];
        int64_t i1[NQ * K], i2[NQ * K];
        CHECK(vs_index_search(idx, NQ, queries, K, &p, 1, d1, i1, err) == VS_OK);
        CHECK(vs_fresh_search(fr, NQ, queries, K, &p, 1, d2, i2, err) == VS_OK);
        CHECKF(memcmp(i1, i2, sizeof i1) == 0 && memcmp(d1, d2, sizeof d1) == 0, "%s", factories[f]);
        vs_fresh_destroy(fr);
        vs_index_destroy(idx);
    }
}

/* Applies the writes to a fresh state over idx, checks its counts, and builds the live set (ids, vectors)
 * they leave. */
static void apply_writes(vs_fresh_t *fr, int64_t *live_ids, float *live_x, size_t *n_live, int64_t *dead,
                         size_t *n_dead)
{
    char err[VS_ERR_LEN];
    int64_t ids[NEW + REPL + REREPL];
    /* new ids, then replacements of base ids 0..REPL-1 (every 7th), in one call */
    for (size_t i = 0; i < NEW; i++)
        ids[i] = 5000000 + (int64_t)i;
    for (size_t i = 0; i < REPL; i++)
        ids[NEW + i] = base_id(i * 7);
    CHECKF(vs_fresh_upsert(fr, NEW + REPL, ids, newv, err) == VS_OK, "%s", err);
    /* deletes of other base ids (every 4th from row 2000: none of them replaced) */
    int64_t del[DEL];
    for (size_t i = 0; i < DEL; i++)
        del[i] = base_id(2000 + i * 4);
    CHECKF(vs_fresh_delete(fr, DEL, del, err) == VS_OK, "%s", err);
    /* new ids replaced again */
    int64_t rr[REREPL];
    for (size_t i = 0; i < REREPL; i++)
        rr[i] = 5000000 + (int64_t)(i * 3);
    CHECKF(vs_fresh_upsert(fr, REREPL, rr, newv + (NEW + REPL) * D, err) == VS_OK, "%s", err);

    /* the live set: base minus replaced and deleted, plus the latest vector of every new or replaced id */
    size_t n = 0, nd = 0;
    for (size_t i = 0; i < N; i++) {
        int64_t id = base_id(i);
        if (i % 7 == 0 && i / 7 < REPL)
            continue; /* replaced: live with its new vector (below) */
        if (i >= 2000 && i % 4 == 0 && (i - 2000) / 4 < DEL) {
            dead[nd++] = id;
            continue;
        }
        live_ids[n] = id;
        memcpy(live_x + n * D, base + i * D, D * sizeof(float));
        n++;
    }
    for (size_t i = 0; i < NEW + REPL; i++) {
        const float *v = newv + i * D;
        if (i < NEW && i % 3 == 0 && i / 3 < REREPL)
            v = newv + (NEW + REPL + i / 3) * D;
        live_ids[n] = ids[i];
        memcpy(live_x + n * D, v, D * sizeof(float));
        n++;
    }
    *n_live = n;
    *n_dead = nd;
    vs_fresh_stats_t stt;
    vs_fresh_stats(fr, &stt);
    CHECKF(stt.ids == NEW + REPL + DEL && stt.records == NEW + REPL + REREPL && stt.live == NEW + REPL &&
               stt.deleted == DEL,
           "stats: %zu ids, %zu records, %zu live, %zu deleted", stt.ids, stt.records, stt.live, stt.deleted);
}

static void test_writes_match_a_rebuild(void)
{
    const char *factories[] = {"IVF16,Flat", "IVF16,PQ8", "IVF16,PQ8x4fs", "IVF16,PQ8x4fs,RFlat",
                               "IVF16,PQ4x4fs,RSQ8"};
    vs_metric metrics[] = {VS_METRIC_L2, VS_METRIC_IP, VS_METRIC_COSINE};
    char err[VS_ERR_LEN];
    int64_t *live_ids = malloc((N + NEW + REPL) * sizeof *live_ids), *dead = malloc(N * sizeof *dead);
    float *live_x = malloc((N + NEW + REPL) * D * sizeof *live_x);
    for (size_t f = 0; f < sizeof factories / sizeof *factories; f++)
        for (size_t m = 0; m < 3; m++) {
            vs_index_t *idx = build_base(factories[f], metrics[m]);
            vs_fresh_t *fr;
            CHECK(vs_fresh_create(idx, 2000, &fr, err) == VS_OK);
            size_t n_live, n_dead;
            apply_writes(fr, live_ids, live_x, &n_live, dead, &n_dead);
            vs_index_t *rebuilt = build(factories[f], metrics[m], n_live, live_x, live_ids, idx);
            int64_t gt[NQ * K];
            exact(metrics[m], n_live, live_x, live_ids, gt);

            vs_search_params_t p = {.nprobe = 6, .k_factor = strstr(factories[f], ",R") ? 8 : 0};
            float d1[NQ * K], d2[NQ * K];
            int64_t i1[NQ * K], i2[NQ * K];
            CHECKF(vs_fresh_search(fr, NQ, queries, K, &p, 1, d1, i1, err) == VS_OK, "%s", err);
            CHECK(vs_index_search(rebuilt, NQ, queries, K, &p, 1, d2, i2, err) == VS_OK);
            /* nothing dead, and a replaced id comes back with its new vector's distance */
            int bad = 0;
            for (size_t i = 0; i < NQ * K; i++) {
                if (i1[i] < 0)
                    continue;
                for (size_t j = 0; j < n_dead; j++)
                    if (dead[j] == i1[i])
                        bad++;
            }
            CHECKF(bad == 0, "%s %s: %d deleted ids returned", factories[f], vs_metric_name(metrics[m]), bad);
            for (size_t qi = 0; qi < NQ; qi++) { /* no id twice in one answer */
                for (size_t a = 0; a < K; a++)
                    for (size_t b = a + 1; b < K; b++)
                        if (i1[qi * K + a] >= 0 && i1[qi * K + a] == i1[qi * K + b])
                            bad++;
            }
            CHECKF(bad == 0, "%s: duplicate ids", factories[f]);
            if (strcmp(factories[f], "IVF16,Flat") == 0) {
                CHECKF(memcmp(i1, i2, sizeof i1) == 0, "%s %s: ids differ from the rebuilt index",
                       factories[f], vs_metric_name(metrics[m]));
                int close = 1;
                for (size_t i = 0; i < NQ * K; i++)
                    close &= fabsf(d1[i] - d2[i]) <= 1e-4f * (1.0f + fabsf(d2[i]));
                CHECKF(close, "%s %s: distances differ", factories[f], vs_metric_name(metrics[m]));
            }
            /* not worse than the rebuild (ties at the cut of a coarse PQ may fall either way) */
            double r1 = recall(i1, gt), r2 = recall(i2, gt);
            CHECKF(r1 >= r2 - 0.01 && r1 <= r2 + 0.03 && r1 > 0.2,
                   "%s %s: recall %.4f with fresh writes, %.4f rebuilt", factories[f],
                   vs_metric_name(metrics[m]), r1, r2);
            /* the coordinator's path: lists chosen outside give the same answers */
            int32_t lists[NQ * 6];
            const struct vs_ivf *ivf = vs_index_impl_ivf(idx);
            for (size_t qi = 0; qi < NQ; qi++)
                CHECK(vs_ivf_probe(ivf, queries + qi * D, 6, 0, lists + qi * 6, err) == VS_OK);
            float d3[NQ * K];
            int64_t i3[NQ * K];
            CHECKF(vs_fresh_search_lists(fr, NQ, queries, K, lists, 6, 8, NULL, 1, d3, i3, err) == VS_OK,
                   "%s", err);
            CHECKF(memcmp(i1, i3, sizeof i1) == 0, "%s: search_lists differs", factories[f]);
            vs_index_destroy(rebuilt);
            vs_fresh_destroy(fr);
            vs_index_destroy(idx);
        }
    free(live_ids);
    free(live_x);
    free(dead);
}

/* A replaced base id is found by its new vector: searching with the new vector itself returns it first. */
static void test_replacement_is_found_by_its_new_vector(void)
{
    char err[VS_ERR_LEN];
    vs_index_t *idx = build_base("IVF16,PQ8x4fs,RFlat", VS_METRIC_L2);
    vs_fresh_t *fr;
    CHECK(vs_fresh_create(idx, 100, &fr, err) == VS_OK);
    int64_t id = base_id(42);
    CHECK(vs_fresh_upsert(fr, 1, &id, base + 2000 * D, err) == VS_OK); /* id 42 now sits where row 2000 is */
    vs_search_params_t p = {.nprobe = NLIST, .k_factor = 16};
    float d[2];
    int64_t got[2];
    CHECK(vs_fresh_search(fr, 1, base + 2000 * D, 2, &p, 1, d, got, err) == VS_OK);
    CHECKF((got[0] == id || got[1] == id) && d[0] < 1e-4f, "ids %lld %lld", (long long)got[0],
           (long long)got[1]);
    CHECK(vs_fresh_search(fr, 1, base + 42 * D, 1, &p, 1, d, got, err) == VS_OK); /* its old place */
    CHECKF(got[0] != id, "the superseded copy of %lld was returned", (long long)id);
    CHECK(vs_fresh_delete(fr, 1, &id, err) == VS_OK);
    CHECK(vs_fresh_search(fr, 1, base + 2000 * D, 2, &p, 1, d, got, err) == VS_OK);
    CHECK(got[0] != id && got[1] != id);
    vs_fresh_destroy(fr);
    vs_index_destroy(idx);
}

/* With only deletes written (no fresh candidate ever) and fewer than k items in the probed lists, a
 * search without refine wrote k + 16 results into a k-slot answer (found by review; ASan in CI). The
 * answers of a batch must stay in their own slots: each query's k results, padded, nothing beyond. */
static void test_small_lists_large_k_after_deletes(void)
{
    char err[VS_ERR_LEN];
    vs_index_t *idx = build_base("IVF16,Flat", VS_METRIC_L2);
    vs_fresh_t *fr;
    CHECK(vs_fresh_create(idx, 10, &fr, err) == VS_OK);
    int64_t gone = base_id(0);
    CHECK(vs_fresh_delete(fr, 1, &gone, err) == VS_OK);
    enum { KK = 1000, Q = 2 };
    vs_search_params_t p = {.nprobe = 1};
    float *d = malloc((Q * KK + 1) * sizeof *d);
    int64_t *ids = malloc((Q * KK + 1) * sizeof *ids);
    ids[Q * KK] = 4242; /* a sentinel past the answer */
    CHECKF(vs_fresh_search(fr, Q, queries, KK, &p, 1, d, ids, err) == VS_OK, "%s", err);
    CHECK(ids[Q * KK] == 4242);
    vs_search_params_t p2 = {.nprobe = 1};
    float *d2 = malloc(Q * KK * sizeof *d2);
    int64_t *i2 = malloc(Q * KK * sizeof *i2);
    CHECK(vs_index_search(idx, Q, queries, KK, &p2, 1, d2, i2, err) == VS_OK);
    for (size_t qi = 0; qi < Q; qi++) { /* the same answers minus the deleted id, in their own slots */
        size_t a = 0;
        for (size_t j = 0; j < KK; j++)
            if (i2[qi * KK + j] != gone)
                CHECK(ids[qi * KK + a++] == i2[qi * KK + j]);
    }
    free(d);
    free(ids);
    free(d2);
    free(i2);
    vs_fresh_destroy(fr);
    vs_index_destroy(idx);
}

static void test_capacity_and_bad_input(void)
{
    char err[VS_ERR_LEN];
    vs_index_t *idx = build_base("IVF16,PQ8x4fs,RSQ8", VS_METRIC_L2);
    vs_fresh_t *fr;
    CHECK(vs_fresh_create(idx, 10, &fr, err) == VS_OK);
    int64_t w[11];
    for (int i = 0; i < 11; i++)
        w[i] = 7000000 + i;
    CHECK(vs_fresh_upsert(fr, 11, w, newv, err) == VS_ERR_RESOURCE_EXHAUSTED);
    CHECKF(strstr(err, "capacity") != NULL, "%s", err);
    vs_fresh_stats_t st;
    vs_fresh_stats(fr, &st);
    CHECK(st.ids == 0 && st.records == 0 && st.live == 0);
    int64_t twice[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 10, 1}; /* 10 distinct: fits */
    CHECKF(vs_fresh_upsert(fr, 12, twice, newv, err) == VS_OK, "%s", err);
    vs_fresh_stats(fr, &st);
    CHECK(st.ids == 10 && st.records == 12 && st.live == 10);
    int64_t again[3] = {1, 2, 3}; /* known ids: no new capacity needed */
    CHECK(vs_fresh_delete(fr, 3, again, err) == VS_OK);
    int64_t one_more = 11;
    CHECK(vs_fresh_delete(fr, 1, &one_more, err) == VS_ERR_RESOURCE_EXHAUSTED);
    /* bad input changes nothing */
    float bad[2 * D];
    memcpy(bad, newv, sizeof bad);
    bad[D + 3] = NAN;
    int64_t two[2] = {4, 5};
    CHECK(vs_fresh_upsert(fr, 2, two, bad, err) == VS_ERR_INVALID_ARGUMENT);
    CHECKF(strstr(err, "1") != NULL, "%s", err);
    int32_t far[2] = {0, NLIST}; /* a list past nlist: refused, nothing written */
    CHECK(vs_fresh_upsert_lists(fr, 2, two, newv, far, err) == VS_ERR_OUT_OF_RANGE);
    int64_t neg[2] = {4, -3};
    CHECK(vs_fresh_upsert(fr, 2, neg, newv, err) == VS_ERR_INVALID_ARGUMENT);
    CHECK(vs_fresh_delete(fr, 2, neg, err) == VS_ERR_INVALID_ARGUMENT);
    vs_fresh_stats(fr, &st);
    CHECK(st.ids == 10 && st.records == 12 && st.live == 7 && st.deleted == 3);
    vs_search_params_t p = {.ef_search = 16};
    float d[K];
    int64_t got[K];
    CHECK(vs_fresh_search(fr, 1, queries, K, &p, 1, d, got, err) == VS_ERR_INVALID_ARGUMENT);
    vs_fresh_destroy(fr);
    vs_index_destroy(idx);

    vs_index_t *h;
    CHECK(vs_index_create(D, VS_METRIC_L2, "Flat", &h, err) == VS_OK);
    CHECK(vs_index_add(h, 100, base, NULL, 1, NULL, err) == VS_OK);
    CHECK(vs_fresh_create(h, 10, &fr, err) == VS_ERR_UNSUPPORTED);
    vs_index_destroy(h);
    /* HNSW: every upsert is a node; superseded ones stay until the next version, up to 2x the capacity */
    CHECK(vs_index_create(D, VS_METRIC_L2, "HNSW8", &h, err) == VS_OK);
    CHECK(vs_index_add(h, 100, base, NULL, 1, NULL, err) == VS_OK);
    CHECK(vs_fresh_create(h, 4, &fr, err) == VS_OK);
    int64_t four[4] = {1, 2, 3, 4};
    CHECK(vs_fresh_upsert(fr, 4, four, newv, err) == VS_OK);
    CHECK(vs_fresh_upsert(fr, 4, four, newv + 4 * D, err) == VS_OK);
    CHECK(vs_fresh_upsert(fr, 1, four, newv, err) == VS_ERR_RESOURCE_EXHAUSTED);
    CHECKF(strstr(err, "twice") != NULL, "%s", err);
    CHECK(vs_fresh_delete(fr, 4, four, err) == VS_OK); /* deletes take no node */
    vs_fresh_stats(fr, &st);
    CHECK(st.records == 8 && st.live == 0 && st.deleted == 4 && st.used == 4);
    int32_t l2[1] = {0};
    CHECK(vs_fresh_upsert_lists(fr, 1, four, newv, l2, err) == VS_ERR_UNSUPPORTED);
    vs_fresh_destroy(fr);
    vs_index_destroy(h);
}

/* ---- concurrent readers and one writer ---------------------------------------------------------- */

/* 200 ids rewritten 20 times (vectors rotating through newv): lists are compacted as they fill with
 * superseded records, memory follows the live items, and the answers are a rebuild's (IVF-Flat: the same
 * ids) through both search paths. */
static void test_compaction(void)
{
    enum { IDS = 200, ROUNDS = 20 };
    char err[VS_ERR_LEN];
    const char *factories[] = {"IVF16,Flat", "IVF16,PQ8x4fs,RFlat"};
    for (size_t f = 0; f < 2; f++) {
        vs_index_t *idx = build_base(factories[f], VS_METRIC_L2);
        vs_fresh_t *fr;
        CHECK(vs_fresh_create(idx, 1000, &fr, err) == VS_OK);
        int64_t ids[IDS];
        for (size_t i = 0; i < IDS; i++)
            ids[i] = i % 2 ? base_id(i) : 9000000 + (int64_t)i; /* half replace base rows, half are new */
        float x[IDS * D];
        size_t max_records = 0;
        for (int r = 0; r < ROUNDS; r++) {
            for (size_t i = 0; i < IDS; i++)
                memcpy(x + i * D, newv + ((i + (size_t)r * 37) % (NEW + REPL + REREPL)) * D,
                       D * sizeof(float));
            /* in batches of 25, so that compaction also runs between writes of one round */
            for (size_t b = 0; b < IDS; b += 25)
                CHECKF(vs_fresh_upsert(fr, 25, ids + b, x + b * D, err) == VS_OK, "%s", err);
            vs_fresh_stats_t st;
            vs_fresh_stats(fr, &st);
            CHECKF(st.live == IDS && st.ids == IDS, "round %d: %zu live, %zu ids", r, st.live, st.ids);
            if (st.records > max_records)
                max_records = st.records;
        }
        vs_fresh_stats_t st;
        vs_fresh_stats(fr, &st);
        /* a list is rewritten once half of it and at least 32 records are dead */
        CHECKF(st.compactions > 0 && max_records <= 2 * IDS + 32 * NLIST,
               "%s: %zu compactions, up to %zu records for %d live (%d written)", factories[f],
               st.compactions, max_records, IDS, IDS * ROUNDS);
        /* the live set: the base minus the odd rows replaced, plus the last round's vectors */
        int64_t *live_ids = malloc((N + IDS) * sizeof *live_ids);
        float *live_x = malloc((N + IDS) * D * sizeof *live_x);
        size_t n = 0;
        for (size_t i = 0; i < N; i++)
            if (!(i < IDS && i % 2)) {
                live_ids[n] = base_id(i);
                memcpy(live_x + n * D, base + i * D, D * sizeof(float));
                n++;
            }
        memcpy(live_ids + n, ids, sizeof ids);
        memcpy(live_x + n * D, x, sizeof x);
        n += IDS;
        vs_index_t *rebuilt = build(factories[f], VS_METRIC_L2, n, live_x, live_ids, idx);
        int64_t gt[NQ * K];
        exact(VS_METRIC_L2, n, live_x, live_ids, gt);
        vs_search_params_t p = {.nprobe = 6, .k_factor = f ? 8 : 0};
        float d1[NQ * K], d2[NQ * K], d3[NQ * K];
        int64_t i1[NQ * K], i2[NQ * K], i3[NQ * K];
        CHECKF(vs_fresh_search(fr, NQ, queries, K, &p, 1, d1, i1, err) == VS_OK, "%s", err);
        CHECK(vs_index_search(rebuilt, NQ, queries, K, &p, 1, d2, i2, err) == VS_OK);
        if (f == 0)
            CHECKF(memcmp(i1, i2, sizeof i1) == 0, "%s: ids differ from the rebuilt index", factories[f]);
        double r1 = recall(i1, gt), r2 = recall(i2, gt);
        CHECKF(r1 >= r2 - 0.01 && r1 > 0.2, "%s: recall %.4f after compactions, %.4f rebuilt", factories[f],
               r1, r2);
        int32_t lists[NQ * 6];
        const struct vs_ivf *ivf = vs_index_impl_ivf(idx);
        for (size_t qi = 0; qi < NQ; qi++)
            CHECK(vs_ivf_probe(ivf, queries + qi * D, 6, 0, lists + qi * 6, err) == VS_OK);
        CHECKF(vs_fresh_search_lists(fr, NQ, queries, K, lists, 6, 8, NULL, 1, d3, i3, err) == VS_OK, "%s",
               err);
        CHECKF(memcmp(i1, i3, sizeof i1) == 0, "%s: search_lists differs", factories[f]);
        /* deleting everything written leaves the base minus the replaced rows, and compacts to nothing */
        CHECK(vs_fresh_delete(fr, IDS, ids, err) == VS_OK);
        vs_fresh_stats(fr, &st);
        CHECKF(st.live == 0 && st.deleted == IDS && st.records <= 32 * NLIST, "%zu live, %zu records",
               st.live, st.records);
        CHECKF(vs_fresh_search(fr, NQ, queries, K, &p, 1, d1, i1, err) == VS_OK, "%s", err);
        for (size_t i = 0; i < NQ * K; i++)
            CHECKF(!contains(ids, IDS, i1[i]), "deleted id %lld returned", (long long)i1[i]);
        free(live_ids);
        free(live_x);
        vs_index_destroy(rebuilt);
        vs_fresh_destroy(fr);
        vs_index_destroy(idx);
    }
}

/* HNSW versions: apply_writes, then answers as a graph rebuilt over the live items would give. */
static void test_hnsw_writes(void)
{
    const char *factories[] = {"HNSW16", "HNSW16,SQ8"};
    vs_metric metrics[] = {VS_METRIC_L2, VS_METRIC_COSINE};
    char err[VS_ERR_LEN];
    int64_t *live_ids = malloc((N + NEW + REPL) * sizeof *live_ids), *dead = malloc(N * sizeof *dead);
    float *live_x = malloc((N + NEW + REPL) * D * sizeof *live_x);
    for (size_t f = 0; f < 2; f++)
        for (size_t m = 0; m < 2; m++) {
            vs_index_t *idx = build_base(factories[f], metrics[m]);
            vs_fresh_t *fr;
            CHECKF(vs_fresh_create(idx, 2000, &fr, err) == VS_OK, "%s", err);
            size_t n_live, n_dead;
            apply_writes(fr, live_ids, live_x, &n_live, dead, &n_dead);
            vs_index_t *rebuilt = build(factories[f], metrics[m], n_live, live_x, live_ids, NULL);
            int64_t gt[NQ * K];
            exact(metrics[m], n_live, live_x, live_ids, gt);
            vs_search_params_t p = {.ef_search = 32};
            float d1[NQ * K], d2[NQ * K];
            int64_t i1[NQ * K], i2[NQ * K];
            CHECKF(vs_fresh_search(fr, NQ, queries, K, &p, 1, d1, i1, err) == VS_OK, "%s", err);
            CHECK(vs_index_search(rebuilt, NQ, queries, K, &p, 1, d2, i2, err) == VS_OK);
            int bad = 0;
            for (size_t i = 0; i < NQ * K; i++)
                bad += i1[i] < 0 || contains(dead, n_dead, i1[i]);
            for (size_t qi = 0; qi < NQ; qi++)
                for (size_t a = 0; a < K; a++)
                    bad += contains(i1 + qi * K + a + 1, K - a - 1, i1[qi * K + a]);
            CHECKF(bad == 0, "%s %s: %d deleted, missing or repeated results", factories[f],
                   vs_metric_name(metrics[m]), bad);
            /* a replaced base id is found by its new vector, not its old one */
            float dd[K];
            int64_t got[K];
            CHECK(vs_fresh_search(fr, 1, newv + NEW * D, K, &p, 1, dd, got, err) == VS_OK);
            CHECKF(got[0] == base_id(0), "%s: the replaced id came back as %lld", factories[f],
                   (long long)got[0]);
            /* and not by its old one (its base copy is skipped, not just outranked by the new copy) */
            CHECK(vs_fresh_search(fr, 1, base, K, &p, 1, dd, got, err) == VS_OK);
            CHECKF(!contains(got, K, base_id(0)), "%s: the replaced id was found in its old place",
                   factories[f]);
            double r1 = recall(i1, gt), r2 = recall(i2, gt);
            CHECKF(r1 >= r2 - 0.02 && r1 > 0.5, "%s %s: recall %.4f with fresh writes, %.4f rebuilt",
                   factories[f], vs_metric_name(metrics[m]), r1, r2);
            int32_t lists[NQ];
            CHECK(vs_fresh_search_lists(fr, 1, queries, K, lists, 1, 0, NULL, 1, d1, i1, err) ==
                  VS_ERR_UNSUPPORTED);
            vs_index_destroy(rebuilt);
            vs_fresh_destroy(fr);
            vs_index_destroy(idx);
        }
    free(live_ids);
    free(live_x);
    free(dead);
}

typedef struct race {
    vs_fresh_t *fr;
    vs_search_params_t p;
    atomic_int stop;
    atomic_long searches, bad, missed;
} race_t;

#define STABLE 8000200 /* ids STABLE..STABLE+3 hold newv rows 300..303 and are never written again */

static void *reader(void *arg)
{
    race_t *r = arg;
    char err[VS_ERR_LEN];
    const vs_search_params_t p = r->p;
    float d[4 * K];
    int64_t got[4 * K];
    while (!atomic_load(&r->stop)) {
        for (size_t qi = 0; qi < 4; qi++)
            if (vs_fresh_search(r->fr, 1, newv + (300 + qi) * D, K, &p, 1, d, got, err) != VS_OK ||
                !contains(got, K, STABLE + (int64_t)qi))
                atomic_fetch_add(&r->missed, 1); /* a live item missing (its list compacted under us) */
        if (vs_fresh_search(r->fr, 4, newv, K, &p, 1, d, got, err) != VS_OK) {
            atomic_fetch_add(&r->bad, 1);
            continue;
        }
        for (size_t qi = 0; qi < 4; qi++)
            for (size_t a = 0; a < K; a++) {
                int64_t id = got[qi * K + a];
                if (id >= 8000000 && id < 8000000 + 100 && id % 2 == 1)
                    atomic_fetch_add(&r->bad, 1); /* odd ids were deleted before any reader started */
                if (id >= 0 && contains(got + qi * K + a + 1, K - a - 1, id))
                    atomic_fetch_add(&r->bad, 1); /* an id twice */
            }
        atomic_fetch_add(&r->searches, 1);
    }
    return NULL;
}

static size_t compactions(const vs_fresh_t *fr)
{
    vs_fresh_stats_t st;
    vs_fresh_stats(fr, &st);
    return st.compactions;
}

/* factory: the version's; IVF versions compact under the readers, HNSW ones swap their graph copies. */
static void concurrent_readers(const char *factory)
{
    char err[VS_ERR_LEN];
    const int hnsw = strncmp(factory, "HNSW", 4) == 0;
    vs_index_t *idx = build_base(factory, VS_METRIC_L2);
    race_t r = {0};
    r.p = hnsw ? (vs_search_params_t){.ef_search = 64} : (vs_search_params_t){.nprobe = 8, .k_factor = 4};
    CHECK(vs_fresh_create(idx, hnsw ? 20000 : 1000, &r.fr, err) == VS_OK); /* HNSW: room for 800 rounds */
    int64_t w[100];
    for (int i = 0; i < 100; i++)
        w[i] = 8000000 + i;
    CHECK(vs_fresh_upsert(r.fr, 100, w, newv, err) == VS_OK);
    int64_t odd[50];
    for (int i = 0; i < 50; i++)
        odd[i] = 8000000 + 2 * i + 1;
    CHECK(vs_fresh_delete(r.fr, 50, odd, err) == VS_OK);
    int64_t stable[4] = {STABLE, STABLE + 1, STABLE + 2, STABLE + 3};
    CHECK(vs_fresh_upsert(r.fr, 4, stable, newv + 300 * D, err) == VS_OK);
    pthread_t th[2];
    for (int t = 0; t < 2; t++)
        CHECK(pthread_create(&th[t], NULL, reader, &r) == 0);
    /* the writer: replaces the even ids over and over (their copies move between lists), so readers
     * race with records being written and ids being re-pointed */
    int64_t even[50];
    for (int i = 0; i < 50; i++)
        even[i] = 8000000 + 2 * i;
    /* until the readers have searched 300 times while the writer ran (bounded: 20 s under TSan) */
    int rounds = 0;
    int64_t until = vs_test_now_ms() + 20000;
    while (vs_test_now_ms() < until && (atomic_load(&r.searches) < 300 || rounds < 15 ||
                                        (hnsw ? rounds < 40 : compactions(r.fr) < 300))) {
        for (int i = 0; i < 50; i++) {
            CHECK(vs_fresh_upsert(r.fr, 1, &even[i], newv + ((size_t)(i + rounds * 7) % 400) * D, err) ==
                  VS_OK);
        }
        rounds++;
    }
    atomic_store(&r.stop, 1);
    for (int t = 0; t < 2; t++)
        pthread_join(th[t], NULL);
    vs_fresh_stats_t st;
    vs_fresh_stats(r.fr, &st);
    CHECKF(atomic_load(&r.bad) == 0 && atomic_load(&r.missed) == 0 && atomic_load(&r.searches) >= 300 &&
               (hnsw || st.compactions > 0),
           "%s: %ld bad and %ld missed of %ld searches (%d rounds, %zu compactions)", factory,
           atomic_load(&r.bad), atomic_load(&r.missed), atomic_load(&r.searches), rounds, st.compactions);
    vs_fresh_destroy(r.fr);
    vs_index_destroy(idx);
}

static void test_concurrent_readers(void)
{
    concurrent_readers("IVF16,PQ8x4fs,RFlat");
    concurrent_readers("HNSW16");
}

typedef struct map_race {
    vs_idmap_t *m;
    _Atomic long published; /* ids 0..published-1 are in the map */
    _Atomic int stop;
    _Atomic long missing, lookups;
} map_race_t;

static int64_t map_id(long i)
{
    return (int64_t)i * 7919 + 3;
}

static void *map_reader(void *arg)
{
    map_race_t *r = arg;
    uint64_t rng = 5;
    while (!atomic_load(&r->stop)) {
        long n = atomic_load(&r->published);
        if (n == 0)
            continue;
        long i = (long)(vs_test_rand(&rng) % (uint64_t)n);
        uint64_t v;
        if (!vs_idmap_get(r->m, map_id(i), &v) || v != (uint64_t)i * 3)
            atomic_fetch_add(&r->missing, 1);
        atomic_fetch_add(&r->lookups, 1);
    }
    return NULL;
}

static void test_idmap_filter(void)
{
    char err[VS_ERR_LEN];
    map_race_t r = {0};
    CHECK(vs_idmap_create(150000, &r.m, err) == VS_OK);
    size_t bytes0 = vs_idmap_memory_bytes(r.m);
    pthread_t th;
    CHECK(pthread_create(&th, NULL, map_reader, &r) == 0);
    const long n = 100000;
    for (long i = 0; i < n; i++) {
        CHECK(vs_idmap_put(r.m, map_id(i), (uint64_t)i * 3, err) == VS_OK);
        atomic_store(&r.published, i + 1);
        if (i + 1 == 4097 || i + 1 == 16385 || i + 1 == 65537) { /* just after a filter grew */
            long seen = atomic_load(&r.lookups);
            int64_t until = vs_test_now_ms() + 2000;
            while (atomic_load(&r.lookups) < seen + 2000 && vs_test_now_ms() < until)
                ; /* let the reader look up across the swap before the next puts */
        }
    }
    int64_t until = vs_test_now_ms() + 5000;
    while (atomic_load(&r.lookups) < 20000 && vs_test_now_ms() < until)
        vs_test_sleep_ms(1);
    atomic_store(&r.stop, 1);
    pthread_join(th, NULL);
    CHECKF(atomic_load(&r.missing) == 0 && atomic_load(&r.lookups) >= 20000, "%ld missing of %ld lookups",
           atomic_load(&r.missing), atomic_load(&r.lookups));
    long wrong = 0, found_absent = 0;
    for (long i = 0; i < n; i++) {
        uint64_t v;
        wrong += !vs_idmap_get(r.m, map_id(i), &v) || v != (uint64_t)i * 3;
        found_absent += vs_idmap_get(r.m, map_id(i) + 1, &v); /* never put */
    }
    CHECKF(wrong == 0 && found_absent == 0, "%ld wrong, %ld absent ids found", wrong, found_absent);
    CHECK(vs_idmap_count(r.m) == (size_t)n);
    CHECKF(vs_idmap_memory_bytes(r.m) > bytes0 + 100000 * 16 / 8, "the filter did not grow: %zu -> %zu bytes",
           bytes0, vs_idmap_memory_bytes(r.m));
    vs_idmap_destroy(r.m);
}

int main(void)
{
    uint64_t rng = 11;
    vs_test_clustered(base, N, D, 24, 0.3f, 5, 6);
    for (size_t i = 0; i < NQ; i++)
        for (size_t j = 0; j < D; j++)
            queries[i * D + j] = base[(i * 37 % N) * D + j] + 0.05f * vs_test_randf(&rng);
    vs_test_clustered(newv, NEW + REPL + REREPL, D, 24, 0.3f, 5, 7); /* same clusters, other points */
    RUN(test_empty_is_the_index);
    RUN(test_writes_match_a_rebuild);
    RUN(test_replacement_is_found_by_its_new_vector);
    RUN(test_small_lists_large_k_after_deletes);
    RUN(test_capacity_and_bad_input);
    RUN(test_compaction);
    RUN(test_hnsw_writes);
    RUN(test_concurrent_readers);
    RUN(test_idmap_filter);
    return vs_test_finish();
}
