/* flat.h: exact (brute-force) search, the recall oracle of every other index.
 *
 * Small query batches (< VS_FLAT_BLAS_MIN_NQ) scan the base with the SIMD distance kernels. Larger
 * batches use OpenBLAS sgemm on blocks of queries x base rows for the inner products and the norm
 * expansion |q|^2 + |x|^2 - 2 q.x; because that expansion cancels badly when distances are small next to
 * the norms, each query keeps a pool of k + max(k, 16) candidates and re-ranks them with the direct
 * kernel. Both paths therefore return bit-identical distances, and on integer data such as
 * Fashion-MNIST the distances are exact. Work is split across threads by query blocks; OpenBLAS runs
 * single-threaded inside each. Cosine vectors are normalised at add and at query time. */
#ifndef VS_SHARD_INDEX_FLAT_H
#define VS_SHARD_INDEX_FLAT_H

#include <stddef.h>
#include <stdint.h>

#include "common/distance.h"
#include "common/status.h"
#include "common/topk.h"
#include "shard/index/index_impl.h"

#define VS_FLAT_BLAS_MIN_NQ 20

typedef struct vs_flat vs_flat_t; /* opaque */

vs_status vs_flat_create(uint32_t dim, vs_metric metric, vs_flat_t **out, char err[VS_ERR_LEN]);
void vs_flat_destroy(vs_flat_t *f); /* NULL is a no-op */

/* Appends n vectors (copied; normalised for cosine) with ids (NULL = consecutive). Validates that
 * vectors are finite and ids >= 0; on failure nothing is added. */
vs_status vs_flat_add(vs_flat_t *f, size_t n, const float *x, const int64_t *ids, char err[VS_ERR_LEN]);

/* Exact k-NN of nq queries; see vs_index_search for shapes and statuses. use_blas: -1 = automatic
 * (by batch size), 0 = never, 1 = always (tests compare the two paths). */
vs_status vs_flat_search(const vs_flat_t *f, size_t nq, const float *q, size_t k, size_t n_threads,
                         int use_blas, float *out_dist, int64_t *out_ids, char err[VS_ERR_LEN]);

size_t vs_flat_count(const vs_flat_t *f);
/* The stored (for cosine: normalised) vectors, n*dim floats; borrowed. */
const float *vs_flat_data(const vs_flat_t *f);

extern const vs_index_ops_t vs_flat_ops;

#endif
