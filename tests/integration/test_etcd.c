/* test_etcd: the etcd client against a real etcd (tests/integration/etcd_fixture): binary keys, prefix
 * ranges with 0xff carry, txn create-if-absent and MOD/VALUE CAS, leases (keepalive, revoke, expiry),
 * watch order, watch resync after compaction, etcd killed/paused/restarted, and sessions re-registering
 * after their lease is revoked behind their back. One etcd serves every case; the disruptive case runs
 * last. Keys written by us are cross-checked with Debian's etcdctl when it is installed. */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/net/etcd.h"
#include "tests/integration/etcd_fixture.h"
#include "tests/testlib.h"

static vs_etcd_fixture_t *fx;
static vs_etcd_t *cli;

static int get1(const void *key, size_t klen, vs_etcd_kvs_t *out)
{
    char err[VS_ERR_LEN];
    vs_status st = vs_etcd_get(cli, key, klen, out, err);
    if (st != VS_OK)
        fprintf(stderr, "get: %s\n", err);
    return st == VS_OK ? (int)out->n : -1;
}

static int key_exists(const char *key)
{
    vs_etcd_kvs_t r;
    int n = get1(key, strlen(key), &r);
    vs_etcd_kvs_fini(&r);
    return n;
}

/* ---- watch recorder ---- */

#define MAX_RECS 256
#define MAX_VIEW 64

typedef struct rec {
    vs_etcd_watch_kind kind;
    char key[64], val[64];
    size_t klen, vlen, snap_n;
    int64_t rev;
} rec_t;

typedef struct wlog {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    rec_t r[MAX_RECS];
    size_t n;
    rec_t view[MAX_VIEW]; /* the prefix as the watcher sees it */
    size_t n_view;
    int gate; /* 1: the first SNAPSHOT blocks until the test opens the gate */
    int in_gate;
} wlog_t;

static void wlog_init(wlog_t *l, int gate)
{
    memset(l, 0, sizeof *l);
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    l->gate = gate;
}

static void fill(rec_t *r, const vs_etcd_kv_t *kv)
{
    r->klen = kv->key_len < sizeof r->key ? kv->key_len : sizeof r->key;
    memcpy(r->key, kv->key, r->klen);
    r->vlen = kv->value_len < sizeof r->val ? kv->value_len : sizeof r->val;
    memcpy(r->val, kv->value, r->vlen);
}

static void view_apply(wlog_t *l, const rec_t *r)
{
    size_t i = 0;
    while (i < l->n_view && !(l->view[i].klen == r->klen && memcmp(l->view[i].key, r->key, r->klen) == 0))
        i++;
    if (r->kind == VS_ETCD_WATCH_DELETE) {
        if (i < l->n_view)
            l->view[i] = l->view[--l->n_view];
    } else if (i < l->n_view) {
        l->view[i] = *r;
    } else if (l->n_view < MAX_VIEW) {
        l->view[l->n_view++] = *r;
    }
}

static void on_watch(const vs_etcd_watch_event_t *ev, void *user)
{
    wlog_t *l = user;
    rec_t r = {0};
    r.kind = ev->kind;
    r.rev = ev->revision;
    pthread_mutex_lock(&l->mu);
    if (ev->kind == VS_ETCD_WATCH_SNAPSHOT) {
        r.snap_n = ev->snapshot->n;
        l->n_view = 0;
        for (size_t i = 0; i < ev->snapshot->n; i++) {
            rec_t v = {.kind = VS_ETCD_WATCH_PUT};
            fill(&v, &ev->snapshot->kvs[i]);
            view_apply(l, &v);
        }
    } else if (ev->kv != NULL) {
        fill(&r, ev->kv);
        view_apply(l, &r);
    }
    if (l->n < MAX_RECS)
        l->r[l->n++] = r;
    pthread_cond_broadcast(&l->cv);
    if (ev->kind == VS_ETCD_WATCH_SNAPSHOT && l->gate) {
        l->in_gate = 1;
        pthread_cond_broadcast(&l->cv);
        while (l->gate)
            pthread_cond_wait(&l->cv, &l->mu);
    }
    pthread_mutex_unlock(&l->mu);
}

static size_t count_kind(wlog_t *l, vs_etcd_watch_kind kind)
{
    size_t c = 0;
    pthread_mutex_lock(&l->mu);
    for (size_t i = 0; i < l->n; i++)
        c += l->r[i].kind == kind;
    pthread_mutex_unlock(&l->mu);
    return c;
}

/* Polls until at least n records of kind arrived (or timeout); returns 1 on success. */
static int wait_kind(wlog_t *l, vs_etcd_watch_kind kind, size_t n, int timeout_ms)
{
    int64_t deadline = vs_test_now_ms() + timeout_ms;
    while (count_kind(l, kind) < n) {
        if (vs_test_now_ms() > deadline)
            return 0;
        vs_test_sleep_ms(10);
    }
    return 1;
}

static int view_has(wlog_t *l, const char *key, const char *val)
{
    int found = 0;
    pthread_mutex_lock(&l->mu);
    for (size_t i = 0; i < l->n_view; i++)
        if (l->view[i].klen == strlen(key) && memcmp(l->view[i].key, key, l->view[i].klen) == 0)
            found = val == NULL ||
                    (l->view[i].vlen == strlen(val) && memcmp(l->view[i].val, val, strlen(val)) == 0);
    pthread_mutex_unlock(&l->mu);
    return found;
}

static size_t view_size(wlog_t *l)
{
    pthread_mutex_lock(&l->mu);
    size_t n = l->n_view;
    pthread_mutex_unlock(&l->mu);
    return n;
}

/* ---- cases ---- */

static void put_ok(const void *k, size_t kl, const void *v, size_t vl, int64_t *rev)
{
    char err[VS_ERR_LEN];
    vs_status st = vs_etcd_put(cli, k, kl, v, vl, 0, rev, err);
    CHECKF(st == VS_OK, "put: %s", err);
}

/* etcdctl's view of a text key (the value, or "" when absent); 0 when etcdctl is not installed. */
static int etcdctl_get(const char *key, char *out, size_t cap)
{
    if (access("/usr/bin/etcdctl", X_OK) != 0)
        return 0;
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "ETCDCTL_API=3 /usr/bin/etcdctl --endpoints=%s get --print-value-only '%s' 2>&1",
             vs_etcd_fixture_endpoint(fx), key);
    FILE *p = popen(cmd, "r");
    if (p == NULL)
        return 0;
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    pclose(p);
    while (n > 0 && out[n - 1] == '\n')
        out[--n] = '\0';
    return 1;
}

static void test_kv_binary(void)
{
    static const char k1[] = "/kv/a\0b", k2[] = "/kv/\xff\xff", k3[] = "/kv/\xff\xfe\0", k4[] = "/kv0x";
    static const char v1[] = "\0\x01\xff";
    int64_t r1 = 0, r2 = 0;
    put_ok(k1, sizeof k1 - 1, v1, sizeof v1 - 1, &r1);
    put_ok(k2, sizeof k2 - 1, "", 0, &r2);
    put_ok(k3, sizeof k3 - 1, "three", 5, NULL);
    put_ok(k4, sizeof k4 - 1, "outside", 7, NULL);
    put_ok("/kv/text", 8, "hello etcd", 10, NULL);
    CHECK(r1 > 0 && r2 == r1 + 1);

    vs_etcd_kvs_t r;
    CHECK(get1(k1, sizeof k1 - 1, &r) == 1);
    if (r.n == 1) {
        CHECK(r.kvs[0].key_len == 7 && memcmp(r.kvs[0].key, k1, 7) == 0);
        CHECK(r.kvs[0].value_len == 3 && memcmp(r.kvs[0].value, v1, 3) == 0);
        CHECK(r.kvs[0].create_revision == r1 && r.kvs[0].mod_revision == r1 && r.kvs[0].version == 1);
        CHECK(r.revision >= r2);
    }
    vs_etcd_kvs_fini(&r);
    CHECK(get1("/kv/a", 5, &r) == 0); /* "/kv/a" is not "/kv/a\0b" */
    vs_etcd_kvs_fini(&r);
    CHECK(get1(k2, sizeof k2 - 1, &r) == 1 && r.kvs[0].value_len == 0);
    vs_etcd_kvs_fini(&r);

    char err[VS_ERR_LEN];
    CHECK(vs_etcd_range_prefix(cli, "/kv/", 4, &r, err) == VS_OK);
    CHECKF(r.n == 4, "range /kv/: %zu keys", r.n); /* a\0b, text, \xff\xfe\0, \xff\xff; not /kv0x */
    if (r.n == 4) {
        CHECK(memcmp(r.kvs[0].key, k1, 7) == 0 && strcmp(r.kvs[1].key, "/kv/text") == 0);
        CHECK(r.kvs[2].key_len == 7 && memcmp(r.kvs[2].key, k3, 7) == 0);
        CHECK(r.kvs[3].key_len == 6 && memcmp(r.kvs[3].key, k2, 6) == 0);
    }
    vs_etcd_kvs_fini(&r);
    /* 0xff carry: prefix "/kv/\xff" ends at "/kv0", so it holds exactly the two 0xff keys */
    CHECK(vs_etcd_range_prefix(cli, "/kv/\xff", 5, &r, err) == VS_OK && r.n == 2);
    vs_etcd_kvs_fini(&r);
    /* all-0xff prefix: range_end "\0" means every key from the prefix on */
    put_ok("\xff\xff\x01", 3, "top", 3, NULL);
    CHECK(vs_etcd_range_prefix(cli, "\xff\xff", 2, &r, err) == VS_OK && r.n == 1 && r.kvs[0].key_len == 3);
    vs_etcd_kvs_fini(&r);

    char out[256];
    if (etcdctl_get("/kv/text", out, sizeof out))
        CHECKF(strcmp(out, "hello etcd") == 0, "etcdctl sees \"%s\"", out);
    else
        fprintf(stderr, "note: /usr/bin/etcdctl not installed, cross-check skipped\n");

    int64_t deleted = -1;
    CHECK(vs_etcd_delete(cli, k1, sizeof k1 - 1, 0, &deleted, err) == VS_OK && deleted == 1);
    CHECK(get1(k1, sizeof k1 - 1, &r) == 0);
    vs_etcd_kvs_fini(&r);
    CHECK(vs_etcd_delete(cli, k1, sizeof k1 - 1, 0, &deleted, err) == VS_OK && deleted == 0);
    CHECK(vs_etcd_delete(cli, "/kv/", 4, 1, &deleted, err) == VS_OK && deleted == 3);
    CHECK(vs_etcd_range_prefix(cli, "/kv/", 4, &r, err) == VS_OK && r.n == 0);
    vs_etcd_kvs_fini(&r);
    CHECK(key_exists("/kv0x") == 1);
}

static void test_endpoints(void)
{
    char err[VS_ERR_LEN], list[256];
    vs_etcd_t *e = NULL;
    vs_etcd_opts_t bad = {.endpoints = "127.0.0.1:2379", .timeout_ms = 0};
    CHECK(vs_etcd_create(&bad, &e, err) == VS_ERR_INVALID_ARGUMENT && e == NULL);
    bad.endpoints = " , ";
    CHECK(vs_etcd_create(&bad, &e, err) == VS_ERR_INVALID_ARGUMENT && e == NULL);
    /* a dead first endpoint (nothing listens on port 1) is skipped; the trailing '/' is dropped */
    snprintf(list, sizeof list, "http://127.0.0.1:1, %s/", vs_etcd_fixture_endpoint(fx));
    vs_etcd_opts_t o = {.endpoints = list, .timeout_ms = 0};
    CHECKF(vs_etcd_create(&o, &e, err) == VS_OK, "%s", err);
    if (e == NULL)
        return;
    int64_t rev = 0;
    vs_status st = vs_etcd_put(e, "/ep/k", 5, "v", 1, 0, &rev, err);
    CHECKF(st == VS_OK && rev > 0, "%s", err);
    vs_etcd_kvs_t r;
    CHECK(vs_etcd_get(e, "/ep/k", 5, &r, err) == VS_OK && r.n == 1 && r.kvs[0].mod_revision == rev);
    vs_etcd_kvs_fini(&r);
    vs_etcd_destroy(e);
    /* only dead endpoints: UNAVAILABLE quickly, naming the endpoint */
    vs_etcd_opts_t dead = {.endpoints = "http://127.0.0.1:1,http://127.0.0.1:2", .timeout_ms = 2000};
    CHECK(vs_etcd_create(&dead, &e, err) == VS_OK);
    int64_t t0 = vs_test_now_ms();
    st = vs_etcd_get(e, "/ep/k", 5, &r, err);
    CHECKF(st == VS_ERR_UNAVAILABLE && vs_test_now_ms() - t0 < 1000 && strstr(err, "127.0.0.1:") != NULL,
           "%s: %s", vs_status_name(st), err);
    vs_etcd_destroy(e);
}

static void test_txn_create_if_absent(void)
{
    const char *key = "/vecshard/t/leader";
    vs_etcd_cmp_t cmp = {key, strlen(key), VS_ETCD_CMP_CREATE, VS_ETCD_EQUAL, 0, NULL, 0};
    vs_etcd_op_t put_a = {VS_ETCD_OP_PUT, key, strlen(key), "A", 1, 0, 0};
    vs_etcd_op_t put_b = {VS_ETCD_OP_PUT, key, strlen(key), "B", 1, 0, 0};
    vs_etcd_op_t read = {VS_ETCD_OP_RANGE, key, strlen(key), NULL, 0, 0, 0};
    vs_etcd_txn_result_t t;
    char err[VS_ERR_LEN];
    CHECKF(vs_etcd_txn(cli, &cmp, 1, &put_a, 1, &read, 1, &t, err) == VS_OK, "%s", err);
    CHECK(t.succeeded == 1 && t.kvs.n == 0 && t.revision > 0);
    int64_t won = t.revision;
    vs_etcd_txn_result_fini(&t);
    CHECK(vs_etcd_txn(cli, &cmp, 1, &put_b, 1, &read, 1, &t, err) == VS_OK);
    CHECK(t.succeeded == 0 && t.kvs.n == 1);
    if (t.kvs.n == 1)
        CHECK(t.kvs.kvs[0].value_len == 1 && t.kvs.kvs[0].value[0] == 'A' &&
              t.kvs.kvs[0].create_revision == won);
    vs_etcd_txn_result_fini(&t);

    vs_etcd_cmp_t bad = cmp;
    bad.target = (vs_etcd_cmp_target)42;
    CHECK(vs_etcd_txn(cli, &bad, 1, &put_b, 1, NULL, 0, &t, err) == VS_ERR_INVALID_ARGUMENT);
    vs_etcd_op_t badop = put_b;
    badop.kind = (vs_etcd_op_kind)0;
    CHECK(vs_etcd_txn(cli, &cmp, 1, &badop, 1, NULL, 0, &t, err) == VS_ERR_INVALID_ARGUMENT);
}

static void test_txn_mod_and_value_cas(void)
{
    const char *key = "/vecshard/t/index/current";
    int64_t rev = 0;
    put_ok(key, strlen(key), "v1", 2, &rev);
    vs_etcd_kvs_t r;
    CHECK(get1(key, strlen(key), &r) == 1 && r.kvs[0].mod_revision == rev);
    vs_etcd_kvs_fini(&r);
    vs_etcd_cmp_t cmp = {key, strlen(key), VS_ETCD_CMP_MOD, VS_ETCD_EQUAL, rev, NULL, 0};
    vs_etcd_op_t ops[2] = {{VS_ETCD_OP_PUT, key, strlen(key), "v2", 2, 0, 0},
                           {VS_ETCD_OP_PUT, "/vecshard/t/index/previous", 26, "v1", 2, 0, 0}};
    vs_etcd_txn_result_t t;
    char err[VS_ERR_LEN];
    CHECK(vs_etcd_txn(cli, &cmp, 1, ops, 2, NULL, 0, &t, err) == VS_OK && t.succeeded == 1);
    CHECK(t.revision == rev + 1); /* both puts in one revision */
    vs_etcd_txn_result_fini(&t);
    CHECK(vs_etcd_txn(cli, &cmp, 1, ops, 1, NULL, 0, &t, err) == VS_OK && t.succeeded == 0); /* stale */
    vs_etcd_txn_result_fini(&t);
    vs_etcd_cmp_t vcmp = {key, strlen(key), VS_ETCD_CMP_VALUE, VS_ETCD_EQUAL, 0, "v2", 2};
    vs_etcd_op_t v3 = {VS_ETCD_OP_PUT, key, strlen(key), "v3", 2, 0, 0};
    CHECK(vs_etcd_txn(cli, &vcmp, 1, &v3, 1, NULL, 0, &t, err) == VS_OK && t.succeeded == 1);
    vs_etcd_txn_result_fini(&t);
    vs_etcd_cmp_t gcmp = {key, strlen(key), VS_ETCD_CMP_VERSION, VS_ETCD_GREATER, 2, NULL, 0};
    vs_etcd_op_t del = {VS_ETCD_OP_DELETE, "/vecshard/t/index/", 18, NULL, 0, 0, 1};
    CHECK(vs_etcd_txn(cli, &gcmp, 1, &del, 1, NULL, 0, &t, err) == VS_OK && t.succeeded == 1);
    vs_etcd_txn_result_fini(&t);
    CHECK(key_exists(key) == 0 && key_exists("/vecshard/t/index/previous") == 0);
}

static void test_lease(void)
{
    char err[VS_ERR_LEN];
    int64_t id = 0, ttl = 0;
    CHECKF(vs_etcd_lease_grant(cli, 30, &id, err) == VS_OK && id != 0, "%s", err);
    const char *key = "/vecshard/t/leased";
    CHECK(vs_etcd_put(cli, key, strlen(key), "x", 1, id, NULL, err) == VS_OK);
    vs_etcd_kvs_t r;
    CHECK(get1(key, strlen(key), &r) == 1 && r.kvs[0].lease == id);
    vs_etcd_kvs_fini(&r);
    CHECK(vs_etcd_lease_keepalive(cli, id, &ttl, err) == VS_OK && ttl > 25 && ttl <= 30);
    CHECK(vs_etcd_lease_revoke(cli, id, err) == VS_OK);
    CHECK(key_exists(key) == 0);
    ttl = -1;
    vs_status st = vs_etcd_lease_keepalive(cli, id, &ttl, err);
    CHECKF(st == VS_ERR_NOT_FOUND && ttl == -1, "keepalive on a revoked lease: %s", vs_status_name(st));
    CHECK(vs_etcd_lease_revoke(cli, id, err) == VS_ERR_NOT_FOUND);
    CHECK(vs_etcd_put(cli, key, strlen(key), "x", 1, id, NULL, err) == VS_ERR_NOT_FOUND);
    CHECK(vs_etcd_lease_grant(cli, 0, &id, err) == VS_ERR_INVALID_ARGUMENT);
}

static void test_lease_expiry(void)
{
    char err[VS_ERR_LEN];
    int64_t id = 0;
    CHECK(vs_etcd_lease_grant(cli, 2, &id, err) == VS_OK);
    const char *key = "/vecshard/t/expiring";
    int64_t t0 = vs_test_now_ms();
    CHECK(vs_etcd_put(cli, key, strlen(key), "x", 1, id, NULL, err) == VS_OK);
    CHECK(key_exists(key) == 1);
    while (key_exists(key) == 1 && vs_test_now_ms() - t0 < 8000)
        vs_test_sleep_ms(50);
    int64_t took = vs_test_now_ms() - t0;
    CHECKF(key_exists(key) == 0 && took >= 1000, "expired after %" PRId64 " ms", took);
    CHECK(vs_etcd_lease_keepalive(cli, id, NULL, err) == VS_ERR_NOT_FOUND);
}

static void test_watch_order(void)
{
    char err[VS_ERR_LEN];
    put_ok("/w/a", 4, "a0", 2, NULL);
    wlog_t l;
    wlog_init(&l, 0);
    vs_etcd_watch_t *w = NULL;
    CHECK(vs_etcd_watch_start(cli, "/w/", 3, on_watch, &l, &w, err) == VS_OK);
    CHECK(wait_kind(&l, VS_ETCD_WATCH_SNAPSHOT, 1, 5000));
    CHECK(view_size(&l) == 1 && view_has(&l, "/w/a", "a0"));
    int64_t rb = 0, ra = 0, rd = 0;
    put_ok("/w/b", 4, "b0", 2, &rb);
    put_ok("/wx", 3, "outside", 7, NULL);
    put_ok("/w/a", 4, "a1", 2, &ra);
    CHECK(vs_etcd_delete(cli, "/w/b", 4, 0, NULL, err) == VS_OK);
    vs_etcd_op_t ops[2] = {{VS_ETCD_OP_PUT, "/w/c", 4, "c0", 2, 0, 0},
                           {VS_ETCD_OP_DELETE, "/w/a", 4, NULL, 0, 0, 0}};
    vs_etcd_txn_result_t t;
    CHECK(vs_etcd_txn(cli, NULL, 0, ops, 2, NULL, 0, &t, err) == VS_OK && t.succeeded == 1);
    rd = t.revision;
    vs_etcd_txn_result_fini(&t);
    CHECK(wait_kind(&l, VS_ETCD_WATCH_DELETE, 2, 5000));
    vs_etcd_watch_stats_t s;
    vs_etcd_watch_stats(w, &s);
    vs_etcd_watch_stop(w);
    CHECK(s.connected == 1 && s.snapshots == 1 && s.events == 5 && s.compactions == 0);
    /* expected: CONNECTED, SNAPSHOT, PUT b, PUT a, DELETE b, PUT c, DELETE a (same revision) */
    const vs_etcd_watch_kind want[] = {VS_ETCD_WATCH_CONNECTED, VS_ETCD_WATCH_SNAPSHOT, VS_ETCD_WATCH_PUT,
                                       VS_ETCD_WATCH_PUT,       VS_ETCD_WATCH_DELETE,   VS_ETCD_WATCH_PUT,
                                       VS_ETCD_WATCH_DELETE};
    const char *keys[] = {"", "", "/w/b", "/w/a", "/w/b", "/w/c", "/w/a"};
    CHECKF(l.n == 7, "%zu deliveries", l.n);
    for (size_t i = 0; i < 7 && i < l.n; i++) {
        CHECKF(l.r[i].kind == want[i], "delivery %zu: kind %d", i, (int)l.r[i].kind);
        if (keys[i][0])
            CHECKF(l.r[i].klen == strlen(keys[i]) && memcmp(l.r[i].key, keys[i], l.r[i].klen) == 0,
                   "delivery %zu", i);
    }
    if (l.n == 7) {
        CHECK(l.r[1].snap_n == 1 && l.r[1].rev < rb);
        CHECK(l.r[2].rev == rb && l.r[3].rev == ra && l.r[3].vlen == 2 && memcmp(l.r[3].val, "a1", 2) == 0);
        CHECK(l.r[4].rev > ra && l.r[5].rev == rd && l.r[6].rev == rd);
    }
    CHECK(view_size(&l) == 1 && view_has(&l, "/w/c", "c0"));
}

static void test_watch_resync_after_compaction(void)
{
    char err[VS_ERR_LEN];
    put_ok("/c/k0", 5, "0", 1, NULL);
    wlog_t l;
    wlog_init(&l, 1); /* the watcher stalls inside its first SNAPSHOT, so it falls behind */
    vs_etcd_watch_t *w = NULL;
    CHECK(vs_etcd_watch_start(cli, "/c/", 3, on_watch, &l, &w, err) == VS_OK);
    int64_t deadline = vs_test_now_ms() + 5000;
    pthread_mutex_lock(&l.mu);
    while (!l.in_gate && vs_test_now_ms() < deadline) {
        pthread_mutex_unlock(&l.mu);
        vs_test_sleep_ms(10);
        pthread_mutex_lock(&l.mu);
    }
    int entered = l.in_gate;
    pthread_mutex_unlock(&l.mu);
    CHECK(entered);
    int64_t rev = 0;
    put_ok("/c/k1", 5, "1", 1, NULL);
    put_ok("/c/k2", 5, "2", 1, NULL);
    put_ok("/c/k0", 5, "0b", 2, &rev);
    CHECK(vs_etcd_delete(cli, "/c/k1", 5, 0, NULL, err) == VS_OK);
    rev++;
    CHECKF(vs_etcd_compact(cli, rev, err) == VS_OK, "%s", err);
    CHECK(vs_etcd_compact(cli, rev, err) == VS_ERR_OUT_OF_RANGE); /* already compacted */
    pthread_mutex_lock(&l.mu);
    l.gate = 0;
    pthread_cond_broadcast(&l.cv);
    pthread_mutex_unlock(&l.mu);
    CHECK(wait_kind(&l, VS_ETCD_WATCH_SNAPSHOT, 2, 5000));
    put_ok("/c/k3", 5, "3", 1, NULL); /* the resumed watch still delivers */
    CHECK(wait_kind(&l, VS_ETCD_WATCH_PUT, 1, 5000));
    vs_etcd_watch_stats_t s;
    vs_etcd_watch_stats(w, &s);
    vs_etcd_watch_stop(w);
    CHECKF(s.compactions == 1 && s.snapshots == 2 && s.disconnects == 0,
           "compactions %" PRIu64 " snapshots %" PRIu64 " disconnects %" PRIu64, s.compactions, s.snapshots,
           s.disconnects);
    CHECK(count_kind(&l, VS_ETCD_WATCH_DELETE) == 0); /* the delete of k1 was only seen through the resync */
    CHECK(view_size(&l) == 3 && view_has(&l, "/c/k0", "0b") && view_has(&l, "/c/k2", "2") &&
          view_has(&l, "/c/k3", "3") && !view_has(&l, "/c/k1", NULL));
    if (l.n >= 3)
        CHECK(l.r[2].kind == VS_ETCD_WATCH_SNAPSHOT && l.r[2].rev >= rev && l.r[2].snap_n == 2);
}

static int rereg_calls;
static int64_t rereg_lease;

static void on_rereg(int64_t lease, void *user)
{
    (void)user;
    __atomic_store_n(&rereg_lease, lease, __ATOMIC_SEQ_CST);
    __atomic_add_fetch(&rereg_calls, 1, __ATOMIC_SEQ_CST);
}

static void test_session(void)
{
    char err[VS_ERR_LEN];
    vs_etcd_session_t *s = NULL;
    CHECK(vs_etcd_session_create(cli, 0, &s, err) == VS_ERR_INVALID_ARGUMENT);
    CHECKF(vs_etcd_session_create(cli, 2, &s, err) == VS_OK, "%s", err);
    if (s == NULL)
        return;
    vs_etcd_session_on_reregister(s, on_rereg, NULL);
    const char *key = "/vecshard/t/members/0/r1";
    CHECK(vs_etcd_session_put(s, key, strlen(key), "addr-1", 6, err) == VS_OK);
    CHECK(vs_etcd_session_put(s, key, strlen(key), "addr-2", 6, err) == VS_OK);
    vs_etcd_session_stats_t st;
    vs_etcd_session_stats(s, &st);
    vs_etcd_kvs_t r;
    CHECK(get1(key, strlen(key), &r) == 1 && r.kvs[0].lease == st.lease &&
          strcmp(r.kvs[0].value, "addr-2") == 0);
    vs_etcd_kvs_fini(&r);
    vs_test_sleep_ms(2500); /* longer than the ttl: only keepalives keep the key */
    CHECK(key_exists(key) == 1);
    vs_etcd_session_stats(s, &st);
    CHECKF(st.keepalives >= 2 && st.keepalive_failures == 0 && st.reregistrations == 0,
           "keepalives %" PRIu64 " failures %" PRIu64, st.keepalives, st.keepalive_failures);

    /* the lease is revoked behind the session's back: the key vanishes, then comes back on a new lease */
    int64_t old = st.lease;
    CHECK(vs_etcd_lease_revoke(cli, old, err) == VS_OK);
    CHECK(key_exists(key) == 0);
    int64_t t0 = vs_test_now_ms();
    while (key_exists(key) != 1 && vs_test_now_ms() - t0 < 4000)
        vs_test_sleep_ms(20);
    int64_t took = vs_test_now_ms() - t0;
    CHECKF(key_exists(key) == 1 && took < 2500, "re-registered after %" PRId64 " ms", took);
    vs_etcd_session_stats(s, &st);
    CHECK(st.reregistrations == 1 && st.keepalive_failures >= 1 && st.lease != old && st.lease != 0);
    CHECK(get1(key, strlen(key), &r) == 1 && r.kvs[0].lease == st.lease &&
          strcmp(r.kvs[0].value, "addr-2") == 0);
    vs_etcd_kvs_fini(&r);
    CHECK(__atomic_load_n(&rereg_calls, __ATOMIC_SEQ_CST) == 1 &&
          __atomic_load_n(&rereg_lease, __ATOMIC_SEQ_CST) == st.lease);

    vs_etcd_session_close(s);
    CHECK(key_exists(key) == 0); /* revoked at close: gone at once, not after the ttl */
}

static void test_etcd_down_and_back(void)
{
    char err[VS_ERR_LEN];
    vs_etcd_t *fast = NULL;
    vs_etcd_opts_t o = {.endpoints = vs_etcd_fixture_endpoint(fx), .timeout_ms = 500};
    CHECK(vs_etcd_create(&o, &fast, err) == VS_OK);
    put_ok("/r/a", 4, "1", 1, NULL);
    wlog_t l, l2;
    wlog_init(&l, 0);
    wlog_init(&l2, 0);
    vs_etcd_watch_t *w = NULL, *w2 = NULL;
    CHECK(vs_etcd_watch_start(cli, "/r/", 3, on_watch, &l, &w, err) == VS_OK);
    CHECK(vs_etcd_watch_start(cli, "/r/", 3, on_watch, &l2, &w2, err) == VS_OK);
    CHECK(wait_kind(&l, VS_ETCD_WATCH_SNAPSHOT, 1, 5000) && wait_kind(&l2, VS_ETCD_WATCH_SNAPSHOT, 1, 5000));
    vs_etcd_session_t *s = NULL;
    CHECK(vs_etcd_session_create(cli, 5, &s, err) == VS_OK);

    /* paused: calls time out (the request is sent, no answer comes) */
    CHECK(vs_etcd_fixture_pause(fx, err) == VS_OK);
    int64_t t0 = vs_test_now_ms();
    vs_etcd_kvs_t r;
    vs_status st = vs_etcd_get(fast, "/r/a", 4, &r, err);
    int64_t took = vs_test_now_ms() - t0;
    CHECKF(st == VS_ERR_DEADLINE_EXCEEDED && took < 1500, "paused: %s after %" PRId64 " ms",
           vs_status_name(st), took);
    vs_etcd_kvs_fini(&r);
    CHECK(vs_etcd_fixture_resume(fx, err) == VS_OK);
    CHECK(vs_etcd_get(fast, "/r/a", 4, &r, err) == VS_OK && r.n == 1);
    vs_etcd_kvs_fini(&r);

    /* killed: refused connections give UNAVAILABLE well within the timeout */
    CHECK(vs_etcd_fixture_kill(fx, err) == VS_OK);
    t0 = vs_test_now_ms();
    st = vs_etcd_put(fast, "/r/b", 4, "2", 1, 0, NULL, err);
    took = vs_test_now_ms() - t0;
    CHECKF(st == VS_ERR_UNAVAILABLE && took <= 600, "killed: %s after %" PRId64 " ms: %s", vs_status_name(st),
           took, err);
    CHECK(wait_kind(&l, VS_ETCD_WATCH_DISCONNECTED, 1, 5000));
    vs_etcd_watch_stats_t ws;
    vs_etcd_watch_stats(w, &ws);
    CHECK(ws.connected == 0 && ws.disconnects >= 1);
    CHECK(view_has(&l, "/r/a", "1")); /* the last view is kept */
    t0 = vs_test_now_ms();
    vs_etcd_watch_stop(w2); /* stopping while etcd is down returns promptly */
    CHECKF(vs_test_now_ms() - t0 < 3000, "watch_stop took %" PRId64 " ms", vs_test_now_ms() - t0);

    CHECKF(vs_etcd_fixture_restart(fx, err) == VS_OK, "%s", err);
    int64_t t1 = vs_test_now_ms();
    while ((st = vs_etcd_put(fast, "/r/b", 4, "2", 1, 0, NULL, err)) != VS_OK && vs_test_now_ms() - t1 < 5000)
        vs_test_sleep_ms(50);
    CHECKF(st == VS_OK, "after restart: %s", err);
    CHECK(wait_kind(&l, VS_ETCD_WATCH_CONNECTED, 2, 10000));
    CHECK(wait_kind(&l, VS_ETCD_WATCH_SNAPSHOT, 2, 10000));
    int64_t t2 = vs_test_now_ms();
    while (!view_has(&l, "/r/b", "2") && vs_test_now_ms() - t2 < 5000)
        vs_test_sleep_ms(10);
    CHECK(view_has(&l, "/r/a", "1") && view_has(&l, "/r/b", "2"));
    vs_etcd_watch_stats(w, &ws);
    CHECK(ws.connected == 1);
    vs_etcd_watch_stop(w);

    /* a session survives the outage (shorter than its ttl) and closes cleanly */
    vs_etcd_session_stats_t ss;
    vs_etcd_session_stats(s, &ss);
    CHECK(ss.lease != 0);
    CHECK(vs_etcd_fixture_kill(fx, err) == VS_OK);
    t0 = vs_test_now_ms();
    vs_etcd_session_close(s); /* tolerant of etcd being down */
    CHECKF(vs_test_now_ms() - t0 < 3000, "session_close took %" PRId64 " ms", vs_test_now_ms() - t0);
    vs_etcd_destroy(fast);
}

int main(void)
{
    char err[VS_ERR_LEN];
    vs_status st = vs_etcd_fixture_start("test_etcd", &fx, err);
    if (st != VS_OK) {
        fprintf(stderr, "test_etcd: cannot start etcd: %s: %s\n", vs_status_name(st), err);
        return 1; /* never a silent pass */
    }
    vs_etcd_opts_t o = {.endpoints = vs_etcd_fixture_endpoint(fx), .timeout_ms = 2000};
    st = vs_etcd_create(&o, &cli, err);
    if (st != VS_OK) {
        fprintf(stderr, "test_etcd: vs_etcd_create: %s\n", err);
        vs_etcd_fixture_destroy(fx);
        return 1;
    }
    RUN(test_kv_binary);
    RUN(test_endpoints);
    RUN(test_txn_create_if_absent);
    RUN(test_txn_mod_and_value_cas);
    RUN(test_lease);
    RUN(test_lease_expiry);
    RUN(test_watch_order);
    RUN(test_watch_resync_after_compaction);
    RUN(test_session);
    RUN(test_etcd_down_and_back);
    vs_etcd_destroy(cli);
    vs_etcd_fixture_destroy(fx);
    return vs_test_finish();
}
