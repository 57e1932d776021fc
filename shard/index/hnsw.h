/* hnsw.h: Hierarchical Navigable Small World graphs (Malkov & Yashunin, "Efficient and robust
 * approximate nearest neighbor search using Hierarchical Navigable Small World graphs", TPAMI 2018).
 *
 * Each vector gets a level drawn as floor(-ln(U) / ln(M)); on every layer up to its level it keeps at
 * most M links (2M on layer 0) chosen with the paper's neighbour-selection heuristic (Algorithm 4,
 * without extending or keeping pruned candidates). A search descends greedily from the entry point
 * through the upper layers and runs a best-first search with a candidate list of efSearch on layer 0.
 * "HNSW{M},SQ8" traverses on 8-bit scalar-quantised codes (a quarter of the memory traffic) and
 * re-ranks the best candidates with the float vectors (all ef of them, or k*k_factor when given).
 *
 * Key choices: nodes are numbered in insertion order; layer-0 link blocks (count + 2M slots) and
 * vectors are two flat arrays, upper-layer links one compact array addressed through per-node offsets
 * derived from the levels, so a built index and a memory-mapped file have one representation. Levels
 * are drawn from (seed, node number) before insertion, so a build with one thread is deterministic.
 * Build runs on all threads with a spinlock per node and a global mutex only for entry-point changes.
 * Search uses a per-thread arena (visited tags with a generation counter, a sorted candidate pool):
 * no allocation and no lock per query. Cosine vectors are normalised and searched as inner product.
 * Deleted items are skipped by the caller's filter (vs_hnsw_search_filtered; fresh.c). Not here: graph
 * reordering. */
#ifndef VS_SHARD_INDEX_HNSW_H
#define VS_SHARD_INDEX_HNSW_H

#include "shard/index/index.h"
#include "shard/index/index_impl.h"

typedef struct vs_hnsw vs_hnsw_t;

#define VS_HNSW_DEFAULT_EF_SEARCH 16u       /* as FAISS */
#define VS_HNSW_DEFAULT_EF_CONSTRUCTION 40u /* as FAISS */
#define VS_HNSW_DEFAULT_SEED 0x5eed5eedull
#define VS_HNSW_MAX_LEVEL 31u
#define VS_HNSW_MAX_N 0x7fffffffu /* node numbers are 31-bit */

/* Creates an empty HNSW index for spec ("HNSW{M}" or "HNSW{M},SQ8"; the SQ8 form must be trained:
 * the quantiser learns per-dimension ranges). *out freed with vs_hnsw_destroy. */
vs_status vs_hnsw_create(uint32_t dim, vs_metric metric, const vs_factory_spec_t *spec, vs_hnsw_t **out,
                         char err[VS_ERR_LEN]);
void vs_hnsw_destroy(vs_hnsw_t *h); /* NULL is a no-op */

/* Build parameters for vectors added from now on: efConstruction (1..100000, 0 keeps the current one)
 * and the seed of the level draws. VS_ERR_INVALID_ARGUMENT out of range. */
vs_status vs_hnsw_set_build(vs_hnsw_t *h, uint32_t ef_construction, uint64_t seed, char err[VS_ERR_LEN]);

/* Builds an index over a validated, mapped file (f outlives it): parameters, level and link sections
 * are checked (sizes, link targets in range and present on the layer, no self-links, degrees within
 * bounds, entry point on the top level); VS_ERR_CORRUPT names the path and the section. The vectors,
 * codes, links and ids are used in place (no copy); vectors added later copy them first. */
vs_status vs_hnsw_load(const vs_ifile_t *f, const char *path, const vs_factory_spec_t *spec, vs_hnsw_t **out,
                       char err[VS_ERR_LEN]);

/* Invariant checker (tests, vecshard-hnsw-check): every link in range, on a node whose level covers
 * the layer, no self-links or repeated links, degrees <= M (2M on layer 0), the entry point holds the
 * top level, and every node reachable from the entry point on layer 0. VS_ERR_CORRUPT with the first
 * violation. O(n * M). Not thread-safe against add. */
vs_status vs_hnsw_check(const vs_hnsw_t *h, char err[VS_ERR_LEN]);

/* Statistics: number of nodes per level (out[level] for level < n_out) and the mean layer-0 degree. */
double vs_hnsw_stats(const vs_hnsw_t *h, size_t *out, size_t n_out);

/* Adds n vectors (ids[n] >= 0) one after another on the calling thread, for a graph that grows by small
 * batches (a version's fresh writes): capacity doubles, the build scratch and locks are kept between
 * appends, and the O(N) reachability repair of a build runs once the graph grew by an eighth, so a batch
 * costs its inserts plus amortised O(n), not O(N).
 * Nothing may search h meanwhile (fresh.c keeps two copies). Errors as vs_index_add. */
vs_status vs_hnsw_append(vs_hnsw_t *h, size_t n, const float *x, const int64_t *ids, char err[VS_ERR_LEN]);

/* 1 when the node (id, node number) must not be a result: it is still expanded (the graph stays
 * connected, as hnswlib's deleted marks), only never returned. */
typedef int (*vs_hnsw_skip_fn)(const void *arg, int64_t id, uint32_t node);

/* vs_index_search on h where skip (may be NULL) removes nodes from the results; efSearch (and the SQ8
 * re-rank count) are multiplied by ef_scale (>= 1: the share of skipped nodes, so that the live ones in
 * reach stay efSearch). own_arena: the
 * per-thread scratch of a second graph searched beside another (visited tags kept per graph).
 * n_threads 0 = all CPUs. */
vs_status vs_hnsw_search_filtered(const vs_hnsw_t *h, size_t nq, const float *q, size_t k,
                                  const vs_search_params_t *params, size_t n_threads, vs_hnsw_skip_fn skip,
                                  const void *skip_arg, float ef_scale, int own_arena, float *out_dist,
                                  int64_t *out_ids, char err[VS_ERR_LEN]);

/* Filtered search (issue 17): a filter estimated to match at most VS_HNSW_FILTER_EXACT_ITEMS nodes (or
 * the share filter_exact_threshold) is searched exactly over the matching nodes; above it the graph is
 * traversed through every node (connected), with efSearch multiplied by 1 / share (at most
 * VS_HNSW_FILTER_EF_MAX) so that the matching nodes in reach stay efSearch. The traversal at 1 % of 1M
 * nodes (ef x 20, and exact answers for queries whose pool holds few matches) cost more than the exact
 * path over its 10,000 nodes, hence a larger threshold than IVF's (docs/benchmarks.md). */
#define VS_HNSW_FILTER_EXACT_ITEMS 16384u
#define VS_HNSW_FILTER_EF_MAX 20.0
/* ... and a query left short of k, or whose pool holds under a quarter of the filter's share of matching
 * nodes, is answered exactly when the filter's term matches at most this many nodes. */
#define VS_HNSW_FILTER_FALLBACK_MAX 500000u
struct vs_filter;
float vs_hnsw_filter_ef_scale(const struct vs_filter *f);

/* Nodes in h, and node i's id and (stored: normalised for cosine) vector. */
size_t vs_hnsw_count(const vs_hnsw_t *h);
int64_t vs_hnsw_node_id(const vs_hnsw_t *h, uint32_t i);
const float *vs_hnsw_node_vector(const vs_hnsw_t *h, uint32_t i);

/* Dimension, M, metric and efConstruction of h. */
void vs_hnsw_info(const vs_hnsw_t *h, uint32_t *d, uint32_t *M, vs_metric *metric, uint32_t *ef_construction);

extern const vs_index_ops_t vs_hnsw_ops;

#endif
