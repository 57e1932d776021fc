/* filter.c: the request-level attribute filter (filter.h). */
#include "common/filter.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void vs_filter_spec_init(vs_filter_spec_t *s)
{
    memset(s, 0, sizeof *s);
}

void vs_filter_spec_fini(vs_filter_spec_t *s)
{
    for (size_t i = 0; i < s->n_terms; i++)
        free(s->terms[i].values);
    memset(s, 0, sizeof *s);
}

int vs_attr_name_valid(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > VS_ATTR_NAME_MAX || !(name[0] >= 'a' && name[0] <= 'z'))
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return 0;
    }
    return 1;
}

const char *vs_attr_type_name(vs_attr_type t)
{
    return t == VS_ATTR_INT ? "int" : t == VS_ATTR_FLOAT ? "float" : "unknown";
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static vs_status new_term(vs_filter_spec_t *s, const char *field, vs_filter_term_t **out, char *err)
{
    if (!vs_attr_name_valid(field))
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                       "filter field '%.64s' is not a field name (1..%d characters of [a-z0-9_], starting "
                       "with a letter)",
                       field, VS_ATTR_NAME_MAX);
    if (s->n_terms >= VS_FILTER_MAX_TERMS)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "a filter has at most %d terms", VS_FILTER_MAX_TERMS);
    *out = &s->terms[s->n_terms];
    memset(*out, 0, sizeof **out);
    snprintf((*out)->field, sizeof(*out)->field, "%s", field);
    return VS_OK;
}

vs_status vs_filter_spec_add_in(vs_filter_spec_t *s, const char *field, const int64_t *values, size_t n,
                                char err[VS_ERR_LEN])
{
    vs_filter_term_t *t;
    vs_status st = new_term(s, field, &t, err);
    if (st != VS_OK)
        return st;
    if (n == 0 || n > VS_FILTER_MAX_VALUES)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "filter on '%s': %zu values (1..%u)", field, n,
                       VS_FILTER_MAX_VALUES);
    int64_t *v = malloc(n * sizeof *v);
    if (v == NULL)
        return vs_errf(err, VS_ERR_NOMEM, "filter: out of memory");
    memcpy(v, values, n * sizeof *v);
    qsort(v, n, sizeof *v, cmp_i64);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] == VS_ATTR_NULL_INT) {
            free(v);
            return vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                           "filter on '%s': %lld is the missing-value marker, never matched", field,
                           (long long)VS_ATTR_NULL_INT);
        }
        if (m == 0 || v[m - 1] != v[i])
            v[m++] = v[i];
    }
    t->kind = VS_FILTER_IN;
    t->values = v;
    t->n_values = m;
    s->n_terms++;
    return VS_OK;
}

vs_status vs_filter_spec_add_range(vs_filter_spec_t *s, const char *field, double lo, double hi,
                                   char err[VS_ERR_LEN])
{
    vs_filter_term_t *t;
    vs_status st = new_term(s, field, &t, err);
    if (st != VS_OK)
        return st;
    if (isnan(lo) || isnan(hi) || lo > hi)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "filter on '%s': range %g..%g is empty or not a number",
                       field, lo, hi);
    t->kind = VS_FILTER_RANGE;
    t->lo = lo;
    t->hi = hi;
    s->n_terms++;
    return VS_OK;
}

/* One term of the text form, "field=v1|v2" or "field=lo..hi", in [p, end). */
static vs_status parse_term(vs_filter_spec_t *s, const char *p, const char *end, char *err)
{
    const char *eq = memchr(p, '=', (size_t)(end - p));
    char field[VS_ATTR_NAME_MAX + 2];
    if (eq == NULL || eq == p || (size_t)(eq - p) > VS_ATTR_NAME_MAX)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "filter term '%.*s' is not field=values or field=lo..hi",
                       (int)(end - p), p);
    memcpy(field, p, (size_t)(eq - p));
    field[eq - p] = '\0';
    const char *v = eq + 1;
    size_t vlen = (size_t)(end - v);
    char *buf = malloc(vlen + 1);
    if (buf == NULL)
        return vs_errf(err, VS_ERR_NOMEM, "filter: out of memory");
    memcpy(buf, v, vlen);
    buf[vlen] = '\0';
    vs_status st;
    char *dots = strstr(buf, "..");
    if (dots != NULL) {
        *dots = '\0';
        const char *a = buf, *b = dots + 2;
        double lo = -INFINITY, hi = INFINITY;
        char *e;
        errno = 0;
        st = VS_OK;
        if (*a) {
            lo = strtod(a, &e);
            if (*e || errno)
                st = vs_errf(err, VS_ERR_INVALID_ARGUMENT, "filter term '%.*s': bad lower bound '%s'",
                             (int)(end - p), p, a);
        }
        if (st == VS_OK && *b) {
            hi = strtod(b, &e);
            if (*e || errno)
                st = vs_errf(err, VS_ERR_INVALID_ARGUMENT, "filter term '%.*s': bad upper bound '%s'",
                             (int)(end - p), p, b);
        }
        if (st == VS_OK)
            st = vs_filter_spec_add_range(s, field, lo, hi, err);
    } else {
        size_t cap = 1;
        for (size_t i = 0; i < vlen; i++)
            cap += buf[i] == '|';
        int64_t *vals = malloc(cap * sizeof *vals);
        if (vals == NULL) {
            free(buf);
            return vs_errf(err, VS_ERR_NOMEM, "filter: out of memory");
        }
        size_t n = 0;
        st = VS_OK;
        for (char *q = buf;; n++) {
            char *bar = strchr(q, '|');
            if (bar)
                *bar = '\0';
            char *e;
            errno = 0;
            long long x = strtoll(q, &e, 10);
            if (*q == '\0' || *e || errno) {
                st = vs_errf(err, VS_ERR_INVALID_ARGUMENT, "filter term '%.*s': '%s' is not an integer",
                             (int)(end - p), p, q);
                break;
            }
            vals[n] = x;
            if (!bar) {
                n++;
                break;
            }
            q = bar + 1;
        }
        if (st == VS_OK)
            st = vs_filter_spec_add_in(s, field, vals, n, err);
        free(vals);
    }
    free(buf);
    return st;
}

vs_status vs_filter_spec_parse(const char *text, vs_filter_spec_t *out, char err[VS_ERR_LEN])
{
    vs_filter_spec_init(out);
    const char *p = text;
    while (*p) {
        const char *end = strchr(p, '&');
        if (end == NULL)
            end = p + strlen(p);
        vs_status st = parse_term(out, p, end, err);
        if (st != VS_OK) {
            vs_filter_spec_fini(out);
            return st;
        }
        p = *end ? end + 1 : end;
    }
    return VS_OK;
}

static const vs_attr_field_t *find_field(const char *name, const vs_attr_field_t *fields, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(fields[i].name, name) == 0)
            return &fields[i];
    return NULL;
}

vs_status vs_filter_spec_check(const vs_filter_spec_t *s, const vs_attr_field_t *fields, size_t n,
                               char err[VS_ERR_LEN])
{
    for (size_t i = 0; i < s->n_terms; i++) {
        const vs_filter_term_t *t = &s->terms[i];
        const vs_attr_field_t *f = find_field(t->field, fields, n);
        if (f == NULL)
            return vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                           "filter field '%s' is not an attribute of the index%s", t->field,
                           n == 0 ? " (it has none)" : "");
        if (t->kind == VS_FILTER_IN && f->type != VS_ATTR_INT)
            return vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                           "filter field '%s' is a float field: use a range, not a set of values", t->field);
    }
    return VS_OK;
}

size_t vs_group_select(size_t n, const float *dist, const int64_t *ids, const int64_t *groups, size_t k,
                       uint32_t size, float pad, float *out_dist, int64_t *out_ids, int64_t *out_groups,
                       int64_t *scratch)
{
    if (size == 0)
        size = 1;
    /* the groups kept so far (at most k distinct) and their counts, in scratch: linear probing over a
     * table of the next power of two above k (values hashed), counts beside */
    size_t slots = 1;
    while (slots < k + 1)
        slots <<= 1;
    int64_t *keys = scratch, *counts = scratch + slots;
    for (size_t i = 0; i < slots; i++)
        counts[i] = 0;
    size_t kept = 0;
    for (size_t i = 0; i < n && kept < k; i++) {
        if (ids[i] < 0)
            continue;
        uint64_t h = ((uint64_t)groups[i] * 0x9e3779b97f4a7c15ull) >> 17;
        size_t s = (size_t)h & (slots - 1);
        while (counts[s] != 0 && keys[s] != groups[i])
            s = (s + 1) & (slots - 1);
        if (counts[s] >= (int64_t)size)
            continue;
        keys[s] = groups[i];
        counts[s]++;
        out_dist[kept] = dist[i];
        out_ids[kept] = ids[i];
        out_groups[kept] = groups[i];
        kept++;
    }
    for (size_t i = kept; i < k; i++) {
        out_dist[i] = pad;
        out_ids[i] = -1;
        out_groups[i] = VS_ATTR_NULL_INT;
    }
    return kept;
}

vs_status vs_group_by_check(const char *field, const vs_attr_field_t *fields, size_t n, char err[VS_ERR_LEN])
{
    const vs_attr_field_t *f = find_field(field, fields, n);
    if (f == NULL)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                       "group_by field '%.64s' is not an attribute of the index", field);
    if (f->type != VS_ATTR_INT)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                       "group_by field '%s' is a float field (integer fields only)", field);
    return VS_OK;
}
