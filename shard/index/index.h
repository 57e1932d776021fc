/* index.h: the one interface every index type (Flat, IVF, HNSW) offers, built from a FAISS
 * index_factory string, so tools, the shard and the benchmark handle any index the same way.
 *
 * Life cycle: vs_index_create(factory) -> vs_index_train (no-op for Flat) -> vs_index_add ->
 * vs_index_search (any number, from any number of threads). Search parameters use FAISS's names
 * (nprobe, efSearch, k_factor); 0 means the index default.
 * Results follow the distance convention of common/distance.h and are sorted best first, ties by id;
 * missing results are id -1. Not here: persistence (the index file format arrives with IVF-PQ). */
#ifndef VS_SHARD_INDEX_INDEX_H
#define VS_SHARD_INDEX_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "common/distance.h"
#include "common/factory.h"
#include "common/progress.h"
#include "common/status.h"

typedef struct vs_index vs_index_t; /* opaque */

/* Creates an empty index of dimension dim (1..65536) for metric from a factory string.
 * VS_ERR_INVALID_ARGUMENT for a bad string or parameters inconsistent with dim; VS_ERR_UNSUPPORTED
 * for a valid string whose index type is not built yet. *out is freed with vs_index_destroy. */
vs_status vs_index_create(uint32_t dim, vs_metric metric, const char *factory, vs_index_t **out,
                          char err[VS_ERR_LEN]);
void vs_index_destroy(vs_index_t *idx); /* NULL is a no-op */

/* An empty index sharing trained's trained state, for building the partitions of one version: same
 * factory, metric and dimension; IVF copies the coarse centroids, PQ codebooks, SQ8 ranges and the
 * tables derived from them, so IVF list ids are global and codes equal those trained would give
 * (an untrained IVF source is VS_ERR_FAILED_PRECONDITION). Other types (Flat, HNSW) come back as a
 * fresh index of the same spec; one that needs training (HNSW,SQ8) must then be trained on the same
 * sample. trained is only read (safe during searches). Free *out with vs_index_destroy. */
vs_status vs_index_clone_empty(const vs_index_t *trained, vs_index_t **out, char err[VS_ERR_LEN]);

/* 1 when the index must be trained before add. */
int vs_index_needs_training(const vs_index_t *idx);

/* Trains on n vectors (n*dim floats, borrowed, not kept). No-op for Flat. n_threads 0 = all CPUs. */
vs_status vs_index_train(vs_index_t *idx, size_t n, const float *x, size_t n_threads,
                         const vs_progress_cb_t *progress, char err[VS_ERR_LEN]);

/* Adds n vectors (copied) with ids[n] (NULL = consecutive from the current count). Vectors must be
 * finite (VS_ERR_INVALID_ARGUMENT names the first bad one); ids must be >= 0. On failure the index is
 * unchanged. Not thread-safe against concurrent search. */
vs_status vs_index_add(vs_index_t *idx, size_t n, const float *x, const int64_t *ids, size_t n_threads,
                       const vs_progress_cb_t *progress, char err[VS_ERR_LEN]);

/* IVF only: vs_index_add with each vector's list given (lists[n], from vs_ivf_assign on this index or
 * one sharing its trained state); see vs_ivf_add_lists. VS_ERR_UNSUPPORTED for other types. */
vs_status vs_index_add_lists(vs_index_t *idx, size_t n, const float *x, const int64_t *ids,
                             const int32_t *lists, size_t n_threads, const vs_progress_cb_t *progress,
                             char err[VS_ERR_LEN]);

/* IVF only: appends entries of src's list `list` to dst's (vs_ivf_append_list: dst and src are clones of one
 * trained index). VS_ERR_UNSUPPORTED for other types. */
vs_status vs_index_append_list(vs_index_t *dst, const vs_index_t *src, uint32_t list, const uint32_t *pos,
                               size_t n, char err[VS_ERR_LEN]);

/* After the last vs_index_append_list into idx, before it is searched, saved or given attributes
 * (vs_ivf_append_done). */
void vs_index_append_done(vs_index_t *idx);

/* Searches nq queries (nq*dim floats) for their k nearest: out_dist[nq*k], out_ids[nq*k].
 * k in 1..VS_TOPK_MAX_K; queries must be finite; params may be NULL (defaults); n_threads 0 = all
 * CPUs. VS_ERR_INVALID_ARGUMENT for bad k, params or queries, with outputs untouched.
 * Thread-safe: any number of concurrent searches on one index. */
vs_status vs_index_search(const vs_index_t *idx, size_t nq, const float *q, size_t k,
                          const vs_search_params_t *params, size_t n_threads, float *out_dist,
                          int64_t *out_ids, char err[VS_ERR_LEN]);

/* Exact k-NN of nq queries over the float vectors the index keeps (exact.h; the reference of recall
 * monitoring): same shapes as vs_index_search, no parameters. VS_ERR_UNSUPPORTED when the index keeps only
 * quantised vectors (PQ codes or an SQ8 refine). Thread-safe. */
vs_status vs_index_search_exact(const vs_index_t *idx, size_t nq, const float *q, size_t k, size_t n_threads,
                                float *out_dist, int64_t *out_ids, char err[VS_ERR_LEN]);

/* Writes the index to path in the index file format (shard/index/ifile.h): written to path.tmp and
 * renamed, so readers never see a partial file. model_version names the embedding model the vectors
 * came from (may be NULL or ""; at most 127 bytes); build_time_unix is recorded as given.
 * VS_ERR_UNSUPPORTED for index types without persistence (Flat), VS_ERR_IO naming the path. */
vs_status vs_index_save(const vs_index_t *idx, const char *path, const char *model_version,
                        uint64_t build_time_unix, char err[VS_ERR_LEN]);

/* Opens an index file read-only with mmap (processes on one host share the page cache) and validates
 * all of it before returning: the container (checksums, bounds) and the index's own structure (list
 * offsets, ids, parameters consistent with the factory string). VS_ERR_CORRUPT names the section;
 * VS_ERR_NOT_FOUND, VS_ERR_IO, VS_ERR_UNSUPPORTED (newer format). The mapping lives until destroy;
 * vectors added after load are kept in memory (copy on first write of a list). */
vs_status vs_index_load(const char *path, vs_index_t **out, char err[VS_ERR_LEN]);

/* vs_index_load with options. refine_on_disk (IVF with a refine section; ignored otherwise): the refine
 * copies stay in the file, read per query with O_DIRECT (shard/index/refine_disk.h), and are neither
 * read nor checksummed at load: vs_index_verify_lazy does that later (the shard's scrub). */
typedef struct vs_index_load_opts {
    int refine_on_disk;
} vs_index_load_opts_t;
vs_status vs_index_load_opts(const char *path, const vs_index_load_opts_t *opts, vs_index_t **out,
                             char err[VS_ERR_LEN]);

/* Refine on disk: its reads so far into *out; 0 when the index reads its refine copies from memory. */
struct vs_refine_disk_stats;
int vs_index_refine_disk_stats(const vs_index_t *idx, struct vs_refine_disk_stats *out);

/* Checks the CRC32C of the sections a refine-on-disk load left unread, reading them with O_DIRECT at most
 * bytes_per_s on average (<= 0: unpaced); *stop (may be NULL) ends it (VS_ERR_CANCELLED). VS_OK when they
 * match or there are none; VS_ERR_CORRUPT names the section; VS_ERR_IO. */
vs_status vs_index_verify_lazy(const vs_index_t *idx, double bytes_per_s, const volatile int *stop,
                               char err[VS_ERR_LEN]);

/* Embedding model version recorded at save (loaded indexes) or "" (borrowed). */
const char *vs_index_model_version(const vs_index_t *idx);

/* Identity of a loaded index's data (index file; "" for an index built in memory), 17 bytes each:
 * content_id is the file's (vs_ifile_content_id); trained_id identifies the trained state shared by the
 * partitions of one version: 16 hex digits over the CRC32Cs of the ivf.centroids, pq.codebooks and
 * sq8.params sections present (HNSW without SQ8: the factory string only). centroids_crc (nullable):
 * the CRC32C of the ivf.centroids section, i.e. of the nlist*dim raw floats (0 when none), which a
 * coordinator compares with the centroids file it routes with. */
void vs_index_ids(const vs_index_t *idx, char content_id[17], char trained_id[17], uint32_t *centroids_crc);

/* Bytes of the mapped file (0 for an index built in memory). */
size_t vs_index_mapped_bytes(const vs_index_t *idx);

/* HNSW build parameters for vectors added from now on: efConstruction (1..100000; 0 keeps the current,
 * default 40 as FAISS) and the seed of the level draws (a build with one thread and a given seed is
 * deterministic, byte for byte). VS_ERR_INVALID_ARGUMENT for other index types or out of range. */
vs_status vs_index_set_build_params(vs_index_t *idx, uint32_t ef_construction, uint64_t seed,
                                    char err[VS_ERR_LEN]);

/* The HNSW implementation behind idx (for vs_hnsw_check, vs_hnsw_stats), or NULL. */
struct vs_hnsw;
const struct vs_hnsw *vs_index_impl_hnsw(const vs_index_t *idx);

/* The IVF implementation behind idx (for IVF-specific calls: probe, search_lists), or NULL. */
struct vs_ivf;
const struct vs_ivf *vs_index_impl_ivf(const vs_index_t *idx);

/* ---- attributes (issue 17; shard/index/attrs.h) ----
 * An index's items may carry attributes, in its own item order. vs_index_set_attrs takes a (ownership
 * moves, also on failure) once the last vector was added: its count must equal the index's; it is saved
 * with the index and loaded with it. vs_index_attrs: the attributes (borrowed), NULL when none.
 * Filters (vs_search_params_t.filter) are compiled against them (vs_filter_compile). */
struct vs_attrs;
vs_status vs_index_set_attrs(vs_index_t *idx, struct vs_attrs *a, char err[VS_ERR_LEN]);
const struct vs_attrs *vs_index_attrs(const vs_index_t *idx);

/* The index's ids in its item order (the order attributes are kept in): out[vs_index_count]. */
void vs_index_ids_in_order(const vs_index_t *idx, int64_t *out);

/* group_by: the value of integer attribute field `field` (schema index) of n ids (VS_ATTR_NULL_INT for
 * an id the index does not hold). The first call builds an id -> position map (16 bytes per item).
 * VS_ERR_FAILED_PRECONDITION without attributes; VS_ERR_NOMEM. Thread-safe. */
vs_status vs_index_group_values(const vs_index_t *idx, size_t field, size_t n, const int64_t *ids,
                                int64_t *out, char err[VS_ERR_LEN]);

size_t vs_index_count(const vs_index_t *idx);
uint32_t vs_index_dim(const vs_index_t *idx);
vs_metric vs_index_metric(const vs_index_t *idx);
const vs_factory_spec_t *vs_index_spec(const vs_index_t *idx);
/* Bytes the index holds in memory for its data (vectors, codes, ids, norms, graph). */
size_t vs_index_memory_bytes(const vs_index_t *idx);

#endif
