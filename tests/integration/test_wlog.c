/* test_wlog: the write log (common/net/wlog.h) against a real nats-server with JetStream.
 * - Appends get increasing sequences; the same write id again is a duplicate with the first sequence,
 *   also after nats-server was killed with SIGKILL and restarted on its file store, which still holds
 *   every acknowledged message.
 * - A reader applies messages in order, is offered a refused message again, and picks up writes made
 *   after a server restart (its consumer is gone; it makes a new one from where it is).
 * - While the server is down an append fails with UNAVAILABLE (outcome unknown) instead of hanging, and
 *   its retry with the same write id after the restart leaves the write in the log exactly once.
 * - A reader asked to start where the stream no longer holds messages (purged) is refused, never started
 *   later; a full log refuses appends (RESOURCE_EXHAUSTED); a message over the server's limit and bad
 *   names are refused with the limit or the rule in the message.
 * - Asynchronous appends: 2,000 pipelined appends are each answered once, OK, with the sequences in call
 *   order; a resent write id is a duplicate; a full log answers RESOURCE_EXHAUSTED; with the server
 *   frozen (SIGSTOP) an append is answered UNAVAILABLE when its acknowledgement times out, and
 *   vs_wlog_drain answers the ones still waiting at once. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nats/nats.h>

#include "common/net/wlog.h"
#include "tests/integration/nats_fixture.h"
#include "tests/testlib.h"

static vs_proc_fixture_t *g_nats;
static char g_url[64];

typedef struct seen {
    uint64_t seqs[64];
    char data[64][32];
    size_t n;
    uint64_t refuse_seq; /* refuse this one once */
} seen_t;

static vs_status collect(void *user, uint64_t seq, const uint8_t *msg, size_t len, char err[VS_ERR_LEN])
{
    seen_t *s = user;
    if (seq == s->refuse_seq) {
        s->refuse_seq = 0;
        return vs_errf(err, VS_ERR_INTERNAL, "refused %llu once", (unsigned long long)seq);
    }
    if (s->n < 64) {
        s->seqs[s->n] = seq;
        snprintf(s->data[s->n], sizeof s->data[s->n], "%.*s", (int)len, (const char *)msg);
        s->n++;
    }
    return VS_OK;
}

/* Reads until `want` messages were applied in all, or 10 s. */
static void read_until(vs_wlog_reader_t *r, seen_t *s, size_t want)
{
    char err[VS_ERR_LEN];
    int64_t until = vs_test_now_ms() + 10000;
    while (s->n < want && vs_test_now_ms() < until) {
        size_t n;
        vs_status st = vs_wlog_reader_next(r, 16, 200, collect, s, &n, err);
        if (st != VS_OK && st != VS_ERR_UNAVAILABLE && st != VS_ERR_INTERNAL)
            CHECKF(0, "reader: %s", err);
    }
}

static vs_wlog_t *open_log(const char *cluster, int64_t max_bytes, int create, vs_status *st, char *err)
{
    vs_wlog_opts_t o = {.url = g_url, .cluster = cluster, .timeout_ms = 1000, .max_bytes = max_bytes};
    vs_wlog_t *w = NULL;
    *st = vs_wlog_open(&o, create, &w, err);
    return w;
}

static void test_append_read_dedup_restart(void)
{
    char err[VS_ERR_LEN];
    vs_status st;
    vs_wlog_t *w = open_log("t1", 0, 1, &st, err);
    CHECKF(st == VS_OK, "%s", err);
    if (!w)
        return;
    uint64_t seq;
    int dup;
    const char *msgs[] = {"alpha", "bravo", "charlie"};
    const char *ids[] = {"w-1", "w-2", "w-3"};
    for (int i = 0; i < 3; i++) {
        CHECKF(vs_wlog_append(w, msgs[i], strlen(msgs[i]), ids[i], &seq, &dup, err) == VS_OK, "%s", err);
        CHECK(seq == (uint64_t)i + 1 && dup == 0);
    }
    CHECK(vs_wlog_append(w, "bravo again", 11, "w-2", &seq, &dup, err) == VS_OK);
    CHECKF(seq == 2 && dup == 1, "a resent write id: seq %llu dup %d", (unsigned long long)seq, dup);
    vs_wlog_state_t s;
    CHECK(vs_wlog_state(w, &s, err) == VS_OK);
    CHECK(s.first_seq == 1 && s.last_seq == 3 && s.msgs == 3 && s.created_ns > 0 && s.max_payload > 0);

    vs_wlog_reader_t *r = NULL;
    CHECKF(vs_wlog_reader_open(w, 1, &r, err) == VS_OK, "%s", err);
    seen_t seen = {.refuse_seq = 2};
    read_until(r, &seen, 3);
    CHECKF(seen.n == 3 && seen.seqs[0] == 1 && seen.seqs[1] == 2 && seen.seqs[2] == 3, "applied %zu", seen.n);
    CHECK(strcmp(seen.data[1], "bravo") == 0 && vs_wlog_reader_position(r) == 4);
    size_t n = 9;
    CHECK(vs_wlog_reader_next(r, 16, 100, collect, &seen, &n, err) == VS_OK && n == 0); /* caught up */

    /* kill -9: appends fail fast and clearly, acknowledged messages and the dedup window survive */
    CHECK(vs_proc_fixture_kill(g_nats, err) == VS_OK);
    int64_t t0 = vs_test_now_ms();
    st = vs_wlog_append(w, "lost?", 5, "w-4", &seq, &dup, err);
    CHECKF(st == VS_ERR_UNAVAILABLE && strstr(err, "retry with the same write id"), "%d %s", st, err);
    /* outcome unknown: the library may deliver it after reconnecting; the retry below with the same
     * write id must then be a duplicate of it, and the log must hold w-4 exactly once */
    CHECKF(vs_test_now_ms() - t0 < 5000, "append took %lld ms with the server down",
           (long long)(vs_test_now_ms() - t0));
    CHECKF(vs_proc_fixture_restart(g_nats, err) == VS_OK, "%s", err);
    int64_t until = vs_test_now_ms() + 10000; /* the client reconnects on its own */
    while ((st = vs_wlog_append(w, "delta", 5, "w-4", &seq, &dup, err)) != VS_OK && vs_test_now_ms() < until)
        vs_test_sleep_ms(100);
    CHECKF(st == VS_OK && seq == 4, "after restart: %d seq %llu: %s", st, (unsigned long long)seq, err);
    int w4_dup = dup;
    CHECK(vs_wlog_state(w, &s, err) == VS_OK && s.last_seq == 4); /* once, whichever copy got there */
    CHECK(vs_wlog_append(w, "bravo", 5, "w-2", &seq, &dup, err) == VS_OK);
    CHECKF(seq == 2 && dup == 1, "dedup after restart: seq %llu dup %d", (unsigned long long)seq, dup);
    /* the reader from before the restart picks up the new message */
    read_until(r, &seen, 4);
    CHECKF(seen.n == 4 && seen.seqs[3] == 4 && strcmp(seen.data[3], w4_dup ? "lost?" : "delta") == 0,
           "applied %zu, the 4th is '%s' (retry was a duplicate: %d)", seen.n, seen.data[3], w4_dup);
    vs_wlog_reader_close(r);

    /* a reader from the middle */
    CHECK(vs_wlog_reader_open(w, 3, &r, err) == VS_OK);
    seen_t mid = {0};
    read_until(r, &mid, 2);
    CHECK(mid.n == 2 && mid.seqs[0] == 3 && mid.seqs[1] == 4);
    vs_wlog_reader_close(r);
    /* beyond the end: the stream lost messages (this reader applied 10 already) */
    CHECK(vs_wlog_reader_open(w, 11, &r, err) == VS_ERR_FAILED_PRECONDITION);
    CHECKF(strstr(err, "lost messages") != NULL, "%s", err);
    vs_wlog_close(w);
}

static void test_gap_is_refused(void)
{
    char err[VS_ERR_LEN];
    vs_status st;
    vs_wlog_t *w = open_log("t2", 0, 1, &st, err);
    CHECK(st == VS_OK);
    if (!w)
        return;
    uint64_t seq;
    int dup;
    char id[16];
    for (int i = 0; i < 5; i++) {
        snprintf(id, sizeof id, "g-%d", i);
        CHECK(vs_wlog_append(w, "x", 1, id, &seq, &dup, err) == VS_OK);
    }
    /* retention drops the first messages (here: a purge, as MaxAge expiry would) */
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    CHECK(natsConnection_ConnectTo(&nc, g_url) == NATS_OK);
    CHECK(natsConnection_JetStream(&js, nc, NULL) == NATS_OK);
    CHECK(js_PurgeStream(js, "VS_t2", NULL, NULL) == NATS_OK);
    CHECK(vs_wlog_append(w, "y", 1, "g-5", &seq, &dup, err) == VS_OK && seq == 6);
    vs_wlog_reader_t *r = NULL;
    st = vs_wlog_reader_open(w, 2, &r, err);
    CHECKF(st == VS_ERR_FAILED_PRECONDITION && strstr(err, "no longer holds 2"), "%d %s", st, err);
    CHECK(vs_wlog_reader_open(w, 6, &r, err) == VS_OK); /* from what it holds: fine */
    seen_t s = {0};
    read_until(r, &s, 1);
    CHECK(s.n == 1 && s.seqs[0] == 6);
    vs_wlog_reader_close(r);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    vs_wlog_close(w);
}

static void test_limits_and_bad_input(void)
{
    char err[VS_ERR_LEN];
    vs_status st;
    vs_wlog_t *w = open_log("t3", 4096, 1, &st, err);
    CHECK(st == VS_OK);
    if (!w)
        return;
    char buf[600];
    memset(buf, 'z', sizeof buf);
    uint64_t seq;
    int dup, i = 0;
    char id[16];
    do {
        snprintf(id, sizeof id, "f-%d", i++);
        st = vs_wlog_append(w, buf, sizeof buf, id, &seq, &dup, err);
    } while (st == VS_OK && i < 100);
    CHECKF(st == VS_ERR_RESOURCE_EXHAUSTED && i > 1 && i < 20, "after %d appends: %d %s", i, st, err);
    vs_wlog_state_t s;
    CHECK(vs_wlog_state(w, &s, err) == VS_OK);
    size_t big = (size_t)s.max_payload + 1;
    char *huge = calloc(1, big);
    CHECK(vs_wlog_append(w, huge, big, "big", &seq, &dup, err) == VS_ERR_INVALID_ARGUMENT);
    CHECKF(strstr(err, "limit") != NULL, "%s", err);
    free(huge);
    CHECK(vs_wlog_append(w, "a", 1, "", &seq, &dup, err) == VS_ERR_INVALID_ARGUMENT);
    CHECK(vs_wlog_append(w, "a", 1, "has space", &seq, &dup, err) == VS_ERR_INVALID_ARGUMENT);
    vs_wlog_close(w);

    CHECK(open_log("bad name!", 0, 1, &st, err) == NULL && st == VS_ERR_INVALID_ARGUMENT);
    CHECK(open_log("missing", 0, 0, &st, err) == NULL && st == VS_ERR_NOT_FOUND);
    vs_wlog_opts_t o = {.url = "nats://127.0.0.1:1", .cluster = "t4", .timeout_ms = 500};
    vs_wlog_t *none = NULL;
    CHECK(vs_wlog_open(&o, 1, &none, err) == VS_ERR_UNAVAILABLE && none == NULL);
}

typedef struct answer {
    int calls;
    vs_status st;
    uint64_t seq;
    int dup;
    char err[VS_ERR_LEN];
} answer_t;

static void on_answer(void *user, vs_status st, uint64_t seq, int dup, const char *err)
{
    answer_t *a = user;
    a->st = st;
    a->seq = seq;
    a->dup = dup;
    snprintf(a->err, sizeof a->err, "%s", err);
    __atomic_add_fetch(&a->calls, 1, __ATOMIC_SEQ_CST);
}

/* Waits up to ms until every one of n answers came. */
static int wait_answers(answer_t *a, size_t n, int64_t ms)
{
    int64_t until = vs_test_now_ms() + ms;
    for (;;) {
        size_t done = 0;
        for (size_t i = 0; i < n; i++)
            done += __atomic_load_n(&a[i].calls, __ATOMIC_SEQ_CST) > 0;
        if (done == n)
            return 1;
        if (vs_test_now_ms() >= until)
            return 0;
        vs_test_sleep_ms(5);
    }
}

static void test_async_append(void)
{
    char err[VS_ERR_LEN];
    vs_status st;
    vs_wlog_t *w = open_log("t5", 0, 1, &st, err);
    CHECKF(st == VS_OK, "%s", err);
    if (!w)
        return;
    enum { N = 2000 };
    answer_t *a = calloc(N + 1, sizeof *a);
    for (int i = 0; i < N; i++) {
        char id[32], body[32];
        snprintf(id, sizeof id, "a-%d", i);
        snprintf(body, sizeof body, "m%d", i);
        CHECKF(vs_wlog_append_async(w, body, strlen(body), id, on_answer, &a[i], err) == VS_OK, "%s", err);
    }
    CHECK(wait_answers(a, N, 20000));
    int bad = 0;
    for (int i = 0; i < N; i++)
        bad += a[i].calls != 1 || a[i].st != VS_OK || a[i].seq != (uint64_t)i + 1 || a[i].dup;
    CHECKF(bad == 0, "%d of %d appends answered wrongly (first: st %d seq %llu)", bad, N, a[0].st,
           (unsigned long long)a[0].seq);
    CHECK(vs_wlog_append_async(w, "again", 5, "a-7", on_answer, &a[N], err) == VS_OK);
    CHECK(wait_answers(&a[N], 1, 5000) && a[N].st == VS_OK && a[N].seq == 8 && a[N].dup == 1);
    vs_wlog_state_t s;
    CHECK(vs_wlog_state(w, &s, err) == VS_OK && s.last_seq == N);

    /* frozen server: the acknowledgement times out (1 s) and says the outcome is unknown */
    CHECK(vs_proc_fixture_pause(g_nats, err) == VS_OK);
    answer_t late = {0}, waiting = {0};
    st = vs_wlog_append_async(w, "late", 4, "late-1", on_answer, &late, err);
    if (st == VS_OK) {
        CHECK(wait_answers(&late, 1, 5000));
        CHECKF(late.calls == 1 && late.st == VS_ERR_UNAVAILABLE && strstr(late.err, "outcome unknown"),
               "%d %s", late.st, late.err);
    } else {
        CHECKF(st == VS_ERR_UNAVAILABLE, "%d %s", st, err);
    }
    /* a drain answers what waits, at once */
    st = vs_wlog_append_async(w, "drained", 7, "late-2", on_answer, &waiting, err);
    if (st == VS_OK) {
        vs_wlog_drain(w, 0);
        CHECKF(waiting.calls == 1 && waiting.st == VS_ERR_UNAVAILABLE, "%d calls, %d %s", waiting.calls,
               waiting.st, waiting.err);
    }
    CHECK(vs_proc_fixture_resume(g_nats, err) == VS_OK);
    vs_wlog_close(w);
    CHECK(late.calls <= 1 && waiting.calls <= 1); /* never answered twice, also by a late acknowledgement */

    /* a full log */
    w = open_log("t6", 4096, 1, &st, err);
    CHECKF(st == VS_OK, "%s", err);
    if (w) {
        enum { M = 200 };
        answer_t *f = calloc(M, sizeof *f);
        char big[200];
        memset(big, 'x', sizeof big);
        for (int i = 0; i < M; i++) {
            char id[32];
            snprintf(id, sizeof id, "f-%d", i);
            CHECK(vs_wlog_append_async(w, big, sizeof big, id, on_answer, &f[i], err) == VS_OK);
        }
        CHECK(wait_answers(f, M, 20000));
        int ok = 0, full = 0;
        for (int i = 0; i < M; i++) {
            ok += f[i].st == VS_OK;
            full += f[i].st == VS_ERR_RESOURCE_EXHAUSTED && strstr(f[i].err, "full") != NULL;
        }
        CHECKF(ok > 0 && full > 0 && ok + full == M, "%d ok, %d full of %d", ok, full, M);
        free(f);
        vs_wlog_close(w);
    }
    free(a);
}

int main(void)
{
    char err[VS_ERR_LEN];
    vs_status st = vs_nats_fixture_start("wlog", &g_nats, err);
    if (st != VS_OK) {
        fprintf(stderr, "test_wlog: %s\n", err);
        return 1; /* a test that finds no server fails */
    }
    vs_nats_fixture_url(g_nats, g_url, sizeof g_url);
    RUN(test_append_read_dedup_restart);
    RUN(test_gap_is_refused);
    RUN(test_limits_and_bad_input);
    RUN(test_async_append);
    vs_proc_fixture_destroy(g_nats);
    nats_Close();
    return vs_test_finish();
}
