/* topk.h: bounded top-k selection and the k-way merge of per-partition result lists.
 *
 * The heap works on a "key" where smaller is better: for L2 the key is the distance (a max-heap of
 * the k best keeps the worst on top), for similarities (IP, cosine) the key is the negated similarity,
 * which makes the same max-heap a min-heap on similarity. Negation is exact in IEEE arithmetic, so
 * nothing is lost. Ties are broken by id (smaller id wins), so results are deterministic whatever the
 * order candidates arrive in. The heap lives in caller storage: the hot path allocates nothing.
 * Missing results are padded with id -1 and distance +inf (L2) or -inf (similarities). */
#ifndef VS_COMMON_TOPK_H
#define VS_COMMON_TOPK_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

/* Largest k any search accepts (requests above it are INVALID_ARGUMENT). */
#define VS_TOPK_MAX_K 10000u

typedef struct vs_topk {
    float *keys;  /* k slots, borrowed */
    int64_t *ids; /* k slots, borrowed */
    size_t k;
    size_t size;
} vs_topk_t;

/* Prepares an empty heap of capacity k over caller buffers keys[k], ids[k]. */
static inline void vs_topk_init(vs_topk_t *h, size_t k, float *keys, int64_t *ids)
{
    h->keys = keys;
    h->ids = ids;
    h->k = k;
    h->size = 0;
}

/* The key a candidate must beat to enter: the worst kept key when full, +inf before. */
static inline float vs_topk_threshold(const vs_topk_t *h)
{
    return h->size == h->k && h->k > 0 ? h->keys[0] : INFINITY;
}

/* 1 when (ka, ia) ranks worse than (kb, ib). */
static inline int vs_topk_worse(float ka, int64_t ia, float kb, int64_t ib)
{
    return ka > kb || (ka == kb && ia > ib);
}

/* Offers a candidate; O(log k). Callers usually test key <= vs_topk_threshold() first. */
void vs_topk_push(vs_topk_t *h, float key, int64_t id);

/* Offers keys[i] with id id0 + i for i in [0, n), in order, each only when key <= the threshold at that
 * moment: the same pushes as the plain loop, with the comparisons done 16 keys at a time (AVX-512). */
void vs_topk_push_below(vs_topk_t *h, const float *keys, size_t n, int64_t id0);

/* The k best of keys[0..n) by (key, index), best first: keys into okeys and indices into oids (k slots
 * each); returns how many (min(k, n), fewer when keys are NaN). The same entries in the same order as
 * pushing every key into a k-heap and sorting it; for n up to 4,096 by a selection of the k-th key
 * (no per-entry heap work). */
size_t vs_topk_best_of(const float *keys, size_t n, size_t k, float *okeys, int64_t *oids);

/* Sorts the kept entries best first in place (heap order is lost) and returns how many there are. */
size_t vs_topk_sort(vs_topk_t *h);

/* Sorts h, then writes k results into out_dist/out_ids best first, converting keys back into
 * distances (negating when larger_is_better) and padding missing slots with id -1. */
void vs_topk_emit(vs_topk_t *h, int larger_is_better, float *out_dist, int64_t *out_ids);

/* Key of a distance: d for L2, -d for similarities. */
static inline float vs_topk_key(float dist, int larger_is_better)
{
    return larger_is_better ? -dist : dist;
}

/* The padding distance for a missing result. */
static inline float vs_topk_pad_distance(int larger_is_better)
{
    return larger_is_better ? -INFINITY : INFINITY;
}

/* Reservoir: keeps the k best (key, id) like the heap, but candidates are appended to a buffer of
 * capacity cap (> k; cap == k only when no more than cap candidates can ever be offered) and the
 * buffer is cut back to the k best by quickselect when it fills, which
 * tightens the threshold. Amortised O(1) per candidate instead of O(log k): the choice for large k
 * (the k*k_factor candidates before a re-rank). Ties at the threshold are decided by id, as the heap. */
typedef struct vs_reservoir {
    float *keys;  /* cap slots, borrowed */
    int64_t *ids; /* cap slots, borrowed */
    size_t k, cap, size;
    float threshold; /* +inf until the first cut */
} vs_reservoir_t;

static inline void vs_reservoir_init(vs_reservoir_t *r, size_t k, size_t cap, float *keys, int64_t *ids)
{
    r->keys = keys;
    r->ids = ids;
    r->k = k;
    r->cap = cap;
    r->size = 0;
    r->threshold = INFINITY;
}

/* Keeps the k best of the buffer (unordered) and sets the threshold to the worst kept key. */
void vs_reservoir_cut(vs_reservoir_t *r);

/* Offers a candidate; callers test key <= r->threshold first (which also keeps NaN keys out: the cut
 * assumes there are none). */
static inline void vs_reservoir_push(vs_reservoir_t *r, float key, int64_t id)
{
    r->keys[r->size] = key;
    r->ids[r->size] = id;
    if (++r->size == r->cap)
        vs_reservoir_cut(r);
}

/* Cuts to at most k entries (unordered) and returns how many there are. */
size_t vs_reservoir_finish(vs_reservoir_t *r);

/* Sorts n ids ascending. */
void vs_ids_sort(int64_t *ids, size_t n);

/* Recall@k of one answer: how many of the exact ids (k, -1 padded) are among the served ids (k, -1
 * padded), over the exact ids present; 1 when there are none. O(k^2). */
double vs_ids_recall(const int64_t *served, const int64_t *exact, size_t k);

/* An id that appears more than once among ids[n] (the smallest such), -1 when each appears once, -2 when
 * there is no memory for the sorted copy. */
int64_t vs_ids_repeated(const int64_t *ids, size_t n);

/* The ids of one write (an Upsert or Delete, a write-log message): at least one, each >= 0, each once.
 * VS_ERR_INVALID_ARGUMENT naming the first offence; VS_ERR_NOMEM. */
vs_status vs_ids_check_write(const int64_t *ids, size_t n, char err[VS_ERR_LEN]);

/* Drops repeated ids from a best-first result list of n entries (keeping the first, the better one) and
 * pads the end with id -1 (vs_topk_pad_distance). For indexes whose answers may hold one item twice (an
 * item caught mid-replacement by fresh writes). A sorted copy of the ids (tmp: n slots of scratch) finds
 * whether there is any repeat in O(n log n); the O(n^2) compaction runs only when there is one. Returns
 * the number of entries dropped. */
size_t vs_topk_drop_duplicates(float *dist, int64_t *ids, size_t n, int64_t *tmp, int larger_is_better);

/* One sorted result list (best first, as emitted by an index); entries with id -1 end the list. */
typedef struct vs_topk_list {
    const float *dist;
    const int64_t *ids;
    size_t len;
} vs_topk_list_t;

/* k-way merge of n_lists sorted lists into the k best (out_dist[k], out_ids[k], best first), dropping
 * repeated ids (the better occurrence is kept; on equal distance the first list wins) and padding with
 * id -1. Ties are broken by id. VS_ERR_INVALID_ARGUMENT if k is 0 or above VS_TOPK_MAX_K or a list is
 * not sorted; VS_ERR_NOMEM. Allocates O(n_lists + k) scratch. Thread-safe (no shared state). */
vs_status vs_topk_merge(const vs_topk_list_t *lists, size_t n_lists, int larger_is_better, size_t k,
                        float *out_dist, int64_t *out_ids, char err[VS_ERR_LEN]);

/* How many results each of n_partitions needs to return so that the merged top-k is the true top-k with
 * probability at least q, when the true top-k is spread over the partitions uniformly at random (hash
 * partitioning): the smallest k' <= k with n_partitions * P(Binomial(k, 1/n_partitions) > k') <= 1 - q
 * (union bound; Vespa's "top-k probability"; for k = 100 over 8 partitions and q = 0.9999, k' = 28).
 * Returns k when q >= 1 or q <= 0 or n_partitions <= 1. */
size_t vs_topk_partition_k(size_t k, uint32_t n_partitions, double q);

#endif
