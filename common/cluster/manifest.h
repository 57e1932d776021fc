/* manifest.h: the manifest of an index version, <dir>/<version>/manifest.json (docs/protocol.md).
 *
 * A manifest names one built index version: the embedding model it came from, metric, dimension,
 * factory string, how it is partitioned, and per partition the file (relative to the manifest's
 * directory), its size, CRC32C and vector count. The offline builder writes it; shards read it to load
 * their partition and check what they loaded against it (a file built for another metric or dimension
 * is refused: serving with the wrong metric is a silent bug).
 * Partitioning (docs/protocol.md): "hash" puts id in partition vs_hash_partition(id, P) =
 * splitmix64(id) % P (common/hash.h); "cluster" gives each partition whole IVF lists, listed per
 * partition, every list of the nlist exactly once, so a coordinator routes a query to the partitions
 * owning its nearest lists.
 * Not here: loading the index (shard.h) or where manifests live in etcd (the deploy issue). */
#ifndef VS_COMMON_CLUSTER_MANIFEST_H
#define VS_COMMON_CLUSTER_MANIFEST_H

#include <limits.h>
#include <stdint.h>

#include "common/distance.h"
#include "common/filter.h"
#include "common/status.h"

#define VS_MANIFEST_FORMAT "vecshard-manifest/1"
#define VS_NAME_LEN 128 /* versions, model versions, factory strings */
/* The "hash" field of hash-partitioned manifests: the one function ids are partitioned with. */
#define VS_MANIFEST_HASH "splitmix64(id) % P"
/* Largest nlist a cluster-partitioned manifest may list (the list ids must fit the 16 MiB cap). */
#define VS_MANIFEST_MAX_NLIST (1u << 20)

typedef struct vs_manifest_partition {
    uint32_t id;
    char file[PATH_MAX]; /* as written in the manifest (relative to the manifest's directory) */
    uint64_t size_bytes;
    uint32_t crc32c;
    int has_crc32c;
    uint64_t n_vectors;
    uint32_t *lists; /* cluster: the global IVF list ids this partition owns (n_lists, owned), else NULL */
    uint32_t n_lists;
    char content_id[17]; /* the file's content id (vs_ifile_content_id), "" in older manifests */
} vs_manifest_partition_t;

/* Search parameters a version's queries get when they give none, measured by the builder (tune.h). */
typedef struct vs_search_defaults {
    int present;
    uint32_t nprobe;    /* IVF; 0 = not applicable */
    uint32_t ef_search; /* HNSW; 0 = not applicable */
    float k_factor;     /* refine stage; 0 = not applicable */
    uint32_t k;         /* the recall@k they were tuned for */
    double target_recall, measured_recall;
    uint32_t n_queries; /* tune queries */
    char source[16];    /* "file" (--tune-queries) or "base-sample" */
} vs_search_defaults_t;

typedef struct vs_manifest {
    char version[VS_NAME_LEN];       /* [A-Za-z0-9._-], 1..64 bytes */
    char model_version[VS_NAME_LEN]; /* may be "" */
    vs_metric metric;
    uint32_t dim;
    char factory[VS_NAME_LEN];
    char partitioning[16]; /* "hash" or "cluster" */
    uint32_t n_partitions;
    vs_manifest_partition_t *partitions; /* n_partitions, owned */
    char centroids_file[PATH_MAX];       /* IVF: coarse centroids (.fvecs, nlist x dim); required for
                                            cluster, may be "" for hash */
    uint32_t centroids_crc32c;           /* CRC32C of the centroids file, when has_centroids_crc32c */
    int has_centroids_crc32c;
    uint32_t nlist; /* IVF lists (= the factory's nlist); required for cluster, 0 = absent (hash) */
    char trained_state_id[17];      /* the partitions' common trained state (vs_index_ids), "" = older */
    uint32_t centroids_data_crc32c; /* CRC32C of the nlist*dim raw centroid floats (= every partition's
                                       ivf.centroids section), when has_centroids_data_crc32c */
    int has_centroids_data_crc32c;
    char hash[32];                 /* hash partitioning: VS_MANIFEST_HASH or "" (absent: older manifests) */
    vs_search_defaults_t defaults; /* optional "search_defaults" */
    /* optional "attributes" (issue 17): the schema of the items' attributes, the same in every partition
     * file; n_attrs 0 = none (absent or empty; older manifests). Names valid and distinct. */
    vs_attr_field_t attrs[VS_ATTR_MAX_FIELDS];
    size_t n_attrs;
    int has_build;     /* the optional "build" object: how the builder sampled its training set */
    uint64_t log_upto; /* "log_upto": the write log's last sequence folded into this version (0 = none:
                          a replica applies the log from its first message) */
    uint64_t build_train_sample, build_seed;
    char dir[PATH_MAX]; /* directory of the manifest file (set by load) */
} vs_manifest_t;

/* Reads and validates path: JSON well formed, format known, every field present with the right type
 * and in range, factory string parseable, partition ids 0..n-1 each once, file names without "..";
 * "nlist" equal to the factory's; for cluster partitioning: an IVF factory, "nlist", a centroids
 * file and per partition "lists" covering 0..nlist-1 exactly once overall; for hash: no "lists",
 * "hash" absent or VS_MANIFEST_HASH; "attributes", when present, an array of at most VS_ATTR_MAX_FIELDS
 * {"name", "type": "int" | "float"} with valid, distinct names. VS_ERR_CORRUPT (or VS_ERR_NOT_FOUND /
 * VS_ERR_IO) naming the field. *out is filled only on success; free with vs_manifest_fini. */
vs_status vs_manifest_load(const char *path, vs_manifest_t *out, char err[VS_ERR_LEN]);

/* vs_manifest_load on text already read (n bytes, not NUL-terminated; at most 16 MiB); path names it in
 * messages and gives the directory files are relative to. */
vs_status vs_manifest_parse(const char *text, size_t n, const char *path, vs_manifest_t *out,
                            char err[VS_ERR_LEN]);

/* Writes m to path atomically (tmp + rename, fsync'd). n_partitions entries must be filled; optional
 * fields are written when set (nlist > 0, hash[0], lists != NULL, has_*, n_attrs > 0). Does not validate m:
 * the writer (the builder) loads what it wrote back with vs_manifest_load. */
vs_status vs_manifest_write(const char *path, const vs_manifest_t *m, char err[VS_ERR_LEN]);

/* Frees the partitions and their lists (m itself is caller storage). NULL is a no-op. */
void vs_manifest_fini(vs_manifest_t *m);

/* The partition with id p, or NULL. */
const vs_manifest_partition_t *vs_manifest_partition(const vs_manifest_t *m, uint32_t p);

/* Full path of a file named in the manifest into buf (PATH_MAX); VS_ERR_INVALID_ARGUMENT if too long. */
vs_status vs_manifest_path(const vs_manifest_t *m, const char *file, char buf[PATH_MAX],
                           char err[VS_ERR_LEN]);

/* The content id of the version a manifest describes: 16 hex digits of a 64-bit FNV-1a hash over
 * everything that decides what the version answers (metric, dim, factory, partitioning, nlist, the
 * centroids' CRC32C, the attribute schema when there is one, and per partition its id, size, CRC32C,
 * vector count and lists); not the version
 * name, the model name or paths. Two builds with equal content ids serve the same data; deploy refuses
 * a known version name whose content id differs. */
void vs_manifest_content_id(const vs_manifest_t *m, char out[17]);

/* 1 when name is a valid version name ([A-Za-z0-9._-], 1..64 bytes, not "." or ".."). */
int vs_version_name_valid(const char *name);

/* Computes size and CRC32C of a file (streaming read). */
vs_status vs_file_crc32c(const char *path, uint64_t *out_size, uint32_t *out_crc, char err[VS_ERR_LEN]);

#endif
