/* fresh_internal.h (private to shard/index): the fresh state's layout, read by the IVF search loop
 * (ivf.c) and written by fresh.c.
 *
 * Per list, an append-only sequence of records in chunks that never move: chunk c holds positions
 * [16 (2^c - 1), 16 (2^(c+1) - 1)), so a list of n records has O(log n) chunks and a reader finds
 * position p without a lock. A record is its id, its code in the list's scan format but one record after
 * another (fast scan: the m 4-bit codes packed two per byte, code 2p in the low nibble of byte p; 8-bit
 * PQ: m bytes; Flat: d floats) and its refine copy. The writer fills a record, then publishes the list's
 * count (release); a reader loads the count (acquire) and reads only below it.
 *
 * The id map (idmap.h) says, per id written since the version: whether the base index's copy is hidden
 * (bit 63, set by every upsert and delete) and which fresh record is live (low bits: its reference + 1,
 * 0 for none). Record reference: list << 32 | position. A record also carries a dead flag, set after the
 * map moved its id on: the scan skips dead records without a lookup and checks the map only for the
 * few candidates that pass its threshold. */
#ifndef VS_SHARD_INDEX_FRESH_INTERNAL_H
#define VS_SHARD_INDEX_FRESH_INTERNAL_H

#include <stdatomic.h>

#include "shard/index/fresh.h"
#include "shard/index/idmap.h"
#include "shard/index/ivf_internal.h"

#define VS_FRESH_CHUNK0 16u
#define VS_FRESH_MAX_CHUNKS 28u
#define VS_FRESH_BASE_DEAD (1ull << 63)
/* Search: extra heap slots while a query has seen fresh candidates, so that a duplicate (an id caught
 * mid-replacement) dropped at emission does not cost a result. */
#define VS_FRESH_SLACK 16u

typedef struct vs_fresh_chunk {
    _Atomic uint8_t *dead; /* 1 once superseded or deleted: the scan skips it without a map lookup */
    int64_t *ids;          /* (dead, ids and codes are one allocation, in that order) */
    uint8_t *codes;
    uint8_t *refine;
} vs_fresh_chunk_t;

typedef struct vs_fresh_list {
    _Atomic size_t n;                                        /* records published */
    _Atomic(vs_fresh_chunk_t *) chunks[VS_FRESH_MAX_CHUNKS]; /* allocated before use */
} vs_fresh_list_t;

struct vs_fresh {
    const vs_ivf_t *ivf;
    size_t code_bytes, refine_bytes;
    vs_idmap_t *map;
    _Atomic(vs_fresh_list_t *) *lists; /* nlist; NULL until the list's first record */
    _Atomic size_t records, live, deleted, bytes;
};

/* Chunk index and offset of position pos. */
static inline uint32_t vs_fresh_chunk_of(size_t pos, size_t *off)
{
    size_t u = pos / VS_FRESH_CHUNK0 + 1;
    uint32_t c = (uint32_t)(63 - __builtin_clzll((unsigned long long)u));
    *off = pos - (size_t)VS_FRESH_CHUNK0 * (((size_t)1 << c) - 1);
    return c;
}

static inline size_t vs_fresh_chunk_cap(uint32_t c)
{
    return (size_t)VS_FRESH_CHUNK0 << c;
}

/* The list's published records (0 when it has none); *L set for vs_fresh_record. */
static inline size_t vs_fresh_list_n(const vs_fresh_t *f, uint32_t list, const vs_fresh_list_t **L)
{
    const vs_fresh_list_t *x = atomic_load_explicit(&f->lists[list], memory_order_acquire);
    *L = x;
    return x ? atomic_load_explicit(&((vs_fresh_list_t *)x)->n, memory_order_acquire) : 0;
}

/* Record pos (< the published count) of a list. */
static inline void vs_fresh_record(const vs_fresh_t *f, const vs_fresh_list_t *L, size_t pos, int64_t *id,
                                   const uint8_t **code, const uint8_t **refine)
{
    size_t off;
    uint32_t c = vs_fresh_chunk_of(pos, &off);
    const vs_fresh_chunk_t *ch =
        atomic_load_explicit(&((vs_fresh_list_t *)L)->chunks[c], memory_order_acquire);
    *id = ch->ids[off];
    *code = ch->codes + off * f->code_bytes;
    *refine = f->refine_bytes ? ch->refine + off * f->refine_bytes : NULL;
}

/* 1 when the base index's copy of id is hidden. */
static inline int vs_fresh_base_dead(const vs_fresh_t *f, int64_t id)
{
    uint64_t v;
    return vs_idmap_get(f->map, id, &v) && (v & VS_FRESH_BASE_DEAD);
}

/* 1 when record (list, pos) holding id is its live copy. */
static inline int vs_fresh_live(const vs_fresh_t *f, int64_t id, uint32_t list, size_t pos)
{
    uint64_t v;
    return vs_idmap_get(f->map, id, &v) && (v & ~VS_FRESH_BASE_DEAD) == ((((uint64_t)list << 32) | pos) + 1);
}

/* 1 when nothing was written (searches take the plain path). */
static inline int vs_fresh_empty(const vs_fresh_t *f)
{
    return f == NULL || vs_idmap_count(f->map) == 0;
}

/* The IVF search with a fresh state (f may be NULL): ivf.c. lists: NULL = rank the lists here. */
vs_status vs_ivf_search_fresh(const vs_ivf_t *ivf, const vs_fresh_t *f, size_t nq, const float *q, size_t k,
                              uint32_t nprobe, uint32_t qef, const int32_t *lists, float k_factor,
                              size_t n_threads, float *out_dist, int64_t *out_ids, char *err);

#endif
