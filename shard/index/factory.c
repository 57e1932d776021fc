/* factory.c: the vs_index_t dispatch over the index types (the factory and parameter strings are
 * parsed in common/factory.c). Parameters that do not apply to an index type (nprobe on
 * Flat, efSearch on IVF) are refused rather than ignored: a silently ignored knob is a benchmark bug. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/crc32c.h"
#include "common/topk.h"
#include "shard/index/attrs.h"
#include "shard/index/flat.h"
#include "shard/index/ifile.h"
#include "shard/index/refine_disk.h"
#include "shard/index/hnsw.h"
#include "shard/index/exact.h"
#include "shard/index/index.h"
#include "shard/index/index_impl.h"
#include "shard/index/ivf.h"
#include "common/parallel.h"

/* ---- vs_index_t --------------------------------------------------------------------------------- */

struct vs_index {
    vs_factory_spec_t spec;
    uint32_t dim;
    vs_metric metric;
    const vs_index_ops_t *ops;
    void *impl;
    vs_ifile_t *file; /* mapping of a loaded index, closed after impl is destroyed */
    char model_version[128];
    vs_attrs_t *attrs; /* item attributes in item order (NULL: none); columns may point into file */
};

vs_status vs_index_create(uint32_t dim, vs_metric metric, const char *factory, vs_index_t **out,
                          char err[VS_ERR_LEN])
{
    vs_factory_spec_t spec;
    vs_status st = vs_factory_parse(factory, &spec, err);
    if (st != VS_OK)
        return st;
    if (dim == 0 || dim > 65536)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "dim %u is out of range 1..65536", dim);
    if (metric != VS_METRIC_L2 && metric != VS_METRIC_IP && metric != VS_METRIC_COSINE)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "unknown metric %d", (int)metric);
    vs_index_t *idx = calloc(1, sizeof *idx);
    if (idx == NULL)
        return vs_errf(err, VS_ERR_NOMEM, "index: out of memory");
    idx->spec = spec;
    idx->dim = dim;
    idx->metric = metric;
    switch (spec.type) {
    case VS_INDEX_FLAT:
        idx->ops = &vs_flat_ops;
        st = vs_flat_create(dim, metric, (vs_flat_t **)&idx->impl, err);
        break;
    case VS_INDEX_IVF:
        idx->ops = &vs_ivf_ops;
        st = vs_ivf_create(dim, metric, &spec, (vs_ivf_t **)&idx->impl, err);
        break;
    case VS_INDEX_HNSW:
        idx->ops = &vs_hnsw_ops;
        st = vs_hnsw_create(dim, metric, &spec, (vs_hnsw_t **)&idx->impl, err);
        break;
    default:
        st = vs_errf(err, VS_ERR_UNSUPPORTED, "index type '%s' is parsed but not built", factory);
        break;
    }
    if (st != VS_OK) {
        free(idx);
        return st;
    }
    *out = idx;
    return VS_OK;
}

vs_status vs_index_clone_empty(const vs_index_t *trained, vs_index_t **out, char err[VS_ERR_LEN])
{
    if (trained->spec.type != VS_INDEX_IVF) {
        char factory[64];
        vs_factory_format(&trained->spec, factory, sizeof factory);
        return vs_index_create(trained->dim, trained->metric, factory, out, err);
    }
    vs_index_t *idx = calloc(1, sizeof *idx);
    if (idx == NULL)
        return vs_errf(err, VS_ERR_NOMEM, "index: out of memory");
    idx->spec = trained->spec;
    idx->dim = trained->dim;
    idx->metric = trained->metric;
    idx->ops = &vs_ivf_ops;
    vs_status st = vs_ivf_clone_empty(trained->impl, (vs_ivf_t **)&idx->impl, err);
    if (st != VS_OK) {
        free(idx);
        return st;
    }
    *out = idx;
    return VS_OK;
}

void vs_index_destroy(vs_index_t *idx)
{
    if (idx == NULL)
        return;
    idx->ops->destroy(idx->impl);
    vs_attrs_destroy(idx->attrs);
    vs_ifile_close(idx->file);
    free(idx);
}

vs_status vs_index_save(const vs_index_t *idx, const char *path, const char *model_version,
                        uint64_t build_time_unix, char err[VS_ERR_LEN])
{
    if (idx->ops->save == NULL)
        return vs_errf(err, VS_ERR_UNSUPPORTED, "%s: %s indexes are not saved to files", path,
                       idx->spec.type == VS_INDEX_FLAT ? "Flat" : "these");
    if (vs_index_needs_training(idx))
        return vs_errf(err, VS_ERR_FAILED_PRECONDITION, "%s: cannot save an untrained index", path);
    char factory[64];
    vs_factory_format(&idx->spec, factory, sizeof factory);
    vs_ifile_header_t hdr;
    vs_status st =
        vs_ifile_header_init(&hdr, idx->spec.type, idx->metric, idx->dim, factory, model_version, err);
    if (st != VS_OK)
        return st;
    hdr.n_vectors = vs_index_count(idx);
    hdr.build_time_unix = build_time_unix;
    vs_ifile_writer_t *w;
    st = vs_ifile_writer_open(path, &w, err);
    if (st != VS_OK)
        return st;
    st = idx->ops->save(idx->impl, w, hdr.params, err);
    if (st == VS_OK && idx->attrs)
        st = vs_attrs_save(idx->attrs, w, err);
    if (st != VS_OK) {
        vs_ifile_writer_abort(w);
        return st;
    }
    return vs_ifile_writer_commit(w, &hdr, err);
}

vs_status vs_index_load(const char *path, vs_index_t **out, char err[VS_ERR_LEN])
{
    return vs_index_load_opts(path, NULL, out, err);
}

/* The sections a refine-on-disk load leaves unread (vs_ifile_open_lazy). */
static const char *const lazy_refine[] = {"refine.flat", "refine.sq8", NULL};

vs_status vs_index_load_opts(const char *path, const vs_index_load_opts_t *o, vs_index_t **out,
                             char err[VS_ERR_LEN])
{
    const int on_disk = o && o->refine_on_disk;
    vs_ifile_t *f;
    vs_status st = vs_ifile_open_lazy(path, on_disk ? lazy_refine : NULL, &f, err);
    if (st != VS_OK)
        return st;
    const vs_ifile_header_t *h = vs_ifile_header(f);
    vs_factory_spec_t spec;
    char perr[VS_ERR_LEN];
    if (vs_factory_parse(h->factory, &spec, perr) != VS_OK || spec.type != h->index_type) {
        vs_ifile_close(f);
        return vs_errf(err, VS_ERR_CORRUPT, "%s: header factory string '%s' does not describe a %s index",
                       path, h->factory,
                       h->index_type == VS_INDEX_IVF    ? "IVF"
                       : h->index_type == VS_INDEX_HNSW ? "HNSW"
                                                        : "known");
    }
    vs_index_t *idx = calloc(1, sizeof *idx);
    if (idx == NULL) {
        vs_ifile_close(f);
        return vs_errf(err, VS_ERR_NOMEM, "%s: out of memory", path);
    }
    idx->spec = spec;
    idx->dim = h->dim;
    idx->metric = h->metric;
    snprintf(idx->model_version, sizeof idx->model_version, "%s", h->model_version);
    switch (spec.type) {
    case VS_INDEX_IVF:
        idx->ops = &vs_ivf_ops;
        st = vs_ivf_load(f, path, &spec, on_disk, (vs_ivf_t **)&idx->impl, err);
        break;
    case VS_INDEX_HNSW:
        idx->ops = &vs_hnsw_ops;
        st = vs_hnsw_load(f, path, &spec, (vs_hnsw_t **)&idx->impl, err);
        break;
    default:
        st = vs_errf(err, VS_ERR_UNSUPPORTED, "%s: loading %s indexes is not supported", path, h->factory);
        break;
    }
    if (st == VS_OK) {
        st = vs_attrs_load(f, path, idx->ops->count(idx->impl), &idx->attrs, err);
        if (st == VS_OK && idx->attrs && idx->ops->attach_attrs)
            st = idx->ops->attach_attrs(idx->impl, idx->attrs, err);
        if (st != VS_OK)
            vs_attrs_destroy(idx->attrs);
        if (st != VS_OK)
            idx->ops->destroy(idx->impl);
    }
    if (st != VS_OK) {
        vs_ifile_close(f);
        free(idx);
        return st;
    }
    idx->file = f;
    *out = idx;
    return VS_OK;
}

void vs_index_ids(const vs_index_t *idx, char content_id[17], char trained_id[17], uint32_t *centroids_crc)
{
    content_id[0] = trained_id[0] = 0;
    if (centroids_crc)
        *centroids_crc = 0;
    if (!idx->file)
        return;
    vs_ifile_content_id(idx->file, content_id);
    static const char *const trained[] = {"ivf.centroids", "pq.codebooks", "sq8.params"};
    char factory[64];
    vs_factory_format(&idx->spec, factory, sizeof factory);
    uint32_t a = vs_crc32c(0, factory, strlen(factory)), b = vs_crc32c(0x9e3779b9u, factory, strlen(factory));
    for (size_t i = 0; i < sizeof trained / sizeof *trained; i++) {
        uint32_t crc;
        if (vs_ifile_section_crc(idx->file, trained[i], &crc, NULL) != VS_OK)
            continue;
        if (i == 0 && centroids_crc)
            *centroids_crc = crc;
        unsigned char e[20] = {0};
        memcpy(e, trained[i], strlen(trained[i]));
        memcpy(e + 16, &crc, 4);
        a = vs_crc32c(a, e, sizeof e);
        b = vs_crc32c(b, e, sizeof e);
    }
    snprintf(trained_id, 17, "%08x%08x", a, b);
}

vs_status vs_index_set_build_params(vs_index_t *idx, uint32_t ef_construction, uint64_t seed,
                                    char err[VS_ERR_LEN])
{
    if (idx->spec.type != VS_INDEX_HNSW)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                       "build parameters (efConstruction, seed) apply to HNSW only");
    return vs_hnsw_set_build(idx->impl, ef_construction, seed, err);
}

const struct vs_hnsw *vs_index_impl_hnsw(const vs_index_t *idx)
{
    return idx->spec.type == VS_INDEX_HNSW ? idx->impl : NULL;
}

const struct vs_ivf *vs_index_impl_ivf(const vs_index_t *idx)
{
    return idx->spec.type == VS_INDEX_IVF ? idx->impl : NULL;
}

const char *vs_index_model_version(const vs_index_t *idx)
{
    return idx->model_version;
}

size_t vs_index_mapped_bytes(const vs_index_t *idx)
{
    return idx->file ? vs_ifile_mapped_bytes(idx->file) : 0;
}

int vs_index_needs_training(const vs_index_t *idx)
{
    return idx->ops->needs_training(idx->impl);
}

vs_status vs_index_train(vs_index_t *idx, size_t n, const float *x, size_t n_threads,
                         const vs_progress_cb_t *progress, char err[VS_ERR_LEN])
{
    vs_status st = vs_check_finite(x, n, idx->dim, "training vector", err);
    if (st != VS_OK)
        return st;
    return idx->ops->train(idx->impl, n, x, n_threads ? n_threads : vs_parallel_cpus(), progress, err);
}

vs_status vs_index_add(vs_index_t *idx, size_t n, const float *x, const int64_t *ids, size_t n_threads,
                       const vs_progress_cb_t *progress, char err[VS_ERR_LEN])
{
    if (vs_index_needs_training(idx))
        return vs_errf(err, VS_ERR_FAILED_PRECONDITION, "index must be trained before vectors are added");
    if (idx->attrs)
        return vs_errf(err, VS_ERR_FAILED_PRECONDITION, "vectors are added before attributes are attached");
    return idx->ops->add(idx->impl, n, x, ids, n_threads ? n_threads : vs_parallel_cpus(), progress, err);
}

vs_status vs_index_add_lists(vs_index_t *idx, size_t n, const float *x, const int64_t *ids,
                             const int32_t *lists, size_t n_threads, const vs_progress_cb_t *progress,
                             char err[VS_ERR_LEN])
{
    if (idx->spec.type != VS_INDEX_IVF)
        return vs_errf(err, VS_ERR_UNSUPPORTED, "vectors can be added to given lists of IVF indexes only");
    if (vs_index_needs_training(idx))
        return vs_errf(err, VS_ERR_FAILED_PRECONDITION, "index must be trained before vectors are added");
    if (idx->attrs)
        return vs_errf(err, VS_ERR_FAILED_PRECONDITION, "vectors are added before attributes are attached");
    return vs_ivf_add_lists(idx->impl, n, x, ids, lists, n_threads ? n_threads : vs_parallel_cpus(), progress,
                            err);
}

int vs_index_refine_disk_stats(const vs_index_t *idx, vs_refine_disk_stats_t *out)
{
    return idx->spec.type == VS_INDEX_IVF ? vs_ivf_refine_disk_stats(idx->impl, out) : 0;
}

vs_status vs_index_verify_lazy(const vs_index_t *idx, double bytes_per_s, const volatile int *stop,
                               char err[VS_ERR_LEN])
{
    vs_status st = VS_OK;
    for (size_t i = 0; idx->file && lazy_refine[i] && st == VS_OK; i++)
        if ((st = vs_ifile_verify_section(idx->file, lazy_refine[i], bytes_per_s, stop, err)) == VS_ERR_NOT_FOUND)
            st = VS_OK; /* the index has the other refine section, or none */
    return st;
}

vs_status vs_index_append_list(vs_index_t *dst, const vs_index_t *src, uint32_t list, const uint32_t *pos,
                               size_t n, char err[VS_ERR_LEN])
{
    if (dst->spec.type != VS_INDEX_IVF || src->spec.type != VS_INDEX_IVF)
        return vs_errf(err, VS_ERR_UNSUPPORTED, "list entries can be appended between IVF indexes only");
    if (dst->attrs)
        return vs_errf(err, VS_ERR_FAILED_PRECONDITION, "vectors are added before attributes are attached");
    return vs_ivf_append_list(dst->impl, src->impl, list, pos, n, err);
}

void vs_index_append_done(vs_index_t *idx)
{
    if (idx->spec.type == VS_INDEX_IVF)
        vs_ivf_append_done(idx->impl);
}

vs_status vs_index_search_exact(const vs_index_t *idx, size_t nq, const float *q, size_t k, size_t n_threads,
                                float *out_dist, int64_t *out_ids, char err[VS_ERR_LEN])
{
    size_t n = idx->ops->exact_segs ? idx->ops->exact_segs(idx->impl, NULL, 0) : 0;
    if (n == 0) {
        char fac[128];
        vs_factory_format(&idx->spec, fac, sizeof fac);
        return vs_errf(err, VS_ERR_UNSUPPORTED,
                       "index %s keeps no exact vectors (quantised codes only): exact search needs IVF,Flat, an "
                       "RFlat refine, HNSW or Flat",
                       fac);
    }
    vs_exact_seg_t *segs = malloc(n * sizeof *segs);
    if (!segs)
        return vs_errf(err, VS_ERR_NOMEM, "exact search: out of memory");
    n = idx->ops->exact_segs(idx->impl, segs, n);
    vs_status st = vs_exact_search(idx->metric, idx->dim, segs, n, nq, q, k, n_threads, out_dist, out_ids, err);
    free(segs);
    return st;
}

vs_status vs_index_search(const vs_index_t *idx, size_t nq, const float *q, size_t k,
                          const vs_search_params_t *params, size_t n_threads, float *out_dist,
                          int64_t *out_ids, char err[VS_ERR_LEN])
{
    static const vs_search_params_t defaults;
    if (params == NULL)
        params = &defaults;
    if (k == 0 || k > VS_TOPK_MAX_K)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "k = %zu is out of range 1..%u", k, VS_TOPK_MAX_K);
    if (params->nprobe != 0 && idx->spec.type != VS_INDEX_IVF)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "nprobe applies to IVF indexes only");
    if (params->ef_search != 0 && idx->spec.type != VS_INDEX_HNSW)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "efSearch applies to HNSW indexes only");
    if (params->quantizer_ef_search != 0 && idx->spec.type != VS_INDEX_IVF)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "quantizer_efSearch applies to IVF indexes only");
    if (params->k_factor != 0 && idx->spec.refine == VS_REFINE_NONE &&
        !(idx->spec.type == VS_INDEX_HNSW && idx->spec.codec == VS_CODEC_SQ8))
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "k_factor applies to indexes with a refine stage only");
    if (vs_filter_active(params->filter) && params->filter->attrs != idx->attrs)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                       "the filter was compiled for another index's attributes");
    if (params->filter_exact < 0.0f || params->filter_exact > 1.0f)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "filter_exact_threshold %g is out of range (0, 1]",
                       (double)params->filter_exact);
    vs_status st = vs_check_finite(q, nq, idx->dim, "query", err);
    if (st != VS_OK)
        return st;
    return idx->ops->search(idx->impl, nq, q, k, params, n_threads ? n_threads : vs_parallel_cpus(), out_dist,
                            out_ids, err);
}

vs_status vs_index_set_attrs(vs_index_t *idx, vs_attrs_t *a, char err[VS_ERR_LEN])
{
    if (a && vs_attrs_count(a) != vs_index_count(idx)) {
        size_t n = vs_attrs_count(a);
        vs_attrs_destroy(a);
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "attributes of %zu items for an index of %zu", n,
                       vs_index_count(idx));
    }
    if (idx->ops->attach_attrs) {
        vs_status st = idx->ops->attach_attrs(idx->impl, a, err);
        if (st != VS_OK) {
            vs_attrs_destroy(a);
            return st;
        }
    }
    vs_attrs_destroy(idx->attrs);
    idx->attrs = a;
    return VS_OK;
}

const vs_attrs_t *vs_index_attrs(const vs_index_t *idx)
{
    return idx->attrs;
}

void vs_index_ids_in_order(const vs_index_t *idx, int64_t *out)
{
    idx->ops->ids_in_order(idx->impl, out);
}

static void fill_ids(const void *arg, int64_t *out)
{
    vs_index_ids_in_order(arg, out);
}

vs_status vs_index_group_values(const vs_index_t *idx, size_t field, size_t n, const int64_t *ids,
                                int64_t *out, char err[VS_ERR_LEN])
{
    if (idx->attrs == NULL || field >= vs_attrs_n_fields(idx->attrs) ||
        vs_attrs_fields(idx->attrs)[field].type != VS_ATTR_INT)
        return vs_errf(err, VS_ERR_FAILED_PRECONDITION, "group_by: the index has no such integer attribute");
    return vs_attrs_lookup_int(idx->attrs, fill_ids, idx, field, n, ids, out, err);
}

size_t vs_index_count(const vs_index_t *idx)
{
    return idx->ops->count(idx->impl);
}

uint32_t vs_index_dim(const vs_index_t *idx)
{
    return idx->dim;
}

vs_metric vs_index_metric(const vs_index_t *idx)
{
    return idx->metric;
}

const vs_factory_spec_t *vs_index_spec(const vs_index_t *idx)
{
    return &idx->spec;
}

size_t vs_index_memory_bytes(const vs_index_t *idx)
{
    return idx->ops->memory_bytes(idx->impl) + vs_attrs_memory_bytes(idx->attrs);
}
