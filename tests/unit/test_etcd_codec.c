/* test_etcd_codec: the network-free half of the etcd client: base64 against a reference bit packer (every
 * length 0..300, binary data), malformed base64, prefix range_end with 0xff carry, and the reply parsers on
 * canned gateway replies (omitted zero fields, int64 strings above 2^53, error bodies, watch lines). */
#include <stdlib.h>
#include <string.h>

#include "common/net/etcd_codec.h"
#include "tests/testlib.h"

/* Reference encoder: one bit at a time, so it shares no code path with the real one. */
static void ref_b64(const unsigned char *in, size_t n, char *out)
{
    const char *a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t bits = n * 8, o = 0;
    for (size_t b = 0; b < bits; b += 6) {
        int v = 0;
        for (size_t k = 0; k < 6; k++) {
            size_t bit = b + k;
            int x = bit < bits ? (in[bit / 8] >> (7 - bit % 8)) & 1 : 0;
            v = v << 1 | x;
        }
        out[o++] = a[v];
    }
    while (o % 4 != 0)
        out[o++] = '=';
    out[o] = '\0';
}

static void test_b64_known(void)
{
    const char *plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    const char *enc[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (int i = 0; i < 7; i++) {
        char out[32];
        vs_etcd_b64_encode(plain[i], strlen(plain[i]), out);
        CHECKF(strcmp(out, enc[i]) == 0, "encode \"%s\" -> %s", plain[i], out);
        char *d = NULL, err[VS_ERR_LEN];
        size_t n = 99;
        CHECK(vs_etcd_b64_decode(enc[i], strlen(enc[i]), &d, &n, err) == VS_OK);
        CHECK(d != NULL && n == strlen(plain[i]) && memcmp(d, plain[i], n) == 0 && d[n] == '\0');
        free(d);
    }
}

static void test_b64_round_trip_all_lengths(void)
{
    uint64_t st = 42;
    unsigned char in[300] = {0};
    char enc[420], ref[420], err[VS_ERR_LEN];
    for (size_t n = 0; n <= sizeof in; n++) {
        for (size_t i = 0; i < n; i++)
            in[i] = (unsigned char)vs_test_rand(&st);
        if (n > 2) {
            in[0] = 0x00;
            in[n - 1] = 0xff;
        }
        vs_etcd_b64_encode(in, n, enc);
        ref_b64(in, n, ref);
        CHECKF(strlen(enc) == vs_etcd_b64_len(n) && strcmp(enc, ref) == 0, "n=%zu", n);
        char *d = NULL;
        size_t dn = 0;
        vs_status s = vs_etcd_b64_decode(enc, strlen(enc), &d, &dn, err);
        CHECKF(s == VS_OK && dn == n && (n == 0 || memcmp(d, in, n) == 0), "n=%zu: %s", n, vs_status_name(s));
        free(d);
    }
}

static void test_b64_rejects(void)
{
    const char *bad[] = {"Z", "Zg=", "Zg=a", "Z===", "====", "Zm9v*A==", "Zm9vYg=\n", "=Zg=", "Zm=v"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *d = (char *)1, err[VS_ERR_LEN];
        size_t n;
        vs_status s = vs_etcd_b64_decode(bad[i], strlen(bad[i]), &d, &n, err);
        CHECKF(s == VS_ERR_CORRUPT, "\"%s\" accepted (%s)", bad[i], vs_status_name(s));
        CHECK(d == (char *)1); /* untouched on failure */
    }
}

static void check_end(const char *prefix, size_t plen, const char *want, size_t wlen)
{
    unsigned char out[16];
    size_t n = vs_etcd_prefix_end(prefix, plen, out);
    CHECKF(n == wlen && memcmp(out, want, wlen) == 0, "prefix of %zu bytes: got %zu bytes", plen, n);
}

static void test_prefix_end(void)
{
    check_end("/vec/members/", 13, "/vec/members0", 13);
    check_end("a", 1, "b", 1);
    check_end("a\xff", 2, "b", 1);
    check_end("a\xff\xff", 3, "b", 1);
    check_end("a\xfe\xff", 3, "a\xff", 2);
    check_end("\x00", 1, "\x01", 1);
    check_end("\xff", 1, "\x00", 1);         /* all 0xff: every key from key */
    check_end("\xff\xff\xff", 3, "\x00", 1); /* same */
    check_end("", 0, "\x00", 1);
    size_t n = 0;
    const char *k = vs_etcd_prefix_key("", &n);
    CHECK(n == 1 && k[0] == '\0');
    n = 3;
    CHECK(vs_etcd_prefix_key("abc", &n) != NULL && n == 3);
}

static void test_int64_fields(void)
{
    const char *j =
        "{\"a\":\"9223372036854775807\",\"b\":\"-9223372036854775808\",\"c\":\"7587862121543571001\","
        "\"d\":12,\"e\":null,\"f\":\"12x\",\"g\":\"\",\"h\":1.5,\"i\":true,\"j\":\"99999999999999999999\","
        "\"k\":1e300}";
    cJSON *o = cJSON_Parse(j);
    char err[VS_ERR_LEN];
    int64_t v = -1;
    CHECK(vs_etcd_json_i64(o, "a", &v, err) == VS_OK && v == INT64_MAX);
    CHECK(vs_etcd_json_i64(o, "b", &v, err) == VS_OK && v == INT64_MIN);
    CHECK(vs_etcd_json_i64(o, "c", &v, err) == VS_OK && v == 7587862121543571001LL); /* > 2^53, exact */
    CHECK(vs_etcd_json_i64(o, "d", &v, err) == VS_OK && v == 12);
    CHECK(vs_etcd_json_i64(o, "e", &v, err) == VS_OK && v == 0);
    CHECK(vs_etcd_json_i64(o, "missing", &v, err) == VS_OK && v == 0);
    CHECK(vs_etcd_json_i64(NULL, "a", &v, err) == VS_OK && v == 0);
    const char *bad[] = {"f", "g", "h", "i", "j", "k"};
    for (int i = 0; i < 6; i++)
        CHECKF(vs_etcd_json_i64(o, bad[i], &v, err) == VS_ERR_CORRUPT, "field %s accepted", bad[i]);
    int b = 7;
    CHECK(vs_etcd_json_bool(o, "i", &b, err) == VS_OK && b == 1);
    CHECK(vs_etcd_json_bool(o, "missing", &b, err) == VS_OK && b == 0);
    CHECK(vs_etcd_json_bool(o, "a", &b, err) == VS_ERR_CORRUPT);
    cJSON_Delete(o);
}

static void test_parse_range(void)
{
    char err[VS_ERR_LEN];
    vs_etcd_kvs_t r;
    /* empty range: kvs and count omitted */
    const char *empty =
        "{\"header\":{\"cluster_id\":\"14841639068965178418\",\"member_id\":\"10276657743932975437\","
        "\"revision\":\"9007199254740993\",\"raft_term\":\"2\"}}";
    CHECK(vs_etcd_parse_range(empty, strlen(empty), &r, err) == VS_OK);
    CHECK(r.n == 0 && r.kvs == NULL && r.revision == 9007199254740993LL);
    vs_etcd_kvs_fini(&r);
    /* key "\0\xff" (AP8=), value omitted (empty), version etc. as strings, lease above 2^53 */
    const char *one = "{\"header\":{\"revision\":\"7\"},\"kvs\":[{\"key\":\"AP8=\",\"create_revision\":\"5\","
                      "\"mod_revision\":\"7\",\"version\":\"3\",\"lease\":\"7587862121543571001\"},"
                      "{\"key\":\"Zm9v\",\"value\":\"YmFy\",\"create_revision\":\"6\",\"mod_revision\":\"6\","
                      "\"version\":\"1\"}],\"count\":\"2\"}";
    CHECK(vs_etcd_parse_range(one, strlen(one), &r, err) == VS_OK);
    CHECK(r.n == 2 && r.revision == 7);
    if (r.n == 2) {
        CHECK(r.kvs[0].key_len == 2 && memcmp(r.kvs[0].key, "\0\xff", 2) == 0);
        CHECK(r.kvs[0].value_len == 0 && r.kvs[0].value != NULL && r.kvs[0].value[0] == '\0');
        CHECK(r.kvs[0].create_revision == 5 && r.kvs[0].mod_revision == 7 && r.kvs[0].version == 3);
        CHECK(r.kvs[0].lease == 7587862121543571001LL);
        CHECK(r.kvs[1].key_len == 3 && strcmp(r.kvs[1].key, "foo") == 0 &&
              strcmp(r.kvs[1].value, "bar") == 0);
        CHECK(r.kvs[1].lease == 0);
    }
    vs_etcd_kvs_fini(&r);
    CHECK(r.n == 0 && r.kvs == NULL);
    /* malformed replies: every one refused, nothing leaked (ASan) */
    const char *bad[] = {"",
                         "[]",
                         "{\"kvs\":{}}",
                         "{\"kvs\":[1]}",
                         "{\"kvs\":[{\"key\":\"Zm9v\"},{\"key\":\"%%%%\"}]}",
                         "{\"kvs\":[{\"key\":\"Zm9v\",\"value\":5}]}",
                         "{\"header\":{\"revision\":\"x\"}}",
                         "{\"header\":[]}",
                         "{\"kvs\":[{\"key\":\"Zm9v\",\"version\":\"1.5\"}]}",
                         "{\"kvs\":[{\"key\":\"Zm9v\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        vs_status s = vs_etcd_parse_range(bad[i], strlen(bad[i]), &r, err);
        CHECKF(s == VS_ERR_CORRUPT, "reply %zu accepted (%s)", i, vs_status_name(s));
        CHECK(r.n == 0 && r.kvs == NULL);
    }
    int64_t rev = -1, f = -1;
    const char *del = "{\"header\":{\"revision\":\"12\"},\"deleted\":\"3\"}";
    CHECK(vs_etcd_parse_reply(del, strlen(del), &rev, "deleted", &f, err) == VS_OK && rev == 12 && f == 3);
    const char *none = "{\"header\":{\"revision\":\"12\"}}";
    CHECK(vs_etcd_parse_reply(none, strlen(none), &rev, "deleted", &f, err) == VS_OK && f == 0);
}

static void test_parse_txn(void)
{
    char err[VS_ERR_LEN];
    vs_etcd_txn_result_t t;
    const char *ok = "{\"header\":{\"revision\":\"20\"},\"succeeded\":true,\"responses\":[{\"response_put\":"
                     "{\"header\":{\"revision\":\"20\"}}}]}";
    CHECK(vs_etcd_parse_txn(ok, strlen(ok), &t, err) == VS_OK && t.succeeded == 1 && t.revision == 20 &&
          t.kvs.n == 0);
    vs_etcd_txn_result_fini(&t);
    /* failed compare: succeeded omitted; the failure branch's range returns the holder */
    const char *fail =
        "{\"header\":{\"revision\":\"21\"},\"responses\":[{\"response_range\":{\"header\":"
        "{\"revision\":\"21\"},\"kvs\":[{\"key\":\"bG9jaw==\",\"create_revision\":\"18\","
        "\"mod_revision\":\"18\",\"version\":\"1\",\"value\":\"aG9sZGVy\"}],\"count\":\"1\"}}]}";
    CHECK(vs_etcd_parse_txn(fail, strlen(fail), &t, err) == VS_OK);
    CHECK(t.succeeded == 0 && t.revision == 21 && t.kvs.n == 1 && t.kvs.revision == 21);
    if (t.kvs.n == 1)
        CHECK(strcmp(t.kvs.kvs[0].key, "lock") == 0 && strcmp(t.kvs.kvs[0].value, "holder") == 0 &&
              t.kvs.kvs[0].create_revision == 18);
    vs_etcd_txn_result_fini(&t);
    const char *bad = "{\"succeeded\":\"yes\"}";
    CHECK(vs_etcd_parse_txn(bad, strlen(bad), &t, err) == VS_ERR_CORRUPT);
}

static void test_parse_keepalive_and_errors(void)
{
    char err[VS_ERR_LEN];
    int64_t ttl = -1;
    const char *alive =
        "{\"result\":{\"header\":{\"revision\":\"3\"},\"ID\":\"7587862121543571001\",\"TTL\":\"10\"}}";
    CHECK(vs_etcd_parse_keepalive(alive, strlen(alive), &ttl, err) == VS_OK && ttl == 10);
    const char *gone = "{\"result\":{\"header\":{\"revision\":\"3\"},\"ID\":\"7587862121543571001\"}}";
    CHECK(vs_etcd_parse_keepalive(gone, strlen(gone), &ttl, err) == VS_ERR_NOT_FOUND && ttl == 0);
    const char *serr =
        "{\"error\":{\"grpc_code\":14,\"http_code\":503,\"message\":\"etcdserver: no leader\"}}";
    CHECK(vs_etcd_parse_keepalive(serr, strlen(serr), &ttl, err) == VS_ERR_UNAVAILABLE);
    CHECK(strstr(err, "no leader") != NULL);
    CHECK(vs_etcd_parse_keepalive("{}", 2, &ttl, err) == VS_ERR_CORRUPT);

    const char *nf = "{\"error\":\"etcdserver: requested lease not found\",\"code\":5,"
                     "\"message\":\"etcdserver: requested lease not found\"}";
    CHECK(vs_etcd_parse_error("lease revoke", 404, nf, strlen(nf), err) == VS_ERR_NOT_FOUND);
    CHECK(strstr(err, "lease not found") != NULL && strstr(err, "404") != NULL);
    const char *cmp = "{\"error\":\"mvcc: required revision has been compacted\",\"code\":11}";
    CHECK(vs_etcd_parse_error("range", 400, cmp, strlen(cmp), err) == VS_ERR_OUT_OF_RANGE);
    const char *inv = "{\"error\":\"bad\",\"code\":3}";
    CHECK(vs_etcd_parse_error("txn", 400, inv, strlen(inv), err) == VS_ERR_INVALID_ARGUMENT);
    CHECK(vs_etcd_parse_error("x", 503, "gateway down", 12, err) == VS_ERR_UNAVAILABLE);
    CHECK(vs_etcd_parse_error("x", 404, "", 0, err) == VS_ERR_NOT_FOUND);
    CHECK(vs_etcd_parse_error("x", 500, "{\"code\":0}", 10, err) == VS_ERR_INTERNAL);
    CHECK(vs_status_from_grpc(4) == VS_ERR_DEADLINE_EXCEEDED);
    CHECK(vs_status_from_grpc(8) == VS_ERR_RESOURCE_EXHAUSTED);
    CHECK(vs_status_from_grpc(99) == VS_ERR_INTERNAL);
}

static void test_parse_watch(void)
{
    char err[VS_ERR_LEN];
    vs_etcd_watch_msg_t m;
    const char *created = "{\"result\":{\"header\":{\"revision\":\"5\"},\"created\":true}}";
    CHECK(vs_etcd_parse_watch_msg(created, strlen(created), &m, err) == VS_OK);
    CHECK(m.created == 1 && m.canceled == 0 && m.n_events == 0 && m.revision == 5);
    vs_etcd_watch_msg_fini(&m);
    /* a txn's two events in one message: PUT (type omitted) then DELETE (kv holds key + mod_revision) */
    const char *evs =
        "{\"result\":{\"header\":{\"revision\":\"9\"},\"events\":[{\"kv\":{\"key\":\"YQ==\","
        "\"create_revision\":\"9\",\"mod_revision\":\"9\",\"version\":\"1\",\"value\":\"MQ==\"}},"
        "{\"type\":\"DELETE\",\"kv\":{\"key\":\"Yg==\",\"mod_revision\":\"9\"}}]}}";
    CHECK(vs_etcd_parse_watch_msg(evs, strlen(evs), &m, err) == VS_OK);
    CHECK(m.n_events == 2);
    if (m.n_events == 2) {
        CHECK(!m.is_delete[0] && strcmp(m.events[0].key, "a") == 0 && strcmp(m.events[0].value, "1") == 0);
        CHECK(m.is_delete[1] && strcmp(m.events[1].key, "b") == 0 && m.events[1].mod_revision == 9 &&
              m.events[1].value_len == 0);
    }
    vs_etcd_watch_msg_fini(&m);
    const char *cancel = "{\"result\":{\"header\":{\"revision\":\"30\"},\"canceled\":true,"
                         "\"compact_revision\":\"25\",\"cancel_reason\":\"mvcc: required revision has been "
                         "compacted\"}}";
    CHECK(vs_etcd_parse_watch_msg(cancel, strlen(cancel), &m, err) == VS_OK);
    CHECK(m.canceled == 1 && m.compact_revision == 25 && strstr(m.cancel_reason, "compacted") != NULL);
    vs_etcd_watch_msg_fini(&m);
    const char *bad[] = {"{}", "{\"result\":{\"events\":[{\"type\":\"MOVE\",\"kv\":{}}]}}",
                         "{\"result\":{\"events\":[{\"kv\":{\"key\":\"YQ==\"}},{\"kv\":{\"key\":\"!\"}}]}}",
                         "{\"result\":{\"events\":[5]}}", "{\"result\":{\"events\":{}}}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        vs_status s = vs_etcd_parse_watch_msg(bad[i], strlen(bad[i]), &m, err);
        CHECKF(s == VS_ERR_CORRUPT, "watch line %zu accepted (%s)", i, vs_status_name(s));
        CHECK(m.n_events == 0 && m.events == NULL);
    }
    const char *e = "{\"error\":{\"grpc_code\":11,\"http_code\":400,\"message\":\"compacted\"}}";
    CHECK(vs_etcd_parse_watch_msg(e, strlen(e), &m, err) == VS_ERR_OUT_OF_RANGE);
}

static void test_json_builders(void)
{
    cJSON *o = cJSON_CreateObject();
    CHECK(vs_etcd_json_add_i64(o, "ID", 7587862121543571001LL) == 0);
    CHECK(vs_etcd_json_add_b64(o, "key", "\0\xff", 2) == 0);
    char big[1000];
    memset(big, 'x', sizeof big);
    CHECK(vs_etcd_json_add_b64(o, "value", big, sizeof big) == 0);
    char *s = cJSON_PrintUnformatted(o);
    CHECK(s != NULL && strstr(s, "\"ID\":\"7587862121543571001\"") != NULL &&
          strstr(s, "\"key\":\"AP8=\"") != NULL);
    cJSON *back = cJSON_Parse(s);
    char err[VS_ERR_LEN];
    int64_t id = 0;
    CHECK(vs_etcd_json_i64(back, "ID", &id, err) == VS_OK && id == 7587862121543571001LL);
    cJSON_Delete(back);
    free(s);
    cJSON_Delete(o);
}

int main(void)
{
    RUN(test_b64_known);
    RUN(test_b64_round_trip_all_lengths);
    RUN(test_b64_rejects);
    RUN(test_prefix_end);
    RUN(test_int64_fields);
    RUN(test_parse_range);
    RUN(test_parse_txn);
    RUN(test_parse_keepalive_and_errors);
    RUN(test_parse_watch);
    RUN(test_json_builders);
    return vs_test_finish();
}
