/* test_rpc_queue: asynchronous client calls on a queue of their own (vs_rpc_queue_*, rpc.h) against a real
 * vs_rpc server on loopback. Many calls in flight from one thread each complete exactly once with their
 * own answer and their own user pointer; a deadline ends a call the server never answers with
 * DEADLINE_EXCEEDED; the wait returns at its time limit when nothing completes; destroying the queue with
 * calls in flight cancels them (it returns, and the server sees the cancellations). */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cli/timing.h"
#include "common/net/rpc.h"
#include "tests/testlib.h"

#define N_CALLS 200

/* Echo: answers the request bytes reversed. */
static void echo(void *user, const vs_rpc_call_t *call, const uint8_t *req, size_t len, vs_rpc_reply_t *reply)
{
    (void)user;
    (void)call;
    reply->body = malloc(len ? len : 1);
    for (size_t i = 0; i < len; i++)
        reply->body[i] = req[len - 1 - i];
    reply->body_len = len;
}

/* Never answers until the test releases it: the calls are kept and answered at the end. */
static vs_rpc_call_t *g_held[64];
static atomic_int g_n_held;
static void hold(void *user, vs_rpc_call_t *call, const uint8_t *req, size_t len)
{
    (void)user;
    (void)req;
    (void)len;
    int i = atomic_fetch_add(&g_n_held, 1);
    if (i < 64)
        g_held[i] = call;
}

static vs_rpc_server_t *g_srv;
static vs_rpc_channel_t *g_ch;

static void test_many_in_flight(void)
{
    vs_rpc_queue_t *q = NULL;
    char err[VS_ERR_LEN];
    CHECK(vs_rpc_queue_create(&q, err) == VS_OK);
    static int seen[N_CALLS];
    static char reqs[N_CALLS][16];
    for (int i = 0; i < N_CALLS; i++) {
        int n = snprintf(reqs[i], sizeof reqs[i], "call-%d", i);
        CHECKF(vs_rpc_queue_call(q, g_ch, "/t.T/Echo", reqs[i], (size_t)n, 5000, &seen[i], err) == VS_OK,
               "%s", err);
    }
    CHECK(vs_rpc_queue_in_flight(q) == N_CALLS);
    int done = 0, good = 0;
    vs_rpc_result_t res;
    while (vs_rpc_queue_in_flight(q) > 0 && vs_rpc_queue_next(q, vs_now_s() + 10, &res)) {
        int i = (int)((int *)res.user - seen);
        CHECK(i >= 0 && i < N_CALLS);
        seen[i]++;
        done++;
        char want[16];
        size_t n = strlen(reqs[i]);
        for (size_t j = 0; j < n; j++)
            want[j] = reqs[i][n - 1 - j];
        if (res.code == 0 && res.body_len == n && memcmp(res.body, want, n) == 0)
            good++;
        free(res.body);
    }
    CHECKF(done == N_CALLS && good == N_CALLS, "%d completed, %d with their own answer", done, good);
    for (int i = 0; i < N_CALLS; i++)
        CHECKF(seen[i] == 1, "call %d completed %d times", i, seen[i]);
    CHECK(vs_rpc_queue_in_flight(q) == 0);
    CHECK(vs_rpc_queue_next(q, 0, &res) == 0); /* nothing in flight: returns at once */
    double t1 = vs_now_s(); /* nothing in flight with a time: sleeps until it (a schedule loop never spins) */
    CHECK(vs_rpc_queue_next(q, t1 + 0.05, &res) == 0);
    CHECKF(vs_now_s() - t1 >= 0.045, "returned after %.3f s", vs_now_s() - t1);
    vs_rpc_queue_destroy(q);
}

static void test_deadline_and_wait_limit(void)
{
    vs_rpc_queue_t *q = NULL;
    char err[VS_ERR_LEN];
    CHECK(vs_rpc_queue_create(&q, err) == VS_OK);
    int a = 0;
    CHECK(vs_rpc_queue_call(q, g_ch, "/t.T/Hold", "x", 1, 300, &a, err) == VS_OK);
    vs_rpc_result_t res;
    double t0 = vs_now_s();
    CHECK(vs_rpc_queue_next(q, t0 + 0.05, &res) == 0); /* the time limit comes first */
    double waited = vs_now_s() - t0;
    CHECKF(waited >= 0.04 && waited < 0.25, "waited %.3f s for a 50 ms limit", waited);
    CHECK(vs_rpc_queue_in_flight(q) == 1);
    CHECK(vs_rpc_queue_next(q, vs_now_s() + 5, &res) == 1);
    CHECK(res.user == &a);
    CHECKF(res.code == 4 /* DEADLINE_EXCEEDED */, "code %d (%s)", res.code, res.message);
    double took = vs_now_s() - t0;
    CHECKF(took >= 0.25 && took < 2.0, "the 300 ms deadline ended the call after %.3f s", took);
    free(res.body);
    vs_rpc_queue_destroy(q);
}

static void test_destroy_cancels(void)
{
    vs_rpc_queue_t *q = NULL;
    char err[VS_ERR_LEN];
    CHECK(vs_rpc_queue_create(&q, err) == VS_OK);
    int before = atomic_load(&g_n_held);
    for (int i = 0; i < 5; i++)
        CHECK(vs_rpc_queue_call(q, g_ch, "/t.T/Hold", "y", 1, 0 /* no deadline */, NULL, err) == VS_OK);
    int64_t until = vs_test_now_ms() + 5000; /* the server has all 5 before the queue goes */
    while (atomic_load(&g_n_held) < before + 5 && vs_test_now_ms() < until)
        vs_test_sleep_ms(5);
    CHECK(atomic_load(&g_n_held) == before + 5);
    int64_t t0 = vs_test_now_ms();
    vs_rpc_queue_destroy(q); /* would wait forever if the calls were not cancelled */
    CHECKF(vs_test_now_ms() - t0 < 2000, "destroy took %lld ms", (long long)(vs_test_now_ms() - t0));
}

int main(void)
{
    static const vs_rpc_method_t methods[] = {
        {"/t.T/Echo", echo, NULL, NULL, NULL},
        {"/t.T/Hold", NULL, NULL, hold, NULL},
    };
    vs_rpc_server_opts_t so = {.address = "127.0.0.1:0", .n_threads = 2};
    int port = 0;
    char err[VS_ERR_LEN];
    if (vs_rpc_server_start(&so, methods, 2, &g_srv, &port, err) != VS_OK) {
        fprintf(stderr, "server: %s\n", err);
        return 1;
    }
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", port);
    if (vs_rpc_channel_create(target, 0, &g_ch, err) != VS_OK) {
        fprintf(stderr, "channel: %s\n", err);
        return 1;
    }
    RUN(test_many_in_flight);
    RUN(test_deadline_and_wait_limit);
    RUN(test_destroy_cancels);
    vs_rpc_channel_destroy(g_ch);
    int n = atomic_load(&g_n_held);
    for (int i = 0; i < n && i < 64; i++) { /* answer what the server still holds, then stop it */
        vs_rpc_reply_t r = {.code = 0};
        vs_rpc_call_reply(g_held[i], &r);
    }
    vs_rpc_server_stop(g_srv, 1000);
    return vs_test_finish();
}
