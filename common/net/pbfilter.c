/* pbfilter.c: vecshard.v1 attribute messages <-> common/filter.h (pbfilter.h). */
#include "common/net/pbfilter.h"

#include <math.h>
#include <string.h>

vs_status vs_filter_spec_from_pb(const Vecshard__V1__Filter *f, vs_filter_spec_t *out, char err[VS_ERR_LEN])
{
    vs_filter_spec_init(out);
    if (f == NULL)
        return VS_OK;
    if (f->n_all_of > VS_FILTER_MAX_TERMS)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "a filter has at most %d conditions (%zu given)",
                       VS_FILTER_MAX_TERMS, f->n_all_of);
    for (size_t i = 0; i < f->n_all_of; i++) {
        const Vecshard__V1__FieldCondition *c = f->all_of[i];
        const char *name = c->field ? c->field : "";
        vs_status st;
        if ((c->n_any_of > 0) == (c->range != NULL))
            st = vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                         "filter condition %zu on '%.64s': give exactly one of any_of and range", i, name);
        else if (c->range)
            st = vs_filter_spec_add_range(out, name, c->range->lo, c->range->hi, err);
        else
            st = vs_filter_spec_add_in(out, name, c->any_of, c->n_any_of, err);
        if (st != VS_OK) {
            vs_filter_spec_fini(out);
            return st;
        }
    }
    return VS_OK;
}

void vs_filter_spec_to_pb(const vs_filter_spec_t *spec, vs_filter_pb_t *out)
{
    vecshard__v1__filter__init(&out->msg);
    for (size_t i = 0; i < spec->n_terms; i++) {
        const vs_filter_term_t *t = &spec->terms[i];
        Vecshard__V1__FieldCondition *c = &out->conds[i];
        vecshard__v1__field_condition__init(c);
        c->field = (char *)t->field;
        if (t->kind == VS_FILTER_IN) {
            c->any_of = t->values;
            c->n_any_of = t->n_values;
        } else {
            vecshard__v1__range__init(&out->ranges[i]);
            out->ranges[i].lo = t->lo;
            out->ranges[i].hi = t->hi;
            c->range = &out->ranges[i];
        }
        out->cond_ptrs[i] = c;
    }
    out->msg.all_of = out->cond_ptrs;
    out->msg.n_all_of = spec->n_terms;
}

vs_status vs_group_by_from_pb(const Vecshard__V1__GroupBy *g, const vs_attr_field_t *fields, size_t n,
                              uint32_t k, size_t *out_field, uint32_t *out_size, char err[VS_ERR_LEN])
{
    const char *name = g->field ? g->field : "";
    vs_status st = vs_group_by_check(name, fields, n, err);
    if (st != VS_OK)
        return st;
    if (g->size > k)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "group_by size %u is above k = %u", g->size, k);
    for (size_t i = 0; i < n; i++)
        if (strcmp(fields[i].name, name) == 0)
            *out_field = i;
    *out_size = g->size ? g->size : 1;
    return VS_OK;
}

static int find_field(const char *name, const vs_attr_field_t *fields, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(fields[i].name, name) == 0)
            return (int)i;
    return -1;
}

vs_status vs_attr_columns_check(Vecshard__V1__AttributeColumn *const *cols, size_t n_cols,
                                const vs_attr_field_t *fields, size_t n_fields, size_t n_items,
                                char err[VS_ERR_LEN])
{
    for (size_t c = 0; c < n_cols; c++) {
        const char *name = cols[c]->field ? cols[c]->field : "";
        int fi = find_field(name, fields, n_fields);
        if (fi < 0)
            return vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                           "attribute column '%.64s' is not a field of the version%s", name,
                           n_fields ? "" : " (it has no attributes)");
        for (size_t j = 0; j < c; j++)
            if (strcmp(cols[j]->field, name) == 0)
                return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "attribute column '%s' is given twice", name);
        const int is_int = fields[fi].type == VS_ATTR_INT;
        const size_t have = is_int ? cols[c]->n_int_values : cols[c]->n_float_values;
        const size_t other = is_int ? cols[c]->n_float_values : cols[c]->n_int_values;
        if (have != n_items || other != 0)
            return vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                           "attribute column '%s' (%s field) has %zu %s values and %zu %s values for %zu ids",
                           name, vs_attr_type_name(fields[fi].type), have, is_int ? "int" : "float", other,
                           is_int ? "float" : "int", n_items);
        for (size_t j = 0; !is_int && j < n_items; j++)
            if (isnan(cols[c]->float_values[j]))
                return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "attribute column '%s': value %zu is NaN", name,
                               j);
        for (size_t j = 0; is_int && j < n_items; j++)
            if (cols[c]->int_values[j] == VS_ATTR_NULL_INT)
                return vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                               "attribute column '%s': value %zu is the missing-value marker", name, j);
    }
    return VS_OK;
}

void vs_attr_rows_from_pb(Vecshard__V1__AttributeColumn *const *cols, size_t n_cols,
                          const vs_attr_field_t *fields, size_t n_fields, size_t n_items, int64_t *rows)
{
    for (size_t f = 0; f < n_fields; f++) {
        const Vecshard__V1__AttributeColumn *col = NULL;
        for (size_t c = 0; c < n_cols && !col; c++)
            if (cols[c]->field && strcmp(cols[c]->field, fields[f].name) == 0)
                col = cols[c];
        const int is_int = fields[f].type == VS_ATTR_INT;
        if (col && (is_int ? col->n_int_values : col->n_float_values) != n_items)
            col = NULL;
        for (size_t i = 0; i < n_items; i++) {
            int64_t v;
            if (is_int) {
                v = col ? col->int_values[i] : VS_ATTR_NULL_INT;
            } else {
                float x = col ? col->float_values[i] : NAN;
                uint32_t b;
                memcpy(&b, &x, sizeof b);
                v = (int64_t)b;
            }
            rows[i * n_fields + f] = v;
        }
    }
}
