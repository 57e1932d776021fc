/* kmeans.h: k-means training (the coarse quantizer of IVF, the sub-quantizers of PQ) and the
 * nearest-centroid searches built on it: assignment of vectors to lists and routing of queries.
 *
 * Training is Lloyd's algorithm (Lloyd 1982) seeded by k-means++ (Arthur & Vassilvitskii 2007) on a
 * uniform random sample capped at k*max_points_per_centroid points, with FAISS-style splitting of
 * empty clusters. Results are a deterministic function of (data, parameters, seed): they do not depend
 * on n_threads. Not here: mini-batch or hierarchical k-means, other metrics than L2 in training
 * (spherical k-means renormalises centroids but still assigns by L2, which on unit vectors ranks like
 * the inner product).
 * Key design choice: every distance pass is OpenBLAS sgemm on blocks of points x centroids with the
 * norm expansion |x|^2 + |c|^2 - 2 x.c, threads splitting the work by fixed blocks of points and
 * OpenBLAS single-threaded inside each block, so a point's result never depends on who computed it. */
#ifndef VS_COMMON_KMEANS_H
#define VS_COMMON_KMEANS_H

#include <stddef.h>
#include <stdint.h>

#include "common/distance.h"
#include "common/progress.h"
#include "common/status.h"

typedef struct vs_kmeans_params {
    uint32_t k;                       /* number of centroids, 1..INT32_MAX */
    uint32_t n_iter;                  /* Lloyd iterations; 0 -> 20 */
    uint32_t max_points_per_centroid; /* training sample cap per centroid; 0 -> 256 (as FAISS) */
    uint32_t min_points_per_centroid; /* below k*this points: VS_ERR_INVALID_ARGUMENT; 0 -> 1 */
    uint64_t seed;                    /* results are deterministic given seed and data */
    int spherical;                    /* 1: renormalise centroids each iteration (cosine/IP data) */
    int random_init;                  /* 1: seed with k random training points (as FAISS) instead of
                                         k-means++, whose sequential passes cost O(16 k^2 d) */
    size_t n_threads;                 /* 0 -> all CPUs; never changes the result */
} vs_kmeans_params_t;

typedef struct vs_kmeans_stats {
    double final_objective; /* sum over the training sample of the squared L2 distance to the nearest
                               returned centroid (costs one more assignment pass: only computed when
                               out_stats is given) */
    uint32_t iterations;    /* Lloyd iterations run: fewer than n_iter when a fixed point was reached
                               (the remaining iterations could not have changed the centroids) */
    uint32_t empty_splits;  /* empty clusters re-seeded by splitting a large one, over all iterations */
    size_t n_train;         /* points trained on: min(n, k*max_points_per_centroid) */
} vs_kmeans_stats_t;

/* Trains k centroids on n vectors.
 * x: n*d floats, row-major, borrowed (only the rows drawn into the training sample are read).
 * out_centroids: k*d floats, caller storage. out_stats: may be NULL. progress: may be NULL; called once
 * per Lloyd iteration with (iteration, n_iter), from the caller's thread, ending with (n_iter, n_iter).
 * Steps: when n > k*max_points_per_centroid, a uniform sample of that many rows without replacement
 * (selection sampling, Knuth TAOCP 3.4.2 Algorithm S, original order kept); k-means++ seeding on a
 * random subset of the sample of min(n_train, max(16k, 8192)) points; then Lloyd iterations: sgemm
 * assignment, centroid = mean of its points (accumulated in double), empty clusters re-seeded by
 * splitting a cluster chosen with probability proportional to its size - 1 (both copies scaled
 * by 1 +- 1/1024 on alternating coordinates, points split in half; an all-zero centroid stays
 * all-zero), spherical: centroids renormalised to unit length. Stops early at a fixed point (labels
 * unchanged and no split), which gives bit-identical centroids to running every iteration.
 * Returns VS_ERR_INVALID_ARGUMENT for k == 0 or > INT32_MAX, d outside 1..65536, n below
 * k*min_points_per_centroid, or a non-finite value in a sampled row (err names the row of x);
 * VS_ERR_NOMEM. On failure out_centroids and out_stats are untouched.
 * Memory: n_train*d floats when sampling, min(n_train, max(16k, 8192))*d floats for seeding when that
 * is a strict subset, plus O(n_train + k*d) and about 520 KB per thread.
 * Time: O(n_iter * n_train * k * d) flops in sgemm, plus O(n) for sampling.
 * Thread-safe: no shared state; threads are started and joined inside the call. */
vs_status vs_kmeans_train(const float *x, size_t n, uint32_t d, const vs_kmeans_params_t *p,
                          float *out_centroids, vs_kmeans_stats_t *out_stats,
                          const vs_progress_cb_t *progress, char err[VS_ERR_LEN]);

/* Nearest centroid (squared L2) of each of n vectors.
 * x: n*d floats; centroids: k*d floats (both borrowed, row-major). out_labels: n int32 in [0, k), the
 * smallest centroid index on exact ties of the sgemm key. out_dist: n floats or NULL: the squared L2
 * distance to the chosen centroid, recomputed with the direct kernel (so it is never negative and does
 * not suffer the cancellation of the expansion). The choice itself is made on |c|^2 - 2 x.c from sgemm,
 * so when two centroids are within float rounding of each other either may be chosen.
 * Results do not depend on n_threads (0 -> all CPUs). Returns VS_ERR_INVALID_ARGUMENT for k == 0 or
 * > INT32_MAX, d outside 1..65536, non-finite x or centroids; VS_ERR_NOMEM. Outputs untouched on
 * failure; n == 0 is a no-op. Time: 2*n*k*d flops in sgemm (blocks of 256 points x 512 centroids), plus
 * O(n*k) for the argmin. Memory: about 520 KB per thread. Thread-safe (no shared state). */
vs_status vs_kmeans_assign(const float *x, size_t n, const float *centroids, uint32_t k, uint32_t d,
                           size_t n_threads, int32_t *out_labels, float *out_dist, char err[VS_ERR_LEN]);

/* The nprobe nearest centroids of each of n queries, nearest first.
 * metric VS_METRIC_L2: smallest squared L2; VS_METRIC_IP and VS_METRIC_COSINE: largest inner product
 * (for cosine, pass unit-normalised queries and centroids; nothing is normalised here, and a query's
 * norm does not change its ranking). x: n*d floats, centroids: k*d floats, borrowed.
 * out_lists: n*nprobe int32; out_dist: n*nprobe floats or NULL (squared L2, or inner product), always
 * recomputed with the direct kernel (the values of vs_distance()).
 * nprobe == 1: the argmin of the sgemm key, exactly as vs_kmeans_assign (for L2 the same labels).
 * nprobe > 1: like the flat index, sgemm selects a pool of min(k, nprobe + max(nprobe, 16)) candidates
 * per query that the direct kernel re-ranks; ties are broken by the smaller centroid index. When
 * nprobe > k the slots past k hold list -1 and distance +inf (L2) or -inf (IP).
 * Work is split by blocks of up to 256 queries, so a handful of queries runs on one thread. Results do
 * not depend on n_threads (0 -> all CPUs). Time: 2*n*k*d flops in sgemm plus O(n*k) selection.
 * Returns VS_ERR_INVALID_ARGUMENT for k == 0 or > INT32_MAX, d outside 1..65536, nprobe == 0, an
 * unknown metric, non-finite x or centroids; VS_ERR_NOMEM. Outputs untouched on failure; n == 0 is a
 * no-op. Thread-safe (no shared state). */
vs_status vs_kmeans_nearest(const float *x, size_t n, const float *centroids, uint32_t k, uint32_t d,
                            vs_metric metric, uint32_t nprobe, size_t n_threads, int32_t *out_lists,
                            float *out_dist, char err[VS_ERR_LEN]);

/* vs_kmeans_nearest without checking the centroids: for an index's own, validated when it was trained or
 * loaded. Checking k*d floats on every call cost 100+ us per single-vector assignment at nlist 1,024 x
 * 128-d (a fresh write's; measured in the write benchmark). Queries are still checked. */
vs_status vs_kmeans_nearest_trusted(const float *x, size_t n, const float *centroids, uint32_t k, uint32_t d,
                                    vs_metric metric, uint32_t nprobe, size_t n_threads, int32_t *out_lists,
                                    float *out_dist, char err[VS_ERR_LEN]);

#endif
