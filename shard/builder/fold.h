/* fold.h: folds the write log into a build's input (issue 15): the base vectors and ids of the last build,
 * plus the log's upserts and deletes in order, become the input of the next build (vecshard-fold), whose
 * manifest then records the last sequence folded (vecshard-build --log-upto), so replicas apply only
 * the writes after it. The rules are the replicas' (shard/server/applier.h) so that a folded version
 * serves what its replicas served: the last write of an id in log order wins, upserts of another
 * embedding model are skipped, malformed messages are skipped and counted. No network here: the caller
 * reads the log.
 * Attributes (issue 17), optional: given a schema (the base's attribute columns, vecshard-build --attr),
 * each upsert keeps a row of its values made as the replicas make it (vs_attr_rows_from_pb: a field the
 * upsert gave no column of its type and length is missing), and the write folds the base's columns with
 * the rows into one column file per field, so the build of the folded input carries its attributes.
 * Memory: per upsert in the log, dim floats and n_fields int64 slots (an id upserted again keeps both
 * until the write). */
#ifndef VS_SHARD_BUILDER_FOLD_H
#define VS_SHARD_BUILDER_FOLD_H

#include <stddef.h>
#include <stdint.h>

#include "common/filter.h"
#include "common/status.h"
#include "shard/builder/builder.h"

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

/* The attribute schema of the base's columns attrs[n_attrs] (vecshard-build --attr NAME=FILE), checked as
 * vecshard-build checks them: at most VS_ATTR_MAX_FIELDS columns, names valid (vs_attr_name_valid) and
 * distinct, each a file vs_vecfile_open_column reads with n_rows values (the base's row count). A <f4 or
 * <f8 column makes a float field, any other dtype it reads (<i8, <i4, |u1) an integer field, in flag
 * order. Writes out_fields[n_attrs]. VS_ERR_INVALID_ARGUMENT (a bad name, a name twice, too many fields,
 * a row count, a column of several values per row), VS_ERR_NOT_FOUND / VS_ERR_IO / VS_ERR_CORRUPT /
 * VS_ERR_UNSUPPORTED (a dtype) from opening a column; err starts with "--attr NAME" and names the file.
 * Opens the columns (mmap) and closes them again; reads no values. */
vs_status vs_fold_attrs_schema(const vs_builder_attr_t *attrs, size_t n_attrs, size_t n_rows,
                               vs_attr_field_t *out_fields, char err[VS_ERR_LEN]);

/* Folds attributes of fields[n_fields] (copied; 0 = none, as after create): from now on every upsert
 * keeps its row. Before the first vs_fold_add (VS_ERR_FAILED_PRECONDITION after one);
 * VS_ERR_INVALID_ARGUMENT for a schema vs_fold_attrs_schema would not give (names, repeats, types,
 * more than VS_ATTR_MAX_FIELDS). f unchanged on failure. */
vs_status vs_fold_set_schema(vs_fold_t *f, const vs_attr_field_t *fields, size_t n_fields,
                             char err[VS_ERR_LEN]);

/* Adds one log message, in sequence order. VS_OK also when it was skipped (counted); VS_ERR_NOMEM. With
 * a schema, an applied upsert's rows come from its attribute columns (LogWrite.attributes) by the
 * replicas' rule, never a reason to skip it. */
vs_status vs_fold_add(vs_fold_t *f, const uint8_t *msg, size_t len, char err[VS_ERR_LEN]);

/* Writes the folded input: the rows of base_path (any vecio format; ids from ids_path, .npy or .i64, or
 * row numbers when NULL) whose id the log did not touch, then every id's last upsert (by id), as out_base
 * (.fvecs) and out_ids (.i64, raw little-endian int64). Streams the base (64k rows at a time).
 * With a schema: attrs[n_fields] are the base's columns of its fields, in its order (checked again with
 * vs_fold_attrs_schema against the base's row count: VS_ERR_INVALID_ARGUMENT when a name or type is not
 * the schema's), and out_attr_dir (created if missing) receives NAME.npy per field, one value per output
 * row in the output order: int64 (<i8) for integer fields, float32 (<f4) for float fields; a kept row has
 * the base's value, an upserted id its last upsert's (VS_ATTR_NULL_INT / NaN where it gave none). Without
 * a schema attrs and out_attr_dir are ignored (pass NULL) and the output is what it was before
 * attributes. Errors name the file; VS_ERR_IO, VS_ERR_NOMEM, and the base's and columns' read errors. */
vs_status vs_fold_write(vs_fold_t *f, const char *base_path, const char *ids_path,
                        const vs_builder_attr_t *attrs, const char *out_base, const char *out_ids,
                        const char *out_attr_dir, char err[VS_ERR_LEN]);

void vs_fold_counts(const vs_fold_t *f, vs_fold_counts_t *out);

#endif
