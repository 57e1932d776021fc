/* index_impl.h: what an index type implements to sit behind vs_index_t (internal to shard/index). */
#ifndef VS_SHARD_INDEX_INDEX_IMPL_H
#define VS_SHARD_INDEX_INDEX_IMPL_H

#include "shard/index/ifile.h"
#include "shard/index/exact.h"
#include "shard/index/index.h"

typedef struct vs_index_ops {
    vs_status (*train)(void *impl, size_t n, const float *x, size_t n_threads,
                       const vs_progress_cb_t *progress, char *err);
    vs_status (*add)(void *impl, size_t n, const float *x, const int64_t *ids, size_t n_threads,
                     const vs_progress_cb_t *progress, char *err);
    /* Arguments already validated by vs_index_search (k range, finite queries, n_threads >= 1). */
    vs_status (*search)(const void *impl, size_t nq, const float *q, size_t k,
                        const vs_search_params_t *params, size_t n_threads, float *out_dist, int64_t *out_ids,
                        char *err);
    size_t (*count)(const void *impl);
    size_t (*memory_bytes)(const void *impl);
    int (*needs_training)(const void *impl);
    void (*destroy)(void *impl);
    /* Writes the index's sections and fills params (128 bytes, index-defined). NULL: not persistable. */
    void (*ids_in_order)(const void *impl, int64_t *out); /* the ids by item position */
    /* Called when attributes are attached (or replaced; NULL: removed): the type may derive per-item
     * structure from them. NULL: nothing to derive. */
    vs_status (*attach_attrs)(void *impl, const struct vs_attrs *a, char *err);
    vs_status (*save)(const void *impl, vs_ifile_writer_t *w, uint8_t params[128], char *err);
    /* The exact float vectors the index keeps, as segments (exact.h): fills up to cap of out (out may be
     * NULL with cap 0) and returns how many there are; 0 = none kept (quantised vectors only). NULL: none. */
    size_t (*exact_segs)(const void *impl, struct vs_exact_seg *out, size_t cap);
} vs_index_ops_t;

#endif
