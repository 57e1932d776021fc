/* ivf.h: inverted-file index (Sivic & Zisserman 2003; with PQ: Jegou et al. TPAMI 2011): k-means
 * splits the space into nlist cells; each vector is stored in the list of its nearest centroid, encoded
 * as float32 ("Flat"), 8-bit PQ of its residual ("PQ{m}") or 4-bit fast-scan PQ ("PQ{m}x4fs"); optionally
 * with a refine copy (",RFlat" float32, ",RSQ8" 8-bit) used to re-rank the k*k_factor best estimates.
 * A query scans its nprobe nearest lists.
 *
 * Key choices: lists own their storage while the index is being built and point into the mapped file
 * once loaded, so search code sees one representation. For L2 with PQ the per-list ADC table is built
 * from a table precomputed per list at train/load time (|p|^2 + 2<c,p>) plus one per-query table
 * (-2<q,p>), as FAISS's "precomputed tables": O(m*ksub) additions per list instead of O(d*ksub) flops.
 * Refine vectors are stored in list order, so a candidate (list, position) finds its refine vector
 * without an id map. */
#ifndef VS_SHARD_INDEX_IVF_H
#define VS_SHARD_INDEX_IVF_H

#include "shard/index/index.h"
#include "shard/index/index_impl.h"

typedef struct vs_ivf vs_ivf_t;

/* Defaults when a search leaves the parameter at 0 (as FAISS: nprobe 1, k_factor 1). */
#define VS_IVF_DEFAULT_NPROBE 1u
#define VS_IVF_DEFAULT_K_FACTOR 1.0f

vs_status vs_ivf_create(uint32_t dim, vs_metric metric, const vs_factory_spec_t *spec, vs_ivf_t **out,
                        char err[VS_ERR_LEN]);
void vs_ivf_destroy(vs_ivf_t *ivf);

/* Search restricted to given lists (centroid routing: the coordinator picked them). lists[nq*n_lists]
 * are list ids (each < nlist, -1 = skip); sel (may be NULL) gives the exclusions, the filter and
 * filter_exact_threshold (its other fields are ignored); see vs_index_search for the rest. */
vs_status vs_ivf_search_lists(const vs_ivf_t *ivf, size_t nq, const float *q, size_t k, const int32_t *lists,
                              uint32_t n_lists, float k_factor, const vs_search_params_t *sel,
                              size_t n_threads, float *out_dist, int64_t *out_ids, char err[VS_ERR_LEN]);

/* Builds an IVF index over a validated, mapped index file (f outlives the index; the caller closes it
 * after vs_ivf_destroy). Checks every IVF section's size and content; VS_ERR_CORRUPT names the section.
 * refine_on_disk: the refine section (if any) is not read here (its content is not checked: the caller
 * opened f with it lazy, vs_ifile_open_lazy) and searches read their candidates' copies from the file
 * (refine_disk.h) instead of the mapping. */
vs_status vs_ivf_load(const vs_ifile_t *f, const char *path, const vs_factory_spec_t *spec, int refine_on_disk,
                      vs_ivf_t **out, char err[VS_ERR_LEN]);

/* Refine on disk: what its reads cost so far (0 when the refine copies are in memory, else 1). */
int vs_ivf_refine_disk_stats(const vs_ivf_t *ivf, struct vs_refine_disk_stats *out);

/* The nprobe lists a query probes, nearest first (out_lists[nprobe]): what search and the coordinator's
 * centroid routing use. exact = 1 ranks every centroid in full dimension; exact = 0 is what search does
 * (for L2 with d >= 256 and nlist >= 256, a PCA preselection then an exact ranking of the pool). */
vs_status vs_ivf_probe(const vs_ivf_t *ivf, const float *q, uint32_t nprobe, int exact, int32_t *out_lists,
                       char err[VS_ERR_LEN]);

/* An empty index with src's trained state: same factory, metric and dimension, copies of the coarse
 * centroids, PQ codebooks, SQ8 ranges and every table derived from them (so list ids, codes and search
 * results are the same as in src). src must be trained (VS_ERR_FAILED_PRECONDITION); VS_ERR_NOMEM.
 * Free *out with vs_ivf_destroy. Reads src only: safe while src is searched. */
vs_status vs_ivf_clone_empty(const vs_ivf_t *src, vs_ivf_t **out, char err[VS_ERR_LEN]);

/* The list each of n vectors (n*dim floats, finite) is stored in by add: vs_coarse_assign, as add calls it
 * (exact = 0; at 8,192+ lists for L2 and cosine the grouped assignment), or with exact = 1 the exact nearest
 * coarse centroid (squared L2; inner product of normalised vectors for IP and cosine) by vs_kmeans_nearest
 * with nprobe 1. out_lists[n]. Not vs_ivf_probe: that one ranks by a different expansion and may pick the
 * other list of a near tie. n_threads >= 1.
 * VS_ERR_FAILED_PRECONDITION (untrained), VS_ERR_INVALID_ARGUMENT (NaN/Inf), VS_ERR_NOMEM. */
vs_status vs_ivf_assign(const vs_ivf_t *ivf, size_t n, const float *x, size_t n_threads, int exact,
                        int32_t *out_lists, char err[VS_ERR_LEN]);

/* vs_index_add with the list of every vector given (lists[n], each < nlist, VS_ERR_OUT_OF_RANGE
 * otherwise), as vs_ivf_assign computed it: a builder that routed vectors to partitions by list stores
 * each in exactly the list it routed by, and does not pay for the assignment twice. */
vs_status vs_ivf_add_lists(vs_ivf_t *ivf, size_t n, const float *x, const int64_t *ids, const int32_t *lists,
                           size_t n_threads, const vs_progress_cb_t *progress, char err[VS_ERR_LEN]);

/* Appends to dst's list `list` the entries pos[0..n) of src's same list (pos NULL: all of it, n ignored),
 * in that order: ids, codes and refine copies as stored, so the result (after vs_ivf_append_done) is what
 * adding those vectors to dst in that order would have stored. dst and src share one trained state (clones of one trained index: the
 * caller's promise; factory, dimension and metric are checked, VS_ERR_INVALID_ARGUMENT).
 * VS_ERR_OUT_OF_RANGE (list or a position), VS_ERR_NOMEM (dst unchanged then). The distributed build's
 * merge (shard/builder/builder.c). */
vs_status vs_ivf_append_list(vs_ivf_t *dst, const vs_ivf_t *src, uint32_t list, const uint32_t *pos, size_t n,
                             char err[VS_ERR_LEN]);

/* After the last vs_ivf_append_list, before dst is searched, saved or given attributes: its list positions
 * and longest list (O(nlist); appends leave them stale so that a merge of many lists stays linear). */
void vs_ivf_append_done(vs_ivf_t *ivf);

/* The ids of list `list` (vs_ivf_list_size of them, borrowed), NULL when out of range. */
const int64_t *vs_ivf_list_ids(const vs_ivf_t *ivf, uint32_t list);

uint32_t vs_ivf_nlist(const vs_ivf_t *ivf);
/* Coarse centroids, nlist*dim floats (borrowed); NULL before training. */
const float *vs_ivf_centroids(const vs_ivf_t *ivf);
size_t vs_ivf_list_size(const vs_ivf_t *ivf, uint32_t list);

extern const vs_index_ops_t vs_ivf_ops;

#endif
