/* inproc.h: what the in-process benchmark tools share (vecshard-bench-fresh, vecshard-bench-exclude): the
 * flags naming the data, the version's factory and its search parameter, loading the data, building the
 * index, and the clocks. */
#ifndef VS_TESTS_BENCH_INPROC_H
#define VS_TESTS_BENCH_INPROC_H

#include <stddef.h>
#include <stdint.h>

#include "common/factory.h"
#include "shard/index/index.h"

typedef struct vs_bench_inproc {
    const char *base_path, *q_path, *factory; /* --base, --queries, --factory */
    long long ef, nprobe, nq_max;             /* --ef (HNSW), --nprobe (IVF; 0 = the index's), --nq */
    float *x, *q;                             /* loaded: n x d base, nq x d queries (owned) */
    size_t n, nq;
    uint32_t d;
} vs_bench_inproc_t;

/* getopt_long entries of the shared flags (their short codes: b q f e n Q). */
#define VS_BENCH_INPROC_OPTIONS                                                                              \
    {"base", 1, 0, 'b'}, {"queries", 1, 0, 'q'}, {"factory", 1, 0, 'f'}, {"ef", 1, 0, 'e'},                  \
        {"nprobe", 1, 0, 'n'},                                                                               \
    {                                                                                                        \
        "nq", 1, 0, 'Q'                                                                                      \
    }

/* Takes option o (its argument arg) when it is a shared flag: 1 and *st (VS_OK, or a bad value in err);
 * 0 for another option. */
int vs_bench_inproc_opt(vs_bench_inproc_t *b, int o, const char *arg, vs_status *st, char *err);

/* Loads the base and the first nq_max queries (same dimension). */
vs_status vs_bench_inproc_load(vs_bench_inproc_t *b, char *err);

/* Builds the factory's index over the whole base (trained on it, all threads, L2, ids = row numbers). */
vs_status vs_bench_inproc_build(const vs_bench_inproc_t *b, vs_index_t **out, char *err);

/* efSearch for HNSW factories, nprobe otherwise. */
vs_search_params_t vs_bench_inproc_params(const vs_bench_inproc_t *b);

void vs_bench_inproc_free(vs_bench_inproc_t *b);

double vs_bench_now_s(void); /* monotonic seconds */
double vs_bench_cpu_s(void); /* this process's CPU seconds */

#endif
