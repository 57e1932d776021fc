/* applier.c: write-log messages into a replica's fresh state (applier.h). */
#include "shard/server/applier.h"

#include <stdlib.h>
#include <string.h>

#include "common/distance.h"
#include "common/hash.h"
#include "common/net/pbfilter.h"
#include "common/topk.h"

vs_applier_verdict vs_applier_judge(const Vecshard__V1__LogWrite *w, uint32_t dim, const char *model_version,
                                    char err[VS_ERR_LEN])
{
    int upsert = w->op == VECSHARD__V1__LOG_WRITE__OP__OP_UPSERT;
    if (!upsert && w->op != VECSHARD__V1__LOG_WRITE__OP__OP_DELETE) {
        vs_errf(err, VS_ERR_CORRUPT, "unknown log operation %d", (int)w->op);
        return VS_APPLY_REJECT;
    }
    /* the model before the vectors: another model may have another dimension */
    if (upsert && model_version && model_version[0] && strcmp(w->model_version, model_version) != 0)
        return VS_APPLY_OTHER_MODEL;
    if (vs_ids_check_write(w->ids, w->n_ids, err) != VS_OK) /* no memory to tell counts as a reject too */
        return VS_APPLY_REJECT;
    if (!upsert)
        return VS_APPLY;
    if (w->dim != dim) {
        vs_errf(err, VS_ERR_CORRUPT, "vectors of dimension %u for an index of dimension %u", w->dim, dim);
        return VS_APPLY_REJECT;
    }
    if (w->n_vectors != w->n_ids * (size_t)dim) {
        vs_errf(err, VS_ERR_CORRUPT, "%zu floats for %zu ids of dimension %u", w->n_vectors, w->n_ids, dim);
        return VS_APPLY_REJECT;
    }
    return vs_check_finite(w->vectors, w->n_ids, dim, "vector", err) == VS_OK ? VS_APPLY : VS_APPLY_REJECT;
}

vs_status vs_applier_apply(vs_fresh_t *f, const vs_applier_scope_t *sc, const uint8_t *msg, size_t len,
                           vs_applier_counts_t *c, char err[VS_ERR_LEN])
{
    Vecshard__V1__LogWrite *w = vecshard__v1__log_write__unpack(NULL, len, msg);
    if (!w) {
        c->rejected++;
        return vs_errf(err, VS_ERR_CORRUPT, "a %zu-byte log message does not decode as LogWrite", len);
    }
    vs_status st = VS_OK;
    int64_t *ids = NULL, *dels = NULL, *rows = NULL, *all_rows = NULL;
    float *x = NULL;
    size_t n_fields = 0;
    const vs_attr_field_t *fields = vs_fresh_fields(f, &n_fields);
    int32_t *lists = NULL;
    switch (vs_applier_judge(w, sc->dim, sc->model_version, err)) {
    case VS_APPLY_OTHER_MODEL:
        c->other_model++;
        goto done;
    case VS_APPLY_REJECT:
        st = VS_ERR_CORRUPT;
        goto done;
    case VS_APPLY:
        break;
    }
    size_t n = w->n_ids, nu = 0, nd = 0;
    ids = malloc(n * sizeof *ids);
    dels = malloc(n * sizeof *dels);
    if (w->op == VECSHARD__V1__LOG_WRITE__OP__OP_UPSERT) {
        x = malloc(n * sc->dim * sizeof *x);
        lists = sc->list_partition ? malloc(n * sizeof *lists) : NULL;
        if (n_fields) { /* the version's schema: columns of other fields or shapes count as missing */
            rows = malloc(n * n_fields * sizeof *rows);
            all_rows = malloc(n * n_fields * sizeof *all_rows);
            if (rows && all_rows)
                vs_attr_rows_from_pb(w->attributes, w->n_attributes, fields, n_fields, n, all_rows);
        }
    }
    if (!ids || !dels ||
        (w->op == VECSHARD__V1__LOG_WRITE__OP__OP_UPSERT &&
         (!x || (sc->list_partition && !lists) || (n_fields && (!rows || !all_rows))))) {
        st = vs_errf(err, VS_ERR_NOMEM, "no memory to apply a write of %zu ids", n);
        goto done;
    }
    if (w->op == VECSHARD__V1__LOG_WRITE__OP__OP_UPSERT && sc->list_partition) {
        st = vs_fresh_assign(f, n, w->vectors, lists, err);
        if (st != VS_OK)
            goto done;
    }
    uint64_t not_owned = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t id = w->ids[i];
        if (w->op == VECSHARD__V1__LOG_WRITE__OP__OP_DELETE) {
            if (sc->list_partition || vs_hash_partition(id, sc->n_partitions) == sc->partition)
                dels[nd++] = id;
            else
                not_owned++;
            continue;
        }
        int mine = sc->list_partition ? (lists[i] >= 0 && (uint32_t)lists[i] < sc->nlist &&
                                         sc->list_partition[lists[i]] == sc->partition)
                                      : vs_hash_partition(id, sc->n_partitions) == sc->partition;
        if (mine) {
            memcpy(x + nu * sc->dim, w->vectors + i * sc->dim, sc->dim * sizeof *x);
            if (lists)
                lists[nu] = lists[i]; /* compacted in place: nu <= i */
            if (rows)
                memcpy(rows + nu * n_fields, all_rows + i * n_fields, n_fields * sizeof *rows);
            ids[nu++] = id;
        } else if (sc->list_partition) {
            dels[nd++] = id; /* moved to another partition: hide any copy held here */
        } else {
            not_owned++;
        }
    }
    if (nd > 0 && nu > 0) {
        /* two calls (cluster partitions: upserts here, moves away): check that the new ids of both fit
         * before the first call changes anything, so that a full state refuses the message whole */
        int64_t *all = malloc((nu + nd) * sizeof *all);
        if (!all) {
            st = vs_errf(err, VS_ERR_NOMEM, "no memory to apply a write of %zu ids", n);
            goto done;
        }
        memcpy(all, ids, nu * sizeof *all);
        memcpy(all + nu, dels, nd * sizeof *all);
        st = vs_fresh_check_room(f, nu + nd, all, nu, err);
        free(all);
        if (st != VS_OK)
            goto done;
    }
    if (nu > 0)
        st = vs_fresh_upsert_attrs(f, nu, ids, x, lists, rows, err); /* lists: NULL (hash) or assigned */
    if (st == VS_OK && nd > 0)
        st = vs_fresh_delete(f, nd, dels, err);
    if (st == VS_OK) {
        c->upserted += nu;
        c->deleted += nd;
        c->not_owned += not_owned;
    }
done:
    if (st == VS_ERR_CORRUPT)
        c->rejected++;
    free(ids);
    free(dels);
    free(x);
    free(lists);
    free(rows);
    free(all_rows);
    vecshard__v1__log_write__free_unpacked(w, NULL);
    return st;
}
