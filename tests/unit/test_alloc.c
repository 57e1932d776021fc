/* test_alloc: the search hot path allocates nothing in steady state (issue 14). malloc, calloc, realloc and
 * aligned_alloc are wrapped at link time (-Wl,--wrap, this executable only, so the static index library's
 * calls are counted too); after a warm-up search (the calling thread's scratch arena is sized once),
 * thousands of single-query searches on one thread must make zero allocations, for IVF (fast-scan PQ with
 * refine, Flat lists, lists found through an HNSW coarse quantizer) and HNSW. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shard/index/index.h"
#include "tests/testlib.h"

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t s);
void *__real_realloc(void *p, size_t n);
void *__real_aligned_alloc(size_t a, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t s);
void *__wrap_realloc(void *p, size_t n);
void *__wrap_aligned_alloc(size_t a, size_t n);

static atomic_size_t allocations;

void *__wrap_malloc(size_t n)
{
    atomic_fetch_add(&allocations, 1);
    return __real_malloc(n);
}
void *__wrap_calloc(size_t n, size_t s)
{
    atomic_fetch_add(&allocations, 1);
    return __real_calloc(n, s);
}
void *__wrap_realloc(void *p, size_t n)
{
    atomic_fetch_add(&allocations, 1);
    return __real_realloc(p, n);
}
void *__wrap_aligned_alloc(size_t a, size_t n)
{
    atomic_fetch_add(&allocations, 1);
    return __real_aligned_alloc(a, n);
}

#define N 20000
#define D 32
#define NQ 2000

static void steady_state(const char *factory, const char *params)
{
    static float x[N * D], q[NQ * D];
    vs_test_clustered(x, N, D, 64, 0.3f, 7, 8);
    vs_test_clustered(q, NQ, D, 64, 0.3f, 7, 9);
    char err[VS_ERR_LEN];
    vs_index_t *idx = NULL;
    vs_search_params_t sp;
    CHECKF(vs_index_create(D, VS_METRIC_L2, factory, &idx, err) == VS_OK, "%s", err);
    CHECK(vs_search_params_parse(params, &sp, err) == VS_OK);
    if (vs_index_needs_training(idx))
        CHECKF(vs_index_train(idx, N, x, 1, NULL, err) == VS_OK, "%s", err);
    CHECKF(vs_index_add(idx, N, x, NULL, 1, NULL, err) == VS_OK, "%s", err);
    float dist[10];
    int64_t ids[10];
    CHECK(vs_index_search(idx, 1, q, 10, &sp, 1, dist, ids, err) == VS_OK); /* warm-up: scratch sized once */
    size_t before = atomic_load(&allocations);
    for (size_t i = 0; i < NQ; i++)
        CHECK(vs_index_search(idx, 1, q + i * D, 10, &sp, 1, dist, ids, err) == VS_OK);
    size_t made = atomic_load(&allocations) - before;
    printf("  %-22s %s: %zu allocations in %d single-query searches\n", factory, params, made, NQ);
    CHECKF(made == 0, "%s: %zu allocations", factory, made);
    vs_index_destroy(idx);
}

static void test_ivf_fastscan(void)
{
    steady_state("IVF64,PQ8x4fs,RFlat", "nprobe=8,k_factor=4");
}

static void test_ivf_flat(void)
{
    steady_state("IVF64,Flat", "nprobe=8");
}

static void test_ivf_hnsw_coarse(void)
{
    steady_state("IVF64_HNSW16,Flat", "nprobe=8");
}

static void test_hnsw(void)
{
    steady_state("HNSW16", "efSearch=32");
}

int main(void)
{
    RUN(test_ivf_fastscan);
    RUN(test_ivf_flat);
    RUN(test_ivf_hnsw_coarse);
    RUN(test_hnsw);
    return vs_test_finish();
}
