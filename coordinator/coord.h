/* coord.h: what the coordinator does with a client request, given a membership view: pick the index
 * version (active, pinned, or by embedding model), plan the fan-out (router.h), call one replica per
 * partition with retries on another replica and hedged copies after a delay, merge, and say how much of
 * the index answered (coverage). The gRPC server (coordinator/main.c) only moves bytes.
 *
 * One response is always served by one index version: every shard call names the version, and an
 * answer from another version is treated as a failed call. Tails: a partition's call is hedged to a
 * second replica after that replica's p95 latency (or a fixed delay), and the first answer wins;
 * UNAVAILABLE (or a broken connection) is retried on a replica not tried yet while time remains;
 * errors that are the client's (INVALID_ARGUMENT, NOT_FOUND, ...) end the request with that status. */
#ifndef VS_COORDINATOR_COORD_H
#define VS_COORDINATOR_COORD_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "common/filter.h"
#include "common/net/overload.h"
#include "common/net/rpc.h"
#include "coordinator/admit.h"
#include "coordinator/batch.h"
#include "coordinator/fanout.h"
#include "coordinator/recall.h"
#include "coordinator/router.h"
#include "coordinator/view.h"

#define VS_COORD_MAX_VERSIONS 8
#define VS_COORD_DEFAULT_RETRY_BUDGET 0.1 /* p95-based hedges alone spend about 0.05 */
#define VS_COORD_DEFAULT_RETRY_BURST 20
#define VS_COORD_DEFAULT_MAX_QUEUE_MS 50       /* --max-queue-ms */
#define VS_COORD_DEFAULT_MAX_IN_FLIGHT 50000   /* --max-in-flight (queries) */
#define VS_COORD_DEFAULT_TARGET_LATENCY_MS 10  /* --target-latency-ms */
#define VS_COORD_ELIMIT_MAX_NQ 64              /* larger requests do not move the limit (admit.h) */
#define VS_COORD_SEARCH_PRIORITY_FIELD 14      /* SearchRequest.priority (read before decoding) */

typedef struct vs_coord_opts {
    double hedge_delay_ms;      /* 0 = the replica's observed p95 (10 ms until it has 16 samples) */
    double min_hedge_delay_ms;  /* floor of the p95-based delay (default 1 ms) */
    int64_t default_timeout_ms; /* calls without a deadline get this (default 1000) */
    float min_coverage;         /* used when a request gives 0 (default 0: any partial answer) */
    size_t max_batch;           /* default 10,000 */
    size_t shard_window;        /* calls in flight per replica before partition calls wait to be batched
                                   (default 2; batch.h) */
    size_t batch_max_queries;   /* queries per batched shard call (default 1024) */
    double
        partition_k_probability; /* in (0, 1): hash partitions return only k' of k results, enough for
                                    the true top-k with this probability (vs_topk_partition_k); 0 = all k */
    int coarse_at_shard;         /* 1: hash-partitioned IVF shards rank their lists themselves (each all nlist
                                    centroids); 0 (default): the coordinator ranks them once per query */
    double slow_request_ms;      /* > 0: log requests answered later than this after arrival (rate-limited) */
    /* The retry and hedge budget (budget.h): extra shard calls per primary call (0 = the default 0.1;
     * < 0 = unbounded) and the extra calls saved up at most (0 = the default 20). */
    double retry_budget, retry_budget_burst;
    /* Overload control (docs/reliability.md): an online request that waited longer than max_queue_ms for
     * a worker, or a partition call that waited longer for its replica, is refused with RESOURCE_EXHAUSTED
     * (other priorities after a quarter of it); 0 = the default, < 0 = never. At most max_in_flight queries
     * are being answered at once (0 = the default; sheddable priorities get a quarter of it). quotas: the
     * per-client quotas (n_quotas of them; copied). adaptive_limit: 1 = the replicas' adaptive
     * concurrency limits (admit.h) hold partition calls back; 0 = only shard_window. overload (may be
     * NULL): where queue times and refusals are counted. */
    double max_queue_ms;
    size_t max_in_flight;
    /* The coordinator's adaptive concurrency limit (admit.h, vs_elimit_t): requests in flight are held
     * where at most 10 % of requests take longer than target_latency_ms (or 3 x the unloaded latency);
     * 0 = the default, < 0 = off (only max_in_flight). */
    double target_latency_ms;
    const vs_quota_spec_t *quotas;
    size_t n_quotas;
    int adaptive_limit;
    vs_overload_metrics_t *overload;
    /* Called with each stage's duration (vs_coord_stage, batch.h) from any thread; NULL = not timed. */
    void (*on_stage)(void *user, vs_coord_stage stage, double seconds);
    void *stage_user;
    /* Recall monitoring (recall.h): sample_rate 0 = off. Sampled queries of fully covered answers without
     * filter, exclusions or group_by are replayed as exact searches on the shards by a worker thread;
     * on_recall (may be NULL) is called from it with each updated estimate. */
    vs_recall_opts_t recall;
    void (*on_recall)(void *user, const vs_recall_stat_t *s);
    void *recall_user;
} vs_coord_opts_t;

/* A request id: 1..VS_REQUEST_ID_MAX printable ASCII characters without spaces (SearchRequest.request_id). */
#define VS_REQUEST_ID_MAX 64

/* Counters for /metrics (monotonic; read with atomic_load). */
typedef struct vs_coord_stats {
    atomic_ulong requests, partial, unavailable, params_clipped;
    atomic_ulong coarse_ranked;            /* queries whose IVF lists the coordinator ranked (router.h) */
    vs_fanout_stats_t fanout;              /* calls, hedges, retries, failures, late answers */
    vs_batch_stats_t batch;                /* shard RPCs and what they carried */
    atomic_ulong fanout_sum, fanout_count; /* partitions called per request */
    atomic_ulong overloaded;               /* requests refused with RESOURCE_EXHAUSTED (any reason) */
    atomic_long in_flight_queries;         /* queries of requests being answered */
    atomic_long in_flight_requests;        /* requests being answered (the adaptive limit's count) */
} vs_coord_stats_t;

typedef struct vs_coord vs_coord_t;

/* view is borrowed and must outlive the coordinator. */
vs_status vs_coord_create(const vs_coord_opts_t *o, vs_view_t *view, vs_coord_t **out, char err[VS_ERR_LEN]);
void vs_coord_destroy(vs_coord_t *c);

/* Adds a version the coordinator can serve: name, embedding model, metric, dim and its router (taken:
 * the coordinator finalises it). The first version added becomes active. */
vs_status vs_coord_add_version(vs_coord_t *c, const char *version, const char *model_version,
                               vs_router_t *router, char err[VS_ERR_LEN]);

/* The embedding model writes are checked against: model "" means the active version's (its name into
 * resolved, 128 bytes); otherwise a held version of that model must exist. *dim gets that version's
 * dimension, *writable whether it is an IVF or HNSW index (those take fresh writes; Flat does not). 0
 * when there is no such version. */
int vs_coord_model_dim(vs_coord_t *c, const char *model, char resolved[128], uint32_t *dim, int *writable);

/* The attribute schema (from its manifest) of the version writes of model are checked against (as
 * vs_coord_model_dim chooses it): fields into out, their count returned (0: none, or no such version). */
size_t vs_coord_model_attrs(vs_coord_t *c, const char *model, vs_attr_field_t out[VS_ATTR_MAX_FIELDS]);

/* Adds the version a manifest describes (hash or cluster partitioning; cluster reads the centroids file
 * and the list map). */
vs_status vs_coord_add_manifest(vs_coord_t *c, const char *manifest_path, char err[VS_ERR_LEN]);

/* The same for a manifest already read from path (files it names are relative to path's directory). */
struct vs_manifest;
vs_status vs_coord_add_loaded(vs_coord_t *c, const struct vs_manifest *m, const char *path,
                              char err[VS_ERR_LEN]);

vs_status vs_coord_activate(vs_coord_t *c, const char *version, char err[VS_ERR_LEN]);

/* 1 if the version is known; out (17 bytes) gets its manifest's content id ("" when added by hand). */
int vs_coord_version_content(vs_coord_t *c, const char *version, char out[17]);

/* 1 if the version is known. */
/* The largest fresh fill (percent of a replica's capacity, from the member records) among the replicas of
 * the active version when it is of embedding model `model` ("" = the active version's); 0 when none is
 * reported. *replica (128 bytes, nullable) names the fullest replica. */
uint32_t vs_coord_fresh_fill(vs_coord_t *c, const char *model, char replica[128]);

int vs_coord_has_version(vs_coord_t *c, const char *version);

/* Forgets a version that is not active (requests using it finish first). VS_ERR_NOT_FOUND,
 * VS_ERR_FAILED_PRECONDITION for the active one. */
vs_status vs_coord_remove_version(vs_coord_t *c, const char *version, char err[VS_ERR_LEN]);

/* Names of the known versions (up to cap) and the active one; returns how many are known. */
size_t vs_coord_versions(vs_coord_t *c, char (*out)[128], size_t cap, char active[128]);

/* 1 when the version is known and every one of its partitions has a usable replica in the view. */
int vs_coord_version_ready(vs_coord_t *c, const char *version);

/* Readiness: 1 while the coordinator can answer at its configured minimum coverage, i.e. the active
 * version has a usable replica for at least one partition and for at least the fraction min_coverage of
 * them (with --min-coverage 0: any partition). A lost partition then makes every coordinator answer
 * partially (coverage says so) instead of dropping them all from the Service at once. */
int vs_coord_ready(vs_coord_t *c);

/* Partitions of the active version with a usable replica; *out_total (nullable) gets the partition count
 * (0 when no version is active). */
uint32_t vs_coord_coverage(vs_coord_t *c, uint32_t *out_total);

/* Upper bound of the encoded answer to nq queries at k. */
size_t vs_coord_answer_bytes(size_t nq, uint32_t k);

/* How a request ends: st VS_OK with body (a SearchResponse, malloc'd, the callee's), or an error with
 * err (a message valid during the call). */
typedef void (*vs_coord_reply_fn)(void *user, vs_status st, const char *err, int64_t retry_after_ms,
                                  uint8_t *body, size_t len);

/* What the server knows of a Search call besides its message. */
typedef struct vs_coord_call {
    int64_t timeout_ms; /* the client's deadline; <= 0: the default */
    double queued_s;    /* how long it waited for a worker (vs_rpc_call_queued_s); < 0 = unknown */
    const char *client; /* the client's identity for quotas; NULL = "anonymous" */
} vs_coord_call_t;

/* Answers a vecshard.v1.SearchRequest within timeout_ms (the client's deadline; <= 0: the default),
 * asynchronously: shard calls go out through srv's workers (batched per replica, batch.h) and
 * reply(user, ...) runs exactly once, on this thread (a bad request) or on a worker. The answer (partial
 * if need be, with its coverage) is built max(1 ms, 5 %) before the deadline, so it reaches the client
 * in time. Overload (docs/reliability.md): a request that waited too long for a worker, is over its
 * client's quota, would pass max_in_flight, or had a partition shed (its replicas' queues too long) is
 * answered RESOURCE_EXHAUSTED with a retry-after hint, never partially. A request whose answer could not fit the message limit (vs_coord_answer_bytes) is refused
 * before any search (INVALID_ARGUMENT). srv must run vs_coord_tick as its timer. Thread-safe. */
void vs_coord_search_async(vs_coord_t *c, vs_rpc_server_t *srv, const uint8_t *req, size_t len,
                           const vs_coord_call_t *call, vs_coord_reply_fn reply, void *user);

/* The timer of the requests in flight (hedges due, deadlines reached): the server's tick
 * (vs_rpc_server_opts_t.tick). Returns when it next needs to run. Cheap when nothing is due. */
double vs_coord_tick(vs_coord_t *c, double now);

/* The adaptive concurrency limit now (requests in flight; 0 when off). */
double vs_coord_concurrency_limit(vs_coord_t *c);

/* Answers vecshard.v1.Coordinator/Status. etcd_connected is reported as given. */
vs_status vs_coord_status_pb(vs_coord_t *c, int etcd_connected, const char *cluster, uint8_t **out,
                             size_t *out_len, char err[VS_ERR_LEN]);

vs_coord_stats_t *vs_coord_stats(vs_coord_t *c);

/* Stops the recall monitor's worker (waits for a replay in progress to end at its next partition): call
 * before what on_recall uses goes away. Idempotent; vs_coord_destroy does it too. */
void vs_coord_stop_recall(vs_coord_t *c);

/* The recall monitor's estimates and counters (recall.h); 0 and zeros when monitoring is off. */
size_t vs_coord_recall_snapshot(vs_coord_t *c, vs_recall_stat_t *out, size_t cap, vs_recall_totals_t *totals);

#endif
