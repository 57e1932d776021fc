/* follow.h: a shard following the index versions etcd says to hold (docs/protocol.md, "Rollout").
 *
 * Watches /vecshard/<cluster>/versions/ and /vecshard/<cluster>/active. Versions in state staged, active
 * or previous are loaded (partition `partition` of the manifest the record names) in the background,
 * one at a time, while the shard keeps serving; retired or deleted versions are unloaded (never the one
 * the shard has active); when the active version is READY here the shard switches to it. After every
 * change `on_change` runs (the shard re-publishes its member record and health). A shard that starts
 * mid-rollout gets the whole state from the watch's first snapshot; when etcd is unreachable nothing
 * changes until it returns. A version that fails to load stays FAILED (the record says why) and is
 * retried only when its record changes. */
#ifndef VS_SHARD_SERVER_FOLLOW_H
#define VS_SHARD_SERVER_FOLLOW_H

#include <stdint.h>

#include "common/status.h"
#include "shard/server/shard.h"

typedef struct vs_follow vs_follow_t;

typedef void (*vs_follow_change_fn)(void *user);

/* sh is borrowed and must outlive the follower. */
vs_status vs_follow_start(const char *endpoints, const char *cluster, uint32_t partition, vs_shard_t *sh,
                          vs_follow_change_fn on_change, void *user, vs_follow_t **out, char err[VS_ERR_LEN]);

/* Stops the watch and the loader thread (a load in progress finishes first). NULL is a no-op. */
void vs_follow_stop(vs_follow_t *f);

#endif
