/* test_cli: the network-free logic of the `vecshard` admin CLI (coordinator/cli/admin.h): recall against
 * a naive reference, nearest-rank percentiles, flag validation for every subcommand, the query report
 * (failures by status, partial responses, versions, recall over answered rows only) and the shape of its
 * JSON, StatusResponse decoding, member records, and the per-version summary. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "coordinator/cli/admin.h"
#include "common/cli/ident.h"
#include "tests/testlib.h"
#include "vecshard/v1/coordinator.pb-c.h"

/* Reference recall: set intersection written the obvious way. */
static double naive_recall(const int64_t *ids, size_t k_ids, const int64_t *gt, size_t k_gt, size_t nq,
                           size_t at)
{
    double sum = 0;
    for (size_t q = 0; q < nq; q++) {
        size_t hits = 0;
        for (size_t j = 0; j < at; j++) {
            int seen_before = 0;
            for (size_t i = 0; i < j; i++)
                seen_before |= gt[q * k_gt + i] == gt[q * k_gt + j];
            int found = 0;
            for (size_t i = 0; i < at; i++)
                found |= ids[q * k_ids + i] == gt[q * k_gt + j];
            hits += !seen_before && found && gt[q * k_gt + j] >= 0;
        }
        sum += (double)hits / (double)at;
    }
    return nq ? sum / (double)nq : 0;
}

static void test_recall(void)
{
    int64_t ids[2 * 4] = {1, 2, 3, 4, 9, 8, -1, -1};
    int64_t gt[2 * 5] = {4, 3, 2, 1, 0, 8, 7, 6, 5, 4};
    CHECK(fabs(vs_admin_recall(ids, 4, gt, 5, 1, 4) - 1.0) < 1e-12);          /* order does not matter */
    CHECK(fabs(vs_admin_recall(ids + 4, 4, gt + 5, 5, 1, 4) - 0.25) < 1e-12); /* -1 padding never counts */
    CHECK(fabs(vs_admin_recall(ids, 4, gt, 5, 2, 4) - 0.625) < 1e-12);
    CHECK(fabs(vs_admin_recall(ids, 4, gt, 5, 2, 2) - 0.25) <
          1e-12); /* at 2: {1,2} vs {4,3}; {9,8} vs {8,7} */
    CHECK(vs_admin_recall(ids, 4, gt, 5, 0, 4) == 0);
    int64_t dup[4] = {1, 1, 1, 1};
    int64_t one[4] = {1, 5, 6, 7};
    CHECK(fabs(vs_admin_recall(one, 4, dup, 4, 1, 4) - 0.25) < 1e-12); /* a gt id counts once */

    /* large k takes the sorted path: compare with the reference on random rows */
    enum { NQ = 20, K = 200, KG = 250 };
    int64_t *big = malloc(sizeof(int64_t) * NQ * K);
    int64_t *g = malloc(sizeof(int64_t) * NQ * KG);
    uint64_t s = 5;
    for (size_t i = 0; i < (size_t)NQ * K; i++)
        big[i] = (int64_t)(vs_test_rand(&s) % 400) - 1;
    for (size_t i = 0; i < (size_t)NQ * KG; i++)
        g[i] = (int64_t)(vs_test_rand(&s) % 400);
    for (size_t at = 1; at <= K; at += 67) {
        double want = naive_recall(big, K, g, KG, NQ, at), got = vs_admin_recall(big, K, g, KG, NQ, at);
        CHECKF(fabs(want - got) < 1e-12, "at %zu: %f != %f", at, got, want);
    }
    free(big);
    free(g);
}

static void test_percentile(void)
{
    double v[100];
    for (int i = 0; i < 100; i++)
        v[i] = i + 1;
    CHECK(isnan(vs_admin_percentile(v, 0, 50)));
    CHECK(vs_admin_percentile(v, 100, 0) == 1);
    CHECK(vs_admin_percentile(v, 100, 50) == 50);
    CHECK(vs_admin_percentile(v, 100, 95) == 95);
    CHECK(vs_admin_percentile(v, 100, 99) == 99);
    CHECK(vs_admin_percentile(v, 100, 99.5) == 100);
    CHECK(vs_admin_percentile(v, 100, 100) == 100);
    CHECK(vs_admin_percentile(v, 1, 99) == 1);
    CHECK(vs_admin_percentile(v, 3, 50) == 2); /* ceil(1.5) = rank 2 */
    CHECK(vs_admin_percentile(v, 10, 99) == 10);
}

/* Parses a space-separated command line ("query --k 5 ..."); returns the status, err and opts. */
static vs_status parse_line(const char *line, vs_admin_opts_t *o, char err[VS_ERR_LEN])
{
    static char buf[1024];
    char *argv[64];
    int argc = 0;
    snprintf(buf, sizeof buf, "%s", line);
    for (char *t = strtok(buf, " "); t && argc < 63; t = strtok(NULL, " "))
        argv[argc++] = t;
    argv[argc] = NULL;
    err[0] = 0;
    return vs_admin_parse(vs_admin_cmd_parse(argv[0]), argc, argv, o, err);
}

static void test_parse(void)
{
    vs_admin_opts_t o;
    char err[VS_ERR_LEN];
    CHECK(vs_admin_cmd_parse("query") == VS_ADMIN_QUERY &&
          vs_admin_cmd_parse("versions") == VS_ADMIN_VERSIONS);
    CHECK(vs_admin_cmd_parse("activate") == 0 && vs_admin_cmd_parse(NULL) == 0);

    CHECK(parse_line("query --coordinator h:1 --queries q.fvecs", &o, err) == VS_OK);
    CHECK(o.k == 10 && o.batch == 1 && o.concurrency == 1 && o.limit == 0 && o.timeout_ms == 1000 && !o.json);
    CHECK(o.nprobe == 0 && o.k_factor == 0 && o.gt_path == NULL && !o.help);
    CHECK(parse_line("query --coordinator h:1 --queries q --gt g --k 100 --nprobe 16 --k-factor 4 --batch 7 "
                     "--concurrency 2 --limit 50 --index-version v2 --model-version m --min-coverage 0.5 "
                     "--timeout-ms 300 --ef-search 0 --json",
                     &o, err) == VS_OK);
    CHECK(o.k == 100 && o.nprobe == 16 && o.k_factor == 4 && o.batch == 7 && o.concurrency == 2);
    CHECK(o.limit == 50 && strcmp(o.index_version, "v2") == 0 && strcmp(o.model_version, "m") == 0);
    CHECK(o.min_coverage == 0.5f && o.timeout_ms == 300 && o.json && strcmp(o.gt_path, "g") == 0);

    static const char *const bad[] = {
        "query --coordinator h:1 --queries q --k 0",           /* k range */
        "query --coordinator h:1 --queries q --k 10001",       /* k range */
        "query --coordinator h:1 --queries q --batch abc",     /* not a number */
        "query --coordinator h:1 --queries q --batch 10001",   /* batch range */
        "query --coordinator h:1 --queries q --concurrency 0", /* concurrency range */
        "query --coordinator h:1 --queries q --k-factor 0.5",  /* k_factor 0 or >= 1 */
        "query --coordinator h:1 --queries q --min-coverage 1.5",
        "query --coordinator h:1 --queries q --min-coverage nan",
        "query --coordinator h:1 --queries q --timeout-ms 0",
        "query --coordinator h:1 --queries q --limit -1",
        "query --coordinator h:1 --queries q --frobnicate", /* unknown flag */
        "query --coordinator h:1 --queries q stray",        /* positional */
        "query --coordinator h:1 --queries q --k",          /* missing value */
        "query --coordinator h:1",                          /* --queries required */
        "query --queries q",                                /* --coordinator required */
        "query --coordinator h:1 --queries q --etcd x",     /* --etcd not taken by query */
        "status --coordinator h:1 --queries q",             /* not taken by status */
        "status",                                           /* --coordinator required */
        "versions",                                         /* one of --etcd, --coordinator */
        "versions --etcd http://e:1 --coordinator h:1",     /* not both */
        "versions --etcd http://e:1 --cluster a/b",         /* cluster name */
        "health --coordinator h:1 --wait-ms -5",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        vs_status st = parse_line(bad[i], &o, err);
        CHECKF(st == VS_ERR_INVALID_ARGUMENT && err[0], "'%s' gave %d", bad[i], (int)st);
    }
    CHECK(parse_line("query --coordinator h:1 --queries q --k-factor 2.5", &o, err) == VS_OK &&
          o.k_factor == 2.5f);
    CHECK(parse_line("status --coordinator h:1 --json", &o, err) == VS_OK && o.json && o.timeout_ms == 5000);
    CHECK(parse_line("versions --etcd http://e:1 --cluster local", &o, err) == VS_OK &&
          strcmp(o.cluster, "local") == 0);
    CHECK(parse_line("versions --coordinator h:1", &o, err) == VS_OK && strcmp(o.cluster, "default") == 0);
    CHECK(parse_line("health --coordinator h:1 --wait-ms 2000 --service x", &o, err) == VS_OK &&
          o.wait_ms == 2000 && strcmp(o.service, "x") == 0);
    /* --help wins over everything, even missing required flags */
    CHECK(parse_line("query --help", &o, err) == VS_OK && o.help && o.cmd == VS_ADMIN_QUERY);
    CHECK(parse_line("versions -h", &o, err) == VS_OK && o.help);
    /* the parser runs again from a clean state (getopt reset) */
    CHECK(parse_line("query --coordinator h:1 --queries q --k 3", &o, err) == VS_OK && o.k == 3);
    CHECK(parse_line("status --coordinator h:2", &o, err) == VS_OK && strcmp(o.coordinator, "h:2") == 0);
}

/* Renders into a temp file and returns its text (malloc'd). */
static char *render(void (*fn)(FILE *, const void *, const void *, int), const void *a, const void *b,
                    int json)
{
    FILE *f = tmpfile();
    fn(f, a, b, json);
    long n = ftell(f);
    rewind(f);
    char *s = calloc((size_t)n + 1, 1);
    if (fread(s, 1, (size_t)n, f) != (size_t)n)
        s[0] = 0;
    fclose(f);
    return s;
}

static void report_print_adapter(FILE *f, const void *o, const void *r, int json)
{
    vs_admin_report_print(f, o, r, json);
}

static void test_report(void)
{
    /* 10 rows, k 2, batch 3: calls of 3,3,3,1 rows */
    enum { N = 10, K = 2, GD = 3 };
    int64_t ids[N * K];
    int64_t gt[N * GD];
    for (int q = 0; q < N; q++) {
        gt[q * GD] = q * 10;
        gt[q * GD + 1] = q * 10 + 1;
        gt[q * GD + 2] = q * 10 + 2;
        ids[q * K] = q * 10;                      /* first hit */
        ids[q * K + 1] = q < 3 ? q * 10 + 1 : -1; /* second hit only for the rows of call 0 */
    }
    vs_admin_call_t calls[4];
    memset(calls, 0, sizeof calls);
    for (int i = 0; i < 4; i++) {
        calls[i].row0 = (size_t)i * 3;
        calls[i].nq = i < 3 ? 3 : 1;
        calls[i].latency_ms = 1 + i;
        snprintf(calls[i].version, sizeof calls[i].version, "v1");
    }
    calls[1].partial = 1;
    calls[2].outcome = 4; /* DEADLINE_EXCEEDED: its rows do not count in recall */
    snprintf(calls[2].message, sizeof calls[2].message, "deadline");
    for (int q = 6; q < 9; q++)
        ids[q * K] = -1; /* what a failed call leaves */
    snprintf(calls[3].version, sizeof calls[3].version, "v2");

    vs_admin_report_t r;
    char err[VS_ERR_LEN];
    CHECK(vs_admin_report_build(calls, 4, ids, N, K, gt, GD, 2.0, &r, err) == VS_OK);
    CHECK(r.calls == 4 && r.calls_failed == 1 && r.queries_sent == 10 && r.queries_answered == 7);
    CHECK(r.by_outcome[0] == 3 && r.by_outcome[4] == 1 && strcmp(r.first_message[4], "deadline") == 0);
    CHECK(r.partial_responses == 1);
    CHECK(r.has_recall && r.recall_at == K);
    CHECKF(fabs(r.recall - (3 * 1.0 + 4 * 0.5) / 7) < 1e-12, "recall %f", r.recall);
    CHECK(r.lat_p50_ms == 2 && r.lat_p99_ms == 4 && r.lat_max_ms == 4 && r.lat_mean_ms == 2.5);
    CHECK(fabs(r.qps - 3.5) < 1e-12);
    CHECK(r.n_versions == 2 && strcmp(r.versions[0].name, "v1") == 0 && r.versions[0].calls == 2);
    CHECK(strcmp(r.versions[1].name, "v2") == 0 && r.versions[1].calls == 1);

    vs_admin_opts_t o;
    CHECK(parse_line("query --coordinator h:9 --queries q --k 2 --batch 3 --nprobe 4", &o, err) == VS_OK);
    char *text = render(report_print_adapter, &o, &r, 0);
    CHECK(strstr(text, "DEADLINE_EXCEEDED  1 (first: deadline)") != NULL);
    CHECK(strstr(text, "recall@2") != NULL && strstr(text, "0.7143") != NULL);
    CHECK(strstr(text, "warning: responses came from 2 different index versions") != NULL);
    free(text);

    char *js = render(report_print_adapter, &o, &r, 1);
    cJSON *j = cJSON_Parse(js);
    CHECKF(j != NULL, "not JSON: %s", js);
    static const char *const keys[] = {"coordinator",
                                       "queries_file",
                                       "k",
                                       "batch",
                                       "concurrency",
                                       "params",
                                       "calls",
                                       "calls_failed",
                                       "queries_sent",
                                       "queries_answered",
                                       "failed_by_status",
                                       "first_error",
                                       "partial_responses",
                                       "recall_at_k",
                                       "seconds",
                                       "qps",
                                       "latency_ms",
                                       "index_versions",
                                       "mixed_versions"};
    for (size_t i = 0; j && i < sizeof keys / sizeof keys[0]; i++)
        CHECKF(cJSON_GetObjectItemCaseSensitive(j, keys[i]) != NULL, "JSON lacks %s", keys[i]);
    if (j) {
        CHECK(cJSON_GetObjectItem(j, "calls_failed")->valuedouble == 1);
        CHECK(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "failed_by_status"), "DEADLINE_EXCEEDED")
                  ->valuedouble == 1);
        CHECK(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "params"), "nprobe")->valuedouble == 4);
        CHECK(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "latency_ms"), "p99")->valuedouble == 4);
        CHECK(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "index_versions"), "v2")->valuedouble == 1);
        CHECK(cJSON_IsTrue(cJSON_GetObjectItem(j, "mixed_versions")));
        CHECK(fabs(cJSON_GetObjectItem(j, "recall_at_k")->valuedouble - 5.0 / 7) < 1e-9);
    }
    cJSON_Delete(j);
    free(js);

    /* no calls at all and no ground truth: percentiles are null in JSON, recall is null */
    vs_admin_report_t e;
    CHECK(vs_admin_report_build(NULL, 0, NULL, 0, K, NULL, 0, 0, &e, err) == VS_OK);
    CHECK(e.calls == 0 && isnan(e.lat_p50_ms) && !e.has_recall && e.qps == 0);
    js = render(report_print_adapter, &o, &e, 1);
    j = cJSON_Parse(js);
    CHECK(j && cJSON_IsNull(cJSON_GetObjectItem(j, "recall_at_k")));
    CHECK(j && cJSON_IsNull(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "latency_ms"), "p50")));
    CHECK(j && cJSON_IsFalse(cJSON_GetObjectItem(j, "mixed_versions")));
    cJSON_Delete(j);
    free(js);
    CHECK(strcmp(vs_admin_outcome_name(14), "UNAVAILABLE") == 0);
    CHECK(strcmp(vs_admin_outcome_name(VS_ADMIN_OUTCOME_BAD_RESPONSE), "BAD_RESPONSE") == 0);
    CHECK(strcmp(vs_admin_outcome_name(99), "UNKNOWN") == 0);
}

static void test_status_decode(void)
{
    Vecshard__V1__MemberStatus m[3];
    Vecshard__V1__MemberStatus *mp[3];
    char *v_a[] = {"v1", "v2"};
    char *v_b[] = {"v1"};
    const char *ids[3] = {"p1r0", "p0r1", "p0r0"};
    const uint32_t parts[3] = {1, 0, 0};
    for (int i = 0; i < 3; i++) {
        vecshard__v1__member_status__init(&m[i]);
        m[i].replica_id = (char *)ids[i];
        m[i].address = "127.0.0.1:1";
        m[i].partition = parts[i];
        m[i].state = "SERVING";
        m[i].versions = i == 0 ? v_a : v_b;
        m[i].n_versions = i == 0 ? 2 : 1;
        m[i].latency_ewma_ms = 0.5 * i;
        m[i].outstanding = (uint64_t)i;
        mp[i] = &m[i];
    }
    Vecshard__V1__StatusResponse s = VECSHARD__V1__STATUS_RESPONSE__INIT;
    s.cluster = "local";
    s.active_version = "v1";
    s.members = mp;
    s.n_members = 3;
    s.etcd_connected = 1;
    uint8_t buf[1024];
    size_t len = vecshard__v1__status_response__pack(&s, buf);
    vs_admin_cluster_t c;
    char err[VS_ERR_LEN];
    CHECK(vs_admin_status_decode(buf, len, &c, err) == VS_OK);
    CHECK(c.n_members == 3 && strcmp(c.cluster, "local") == 0 && strcmp(c.active_version, "v1") == 0);
    CHECK(c.etcd_connected && strcmp(c.source, "coordinator") == 0);
    /* sorted by partition, then replica id */
    CHECK(strcmp(c.members[0].replica_id, "p0r0") == 0 && strcmp(c.members[1].replica_id, "p0r1") == 0);
    CHECK(strcmp(c.members[2].replica_id, "p1r0") == 0 && c.members[2].n_held == 2);
    CHECK(c.members[0].latency_ewma_ms == 1.0 && c.members[0].outstanding == 2 && c.members[0].has_load);

    vs_admin_version_summary_t sum[4];
    size_t n = 0;
    vs_admin_versions_summarise(&c, sum, 4, &n);
    CHECK(n == 2 && strcmp(sum[0].name, "v1") == 0 && strcmp(sum[1].name, "v2") == 0);
    CHECK(sum[0].replicas == 3 && sum[0].ready == 3 && sum[0].partitions_ready == 2 &&
          sum[0].partitions_seen == 2);
    CHECK(sum[0].active_on == 3 && sum[0].n_vectors == -1); /* coordinator: counts unknown */
    CHECK(sum[1].replicas == 1 && sum[1].partitions_ready == 1 && sum[1].active_on == 0);

    FILE *f = tmpfile();
    vs_admin_status_print(f, &c, 1);
    rewind(f);
    char text[4096] = "";
    size_t got = fread(text, 1, sizeof text - 1, f);
    text[got] = 0;
    fclose(f);
    cJSON *j = cJSON_Parse(text);
    CHECKF(j != NULL, "not JSON: %s", text);
    cJSON *ms = j ? cJSON_GetObjectItem(j, "members") : NULL;
    CHECK(cJSON_GetArraySize(ms) == 3);
    cJSON *m0 = cJSON_GetArrayItem(ms, 0);
    CHECK(m0 && cJSON_GetObjectItem(m0, "outstanding") && cJSON_GetObjectItem(m0, "latency_ewma_ms"));
    CHECK(m0 && cJSON_IsArray(cJSON_GetObjectItem(m0, "versions")));
    cJSON_Delete(j);
    vs_admin_cluster_fini(&c);
    CHECK(c.members == NULL && c.n_members == 0);

    uint8_t junk[4] = {0xff, 0xff, 0xff, 0xff};
    CHECK(vs_admin_status_decode(junk, sizeof junk, &c, err) == VS_ERR_CORRUPT);
}

static void test_members(void)
{
    static const char *const recs[] = {
        "{\"address\":\"10.0.0.7:50051\",\"partition\":0,\"replica_id\":\"p0r0\",\"state\":\"SERVING\","
        "\"active_version\":\"v1\",\"versions\":[{\"version\":\"v1\",\"state\":\"READY\",\"n_vectors\":30000}"
        ","
        "{\"version\":\"v2\",\"state\":\"LOADING\"}],\"started_at\":\"2026-11-21T07:38:55Z\"}",
        "{\"address\":\"10.0.0.8:50051\",\"partition\":1,\"replica_id\":\"p1r0\",\"state\":\"SERVING\","
        "\"active_version\":\"v1\",\"versions\":[{\"version\":\"v1\",\"state\":\"READY\",\"n_vectors\":"
        "\"29999\"},"
        "{\"version\":\"v2\",\"state\":\"FAILED\",\"error\":\"crc mismatch\"}]}",
        "{\"address\":\"10.0.0.9:50051\",\"partition\":1,\"state\":\"LOADING\",\"versions\":[]}",
    };
    vs_admin_member_t m[3];
    char err[VS_ERR_LEN];
    for (int i = 0; i < 3; i++) {
        memset(&m[i], 0, sizeof m[i]);
        snprintf(m[i].replica_id, sizeof m[i].replica_id, "from-key-%d", i);
        CHECK(vs_admin_member_parse(recs[i], strlen(recs[i]), &m[i], err) == VS_OK);
    }
    CHECK(strcmp(m[0].replica_id, "p0r0") == 0 && m[0].n_held == 2 && m[0].held[0].n_vectors == 30000);
    CHECK(strcmp(m[0].held[1].state, "LOADING") == 0 && m[0].held[1].n_vectors == -1);
    CHECK(m[1].partition == 1 && m[1].held[0].n_vectors == 29999 &&
          strcmp(m[1].held[1].error, "crc mismatch") == 0);
    CHECK(strcmp(m[2].replica_id, "from-key-2") == 0 && m[2].n_held == 0); /* the key's id stays */
    vs_admin_member_t x;
    memset(&x, 0, sizeof x);
    CHECK(vs_admin_member_parse("[1,2]", 5, &x, err) == VS_ERR_CORRUPT);
    CHECK(vs_admin_member_parse("{\"state\":", 9, &x, err) == VS_ERR_CORRUPT);

    vs_admin_cluster_t c = {.members = m, .n_members = 3};
    snprintf(c.source, sizeof c.source, "etcd");
    vs_admin_version_summary_t sum[4];
    size_t n = 0;
    vs_admin_versions_summarise(&c, sum, 4, &n);
    CHECK(n == 2);
    CHECK(sum[0].replicas == 2 && sum[0].ready == 2 && sum[0].active_on == 2);
    CHECK(sum[0].partitions_ready == 2 && sum[0].partitions_seen == 2 && sum[0].n_vectors == 59999);
    CHECK(sum[1].replicas == 2 && sum[1].ready == 0 && sum[1].loading == 1 && sum[1].failed == 1);
    CHECK(sum[1].partitions_ready == 0 && sum[1].n_vectors == -1);
    vs_admin_version_summary_t one[1];
    vs_admin_versions_summarise(&c, one, 1, &n); /* capacity 1: still says how many exist */
    CHECK(n == 2 && strcmp(one[0].name, "v1") == 0);

    FILE *f = tmpfile();
    vs_admin_versions_print(f, &c, 0);
    rewind(f);
    char text[4096] = "";
    size_t got = fread(text, 1, sizeof text - 1, f);
    text[got] = 0;
    fclose(f);
    CHECKF(strstr(text, "v2 FAILED: crc mismatch") != NULL, "%s", text);
    CHECKF(strstr(text, "59999") != NULL, "%s", text);

    /* a 3-partition version whose replicas report it: 2 of 3 partitions, not 2/2 (the members in view) */
    m[0].held[0].partitions = 3;
    vs_admin_versions_summarise(&c, sum, 4, &n);
    CHECK(n == 2 && sum[0].partitions_ready == 2 && sum[0].partitions_seen == 3);
}

/* The open-loop schedule: deterministic, increasing, Poisson (exponential gaps of mean 1/rate). */
/* Made-up identifiers (common/cli/ident.h): what a valid one is, and random ones that differ. */
static void test_ident(void)
{
    CHECK(vs_ident_valid("trace-me-42", 64) && vs_ident_valid("a", 1) && vs_ident_valid("~!", 2));
    CHECK(!vs_ident_valid("", 64) && !vs_ident_valid(NULL, 64) && !vs_ident_valid("has space", 64));
    CHECK(!vs_ident_valid("abc", 2) && !vs_ident_valid("tab\there", 64) && !vs_ident_valid("\x7f", 64));
    char a[VS_IDENT_RANDOM_CHARS + 1], b[VS_IDENT_RANDOM_CHARS + 1];
    vs_ident_random(a);
    vs_ident_random(b);
    CHECK(strlen(a) == VS_IDENT_RANDOM_CHARS && strspn(a, "0123456789abcdef") == VS_IDENT_RANDOM_CHARS);
    CHECK(strcmp(a, b) != 0 && vs_ident_valid(a, VS_IDENT_RANDOM_CHARS));
}

static void test_arrivals(void)
{
    enum { N = 20000 };
    static double a[N], b[N];
    vs_admin_arrivals(N, 500.0, 1, a);
    vs_admin_arrivals(N, 500.0, 1, b);
    CHECK(memcmp(a, b, sizeof a) == 0);
    size_t below = 0;
    for (size_t i = 1; i < N; i++) {
        CHECK(a[i] > a[i - 1]);
        below += a[i] - a[i - 1] < 1.0 / 500.0;
    }
    double mean = a[N - 1] / N, frac = (double)below / (N - 1);
    CHECKF(mean > 0.97 / 500.0 && mean < 1.03 / 500.0, "mean gap %.6f s", mean);
    CHECKF(frac > 0.612 && frac < 0.652, "P(gap < mean) = %.3f, exponential: 0.632", frac);
    vs_admin_arrivals(N, 500.0, 2, b);
    CHECK(memcmp(a, b, sizeof a) != 0);
}

int main(void)
{
    RUN(test_arrivals);
    RUN(test_ident);
    RUN(test_recall);
    RUN(test_percentile);
    RUN(test_parse);
    RUN(test_report);
    RUN(test_status_decode);
    RUN(test_members);
    return vs_test_finish();
}
