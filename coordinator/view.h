/* view.h: the coordinator's view of the shard replicas, fed by the member records in etcd (or a static
 * list), and the replica choice for a call.
 *
 * A replica is usable for (version, partition) when its record says SERVING and lists the version READY.
 * Choice: the fewest calls outstanding from this coordinator, then the lowest latency EWMA; replicas
 * already tried for a call are skipped. Each replica keeps its recent latencies, whose p95 is the default
 * hedging delay. Replicas are reference-counted: a call holds its replica even if the record disappears
 * meanwhile. When etcd is unreachable the view is kept as it was (the watch reports it; a metric shows
 * it) and replaced by a fresh snapshot when etcd returns. */
#ifndef VS_COORDINATOR_VIEW_H
#define VS_COORDINATOR_VIEW_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "common/cluster/records.h"
#include "common/net/rpc.h"
#include "common/status.h"

#define VS_VIEW_MAX_VERSIONS 8
#define VS_VIEW_ORPHAN_GRACE_S 2.0
#define VS_VIEW_LAT_RING 128
/* calls outstanding by which the own zone's best replica may exceed another zone's before calls spill over */
#define VS_VIEW_ZONE_SLACK 4

typedef struct vs_replica vs_replica_t;

typedef struct vs_view vs_view_t;

vs_status vs_view_create(vs_view_t **out, char err[VS_ERR_LEN]);
/* Channels to shards opened from now on use tls (borrowed; outlives v); NULL = plain text. Call before
 * any member is applied. */
void vs_view_set_tls(vs_view_t *v, const vs_rpc_tls_t *tls);
/* This coordinator's failure zone: vs_view_pick prefers replicas whose record names it, and uses the
 * others only when none of them is usable or all were tried (a hedge or retry). NULL or "" = no
 * preference. */
void vs_view_set_zone(vs_view_t *v, const char *zone);
void vs_view_destroy(vs_view_t *v);

/* Applies a member record (key "/vecshard/<cluster>/members/<p>/<replica>", JSON value as in
 * docs/protocol.md). A malformed record is ignored and counted. */
void vs_view_put(vs_view_t *v, const char *key, size_t klen, const char *json, size_t jlen);
void vs_view_delete(vs_view_t *v, const char *key, size_t klen);
/* Starts a snapshot: records not put again before vs_view_end_snapshot are removed. */
void vs_view_begin_snapshot(vs_view_t *v);
void vs_view_end_snapshot(vs_view_t *v);

/* Static membership: "P=host:port,P=host:port" (replicas SERVING every version). */
vs_status vs_view_add_static(vs_view_t *v, const char *spec, char err[VS_ERR_LEN]);

/* Picks a replica for (version, partition), skipping the n_skip already tried; NULL when none is usable.
 * Order: this coordinator's zone first (vs_view_set_zone) unless its best replica has more than
 * VS_VIEW_ZONE_SLACK calls outstanding beyond another zone's best (a stalled replica), then the fewest
 * calls outstanding, then the lowest latency.
 * content_id (nullable, "" = any): the partition file's content id the version's manifest records; a
 * replica reporting another one is not usable (other data under the version's name). The returned
 * replica holds a reference and counts one call outstanding until vs_replica_done. */
vs_replica_t *vs_view_pick(vs_view_t *v, const char *version, uint32_t partition, const char *content_id,
                           vs_replica_t *const *skip, size_t n_skip);

/* Usable replicas for (version, partition) with that content id (as for vs_view_pick). */
size_t vs_view_live(vs_view_t *v, const char *version, uint32_t partition, const char *content_id);

/* Ends a call on r: records its latency (ok = answered) and drops the reference. */
void vs_replica_done(vs_replica_t *r, double seconds, int ok);

/* An extra reference (a request that remembers the replicas it tried), dropped with vs_replica_release. */
void vs_replica_hold(vs_replica_t *r);
void vs_replica_release(vs_replica_t *r);

vs_rpc_channel_t *vs_replica_channel(vs_replica_t *r);

/* The caller's state attached to r (one kind per program: the coordinator's shard-call batching), made
 * by create() on first use (NULL if it failed) and freed by destroy() with the replica. Thread-safe. */
void *vs_replica_ext(vs_replica_t *r, void *(*create)(void), void (*destroy)(void *));
const char *vs_replica_id(const vs_replica_t *r);
/* The replica's p95 latency over its recent calls in ms (default_ms with fewer than 16 samples). */
double vs_replica_p95_ms(vs_replica_t *r, double default_ms);

/* One replica, for Status. */
typedef struct vs_view_member {
    char replica_id[128], address[256], state[16];
    uint32_t partition;
    char versions[VS_VIEW_MAX_VERSIONS][128];
    uint32_t fresh_fill_pct[VS_VIEW_MAX_VERSIONS]; /* per version: ids written since it, % of capacity */
    size_t n_versions;
    double latency_ewma_ms;
    uint64_t outstanding;
    char zone[VS_ZONE_MAX + 1];
} vs_view_member_t;

/* With out NULL: how many members there are. Else copies up to cap members and returns how many it
 * copied (members may come and go between the two calls). */
size_t vs_view_members(vs_view_t *v, vs_view_member_t *out, size_t cap);

/* Static stability (docs/protocol.md, "Coordinator view"): a replica whose record disappears (a deleted
 * key, or missing from a new snapshot) while it was SERVING is kept and still routed to; vs_view_sweep
 * asks each such replica for Info (200 ms) and removes it once it has not answered as itself (its replica
 * id and its record's instance id) and SERVING for VS_VIEW_ORPHAN_GRACE_S. A replica whose record says
 * DRAINING or LOADING leaves at once. Call sweep periodically (the coordinator does twice a second); it
 * blocks for the checks, never while holding the view's lock. Returns the replicas removed; *out_orphans
 * (nullable) the ones still kept without a record. */
size_t vs_view_sweep(vs_view_t *v, size_t *out_orphans);

/* Records ignored because they did not parse. */
uint64_t vs_view_bad_records(const vs_view_t *v);

#endif
