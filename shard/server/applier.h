/* applier.h: applies the write log's messages (protos/vecshard/v1/writelog.proto LogWrite) to one replica's
 * fresh state (shard/index/fresh.h), keeping what its partition owns. No network: the shard's log reader
 * hands it message bytes in sequence order.
 *
 * Ownership, as the version was partitioned (docs/protocol.md):
 * - hash: an id belongs to partition splitmix64(id) % P; upserts and deletes of other ids are skipped.
 * - cluster: an upserted vector belongs to the partition that owns its IVF list; every other partition
 *   applies the upsert as a delete (the id may have lived there before: the item moved), and deletes
 *   apply everywhere (a tombstone for an id a partition never had costs one map entry).
 * A write from another embedding model than the version's is skipped (serving it would mix vector spaces)
 * and counted; a message that does not decode or break the rules is rejected whole and counted (the
 * coordinator validates before logging, so it is a bug or a foreign writer: never half-applied). */
#ifndef VS_SHARD_SERVER_APPLIER_H
#define VS_SHARD_SERVER_APPLIER_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "shard/index/fresh.h"
#include "vecshard/v1/writelog.pb-c.h"

typedef struct vs_applier_scope {
    uint32_t partition, n_partitions;
    const uint32_t
        *list_partition; /* cluster partitioning: nlist entries, the owner of each list; NULL = hash */
    uint32_t nlist;
    const char *model_version; /* the version's; "" or NULL accepts any */
    uint32_t dim;
} vs_applier_scope_t;

typedef struct vs_applier_counts {
    uint64_t upserted, deleted; /* ids applied */
    uint64_t not_owned;         /* ids skipped: another partition's */
    uint64_t other_model;       /* messages skipped: another embedding model */
    uint64_t rejected;          /* messages rejected: malformed */
} vs_applier_counts_t;

/* What a replica does with a decoded message, by the rules above (one place: the fold uses them too):
 * apply it, skip it (an upsert from another embedding model than model_version, "" = any), or reject it
 * (an unknown operation; ids empty, negative or repeated; vectors not ids x dim finite floats; err says
 * why). */
typedef enum vs_applier_verdict { VS_APPLY, VS_APPLY_OTHER_MODEL, VS_APPLY_REJECT } vs_applier_verdict;

vs_applier_verdict vs_applier_judge(const Vecshard__V1__LogWrite *w, uint32_t dim, const char *model_version,
                                    char err[VS_ERR_LEN]);

/* Applies one message. VS_OK when applied or skipped (counted); VS_ERR_CORRUPT when rejected (counted;
 * err says why; the caller moves on); VS_ERR_RESOURCE_EXHAUSTED when the fresh state is full (nothing
 * applied: the caller stays on this message until a new version folds the log); VS_ERR_NOMEM. */
vs_status vs_applier_apply(vs_fresh_t *f, const vs_applier_scope_t *scope, const uint8_t *msg, size_t len,
                           vs_applier_counts_t *counts, char err[VS_ERR_LEN]);

#endif
