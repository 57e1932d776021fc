/* test_fold: the write log folded into a build's input (shard/builder/fold.h), no network. Base rows the
 * log did not touch are kept as they were; an upserted id appears once with its last vector (in log
 * order), a deleted id not at all, also when it was upserted before; upserts of another embedding model
 * and malformed messages are skipped, as the replicas skip them; ids come from an .i64 file or are row
 * numbers; a wrong dimension is refused.
 * Attributes: the base's columns are folded with the rows: a kept row keeps its values (missing ones too),
 * an upserted id takes its last upsert's, made as a replica makes them (a field without a column, or with
 * a column of the wrong type or length, is missing: an upsert replaces the whole item); the vectors and
 * ids are byte-identical to a fold without attributes; the columns follow their rows across chunks; bad
 * columns (names, repeats, row counts, dtypes, shapes) and a schema after the first message are refused;
 * the CLI's usage errors. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/filter.h"
#include "common/ids.h"
#include "common/vecio.h"
#include "shard/builder/fold.h"
#include "tests/support/version_fixture.h"
#include "tests/testlib.h"
#include "vecshard/v1/writelog.pb-c.h"

#define N 100
#define D 4

static float base[N * D];

static void add(vs_fold_t *f, int op, int64_t id, const float *x, const char *model)
{
    char err[VS_ERR_LEN];
    size_t len;
    uint8_t *m = vs_test_log_write(op, &id, 1, x, D, model, "w", &len);
    CHECK(vs_fold_add(f, m, len, err) == VS_OK);
    free(m);
}

/* Reads the folded output back: *n rows, vectors and ids (malloc'd). */
static void read_back(const char *vpath, const char *ipath, size_t *n, float **x, int64_t **ids)
{
    char err[VS_ERR_LEN];
    uint32_t d = 0;
    CHECKF(vs_vecfile_load_f32(vpath, n, &d, x, err) == VS_OK && d == D, "%s", err);
    vs_ids_file_t f;
    CHECK(vs_ids_file_open(ipath, &f, err) == VS_OK && f.n == *n);
    *ids = malloc((*n ? *n : 1) * sizeof **ids);
    for (size_t i = 0; i < *n; i++)
        (*ids)[i] = vs_ids_file_get(&f, i);
    vs_ids_file_close(&f);
}

static const float *row_of(const float *x, const int64_t *ids, size_t n, int64_t id, int *count)
{
    const float *r = NULL;
    *count = 0;
    for (size_t i = 0; i < n; i++)
        if (ids[i] == id) {
            r = x + i * D;
            (*count)++;
        }
    return r;
}

static void test_fold_rules(int with_ids)
{
    char err[VS_ERR_LEN];
    const char *dir = vs_test_tmpdir("fold");
    char bpath[PATH_MAX], ipath[PATH_MAX], ob[PATH_MAX], oi[PATH_MAX];
    snprintf(bpath, sizeof bpath, "%s/base.fvecs", dir);
    snprintf(ipath, sizeof ipath, "%s/base.i64", dir);
    snprintf(ob, sizeof ob, "%s/out.fvecs", dir);
    snprintf(oi, sizeof oi, "%s/out.i64", dir);
    CHECK(vs_vecio_write_fvecs(bpath, N, D, base, err) == VS_OK);
    int64_t off = with_ids ? 1000 : 0; /* ids: 1000 + row, or the row number */
    FILE *f = fopen(ipath, "wb");
    for (int64_t i = 0; i < N; i++) {
        int64_t v = off + i; /* little-endian host */
        fwrite(&v, 8, 1, f);
    }
    fclose(f);
    vs_fold_t *fo;
    CHECK(vs_fold_create(D, "m1", &fo, err) == VS_OK);
    float a[D] = {1, 2, 3, 4}, b[D] = {5, 6, 7, 8}, c[D] = {9, 9, 9, 9};
    add(fo, 1, off + 5, a, "m1");  /* replaces row 5 */
    add(fo, 1, 50000, b, "m1");    /* new */
    add(fo, 2, off + 7, NULL, ""); /* deletes row 7 */
    add(fo, 1, 50000, c, "m1");    /* new again: the last vector wins */
    add(fo, 1, off + 9, c, "m2");  /* another model: skipped, row 9 stays */
    add(fo, 1, 60000, a, "m1");    /* upserted, then deleted: absent */
    add(fo, 2, 60000, NULL, "");
    add(fo, 2, 777777, NULL, ""); /* a delete of an id nobody has */
    uint8_t junk[4] = {0xff, 0xff, 0xff, 0xff};
    CHECK(vs_fold_add(fo, junk, 4, err) == VS_OK);
    float wrongdim[D + 1] = {0};
    int64_t one = 3;
    size_t len;
    uint8_t *m = vs_test_log_write(1, &one, 1, wrongdim, D + 1, "m1", "x", &len);
    CHECK(vs_fold_add(fo, m, len, err) == VS_OK); /* rejected: row 3 stays */
    free(m);
    int64_t twice[2] = {off + 3,
                        off + 3}; /* an id twice: the replicas reject the message, so does the fold */
    float two[2 * D] = {0};
    m = vs_test_log_write(1, twice, 2, two, D, "m1", "y", &len);
    CHECK(vs_fold_add(fo, m, len, err) == VS_OK);
    free(m);
    CHECKF(vs_fold_write(fo, bpath, with_ids ? ipath : NULL, NULL, ob, oi, NULL, err) == VS_OK, "%s", err);
    vs_fold_counts_t k;
    vs_fold_counts(fo, &k);
    CHECKF(
        k.base_rows == N && k.kept == N - 2 && k.replaced == 1 && k.removed == 1 && k.written == N &&
            k.other_model == 1 && k.rejected == 3 && k.messages == 7,
        "rows %llu kept %llu replaced %llu removed %llu written %llu other %llu rejected %llu messages %llu",
        (unsigned long long)k.base_rows, (unsigned long long)k.kept, (unsigned long long)k.replaced,
        (unsigned long long)k.removed, (unsigned long long)k.written, (unsigned long long)k.other_model,
        (unsigned long long)k.rejected, (unsigned long long)k.messages);
    size_t n;
    float *x;
    int64_t *ids;
    read_back(ob, oi, &n, &x, &ids);
    int cnt;
    const float *r = row_of(x, ids, n, off + 5, &cnt);
    CHECK(cnt == 1 && r && memcmp(r, a, sizeof a) == 0);
    r = row_of(x, ids, n, 50000, &cnt);
    CHECK(cnt == 1 && r && memcmp(r, c, sizeof c) == 0);
    row_of(x, ids, n, off + 7, &cnt);
    CHECK(cnt == 0);
    row_of(x, ids, n, 60000, &cnt);
    CHECK(cnt == 0);
    r = row_of(x, ids, n, off + 9, &cnt);
    CHECK(cnt == 1 && r && memcmp(r, base + 9 * D, D * sizeof(float)) == 0);
    r = row_of(x, ids, n, off + 3, &cnt);
    CHECK(cnt == 1 && r && memcmp(r, base + 3 * D, D * sizeof(float)) == 0);
    free(x);
    free(ids);
    vs_fold_destroy(fo);
    /* a base of another dimension is refused */
    CHECK(vs_fold_create(D + 1, "", &fo, err) == VS_OK);
    CHECK(vs_fold_write(fo, bpath, NULL, NULL, ob, oi, NULL, err) == VS_ERR_INVALID_ARGUMENT);
    vs_fold_destroy(fo);
}

static void test_with_ids(void)
{
    test_fold_rules(1);
}

static void test_row_numbers(void)
{
    test_fold_rules(0);
}

/* ---- attributes ----------------------------------------------------------------------------------- */

/* One attribute column of a logged upsert: int values (ni) or float values (nf). */
typedef struct col {
    const char *field;
    const int64_t *iv;
    size_t ni;
    const float *fv;
    size_t nf;
} col_t;

/* Adds an upsert of ids[n] (vectors x) with columns cols[n_cols], as the coordinator logs it. */
static void upsert_cols(vs_fold_t *f, const int64_t *ids, size_t n, const float *x, uint32_t dim,
                        const char *model, const col_t *cols, size_t n_cols)
{
    Vecshard__V1__AttributeColumn c[4], *cp[4];
    for (size_t i = 0; i < n_cols; i++) {
        vecshard__v1__attribute_column__init(&c[i]);
        c[i].field = (char *)cols[i].field;
        c[i].int_values = (int64_t *)cols[i].iv;
        c[i].n_int_values = cols[i].ni;
        c[i].float_values = (float *)cols[i].fv;
        c[i].n_float_values = cols[i].nf;
        cp[i] = &c[i];
    }
    Vecshard__V1__LogWrite w = VECSHARD__V1__LOG_WRITE__INIT;
    w.op = VECSHARD__V1__LOG_WRITE__OP__OP_UPSERT;
    w.ids = (int64_t *)ids;
    w.n_ids = n;
    w.dim = dim;
    w.vectors = (float *)x;
    w.n_vectors = n * dim;
    w.model_version = (char *)model;
    w.write_id = "w";
    w.attributes = cp;
    w.n_attributes = n_cols;
    size_t len = vecshard__v1__log_write__get_packed_size(&w);
    uint8_t *b = malloc(len);
    vecshard__v1__log_write__pack(&w, b);
    char err[VS_ERR_LEN];
    CHECKF(vs_fold_add(f, b, len, err) == VS_OK, "%s", err);
    free(b);
}

/* The base's columns: market (int64, row * 10; row 11 missing), price (float64, row + 0.25; row 12 NaN). */
static int64_t market[N];
static double price[N];
static vs_test_pathbuf_t market_path, price_path;
static vs_builder_attr_t attr2[2];

static void write_columns(void)
{
    char err[VS_ERR_LEN];
    for (int i = 0; i < N; i++) {
        market[i] = i == 11 ? VS_ATTR_NULL_INT : (int64_t)i * 10;
        price[i] = i == 12 ? NAN : i + 0.25;
    }
    market_path = vs_test_pathcopy("fold", "market.npy");
    price_path = vs_test_pathcopy("fold", "price.npy");
    CHECK(vs_vecio_write_npy(market_path.s, VS_DTYPE_I64, N, 1, market, err) == VS_OK);
    CHECK(vs_vecio_write_npy(price_path.s, VS_DTYPE_F64, N, 1, price, err) == VS_OK);
    attr2[0] = (vs_builder_attr_t){"market", market_path.s};
    attr2[1] = (vs_builder_attr_t){"price", price_path.s};
}

/* The log of test_fold_attrs, added to f (whatever its schema). Base ids are 1000 + row. */
static void add_attr_log(vs_fold_t *f)
{
    float x[2 * D] = {1, 2, 3, 4, 5, 6, 7, 8};
    int64_t id = 1005, m7 = 7, m1 = 1, m2 = 2, m9 = 9, p5 = 5, mm[2] = {3, 4}, m99 = 99;
    float f125 = 1.25f, f25 = 2.5f, f35 = 3.5f, pp[2] = {0.5f, -0.5f};
    /* row 5 replaced, with both values */
    upsert_cols(f, &id, 1, x, D, "m1", (col_t[]){{"market", &m7, 1, NULL, 0}, {"price", NULL, 0, &f125, 1}},
                2);
    /* a new id twice: the second upsert replaces the first whole (values included) */
    id = 50000;
    upsert_cols(f, &id, 1, x, D, "m1", (col_t[]){{"market", &m1, 1, NULL, 0}}, 1);
    upsert_cols(f, &id, 1, x + D, D, "m1",
                (col_t[]){{"market", &m2, 1, NULL, 0}, {"price", NULL, 0, &f25, 1}}, 2);
    /* no columns: both missing */
    id = 50001;
    upsert_cols(f, &id, 1, x, D, "m1", NULL, 0);
    /* price as integers (the wrong type): missing, as a replica reads it */
    id = 1006;
    upsert_cols(f, &id, 1, x, D, "m1", (col_t[]){{"market", &m9, 1, NULL, 0}, {"price", &p5, 1, NULL, 0}}, 2);
    /* market of the wrong length: missing; a column of no field: ignored */
    id = 1008;
    upsert_cols(
        f, &id, 1, x, D, "m1",
        (col_t[]){{"market", mm, 2, NULL, 0}, {"price", NULL, 0, &f35, 1}, {"color", &m1, 1, NULL, 0}}, 3);
    add(f, 2, 1007, NULL, ""); /* deleted */
    /* two ids in one message */
    int64_t two[2] = {50002, 50003};
    upsert_cols(f, two, 2, x, D, "m1", (col_t[]){{"market", mm, 2, NULL, 0}, {"price", NULL, 0, pp, 2}}, 2);
    /* another model: skipped, row 10 keeps its values */
    id = 1010;
    upsert_cols(f, &id, 1, x, D, "m2", (col_t[]){{"market", &m99, 1, NULL, 0}}, 1);
    /* values, then an upsert without them: the item has none */
    id = 50004;
    upsert_cols(f, &id, 1, x, D, "m1", (col_t[]){{"market", &m99, 1, NULL, 0}, {"price", NULL, 0, &f25, 1}},
                2);
    upsert_cols(f, &id, 1, x, D, "m1", NULL, 0);
    /* a base row upserted with values, then deleted */
    id = 1020;
    upsert_cols(f, &id, 1, x, D, "m1", (col_t[]){{"market", &m99, 1, NULL, 0}}, 1);
    add(f, 2, 1020, NULL, "");
}

/* What the fold must give id: *m, *p (NaN = missing); 0 when id must be absent. */
static int expect(int64_t id, int64_t *m, float *p)
{
    switch (id) {
    case 1005:
        *m = 7, *p = 1.25f;
        return 1;
    case 50000:
        *m = 2, *p = 2.5f;
        return 1;
    case 50001:
    case 50004:
        *m = VS_ATTR_NULL_INT, *p = NAN;
        return 1;
    case 1006:
        *m = 9, *p = NAN;
        return 1;
    case 1008:
        *m = VS_ATTR_NULL_INT, *p = 3.5f;
        return 1;
    case 50002:
    case 50003:
        *m = id == 50002 ? 3 : 4, *p = id == 50002 ? 0.5f : -0.5f;
        return 1;
    case 1007:
    case 1020:
        return 0;
    }
    if (id < 1000 || id >= 1000 + N)
        return 0;
    *m = market[id - 1000];
    *p = (float)price[id - 1000];
    return 1;
}

/* Reads column file path back: its dtype and count, and n values (int64 or float). */
static void read_column(const char *path, vs_vecio_dtype want, size_t n, void *out)
{
    char err[VS_ERR_LEN];
    vs_vecfile_t *vf = NULL;
    CHECKF(vs_vecfile_open_column(path, &vf, err) == VS_OK, "%s", err);
    if (!vf)
        return;
    CHECKF(vs_vecfile_dtype(vf) == want && vs_vecfile_count(vf) == n, "%s: dtype %d, %zu values for %zu rows",
           path, (int)vs_vecfile_dtype(vf), vs_vecfile_count(vf), n);
    if (vs_vecfile_count(vf) == n)
        CHECKF((want == VS_DTYPE_I64 ? vs_vecfile_read_i64(vf, 0, n, out, err)
                                     : vs_vecfile_read_f32(vf, 0, n, out, err)) == VS_OK,
               "%s", err);
    vs_vecfile_close(vf);
}

/* Removes dir and the files in it. */
static void rm_dir(const char *dir)
{
    char p[PATH_MAX];
    const char *names[] = {"market.npy", "price.npy", "v.npy", "w.npy"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        unlink(p);
    }
    rmdir(dir);
}

static void write_base(const char *bpath, const char *ipath)
{
    char err[VS_ERR_LEN];
    CHECK(vs_vecio_write_fvecs(bpath, N, D, base, err) == VS_OK);
    int64_t ids[N];
    for (int64_t i = 0; i < N; i++)
        ids[i] = 1000 + i;
    CHECK(vs_vecio_write_npy(ipath, VS_DTYPE_I64, N, 1, ids, err) == VS_OK);
}

static void test_fold_attrs(void)
{
    char err[VS_ERR_LEN];
    vs_test_pathbuf_t bp = vs_test_pathcopy("fold", "abase.fvecs"), ip = vs_test_pathcopy("fold", "aids.npy");
    vs_test_pathbuf_t ob = vs_test_pathcopy("fold", "aout.fvecs"), oi = vs_test_pathcopy("fold", "aout.i64");
    vs_test_pathbuf_t ob0 = vs_test_pathcopy("fold", "nout.fvecs"),
                      oi0 = vs_test_pathcopy("fold", "nout.i64");
    vs_test_pathbuf_t dir = vs_test_pathcopy("fold", "attrs"); /* created by the write */
    write_base(bp.s, ip.s);
    vs_attr_field_t fields[2];
    CHECKF(vs_fold_attrs_schema(attr2, 2, N, fields, err) == VS_OK, "%s", err);
    CHECK(strcmp(fields[0].name, "market") == 0 && fields[0].type == VS_ATTR_INT);
    CHECK(strcmp(fields[1].name, "price") == 0 && fields[1].type == VS_ATTR_FLOAT);
    vs_fold_t *fo = NULL, *plain = NULL;
    CHECK(vs_fold_create(D, "m1", &fo, err) == VS_OK);
    CHECKF(vs_fold_set_schema(fo, fields, 2, err) == VS_OK, "%s", err);
    add_attr_log(fo);
    CHECKF(vs_fold_write(fo, bp.s, ip.s, attr2, ob.s, oi.s, dir.s, err) == VS_OK, "%s", err);
    vs_fold_counts_t k;
    vs_fold_counts(fo, &k);
    size_t want_rows = N - 5 + 8; /* 1005 1006 1008 replaced, 1007 1020 removed; 3 + 5 new */
    CHECKF(k.written == want_rows && k.kept == N - 5 && k.replaced == 3 && k.removed == 2 &&
               k.other_model == 1,
           "written %llu kept %llu replaced %llu removed %llu", (unsigned long long)k.written,
           (unsigned long long)k.kept, (unsigned long long)k.replaced, (unsigned long long)k.removed);
    vs_fold_destroy(fo);

    /* the vectors and ids are exactly those of a fold without attributes */
    CHECK(vs_fold_create(D, "m1", &plain, err) == VS_OK);
    add_attr_log(plain);
    CHECKF(vs_fold_write(plain, bp.s, ip.s, NULL, ob0.s, oi0.s, NULL, err) == VS_OK, "%s", err);
    vs_fold_destroy(plain);
    CHECK(vs_test_same_file(ob.s, ob0.s) && vs_test_same_file(oi.s, oi0.s));

    size_t n;
    float *x;
    int64_t *ids;
    read_back(ob.s, oi.s, &n, &x, &ids);
    CHECK(n == want_rows);
    int64_t *m = calloc(n ? n : 1, sizeof *m);
    float *p = calloc(n ? n : 1, sizeof *p);
    char mp[PATH_MAX], pp[PATH_MAX];
    snprintf(mp, sizeof mp, "%s/market.npy", dir.s);
    snprintf(pp, sizeof pp, "%s/price.npy", dir.s);
    read_column(mp, VS_DTYPE_I64, n, m);
    read_column(pp, VS_DTYPE_F32, n, p);
    size_t wrong = 0, nulls = 0, nans = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t wm;
        float wp;
        if (!expect(ids[i], &wm, &wp)) {
            CHECKF(0, "id %lld should be gone", (long long)ids[i]);
            continue;
        }
        nulls += m[i] == VS_ATTR_NULL_INT;
        nans += isnan(p[i]);
        if (m[i] != wm || (isnan(wp) ? !isnan(p[i]) : p[i] != wp)) {
            if (wrong++ < 5)
                fprintf(stderr, "id %lld: market %lld price %g, want %lld %g\n", (long long)ids[i],
                        (long long)m[i], p[i], (long long)wm, wp);
        }
    }
    CHECKF(wrong == 0, "%zu of %zu rows carry wrong attributes", wrong, n);
    CHECKF(nulls == 4 && nans == 4,
           "%zu missing markets (want 4: row 11, 1008, 50001, 50004), %zu missing prices "
           "(want 4: row 12, 1006, 50001, 50004)",
           nulls, nans);
    free(m);
    free(p);
    free(x);
    free(ids);
    rm_dir(dir.s);
}

/* Columns follow their rows across the 64k-row chunks of the base and of the upserts. */
static void test_fold_attrs_chunks(void)
{
    enum { NB = 140000, NU = 70000 };
    char err[VS_ERR_LEN];
    vs_test_pathbuf_t bp = vs_test_pathcopy("fold", "big.fvecs"), vp = vs_test_pathcopy("fold", "big-v.npy");
    vs_test_pathbuf_t wp = vs_test_pathcopy("fold", "big-w.npy"),
                      ob = vs_test_pathcopy("fold", "big-out.fvecs");
    vs_test_pathbuf_t oi = vs_test_pathcopy("fold", "big-out.i64"),
                      dir = vs_test_pathcopy("fold", "big-attrs");
    float *bx = calloc((size_t)NB * D, sizeof *bx);
    int64_t *v = malloc(NB * sizeof *v);
    float *w = malloc(NB * sizeof *w);
    for (size_t i = 0; i < NB; i++) { /* ids are row numbers; v = 3 id, w = id / 2 */
        bx[i * D] = (float)i;
        v[i] = 3 * (int64_t)i;
        w[i] = (float)i * 0.5f;
    }
    CHECK(vs_vecio_write_fvecs(bp.s, NB, D, bx, err) == VS_OK);
    CHECK(vs_vecio_write_npy(vp.s, VS_DTYPE_I64, NB, 1, v, err) == VS_OK);
    CHECK(vs_vecio_write_npy(wp.s, VS_DTYPE_F32, NB, 1, w, err) == VS_OK);
    vs_builder_attr_t at[2] = {{"v", vp.s}, {"w", wp.s}};
    vs_attr_field_t fields[2];
    CHECKF(vs_fold_attrs_schema(at, 2, NB, fields, err) == VS_OK, "%s", err);
    vs_fold_t *fo = NULL;
    CHECK(vs_fold_create(D, "", &fo, err) == VS_OK);
    CHECK(vs_fold_set_schema(fo, fields, 2, err) == VS_OK);
    int64_t dels[11];
    for (int i = 0; i < 11; i++)
        dels[i] = 65530 + i; /* across the first chunk's end */
    size_t len;
    uint8_t *msg = vs_test_log_write(2, dels, 11, NULL, D, "", "d", &len);
    CHECK(vs_fold_add(fo, msg, len, err) == VS_OK);
    free(msg);
    int64_t *uid = malloc(NU * sizeof *uid), *uv = malloc(NU * sizeof *uv);
    float *uw = malloc(NU * sizeof *uw), *ux = calloc((size_t)NU * D, sizeof *ux);
    for (size_t i = 0; i < NU; i++) { /* new ids, and row 1 again: the same rule v = 3 id, w = id / 2 */
        uid[i] = i == 0 ? 1 : 200000 + (int64_t)i;
        uv[i] = 3 * uid[i];
        uw[i] = (float)uid[i] * 0.5f;
        ux[i * D] = (float)uid[i];
    }
    upsert_cols(fo, uid, NU, ux, D, "", (col_t[]){{"v", uv, NU, NULL, 0}, {"w", NULL, 0, uw, NU}}, 2);
    CHECKF(vs_fold_write(fo, bp.s, NULL, at, ob.s, oi.s, dir.s, err) == VS_OK, "%s", err);
    vs_fold_destroy(fo);
    size_t n;
    float *x;
    int64_t *ids;
    read_back(ob.s, oi.s, &n, &x, &ids);
    CHECK(n == NB - 11 + NU - 1);
    int64_t *gv = calloc(n ? n : 1, sizeof *gv);
    float *gw = calloc(n ? n : 1, sizeof *gw);
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/v.npy", dir.s);
    read_column(p, VS_DTYPE_I64, n, gv);
    snprintf(p, sizeof p, "%s/w.npy", dir.s);
    read_column(p, VS_DTYPE_F32, n, gw);
    size_t wrong = 0;
    for (size_t i = 0; i < n; i++)
        wrong += gv[i] != 3 * ids[i] || gw[i] != (float)ids[i] * 0.5f || x[i * D] != (float)ids[i] ||
                 (ids[i] >= 65530 && ids[i] <= 65540);
    CHECKF(wrong == 0, "%zu of %zu rows wrong", wrong, n);
    free(gv);
    free(gw);
    free(x);
    free(ids);
    free(bx);
    free(v);
    free(w);
    free(uid);
    free(uv);
    free(uw);
    free(ux);
    rm_dir(dir.s);
}

/* A column file written by hand with numpy dtype descr (2-byte elements, zeros). */
static void write_npy_u2(const char *path, int n)
{
    char hdr[128];
    int hl = snprintf(hdr, sizeof hdr, "{'descr': '<u2', 'fortran_order': False, 'shape': (%d,), }", n);
    while ((hl + 11) % 64 != 0)
        hdr[hl++] = ' ';
    hdr[hl++] = '\n';
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)hl, 0};
    uint16_t *u = calloc((size_t)n, sizeof *u);
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(pre, 1, 10, f) == 10 && fwrite(hdr, 1, (size_t)hl, f) == (size_t)hl &&
          fwrite(u, 2, (size_t)n, f) == (size_t)n);
    if (f)
        fclose(f);
    free(u);
}

/* Refused with st and a message containing want. */
static void refused_schema(const vs_builder_attr_t *at, size_t n_at, vs_status want_st, const char *want)
{
    char err[VS_ERR_LEN] = "";
    vs_attr_field_t fields[VS_ATTR_MAX_FIELDS];
    vs_status st = vs_fold_attrs_schema(at, n_at, N, fields, err);
    CHECKF(st == want_st && strstr(err, want), "status %d (want %d), '%s' (want '%s')", (int)st, (int)want_st,
           err, want);
}

static void test_fold_attrs_refused(void)
{
    char err[VS_ERR_LEN];
    vs_test_pathbuf_t shortp = vs_test_pathcopy("fold", "short.npy"),
                      wide = vs_test_pathcopy("fold", "wide.npy");
    vs_test_pathbuf_t u2 = vs_test_pathcopy("fold", "u2.npy");
    CHECK(vs_vecio_write_npy(shortp.s, VS_DTYPE_I64, N - 1, 1, market, err) == VS_OK);
    CHECK(vs_vecio_write_npy(wide.s, VS_DTYPE_I64, N / 2, 2, market, err) == VS_OK);
    write_npy_u2(u2.s, N);
    vs_builder_attr_t at[VS_ATTR_MAX_FIELDS + 1];
    at[0] = (vs_builder_attr_t){"market", shortp.s};
    refused_schema(at, 1, VS_ERR_INVALID_ARGUMENT, "short.npy holds 99 values, the base has 100 rows");
    at[0] = (vs_builder_attr_t){"market", u2.s};
    refused_schema(at, 1, VS_ERR_UNSUPPORTED, "u2.npy: npy dtype '<u2' is not supported");
    at[0] = (vs_builder_attr_t){"market", wide.s};
    refused_schema(at, 1, VS_ERR_INVALID_ARGUMENT, "wide.npy: rows of 2 values");
    at[0] = (vs_builder_attr_t){"market", "/nonexistent/m.npy"};
    refused_schema(at, 1, VS_ERR_NOT_FOUND, "--attr market: open /nonexistent/m.npy");
    at[0] = (vs_builder_attr_t){"Market", market_path.s};
    refused_schema(at, 1, VS_ERR_INVALID_ARGUMENT, "--attr Market: not an attribute name");
    at[0] = (vs_builder_attr_t){"market", market_path.s};
    at[1] = (vs_builder_attr_t){"market", price_path.s};
    refused_schema(at, 2, VS_ERR_INVALID_ARGUMENT, "--attr market is given twice");
    for (size_t i = 0; i <= VS_ATTR_MAX_FIELDS; i++)
        at[i] = (vs_builder_attr_t){"market", market_path.s};
    refused_schema(at, VS_ATTR_MAX_FIELDS + 1, VS_ERR_INVALID_ARGUMENT, "at most 16 --attr fields");

    /* the write checks the columns again, before writing anything */
    vs_test_pathbuf_t bp = vs_test_pathcopy("fold", "rbase.fvecs"), ip = vs_test_pathcopy("fold", "rids.npy");
    vs_test_pathbuf_t ob = vs_test_pathcopy("fold", "rout.fvecs"), oi = vs_test_pathcopy("fold", "rout.i64");
    vs_test_pathbuf_t dir = vs_test_pathcopy("fold", "rattrs");
    write_base(bp.s, ip.s);
    vs_attr_field_t fields[2];
    CHECK(vs_fold_attrs_schema(attr2, 2, N, fields, err) == VS_OK);
    vs_fold_t *fo = NULL;
    CHECK(vs_fold_create(D, "m1", &fo, err) == VS_OK);
    CHECK(vs_fold_set_schema(fo, fields, 2, err) == VS_OK);
    add_attr_log(fo);
    CHECK(vs_fold_set_schema(fo, fields, 1, err) == VS_ERR_FAILED_PRECONDITION); /* after a message */
    vs_builder_attr_t bad[2] = {{"market", shortp.s}, {"price", price_path.s}};
    CHECK(vs_fold_write(fo, bp.s, ip.s, bad, ob.s, oi.s, dir.s, err) == VS_ERR_INVALID_ARGUMENT &&
          strstr(err, "holds 99 values"));
    bad[0] = (vs_builder_attr_t){"market", price_path.s}; /* a float column for the integer field */
    CHECKF(vs_fold_write(fo, bp.s, ip.s, bad, ob.s, oi.s, dir.s, err) == VS_ERR_INVALID_ARGUMENT &&
               strstr(err, "is float field market, the fold's field 0 is int market"),
           "%s", err);
    bad[0] = (vs_builder_attr_t){"region", market_path.s}; /* another name */
    CHECK(vs_fold_write(fo, bp.s, ip.s, bad, ob.s, oi.s, dir.s, err) == VS_ERR_INVALID_ARGUMENT);
    CHECK(vs_fold_write(fo, bp.s, ip.s, NULL, ob.s, oi.s, dir.s, err) == VS_ERR_INVALID_ARGUMENT);
    CHECK(vs_fold_write(fo, bp.s, ip.s, attr2, ob.s, oi.s, NULL, err) == VS_ERR_INVALID_ARGUMENT);
    CHECK(access(dir.s, F_OK) != 0 && access(ob.s, F_OK) != 0); /* nothing written */
    vs_fold_destroy(fo);
    /* a schema vs_fold_attrs_schema would not give */
    CHECK(vs_fold_create(D, "m1", &fo, err) == VS_OK);
    vs_attr_field_t twice[2] = {{"market", VS_ATTR_INT}, {"market", VS_ATTR_FLOAT}};
    CHECK(vs_fold_set_schema(fo, twice, 2, err) == VS_ERR_INVALID_ARGUMENT);
    vs_attr_field_t badtype[1] = {{"market", (vs_attr_type)7}};
    CHECK(vs_fold_set_schema(fo, badtype, 1, err) == VS_ERR_INVALID_ARGUMENT);
    vs_fold_destroy(fo);
}

/* vecshard-fold's flags: --attr and --out-attr go together (exit 2); a bad column is refused (exit 1,
 * naming the file) before the log is read (the NATS URL here leads nowhere). */
static void test_cli_attrs(void)
{
    const char *bin = getenv("VS_BIN_DIR");
    char tool[1400];
    snprintf(tool, sizeof tool, "%s/vecshard-fold", bin ? bin : "");
    if (!bin || access(tool, X_OK) != 0) {
        fprintf(stderr, "test_cli_attrs: no vecshard-fold in VS_BIN_DIR, skipped\n");
        return;
    }
    vs_test_pathbuf_t bp = vs_test_pathcopy("fold", "cbase.fvecs"), ip = vs_test_pathcopy("fold", "cids.npy");
    vs_test_pathbuf_t shortp = vs_test_pathcopy("fold", "short.npy");
    write_base(bp.s, ip.s);
    char cmd[8192], out[4096];
    const char *common = "--nats-url nats://127.0.0.1:1 --cluster c --out-base /nonexistent/o.fvecs "
                         "--out-ids /nonexistent/o.i64";
    struct {
        const char *flags;
        int code;
        const char *says;
    } cases[] = {
        {"--attr market=%s", 2, "--attr needs --out-attr"},
        {"--out-attr /nonexistent/d", 2, "--out-attr needs"},
        {"--attr market --out-attr /nonexistent/d", 2, "must be NAME=FILE"},
        {"--attr market=%s --out-attr /nonexistent/d", 1, "short.npy holds 99 values, the base has 100 rows"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char flags[2048];
        snprintf(flags, sizeof flags, cases[i].flags, shortp.s);
        snprintf(cmd, sizeof cmd, "%s --base %s --ids %s %s %s 2>&1", tool, bp.s, ip.s, common, flags);
        FILE *p = popen(cmd, "r");
        size_t n = p ? fread(out, 1, sizeof out - 1, p) : 0;
        out[n] = 0;
        int rc = p ? pclose(p) : -1;
        CHECKF(rc != -1 && WEXITSTATUS(rc) == cases[i].code && strstr(out, cases[i].says),
               "%s: exit %d, '%s'", flags, rc == -1 ? -1 : WEXITSTATUS(rc), out);
    }
}

int main(void)
{
    for (int i = 0; i < N * D; i++)
        base[i] = (float)i * 0.5f;
    RUN(test_with_ids);
    RUN(test_row_numbers);
    write_columns();
    RUN(test_fold_attrs);
    RUN(test_fold_attrs_chunks);
    RUN(test_fold_attrs_refused);
    RUN(test_cli_attrs);
    vs_test_cleanup("fold");
    return vs_test_finish();
}
