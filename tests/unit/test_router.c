/* test_router: routing plans and the merge, without the network. Hash plans send every query to every
 * partition; cluster plans send a query exactly to the partitions owning one of its nprobe nearest lists
 * (the same lists an IVF index probes exactly), with the other list slots -1; merging partition answers
 * equals a brute-force top-k over their union, duplicates dropped; missing partitions are skipped. */
#include <stdlib.h>
#include <string.h>

#include "common/kmeans.h"
#include "common/topk.h"
#include "coordinator/router.h"
#include "tests/testlib.h"

#define D 8
#define NL 24
#define P 3
#define NQ 50

static void test_hash_plan(void)
{
    char err[VS_ERR_LEN];
    vs_router_t r;
    CHECK(vs_router_init_hash(&r, VS_METRIC_L2, D, P, err) == VS_OK);
    float q[NQ * D] = {0};
    vs_route_plan_t plan;
    CHECK(vs_router_plan(&r, NQ, q, 4, &plan, err) == VS_OK);
    CHECK(plan.n_parts == P && plan.lists_per_query == 0 && plan.nq == NQ);
    for (size_t t = 0; t < plan.n_parts; t++)
        CHECK(plan.parts[t].partition == t && plan.parts[t].nq == NQ && !plan.parts[t].query_idx &&
              !plan.parts[t].lists);
    vs_route_plan_fini(&plan);
    CHECK(vs_router_plan(&r, 0, q, 4, &plan, err) == VS_ERR_INVALID_ARGUMENT);
    CHECK(vs_router_init_hash(&r, VS_METRIC_L2, D, 0, err) == VS_ERR_INVALID_ARGUMENT);
    vs_router_fini(&r);
}

static void test_cluster_plan(vs_metric metric)
{
    char err[VS_ERR_LEN];
    float cent[NL * D], q[NQ * D];
    vs_test_clustered(cent, NL, D, NL, 0.5f, 3, 4);
    vs_test_clustered(q, NQ, D, NL, 0.5f, 3, 9);
    uint32_t lp[NL];
    for (uint32_t l = 0; l < NL; l++)
        lp[l] = (l * 7) % P;
    vs_router_t r;
    CHECK(vs_router_init_cluster(&r, metric, D, P, NL, cent, lp, 0, err) == VS_OK);
    const uint32_t nprobe = 5;
    vs_route_plan_t plan;
    CHECK(vs_router_plan(&r, NQ, q, nprobe, &plan, err) == VS_OK);
    CHECK(plan.lists_per_query == nprobe);
    /* the oracle: the lists an index probes exactly */
    float *qq = malloc(sizeof q);
    memcpy(qq, q, sizeof q);
    if (metric == VS_METRIC_COSINE)
        vs_normalize_rows(qq, NQ, D);
    int32_t want[NQ * nprobe];
    CHECK(vs_kmeans_nearest(qq, NQ, cent, NL, D, metric == VS_METRIC_L2 ? VS_METRIC_L2 : VS_METRIC_IP, nprobe,
                            1, want, NULL, err) == VS_OK);
    free(qq);
    size_t seen[NQ] = {0};
    for (size_t t = 0; t < plan.n_parts; t++) {
        const vs_route_part_t *part = &plan.parts[t];
        CHECK(part->nq > 0 && part->query_idx && part->lists);
        if (t)
            CHECK(part->partition > plan.parts[t - 1].partition);
        for (size_t j = 0; j < part->nq; j++) {
            uint32_t i = part->query_idx[j];
            if (j)
                CHECK(i > part->query_idx[j - 1]);
            for (uint32_t s = 0; s < nprobe; s++) {
                int32_t l = part->lists[j * nprobe + s];
                /* slot s holds the query's s-th list when this partition owns it, else -1 */
                int32_t w = want[i * nprobe + s];
                CHECK(l == (lp[w] == part->partition ? w : -1));
                seen[i] += l >= 0;
            }
        }
    }
    for (size_t i = 0; i < NQ; i++)
        CHECK(seen[i] == nprobe); /* every probed list is sent exactly once */
    vs_route_plan_fini(&plan);
    /* small batches take the scan path (large ones sgemm): the same lists */
    for (size_t i = 0; i < 8; i++) {
        CHECK(vs_router_plan(&r, 1, q + i * D, nprobe, &plan, err) == VS_OK);
        size_t found = 0;
        for (size_t t = 0; t < plan.n_parts; t++)
            for (uint32_t s2 = 0; s2 < nprobe; s2++) {
                int32_t l = plan.parts[t].lists[s2];
                if (l >= 0) {
                    CHECK(l == want[i * nprobe + s2]);
                    found++;
                }
            }
        CHECK(found == nprobe);
        vs_route_plan_fini(&plan);
    }
    CHECK(vs_router_plan(&r, NQ, q, NL + 1, &plan, err) == VS_ERR_INVALID_ARGUMENT);
    /* nprobe 1: every query goes to exactly one partition */
    CHECK(vs_router_plan(&r, NQ, q, 1, &plan, err) == VS_OK);
    size_t total = 0;
    for (size_t t = 0; t < plan.n_parts; t++)
        total += plan.parts[t].nq;
    CHECK(total == NQ);
    vs_route_plan_fini(&plan);
    vs_router_fini(&r);
    lp[3] = P;
    CHECK(vs_router_init_cluster(&r, metric, D, P, NL, cent, lp, 0, err) == VS_ERR_INVALID_ARGUMENT);
}

static void test_cluster_plans(void)
{
    test_cluster_plan(VS_METRIC_L2);
    test_cluster_plan(VS_METRIC_IP);
    test_cluster_plan(VS_METRIC_COSINE);
}

static void test_merge(void)
{
    char err[VS_ERR_LEN];
    enum { K = 6, NQM = 4, T = 3 };
    /* three partitions answered sorted lists with overlapping ids; partition 1 did not answer */
    float dist[T][NQM * K];
    int64_t ids[T][NQM * K];
    uint64_t rng = 5;
    for (int t = 0; t < T; t++)
        for (int q = 0; q < NQM; q++) {
            float base = 0;
            for (int j = 0; j < K; j++) {
                base += 0.1f + (float)(vs_test_rand(&rng) % 100) / 100.0f;
                dist[t][q * K + j] = base;
                ids[t][q * K + j] = (int64_t)(vs_test_rand(&rng) % 12);
            }
        }
    /* ids must be unique within a list, as an index answers */
    for (int t = 0; t < T; t++)
        for (int q = 0; q < NQM; q++)
            for (int j = 0; j < K; j++)
                ids[t][q * K + j] = ids[t][q * K + j] * K + j;
    vs_route_part_t parts[T];
    for (int t = 0; t < T; t++)
        parts[t] = (vs_route_part_t){.partition = (uint32_t)t, .nq = NQM};
    vs_route_plan_t plan = {.nq = NQM, .n_parts = T, .parts = parts};
    const float *pd[T] = {dist[0], dist[1], dist[2]};
    const int64_t *pi[T] = {ids[0], ids[1], ids[2]};
    int answered[T] = {1, 0, 1};
    float od[NQM * K];
    int64_t oi[NQM * K];
    CHECK(vs_route_merge(&plan, K, 0, pd, pi, answered, od, oi, err) == VS_OK);
    for (int q = 0; q < NQM; q++) {
        /* brute force over partitions 0 and 2: best distance per id, then the K best */
        float best[K];
        int64_t bid[K];
        vs_topk_t h;
        vs_topk_init(&h, K, best, bid);
        for (int t = 0; t < T; t += 2)
            for (int j = 0; j < K; j++) {
                int64_t id = ids[t][q * K + j];
                float d = dist[t][q * K + j];
                int dup = 0;
                for (int t2 = 0; t2 < T; t2 += 2)
                    for (int j2 = 0; j2 < K; j2++)
                        if (ids[t2][q * K + j2] == id &&
                            (dist[t2][q * K + j2] < d || (dist[t2][q * K + j2] == d && t2 < t)))
                            dup = 1;
                if (!dup)
                    vs_topk_push(&h, d, id);
            }
        size_t n = vs_topk_sort(&h);
        for (size_t j = 0; j < n; j++)
            CHECKF(oi[q * K + j] == bid[j] && od[q * K + j] == best[j], "query %d rank %zu", q, j);
        for (size_t j = 0; j + 1 < K; j++)
            for (size_t j2 = j + 1; j2 < K; j2++)
                CHECK(oi[q * K + j] != oi[q * K + j2] || oi[q * K + j] == -1);
    }
    /* nobody answered: all padding */
    int none[T] = {0, 0, 0};
    CHECK(vs_route_merge(&plan, K, 0, pd, pi, none, od, oi, err) == VS_OK);
    for (int i = 0; i < NQM * K; i++)
        CHECK(oi[i] == -1);
}

int main(void)
{
    RUN(test_hash_plan);
    RUN(test_cluster_plans);
    RUN(test_merge);
    return vs_test_finish();
}
