/* fanout.c: the fan-out state machine (fanout.h). Calls live in one array sized for every try of every
 * part, so a call id is its index and nothing is allocated after create. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/status.h"
#include "coordinator/fanout.h"

typedef struct call {
    uint32_t part;
    vs_replica_t *replica;
    uint64_t handle;
    int is_hedge, in_flight;
} call_t;

typedef struct part {
    vs_fanout_part_t in;
    vs_replica_t *tried[VS_FANOUT_MAX_TRIES];
    size_t n_tried;
    int n_in_flight;
    uint32_t calls[2]; /* in-flight call ids (n_in_flight of them) */
    double hedge_at;
    int hedged;
    vs_fanout_outcome outcome;
    char reason[VS_FANOUT_REASON_LEN];
    int shed; /* the last call failed with RESOURCE_EXHAUSTED */
} part_t;

struct vs_fanout {
    vs_view_t *view;
    vs_fanout_opts_t o;
    vs_fanout_io_t io;
    vs_fanout_stats_t *stats;
    const char *version;
    double deadline;
    size_t n_parts, n_open, n_calls, in_flight;
    vs_status status; /* a client error that ended the request */
    char err[VS_ERR_LEN];
    part_t *parts;
    call_t *calls; /* n_parts * VS_FANOUT_MAX_TRIES */
    int64_t retry_after_ms; /* the largest hint of a shed call */
};

static int client_error(const vs_fanout_t *f, int code)
{
    return code == VS_GRPC_INVALID_ARGUMENT || code == VS_GRPC_OUT_OF_RANGE ||
           (f->o.exact && code == VS_GRPC_UNIMPLEMENTED);
}

static void cancel_part(vs_fanout_t *f, part_t *p)
{
    for (int i = 0; f->io.cancel && i < p->n_in_flight; i++)
        f->io.cancel(f->io.user, f->calls[p->calls[i]].handle);
}

static void end_part(vs_fanout_t *f, part_t *p, vs_fanout_outcome outcome)
{
    if (p->outcome != VS_FANOUT_OPEN)
        return;
    p->outcome = outcome;
    f->n_open--;
    cancel_part(f, p);
}

enum { CALL_PRIMARY, CALL_HEDGE, CALL_RETRY, CALL_RETRY_FREE };
#define FREE_RETRY_S 0.05
#define BUDGET_REFUSED (-1)

/* Starts a call of kind for part t on a replica not tried yet at time now: 1 if started, 0 if not (no
 * replica left, the transport refused), BUDGET_REFUSED when a replica was there but the budget was spent
 * (counted). A hedge or a budgeted retry spends from the budget once a replica is picked (given back if
 * the call cannot start); a primary call earns for it. */
static int start_call(vs_fanout_t *f, size_t t, double now, int kind)
{
    part_t *p = &f->parts[t];
    const int is_hedge = kind == CALL_HEDGE;
    const int budgeted = f->o.budget && (kind == CALL_HEDGE || kind == CALL_RETRY);
    if (p->n_tried == VS_FANOUT_MAX_TRIES || p->n_in_flight == 2)
        return 0;
    vs_replica_t *r =
        vs_view_pick(f->view, f->version, p->in.partition, p->in.content_id, p->tried, p->n_tried);
    if (!r)
        return 0;
    if (budgeted && !vs_budget_withdraw(f->o.budget)) {
        vs_replica_done(r, 0, 0); /* gives back the pick */
        atomic_fetch_add(is_hedge ? &f->stats->hedges_suppressed : &f->stats->retries_suppressed, 1);
        return BUDGET_REFUSED;
    }
    if (f->o.budget && kind == CALL_PRIMARY)
        vs_budget_deposit(f->o.budget);
    vs_replica_hold(r); /* the engine's own reference: compared with later picks, and a replica may leave the
                           view meanwhile */
    p->tried[p->n_tried++] = r;
    uint32_t id = (uint32_t)f->n_calls;
    uint64_t h = f->io.start(f->io.user, r, t, f->deadline, id);
    if (!h) {
        vs_replica_done(r, 0, 0);
        if (budgeted)
            vs_budget_refund(f->o.budget);
        return 0;
    }
    f->calls[f->n_calls++] = (call_t){(uint32_t)t, r, h, is_hedge, 1};
    p->calls[p->n_in_flight++] = id;
    p->shed = 0; /* what counts is how this call ends */
    f->in_flight++;
    atomic_fetch_add(&f->stats->shard_calls, 1);
    if (!is_hedge && f->o.exact) {
        p->hedge_at = INFINITY; /* a scan is slow by design: a hedge would only scan twice */
    } else if (!is_hedge) {
        double delay_ms = f->o.hedge_delay_ms > 0 ? f->o.hedge_delay_ms
                                                  : fmax(f->o.min_hedge_delay_ms, vs_replica_p95_ms(r, 10.0));
        p->hedge_at = now + delay_ms * 1e-3;
    }
    return 1;
}

vs_status vs_fanout_create(vs_view_t *view, const vs_fanout_opts_t *opts, const vs_fanout_io_t *io,
                           vs_fanout_stats_t *stats, const char *version, const vs_fanout_part_t *parts,
                           size_t n, double deadline, double now, vs_fanout_t **out, char err[VS_ERR_LEN])
{
    vs_fanout_t *f = calloc(1, sizeof *f);
    if (f) {
        f->parts = calloc(n ? n : 1, sizeof *f->parts);
        f->calls = calloc(n ? n * VS_FANOUT_MAX_TRIES : 1, sizeof *f->calls);
    }
    if (!f || !f->parts || !f->calls) {
        if (f) {
            free(f->parts);
            free(f->calls);
        }
        free(f);
        return vs_errf(err, VS_ERR_NOMEM, "fan-out: out of memory for %zu partitions", n);
    }
    *f = (vs_fanout_t){view, *opts, *io, stats, version, deadline, n, n, 0, 0, VS_OK, "", f->parts, f->calls, 0};
    for (size_t t = 0; t < n; t++) {
        f->parts[t].in = parts[t];
        if (start_call(f, t, now, CALL_PRIMARY) != 1) {
            snprintf(f->parts[t].reason, sizeof f->parts[t].reason,
                     "partition %u: no live replica serving %s", parts[t].partition, version);
            end_part(f, &f->parts[t], VS_FANOUT_FAILED);
        }
    }
    *out = f;
    return VS_OK;
}

void vs_fanout_destroy(vs_fanout_t *f)
{
    if (!f)
        return;
    for (size_t t = 0; t < f->n_parts; t++)
        for (size_t i = 0; i < f->parts[t].n_tried; i++)
            vs_replica_release(f->parts[t].tried[i]);
    free(f->parts);
    free(f->calls);
    free(f);
}

void vs_fanout_on_result(vs_fanout_t *f, uint32_t call_id, const vs_fanout_result_t *res, double now)
{
    if (call_id >= f->n_calls || !f->calls[call_id].in_flight)
        return; /* not ours, or given back twice: ignored */
    call_t *c = &f->calls[call_id];
    part_t *p = &f->parts[c->part];
    c->in_flight = 0;
    f->in_flight--;
    for (int i = 0; i < p->n_in_flight; i++)
        if (p->calls[i] == call_id) {
            p->calls[i] = p->calls[--p->n_in_flight];
            break;
        }
    int code = res->code;
    const char *message = res->message ? res->message : "";
    char why[VS_FANOUT_REASON_LEN] = "";
    if (p->outcome != VS_FANOUT_OPEN) {
        /* a hedge loser, or a call cancelled at the end that completed anyway: its latency still counts */
        if (code == VS_GRPC_OK)
            atomic_fetch_add(&f->stats->late_answers, 1);
        vs_replica_done(c->replica, res->seconds, code == VS_GRPC_OK && !f->o.exact);
        return;
    }
    if (code == VS_GRPC_OK && (!res->answer || !f->io.accept(f->io.user, c->part, res->answer, why))) {
        if (!res->answer)
            snprintf(why, sizeof why, "OK without an answer");
        code = VS_GRPC_INTERNAL;
        message = why;
    }
    vs_replica_done(c->replica, res->seconds, code == VS_GRPC_OK && !f->o.exact); /* no sample for scans */
    if (code == VS_GRPC_OK) {
        if (c->is_hedge)
            atomic_fetch_add(&f->stats->hedges_won, 1);
        end_part(f, p, VS_FANOUT_ANSWERED);
        return;
    }
    atomic_fetch_add(&f->stats->shard_failures, 1);
    /* shed for overload: RESOURCE_EXHAUSTED with a retry-after hint (out of memory, a message too large
     * and other RESOURCE_EXHAUSTED come without one) */
    p->shed = code == VS_GRPC_RESOURCE_EXHAUSTED && res->retry_after_ms > 0;
    if (p->shed && res->retry_after_ms > f->retry_after_ms)
        f->retry_after_ms = res->retry_after_ms;
    if (client_error(f, code)) {
        if (f->status == VS_OK)
            f->status =
                vs_errf(f->err, vs_status_from_grpc(code), "partition %u: %s", p->in.partition, message);
        for (size_t t = 0; t < f->n_parts; t++)
            end_part(f, &f->parts[t], VS_FANOUT_FAILED);
        return;
    }
    if (p->n_in_flight > 0)
        return; /* the other call (hedge or primary) may still answer */
    /* a call refused at once (UNAVAILABLE within FREE_RETRY_S: the replica is gone or refused the
     * connection) did no work: its retry is not an extra call. A slow UNAVAILABLE (a shard that waited
     * for the write log, for one) is budgeted like any other failure. */
    int kind = code == VS_GRPC_UNAVAILABLE && res->seconds < FREE_RETRY_S ? CALL_RETRY_FREE : CALL_RETRY;
    int started = now < f->deadline ? start_call(f, c->part, now, kind) : 0;
    if (started == 1) {
        atomic_fetch_add(&f->stats->retries, 1);
        return;
    }
    snprintf(p->reason, sizeof p->reason, "partition %u: %s (%.150s); %s", p->in.partition,
             code == VS_GRPC_DEADLINE_EXCEEDED ? "deadline exceeded" : "call failed", message,
             started == BUDGET_REFUSED ? "no retry: the retry budget is spent" : "no other replica");
    end_part(f, p, VS_FANOUT_FAILED);
}

void vs_fanout_on_time(vs_fanout_t *f, double now)
{
    if (now >= f->deadline) {
        for (size_t t = 0; t < f->n_parts; t++) {
            part_t *p = &f->parts[t];
            if (p->outcome != VS_FANOUT_OPEN)
                continue;
            snprintf(p->reason, sizeof p->reason, "partition %u: deadline exceeded (%d call%s unanswered)",
                     p->in.partition, p->n_in_flight, p->n_in_flight == 1 ? "" : "s");
            if (p->n_in_flight)
                p->shed = 0; /* a call still out did not answer in time: a hung partition, not a shed one */
            end_part(f, p, VS_FANOUT_FAILED);
        }
        return;
    }
    for (size_t t = 0; t < f->n_parts; t++) {
        part_t *p = &f->parts[t];
        if (p->outcome != VS_FANOUT_OPEN || p->hedged || p->n_in_flight != 1 || p->hedge_at > now)
            continue;
        p->hedged = 1; /* one hedge per partition, whether or not a replica was left for it */
        if (start_call(f, t, now, CALL_HEDGE) == 1)
            atomic_fetch_add(&f->stats->hedges_sent, 1);
    }
}

double vs_fanout_wake(const vs_fanout_t *f)
{
    double wake = f->deadline;
    for (size_t t = 0; t < f->n_parts; t++) {
        const part_t *p = &f->parts[t];
        if (p->outcome == VS_FANOUT_OPEN && !p->hedged && p->n_in_flight == 1 && p->hedge_at < wake)
            wake = p->hedge_at;
    }
    return wake;
}

int vs_fanout_finished(const vs_fanout_t *f)
{
    return f->n_open == 0;
}

size_t vs_fanout_in_flight(const vs_fanout_t *f)
{
    return f->in_flight;
}

vs_status vs_fanout_status(const vs_fanout_t *f, char err[VS_ERR_LEN])
{
    if (f->status != VS_OK)
        snprintf(err, VS_ERR_LEN, "%s", f->err);
    return f->status;
}

int vs_fanout_overloaded(const vs_fanout_t *f, int64_t *retry_after_ms)
{
    int any = 0;
    for (size_t t = 0; t < f->n_parts; t++)
        any |= f->parts[t].outcome == VS_FANOUT_FAILED && f->parts[t].shed;
    *retry_after_ms = any ? f->retry_after_ms : 0;
    return any;
}

vs_fanout_outcome vs_fanout_part_outcome(const vs_fanout_t *f, size_t t, const char **reason)
{
    if (reason)
        *reason = f->parts[t].reason;
    return f->parts[t].outcome;
}
