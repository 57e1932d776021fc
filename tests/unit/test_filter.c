/* test_filter: attribute filters (issue 17) in process, against the exact filtered oracle (Flat search
 * over the same items with the same filter).
 * - The filter text form and its checks: terms parsed, sorted and deduplicated; bad names, values, empty
 *   ranges, too many terms and terms a field's type does not take are refused with the term named.
 * - Every index type (Flat, IVF-Flat, IVF-PQ fast scan with refine, 8-bit IVF-PQ without refine, HNSW,
 *   HNSW,SQ8), filters of 0.5 % to 50 % selectivity, uncorrelated and correlated with the clusters (an
 *   integer field that is the item's cluster: for most queries its values lie far away), single terms and
 *   conjunctions, integer sets and ranges, float ranges: no result ever violates its filter, every query
 *   gets min(k, matching items) results, and recall@10 against the oracle is at least 0.95 (0.99 for the
 *   exact configurations, 0.6 for PQ without refine, whose codes alone rank).
 * - Exclusions and a filter together; a filter compiled for another index is refused.
 * - Attributes survive save and load (same answers from the loaded file).
 * - Fresh writes: upserted items carry their rows, replaced ids take their new values, deleted ones
 *   vanish; filtered searches over main and fresh items (IVF through both search paths, and HNSW)
 *   match the oracle built over the final items.
 * - group_by values come from the base or from the live fresh copy; vs_group_select keeps at most n per
 *   value, best first. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/filter.h"
#include "common/idset.h"
#include "shard/index/attrs.h"
#include "shard/index/fresh.h"
#include "shard/index/index.h"
#include "shard/index/ivf.h"
#include "tests/testlib.h"

#define N 20000
#define D 24
#define NC 100 /* clusters */
#define NQ 60
#define K 10
#define NCAT 200

static float base[N * D], queries[NQ * D], centers[NC * D];
static int64_t cat_of[N], clu_of[N];
static float price_of[N];
static const vs_attr_field_t fields[5] = {{"cat", VS_ATTR_INT},
                                          {"clu", VS_ATTR_INT},
                                          {"price", VS_ATTR_FLOAT},
                                          {"g8", VS_ATTR_INT},
                                          {"g5", VS_ATTR_INT}};
/* g8 and g5: fields of few values (value bitmaps: conjunctions of them are ANDed word by word), derived
 * from an item's cat so that they follow it through fresh writes */
static int64_t g8_of(int64_t cat)
{
    return cat % 8;
}
static int64_t g5_of(int64_t cat)
{
    return (cat / 8) % 5;
}

static void make_data(void)
{
    uint64_t rng = 17;
    for (size_t i = 0; i < NC * D; i++)
        centers[i] = (float)vs_test_gauss(&rng);
    for (size_t i = 0; i < N; i++) {
        size_t c = vs_test_rand(&rng) % NC;
        clu_of[i] = (int64_t)c;
        cat_of[i] = (int64_t)(vs_test_rand(&rng) % NCAT);
        price_of[i] = (float)(vs_test_rand(&rng) % 100000) / 1000.0f;
        for (size_t j = 0; j < D; j++)
            base[i * D + j] = centers[c * D + j] + 0.35f * (float)vs_test_gauss(&rng);
    }
    for (size_t i = 0; i < NQ; i++) {
        size_t c = vs_test_rand(&rng) % NC;
        for (size_t j = 0; j < D; j++)
            queries[i * D + j] = centers[c * D + j] + 0.35f * (float)vs_test_gauss(&rng);
    }
}

/* Attributes of items given by their row (id = row) in idx's order, attached to idx. */
static void attach(vs_index_t *idx, const int64_t *cat, const int64_t *clu, const float *price)
{
    char err[VS_ERR_LEN];
    size_t n = vs_index_count(idx);
    int64_t *ids = malloc(n * sizeof *ids);
    vs_index_ids_in_order(idx, ids);
    vs_attrs_t *a;
    CHECK(vs_attrs_create(fields, 5, n, &a, err) == VS_OK);
    int64_t *c0 = vs_attrs_column_mut(a, 0), *c1 = vs_attrs_column_mut(a, 1), *c3 = vs_attrs_column_mut(a, 3),
            *c4 = vs_attrs_column_mut(a, 4);
    float *c2 = vs_attrs_column_mut(a, 2);
    for (size_t j = 0; j < n; j++) {
        c0[j] = cat[ids[j]];
        c1[j] = clu[ids[j]];
        c2[j] = price[ids[j]];
        c3[j] = g8_of(cat[ids[j]]);
        c4[j] = g5_of(cat[ids[j]]);
    }
    CHECK(vs_attrs_prepare(a, err) == VS_OK);
    CHECKF(vs_index_set_attrs(idx, a, err) == VS_OK, "%s", err);
    free(ids);
}

/* An index over the rows with keep[row] (NULL: all) and their attributes. */
static vs_index_t *build(const char *factory, const unsigned char *keep, const float *x, size_t n_rows,
                         const int64_t *cat, const int64_t *clu, const float *price)
{
    char err[VS_ERR_LEN];
    vs_index_t *idx;
    CHECK(vs_index_create(D, VS_METRIC_L2, factory, &idx, err) == VS_OK);
    CHECK(vs_index_train(idx, N, base, 1, NULL, err) == VS_OK);
    float *xs = malloc(n_rows * D * sizeof *xs);
    int64_t *ids = malloc(n_rows * sizeof *ids);
    size_t n = 0;
    for (size_t i = 0; i < n_rows; i++)
        if (!keep || keep[i]) {
            memcpy(xs + n * D, x + i * D, D * sizeof(float));
            ids[n++] = (int64_t)i;
        }
    CHECKF(vs_index_add(idx, n, xs, ids, 1, NULL, err) == VS_OK, "%s", err);
    attach(idx, cat, clu, price);
    free(xs);
    free(ids);
    return idx;
}

/* 1 when row r's values satisfy spec (checked directly on the arrays, not through the code under test). */
static int satisfies(const vs_filter_spec_t *spec, const int64_t *cat, const int64_t *clu, const float *price,
                     int64_t r)
{
    for (size_t t = 0; t < spec->n_terms; t++) {
        const vs_filter_term_t *x = &spec->terms[t];
        double v = strcmp(x->field, "cat") == 0   ? (double)cat[r]
                   : strcmp(x->field, "clu") == 0 ? (double)clu[r]
                   : strcmp(x->field, "g8") == 0  ? (double)g8_of(cat[r])
                   : strcmp(x->field, "g5") == 0  ? (double)g5_of(cat[r])
                                                  : (double)price[r];
        if (x->kind == VS_FILTER_RANGE) {
            if (!(v >= x->lo && v <= x->hi))
                return 0;
        } else {
            int in = 0;
            for (size_t j = 0; j < x->n_values; j++)
                in |= (double)x->values[j] == v;
            if (!in)
                return 0;
        }
    }
    return 1;
}

typedef struct outcome {
    size_t violations, short_answers;
    double recall;
} outcome_t;

/* Searches idx with filter text f (and p), compares with the oracle's filtered answers. */
static outcome_t check_filter(const vs_index_t *idx, const vs_fresh_t *fresh, const vs_index_t *oracle,
                              const char *f, vs_search_params_t p, const unsigned char *live, size_t n_rows,
                              const int64_t *cat, const int64_t *clu, const float *price)
{
    char err[VS_ERR_LEN];
    vs_filter_spec_t spec;
    CHECKF(vs_filter_spec_parse(f, &spec, err) == VS_OK, "%s", err);
    vs_filter_t cf, of;
    CHECKF(vs_filter_compile(&spec, vs_index_attrs(idx), &cf, err) == VS_OK, "%s", err);
    CHECK(vs_filter_compile(&spec, vs_index_attrs(oracle), &of, err) == VS_OK);
    size_t matching = 0;
    for (size_t r = 0; r < n_rows; r++)
        matching += (!live || live[r]) && satisfies(&spec, cat, clu, price, (int64_t)r);
    float od[NQ * K], d[NQ * K];
    int64_t gt[NQ * K], ids[NQ * K];
    vs_search_params_t op = {.filter = &of};
    CHECK(vs_index_search(oracle, NQ, queries, K, &op, 1, od, gt, err) == VS_OK);
    p.filter = &cf;
    if (fresh)
        CHECKF(vs_fresh_search(fresh, NQ, queries, K, &p, 1, d, ids, err) == VS_OK, "%s", err);
    else
        CHECKF(vs_index_search(idx, NQ, queries, K, &p, 1, d, ids, err) == VS_OK, "%s: %s", f, err);
    outcome_t o = {0, 0, 0};
    size_t found = 0, want = 0;
    for (size_t q = 0; q < NQ; q++) {
        size_t got = 0;
        for (size_t j = 0; j < K; j++) {
            int64_t id = ids[q * K + j];
            if (id < 0)
                continue;
            got++;
            if (id >= (int64_t)n_rows || (live && !live[id]) || !satisfies(&spec, cat, clu, price, id))
                o.violations++;
            for (size_t g = 0; g < K; g++)
                found += gt[q * K + g] == id;
        }
        size_t expect = matching < K ? matching : K;
        o.short_answers += got < expect;
        for (size_t g = 0; g < K; g++)
            want += gt[q * K + g] >= 0;
    }
    o.recall = want ? (double)found / (double)want : 1.0;

    vs_filter_spec_fini(&spec);
    return o;
}

static const char *const filters[] = {
    "cat=5",                                                  /* 0.5 %: exact path */
    "cat=1|2|3|4|5|6|7|8|9|10|11|12|13|14|15|16|17|18|19|20", /* 10 %, in the scan */
    "price=0..50",                                            /* 50 %, float range */
    "price=10..10.2",                                         /* 0.2 %, float range */
    "cat=0..39&price=..50",                                   /* 20 % x 50 %: conjunction, 10 % */
    "cat=0..9&price=0..20",                                   /* 5 % x 20 %: 1 % */
    "clu=7",                                                  /* 1 %, correlated with the clusters */
    "clu=0..9",                                               /* 10 %, correlated */
    "clu=0..29&cat=0..99",                                    /* 30 % x 50 %, correlated term */
    "cat=100000",                                             /* nothing matches */
    "g8=3&g5=1",                                              /* value bitmaps ANDed: 2.5 % */
    "g8=1|2&g5=0|4&price=..50",                               /* bitmaps and a column check: 5 % */
    "g8=6&clu=0..49",                                         /* one bitmap term: the column path */
    "price=..",                                               /* everything */
    "",                                                       /* no filter */
};

static void test_spec(void)
{
    char err[VS_ERR_LEN];
    vs_filter_spec_t s;
    CHECKF(vs_filter_spec_parse("cat=7|3|7&price=..9.5&clu=2..", &s, err) == VS_OK, "%s", err);
    CHECK(s.n_terms == 3 && s.terms[0].kind == VS_FILTER_IN && s.terms[0].n_values == 2 &&
          s.terms[0].values[0] == 3 && s.terms[0].values[1] == 7);
    CHECK(s.terms[1].kind == VS_FILTER_RANGE && isinf(s.terms[1].lo) && s.terms[1].hi == 9.5);
    CHECK(s.terms[2].lo == 2.0 && isinf(s.terms[2].hi) && s.terms[2].hi > 0);
    CHECK(vs_filter_spec_check(&s, fields, 5, err) == VS_OK);
    vs_filter_spec_fini(&s);
    CHECK(vs_filter_spec_parse("", &s, err) == VS_OK && s.n_terms == 0);
    const char *bad[] = {"cat=", "=3", "cat=a", "price=5..1", "Cat=1", "cat=1|", "price=x..2", "cat"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECKF(vs_filter_spec_parse(bad[i], &s, err) == VS_ERR_INVALID_ARGUMENT && s.n_terms == 0,
               "'%s' accepted", bad[i]);
    char many[512] = "";
    for (int i = 0; i < VS_FILTER_MAX_TERMS + 1; i++)
        strcat(many, i ? "&cat=1" : "cat=1");
    CHECK(vs_filter_spec_parse(many, &s, err) == VS_ERR_INVALID_ARGUMENT && strstr(err, "at most"));
    CHECK(vs_filter_spec_parse("price=1|2", &s, err) == VS_OK);
    CHECK(vs_filter_spec_check(&s, fields, 5, err) == VS_ERR_INVALID_ARGUMENT && strstr(err, "price") &&
          strstr(err, "range"));
    vs_filter_spec_fini(&s);
    CHECK(vs_filter_spec_parse("color=1", &s, err) == VS_OK);
    CHECK(vs_filter_spec_check(&s, fields, 5, err) == VS_ERR_INVALID_ARGUMENT && strstr(err, "color"));
    vs_filter_t f;
    CHECK(vs_filter_compile(&s, NULL, &f, err) == VS_ERR_INVALID_ARGUMENT && strstr(err, "no attributes"));
    vs_filter_spec_fini(&s);
    CHECK(vs_group_by_check("cat", fields, 5, err) == VS_OK);
    CHECK(vs_group_by_check("price", fields, 5, err) == VS_ERR_INVALID_ARGUMENT);
    CHECK(vs_group_by_check("nope", fields, 5, err) == VS_ERR_INVALID_ARGUMENT);
    /* the null marker is never a value to match */
    int64_t nul = VS_ATTR_NULL_INT;
    vs_filter_spec_init(&s);
    CHECK(vs_filter_spec_add_in(&s, "cat", &nul, 1, err) == VS_ERR_INVALID_ARGUMENT && s.n_terms == 0);
    CHECK(vs_filter_spec_add_range(&s, "cat", NAN, 1, err) == VS_ERR_INVALID_ARGUMENT);
}

static void test_every_index_type(void)
{
    struct {
        const char *factory;
        vs_search_params_t p;
        double min_recall;
    } cases[] = {
        {"Flat", {0}, 1.0},
        {"IVF64,Flat", {.nprobe = 64}, 0.999},
        {"IVF64,PQ12x4fs,RFlat", {.nprobe = 8, .k_factor = 8}, 0.95},
        {"IVF64,PQ12", {.nprobe = 8}, 0.6},
        {"HNSW16", {.ef_search = 64}, 0.95},
        {"HNSW16,SQ8", {.ef_search = 64, .k_factor = 4}, 0.95},
    };
    char err[VS_ERR_LEN];
    vs_index_t *oracle = build("Flat", NULL, base, N, cat_of, clu_of, price_of);
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        vs_index_t *idx = build(cases[c].factory, NULL, base, N, cat_of, clu_of, price_of);
        for (size_t f = 0; f < sizeof filters / sizeof *filters; f++) {
            outcome_t o =
                check_filter(idx, NULL, oracle, filters[f], cases[c].p, NULL, N, cat_of, clu_of, price_of);
            CHECKF(o.violations == 0 && o.short_answers == 0 && o.recall >= cases[c].min_recall,
                   "%s, filter %s: %zu violations, %zu short answers, recall %.4f (want %.3f)",
                   cases[c].factory, filters[f], o.violations, o.short_answers, o.recall,
                   cases[c].min_recall);
        }
        /* every filter again with the exact path off (a tiny filter_exact_threshold): the selective
         * IVF path (the nearest lists' matching items, up to 3 %) and the scan or traversal */
        for (size_t f = 0; f < sizeof filters / sizeof *filters; f++) {
            vs_search_params_t p = cases[c].p;
            p.filter_exact = 1e-7f;
            outcome_t o = check_filter(idx, NULL, oracle, filters[f], p, NULL, N, cat_of, clu_of, price_of);
            CHECKF(
                o.violations == 0 && o.short_answers == 0 && o.recall >= cases[c].min_recall,
                "%s, filter %s, exact path off: %zu violations, %zu short answers, recall %.4f (want %.3f)",
                cases[c].factory, filters[f], o.violations, o.short_answers, o.recall, cases[c].min_recall);
        }
        /* the same filter searched exactly (threshold 1) and by scanning (tiny threshold) agree on
         * what may be returned */
        vs_search_params_t p = cases[c].p;
        p.filter_exact = 1.0f;
        outcome_t o = check_filter(idx, NULL, oracle, filters[1], p, NULL, N, cat_of, clu_of, price_of);
        CHECKF(o.violations == 0 && o.short_answers == 0, "%s exact: %zu violations", cases[c].factory,
               o.violations);
        vs_index_destroy(idx);
    }
    /* a filter with exclusions: neither an excluded nor a non-matching item comes back */
    vs_index_t *ivf = build("IVF64,PQ12x4fs,RFlat", NULL, base, N, cat_of, clu_of, price_of);
    int64_t ex[400];
    for (size_t i = 0; i < 400; i++)
        ex[i] = (int64_t)(i * 37 % N);
    vs_idset_t *set;
    CHECK(vs_idset_create(ex, 400, &set, err) == VS_OK);
    vs_filter_spec_t spec;
    CHECK(vs_filter_spec_parse(filters[1], &spec, err) == VS_OK);
    vs_filter_t cf;
    CHECK(vs_filter_compile(&spec, vs_index_attrs(ivf), &cf, err) == VS_OK);
    vs_search_params_t p = {.nprobe = 8, .filter = &cf, .exclude = set};
    float d[NQ * K];
    int64_t ids[NQ * K];
    CHECK(vs_index_search(ivf, NQ, queries, K, &p, 1, d, ids, err) == VS_OK);
    size_t bad = 0;
    for (size_t i = 0; i < NQ * K; i++)
        bad += ids[i] < 0 || vs_idset_has(set, ids[i]) || !satisfies(&spec, cat_of, clu_of, price_of, ids[i]);
    CHECKF(bad == 0, "%zu results excluded, failing the filter or missing", bad);
    /* compiled against another index's attributes: refused */
    p = (vs_search_params_t){.filter = &cf};
    CHECK(vs_index_search(oracle, 1, queries, K, &p, 1, d, ids, err) == VS_ERR_INVALID_ARGUMENT &&
          strstr(err, "another index"));
    vs_filter_spec_fini(&spec);
    vs_idset_destroy(set);
    vs_index_destroy(ivf);
    vs_index_destroy(oracle);
}

static void test_save_load(void)
{
    char err[VS_ERR_LEN];
    const char *factories[] = {"IVF64,PQ12x4fs,RFlat", "HNSW16"};
    vs_index_t *oracle = build("Flat", NULL, base, N, cat_of, clu_of, price_of);
    for (size_t i = 0; i < 2; i++) {
        vs_index_t *idx = build(factories[i], NULL, base, N, cat_of, clu_of, price_of), *back;
        const char *path = vs_test_path("test_filter", i ? "h.vsi" : "i.vsi");
        CHECKF(vs_index_save(idx, path, "m", 1, err) == VS_OK, "%s", err);
        CHECKF(vs_index_load(path, &back, err) == VS_OK, "%s", err);
        CHECK(vs_index_attrs(back) && vs_attrs_n_fields(vs_index_attrs(back)) == 5 &&
              vs_attrs_count(vs_index_attrs(back)) == N);
        vs_search_params_t p =
            i ? (vs_search_params_t){.ef_search = 64} : (vs_search_params_t){.nprobe = 8, .k_factor = 8};
        for (size_t f = 0; f < sizeof filters / sizeof *filters; f++) {
            outcome_t a = check_filter(idx, NULL, oracle, filters[f], p, NULL, N, cat_of, clu_of, price_of);
            outcome_t b = check_filter(back, NULL, oracle, filters[f], p, NULL, N, cat_of, clu_of, price_of);
            CHECKF(b.violations == 0 && a.recall == b.recall, "%s after load, %s: recall %.4f vs %.4f",
                   factories[i], filters[f], b.recall, a.recall);
        }
        vs_index_destroy(idx);
        vs_index_destroy(back);
    }
    /* an index without attributes loads with none, and a filter on it is refused */
    vs_index_t *plain;
    CHECK(vs_index_create(D, VS_METRIC_L2, "IVF16,Flat", &plain, err) == VS_OK);
    CHECK(vs_index_train(plain, N, base, 1, NULL, err) == VS_OK);
    CHECK(vs_index_add(plain, 1000, base, NULL, 1, NULL, err) == VS_OK);
    const char *path = vs_test_path("test_filter", "plain.vsi");
    CHECK(vs_index_save(plain, path, "", 1, err) == VS_OK);
    vs_index_destroy(plain);
    CHECK(vs_index_load(path, &plain, err) == VS_OK && vs_index_attrs(plain) == NULL);
    vs_index_destroy(plain);
    vs_index_destroy(oracle);
}

static void test_fresh(void)
{
    char err[VS_ERR_LEN];
    enum { NEW = 800, REPL = 400, DEL = 300, ROWS = N + NEW };
    /* rows N..N+NEW-1 are new items; REPL base rows get new vectors and values; DEL base rows deleted */
    float *x = malloc((size_t)ROWS * D * sizeof *x);
    int64_t *cat = malloc(ROWS * sizeof *cat), *clu = malloc(ROWS * sizeof *clu);
    float *price = malloc(ROWS * sizeof *price);
    unsigned char *live = malloc(ROWS);
    memcpy(x, base, sizeof base);
    memcpy(cat, cat_of, sizeof cat_of);
    memcpy(clu, clu_of, sizeof clu_of);
    memcpy(price, price_of, sizeof price_of);
    memset(live, 1, ROWS);
    uint64_t rng = 99;
    int64_t up_ids[NEW + REPL], del_ids[DEL];
    float *up_x = malloc((NEW + REPL) * D * sizeof *up_x);
    int64_t *rows = malloc((NEW + REPL) * 5 * sizeof *rows);
    for (size_t i = 0; i < NEW + REPL; i++) {
        int64_t r = i < NEW ? (int64_t)(N + i) : (int64_t)((i - NEW) * 31 % N);
        size_t c = vs_test_rand(&rng) % NC;
        for (size_t j = 0; j < D; j++)
            x[r * D + j] = centers[c * D + j] + 0.35f * (float)vs_test_gauss(&rng);
        cat[r] = (int64_t)(vs_test_rand(&rng) % NCAT);
        clu[r] = (int64_t)c;
        price[r] = (float)(vs_test_rand(&rng) % 100000) / 1000.0f;
        up_ids[i] = r;
        memcpy(up_x + i * D, x + r * D, D * sizeof(float));
        rows[i * 5] = cat[r];
        rows[i * 5 + 1] = clu[r];
        rows[i * 5 + 2] = vs_attr_float_slot(price[r]);
        rows[i * 5 + 3] = g8_of(cat[r]);
        rows[i * 5 + 4] = g5_of(cat[r]);
    }
    for (size_t i = 0; i < DEL; i++) {
        del_ids[i] = (int64_t)(i * 53 % N + 1);
        if (del_ids[i] % 31 == 0)
            del_ids[i]++; /* not one of the replaced rows */
        live[del_ids[i]] = 0;
    }
    vs_index_t *oracle = build("Flat", live, x, ROWS, cat, clu, price);
    const char *factories[] = {"IVF64,PQ12x4fs,RFlat", "HNSW16"};
    for (size_t fi = 0; fi < 2; fi++) {
        vs_index_t *idx = build(factories[fi], NULL, base, N, cat_of, clu_of, price_of);
        vs_fresh_t *fr;
        CHECKF(vs_fresh_create(idx, 4096, &fr, err) == VS_OK, "%s", err);
        size_t nf;
        CHECK(vs_fresh_fields(fr, &nf) != NULL && nf == 5);
        CHECKF(vs_fresh_upsert_attrs(fr, NEW + REPL, up_ids, up_x, NULL, rows, err) == VS_OK, "%s", err);
        CHECK(vs_fresh_delete(fr, DEL, del_ids, err) == VS_OK);
        vs_search_params_t p =
            fi ? (vs_search_params_t){.ef_search = 64} : (vs_search_params_t){.nprobe = 8, .k_factor = 8};
        for (size_t f = 0; f < sizeof filters / sizeof *filters; f++) {
            outcome_t o = check_filter(idx, fr, oracle, filters[f], p, live, ROWS, cat, clu, price);
            CHECKF(o.violations == 0 && o.short_answers == 0 && o.recall >= 0.95,
                   "%s with fresh writes, filter %s: %zu violations, %zu short answers, recall %.4f",
                   factories[fi], filters[f], o.violations, o.short_answers, o.recall);
            vs_search_params_t px = p;
            px.filter_exact = 1e-7f; /* the selective and scan paths */
            o = check_filter(idx, fr, oracle, filters[f], px, live, ROWS, cat, clu, price);
            CHECKF(o.violations == 0 && o.short_answers == 0 && o.recall >= 0.95,
                   "%s with fresh writes, filter %s, exact path off: %zu violations, %zu short, recall %.4f",
                   factories[fi], filters[f], o.violations, o.short_answers, o.recall);
        }
        if (fi == 0) { /* lists given by the caller (the coordinator's centroid routing) */
            vs_filter_spec_t spec;
            CHECK(vs_filter_spec_parse(filters[1], &spec, err) == VS_OK);
            vs_filter_t cf;
            CHECK(vs_filter_compile(&spec, vs_index_attrs(idx), &cf, err) == VS_OK);
            int32_t lists[NQ * 16];
            for (size_t q = 0; q < NQ; q++)
                CHECK(vs_ivf_probe(vs_index_impl_ivf(idx), queries + q * D, 16, 0, lists + q * 16, err) ==
                      VS_OK);
            vs_search_params_t sel = {.filter = &cf};
            float d[NQ * K];
            int64_t ids[NQ * K];
            CHECK(vs_fresh_search_lists(fr, NQ, queries, K, lists, 16, 8, &sel, 1, d, ids, err) == VS_OK);
            size_t bad = 0;
            for (size_t i = 0; i < NQ * K; i++)
                bad += ids[i] < 0 || !live[ids[i]] || !satisfies(&spec, cat, clu, price, ids[i]);
            CHECKF(bad == 0, "search_lists with a filter: %zu bad results", bad);
            vs_filter_spec_fini(&spec);
        }
        /* group values: the live copy's */
        int64_t probe[4] = {up_ids[0], up_ids[NEW], del_ids[0], 5}, got[4];
        CHECKF(vs_fresh_group_values(fr, idx, 0, 4, probe, got, err) == VS_OK, "%s", err);
        CHECKF(got[0] == cat[up_ids[0]] && got[1] == cat[up_ids[NEW]] && got[2] == VS_ATTR_NULL_INT &&
                   got[3] == cat[5],
               "%s group values %lld %lld %lld %lld", factories[fi], (long long)got[0], (long long)got[1],
               (long long)got[2], (long long)got[3]);
        vs_fresh_destroy(fr);
        vs_index_destroy(idx);
    }
    vs_index_destroy(oracle);
    free(x);
    free(cat);
    free(clu);
    free(price);
    free(live);
    free(up_x);
    free(rows);
}

static void test_group_select(void)
{
    /* candidates best first: groups 1 1 1 2 2 3 1 4; at most 2 per group */
    const float d[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    const int64_t ids[8] = {10, 11, 12, 13, -1, 15, 16, 17}, g[8] = {1, 1, 1, 2, 2, 3, 1, 4};
    float od[5];
    int64_t oi[5], og[5], scratch[4 * 6];
    size_t kept = vs_group_select(8, d, ids, g, 5, 2, 99.0f, od, oi, og, scratch);
    const int64_t want[5] = {10, 11, 13, 15, 17};
    CHECKF(kept == 5 && memcmp(oi, want, sizeof want) == 0, "kept %zu: %lld %lld %lld %lld %lld", kept,
           (long long)oi[0], (long long)oi[1], (long long)oi[2], (long long)oi[3], (long long)oi[4]);
    CHECK(og[2] == 2 && od[4] == 8);
    /* fewer than k possible: padded */
    kept = vs_group_select(8, d, ids, g, 5, 1, 99.0f, od, oi, og, scratch);
    CHECK(kept == 4 && oi[4] == -1 && od[4] == 99.0f && og[4] == VS_ATTR_NULL_INT);
    /* many distinct groups, size 0 counts as 1; the table never fills (k + 1 slots at least) */
    enum { M = 1000 };
    static float dd[M];
    static int64_t ii[M], gg[M], o_i[100], o_g[100], sc[4 * 101];
    static float o_d[100];
    for (size_t i = 0; i < M; i++) {
        dd[i] = (float)i;
        ii[i] = (int64_t)i;
        gg[i] = (int64_t)(i % 300) << 40; /* large values hash apart too */
    }
    kept = vs_group_select(M, dd, ii, gg, 100, 0, 0, o_d, o_i, o_g, sc);
    CHECK(kept == 100 && o_i[99] == 99);
}

/* Over 32,768 estimated matches (VS_FILTER_RUNS_MIN) and at most 3 % of the items, an IVF index finds each
 * visited list's matches in the driver term's runs: 1.2M items (d = 4, so the oracle stays cheap), a
 * one-value filter (2.8 %) and a two-value set with a range (2.8 %). */
static void test_runs_path(void)
{
    enum { M = 1200000, DD = 4, Q = 30 };
    char err[VS_ERR_LEN];
    float *x = malloc((size_t)M * DD * sizeof *x), q[Q * DD];
    uint64_t rng = 5;
    for (size_t i = 0; i < (size_t)M * DD; i++)
        x[i] = vs_test_randf(&rng);
    for (size_t i = 0; i < Q * DD; i++)
        q[i] = vs_test_randf(&rng);
    int64_t *t = malloc(M * sizeof *t), *u = malloc(M * sizeof *u);
    for (size_t i = 0; i < M; i++) {
        t[i] = (int64_t)(vs_test_rand(&rng) % 36);
        u[i] = (int64_t)(vs_test_rand(&rng) % 100);
    }
    static const vs_attr_field_t f2[2] = {{"t", VS_ATTR_INT}, {"u", VS_ATTR_INT}};
    vs_index_t *idx[2];
    const char *fac[2] = {"IVF256,Flat", "Flat"};
    for (int k = 0; k < 2; k++) {
        CHECK(vs_index_create(DD, VS_METRIC_L2, fac[k], &idx[k], err) == VS_OK);
        CHECK(vs_index_train(idx[k], M, x, 0, NULL, err) == VS_OK);
        CHECK(vs_index_add(idx[k], M, x, NULL, 0, NULL, err) == VS_OK);
        int64_t *ids = malloc(M * sizeof *ids);
        vs_index_ids_in_order(idx[k], ids);
        vs_attrs_t *a;
        CHECK(vs_attrs_create(f2, 2, M, &a, err) == VS_OK);
        int64_t *c0 = vs_attrs_column_mut(a, 0), *c1 = vs_attrs_column_mut(a, 1);
        for (size_t j = 0; j < M; j++) {
            c0[j] = t[ids[j]];
            c1[j] = u[ids[j]];
        }
        CHECK(vs_attrs_prepare(a, err) == VS_OK && vs_index_set_attrs(idx[k], a, err) == VS_OK);
        free(ids);
    }
    const char *texts[] = {"t=7", "t=7|9&u=0..49"};
    for (size_t i = 0; i < 2; i++) {
        vs_filter_spec_t spec;
        vs_filter_t cf, of;
        CHECK(vs_filter_spec_parse(texts[i], &spec, err) == VS_OK);
        CHECK(vs_filter_compile(&spec, vs_index_attrs(idx[0]), &cf, err) == VS_OK);
        CHECK(vs_filter_compile(&spec, vs_index_attrs(idx[1]), &of, err) == VS_OK);
        CHECKF(cf.est_matches > VS_FILTER_RUNS_MIN && cf.est_matches <= VS_FILTER_SELECTIVE_SHARE * M,
               "%s: %.0f estimated matches, not the runs path's range", texts[i], cf.est_matches);
        vs_filter_runs_t *runs = malloc(sizeof *runs);
        CHECK(vs_filter_driver_runs(&cf, runs) && runs->n_runs == (i ? 2u : 1u) && runs->rest.n_terms == i);
        free(runs);
        float d1[Q * K], d2[Q * K];
        int64_t i1[Q * K], i2[Q * K];
        vs_search_params_t p = {.nprobe = 8, .filter = &cf}, op = {.filter = &of};
        CHECK(vs_index_search(idx[0], Q, q, K, &p, 1, d1, i1, err) == VS_OK);
        CHECK(vs_index_search(idx[1], Q, q, K, &op, 1, d2, i2, err) == VS_OK);
        size_t bad = 0;
        for (size_t j = 0; j < Q * K; j++)
            bad += i1[j] < 0 || t[i1[j]] != 7 - (i && t[i1[j]] == 9 ? -2 : 0) || (i && u[i1[j]] > 49);
        double r = vs_test_recall(i1, K, i2, K, Q, K);
        CHECKF(bad == 0 && r >= 0.95, "%s: %zu bad results, recall %.4f", texts[i], bad, r);
        vs_filter_spec_fini(&spec);
    }
    vs_index_destroy(idx[0]);
    vs_index_destroy(idx[1]);
    free(x);
    free(t);
    free(u);
}

/* Two cases a review found: (1) an IVF filter whose matching lists are few ranks more lists than nprobe,
 * and the coarse step's candidate pool (the PCA preselection path: d >= 256, nlist >= 256) must fit the
 * scratch sized for them (ASan caught a write past it; several workers, so exact-size blocks); (2) a float
 * range from 0 includes items stored as -0.0, on every path (the sorted permutation's key of -0.0 was
 * below +0.0's, so counts, the exact path and enumeration missed them). */
static void test_review_cases(void)
{
    enum { M = 20000, DD = 256 };
    char err[VS_ERR_LEN];
    float *x = malloc((size_t)M * DD * sizeof *x);
    uint64_t rng = 9;
    for (size_t i = 0; i < (size_t)M * DD; i++)
        x[i] = vs_test_randf(&rng);
    vs_index_t *idx;
    CHECK(vs_index_create(DD, VS_METRIC_L2, "IVF256,Flat", &idx, err) == VS_OK);
    CHECK(vs_index_train(idx, M, x, 0, NULL, err) == VS_OK &&
          vs_index_add(idx, M, x, NULL, 0, NULL, err) == VS_OK);
    static const vs_attr_field_t fv[1] = {{"v", VS_ATTR_INT}};
    vs_attrs_t *a;
    CHECK(vs_attrs_create(fv, 1, M, &a, err) == VS_OK);
    int64_t *c = vs_attrs_column_mut(a, 0);
    for (size_t j = 0; j < M; j++)
        c[j] = j < M / 8; /* the first lists: a filter correlated with an eighth of them */
    CHECK(vs_attrs_prepare(a, err) == VS_OK && vs_index_set_attrs(idx, a, err) == VS_OK);
    vs_filter_spec_t spec;
    vs_filter_t cf;
    CHECK(vs_filter_spec_parse("v=1", &spec, err) == VS_OK &&
          vs_filter_compile(&spec, vs_index_attrs(idx), &cf, err) == VS_OK);
    /* the scan path (exact path off): nprobe 4 of the 32 lists that may match, so 64 lists are ranked */
    vs_search_params_t p = {.nprobe = 4, .filter = &cf, .filter_exact = 1e-7f};
    float d[64];
    int64_t ids[64];
    CHECKF(vs_index_search(idx, 64, x, 1, &p, 1, d, ids, err) == VS_OK, "%s", err);
    int64_t *order = malloc(M * sizeof *order);
    vs_index_ids_in_order(idx, order);
    size_t bad = 0;
    for (size_t i = 0; i < 64; i++) {
        size_t pos = 0;
        while (pos < M && order[pos] != ids[i])
            pos++;
        bad += pos >= M / 8;
    }
    CHECKF(bad == 0, "%zu results outside the filter", bad);
    vs_filter_spec_fini(&spec);
    vs_index_destroy(idx);
    free(order);
    free(x);

    /* -0.0 in a float column */
    enum { S = 2000, SD = 8 };
    float *y = malloc(S * SD * sizeof *y), *pv = malloc(S * sizeof *pv);
    for (size_t i = 0; i < S * SD; i++)
        y[i] = vs_test_randf(&rng);
    for (size_t i = 0; i < S; i++)
        pv[i] = i % 50 == 0 ? -0.0f : 5.0f + (float)(i % 7);
    static const vs_attr_field_t fp[1] = {{"p", VS_ATTR_FLOAT}};
    const char *facs[] = {"Flat", "IVF16,Flat", "HNSW16"};
    for (size_t k = 0; k < 3; k++) {
        CHECK(vs_index_create(SD, VS_METRIC_L2, facs[k], &idx, err) == VS_OK);
        CHECK(vs_index_train(idx, S, y, 1, NULL, err) == VS_OK &&
              vs_index_add(idx, S, y, NULL, 1, NULL, err) == VS_OK);
        int64_t *o = malloc(S * sizeof *o);
        vs_index_ids_in_order(idx, o);
        CHECK(vs_attrs_create(fp, 1, S, &a, err) == VS_OK);
        float *col = vs_attrs_column_mut(a, 0);
        for (size_t j = 0; j < S; j++)
            col[j] = pv[o[j]];
        CHECK(vs_attrs_prepare(a, err) == VS_OK && vs_index_set_attrs(idx, a, err) == VS_OK);
        CHECK(vs_filter_spec_parse("p=0..1", &spec, err) == VS_OK);
        CHECK(vs_filter_compile(&spec, vs_index_attrs(idx), &cf, err) == VS_OK);
        CHECKF(cf.t[0].count == S / 50, "%s: %zu items counted in 0..1, %d stored as -0.0", facs[k],
               cf.t[0].count, S / 50);
        vs_search_params_t q0 = {.filter = &cf};
        float dd[10];
        int64_t ii[10];
        CHECK(vs_index_search(idx, 1, y, 10, &q0, 1, dd, ii, err) == VS_OK);
        size_t got = 0;
        for (size_t j = 0; j < 10; j++)
            got += ii[j] >= 0 && pv[ii[j]] == 0.0f;
        CHECKF(got == 10, "%s: %zu of 10 results of p=0..1 (items stored as -0.0)", facs[k], got);
        vs_filter_spec_fini(&spec);
        vs_index_destroy(idx);
        free(o);
    }
    free(y);
    free(pv);
}

int main(void)
{
    make_data();
    RUN(test_review_cases); /* first: the scratch of this thread's first IVF search is sized for it */
    RUN(test_spec);
    RUN(test_every_index_type);
    RUN(test_save_load);
    RUN(test_fresh);
    RUN(test_group_select);
    RUN(test_runs_path);
    vs_test_cleanup("test_filter");
    return vs_test_finish();
}
