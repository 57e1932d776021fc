/* batch.h: the coordinator's calls to shard replicas, batched per replica. Adaptive, with no timer and
 * no added latency at low load: a partition call goes out at once while fewer than `window` calls are in
 * flight to its replica (and, with adaptive_limit, fewer queries than its adaptive limit, admit.h);
 * otherwise it waits, and when one of those calls completes, every waiting call
 * with the same key (version, k, dim, parameters, lists per query, partition) leaves in one shard call,
 * up to max_queries queries and max_bytes of request. Under load, batches grow to the number of calls
 * that arrived during one shard round trip; at low load every call leaves alone.
 *
 * The shard answers a batch as one request of concatenated queries; each item gets its own slice back.
 * An answer of the wrong version, partition or shape fails every item of the call (the fan-out engine
 * retries them elsewhere). An item whose deadline has passed when its batch leaves is answered
 * DEADLINE_EXCEEDED without being sent; one that waited longer than its priority's queue limit is answered
 * RESOURCE_EXHAUSTED (shed: the replica cannot keep up). Online items leave first. A shard call carries the latest deadline of its items; an item
 * with an earlier deadline is ended by its own request's timer, and its slice, when it comes, is dropped
 * as late. Cancel is not offered: a call that carries other requests' queries is never cancelled for one
 * of them (a hedge's loser runs to completion on the shard and is dropped).
 *
 * Threads: submit from any thread; deliver runs on a server worker, never under the batcher's lock and
 * never inside submit (so a request may hold its own lock around submit). */
#ifndef VS_COORDINATOR_BATCH_H
#define VS_COORDINATOR_BATCH_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "common/net/overload.h"
#include "common/net/rpc.h"
#include "common/status.h"
#include "coordinator/fanout.h"
#include "coordinator/view.h"

/* What makes two items shareable: equal keys. Strings are borrowed. */
typedef struct vs_batch_key {
    const char *version;
    uint32_t dim, k;
    uint32_t nprobe, ef_search;   /* params (0 = the shard's default) */
    uint32_t quantizer_ef_search; /* when the shard ranks the lists itself; 0 otherwise */
    float k_factor;
    uint32_t lists_per_query; /* > 0: lists given (nprobe then 0) */
    int partition_ref;        /* 1: the request names partition (cluster routing) */
    uint32_t partition;
    uint64_t min_log_seq;   /* read-your-writes: the write position the answer must include (0 = none) */
    const int64_t *exclude; /* ids the call must not return (n_exclude); a call with them is never batched */
    size_t n_exclude;
    /* attribute filter and group_by of the request (vecshard.v1 messages, borrowed; NULL = none): a call
     * with either is never batched */
    const struct Vecshard__V1__Filter *filter;
    const struct Vecshard__V1__GroupBy *group_by;
    float filter_exact; /* SearchParams.filter_exact_threshold (0 = the shard's default) */
    int exact;          /* ShardSearchRequest.exact: exact search, no params or lists (recall measurement) */
    vs_priority priority; /* one per shard call (the shard sheds by it) */
} vs_batch_key_t;

/* One partition call of one request. Everything is borrowed until deliver has run (exactly once per
 * submitted item, unless submit failed). next is the batcher's. */
/* Stages of a request at the coordinator, timed for vecshard_coordinator_stage_seconds{stage}. */
typedef enum vs_coord_stage {
    VS_COORD_STAGE_ROUTE,      /* decode, version choice, routing (the coarse ranking) */
    VS_COORD_STAGE_BATCH_WAIT, /* a partition call waiting for its replica's window (batch.c) */
    VS_COORD_STAGE_SHARD_RPC,  /* one shard RPC, sent to answered (network, shard queue and search) */
    VS_COORD_STAGE_MERGE,      /* coverage, merge of the partitions' top-k, encoding the answer */
    VS_COORD_STAGE_N
} vs_coord_stage;

extern const char *const vs_coord_stage_names[VS_COORD_STAGE_N];

typedef struct vs_batch_item {
    vs_batch_key_t key;
    size_t nq;
    const float *queries;   /* nq*dim */
    const int32_t *lists;   /* nq*lists_per_query, or NULL */
    double deadline;        /* vs_now_s() seconds */
    const char *request_id; /* the client request's id (sent to the shard for its logs), or NULL */
    double t_submit;        /* set by vs_batch_submit */
    void (*deliver)(void *user, uint32_t call_id, const vs_fanout_result_t *res);
    void *user;
    uint32_t call_id;
    struct vs_batch_item *next;
} vs_batch_item_t;

typedef struct vs_batch_opts {
    size_t window;      /* calls in flight per replica before items wait (default 2) */
    size_t max_queries; /* per shard call (default 1024) */
    size_t max_bytes;   /* of query floats per shard call (default 8 MiB); a larger item goes alone */
    double max_queue_s; /* an online item that waited longer for its replica is refused (RESOURCE_EXHAUSTED,
                           the coordinator is overloaded); other priorities after a quarter of it
                           (overload.h); <= 0 = never */
    int adaptive_limit; /* 1: also wait while the replica's queries in flight reach its adaptive limit
                           (admit.h) */
    vs_overload_metrics_t *overload; /* counts shed items (reason replica_queue); NULL = not counted */
    void (*on_stage)(void *user, vs_coord_stage stage, double seconds); /* NULL = not timed */
    void *stage_user;
} vs_batch_opts_t;

typedef struct vs_batch_stats {
    atomic_ulong calls;   /* shard calls sent */
    atomic_ulong items;   /* partition calls they carried (items / calls = mean batch) */
    atomic_ulong queries; /* queries they carried */
    atomic_ulong expired; /* items answered DEADLINE_EXCEEDED before being sent */
    atomic_ulong shed[VS_PRIORITY_N]; /* items refused after waiting past max_queue_s, by priority */
    atomic_ulong limited;             /* times a replica's adaptive limit held waiting items back */
} vs_batch_stats_t;

/* Replica r's adaptive limit (queries in flight) and its queries in flight now; 0 when r has never been
 * called. */
int vs_batch_replica_limit(vs_replica_t *r, double *limit, size_t *in_flight_queries);

/* Sends item to replica r (held by the caller until deliver) now or with the next call that leaves.
 * VS_OK; otherwise the item was to leave at once and could not (server stopping, out of memory): deliver
 * will not run and err says why. */
vs_status vs_batch_submit(vs_rpc_server_t *srv, vs_replica_t *r, vs_batch_item_t *item,
                          const vs_batch_opts_t *o, vs_batch_stats_t *stats, char err[VS_ERR_LEN]);

#endif
