/* vecshard-gt: exact top-k ground truth of a query set against a base set, written as .ivecs (row
 * indices of the base, best first) or, with --ids, as the items' own int64 ids in a .npy (nq x k), the
 * reference every recall figure is measured against.
 * --check N recomputes the first N queries with a plain double-precision loop and requires that
 * every position agrees up to exact distance ties. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cli/flags.h"
#include "common/cli/progress.h"
#include "common/cli/timing.h"
#include "common/ids.h"
#include "common/vecio.h"
#include "shard/index/flat.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: vecshard-gt --base FILE --queries FILE --out FILE.ivecs [options]\n"
            "\n"
            "Exact k-nearest-neighbour ground truth (brute force, OpenBLAS sgemm + exact re-rank).\n"
            "Input files: .fvecs .bvecs .npy (float32/uint8) or idx (Fashion-MNIST, .gz too).\n"
            "\n"
            "  --base FILE          base vectors\n"
            "  --queries FILE       query vectors\n"
            "  --out FILE           where to write the result, k per query: FILE.ivecs holds 0-based base\n"
            "                       rows; with --ids, FILE.npy holds the items' ids (int64)\n"
            "  --ids FILE           the base's item ids (.npy int64 or .i64, one per base row, as given\n"
            "                       to vecshard-build --ids): ground truth by those ids\n"
            "  --k N                neighbours per query (default 100)\n"
            "  --metric M           l2 (default), ip or cosine\n"
            "  --threads N          worker threads (default: all CPUs)\n"
            "  --nq N               use only the first N queries\n"
            "  --distances FILE     also write the distances as .fvecs\n"
            "  --check N            verify the first N queries against a double-precision brute force\n"
            "  --quiet              no progress line\n"
            "  -h, --help           this help\n");
}

/* Exact double-precision distances of query q to every base row, sorted ascending by key. */
typedef struct dpair {
    double key;
    int64_t id;
} dpair_t;

static int dpair_cmp(const void *a, const void *b)
{
    const dpair_t *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* A result as the items' own ids see it: padding (-1) last, then by distance, ties by smallest id. */
typedef struct own_pair {
    float dist;
    int64_t id;
} own_pair_t;

static int own_cmp(const own_pair_t *x, const own_pair_t *y, int larger)
{
    if ((x->id < 0) != (y->id < 0))
        return x->id < 0 ? 1 : -1;
    if (x->dist != y->dist)
        return (larger ? x->dist > y->dist : x->dist < y->dist) ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

static int own_cmp_asc(const void *a, const void *b)
{
    return own_cmp(a, b, 0);
}

static int own_cmp_desc(const void *a, const void *b)
{
    return own_cmp(a, b, 1);
}

static double ddist(vs_metric m, const float *a, const float *b, size_t d)
{
    /* four partial sums break the add dependency chain; for float inputs each double product is exact
     * and the sums carry 29 more bits than float, far below any float distance difference */
    double s[4] = {0, 0, 0, 0};
    size_t i = 0;
    if (m == VS_METRIC_L2) {
        for (; i + 4 <= d; i += 4)
            for (int j = 0; j < 4; j++) {
                double t = (double)a[i + j] - (double)b[i + j];
                s[j] += t * t;
            }
        for (; i < d; i++) {
            double t = (double)a[i] - (double)b[i];
            s[0] += t * t;
        }
        return (s[0] + s[1]) + (s[2] + s[3]);
    }
    for (; i + 4 <= d; i += 4)
        for (int j = 0; j < 4; j++)
            s[j] += (double)a[i + j] * (double)b[i + j];
    for (; i < d; i++)
        s[0] += (double)a[i] * (double)b[i];
    return -((s[0] + s[1]) + (s[2] + s[3])); /* key: smaller is better */
}

/* Returns the number of queries whose result disagrees with the double brute force beyond ties. */
static size_t check_exact(vs_metric m, const float *base, size_t n, const float *q, size_t nq, size_t d,
                          size_t k, const int64_t *ids, size_t stride)
{
    dpair_t *all = malloc(n * sizeof *all);
    float *qn = malloc(d * sizeof(float));
    if (all == NULL || qn == NULL) {
        fprintf(stderr, "vecshard-gt: out of memory for --check\n");
        exit(1);
    }
    size_t bad = 0;
    for (size_t i = 0; i < nq; i++) {
        memcpy(qn, q + i * d, d * sizeof(float));
        if (m == VS_METRIC_COSINE)
            vs_normalize_rows(qn, 1, d);
        for (size_t j = 0; j < n; j++)
            all[j] = (dpair_t){ddist(m, qn, base + j * d, d), (int64_t)j};
        qsort(all, n, sizeof *all, dpair_cmp);
        size_t kk = k < n ? k : n;
        for (size_t r = 0; r < kk; r++) {
            int64_t got = ids[i * stride + r];
            double got_key = got >= 0 && (size_t)got < n ? ddist(m, qn, base + (size_t)got * d, d) : INFINITY;
            if (got_key != all[r].key) {
                fprintf(stderr,
                        "check: query %zu rank %zu: got id %lld (exact key %.17g), expected key %.17g (id "
                        "%lld)\n",
                        i, r, (long long)got, got_key, all[r].key, (long long)all[r].id);
                bad++;
                break;
            }
        }
    }
    free(all);
    free(qn);
    return bad;
}

int main(int argc, char **argv)
{
    if (vs_cli_version_flag(argc, argv, "vecshard-gt"))
        return 0;
    const char *base_path = NULL, *query_path = NULL, *out_path = NULL, *dist_path = NULL, *metric_s = "l2",
               *ids_path = NULL;
    size_t k = 100, threads = 0, check = 0, nq_limit = 0;
    int quiet = 0;
    static const struct option opts[] = {
        {"base", required_argument, 0, 'b'},
        {"queries", required_argument, 0, 'q'},
        {"out", required_argument, 0, 'o'},
        {"ids", required_argument, 0, 'i'},
        {"k", required_argument, 0, 'k'},
        {"metric", required_argument, 0, 'm'},
        {"threads", required_argument, 0, 't'},
        {"distances", required_argument, 0, 'D'},
        {"check", required_argument, 0, 'c'},
        {"nq", required_argument, 0, 'N'},
        {"quiet", no_argument, 0, 'Q'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'b':
            base_path = optarg;
            break;
        case 'q':
            query_path = optarg;
            break;
        case 'o':
            out_path = optarg;
            break;
        case 'i':
            ids_path = optarg;
            break;
        case 'k':
            k = strtoul(optarg, NULL, 10);
            break;
        case 'm':
            metric_s = optarg;
            break;
        case 't':
            threads = strtoul(optarg, NULL, 10);
            break;
        case 'D':
            dist_path = optarg;
            break;
        case 'c':
            check = strtoul(optarg, NULL, 10);
            break;
        case 'N':
            nq_limit = strtoul(optarg, NULL, 10);
            break;
        case 'Q':
            quiet = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (base_path == NULL || query_path == NULL || out_path == NULL || optind != argc) {
        usage(stderr);
        return 2;
    }
    char err[VS_ERR_LEN];
    size_t out_len = strlen(out_path);
    int out_npy = out_len > 4 && strcmp(out_path + out_len - 4, ".npy") == 0;
    int out_ivecs = out_len > 6 && strcmp(out_path + out_len - 6, ".ivecs") == 0;
    if (ids_path ? !out_npy : !out_ivecs) {
        fprintf(stderr, "vecshard-gt: %s\n",
                ids_path ? "with --ids the ground truth holds int64 item ids: --out must end in .npy"
                         : "--out must end in .ivecs (base rows), or give --ids and write .npy (item ids)");
        return 2;
    }
    vs_metric metric;
    if (vs_metric_parse(metric_s, &metric, err) != VS_OK || k == 0 || k > VS_TOPK_MAX_K) {
        fprintf(stderr, "vecshard-gt: %s\n", k == 0 || k > VS_TOPK_MAX_K ? "--k must be in 1..10000" : err);
        return 2;
    }
    size_t n, nq;
    uint32_t d, dq;
    float *base = NULL, *q = NULL;
    if (vs_vecfile_load_f32(base_path, &n, &d, &base, err) != VS_OK ||
        vs_vecfile_load_f32(query_path, &nq, &dq, &q, err) != VS_OK) {
        fprintf(stderr, "vecshard-gt: %s\n", err);
        return 1;
    }
    if (d != dq) {
        fprintf(stderr, "vecshard-gt: base has dim %u but queries have dim %u\n", d, dq);
        return 1;
    }
    if (nq_limit > 0 && nq_limit < nq)
        nq = nq_limit;
    if (n > INT32_MAX && !ids_path) {
        fprintf(stderr,
                "vecshard-gt: %zu base vectors do not fit .ivecs int32 rows: give --ids, write .npy\n", n);
        return 1;
    }
    vs_ids_file_t idf = {0};
    if (ids_path && vs_ids_file_open(ids_path, &idf, err) != VS_OK) {
        fprintf(stderr, "vecshard-gt: %s\n", err);
        return 1;
    }
    if (ids_path && idf.n != n) {
        fprintf(stderr, "vecshard-gt: %s holds %zu ids for %zu base vectors\n", ids_path, idf.n, n);
        return 1;
    }
    vs_flat_t *flat;
    if (vs_flat_create(d, metric, &flat, err) != VS_OK || vs_flat_add(flat, n, base, NULL, err) != VS_OK) {
        fprintf(stderr, "vecshard-gt: %s\n", err);
        return 1;
    }
    /* with --ids, 16 more than k: distance ties are broken by the items' own ids (as every index does),
     * and an item tied at the k-th distance with a smaller id may sit just past k rows */
    size_t kk = k;
    if (ids_path) {
        kk = k + 16;
        if (kk > n) /* no more rows than the base holds, and never fewer than k */
            kk = n > k ? n : k;
    }
    float *dist = malloc(nq * kk * sizeof(float));
    int64_t *ids = malloc(nq * kk * sizeof(int64_t));
    int32_t *ids32 = malloc(nq * k * sizeof(int32_t));
    if (dist == NULL || ids == NULL || ids32 == NULL) {
        fprintf(stderr, "vecshard-gt: out of memory for %zu x %zu results\n", nq, k);
        return 1;
    }
    vs_progress_t prog;
    vs_progress_start(&prog, "ground truth (queries)", quiet);
    const size_t chunk = 1024;
    for (size_t q0 = 0; q0 < nq; q0 += chunk) {
        size_t m = nq - q0 < chunk ? nq - q0 : chunk;
        if (vs_flat_search(flat, m, q + q0 * d, kk, threads, -1, dist + q0 * kk, ids + q0 * kk, err) !=
            VS_OK) {
            fprintf(stderr, "vecshard-gt: %s\n", err);
            return 1;
        }
        vs_progress_update(&prog, q0 + m, nq);
    }
    double secs = vs_progress_finish(&prog, nq);
    vs_status wst;
    float *dist_out = dist;
    if (ids_path) { /* rows -> the items' ids (a missing result, k > n, stays -1), ties by id */
        int64_t *own = malloc(nq * k * sizeof *own);
        own_pair_t *pairs = malloc(kk * sizeof *pairs);
        dist_out = malloc(nq * k * sizeof *dist_out);
        if (!own || !pairs || !dist_out) {
            fprintf(stderr, "vecshard-gt: out of memory for %zu x %zu ids\n", nq, k);
            return 1;
        }
        for (size_t i = 0; i < nq; i++) {
            for (size_t j = 0; j < kk; j++) {
                int64_t row = ids[i * kk + j];
                pairs[j] = (own_pair_t){dist[i * kk + j], row >= 0 ? vs_ids_file_get(&idf, (size_t)row) : -1};
            }
            qsort(pairs, kk, sizeof *pairs, vs_metric_larger_is_better(metric) ? own_cmp_desc : own_cmp_asc);
            for (size_t j = 0; j < k; j++) {
                own[i * k + j] = pairs[j].id;
                dist_out[i * k + j] = pairs[j].dist;
            }
        }
        wst = vs_vecio_write_npy(out_path, VS_DTYPE_I64, nq, (uint32_t)k, own, err);
        free(own);
        free(pairs);
        vs_ids_file_close(&idf);
    } else {
        for (size_t i = 0; i < nq * k; i++)
            ids32[i] = (int32_t)ids[i];
        wst = vs_vecio_write_ivecs(out_path, nq, (uint32_t)k, ids32, err);
    }
    if (wst != VS_OK ||
        (dist_path && vs_vecio_write_fvecs(dist_path, nq, (uint32_t)k, dist_out, err) != VS_OK)) {
        fprintf(stderr, "vecshard-gt: %s\n", err);
        return 1;
    }
    if (!quiet)
        fprintf(stderr, "vecshard-gt: %zu queries x %zu base (dim %u, %s), k=%zu in %.2f s -> %s\n", nq, n, d,
                vs_metric_name(metric), k, secs, out_path);
    int rc = 0;
    if (check > 0) {
        size_t nc = check < nq ? check : nq;
        size_t bad = check_exact(metric, vs_flat_data(flat), n, q, nc, d, k, ids, kk);
        printf("check: %zu of %zu queries agree with the double-precision brute force (ties allowed only "
               "when exact)\n",
               nc - bad, nc);
        rc = bad == 0 ? 0 : 1;
    }
    vs_flat_destroy(flat);
    free(base);
    free(q);
    if (dist_out != dist)
        free(dist_out);
    free(dist);
    free(ids);
    free(ids32);
    return rc;
}
