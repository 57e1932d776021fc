/* recall.h: recall you can see (issue 16, part 2). The coordinator samples a fraction of the queries it
 * answers (rate-limited), keeps each sampled query with the ids it served, and a worker replays them in
 * batches as exact searches on the shards (ShardSearchRequest.exact). Each replayed query's recall@k is
 * |served ∩ exact| / |exact|; the estimate per (version, applied parameters, k) is the mean over a window of
 * the last `window` replayed queries, exported as Prometheus gauges with the window's size.
 *
 * This module is the bookkeeping only (sampling, queue, windows): no network, no clock of its own (callers
 * pass `now`), no threads started. The replay itself (shard calls, merge) is the coordinator's
 * (vs_coord_recall_replay). Thread-safe.
 *
 * Window: recall@10 per query is a mean of 10 hits, so its spread is at most 0.5; over 1,000 queries the
 * standard error is at most 0.016 (typically 0.003 at recall 0.95): the default window of 1,000 queries
 * gives an estimate within +-0.02 of the true recall at that traffic's mix, which the gauge's `queries`
 * companion lets alerts require. */
#ifndef VS_COORDINATOR_RECALL_H
#define VS_COORDINATOR_RECALL_H

#include <stddef.h>
#include <stdint.h>

#define VS_RECALL_MAX_GROUPS 16 /* (version, params, k) estimates kept; the least recently fed is dropped */
#define VS_RECALL_KEY_LEN 128

typedef struct vs_recall_opts {
    double sample_rate; /* fraction of eligible queries sampled, 0..1 (0 = monitoring off) */
    double max_qps;     /* sampled queries per second at most (token bucket, burst = batch) */
    size_t batch;       /* queries per replay (one exact call per partition) */
    size_t window;      /* replayed queries per estimate */
    size_t queue_max;   /* sampled queries waiting at most; more are dropped (counted) */
    double max_wait_s;  /* a batch that is not full is replayed once its oldest query waited this long */
    double budget;      /* fraction of the replay worker's wall time spent in replays (it sleeps the rest) */
} vs_recall_opts_t;

/* sample_rate 0.01, max_qps 20, batch 32, window 1000, queue_max 4096, max_wait_s 5, budget 0.05 */
void vs_recall_opts_default(vs_recall_opts_t *o);

typedef struct vs_recall vs_recall_t;

/* NULL when out of memory or o->sample_rate is 0 (monitoring off). */
vs_recall_t *vs_recall_create(const vs_recall_opts_t *o);
void vs_recall_destroy(vs_recall_t *r); /* NULL is a no-op */

/* The hot path, after a query batch was answered in full: samples each of the nq queries with
 * probability sample_rate within the rate limit, copying the query (dim floats) and its served ids (k, -1
 * padded) under the key (version, params, k). Returns how many were taken. O(1) when none is sampled. */
size_t vs_recall_offer(vs_recall_t *r, double now, const char *version, const char *params, uint32_t dim,
                       uint32_t k, size_t nq, const float *q, const int64_t *ids);

/* A batch of sampled queries of one (version, params, k, dim), taken by the worker. */
typedef struct vs_recall_batch {
    char version[VS_RECALL_KEY_LEN], params[VS_RECALL_KEY_LEN];
    uint32_t dim, k;
    size_t nq;
    float *q;     /* nq*dim (owned) */
    int64_t *ids; /* nq*k served (owned) */
} vs_recall_batch_t;

/* The next batch ready at `now` (batch queries of one key waiting, or the oldest waited max_wait_s, or
 * flush = 1), or NULL. Free with vs_recall_batch_free. */
vs_recall_batch_t *vs_recall_next(vs_recall_t *r, double now, int flush);
void vs_recall_batch_free(vs_recall_batch_t *b);

/* Records a replayed batch: exact[nq*k] (the exact ids, -1 padded) into the key's window. */
void vs_recall_record(vs_recall_t *r, const vs_recall_batch_t *b, const int64_t *exact);
/* Drops every estimate and waiting query of version (a version the coordinator no longer knows). */
void vs_recall_forget(vs_recall_t *r, const char *version);

/* Counts a batch that could not be replayed (its queries are dropped). */
void vs_recall_failed(vs_recall_t *r, const vs_recall_batch_t *b);

typedef struct vs_recall_stat {
    char version[VS_RECALL_KEY_LEN], params[VS_RECALL_KEY_LEN];
    uint32_t k;
    size_t queries; /* in the window */
    double recall;  /* mean over the window */
    double target;  /* the version's recorded target (filled by the coordinator; 0 = none) */
} vs_recall_stat_t;

typedef struct vs_recall_totals {
    uint64_t sampled, replayed, dropped_queue, dropped_failed;
    double replay_seconds; /* time the worker spent in replays (vs_recall_add_busy) */
} vs_recall_totals_t;

/* The current estimates (at most cap) and the counters. */
size_t vs_recall_snapshot(vs_recall_t *r, vs_recall_stat_t *out, size_t cap, vs_recall_totals_t *totals);
void vs_recall_add_busy(vs_recall_t *r, double seconds);
const vs_recall_opts_t *vs_recall_options(const vs_recall_t *r);

#endif
