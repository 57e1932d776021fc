/* fold.c: the write log folded into a build's input (fold.h). Each id's writes are kept in log order and
 * settled (sorted by id, the last one kept) at write time; the base and its attribute columns are streamed
 * in chunks beside each other, so an attribute value never leaves its row. */
#include "shard/builder/fold.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/grow.h"
#include "common/ids.h"
#include "common/net/pbfilter.h"
#include "common/vecio.h"
#include "shard/index/attrs.h"
#include "shard/server/applier.h"
#include "vecshard/v1/writelog.pb-c.h"

#define CHUNK_ROWS 65536

/* One id's write: order (its place among all writes), op, and for an upsert where its vector is. */
typedef struct entry {
    int64_t id;
    uint64_t order;
    int upsert;
    size_t vec; /* index into vecs (rows of dim floats) and rows (rows of n_fields slots) */
} entry_t;

struct vs_fold {
    uint32_t dim;
    char model[128];
    entry_t *e;
    size_t n, cap;
    float *vecs;
    size_t n_vecs, cap_vecs;
    vs_attr_field_t fields[VS_ATTR_MAX_FIELDS]; /* the schema; n_fields 0 = no attributes */
    size_t n_fields;
    int64_t *rows; /* per upsert, n_fields slots (attrs.h: int64, or a float's bit pattern) */
    size_t cap_rows;
    entry_t *last; /* per id, its last write, sorted by id (built by vs_fold_write) */
    size_t n_last;
    vs_fold_counts_t c;
};

vs_status vs_fold_create(uint32_t dim, const char *model_version, vs_fold_t **out, char err[VS_ERR_LEN])
{
    *out = NULL;
    if (dim == 0)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "fold: dimension 0");
    vs_fold_t *f = calloc(1, sizeof *f);
    if (!f)
        return vs_errf(err, VS_ERR_NOMEM, "fold: out of memory");
    f->dim = dim;
    snprintf(f->model, sizeof f->model, "%s", model_version ? model_version : "");
    *out = f;
    return VS_OK;
}

void vs_fold_destroy(vs_fold_t *f)
{
    if (!f)
        return;
    free(f->e);
    free(f->vecs);
    free(f->rows);
    free(f->last);
    free(f);
}

void vs_fold_counts(const vs_fold_t *f, vs_fold_counts_t *out)
{
    *out = f->c;
}

vs_status vs_fold_attrs_schema(const vs_builder_attr_t *attrs, size_t n_attrs, size_t n_rows,
                               vs_attr_field_t *out_fields, char err[VS_ERR_LEN])
{
    if (n_attrs > VS_ATTR_MAX_FIELDS)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "%zu attributes: at most %d --attr fields", n_attrs,
                       VS_ATTR_MAX_FIELDS);
    vs_attr_field_t fields[VS_ATTR_MAX_FIELDS];
    for (size_t i = 0; i < n_attrs; i++) {
        const vs_builder_attr_t *a = &attrs[i];
        if (!a->name || !a->path || !vs_attr_name_valid(a->name))
            return vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                           "--attr %.64s: not an attribute name (1..%d characters of [a-z0-9_], starting "
                           "with a letter)",
                           a->name ? a->name : "(null)", VS_ATTR_NAME_MAX);
        for (size_t j = 0; j < i; j++)
            if (strcmp(attrs[j].name, a->name) == 0)
                return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "--attr %s is given twice", a->name);
        char e[VS_ERR_LEN];
        vs_vecfile_t *vf = NULL;
        vs_status st = vs_vecfile_open_column(a->path, &vf, e);
        if (st != VS_OK)
            return vs_errf(err, st, "--attr %s: %s", a->name, e);
        vs_vecio_dtype t = vs_vecfile_dtype(vf);
        size_t n = vs_vecfile_count(vf);
        vs_vecfile_close(vf);
        if (n != n_rows)
            return vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                           "--attr %s=%s holds %zu values, the base has %zu rows", a->name, a->path, n,
                           n_rows);
        snprintf(fields[i].name, sizeof fields[i].name, "%s", a->name);
        fields[i].type =
            t == VS_DTYPE_F32 || t == VS_DTYPE_F64 ? VS_ATTR_FLOAT : VS_ATTR_INT; /* as the build */
    }
    if (n_attrs)
        memcpy(out_fields, fields, n_attrs * sizeof *fields);
    return VS_OK;
}

vs_status vs_fold_set_schema(vs_fold_t *f, const vs_attr_field_t *fields, size_t n_fields,
                             char err[VS_ERR_LEN])
{
    if (f->n > 0 || f->c.messages || f->c.other_model || f->c.rejected)
        return vs_errf(err, VS_ERR_FAILED_PRECONDITION, "fold: the schema comes before the first message");
    if (n_fields > VS_ATTR_MAX_FIELDS)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "fold: %zu attribute fields, at most %d", n_fields,
                       VS_ATTR_MAX_FIELDS);
    for (size_t i = 0; i < n_fields; i++) {
        if (!vs_attr_name_valid(fields[i].name) ||
            (fields[i].type != VS_ATTR_INT && fields[i].type != VS_ATTR_FLOAT))
            return vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                           "fold: attribute field %zu (%.64s) is not a valid field", i, fields[i].name);
        for (size_t j = 0; j < i; j++)
            if (strcmp(fields[j].name, fields[i].name) == 0)
                return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "fold: attribute field %s is given twice",
                               fields[i].name);
    }
    if (n_fields)
        memcpy(f->fields, fields, n_fields * sizeof *fields);
    f->n_fields = n_fields;
    return VS_OK;
}

vs_status vs_fold_add(vs_fold_t *f, const uint8_t *msg, size_t len, char err[VS_ERR_LEN])
{
    Vecshard__V1__LogWrite *w = vecshard__v1__log_write__unpack(NULL, len, msg);
    char why[VS_ERR_LEN];
    vs_applier_verdict v = w ? vs_applier_judge(w, f->dim, f->model, why) : VS_APPLY_REJECT;
    if (v != VS_APPLY) { /* what the replicas skip or reject, the fold skips too */
        if (v == VS_APPLY_OTHER_MODEL)
            f->c.other_model++;
        else
            f->c.rejected++;
        if (w)
            vecshard__v1__log_write__free_unpacked(w, NULL);
        return VS_OK;
    }
    int upsert = w->op == VECSHARD__V1__LOG_WRITE__OP__OP_UPSERT;
    if (vs_grow((void **)&f->e, &f->cap, f->n + w->n_ids, sizeof *f->e, 1024) ||
        (upsert &&
         vs_grow((void **)&f->vecs, &f->cap_vecs, (f->n_vecs + w->n_ids) * f->dim, sizeof *f->vecs, 1024)) ||
        (upsert && f->n_fields &&
         vs_grow((void **)&f->rows, &f->cap_rows, (f->n_vecs + w->n_ids) * f->n_fields, sizeof *f->rows,
                 1024))) {
        vecshard__v1__log_write__free_unpacked(w, NULL);
        return vs_errf(err, VS_ERR_NOMEM, "fold: no memory for %zu more writes", w->n_ids);
    }
    if (upsert && f->n_fields) /* the message's ids take the next rows, in order (below) */
        vs_attr_rows_from_pb(w->attributes, w->n_attributes, f->fields, f->n_fields, w->n_ids,
                             f->rows + f->n_vecs * f->n_fields);
    for (size_t i = 0; i < w->n_ids; i++) {
        entry_t *e = &f->e[f->n];
        e->id = w->ids[i];
        e->order = f->n++;
        e->upsert = upsert;
        if (upsert) {
            e->vec = f->n_vecs++;
            memcpy(f->vecs + e->vec * f->dim, w->vectors + i * f->dim, f->dim * sizeof(float));
        }
    }
    f->c.messages++;
    if (upsert)
        f->c.upserts += w->n_ids;
    else
        f->c.deletes += w->n_ids;
    vecshard__v1__log_write__free_unpacked(w, NULL);
    return VS_OK;
}

static int cmp_entry(const void *a, const void *b)
{
    const entry_t *x = a, *y = b;
    if (x->id != y->id)
        return x->id < y->id ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* f->last: each id's last write, sorted by id. */
static vs_status settle(vs_fold_t *f, char *err)
{
    free(f->last);
    f->last = malloc((f->n ? f->n : 1) * sizeof *f->last);
    if (!f->last)
        return vs_errf(err, VS_ERR_NOMEM, "fold: no memory for %zu writes", f->n);
    if (f->n) {
        memcpy(f->last, f->e, f->n * sizeof *f->last);
        qsort(f->last, f->n, sizeof *f->last, cmp_entry);
    }
    size_t m = 0;
    for (size_t i = 0; i < f->n; i++) {
        if (m > 0 && f->last[m - 1].id == f->last[i].id)
            f->last[m - 1] = f->last[i]; /* a later write of the same id wins */
        else
            f->last[m++] = f->last[i];
    }
    f->n_last = m;
    return VS_OK;
}

static const entry_t *find(const vs_fold_t *f, int64_t id)
{
    size_t lo = 0, hi = f->n_last;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (f->last[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < f->n_last && f->last[lo].id == id ? &f->last[lo] : NULL;
}

static int put_row(FILE *vf, FILE *idf, const float *v, uint32_t dim, int64_t id)
{
    int32_t d = (int32_t)dim;
    uint8_t le[8];
    for (int b = 0; b < 8; b++)
        le[b] = (uint8_t)((uint64_t)id >> (8 * b));
    return fwrite(&d, 4, 1, vf) == 1 && fwrite(v, sizeof(float), dim, vf) == dim && fwrite(le, 8, 1, idf) == 1
               ? 0
               : -1;
}

/* The schema's columns being folded: the base's (read a chunk at a time into buf) and the outputs. */
typedef struct cols {
    size_t n;
    vs_vecfile_t *in[VS_ATTR_MAX_FIELDS];
    vs_npy_writer_t *out[VS_ATTR_MAX_FIELDS];
    void *buf[VS_ATTR_MAX_FIELDS]; /* CHUNK_ROWS int64 or float values */
    size_t fill;                   /* values in buf waiting to be written */
} cols_t;

/* Checks attrs against f's schema and base_rows, opens them and the outputs DIR/NAME.npy. */
static vs_status cols_open(const vs_fold_t *f, const vs_builder_attr_t *attrs, size_t base_rows,
                           const char *dir, cols_t *c, char *err)
{
    if (!attrs || !dir)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "fold: %zu attribute fields but no %s", f->n_fields,
                       attrs ? "output directory" : "base columns");
    vs_attr_field_t got[VS_ATTR_MAX_FIELDS];
    vs_status st = vs_fold_attrs_schema(attrs, f->n_fields, base_rows, got, err);
    for (size_t j = 0; st == VS_OK && j < f->n_fields; j++)
        if (strcmp(got[j].name, f->fields[j].name) != 0 || got[j].type != f->fields[j].type)
            st = vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                         "fold: --attr %s=%s is %s field %s, the fold's field %zu is %s %s", attrs[j].name,
                         attrs[j].path, vs_attr_type_name(got[j].type), got[j].name, j,
                         vs_attr_type_name(f->fields[j].type), f->fields[j].name);
    if (st != VS_OK)
        return st;
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return vs_errf(err, VS_ERR_IO, "fold: cannot create %s: %s", dir, strerror(errno));
    c->n = f->n_fields;
    for (size_t j = 0; st == VS_OK && j < c->n; j++) {
        char e[VS_ERR_LEN], path[PATH_MAX];
        if ((st = vs_vecfile_open_column(attrs[j].path, &c->in[j], e)) != VS_OK) {
            vs_errf(err, st, "--attr %s: %s", attrs[j].name, e);
            break;
        }
        if (snprintf(path, sizeof path, "%s/%s.npy", dir, f->fields[j].name) >= (int)sizeof path) {
            st = vs_errf(err, VS_ERR_INVALID_ARGUMENT, "fold: %s/%s.npy: path too long", dir,
                         f->fields[j].name);
            break;
        }
        int is_int = f->fields[j].type == VS_ATTR_INT;
        if ((st = vs_npy_writer_open(path, is_int ? VS_DTYPE_I64 : VS_DTYPE_F32, 1, &c->out[j], e)) !=
            VS_OK) {
            vs_errf(err, st, "fold: %s", e);
            break;
        }
        c->buf[j] = malloc((size_t)CHUNK_ROWS * (is_int ? sizeof(int64_t) : sizeof(float)));
        if (!c->buf[j])
            st = vs_errf(err, VS_ERR_NOMEM, "fold: out of memory for attribute %s", f->fields[j].name);
    }
    return st;
}

/* Reads rows [r0, r0 + m) of every base column into the start of its buffer (fill must be 0). */
static vs_status cols_read(const vs_fold_t *f, const vs_builder_attr_t *attrs, cols_t *c, size_t r0, size_t m,
                           char *err)
{
    for (size_t j = 0; j < c->n; j++) {
        char e[VS_ERR_LEN];
        vs_status st = f->fields[j].type == VS_ATTR_INT ? vs_vecfile_read_i64(c->in[j], r0, m, c->buf[j], e)
                                                        : vs_vecfile_read_f32(c->in[j], r0, m, c->buf[j], e);
        if (st != VS_OK)
            return vs_errf(err, st, "--attr %s: %s", attrs[j].name, e);
    }
    return VS_OK;
}

/* Moves value i of every buffer to the next output place (fill <= i: a kept base row of the chunk read),
 * or, row non-NULL, appends an upsert's slots (the caller flushes a full buffer). */
static void cols_keep(const vs_fold_t *f, cols_t *c, size_t i, const int64_t *row)
{
    if (c->n == 0)
        return;
    for (size_t j = 0; j < c->n; j++) {
        if (f->fields[j].type == VS_ATTR_INT) {
            int64_t *b = c->buf[j];
            b[c->fill] = row ? row[j] : b[i];
        } else {
            float *b = c->buf[j];
            b[c->fill] = row ? vs_attr_slot_float(row[j]) : b[i];
        }
    }
    c->fill++;
}

static vs_status cols_flush(cols_t *c, char *err)
{
    for (size_t j = 0; j < c->n; j++) {
        vs_status st = vs_npy_writer_put(c->out[j], c->buf[j], c->fill, err);
        if (st != VS_OK)
            return st;
    }
    c->fill = 0;
    return VS_OK;
}

/* Closes the inputs; commits the outputs (ok) or removes them. */
static vs_status cols_close(cols_t *c, int ok, char *err)
{
    vs_status st = VS_OK;
    for (size_t j = 0; j < VS_ATTR_MAX_FIELDS; j++) {
        vs_vecfile_close(c->in[j]);
        if (ok && c->out[j] && st == VS_OK)
            st = vs_npy_writer_close(c->out[j], err);
        else
            vs_npy_writer_discard(c->out[j]);
        free(c->buf[j]);
    }
    memset(c, 0, sizeof *c);
    return st;
}

vs_status vs_fold_write(vs_fold_t *f, const char *base_path, const char *ids_path,
                        const vs_builder_attr_t *attrs, const char *out_base, const char *out_ids,
                        const char *out_attr_dir, char err[VS_ERR_LEN])
{
    vs_status st = settle(f, err);
    if (st != VS_OK)
        return st;
    vs_vecfile_t *vf = NULL;
    vs_ids_file_t ids = {0};
    FILE *ob = NULL, *oi = NULL;
    float *chunk = NULL;
    cols_t cols = {0};
    st = vs_vecfile_open(base_path, &vf, err);
    if (st != VS_OK)
        return st;
    size_t n = vs_vecfile_count(vf);
    if (vs_vecfile_dim(vf) != f->dim) {
        st = vs_errf(err, VS_ERR_INVALID_ARGUMENT, "fold: %s has dimension %u, the log's writes %u",
                     base_path, vs_vecfile_dim(vf), f->dim);
        goto done;
    }
    if (ids_path) {
        st = vs_ids_file_open(ids_path, &ids, err);
        if (st == VS_OK && ids.n != n)
            st = vs_errf(err, VS_ERR_INVALID_ARGUMENT, "fold: %s has %zu ids for %zu rows of %s", ids_path,
                         ids.n, n, base_path);
        if (st != VS_OK)
            goto done;
    }
    if (f->n_fields && (st = cols_open(f, attrs, n, out_attr_dir, &cols, err)) != VS_OK)
        goto done;
    ob = fopen(out_base, "wb");
    oi = fopen(out_ids, "wb");
    chunk = malloc((size_t)CHUNK_ROWS * f->dim * sizeof *chunk);
    if (!ob || !oi || !chunk) {
        st = vs_errf(err, chunk ? VS_ERR_IO : VS_ERR_NOMEM, "fold: cannot write %s / %s: %s", out_base,
                     out_ids, strerror(errno));
        goto done;
    }
    f->c.base_rows = n;
    for (size_t r0 = 0; r0 < n && st == VS_OK; r0 += CHUNK_ROWS) {
        size_t m = n - r0 < CHUNK_ROWS ? n - r0 : CHUNK_ROWS;
        st = vs_vecfile_read_f32(vf, r0, m, chunk, err);
        if (st == VS_OK)
            st = cols_read(f, attrs, &cols, r0, m, err);
        for (size_t i = 0; st == VS_OK && i < m; i++) {
            int64_t id = ids_path ? vs_ids_file_get(&ids, r0 + i) : (int64_t)(r0 + i);
            const entry_t *e = find(f, id);
            if (e) {
                if (e->upsert)
                    f->c.replaced++;
                else
                    f->c.removed++;
                continue;
            }
            if (put_row(ob, oi, chunk + i * f->dim, f->dim, id) != 0)
                st = vs_errf(err, VS_ERR_IO, "fold: writing %s: %s", out_base, strerror(errno));
            cols_keep(f, &cols, i, NULL);
            f->c.kept++;
            f->c.written++;
        }
        if (st == VS_OK)
            st = cols_flush(&cols, err);
    }
    for (size_t i = 0; st == VS_OK && i < f->n_last; i++) {
        const entry_t *e = &f->last[i];
        if (!e->upsert)
            continue;
        if (put_row(ob, oi, f->vecs + e->vec * f->dim, f->dim, e->id) != 0)
            st = vs_errf(err, VS_ERR_IO, "fold: writing %s: %s", out_base, strerror(errno));
        if (cols.n)
            cols_keep(f, &cols, 0, f->rows + e->vec * f->n_fields);
        if (st == VS_OK && cols.fill == CHUNK_ROWS)
            st = cols_flush(&cols, err);
        f->c.written++;
    }
    if (st == VS_OK)
        st = cols_flush(&cols, err);
done:
    if (ob && fclose(ob) != 0 && st == VS_OK)
        st = vs_errf(err, VS_ERR_IO, "fold: closing %s: %s", out_base, strerror(errno));
    if (oi && fclose(oi) != 0 && st == VS_OK)
        st = vs_errf(err, VS_ERR_IO, "fold: closing %s: %s", out_ids, strerror(errno));
    vs_status cst = cols_close(&cols, st == VS_OK, err);
    if (st == VS_OK)
        st = cst;
    free(chunk);
    vs_ids_file_close(&ids);
    vs_vecfile_close(vf);
    return st;
}
