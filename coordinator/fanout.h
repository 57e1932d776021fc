/* fanout.h: one request's calls to the partitions it needs, as a state machine. The engine picks a
 * replica per partition (view.h), hedges a slow call to a second replica, retries a failed one on a
 * replica not tried yet, keeps the request's deadline and says per partition how it ended. It has no
 * network, no clock and no thread of its own: the caller injects the transport (start and cancel a call)
 * and feeds it events with the time they happened (a call's outcome, "time is now t"). The gRPC
 * coordinator drives it with real calls and the monotonic clock; tests/unit/test_fanout.c drives it with a
 * fake transport and a virtual clock, so every path (hedge fired and won, retry on another replica, hung
 * partition ended at the deadline, late answers dropped, client errors) is tested deterministically.
 *
 * Rules (docs/architecture.md, "Fan-out"):
 *  - start: one call per partition, on vs_view_pick's choice; a partition with no usable replica fails
 *    at once ("no live replica serving <version>").
 *  - hedge: while a partition's only call has been out for its hedge delay (opts.hedge_delay_ms, or the
 *    replica's p95 floored at opts.min_hedge_delay_ms; 10 ms until the replica has 16 samples), a second
 *    call goes to another replica; the first acceptable answer wins and the other call is cancelled.
 *  - retry: a failed call (any status but a client error) is retried on a replica not tried yet, while
 *    the deadline is ahead and no other call of the partition is in flight; at most VS_FANOUT_MAX_TRIES
 *    replicas per partition.
 *  - overload (RESOURCE_EXHAUSTED: the replica, or its queue at the coordinator, shed the call) is
 *    retried like a failure, within the budget; a part whose last call was shed makes the request
 *    overloaded (vs_fanout_overloaded).
 *  - client errors (INVALID_ARGUMENT, OUT_OF_RANGE) end the whole request with that status: every
 *    replica would answer the same.
 *  - deadline: at the deadline every open partition fails ("deadline exceeded") and its calls are
 *    cancelled; the owner answers with what it has (coverage).
 *  - an OK answer is checked by io.accept (version, partition, shape); one that is not acceptable counts
 *    as a failed call. Answers arriving after their partition ended (hedge losers, cancelled calls that
 *    completed anyway) are dropped and counted as late; accept never sees them.
 * Every call started is given back exactly once through vs_fanout_on_result (a cancelled call too), which
 * ends the call's hold on its replica (vs_replica_done). Not thread-safe: one thread at a time drives an
 * engine (the caller serialises events of one request). */
#ifndef VS_COORDINATOR_FANOUT_H
#define VS_COORDINATOR_FANOUT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "coordinator/budget.h"
#include "coordinator/view.h"

#define VS_FANOUT_MAX_TRIES 8
#define VS_FANOUT_REASON_LEN 256

/* Counters shared by every engine of a coordinator (monotonic; read with atomic_load). */
typedef struct vs_fanout_stats {
    atomic_ulong shard_calls; /* calls started (hedges and retries included) */
    atomic_ulong
        shard_failures; /* calls that ended without an acceptable answer (cancelled losers excluded) */
    atomic_ulong hedges_sent, hedges_won, retries;
    atomic_ulong hedges_suppressed, retries_suppressed; /* refused by the budget (opts.budget) */
    atomic_ulong late_answers; /* answers dropped because their partition had already ended */
} vs_fanout_stats_t;

/* A shard's answer to one call: nq queries x k results each, best first (borrowed until accept returns). */
typedef struct vs_fanout_answer {
    const char *version;
    uint32_t partition, k;
    size_t nq;
    const float *dist;
    const int64_t *ids;
    const int64_t *groups; /* group_by: the results' group values (nq*k), else NULL */
} vs_fanout_answer_t;

/* The transport. start: begin a call of part index part (the transport knows what that part sends) to
 * replica r, ending at deadline (seconds on the engine's clock); call_id identifies the call in
 * vs_fanout_on_result. Returns a handle > 0 for cancel, 0 when the call
 * could not start (then it is never given back). cancel (nullable): ask a call in flight to end soon
 * (its outcome still comes back, usually CANCELLED). accept: checks an OK answer of partition index part;
 * returns 1 when it is acceptable (the owner copies what it needs), 0 with why filled. */
typedef struct vs_fanout_io {
    uint64_t (*start)(void *user, vs_replica_t *r, size_t part, double deadline, uint32_t call_id);
    void (*cancel)(void *user, uint64_t handle);
    int (*accept)(void *user, size_t part, const vs_fanout_answer_t *answer, char why[VS_FANOUT_REASON_LEN]);
    void *user;
} vs_fanout_io_t;

typedef struct vs_fanout_opts {
    double hedge_delay_ms;     /* > 0: fixed hedge delay; 0: the replica's p95 */
    double min_hedge_delay_ms; /* floor of the p95-based delay */
    int exact; /* exact calls (scans): no hedges, no latency samples, UNIMPLEMENTED is final */
    vs_budget_t *budget; /* the coordinator's retry and hedge budget (budget.h); NULL = unbounded */
} vs_fanout_opts_t;

/* One partition to call and the content id its replicas must report (borrowed until destroy; NULL or
 * "" = any). */
typedef struct vs_fanout_part {
    uint32_t partition;
    const char *content_id;
} vs_fanout_part_t;

typedef enum vs_fanout_outcome {
    VS_FANOUT_OPEN = 0, /* still waiting */
    VS_FANOUT_ANSWERED,
    VS_FANOUT_FAILED,
} vs_fanout_outcome;

/* One call's outcome, as the transport saw it. answer (OK only, non-NULL then) is borrowed until
 * on_result returns. */
typedef struct vs_fanout_result {
    int code; /* gRPC status */
    const char *message;
    const vs_fanout_answer_t *answer;
    double seconds; /* start to completion (the replica's latency sample) */
    int64_t retry_after_ms; /* RESOURCE_EXHAUSTED: the server's retry-after hint (0 = none) */
} vs_fanout_result_t;

typedef struct vs_fanout vs_fanout_t;

/* Creates an engine for the n parts of a request to version (borrowed, as view, io, opts and stats,
 * until destroy) with the given deadline, and starts one call per part at time now. VS_ERR_NOMEM. */
vs_status vs_fanout_create(vs_view_t *view, const vs_fanout_opts_t *opts, const vs_fanout_io_t *io,
                           vs_fanout_stats_t *stats, const char *version, const vs_fanout_part_t *parts,
                           size_t n, double deadline, double now, vs_fanout_t **out, char err[VS_ERR_LEN]);

/* Cancels nothing: the caller has drained every call (vs_fanout_in_flight() == 0) or abandons them.
 * Releases the replicas the engine remembered. NULL is a no-op. */
void vs_fanout_destroy(vs_fanout_t *f);

/* Feeds the outcome of call call_id at time now. */
void vs_fanout_on_result(vs_fanout_t *f, uint32_t call_id, const vs_fanout_result_t *res, double now);

/* Tells the engine the time is now: fires due hedges; at or after the deadline ends every open part. */
void vs_fanout_on_time(vs_fanout_t *f, double now);

/* When the engine next needs vs_fanout_on_time (the earliest due hedge, else the deadline); meaningful
 * while not finished. */
double vs_fanout_wake(const vs_fanout_t *f);

/* 1 when no part is open any more (every part answered or failed, or a client error ended the
 * request). Calls may still be in flight (cancelled): drain them with on_result before destroy. */
int vs_fanout_finished(const vs_fanout_t *f);

/* Calls started and not yet given back. */
size_t vs_fanout_in_flight(const vs_fanout_t *f);

/* VS_OK, or the client error that ended the request (err gets "partition P: message"). */
vs_status vs_fanout_status(const vs_fanout_t *f, char err[VS_ERR_LEN]);

/* 1 when a part failed because its replicas were overloaded (its last call ended RESOURCE_EXHAUSTED with a
 * retry-after hint, and no call of it was left unanswered at the deadline):
 * the request should be refused as overloaded rather than answered partially. *retry_after_ms gets the
 * largest hint of such calls. */
int vs_fanout_overloaded(const vs_fanout_t *f, int64_t *retry_after_ms);

/* Part t's outcome; *reason (nullable) gets why it failed ("" otherwise; valid until destroy). */
vs_fanout_outcome vs_fanout_part_outcome(const vs_fanout_t *f, size_t t, const char **reason);

#endif
