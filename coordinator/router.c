/* router.c: see router.h. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "common/crc32c.h"
#include "common/factory.h"
#include "common/topk.h"
#include "common/vecio.h"
#include "coordinator/router.h"

vs_status vs_router_init_hash(vs_router_t *r, vs_metric metric, uint32_t dim, uint32_t n_partitions,
                              char err[VS_ERR_LEN])
{
    if (n_partitions == 0 || n_partitions > 65536 || dim == 0)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "router: %u partitions, dim %u", n_partitions, dim);
    memset(r, 0, sizeof *r);
    r->metric = metric;
    r->dim = dim;
    r->n_partitions = n_partitions;
    return VS_OK;
}

/* Copies the centroids and prepares the coarse quantizer over them. */
static vs_status set_quantizer(vs_router_t *r, uint32_t nlist, const float *centroids, uint32_t hnsw_m,
                               char err[VS_ERR_LEN])
{
    vs_status st = vs_check_finite(centroids, nlist, r->dim, "centroid", err);
    if (st != VS_OK)
        return st;
    r->centroids = malloc((size_t)nlist * r->dim * sizeof(float));
    if (!r->centroids)
        return vs_errf(err, VS_ERR_NOMEM, "router: out of memory");
    memcpy(r->centroids, centroids, (size_t)nlist * r->dim * sizeof(float));
    r->nlist = nlist;
    return vs_coarse_init(&r->coarse, r->metric, r->dim, nlist, r->centroids, hnsw_m, err);
}

vs_status vs_router_init_cluster(vs_router_t *r, vs_metric metric, uint32_t dim, uint32_t n_partitions,
                                 uint32_t nlist, const float *centroids, const uint32_t *list_partition,
                                 uint32_t coarse_hnsw_m, char err[VS_ERR_LEN])
{
    vs_status st = vs_router_init_hash(r, metric, dim, n_partitions, err);
    if (st != VS_OK)
        return st;
    if (nlist == 0 || !centroids || !list_partition)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                       "router: cluster partitioning needs centroids and a list map");
    for (uint32_t l = 0; l < nlist; l++)
        if (list_partition[l] >= n_partitions)
            return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "router: list %u maps to partition %u of %u", l,
                           list_partition[l], n_partitions);
    r->list_partition = malloc((size_t)nlist * sizeof(uint32_t));
    if (!r->list_partition)
        return vs_errf(err, VS_ERR_NOMEM, "router: out of memory");
    memcpy(r->list_partition, list_partition, (size_t)nlist * sizeof(uint32_t));
    st = set_quantizer(r, nlist, centroids, coarse_hnsw_m, err);
    if (st != VS_OK)
        vs_router_fini(r);
    return st;
}

vs_status vs_router_init_hash_ivf(vs_router_t *r, vs_metric metric, uint32_t dim, uint32_t n_partitions,
                                  uint32_t nlist, const float *centroids, uint32_t coarse_hnsw_m,
                                  char err[VS_ERR_LEN])
{
    vs_status st = vs_router_init_hash(r, metric, dim, n_partitions, err);
    if (st != VS_OK)
        return st;
    if (nlist == 0 || !centroids)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "router: a shared quantizer needs its centroids");
    st = set_quantizer(r, nlist, centroids, coarse_hnsw_m, err);
    if (st != VS_OK)
        vs_router_fini(r);
    return st;
}

void vs_router_fini(vs_router_t *r)
{
    if (!r)
        return;
    vs_coarse_fini(&r->coarse);
    free(r->centroids);
    free(r->list_partition);
    r->centroids = NULL;
    r->list_partition = NULL;
    r->nlist = 0;
}

void vs_route_plan_fini(vs_route_plan_t *p)
{
    if (!p)
        return;
    for (size_t t = 0; t < p->n_parts; t++) {
        free(p->parts[t].query_idx);
        free(p->parts[t].lists);
    }
    free(p->parts);
    free(p->lists);
    memset(p, 0, sizeof *p);
}

static vs_status plan_cluster(const vs_router_t *r, size_t nq, const float *q, uint32_t nprobe, uint32_t qef,
                              vs_route_plan_t *out, char err[VS_ERR_LEN])
{
    const uint32_t P = r->n_partitions;
    int32_t *lists = malloc(nq * nprobe * sizeof(int32_t));
    size_t *count = calloc(P, sizeof(size_t));
    vs_status st = VS_OK;
    if (!lists || !count) {
        st = vs_errf(err, VS_ERR_NOMEM, "router: out of memory");
        goto done;
    }
    st = vs_coarse_probe_n(&r->coarse, nq, q, nprobe, qef, 0, lists, err);
    if (st != VS_OK)
        goto done;
    /* queries per partition: a query goes to each partition owning at least one of its lists */
    for (size_t i = 0; i < nq; i++)
        for (uint32_t j = 0; j < nprobe; j++) {
            int32_t l = lists[i * nprobe + j];
            if (l < 0)
                continue;
            uint32_t p = r->list_partition[l];
            int first = 1;
            for (uint32_t jj = 0; jj < j; jj++) {
                int32_t l2 = lists[i * nprobe + jj];
                if (l2 >= 0 && r->list_partition[l2] == p)
                    first = 0;
            }
            count[p] += first;
        }
    size_t n_parts = 0;
    for (uint32_t p = 0; p < P; p++)
        n_parts += count[p] > 0;
    out->parts = calloc(n_parts ? n_parts : 1, sizeof *out->parts);
    if (!out->parts) {
        st = vs_errf(err, VS_ERR_NOMEM, "router: out of memory");
        goto done;
    }
    out->n_parts = n_parts;
    uint32_t *part_of = malloc(P * sizeof(uint32_t)); /* partition -> slot */
    if (!part_of) {
        st = vs_errf(err, VS_ERR_NOMEM, "router: out of memory");
        goto done;
    }
    for (uint32_t p = 0, t = 0; p < P; p++) {
        part_of[p] = UINT32_MAX;
        if (!count[p])
            continue;
        vs_route_part_t *part = &out->parts[t];
        part->partition = p;
        part->query_idx = malloc(count[p] * sizeof(uint32_t));
        part->lists = malloc(count[p] * nprobe * sizeof(int32_t));
        if (!part->query_idx || !part->lists) {
            st = vs_errf(err, VS_ERR_NOMEM, "router: out of memory");
            break;
        }
        part_of[p] = t++;
    }
    for (size_t i = 0; st == VS_OK && i < nq; i++)
        for (uint32_t j = 0; j < nprobe; j++) {
            int32_t l = lists[i * nprobe + j];
            if (l < 0)
                continue;
            vs_route_part_t *part = &out->parts[part_of[r->list_partition[l]]];
            if (part->nq == 0 || part->query_idx[part->nq - 1] != i) { /* first list of query i here */
                part->query_idx[part->nq] = (uint32_t)i;
                for (uint32_t jj = 0; jj < nprobe; jj++)
                    part->lists[part->nq * nprobe + jj] = -1;
                part->nq++;
            }
            part->lists[(part->nq - 1) * nprobe + j] = l;
        }
    free(part_of);
done:
    free(lists);
    free(count);
    return st;
}

vs_status vs_router_plan(const vs_router_t *r, size_t nq, const float *q, uint32_t nprobe,
                         vs_route_plan_t *out, char err[VS_ERR_LEN])
{
    return vs_router_plan_ef(r, nq, q, nprobe, 0, out, err);
}

/* out->parts: every partition, with all nq queries in order. */
static vs_status all_parts(const vs_router_t *r, size_t nq, vs_route_plan_t *out, char *err)
{
    out->parts = calloc(r->n_partitions, sizeof *out->parts);
    if (!out->parts)
        return vs_errf(err, VS_ERR_NOMEM, "router: out of memory");
    out->n_parts = r->n_partitions;
    for (uint32_t p = 0; p < r->n_partitions; p++) {
        out->parts[p].partition = p;
        out->parts[p].nq = nq;
    }
    return VS_OK;
}

vs_status vs_router_plan_ef(const vs_router_t *r, size_t nq, const float *q, uint32_t nprobe, uint32_t qef,
                            vs_route_plan_t *out, char err[VS_ERR_LEN])
{
    memset(out, 0, sizeof *out);
    out->nq = nq;
    if (nq == 0)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "router: empty batch");
    if (nprobe == 0)
        nprobe = 1;
    if (r->nlist && nprobe > r->nlist)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "nprobe = %u is above nlist = %u", nprobe, r->nlist);
    if (!r->list_partition) { /* hash: every partition, with the lists when they are ranked here */
        if (r->nlist) {
            out->lists = malloc(nq * nprobe * sizeof(int32_t));
            if (!out->lists)
                return vs_errf(err, VS_ERR_NOMEM, "router: out of memory");
            vs_status st = vs_coarse_probe_n(&r->coarse, nq, q, nprobe, qef, 0, out->lists, err);
            if (st != VS_OK) {
                vs_route_plan_fini(out);
                return st;
            }
            out->lists_per_query = nprobe;
        }
        vs_status st = all_parts(r, nq, out, err);
        if (st != VS_OK)
            vs_route_plan_fini(out);
        return st;
    }
    out->lists_per_query = nprobe;
    vs_status st = plan_cluster(r, nq, q, nprobe, qef, out, err);
    if (st != VS_OK)
        vs_route_plan_fini(out);
    return st;
}

vs_status vs_router_plan_all(const vs_router_t *r, size_t nq, vs_route_plan_t *out, char err[VS_ERR_LEN])
{
    memset(out, 0, sizeof *out);
    out->nq = nq;
    if (nq == 0)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "router: empty batch");
    return all_parts(r, nq, out, err);
}

vs_status vs_route_merge(const vs_route_plan_t *plan, size_t k, int larger_is_better,
                         const float *const *part_dist, const int64_t *const *part_ids, const int *answered,
                         float *out_dist, int64_t *out_ids, char err[VS_ERR_LEN])
{
    const size_t nq = plan->nq, T = plan->n_parts;
    vs_topk_list_t *lists = malloc((T ? T : 1) * nq * sizeof *lists);
    size_t *n_lists = calloc(nq, sizeof(size_t));
    if (!lists || !n_lists) {
        free(lists);
        free(n_lists);
        return vs_errf(err, VS_ERR_NOMEM, "merge: out of memory");
    }
    for (size_t t = 0; t < T; t++) {
        if (!answered[t])
            continue;
        const vs_route_part_t *part = &plan->parts[t];
        for (size_t j = 0; j < part->nq; j++) {
            size_t i = part->query_idx ? part->query_idx[j] : j;
            vs_topk_list_t *l = &lists[i * T + n_lists[i]++];
            l->dist = part_dist[t] + j * k;
            l->ids = part_ids[t] + j * k;
            l->len = k;
        }
    }
    vs_status st = VS_OK;
    for (size_t i = 0; i < nq && st == VS_OK; i++)
        st = vs_topk_merge(lists + i * T, n_lists[i], larger_is_better, k, out_dist + i * k, out_ids + i * k,
                           err);
    free(lists);
    free(n_lists);
    return st;
}

/* The version's centroids file, checked against the manifest's CRC32C, nlist and dim and against the
 * floats the partitions were built with; *out (nlist*dim, malloc'd). */
static vs_status load_centroids(const vs_manifest_t *m, float **out, char err[VS_ERR_LEN])
{
    char cpath[PATH_MAX];
    vs_status st = vs_manifest_path(m, m->centroids_file, cpath, err);
    if (st != VS_OK)
        return st;
    if (m->has_centroids_crc32c) { /* the file as written */
        uint64_t size;
        uint32_t crc;
        st = vs_file_crc32c(cpath, &size, &crc, err);
        if (st == VS_OK && crc != m->centroids_crc32c)
            st = vs_errf(err, VS_ERR_CORRUPT, "%s: CRC32C 0x%08x, the manifest says 0x%08x", cpath, crc,
                         m->centroids_crc32c);
        if (st != VS_OK)
            return st;
    }
    size_t n;
    uint32_t d;
    float *cent = NULL;
    st = vs_vecfile_load_f32(cpath, &n, &d, &cent, err);
    if (st != VS_OK)
        return st;
    uint32_t dcrc = 0;
    if (n != m->nlist || d != m->dim)
        st = vs_errf(err, VS_ERR_CORRUPT, "%s: %zu x %u centroids, the manifest says nlist %u, dim %u", cpath,
                     n, d, m->nlist, m->dim);
    else if (m->has_centroids_data_crc32c &&
             (dcrc = vs_crc32c(0, cent, n * d * sizeof(float))) != m->centroids_data_crc32c)
        /* the floats the shards' ivf.centroids sections hold: routing with other centroids would send
         * queries to the wrong lists and lose recall without a single error */
        st = vs_errf(err, VS_ERR_CORRUPT,
                     "%s: centroid data CRC32C 0x%08x, the partitions were built with 0x%08x (the manifest's "
                     "centroids_data_crc32c): these are not the version's centroids",
                     cpath, dcrc, m->centroids_data_crc32c);
    if (st != VS_OK) {
        free(cent);
        return st;
    }
    *out = cent;
    return VS_OK;
}

/* Router of a cluster-partitioned version (spec: its factory, parsed): its centroids and the list ->
 * partition map from the partitions' list ids. */
static vs_status cluster_router(const vs_manifest_t *m, const vs_factory_spec_t *spec, vs_router_t *r,
                                char err[VS_ERR_LEN])
{
    float *cent = NULL;
    vs_status st = load_centroids(m, &cent, err);
    if (st != VS_OK)
        return st;
    const size_t n = m->nlist;
    uint32_t *lp = malloc(n * sizeof *lp);
    if (!lp)
        st = vs_errf(err, VS_ERR_NOMEM, "router: out of memory");
    if (st == VS_OK) {
        for (size_t l = 0; l < n; l++)
            lp[l] = UINT32_MAX;
        for (uint32_t p = 0; p < m->n_partitions; p++)
            for (uint32_t j = 0; j < m->partitions[p].n_lists; j++) {
                uint32_t l = m->partitions[p].lists[j];
                if (l < n)
                    lp[l] = m->partitions[p].id;
            }
        for (size_t l = 0; l < n && st == VS_OK; l++)
            if (lp[l] == UINT32_MAX)
                st = vs_errf(err, VS_ERR_CORRUPT, "manifest of %s: list %zu belongs to no partition", m->version, l);
    }
    if (st == VS_OK)
        st = vs_router_init_cluster(r, m->metric, m->dim, m->n_partitions, m->nlist, cent, lp,
                                    spec->coarse_hnsw_m, err);
    free(cent);
    free(lp);
    return st;
}

/* Router of a hash-partitioned version. IVF partitions share the version's coarse quantizer: with two
 * or more partitions (and rank_here) each query's lists are ranked once and sent to every partition,
 * instead of each partition ranking all nlist centroids again. */
static vs_status hash_router(const vs_manifest_t *m, const vs_factory_spec_t *spec, int rank_here,
                             vs_router_t *r, char err[VS_ERR_LEN])
{
    if (spec->type != VS_INDEX_IVF || !rank_here || m->n_partitions < 2 || !m->centroids_file[0] ||
        !m->nlist)
        return vs_router_init_hash(r, m->metric, m->dim, m->n_partitions, err);
    float *cent = NULL;
    vs_status st = load_centroids(m, &cent, err);
    if (st == VS_OK)
        st = vs_router_init_hash_ivf(r, m->metric, m->dim, m->n_partitions, m->nlist, cent,
                                     spec->coarse_hnsw_m, err);
    free(cent);
    return st;
}

vs_status vs_router_init_manifest(vs_router_t *r, const vs_manifest_t *m, int rank_here, char err[VS_ERR_LEN])
{
    vs_factory_spec_t spec = {0}; /* an unparsable factory: no coarse quantizer here (the shards refuse it) */
    (void)vs_factory_parse(m->factory, &spec, NULL);
    return strcmp(m->partitioning, "hash") == 0 ? hash_router(m, &spec, rank_here, r, err)
                                                : cluster_router(m, &spec, r, err);
}
