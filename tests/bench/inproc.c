/* inproc.c: the in-process benchmark tools' shared parts (inproc.h). */
#include "tests/bench/inproc.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/cli/flags.h"
#include "common/vecio.h"

int vs_bench_inproc_opt(vs_bench_inproc_t *b, int o, const char *arg, vs_status *st, char *err)
{
    *st = VS_OK;
    switch (o) {
    case 'b':
        b->base_path = arg;
        return 1;
    case 'q':
        b->q_path = arg;
        return 1;
    case 'f':
        b->factory = arg;
        return 1;
    case 'e':
        *st = vs_cli_parse_int("--ef", arg, 1, 100000, &b->ef, err);
        return 1;
    case 'n':
        *st = vs_cli_parse_int("--nprobe", arg, 1, 1 << 20, &b->nprobe, err);
        return 1;
    case 'Q':
        *st = vs_cli_parse_int("--nq", arg, 1, 1 << 30, &b->nq_max, err);
        return 1;
    default:
        return 0;
    }
}

vs_status vs_bench_inproc_load(vs_bench_inproc_t *b, char *err)
{
    if (!b->base_path || !b->q_path)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "--base and --queries are required");
    uint32_t dq;
    vs_status st = vs_vecfile_load_f32(b->base_path, &b->n, &b->d, &b->x, err);
    if (st == VS_OK)
        st = vs_vecfile_load_f32(b->q_path, &b->nq, &dq, &b->q, err);
    if (st == VS_OK && dq != b->d)
        st = vs_errf(err, VS_ERR_INVALID_ARGUMENT, "queries of dimension %u for a base of %u", dq, b->d);
    if (st == VS_OK && b->nq_max > 0 && b->nq > (size_t)b->nq_max)
        b->nq = (size_t)b->nq_max;
    return st;
}

vs_status vs_bench_inproc_build(const vs_bench_inproc_t *b, vs_index_t **out, char *err)
{
    vs_index_t *idx;
    vs_status st = vs_index_create(b->d, VS_METRIC_L2, b->factory, &idx, err);
    if (st != VS_OK)
        return st;
    st = vs_index_train(idx, b->n, b->x, 0, NULL, err);
    if (st == VS_OK)
        st = vs_index_add(idx, b->n, b->x, NULL, 0, NULL, err);
    if (st != VS_OK) {
        vs_index_destroy(idx);
        return st;
    }
    *out = idx;
    return VS_OK;
}

vs_search_params_t vs_bench_inproc_params(const vs_bench_inproc_t *b)
{
    vs_search_params_t p = {0};
    if (strncmp(b->factory, "HNSW", 4) == 0)
        p.ef_search = (uint32_t)b->ef;
    else
        p.nprobe = (uint32_t)b->nprobe;
    return p;
}

void vs_bench_inproc_free(vs_bench_inproc_t *b)
{
    free(b->x);
    free(b->q);
    b->x = b->q = NULL;
}

double vs_bench_now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

double vs_bench_cpu_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}
