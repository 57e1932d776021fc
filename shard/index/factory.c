/* factory.c: FAISS index_factory strings -> vs_factory_spec_t, search parameter strings, and the
 * vs_index_t dispatch over the index types. Parameters that do not apply to an index type (nprobe on
 * Flat, efSearch on IVF) are refused rather than ignored: a silently ignored knob is a benchmark bug. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/topk.h"
#include "shard/index/flat.h"
#include "shard/index/hnsw.h"
#include "shard/index/index.h"
#include "shard/index/index_impl.h"
#include "shard/index/ivf.h"
#include "common/parallel.h"

/* Reads a decimal number at *p within [lo, hi]; advances *p. */
static int read_uint(const char **p, uint32_t lo, uint32_t hi, uint32_t *out)
{
    if (!isdigit((unsigned char)**p))
        return 0;
    char *end;
    errno = 0;
    unsigned long v = strtoul(*p, &end, 10);
    if (errno != 0 || v < lo || v > hi)
        return 0;
    *p = end;
    *out = (uint32_t)v;
    return 1;
}

static int eat(const char **p, const char *tok)
{
    size_t n = strlen(tok);
    if (strncmp(*p, tok, n) != 0)
        return 0;
    *p += n;
    return 1;
}

vs_status vs_factory_parse(const char *factory, vs_factory_spec_t *out, char err[VS_ERR_LEN])
{
    vs_factory_spec_t s = {0};
    const char *p = factory;
    if (eat(&p, "Flat")) {
        s.type = VS_INDEX_FLAT;
    } else if (eat(&p, "IVF")) {
        s.type = VS_INDEX_IVF;
        if (!read_uint(&p, 1, 1u << 24, &s.nlist))
            goto bad;
        if (!eat(&p, ","))
            goto bad;
        if (eat(&p, "Flat")) {
            s.codec = VS_CODEC_FLAT;
        } else if (eat(&p, "SQ8")) {
            s.codec = VS_CODEC_SQ8;
        } else if (eat(&p, "PQ")) {
            s.codec = VS_CODEC_PQ;
            s.pq_nbits = 8;
            if (!read_uint(&p, 1, 65536, &s.pq_m))
                goto bad;
            /* "np" (FAISS: no polysemous training) is accepted and changes nothing: we never do it */
            if (eat(&p, "x4fsnp") || eat(&p, "x4fs")) {
                s.pq_nbits = 4;
                s.fastscan = 1;
            } else if (eat(&p, "x8np") || eat(&p, "x8") || eat(&p, "np")) {
                s.pq_nbits = 8;
            } else if (eat(&p, "x4")) {
                goto bad; /* 4-bit codes exist only in the fast-scan layout */
            }
        } else {
            goto bad;
        }
        if (eat(&p, ",RFlat"))
            s.refine = VS_REFINE_FLAT;
        else if (eat(&p, ",RSQ8"))
            s.refine = VS_REFINE_SQ8;
    } else if (eat(&p, "HNSW")) {
        s.type = VS_INDEX_HNSW;
        s.codec = VS_CODEC_FLAT;
        if (!read_uint(&p, 2, 256, &s.hnsw_m))
            goto bad;
        if (eat(&p, ",SQ8"))
            s.codec = VS_CODEC_SQ8;
        else
            eat(&p, ",Flat");
    } else {
        goto bad;
    }
    if (*p != '\0')
        goto bad;
    *out = s;
    return VS_OK;
bad:
    return vs_errf(
        err, VS_ERR_INVALID_ARGUMENT,
        "bad index factory string '%s' near '%s' (supported: Flat, IVF{nlist},Flat, IVF{nlist},PQ{m}, "
        "IVF{nlist},PQ{m}x4fs, each optionally ,RFlat or ,RSQ8; HNSW{M}, HNSW{M},SQ8)",
        factory, p);
}

void vs_factory_format(const vs_factory_spec_t *spec, char *buf, size_t n)
{
    switch (spec->type) {
    case VS_INDEX_FLAT:
        snprintf(buf, n, "Flat");
        return;
    case VS_INDEX_HNSW:
        snprintf(buf, n, "HNSW%u%s", spec->hnsw_m, spec->codec == VS_CODEC_SQ8 ? ",SQ8" : "");
        return;
    case VS_INDEX_IVF: {
        char codec[32];
        if (spec->codec == VS_CODEC_PQ)
            snprintf(codec, sizeof codec, "PQ%u%s", spec->pq_m, spec->fastscan ? "x4fs" : "");
        else
            snprintf(codec, sizeof codec, "%s", spec->codec == VS_CODEC_SQ8 ? "SQ8" : "Flat");
        const char *refine = spec->refine == VS_REFINE_FLAT  ? ",RFlat"
                             : spec->refine == VS_REFINE_SQ8 ? ",RSQ8"
                                                             : "";
        snprintf(buf, n, "IVF%u,%s%s", spec->nlist, codec, refine);
        return;
    }
    }
    snprintf(buf, n, "?");
}

vs_status vs_search_params_parse(const char *s, vs_search_params_t *out, char err[VS_ERR_LEN])
{
    vs_search_params_t r = {0};
    const char *p = s;
    while (*p != '\0') {
        const char *eq = strchr(p, '=');
        const char *end = strchr(p, ',');
        if (end == NULL)
            end = p + strlen(p);
        if (eq == NULL || eq > end)
            return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "search parameter '%.*s' is not name=value",
                           (int)(end - p), p);
        size_t nlen = (size_t)(eq - p);
        char val[64];
        size_t vlen = (size_t)(end - eq - 1);
        if (vlen == 0 || vlen >= sizeof val)
            return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "search parameter '%.*s' has no usable value",
                           (int)(end - p), p);
        memcpy(val, eq + 1, vlen);
        val[vlen] = '\0';
        char *vend;
        errno = 0;
        if (nlen == 6 && strncmp(p, "nprobe", 6) == 0) {
            unsigned long v = strtoul(val, &vend, 10);
            if (*vend != '\0' || errno || v == 0 || v > (1u << 24))
                return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "nprobe '%s' must be an integer in 1..16777216",
                               val);
            r.nprobe = (uint32_t)v;
        } else if ((nlen == 8 && strncmp(p, "efSearch", 8) == 0) ||
                   (nlen == 9 && strncmp(p, "ef_search", 9) == 0)) {
            unsigned long v = strtoul(val, &vend, 10);
            if (*vend != '\0' || errno || v == 0 || v > 1000000)
                return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "efSearch '%s' must be an integer in 1..1000000",
                               val);
            r.ef_search = (uint32_t)v;
        } else if (nlen == 8 && strncmp(p, "k_factor", 8) == 0) {
            float v = strtof(val, &vend);
            if (*vend != '\0' || errno || !(v >= 1.0f && v <= 10000.0f))
                return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "k_factor '%s' must be a number in 1..10000",
                               val);
            r.k_factor = v;
        } else {
            return vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                           "unknown search parameter '%.*s' (known: nprobe, efSearch, k_factor)", (int)nlen,
                           p);
        }
        p = *end ? end + 1 : end;
    }
    *out = r;
    return VS_OK;
}

/* ---- vs_index_t --------------------------------------------------------------------------------- */

struct vs_index {
    vs_factory_spec_t spec;
    uint32_t dim;
    vs_metric metric;
    const vs_index_ops_t *ops;
    void *impl;
    vs_ifile_t *file; /* mapping of a loaded index, closed after impl is destroyed */
    char model_version[128];
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
    if (st != VS_OK) {
        vs_ifile_writer_abort(w);
        return st;
    }
    return vs_ifile_writer_commit(w, &hdr, err);
}

vs_status vs_index_load(const char *path, vs_index_t **out, char err[VS_ERR_LEN])
{
    vs_ifile_t *f;
    vs_status st = vs_ifile_open(path, &f, err);
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
        st = vs_ivf_load(f, path, &spec, (vs_ivf_t **)&idx->impl, err);
        break;
    case VS_INDEX_HNSW:
        idx->ops = &vs_hnsw_ops;
        st = vs_hnsw_load(f, path, &spec, (vs_hnsw_t **)&idx->impl, err);
        break;
    default:
        st = vs_errf(err, VS_ERR_UNSUPPORTED, "%s: loading %s indexes is not supported", path, h->factory);
        break;
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
    return vs_ivf_add_lists(idx->impl, n, x, ids, lists, n_threads ? n_threads : vs_parallel_cpus(), progress,
                            err);
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
    if (params->k_factor != 0 && idx->spec.refine == VS_REFINE_NONE &&
        !(idx->spec.type == VS_INDEX_HNSW && idx->spec.codec == VS_CODEC_SQ8))
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "k_factor applies to indexes with a refine stage only");
    vs_status st = vs_check_finite(q, nq, idx->dim, "query", err);
    if (st != VS_OK)
        return st;
    return idx->ops->search(idx->impl, nq, q, k, params, n_threads ? n_threads : vs_parallel_cpus(), out_dist,
                            out_ids, err);
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
    return idx->ops->memory_bytes(idx->impl);
}
