/* test_shard: the shard without the network. Searches given as protobuf bytes return exactly what
 * in-process search on the same file returns (with nprobe and with coordinator-chosen lists); every bad
 * request gets its status and a message; a corrupt or mismatched version fails to load while the
 * served one keeps answering; unload waits for no one; Info reports what is held. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shard/index/ivf.h"
#include "common/cluster/manifest.h"
#include "shard/server/shard.h"
#include "tests/support/version_fixture.h"
#include "tests/testlib.h"
#include "common/hash.h"
#include "vecshard/v1/shard.pb-c.h"
#include "vecshard/v1/writelog.pb-c.h" /* the op values */

#define N 3000
#define D 16
#define NQ 20
#define K 10

static vs_test_version_t v1;

/* Encodes a request; lists may be NULL. */
static uint8_t *encode(uint32_t dim, const float *q, size_t nfloats, uint32_t k, const char *version,
                       const Vecshard__V1__SearchParams *params, int partition, uint32_t lpq,
                       const int32_t *lists, size_t n_lists, size_t *len)
{
    Vecshard__V1__ShardSearchRequest r = VECSHARD__V1__SHARD_SEARCH_REQUEST__INIT;
    Vecshard__V1__PartitionRef pr = VECSHARD__V1__PARTITION_REF__INIT;
    r.dim = dim;
    r.queries = (float *)q;
    r.n_queries = nfloats;
    r.k = k;
    r.index_version = (char *)(version ? version : "");
    r.params = (Vecshard__V1__SearchParams *)params;
    if (partition >= 0) {
        pr.id = (uint32_t)partition;
        r.partition = &pr;
    }
    r.lists_per_query = lpq;
    r.lists = (int32_t *)lists;
    r.n_lists = n_lists;
    *len = vecshard__v1__shard_search_request__get_packed_size(&r);
    uint8_t *buf = malloc(*len + 1);
    vecshard__v1__shard_search_request__pack(&r, buf);
    return buf;
}

/* Runs a request; returns the status, the decoded response in *resp (or NULL). */
static vs_status run(vs_shard_t *sh, const uint8_t *req, size_t len, Vecshard__V1__ShardSearchResponse **resp,
                     char err[VS_ERR_LEN])
{
    uint8_t *out = NULL;
    size_t out_len = 0;
    err[0] = 0;
    vs_status st = vs_shard_search_pb(sh, req, len, &out, &out_len, err);
    *resp = NULL;
    if (st == VS_OK) {
        *resp = vecshard__v1__shard_search_response__unpack(NULL, out_len, out);
        free(out);
    }
    return st;
}

static vs_shard_t *make_shard(void)
{
    vs_shard_opts_t o = {.cluster = "test", .replica_id = "r0", .address = "127.0.0.1:1", .max_batch = 100};
    vs_shard_t *sh;
    char err[VS_ERR_LEN];
    CHECK(vs_shard_create(&o, &sh, err) == VS_OK);
    return sh;
}

static void test_search_equals_in_process(void)
{
    char err[VS_ERR_LEN];
    vs_shard_t *sh = make_shard();
    CHECK(vs_shard_get_state(sh) == VS_SHARD_LOADING);
    CHECKF(vs_shard_load(sh, v1.manifest, 1, NULL, err) == VS_OK, "%s", err);
    /* before activation nothing answers requests without a version */
    size_t len;
    uint8_t *req = encode(D, v1.queries, NQ * D, K, "", NULL, -1, 0, NULL, 0, &len);
    Vecshard__V1__ShardSearchResponse *resp;
    CHECK(run(sh, req, len, &resp, err) == VS_ERR_UNAVAILABLE);
    free(req);
    CHECKF(vs_shard_activate(sh, "v1", err) == VS_OK, "%s", err);
    CHECK(vs_shard_get_state(sh) == VS_SHARD_SERVING);

    /* the oracle: the same partition file searched in process */
    char path[PATH_MAX];
    vs_test_version_partition_path(&v1, 1, path);
    vs_index_t *idx;
    CHECKF(vs_index_load(path, &idx, err) == VS_OK, "%s", err);
    float want_d[NQ * K];
    int64_t want_i[NQ * K];
    vs_search_params_t p = {.nprobe = 4};
    CHECK(vs_index_search(idx, NQ, v1.queries, K, &p, 1, want_d, want_i, err) == VS_OK);

    Vecshard__V1__SearchParams sp = VECSHARD__V1__SEARCH_PARAMS__INIT;
    sp.nprobe = 4;
    req = encode(D, v1.queries, NQ * D, K, "", &sp, 1, 0, NULL, 0, &len);
    CHECKF(run(sh, req, len, &resp, err) == VS_OK, "%s", err);
    free(req);
    CHECK(resp && resp->nq == NQ && resp->k == K && resp->n_ids == NQ * K && resp->n_distances == NQ * K);
    if (resp) {
        CHECK(memcmp(resp->ids, want_i, sizeof want_i) == 0);
        CHECK(memcmp(resp->distances, want_d, sizeof want_d) == 0);
        CHECK(strcmp(resp->index_version, "v1") == 0 && resp->partition == 1);
        CHECK(resp->metric == VECSHARD__V1__METRIC__METRIC_L2);
        for (size_t i = 0; i < NQ * K; i++)
            CHECK(resp->ids[i] % 2 == 1); /* hash partition 1 of 2 holds the odd ids */
        vecshard__v1__shard_search_response__free_unpacked(resp, NULL);
    }

    /* centroid routing: the lists vs_ivf_probe picks give the same answer as nprobe */
    const vs_ivf_t *ivf = vs_index_impl_ivf(idx);
    int32_t lists[NQ * 4];
    for (size_t q = 0; q < NQ; q++)
        CHECK(vs_ivf_probe(ivf, v1.queries + q * D, 4, 0, lists + q * 4, err) == VS_OK);
    req = encode(D, v1.queries, NQ * D, K, "v1", NULL, 1, 4, lists, NQ * 4, &len);
    CHECKF(run(sh, req, len, &resp, err) == VS_OK, "%s", err);
    free(req);
    if (resp) {
        CHECK(memcmp(resp->ids, want_i, sizeof want_i) == 0);
        vecshard__v1__shard_search_response__free_unpacked(resp, NULL);
    }

    /* a batch large enough to be split over threads answers the same */
    enum { BIG = 96 };
    float *big = malloc(BIG * D * sizeof(float));
    for (size_t q = 0; q < BIG; q++)
        memcpy(big + q * D, v1.queries + (q % NQ) * D, D * sizeof(float));
    req = encode(D, big, BIG * D, K, "", &sp, -1, 0, NULL, 0, &len);
    CHECKF(run(sh, req, len, &resp, err) == VS_OK, "%s", err);
    free(req);
    if (resp) {
        for (size_t q = 0; q < BIG; q++)
            CHECK(memcmp(resp->ids + q * K, want_i + (q % NQ) * K, K * sizeof(int64_t)) == 0);
        vecshard__v1__shard_search_response__free_unpacked(resp, NULL);
    }
    free(big);
    vs_index_destroy(idx);
    vs_shard_destroy(sh);
}

typedef struct bad_case {
    const char *what;
    vs_status want;
    const char *msg_has; /* a word the message must contain */
} bad_case_t;

static void expect(vs_shard_t *sh, const uint8_t *req, size_t len, const bad_case_t *c)
{
    char err[VS_ERR_LEN];
    Vecshard__V1__ShardSearchResponse *resp;
    vs_status st = run(sh, req, len, &resp, err);
    CHECKF(st == c->want && strstr(err, c->msg_has) != NULL, "%s: got %s \"%s\", want %s containing \"%s\"",
           c->what, vs_status_name(st), err, vs_status_name(c->want), c->msg_has);
    if (resp)
        vecshard__v1__shard_search_response__free_unpacked(resp, NULL);
}

static void test_bad_requests(void)
{
    char err[VS_ERR_LEN];
    vs_shard_t *sh = make_shard();
    CHECK(vs_shard_load(sh, v1.manifest, 0, NULL, err) == VS_OK);
    CHECK(vs_shard_activate(sh, "v1", err) == VS_OK);
    float q[2 * D];
    memcpy(q, v1.queries, sizeof q);
    size_t len;
    uint8_t *req;
    Vecshard__V1__SearchParams sp = VECSHARD__V1__SEARCH_PARAMS__INIT;

#define BAD(build, want, has)                                                                                \
    do {                                                                                                     \
        req = build;                                                                                         \
        bad_case_t bc = {#build, want, has};                                                                 \
        expect(sh, req, len, &bc);                                                                           \
        free(req);                                                                                           \
    } while (0)

    BAD(encode(D + 1, q, 2 * (D + 1) - 2, K, "", NULL, -1, 0, NULL, 0, &len), VS_ERR_INVALID_ARGUMENT, "dim");
    BAD(encode(D, q, 2 * D - 1, K, "", NULL, -1, 0, NULL, 0, &len), VS_ERR_INVALID_ARGUMENT, "whole number");
    BAD(encode(D, q, 0, K, "", NULL, -1, 0, NULL, 0, &len), VS_ERR_INVALID_ARGUMENT, "empty batch");
    BAD(encode(D, q, 2 * D, 0, "", NULL, -1, 0, NULL, 0, &len), VS_ERR_INVALID_ARGUMENT, "k = 0");
    BAD(encode(D, q, 2 * D, 10001, "", NULL, -1, 0, NULL, 0, &len), VS_ERR_INVALID_ARGUMENT, "k = 10001");
    q[D + 3] = NAN;
    BAD(encode(D, q, 2 * D, K, "", NULL, -1, 0, NULL, 0, &len), VS_ERR_INVALID_ARGUMENT, "query 1");
    q[D + 3] = INFINITY;
    BAD(encode(D, q, 2 * D, K, "", NULL, -1, 0, NULL, 0, &len), VS_ERR_INVALID_ARGUMENT, "query 1");
    q[D + 3] = 3e19f; /* finite, but its square overflows float distances (a fuzzer find) */
    BAD(encode(D, q, 2 * D, K, "", NULL, -1, 0, NULL, 0, &len), VS_ERR_INVALID_ARGUMENT, "overflow");
    q[D + 3] = 0;
    sp.nprobe = 17; /* nlist is 16: clipped and reported, not an error (a rollback to a smaller nlist) */
    {
        uint8_t *creq = encode(D, q, 2 * D, K, "", &sp, -1, 0, NULL, 0, &len);
        Vecshard__V1__ShardSearchResponse *resp = NULL;
        char cerr[VS_ERR_LEN];
        CHECK(run(sh, creq, len, &resp, cerr) == VS_OK && resp && resp->params_clipped &&
              resp->applied_params && resp->applied_params->nprobe == 16);
        if (resp)
            vecshard__v1__shard_search_response__free_unpacked(resp, NULL);
        free(creq);
    }
    sp.nprobe = 0;
    sp.ef_search = 32; /* not HNSW */
    BAD(encode(D, q, 2 * D, K, "", &sp, -1, 0, NULL, 0, &len), VS_ERR_INVALID_ARGUMENT, "HNSW");
    sp.ef_search = 0;
    sp.k_factor = 0.5f;
    BAD(encode(D, q, 2 * D, K, "", &sp, -1, 0, NULL, 0, &len), VS_ERR_INVALID_ARGUMENT, "k_factor");
    sp.k_factor = NAN;
    BAD(encode(D, q, 2 * D, K, "", &sp, -1, 0, NULL, 0, &len), VS_ERR_INVALID_ARGUMENT, "k_factor");
    sp.k_factor = 0;
    BAD(encode(D, q, 2 * D, K, "v9", NULL, -1, 0, NULL, 0, &len), VS_ERR_NOT_FOUND, "held: v1");
    BAD(encode(D, q, 2 * D, K, "", NULL, 1, 0, NULL, 0, &len), VS_ERR_NOT_FOUND, "partition 1");
    int32_t lists[4] = {0, 1, 2, 16};
    BAD(encode(D, q, 2 * D, K, "", NULL, -1, 2, lists, 4, &len), VS_ERR_OUT_OF_RANGE, "list id 16");
    lists[3] = -2;
    BAD(encode(D, q, 2 * D, K, "", NULL, -1, 2, lists, 4, &len), VS_ERR_OUT_OF_RANGE, "list id -2");
    lists[3] = 3;
    BAD(encode(D, q, 2 * D, K, "", NULL, -1, 2, lists, 3, &len), VS_ERR_INVALID_ARGUMENT, "lists per query");
    BAD(encode(D, q, 2 * D, K, "", NULL, -1, 0, lists, 4, &len), VS_ERR_INVALID_ARGUMENT, "lists per query");
    sp.nprobe = 2;
    BAD(encode(D, q, 2 * D, K, "", &sp, -1, 2, lists, 4, &len), VS_ERR_INVALID_ARGUMENT, "not both");
    sp.nprobe = 0;
    /* oversized batch: max_batch is 100 */
    float *many = calloc(101 * D, sizeof(float));
    BAD(encode(D, many, 101 * D, K, "", NULL, -1, 0, NULL, 0, &len), VS_ERR_INVALID_ARGUMENT, "limit of 100");
    free(many);

    /* malformed protobuf: garbage, a truncated valid message, a wrong wire type */
    static const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0x0f, 0x12};
    bad_case_t c = {"garbage", VS_ERR_INVALID_ARGUMENT, "malformed"};
    expect(sh, garbage, sizeof garbage, &c);
    req = encode(D, q, 2 * D, K, "", NULL, -1, 0, NULL, 0, &len);
    c.what = "truncated";
    expect(sh, req, len - 3, &c);
    free(req);
    static const uint8_t wrong_type[] = {0x0d, 0x01, 0x02, 0x03,
                                         0x04, 0x1a, 0x05}; /* dim as fixed32, k as bytes */
    c.what = "wrong wire type";
    expect(sh, wrong_type, sizeof wrong_type, &c);

#undef BAD
    /* draining: requests that still arrive are answered (coordinators stop sending on their own) */
    vs_shard_drain(sh);
    CHECK(vs_shard_get_state(sh) == VS_SHARD_DRAINING);
    Vecshard__V1__ShardSearchResponse *resp;
    req = encode(D, q, 2 * D, K, "", NULL, -1, 0, NULL, 0, &len);
    CHECK(run(sh, req, len, &resp, err) == VS_OK && resp != NULL);
    if (resp)
        vecshard__v1__shard_search_response__free_unpacked(resp, NULL);
    free(req);
    vs_shard_destroy(sh);
}

/* Copies the v1 directory's manifest with one change applied by edit() to a new version dir. */
static void write_variant(const char *version, void (*edit)(vs_manifest_t *m, const char *dir),
                          char out[PATH_MAX])
{
    char err[VS_ERR_LEN];
    vs_manifest_t m;
    CHECK(vs_manifest_load(v1.manifest, &m, err) == VS_OK);
    snprintf(m.version, sizeof m.version, "%s", version);
    /* point at v1's files from the variant directory */
    for (uint32_t p = 0; p < m.n_partitions; p++) {
        char f[PATH_MAX];
        snprintf(f, sizeof f, "v1-%.200s", m.partitions[p].file);
        snprintf(m.partitions[p].file, sizeof m.partitions[p].file, "%s", f);
    }
    const char *dir = vs_test_tmpdir("shard");
    if (edit)
        edit(&m, dir);
    snprintf(out, PATH_MAX, "%s/%s.json", dir, version);
    CHECK(vs_manifest_write(out, &m, err) == VS_OK);
    vs_manifest_fini(&m);
}

static void copy_file(const char *from, const char *to)
{
    size_t len;
    unsigned char *b = vs_test_read_file(from, &len);
    CHECK(b && vs_test_write_file(to, b, len) == 0);
    free(b);
}

static void flip_a_byte(vs_manifest_t *m, const char *dir)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%.3000s/%.200s", dir, m->partitions[0].file);
    size_t len;
    unsigned char *b = vs_test_read_file(p, &len);
    snprintf(p, sizeof p, "%.3000s/bad-%.200s", dir, m->partitions[0].file);
    b[len / 2] ^= 0x40;
    CHECK(vs_test_write_file(p, b, len) == 0);
    free(b);
    char f[PATH_MAX];
    snprintf(f, sizeof f, "bad-%.200s", m->partitions[0].file);
    snprintf(m->partitions[0].file, sizeof m->partitions[0].file, "%s", f);
}

static void wrong_metric(vs_manifest_t *m, const char *dir)
{
    (void)dir;
    m->metric = VS_METRIC_IP;
}

static void wrong_count(vs_manifest_t *m, const char *dir)
{
    (void)dir;
    m->partitions[0].n_vectors++;
}

static void missing_file(vs_manifest_t *m, const char *dir)
{
    (void)dir;
    snprintf(m->partitions[0].file, sizeof m->partitions[0].file, "no-such-file.vsidx");
}

static void test_bad_versions_keep_serving(void)
{
    char err[VS_ERR_LEN];
    const char *dir = vs_test_tmpdir("shard");
    char p[PATH_MAX], to[PATH_MAX];
    for (uint32_t i = 0; i < 2; i++) {
        vs_test_version_partition_path(&v1, i, p);
        snprintf(to, sizeof to, "%s/v1-part-%u.vsidx", dir, i);
        copy_file(p, to);
    }
    vs_shard_t *sh = make_shard();
    CHECK(vs_shard_load(sh, v1.manifest, 0, NULL, err) == VS_OK && vs_shard_activate(sh, "v1", err) == VS_OK);
    struct {
        const char *version;
        void (*edit)(vs_manifest_t *, const char *);
        vs_status want;
        const char *msg_has;
    } cases[] = {
        {"v2", flip_a_byte, VS_ERR_CORRUPT, "CRC32C"},
        {"v3", wrong_metric, VS_ERR_CORRUPT, "manifest says ip"},
        {"v4", wrong_count, VS_ERR_CORRUPT, "vectors"},
        {"v5", missing_file, VS_ERR_NOT_FOUND, "no-such-file"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char man[PATH_MAX];
        write_variant(cases[i].version, cases[i].edit, man);
        vs_status st = vs_shard_load(sh, man, 0, NULL, err);
        CHECKF(st == cases[i].want && strstr(err, cases[i].msg_has), "%s: %s %s", cases[i].version,
               vs_status_name(st), err);
        CHECK(vs_shard_activate(sh, cases[i].version, err) == VS_ERR_FAILED_PRECONDITION);
        /* v1 still answers, and a request naming the failed version says why */
        size_t len;
        uint8_t *req = encode(D, v1.queries, D, K, "", NULL, -1, 0, NULL, 0, &len);
        Vecshard__V1__ShardSearchResponse *resp;
        CHECK(run(sh, req, len, &resp, err) == VS_OK && resp && strcmp(resp->index_version, "v1") == 0);
        if (resp)
            vecshard__v1__shard_search_response__free_unpacked(resp, NULL);
        free(req);
        req = encode(D, v1.queries, D, K, cases[i].version, NULL, -1, 0, NULL, 0, &len);
        CHECK(run(sh, req, len, &resp, err) == VS_ERR_FAILED_PRECONDITION && strstr(err, "failed to load"));
        free(req);
        CHECK(vs_shard_unload(sh, cases[i].version, err) == VS_OK);
    }
    /* the CRC check can be skipped; the file's own section checksums still refuse the flipped byte */
    vs_shard_destroy(sh);
    vs_shard_opts_t o = {.replica_id = "r1", .skip_crc = 1};
    CHECK(vs_shard_create(&o, &sh, err) == VS_OK);
    char man[PATH_MAX];
    write_variant("v2", flip_a_byte, man);
    CHECK(vs_shard_load(sh, man, 0, NULL, err) == VS_ERR_CORRUPT);
    vs_shard_destroy(sh);
    /* a manifest that is not JSON, or lacks a field, is refused with the field named */
    snprintf(p, sizeof p, "%s/broken.json", dir);
    CHECK(vs_test_write_file(p, "{\"format\":\"vecshard-manifest/1\",", 32) == 0);
    vs_manifest_t m;
    CHECK(vs_manifest_load(p, &m, err) == VS_ERR_CORRUPT && strstr(err, "JSON"));
    const char *nodim =
        "{\"format\":\"vecshard-manifest/1\",\"version\":\"x\",\"metric\":\"l2\",\"factory\":\"Flat\","
        "\"partitioning\":\"hash\",\"partitions\":[]}";
    CHECK(vs_test_write_file(p, nodim, strlen(nodim)) == 0);
    CHECK(vs_manifest_load(p, &m, err) == VS_ERR_CORRUPT && strstr(err, "dim"));
}

static void test_versions_and_info(void)
{
    char err[VS_ERR_LEN];
    vs_shard_t *sh = make_shard();
    CHECK(vs_shard_load(sh, v1.manifest, 0, NULL, err) == VS_OK);
    CHECK(vs_shard_load(sh, v1.manifest, 0, NULL, err) == VS_ERR_ALREADY_EXISTS);
    /* a second version built in memory (HNSW-free: a small IVF) */
    vs_index_t *idx;
    CHECK(vs_index_create(D, VS_METRIC_L2, "IVF4,Flat", &idx, err) == VS_OK);
    CHECK(vs_index_train(idx, 500, v1.base, 1, NULL, err) == VS_OK);
    CHECK(vs_index_add(idx, 500, v1.base, NULL, 1, NULL, err) == VS_OK);
    CHECK(vs_shard_add_index(sh, "v2", 0, idx, err) == VS_OK);
    CHECK(vs_shard_add_index(sh, "bad/name", 0, NULL, err) == VS_ERR_INVALID_ARGUMENT);
    CHECK(vs_shard_activate(sh, "v2", err) == VS_OK);
    CHECK(vs_shard_unload(sh, "v2", err) == VS_ERR_FAILED_PRECONDITION);
    CHECK(vs_shard_activate(sh, "v1", err) == VS_OK);

    uint8_t *out;
    size_t len;
    CHECK(vs_shard_info_pb(sh, NULL, 0, &out, &len, err) == VS_OK);
    Vecshard__V1__ShardInfoResponse *info = vecshard__v1__shard_info_response__unpack(NULL, len, out);
    free(out);
    CHECK(info != NULL);
    if (info) {
        CHECK(strcmp(info->cluster, "test") == 0 && strcmp(info->replica_id, "r0") == 0);
        CHECK(strcmp(info->active_version, "v1") == 0);
        CHECK(info->state == VECSHARD__V1__SHARD_STATE__SHARD_STATE_SERVING);
        CHECK(info->n_versions == 2);
        for (size_t i = 0; i < info->n_versions; i++) {
            const Vecshard__V1__VersionInfo *vi = info->versions[i];
            CHECK(vi->state == VECSHARD__V1__VERSION_STATE__VERSION_STATE_READY && vi->dim == D);
            if (strcmp(vi->version, "v1") == 0) {
                CHECK(vi->n_vectors == N / 2 && vi->nlist == 16 && vi->mapped_bytes > 0);
                CHECK(strcmp(vi->factory, "IVF16,Flat") == 0 &&
                      strcmp(vi->model_version, "test-model-1") == 0);
                CHECK(vi->partitions_total == 2 && strcmp(vi->partitioning, "hash") == 0);
            } else {
                CHECK(strcmp(vi->version, "v2") == 0 && vi->n_vectors == 500 && vi->nlist == 4);
            }
        }
        vecshard__v1__shard_info_response__free_unpacked(info, NULL);
    }
    vs_shard_version_info_t vi[4];
    char active[128];
    CHECK(vs_shard_versions(sh, vi, 4, active) == 2 && strcmp(active, "v1") == 0);
    /* a request naming v2 is served by v2 while v1 stays active */
    size_t rl;
    uint8_t *req = encode(D, v1.queries, D, K, "v2", NULL, 0, 0, NULL, 0, &rl);
    Vecshard__V1__ShardSearchResponse *resp;
    CHECK(run(sh, req, rl, &resp, err) == VS_OK && resp && strcmp(resp->index_version, "v2") == 0);
    if (resp) {
        for (size_t i = 0; i < K; i++)
            CHECK(resp->ids[i] >= 0 && resp->ids[i] < 500);
        vecshard__v1__shard_search_response__free_unpacked(resp, NULL);
    }
    free(req);
    CHECK(vs_shard_unload(sh, "v2", err) == VS_OK);
    CHECK(vs_shard_unload(sh, "v2", err) == VS_ERR_NOT_FOUND);
    CHECK(vs_shard_versions(sh, vi, 4, active) == 1);
    static const uint8_t junk[] = {0xff};
    CHECK(vs_shard_info_pb(sh, junk, 1, &out, &len, err) == VS_ERR_INVALID_ARGUMENT);
    vs_shard_destroy(sh);
}

/* A LogWrite message of one id with the fixture's model version (free with free). */
static uint8_t *log_write(int op, int64_t id, const float *x, size_t *len)
{
    return vs_test_log_write(op, &id, 1, x, D, "test-model-1", "t", len);
}

/* The first id a search for q returns from the shard (-2 on error; *st gets the status). */
static int64_t first_id(vs_shard_t *sh, const float *q, vs_status *st)
{
    char err[VS_ERR_LEN];
    Vecshard__V1__SearchParams p = VECSHARD__V1__SEARCH_PARAMS__INIT;
    p.nprobe = 16;
    size_t len;
    uint8_t *req = encode(D, q, D, 3, "v1", &p, 0, 0, NULL, 0, &len);
    Vecshard__V1__ShardSearchResponse *resp;
    *st = run(sh, req, len, &resp, err);
    free(req);
    int64_t id = -2;
    if (*st == VS_OK) {
        id = resp->ids[0];
        vecshard__v1__shard_search_response__free_unpacked(resp, NULL);
    }
    return id;
}

static void test_fresh_writes_from_the_log(void)
{
    char err[VS_ERR_LEN];
    vs_shard_opts_t o = {.cluster = "test", .replica_id = "r0", .max_batch = 100, .fresh_capacity = 100};
    vs_shard_t *sh;
    CHECK(vs_shard_create(&o, &sh, err) == VS_OK);
    char ver[VS_NAME_LEN];
    CHECKF(vs_shard_load(sh, v1.manifest, 0, ver, err) == VS_OK, "%s", err);
    CHECK(vs_shard_activate(sh, "v1", err) == VS_OK);
    CHECK(vs_shard_log_next(sh, "v1") == 1 && vs_shard_log_next(sh, "nope") == 0);
    int64_t id = 900000;
    while (vs_hash_partition(id, 2) != 0) /* partition 0's */
        id++;
    const float *q = v1.queries + 3 * D;
    vs_status st;
    CHECK(first_id(sh, q, &st) != id);
    size_t len;
    uint8_t *m = log_write(VECSHARD__V1__LOG_WRITE__OP__OP_UPSERT, id, q, &len);
    CHECKF(vs_shard_apply_log(sh, "v1", 1, m, len, err) == VS_OK, "%s", err);
    CHECK(first_id(sh, q, &st) == id && st == VS_OK);
    CHECK(vs_shard_apply_log(sh, "v1", 1, m, len, err) == VS_OK &&
          vs_shard_log_next(sh, "v1") == 2);                                           /* again */
    CHECK(vs_shard_apply_log(sh, "v1", 3, m, len, err) == VS_ERR_FAILED_PRECONDITION); /* a gap */
    free(m);
    uint8_t junk[3] = {0xff, 0xff, 0xff};
    CHECK(vs_shard_apply_log(sh, "v1", 2, junk, 3, err) == VS_ERR_CORRUPT &&
          vs_shard_log_next(sh, "v1") == 3);
    m = log_write(VECSHARD__V1__LOG_WRITE__OP__OP_DELETE, id, NULL, &len);
    CHECK(vs_shard_apply_log(sh, "v1", 3, m, len, err) == VS_OK);
    free(m);
    CHECK(first_id(sh, q, &st) != id && st == VS_OK);
    vs_shard_fresh_info_t fi;
    CHECK(vs_shard_fresh_info(sh, "v1", &fi, err) == VS_OK);
    CHECKF(fi.log_next == 4 && fi.counts.upserted == 1 && fi.counts.deleted == 1 && fi.counts.rejected == 1 &&
               fi.fresh.ids == 1 && fi.fresh.live == 0,
           "next %llu, %llu upserted, %llu deleted, %llu rejected", (unsigned long long)fi.log_next,
           (unsigned long long)fi.counts.upserted, (unsigned long long)fi.counts.deleted,
           (unsigned long long)fi.counts.rejected);
    /* a log that cannot be followed: the version stops serving */
    vs_shard_log_failed(sh, "v1", "the stream no longer holds 4");
    CHECK(first_id(sh, q, &st) == -2 && st == VS_ERR_FAILED_PRECONDITION);
    vs_shard_destroy(sh);
}

int main(void)
{
    char err[VS_ERR_LEN];
    if (vs_test_version_build(vs_test_tmpdir("shard"), "v1", "IVF16,Flat", VS_METRIC_L2, N, D, 2, NQ, 42, &v1,
                              err) != VS_OK) {
        fprintf(stderr, "fixture: %s\n", err);
        return 1;
    }
    RUN(test_search_equals_in_process);
    RUN(test_bad_requests);
    RUN(test_bad_versions_keep_serving);
    RUN(test_versions_and_info);
    RUN(test_fresh_writes_from_the_log);
    vs_test_version_fini(&v1);
    vs_test_cleanup("shard");
    return vs_test_finish();
}
