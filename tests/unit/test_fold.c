/* test_fold: the write log folded into a build's input (shard/builder/fold.h), no network. Base rows the
 * log did not touch are kept as they were; an upserted id appears once with its last vector (in log
 * order), a deleted id not at all, also when it was upserted before; upserts of another embedding model
 * and malformed messages are skipped, as the replicas skip them; ids come from an .i64 file or are row
 * numbers; a wrong dimension is refused. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/vecio.h"
#include "shard/builder/fold.h"
#include "common/ids.h"
#include "tests/support/version_fixture.h"
#include "tests/testlib.h"

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
    CHECKF(vs_fold_write(fo, bpath, with_ids ? ipath : NULL, ob, oi, err) == VS_OK, "%s", err);
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
    CHECK(vs_fold_write(fo, bpath, NULL, ob, oi, err) == VS_ERR_INVALID_ARGUMENT);
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

int main(void)
{
    for (int i = 0; i < N * D; i++)
        base[i] = (float)i * 0.5f;
    RUN(test_with_ids);
    RUN(test_row_numbers);
    vs_test_cleanup("fold");
    return vs_test_finish();
}
