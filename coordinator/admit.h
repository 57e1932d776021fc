/* admit.h: the coordinator's admission of requests under load (issue 21, docs/reliability.md "Overload
 * control"), as pure parts the network-free tests drive with a virtual clock:
 *  - per-client quotas: a token bucket of queries per second per client identity (the bearer token's name,
 *    else the TLS client certificate's name, else "anonymous"); a request over its client's quota is
 *    refused with RESOURCE_EXHAUSTED and the time until it would fit;
 *  - the adaptive concurrency limit of one shard replica: queries in flight, learned from latency with
 *    the gradient of Netflix's concurrency-limits (Gradient2): the limit grows while a call's latency stays
 *    near the replica's long-run latency and shrinks in proportion when it rises above tolerance x that,
 *    so a replica that slows down (overloaded, paused, on a noisy host) is sent less before queues build.
 *  - the coordinator's own concurrency limit (vs_elimit_t): admitted requests in flight, an AIMD limit
 *    on a latency target (Little's law: at throughput X and latency T, X x T are in flight): every
 *    window of 100 ms in which it was at least half used and more than 10 % of requests took longer than
 *    the threshold lowers it by 10 %, every such window under the threshold raises it by 5 % (a window
 *    that did not use it says nothing about it: late requests with few in flight are slow for another
 *    reason, and admitting fewer would not help); below its initial value, on-time windows raise it
 *    whether used or not, so a limit lowered by an overload does not refuse the bursts of the calm that
 *    follows (and after a second with no request it starts again from its initial value). It never falls below the concurrency of the busiest
 *    on-time window of the last minute (Little's law: that window's throughput x its mean latency):
 *    where latency comes from elsewhere (the CPU taken by the flood of refusals and clients themselves),
 *    admitting less than that would only lower the throughput, and the limit would spiral down. The threshold is the target, or
 *    3 x the lowest latency of the last 32 windows when that is more (an index whose unloaded latency is
 *    above the target is not throttled to nothing). A request that would pass
 *    it is refused at once, before any shard work: under overload the coordinator serves about its
 *    capacity at about the target latency and refuses the rest cheaply, instead of queueing everything
 *    until every request is late. Sheddable priorities may use only part of it.
 * Thread-safety: vs_quotas_* and vs_elimit_* take a lock; a vs_limit_t is guarded by its owner. */
#ifndef VS_COORDINATOR_ADMIT_H
#define VS_COORDINATOR_ADMIT_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

#define VS_QUOTA_NAME_MAX 128
#define VS_QUOTA_MAX_CLIENTS 4096 /* clients tracked under a "*" quota; the rest share one bucket */

/* One --client-quota: NAME=QPS[:BURST]. NAME "*" applies to every client without its own line (each gets
 * its own bucket). BURST (queries saved up, default max(QPS, 1)) bounds a burst and the largest request
 * that can pass; a larger request passes only when the bucket is full, spending all of it. */
typedef struct vs_quota_spec {
    char name[VS_QUOTA_NAME_MAX];
    double qps, burst;
} vs_quota_spec_t;

/* Parses "NAME=QPS[:BURST]" (QPS > 0). VS_ERR_INVALID_ARGUMENT naming what is wrong. */
vs_status vs_quota_parse(const char *arg, vs_quota_spec_t *out, char err[VS_ERR_LEN]);

typedef struct vs_quotas vs_quotas_t;

/* n specs (copied; a name given twice keeps the last); NULL when out of memory. */
vs_quotas_t *vs_quotas_create(const vs_quota_spec_t *specs, size_t n);
void vs_quotas_destroy(vs_quotas_t *q); /* NULL is a no-op */

/* A request of `queries` queries from client `identity` at time now (seconds): 1 = admitted (spent), 0 =
 * over quota (*retry_after_ms: when the bucket will hold it; *qps: the client's quota). Clients with no
 * quota (no line for them and no "*") are always admitted. */
int vs_quotas_take(vs_quotas_t *q, const char *identity, double queries, double now, int64_t *retry_after_ms,
                   double *qps);

/* The adaptive limit of one replica, in queries in flight. */
typedef struct vs_limit {
    double limit, min_limit, max_limit;
    double long_rtt; /* exponential average of call latencies (seconds) over ~600 calls */
    double tolerance;
    long samples;
} vs_limit_t;

#define VS_LIMIT_INITIAL 256
#define VS_LIMIT_MIN 16
#define VS_LIMIT_MAX 8192
#define VS_LIMIT_TOLERANCE 2.0 /* latency may grow to this x the long-run average before the limit falls */

void vs_limit_init(vs_limit_t *l, double initial, double min_limit, double max_limit);

/* One call's latency rtt_s, sent while in_flight queries (its own included) were in flight to the
 * replica. The limit only grows while the replica is used (in_flight >= limit / 2). */
void vs_limit_on_sample(vs_limit_t *l, double rtt_s, double in_flight);

typedef struct vs_elimit vs_elimit_t;

#define VS_ELIMIT_WINDOW_S 0.1
#define VS_ELIMIT_SLOW_SHARE 0.1 /* a window with more late requests than this lowers the limit */
#define VS_ELIMIT_BASE_WINDOWS 32
#define VS_ELIMIT_BASE_FACTOR 3.0
#define VS_ELIMIT_FLOOR_WINDOWS 600 /* the floor remembers on-time windows this long (60 s) */
#define VS_ELIMIT_IDLE_S 1.0        /* no request ended for this long: the limit starts again from its initial value */

/* target_s: the latency target (> 0); the limit starts at initial and stays in [min_limit, max_limit].
 * NULL when out of memory. */
vs_elimit_t *vs_elimit_create(double target_s, double initial, double min_limit, double max_limit);
void vs_elimit_destroy(vs_elimit_t *l); /* NULL is a no-op */

/* Whether a request may start at time now while in_flight requests (others') are being answered: 1 when
 * in_flight is below share x the limit (share 1 for online traffic, less for sheddable priorities), or
 * nothing is in flight; 0 otherwise (*limit gets the limit). Records in_flight as the window's use. With
 * nothing in flight and no request ended for VS_ELIMIT_IDLE_S, the limit starts afresh first. */
int vs_elimit_admit(vs_elimit_t *l, double in_flight, double share, double now, double *limit);

/* An admitted request ended after latency_s at time now (slow: 1 when it failed for overload, which
 * counts as late whatever its latency). Callers pass only requests whose latency says something about
 * queueing (small ones: a request of 1,000 queries is slow by its size). */
void vs_elimit_on_done(vs_elimit_t *l, double latency_s, int slow, double now);

/* The current limit. */
double vs_elimit_get(vs_elimit_t *l);

/* A call that was refused for overload (RESOURCE_EXHAUSTED) or ran past its deadline: the limit falls by
 * 10 % (not below its minimum). */
void vs_limit_on_drop(vs_limit_t *l);

#endif
