/* store.h: result sets of batch neighbours in Redis (the key layout is in value.h; the read protocol and
 * its guarantees in docs/protocol.md). A run writes one set: begin records it (or finds the progress of an
 * earlier attempt of the same run), put writes a block of values and only then advances the recorded
 * progress, switch makes the set current in one Lua script, expire deletes the sets beyond the newest N.
 * No step leaves a half-switched state: before EXEC the current set is the old one, after it the new one.
 * Every call is one or a few pipelined round trips on the caller's connection; nothing here keeps state
 * between calls but the options. */
#ifndef VS_COORDINATOR_NBRS_STORE_H
#define VS_COORDINATOR_NBRS_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "common/net/redis.h"
#include "coordinator/nbrs/value.h"

typedef struct vs_nbrs_store {
    vs_redis_t *redis; /* borrowed */
    char prefix[VS_NBRS_MAX_PREFIX + 1];
    char set[VS_NBRS_MAX_NAME + 1];
    vs_nbrs_format format;
    int similarity; /* scores are similarities (ip, cosine) */
    size_t k;
    char fingerprint[17]; /* the run's: progress and the switch are fenced on it */
} vs_nbrs_store_t;

/* What begin found or recorded. */
typedef struct vs_nbrs_progress {
    uint64_t done;  /* queries whose values are written, in input order */
    int complete;   /* the set was completed (and switched to) by an earlier attempt */
    int is_current; /* it is the current set now */
} vs_nbrs_progress_t;

/* Records the run of set s->set (fingerprint: 16 hex digits naming its inputs and parameters; n_keys;
 * version: the index version searched) or finds it: a set of the same fingerprint continues from its
 * progress; another fingerprint is VS_ERR_ALREADY_EXISTS (another run wrote that set name); a set left
 * half-deleted (state deleting) is deleted and started again. */
vs_status vs_nbrs_store_begin(const vs_nbrs_store_t *s, const char *fingerprint, uint64_t n_keys,
                              const char *version, vs_nbrs_progress_t *out, char err[VS_ERR_LEN]);

/* Writes n values (query i: keys[i] of key_lens[i] bytes, ids[i*k..], dist[i*k..]) with pipelined SETs,
 * reads every reply, and then records done_after as the progress, only while the set's meta is still this
 * run's (fingerprint, state writing: a script): VS_ERR_FAILED_PRECONDITION when it was dropped or taken
 * over meanwhile. An error reply (OOM when Redis is full) or a lost connection returns its status with
 * Redis's text, and the recorded progress is unchanged.
 * stop_before_replies: a test hook: send the SETs and raise SIGSTOP before reading their replies. */
vs_status vs_nbrs_store_put(const vs_nbrs_store_t *s, size_t n, const char *const *keys,
                            const size_t *key_lens, const int64_t *ids, const float *dist,
                            uint64_t done_after, int stop_before_replies, char err[VS_ERR_LEN]);

/* Makes the set current in one Lua script (atomic): checks the meta is this run's, writing or complete, its
 * progress equals n_keys and #current / #sets have the right types, then moves the set to the head of #sets,
 * marks the meta complete and sets #current last. Refused (VS_ERR_FAILED_PRECONDITION) or failed: the
 * current set is unchanged. Needs the @scripting ACL category. */
vs_status vs_nbrs_store_switch(const vs_nbrs_store_t *s, uint64_t n_keys, char err[VS_ERR_LEN]);

/* Deletes every set of #sets beyond the newest `keep` (>= 1; never the current set): marks its meta
 * deleting, then its keys (SCAN + UNLINK), its meta, then its #sets entry, so an interrupted expire is
 * finished by the next one (and a run of that set restarts it instead of taking it for complete).
 * *out_sets / *out_keys (may be NULL): sets and keys removed. */
vs_status vs_nbrs_store_expire(vs_redis_t *r, const char *prefix, size_t keep, size_t *out_sets,
                               size_t *out_keys, char err[VS_ERR_LEN]);

/* Deletes one set (an abandoned run's, or an old one): VS_ERR_FAILED_PRECONDITION for the current set, and
 * for a set being written unless force (its run, if alive, then fails at its next block). */
vs_status vs_nbrs_store_drop(vs_redis_t *r, const char *prefix, const char *set, int force, size_t *out_keys,
                             char err[VS_ERR_LEN]);

/* The current set's name into buf (VS_NBRS_MAX_NAME + 1 bytes); "" when there is none. */
vs_status vs_nbrs_store_current(vs_redis_t *r, const char *prefix, char *buf, char err[VS_ERR_LEN]);

/* Redis's memory from INFO memory: used_memory, maxmemory (0 = no limit) and maxmemory_policy. */
typedef struct vs_nbrs_memory {
    uint64_t used, max;
    char policy[64];
} vs_nbrs_memory_t;
vs_status vs_nbrs_store_memory(vs_redis_t *r, vs_nbrs_memory_t *out, char err[VS_ERR_LEN]);

/* Estimated Redis memory of one key of this set (key of key_len bytes): value, key and Redis's per-key
 * overhead, rounded to jemalloc's size classes. */
uint64_t vs_nbrs_key_bytes_estimate(const vs_nbrs_store_t *s, size_t key_len);

#endif
