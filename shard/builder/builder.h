/* builder.h: the offline index builder (vecshard-build): from a vector file (and optional int64 ids)
 * to an index version on disk, <out>/<version>/{part-<p>.vsidx, centroids.fvecs, manifest.json},
 * in the layout docs/protocol.md ("Manifest") describes and shards load.
 *
 * Steps: (1) validate everything that can be checked before writing (inputs, factory against dim,
 * P, ids count, ids >= 0); (2) train once on a seeded random sample (coarse centroids, PQ codebooks, SQ8
 * ranges shared by every partition: IVF list ids are then global and the coordinator can route by
 * centroid); (3) IVF: an assignment pass streams the base and records every vector's list (4 bytes a
 * row; it also finds NaN/Inf before any file is written); (4) route: hash = splitmix64(id) % P
 * (common/hash.h), cluster = whole IVF lists packed into P partitions, largest list first into the
 * least loaded partition; (5) add passes stream the base in chunks into empty clones of the trained
 * index (vs_index_clone_empty), as many partitions per pass as the memory budget allows; each partition
 * is saved, checksummed and marked done (part-<p>.done) as soon as its pass ends; (6) the centroids
 * file, then manifest.json last (atomic rename): a version directory without a manifest is an
 * unfinished build, and the manifest is removed when a build starts writing.
 * Attributes (issue 17, optional): one column file per field, one value per base row, read whole into
 * memory in row order at step 1; each partition records which base row each
 * vector it was given came from, and before its save its attributes are gathered into the index's item
 * order (IVF: list by list; HNSW: add order), checked against the index's own ids in that order, and
 * attached (vs_index_set_attrs), so the partition file carries them. The manifest records the schema.
 *
 * Memory: the raw vectors are never all in RAM (chunks of rows, mmap'd pages); what is held is the
 * training sample, 4 bytes per row of list ids (IVF), the attribute columns (8 bytes per row for an
 * integer field, 4 for a float field), and the encoded partitions of one pass (with attributes, 8 more
 * bytes per vector; while a partition is saved, its attributes in item order and about 32 bytes per
 * vector of scratch).
 * Determinism: with the same inputs and options the files are byte-identical, whatever the thread
 * count and chunk size (chunks are rounded to a multiple of 256 rows, the blocks of the assignment's
 * sgemm). Not here: reading over the network, incremental updates of a built version, checking that ids
 * are unique (duplicates are stored as given), printing (callers get callbacks). */
#ifndef VS_SHARD_BUILDER_BUILDER_H
#define VS_SHARD_BUILDER_BUILDER_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "common/distance.h"
#include "common/status.h"

#define VS_BUILDER_MAX_PARTITIONS 4096u
#define VS_BUILDER_DEFAULT_CHUNK 65536u
#define VS_BUILDER_CHUNK_ALIGN 256u

typedef enum vs_partitioning {
    VS_PARTITION_HASH = 1, /* by id: splitmix64(id) % P */
    VS_PARTITION_CLUSTER,  /* by IVF list: whole lists per partition, balanced by list size */
} vs_partitioning;

/* Progress and notes. Every member may be NULL. begin/update/end frame one stage ("sample", "train",
 * "assign", "add", "save"): update reports done of total units (rows, or Lloyd iterations for train);
 * note is a finished line of information ("partition 3: skipped, done by an earlier run"). Called from
 * the builder's thread (update also from worker threads: make it thread-safe). */
typedef struct vs_builder_progress {
    void (*begin)(void *ctx, const char *stage, size_t total);
    void (*update)(void *ctx, size_t done, size_t total);
    void (*end)(void *ctx, size_t total);
    void (*note)(void *ctx, const char *line);
    void *ctx;
} vs_builder_progress_t;

/* One attribute field of the items (vecshard-build --attr NAME=FILE). */
typedef struct vs_builder_attr {
    const char *name; /* vs_attr_name_valid (common/filter.h); distinct within a build */
    const char *path; /* one value per base row, in the base's row order (vs_vecfile_open_column): npy <i8,
                         <i4 (or |u1) = an integer field; <f4 or <f8 (rounded to float32) = a float field;
                         shape (n,) or (n, 1). Missing values: INT64_MIN (integer) or NaN (float) */
} vs_builder_attr_t;

/* The distributed build (IVF factories): the same version as VS_BUILD_ALL, byte for byte, from three
 * steps that may run on different machines sharing the output directory (a Kubernetes Indexed Job:
 * docs/operations.md "Distributed build"). Work files live in <out>/<version>/.build/.
 *  - TRAIN: validates, samples and trains once; writes the trained state (.build/trained.vsidx) and
 *    .build/train.json (what it was trained from: the inputs and options, the trained state's CRC32C),
 *    written last.
 *  - ENCODE (worker i of W, any order, in parallel): loads the trained state, checks it was made for these
 *    inputs and options, assigns and encodes its slice of rows [i*n/W, (i+1)*n/W) (each end rounded down
 *    to a multiple of 256, the last one n) into .build/w<i>.vsidx (an IVF index of the slice's vectors in
 *    row order), .build/w<i>.lists (each row's list, int32) and .build/w<i>.done, written last. It holds
 *    its slice's encoded vectors in memory: choose W so that n/W of them fit.
 *  - MERGE: checks every worker's marker, routes rows (hash or cluster, as the one-process build), then
 *    appends every worker's list entries, worker by worker (so row order), into the partitions within the
 *    memory budget, saves them, writes centroids and manifest last, and removes the workers' files
 *    (train.json is kept: --resume on the finished version checks its inputs against it).
 * Resume: ENCODE with resume keeps a worker whose marker matches (a retried pod redoes only its slice);
 * MERGE with resume keeps finished partitions as VS_BUILD_ALL does; TRAIN with resume keeps a trained
 * state made for the same inputs and options. Any stage on a finished version: with resume and the same
 * inputs, nothing to do (VS_OK); otherwise VS_ERR_ALREADY_EXISTS. HNSW: VS_ERR_UNSUPPORTED (a graph is
 * built in one process). */
typedef enum vs_builder_stage {
    VS_BUILD_ALL = 0, /* every step in this process */
    VS_BUILD_TRAIN,
    VS_BUILD_ENCODE,
    VS_BUILD_MERGE,
} vs_builder_stage;

typedef struct vs_builder_opts {
    const char *base_path;          /* any file vs_vecfile_open reads (.fvecs .bvecs .npy idx[.gz]) */
    const char *ids_path;           /* NULL = ids are row numbers; else .npy int64 (<i8, shape (n,) or (n,1))
                                       or .i64 (raw little-endian int64), n ids, each >= 0 */
    const vs_builder_attr_t *attrs; /* n_attrs fields (0..VS_ATTR_MAX_FIELDS); NULL/0 = no attributes */
    size_t n_attrs;
    vs_metric metric;      /* VS_METRIC_L2, _IP, _COSINE */
    const char *factory;   /* FAISS factory string (IVF..., HNSW...; Flat has no file format) */
    uint32_t n_partitions; /* 1..VS_BUILDER_MAX_PARTITIONS; cluster: also <= nlist */
    vs_partitioning partitioning;
    const char *out_dir;       /* created if missing */
    const char *version;       /* vs_version_name_valid */
    const char *model_version; /* embedding model (NULL = ""), at most 127 bytes */
    uint64_t log_upto;         /* the write log's last sequence folded into the input (vecshard-fold); 0 =
                                  none. Recorded in the manifest: replicas apply the log from the next one */
    size_t train_sample;       /* 0 = vs_builder_default_train_sample */
    uint64_t seed;             /* the training sample */
    size_t n_threads;          /* 0 = all CPUs; never changes the output */
    size_t chunk_rows;         /* rows per streaming read; 0 = VS_BUILDER_DEFAULT_CHUNK; rounded up to a
                                  multiple of VS_BUILDER_CHUNK_ALIGN; never changes the output */
    size_t memory_bytes;       /* budget for the partitions encoded in one pass; 0 = all in one pass */
    int resume;                /* 1 = keep partitions whose part-<p>.done marker matches this build */
    uint64_t build_time_unix;  /* recorded in every partition file's header (fixed = reproducible) */
    /* Per-version search defaults (tune.h): 0 = do not tune; else the recall@tune_k to reach. Tune queries:
     * tune_queries_path (any vector file of the base's dimension), else tune_n rows sampled from the base
     * with the seed (held in the index, so their recall is slightly optimistic; docs/decisions.md). The
     * queries and their exact neighbours are kept in the version directory (tune-queries.fvecs,
     * tune-gt.ivecs when every id fits 31 bits). */
    double target_recall;
    const char *tune_queries_path;
    size_t tune_n;                         /* 0 = 500 */
    uint32_t tune_k;                       /* 0 = 10 */
    const vs_builder_progress_t *progress; /* may be NULL */
    vs_builder_stage stage;                /* VS_BUILD_ALL (0) unless distributed */
    uint32_t worker, n_workers;            /* ENCODE: this worker of n_workers; MERGE: n_workers */
    int assign_exact; /* 1: every vector in its exact nearest list; 0: the grouped assignment at 8,192+
                         lists (L2, cosine; vs_coarse_assign); in the fingerprint: workers must agree */
} vs_builder_opts_t;

typedef struct vs_builder_result {
    size_t n_vectors;
    uint32_t dim;
    uint32_t n_partitions;
    uint32_t partitions_built;   /* encoded by this run */
    uint32_t partitions_resumed; /* kept from an earlier run (resume) */
    uint32_t n_passes;           /* add passes over the base */
    size_t train_rows;           /* rows in the training sample (0: the index needs no training) */
    size_t rows_encoded;         /* ENCODE: rows of this worker's slice encoded by this run */
    int nothing_to_do;           /* a distributed stage found its work done (resume) */
    char manifest_path[PATH_MAX];
} vs_builder_result_t;

/* Builds the version. A directory that already holds a finished version (its manifest) is refused with
 * VS_ERR_ALREADY_EXISTS (versions are immutable), except with resume when every partition's marker names
 * this very build (same inputs and options; attribute columns by name, type and content CRC32C), which
 * rewrites the same bytes. On VS_OK the manifest is written and *out (may be NULL) filled. Errors name
 * the file, row or option: VS_ERR_INVALID_ARGUMENT (options, dim mismatch, NaN/Inf or overflowing row,
 * negative id, ids count differs from the base's rows, P out of range, cluster with a non-IVF factory
 * or P > nlist; an attribute with a bad or repeated name, more than VS_ATTR_MAX_FIELDS, a column whose
 * row count differs from the base's, rows of several values, a float64 beyond float32), VS_ERR_UNSUPPORTED
 * (file format or npy dtype, a factory without a file format such as Flat, an index type not built),
 * VS_ERR_NOT_FOUND / VS_ERR_IO / VS_ERR_CORRUPT (files), VS_ERR_NOMEM. On any error no manifest exists
 * afterwards (errors found before the first write leave the directory as it was, including an earlier
 * complete version). Blocking; starts threads only inside calls. */
vs_status vs_builder_run(const vs_builder_opts_t *opts, vs_builder_result_t *out, char err[VS_ERR_LEN]);

/* Default training sample: max(256 * nlist, 100,000) capped at n for IVF; min(n, 100,000) for other
 * types that need training. */
size_t vs_builder_default_train_sample(uint32_t nlist, size_t n);

/* Packs nlist lists of sizes[l] vectors into n_partitions (1..nlist) partitions: lists by decreasing
 * size (ties: smaller list id first) each into the partition with the fewest vectors (ties: fewer lists,
 * then smaller id) - Graham's LPT rule, so the largest partition holds at most
 * ceil(total / P) + max_l sizes[l] vectors, and every partition gets at least one list.
 * out_partition[l] receives the partition of list l. */
void vs_builder_pack_lists(const uint64_t *sizes, uint32_t nlist, uint32_t n_partitions,
                           uint32_t *out_partition);

/* Packs lists so that neighbouring lists share a partition (what makes centroid routing shrink the
 * fan-out): k-means groups the list centroids (nlist x d) into n_partitions regions; lists are then placed,
 * those with the clearest preference first (largest gap between their nearest and second-nearest region),
 * each into its nearest region with room, room meaning at most floor(total / P) + max_l sizes[l] vectors
 * (the same bound as vs_builder_pack_lists; a list always fits somewhere, see builder.c). Every partition
 * gets at least one list. Deterministic for a seed. Falls back to vs_builder_pack_lists when the
 * regions cannot be computed. */
void vs_builder_pack_lists_near(const uint64_t *sizes, const float *centroids, uint32_t nlist, uint32_t d,
                                uint32_t n_partitions, uint64_t seed, uint32_t *out_partition);

#endif
