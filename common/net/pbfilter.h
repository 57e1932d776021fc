/* pbfilter.h: the attribute messages of vecshard.v1 (Filter, GroupBy, AttributeColumn; common.proto)
 * translated into our own structures (common/filter.h) where a handler meets them: the coordinator (to
 * validate a request against its version's schema, and an Upsert's columns) and the shard (to compile the
 * filter, and to turn a logged write's columns into fresh rows). */
#ifndef VS_COMMON_NET_PBFILTER_H
#define VS_COMMON_NET_PBFILTER_H

#include <stddef.h>
#include <stdint.h>

#include "common/filter.h"
#include "common/status.h"
#include "vecshard/v1/common.pb-c.h"

/* Translates f (may be NULL: an empty spec) into *out (initialized here; fini it after VS_OK; empty on
 * error). VS_ERR_INVALID_ARGUMENT names the bad condition: a bad field name, neither or both of any_of and
 * range, too many values or conditions, a NaN or empty range. */
vs_status vs_filter_spec_from_pb(const Vecshard__V1__Filter *f, vs_filter_spec_t *out, char err[VS_ERR_LEN]);

/* The message form of a spec, in caller storage (points into spec, which must outlive it): msg is the
 * Filter to send. */
typedef struct vs_filter_pb {
    Vecshard__V1__Filter msg;
    Vecshard__V1__FieldCondition conds[VS_FILTER_MAX_TERMS];
    Vecshard__V1__FieldCondition *cond_ptrs[VS_FILTER_MAX_TERMS];
    Vecshard__V1__Range ranges[VS_FILTER_MAX_TERMS];
} vs_filter_pb_t;
void vs_filter_spec_to_pb(const vs_filter_spec_t *spec, vs_filter_pb_t *out);

/* The field index of a group_by in fields[n] (an integer field) and its size (0 -> 1, at most k).
 * VS_ERR_INVALID_ARGUMENT otherwise. */
vs_status vs_group_by_from_pb(const Vecshard__V1__GroupBy *g, const vs_attr_field_t *fields, size_t n,
                              uint32_t k, size_t *out_field, uint32_t *out_size, char err[VS_ERR_LEN]);

/* VS_OK when the n_cols columns fit n_items items of the schema fields[n_fields]: each names a field of
 * it once, with exactly n_items values of the field's type (int_values / float_values, the other empty;
 * float values not NaN). VS_ERR_INVALID_ARGUMENT names the column otherwise. */
vs_status vs_attr_columns_check(Vecshard__V1__AttributeColumn *const *cols, size_t n_cols,
                                const vs_attr_field_t *fields, size_t n_fields, size_t n_items,
                                char err[VS_ERR_LEN]);

/* Rows for n_items items of the schema fields[n_fields] (rows[n_items * n_fields], shard/index/attrs.h
 * slots: int64, or a float's bit pattern) from columns: a field without a column, or with a column of the
 * wrong type or length (a column written for another version's schema), is missing; columns naming no
 * field are ignored. Never fails: a logged write is applied whole. */
void vs_attr_rows_from_pb(Vecshard__V1__AttributeColumn *const *cols, size_t n_cols,
                          const vs_attr_field_t *fields, size_t n_fields, size_t n_items, int64_t *rows);

#endif
