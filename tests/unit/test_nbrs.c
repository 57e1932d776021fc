/* test_nbrs: the network-free half of `vecshard batch` (coordinator/nbrs/): the value codec (binary layout
 * byte by byte, padding dropped, JSON with scores that read back as the same float32, corrupt values
 * refused), key names and name validation, and the in-process version searcher: over IVF-Flat versions
 * built with nprobe = nlist (exact) in 1 and 3 hash partitions and 4 cluster partitions, its answers equal
 * the flat oracle's over the whole base; a partition file that is not the manifest's is refused. The Redis
 * half is tested against a real redis-server by tests/integration/test_batch_redis.py. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/crc32c.h"
#include "common/vecio.h"
#include "coordinator/nbrs/searcher.h"
#include "coordinator/nbrs/value.h"
#include "shard/builder/builder.h"
#include "shard/index/flat.h"
#include "shard/index/index.h"
#include "tests/testlib.h"

#define T "nbrs"
#define N 3000
#define D 12
#define NQ 40
#define K 7

static void test_value(void)
{
    const int64_t ids[5] = {42, 7, 1LL << 40, -1, -1};
    const float scores[5] = {0.5f, 1.25f, 3.0e-7f, 0, 0};
    uint8_t buf[1024];
    size_t n = vs_nbrs_value_encode(VS_NBRS_BINARY, "s1", 0, ids, scores, 5, buf);
    CHECK(n == VS_NBRS_HEADER_BYTES + 3 * 12 && n <= vs_nbrs_value_max_bytes(VS_NBRS_BINARY, 5, 2));
    CHECK(memcmp(buf, "VSN1", 4) == 0);
    uint32_t u;
    memcpy(&u, buf + 4, 4);
    CHECK(u == 3);
    memcpy(&u, buf + 8, 4);
    CHECK(u == vs_crc32c(0, "s1", 2) && u == vs_nbrs_set_tag("s1"));
    int64_t id1;
    memcpy(&id1, buf + 16 + 8, 8);
    CHECK(id1 == 7);
    vs_nbrs_value_t v;
    char err[VS_ERR_LEN];
    CHECK(vs_nbrs_value_decode(buf, n, &v, err) == VS_OK && v.n == 3 && v.flags == 0);
    for (size_t i = 0; i < 3; i++)
        CHECK(vs_nbrs_value_id(&v, i) == ids[i] && vs_nbrs_value_score(&v, i) == scores[i]);
    CHECK(vs_nbrs_value_decode(buf, n - 1, &v, err) == VS_ERR_CORRUPT);
    CHECK(vs_nbrs_value_decode(buf, 10, &v, err) == VS_ERR_CORRUPT);
    buf[0] = 'X';
    CHECK(vs_nbrs_value_decode(buf, n, &v, err) == VS_ERR_CORRUPT);
    n = vs_nbrs_value_encode(VS_NBRS_BINARY, "s1", 1, ids, scores, 5, buf);
    CHECK(vs_nbrs_value_decode(buf, n, &v, err) == VS_OK && v.flags == VS_NBRS_FLAG_SIMILARITY);
    /* all padding: an empty answer */
    const int64_t none[2] = {-1, -1};
    n = vs_nbrs_value_encode(VS_NBRS_BINARY, "s1", 0, none, scores, 2, buf);
    CHECK(n == VS_NBRS_HEADER_BYTES && vs_nbrs_value_decode(buf, n, &v, err) == VS_OK && v.n == 0);

    /* JSON: scores print with 9 significant digits, enough to read back the same float32 */
    char json[1024];
    n = vs_nbrs_value_encode(VS_NBRS_JSON, "set-a", 0, ids, scores, 5, (uint8_t *)json);
    json[n] = 0;
    CHECK(n <= vs_nbrs_value_max_bytes(VS_NBRS_JSON, 5, 5));
    CHECKF(strcmp(json,
                  "{\"set\":\"set-a\",\"ids\":[42,7,1099511627776],\"scores\":[0.5,1.25,3.00000011e-07]}") ==
               0,
           "%s", json);
    CHECK(strtof("3.00000011e-07", NULL) == scores[2]);
    const float odd[2] = {INFINITY, 1.0f};
    n = vs_nbrs_value_encode(VS_NBRS_JSON, "s", 0, ids, odd, 2, (uint8_t *)json);
    json[n] = 0;
    CHECKF(strcmp(json, "{\"set\":\"s\",\"ids\":[42,7],\"scores\":[null,1]}") == 0, "%s", json);
}

static void test_names(void)
{
    CHECK(vs_nbrs_set_name_valid("v1.0-abc_D") && !vs_nbrs_set_name_valid("") &&
          !vs_nbrs_set_name_valid("a:b") && !vs_nbrs_set_name_valid("a#b") && !vs_nbrs_set_name_valid("..") &&
          !vs_nbrs_set_name_valid("a*"));
    char long_name[80];
    memset(long_name, 'a', 65);
    long_name[65] = 0;
    CHECK(!vs_nbrs_set_name_valid(long_name));
    long_name[64] = 0;
    CHECK(vs_nbrs_set_name_valid(long_name));
    CHECK(vs_nbrs_prefix_valid("vs:nbrs.reco") && !vs_nbrs_prefix_valid("a*") && !vs_nbrs_prefix_valid("") &&
          !vs_nbrs_prefix_valid("a b") && !vs_nbrs_prefix_valid("vs/nbrs"));
    char buf[64];
    CHECK(vs_nbrs_key_data(buf, sizeof buf, "p", "s", "k\0x", 3) == 7 && memcmp(buf, "p/s:k\0x", 7) == 0);
    CHECK(vs_nbrs_key_data(buf, 6, "p", "s", "key", 3) == 0); /* does not fit */
    CHECK(vs_nbrs_key_current(buf, sizeof buf, "p") && strcmp(buf, "p:#current") == 0);
    CHECK(vs_nbrs_key_sets(buf, sizeof buf, "p") && strcmp(buf, "p:#sets") == 0);
    CHECK(vs_nbrs_key_meta(buf, sizeof buf, "p", "s") && strcmp(buf, "p:#meta:s") == 0);
    CHECK(vs_nbrs_key_meta(buf, 8, "p", "s1") == 0);
}

static float base[N * D], queries[NQ * D];

/* The searcher over a version built with factory in P partitions equals the flat oracle (nprobe = nlist). */
static void check_version(const char *name, const char *factory, uint32_t P, vs_partitioning kind,
                          const float *oracle_d, const int64_t *oracle_i)
{
    int before = vs_test_failures;
    char err[VS_ERR_LEN] = "";
    vs_test_pathbuf_t out = vs_test_pathcopy(T, name);
    vs_builder_opts_t o = {.base_path = vs_test_path(T, "base.fvecs"),
                           .metric = VS_METRIC_L2,
                           .factory = factory,
                           .n_partitions = P,
                           .partitioning = kind,
                           .out_dir = out.s,
                           .version = "v1",
                           .seed = 3,
                           .n_threads = 1,
                           .build_time_unix = 1700000000};
    CHECKF(vs_builder_run(&o, NULL, err) == VS_OK, "%s", err);
    char man[1400];
    snprintf(man, sizeof man, "%s/v1/manifest.json", out.s);
    vs_nbrs_searcher_t *s = NULL;
    CHECKF(vs_nbrs_searcher_open(man, &s, err) == VS_OK, "%s", err);
    if (!s) {
        vs_test_case_done(name, 0);
        return;
    }
    vs_search_params_t given = {.nprobe = 1000}; /* clipped to nlist: exact */
    vs_search_params_t p = vs_nbrs_searcher_params(s, &given);
    CHECK(p.nprobe == 16);
    float dist[NQ * K];
    int64_t ids[NQ * K];
    CHECKF(vs_nbrs_searcher_search(s, NQ, queries, K, &p, 2, dist, ids, err) == VS_OK, "%s", err);
    size_t same = 0;
    for (size_t i = 0; i < NQ * K; i++)
        same += ids[i] == oracle_i[i] && fabsf(dist[i] - oracle_d[i]) <= 1e-3f * (1 + oracle_d[i]);
    CHECKF(same == NQ * K, "%s: %zu of %d answers equal the oracle's", name, same, NQ * K);
    float bad = NAN;
    float qbad[D];
    memcpy(qbad, queries, sizeof qbad);
    qbad[3] = bad;
    CHECK(vs_nbrs_searcher_search(s, 1, qbad, K, &p, 1, dist, ids, err) == VS_ERR_INVALID_ARGUMENT);
    vs_nbrs_searcher_close(s);
    vs_test_case_done(name, vs_test_failures == before);
}

static void test_searcher(void)
{
    uint64_t rng = 11;
    for (size_t i = 0; i < N; i++) {
        int c = (int)(vs_test_rand(&rng) % 20);
        for (size_t j = 0; j < D; j++)
            base[i * D + j] = (float)(c * 0.7 + 0.3 * vs_test_gauss(&rng)) * (j % 2 ? 1.0f : -1.0f);
    }
    for (size_t i = 0; i < NQ * D; i++)
        queries[i] = base[(i / D * 37) * D + i % D] + 0.05f * vs_test_randf(&rng);
    char err[VS_ERR_LEN];
    CHECK(vs_vecio_write_fvecs(vs_test_path(T, "base.fvecs"), N, D, base, err) == VS_OK);
    vs_index_t *flat = NULL;
    CHECK(vs_index_create(D, VS_METRIC_L2, "Flat", &flat, err) == VS_OK);
    CHECK(vs_index_add(flat, N, base, NULL, 1, NULL, err) == VS_OK);
    static float od[NQ * K];
    static int64_t oi[NQ * K];
    CHECK(vs_index_search(flat, NQ, queries, K, NULL, 1, od, oi, err) == VS_OK);
    vs_index_destroy(flat);
    check_version("hash1", "IVF16,Flat", 1, VS_PARTITION_HASH, od, oi);
    check_version("hash3", "IVF16,Flat", 3, VS_PARTITION_HASH, od, oi);
    check_version("cluster4", "IVF16,Flat", 4, VS_PARTITION_CLUSTER, od, oi);

    /* a partition file replaced by another build's: refused when opened */
    char a[1400], b[1400];
    snprintf(a, sizeof a, "%s/v1/part-1.vsidx", vs_test_path(T, "hash3"));
    snprintf(b, sizeof b, "%s/v1/part-0.vsidx", vs_test_path(T, "hash3"));
    size_t len = 0;
    unsigned char *bytes = vs_test_read_file(b, &len);
    CHECK(bytes && vs_test_write_file(a, bytes, len) == 0);
    free(bytes);
    char man[1400];
    snprintf(man, sizeof man, "%s/v1/manifest.json", vs_test_path(T, "hash3"));
    vs_nbrs_searcher_t *s = NULL;
    vs_status st = vs_nbrs_searcher_open(man, &s, err);
    CHECKF(st == VS_ERR_CORRUPT && strstr(err, "part-1.vsidx"), "%d %s", (int)st, err);
    CHECK(s == NULL);
}

int main(void)
{
    vs_test_tmpdir(T);
    RUN(test_value);
    RUN(test_names);
    RUN(test_searcher);
    vs_test_cleanup(T);
    return vs_test_finish();
}
