/* attrs.c: item attributes and compiled filters (attrs.h). */
#include "shard/index/attrs.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/hash.h"

#define SCHEMA_NAME_BYTES 64
#define VS_ATTR_BITMAP_VALUES 16u

typedef struct id_map {
    uint64_t mask;
    int64_t *keys; /* -1 empty */
    uint32_t *pos;
} id_map_t;

struct vs_attrs {
    size_t n, n_fields;
    vs_attr_field_t fields[VS_ATTR_MAX_FIELDS];
    void *cols[VS_ATTR_MAX_FIELDS];     /* int64_t[n] / float[n] */
    int owned;                          /* columns malloc'd (built) rather than mapped (loaded) */
    uint32_t *perm[VS_ATTR_MAX_FIELDS]; /* non-null positions sorted by (value, position) */
    size_t n_perm[VS_ATTR_MAX_FIELDS];
    /* integer fields of at most VS_ATTR_BITMAP_VALUES distinct values: one bitmap of the positions per
     * value (n / 8 bytes each), ANDed by conjunctions of such terms */
    uint64_t *bits[VS_ATTR_MAX_FIELDS];
    int64_t bvals[VS_ATTR_MAX_FIELDS][VS_ATTR_BITMAP_VALUES];
    size_t n_bvals[VS_ATTR_MAX_FIELDS];
    pthread_mutex_t map_mu;
    _Atomic(id_map_t *) map; /* id -> position, built by the first group_by lookup */
};

static size_t type_bytes(vs_attr_type t)
{
    return t == VS_ATTR_INT ? sizeof(int64_t) : sizeof(float);
}

static vs_status check_schema(const vs_attr_field_t *fields, size_t n_fields, char *err)
{
    if (n_fields == 0 || n_fields > VS_ATTR_MAX_FIELDS)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "%zu attribute fields (1..%d)", n_fields,
                       VS_ATTR_MAX_FIELDS);
    for (size_t i = 0; i < n_fields; i++) {
        if (!vs_attr_name_valid(fields[i].name))
            return vs_errf(
                err, VS_ERR_INVALID_ARGUMENT,
                "attribute field name '%.64s' is not 1..%d characters of [a-z0-9_] starting with a "
                "letter",
                fields[i].name, VS_ATTR_NAME_MAX);
        if (fields[i].type != VS_ATTR_INT && fields[i].type != VS_ATTR_FLOAT)
            return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "attribute field '%s' has an unknown type %d",
                           fields[i].name, (int)fields[i].type);
        for (size_t j = 0; j < i; j++)
            if (strcmp(fields[i].name, fields[j].name) == 0)
                return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "attribute field '%s' is given twice",
                               fields[i].name);
    }
    return VS_OK;
}

static vs_attrs_t *alloc_attrs(const vs_attr_field_t *fields, size_t n_fields, size_t n)
{
    vs_attrs_t *a = calloc(1, sizeof *a);
    if (a == NULL)
        return NULL;
    a->n = n;
    a->n_fields = n_fields;
    memcpy(a->fields, fields, n_fields * sizeof *fields);
    pthread_mutex_init(&a->map_mu, NULL);
    atomic_init(&a->map, NULL);
    return a;
}

void vs_attrs_null_row(const vs_attr_field_t *fields, size_t n_fields, int64_t *row)
{
    for (size_t i = 0; i < n_fields; i++)
        row[i] = fields[i].type == VS_ATTR_INT ? VS_ATTR_NULL_INT : vs_attr_float_slot(NAN);
}

vs_status vs_attrs_create(const vs_attr_field_t *fields, size_t n_fields, size_t n, vs_attrs_t **out,
                          char err[VS_ERR_LEN])
{
    vs_status st = check_schema(fields, n_fields, err);
    if (st != VS_OK)
        return st;
    vs_attrs_t *a = alloc_attrs(fields, n_fields, n);
    if (a == NULL)
        return vs_errf(err, VS_ERR_NOMEM, "attributes: out of memory");
    a->owned = 1;
    for (size_t i = 0; i < n_fields; i++) {
        a->cols[i] = malloc((n ? n : 1) * type_bytes(fields[i].type));
        if (a->cols[i] == NULL) {
            vs_attrs_destroy(a);
            return vs_errf(err, VS_ERR_NOMEM, "attributes: out of memory for %zu values", n);
        }
        if (fields[i].type == VS_ATTR_INT)
            for (size_t j = 0; j < n; j++)
                ((int64_t *)a->cols[i])[j] = VS_ATTR_NULL_INT;
        else
            for (size_t j = 0; j < n; j++)
                ((float *)a->cols[i])[j] = NAN;
    }
    *out = a;
    return VS_OK;
}

static void map_free(id_map_t *m)
{
    if (m) {
        free(m->keys);
        free(m->pos);
        free(m);
    }
}

void vs_attrs_destroy(vs_attrs_t *a)
{
    if (a == NULL)
        return;
    for (size_t i = 0; i < a->n_fields; i++) {
        if (a->owned)
            free(a->cols[i]);
        free(a->perm[i]);
        free(a->bits[i]);
    }
    map_free(atomic_load(&a->map));
    pthread_mutex_destroy(&a->map_mu);
    free(a);
}

void *vs_attrs_column_mut(vs_attrs_t *a, size_t i)
{
    return a->owned && i < a->n_fields ? a->cols[i] : NULL;
}

const void *vs_attrs_column(const vs_attrs_t *a, size_t i)
{
    return i < a->n_fields ? a->cols[i] : NULL;
}

size_t vs_attrs_count(const vs_attrs_t *a)
{
    return a->n;
}

size_t vs_attrs_n_fields(const vs_attrs_t *a)
{
    return a->n_fields;
}

const vs_attr_field_t *vs_attrs_fields(const vs_attrs_t *a)
{
    return a->fields;
}

int vs_attrs_find(const vs_attrs_t *a, const char *name)
{
    for (size_t i = 0; a && i < a->n_fields; i++)
        if (strcmp(a->fields[i].name, name) == 0)
            return (int)i;
    return -1;
}

size_t vs_attrs_memory_bytes(const vs_attrs_t *a)
{
    if (a == NULL)
        return 0;
    size_t b = sizeof *a;
    for (size_t i = 0; i < a->n_fields; i++)
        b += a->n * type_bytes(a->fields[i].type) + a->n_perm[i] * sizeof(uint32_t) +
             (a->bits[i] ? a->n_bvals[i] * ((a->n + 63) / 64) * sizeof(uint64_t) : 0);
    id_map_t *m = atomic_load(&a->map);
    if (m)
        b += (m->mask + 1) * (sizeof(int64_t) + sizeof(uint32_t));
    return b;
}

vs_status vs_attrs_gather(const vs_attrs_t *src, const size_t *rows, size_t n, vs_attrs_t **out,
                          char err[VS_ERR_LEN])
{
    vs_attrs_t *a;
    vs_status st = vs_attrs_create(src->fields, src->n_fields, n, &a, err);
    if (st != VS_OK)
        return st;
    for (size_t i = 0; i < src->n_fields; i++) {
        if (src->fields[i].type == VS_ATTR_INT) {
            const int64_t *s = src->cols[i];
            int64_t *d = a->cols[i];
            for (size_t j = 0; j < n; j++)
                d[j] = s[rows[j]];
        } else {
            const float *s = src->cols[i];
            float *d = a->cols[i];
            for (size_t j = 0; j < n; j++)
                d[j] = s[rows[j]];
        }
    }
    *out = a;
    return VS_OK;
}

void vs_attrs_row_at(const vs_attrs_t *a, size_t pos, int64_t *row)
{
    for (size_t i = 0; i < a->n_fields; i++)
        row[i] = a->fields[i].type == VS_ATTR_INT ? ((const int64_t *)a->cols[i])[pos]
                                                  : vs_attr_float_slot(((const float *)a->cols[i])[pos]);
}

/* ---- sorted permutations ------------------------------------------------------------------------ */

typedef struct keyed {
    uint64_t key; /* order-preserving: int64 with the sign bit flipped; float bits made monotonic */
    uint32_t pos;
} keyed_t;

static int cmp_keyed(const void *x, const void *y)
{
    const keyed_t *a = x, *b = y;
    if (a->key != b->key)
        return a->key < b->key ? -1 : 1;
    return (a->pos > b->pos) - (a->pos < b->pos);
}

static uint64_t float_key(float v)
{
    if (v == 0.0f)
        v = 0.0f; /* -0.0 is 0: one key, as the in-scan comparison sees it */
    uint32_t b;
    memcpy(&b, &v, sizeof b);
    return (b >> 31) ? (uint64_t)(~b) : (uint64_t)(b | 0x80000000u);
}

vs_status vs_attrs_prepare(vs_attrs_t *a, char err[VS_ERR_LEN])
{
    if (a->n > UINT32_MAX)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "attributes of %zu items (at most 2^32 per partition)",
                       a->n);
    keyed_t *tmp = malloc((a->n ? a->n : 1) * sizeof *tmp);
    if (tmp == NULL)
        return vs_errf(err, VS_ERR_NOMEM, "attributes: out of memory sorting %zu values", a->n);
    for (size_t i = 0; i < a->n_fields; i++) {
        size_t m = 0;
        if (a->fields[i].type == VS_ATTR_INT) {
            const int64_t *c = a->cols[i];
            for (size_t j = 0; j < a->n; j++)
                if (c[j] != VS_ATTR_NULL_INT)
                    tmp[m++] = (keyed_t){(uint64_t)c[j] ^ (1ull << 63), (uint32_t)j};
        } else {
            const float *c = a->cols[i];
            for (size_t j = 0; j < a->n; j++)
                if (!isnan(c[j]))
                    tmp[m++] = (keyed_t){float_key(c[j]), (uint32_t)j};
        }
        qsort(tmp, m, sizeof *tmp, cmp_keyed);
        free(a->perm[i]);
        a->perm[i] = malloc((m ? m : 1) * sizeof(uint32_t));
        if (a->perm[i] == NULL) {
            free(tmp);
            return vs_errf(err, VS_ERR_NOMEM, "attributes: out of memory");
        }
        for (size_t j = 0; j < m; j++)
            a->perm[i][j] = tmp[j].pos;
        a->n_perm[i] = m;
        free(a->bits[i]);
        a->bits[i] = NULL;
        a->n_bvals[i] = 0;
        if (a->fields[i].type != VS_ATTR_INT)
            continue;
        const int64_t *c = a->cols[i];
        size_t nd = 0; /* distinct values, in sorted order */
        for (size_t j = 0; j < m && nd <= VS_ATTR_BITMAP_VALUES; j++)
            if (j == 0 || c[tmp[j].pos] != c[tmp[j - 1].pos]) {
                if (nd < VS_ATTR_BITMAP_VALUES)
                    a->bvals[i][nd] = c[tmp[j].pos];
                nd++;
            }
        if (nd == 0 || nd > VS_ATTR_BITMAP_VALUES)
            continue;
        const size_t words = (a->n + 63) / 64;
        a->bits[i] = calloc(nd * words, sizeof(uint64_t));
        if (a->bits[i] == NULL)
            continue; /* the bitmaps only speed conjunctions up */
        a->n_bvals[i] = nd;
        for (size_t j = 0, v = 0; j < m; j++) {
            if (j > 0 && c[tmp[j].pos] != c[tmp[j - 1].pos])
                v++;
            a->bits[i][v * words + tmp[j].pos / 64] |= 1ull << (tmp[j].pos % 64);
        }
    }
    free(tmp);
    return VS_OK;
}

/* ---- persistence -------------------------------------------------------------------------------- */

vs_status vs_attrs_save(const vs_attrs_t *a, vs_ifile_writer_t *w, char err[VS_ERR_LEN])
{
    size_t sb = 4 + a->n_fields * (4 + SCHEMA_NAME_BYTES);
    uint8_t *schema = calloc(1, sb);
    if (schema == NULL)
        return vs_errf(err, VS_ERR_NOMEM, "attributes: out of memory");
    uint32_t nf = (uint32_t)a->n_fields;
    memcpy(schema, &nf, 4);
    for (size_t i = 0; i < a->n_fields; i++) {
        uint8_t *e = schema + 4 + i * (4 + SCHEMA_NAME_BYTES);
        uint32_t t = (uint32_t)a->fields[i].type;
        memcpy(e, &t, 4);
        memcpy(e + 4, a->fields[i].name, strlen(a->fields[i].name));
    }
    vs_status st = vs_ifile_writer_add_section(w, "attr.schema", schema, sb, err);
    free(schema);
    for (size_t i = 0; st == VS_OK && i < a->n_fields; i++) {
        char tag[16];
        snprintf(tag, sizeof tag, "attr.%u", (unsigned)i);
        st = vs_ifile_writer_add_section(w, tag, a->cols[i], a->n * type_bytes(a->fields[i].type), err);
    }
    return st;
}

vs_status vs_attrs_load(const vs_ifile_t *f, const char *path, size_t n, vs_attrs_t **out,
                        char err[VS_ERR_LEN])
{
    const void *data;
    size_t len;
    char ignore[VS_ERR_LEN];
    if (vs_ifile_section(f, "attr.schema", &data, &len, ignore) != VS_OK) {
        *out = NULL;
        return VS_OK;
    }
    const uint8_t *p = data;
    uint32_t nf = 0;
    if (len >= 4)
        memcpy(&nf, p, 4);
    if (len < 4 || nf == 0 || nf > VS_ATTR_MAX_FIELDS || len != 4 + (size_t)nf * (4 + SCHEMA_NAME_BYTES))
        return vs_errf(err, VS_ERR_CORRUPT, "%s: section attr.schema: %zu bytes for %u fields", path, len,
                       nf);
    vs_attr_field_t fields[VS_ATTR_MAX_FIELDS];
    memset(fields, 0, sizeof fields);
    for (uint32_t i = 0; i < nf; i++) {
        const uint8_t *e = p + 4 + (size_t)i * (4 + SCHEMA_NAME_BYTES);
        uint32_t t;
        memcpy(&t, e, 4);
        if (memchr(e + 4, 0, SCHEMA_NAME_BYTES) == NULL ||
            strnlen((const char *)e + 4, SCHEMA_NAME_BYTES) > VS_ATTR_NAME_MAX)
            return vs_errf(err, VS_ERR_CORRUPT, "%s: section attr.schema: field %u's name is too long", path,
                           i);
        memcpy(fields[i].name, e + 4, strnlen((const char *)e + 4, SCHEMA_NAME_BYTES));
        fields[i].type = (vs_attr_type)t;
    }
    char why[VS_ERR_LEN];
    if (check_schema(fields, nf, why) != VS_OK)
        return vs_errf(err, VS_ERR_CORRUPT, "%s: section attr.schema: %s", path, why);
    vs_attrs_t *a = alloc_attrs(fields, nf, n);
    if (a == NULL)
        return vs_errf(err, VS_ERR_NOMEM, "attributes: out of memory");
    for (uint32_t i = 0; i < nf; i++) {
        char tag[16];
        snprintf(tag, sizeof tag, "attr.%u", i);
        const void *col;
        vs_status st = vs_ifile_section_sized(f, path, tag, n * type_bytes(fields[i].type), &col, err);
        if (st != VS_OK) {
            vs_attrs_destroy(a);
            return st;
        }
        a->cols[i] = (void *)col;
    }
    vs_status st = vs_attrs_prepare(a, err);
    if (st != VS_OK) {
        vs_attrs_destroy(a);
        return st;
    }
    *out = a;
    return VS_OK;
}

/* ---- compiled filters --------------------------------------------------------------------------- */

/* [*b, *e) of field i's permutation whose values lie in [lo, hi] (as keys). */
static void perm_range(const vs_attrs_t *a, size_t i, uint64_t klo, uint64_t khi, size_t *b, size_t *e)
{
    const uint32_t *perm = a->perm[i];
    const int is_int = a->fields[i].type == VS_ATTR_INT;
    const int64_t *ic = a->cols[i];
    const float *fc = a->cols[i];
#define KEY_AT(j) (is_int ? (uint64_t)ic[perm[j]] ^ (1ull << 63) : float_key(fc[perm[j]]))
    size_t lo = 0, hi = a->n_perm[i];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (KEY_AT(mid) < klo)
            lo = mid + 1;
        else
            hi = mid;
    }
    *b = lo;
    hi = a->n_perm[i];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (KEY_AT(mid) <= khi)
            lo = mid + 1;
        else
            hi = mid;
    }
    *e = lo;
#undef KEY_AT
}

static int64_t clamp_ceil(double x)
{
    if (x <= -9.2233720368547758e18)
        return INT64_MIN + 1;
    if (x >= 9.2233720368547758e18)
        return INT64_MAX;
    return (int64_t)ceil(x);
}

static int64_t clamp_floor(double x)
{
    if (x <= -9.2233720368547758e18)
        return INT64_MIN + 1;
    if (x >= 9.2233720368547758e18)
        return INT64_MAX;
    return (int64_t)floor(x);
}

/* Calls fn(arg, b, e) for each permutation range of term t (IN: one per value; RANGE: one). */
typedef void (*range_fn)(void *arg, size_t b, size_t e);

static void term_ranges(const vs_attrs_t *a, const vs_filter_cterm_t *t, range_fn fn, void *arg)
{
    size_t b, e;
    if (t->type == VS_ATTR_INT) {
        if (t->kind == VS_FILTER_IN) {
            for (size_t j = 0; j < t->n_values; j++) {
                uint64_t k = (uint64_t)t->values[j] ^ (1ull << 63);
                perm_range(a, t->field, k, k, &b, &e);
                if (e > b)
                    fn(arg, b, e);
            }
            return;
        }
        if (t->ilo > t->ihi)
            return;
        perm_range(a, t->field, (uint64_t)t->ilo ^ (1ull << 63), (uint64_t)t->ihi ^ (1ull << 63), &b, &e);
    } else {
        float flo = (float)t->lo, fhi = (float)t->hi;
        /* float bounds of the double range: the nearest floats inside it */
        if ((double)flo < t->lo)
            flo = nextafterf(flo, INFINITY);
        if ((double)fhi > t->hi)
            fhi = nextafterf(fhi, -INFINITY);
        if (!(flo <= fhi))
            return;
        perm_range(a, t->field, float_key(flo), float_key(fhi), &b, &e);
    }
    if (e > b)
        fn(arg, b, e);
}

static void count_range(void *arg, size_t b, size_t e)
{
    *(size_t *)arg += e - b;
}

vs_status vs_filter_compile(const vs_filter_spec_t *spec, const vs_attrs_t *attrs, vs_filter_t *out,
                            char err[VS_ERR_LEN])
{
    memset(out, 0, sizeof *out);
    if (spec == NULL || spec->n_terms == 0)
        return VS_OK;
    if (attrs == NULL)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "filter on '%s': the index has no attributes",
                       spec->terms[0].field);
    vs_status st = vs_filter_spec_check(spec, attrs->fields, attrs->n_fields, err);
    if (st != VS_OK)
        return st;
    vs_filter_t f = {.n_terms = spec->n_terms, .attrs = attrs, .n_items = attrs->n};
    double est = (double)attrs->n;
    for (size_t i = 0; i < spec->n_terms; i++) {
        const vs_filter_term_t *s = &spec->terms[i];
        vs_filter_cterm_t *t = &f.t[i];
        int fi = vs_attrs_find(attrs, s->field);
        t->field = (uint32_t)fi;
        t->type = attrs->fields[fi].type;
        t->kind = s->kind;
        t->values = s->values;
        t->n_values = s->n_values;
        t->lo = s->lo;
        t->hi = s->hi;
        t->ilo = clamp_ceil(s->lo);
        t->ihi = clamp_floor(s->hi);
        t->col = attrs->cols[fi];
        t->count = 0;
        term_ranges(attrs, t, count_range, &t->count);
        if (i == 0 || t->count < f.driver_count) {
            f.driver = i;
            f.driver_count = t->count;
        }
        est *= attrs->n ? (double)t->count / (double)attrs->n : 0.0;
    }
    f.est_matches = est;
    *out = f;
    return VS_OK;
}

typedef struct collect {
    vs_filter_t rest; /* the filter without its driver term (its range holds by construction) */
    const uint32_t *perm;
    uint32_t *out;
    size_t cap, n;
} collect_t;

static void collect_range(void *arg, size_t b, size_t e)
{
    collect_t *c = arg;
    for (size_t j = b; j < e; j++) {
        uint32_t pos = c->perm[j];
        if (vs_filter_match(&c->rest, pos)) {
            if (c->n < c->cap)
                c->out[c->n] = pos;
            c->n++;
        }
    }
}

static int term_has_bitmap(const vs_attrs_t *a, const vs_filter_cterm_t *t);

double vs_filter_collect_cost(const vs_filter_t *f)
{
    size_t nb = 0;
    for (size_t i = 0; f && i < f->n_terms; i++)
        nb += term_has_bitmap(f->attrs, &f->t[i]);
    return !vs_filter_active(f) ? 0.0 : nb >= 2 ? f->est_matches : (double)f->driver_count;
}

int vs_filter_driver_runs(const vs_filter_t *f, vs_filter_runs_t *out)
{
    if (!vs_filter_active(f))
        return 0;
    const vs_filter_cterm_t *t = &f->t[f->driver];
    if (t->type != VS_ATTR_INT)
        return 0;
    const uint32_t *perm = f->attrs->perm[t->field];
    out->n_runs = 0;
    if (t->kind == VS_FILTER_IN) {
        for (size_t j = 0; j < t->n_values; j++) {
            size_t b, e;
            const uint64_t k = (uint64_t)t->values[j] ^ (1ull << 63);
            perm_range(f->attrs, t->field, k, k, &b, &e);
            if (e > b) {
                out->pos[out->n_runs] = perm + b;
                out->len[out->n_runs++] = e - b;
            }
        }
    } else if (t->ilo <= t->ihi) {
        /* an integer range: its stretch of the permutation is one run per distinct value (sorted by
         * value, then position), found by galloping to each value's end; too many values: no runs */
        const int64_t *col = f->attrs->cols[t->field];
        size_t b, e;
        perm_range(f->attrs, t->field, (uint64_t)t->ilo ^ (1ull << 63), (uint64_t)t->ihi ^ (1ull << 63), &b,
                   &e);
        while (b < e) {
            if (out->n_runs == VS_FILTER_MAX_VALUES)
                return 0;
            const int64_t v = col[perm[b]];
            size_t lo = b, step = 1, hi = b + 1; /* col[perm[lo]] == v; find the first index past v */
            while (hi < e && col[perm[hi]] == v) {
                lo = hi;
                step *= 2;
                hi = lo + step < e ? lo + step : e;
            }
            while (hi - lo > 1) {
                size_t mid = (lo + hi) / 2;
                if (col[perm[mid]] == v)
                    lo = mid;
                else
                    hi = mid;
            }
            out->pos[out->n_runs] = perm + b;
            out->len[out->n_runs++] = hi - b;
            b = hi;
        }
    } else {
        return 0;
    }
    out->rest = *f;
    out->rest.t[f->driver] = out->rest.t[f->n_terms - 1];
    out->rest.n_terms--;
    return 1;
}

/* 1 when term t is a set of values of a field with value bitmaps. */
static int term_has_bitmap(const vs_attrs_t *a, const vs_filter_cterm_t *t)
{
    return t->type == VS_ATTR_INT && t->kind == VS_FILTER_IN && a->bits[t->field] != NULL;
}

size_t vs_filter_collect(const vs_filter_t *f, uint32_t *out, size_t cap)
{
    if (!vs_filter_active(f))
        return 0;
    const vs_filter_cterm_t *t = &f->t[f->driver];
    collect_t c = {.rest = *f, .perm = f->attrs->perm[t->field], .out = out, .cap = cap};
    c.rest.t[f->driver] = c.rest.t[f->n_terms - 1];
    c.rest.n_terms--;
    /* two or more terms on fields with value bitmaps ("a=3&b=5" over fields of few values): the terms'
     * bitmaps ANDed word by word, then the remaining terms checked at the set bits - no per-position
     * column reads for the driver's whole run */
    size_t nb = 0;
    for (size_t i = 0; i < f->n_terms; i++)
        nb += term_has_bitmap(f->attrs, &f->t[i]);
    if (nb >= 2) {
        const vs_attrs_t *a = f->attrs;
        const size_t words = (a->n + 63) / 64;
        vs_filter_t rest = *f;
        rest.n_terms = 0;
        for (size_t i = 0; i < f->n_terms; i++)
            if (!term_has_bitmap(a, &f->t[i]))
                rest.t[rest.n_terms++] = f->t[i];
        /* each bitmap term's rows (its values the field has), found once */
        const uint64_t *rows[VS_FILTER_MAX_TERMS][VS_ATTR_BITMAP_VALUES];
        size_t n_rows[VS_FILTER_MAX_TERMS], nt = 0;
        for (size_t i = 0; i < f->n_terms; i++) {
            const vs_filter_cterm_t *x = &f->t[i];
            if (!term_has_bitmap(a, x))
                continue;
            n_rows[nt] = 0;
            for (size_t v = 0; v < a->n_bvals[x->field]; v++)
                if (vs_filter_term_int(x, a->bvals[x->field][v]))
                    rows[nt][n_rows[nt]++] = a->bits[x->field] + v * words;
            nt++;
        }
        for (size_t w = 0; w < words; w++) {
            uint64_t x = ~0ull;
            for (size_t i = 0; i < nt && x; i++) {
                uint64_t y = 0;
                for (size_t r = 0; r < n_rows[i]; r++)
                    y |= rows[i][r][w];
                x &= y;
            }
            while (x) {
                const uint32_t pos = (uint32_t)(w * 64 + (size_t)__builtin_ctzll(x));
                x &= x - 1;
                if (vs_filter_match(&rest, pos)) {
                    if (c.n < c.cap)
                        c.out[c.n] = pos;
                    c.n++;
                }
            }
        }
        return c.n;
    }
    term_ranges(f->attrs, t, collect_range, &c);
    return c.n;
}

/* ---- per-group summaries ------------------------------------------------------------------------ */

typedef struct field_summary {
    int64_t *imin, *imax; /* integer field: per group (min > max: no value) */
    float *fmin, *fmax;   /* float field: per group (NaN: no value) */
    int64_t *values;      /* integer field with few distinct values: sorted distinct values */
    size_t n_values;
    uint64_t *presence; /* n_values x words: bit g of row v set when group g holds values[v] */
} field_summary_t;

struct vs_attrs_summary {
    size_t n_groups, words, n_fields;
    vs_attr_type types[VS_ATTR_MAX_FIELDS];
    field_summary_t f[VS_ATTR_MAX_FIELDS];
    size_t bytes;
};

void vs_attrs_summary_destroy(vs_attrs_summary_t *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n_fields; i++) {
        free(s->f[i].imin);
        free(s->f[i].imax);
        free(s->f[i].fmin);
        free(s->f[i].fmax);
        free(s->f[i].values);
        free(s->f[i].presence);
    }
    free(s);
}

size_t vs_attrs_summary_bytes(const vs_attrs_summary_t *s)
{
    return s ? s->bytes : 0;
}

static size_t value_index(const int64_t *values, size_t n, int64_t v)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (values[mid] < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo; /* n or values[lo] != v: absent */
}

vs_status vs_attrs_summarize(const vs_attrs_t *a, const size_t *first, const size_t *count, size_t n_groups,
                             vs_attrs_summary_t **out, char err[VS_ERR_LEN])
{
    vs_attrs_summary_t *s = calloc(1, sizeof *s);
    if (!s)
        return vs_errf(err, VS_ERR_NOMEM, "attribute summaries: out of memory");
    s->n_groups = n_groups;
    s->words = (n_groups + 63) / 64;
    s->n_fields = a->n_fields;
    const size_t g1 = n_groups ? n_groups : 1;
    for (size_t i = 0; i < a->n_fields; i++) {
        field_summary_t *fs = &s->f[i];
        s->types[i] = a->fields[i].type;
        if (a->fields[i].type == VS_ATTR_FLOAT) {
            fs->fmin = malloc(g1 * sizeof(float));
            fs->fmax = malloc(g1 * sizeof(float));
            if (!fs->fmin || !fs->fmax)
                goto nomem;
            s->bytes += 2 * g1 * sizeof(float);
            const float *c = a->cols[i];
            for (size_t g = 0; g < n_groups; g++) {
                float lo = NAN, hi = NAN;
                for (size_t j = first[g]; j < first[g] + count[g]; j++) {
                    if (isnan(c[j]))
                        continue;
                    if (isnan(lo) || c[j] < lo)
                        lo = c[j];
                    if (isnan(hi) || c[j] > hi)
                        hi = c[j];
                }
                fs->fmin[g] = lo;
                fs->fmax[g] = hi;
            }
            continue;
        }
        fs->imin = malloc(g1 * sizeof(int64_t));
        fs->imax = malloc(g1 * sizeof(int64_t));
        if (!fs->imin || !fs->imax)
            goto nomem;
        s->bytes += 2 * g1 * sizeof(int64_t);
        const int64_t *c = a->cols[i];
        for (size_t g = 0; g < n_groups; g++) {
            int64_t lo = INT64_MAX, hi = INT64_MIN;
            for (size_t j = first[g]; j < first[g] + count[g]; j++) {
                if (c[j] == VS_ATTR_NULL_INT)
                    continue;
                lo = c[j] < lo ? c[j] : lo;
                hi = c[j] > hi ? c[j] : hi;
            }
            fs->imin[g] = lo;
            fs->imax[g] = hi;
        }
        /* distinct values, from the sorted permutation */
        size_t nd = 0;
        for (size_t j = 0; j < a->n_perm[i] && nd <= VS_ATTR_SUMMARY_MAX_VALUES; j++)
            nd += j == 0 || c[a->perm[i][j]] != c[a->perm[i][j - 1]];
        if (nd == 0 || nd > VS_ATTR_SUMMARY_MAX_VALUES)
            continue;
        fs->values = malloc(nd * sizeof(int64_t));
        fs->presence = calloc(nd * s->words, sizeof(uint64_t));
        if (!fs->values || !fs->presence)
            goto nomem;
        s->bytes += nd * (sizeof(int64_t) + s->words * sizeof(uint64_t));
        fs->n_values = 0;
        for (size_t j = 0; j < a->n_perm[i]; j++)
            if (j == 0 || c[a->perm[i][j]] != c[a->perm[i][j - 1]])
                fs->values[fs->n_values++] = c[a->perm[i][j]];
        for (size_t g = 0; g < n_groups; g++)
            for (size_t j = first[g]; j < first[g] + count[g]; j++) {
                if (c[j] == VS_ATTR_NULL_INT)
                    continue;
                size_t v = value_index(fs->values, fs->n_values, c[j]);
                fs->presence[v * s->words + g / 64] |= 1ull << (g % 64);
            }
    }
    *out = s;
    return VS_OK;
nomem:
    vs_attrs_summary_destroy(s);
    return vs_errf(err, VS_ERR_NOMEM, "attribute summaries: out of memory for %zu groups", n_groups);
}

size_t vs_filter_groups(const vs_filter_t *f, const vs_attrs_summary_t *s, uint64_t *out)
{
    const size_t words = s->words, ng = s->n_groups;
    for (size_t w = 0; w < words; w++)
        out[w] = ng - w * 64 >= 64 ? ~0ull : (1ull << (ng - w * 64)) - 1;
    uint64_t *tmp = NULL;
    for (size_t t = 0; t < f->n_terms; t++) {
        const vs_filter_cterm_t *x = &f->t[t];
        const field_summary_t *fs = &s->f[x->field];
        if (x->type == VS_ATTR_INT && x->kind == VS_FILTER_IN && fs->presence) {
            if (!tmp && !(tmp = malloc(words * sizeof *tmp)))
                continue; /* out of memory: the term narrows nothing (still correct) */
            memset(tmp, 0, words * sizeof *tmp);
            for (size_t j = 0; j < x->n_values; j++) {
                size_t v = value_index(fs->values, fs->n_values, x->values[j]);
                if (v == fs->n_values || fs->values[v] != x->values[j])
                    continue;
                const uint64_t *row = fs->presence + v * words;
                for (size_t w = 0; w < words; w++)
                    tmp[w] |= row[w];
            }
            for (size_t w = 0; w < words; w++)
                out[w] &= tmp[w];
            continue;
        }
        for (size_t g = 0; g < ng; g++) {
            if (!(out[g / 64] >> (g % 64) & 1))
                continue;
            int may;
            if (x->type == VS_ATTR_FLOAT) {
                may = !isnan(fs->fmin[g]) && (double)fs->fmax[g] >= x->lo && (double)fs->fmin[g] <= x->hi;
            } else if (x->kind == VS_FILTER_RANGE) {
                may = fs->imin[g] <= fs->imax[g] && fs->imax[g] >= x->ilo && fs->imin[g] <= x->ihi;
            } else { /* a set of values, no presence bitmap: the values' span */
                may = fs->imin[g] <= fs->imax[g] && fs->imax[g] >= x->values[0] &&
                      fs->imin[g] <= x->values[x->n_values - 1];
            }
            if (!may)
                out[g / 64] &= ~(1ull << (g % 64));
        }
    }
    free(tmp);
    size_t n = 0;
    for (size_t w = 0; w < words; w++)
        n += (size_t)__builtin_popcountll(out[w]);
    return n;
}

/* ---- id -> position (group_by) ------------------------------------------------------------------ */

static id_map_t *build_map(const vs_attrs_t *a, vs_attrs_ids_fn ids_fill, const void *arg)
{
    id_map_t *m = calloc(1, sizeof *m);
    int64_t *ids = malloc((a->n ? a->n : 1) * sizeof *ids);
    size_t slots = 16;
    while (slots < 2 * a->n)
        slots <<= 1;
    if (m) {
        m->mask = slots - 1;
        m->keys = malloc(slots * sizeof *m->keys);
        m->pos = malloc(slots * sizeof *m->pos);
    }
    if (m == NULL || ids == NULL || m->keys == NULL || m->pos == NULL) {
        free(ids);
        map_free(m);
        return NULL;
    }
    memset(m->keys, 0xff, slots * sizeof *m->keys);
    ids_fill(arg, ids);
    for (size_t j = 0; j < a->n; j++) {
        uint64_t h = vs_splitmix64((uint64_t)ids[j]) & m->mask;
        while (m->keys[h] != -1 && m->keys[h] != ids[j])
            h = (h + 1) & m->mask;
        m->keys[h] = ids[j];
        m->pos[h] = (uint32_t)j;
    }
    free(ids);
    return m;
}

vs_status vs_attrs_lookup_int(const vs_attrs_t *a, vs_attrs_ids_fn ids_fill, const void *arg, size_t field,
                              size_t n, const int64_t *ids, int64_t *out, char err[VS_ERR_LEN])
{
    vs_attrs_t *mut = (vs_attrs_t *)a;
    id_map_t *m = atomic_load_explicit(&mut->map, memory_order_acquire);
    if (m == NULL) {
        pthread_mutex_lock(&mut->map_mu);
        m = atomic_load_explicit(&mut->map, memory_order_acquire);
        if (m == NULL) {
            m = build_map(a, ids_fill, arg);
            if (m)
                atomic_store_explicit(&mut->map, m, memory_order_release);
        }
        pthread_mutex_unlock(&mut->map_mu);
        if (m == NULL)
            return vs_errf(err, VS_ERR_NOMEM, "group_by: out of memory for the id map of %zu items", a->n);
    }
    const int64_t *col = a->cols[field];
    for (size_t i = 0; i < n; i++) {
        out[i] = VS_ATTR_NULL_INT;
        if (ids[i] < 0)
            continue;
        uint64_t h = vs_splitmix64((uint64_t)ids[i]) & m->mask;
        while (m->keys[h] != -1) {
            if (m->keys[h] == ids[i]) {
                out[i] = col[m->pos[h]];
                break;
            }
            h = (h + 1) & m->mask;
        }
    }
    return VS_OK;
}
