/* test_shard_writes: a real vecshard-shard following the write log on a real nats-server (issue 15).
 * - An upsert logged to JetStream becomes searchable through the shard's gRPC Search, and a delete
 *   hides it, each within a bound (the time is printed: the goal is p99 <= 1 s through the cluster).
 * - kill -9 of nats-server: the shard keeps serving what it has; after the restart it applies what is
 *   logged next.
 * - kill -9 of the shard: the restarted process applies the log from the version's start again and
 *   answers exactly as before the kill.
 * - A version whose log has a gap (the stream purged before the shard read it) stops serving instead
 *   of serving a partition with writes missing.
 * - The log folded into the next build (vecshard-fold, vecshard-build --log-upto): the new version holds
 *   the folded writes and its replica applies only the later ones, none twice; attribute columns folded
 *   with the rows (--attr, --out-attr) serve filtered searches with each item's last values.
 * - An HNSW version takes the same writes: an upsert is found, a replacement moves its id, a delete hides
 *   it (a base item's too). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nats/nats.h>

#include "common/filter.h"
#include "common/hash.h"
#include "common/net/pbfilter.h"
#include "common/net/rpc.h"
#include "common/net/wlog.h"
#include "common/vecio.h"
#include "tests/integration/nats_fixture.h"
#include "tests/support/proc.h"
#include "tests/support/version_fixture.h"
#include "tests/testlib.h"
#include "vecshard/v1/shard.pb-c.h"
#include "vecshard/v1/writelog.pb-c.h"

#define N 3000
#define D 16

static vs_test_version_t ver, hver;
static int g_hnsw; /* first_id searches an HNSW version (efSearch, not nprobe) */
static vs_proc_fixture_t *g_nats;
static char g_url[64];
static const char *g_dir;

/* Appends one LogWrite (one id) under write id wid; returns its sequence (0 on failure). */
static uint64_t log_one(vs_wlog_t *w, int op, int64_t id, const float *x, const char *wid)
{
    size_t len;
    uint8_t *b = vs_test_log_write(op, &id, 1, x, D, "test-model-1", wid, &len);
    uint64_t seq = 0;
    int dup;
    char err[VS_ERR_LEN];
    int64_t until = vs_test_now_ms() + 10000;
    while (vs_wlog_append(w, b, len, wid, &seq, &dup, err) != VS_OK && vs_test_now_ms() < until)
        vs_test_sleep_ms(100);
    free(b);
    return seq;
}

/* The first id the shard returns for q among the items matching filter (text form, common/filter.h; NULL =
 * all); -2 when the call fails (*code: its gRPC status). */
static int64_t first_id_where(vs_rpc_channel_t *ch, const float *q, const char *filter, int *code)
{
    Vecshard__V1__ShardSearchRequest r = VECSHARD__V1__SHARD_SEARCH_REQUEST__INIT;
    Vecshard__V1__SearchParams p = VECSHARD__V1__SEARCH_PARAMS__INIT;
    vs_filter_spec_t spec;
    vs_filter_pb_t fpb;
    char err[VS_ERR_LEN];
    vs_filter_spec_init(&spec);
    if (filter) {
        CHECKF(vs_filter_spec_parse(filter, &spec, err) == VS_OK, "%s", err);
        vs_filter_spec_to_pb(&spec, &fpb);
        r.filter = &fpb.msg;
    }
    if (g_hnsw)
        p.ef_search = 32;
    else
        p.nprobe = 16;
    r.dim = D;
    r.queries = (float *)q;
    r.n_queries = D;
    r.k = 3;
    r.params = &p;
    size_t len = vecshard__v1__shard_search_request__get_packed_size(&r);
    uint8_t *b = malloc(len);
    vecshard__v1__shard_search_request__pack(&r, b);
    char msg[VS_ERR_LEN];
    uint8_t *out = NULL;
    size_t out_len = 0;
    *code = -1;
    int64_t id = -2;
    if (vs_rpc_call_unary(ch, "/vecshard.v1.Shard/Search", b, len, 2000, code, msg, &out, &out_len) ==
            VS_OK &&
        *code == 0) {
        Vecshard__V1__ShardSearchResponse *resp =
            vecshard__v1__shard_search_response__unpack(NULL, out_len, out);
        if (resp && resp->n_ids > 0)
            id = resp->ids[0];
        if (resp)
            vecshard__v1__shard_search_response__free_unpacked(resp, NULL);
    }
    free(out);
    free(b);
    vs_filter_spec_fini(&spec);
    return id;
}

static int64_t first_id(vs_rpc_channel_t *ch, const float *q, int *code)
{
    return first_id_where(ch, q, NULL, code);
}

/* Waits (up to ms) until the shard's first answer for q is (want_id) or is not (!want) id; returns the
 * milliseconds it took, -1 on timeout. */
static int64_t wait_first(vs_rpc_channel_t *ch, const float *q, int64_t id, int want, int64_t ms)
{
    int64_t t0 = vs_test_now_ms();
    while (vs_test_now_ms() - t0 < ms) {
        int code;
        int64_t got = first_id(ch, q, &code);
        if (code == 0 && (got == id) == want)
            return vs_test_now_ms() - t0;
        vs_test_sleep_ms(5);
    }
    return -1;
}

static int start_shard(vs_test_proc_t *p, const char *name, const char *cluster)
{
    const char *argv[] = {"--listen",    "127.0.0.1:0", "--metrics-listen",
                          "none",        "--manifest",  g_hnsw ? hver.manifest : ver.manifest,
                          "--partition", "0",           "--cluster",
                          cluster,       "--nats-url",  g_url,
                          NULL};
    return vs_test_proc_start(p, g_dir, name, "vecshard-shard", argv);
}

/* The log of cluster, a shard (name) following it and a channel to the shard; 0 when any failed (then
 * all are released). */
static int open_session(const char *cluster, const char *name, vs_wlog_t **w, vs_test_proc_t *sh,
                        vs_rpc_channel_t **ch)
{
    char err[VS_ERR_LEN];
    vs_wlog_opts_t o = {.url = g_url, .cluster = cluster, .timeout_ms = 1000};
    *w = NULL;
    *ch = NULL;
    CHECKF(vs_wlog_open(&o, 1, w, err) == VS_OK, "%s", err);
    CHECK(start_shard(sh, name, cluster) == 0);
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", sh->grpc_port);
    CHECK(vs_rpc_channel_create(target, 0, ch, err) == VS_OK);
    if (*w && *ch && sh->pid != 0)
        return 1;
    vs_test_proc_stop(sh, SIGKILL, 5);
    vs_rpc_channel_destroy(*ch);
    vs_wlog_close(*w);
    return 0;
}

static void test_writes_follow_the_log(void)
{
    char err[VS_ERR_LEN];
    vs_wlog_t *w;
    vs_test_proc_t sh;
    vs_rpc_channel_t *ch;
    if (!open_session("w1", "shard-w1", &w, &sh, &ch))
        return;
    char target[64];
    int64_t id = 700000;
    while (vs_hash_partition(id, 2) != 0)
        id++;
    const float *q = ver.queries + 5 * D;
    CHECK(wait_first(ch, q, id, 0, 20000) >= 0); /* the version is loaded and the id absent */
    CHECK(log_one(w, VECSHARD__V1__LOG_WRITE__OP__OP_UPSERT, id, q, "u1") == 1);
    int64_t t_up = wait_first(ch, q, id, 1, 5000);
    CHECKF(t_up >= 0, "the upsert never became searchable");
    CHECK(log_one(w, VECSHARD__V1__LOG_WRITE__OP__OP_DELETE, id, NULL, "d1") == 2);
    int64_t t_del = wait_first(ch, q, id, 0, 5000);
    CHECKF(t_del >= 0, "the delete never took effect");
    CHECK(log_one(w, VECSHARD__V1__LOG_WRITE__OP__OP_UPSERT, id, q, "u1b") == 3); /* a later write */
    int64_t t_up2 = wait_first(ch, q, id, 1, 5000);
    CHECK(t_up2 >= 0);
    CHECK(log_one(w, VECSHARD__V1__LOG_WRITE__OP__OP_DELETE, id, NULL, "d1b") == 4);
    CHECK(wait_first(ch, q, id, 0, 5000) >= 0);
    fprintf(stderr,
            "test_shard_writes: first upsert searchable after %lld ms, delete after %lld ms; next upsert "
            "%lld ms\n",
            (long long)t_up, (long long)t_del, (long long)t_up2);

    /* nats-server killed: the shard keeps serving; after the restart it applies the next write */
    CHECK(vs_proc_fixture_kill(g_nats, err) == VS_OK);
    int code;
    CHECK(first_id(ch, q, &code) != id && code == 0);
    CHECK(vs_proc_fixture_restart(g_nats, err) == VS_OK);
    int64_t id2 = id + 1;
    while (vs_hash_partition(id2, 2) != 0)
        id2++;
    const float *q2 = ver.queries + 6 * D;
    CHECK(log_one(w, VECSHARD__V1__LOG_WRITE__OP__OP_UPSERT, id2, q2, "u2") == 5);
    CHECKF(wait_first(ch, q2, id2, 1, 15000) >= 0, "no write applied after nats-server restarted");

    /* the shard killed: the new process applies the log again from the version's start */
    CHECK(vs_test_proc_stop(&sh, SIGKILL, 5) != 0);
    vs_rpc_channel_destroy(ch);
    ch = NULL;
    CHECK(start_shard(&sh, "shard-w1b", "w1") == 0);
    snprintf(target, sizeof target, "127.0.0.1:%d", sh.grpc_port);
    CHECK(vs_rpc_channel_create(target, 0, &ch, err) == VS_OK);
    CHECKF(wait_first(ch, q2, id2, 1, 20000) >= 0, "the restarted shard lost the logged upsert");
    CHECK(first_id(ch, q, &code) != id && code == 0); /* and the delete */
    vs_test_proc_stop(&sh, SIGTERM, 10);
    vs_rpc_channel_destroy(ch);
    vs_wlog_close(w);
}

static void test_gap_stops_the_version(void)
{
    char err[VS_ERR_LEN];
    vs_wlog_opts_t o = {.url = g_url, .cluster = "w2", .timeout_ms = 1000};
    vs_wlog_t *w = NULL;
    CHECK(vs_wlog_open(&o, 1, &w, err) == VS_OK);
    if (!w)
        return;
    CHECK(log_one(w, VECSHARD__V1__LOG_WRITE__OP__OP_DELETE, 1, NULL, "g1") == 1);
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    CHECK(natsConnection_ConnectTo(&nc, g_url) == NATS_OK);
    CHECK(natsConnection_JetStream(&js, nc, NULL) == NATS_OK);
    CHECK(js_PurgeStream(js, "VS_w2", NULL, NULL) == NATS_OK); /* message 1 is gone before anyone read it */
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    vs_test_proc_t sh;
    CHECK(start_shard(&sh, "shard-w2", "w2") == 0);
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", sh.grpc_port);
    vs_rpc_channel_t *ch = NULL;
    CHECK(vs_rpc_channel_create(target, 0, &ch, err) == VS_OK);
    /* it loads v1, finds the gap and marks v1 FAILED with the reason (Info) */
    int failed = 0;
    char reason[VS_ERR_LEN] = "";
    int64_t until = vs_test_now_ms() + 20000;
    while (!failed && vs_test_now_ms() < until) {
        uint8_t *out = NULL;
        size_t out_len = 0;
        int code = -1;
        char msg[VS_ERR_LEN];
        if (vs_rpc_call_unary(ch, "/vecshard.v1.Shard/Info", "", 0, 2000, &code, msg, &out, &out_len) ==
                VS_OK &&
            code == 0) {
            Vecshard__V1__ShardInfoResponse *r =
                vecshard__v1__shard_info_response__unpack(NULL, out_len, out);
            for (size_t i = 0; r && i < r->n_versions; i++)
                if (r->versions[i]->state == VECSHARD__V1__VERSION_STATE__VERSION_STATE_FAILED) {
                    failed = 1;
                    snprintf(reason, sizeof reason, "%s", r->versions[i]->error);
                }
            if (r)
                vecshard__v1__shard_info_response__free_unpacked(r, NULL);
        }
        free(out);
        if (!failed)
            vs_test_sleep_ms(50);
    }
    CHECKF(failed && strstr(reason, "write log"), "a partition with writes missing kept serving (%s)",
           reason);
    int code = 0;
    CHECK(first_id(ch, ver.queries, &code) == -2 && (code == 14 || code == 9)); /* and searches are refused */
    vs_test_proc_stop(&sh, SIGTERM, 10);
    vs_rpc_channel_destroy(ch);
    vs_wlog_close(w);
}

/* Appends an upsert of id with attribute columns market (one int64; NULL: no column) and price (one float;
 * NULL: no column), as the coordinator logs it; returns its sequence (0 on failure). */
static uint64_t log_attrs(vs_wlog_t *w, int64_t id, const float *x, const int64_t *market, const float *price,
                          const char *wid)
{
    Vecshard__V1__AttributeColumn c[2], *cp[2];
    size_t nc = 0;
    if (market) {
        vecshard__v1__attribute_column__init(&c[nc]);
        c[nc].field = "market";
        c[nc].int_values = (int64_t *)market;
        c[nc].n_int_values = 1;
        cp[nc] = &c[nc];
        nc++;
    }
    if (price) {
        vecshard__v1__attribute_column__init(&c[nc]);
        c[nc].field = "price";
        c[nc].float_values = (float *)price;
        c[nc].n_float_values = 1;
        cp[nc] = &c[nc];
        nc++;
    }
    Vecshard__V1__LogWrite lw = VECSHARD__V1__LOG_WRITE__INIT;
    lw.op = VECSHARD__V1__LOG_WRITE__OP__OP_UPSERT;
    lw.ids = &id;
    lw.n_ids = 1;
    lw.dim = D;
    lw.vectors = (float *)x;
    lw.n_vectors = D;
    lw.model_version = "test-model-1";
    lw.write_id = (char *)wid;
    lw.attributes = cp;
    lw.n_attributes = nc;
    size_t len = vecshard__v1__log_write__get_packed_size(&lw);
    uint8_t *b = malloc(len);
    vecshard__v1__log_write__pack(&lw, b);
    uint64_t seq = 0;
    int dup;
    char err[VS_ERR_LEN];
    int64_t until = vs_test_now_ms() + 10000;
    while (vs_wlog_append(w, b, len, wid, &seq, &dup, err) != VS_OK && vs_test_now_ms() < until)
        vs_test_sleep_ms(100);
    free(b);
    return seq;
}

/* The log folded into the next build: vecshard-fold, vecshard-build --log-upto S, then a shard serving the
 * new version has the folded writes in its index and applies only what came after S (nothing twice). The
 * base's attribute columns (market = row % 4, price = row) are folded too: the new version filters by the
 * folded values (a kept row's, an upsert's, missing where the last upsert gave none). */
static void test_fold_into_the_next_version(void)
{
    char err[VS_ERR_LEN];
    vs_wlog_opts_t o = {.url = g_url, .cluster = "w3", .timeout_ms = 1000};
    vs_wlog_t *w = NULL;
    CHECK(vs_wlog_open(&o, 1, &w, err) == VS_OK);
    if (!w)
        return;
    int64_t a = 910000, c = 920000, b = 0;
    while (vs_hash_partition(a, 2) != 0)
        a++;
    while (vs_hash_partition(c, 2) != 0)
        c++;
    while (vs_hash_partition(b, 2) != 0) /* a base row of partition 0 */
        b++;
    int64_t r = b + 1, k; /* base rows of partition 0: r replaced, k kept */
    while (vs_hash_partition(r, 2) != 0)
        r++;
    for (k = r + 1; vs_hash_partition(k, 2) != 0;)
        k++;
    const float *qa = ver.queries + 7 * D, *qc = ver.queries + 8 * D, *qb = ver.base + (size_t)b * D;
    const float *qr = ver.queries + 9 * D, *qk = ver.base + (size_t)k * D;
    const int64_t m7 = 7, m5 = 5;
    const float p15 = 1.5f, p25 = 2.5f;
    CHECK(log_attrs(w, a, qa, &m7, &p15, "f1") == 1);
    CHECK(log_one(w, VECSHARD__V1__LOG_WRITE__OP__OP_DELETE, b, NULL, "f2") == 2);
    CHECK(log_attrs(w, r, qr, NULL, &p25, "f3") == 3); /* moved; its market now missing */
    /* fold 1..3 into the base (the fixture's rows, ids = row numbers) and its columns, and build v2 with
     * log_upto 3 */
    char bpath[PATH_MAX], fb[PATH_MAX], fi[PATH_MAX], lg[PATH_MAX], mp[PATH_MAX], pp[PATH_MAX], fa[PATH_MAX],
        cmd[12 * PATH_MAX + 512];
    snprintf(bpath, sizeof bpath, "%s/base-v1.fvecs", g_dir);
    snprintf(fb, sizeof fb, "%s/folded.fvecs", g_dir);
    snprintf(fi, sizeof fi, "%s/folded.i64", g_dir);
    snprintf(lg, sizeof lg, "%s/tool.log", g_dir);
    snprintf(mp, sizeof mp, "%s/market-v1.npy", g_dir);
    snprintf(pp, sizeof pp, "%s/price-v1.npy", g_dir);
    snprintf(fa, sizeof fa, "%s/folded-attrs", g_dir);
    CHECK(vs_vecio_write_fvecs(bpath, N, D, ver.base, err) == VS_OK);
    int64_t *market = malloc(N * sizeof *market);
    float *price = malloc(N * sizeof *price);
    for (size_t i = 0; i < N; i++) {
        market[i] = (int64_t)(i % 4);
        price[i] = (float)i;
    }
    CHECK(vs_vecio_write_npy(mp, VS_DTYPE_I64, N, 1, market, err) == VS_OK);
    CHECK(vs_vecio_write_npy(pp, VS_DTYPE_F32, N, 1, price, err) == VS_OK);
    free(market);
    free(price);
    const char *bin = getenv("VS_BIN_DIR") ? getenv("VS_BIN_DIR") : "build/bin";
    snprintf(
        cmd, sizeof cmd,
        "%s/vecshard-fold --base %s --nats-url %s --cluster w3 --model-version test-model-1 --out-base %s "
        "--out-ids %s --attr market=%s --attr price=%s --out-attr %s",
        bin, bpath, g_url, fb, fi, mp, pp, fa);
    CHECK(vs_test_run_tool(cmd, lg) == 0);
    snprintf(cmd, sizeof cmd, "grep -q '\"log_upto\":3,' %s && grep -q '\"rows\":%d}' %s", lg, N, lg);
    CHECKF(system(cmd) == 0, "vecshard-fold did not report log_upto 3 and %d rows", N);
    snprintf(
        cmd, sizeof cmd,
        "%s/vecshard-build --base %s --ids %s --factory IVF16,PQ8x4fs,RFlat --partitions 2 --version v2 "
        "--model-version test-model-1 --log-upto 3 --attr market=%s/market.npy --attr price=%s/price.npy "
        "--out %s --quiet",
        bin, fb, fi, fa, fa, g_dir);
    CHECK(vs_test_run_tool(cmd, lg) == 0);
    CHECK(log_attrs(w, c, qc, &m5, NULL, "f4") == 4); /* after the fold */
    vs_test_proc_t sh;
    char manifest[PATH_MAX];
    snprintf(manifest, sizeof manifest, "%s/v2/manifest.json", g_dir);
    const char *argv[] = {"--listen",   "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
                          "--manifest", manifest,      "--partition",      "0",
                          "--cluster",  "w3",          "--nats-url",       g_url,
                          NULL};
    CHECK(vs_test_proc_start(&sh, g_dir, "shard-w3", "vecshard-shard", argv) == 0);
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", sh.grpc_port);
    vs_rpc_channel_t *ch = NULL;
    CHECK(vs_rpc_channel_create(target, 0, &ch, err) == VS_OK);
    CHECKF(wait_first(ch, qc, c, 1, 20000) >= 0, "the write after the fold was not applied");
    int code;
    CHECK(first_id(ch, qa, &code) == a && code == 0); /* folded into the index */
    CHECK(first_id(ch, qb, &code) != b && code == 0); /* folded delete */
    /* the folded attributes: the upsert's values, a kept row's, missing where the last upsert gave none */
    char f1[64], f2[64];
    CHECK(first_id_where(ch, qa, "market=7", &code) == a && code == 0);
    CHECK(first_id_where(ch, qa, "market=0|1|2|3", &code) != a && code == 0);
    CHECK(first_id_where(ch, qa, "price=1.5..1.5", &code) == a && code == 0);
    snprintf(f1, sizeof f1, "market=%lld&price=%lld..%lld", (long long)(k % 4), (long long)k, (long long)k);
    snprintf(f2, sizeof f2, "market=%lld", (long long)((k + 1) % 4));
    CHECK(first_id_where(ch, qk, f1, &code) == k && code == 0);
    CHECK(first_id_where(ch, qk, f2, &code) != k && code == 0);
    CHECK(first_id_where(ch, qr, "price=2.5..2.5", &code) == r && code == 0);
    CHECK(first_id_where(ch, qr, "market=0|1|2|3|5|7", &code) != r && code == 0);
    CHECK(first_id_where(ch, qc, "market=5", &code) == c &&
          code == 0); /* the later write's, by v2's schema */
    char scratch[PATH_MAX];
    snprintf(scratch, sizeof scratch, "%s/scrape.txt", g_dir);
    double pos = vs_test_proc_metric(&sh, "vecshard_shard_log_position", scratch);
    double applied = vs_test_proc_metric(&sh, "vecshard_shard_log_messages_applied_total", scratch);
    double fresh = vs_test_proc_metric(&sh, "vecshard_shard_fresh_ids", scratch);
    CHECKF(pos == 4 && applied == 1 && fresh == 1, "log position %g, %g applied, %g fresh ids (want 4, 1, 1)",
           pos, applied, fresh);
    vs_test_proc_stop(&sh, SIGTERM, 10);
    vs_rpc_channel_destroy(ch);
    vs_wlog_close(w);
}

static void test_hnsw_version(void)
{
    g_hnsw = 1;
    vs_wlog_t *w;
    vs_test_proc_t sh;
    vs_rpc_channel_t *ch;
    if (!open_session("w4", "shard-w4", &w, &sh, &ch)) {
        g_hnsw = 0;
        return;
    }
    int64_t id = 800000;
    while (vs_hash_partition(id, 2) != 0)
        id++;
    const float *q = hver.queries + 5 * D, *q2 = hver.queries + 9 * D;
    CHECK(wait_first(ch, q, id, 0, 20000) >= 0); /* loaded, the id absent */
    CHECK(log_one(w, VECSHARD__V1__LOG_WRITE__OP__OP_UPSERT, id, q, "h1") == 1);
    CHECKF(wait_first(ch, q, id, 1, 5000) >= 0, "the upsert never became searchable in the HNSW version");
    CHECK(log_one(w, VECSHARD__V1__LOG_WRITE__OP__OP_UPSERT, id, q2, "h2") == 2); /* moved elsewhere */
    CHECKF(wait_first(ch, q2, id, 1, 5000) >= 0, "the replacement never became searchable");
    int code;
    CHECK(first_id(ch, q, &code) != id && code == 0);                /* its old copy is gone */
    int64_t base_first = first_id(ch, hver.queries + 11 * D, &code); /* a base item, then deleted */
    CHECK(code == 0 && base_first >= 0);
    CHECK(log_one(w, VECSHARD__V1__LOG_WRITE__OP__OP_DELETE, id, NULL, "h3") == 3);
    CHECK(log_one(w, VECSHARD__V1__LOG_WRITE__OP__OP_DELETE, base_first, NULL, "h4") == 4);
    CHECKF(wait_first(ch, q2, id, 0, 5000) >= 0, "the delete never took effect");
    CHECKF(wait_first(ch, hver.queries + 11 * D, base_first, 0, 5000) >= 0, "the base item stayed visible");
    vs_test_proc_stop(&sh, SIGTERM, 10);
    vs_rpc_channel_destroy(ch);
    vs_wlog_close(w);
    g_hnsw = 0;
}

int main(void)
{
    char err[VS_ERR_LEN];
    g_dir = vs_test_tmpdir("shard_writes");
    if (vs_test_version_build(g_dir, "v1", "IVF16,PQ8x4fs,RFlat", VS_METRIC_L2, N, D, 2, 20, 7, &ver, err) !=
        VS_OK) {
        fprintf(stderr, "fixture: %s\n", err);
        return 1;
    }
    if (vs_test_version_build(g_dir, "h1", "HNSW16", VS_METRIC_L2, N, D, 2, 20, 7, &hver, err) != VS_OK) {
        fprintf(stderr, "fixture: %s\n", err);
        return 1;
    }
    if (vs_nats_fixture_start("shardw", &g_nats, err) != VS_OK) {
        fprintf(stderr, "test_shard_writes: %s\n", err);
        return 1;
    }
    vs_nats_fixture_url(g_nats, g_url, sizeof g_url);
    RUN(test_writes_follow_the_log);
    RUN(test_gap_stops_the_version);
    RUN(test_fold_into_the_next_version);
    RUN(test_hnsw_version);
    vs_proc_fixture_destroy(g_nats);
    vs_test_version_fini(&ver);
    vs_test_version_fini(&hver);
    vs_test_cleanup("shard_writes");
    nats_Close();
    return vs_test_finish();
}
