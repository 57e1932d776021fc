/* vecshard-bench-exclude: what exclude_ids cost a query in process (issue 17 goal: 10,000 excluded ids add
 * at most 100 us per query). Builds the index over --base, then on one thread, one query per call, times
 * the queries without exclusions and with --exclude ids per query (the query's own 10 exact nearest
 * neighbours, so the skip really happens, plus random ids to the count), the set built for every query as
 * the shard builds it per request; interleaved (none, with, none, with), each side's best. Checks that no
 * excluded id comes back.
 * Usage: vecshard-bench-exclude --base F --queries F [--factory S] [--ef N | --nprobe N] [--exclude N]
 *        [--nq N] */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cli/flags.h"
#include "common/idset.h"
#include "shard/index/index.h"
#include "tests/bench/inproc.h"

#define K 10

static int die(const char *what, const char *err)
{
    fprintf(stderr, "vecshard-bench-exclude: %s: %s\n", what, err);
    return 1;
}

int main(int argc, char **argv)
{
    vs_bench_inproc_t b = {.factory = "IVF1024,PQ32x4fs,RFlat", .ef = 64, .nprobe = 16, .nq_max = 1000};
    long long n_excl = 10000;
    static const struct option lo[] = {
        VS_BENCH_INPROC_OPTIONS, {"exclude", 1, 0, 'x'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    char err[VS_ERR_LEN];
    int o;
    while ((o = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        vs_status st = VS_OK;
        if (vs_bench_inproc_opt(&b, o, optarg, &st, err)) {
        } else if (o == 'x') {
            st = vs_cli_parse_int("--exclude", optarg, K, VS_EXCLUDE_MAX, &n_excl, err);
        } else if (o == 'h') {
            printf("usage: vecshard-bench-exclude --base F --queries F [--factory S] [--ef 64 | --nprobe 16]"
                   " [--exclude 10000] [--nq 1000]\n");
            return 0;
        } else {
            return 2;
        }
        if (st != VS_OK)
            return die("flags", err);
    }
    vs_index_t *idx, *flat;
    if (vs_bench_inproc_load(&b, err) != VS_OK || vs_bench_inproc_build(&b, &idx, err) != VS_OK)
        return die("data", err);
    const size_t n = b.n, nq = b.nq;
    const uint32_t d = b.d;
    const float *q = b.q;
    if (vs_index_create(d, VS_METRIC_L2, "Flat", &flat, err) != VS_OK ||
        vs_index_add(flat, n, b.x, NULL, 0, NULL, err) != VS_OK)
        return die("exact", err);
    /* per query: its 10 exact nearest, then random ids */
    int64_t *excl = malloc(nq * (size_t)n_excl * sizeof *excl);
    float *dist = malloc(nq * K * sizeof *dist);
    if (!excl || !dist)
        return die("memory", "out of memory");
    uint64_t rng = 1;
    for (size_t i = 0; i < nq; i++) {
        int64_t *e = excl + i * (size_t)n_excl;
        if (vs_index_search(flat, 1, q + i * d, K, NULL, 1, dist, e, err) != VS_OK)
            return die("exact", err);
        for (size_t j = K; j < (size_t)n_excl; j++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            e[j] = (int64_t)((rng >> 33) % n);
        }
    }
    vs_index_destroy(flat);
    vs_search_params_t p = vs_bench_inproc_params(&b);
    int64_t ids[K];
    double best[2] = {1e9, 1e9};
    size_t bad = 0;
    for (int round = 0; round < 4; round++) {
        int with = round & 1;
        double t0 = vs_bench_now_s();
        for (size_t i = 0; i < nq; i++) {
            vs_search_params_t pp = p;
            vs_idset_t *set = NULL;
            if (with && vs_idset_create(excl + i * (size_t)n_excl, (size_t)n_excl, &set, err) != VS_OK)
                return die("set", err);
            pp.exclude = set;
            if (vs_index_search(idx, 1, q + i * d, K, &pp, 1, dist, ids, err) != VS_OK)
                return die("search", err);
            for (size_t j = 0; with && j < K; j++)
                bad += vs_idset_has(set, ids[j]);
            vs_idset_destroy(set);
        }
        double us = (vs_bench_now_s() - t0) / (double)nq * 1e6;
        if (us < best[with])
            best[with] = us;
    }
    printf("== %s, %zu x %u, %zu queries one per call on 1 thread, k %d, %s %lld; best of 2 interleaved\n",
           b.factory, n, d, nq, K, p.ef_search ? "efSearch" : "nprobe", p.ef_search ? b.ef : b.nprobe);
    printf("no exclusions: %.1f us/query; %lld excluded ids per query (its 10 nearest among them, the set "
           "built per query): %.1f us/query; exclusion adds %.1f us; excluded ids returned: %zu\n",
           best[0], n_excl, best[1], best[1] - best[0], bad);
    vs_index_destroy(idx);
    vs_bench_inproc_free(&b);
    free(excl);
    free(dist);
    return bad ? 1 : 0;
}
