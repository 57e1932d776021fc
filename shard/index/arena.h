/* arena.h: per-thread search scratch kept between calls, so a search of one query allocates nothing
 * once its thread has searched before (the ann-benchmarks protocol calls search once per query).
 *
 * Each index type has its own slot (a pthread key whose destructor frees the memory when the thread
 * exits). An arena also carries an owner tag and a generation counter for users that keep state in it
 * across calls (HNSW's visited tags): the tag tells whether the memory still holds that owner's state.
 * Not here: sharing between threads (an arena belongs to the thread that got it). */
#ifndef VS_SHARD_INDEX_ARENA_H
#define VS_SHARD_INDEX_ARENA_H

#include <stddef.h>
#include <stdint.h>

/* VS_ARENA_HNSW_FRESH: a version's fresh-writes graph, searched beside its base graph (sharing a slot,
 * each search would reset the other's visited tags). */
typedef enum vs_arena_slot {
    VS_ARENA_IVF = 0,
    VS_ARENA_HNSW,
    VS_ARENA_HNSW_FRESH,
    VS_ARENA_SLOTS_
} vs_arena_slot;

typedef struct vs_arena {
    void *mem; /* cap bytes, 64-byte aligned, owned by the arena */
    size_t cap;
    uint64_t owner; /* 0 after (re)allocation: set by the user of the memory */
    uint32_t gen;   /* free for the owner's use */
} vs_arena_t;

/* The calling thread's arena of slot, grown to at least bytes. Grown memory is zero-filled and resets
 * owner and gen to 0. NULL when out of memory (the old arena is kept). Borrowed: valid until the next
 * call from the same thread with the same slot, freed at thread exit. */
vs_arena_t *vs_arena_thread(vs_arena_slot slot, size_t bytes);

#endif
