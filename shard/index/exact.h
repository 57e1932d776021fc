/* exact.h: exact k-NN over float vectors an index keeps (IVF,Flat codes, IVF's RFlat refine vectors, HNSW's
 * vectors, Flat), the reference a recall monitor compares served answers with (issue 16, part 2). Blocks of
 * queries against blocks of rows through OpenBLAS sgemm (the norm expansion for L2), a candidate pool per
 * query re-ranked with the direct kernel, so the distances are the same as Flat's. Indexes that keep only
 * quantised vectors (PQ codes, SQ8 refine) have no exact vectors: VS_ERR_UNSUPPORTED (8-bit codes are not
 * exact; such a version needs its base kept beside it). Pure: no clock, threads from the caller's count. */
#ifndef VS_SHARD_INDEX_EXACT_H
#define VS_SHARD_INDEX_EXACT_H

#include <stddef.h>
#include <stdint.h>

#include "common/distance.h"
#include "common/status.h"

/* A run of n float rows (n*dim, borrowed) and their ids (borrowed; NULL = id0, id0 + 1, ...). Cosine rows
 * are stored normalised. */
typedef struct vs_exact_seg {
    const float *rows;
    const int64_t *ids;
    int64_t id0;
    size_t n;
} vs_exact_seg_t;

/* Exact k nearest of nq queries (nq*dim floats, finite; cosine queries are normalised here) over every row
 * of the segments: out_dist[nq*k], out_ids[nq*k], best first, padded with -1. n_threads 0 = all CPUs (work
 * is split by query blocks). VS_ERR_INVALID_ARGUMENT for k out of 1..VS_TOPK_MAX_K or a non-finite query;
 * VS_ERR_NOMEM. */
vs_status vs_exact_search(vs_metric metric, uint32_t dim, const vs_exact_seg_t *segs, size_t n_segs,
                          size_t nq, const float *q, size_t k, size_t n_threads, float *out_dist,
                          int64_t *out_ids, char err[VS_ERR_LEN]);

#endif
