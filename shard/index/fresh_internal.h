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
 * 0 for none; reference: list << 32 | number, the record's list-wide number: first + position in its
 * object). A record also carries a dead flag, set after the map moved its id on: the scan skips dead
 * records without a lookup and checks the map only for the few candidates that pass its threshold. The
 * map decides within one list object (the record is live when the map names it); when the map names a
 * record of another object of the same list (a search overlapping a compaction: on the new object
 * before its ids were repointed, or on the retired one after), the dead flag decides.
 *
 * Compaction: once half of a list's records (and at least VS_FRESH_COMPACT_MIN) are dead, the writer
 * copies its live records into a new list object, publishes it in place of the old one, and repoints
 * their ids. The old object is retired, not freed: searches register in one of two reader counts (the
 * parity of an epoch); the writer frees retired objects after flipping the epoch and seeing the old
 * parity's count at zero, so a search that loaded the old object finishes on it. Positions are only
 * meaningful within one list object: a search keeps the object it scanned for its refine stage. */
#ifndef VS_SHARD_INDEX_FRESH_INTERNAL_H
#define VS_SHARD_INDEX_FRESH_INTERNAL_H

#include <stdatomic.h>

#include "shard/index/attrs.h"
#include "shard/index/fresh.h"
#include "shard/index/idmap.h"
#include "shard/index/ivf_internal.h"

#define VS_FRESH_CHUNK0 16u
#define VS_FRESH_MAX_CHUNKS 28u
#define VS_FRESH_BASE_DEAD (1ull << 63)
/* Search: extra heap slots while a query has seen fresh candidates, so that a duplicate (an id caught
 * mid-replacement) dropped at emission does not cost a result. */
#define VS_FRESH_SLACK 16u
/* A list is compacted once it holds at least this many dead records and they are half of it. */
#define VS_FRESH_COMPACT_MIN 32u

typedef struct vs_fresh_chunk {
    _Atomic uint8_t *dead; /* 1 once superseded or deleted: the scan skips it without a map lookup */
    int64_t *ids;          /* (dead, ids and codes are one allocation, in that order) */
    uint8_t *codes;
    uint8_t *refine;
    int64_t *attrs; /* attribute rows (attrs.h), n_fields slots per record; NULL when the index has none */
    /* fast scan, chunks of 32 records or more: the codes again in the base lists' block layout
     * (fastscan.h), one block per 32 complete records, so the SIMD kernel scans them as it scans the
     * base; the writer packs a block once its 32 records are written and then publishes packed */
    uint8_t *blocks;
    _Atomic size_t packed; /* records in packed blocks (a multiple of 32) */
} vs_fresh_chunk_t;

typedef struct vs_fresh_list {
    _Atomic size_t n;                                        /* records published */
    _Atomic(vs_fresh_chunk_t *) chunks[VS_FRESH_MAX_CHUNKS]; /* allocated before use */
    size_t first;       /* list-wide number of record 0: objects of one list number on (compaction) */
    _Atomic size_t end; /* SIZE_MAX while current; first + its records once compaction retired it */
    size_t dead;        /* writer only: records flagged dead */
    size_t bytes;       /* writer only: memory of this object */
    struct vs_fresh_list *retired_next; /* writer only: retired objects */
} vs_fresh_list_t;

struct vs_fresh {
    const vs_ivf_t *ivf; /* NULL for an HNSW version (hnsw below) */
    uint32_t d;
    size_t code_bytes, refine_bytes;
    vs_idmap_t *map;
    _Atomic(vs_fresh_list_t *) *lists; /* nlist; NULL until the list's first record */
    _Atomic size_t records, live, deleted, bytes, compactions;
    /* reclamation of compacted list objects (see above) */
    _Atomic uint64_t epoch;
    _Atomic size_t readers[2];
    vs_fresh_list_t *retired; /* writer only: unlinked since the last epoch flip */
    vs_fresh_list_t *pending; /* writer only: unlinked before the flip to pending_epoch + 1 */
    uint64_t pending_epoch;
    /* HNSW versions: fresh items in a graph of their own, kept twice (left-right): the writer appends to
     * the copy no search uses, swaps, waits for the searches of the other (epoch and reader counts
     * above), and appends the same nodes to it. Node i is live when the map points its id at i + 1. */
    const struct vs_hnsw *hnsw;
    struct vs_hnsw *g[2];
    _Atomic int active; /* the copy searches use */
    _Atomic size_t nodes;
    size_t base_n;
    _Atomic(uint64_t *) *prev; /* per node: its id's map value before it (fresh.c); n_prev_chunks chunks */
    size_t n_prev_chunks;
    _Atomic(int64_t *) *rows; /* HNSW: per node its attribute row (n_fields slots); chunks as prev */
    /* the base index's attribute schema: every fresh item carries a row of it */
    size_t n_fields;
    vs_attr_field_t fields[VS_ATTR_MAX_FIELDS];
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

/* Record pos (< the published count) of list object L. */
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

/* Record pos's attribute row (NULL when the index has no attributes). */
static inline const int64_t *vs_fresh_record_attrs(const vs_fresh_t *f, const vs_fresh_list_t *L, size_t pos)
{
    if (f->n_fields == 0)
        return NULL;
    size_t off;
    uint32_t c = vs_fresh_chunk_of(pos, &off);
    const vs_fresh_chunk_t *ch =
        atomic_load_explicit(&((vs_fresh_list_t *)L)->chunks[c], memory_order_acquire);
    return ch->attrs + off * f->n_fields;
}

/* 1 when the base index's copy of id is hidden. */
static inline int vs_fresh_base_dead(const vs_fresh_t *f, int64_t id)
{
    uint64_t v;
    return vs_idmap_get(f->map, id, &v) && (v & VS_FRESH_BASE_DEAD);
}

/* 1 when record pos of object L of list `list`, holding id, with its dead flag clear, is live. */
static inline int vs_fresh_live(const vs_fresh_t *f, const vs_fresh_list_t *L, uint32_t list, int64_t id,
                                size_t pos)
{
    uint64_t v;
    if (!vs_idmap_get(f->map, id, &v) || (v & ~VS_FRESH_BASE_DEAD) == 0)
        return 0; /* deleted */
    const uint64_t ref = (v & ~VS_FRESH_BASE_DEAD) - 1, num = ref & 0xffffffffu;
    if ((uint32_t)(ref >> 32) != list)
        return 0; /* moved to another list */
    if (num == L->first + pos)
        return 1;
    const size_t end = atomic_load_explicit(&((vs_fresh_list_t *)L)->end, memory_order_acquire);
    return !(num >= L->first && num < end); /* superseded in this object; another object: the flag said */
}

/* 1 when nothing was written (searches take the plain path). */
static inline int vs_fresh_empty(const vs_fresh_t *f)
{
    return f == NULL || vs_idmap_count(f->map) == 0;
}

/* A search through f registers for its whole duration (list objects it loads stay allocated until it
 * leaves); vs_fresh_read_begin returns the token for vs_fresh_read_end. */
unsigned vs_fresh_read_begin(const vs_fresh_t *f);
void vs_fresh_read_end(const vs_fresh_t *f, unsigned token);

/* The IVF search with a fresh state (f may be NULL): ivf.c. lists: NULL = rank the lists here. */
vs_status vs_ivf_search_fresh(const vs_ivf_t *ivf, const vs_fresh_t *f, size_t nq, const float *q, size_t k,
                              uint32_t nprobe, uint32_t qef, const int32_t *lists, float k_factor,
                              const vs_search_params_t *sel, size_t n_threads, float *out_dist,
                              int64_t *out_ids, char *err);

#endif
