/* fuzz_cluster_records: every decoder of the cluster protocol and of the etcd gateway's replies on
 * arbitrary bytes: manifest (vs_manifest_parse), member, version, active and audit records, etcd keys,
 * and the etcd JSON-gateway parsers (range, txn, watch line, keepalive, error). Built like
 * fuzz_shard_request: a libFuzzer target with VS_FUZZ=ON, else a deterministic mutation driver (label fuzz).
 * Properties: no crash or sanitizer report; a refusal always says why; a record that decodes re-encodes to
 * a text that decodes to the same record (nothing lost or invented). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/cluster/keys.h"
#include "common/cluster/manifest.h"
#include "common/cluster/records.h"
#include "common/net/etcd_codec.h"
#include "tests/fuzz/mutate.h"

#define REFUSAL_SAYS_WHY(st, err)                                                                            \
    do {                                                                                                     \
        if ((st) != VS_OK && !(err)[0])                                                                      \
            abort();                                                                                         \
    } while (0)

static void records(const char *text, size_t size)
{
    char err[VS_ERR_LEN];
    vs_member_rec_t *m = malloc(2 * sizeof *m);
    vs_version_rec_t *v = malloc(2 * sizeof *v);
    if (!m || !v)
        abort();
    err[0] = 0;
    vs_status st = vs_member_rec_decode(text, size, &m[0], err);
    REFUSAL_SAYS_WHY(st, err);
    if (st == VS_OK) {
        char *json = NULL;
        if (vs_member_rec_encode(&m[0], &json, err) != VS_OK ||
            vs_member_rec_decode(json, strlen(json), &m[1], err) != VS_OK ||
            strcmp(m[0].replica_id, m[1].replica_id) != 0 || m[0].n_versions != m[1].n_versions ||
            m[0].partition != m[1].partition)
            abort();
        for (size_t i = 0; i < m[0].n_versions; i++)
            if (strcmp(m[0].versions[i].content_id, m[1].versions[i].content_id) != 0 ||
                m[0].versions[i].dim != m[1].versions[i].dim)
                abort();
        (void)vs_member_may_serve(&m[0], "v1", 0, "0123456789abcdef");
        free(json);
    }
    err[0] = 0;
    st = vs_version_rec_decode(text, size, &v[0], err);
    REFUSAL_SAYS_WHY(st, err);
    if (st == VS_OK) {
        char *json = NULL;
        if (vs_version_rec_encode(&v[0], &json, err) != VS_OK ||
            vs_version_rec_decode(json, strlen(json), &v[1], err) != VS_OK ||
            strcmp(v[0].state, v[1].state) != 0 || v[0].dim != v[1].dim ||
            strcmp(v[0].content_id, v[1].content_id) != 0)
            abort();
        free(json);
    }
    vs_active_rec_t a, a2;
    err[0] = 0;
    st = vs_active_rec_decode(text, size, &a, err);
    REFUSAL_SAYS_WHY(st, err);
    if (st == VS_OK) {
        char *json = NULL;
        if (vs_active_rec_encode(&a, &json, err) != VS_OK ||
            vs_active_rec_decode(json, strlen(json), &a2, err) != VS_OK ||
            strcmp(a.version, a2.version) != 0 || strcmp(a.previous, a2.previous) != 0)
            abort();
        free(json);
    }
    vs_audit_rec_t au;
    err[0] = 0;
    st = vs_audit_rec_decode(text, size, &au, err);
    REFUSAL_SAYS_WHY(st, err);
    free(m);
    free(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    char err[VS_ERR_LEN] = "";
    records(text, size);

    vs_manifest_t man;
    vs_status st = vs_manifest_parse(text, size, "/fuzz/v/manifest.json", &man, err);
    REFUSAL_SAYS_WHY(st, err);
    if (st == VS_OK) {
        char id[17];
        vs_manifest_content_id(&man, id);
        if (strlen(id) != 16)
            abort();
        vs_manifest_fini(&man);
    }

    uint32_t p;
    char name[VS_REPLICA_ID_MAX + 1];
    (void)vs_key_parse("fz", text, size, &p, name);

    vs_etcd_kvs_t kvs = {0};
    err[0] = 0;
    st = vs_etcd_parse_range(text, size, &kvs, err);
    REFUSAL_SAYS_WHY(st, err);
    vs_etcd_kvs_fini(&kvs);
    vs_etcd_txn_result_t txn = {0};
    err[0] = 0;
    st = vs_etcd_parse_txn(text, size, &txn, err);
    REFUSAL_SAYS_WHY(st, err);
    vs_etcd_txn_result_fini(&txn);
    vs_etcd_watch_msg_t w;
    err[0] = 0;
    st = vs_etcd_parse_watch_msg(text, size, &w, err);
    REFUSAL_SAYS_WHY(st, err);
    if (st == VS_OK)
        vs_etcd_watch_msg_fini(&w);
    int64_t ttl;
    (void)vs_etcd_parse_keepalive(text, size, &ttl, err);
    (void)vs_etcd_parse_error("fuzz", 500, text, size, err);
    return 0;
}

#ifndef VS_LIBFUZZER
static const char *const seed_texts[] = {
    "{\"address\":\"10.0.0.7:50051\",\"partition\":2,\"replica_id\":\"shard-2-a\",\"instance_id\":\"4f1c\","
    "\"state\":\"SERVING\",\"active_version\":\"v1\",\"versions\":[{\"version\":\"v1\",\"state\":\"READY\","
    "\"n_vectors\":30000,\"content_id\":\"0123456789abcdef\",\"dim\":784,\"metric\":\"l2\",\"model_version\":"
    "\"m\",\"partitioning\":\"hash\",\"partitions\":2},{\"version\":\"v2\",\"state\":\"FAILED\",\"error\":"
    "\"x\"}],"
    "\"started_at\":\"2026-12-06T10:00:00Z\"}",
    "{\"version\":\"v2\",\"manifest\":\"/idx/v2/manifest.json\",\"model_version\":\"m\",\"partitions\":4,"
    "\"state\":\"staged\",\"staged_at\":\"t\",\"dim\":128,\"metric\":\"l2\",\"partitioning\":\"hash\","
    "\"content_id\":\"00000000deadbeef\"}",
    "{\"version\":\"v2\",\"previous\":\"v1\",\"activated_at\":\"2026-12-06T10:00:00Z\"}",
    "{\"who\":\"ops@h\",\"at\":\"t\",\"command\":\"remove\",\"version\":\"v3\",\"detail\":\"retired -> "
    "removed\"}",
    "{\"format\":\"vecshard-manifest/"
    "1\",\"version\":\"v1\",\"model_version\":\"m\",\"metric\":\"l2\",\"dim\":8,"
    "\"factory\":\"IVF4,Flat\",\"partitioning\":\"cluster\",\"nlist\":4,\"centroids_file\":\"c.fvecs\","
    "\"centroids_crc32c\":\"0x1234\",\"centroids_data_crc32c\":\"0x99\",\"trained_state_id\":"
    "\"0123456789abcdef\",\"partitions\":[{\"id\":0,\"file\":\"part-0.vsidx\",\"size_bytes\":\"10\","
    "\"n_vectors\":\"1\",\"crc32c\":\"0xdeadbeef\",\"content_id\":\"0123456789abcdef\",\"lists\":[0,2]},"
    "{\"id\":1,\"file\":\"part-1.vsidx\",\"size_bytes\":10,\"n_vectors\":1,\"lists\":[1,3]}]}",
    "{\"format\":\"vecshard-manifest/1\",\"version\":\"v1\",\"metric\":\"ip\",\"dim\":8,\"factory\":"
    "\"HNSW16,SQ8\",\"partitioning\":\"hash\",\"hash\":\"splitmix64(id) % P\",\"partitions\":[{\"id\":0,"
    "\"file\":\"p0\",\"size_bytes\":1,\"n_vectors\":1}]}",
    "/vecshard/fz/members/12/shard-12-b",
    "{\"header\":{\"revision\":\"42\"},\"kvs\":[{\"key\":\"L3ZlY3NoYXJk\",\"value\":\"e30=\","
    "\"create_revision\":\"3\",\"mod_revision\":\"40\",\"version\":\"2\",\"lease\":\"7587\"}],\"count\":"
    "\"1\"}",
    "{\"header\":{\"revision\":\"43\"},\"succeeded\":false,\"responses\":[{\"response_range\":{\"kvs\":"
    "[{\"key\":\"YQ==\",\"value\":\"Yg==\"}]}}]}",
    "{\"result\":{\"header\":{\"revision\":\"9\"},\"events\":[{\"type\":\"DELETE\",\"kv\":{\"key\":\"YQ==\"}}"
    ","
    "{\"kv\":{\"key\":\"Yg==\",\"value\":\"Yw==\",\"mod_revision\":\"9\"}}]}}",
    "{\"result\":{\"ID\":\"7587\",\"TTL\":\"10\"}}",
    "{\"error\":{\"grpc_code\":9,\"http_code\":400,\"message\":\"etcdserver: requested lease not found\"}}",
};

int main(int argc, char **argv)
{
    enum { NS = sizeof seed_texts / sizeof *seed_texts };
    uint8_t *seeds[NS];
    size_t lens[NS];
    for (size_t i = 0; i < NS; i++) {
        lens[i] = strlen(seed_texts[i]);
        seeds[i] = (uint8_t *)seed_texts[i];
    }
    if (argc == 3 && strcmp(argv[1], "--write-seeds") == 0)
        return vs_fuzz_write_seeds(argv[2], seeds, lens, NS, "json");
    long iters = argc == 2 ? strtol(argv[1], NULL, 10) : 20000;
    for (size_t i = 0; i < NS; i++)
        LLVMFuzzerTestOneInput(seeds[i], lens[i]);
    uint64_t s = 777;
    static uint8_t buf[8192];
    for (long it = 0; it < iters; it++) {
        size_t len = vs_fuzz_mutate(buf, sizeof buf, seeds, lens, NS, &s);
        LLVMFuzzerTestOneInput(buf, len);
    }
    printf(
        "%ld mutated records, manifests, keys and etcd replies decoded or refused with a reason; no crash\n",
        iters);
    return 0;
}
#endif
