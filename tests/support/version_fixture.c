/* version_fixture.c: see version_fixture.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/topk.h"
#include "shard/index/index.h"
#include "common/cluster/manifest.h"
#include "tests/support/version_fixture.h"

#include "vecshard/v1/writelog.pb-c.h"
#include "tests/testlib.h"

void vs_test_version_partition_path(const vs_test_version_t *v, uint32_t p, char buf[PATH_MAX])
{
    if (snprintf(buf, PATH_MAX, "%s/part-%u.vsidx", v->dir, p) >= PATH_MAX)
        buf[0] = 0;
}

vs_status vs_test_version_build(const char *dir, const char *version, const char *factory, vs_metric metric,
                                size_t n, uint32_t d, uint32_t n_partitions, size_t nq, uint64_t seed,
                                vs_test_version_t *out, char err[VS_ERR_LEN])
{
    memset(out, 0, sizeof *out);
    if (snprintf(out->dir, sizeof out->dir, "%s/%s", dir, version) >= (int)sizeof out->dir ||
        snprintf(out->manifest, sizeof out->manifest, "%s/manifest.json", out->dir) >=
            (int)sizeof out->manifest)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "path too long");
    mkdir(dir, 0755);
    if (mkdir(out->dir, 0755) != 0 && errno != EEXIST)
        return vs_errf(err, VS_ERR_IO, "mkdir %s: %s", out->dir, strerror(errno));
    out->n = n;
    out->nq = nq;
    out->dim = d;
    out->n_partitions = n_partitions;
    out->metric = metric;
    out->base = malloc(n * d * sizeof(float));
    out->queries = malloc(nq * d * sizeof(float));
    float *part = malloc(n * d * sizeof(float));
    int64_t *ids = malloc(n * sizeof(int64_t));
    vs_manifest_t m;
    memset(&m, 0, sizeof m);
    m.partitions = calloc(n_partitions, sizeof *m.partitions);
    if (!out->base || !out->queries || !part || !ids || !m.partitions) {
        free(part);
        free(ids);
        free(m.partitions);
        return vs_errf(err, VS_ERR_NOMEM, "out of memory");
    }
    /* base and queries from the same clusters: queries are perturbed base points */
    vs_test_clustered(out->base, n, d, 32, 0.15f, seed, seed + 1);
    uint64_t rng = seed * 7919 + 1;
    for (size_t q = 0; q < nq; q++) {
        size_t src = (size_t)(vs_test_rand(&rng) % n);
        for (uint32_t j = 0; j < d; j++)
            out->queries[q * d + j] = out->base[src * d + j] + 0.05f * vs_test_randf(&rng);
    }
    snprintf(m.version, sizeof m.version, "%s", version);
    snprintf(m.model_version, sizeof m.model_version, "test-model-1");
    m.metric = metric;
    m.dim = d;
    snprintf(m.factory, sizeof m.factory, "%s", factory);
    snprintf(m.partitioning, sizeof m.partitioning, "hash");
    m.n_partitions = n_partitions;
    vs_status st = VS_OK;
    for (uint32_t p = 0; p < n_partitions && st == VS_OK; p++) {
        size_t np = 0;
        for (size_t i = 0; i < n; i++)
            if (i % n_partitions == p) {
                memcpy(part + np * d, out->base + i * d, d * sizeof(float));
                ids[np++] = (int64_t)i;
            }
        vs_index_t *idx = NULL;
        char path[PATH_MAX];
        vs_test_version_partition_path(out, p, path);
        st = vs_index_create(d, metric, factory, &idx, err);
        if (st == VS_OK)
            st = vs_index_train(idx, np, part, 1, NULL, err);
        if (st == VS_OK)
            st = vs_index_add(idx, np, part, ids, 1, NULL, err);
        if (st == VS_OK)
            st = vs_index_save(idx, path, m.model_version, 1700000000, err);
        vs_index_destroy(idx);
        vs_manifest_partition_t *mp = &m.partitions[p];
        mp->id = p;
        snprintf(mp->file, sizeof mp->file, "part-%u.vsidx", p);
        mp->n_vectors = np;
        mp->has_crc32c = 1;
        if (st == VS_OK)
            st = vs_file_crc32c(path, &mp->size_bytes, &mp->crc32c, err);
        vs_index_t *back = NULL; /* the content id, as vecshard-build records it */
        if (st == VS_OK && (st = vs_index_load(path, &back, err)) == VS_OK) {
            char trained[17];
            vs_index_ids(back, mp->content_id, trained, NULL);
            vs_index_destroy(back);
        }
    }
    if (st == VS_OK)
        st = vs_manifest_write(out->manifest, &m, err);
    free(m.partitions);
    free(part);
    free(ids);
    if (st != VS_OK)
        vs_test_version_fini(out);
    return st;
}

void vs_test_version_fini(vs_test_version_t *v)
{
    free(v->base);
    free(v->queries);
    v->base = v->queries = NULL;
}

vs_status vs_test_version_search(const vs_test_version_t *v, const float *q, size_t nq, size_t k,
                                 const vs_search_params_t *params, float *out_dist, int64_t *out_ids,
                                 char err[VS_ERR_LEN])
{
    const uint32_t P = v->n_partitions;
    float *pd = malloc((size_t)P * nq * k * sizeof(float));
    int64_t *pi = malloc((size_t)P * nq * k * sizeof(int64_t));
    vs_topk_list_t *lists = malloc(P * sizeof *lists);
    vs_status st = pd && pi && lists ? VS_OK : vs_errf(err, VS_ERR_NOMEM, "out of memory");
    for (uint32_t p = 0; st == VS_OK && p < P; p++) {
        char path[PATH_MAX];
        vs_test_version_partition_path(v, p, path);
        vs_index_t *idx = NULL;
        st = vs_index_load(path, &idx, err);
        if (st == VS_OK)
            st = vs_index_search(idx, nq, q, k, params, 1, pd + (size_t)p * nq * k, pi + (size_t)p * nq * k,
                                 err);
        vs_index_destroy(idx);
    }
    for (size_t i = 0; st == VS_OK && i < nq; i++) {
        for (uint32_t p = 0; p < P; p++)
            lists[p] = (vs_topk_list_t){pd + ((size_t)p * nq + i) * k, pi + ((size_t)p * nq + i) * k, k};
        st = vs_topk_merge(lists, P, vs_metric_larger_is_better(v->metric), k, out_dist + i * k,
                           out_ids + i * k, err);
    }
    free(pd);
    free(pi);
    free(lists);
    return st;
}

uint8_t *vs_test_log_write(int op, const int64_t *ids, size_t n, const float *x, uint32_t dim,
                           const char *model, const char *write_id, size_t *len)
{
    Vecshard__V1__LogWrite w = VECSHARD__V1__LOG_WRITE__INIT;
    w.op = op;
    w.ids = (int64_t *)ids;
    w.n_ids = n;
    if (x) {
        w.dim = dim;
        w.vectors = (float *)x;
        w.n_vectors = n * dim;
    }
    w.model_version = (char *)(model ? model : "");
    w.write_id = (char *)(write_id ? write_id : "");
    *len = vecshard__v1__log_write__get_packed_size(&w);
    uint8_t *b = malloc(*len ? *len : 1);
    if (b)
        vecshard__v1__log_write__pack(&w, b);
    return b;
}
