/* test_hnsw_recall: HNSW32 and HNSW32,SQ8 on a Fashion-MNIST sample (20,000 x 784 base, 500 queries,
 * efConstruction 100, fixed seed) against the Flat oracle, at efSearch 10 and 64. Builds use two
 * threads, so the graph can differ from run to run in the order of concurrent inserts; recall then
 * moves by a few thousandths, and each threshold sits about 0.02-0.03 below what was measured when it
 * was written. The invariant checker runs on each graph. Skips when the data set is not installed. */
#include <stdlib.h>

#include "shard/index/hnsw.h"
#include "shard/index/index.h"
#include "tests/testlib.h"

#define K 10
#define NB 20000
#define NQ 500

static void check(const char *factory, const float *b, const float *q, uint32_t d, const int64_t *gt,
                  const uint32_t ef[2], const double min_recall[2], const char *why)
{
    char err[VS_ERR_LEN];
    vs_index_t *idx;
    CHECK(vs_index_create(d, VS_METRIC_L2, factory, &idx, err) == VS_OK);
    CHECK(vs_index_set_build_params(idx, 100, 1, err) == VS_OK);
    if (vs_index_needs_training(idx))
        CHECK(vs_index_train(idx, NB, b, 2, NULL, err) == VS_OK);
    CHECKF(vs_index_add(idx, NB, b, NULL, 2, NULL, err) == VS_OK, "%s", err);
    vs_status st = vs_hnsw_check(vs_index_impl_hnsw(idx), err);
    CHECKF(st == VS_OK, "%s: %s", factory, err);
    int64_t *ids = malloc(NQ * K * sizeof(int64_t));
    float *dist = malloc(NQ * K * sizeof(float));
    for (int i = 0; i < 2; i++) {
        vs_search_params_t p = {.ef_search = ef[i]};
        CHECK(vs_index_search(idx, NQ, q, K, &p, 2, dist, ids, err) == VS_OK);
        double r = vs_test_recall(ids, K, gt, K, NQ, K);
        printf("  %-11s efSearch=%-4u recall@10 = %.4f (>= %.2f: %s)\n", factory, ef[i], r, min_recall[i],
               why);
        CHECKF(r >= min_recall[i], "%s efSearch=%u: recall %.4f < %.2f", factory, ef[i], r, min_recall[i]);
    }
    free(ids);
    free(dist);
    vs_index_destroy(idx);
}

static void test_fashion_mnist(void)
{
    char err[VS_ERR_LEN];
    uint32_t d;
    float *b, *q;
    if (!vs_test_load_fashion(&d, &b, &q))
        return;
    vs_index_t *flat;
    int64_t *gt = malloc(NQ * K * sizeof(int64_t));
    float *gd = malloc(NQ * K * sizeof(float));
    CHECK(vs_index_create(d, VS_METRIC_L2, "Flat", &flat, err) == VS_OK);
    CHECK(vs_index_add(flat, NB, b, NULL, 0, NULL, err) == VS_OK);
    CHECK(vs_index_search(flat, NQ, q, K, NULL, 0, gd, gt, err) == VS_OK);
    vs_index_destroy(flat);
    const uint32_t ef[2] = {10, 64};
    const double flat_min[2] = {0.93, 0.99}, sq8_min[2] = {0.93, 0.99};
    check("HNSW32", b, q, d, gt, ef, flat_min, "measured 0.959-0.961 and 0.9996");
    check("HNSW32,SQ8", b, q, d, gt, ef, sq8_min, "as HNSW32: 8-bit codes of 8-bit pixels are exact");
    free(gt);
    free(gd);
    free(b);
    free(q);
}

int main(void)
{
    RUN(test_fashion_mnist);
    return vs_test_finish();
}
