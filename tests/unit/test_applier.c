/* test_applier: write-log messages applied to a replica's fresh state (shard/server/applier.h), no network.
 * Hash partitions keep their own ids only; cluster partitions keep upserts whose list they own and hide
 * ids that moved elsewhere; writes from another embedding model are skipped; malformed messages (bytes
 * that do not decode, an unknown operation, a wrong dimension, NaN, an id twice) are rejected whole;
 * a message that does not fit the fresh capacity is refused whole. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/hash.h"
#include "shard/index/fresh.h"
#include "shard/index/index.h"
#include "shard/server/applier.h"
#include "tests/support/version_fixture.h"
#include "tests/testlib.h"
#include "vecshard/v1/writelog.pb-c.h"

#define N 2000
#define D 16

static float base[N * D];

static vs_status apply(vs_fresh_t *f, const vs_applier_scope_t *sc, int op, const int64_t *ids, size_t n,
                       const float *x, const char *model, vs_applier_counts_t *c, char *err)
{
    size_t len;
    uint8_t *m = vs_test_log_write(op, ids, n, x, D, model ? model : "m1", "t", &len);
    vs_status st = vs_applier_apply(f, sc, m, len, c, err);
    free(m);
    return st;
}

/* 1 when a search with query q (nprobe all) returns id first. */
static int found_first(vs_fresh_t *f, const float *q, int64_t id)
{
    char err[VS_ERR_LEN];
    vs_search_params_t p = {.nprobe = 16, .k_factor = 8};
    float d[3];
    int64_t got[3];
    CHECK(vs_fresh_search(f, 1, q, 3, &p, 1, d, got, err) == VS_OK);
    return got[0] == id;
}

static int returned(vs_fresh_t *f, const float *q, int64_t id)
{
    char err[VS_ERR_LEN];
    vs_search_params_t p = {.nprobe = 16, .k_factor = 8};
    float d[10];
    int64_t got[10];
    CHECK(vs_fresh_search(f, 1, q, 10, &p, 1, d, got, err) == VS_OK);
    for (int i = 0; i < 10; i++)
        if (got[i] == id)
            return 1;
    return 0;
}

/* Partition 0 of 2 by hash: the base rows whose id hashes to 0. */
static vs_index_t *hash_partition0(void)
{
    char err[VS_ERR_LEN];
    vs_index_t *idx;
    CHECK(vs_index_create(D, VS_METRIC_L2, "IVF16,PQ8x4fs,RFlat", &idx, err) == VS_OK);
    CHECK(vs_index_train(idx, N, base, 1, NULL, err) == VS_OK);
    float *x = malloc(N * D * sizeof *x);
    int64_t *ids = malloc(N * sizeof *ids);
    size_t n = 0;
    for (size_t i = 0; i < N; i++)
        if (vs_hash_partition((int64_t)i, 2) == 0) {
            memcpy(x + n * D, base + i * D, D * sizeof *x);
            ids[n++] = (int64_t)i;
        }
    CHECK(vs_index_add(idx, n, x, ids, 1, NULL, err) == VS_OK);
    free(x);
    free(ids);
    return idx;
}

static int64_t id_in(uint32_t partition, int64_t from)
{
    while (vs_hash_partition(from, 2) != partition)
        from++;
    return from;
}

static void test_hash_ownership_and_model(void)
{
    char err[VS_ERR_LEN];
    vs_index_t *idx = hash_partition0();
    vs_fresh_t *f;
    CHECK(vs_fresh_create(idx, 100, &f, err) == VS_OK);
    vs_applier_scope_t sc = {.partition = 0, .n_partitions = 2, .model_version = "m1", .dim = D};
    vs_applier_counts_t c = {0};
    int64_t mine = id_in(0, 100000), other = id_in(1, 100000);
    int64_t ids[2] = {mine, other};
    float x[2 * D];
    memcpy(x, base + 7 * D, D * sizeof(float));
    memcpy(x + D, base + 9 * D, D * sizeof(float));
    CHECKF(apply(f, &sc, VECSHARD__V1__LOG_WRITE__OP__OP_UPSERT, ids, 2, x, "m1", &c, err) == VS_OK, "%s",
           err);
    CHECK(c.upserted == 1 && c.not_owned == 1);
    CHECK(returned(f, base + 7 * D, mine) && !returned(f, base + 9 * D, other));
    /* another model's vectors are not served by this version */
    int64_t late = id_in(0, 200000);
    CHECK(apply(f, &sc, VECSHARD__V1__LOG_WRITE__OP__OP_UPSERT, &late, 1, base + 11 * D, "m2", &c, err) ==
          VS_OK);
    CHECK(c.other_model == 1 && !returned(f, base + 11 * D, late));
    /* another model with another dimension (a migration): skipped as another model, not rejected */
    float wide[D + 8] = {0};
    uint8_t *mw;
    size_t lw;
    mw = vs_test_log_write(VECSHARD__V1__LOG_WRITE__OP__OP_UPSERT, &late, 1, wide, D + 8, "m2", "t", &lw);
    CHECK(vs_applier_apply(f, &sc, mw, lw, &c, err) == VS_OK && c.other_model == 2 && c.rejected == 0);
    free(mw);
    /* a delete of an owned base id hides it; of another partition's id is skipped */
    int64_t b0 = id_in(0, 0), b1 = id_in(1, 0);
    CHECK(returned(f, base + b0 * D, b0));
    int64_t del[2] = {b0, b1};
    CHECK(apply(f, &sc, VECSHARD__V1__LOG_WRITE__OP__OP_DELETE, del, 2, NULL, "", &c, err) == VS_OK);
    CHECK(c.deleted == 1 && c.not_owned == 2 && !returned(f, base + b0 * D, b0));
    vs_fresh_destroy(f);
    vs_index_destroy(idx);
}

static void test_rejected_whole(void)
{
    char err[VS_ERR_LEN];
    vs_index_t *idx = hash_partition0();
    vs_fresh_t *f;
    CHECK(vs_fresh_create(idx, 100, &f, err) == VS_OK);
    vs_applier_scope_t sc = {.partition = 0, .n_partitions = 2, .model_version = "m1", .dim = D};
    vs_applier_counts_t c = {0};
    uint8_t junk[7] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    CHECK(vs_applier_apply(f, &sc, junk, sizeof junk, &c, err) == VS_ERR_CORRUPT);
    int64_t a = id_in(0, 300000), b = id_in(0, a + 1);
    int64_t two[2] = {a, b}, twice[2] = {a, a};
    float x[2 * D];
    memcpy(x, base, sizeof x);
    CHECK(apply(f, &sc, 3, two, 2, x, "m1", &c, err) == VS_ERR_CORRUPT); /* unknown operation */
    CHECK(apply(f, &sc, VECSHARD__V1__LOG_WRITE__OP__OP_UPSERT, twice, 2, x, "m1", &c, err) ==
          VS_ERR_CORRUPT);
    CHECKF(strstr(err, "twice") != NULL, "%s", err);
    x[D + 2] = NAN;
    CHECK(apply(f, &sc, VECSHARD__V1__LOG_WRITE__OP__OP_UPSERT, two, 2, x, "m1", &c, err) == VS_ERR_CORRUPT);
    x[D + 2] = 0;
    vs_applier_scope_t wrong = sc;
    wrong.dim = D + 1;
    CHECK(apply(f, &wrong, VECSHARD__V1__LOG_WRITE__OP__OP_UPSERT, two, 2, x, "m1", &c, err) ==
          VS_ERR_CORRUPT);
    CHECKF(c.rejected == 5, "%llu rejected", (unsigned long long)c.rejected);
    vs_fresh_stats_t s;
    vs_fresh_stats(f, &s);
    CHECK(s.ids == 0 && s.records == 0 && c.upserted == 0);
    vs_fresh_destroy(f);
    vs_index_destroy(idx);
}

static void test_cluster_moves_and_capacity(void)
{
    char err[VS_ERR_LEN];
    /* cluster partitioning: one index of every row, lists 0-7 owned by partition 0, 8-15 by partition 1 */
    vs_index_t *idx;
    CHECK(vs_index_create(D, VS_METRIC_L2, "IVF16,PQ8x4fs,RFlat", &idx, err) == VS_OK);
    CHECK(vs_index_train(idx, N, base, 1, NULL, err) == VS_OK);
    CHECK(vs_index_add(idx, N, base, NULL, 1, NULL, err) == VS_OK);
    uint32_t owner[16];
    for (int l = 0; l < 16; l++)
        owner[l] = l < 8 ? 0 : 1;
    vs_fresh_t *f;
    CHECK(vs_fresh_create(idx, 3, &f, err) == VS_OK);
    vs_applier_scope_t sc = {
        .partition = 0, .n_partitions = 2, .list_partition = owner, .nlist = 16, .dim = D};
    /* find a row whose list is partition 1's and one whose list is partition 0's */
    int32_t lists[N];
    CHECK(vs_fresh_assign(f, N, base, lists, err) == VS_OK);
    int64_t away = -1, here = -1;
    for (int64_t i = 0; i < N && (away < 0 || here < 0); i++) {
        if (lists[i] >= 8 && away < 0)
            away = i;
        if (lists[i] < 8 && here < 0)
            here = i;
    }
    CHECK(away >= 0 && here >= 0);
    /* row `here` keeps its id but moves to where row `away` is: partition 1's list, so hidden here */
    vs_applier_counts_t c = {0};
    CHECK(returned(f, base + here * D, here));
    CHECK(apply(f, &sc, VECSHARD__V1__LOG_WRITE__OP__OP_UPSERT, &here, 1, base + away * D, "", &c, err) ==
          VS_OK);
    CHECK(c.deleted == 1 && c.upserted == 0 && !returned(f, base + here * D, here) &&
          !returned(f, base + away * D, here));
    /* row `away` moves into partition 0's list: stored here */
    CHECK(apply(f, &sc, VECSHARD__V1__LOG_WRITE__OP__OP_UPSERT, &away, 1, base + here * D, "", &c, err) ==
          VS_OK);
    CHECK(c.upserted == 1 && found_first(f, base + here * D, away));
    /* capacity 3, 2 used: a message with one upsert here and one move away is refused whole */
    int64_t pair[2] = {5000, 5001};
    float x[2 * D];
    memcpy(x, base + here * D, D * sizeof(float));
    memcpy(x + D, base + away * D, D * sizeof(float));
    CHECK(apply(f, &sc, VECSHARD__V1__LOG_WRITE__OP__OP_UPSERT, pair, 2, x, "", &c, err) ==
          VS_ERR_RESOURCE_EXHAUSTED);
    vs_fresh_stats_t s;
    vs_fresh_stats(f, &s);
    CHECK(s.ids == 2 && !returned(f, base + here * D, 5000));
    vs_fresh_destroy(f);
    vs_index_destroy(idx);
}

int main(void)
{
    vs_test_clustered(base, N, D, 24, 0.3f, 5, 6);
    RUN(test_hash_ownership_and_model);
    RUN(test_rejected_whole);
    RUN(test_cluster_moves_and_capacity);
    return vs_test_finish();
}
