/* attrs.h: the attributes of an index's items (issue 17) and the compiled filter a search checks them with.
 *
 * Columns are kept in the index's own item order ("positions": IVF list by list as the ids, HNSW node
 * order, Flat row order), so the in-scan check reads the value at the candidate's position, with no
 * lookup by id. Integer fields are int64 columns, float fields float32 columns; a missing value is
 * VS_ATTR_NULL_INT or NaN and matches no term. Files store a schema section ("attr.schema": u32 count,
 * then per field u32 type and a 64-byte NUL-padded name) and one column section per field ("attr.<i>"),
 * each under the container's CRC32C like every section.
 *
 * For each field a permutation of the positions sorted by value (nulls left out) is built at load
 * (4 bytes per item per field): it counts a term's matches exactly (selectivity for the strategy) and
 * enumerates the matching positions of the most selective term (the exact path of very selective
 * filters). Fresh records carry their values as a row of int64 slots (vs_attr_row_*).
 * Thread-safety: read-only after vs_attrs_prepare; any number of searches. */
#ifndef VS_SHARD_INDEX_ATTRS_H
#define VS_SHARD_INDEX_ATTRS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/filter.h"
#include "common/status.h"
#include "shard/index/ifile.h"

typedef struct vs_attrs vs_attrs_t;

/* Attributes for n items with fields[n_fields] (1..VS_ATTR_MAX_FIELDS, names valid and distinct), every
 * value missing until the caller fills the columns. VS_ERR_INVALID_ARGUMENT, VS_ERR_NOMEM. */
vs_status vs_attrs_create(const vs_attr_field_t *fields, size_t n_fields, size_t n, vs_attrs_t **out,
                          char err[VS_ERR_LEN]);
void vs_attrs_destroy(vs_attrs_t *a); /* NULL is a no-op */

/* Column of field i to fill before vs_attrs_prepare (int64_t[n] or float[n] by its type); NULL for a
 * loaded (read-only) set. */
void *vs_attrs_column_mut(vs_attrs_t *a, size_t i);
const void *vs_attrs_column(const vs_attrs_t *a, size_t i);

/* A new set of n items whose item j has src's values of item rows[j] (rows[j] < src count): reorders
 * columns given in input order into an index's order. VS_ERR_NOMEM. */
vs_status vs_attrs_gather(const vs_attrs_t *src, const size_t *rows, size_t n, vs_attrs_t **out,
                          char err[VS_ERR_LEN]);

/* Builds the sorted permutations; call once the columns are final (the builder does before save, load
 * does itself). VS_ERR_NOMEM. */
vs_status vs_attrs_prepare(vs_attrs_t *a, char err[VS_ERR_LEN]);

size_t vs_attrs_count(const vs_attrs_t *a);
size_t vs_attrs_n_fields(const vs_attrs_t *a);
const vs_attr_field_t *vs_attrs_fields(const vs_attrs_t *a);
int vs_attrs_find(const vs_attrs_t *a, const char *name); /* field index or -1 */
size_t vs_attrs_memory_bytes(const vs_attrs_t *a);

/* Appends the schema and column sections to w. */
vs_status vs_attrs_save(const vs_attrs_t *a, vs_ifile_writer_t *w, char err[VS_ERR_LEN]);

/* Reads the attribute sections of f (path for messages) for an index of n items: *out NULL when the file
 * has none (an index built without attributes), else prepared columns borrowed from the mapping (valid
 * until f closes). VS_ERR_CORRUPT names a bad section (schema, count, column length), VS_ERR_NOMEM. */
vs_status vs_attrs_load(const vs_ifile_t *f, const char *path, size_t n, vs_attrs_t **out,
                        char err[VS_ERR_LEN]);

/* ---- rows (fresh records) --------------------------------------------------------------------- */
/* A row is n_fields int64 slots; a float field's slot holds its float's bit pattern. */
static inline int64_t vs_attr_float_slot(float v)
{
    uint32_t b;
    memcpy(&b, &v, sizeof b);
    return (int64_t)b;
}
static inline float vs_attr_slot_float(int64_t s)
{
    uint32_t b = (uint32_t)s;
    float v;
    memcpy(&v, &b, sizeof v);
    return v;
}
/* Fills row[n_fields] with the missing value of each field. */
void vs_attrs_null_row(const vs_attr_field_t *fields, size_t n_fields, int64_t *row);

/* The row of item pos (for a fresh record written from the base, or a test). */
void vs_attrs_row_at(const vs_attrs_t *a, size_t pos, int64_t *row);

/* ---- compiled filter ---------------------------------------------------------------------------- */
typedef struct vs_filter_cterm {
    uint32_t field;
    vs_attr_type type;
    vs_filter_kind kind;
    const int64_t *values; /* IN: sorted, borrowed from the spec */
    size_t n_values;
    int64_t ilo, ihi; /* RANGE on an integer field */
    double lo, hi;    /* RANGE on a float field */
    const void *col;  /* the base column (NULL when the filter has no base columns) */
    size_t count;     /* base items matching this term alone */
} vs_filter_cterm_t;

typedef struct vs_filter {
    size_t n_terms;
    vs_filter_cterm_t t[VS_FILTER_MAX_TERMS];
    const vs_attrs_t *attrs; /* the base's (borrowed) */
    size_t n_items;          /* base items */
    double est_matches;      /* estimated base matches: n * product of the terms' fractions */
    size_t driver;           /* the term with the fewest matches (enumerated by the exact path) */
    size_t driver_count;
} vs_filter_t;

/* Compiles spec (borrowed; must outlive the filter) against attrs' schema and counts each term's
 * matches. attrs NULL: the index has no attributes, and any term is VS_ERR_INVALID_ARGUMENT. A spec with
 * no terms compiles to a filter that matches everything. Caller storage; nothing to free. */
vs_status vs_filter_compile(const vs_filter_spec_t *spec, const vs_attrs_t *attrs, vs_filter_t *out,
                            char err[VS_ERR_LEN]);

static inline int vs_filter_term_int(const vs_filter_cterm_t *t, int64_t v)
{
    if (v == VS_ATTR_NULL_INT)
        return 0;
    if (t->kind == VS_FILTER_RANGE)
        return v >= t->ilo && v <= t->ihi;
    size_t lo = 0, hi = t->n_values;
    if (hi <= 8) {
        for (size_t i = 0; i < hi; i++)
            if (t->values[i] == v)
                return 1;
        return 0;
    }
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (t->values[mid] < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < t->n_values && t->values[lo] == v;
}

static inline int vs_filter_term_float(const vs_filter_cterm_t *t, float v)
{
    return (double)v >= t->lo && (double)v <= t->hi; /* NaN: false */
}

/* 1 when base item pos matches every term (f may be NULL: everything matches). */
static inline int vs_filter_match(const vs_filter_t *f, size_t pos)
{
    if (f == NULL)
        return 1;
    for (size_t i = 0; i < f->n_terms; i++) {
        const vs_filter_cterm_t *t = &f->t[i];
        if (t->type == VS_ATTR_INT ? !vs_filter_term_int(t, ((const int64_t *)t->col)[pos])
                                   : !vs_filter_term_float(t, ((const float *)t->col)[pos]))
            return 0;
    }
    return 1;
}

/* 1 when a row (a fresh record's values) matches every term (f NULL: 1; row NULL: values missing, so 1
 * only for a filter with no terms). */
static inline int vs_filter_match_row(const vs_filter_t *f, const int64_t *row)
{
    if (f == NULL || f->n_terms == 0)
        return 1;
    if (row == NULL)
        return 0;
    for (size_t i = 0; i < f->n_terms; i++) {
        const vs_filter_cterm_t *t = &f->t[i];
        int64_t s = row[t->field];
        if (t->type == VS_ATTR_INT ? !vs_filter_term_int(t, s)
                                   : !vs_filter_term_float(t, vs_attr_slot_float(s)))
            return 0;
    }
    return 1;
}

/* 1 when f has terms (a search must check it). */
static inline int vs_filter_active(const vs_filter_t *f)
{
    return f != NULL && f->n_terms > 0;
}

/* The base positions matching f, through its driver term's sorted range(s), in no particular order:
 * writes at most cap of them to out and returns how many match in all (driver_count bounds it). */
size_t vs_filter_collect(const vs_filter_t *f, uint32_t *out, size_t cap);

/* What vs_filter_collect reads: the positions it walks (the driver term's matches; with value bitmaps for
 * two or more terms, about the estimated matches). */
double vs_filter_collect_cost(const vs_filter_t *f);

/* The base positions matching f's driver term as runs of ascending positions, one per value of a set
 * term or of an integer range (that value's run of the sorted permutation), and rest: f without that
 * term. An index whose items
 * are stored group by group (IVF lists) finds a group's matches in each run by binary search, with no
 * enumeration of the whole match set. */
typedef struct vs_filter_runs {
    size_t n_runs;
    const uint32_t *pos[VS_FILTER_MAX_VALUES];
    size_t len[VS_FILTER_MAX_VALUES];
    vs_filter_t rest;
} vs_filter_runs_t;

/* Fills *out and returns 1; 0 when f is inactive, or its driver term is a float range or an integer range
 * over more than VS_FILTER_MAX_VALUES distinct values (too many runs; an integer range's stretch of the
 * permutation is one run per value). */
int vs_filter_driver_runs(const vs_filter_t *f, vs_filter_runs_t *out);

/* ---- per-group summaries (IVF lists) ----------------------------------------------------------
 * For groups of consecutive positions (an IVF index's lists), per field the smallest and largest value
 * of each group and, for an integer field with at most VS_ATTR_SUMMARY_MAX_VALUES distinct values, which
 * values each group holds (one bitmap over the groups per value). A filtered IVF search probes only lists
 * that may hold a matching item, so a filter correlated with the clusters (or anti-correlated with the
 * query) does not spend its probes on lists without any. Memory: 16 bytes per group and field, plus
 * values x groups bits. */
#define VS_ATTR_SUMMARY_MAX_VALUES 4096u
typedef struct vs_attrs_summary vs_attrs_summary_t;

/* Summaries of n_groups groups, group g holding positions [first[g], first[g] + count[g]).
 * VS_ERR_NOMEM. */
vs_status vs_attrs_summarize(const vs_attrs_t *a, const size_t *first, const size_t *count, size_t n_groups,
                             vs_attrs_summary_t **out, char err[VS_ERR_LEN]);
void vs_attrs_summary_destroy(vs_attrs_summary_t *s); /* NULL is a no-op */
size_t vs_attrs_summary_bytes(const vs_attrs_summary_t *s);

/* Sets bit g of out[(n_groups + 63) / 64] (cleared first) for each group that may hold an item matching f
 * (every term may hold in it); returns how many groups are set. */
size_t vs_filter_groups(const vs_filter_t *f, const vs_attrs_summary_t *s, uint64_t *out);

/* ---- group_by ----------------------------------------------------------------------------------- */
/* The index's ids by position: fills out[count] (what vs_attrs_lookup_int builds its map from). */
typedef void (*vs_attrs_ids_fn)(const void *arg, int64_t *out);

/* The value of integer field `field` for n ids of the base, VS_ATTR_NULL_INT for an id the base does not
 * hold. id -> position goes through a map built on first use (16 bytes per item) from ids_fill(arg);
 * thread-safe. VS_ERR_NOMEM (building the map). */
vs_status vs_attrs_lookup_int(const vs_attrs_t *a, vs_attrs_ids_fn ids_fill, const void *arg, size_t field,
                              size_t n, const int64_t *ids, int64_t *out, char err[VS_ERR_LEN]);

#endif
