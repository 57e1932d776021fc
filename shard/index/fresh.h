/* fresh.h: writes since an index version was built, searchable at once (issue 15). A fresh state sits
 * beside one loaded IVF index (a partition of a version): upserts are encoded with the index's own
 * quantizer, codebooks and refine codec into per-list delta segments (as FAISS IVF add), so a fresh item
 * is found and ranked exactly as it would be in a rebuilt index; deletes and superseded copies are
 * tombstones. Searches through the fresh state see the index's items minus the deleted or superseded
 * ones, plus the live fresh items; dead items are skipped inside the scan, before they enter the
 * candidate heap, so a search still returns k results.
 *
 * One writer (the log applier), any number of concurrent searches; searches never block and never see
 * a half-written item (records are published with release stores after they are complete; the id map
 * is idmap.h). A search running while a write applies sees each item before or after that write; a
 * replaced item may be missing from that one search (its old copy dead, the new one not yet scanned),
 * never returned twice (duplicates are dropped when the results are emitted).
 *
 * Capacity: the number of distinct ids written (upserted or deleted) since the version was built; a
 * write that would exceed it is refused whole (VS_ERR_RESOURCE_EXHAUSTED) and the next version folds
 * the writes in. Superseded and deleted records do not accumulate: a list at least half dead is
 * rewritten with its live records (searches running meanwhile finish on the old copy), so memory and
 * scan time follow the live items, not the number of writes. Not here: the log (who calls upsert/delete in
 * which order), HNSW versions. */
#ifndef VS_SHARD_INDEX_FRESH_H
#define VS_SHARD_INDEX_FRESH_H

#include <stddef.h>
#include <stdint.h>

#include "common/filter.h"
#include "shard/index/index.h"

typedef struct vs_fresh vs_fresh_t;

/* A fresh state over base (borrowed; outlives the state) for up to capacity distinct ids. base must be
 * a trained IVF index (VS_ERR_UNSUPPORTED for other types). VS_ERR_NOMEM. */
vs_status vs_fresh_create(const vs_index_t *base, size_t capacity, vs_fresh_t **out, char err[VS_ERR_LEN]);
void vs_fresh_destroy(vs_fresh_t *f); /* NULL is a no-op; no search may be running */

/* Writer only. Inserts or replaces n items (ids[n] >= 0, x[n*dim] finite): each id's previous copy (in
 * the index or an earlier upsert) is hidden and the new one is searchable when the call returns. An id
 * given twice in one call keeps its last vector. All or nothing: VS_ERR_INVALID_ARGUMENT (bad id or
 * vector, named), VS_ERR_RESOURCE_EXHAUSTED (capacity), VS_ERR_NOMEM leave the state unchanged. */
vs_status vs_fresh_upsert(vs_fresh_t *f, size_t n, const int64_t *ids, const float *x, char err[VS_ERR_LEN]);

/* vs_fresh_upsert with each vector's list given (lists[n], as vs_fresh_assign computed them: a caller
 * that routed by list does not pay for the assignment twice); VS_ERR_OUT_OF_RANGE for a list >= nlist. */
vs_status vs_fresh_upsert_lists(vs_fresh_t *f, size_t n, const int64_t *ids, const float *x,
                                const int32_t *lists, char err[VS_ERR_LEN]);

/* vs_fresh_upsert_lists with attribute rows: rows[n * n_fields] in the base index's schema order
 * (vs_fresh_fields; int64 slots, a float field's slot its float's bits, attrs.h), NULL = every value
 * missing. lists may be NULL. */
vs_status vs_fresh_upsert_attrs(vs_fresh_t *f, size_t n, const int64_t *ids, const float *x,
                                const int32_t *lists, const int64_t *rows, char err[VS_ERR_LEN]);

/* The attribute schema fresh items carry (the base index's; *n 0 when it has none). Borrowed. */
const vs_attr_field_t *vs_fresh_fields(const vs_fresh_t *f, size_t *n);

/* The value of integer field `field` (schema index) for n ids as this state serves them: a live fresh
 * record's, else the base's (vs_index_group_values), VS_ATTR_NULL_INT for ids held nowhere. */
vs_status vs_fresh_group_values(const vs_fresh_t *f, const vs_index_t *base, size_t field, size_t n,
                                const int64_t *ids, int64_t *out, char err[VS_ERR_LEN]);

/* Writer only. Hides n ids (>= 0) wherever they are; ids that exist nowhere are recorded too (a later
 * version may hold them). All or nothing, as upsert. */
vs_status vs_fresh_delete(vs_fresh_t *f, size_t n, const int64_t *ids, char err[VS_ERR_LEN]);

/* VS_OK when writing ids[n] (>= 0; the first n_upserts upserted, the rest deleted) would fit the capacity
 * (and, for an HNSW version, its graph's room for upserted copies); VS_ERR_RESOURCE_EXHAUSTED (as upsert)
 * when not; VS_ERR_INVALID_ARGUMENT for a negative id. Changes nothing. */
vs_status vs_fresh_check_room(const vs_fresh_t *f, size_t n, const int64_t *ids, size_t n_upserts,
                              char err[VS_ERR_LEN]);

/* The IVF list each of n vectors would be stored in (vs_ivf_assign on the base index): cluster-partitioned
 * versions route an upsert to the partition owning its list. out_lists[n]. */
vs_status vs_fresh_assign(const vs_fresh_t *f, size_t n, const float *x, int32_t *out_lists,
                          char err[VS_ERR_LEN]);

/* vs_index_search over the base index with the writes applied. */
vs_status vs_fresh_search(const vs_fresh_t *f, size_t nq, const float *q, size_t k,
                          const vs_search_params_t *params, size_t n_threads, float *out_dist,
                          int64_t *out_ids, char err[VS_ERR_LEN]);

/* vs_ivf_search_lists (lists chosen by the caller, e.g. the coordinator) with the writes applied. */
vs_status vs_fresh_search_lists(const vs_fresh_t *f, size_t nq, const float *q, size_t k,
                                const int32_t *lists, uint32_t n_lists, float k_factor,
                                const vs_search_params_t *sel, size_t n_threads, float *out_dist,
                                int64_t *out_ids, char err[VS_ERR_LEN]);

typedef struct vs_fresh_stats {
    size_t ids; /* distinct ids written (counts against capacity) */
    size_t capacity;
    size_t records;     /* fresh vectors stored, live or superseded (until their list is compacted) */
    size_t live;        /* fresh vectors that searches return */
    size_t deleted;     /* ids whose last write was a delete */
    size_t compactions; /* lists rewritten without their superseded and deleted records */
    size_t used;        /* of capacity: ids; HNSW versions: the larger of ids and half the graph's nodes */
    size_t memory_bytes;
} vs_fresh_stats_t;

/* Counts (a reader may see a slightly older picture while the writer runs). */
void vs_fresh_stats(const vs_fresh_t *f, vs_fresh_stats_t *out);

#endif
