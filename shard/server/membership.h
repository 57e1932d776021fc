/* membership.h: the shard's record in etcd, /vecshard/<cluster>/members/<partition>/<replica-id>
 * (docs/protocol.md), held under a lease that common/net/etcd.h's session keeps alive at TTL/3 and
 * re-creates (re-registering the record) when it is lost. The record is JSON: address, partition,
 * replica id, state (LOADING, SERVING, DRAINING), active version, versions held and their states,
 * started_at. vs_membership_update re-publishes it after every change; vs_membership_stop revokes the
 * lease so the record disappears at once (SIGKILL leaves it to expire after the TTL). */
#ifndef VS_SHARD_SERVER_MEMBERSHIP_H
#define VS_SHARD_SERVER_MEMBERSHIP_H

#include <stdint.h>

#include "common/net/rpc.h"
#include "common/status.h"
#include "shard/server/shard.h"

typedef struct vs_membership vs_membership_t;

typedef struct vs_membership_opts {
    const char *endpoints; /* etcd client URLs, comma-separated */
    const char *cluster;
    uint32_t partition;
    const char *replica_id;
    const char *address;         /* what coordinators dial */
    int64_t ttl_s;               /* lease TTL; 0 = 10 */
    int timeout_ms;              /* per etcd request; 0 = 2000 */
    const char *instance_id;     /* this process's (as vs_shard_opts_t.instance_id) */
    uint64_t memory_limit_bytes; /* reported for admission by bytes; 0 = the cgroup's memory.max, else RAM */
    const char *zone;            /* failure zone published in the record (NULL or "" = none) */
    const vs_rpc_tls_t *tls;     /* how to reach another replica's address (holder check); NULL = plain;
                                    borrowed for the membership's life */
} vs_membership_opts_t;

/* Connects, grants the lease and claims the record's key for sh's current state: a create-if-absent
 * transaction. When another process holds the key, its address is asked for Info (1 s): a holder that
 * answers with another instance id is a live replica with the same id, and start fails with
 * VS_ERR_ALREADY_EXISTS naming it (the healthy replica keeps its record); a holder that does not answer
 * (or answers with this process's instance id: a previous incarnation at the same address) is waited for
 * until its lease expires, at most TTL + 2 s, then the key is claimed. sh is borrowed and must outlive
 * the membership. VS_ERR_UNAVAILABLE when etcd cannot be reached. */
vs_status vs_membership_start(const vs_membership_opts_t *o, vs_shard_t *sh, vs_membership_t **out,
                              char err[VS_ERR_LEN]);

/* Re-publishes the record (after a load, activation or drain). Errors are logged and counted; the
 * session retries on its own. */
void vs_membership_update(vs_membership_t *m);

/* The key of the record (borrowed). */
const char *vs_membership_key(const vs_membership_t *m);

/* etcd errors seen so far (failed puts, keepalive failures) and re-registrations after a lost lease. */
void vs_membership_counters(const vs_membership_t *m, uint64_t *out_etcd_errors,
                            uint64_t *out_reregistrations);

/* Member-record writes so far (one per publish: a load, a switch, an unload, a drain): bounded per version
 * by the follower's retry backoff. */
uint64_t vs_membership_writes(const vs_membership_t *m);

/* Tokens its etcd client fetched for its RBAC user (vs_etcd_authentications). */
uint64_t vs_membership_etcd_authentications(const vs_membership_t *m);

/* Revokes the lease (the record disappears now) and frees. NULL is a no-op. */
void vs_membership_stop(vs_membership_t *m);

#endif
