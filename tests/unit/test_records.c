/* test_records: the etcd key schema (keys.h) and the JSON records of the cluster protocol (records.h):
 * every key builds and parses back, names that could forge another key are refused, every record round
 * trips field for field, and malformed records are refused naming the field while records from before a
 * field existed still decode. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cluster/keys.h"
#include "common/cluster/records.h"
#include "tests/testlib.h"

static void test_keys(void)
{
    char k[VS_KEY_LEN], name[VS_REPLICA_ID_MAX + 1];
    uint32_t p = 99;
    CHECK(vs_key_member(k, "prod", 3, "shard-3-a") > 0 &&
          strcmp(k, "/vecshard/prod/members/3/shard-3-a") == 0);
    CHECK(vs_key_parse("prod", k, strlen(k), &p, name) == VS_KEY_MEMBER && p == 3 &&
          strcmp(name, "shard-3-a") == 0);
    CHECK(vs_key_version(k, "prod", "v2") > 0 && strcmp(k, "/vecshard/prod/versions/v2") == 0);
    CHECK(vs_key_parse("prod", k, strlen(k), NULL, name) == VS_KEY_VERSION && strcmp(name, "v2") == 0);
    CHECK(vs_key_active(k, "prod") > 0 && vs_key_parse("prod", k, strlen(k), NULL, NULL) == VS_KEY_ACTIVE);
    CHECK(vs_key_audit(k, "prod", 1700000000123ull, 7) > 0 &&
          strcmp(k, "/vecshard/prod/audit/001700000000123-000007") == 0);
    CHECK(vs_key_parse("prod", k, strlen(k), NULL, NULL) == VS_KEY_AUDIT);
    CHECK(vs_key_members_prefix(k, "prod") > 0 && strcmp(k, "/vecshard/prod/members/") == 0);
    CHECK(vs_key_versions_prefix(k, "prod") > 0 && strcmp(k, "/vecshard/prod/versions/") == 0);
    /* names that would forge another key, or escape the cluster, give no key */
    CHECK(vs_key_version(k, "prod", "../active") == 0 && k[0] == 0);
    CHECK(vs_key_member(k, "prod", 0, "a/b") == 0);
    CHECK(vs_key_member(k, "a/b", 0, "r") == 0);
    CHECK(vs_key_version(k, "prod", "") == 0);
    char long_name[200];
    memset(long_name, 'a', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = 0;
    CHECK(vs_key_member(k, "prod", 0, long_name) == 0);
    /* parse: other clusters, malformed rests, keys without NUL */
    const char *bad[] = {
        "/vecshard/dev/members/0/r", "/vecshard/prod/members/x/r",           "/vecshard/prod/members/0/",
        "/vecshard/prod/members/0",  "/vecshard/prod/members/0/a/b",         "/vecshard/prod/versions/",
        "/vecshard/prod/activeX",    "/vecshard/prod/members/99999999999/r", "/vecshard/prod/other"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECKF(vs_key_parse("prod", bad[i], strlen(bad[i]), &p, name) == VS_KEY_OTHER, "%s", bad[i]);
    const char *raw = "/vecshard/prod/versions/v1GARBAGE";
    CHECK(vs_key_parse("prod", raw, strlen("/vecshard/prod/versions/v1"), NULL, name) == VS_KEY_VERSION &&
          strcmp(name, "v1") == 0);
}

static void test_member_round_trip(void)
{
    vs_member_rec_t r;
    memset(&r, 0, sizeof r);
    snprintf(r.address, sizeof r.address, "10.0.0.7:50051");
    r.partition = 2;
    snprintf(r.replica_id, sizeof r.replica_id, "shard-2-a");
    snprintf(r.instance_id, sizeof r.instance_id, "4f1c9a");
    snprintf(r.state, sizeof r.state, "SERVING");
    snprintf(r.active_version, sizeof r.active_version, "v1");
    r.n_versions = 2;
    snprintf(r.versions[0].version, sizeof r.versions[0].version, "v1");
    snprintf(r.versions[0].state, sizeof r.versions[0].state, "READY");
    r.versions[0].n_vectors = 30000;
    r.versions[0].dim = 784;
    snprintf(r.versions[0].metric, sizeof r.versions[0].metric, "l2");
    snprintf(r.versions[0].model_version, sizeof r.versions[0].model_version, "m7");
    snprintf(r.versions[0].partitioning, sizeof r.versions[0].partitioning, "cluster");
    r.versions[0].partitions = 3;
    snprintf(r.versions[0].content_id, sizeof r.versions[0].content_id, "0123456789abcdef");
    snprintf(r.versions[1].version, sizeof r.versions[1].version, "v2");
    snprintf(r.versions[1].state, sizeof r.versions[1].state, "FAILED");
    snprintf(r.versions[1].error, sizeof r.versions[1].error, "part-2.vsidx: CRC32C mismatch");
    snprintf(r.started_at, sizeof r.started_at, "2026-12-06T10:00:00Z");
    r.memory_limit_bytes = 64ull << 30;
    r.rss_bytes = 123456789;
    r.free_slots = 6;
    r.has_free_slots = 1;
    char *json = NULL, err[VS_ERR_LEN];
    CHECK(vs_member_rec_encode(&r, &json, err) == VS_OK && json);
    vs_member_rec_t d;
    CHECKF(vs_member_rec_decode(json, strlen(json), &d, err) == VS_OK, "%s", err);
    CHECK(strcmp(d.address, r.address) == 0 && d.partition == 2 && strcmp(d.replica_id, r.replica_id) == 0 &&
          strcmp(d.instance_id, r.instance_id) == 0 && strcmp(d.state, "SERVING") == 0 &&
          strcmp(d.active_version, "v1") == 0 && d.n_versions == 2 &&
          strcmp(d.started_at, r.started_at) == 0);
    CHECK(d.memory_limit_bytes == 64ull << 30 && d.rss_bytes == 123456789 && d.has_free_slots &&
          d.free_slots == 6);
    CHECK(d.versions[0].dim == 784 && strcmp(d.versions[0].metric, "l2") == 0 &&
          strcmp(d.versions[0].model_version, "m7") == 0 &&
          strcmp(d.versions[0].partitioning, "cluster") == 0 && d.versions[0].partitions == 3 &&
          d.versions[1].dim == 0);
    CHECK(d.versions[0].n_vectors == 30000 && strcmp(d.versions[0].content_id, "0123456789abcdef") == 0 &&
          strcmp(d.versions[1].error, r.versions[1].error) == 0 &&
          strcmp(d.versions[1].state, "FAILED") == 0);
    free(json);
    /* the rule: who may serve v1 of partition 2 */
    CHECK(vs_member_may_serve(&d, "v1", 2, ""));
    CHECK(vs_member_may_serve(&d, "v1", 2, "0123456789abcdef"));
    CHECK(!vs_member_may_serve(&d, "v1", 2, "ffffffffffffffff")); /* other data under the same name */
    CHECK(!vs_member_may_serve(&d, "v1", 1, ""));                 /* other partition */
    CHECK(!vs_member_may_serve(&d, "v2", 2, ""));                 /* FAILED */
    CHECK(!vs_member_may_serve(&d, "v3", 2, ""));                 /* not held */
    snprintf(d.state, sizeof d.state, "LOADING"); /* no active version yet: counts for activation only */
    CHECK(!vs_member_may_serve(&d, "v1", 2, "") && vs_member_holds_ready(&d, "v1", 2, ""));
    snprintf(d.state, sizeof d.state, "DRAINING");
    CHECK(!vs_member_may_serve(&d, "v1", 2, "") && !vs_member_holds_ready(&d, "v1", 2, ""));
}

static void test_member_refused(void)
{
    char err[VS_ERR_LEN];
    vs_member_rec_t d;
    struct {
        const char *json, *field;
    } cases[] = {
        {"[]", "not a JSON object"},
        {"{\"partition\":0,\"replica_id\":\"r\",\"state\":\"SERVING\"}", "address"},
        {"{\"address\":\"a:1\",\"replica_id\":\"r\",\"state\":\"SERVING\"}", "partition"},
        {"{\"address\":\"a:1\",\"partition\":-1,\"replica_id\":\"r\",\"state\":\"SERVING\"}", "partition"},
        {"{\"address\":\"a:1\",\"partition\":1.5,\"replica_id\":\"r\",\"state\":\"SERVING\"}", "partition"},
        {"{\"address\":\"a:1\",\"partition\":70000,\"replica_id\":\"r\",\"state\":\"SERVING\"}", "partition"},
        {"{\"address\":\"a:1\",\"partition\":0,\"replica_id\":\"a/b\",\"state\":\"SERVING\"}", "replica_id"},
        {"{\"address\":\"a:1\",\"partition\":0,\"replica_id\":\"r\",\"state\":\"HAPPY\"}", "state"},
        {"{\"address\":\"a:1\",\"partition\":0,\"replica_id\":\"r\",\"state\":\"SERVING\",\"versions\":{}}",
         "versions"},
        {"{\"address\":\"a:1\",\"partition\":0,\"replica_id\":\"r\",\"state\":\"SERVING\",\"versions\":[{"
         "\"version\":\"v1\",\"state\":\"MAYBE\"}]}",
         "state"},
        {"{\"address\":\"a:1\",\"partition\":0,\"replica_id\":\"r\",\"state\":\"SERVING\",\"versions\":[{"
         "\"version\":\"../x\",\"state\":\"READY\"}]}",
         "version"},
        {"{\"address\":7,\"partition\":0,\"replica_id\":\"r\",\"state\":\"SERVING\"}", "address"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        err[0] = 0;
        CHECKF(vs_member_rec_decode(cases[i].json, strlen(cases[i].json), &d, err) == VS_ERR_CORRUPT &&
                   strstr(err, cases[i].field),
               "case %zu: %s", i, err);
    }
    /* a record of the first release (no instance_id, no content ids) still decodes */
    const char *old = "{\"address\":\"127.0.0.1:5\",\"partition\":0,\"replica_id\":\"shard-0-a\",\"state\":"
                      "\"SERVING\",\"active_version\":\"v1\",\"versions\":[{\"version\":\"v1\",\"state\":"
                      "\"READY\",\"n_vectors\":30000}],\"started_at\":\"2026-11-21T07:38:55Z\"}";
    CHECKF(vs_member_rec_decode(old, strlen(old), &d, err) == VS_OK, "%s", err);
    CHECK(d.instance_id[0] == 0 && d.n_versions == 1 && d.versions[0].content_id[0] == 0 &&
          d.memory_limit_bytes == 0 && !d.has_free_slots);
    /* too many versions, too large */
    char big[VS_RECORD_MAX_BYTES + 16];
    memset(big, ' ', sizeof big);
    big[0] = '{';
    big[sizeof big - 1] = '}';
    CHECK(vs_member_rec_decode(big, sizeof big, &d, err) == VS_ERR_CORRUPT);
}

static void test_version_and_active(void)
{
    vs_version_rec_t v;
    memset(&v, 0, sizeof v);
    snprintf(v.version, sizeof v.version, "v2");
    snprintf(v.manifest, sizeof v.manifest, "/idx/v2/manifest.json");
    snprintf(v.model_version, sizeof v.model_version, "two-tower-7");
    v.partitions = 4;
    snprintf(v.state, sizeof v.state, "staged");
    v.dim = 128;
    snprintf(v.metric, sizeof v.metric, "l2");
    snprintf(v.partitioning, sizeof v.partitioning, "hash");
    snprintf(v.content_id, sizeof v.content_id, "00000000deadbeef");
    char *json = NULL, err[VS_ERR_LEN];
    CHECK(vs_version_rec_encode(&v, &json, err) == VS_OK);
    vs_version_rec_t d;
    CHECKF(vs_version_rec_decode(json, strlen(json), &d, err) == VS_OK, "%s", err);
    CHECK(memcmp(&d, &v, sizeof d) == 0 ||
          (strcmp(d.version, "v2") == 0 && d.partitions == 4 && d.dim == 128 &&
           strcmp(d.content_id, v.content_id) == 0 && strcmp(d.partitioning, "hash") == 0 &&
           strcmp(d.metric, "l2") == 0));
    free(json);
    const char *old = "{\"version\":\"v1\",\"manifest\":\"/x/manifest.json\",\"model_version\":\"\","
                      "\"partitions\":2,\"state\":\"active\",\"staged_at\":\"2026-11-21T07:38:55Z\"}";
    CHECKF(vs_version_rec_decode(old, strlen(old), &d, err) == VS_OK, "%s", err);
    CHECK(d.dim == 0 && d.metric[0] == 0 && d.partitions == 2 && strcmp(d.state, "active") == 0);
    const char *bad[] = {"{\"version\":\"v1\",\"manifest\":\"/m\",\"state\":\"dancing\"}",
                         "{\"version\":\"v/1\",\"manifest\":\"/m\",\"state\":\"staged\"}",
                         "{\"version\":\"v1\",\"manifest\":\"\",\"state\":\"staged\"}",
                         "{\"version\":\"v1\",\"manifest\":\"/m\",\"state\":\"staged\",\"partitions\":\"2\"}",
                         "{\"version\":\"v1\",\"state\":\"staged\"}",
                         "nope"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECKF(vs_version_rec_decode(bad[i], strlen(bad[i]), &d, err) == VS_ERR_CORRUPT, "%s", bad[i]);

    vs_active_rec_t a = {.version = "v2", .previous = "v1", .activated_at = "2026-12-06T10:00:00Z"}, ad;
    CHECK(vs_active_rec_encode(&a, &json, err) == VS_OK);
    CHECK(vs_active_rec_decode(json, strlen(json), &ad, err) == VS_OK && strcmp(ad.version, "v2") == 0 &&
          strcmp(ad.previous, "v1") == 0 && strcmp(ad.activated_at, a.activated_at) == 0);
    free(json);
    const char *abad = "{\"version\":\"v2\",\"previous\":\"../v1\"}";
    CHECK(vs_active_rec_decode(abad, strlen(abad), &ad, err) == VS_ERR_CORRUPT);

    vs_audit_rec_t au = {.who = "ops@host",
                         .at = "2026-12-06T10:00:00Z",
                         .command = "remove",
                         .version = "v3",
                         .detail = "removed"},
                   aud;
    CHECK(vs_audit_rec_encode(&au, &json, err) == VS_OK);
    CHECK(vs_audit_rec_decode(json, strlen(json), &aud, err) == VS_OK && strcmp(aud.command, "remove") == 0 &&
          strcmp(aud.who, "ops@host") == 0 && strcmp(aud.version, "v3") == 0);
    free(json);
}

int main(void)
{
    RUN(test_keys);
    RUN(test_member_round_trip);
    RUN(test_member_refused);
    RUN(test_version_and_active);
    return vs_test_finish();
}
