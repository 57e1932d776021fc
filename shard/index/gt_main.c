/* vecshard-gt: exact top-k ground truth of a query set against a base set, written as .ivecs (row
 * indices of the base, best first) or, with --ids, as the items' own int64 ids in a .npy (nq x k), the
 * reference every recall figure is measured against.
 * Filtered (issue 17): --attr NAME=FILE columns (as vecshard-build takes them) become the attributes of
 * the Flat index, and --filter TEXT (common/filter.h) is compiled against them and checked inside the
 * exact scan: the ground truth of the filtered search, rows with fewer than k matches padded with -1.
 * --check N recomputes the first N queries with a plain double-precision loop (over the matching rows)
 * and requires that every position agrees up to exact distance ties. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cli/flags.h"
#include "common/cli/progress.h"
#include "common/cli/timing.h"
#include "common/ids.h"
#include "common/filter.h"
#include "common/topk.h"
#include "common/vecio.h"
#include "shard/index/attrs.h"
#include "shard/index/index.h"

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
            "  --attr NAME=FILE     an attribute of the base rows (repeatable, as vecshard-build --attr):\n"
            "                       one value per row, .npy <i8/<i4 (integer) or <f4/<f8 (float)\n"
            "  --filter TEXT        ground truth of the filtered search: only rows matching TEXT, terms\n"
            "                       joined by '&', 'field=v1|v2' or 'field=lo..hi' (either bound may be\n"
            "                       empty), e.g. \"market=3|7&price=..9.5\"; fewer than k matches are\n"
            "                       padded with -1\n"
            "  --k N                neighbours per query (default 100)\n"
            "  --metric M           l2 (default), ip or cosine\n"
            "  --threads N          worker threads (default: all CPUs)\n"
            "  --nq N               use only the first N queries\n"
            "  --distances FILE     also write the distances as .fvecs\n"
            "  --check N            verify the first N queries against a double-precision brute force\n"
            "  --piece-rows N       a base of more rows is read and searched N rows at a time, the\n"
            "                       results merged (default 8388608: 8 GiB at 128-d, the rows and the\n"
            "                       exact index's copy of them); not with\n"
            "                       --ids, --attr or --check, which hold the whole base\n"
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

/* Returns the number of queries whose result disagrees with the double brute force (over the rows
 * matching filter, NULL = all) beyond ties, or is not padded with -1 past the matching rows. */
static size_t check_exact(vs_metric m, const float *base, size_t n, const vs_filter_t *filter, const float *q,
                          size_t nq, size_t d, size_t k, const int64_t *ids, size_t stride)
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
        size_t nm = 0;
        for (size_t j = 0; j < n; j++)
            if (vs_filter_match(filter, j))
                all[nm++] = (dpair_t){ddist(m, qn, base + j * d, d), (int64_t)j};
        qsort(all, nm, sizeof *all, dpair_cmp);
        size_t kk = k < nm ? k : nm;
        for (size_t r = kk; r < k; r++)
            if (ids[i * stride + r] != -1) {
                fprintf(stderr, "check: query %zu rank %zu: got id %lld, expected -1 (%zu rows match)\n", i,
                        r, (long long)ids[i * stride + r], nm);
                bad++;
                break;
            }
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

/* The --attr NAME=FILE columns as attributes of n rows: *out prepared, for the Flat index (its items are
 * the rows). VS_ERR_INVALID_ARGUMENT (bad or repeated name, row count), vecio's errors naming the file. */
static vs_status load_attrs(char *const *specs, size_t n_specs, size_t n, vs_attrs_t **out, char *err)
{
    vs_attr_field_t fields[VS_ATTR_MAX_FIELDS];
    vs_vecfile_t *vf[VS_ATTR_MAX_FIELDS] = {0};
    vs_status st = VS_OK;
    for (size_t i = 0; i < n_specs && st == VS_OK; i++) {
        const char *eq = strchr(specs[i], '=');
        size_t len = eq ? (size_t)(eq - specs[i]) : 0;
        char e[VS_ERR_LEN];
        if (!eq || len > VS_ATTR_NAME_MAX || !eq[1]) {
            st = vs_errf(err, VS_ERR_INVALID_ARGUMENT, "--attr '%s' must be NAME=FILE", specs[i]);
            break;
        }
        snprintf(fields[i].name, sizeof fields[i].name, "%.*s", (int)len, specs[i]);
        if (!vs_attr_name_valid(fields[i].name))
            st = vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                         "--attr %s: not an attribute name (1..%d characters of [a-z0-9_], starting with a "
                         "letter)",
                         fields[i].name, VS_ATTR_NAME_MAX);
        for (size_t j = 0; j < i && st == VS_OK; j++)
            if (strcmp(fields[j].name, fields[i].name) == 0)
                st = vs_errf(err, VS_ERR_INVALID_ARGUMENT, "--attr %s is given twice", fields[i].name);
        if (st == VS_OK && (st = vs_vecfile_open_column(eq + 1, &vf[i], e)) != VS_OK)
            vs_errf(err, st, "--attr %s: %s", fields[i].name, e);
        if (st != VS_OK)
            break;
        vs_vecio_dtype t = vs_vecfile_dtype(vf[i]);
        fields[i].type = t == VS_DTYPE_F32 || t == VS_DTYPE_F64 ? VS_ATTR_FLOAT : VS_ATTR_INT;
        if (vs_vecfile_count(vf[i]) != n)
            st = vs_errf(err, VS_ERR_INVALID_ARGUMENT, "--attr %s holds %zu values for %zu base rows",
                         specs[i], vs_vecfile_count(vf[i]), n);
    }
    vs_attrs_t *a = NULL;
    if (st == VS_OK)
        st = vs_attrs_create(fields, n_specs, n, &a, err);
    for (size_t i = 0; st == VS_OK && i < n_specs; i++) {
        char e[VS_ERR_LEN];
        void *col = vs_attrs_column_mut(a, i);
        st = fields[i].type == VS_ATTR_INT ? vs_vecfile_read_i64(vf[i], 0, n, col, e)
                                           : vs_vecfile_read_f32(vf[i], 0, n, col, e);
        if (st != VS_OK)
            vs_errf(err, st, "--attr %s: %s", fields[i].name, e);
    }
    for (size_t i = 0; i < n_specs; i++)
        vs_vecfile_close(vf[i]);
    if (st == VS_OK)
        st = vs_attrs_prepare(a, err);
    if (st != VS_OK) {
        vs_attrs_destroy(a);
        return st;
    }
    *out = a;
    return VS_OK;
}

/* The base in pieces of `piece` rows (a base larger than memory: 100M x 128 bytes is 51 GB as floats),
 * for the plain case (no attributes, ids or check): each piece is a Flat index searched by every query, and
 * the k best of each query are merged with the best so far by a top-k heap, which breaks distance ties by
 * the smaller row, as the one-piece search does.
 * Writes the .ivecs (and distances); 0 on success, else 1 after a message. */
static int gt_pieces(const vs_vecfile_t *vf, const float *q, size_t nq, uint32_t d, vs_metric metric,
                     size_t k, size_t piece, size_t threads, const char *out_path, const char *dist_path,
                     int quiet)
{
    char err[VS_ERR_LEN];
    const size_t n = vs_vecfile_count(vf);
    const int larger = vs_metric_larger_is_better(metric);
    float *rows = malloc(piece * d * sizeof(float)), *bd = malloc(nq * k * sizeof(float));
    float *pd = malloc(nq * k * sizeof(float)), *md = malloc(k * sizeof(float));
    int64_t *bi = malloc(nq * k * sizeof(int64_t)), *pi = malloc(nq * k * sizeof(int64_t));
    int64_t *mi = malloc(k * sizeof(int64_t));
    int32_t *ids32 = malloc(nq * k * sizeof(int32_t));
    int rc = 1;
    if (!rows || !bd || !pd || !md || !bi || !pi || !mi || !ids32) {
        fprintf(stderr, "vecshard-gt: out of memory for pieces of %zu rows\n", piece);
        goto done;
    }
    if (vs_vecfile_dim(vf) != d) {
        fprintf(stderr, "vecshard-gt: base has dim %u but queries have dim %u\n", vs_vecfile_dim(vf), d);
        goto done;
    }
    for (size_t i = 0; i < nq * k; i++) {
        bd[i] = larger ? -INFINITY : INFINITY;
        bi[i] = -1;
    }
    vs_progress_t prog;
    vs_progress_start(&prog, "ground truth (base rows)", quiet);
    for (size_t r0 = 0; r0 < n; r0 += piece) {
        size_t m = n - r0 < piece ? n - r0 : piece;
        vs_index_t *flat = NULL;
        vs_search_params_t sp = {0};
        if (vs_vecfile_read_f32(vf, r0, m, rows, err) != VS_OK ||
            vs_index_create(d, metric, "Flat", &flat, err) != VS_OK ||
            vs_index_add(flat, m, rows, NULL, threads, NULL, err) != VS_OK ||
            vs_index_search(flat, nq, q, k, &sp, threads, pd, pi, err) != VS_OK) {
            fprintf(stderr, "vecshard-gt: %s\n", err);
            vs_index_destroy(flat);
            goto done;
        }
        vs_index_destroy(flat);
        for (size_t i = 0; i < nq;
             i++) { /* the k best of both lists, ties to the smaller row, as one search */
            vs_topk_t h;
            vs_topk_init(&h, k, md, mi);
            for (size_t t = 0; t < k; t++) {
                if (bi[i * k + t] >= 0)
                    vs_topk_push(&h, vs_topk_key(bd[i * k + t], larger), bi[i * k + t]);
                if (pi[i * k + t] >= 0)
                    vs_topk_push(&h, vs_topk_key(pd[i * k + t], larger), pi[i * k + t] + (int64_t)r0);
            }
            vs_topk_emit(&h, larger, bd + i * k, bi + i * k);
        }
        vs_progress_update(&prog, r0 + m, n);
    }
    double secs = vs_progress_finish(&prog, n);
    for (size_t i = 0; i < nq * k; i++)
        ids32[i] = (int32_t)bi[i];
    if (vs_vecio_write_ivecs(out_path, nq, (uint32_t)k, ids32, err) != VS_OK ||
        (dist_path && vs_vecio_write_fvecs(dist_path, nq, (uint32_t)k, bd, err) != VS_OK)) {
        fprintf(stderr, "vecshard-gt: %s\n", err);
        goto done;
    }
    if (!quiet)
        fprintf(
            stderr,
            "vecshard-gt: %zu queries x %zu base (dim %u, %s, pieces of %zu rows), k=%zu in %.2f s -> %s\n",
            nq, n, d, vs_metric_name(metric), piece, k, secs, out_path);
    rc = 0;
done:
    free(rows);
    free(bd);
    free(pd);
    free(md);
    free(bi);
    free(pi);
    free(mi);
    free(ids32);
    return rc;
}

int main(int argc, char **argv)
{
    if (vs_cli_version_flag(argc, argv, "vecshard-gt"))
        return 0;
    const char *base_path = NULL, *query_path = NULL, *out_path = NULL, *dist_path = NULL, *metric_s = "l2",
               *ids_path = NULL, *filter_text = NULL;
    char *attr_specs[VS_ATTR_MAX_FIELDS];
    size_t k = 100, threads = 0, check = 0, nq_limit = 0, n_attrs = 0, piece = (size_t)1 << 23;
    int quiet = 0;
    static const struct option opts[] = {
        {"base", required_argument, 0, 'b'},
        {"queries", required_argument, 0, 'q'},
        {"out", required_argument, 0, 'o'},
        {"ids", required_argument, 0, 'i'},
        {"attr", required_argument, 0, 'A'},
        {"filter", required_argument, 0, 'F'},
        {"k", required_argument, 0, 'k'},
        {"metric", required_argument, 0, 'm'},
        {"threads", required_argument, 0, 't'},
        {"distances", required_argument, 0, 'D'},
        {"check", required_argument, 0, 'c'},
        {"nq", required_argument, 0, 'N'},
        {"piece-rows", required_argument, 0, 'P'},
        {"quiet", no_argument, 0, 'Q'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    int c;
    char xerr[VS_ERR_LEN];
    if (vs_cli_exact_long_options(argc, argv, opts, xerr) != 0) {
        fprintf(stderr, "vecshard-gt: %s\n", xerr);
        return 2;
    }
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
        case 'A':
            if (n_attrs == VS_ATTR_MAX_FIELDS) {
                fprintf(stderr, "vecshard-gt: at most %d --attr fields\n", VS_ATTR_MAX_FIELDS);
                return 2;
            }
            attr_specs[n_attrs++] = optarg;
            break;
        case 'F':
            filter_text = optarg;
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
        case 'P':
            piece = strtoul(optarg, NULL, 10);
            if (piece == 0) {
                fprintf(stderr, "vecshard-gt: --piece-rows must be at least 1\n");
                return 2;
            }
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
    /* from here every exit goes through done, which frees what was made (clean under LeakSanitizer) */
    int rc = 1;
    size_t n = 0, nq = 0;
    uint32_t d = 0, dq = 0;
    float *base = NULL, *q = NULL, *dist = NULL, *dist_out = NULL;
    int64_t *ids = NULL, *own = NULL;
    int32_t *ids32 = NULL;
    own_pair_t *pairs = NULL;
    vs_ids_file_t idf = {0};
    vs_index_t *flat = NULL;
    vs_attrs_t *attrs = NULL;
    vs_filter_t cf;
    vs_filter_spec_t spec;
    vs_filter_spec_init(&spec);
    if (filter_text && vs_filter_spec_parse(filter_text, &spec, err) != VS_OK) {
        fprintf(stderr, "vecshard-gt: --filter: %s\n", err);
        rc = 2;
        goto done;
    }
    if (spec.n_terms > 0 && n_attrs == 0) {
        fprintf(stderr, "vecshard-gt: --filter needs the base's attributes: give --attr NAME=FILE\n");
        rc = 2;
        goto done;
    }
    if (vs_vecfile_load_f32(query_path, &nq, &dq, &q, err) != VS_OK) {
        fprintf(stderr, "vecshard-gt: %s\n", err);
        goto done;
    }
    if (nq_limit > 0 && nq_limit < nq)
        nq = nq_limit;
    if (!ids_path && n_attrs == 0 && check == 0) {
        vs_vecfile_t *bf = NULL;
        if (vs_vecfile_open(base_path, &bf, err) != VS_OK) {
            fprintf(stderr, "vecshard-gt: %s\n", err);
            goto done;
        }
        size_t bn = vs_vecfile_count(bf);
        if (bn > piece) {
            if (bn > INT32_MAX)
                fprintf(stderr, "vecshard-gt: %zu base vectors do not fit .ivecs int32 rows\n", bn);
            else
                rc = gt_pieces(bf, q, nq, dq, metric, k, piece, threads, out_path, dist_path, quiet);
            vs_vecfile_close(bf);
            goto done;
        }
        vs_vecfile_close(bf);
    }
    if (vs_vecfile_load_f32(base_path, &n, &d, &base, err) != VS_OK) {
        fprintf(stderr, "vecshard-gt: %s\n", err);
        goto done;
    }
    if (d != dq) {
        fprintf(stderr, "vecshard-gt: base has dim %u but queries have dim %u\n", d, dq);
        goto done;
    }
    if (n > INT32_MAX && !ids_path) {
        fprintf(stderr,
                "vecshard-gt: %zu base vectors do not fit .ivecs int32 rows: give --ids, write .npy\n", n);
        goto done;
    }
    if (ids_path && vs_ids_file_open(ids_path, &idf, err) != VS_OK) {
        fprintf(stderr, "vecshard-gt: %s\n", err);
        goto done;
    }
    if (ids_path && idf.n != n) {
        fprintf(stderr, "vecshard-gt: %s holds %zu ids for %zu base vectors\n", ids_path, idf.n, n);
        goto done;
    }
    /* Flat through the index interface: its items are the base rows (ids 0..n-1), so attributes and the
     * filter's positions are rows too */
    if (vs_index_create(d, metric, "Flat", &flat, err) != VS_OK ||
        vs_index_add(flat, n, base, NULL, threads, NULL, err) != VS_OK ||
        (n_attrs && (load_attrs(attr_specs, n_attrs, n, &attrs, err) != VS_OK ||
                     vs_index_set_attrs(flat, attrs, err) != VS_OK)) || /* takes attrs, also on failure */
        vs_filter_compile(&spec, vs_index_attrs(flat), &cf, err) != VS_OK) {
        fprintf(stderr, "vecshard-gt: %s\n", err);
        goto done;
    }
    if (check > 0 && metric == VS_METRIC_COSINE) /* the check reads the rows as the index holds them */
        vs_normalize_rows(base, n, d);
    if (vs_filter_active(&cf) && !quiet) {
        size_t n_match = 0;
        for (size_t j = 0; j < n; j++)
            n_match += vs_filter_match(&cf, j);
        fprintf(stderr, "vecshard-gt: --filter \"%s\" matches %zu of %zu base rows%s\n", filter_text, n_match,
                n, n_match < k ? ": every answer is padded with -1 past them" : "");
    }
    vs_search_params_t sp = {.filter = vs_filter_active(&cf) ? &cf : NULL};
    /* with --ids, 16 more than k: distance ties are broken by the items' own ids (as every index does),
     * and an item tied at the k-th distance with a smaller id may sit just past k rows */
    size_t kk = k;
    if (ids_path) {
        kk = k + 16;
        if (kk > n) /* no more rows than the base holds, and never fewer than k */
            kk = n > k ? n : k;
    }
    dist = malloc(nq * kk * sizeof(float));
    ids = malloc(nq * kk * sizeof(int64_t));
    ids32 = malloc(nq * k * sizeof(int32_t));
    if (dist == NULL || ids == NULL || ids32 == NULL) {
        fprintf(stderr, "vecshard-gt: out of memory for %zu x %zu results\n", nq, k);
        goto done;
    }
    vs_progress_t prog;
    vs_progress_start(&prog, "ground truth (queries)", quiet);
    const size_t chunk = 1024;
    for (size_t q0 = 0; q0 < nq; q0 += chunk) {
        size_t m = nq - q0 < chunk ? nq - q0 : chunk;
        if (vs_index_search(flat, m, q + q0 * d, kk, &sp, threads, dist + q0 * kk, ids + q0 * kk, err) !=
            VS_OK) {
            fprintf(stderr, "vecshard-gt: %s\n", err);
            goto done;
        }
        vs_progress_update(&prog, q0 + m, nq);
    }
    double secs = vs_progress_finish(&prog, nq);
    vs_status wst;
    dist_out = dist;
    if (ids_path) { /* rows -> the items' ids (a missing result, k > n, stays -1), ties by id */
        own = malloc(nq * k * sizeof *own);
        pairs = malloc(kk * sizeof *pairs);
        dist_out = malloc(nq * k * sizeof *dist_out);
        if (!own || !pairs || !dist_out) {
            fprintf(stderr, "vecshard-gt: out of memory for %zu x %zu ids\n", nq, k);
            goto done;
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
    } else {
        for (size_t i = 0; i < nq * k; i++)
            ids32[i] = (int32_t)ids[i];
        wst = vs_vecio_write_ivecs(out_path, nq, (uint32_t)k, ids32, err);
    }
    if (wst != VS_OK ||
        (dist_path && vs_vecio_write_fvecs(dist_path, nq, (uint32_t)k, dist_out, err) != VS_OK)) {
        fprintf(stderr, "vecshard-gt: %s\n", err);
        goto done;
    }
    if (!quiet)
        fprintf(stderr, "vecshard-gt: %zu queries x %zu base (dim %u, %s), k=%zu in %.2f s -> %s\n", nq, n, d,
                vs_metric_name(metric), k, secs, out_path);
    rc = 0;
    if (check > 0) {
        size_t nc = check < nq ? check : nq;
        size_t bad = check_exact(metric, base, n, sp.filter, q, nc, d, k, ids, kk);
        printf("check: %zu of %zu queries agree with the double-precision brute force (ties allowed only "
               "when exact)\n",
               nc - bad, nc);
        rc = bad == 0 ? 0 : 1;
    }
done:
    vs_index_destroy(flat);
    vs_filter_spec_fini(&spec);
    vs_ids_file_close(&idf);
    free(base);
    free(q);
    if (dist_out != dist)
        free(dist_out);
    free(dist);
    free(ids);
    free(ids32);
    free(own);
    free(pairs);
    return rc;
}
