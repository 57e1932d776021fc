/* vecshard-bench-filter: attribute-filtered search in process (issue 17 goal: on >= 1M vectors, filters
 * of 1 % selectivity, uncorrelated and correlated with the vector clusters, reached by one tag value and
 * by a two-term conjunction, at recall@10 >= 0.95 against the exact filtered ground truth, at most 2x the
 * latency of unfiltered search at recall 0.95). Builds the index (--factory) over --base and a Flat
 * oracle, gives every row attributes drawn from --seed (tag 0..999, a and b 0..9, price in [0, 100), and
 * clu: the row's cluster among 100 k-means clusters of the base, so a clu filter is correlated with the
 * vectors), then:
 *  - unfiltered: the cheapest nprobe (IVF) or efSearch (HNSW) of a ladder with recall@10 >= --target
 *    against the exact top 10 (or the --nprobe / --ef given); a refining IVF (",RFlat") also sweeps
 *    k_factor 4..64 unless --k-factor is given (its codes alone cap recall): per k_factor the smallest
 *    nprobe reaching the target, the fastest of those (one timed run each) kept;
 *  - per filter (0.1 % to 50 %; the index scales the setting by selectivity itself, or answers exactly
 *    below its filter_exact_threshold): up from the unfiltered setting (nprobe, then k_factor) to the
 *    first step reaching --target, then every step from the bottom of the ladder to two above it, the
 *    fastest reaching the target kept (the cost is not monotonic in the setting: a small efSearch leaves
 *    filtered queries short and the index answers them exactly). Beside it post-filtering: unfiltered
 *    search at the unfiltered setting for k' = ceil(20 / selectivity) results (at most VS_TOPK_MAX_K),
 *    the first 10 whose attributes match kept, checked from this tool's own arrays;
 *  - timing on one thread, one query per call, interleaved (filtered, post-filter, unfiltered, --rounds
 *    times) and each side's best, because the machine is shared.
 * Every answer is checked against the tool's own attribute arrays, and must be the same in every round
 * and in the sweeps (batched on all threads): a result violating its filter, a short answer or answers
 * changing between runs make the exit status 1. Never a pass/fail on time or recall.
 * Not here: fresh writes (vecshard-bench-fresh), the cluster path.
 * Usage: vecshard-bench-filter --base F --queries F [--factory S] [--nprobe N | --ef N] [--nq 500]
 *        [--target 0.95] [--seed 1] [--filter-exact F] [--k-factor F] [--rounds 2] [--json FILE] */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cli/flags.h"
#include "common/filter.h"
#include "common/hash.h"
#include "common/kmeans.h"
#include "common/topk.h"
#include "shard/index/attrs.h"
#include "shard/index/hnsw.h"
#include "shard/index/index.h"
#include "tests/bench/inproc.h"

#define K 10
#define N_CLU 100     /* k-means clusters of the base behind the correlated field */
#define MAX_FILTERS 8 /* the filters below */
#define MAX_LADDER 40

enum { F_TAG, F_A, F_B, F_CLU, F_PRICE, N_FIELDS };
static const vs_attr_field_t fields[N_FIELDS] = {{"tag", VS_ATTR_INT},
                                                 {"a", VS_ATTR_INT},
                                                 {"b", VS_ATTR_INT},
                                                 {"clu", VS_ATTR_INT},
                                                 {"price", VS_ATTR_FLOAT}};

/* The attributes by row (= id). */
typedef struct cols {
    int64_t *ival[F_PRICE]; /* tag, a, b, clu */
    float *price;
} cols_t;

typedef struct timing {
    double us, cpu_us; /* best wall and that run's CPU per query */
} timing_t;

typedef struct filt {
    char name[16], text[256];
    const char *kind;
    vs_filter_spec_t spec;
    vs_filter_t cf, cf_flat; /* compiled against the index's and the oracle's attributes */
    unsigned char *match;    /* by row, from cols_t */
    size_t n_match;
    int64_t *gt;        /* nq x K exact filtered */
    int clu;            /* a term on clu: */
    unsigned char *inq; /* the queries whose own cluster it selects */
    size_t n_inq;
    /* the results */
    const char *path; /* the index's strategy for it: exact over the matches, or lists / graph */
    size_t at;        /* ladder step */
    float kf;         /* k_factor */
    int reached;
    double recall, post_recall, rec_in, rec_out; /* rec_in / rec_out: over the inq queries / the others */
    size_t post_k;
    timing_t ours, post, unf;
    size_t bad, miss, differ; /* results violating the filter; empty slots (short answers); result slots
                             differing between runs */
} filt_t;

static int die(const char *what, const char *err)
{
    fprintf(stderr, "vecshard-bench-filter: %s: %s\n", what, err);
    return 1;
}

static uint64_t next_rand(uint64_t *s)
{
    *s += 0x9e3779b97f4a7c15ull;
    return vs_splitmix64(*s);
}

/* Attaches the columns to idx in its item order (ids are row numbers). */
static vs_status attach(vs_index_t *idx, const cols_t *c, size_t n_rows, char *err)
{
    size_t n = vs_index_count(idx);
    int64_t *ids = malloc((n ? n : 1) * sizeof *ids);
    if (!ids)
        return vs_errf(err, VS_ERR_NOMEM, "out of memory");
    vs_index_ids_in_order(idx, ids);
    for (size_t j = 0; j < n; j++)
        if (ids[j] < 0 || (size_t)ids[j] >= n_rows) {
            free(ids);
            return vs_errf(err, VS_ERR_INTERNAL, "item %zu has id %lld, not a row number", j,
                           (long long)ids[j]);
        }
    vs_attrs_t *a;
    vs_status st = vs_attrs_create(fields, N_FIELDS, n, &a, err);
    if (st == VS_OK) {
        for (size_t f = 0; f < F_PRICE; f++) {
            int64_t *col = vs_attrs_column_mut(a, f);
            for (size_t j = 0; j < n; j++)
                col[j] = c->ival[f][ids[j]];
        }
        float *pc = vs_attrs_column_mut(a, F_PRICE);
        for (size_t j = 0; j < n; j++)
            pc[j] = c->price[ids[j]];
        st = vs_attrs_prepare(a, err);
        if (st == VS_OK)
            st = vs_index_set_attrs(idx, a, err); /* takes a, also on failure */
        else
            vs_attrs_destroy(a);
    }
    free(ids);
    return st;
}

/* 1 when row matches every term of s, from the tool's own arrays (not the library's compiled filter). */
static int row_match(const vs_filter_spec_t *s, const int *field_of, const cols_t *c, size_t row)
{
    for (size_t i = 0; i < s->n_terms; i++) {
        const vs_filter_term_t *t = &s->terms[i];
        if (field_of[i] == F_PRICE) {
            double v = c->price[row];
            if (!(v >= t->lo && v <= t->hi))
                return 0;
            continue;
        }
        int64_t v = c->ival[field_of[i]][row];
        if (t->kind == VS_FILTER_RANGE) {
            if (!((double)v >= t->lo && (double)v <= t->hi))
                return 0;
            continue;
        }
        int in = 0;
        for (size_t j = 0; j < t->n_values && !in; j++)
            in = t->values[j] == v;
        if (!in)
            return 0;
    }
    return 1;
}

/* Recall@K of got against gt over the queries with sel[i] == want (sel NULL: all); -1 when gt holds none. */
static double recall(const int64_t *got, const int64_t *gt, size_t nq, const unsigned char *sel, int want)
{
    size_t hit = 0, all = 0;
    for (size_t i = 0; i < nq; i++) {
        if (sel && sel[i] != want)
            continue;
        for (size_t a = 0; a < K; a++) {
            if (gt[i * K + a] < 0)
                continue;
            all++;
            for (size_t b = 0; b < K; b++)
                if (got[i * K + b] == gt[i * K + a]) {
                    hit++;
                    break;
                }
        }
    }
    return all ? (double)hit / (double)all : -1.0;
}

/* Results violating the filter (match NULL: none can) or not ids of the base; adds to *missing the empty
 * slots where the exact answer has a result (a short answer). */
static size_t check(const int64_t *got, const int64_t *gt, size_t nq, const unsigned char *match, size_t n,
                    size_t *missing)
{
    size_t bad = 0;
    for (size_t i = 0; i < nq * K; i++) {
        if (got[i] == -1)
            *missing += gt[i] != -1;
        else if (got[i] < 0 || (size_t)got[i] >= n || (match && !match[got[i]]))
            bad++;
    }
    return bad;
}

/* Queries with an empty slot where the exact answer has a result. */
static size_t short_queries(const int64_t *got, const int64_t *gt, size_t nq)
{
    size_t c = 0;
    for (size_t i = 0; i < nq; i++)
        for (size_t j = 0; j < K; j++)
            if (got[i * K + j] == -1 && gt[i * K + j] != -1) {
                c++;
                break;
            }
    return c;
}

static size_t differ(const int64_t *x, const int64_t *y, size_t m)
{
    size_t c = 0;
    for (size_t i = 0; i < m; i++)
        c += x[i] != y[i];
    return c;
}

/* One query per call on this thread; the best run so far is kept in *best. */
static vs_status timed(const vs_index_t *idx, const vs_search_params_t *p, size_t nq, const float *q,
                       uint32_t d, float *dist, int64_t *ids, timing_t *best, char *err)
{
    double t0 = vs_bench_now_s(), c0 = vs_bench_cpu_s();
    for (size_t i = 0; i < nq; i++) {
        vs_status st = vs_index_search(idx, 1, q + i * d, K, p, 1, dist + i * K, ids + i * K, err);
        if (st != VS_OK)
            return st;
    }
    double us = (vs_bench_now_s() - t0) / (double)nq * 1e6, cpu = (vs_bench_cpu_s() - c0) / (double)nq * 1e6;
    if (us < best->us) {
        best->us = us;
        best->cpu_us = cpu;
    }
    return VS_OK;
}

/* Post-filtering: unfiltered search for kk results, then the first K that match; one query per call. */
static vs_status post_filter(const vs_index_t *idx, const vs_search_params_t *p, size_t kk, size_t nq,
                             const float *q, uint32_t d, const unsigned char *match, size_t n, float *kdist,
                             int64_t *kids, int64_t *out, timing_t *best, char *err)
{
    double t0 = vs_bench_now_s(), c0 = vs_bench_cpu_s();
    for (size_t i = 0; i < nq; i++) {
        vs_status st = vs_index_search(idx, 1, q + i * d, kk, p, 1, kdist, kids, err);
        if (st != VS_OK)
            return st;
        size_t m = 0;
        for (size_t j = 0; j < kk && m < K; j++)
            if (kids[j] >= 0 && (size_t)kids[j] < n && match[kids[j]])
                out[i * K + m++] = kids[j];
        for (; m < K; m++)
            out[i * K + m] = -1;
    }
    double us = (vs_bench_now_s() - t0) / (double)nq * 1e6, cpu = (vs_bench_cpu_s() - c0) / (double)nq * 1e6;
    if (us < best->us) {
        best->us = us;
        best->cpu_us = cpu;
    }
    return VS_OK;
}

static void set_param(vs_search_params_t *p, int hnsw, uint32_t v)
{
    if (hnsw)
        p->ef_search = v;
    else
        p->nprobe = v;
}

/* The first ladder step from `from` whose recall (all queries in one call, all threads) reaches target
 * into *at, with its answers in ids; *reached 0 when none does (then the last step's). */
static vs_status sweep(const vs_index_t *idx, int hnsw, const uint32_t *ladder, size_t n_ladder, size_t from,
                       const vs_search_params_t *p0, const int64_t *gt, size_t nq, const float *q,
                       double target, const char *what, float *dist, int64_t *ids, size_t *at, int *reached,
                       char *err)
{
    for (size_t s = from; s < n_ladder; s++) {
        vs_search_params_t p = *p0;
        set_param(&p, hnsw, ladder[s]);
        double t0 = vs_bench_now_s();
        vs_status st = vs_index_search(idx, nq, q, K, &p, 0, dist, ids, err);
        if (st != VS_OK)
            return st;
        double r = recall(ids, gt, nq, NULL, 0);
        fprintf(stderr, "  %s: %s %u k_factor %g: recall@%d %.4f (%.1f s)\n", what,
                hnsw ? "efSearch" : "nprobe", ladder[s], (double)p.k_factor, K, r, vs_bench_now_s() - t0);
        *at = s;
        *reached = r >= target;
        if (*reached)
            return VS_OK;
    }
    return VS_OK;
}

/* "nprobe" or "efSearch", "nprobe/k_factor" for a refining IVF; '*' when the target was not reached. */
static void setting(char *buf, size_t len, int refine, uint32_t v, float kf, int reached)
{
    if (refine)
        snprintf(buf, len, "%u/%g%s", v, (double)kf, reached ? "" : "*");
    else
        snprintf(buf, len, "%u%s", v, reached ? "" : "*");
}

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: vecshard-bench-filter --base FILE --queries FILE [--factory IVF1024,PQ32x4fs,RFlat]\n"
        "       [--nprobe N | --ef N] [--nq 500] [--target 0.95] [--seed 1] [--filter-exact F]\n"
        "       [--k-factor F] [--rounds 2] [--json FILE]\n"
        "Attribute-filtered search in process (tests/bench/filter_main.c): builds the index and a Flat\n"
        "oracle, attributes from --seed (tag 0..999, a and b 0..9, price [0,100), clu = the row's cluster\n"
        "among 100 k-means clusters of the base), and for filters of 0.1 %% to 50 %% (one term,\n"
        "conjunctions, correlated with the clusters) finds the fastest nprobe (IVF) or efSearch (HNSW)\n"
        "at recall@10 >= --target against the exact filtered top 10 (up from the unfiltered setting,\n"
        "itself the cheapest at --target unless --nprobe / --ef gives it, then every step below), and\n"
        "times it on one thread, one query per call, against post-filtering (unfiltered search for\n"
        "k' = ceil(20 / selectivity), capped at %u, keeping the first 10 that match) and unfiltered\n"
        "search, interleaved, each side's best of --rounds (2).\n"
        "  --filter-exact F  filter_exact_threshold (0 = the index's default)\n"
        "  --k-factor F      refine k_factor (IVF ...,RFlat; HNSW,SQ8); 0 = the index's default. Not given,\n"
        "                    a refining IVF sweeps it too (4, 8, 16, 32, 64: its codes alone cap recall)\n"
        "  --seed N          the attributes' seed (1)\n"
        "  --json FILE       also write the results as JSON\n"
        "Exit 1 when a result violates its filter, an answer is short, or answers change between runs.\n",
        VS_TOPK_MAX_K);
}

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

typedef struct clu_key {
    size_t key;
    uint32_t c;
} clu_key_t;

static int cmp_clu_key(const void *x, const void *y)
{
    const clu_key_t *a = x, *b = y;
    if (a->key != b->key)
        return a->key < b->key ? -1 : 1;
    return a->c < b->c ? -1 : a->c > b->c;
}

int main(int argc, char **argv)
{
    vs_bench_inproc_t b = {.factory = "IVF1024,PQ32x4fs,RFlat", .nq_max = 500};
    double target = 0.95, fexact = 0, kfactor = -1; /* -1: a ladder for a refining IVF, else the default */
    long long seed = 1, rounds = 2;
    const char *json_path = NULL;
    static const struct option lo[] = {
        VS_BENCH_INPROC_OPTIONS, {"target", 1, 0, 't'},       {"seed", 1, 0, 's'},
        {"rounds", 1, 0, 'r'},   {"filter-exact", 1, 0, 'x'}, {"k-factor", 1, 0, 'k'},
        {"json", 1, 0, 'j'},     {"help", 0, 0, 'h'},         {0, 0, 0, 0}};
    char err[VS_ERR_LEN];
    int o;
    while ((o = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        vs_status st = VS_OK;
        if (vs_bench_inproc_opt(&b, o, optarg, &st, err)) {
        } else if (o == 't') {
            st = vs_cli_parse_double("--target", optarg, 0, 1, &target, err);
        } else if (o == 's') {
            st = vs_cli_parse_int("--seed", optarg, 0, 1ll << 62, &seed, err);
        } else if (o == 'r') {
            st = vs_cli_parse_int("--rounds", optarg, 1, 100, &rounds, err);
        } else if (o == 'x') {
            st = vs_cli_parse_double("--filter-exact", optarg, 0, 1, &fexact, err);
        } else if (o == 'k') {
            st = vs_cli_parse_double("--k-factor", optarg, 0, 1000, &kfactor, err);
        } else if (o == 'j') {
            json_path = optarg;
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
    if (optind < argc) {
        usage(stderr);
        return 2;
    }
    vs_index_t *idx, *flat;
    double t0 = vs_bench_now_s();
    if (vs_bench_inproc_load(&b, err) != VS_OK)
        return die("data", err);
    const size_t n = b.n, nq = b.nq;
    const uint32_t d = b.d;
    const float *x = b.x, *q = b.q;
    if (n < N_CLU * 10 || nq == 0)
        return die("data", "the base needs at least 1000 rows, and one query");
    fprintf(stderr, "loaded %zu x %u and %zu queries in %.1f s; building %s\n", n, d, nq,
            vs_bench_now_s() - t0, b.factory);
    t0 = vs_bench_now_s();
    if (vs_bench_inproc_build(&b, &idx, err) != VS_OK)
        return die("build", err);
    const double build_s = vs_bench_now_s() - t0;
    fprintf(stderr, "built %s in %.1f s\n", b.factory, build_s);
    const vs_factory_spec_t *spec = vs_index_spec(idx);
    const int hnsw = spec->type == VS_INDEX_HNSW;
    const char *pname = hnsw ? "efSearch" : "nprobe";
    /* k_factor: a refining IVF's codes alone cap recall (the default 1 re-ranks only the 10 they rank best),
     * so the sweeps also raise it, as the IVF benchmarks do */
    static const float kf_refine[] = {4, 8, 16, 32, 64};
    const int refine = spec->type == VS_INDEX_IVF && spec->refine != VS_REFINE_NONE;
    float kfs[5] = {kfactor > 0 ? (float)kfactor : 0};
    size_t n_kf = 1;
    if (kfactor < 0 && refine) {
        memcpy(kfs, kf_refine, sizeof kf_refine);
        n_kf = sizeof kf_refine / sizeof *kf_refine;
    }

    if (vs_index_create(d, VS_METRIC_L2, "Flat", &flat, err) != VS_OK ||
        vs_index_add(flat, n, x, NULL, 0, NULL, err) != VS_OK)
        return die("exact", err);

    /* attributes by row */
    cols_t c;
    for (size_t f = 0; f < F_PRICE; f++)
        c.ival[f] = malloc(n * sizeof(int64_t));
    c.price = malloc(n * sizeof(float));
    float *cent = malloc((size_t)N_CLU * d * sizeof *cent);
    int32_t *lab = malloc(n * sizeof *lab), *qlab = malloc(nq * sizeof *qlab);
    if (!c.ival[0] || !c.ival[1] || !c.ival[2] || !c.ival[3] || !c.price || !cent || !lab || !qlab)
        return die("memory", "out of memory");
    uint64_t rng = (uint64_t)seed;
    for (size_t i = 0; i < n; i++) {
        c.ival[F_TAG][i] = (int64_t)(next_rand(&rng) % 1000);
        c.ival[F_A][i] = (int64_t)(next_rand(&rng) % 10);
        c.ival[F_B][i] = (int64_t)(next_rand(&rng) % 10);
        c.price[i] = (float)((double)(next_rand(&rng) >> 40) / (double)(1ull << 24) * 100.0);
    }
    t0 = vs_bench_now_s();
    vs_kmeans_params_t kp = {.k = N_CLU, .seed = (uint64_t)seed};
    if (vs_kmeans_train(x, n, d, &kp, cent, NULL, NULL, err) != VS_OK ||
        vs_kmeans_assign(x, n, cent, N_CLU, d, 0, lab, NULL, err) != VS_OK ||
        vs_kmeans_assign(q, nq, cent, N_CLU, d, 0, qlab, NULL, err) != VS_OK)
        return die("k-means", err);
    size_t clu_size[N_CLU] = {0}, clu_nq[N_CLU] = {0};
    for (size_t i = 0; i < n; i++) {
        c.ival[F_CLU][i] = lab[i];
        clu_size[lab[i]]++;
    }
    for (size_t i = 0; i < nq; i++)
        clu_nq[qlab[i]]++;
    fprintf(stderr, "k-means: %d clusters in %.1f s\n", N_CLU, vs_bench_now_s() - t0);
    if (attach(idx, &c, n, err) != VS_OK || attach(flat, &c, n, err) != VS_OK)
        return die("attributes", err);

    /* the filters; clusters ordered by how near their size is to 1 % */
    clu_key_t ck[N_CLU];
    for (uint32_t i = 0; i < N_CLU; i++) {
        size_t s = clu_size[i], one = n / 100;
        ck[i] = (clu_key_t){s > one ? s - one : one - s, i};
    }
    qsort(ck, N_CLU, sizeof *ck, cmp_clu_key);
    uint32_t clu1 = ck[0].c; /* near 1 %, holding queries when one such cluster does */
    for (size_t i = 0; i < N_CLU; i++)
        if (clu_nq[ck[i].c] > 0) {
            clu1 = ck[i].c;
            break;
        }
    char clu10[128] = "";
    for (size_t i = 0, len = 0; i < 10; i++)
        len += (size_t)snprintf(clu10 + len, sizeof clu10 - len, "%s%u", i ? "|" : "", ck[i].c);
    filt_t fl[MAX_FILTERS];
    memset(fl, 0, sizeof fl);
    size_t nf = 0;
#define FILTER(nm, knd, ...)                                                                                 \
    do {                                                                                                     \
        snprintf(fl[nf].name, sizeof fl[nf].name, "%s", nm);                                                 \
        snprintf(fl[nf].text, sizeof fl[nf].text, __VA_ARGS__);                                              \
        fl[nf++].kind = knd;                                                                                 \
    } while (0)
    FILTER("tag1", "1 value", "tag=7");
    FILTER("tag10+price", "2 terms", "tag=0..9&price=0..10");
    FILTER("tag10", "10 values", "tag=1|2|3|4|5|6|7|8|9|10");
    FILTER("a+b", "2 terms", "a=3&b=5");
    FILTER("clu1", "correlated", "clu=%u", clu1);
    FILTER("a", "1 value", "a=1");
    FILTER("clu10", "correlated", "clu=%s", clu10);
    FILTER("price50", "float range", "price=0..50");
#undef FILTER

    /* exact answers: unfiltered, then per filter (the Flat oracle with the same filter) */
    const size_t m = nq * K, kmax = VS_TOPK_MAX_K < n ? VS_TOPK_MAX_K : n;
    int64_t *gt0 = malloc(m * sizeof *gt0), *ref0 = malloc(m * sizeof *ref0), *ref = malloc(m * sizeof *ref);
    int64_t *ids = malloc(m * sizeof *ids), *uids = malloc(m * sizeof *uids),
            *upids = malloc(m * sizeof *upids);
    int64_t *post[2] = {malloc(m * sizeof(int64_t)), malloc(m * sizeof(int64_t))};
    float *dist = malloc(m * sizeof *dist), *kdist = malloc(kmax * sizeof *kdist);
    int64_t *kids = malloc(kmax * sizeof *kids);
    if (!gt0 || !ref0 || !ref || !ids || !uids || !upids || !post[0] || !post[1] || !dist || !kdist || !kids)
        return die("memory", "out of memory");
    t0 = vs_bench_now_s();
    if (vs_index_search(flat, nq, q, K, NULL, 0, dist, gt0, err) != VS_OK)
        return die("exact", err);
    fprintf(stderr, "exact ground truth: unfiltered in %.1f s\n", vs_bench_now_s() - t0);
    size_t bad_total = 0;
    for (size_t i = 0; i < nf; i++) {
        filt_t *f = &fl[i];
        int field_of[VS_FILTER_MAX_TERMS];
        if (vs_filter_spec_parse(f->text, &f->spec, err) != VS_OK ||
            vs_filter_compile(&f->spec, vs_index_attrs(idx), &f->cf, err) != VS_OK ||
            vs_filter_compile(&f->spec, vs_index_attrs(flat), &f->cf_flat, err) != VS_OK)
            return die(f->text, err);
        for (size_t t = 0; t < f->spec.n_terms; t++) {
            field_of[t] = -1;
            for (int j = 0; j < N_FIELDS; j++)
                if (strcmp(f->spec.terms[t].field, fields[j].name) == 0)
                    field_of[t] = j;
            if (field_of[t] < 0)
                return die(f->text, "unknown field");
        }
        f->match = malloc(n);
        f->gt = malloc(m * sizeof *f->gt);
        f->inq = calloc(nq, 1);
        if (!f->match || !f->gt || !f->inq)
            return die("memory", "out of memory");
        for (size_t r = 0; r < n; r++)
            f->n_match += f->match[r] = (unsigned char)row_match(&f->spec, field_of, &c, r);
        for (size_t t = 0; t < f->spec.n_terms; t++) /* queries lying in the filter's clusters */
            if (field_of[t] == F_CLU) {
                f->clu = 1;
                for (size_t qi = 0; qi < nq; qi++)
                    for (size_t j = 0; j < f->spec.terms[t].n_values; j++)
                        f->inq[qi] |= f->spec.terms[t].values[j] == qlab[qi];
            }
        t0 = vs_bench_now_s();
        vs_search_params_t pf = {.filter = &f->cf_flat};
        if (vs_index_search(flat, nq, q, K, &pf, 0, dist, f->gt, err) != VS_OK)
            return die("exact filtered", err);
        /* the oracle itself: every answer matches, none short of min(K, matches) */
        size_t unused = 0, bad_gt = check(f->gt, f->gt, nq, f->match, n, &unused);
        for (size_t j = 0; j < m; j++)
            bad_gt += f->gt[j] == -1 && j % K < f->n_match;
        if (bad_gt)
            fprintf(stderr, "ORACLE: %s: %zu exact filtered results violate the filter or are missing\n",
                    f->name, bad_gt);
        bad_total += bad_gt;
        fprintf(stderr, "exact ground truth %zu/%zu: %s (%s: %.3f %% of the base) in %.1f s\n", i + 1, nf,
                f->name, f->text, 100.0 * (double)f->n_match / (double)n, vs_bench_now_s() - t0);
    }
    vs_index_destroy(flat);

    /* the ladder: the given setting first when there is one */
    static const uint32_t ivf_ladder[] = {1,   2,   4,   8,   12,  16,   24,   32,   48,   64,   96,   128,
                                          192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096, 8192, 16384};
    static const uint32_t hnsw_ladder[] = {10,  16,  24,  32,  48,  64,   96,  128,
                                           192, 256, 384, 512, 768, 1024, 2048};
    const uint32_t *lad0 = hnsw ? hnsw_ladder : ivf_ladder;
    const size_t n_lad0 =
        hnsw ? sizeof hnsw_ladder / sizeof *hnsw_ladder : sizeof ivf_ladder / sizeof *ivf_ladder;
    const uint32_t cap = hnsw ? 100000 : spec->nlist, given = (uint32_t)(hnsw ? b.ef : b.nprobe);
    uint32_t ladder[MAX_LADDER];
    size_t n_lad = 0;
    if (given)
        ladder[n_lad++] = given < cap ? given : cap;
    for (size_t i = 0; i < n_lad0; i++)
        if (lad0[i] > (n_lad ? ladder[n_lad - 1] : 0) && lad0[i] < cap)
            ladder[n_lad++] = lad0[i];
    if (!hnsw && ladder[n_lad - 1] < cap)
        ladder[n_lad++] = cap;

    /* unfiltered: the cheapest setting at the target; per k_factor the smallest nprobe reaching it, timed
     * once, the fastest kept (k_factors stop rising once they no longer lower nprobe) */
    vs_search_params_t p0 = {.filter_exact = (float)fexact};
    size_t at0 = 0, kf0 = 0;
    int reached0 = 0;
    double best0 = 1e30;
    for (size_t j = 0, prev = SIZE_MAX; j < n_kf; j++) {
        vs_search_params_t p = p0;
        p.k_factor = kfs[j];
        size_t at;
        int reached;
        if (sweep(idx, hnsw, ladder, given ? 1 : n_lad, 0, &p, gt0, nq, q, target, "unfiltered", dist, ids,
                  &at, &reached, err) != VS_OK)
            return die("search", err);
        if (!reached) {
            if (!reached0 && j + 1 == n_kf) { /* none reaches it: the last tried */
                at0 = at;
                kf0 = j;
                memcpy(ref0, ids, m * sizeof *ids);
            }
            continue;
        }
        timing_t t = {1e30, 0};
        set_param(&p, hnsw, ladder[at]);
        if (timed(idx, &p, nq, q, d, dist, uids, &t, err) != VS_OK)
            return die("search", err);
        fprintf(stderr, "unfiltered: %s %u k_factor %g reaches the target: %.1f us/query\n", pname,
                ladder[at], (double)kfs[j], t.us);
        if (!reached0 || t.us < best0) {
            best0 = t.us;
            at0 = at;
            kf0 = j;
            memcpy(ref0, ids, m * sizeof *ids);
        }
        reached0 = 1;
        if (prev != SIZE_MAX && at >= prev)
            break;
        prev = at;
    }
    set_param(&p0, hnsw, ladder[at0]);
    p0.k_factor = kfs[kf0];
    const double recall0 = recall(ref0, gt0, nq, NULL, 0);
    timing_t unf0 = {1e30, 0};
    size_t differ0 = 0;
    for (long long round = 0; round < rounds; round++) {
        if (timed(idx, &p0, nq, q, d, dist, uids, &unf0, err) != VS_OK)
            return die("search", err);
        differ0 += differ(uids, ref0, m);
    }
    size_t miss0 = 0;
    const size_t bad0 = check(ref0, gt0, nq, NULL, n, &miss0);
    bad_total += bad0 + miss0 + differ0;
    fprintf(stderr, "unfiltered: %s %u k_factor %g, recall@%d %.4f, %.1f us/query\n", pname, ladder[at0],
            (double)p0.k_factor, K, recall0, unf0.us);

    /* per filter: the sweep, then filtered / post-filter / unfiltered rounds; which path the index takes
     * (shard/index/ivf.c matching_items, hnsw.c): exact when the estimated matches are at most
     * filter_exact_threshold's share (default VS_FILTER_EXACT_ITEMS items); IVF (only with vectors to rank
     * by, a refine copy or IVF-Flat): the nearest lists' matching items up to VS_FILTER_SELECTIVE_SHARE */
    const double thr_items = fexact > 0 ? fexact * (double)n
                             : hnsw     ? (double)VS_HNSW_FILTER_EXACT_ITEMS
                                        : (double)VS_FILTER_EXACT_ITEMS;
    const int exact_ok = hnsw || (spec->type == VS_INDEX_IVF && (refine || spec->codec == VS_CODEC_FLAT));
    for (size_t i = 0; i < nf; i++) {
        filt_t *f = &fl[i];
        vs_search_params_t p = p0;
        p.filter = &f->cf;
        const int exact = exact_ok && f->cf.est_matches <= thr_items;
        const int selective =
            !exact && !hnsw && exact_ok && f->cf.est_matches <= VS_FILTER_SELECTIVE_SHARE * (double)n;
        f->path = exact ? "exact" : selective ? "match" : hnsw ? "graph" : "lists";
        size_t j = kf0;
        for (; j < n_kf; j++) { /* from the unfiltered setting up: nprobe, then k_factor */
            p.k_factor = kfs[j];
            if (sweep(idx, hnsw, ladder, n_lad, at0, &p, f->gt, nq, q, target, f->name, dist, ref, &f->at,
                      &f->reached, err) != VS_OK)
                return die("filtered search", err);
            if (f->reached)
                break;
        }
        /* the cost is not monotonic in the setting (a small efSearch leaves filtered queries short and the
         * index answers them exactly; the exact path ignores the setting): every step from the bottom of
         * the ladder to two above the first reaching the target is tried, and of those reaching it the
         * fastest (one timed run each; a larger setting only when 5 % faster) is kept. The exact path: the
         * bottom step, when it reaches the target as it should */
        if (f->reached) {
            const size_t up = f->at, top = exact ? 0 : up + 2 < n_lad ? up + 2 : n_lad - 1;
            double best = 1e30;
            memcpy(upids, ref, m * sizeof *ref);
            for (size_t st = 0; st <= top; st++) {
                size_t at;
                int ok = 1;
                if (st != up && sweep(idx, hnsw, ladder, st + 1, st, &p, f->gt, nq, q, target, f->name, dist,
                                      ids, &at, &ok, err) != VS_OK)
                    return die("filtered search", err);
                if (!ok)
                    continue;
                vs_search_params_t ps = p;
                timing_t t = {1e30, 0};
                set_param(&ps, hnsw, ladder[st]);
                if (timed(idx, &ps, nq, q, d, dist, uids, &t, err) != VS_OK)
                    return die("filtered search", err);
                fprintf(stderr, "  %s: %s %u k_factor %g: %.1f us/query\n", f->name, pname, ladder[st],
                        (double)p.k_factor, t.us);
                if (t.us < 0.95 * best) {
                    best = t.us;
                    f->at = st;
                    memcpy(ref, st == up ? upids : ids, m * sizeof *ref);
                }
            }
        }
        f->kf = p.k_factor;
        set_param(&p, hnsw, ladder[f->at]);
        const double sel = (double)f->n_match / (double)n;
        const double want = ceil(2.0 * K / (f->n_match ? sel : 1.0 / (double)n));
        f->post_k = want > (double)kmax ? kmax : want < K ? K : (size_t)want;
        f->ours = f->post = f->unf = (timing_t){1e30, 0};
        for (long long round = 0; round < rounds; round++) {
            if (timed(idx, &p, nq, q, d, dist, ids, &f->ours, err) != VS_OK)
                return die("filtered search", err);
            f->differ += differ(ids, ref, m);
            if (post_filter(idx, &p0, f->post_k, nq, q, d, f->match, n, kdist, kids, post[round > 0],
                            &f->post, err) != VS_OK)
                return die("post-filter search", err);
            if (round > 0)
                f->differ += differ(post[0], post[1], m);
            if (timed(idx, &p0, nq, q, d, dist, uids, &f->unf, err) != VS_OK)
                return die("search", err);
            f->differ += differ(uids, ref0, m);
        }
        f->recall = recall(ref, f->gt, nq, NULL, 0);
        f->post_recall = recall(post[0], f->gt, nq, NULL, 0);
        f->rec_in = recall(ref, f->gt, nq, f->inq, 1);
        f->rec_out = recall(ref, f->gt, nq, f->inq, 0);
        for (size_t qi = 0; qi < nq; qi++)
            f->n_inq += f->inq[qi];
        size_t post_miss = 0; /* post-filtering may come short: not counted */
        f->bad =
            check(ref, f->gt, nq, f->match, n, &f->miss) + check(post[0], f->gt, nq, f->match, n, &post_miss);
        bad_total += f->bad + f->miss + f->differ;
        fprintf(
            stderr,
            "%s: %s %u k_factor %g recall %.4f %.1f us/q (unfiltered %.1f); post-filter k' %zu recall %.4f "
            "%.1f us/q\n",
            f->name, pname, ladder[f->at], (double)f->kf, f->recall, f->ours.us, f->unf.us, f->post_k,
            f->post_recall, f->post.us);
    }

    /* the table */
    size_t smin = n, smax = 0;
    for (size_t i = 0; i < N_CLU; i++) {
        smin = clu_size[i] < smin ? clu_size[i] : smin;
        smax = clu_size[i] > smax ? clu_size[i] : smax;
    }
    const char *pcol = hnsw ? "efSearch" : refine ? "nprobe/kf" : "nprobe";
    char set0[32], kfdesc[64];
    setting(set0, sizeof set0, refine, ladder[at0], p0.k_factor, 1);
    if (n_kf > 1)
        snprintf(kfdesc, sizeof kfdesc, "k_factor (kf) swept 4..64");
    else
        snprintf(kfdesc, sizeof kfdesc, "k_factor %g", (double)kfs[0]);
    printf(
        "== %s over %zu x %u (built in %.1f s), %zu queries one per call on 1 thread, k %d, target recall@%d "
        "%.2f, %s; filter_exact_threshold %s; attributes seed %lld; clu: %d k-means clusters of %zu..%zu "
        "items\n",
        b.factory, n, d, build_s, nq, K, K, target, kfdesc, fexact > 0 ? "given" : "the index's default",
        seed, N_CLU, smin, smax);
    if (fexact > 0)
        printf("filter_exact_threshold %.4g\n", fexact);
    printf("unfiltered: %s %s, recall@%d %.4f%s, %.1f us/query (%.1f us CPU); best of %lld\n", pcol, set0, K,
           recall0, reached0 ? "" : " (target not reached)", unf0.us, unf0.cpu_us, rounds);
    printf(
        "ours = filtered search at the fastest %s reaching the target: up from %s (then kf for a\n"
        "refining IVF) to the first reaching it, then every step from the ladder's bottom to two above\n"
        "that one timed; * = not reached (the largest tried). path = the index's strategy: exact over the\n"
        "matching items (estimated matches <= %.0f; the setting changes nothing), match (IVF: the matching\n"
        "items of the nearest lists holding one) or %s, its setting scaled by selectivity.\n"
        "unf = unfiltered at %s timed in the same rounds;\n"
        "ratio = ours / unf. post = unfiltered search at %s for k' results, the first 10 matching kept.\n"
        "Rounds interleaved ours, post, unf, %lld times; each side's best. Recall against the exact\n"
        "filtered top 10.\n",
        pcol, set0, thr_items, hnsw ? "the graph" : "the lists", set0, set0, rounds);
    printf("%-12s %-11s %7s %7s %-5s %9s %7s %9s %9s %9s %6s %6s %7s %9s\n", "filter", "kind", "sel %",
           "est %", "path", pcol, "recall", "us/q", "cpu us/q", "unf us/q", "ratio", "k'", "post rc",
           "post us/q");
    for (size_t i = 0; i < nf; i++) {
        const filt_t *f = &fl[i];
        char pv[32];
        setting(pv, sizeof pv, refine, ladder[f->at], f->kf, f->reached);
        printf("%-12s %-11s %7.3f %7.3f %-5s %9s %7.4f %9.1f %9.1f %9.1f %6.2f %6zu %7.4f %9.1f\n", f->name,
               f->kind, 100.0 * (double)f->n_match / (double)n, 100.0 * f->cf.est_matches / (double)n,
               f->path, pv, f->recall, f->ours.us, f->ours.cpu_us, f->unf.us, f->ours.us / f->unf.us,
               f->post_k, f->post_recall, f->post.us);
    }
    for (size_t i = 0; i < nf; i++) {
        const filt_t *f = &fl[i];
        printf("  %-12s %s", f->name, f->text);
        if (f->clu)
            printf("; %zu of %zu queries lie in these clusters: recall %.4f there, %.4f elsewhere", f->n_inq,
                   nq, f->rec_in, f->rec_out);
        if (f->bad || f->miss || f->differ)
            printf(
                "; BAD: %zu results violate the filter, %zu slots empty (short answers) in %zu queries, %zu "
                "result slots differ between runs",
                f->bad, f->miss, short_queries(ref, f->gt, nq), f->differ);
        printf("\n");
    }
    if (bad0 || miss0 || differ0)
        printf("unfiltered BAD: %zu results not ids of the base, %zu slots empty, %zu result slots differ "
               "between runs\n",
               bad0, miss0, differ0);

    if (json_path) {
        FILE *jf = fopen(json_path, "w");
        if (!jf)
            return die(json_path, "cannot open for writing");
        fprintf(jf, "{\"tool\": \"vecshard-bench-filter\", \"factory\": ");
        json_str(jf, b.factory);
        fprintf(jf,
                ", \"n\": %zu, \"d\": %u, \"nq\": %zu, \"k\": %d, \"target\": %.4f, \"seed\": %lld, "
                "\"filter_exact\": %.6g, \"build_s\": %.3f, \"param\": \"%s\",\n"
                " \"unfiltered\": {\"param\": %u, \"k_factor\": %g, \"recall\": %.6f, \"reached\": %d, "
                "\"us\": %.3f, \"cpu_us\": %.3f, \"violations\": %zu, \"missing\": %zu, \"differ\": %zu},\n "
                "\"cluster_sizes\": [",
                n, d, nq, K, target, seed, fexact, build_s, pname, ladder[at0], (double)p0.k_factor, recall0,
                reached0, unf0.us, unf0.cpu_us, bad0, miss0, differ0);
        for (size_t i = 0; i < N_CLU; i++)
            fprintf(jf, "%s%zu", i ? ", " : "", clu_size[i]);
        fprintf(jf, "],\n \"filters\": [");
        for (size_t i = 0; i < nf; i++) {
            const filt_t *f = &fl[i];
            fprintf(jf, "%s\n  {\"name\": ", i ? "," : "");
            json_str(jf, f->name);
            fprintf(jf, ", \"text\": ");
            json_str(jf, f->text);
            fprintf(jf, ", \"kind\": ");
            json_str(jf, f->kind);
            fprintf(jf,
                    ", \"matches\": %zu, \"selectivity\": %.6g, \"est_selectivity\": %.6g, \"param\": %u, "
                    "\"k_factor\": %g, \"path\": \"%s\", \"reached\": %d, \"recall\": %.6f, \"us\": %.3f, "
                    "\"cpu_us\": %.3f, "
                    "\"unf_us\": %.3f, "
                    "\"ratio\": %.4f, \"post_k\": %zu, \"post_recall\": %.6f, \"post_us\": %.3f, "
                    "\"post_cpu_us\": %.3f, \"violations\": %zu, \"missing\": %zu, \"differ\": %zu",
                    f->n_match, (double)f->n_match / (double)n, f->cf.est_matches / (double)n, ladder[f->at],
                    (double)f->kf, f->path, f->reached, f->recall, f->ours.us, f->ours.cpu_us, f->unf.us,
                    f->ours.us / f->unf.us, f->post_k, f->post_recall, f->post.us, f->post.cpu_us, f->bad,
                    f->miss, f->differ);
            if (f->clu)
                fprintf(jf, ", \"queries_in\": %zu, \"recall_in\": %.6f, \"recall_out\": %.6f", f->n_inq,
                        f->rec_in, f->rec_out);
            fprintf(jf, "}");
        }
        fprintf(jf, "\n ]}\n");
        if (fclose(jf) != 0)
            return die(json_path, "write failed");
    }

    for (size_t i = 0; i < nf; i++) {
        vs_filter_spec_fini(&fl[i].spec);
        free(fl[i].match);
        free(fl[i].gt);
        free(fl[i].inq);
    }
    vs_index_destroy(idx);
    vs_bench_inproc_free(&b);
    for (size_t f = 0; f < F_PRICE; f++)
        free(c.ival[f]);
    free(c.price);
    free(cent);
    free(lab);
    free(qlab);
    free(gt0);
    free(ref0);
    free(ref);
    free(ids);
    free(uids);
    free(upids);
    free(post[0]);
    free(post[1]);
    free(dist);
    free(kdist);
    free(kids);
    return bad_total ? 1 : 0;
}
