/* test_fanout: the fan-out engine (coordinator/fanout.h) driven by a fake transport and a virtual clock,
 * so every path is deterministic: all partitions answer; a hedge fires after its delay, wins, and the
 * primary is cancelled (its late answer dropped and counted); a failed call is retried on a replica not
 * tried yet; a partition with one replica that fails ends with its reason; a hung partition ends exactly
 * at the deadline while the others' answers stand; a client error ends the whole request; an answer that
 * fails the owner's check counts as a failed call; the p95-based hedge delay follows the replica's
 * latencies; no replica at all fails at once; the retry and hedge budget caps hedges and budgeted retries
 * (not retries after UNAVAILABLE); a part whose calls were shed makes the request overloaded. Every call started is given back exactly once, and every
 * counter matches what happened. The view is a real one with static members (channels connect lazily and
 * are never used). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/status.h"
#include "coordinator/fanout.h"
#include "coordinator/view.h"
#include "tests/testlib.h"

#define MAXC 64

/* The fake transport: calls are recorded; the test decides when and how each ends. */
typedef struct fake_call {
    char replica[128];
    uint32_t call_id;
    uint64_t handle;
    double deadline;
    int cancelled, open;
} fake_call_t;

typedef struct fake {
    fake_call_t calls[MAXC];
    size_t n;
    int refuse_start; /* start returns 0 */
    int reject_part;  /* accept says no for this part index (-1: accept all) */
    int accepted[8];  /* accept calls per part */
} fake_t;

static uint64_t f_start(void *u, vs_replica_t *r, size_t part, double deadline, uint32_t id)
{
    fake_t *fk = u;
    (void)part;
    if (fk->refuse_start || fk->n == MAXC)
        return 0;
    fake_call_t *c = &fk->calls[fk->n];
    snprintf(c->replica, sizeof c->replica, "%s", vs_replica_id(r));
    c->call_id = id;
    c->handle = 1000 + fk->n;
    c->deadline = deadline;
    c->open = 1;
    fk->n++;
    return c->handle;
}

static void f_cancel(void *u, uint64_t h)
{
    fake_t *fk = u;
    for (size_t i = 0; i < fk->n; i++)
        if (fk->calls[i].handle == h)
            fk->calls[i].cancelled = 1;
}

static int f_accept(void *u, size_t part, const vs_fanout_answer_t *a, char why[VS_FANOUT_REASON_LEN])
{
    fake_t *fk = u;
    (void)a;
    fk->accepted[part]++;
    if ((int)part == fk->reject_part) {
        snprintf(why, VS_FANOUT_REASON_LEN, "answer from version other");
        return 0;
    }
    return 1;
}

/* Ends call i (index in the fake's list) with code at time now. */
static void finish(vs_fanout_t *f, fake_t *fk, size_t i, int code, double now)
{
    CHECK(i < fk->n && fk->calls[i].open);
    fk->calls[i].open = 0;
    static const vs_fanout_answer_t a = {"v1", 0, 10, 1, NULL, NULL, NULL};
    vs_fanout_result_t r = {code, code == VS_GRPC_OK ? "" : "boom", code == VS_GRPC_OK ? &a : NULL, 0.002,
                            code == VS_GRPC_RESOURCE_EXHAUSTED ? 40 : 0};
    vs_fanout_on_result(f, fk->calls[i].call_id, &r, now);
}

/* Gives back every call still open (as the transport does after cancels). */
static void drain(vs_fanout_t *f, fake_t *fk, double now)
{
    for (size_t i = 0; i < fk->n; i++)
        if (fk->calls[i].open)
            finish(f, fk, i, fk->calls[i].cancelled ? VS_GRPC_CANCELLED : VS_GRPC_OK, now);
    CHECK(vs_fanout_in_flight(f) == 0);
}

static size_t open_calls(const fake_t *fk)
{
    size_t n = 0;
    for (size_t i = 0; i < fk->n; i++)
        n += fk->calls[i].open;
    return n;
}

typedef struct env {
    vs_view_t *view;
    fake_t fk;
    vs_fanout_io_t io;
    vs_fanout_stats_t stats;
    vs_fanout_part_t parts[4];
    vs_fanout_opts_t opts;
} env_t;

/* A view with `spec` static members, nparts partitions, a fixed hedge delay of hedge_ms (0: p95). */
static void env_init(env_t *e, const char *spec, size_t nparts, double hedge_ms)
{
    char err[VS_ERR_LEN];
    memset(e, 0, sizeof *e);
    CHECK(vs_view_create(&e->view, err) == VS_OK);
    CHECK(vs_view_add_static(e->view, spec, err) == VS_OK);
    e->fk.reject_part = -1;
    e->io = (vs_fanout_io_t){f_start, f_cancel, f_accept, &e->fk};
    for (size_t t = 0; t < nparts; t++)
        e->parts[t] = (vs_fanout_part_t){(uint32_t)t, ""};
    e->opts = (vs_fanout_opts_t){hedge_ms, 1.0, 0, NULL};
}

static vs_fanout_t *start(env_t *e, size_t nparts, double deadline, double now)
{
    char err[VS_ERR_LEN];
    vs_fanout_t *f = NULL;
    CHECK(vs_fanout_create(e->view, &e->opts, &e->io, &e->stats, "v1", e->parts, nparts, deadline, now, &f,
                           err) == VS_OK);
    return f;
}

static unsigned long stat(atomic_ulong *a)
{
    return atomic_load(a);
}

static void env_fini(env_t *e, vs_fanout_t *f)
{
    vs_fanout_destroy(f);
    vs_view_destroy(e->view);
}

static void test_all_answer(void)
{
    env_t e;
    env_init(&e, "0=h:1,1=h:2,2=h:3", 3, 5.0);
    vs_fanout_t *f = start(&e, 3, 1.0, 0.0);
    CHECK(e.fk.n == 3 && vs_fanout_in_flight(f) == 3 && !vs_fanout_finished(f));
    CHECK(e.fk.calls[0].deadline == 1.0);
    CHECK(vs_fanout_wake(f) > 0.0049 && vs_fanout_wake(f) < 0.0051); /* the first hedge is due at 5 ms */
    for (size_t i = 0; i < 3; i++)
        finish(f, &e.fk, i, VS_GRPC_OK, 0.001);
    CHECK(vs_fanout_finished(f) && vs_fanout_in_flight(f) == 0);
    char err[VS_ERR_LEN];
    CHECK(vs_fanout_status(f, err) == VS_OK);
    for (size_t t = 0; t < 3; t++)
        CHECK(vs_fanout_part_outcome(f, t, NULL) == VS_FANOUT_ANSWERED && e.fk.accepted[t] == 1);
    CHECK(stat(&e.stats.shard_calls) == 3 && stat(&e.stats.hedges_sent) == 0 &&
          stat(&e.stats.shard_failures) == 0);
    env_fini(&e, f);
}

static void test_hedge_wins(void)
{
    env_t e;
    env_init(&e, "0=h:1,0=h:2", 1, 5.0);
    vs_fanout_t *f = start(&e, 1, 1.0, 0.0);
    CHECK(e.fk.n == 1);
    vs_fanout_on_time(f, 0.004); /* before the delay: nothing */
    CHECK(e.fk.n == 1 && stat(&e.stats.hedges_sent) == 0);
    vs_fanout_on_time(f, 0.005);
    CHECK(e.fk.n == 2 && stat(&e.stats.hedges_sent) == 1);
    CHECK(strcmp(e.fk.calls[0].replica, e.fk.calls[1].replica) != 0); /* on the other replica */
    CHECK(vs_fanout_wake(f) == 1.0); /* one hedge only: next is the deadline */
    vs_fanout_on_time(f, 0.5);
    CHECK(e.fk.n == 2);
    finish(f, &e.fk, 1, VS_GRPC_OK, 0.006); /* the hedge answers first */
    CHECK(vs_fanout_finished(f) && vs_fanout_part_outcome(f, 0, NULL) == VS_FANOUT_ANSWERED);
    CHECK(e.fk.calls[0].cancelled && !e.fk.calls[1].cancelled);
    CHECK(stat(&e.stats.hedges_won) == 1);
    CHECK(vs_fanout_in_flight(f) == 1);
    finish(f, &e.fk, 0, VS_GRPC_OK, 0.007); /* the primary's answer arrives anyway: dropped */
    CHECK(stat(&e.stats.late_answers) == 1 && e.fk.accepted[0] == 1 && vs_fanout_in_flight(f) == 0);
    CHECK(stat(&e.stats.shard_failures) == 0);
    env_fini(&e, f);
}

static void test_primary_wins_hedge_cancelled(void)
{
    env_t e;
    env_init(&e, "0=h:1,0=h:2", 1, 5.0);
    vs_fanout_t *f = start(&e, 1, 1.0, 0.0);
    vs_fanout_on_time(f, 0.010);
    CHECK(e.fk.n == 2);
    finish(f, &e.fk, 0, VS_GRPC_OK, 0.011);
    CHECK(vs_fanout_finished(f) && e.fk.calls[1].cancelled && stat(&e.stats.hedges_won) == 0);
    drain(f, &e.fk, 0.011); /* the hedge comes back CANCELLED: not a failure */
    CHECK(stat(&e.stats.shard_failures) == 0 && stat(&e.stats.late_answers) == 0);
    env_fini(&e, f);
}

static void test_retry_on_other_replica(void)
{
    env_t e;
    env_init(&e, "0=h:1,0=h:2,0=h:3", 1, 50.0);
    vs_fanout_t *f = start(&e, 1, 1.0, 0.0);
    finish(f, &e.fk, 0, VS_GRPC_UNAVAILABLE, 0.001);
    CHECK(e.fk.n == 2 && stat(&e.stats.retries) == 1 && stat(&e.stats.shard_failures) == 1);
    CHECK(strcmp(e.fk.calls[0].replica, e.fk.calls[1].replica) != 0);
    CHECK(vs_fanout_wake(f) > 0.050 && vs_fanout_wake(f) < 0.0512); /* the retry gets its own hedge delay */
    finish(f, &e.fk, 1, VS_GRPC_DEADLINE_EXCEEDED, 0.002);
    CHECK(e.fk.n == 3 && stat(&e.stats.retries) == 2);
    CHECK(strcmp(e.fk.calls[2].replica, e.fk.calls[0].replica) != 0 &&
          strcmp(e.fk.calls[2].replica, e.fk.calls[1].replica) != 0);
    finish(f, &e.fk, 2, VS_GRPC_OK, 0.003);
    CHECK(vs_fanout_finished(f) && vs_fanout_part_outcome(f, 0, NULL) == VS_FANOUT_ANSWERED);
    env_fini(&e, f);
}

static void test_no_other_replica(void)
{
    env_t e;
    env_init(&e, "0=h:1,1=h:2", 2, 5.0);
    vs_fanout_t *f = start(&e, 2, 1.0, 0.0);
    finish(f, &e.fk, 0, VS_GRPC_UNAVAILABLE, 0.001);
    const char *why;
    CHECK(vs_fanout_part_outcome(f, 0, &why) == VS_FANOUT_FAILED);
    CHECK(strstr(why, "partition 0: call failed (boom); no other replica") != NULL);
    CHECK(!vs_fanout_finished(f));
    vs_fanout_on_time(f, 0.010); /* partition 1's hedge has no replica left: nothing starts */
    CHECK(e.fk.n == 2 && stat(&e.stats.hedges_sent) == 0);
    finish(f, &e.fk, 1, VS_GRPC_OK, 0.011);
    CHECK(vs_fanout_finished(f) && vs_fanout_part_outcome(f, 1, NULL) == VS_FANOUT_ANSWERED);
    char err[VS_ERR_LEN];
    CHECK(vs_fanout_status(f, err) == VS_OK); /* partial: the owner decides by coverage */
    env_fini(&e, f);
}

static void test_hung_partition_ends_at_deadline(void)
{
    env_t e;
    env_init(&e, "0=h:1,1=h:2,1=h:3", 2, 5.0);
    vs_fanout_t *f = start(&e, 2, 0.300, 0.0);
    finish(f, &e.fk, 0, VS_GRPC_OK, 0.001);
    vs_fanout_on_time(f, vs_fanout_wake(f)); /* partition 1 is hung: hedge at 5 ms */
    CHECK(e.fk.n == 3 && stat(&e.stats.hedges_sent) == 1);
    CHECK(vs_fanout_wake(f) == 0.300);
    vs_fanout_on_time(f, 0.299);
    CHECK(!vs_fanout_finished(f));
    vs_fanout_on_time(f, 0.300);
    CHECK(vs_fanout_finished(f));
    const char *why;
    CHECK(vs_fanout_part_outcome(f, 1, &why) == VS_FANOUT_FAILED &&
          strstr(why, "deadline exceeded (2 calls"));
    CHECK(vs_fanout_part_outcome(f, 0, NULL) == VS_FANOUT_ANSWERED);
    CHECK(e.fk.calls[1].cancelled && e.fk.calls[2].cancelled && open_calls(&e.fk) == 2);
    drain(f, &e.fk, 0.301);
    CHECK(stat(&e.stats.late_answers) == 0 && stat(&e.stats.shard_failures) == 0);
    env_fini(&e, f);
}

static void test_late_answer_after_deadline_dropped(void)
{
    env_t e;
    env_init(&e, "0=h:1", 1, 5.0);
    vs_fanout_t *f = start(&e, 1, 0.100, 0.0);
    vs_fanout_on_time(f, 0.100);
    CHECK(vs_fanout_finished(f));
    finish(f, &e.fk, 0, VS_GRPC_OK, 0.101); /* completed before the cancel reached it */
    CHECK(e.fk.accepted[0] == 0 && stat(&e.stats.late_answers) == 1);
    CHECK(vs_fanout_part_outcome(f, 0, NULL) == VS_FANOUT_FAILED);
    env_fini(&e, f);
}

static void test_no_retry_after_deadline(void)
{
    env_t e;
    env_init(&e, "0=h:1,0=h:2", 1, 500.0);
    vs_fanout_t *f = start(&e, 1, 0.100, 0.0);
    finish(f, &e.fk, 0, VS_GRPC_UNAVAILABLE, 0.100); /* fails at the deadline: no time for a retry */
    CHECK(e.fk.n == 1 && stat(&e.stats.retries) == 0 && vs_fanout_finished(f));
    env_fini(&e, f);
}

static void test_client_error_ends_request(void)
{
    env_t e;
    env_init(&e, "0=h:1,0=h:2,1=h:3", 2, 5.0);
    vs_fanout_t *f = start(&e, 2, 1.0, 0.0);
    finish(f, &e.fk, 1, VS_GRPC_INVALID_ARGUMENT, 0.001);
    CHECK(vs_fanout_finished(f) && e.fk.n == 2); /* not retried: every replica would say the same */
    CHECK(e.fk.calls[0].cancelled);
    char err[VS_ERR_LEN];
    CHECK(vs_fanout_status(f, err) == VS_ERR_INVALID_ARGUMENT && strstr(err, "partition 1: boom"));
    drain(f, &e.fk, 0.002);
    env_fini(&e, f);
}

static void test_rejected_answer_is_a_failure(void)
{
    env_t e;
    env_init(&e, "0=h:1,0=h:2", 1, 50.0);
    e.fk.reject_part = 0;
    vs_fanout_t *f = start(&e, 1, 1.0, 0.0);
    finish(f, &e.fk, 0, VS_GRPC_OK, 0.001);
    CHECK(e.fk.n == 2 && stat(&e.stats.retries) == 1 && stat(&e.stats.shard_failures) == 1);
    finish(f, &e.fk, 1, VS_GRPC_OK, 0.002);
    const char *why;
    CHECK(vs_fanout_part_outcome(f, 0, &why) == VS_FANOUT_FAILED && strstr(why, "answer from version other"));
    env_fini(&e, f);
}

static void test_no_replica(void)
{
    env_t e;
    env_init(&e, "0=h:1", 2, 5.0);
    vs_fanout_t *f = start(&e, 2, 1.0, 0.0); /* partition 1 has no replica */
    const char *why;
    CHECK(e.fk.n == 1 && vs_fanout_part_outcome(f, 1, &why) == VS_FANOUT_FAILED);
    CHECK(strstr(why, "no live replica serving v1"));
    finish(f, &e.fk, 0, VS_GRPC_OK, 0.001);
    CHECK(vs_fanout_finished(f));
    env_fini(&e, f);
    env_init(&e, "0=h:1", 1, 5.0);
    e.fk.refuse_start = 1; /* the transport cannot start a call */
    f = start(&e, 1, 1.0, 0.0);
    CHECK(vs_fanout_finished(f) && vs_fanout_in_flight(f) == 0 && stat(&e.stats.shard_calls) == 0);
    env_fini(&e, f);
}

/* With hedge_delay 0 the delay is the replica's p95 (10 ms until 16 samples), floored at 1 ms. */
static void test_p95_hedge_delay(void)
{
    env_t e;
    env_init(&e, "0=h:1", 1, 0.0);
    vs_fanout_t *f = start(&e, 1, 1.0, 0.0);
    CHECK(vs_fanout_wake(f) > 0.0099 && vs_fanout_wake(f) < 0.0101);
    finish(f, &e.fk, 0, VS_GRPC_OK, 0.001);
    vs_fanout_destroy(f);
    for (int i = 0; i < 40; i++) { /* 40 answers of 2 ms: p95 2 ms */
        e.fk.n = 0;
        f = start(&e, 1, 1.0, 0.0);
        finish(f, &e.fk, 0, VS_GRPC_OK, 0.002);
        vs_fanout_destroy(f);
    }
    e.fk.n = 0;
    f = start(&e, 1, 1.0, 0.0);
    CHECK(vs_fanout_wake(f) > 0.0019 && vs_fanout_wake(f) < 0.0021);
    finish(f, &e.fk, 0, VS_GRPC_OK, 0.001);
    env_fini(&e, f);
}

/* The retry and hedge budget: 50 requests whose primary is slow each want a hedge; with 10 % and a burst
 * of 2, at most the burst plus one per 10 primaries go, the rest are counted as suppressed; without a
 * budget every one goes. */
static void test_budget_caps_hedges(void)
{
    for (int with = 0; with < 2; with++) {
        env_t e;
        vs_budget_t b;
        vs_budget_init(&b, 0.1, 2);
        env_init(&e, "0=h:1,0=h:2", 1, 5.0);
        e.opts.budget = with ? &b : NULL;
        for (int i = 0; i < 50; i++) {
            double t0 = i * 1.0;
            vs_fanout_t *f = start(&e, 1, t0 + 0.5, t0);
            vs_fanout_on_time(f, t0 + 0.010); /* past the hedge delay */
            drain(f, &e.fk, t0 + 0.011);
            vs_fanout_destroy(f);
            e.fk.n = 0;
        }
        unsigned long sent = stat(&e.stats.hedges_sent), sup = stat(&e.stats.hedges_suppressed);
        if (with)
            CHECKF(sent >= 5 && sent <= 7 && sent + sup == 50, "hedges %lu sent, %lu suppressed", sent, sup);
        else
            CHECK(sent == 50 && sup == 0);
        vs_view_destroy(e.view);
    }
}

/* A retry after UNAVAILABLE (the shard did no work) goes even with the budget spent; a retry after
 * DEADLINE_EXCEEDED does not: the partition fails with the reason, counted as suppressed. */
static void test_budget_retries(void)
{
    env_t e;
    vs_budget_t b;
    vs_budget_init(&b, 0.001, 1);
    CHECK(vs_budget_withdraw(&b) && !vs_budget_withdraw(&b)); /* spent */
    env_init(&e, "0=h:1,0=h:2", 1, 50.0);
    e.opts.budget = &b;
    vs_fanout_t *f = start(&e, 1, 1.0, 0.0);
    finish(f, &e.fk, 0, VS_GRPC_UNAVAILABLE, 0.001);
    CHECK(e.fk.n == 2 && stat(&e.stats.retries) == 1 && stat(&e.stats.retries_suppressed) == 0);
    finish(f, &e.fk, 1, VS_GRPC_OK, 0.002);
    CHECK(vs_fanout_part_outcome(f, 0, NULL) == VS_FANOUT_ANSWERED);
    vs_fanout_destroy(f);
    e.fk.n = 0;
    f = start(&e, 1, 1.0, 0.0);
    finish(f, &e.fk, 0, VS_GRPC_DEADLINE_EXCEEDED, 0.001);
    const char *why = "";
    CHECK(e.fk.n == 1 && stat(&e.stats.retries) == 1 && stat(&e.stats.retries_suppressed) == 1);
    CHECK(vs_fanout_part_outcome(f, 0, &why) == VS_FANOUT_FAILED);
    CHECKF(strstr(why, "retry budget") != NULL, "%s", why);
    env_fini(&e, f);
}

/* Overload: a shed call (RESOURCE_EXHAUSTED) is retried on another replica within the budget; when that one
 * answers, the request is not overloaded; when the last call of a part was shed, vs_fanout_overloaded says
 * so with the largest retry-after hint, and a part that failed otherwise does not count. */
static void test_overloaded(void)
{
    env_t e;
    env_init(&e, "0=h:1,0=h:2,1=h:3", 2, 500.0);
    vs_fanout_t *f = start(&e, 2, 1.0, 0.0);
    finish(f, &e.fk, 0, VS_GRPC_RESOURCE_EXHAUSTED, 0.001); /* part 0 shed: retried on h:2 */
    CHECK(e.fk.n == 3 && stat(&e.stats.retries) == 1);
    finish(f, &e.fk, 2, VS_GRPC_OK, 0.002);
    finish(f, &e.fk, 1, VS_GRPC_OK, 0.002);
    int64_t ra = -1;
    CHECK(vs_fanout_finished(f) && !vs_fanout_overloaded(f, &ra) && ra == 0);
    env_fini(&e, f);

    env_init(&e, "0=h:1,0=h:2,1=h:3", 2, 500.0);
    f = start(&e, 2, 1.0, 0.0);
    finish(f, &e.fk, 0, VS_GRPC_RESOURCE_EXHAUSTED, 0.001);
    finish(f, &e.fk, 2, VS_GRPC_RESOURCE_EXHAUSTED, 0.002); /* both replicas of part 0 shed */
    finish(f, &e.fk, 1, VS_GRPC_OK, 0.002);
    CHECK(vs_fanout_finished(f) && vs_fanout_part_outcome(f, 0, NULL) == VS_FANOUT_FAILED);
    CHECK(vs_fanout_overloaded(f, &ra) && ra == 40);
    env_fini(&e, f);

    /* RESOURCE_EXHAUSTED without a retry-after hint (out of memory, a message too large): not a shed */
    env_init(&e, "0=h:1,1=h:3", 2, 500.0);
    f = start(&e, 2, 1.0, 0.0);
    e.fk.calls[0].open = 0;
    vs_fanout_result_t oom = {VS_GRPC_RESOURCE_EXHAUSTED, "out of memory", NULL, 0.001, 0};
    vs_fanout_on_result(f, e.fk.calls[0].call_id, &oom, 0.001);
    finish(f, &e.fk, 1, VS_GRPC_OK, 0.002);
    CHECK(vs_fanout_finished(f) && vs_fanout_part_outcome(f, 0, NULL) == VS_FANOUT_FAILED);
    CHECK(!vs_fanout_overloaded(f, &ra));
    env_fini(&e, f);

    /* shed, then the retry hangs until the deadline: a hung partition (partial answer), not overload */
    env_init(&e, "0=h:1,0=h:2,1=h:3", 2, 500.0);
    f = start(&e, 2, 1.0, 0.0);
    finish(f, &e.fk, 0, VS_GRPC_RESOURCE_EXHAUSTED, 0.001);
    CHECK(e.fk.n == 3);
    finish(f, &e.fk, 1, VS_GRPC_OK, 0.002);
    vs_fanout_on_time(f, 1.0);
    CHECK(vs_fanout_finished(f) && vs_fanout_part_outcome(f, 0, NULL) == VS_FANOUT_FAILED);
    CHECK(!vs_fanout_overloaded(f, &ra));
    drain(f, &e.fk, 1.0);
    env_fini(&e, f);

    env_init(&e, "0=h:1,1=h:3", 2, 500.0);
    f = start(&e, 2, 1.0, 0.0);
    finish(f, &e.fk, 0, VS_GRPC_UNAVAILABLE, 0.001); /* failed, but not for overload */
    finish(f, &e.fk, 1, VS_GRPC_OK, 0.002);
    CHECK(vs_fanout_finished(f) && vs_fanout_part_outcome(f, 0, NULL) == VS_FANOUT_FAILED);
    CHECK(!vs_fanout_overloaded(f, &ra) && ra == 0);
    env_fini(&e, f);
}

int main(void)
{
    RUN(test_all_answer);
    RUN(test_hedge_wins);
    RUN(test_primary_wins_hedge_cancelled);
    RUN(test_retry_on_other_replica);
    RUN(test_no_other_replica);
    RUN(test_hung_partition_ends_at_deadline);
    RUN(test_late_answer_after_deadline_dropped);
    RUN(test_no_retry_after_deadline);
    RUN(test_client_error_ends_request);
    RUN(test_rejected_answer_is_a_failure);
    RUN(test_no_replica);
    RUN(test_p95_hedge_delay);
    RUN(test_budget_caps_hedges);
    RUN(test_budget_retries);
    RUN(test_overloaded);
    return vs_test_finish();
}
