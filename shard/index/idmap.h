/* idmap.h: a map from item id (int64 >= 0) to a 64-bit value with one writer and any number of readers
 * that never block and never take a lock: the fresh-writes state of a serving index (which ids were
 * upserted or deleted since the version was built, and where their live copy is), read by every search
 * while the log applier writes.
 *
 * Open addressing with linear probing over a power-of-two table sized once (at least twice the capacity,
 * so probes stay short); keys are never removed, values are overwritten. The writer stores a new slot's
 * value before publishing its key (release), and readers load the key with acquire, so a reader that
 * finds a key sees a value the writer stored for it. The table never moves, so a reader needs no epoch.
 * A small filter in front of the table (one bit per id hash, grown as ids come) answers most lookups of
 * ids not in the map without touching the table.
 * Not here: removal (a version switch starts a new map), growth (capacity is configured; a full map is
 * an error the caller reports, not a resize under readers). */
#ifndef VS_SHARD_INDEX_IDMAP_H
#define VS_SHARD_INDEX_IDMAP_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

typedef struct vs_idmap vs_idmap_t;

/* A map for up to capacity ids (1..2^32). VS_ERR_INVALID_ARGUMENT, VS_ERR_NOMEM. */
vs_status vs_idmap_create(size_t capacity, vs_idmap_t **out, char err[VS_ERR_LEN]);
void vs_idmap_destroy(vs_idmap_t *m); /* NULL is a no-op */

/* Writer only (one thread at a time): id -> value. VS_ERR_RESOURCE_EXHAUSTED when id is new and the map
 * already holds capacity ids (nothing changes); VS_ERR_INVALID_ARGUMENT for a negative id. */
vs_status vs_idmap_put(vs_idmap_t *m, int64_t id, uint64_t value, char err[VS_ERR_LEN]);

/* Any thread: 1 and *value when id is in the map, else 0. */
int vs_idmap_get(const vs_idmap_t *m, int64_t id, uint64_t *value);

/* Ids in the map (a reader may see a slightly older count). */
size_t vs_idmap_count(const vs_idmap_t *m);
size_t vs_idmap_capacity(const vs_idmap_t *m);

/* Bytes the map holds. */
size_t vs_idmap_memory_bytes(const vs_idmap_t *m);

#endif
