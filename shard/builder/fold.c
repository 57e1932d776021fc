/* fold.c: the write log folded into a build's input (fold.h). */
#include "shard/builder/fold.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/vecio.h"
#include "common/ids.h"
#include "shard/server/applier.h"
#include "vecshard/v1/writelog.pb-c.h"

#define CHUNK_ROWS 65536

/* One id's write: order (its place among all writes), op, and for an upsert where its vector is. */
typedef struct entry {
    int64_t id;
    uint64_t order;
    int upsert;
    size_t vec; /* index into vecs (rows of dim floats) */
} entry_t;

struct vs_fold {
    uint32_t dim;
    char model[128];
    entry_t *e;
    size_t n, cap;
    float *vecs;
    size_t n_vecs, cap_vecs;
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
    free(f->last);
    free(f);
}

void vs_fold_counts(const vs_fold_t *f, vs_fold_counts_t *out)
{
    *out = f->c;
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t nc = *cap ? *cap : 1024;
    while (nc < need)
        nc *= 2;
    void *q = realloc(*p, nc * elem);
    if (!q)
        return -1;
    *p = q;
    *cap = nc;
    return 0;
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
    if (grow((void **)&f->e, &f->cap, f->n + w->n_ids, sizeof *f->e) ||
        (upsert && grow((void **)&f->vecs, &f->cap_vecs, (f->n_vecs + w->n_ids) * f->dim, sizeof *f->vecs))) {
        vecshard__v1__log_write__free_unpacked(w, NULL);
        return vs_errf(err, VS_ERR_NOMEM, "fold: no memory for %zu more writes", w->n_ids);
    }
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

vs_status vs_fold_write(vs_fold_t *f, const char *base_path, const char *ids_path, const char *out_base,
                        const char *out_ids, char err[VS_ERR_LEN])
{
    vs_status st = settle(f, err);
    if (st != VS_OK)
        return st;
    vs_vecfile_t *vf = NULL;
    vs_ids_file_t ids = {0};
    FILE *ob = NULL, *oi = NULL;
    float *chunk = NULL;
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
            f->c.kept++;
            f->c.written++;
        }
    }
    for (size_t i = 0; st == VS_OK && i < f->n_last; i++) {
        const entry_t *e = &f->last[i];
        if (!e->upsert)
            continue;
        if (put_row(ob, oi, f->vecs + e->vec * f->dim, f->dim, e->id) != 0)
            st = vs_errf(err, VS_ERR_IO, "fold: writing %s: %s", out_base, strerror(errno));
        f->c.written++;
    }
done:
    if (ob && fclose(ob) != 0 && st == VS_OK)
        st = vs_errf(err, VS_ERR_IO, "fold: closing %s: %s", out_base, strerror(errno));
    if (oi && fclose(oi) != 0 && st == VS_OK)
        st = vs_errf(err, VS_ERR_IO, "fold: closing %s: %s", out_ids, strerror(errno));
    free(chunk);
    vs_ids_file_close(&ids);
    vs_vecfile_close(vf);
    return st;
}
