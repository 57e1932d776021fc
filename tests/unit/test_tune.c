/* test_tune: per-version search defaults (shard/builder/tune.h). A version built with a recall target gets
 * search_defaults in its manifest whose measured recall is what the partitions really give on the stored
 * tune queries, reaches the target, and is minimal (one nprobe step smaller misses it); a shard serves a
 * query without parameters exactly as with the defaults given explicitly; an HNSW version gets efSearch. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cluster/manifest.h"
#include "common/topk.h"
#include "common/vecio.h"
#include "shard/builder/builder.h"
#include "shard/builder/tune.h"
#include "shard/index/index.h"
#include "shard/server/shard.h"
#include "tests/testlib.h"
#include "vecshard/v1/shard.pb-c.h"

#define T "tune"
#define N 20000
#define D 32
#define TARGET 0.9

static char base[PATH_MAX];

/* recall@k of the version with params on its stored tune queries (every partition searched, merged). */
static double recall_with(const vs_manifest_t *m, const vs_search_params_t *sp)
{
    char err[VS_ERR_LEN], path[PATH_MAX + 64];
    size_t nq, ng;
    uint32_t qd, k;
    float *q = NULL;
    int32_t *gt32 = NULL;
    snprintf(path, sizeof path, "%s/tune-queries.fvecs", m->dir);
    CHECK(vs_vecfile_load_f32(path, &nq, &qd, &q, err) == VS_OK);
    snprintf(path, sizeof path, "%s/tune-gt.ivecs", m->dir);
    CHECK(vs_vecfile_load_i32(path, &ng, &k, &gt32, err) == VS_OK && ng == nq);
    int64_t *gt = malloc(nq * k * sizeof *gt);
    for (size_t i = 0; gt && i < nq * k; i++)
        gt[i] = gt32[i];
    float *dist = malloc(m->n_partitions * nq * k * sizeof *dist), *md = malloc(nq * k * sizeof *md);
    int64_t *ids = malloc(m->n_partitions * nq * k * sizeof *ids), *mi = malloc(nq * k * sizeof *mi);
    for (uint32_t p = 0; p < m->n_partitions; p++) {
        vs_index_t *idx = NULL;
        vs_manifest_path(m, m->partitions[p].file, path, err);
        CHECK(vs_index_load(path, &idx, err) == VS_OK);
        CHECKF(idx &&
                   vs_index_search(idx, nq, q, k, sp, 1, dist + p * nq * k, ids + p * nq * k, err) == VS_OK,
               "%s", err);
        vs_index_destroy(idx);
    }
    for (size_t i = 0; i < nq; i++) {
        vs_topk_list_t l[8];
        for (uint32_t p = 0; p < m->n_partitions && p < 8; p++)
            l[p] = (vs_topk_list_t){dist + (p * nq + i) * k, ids + (p * nq + i) * k, k};
        CHECK(vs_topk_merge(l, m->n_partitions, 0, k, md + i * k, mi + i * k, err) == VS_OK);
    }
    double r = vs_tune_recall(mi, gt, nq, k);
    free(q);
    free(gt32);
    free(gt);
    free(dist);
    free(md);
    free(ids);
    free(mi);
    return r;
}

static void build(const char *factory, const char *version, vs_manifest_t *m)
{
    char err[VS_ERR_LEN], path[PATH_MAX];
    vs_builder_opts_t o = {.base_path = base,
                           .metric = VS_METRIC_L2,
                           .factory = factory,
                           .n_partitions = 2,
                           .partitioning = VS_PARTITION_HASH,
                           .out_dir = vs_test_tmpdir(T),
                           .version = version,
                           .seed = 3,
                           .n_threads = 2,
                           .build_time_unix = 1,
                           .target_recall = TARGET,
                           .tune_n = 200};
    CHECKF(vs_builder_run(&o, NULL, err) == VS_OK, "%s", err);
    snprintf(path, sizeof path, "%s/%s/manifest.json", vs_test_tmpdir(T), version);
    CHECKF(vs_manifest_load(path, m, err) == VS_OK, "%s", err);
}

static void test_ivf(void)
{
    vs_manifest_t m;
    build("IVF64,PQ8x4fs,RFlat", "ivf", &m);
    const vs_search_defaults_t *d = &m.defaults;
    printf("  IVF64,PQ8x4fs,RFlat: nprobe %u, k_factor %g, measured recall@%u %.4f (target %.2f)\n",
           d->nprobe, d->k_factor, d->k, d->measured_recall, TARGET);
    CHECK(d->present && d->k == 10 && d->n_queries == 200 && strcmp(d->source, "base-sample") == 0);
    CHECK(d->nprobe >= 1 && d->nprobe <= 64 && d->k_factor >= 1 && d->ef_search == 0);
    CHECK(d->measured_recall >= TARGET);
    vs_search_params_t sp = {.nprobe = d->nprobe, .k_factor = d->k_factor};
    double r = recall_with(&m, &sp);
    CHECKF(r == d->measured_recall, "recorded %.6f, measured again %.6f", d->measured_recall, r);
    if (d->nprobe > 1) { /* minimal: the step below misses the target with the same k_factor */
        uint32_t below =
            d->nprobe <= 4 ? d->nprobe - 1 : (d->nprobe % 4 == 0 ? d->nprobe / 4 * 3 : d->nprobe / 3 * 2);
        vs_search_params_t lo = {.nprobe = below, .k_factor = d->k_factor};
        double rl = recall_with(&m, &lo);
        CHECKF(rl < TARGET, "nprobe %u already gives %.4f", below, rl);
    }
    /* a shard serves a query without parameters with the version's defaults */
    char err[VS_ERR_LEN], mpath[PATH_MAX + 32];
    snprintf(mpath, sizeof mpath, "%s/manifest.json", m.dir);
    vs_shard_t *sh = NULL;
    vs_shard_opts_t so = {.replica_id = "t"};
    CHECK(vs_shard_create(&so, &sh, err) == VS_OK && vs_shard_load(sh, mpath, 0, NULL, err) == VS_OK &&
          vs_shard_activate(sh, "ivf", err) == VS_OK);
    float q[D];
    for (int i = 0; i < D; i++)
        q[i] = (float)i / D;
    Vecshard__V1__ShardSearchResponse *resp[2] = {NULL, NULL};
    for (int with = 0; with < 2; with++) {
        Vecshard__V1__ShardSearchRequest req = VECSHARD__V1__SHARD_SEARCH_REQUEST__INIT;
        Vecshard__V1__SearchParams p = VECSHARD__V1__SEARCH_PARAMS__INIT;
        req.dim = D;
        req.queries = q;
        req.n_queries = D;
        req.k = 10;
        if (with) {
            p.nprobe = d->nprobe;
            p.k_factor = d->k_factor;
            req.params = &p;
        }
        uint8_t buf[4096], *out = NULL;
        size_t len = vecshard__v1__shard_search_request__pack(&req, buf), olen = 0;
        CHECK(vs_shard_search_pb(sh, buf, len, &out, &olen, err) == VS_OK);
        resp[with] = vecshard__v1__shard_search_response__unpack(NULL, olen, out);
        free(out);
    }
    CHECK(resp[0] && resp[1] && resp[0]->applied_params && resp[0]->applied_params->nprobe == d->nprobe &&
          resp[0]->applied_params->k_factor == d->k_factor && resp[0]->n_ids == resp[1]->n_ids &&
          memcmp(resp[0]->ids, resp[1]->ids, resp[0]->n_ids * sizeof(int64_t)) == 0);
    for (int i = 0; i < 2; i++)
        if (resp[i])
            vecshard__v1__shard_search_response__free_unpacked(resp[i], NULL);
    vs_shard_destroy(sh);
    vs_manifest_fini(&m);
}

static void test_hnsw(void)
{
    vs_manifest_t m;
    build("HNSW16", "hnsw", &m);
    const vs_search_defaults_t *d = &m.defaults;
    printf("  HNSW16: efSearch %u, measured recall@10 %.4f\n", d->ef_search, d->measured_recall);
    CHECK(d->present && d->nprobe == 0 && d->ef_search >= 10 && d->measured_recall >= TARGET);
    vs_search_params_t sp = {.ef_search = d->ef_search};
    CHECK(recall_with(&m, &sp) == d->measured_recall);
    vs_manifest_fini(&m);
}

int main(void)
{
    char err[VS_ERR_LEN];
    float *x = malloc((size_t)N * D * sizeof *x);
    vs_test_clustered(x, N, D, 20, 2.0f, 5, 6);
    snprintf(base, sizeof base, "%s/base.fvecs", vs_test_tmpdir(T));
    CHECK(vs_vecio_write_fvecs(base, N, D, x, err) == VS_OK);
    free(x);
    RUN(test_ivf);
    RUN(test_hnsw);
    if (vs_test_failures == 0)
        vs_test_cleanup(T);
    return vs_test_finish();
}
