/* fold.h: folds the write log into a build's input (issue 15): the base vectors and ids of the last build,
 * plus the log's upserts and deletes in order, become the input of the next build (vecshard-fold), whose
 * manifest then records the last sequence folded (vecshard-build --log-upto), so replicas apply only
 * the writes after it. The rules are the replicas' (shard/server/applier.h) so that a folded version
 * serves what its replicas served: the last write of an id in log order wins, upserts of another
 * embedding model are skipped, malformed messages are skipped and counted. No network here: the caller
 * reads the log. */
#ifndef VS_SHARD_BUILDER_FOLD_H
#define VS_SHARD_BUILDER_FOLD_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

typedef struct vs_fold vs_fold_t;

typedef struct vs_fold_counts {
    uint64_t messages, upserts, deletes; /* applied log messages, ids upserted, ids deleted */
    uint64_t other_model, rejected;      /* messages skipped */
    uint64_t base_rows, kept, replaced, removed, written; /* vs_fold_write: rows in, kept as they were,
                                                             replaced by an upsert, deleted; rows out */
} vs_fold_counts_t;

/* A fold for vectors of dimension dim from embedding model model_version ("" or NULL: any). */
vs_status vs_fold_create(uint32_t dim, const char *model_version, vs_fold_t **out, char err[VS_ERR_LEN]);
void vs_fold_destroy(vs_fold_t *f); /* NULL is a no-op */

/* Adds one log message, in sequence order. VS_OK also when it was skipped (counted); VS_ERR_NOMEM. */
vs_status vs_fold_add(vs_fold_t *f, const uint8_t *msg, size_t len, char err[VS_ERR_LEN]);

/* Writes the folded input: the rows of base_path (any vecio format; ids from ids_path, .npy or .i64, or
 * row numbers when NULL) whose id the log did not touch, then every id's last upsert, as out_base
 * (.fvecs) and out_ids (.i64, raw little-endian int64). Streams the base (64k rows at a time). */
vs_status vs_fold_write(vs_fold_t *f, const char *base_path, const char *ids_path, const char *out_base,
                        const char *out_ids, char err[VS_ERR_LEN]);

void vs_fold_counts(const vs_fold_t *f, vs_fold_counts_t *out);

#endif
