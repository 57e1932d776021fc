/* coarse.h: the nearest coarse centroids of an IVF index: the one implementation behind IVF search
 * (vs_ivf_probe), the coordinator's routing (cluster partitions, and ranking lists once per query for hash
 * partitions that share one quantizer) and the builder's assignment of vectors to lists. Pure: no threads
 * started (except vs_coarse_assign's n_threads), no clock, no network.
 *
 * Two rules, deliberately different:
 *  - probe (query time): the nprobe lists a query scans. L2 ranks by |c|^2 - 2<q, c> (one FMA per
 *    dimension); with many high-dimensional centroids (L2, d >= 256, nlist >= 256) the lists are first
 *    preselected in a PCA projection of the centroids, then the pool is ranked exactly. IP and cosine
 *    rank by <q, c> (cosine on the normalised query). Anyone who must reproduce a shard's lists (the
 *    coordinator) calls this with the same centroids and gets the same lists, bit for bit.
 *  - assign (build time): the list a vector is stored in, exact nearest by blocked sgemm
 *    (vs_kmeans_nearest), so millions of vectors cost a few matrix products; from 8,192 lists on (L2,
 *    cosine) the nearest among groups of centroids (vs_coarse_assign_grouped), at ~1/6 of the flops.
 * The PCA directions come from subspace iteration on the centroids' covariance with a fixed seed: the
 * same at train, at load and in the coordinator, so nothing is stored in the index file.
 *
 * Sub-linear probing ("IVF{nlist}_HNSW{M}", FAISS's IVF65536_HNSW32): an HNSW graph over the centroids
 * (M links, efConstruction 40, built on one thread with a fixed seed, so the same graph wherever it is
 * built: in the index, the coordinator, a test) replaces the full ranking; a probe searches it with
 * efSearch max(64, 2 nprobe) and takes the nprobe best (L2 distances, or inner products for IP and
 * cosine). Cost grows with log(nlist) instead of nlist; the lists may differ from the exact ranking's
 * (docs/benchmarks.md measures the recall cost). The graph is derived, never stored. */
#ifndef VS_SHARD_INDEX_COARSE_H
#define VS_SHARD_INDEX_COARSE_H

#include <stddef.h>
#include <stdint.h>

#include "common/cpu.h"
#include "common/distance.h"
#include "common/status.h"

struct vs_index;

typedef struct vs_coarse {
    vs_metric metric; /* the index's: L2, IP or cosine */
    uint32_t d, nlist;
    const float *centroids; /* nlist*d (borrowed: the owner keeps them alive and unchanged) */
    float *cnorm;           /* nlist squared norms (L2), else NULL */
    uint32_t pdim;          /* > 0: preselection in a pdim-dimensional PCA projection */
    float *pca;             /* pdim x d orthonormal directions, one per row */
    float *cproj;           /* nlist x pdim: the centroids projected */
    float *ct;              /* the centroids in blocks of 16 transposed (coarse.c), or NULL when too large */
    float *pcat, *cprojt;   /* with pdim: pca and cproj in the same transposed blocks */
    float *cpnorm;          /* with pdim: nlist squared norms of the projected centroids */
    uint32_t hnsw_m;        /* > 0: probes search hnsw, an HNSW{hnsw_m} over the centroids */
    struct vs_index *hnsw;
    struct vs_coarse_groups *groups; /* grouped assignment (vs_coarse_grouped_applies): its groups of
                                        centroids, made on first use (coarse_assign.c); else NULL */
} vs_coarse_t;

/* Prepares probing over centroids (nlist*d floats, borrowed); hnsw_m > 0 builds the HNSW graph over them
 * (O(nlist log nlist), one thread). VS_ERR_NOMEM (c then holds nothing). */
vs_status vs_coarse_init(vs_coarse_t *c, vs_metric metric, uint32_t d, uint32_t nlist, const float *centroids,
                         uint32_t hnsw_m, char err[VS_ERR_LEN]);

/* dst = src over the same centroids (a copy of them at centroids): the derived tables are copied, not
 * recomputed (bit-identical by construction, and the PCA costs sgemms); the HNSW graph is built again
 * (deterministic: the same graph). VS_ERR_NOMEM. */
vs_status vs_coarse_copy(vs_coarse_t *dst, const vs_coarse_t *src, const float *centroids,
                         char err[VS_ERR_LEN]);

void vs_coarse_fini(vs_coarse_t *c);

/* Bytes of the derived tables (cnorm, PCA). */
size_t vs_coarse_memory_bytes(const vs_coarse_t *c);

/* Scratch floats/ids vs_coarse_probe needs for nprobe: cdist nlist floats, keys and ids
 * vs_coarse_pool(nprobe) each, proj pdim + 1 floats. */
size_t vs_coarse_pool(uint32_t nprobe);

/* The nprobe best lists of q (d floats, already normalised for cosine) into lists[nprobe], nearest
 * first, -1 past nlist. exact = 1 ranks every centroid (no PCA preselection, no HNSW). ef: with the HNSW
 * graph, the candidate list of the centroid search (FAISS quantizer_efSearch; 0 = vs_coarse_default_ef,
 * less than nprobe counts as nprobe); ignored otherwise. Allocates nothing in steady state; scratch as
 * above. */
void vs_coarse_probe(const vs_coarse_t *c, const float *q, uint32_t nprobe, uint32_t ef, int exact,
                     float *cdist, float *keys, int64_t *ids, float *proj, int32_t *lists);

/* vs_coarse_probe (exact = 0) for nq queries q[nq*d] (prepared: normalised for cosine) into
 * lists[nq*nprobe], bit for bit the same lists; when every centroid is ranked (no HNSW graph, no PCA
 * preselection) the products come from one multi-query kernel that loads each centroid once for several
 * queries. cdist: nq*nlist floats; keys, ids, proj as for vs_coarse_probe. Allocates nothing. */
void vs_coarse_probe_multi(const vs_coarse_t *c, size_t nq, const float *q, uint32_t nprobe, uint32_t ef,
                           float *cdist, float *keys, int64_t *ids, float *proj, int32_t *lists);

/* The products <q_j, c_l> (out[j*nlist + l]) as a probe computes them, with the kernels of `level` (at
 * most vs_cpu_simd_supported()): with the transposed centroids, the same bits at every level and for any
 * nq (tests compare them). */
void vs_coarse_products(const vs_coarse_t *c, const float *q, size_t nq, vs_simd_level level, float *out);

/* The HNSW coarse search's candidate list when none is given: max(64, 2 nprobe). */
uint32_t vs_coarse_default_ef(uint32_t nprobe);

/* vs_coarse_probe for nq queries (nq*d floats, finite; cosine queries are normalised here, on a copy):
 * lists[nq*nprobe]. nprobe must be 1..nlist (VS_ERR_INVALID_ARGUMENT); VS_ERR_NOMEM. */
vs_status vs_coarse_probe_n(const vs_coarse_t *c, size_t nq, const float *q, uint32_t nprobe, uint32_t ef,
                            int exact, int32_t *lists, char err[VS_ERR_LEN]);

/* The list each of n vectors (n*d floats, finite) is stored in. Below VS_COARSE_GROUPED_MIN_NLIST lists,
 * and for the inner-product metric, the exact nearest centroid (squared L2; inner product on normalised
 * vectors for IP and cosine) by vs_kmeans_nearest on blocks of `block` rows (results may differ from
 * another block size only at exact ties). From that nlist on, for L2 and cosine, the grouped assignment
 * (vs_coarse_assign_grouped; the first call makes the groups, ~0.2 s at 16,384 lists) unless exact = 1
 * (the builder's --assign exact; fresh writes, one vector at a time). lists[n]. VS_ERR_NOMEM. */
vs_status vs_coarse_assign(const vs_coarse_t *c, size_t n, const float *x, size_t block, size_t n_threads,
                           int exact, int32_t *lists, char err[VS_ERR_LEN]);

/* The grouped assignment (coarse_assign.c). The centroids are grouped by k-means (fixed seed) into
 * nlist / 128 groups; a vector's list is its nearest centroid among the members of its nlist / 1,024
 * nearest groups (by group centre), found with one sgemm per group for all the vectors that probe it.
 * About 1/6 of the exact flops at 16,384 lists; the list is the exact nearest one for most vectors, else
 * a near one (docs/benchmarks.md: the share and the recall cost). The result for a vector depends only on
 * it and the centroids (not on n, its position, or the threads), so builds split any way agree byte for
 * byte. x: n*d floats, normalised for cosine by the caller; checked finite (VS_ERR_INVALID_ARGUMENT).
 * c->groups must be set (vs_coarse_init does so where vs_coarse_grouped_applies). VS_ERR_NOMEM. */
#define VS_COARSE_GROUPED_MIN_NLIST 8192
#define VS_COARSE_GROUPED_MAX_PROBE 256
int vs_coarse_grouped_applies(vs_metric metric, uint32_t nlist);
vs_status vs_coarse_assign_grouped(const vs_coarse_t *c, size_t n, const float *x, size_t n_threads,
                                   int32_t *lists, char err[VS_ERR_LEN]);
struct vs_coarse_groups *vs_coarse_groups_new(void); /* empty, not yet made; NULL when out of memory */
void vs_coarse_groups_free(struct vs_coarse_groups *g);

#endif
