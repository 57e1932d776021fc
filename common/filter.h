/* filter.h: what a search request asks of its results' attributes (issue 17), before any index sees it: a
 * conjunction of terms, each `field in {values}` (integer fields) or `lo <= field <= hi` (integer or
 * float fields), plus an optional group_by (at most n results per value of an integer field). The
 * coordinator validates a request's filter against a version's attribute schema with this; the shard
 * compiles it against its partition's columns (shard/index/attrs.h). A text form serves the tools
 * and tests: terms joined by '&', `field=v1|v2|v3` (in) or `field=lo..hi` (range, either bound may be
 * empty = unbounded), e.g. "market=3|7&price=..9.5".
 * Not here: disjunctions across fields, negation (exclude_ids covers "not these items"), strings (an
 * application maps its tags to integers, as Milvus and FAISS users do). */
#ifndef VS_COMMON_FILTER_H
#define VS_COMMON_FILTER_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

#define VS_ATTR_NAME_MAX 48        /* characters of a field name: [a-z0-9_], starting with a letter */
#define VS_ATTR_MAX_FIELDS 16      /* fields per index */
#define VS_FILTER_MAX_TERMS 16     /* terms per filter */
#define VS_FILTER_MAX_VALUES 4096u /* values of one `in` term */
#define VS_ATTR_NULL_INT                                                                                     \
    INT64_MIN /* an integer field's missing value (a float field's is NaN): never matched */

typedef enum vs_attr_type {
    VS_ATTR_INT = 1,   /* int64 values: tags, categories, markets */
    VS_ATTR_FLOAT = 2, /* float32 values: prices, timestamps in hours, scores */
} vs_attr_type;

typedef enum vs_filter_kind {
    VS_FILTER_IN = 1,    /* value in values[] (integer fields) */
    VS_FILTER_RANGE = 2, /* lo <= value <= hi (inclusive; -inf / +inf = unbounded) */
} vs_filter_kind;

typedef struct vs_filter_term {
    char field[VS_ATTR_NAME_MAX + 1];
    vs_filter_kind kind;
    int64_t *values; /* IN: sorted, distinct, owned by the spec */
    size_t n_values;
    double lo, hi; /* RANGE */
} vs_filter_term_t;

/* A conjunction of terms (all must hold). Caller storage: zero it (or vs_filter_spec_init), add terms,
 * release with vs_filter_spec_fini. An empty spec matches everything. */
typedef struct vs_filter_spec {
    size_t n_terms;
    vs_filter_term_t terms[VS_FILTER_MAX_TERMS];
} vs_filter_spec_t;

void vs_filter_spec_init(vs_filter_spec_t *s);
void vs_filter_spec_fini(vs_filter_spec_t *s); /* frees the values; s is empty again */

/* 1 when name is a valid field name. */
int vs_attr_name_valid(const char *name);

/* Adds `field in {values[n]}` (n 1..VS_FILTER_MAX_VALUES; values copied, sorted, repeats dropped; the null
 * value refused). VS_ERR_INVALID_ARGUMENT (bad name, n, too many terms), VS_ERR_NOMEM; s unchanged then. */
vs_status vs_filter_spec_add_in(vs_filter_spec_t *s, const char *field, const int64_t *values, size_t n,
                                char err[VS_ERR_LEN]);

/* Adds `lo <= field <= hi`; NaN bounds and lo > hi are VS_ERR_INVALID_ARGUMENT. */
vs_status vs_filter_spec_add_range(vs_filter_spec_t *s, const char *field, double lo, double hi,
                                   char err[VS_ERR_LEN]);

/* Parses the text form into *out (initialized here; fini it after VS_OK; on error *out is empty).
 * "" is the empty filter. VS_ERR_INVALID_ARGUMENT names the bad term. */
vs_status vs_filter_spec_parse(const char *text, vs_filter_spec_t *out, char err[VS_ERR_LEN]);

/* One field of an attribute schema (an index's, or a version's from its manifest). */
typedef struct vs_attr_field {
    char name[VS_ATTR_NAME_MAX + 1];
    vs_attr_type type;
} vs_attr_field_t;

/* VS_OK when every term names a field of fields[n] with a kind its type takes (IN: integer fields;
 * RANGE: either). VS_ERR_INVALID_ARGUMENT naming the term otherwise. A field may appear in several
 * terms (all must hold). */
vs_status vs_filter_spec_check(const vs_filter_spec_t *s, const vs_attr_field_t *fields, size_t n,
                               char err[VS_ERR_LEN]);

/* VS_OK when field names an integer field of fields[n] (group_by takes integer fields only). */
vs_status vs_group_by_check(const char *field, const vs_attr_field_t *fields, size_t n, char err[VS_ERR_LEN]);

const char *vs_attr_type_name(vs_attr_type t); /* "int", "float" */

/* group_by ("at most size results per value"): from n candidates sorted best first (dist, ids, groups;
 * id -1 entries are skipped), keeps in order each one whose group value has fewer than size kept, until
 * k are kept; writes them to out_dist/out_ids/out_groups (k slots, the rest padded with id -1, distance
 * pad and group VS_ATTR_NULL_INT) and returns how many were kept. The missing value is a group like any
 * other. Merging per-partition answers selected this way and selecting again gives the global answer
 * (greedy selection over a partition matroid). scratch: 4 * (k + 1) int64 slots of the caller's. */
size_t vs_group_select(size_t n, const float *dist, const int64_t *ids, const int64_t *groups, size_t k,
                       uint32_t size, float pad, float *out_dist, int64_t *out_ids, int64_t *out_groups,
                       int64_t *scratch);

#endif
