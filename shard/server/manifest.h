/* manifest.h: the manifest of an index version, <dir>/<version>/manifest.json (docs/protocol.md).
 *
 * A manifest names one built index version: the embedding model it came from, metric, dimension,
 * factory string, how it is partitioned, and per partition the file (relative to the manifest's
 * directory), its size, CRC32C and vector count. The offline builder writes it; shards read it to load
 * their partition and check what they loaded against it (a file built for another metric or dimension
 * is refused: serving with the wrong metric is a silent bug).
 * Not here: loading the index (shard.h) or where manifests live in etcd (the deploy issue). */
#ifndef VS_SHARD_SERVER_MANIFEST_H
#define VS_SHARD_SERVER_MANIFEST_H

#include <limits.h>
#include <stdint.h>

#include "common/distance.h"
#include "common/status.h"

#define VS_MANIFEST_FORMAT "vecshard-manifest/1"
#define VS_NAME_LEN 128 /* versions, model versions, factory strings */

typedef struct vs_manifest_partition {
    uint32_t id;
    char file[PATH_MAX]; /* as written in the manifest (relative to the manifest's directory) */
    uint64_t size_bytes;
    uint32_t crc32c;
    int has_crc32c;
    uint64_t n_vectors;
} vs_manifest_partition_t;

typedef struct vs_manifest {
    char version[VS_NAME_LEN];       /* [A-Za-z0-9._-], 1..64 bytes */
    char model_version[VS_NAME_LEN]; /* may be "" */
    vs_metric metric;
    uint32_t dim;
    char factory[VS_NAME_LEN];
    char partitioning[16]; /* "hash" or "cluster" */
    uint32_t n_partitions;
    vs_manifest_partition_t *partitions; /* n_partitions, owned */
    char centroids_file[PATH_MAX];       /* cluster partitioning: coarse centroids (.fvecs); may be "" */
    char dir[PATH_MAX];                  /* directory of the manifest file (set by load) */
} vs_manifest_t;

/* Reads and validates path: JSON well formed, format known, every field present with the right type
 * and in range, partition ids 0..n-1 each once, file names without "..". VS_ERR_CORRUPT (or
 * VS_ERR_NOT_FOUND / VS_ERR_IO) naming the field. *out is filled only on success; free with
 * vs_manifest_fini. */
vs_status vs_manifest_load(const char *path, vs_manifest_t *out, char err[VS_ERR_LEN]);

/* Writes m to path atomically (tmp + rename). n_partitions entries must be filled. */
vs_status vs_manifest_write(const char *path, const vs_manifest_t *m, char err[VS_ERR_LEN]);

void vs_manifest_fini(vs_manifest_t *m);

/* The partition with id p, or NULL. */
const vs_manifest_partition_t *vs_manifest_partition(const vs_manifest_t *m, uint32_t p);

/* Full path of a file named in the manifest into buf (PATH_MAX); VS_ERR_INVALID_ARGUMENT if too long. */
vs_status vs_manifest_path(const vs_manifest_t *m, const char *file, char buf[PATH_MAX],
                           char err[VS_ERR_LEN]);

/* 1 when name is a valid version name ([A-Za-z0-9._-], 1..64 bytes, not "." or ".."). */
int vs_version_name_valid(const char *name);

/* Computes size and CRC32C of a file (streaming read). */
vs_status vs_file_crc32c(const char *path, uint64_t *out_size, uint32_t *out_crc, char err[VS_ERR_LEN]);

#endif
