/* vecshard-bench-fresh: what fresh writes cost an index version in process (issue 15: "for HNSW
 * versions choose and measure"). Builds the version's index over --base, then, on one thread:
 *  - searches the queries one per call (read-only), recall@k against exact search over the base;
 *  - applies --writes upserts in batches of --batch through the fresh state (a quarter replace base ids
 *    with another row's vector, the rest are new ids with a row's vector plus noise) and 1 % of them
 *    deleted, timing the writer (the shard's log applier does exactly these calls);
 *  - searches again through the fresh state, recall@k against exact search over base + upserts -
 *    deletes, and checks that no deleted or superseded copy is returned.
 *  - builds the index again over base + upserts - deletes (what the next version folds), the same
 *    training, and searches it: the recall the fresh state should match, and the QPS a fold gives back.
 * The searches are interleaved (read-only, fresh, rebuilt, twice) and each side's best is kept.
 * Usage: vecshard-bench-fresh --base F --queries F [--factory S] [--ef N | --nprobe N] [--writes N]
 *        [--batch N] [--k N] [--nq N] */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cli/flags.h"
#include "shard/index/fresh.h"
#include "shard/index/index.h"
#include "tests/bench/inproc.h"

static int die(const char *what, const char *err)
{
    fprintf(stderr, "vecshard-bench-fresh: %s: %s\n", what, err);
    return 1;
}

/* Exact top-k of the queries over (x, ids) with a Flat index. */
static vs_status exact(uint32_t d, vs_metric metric, size_t n, const float *x, const int64_t *ids, size_t nq,
                       const float *q, size_t k, int64_t *out, char *err)
{
    vs_index_t *flat;
    vs_status st = vs_index_create(d, metric, "Flat", &flat, err);
    float *dist = malloc(nq * k * sizeof *dist);
    if (st == VS_OK)
        st = vs_index_add(flat, n, x, ids, 0, NULL, err);
    if (st == VS_OK)
        st = vs_index_search(flat, nq, q, k, NULL, 0, dist, out, err);
    free(dist);
    if (st == VS_OK || flat)
        vs_index_destroy(flat);
    return st;
}

static double recall(const int64_t *got, const int64_t *gt, size_t nq, size_t k)
{
    size_t hit = 0;
    for (size_t i = 0; i < nq; i++)
        for (size_t a = 0; a < k; a++)
            for (size_t b = 0; b < k; b++)
                if (got[i * k + a] >= 0 && got[i * k + a] == gt[i * k + b]) {
                    hit++;
                    break;
                }
    return (double)hit / (double)(nq * k);
}

typedef struct timing {
    double qps, cpu_us;
} timing_t;

/* One query per call on this thread; the best of the runs so far is kept in *best. */
static vs_status run(const vs_index_t *idx, const vs_fresh_t *fr, size_t nq, const float *q, uint32_t d,
                     size_t k, const vs_search_params_t *p, float *dist, int64_t *ids, timing_t *best,
                     char *err)
{
    double t0 = vs_bench_now_s(), c0 = vs_bench_cpu_s();
    for (size_t i = 0; i < nq; i++) {
        vs_status st = fr ? vs_fresh_search(fr, 1, q + i * d, k, p, 1, dist + i * k, ids + i * k, err)
                          : vs_index_search(idx, 1, q + i * d, k, p, 1, dist + i * k, ids + i * k, err);
        if (st != VS_OK)
            return st;
    }
    double wall = vs_bench_now_s() - t0, cpu = vs_bench_cpu_s() - c0;
    if (nq / wall > best->qps) {
        best->qps = (double)nq / wall;
        best->cpu_us = cpu / (double)nq * 1e6;
    }
    return VS_OK;
}

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: vecshard-bench-fresh --base FILE --queries FILE [--factory HNSW32] [--ef 64 | --nprobe N]\n"
        "       [--writes 20000] [--batch 10] [--k 10] [--nq 1000]\n"
        "The in-process cost of fresh writes to an index version (tests/bench/fresh_main.c).\n");
}

int main(int argc, char **argv)
{
    vs_bench_inproc_t b = {.factory = "HNSW32", .ef = 64, .nq_max = 1000};
    long long writes = 20000, batch = 10, k = 10;
    static const struct option lo[] = {VS_BENCH_INPROC_OPTIONS, {"writes", 1, 0, 'w'}, {"batch", 1, 0, 'B'},
                                       {"k", 1, 0, 'k'},        {"help", 0, 0, 'h'},   {0, 0, 0, 0}};
    char err[VS_ERR_LEN];
    int o;
    while ((o = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        vs_status st = VS_OK;
        if (vs_bench_inproc_opt(&b, o, optarg, &st, err)) {
        } else if (o == 'w') {
            st = vs_cli_parse_int("--writes", optarg, 1, 1 << 30, &writes, err);
        } else if (o == 'B') {
            st = vs_cli_parse_int("--batch", optarg, 1, 100000, &batch, err);
        } else if (o == 'k') {
            st = vs_cli_parse_int("--k", optarg, 1, 10000, &k, err);
        } else if (o == 'h') {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
        if (st != VS_OK)
            return die("flags", err);
    }
    vs_metric metric = VS_METRIC_L2;
    vs_index_t *idx;
    double t0 = vs_bench_now_s();
    if (vs_bench_inproc_load(&b, err) != VS_OK || vs_bench_inproc_build(&b, &idx, err) != VS_OK)
        return die("data", err);
    const size_t n = b.n, nq = b.nq;
    const uint32_t d = b.d;
    const float *x = b.x, *q = b.q;
    const char *factory = b.factory;
    if ((size_t)writes > n)
        return die("data", "more writes than base rows");
    fprintf(stderr, "built %s over %zu x %u in %.1f s\n", factory, n, d, vs_bench_now_s() - t0);

    /* the writes: W upserts, a quarter replacing base ids 0, 4, 8, ... with the vector of row n-1-i, the
     * rest new ids (n + i) with a row's vector plus noise; then 1 % of the new ids deleted */
    size_t W = (size_t)writes, live_n = 0;
    int64_t *wid = malloc(W * sizeof *wid), *live_ids = malloc((n + W) * sizeof *live_ids);
    float *wx = malloc(W * d * sizeof *wx), *live_x = malloc((n + W) * d * sizeof *live_x);
    unsigned char *replaced = calloc(n, 1), *gone = calloc(W, 1);
    uint64_t rng = 12345;
    for (size_t i = 0; i < W; i++) {
        if (i % 4 == 0) {
            wid[i] = (int64_t)(i / 4 * 4 % n);
            replaced[wid[i]] = 1;
            memcpy(wx + i * d, x + (n - 1 - i) * d, d * sizeof(float));
        } else {
            wid[i] = (int64_t)(n + i);
            size_t row = (i * 7919) % n;
            for (uint32_t j = 0; j < d; j++) {
                rng = rng * 6364136223846793005ull + 1442695040888963407ull;
                float noise = ((float)(rng >> 40) / (float)(1 << 24) - 0.5f) * 0.1f * fabsf(x[row * d + j]);
                wx[i * d + j] = x[row * d + j] + noise;
            }
        }
    }
    vs_fresh_t *fr;
    if (vs_fresh_create(idx, 4 * W, &fr, err) != VS_OK)
        return die("fresh", err);
    double w0 = vs_bench_now_s(), wc0 = vs_bench_cpu_s();
    for (size_t i = 0; i < W; i += (size_t)batch) {
        size_t m = W - i < (size_t)batch ? W - i : (size_t)batch;
        if (vs_fresh_upsert(fr, m, wid + i, wx + i * d, err) != VS_OK)
            return die("upsert", err);
    }
    double w_wall = vs_bench_now_s() - w0, w_cpu = vs_bench_cpu_s() - wc0;
    size_t n_del = 0;
    int64_t *del = malloc(W * sizeof *del);
    for (size_t i = 1; i < W; i += 100)
        if (i % 4) {
            del[n_del++] = wid[i];
            gone[i] = 1;
        }
    if (vs_fresh_delete(fr, n_del, del, err) != VS_OK)
        return die("delete", err);
    for (size_t i = 0; i < n; i++)
        if (!replaced[i]) {
            live_ids[live_n] = (int64_t)i;
            memcpy(live_x + live_n * d, x + i * d, d * sizeof(float));
            live_n++;
        }
    for (size_t i = 0; i < W; i++)
        if (!gone[i]) {
            live_ids[live_n] = wid[i];
            memcpy(live_x + live_n * d, wx + i * d, d * sizeof(float));
            live_n++;
        }
    int64_t *gt_base = malloc(nq * k * sizeof *gt_base), *gt_live = malloc(nq * k * sizeof *gt_live);
    int64_t *ids = malloc(nq * k * sizeof *ids), *fids = malloc(nq * k * sizeof *fids);
    float *dist = malloc(nq * k * sizeof *dist);
    if (exact(d, metric, n, x, NULL, nq, q, (size_t)k, gt_base, err) != VS_OK ||
        exact(d, metric, live_n, live_x, live_ids, nq, q, (size_t)k, gt_live, err) != VS_OK)
        return die("exact search", err);

    vs_search_params_t p = vs_bench_inproc_params(&b);
    vs_index_t *rebuilt;
    if (vs_index_clone_empty(idx, &rebuilt, err) != VS_OK ||
        vs_index_add(rebuilt, live_n, live_x, live_ids, 0, NULL, err) != VS_OK)
        return die("rebuild", err);
    int64_t *rids = malloc(nq * k * sizeof *rids);
    timing_t ro = {0}, fw = {0}, rb = {0};
    for (int round = 0; round < 2; round++)
        if (run(idx, NULL, nq, q, d, (size_t)k, &p, dist, ids, &ro, err) != VS_OK ||
            run(idx, fr, nq, q, d, (size_t)k, &p, dist, fids, &fw, err) != VS_OK ||
            run(rebuilt, NULL, nq, q, d, (size_t)k, &p, dist, rids, &rb, err) != VS_OK)
            return die("search", err);
    size_t bad = 0; /* deleted, or a replaced base id that came back with its old vector's rank */
    for (size_t i = 0; i < nq * (size_t)k; i++)
        for (size_t j = 0; j < n_del; j++)
            bad += fids[i] == del[j];
    vs_fresh_stats_t fs;
    vs_fresh_stats(fr, &fs);
    printf("== %s, %zu x %u, %zu queries one per call on 1 thread, k %lld, %s %lld; best of 2 interleaved\n",
           factory, n, d, nq, k, p.ef_search ? "efSearch" : "nprobe", p.ef_search ? b.ef : b.nprobe);
    printf("writes: %zu upserts in batches of %lld (%zu replace base ids), %zu deletes: %.1f us per upsert "
           "(wall), %.1f us CPU; fresh state %.1f MB for %zu live fresh items\n",
           W, batch, (W + 3) / 4, n_del, w_wall / (double)W * 1e6, w_cpu / (double)W * 1e6,
           (double)fs.memory_bytes / 1e6, fs.live);
    printf("read-only:        QPS %.0f, %.1f us CPU/query, recall@%lld %.4f (exact over the base)\n", ro.qps,
           ro.cpu_us, k, recall(ids, gt_base, nq, (size_t)k));
    printf("with the writes:  QPS %.0f, %.1f us CPU/query, recall@%lld %.4f (exact over base + upserts - "
           "deletes); deleted ids returned: %zu\n",
           fw.qps, fw.cpu_us, k, recall(fids, gt_live, nq, (size_t)k), bad);
    printf("rebuilt (folded): QPS %.0f, %.1f us CPU/query, recall@%lld %.4f (exact over base + upserts - "
           "deletes)\n",
           rb.qps, rb.cpu_us, k, recall(rids, gt_live, nq, (size_t)k));
    printf("QPS with writes / read-only: %.2f; recall with writes - rebuilt: %+.4f\n", fw.qps / ro.qps,
           recall(fids, gt_live, nq, (size_t)k) - recall(rids, gt_live, nq, (size_t)k));
    vs_index_destroy(rebuilt);
    free(rids);
    vs_fresh_destroy(fr);
    vs_index_destroy(idx);
    vs_bench_inproc_free(&b);
    free(wid);
    free(wx);
    free(live_ids);
    free(live_x);
    free(replaced);
    free(gone);
    free(del);
    free(gt_base);
    free(gt_live);
    free(ids);
    free(fids);
    free(dist);
    return bad ? 1 : 0;
}
