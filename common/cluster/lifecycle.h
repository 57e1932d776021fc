/* lifecycle.h: the two version state machines of the cluster protocol, and the load-retry backoff.
 *
 * Machine 1 (vs_cver_*) is the cluster's record of one version, versions/<v> in etcd, whose "state" field
 * holds the lower-case state names below. Machine 2 (vs_rver_*) is one replica's copy of one version
 * inside a shard, whose upper-case state names appear in the shard's member record.
 * Each machine is one table: (state, event) -> next state, or a refusal with its status and a reason.
 * Not here: reading or writing etcd, deciding when an event happens (the admin CLI, the shard's follower
 * and loader do), timers, jitter. Every function is pure: no allocation, no locks, no clock, so each is
 * thread-safe and O(1), and the tables are tested exhaustively (tests/unit/test_lifecycle.c).
 * Key choice: a refusal never changes anything (*out untouched) and says what to do instead, because
 * these refusals reach operators through the admin CLI unchanged.
 *
 * Machine 1: the cluster's version record (states as stored in etcd)
 *
 *                deploy              activate               demote
 *    none --------------> staged ---------------> active -------------> previous
 *                          |  |                   ^  ^  |                |  |
 *                          |  |                   |  +--+ activate       |  | supersede,
 *                          |  |                   |       (no-op)        |  | retire
 *                          |  |                   |                      |  v
 *                          |  |                   +------ activate ------+  retired --+
 *                          |  |                          (rollback)         ^  ^      | retire
 *                          |  | fail                                        |  +------+ (no-op)
 *                          |  v                                             |
 *                          |  failed ------------------ retire -------------+
 *                          |                                                |
 *                          +------------------------ retire ----------------+
 *
 *    staged, failed, retired --remove--> removed       retired, removed --deploy--> staged
 *
 *    from      event      to        who makes it
 *    none      deploy     staged    `vecshard deploy` (create-if-absent)
 *    retired   deploy     staged    `vecshard deploy` again (same content, loaded afresh)
 *    removed   deploy     staged    `vecshard deploy` after `remove`
 *    staged    activate   active    `vecshard activate v` (every partition has v READY)
 *    previous  activate   active    `vecshard rollback` (or `activate` naming the previous version)
 *    active    activate   active    no-op: activating the active version again
 *    active    demote     previous  the activate/rollback transaction, to the version that was active
 *    previous  supersede  retired   the activate transaction, to the version that was previous (not in
 *                                   a rollback: there the previous version is the one activated)
 *    staged    fail       failed    whoever reads the member records: every replica of a partition
 *                                   reports the version FAILED
 *    staged    retire     retired   operator
 *    failed    retire     retired   operator; then `deploy` stages it again
 *    previous  retire     retired   operator (the caller also clears `active.previous`)
 *    retired   retire     retired   no-op
 *    staged    remove     removed   operator: the record is deleted
 *    failed    remove     removed   operator
 *    retired   remove     removed   operator
 * Every other (state, event) pair is refused: see vs_cver_next.
 * Shards load and keep, and coordinators route to, exactly the staged, active and previous versions.
 *
 * Machine 2: one replica's copy of a version (states as in member records)
 *
 *              load            opened               verified           unload              gone
 *    ABSENT --------> LOADING --------> VERIFYING ----------> READY ----------> UNLOADING ------> ABSENT
 *                      |   ^               |                                   ^
 *                 fail |   | load          | fail                              |
 *                      v   | (retry)       v                                   |
 *                     FAILED <-------------+                                   |
 *                      |                                                       |
 *                      +------------------------- unload ----------------------+
 *
 *    from       event     to         who makes it
 *    ABSENT     load      LOADING    the follower: the version is staged/active/previous in etcd
 *    FAILED     load      LOADING    the follower, when vs_lifecycle_backoff_ms since the failure passed
 *    LOADING    opened    VERIFYING  the loader: file mapped, section CRCs ok
 *    VERIFYING  verified  READY      the loader: content id = manifest entry, trained-state id = the
 *                                    version's, warm-up done
 *    LOADING    fail      FAILED     the loader (reason kept in the member record)
 *    VERIFYING  fail      FAILED     the loader
 *    READY      unload    UNLOADING  the follower: the version left the held set in etcd
 *    FAILED     unload    UNLOADING  the follower
 *    UNLOADING  gone      ABSENT     the last search using the copy released it
 * Every other (state, event) pair is refused: see vs_rver_next. Only READY copies serve searches. */
#ifndef VS_COMMON_CLUSTER_LIFECYCLE_H
#define VS_COMMON_CLUSTER_LIFECYCLE_H

#include <stdint.h>

#include "common/status.h"

/* ---- Machine 1: the cluster's version record ---- */

typedef enum vs_cver_state {
    VS_CVER_NONE = 0, /* no record (never deployed) */
    VS_CVER_STAGED,   /* deployed: shards load it; not yet serving by default */
    VS_CVER_ACTIVE,   /* the version requests use unless they name another */
    VS_CVER_PREVIOUS, /* the one active before: still loaded, the rollback target */
    VS_CVER_RETIRED,  /* kept as a record only: shards unload it; deploy stages it again */
    VS_CVER_FAILED,   /* every replica of some partition failed to load it */
    VS_CVER_REMOVED,  /* record deleted by the operator (its name is free again) */
    VS_CVER_STATE_COUNT_
} vs_cver_state;

typedef enum vs_cver_event {
    VS_CVER_DEPLOY = 0, /* operator deploys the version (again) */
    VS_CVER_ACTIVATE,   /* this version becomes active (activate, or rollback to the previous) */
    VS_CVER_DEMOTE,     /* another version was activated; this one was active */
    VS_CVER_SUPERSEDE,  /* another version was activated; this one was previous */
    VS_CVER_FAIL,       /* every replica of some partition failed to load it */
    VS_CVER_RETIRE,     /* operator retires it */
    VS_CVER_REMOVE,     /* operator removes the record */
    VS_CVER_EVENT_COUNT_
} vs_cver_event;

/* Lower-case name as stored in etcd JSON: "none", "staged", "active", "previous", "retired", "failed",
 * "removed". Static string, never NULL; "unknown" for a value out of range. */
const char *vs_cver_state_name(vs_cver_state s);

/* Inverse of vs_cver_state_name (exact, case-sensitive match; every name including "none" and "removed"
 * parses). name is borrowed and may be NULL. Returns VS_OK and sets *out, or VS_ERR_CORRUPT (NULL or
 * unknown name: the record fails validation) with *out untouched. Whether a stored record may hold
 * "none" or "removed" is the record decoder's decision, not this function's. */
vs_status vs_cver_state_parse(const char *name, vs_cver_state *out);

/* Lower-case event name ("deploy", "activate", "demote", "supersede", "fail", "retire", "remove"), for
 * messages and logs. Static string, never NULL; "unknown" out of range. */
const char *vs_cver_event_name(vs_cver_event e);

/* The state a version in state `from` moves to on event ev (the table in the header comment; no-ops
 * return VS_OK with *out == from). On refusal *out is untouched and err (VS_ERR_LEN bytes, may be NULL)
 * reads "cannot <event> a|an <state> version: <why, and what to do instead>". Refusals:
 *   VS_ERR_NOT_FOUND            any event but deploy on none or removed (there is no record)
 *   VS_ERR_ALREADY_EXISTS       deploy on staged, active, previous or failed ("already deployed (state X)")
 *   VS_ERR_FAILED_PRECONDITION  every other pair not in the table, e.g. activate a retired or failed
 *                               version, retire or remove the active one, remove the previous one
 *   VS_ERR_INVALID_ARGUMENT     from or ev out of range
 * Pure and thread-safe. */
vs_status vs_cver_next(vs_cver_state from, vs_cver_event ev, vs_cver_state *out, char err[VS_ERR_LEN]);

/* 1 when shards load (or keep loaded) a version in state s: staged, active, previous; 0 otherwise
 * (unload it, or never load it), including out of range. */
int vs_cver_shards_hold(vs_cver_state s);

/* 1 when coordinators track (may route to) a version in state s: the same set as vs_cver_shards_hold,
 * so every version a coordinator may name is held by the shards; 0 otherwise. */
int vs_cver_coordinators_hold(vs_cver_state s);

/* ---- Machine 2: one replica's copy of a version ---- */

typedef enum vs_rver_state {
    VS_RVER_ABSENT = 0, /* not held */
    VS_RVER_LOADING,    /* being read: the file is mapped and its sections checked */
    VS_RVER_VERIFYING,  /* opened; ids checked against the manifest and warm-up running */
    VS_RVER_READY,      /* serves searches */
    VS_RVER_FAILED,     /* the load failed (reason kept); may be loaded again after a backoff */
    VS_RVER_UNLOADING,  /* no new searches; memory goes when the last running search releases it */
    VS_RVER_STATE_COUNT_
} vs_rver_state;

typedef enum vs_rver_event {
    VS_RVER_LOAD = 0, /* start (or retry) loading */
    VS_RVER_OPENED,   /* file mapped, section CRCs ok */
    VS_RVER_VERIFIED, /* content id and trained-state id match, warm-up done */
    VS_RVER_FAIL,     /* the load or the verification failed */
    VS_RVER_UNLOAD,   /* stop serving it and free it once unused */
    VS_RVER_GONE,     /* the last search using it released it */
    VS_RVER_EVENT_COUNT_
} vs_rver_event;

/* Upper-case name as in member records: "ABSENT", "LOADING", "VERIFYING", "READY", "FAILED",
 * "UNLOADING". Static string, never NULL; "UNKNOWN" out of range. */
const char *vs_rver_state_name(vs_rver_state s);

/* Inverse of vs_rver_state_name (exact, case-sensitive). name is borrowed and may be NULL. Returns VS_OK
 * and sets *out, or VS_ERR_CORRUPT (NULL or unknown name) with *out untouched. */
vs_status vs_rver_state_parse(const char *name, vs_rver_state *out);

/* Lower-case event name ("load", "opened", "verified", "fail", "unload", "gone"). Static string, never
 * NULL; "unknown" out of range. */
const char *vs_rver_event_name(vs_rver_event e);

/* The state a copy in state `from` moves to on event ev (the table in the header comment). On refusal
 * *out is untouched and err (VS_ERR_LEN bytes, may be NULL) reads
 * "event <event> refused for a|an <STATE> copy: <why>". Refusals:
 *   VS_ERR_NOT_FOUND            any event but load on ABSENT (the copy is not held)
 *   VS_ERR_ALREADY_EXISTS       load on LOADING, VERIFYING or READY (already held or being loaded)
 *   VS_ERR_FAILED_PRECONDITION  every other pair not in the table, e.g. unload a LOADING or VERIFYING
 *                               copy (wait for the load to end), load an UNLOADING one
 *   VS_ERR_INVALID_ARGUMENT     from or ev out of range
 * Whether a FAILED copy's retry is due is the caller's decision (vs_lifecycle_backoff_ms), not this
 * function's. Pure and thread-safe. */
vs_status vs_rver_next(vs_rver_state from, vs_rver_event ev, vs_rver_state *out, char err[VS_ERR_LEN]);

/* 1 only for READY: the copy may serve searches; 0 otherwise, including out of range. */
int vs_rver_may_serve(vs_rver_state s);

/* ---- Retry policy ---- */

/* Delay in milliseconds before retry number `failures` (1 = the first retry after the first failure):
 * base_ms * 2^(failures-1), capped at cap_ms; 0 when failures == 0 or base_ms == 0. Never overflows, for
 * any arguments (a huge failures count gives cap_ms). Deterministic: a caller wanting jitter adds it. */
uint64_t vs_lifecycle_backoff_ms(uint32_t failures, uint64_t base_ms, uint64_t cap_ms);

#endif
