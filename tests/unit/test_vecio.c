/* test_vecio.c: unit tests of common/vecio: writer/reader round trips for every format and dtype, corrupt
 * and hostile fixtures built here byte by byte (each error checked for its status, the file path and,
 * where it matters, the byte offset), Fashion-MNIST idx.gz files checked against an independent gzread
 * parse when installed, and npy interop with numpy both ways when python3 + numpy are present. */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* mmap, fsync, fileno, O_CLOEXEC when built outside CMake */
#endif
#include "common/vecio.h"
#include "tests/testlib.h"

#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

typedef vs_test_pathbuf_t pathbuf;
#define tpath vs_test_pathcopy
#define cleanup vs_test_cleanup

#define write_file vs_test_write_file
#define slurp vs_test_read_file

static void put_le32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* Writes an npy file by hand: magic, version major.0, the dict text, pad spaces and '\n', then data. */
static void make_npy(const char *path, int major, const char *dict, size_t pad, const void *data, size_t len)
{
    size_t dlen = strlen(dict);
    size_t pre = major == 1 ? 10 : 12;
    size_t hlen = dlen + pad + 1;
    size_t total = pre + hlen + len;
    unsigned char *b = malloc(total);
    memcpy(b, "\x93NUMPY", 6);
    b[6] = (unsigned char)major;
    b[7] = 0;
    if (major == 1) {
        b[8] = (unsigned char)hlen;
        b[9] = (unsigned char)(hlen >> 8);
    } else {
        put_le32(b + 8, (uint32_t)hlen);
    }
    memcpy(b + pre, dict, dlen);
    memset(b + pre + dlen, ' ', pad);
    b[pre + dlen + pad] = '\n';
    if (len != 0)
        memcpy(b + pre + hlen, data, len);
    CHECK(write_file(path, b, total) == 0);
    free(b);
}

/* idx: 00 00 dtype ndims, big-endian sizes, data. */
static size_t build_idx(unsigned char *b, int dtype, int ndims, const uint32_t *sizes, const void *data,
                        size_t len)
{
    b[0] = 0;
    b[1] = 0;
    b[2] = (unsigned char)dtype;
    b[3] = (unsigned char)ndims;
    for (int i = 0; i < ndims; i++)
        put_be32(b + 4 + 4 * i, sizes[i]);
    size_t hdr = 4 + 4 * (size_t)ndims;
    if (len != 0)
        memcpy(b + hdr, data, len);
    return hdr + len;
}

static void make_idx(const char *path, int dtype, int ndims, const uint32_t *sizes, const void *data,
                     size_t len)
{
    unsigned char *b = malloc(4 + 4 * (size_t)ndims + len);
    size_t total = build_idx(b, dtype, ndims, sizes, data, len);
    CHECK(write_file(path, b, total) == 0);
    free(b);
}

static void gz_write(const char *path, const char *mode, const void *data, size_t len)
{
    gzFile g = gzopen(path, mode);
    CHECK(g != NULL);
    if (g == NULL)
        return;
    CHECK(gzwrite(g, data, (unsigned)len) == (int)len);
    CHECK(gzclose(g) == Z_OK);
}

static char dummy_vf;

#define EXPECT_OPEN_ERR(path, want, substr) expect_open_err((path), (want), (substr), __LINE__)

/* Opening path must fail with want, an err naming the path (and substr if given), out_vf untouched. */
static void expect_open_err(const char *path, vs_status want, const char *substr, int line)
{
    char err[VS_ERR_LEN] = "";
    vs_vecfile_t *vf = (vs_vecfile_t *)(void *)&dummy_vf;
    vs_status st = vs_vecfile_open(path, &vf, err);
    CHECKF(st == want, "line %d: %s: got %s, want %s (%s)", line, path, vs_status_name(st),
           vs_status_name(want), err);
    CHECKF(strstr(err, path) != NULL, "line %d: error does not name the path: %s", line, err);
    if (substr != NULL)
        CHECKF(strstr(err, substr) != NULL, "line %d: error lacks \"%s\": %s", line, substr, err);
    CHECKF(vf == (vs_vecfile_t *)(void *)&dummy_vf, "line %d: out_vf was modified on failure", line);
    if (st == VS_OK && vf != (vs_vecfile_t *)(void *)&dummy_vf)
        vs_vecfile_close(vf);
}

/* Opens path and checks its shape, then every reader against the expected values (want_f as float,
 * want_i as int32 or NULL for float files). */
static void check_file(const char *path, vs_vecio_format fmt, vs_vecio_dtype dtype, size_t n, uint32_t dim,
                       const float *want_f, const int32_t *want_i)
{
    char err[VS_ERR_LEN] = "";
    vs_vecfile_t *vf = NULL;
    vs_status st = vs_vecfile_open(path, &vf, err);
    CHECKF(st == VS_OK, "%s: %s", path, err);
    if (st != VS_OK)
        return;
    CHECK(vs_vecfile_count(vf) == n);
    CHECK(vs_vecfile_dim(vf) == dim);
    CHECK(vs_vecfile_dtype(vf) == dtype);
    CHECK(vs_vecfile_format(vf) == fmt);
    CHECK(strcmp(vs_vecfile_path(vf), path) == 0);

    size_t total = n * dim;
    float *f = malloc((total + 1) * sizeof *f);
    int32_t *iv = malloc((total + 1) * sizeof *iv);
    st = vs_vecfile_read_f32(vf, 0, n, f, err);
    CHECKF(st == VS_OK, "%s: %s", path, err);
    CHECKF(memcmp(f, want_f, total * sizeof *f) == 0, "%s: read_f32 values differ", path);

    st = vs_vecfile_read_i32(vf, 0, n, iv, err);
    if (want_i == NULL) {
        CHECKF(st == VS_ERR_INVALID_ARGUMENT, "%s: read_i32 of floats gave %s", path, vs_status_name(st));
        CHECK(strstr(err, path) != NULL);
    } else {
        CHECKF(st == VS_OK, "%s: %s", path, err);
        CHECKF(memcmp(iv, want_i, total * sizeof *iv) == 0, "%s: read_i32 values differ", path);
    }

    /* partial ranges */
    if (n >= 12) {
        memset(f, 0, total * sizeof *f);
        CHECK(vs_vecfile_read_f32(vf, 5, 7, f, err) == VS_OK);
        CHECK(memcmp(f, want_f + 5 * (size_t)dim, 7 * (size_t)dim * sizeof *f) == 0);
        if (want_i != NULL) {
            CHECK(vs_vecfile_read_i32(vf, 5, 7, iv, err) == VS_OK);
            CHECK(memcmp(iv, want_i + 5 * (size_t)dim, 7 * (size_t)dim * sizeof *iv) == 0);
        }
    }
    if (n >= 1) {
        CHECK(vs_vecfile_read_f32(vf, n - 1, 1, f, err) == VS_OK);
        CHECK(memcmp(f, want_f + (n - 1) * dim, dim * sizeof *f) == 0);
    }
    CHECK(vs_vecfile_read_f32(vf, n, 0, f, err) == VS_OK);

    /* out of range: nothing written */
    f[0] = 12345.0f;
    st = vs_vecfile_read_f32(vf, n, 1, f, err);
    CHECK(st == VS_ERR_OUT_OF_RANGE);
    CHECK(strstr(err, path) != NULL);
    CHECK(vs_vecfile_read_f32(vf, 0, n + 1, f, err) == VS_ERR_OUT_OF_RANGE);
    CHECK(vs_vecfile_read_f32(vf, SIZE_MAX, 2, f, err) == VS_ERR_OUT_OF_RANGE);
    CHECK(vs_vecfile_read_f32(vf, 1, SIZE_MAX, f, err) == VS_ERR_OUT_OF_RANGE);
    CHECK(f[0] == 12345.0f);
    if (want_i != NULL) {
        iv[0] = 777;
        CHECK(vs_vecfile_read_i32(vf, n + 1, 0, iv, err) == VS_ERR_OUT_OF_RANGE);
        CHECK(vs_vecfile_read_i32(vf, 2, n, iv, err) == VS_ERR_OUT_OF_RANGE);
        CHECK(iv[0] == 777);
    }

    const float *rows = vs_vecfile_f32_rows(vf);
    if (fmt == VS_VECIO_NPY && dtype == VS_DTYPE_F32) {
        CHECKF(rows != NULL, "%s: f32_rows is NULL for an npy <f4 file", path);
        if (rows != NULL)
            CHECK(memcmp(rows, want_f, total * sizeof *rows) == 0);
    } else {
        CHECK(rows == NULL);
    }
    vs_vecfile_close(vf);

    /* load_* */
    size_t ln = 0;
    uint32_t ld = 0;
    float *lf = NULL;
    st = vs_vecfile_load_f32(path, &ln, &ld, &lf, err);
    CHECKF(st == VS_OK, "%s: %s", path, err);
    CHECK(ln == n && ld == dim && lf != NULL);
    if (lf != NULL)
        CHECK(memcmp(lf, want_f, total * sizeof *lf) == 0);
    free(lf);
    int32_t *li = (int32_t *)(void *)&dummy_vf;
    ln = 99;
    st = vs_vecfile_load_i32(path, &ln, &ld, &li, err);
    if (want_i == NULL) {
        CHECK(st == VS_ERR_INVALID_ARGUMENT);
        CHECK(ln == 99 && li == (int32_t *)(void *)&dummy_vf); /* outputs untouched */
    } else {
        CHECKF(st == VS_OK, "%s: %s", path, err);
        CHECK(ln == n && ld == dim);
        if (st == VS_OK) {
            CHECK(memcmp(li, want_i, total * sizeof *li) == 0);
            free(li);
        }
    }
    free(f);
    free(iv);
}

static void test_roundtrip(void)
{
    static const char *T = "vecio_roundtrip";
    static const uint32_t dims[] = {1, 3, 128, 784};
    uint64_t rng = 12345;
    char err[VS_ERR_LEN];
    for (size_t k = 0; k < sizeof dims / sizeof dims[0]; k++) {
        uint32_t dim = dims[k];
        size_t n = 23 + k;
        size_t total = n * dim;
        float *fv = malloc(total * sizeof *fv);
        int32_t *iv = malloc(total * sizeof *iv);
        uint8_t *bv = malloc(total);
        float *iv_f = malloc(total * sizeof *iv_f);
        float *bv_f = malloc(total * sizeof *bv_f);
        int32_t *bv_i = malloc(total * sizeof *bv_i);
        for (size_t i = 0; i < total; i++) {
            fv[i] = vs_test_randf(&rng) * 1000.0f;
            iv[i] = (int32_t)(uint32_t)vs_test_rand(&rng);
            if (i % 5 == 0)
                iv[i] = (int32_t)(vs_test_rand(&rng) % 2000001) - 1000000; /* exactly representable */
            bv[i] = (uint8_t)vs_test_rand(&rng);
            iv_f[i] = (float)iv[i];
            bv_f[i] = (float)bv[i];
            bv_i[i] = bv[i];
        }
        char name[64];
        snprintf(name, sizeof name, "d%u.fvecs", (unsigned)dim);
        pathbuf pf = tpath(T, name);
        snprintf(name, sizeof name, "d%u.ivecs", (unsigned)dim);
        pathbuf pi = tpath(T, name);
        snprintf(name, sizeof name, "d%u.bvecs", (unsigned)dim);
        pathbuf pb = tpath(T, name);
        snprintf(name, sizeof name, "d%u_f32.npy", (unsigned)dim);
        pathbuf nf = tpath(T, name);
        snprintf(name, sizeof name, "d%u_u8.npy", (unsigned)dim);
        pathbuf nb = tpath(T, name);
        snprintf(name, sizeof name, "d%u_i32.npy", (unsigned)dim);
        pathbuf ni = tpath(T, name);

        CHECKF(vs_vecio_write_fvecs(pf.s, n, dim, fv, err) == VS_OK, "%s", err);
        CHECKF(vs_vecio_write_ivecs(pi.s, n, dim, iv, err) == VS_OK, "%s", err);
        CHECKF(vs_vecio_write_bvecs(pb.s, n, dim, bv, err) == VS_OK, "%s", err);
        CHECKF(vs_vecio_write_npy(nf.s, VS_DTYPE_F32, n, dim, fv, err) == VS_OK, "%s", err);
        CHECKF(vs_vecio_write_npy(nb.s, VS_DTYPE_U8, n, dim, bv, err) == VS_OK, "%s", err);
        CHECKF(vs_vecio_write_npy(ni.s, VS_DTYPE_I32, n, dim, iv, err) == VS_OK, "%s", err);

        check_file(pf.s, VS_VECIO_FVECS, VS_DTYPE_F32, n, dim, fv, NULL);
        check_file(pi.s, VS_VECIO_IVECS, VS_DTYPE_I32, n, dim, iv_f, iv);
        check_file(pb.s, VS_VECIO_BVECS, VS_DTYPE_U8, n, dim, bv_f, bv_i);
        check_file(nf.s, VS_VECIO_NPY, VS_DTYPE_F32, n, dim, fv, NULL);
        check_file(nb.s, VS_VECIO_NPY, VS_DTYPE_U8, n, dim, bv_f, bv_i);
        check_file(ni.s, VS_VECIO_NPY, VS_DTYPE_I32, n, dim, iv_f, iv);

        /* file sizes are exactly what the formats prescribe; the npy data starts at a multiple of 64 */
        struct stat sb;
        CHECK(stat(pf.s, &sb) == 0 && (size_t)sb.st_size == n * (4 + 4 * (size_t)dim));
        CHECK(stat(pb.s, &sb) == 0 && (size_t)sb.st_size == n * (4 + (size_t)dim));
        CHECK(stat(nb.s, &sb) == 0 && ((size_t)sb.st_size - total) % 64 == 0);
        size_t len = 0;
        unsigned char *raw = slurp(nf.s, &len);
        CHECK(raw != NULL && len > 10);
        if (raw != NULL && len > 10) {
            size_t hlen = (size_t)raw[8] | (size_t)raw[9] << 8;
            CHECK((10 + hlen) % 64 == 0);
            CHECK(raw[10 + hlen - 1] == '\n');
            char want_dict[128];
            snprintf(want_dict, sizeof want_dict,
                     "{'descr': '<f4', 'fortran_order': False, 'shape': (%zu, %u), }", n, (unsigned)dim);
            CHECK(memcmp(raw + 10, want_dict, strlen(want_dict)) == 0);
        }
        free(raw);

        /* no temporary file is left behind */
        char tmp[1300];
        snprintf(tmp, sizeof tmp, "%s.tmp", pf.s);
        CHECK(access(tmp, F_OK) != 0);

        free(fv);
        free(iv);
        free(bv);
        free(iv_f);
        free(bv_f);
        free(bv_i);
    }

    /* rewriting a file truncates it */
    pathbuf p = tpath(T, "rewrite.fvecs");
    float big[40] = {0}, small[4] = {1, 2, 3, 4};
    CHECK(vs_vecio_write_fvecs(p.s, 10, 4, big, err) == VS_OK);
    CHECK(vs_vecio_write_fvecs(p.s, 1, 4, small, err) == VS_OK);
    check_file(p.s, VS_VECIO_FVECS, VS_DTYPE_F32, 1, 4, small, NULL);

    /* an npy with zero rows is valid */
    pathbuf z = tpath(T, "zero.npy");
    CHECKF(vs_vecio_write_npy(z.s, VS_DTYPE_F32, 0, 5, NULL, err) == VS_OK, "%s", err);
    vs_vecfile_t *vf = NULL;
    CHECKF(vs_vecfile_open(z.s, &vf, err) == VS_OK, "%s", err);
    if (vf != NULL) {
        CHECK(vs_vecfile_count(vf) == 0 && vs_vecfile_dim(vf) == 5);
        CHECK(vs_vecfile_read_f32(vf, 0, 0, NULL, err) == VS_OK);
        CHECK(vs_vecfile_read_f32(vf, 0, 1, small, err) == VS_ERR_OUT_OF_RANGE);
        vs_vecfile_close(vf);
    }
    vs_vecfile_close(NULL);
    cleanup(T);
}

static void test_npy_header_variants(void)
{
    static const char *T = "vecio_npy_variants";
    uint8_t u[12];
    for (int i = 0; i < 12; i++)
        u[i] = (uint8_t)(i * 20);
    float uf[12];
    int32_t ui[12];
    for (int i = 0; i < 12; i++) {
        uf[i] = u[i];
        ui[i] = u[i];
    }

    /* keys in another order, odd whitespace, double quotes, an unknown key, v2.0 */
    pathbuf a = tpath(T, "a.npy");
    make_npy(a.s, 2,
             " {\"shape\" :( 4 ,3 ) ,\n 'extra': [1, (2, 3), 'x}'], 'fortran_order':False,'descr':'|u1'}", 7,
             u, 12);
    check_file(a.s, VS_VECIO_NPY, VS_DTYPE_U8, 4, 3, uf, ui);
    /* v3.0, 1-D shape (n,) is one column, 'u1' and '<u1' spellings */
    pathbuf b = tpath(T, "b.npy");
    make_npy(b.s, 3, "{'descr': 'u1', 'fortran_order': False, 'shape': (12,), }", 0, u, 12);
    check_file(b.s, VS_VECIO_NPY, VS_DTYPE_U8, 12, 1, uf, ui);
    pathbuf c = tpath(T, "c.npy");
    make_npy(c.s, 1, "{'descr': '<u1', 'fortran_order': False, 'shape': (2L, 6L)}", 3, u, 12);
    check_file(c.s, VS_VECIO_NPY, VS_DTYPE_U8, 2, 6, uf, ui);

    /* data not 4-aligned: f32_rows declines, read_f32 still copies */
    float fv[6] = {1.5f, -2.25f, 3.0f, 1e30f, -0.0f, 7.0f};
    pathbuf d = tpath(T, "unaligned.npy");
    const char *dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }";
    size_t pad = 0;
    while ((10 + strlen(dict) + pad + 1) % 4 != 1)
        pad++;
    make_npy(d.s, 1, dict, pad, fv, sizeof fv);
    char err[VS_ERR_LEN];
    vs_vecfile_t *vf = NULL;
    CHECKF(vs_vecfile_open(d.s, &vf, err) == VS_OK, "%s", err);
    if (vf != NULL) {
        CHECK(vs_vecfile_f32_rows(vf) == NULL);
        float out[6];
        CHECK(vs_vecfile_read_f32(vf, 0, 3, out, err) == VS_OK);
        CHECK(memcmp(out, fv, sizeof fv) == 0);
        CHECK(vs_vecfile_read_f32(vf, 1, 2, out, err) == VS_OK);
        CHECK(memcmp(out, fv + 2, 4 * sizeof(float)) == 0);
        vs_vecfile_close(vf);
    }
    cleanup(T);
}

static void test_corrupt_vecs(void)
{
    static const char *T = "vecio_corrupt_vecs";
    char err[VS_ERR_LEN];
    float data[40];
    for (int i = 0; i < 40; i++)
        data[i] = (float)i;
    pathbuf good = tpath(T, "good.fvecs");
    CHECK(vs_vecio_write_fvecs(good.s, 10, 4, data, err) == VS_OK); /* rows of 20 bytes */
    size_t len = 0;
    unsigned char *raw = slurp(good.s, &len);
    CHECK(raw != NULL && len == 200);
    if (raw == NULL || len != 200) {
        free(raw);
        return;
    }

    pathbuf p = tpath(T, "cut_row.fvecs");
    CHECK(write_file(p.s, raw, 193) == 0);
    EXPECT_OPEN_ERR(p.s, VS_ERR_CORRUPT, "truncated at byte 180");
    EXPECT_OPEN_ERR(p.s, VS_ERR_CORRUPT, "row 9 needs 20 bytes, 13 remain");

    p = tpath(T, "cut_header.fvecs");
    CHECK(write_file(p.s, raw, 182) == 0);
    EXPECT_OPEN_ERR(p.s, VS_ERR_CORRUPT, "truncated at byte 180");

    p = tpath(T, "tiny.fvecs");
    CHECK(write_file(p.s, raw, 3) == 0);
    EXPECT_OPEN_ERR(p.s, VS_ERR_CORRUPT, "truncated");

    p = tpath(T, "mismatch.fvecs");
    unsigned char *bad = malloc(len);
    memcpy(bad, raw, len);
    put_le32(bad + 6 * 20, 5);
    CHECK(write_file(p.s, bad, len) == 0);
    EXPECT_OPEN_ERR(p.s, VS_ERR_CORRUPT, "byte 120");
    EXPECT_OPEN_ERR(p.s, VS_ERR_CORRUPT, "row 6");

    /* the last row differing is found too */
    memcpy(bad, raw, len);
    put_le32(bad + 9 * 20, 3);
    p = tpath(T, "mismatch_last.fvecs");
    CHECK(write_file(p.s, bad, len) == 0);
    EXPECT_OPEN_ERR(p.s, VS_ERR_CORRUPT, "byte 180");

    memcpy(bad, raw, len);
    put_le32(bad, 0);
    p = tpath(T, "dim0.fvecs");
    CHECK(write_file(p.s, bad, len) == 0);
    EXPECT_OPEN_ERR(p.s, VS_ERR_INVALID_ARGUMENT, NULL);

    put_le32(bad, 70000);
    p = tpath(T, "dim70000.fvecs");
    CHECK(write_file(p.s, bad, len) == 0);
    EXPECT_OPEN_ERR(p.s, VS_ERR_INVALID_ARGUMENT, "70000");

    put_le32(bad, (uint32_t)-3);
    p = tpath(T, "negative.fvecs");
    CHECK(write_file(p.s, bad, len) == 0);
    EXPECT_OPEN_ERR(p.s, VS_ERR_CORRUPT, "-3");

    p = tpath(T, "empty.fvecs");
    CHECK(write_file(p.s, "", 0) == 0);
    EXPECT_OPEN_ERR(p.s, VS_ERR_CORRUPT, "empty");
    p = tpath(T, "empty.bvecs");
    CHECK(write_file(p.s, "", 0) == 0);
    EXPECT_OPEN_ERR(p.s, VS_ERR_CORRUPT, "empty");

    /* the same 200 bytes read as bvecs: dim 4 -> 8-byte rows, row 1's "dim" is a float's bits */
    p = tpath(T, "asbytes.bvecs");
    CHECK(write_file(p.s, raw, len) == 0);
    EXPECT_OPEN_ERR(p.s, VS_ERR_CORRUPT, "row 1 at byte 8");

    /* ivecs truncated */
    int32_t ids[6] = {1, 2, 3, 4, 5, 6};
    p = tpath(T, "ids.ivecs");
    CHECK(vs_vecio_write_ivecs(p.s, 2, 3, ids, err) == VS_OK);
    free(raw);
    raw = slurp(p.s, &len);
    CHECK(raw != NULL && len == 32);
    if (raw != NULL) {
        CHECK(write_file(p.s, raw, 30) == 0);
        EXPECT_OPEN_ERR(p.s, VS_ERR_CORRUPT, "truncated at byte 16: row 1 needs 16 bytes, 14 remain");
    }

    /* one million rows validate quickly (reported, not asserted: timing never fails a test) */
    size_t n = 1000000;
    uint8_t *big = malloc(n * 5);
    for (size_t i = 0; i < n; i++) {
        put_le32(big + 5 * i, 1);
        big[5 * i + 4] = (uint8_t)i;
    }
    p = tpath(T, "million.bvecs");
    CHECK(write_file(p.s, big, n * 5) == 0);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    vs_vecfile_t *vf = NULL;
    CHECKF(vs_vecfile_open(p.s, &vf, err) == VS_OK, "%s", err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("  open+validate of 1M bvecs rows: %.2f ms\n",
           (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
    if (vf != NULL) {
        CHECK(vs_vecfile_count(vf) == n && vs_vecfile_dim(vf) == 1);
        float last = 0;
        int32_t lasti = 0;
        CHECK(vs_vecfile_read_f32(vf, n - 1, 1, &last, err) == VS_OK && last == (float)((n - 1) & 0xff));
        CHECK(vs_vecfile_read_i32(vf, n - 2, 1, &lasti, err) == VS_OK && lasti == (int32_t)((n - 2) & 0xff));
        vs_vecfile_close(vf);
    }
    put_le32(big + 5 * (n - 1), 2);
    CHECK(write_file(p.s, big, n * 5) == 0);
    EXPECT_OPEN_ERR(p.s, VS_ERR_CORRUPT, "row 999999 at byte 4999995");
    free(big);
    free(bad);
    free(raw);
    cleanup(T);
}

static void test_corrupt_npy(void)
{
    static const char *T = "vecio_corrupt_npy";
    char err[VS_ERR_LEN];
    float data[12];
    for (int i = 0; i < 12; i++)
        data[i] = (float)i * 0.5f;
    pathbuf good = tpath(T, "good.npy");
    CHECK(vs_vecio_write_npy(good.s, VS_DTYPE_F32, 4, 3, data, err) == VS_OK);
    size_t len = 0;
    unsigned char *raw = slurp(good.s, &len);
    CHECK(raw != NULL && len > 10);
    if (raw == NULL || len <= 10) {
        free(raw);
        return;
    }
    size_t off = 10 + ((size_t)raw[8] | (size_t)raw[9] << 8); /* 128: the dict is 60 bytes */
    CHECK(off == 128 && len == off + 48);
    char want[128];
    unsigned char *buf = malloc(len + 16);

    memcpy(buf, raw, len);
    buf[1] = 'X';
    pathbuf p = tpath(T, "magic.npy");
    CHECK(write_file(p.s, buf, len) == 0);
    EXPECT_OPEN_ERR(p.s, VS_ERR_CORRUPT, "magic");

    p = tpath(T, "short.npy");
    CHECK(write_file(p.s, raw, 7) == 0);
    EXPECT_OPEN_ERR(p.s, VS_ERR_CORRUPT, NULL);

    p = tpath(T, "hdrcut.npy");
    CHECK(write_file(p.s, raw, 40) == 0);
    EXPECT_OPEN_ERR(p.s, VS_ERR_CORRUPT, "truncated at byte 10");

    p = tpath(T, "truncated.npy");
    CHECK(write_file(p.s, raw, len - 3) == 0);
    EXPECT_OPEN_ERR(p.s, VS_ERR_CORRUPT, "truncated");
    snprintf(want, sizeof want, "data starting at byte %zu needs 48 bytes, 45 remain", off);
    EXPECT_OPEN_ERR(p.s, VS_ERR_CORRUPT, want);

    memcpy(buf, raw, len);
    memcpy(buf + len, "\0\0\0\0", 4);
    p = tpath(T, "trailing.npy");
    CHECK(write_file(p.s, buf, len + 4) == 0);
    EXPECT_OPEN_ERR(p.s, VS_ERR_CORRUPT, "trailing bytes");
    snprintf(want, sizeof want, "data ends at byte %zu", off + 48);
    EXPECT_OPEN_ERR(p.s, VS_ERR_CORRUPT, want);

    memcpy(buf, raw, len);
    buf[6] = 4;
    p = tpath(T, "v4.npy");
    CHECK(write_file(p.s, buf, len) == 0);
    EXPECT_OPEN_ERR(p.s, VS_ERR_UNSUPPORTED, "4.0");

    p = tpath(T, "fortran.npy");
    make_npy(p.s, 1, "{'descr': '<f4', 'fortran_order': True, 'shape': (4, 3), }", 0, data, sizeof data);
    EXPECT_OPEN_ERR(p.s, VS_ERR_UNSUPPORTED, "Fortran");
    p = tpath(T, "bigendian.npy");
    make_npy(p.s, 1, "{'descr': '>f4', 'fortran_order': False, 'shape': (4, 3), }", 0, data, sizeof data);
    EXPECT_OPEN_ERR(p.s, VS_ERR_UNSUPPORTED, "big-endian");
    p = tpath(T, "f8.npy");
    make_npy(p.s, 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }", 0, data, sizeof data);
    EXPECT_OPEN_ERR(p.s, VS_ERR_UNSUPPORTED, "'<f8'");
    p = tpath(T, "structured.npy");
    make_npy(p.s, 1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (12,), }", 0, data,
             sizeof data);
    EXPECT_OPEN_ERR(p.s, VS_ERR_UNSUPPORTED, NULL);
    p = tpath(T, "3d.npy");
    make_npy(p.s, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2, 3), }", 0, data, sizeof data);
    EXPECT_OPEN_ERR(p.s, VS_ERR_UNSUPPORTED, "3 dimensions");
    p = tpath(T, "0d.npy");
    make_npy(p.s, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (), }", 0, data, 4);
    EXPECT_OPEN_ERR(p.s, VS_ERR_UNSUPPORTED, "0 dimensions");
    p = tpath(T, "d0.npy");
    make_npy(p.s, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4, 0), }", 0, NULL, 0);
    EXPECT_OPEN_ERR(p.s, VS_ERR_INVALID_ARGUMENT, NULL);
    p = tpath(T, "d70000.npy");
    make_npy(p.s, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 70000), }", 0, NULL, 0);
    EXPECT_OPEN_ERR(p.s, VS_ERR_INVALID_ARGUMENT, "70000");
    p = tpath(T, "huge.npy");
    make_npy(p.s, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999, 4), }", 0,
             NULL, 0);
    EXPECT_OPEN_ERR(p.s, VS_ERR_CORRUPT, NULL);
    p = tpath(T, "overflow.npy");
    make_npy(p.s, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (9223372036854775807, 4), }", 0, NULL,
             0);
    EXPECT_OPEN_ERR(p.s, VS_ERR_CORRUPT, NULL);
    p = tpath(T, "noshape.npy");
    make_npy(p.s, 1, "{'descr': '<f4', 'fortran_order': False}", 0, data, sizeof data);
    EXPECT_OPEN_ERR(p.s, VS_ERR_CORRUPT, "'shape'");
    p = tpath(T, "dup.npy");
    make_npy(p.s, 1, "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (4, 3)}", 0, data,
             sizeof data);
    EXPECT_OPEN_ERR(p.s, VS_ERR_CORRUPT, "duplicate");
    /* syntax errors name the header byte: the second quote where a colon belongs is at byte 10 + 9 */
    p = tpath(T, "syntax.npy");
    make_npy(p.s, 1, "{'descr' '<f4', 'fortran_order': False, 'shape': (4, 3)}", 0, data, sizeof data);
    EXPECT_OPEN_ERR(p.s, VS_ERR_CORRUPT, "at byte 19");
    p = tpath(T, "unterminated.npy");
    make_npy(p.s, 1, "{'descr': '<f4, 'fortran_order': False, 'shape': (4, 3)", 0, data, sizeof data);
    EXPECT_OPEN_ERR(p.s, VS_ERR_CORRUPT, NULL);
    p = tpath(T, "junk_after.npy");
    make_npy(p.s, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4, 3)} x", 0, data, sizeof data);
    EXPECT_OPEN_ERR(p.s, VS_ERR_CORRUPT, NULL);
    p = tpath(T, "nodict.npy");
    make_npy(p.s, 1, "", 0, NULL, 0);
    EXPECT_OPEN_ERR(p.s, VS_ERR_CORRUPT, NULL);

    /* writer refusals */
    p = tpath(T, "w.npy");
    CHECK(vs_vecio_write_npy(p.s, (vs_vecio_dtype)9, 1, 1, data, err) == VS_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err, p.s) != NULL);
    CHECK(vs_vecio_write_npy(p.s, VS_DTYPE_F32, 1, 0, data, err) == VS_ERR_INVALID_ARGUMENT);
    CHECK(vs_vecio_write_npy(p.s, VS_DTYPE_F32, 1, VS_VECIO_MAX_DIM + 1, data, err) ==
          VS_ERR_INVALID_ARGUMENT);
    CHECK(access(p.s, F_OK) != 0);
    free(buf);
    free(raw);
    cleanup(T);
}

static void test_idx(void)
{
    static const char *T = "vecio_idx";
    char err[VS_ERR_LEN];
    uint8_t px[60];
    float pf[60];
    int32_t pi[60];
    for (int i = 0; i < 60; i++) {
        px[i] = (uint8_t)(i * 37 + 5);
        pf[i] = px[i];
        pi[i] = px[i];
    }
    static const uint32_t img[3] = {5, 4, 3};
    pathbuf p = tpath(T, "imgs-idx3-ubyte");
    make_idx(p.s, 0x08, 3, img, px, 60);
    check_file(p.s, VS_VECIO_IDX, VS_DTYPE_U8, 5, 12, pf, pi);
    static const uint32_t lab[1] = {60};
    p = tpath(T, "labels.idx1");
    make_idx(p.s, 0x08, 1, lab, px, 60);
    check_file(p.s, VS_VECIO_IDX, VS_DTYPE_U8, 60, 1, pf, pi);

    /* gzip, including two concatenated members */
    unsigned char whole[16 + 60];
    size_t wlen = build_idx(whole, 0x08, 3, img, px, 60);
    p = tpath(T, "imgs-idx3-ubyte.gz");
    gz_write(p.s, "wb", whole, wlen);
    check_file(p.s, VS_VECIO_IDX, VS_DTYPE_U8, 5, 12, pf, pi);
    p = tpath(T, "two-idx3-ubyte.gz");
    gz_write(p.s, "wb", whole, 30);
    gz_write(p.s, "ab", whole + 30, wlen - 30);
    check_file(p.s, VS_VECIO_IDX, VS_DTYPE_U8, 5, 12, pf, pi);

    unsigned char buf[16 + 60 + 8];
    memcpy(buf, whole, wlen);
    buf[0] = 1;
    p = tpath(T, "magic-idx3-ubyte");
    CHECK(write_file(p.s, buf, wlen) == 0);
    EXPECT_OPEN_ERR(p.s, VS_ERR_CORRUPT, "magic");
    memcpy(buf, whole, wlen);
    buf[2] = 0x0D;
    p = tpath(T, "float-idx3-ubyte");
    CHECK(write_file(p.s, buf, wlen) == 0);
    EXPECT_OPEN_ERR(p.s, VS_ERR_UNSUPPORTED, "0x0d");
    memcpy(buf, whole, wlen);
    buf[3] = 0;
    p = tpath(T, "nd0-idx3-ubyte");
    CHECK(write_file(p.s, buf, wlen) == 0);
    EXPECT_OPEN_ERR(p.s, VS_ERR_CORRUPT, NULL);
    buf[3] = 5;
    CHECK(write_file(p.s, buf, wlen) == 0);
    EXPECT_OPEN_ERR(p.s, VS_ERR_CORRUPT, NULL);
    p = tpath(T, "hdr-idx3-ubyte");
    CHECK(write_file(p.s, whole, 10) == 0);
    EXPECT_OPEN_ERR(p.s, VS_ERR_CORRUPT, "truncated at byte 4");
    p = tpath(T, "cut-idx3-ubyte");
    CHECK(write_file(p.s, whole, wlen - 1) == 0);
    EXPECT_OPEN_ERR(p.s, VS_ERR_CORRUPT, "data starting at byte 16 needs 60 bytes, 59 remain");
    memcpy(buf, whole, wlen);
    memset(buf + wlen, 0, 8);
    p = tpath(T, "long-idx3-ubyte");
    CHECK(write_file(p.s, buf, wlen + 8) == 0);
    EXPECT_OPEN_ERR(p.s, VS_ERR_CORRUPT, "trailing bytes");
    static const uint32_t zero_dim[3] = {5, 0, 3};
    p = tpath(T, "zero-idx3-ubyte");
    make_idx(p.s, 0x08, 3, zero_dim, NULL, 0);
    EXPECT_OPEN_ERR(p.s, VS_ERR_INVALID_ARGUMENT, NULL);
    static const uint32_t wide[4] = {1, 0xffffffffu, 0xffffffffu, 0};
    p = tpath(T, "wide-idx4-ubyte");
    make_idx(p.s, 0x08, 4, wide, NULL, 0);
    EXPECT_OPEN_ERR(p.s, VS_ERR_INVALID_ARGUMENT, NULL);
    static const uint32_t big[3] = {1, 300, 300};
    p = tpath(T, "big-idx3-ubyte");
    make_idx(p.s, 0x08, 3, big, NULL, 0);
    EXPECT_OPEN_ERR(p.s, VS_ERR_INVALID_ARGUMENT, NULL);

    /* gzip failures */
    p = tpath(T, "x-idx3-ubyte.gz");
    const char *junk = "this is not a gzip stream, just text pretending to be one\n";
    CHECK(write_file(p.s, junk, strlen(junk)) == 0);
    EXPECT_OPEN_ERR(p.s, VS_ERR_CORRUPT, "gzip");

    uint64_t rng = 7;
    size_t n = 200;
    uint8_t *many = malloc(n * 784);
    for (size_t i = 0; i < n * 784; i++)
        many[i] = (uint8_t)(vs_test_rand(&rng) % 16); /* compressible, but not to nothing */
    static const uint32_t mn[3] = {200, 28, 28};
    unsigned char *mw = malloc(16 + n * 784);
    size_t mlen = build_idx(mw, 0x08, 3, mn, many, n * 784);
    p = tpath(T, "cut-idx3-ubyte.gz");
    gz_write(p.s, "wb", mw, mlen);
    size_t glen = 0;
    unsigned char *gz = slurp(p.s, &glen);
    CHECK(gz != NULL && glen > 1000);
    if (gz != NULL) {
        CHECK(write_file(p.s, gz, glen / 2) == 0);
        EXPECT_OPEN_ERR(p.s, VS_ERR_CORRUPT, "truncated gzip");
        CHECK(write_file(p.s, gz, glen - 4) == 0); /* only the size trailer missing */
        EXPECT_OPEN_ERR(p.s, VS_ERR_CORRUPT, "gzip");
        memcpy(gz + glen / 2, "garbage!", 8);
        CHECK(write_file(p.s, gz, glen) == 0);
        EXPECT_OPEN_ERR(p.s, VS_ERR_CORRUPT, NULL);
    }
    free(gz);
    /* a valid gzip of a truncated idx: offsets are in the decompressed stream */
    p = tpath(T, "short-idx3-ubyte.gz");
    gz_write(p.s, "wb", mw, mlen - 100);
    EXPECT_OPEN_ERR(p.s, VS_ERR_CORRUPT, "decompressed");
    p = tpath(T, "empty-idx3-ubyte.gz");
    gz_write(p.s, "wb", "", 0);
    EXPECT_OPEN_ERR(p.s, VS_ERR_CORRUPT, "empty");
    /* gzip is for idx only */
    p = tpath(T, "v.fvecs.gz");
    gz_write(p.s, "wb", mw, 10);
    EXPECT_OPEN_ERR(p.s, VS_ERR_UNSUPPORTED, "gzip");

    vs_vecfile_t *vf = NULL;
    p = tpath(T, "ok-idx3-ubyte.gz");
    gz_write(p.s, "wb", mw, mlen);
    CHECKF(vs_vecfile_open(p.s, &vf, err) == VS_OK, "%s", err);
    if (vf != NULL) {
        CHECK(vs_vecfile_count(vf) == n && vs_vecfile_dim(vf) == 784);
        int32_t *row = malloc(784 * sizeof *row);
        CHECK(vs_vecfile_read_i32(vf, n - 1, 1, row, err) == VS_OK);
        int same = 1;
        for (int j = 0; j < 784; j++)
            same &= row[j] == many[(n - 1) * 784 + (size_t)j];
        CHECK(same);
        free(row);
        vs_vecfile_close(vf);
    }
    free(mw);
    free(many);
    cleanup(T);
}

static void test_open_errors(void)
{
    static const char *T = "vecio_open_errors";
    char err[VS_ERR_LEN];
    pathbuf p = tpath(T, "data.txt");
    CHECK(write_file(p.s, "1 2 3\n", 6) == 0);
    EXPECT_OPEN_ERR(p.s, VS_ERR_UNSUPPORTED, NULL);
    p = tpath(T, "noext");
    EXPECT_OPEN_ERR(p.s, VS_ERR_UNSUPPORTED, NULL);
    p = tpath(T, "missing.fvecs");
    EXPECT_OPEN_ERR(p.s, VS_ERR_NOT_FOUND, "No such file");
    p = tpath(T, "missing-idx3-ubyte.gz");
    EXPECT_OPEN_ERR(p.s, VS_ERR_NOT_FOUND, NULL);
    p = tpath(T, "dir.fvecs");
    CHECK(mkdir(p.s, 0755) == 0);
    EXPECT_OPEN_ERR(p.s, VS_ERR_IO, NULL);

    /* writers: a directory that does not exist, a bad dim, NULL data */
    float v[4] = {1, 2, 3, 4};
    p = tpath(T, "no/such/dir/out.fvecs");
    CHECK(vs_vecio_write_fvecs(p.s, 1, 4, v, err) == VS_ERR_IO);
    CHECKF(strstr(err, p.s) != NULL, "%s", err);
    CHECK(vs_vecio_write_npy(p.s, VS_DTYPE_F32, 1, 4, v, err) == VS_ERR_IO);
    CHECK(strstr(err, p.s) != NULL);
    p = tpath(T, "bad.bvecs");
    uint8_t b[4] = {0};
    CHECK(vs_vecio_write_bvecs(p.s, 1, 0, b, err) == VS_ERR_INVALID_ARGUMENT);
    CHECK(vs_vecio_write_bvecs(p.s, 2, 4, NULL, err) == VS_ERR_INVALID_ARGUMENT);
    CHECK(access(p.s, F_OK) != 0);
    /* writing where path.tmp cannot be renamed over path (path is a directory): IO, tmp removed */
    p = tpath(T, "dir.fvecs");
    CHECK(vs_vecio_write_fvecs(p.s, 1, 4, v, err) == VS_ERR_IO);
    CHECK(strstr(err, p.s) != NULL);
    char tmp[1300];
    snprintf(tmp, sizeof tmp, "%s.tmp", p.s);
    CHECK(access(tmp, F_OK) != 0);
    /* /dev/full makes the final flush fail */
    if (access("/dev/full", W_OK) == 0) {
        /* no way to point path.tmp at /dev/full without a symlink: make one */
        pathbuf full = tpath(T, "full.fvecs");
        snprintf(tmp, sizeof tmp, "%s.tmp", full.s);
        if (symlink("/dev/full", tmp) == 0) {
            CHECK(vs_vecio_write_fvecs(full.s, 1, 4, v, err) == VS_ERR_IO);
            CHECKF(strstr(err, full.s) != NULL, "%s", err);
            CHECK(access(full.s, F_OK) != 0);
            unlink(tmp);
        }
    }
    cleanup(T);
}

/* Fashion-MNIST, checked against a parse of the gzread stream written here. */
static unsigned char *gunzip_file(const char *path, size_t *out_len)
{
    gzFile g = gzopen(path, "rb");
    if (g == NULL)
        return NULL;
    size_t cap = 1 << 20, len = 0;
    unsigned char *buf = malloc(cap);
    for (;;) {
        if (len == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
        int r = gzread(g, buf + len, (unsigned)(cap - len));
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    gzclose(g);
    *out_len = len;
    return buf;
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void check_fmnist_images(const char *path, size_t want_n)
{
    char err[VS_ERR_LEN];
    vs_vecfile_t *vf = NULL;
    vs_status st = vs_vecfile_open(path, &vf, err);
    CHECKF(st == VS_OK, "%s", err);
    if (st != VS_OK)
        return;
    CHECK(vs_vecfile_count(vf) == want_n);
    CHECK(vs_vecfile_dim(vf) == 784);
    CHECK(vs_vecfile_dtype(vf) == VS_DTYPE_U8);
    CHECK(vs_vecfile_format(vf) == VS_VECIO_IDX);

    size_t len = 0;
    unsigned char *raw = gunzip_file(path, &len);
    CHECK(raw != NULL && len == 16 + want_n * 784);
    if (raw != NULL && len == 16 + want_n * 784) {
        CHECK(be32(raw) == 0x00000803 && be32(raw + 4) == want_n && be32(raw + 8) == 28 &&
              be32(raw + 12) == 28);
        float row[784];
        size_t rows_to_check[2] = {0, want_n - 1};
        for (int r = 0; r < 2; r++) {
            size_t i = rows_to_check[r];
            uint64_t want_sum = 0;
            for (size_t j = 0; j < 784; j++)
                want_sum += raw[16 + i * 784 + j];
            CHECK(vs_vecfile_read_f32(vf, i, 1, row, err) == VS_OK);
            double sum = 0;
            for (size_t j = 0; j < 784; j++)
                sum += row[j];
            CHECKF(sum == (double)want_sum, "%s row %zu: sum %.0f, independent parse %llu", path, i, sum,
                   (unsigned long long)want_sum);
            if (i == 0)
                printf("  %s: %zu x 784, first image pixel sum %llu\n", path, want_n,
                       (unsigned long long)want_sum);
        }
    }
    free(raw);
    vs_vecfile_close(vf);
}

static void check_fmnist_labels(const char *path, size_t want_n)
{
    char err[VS_ERR_LEN];
    size_t n = 0;
    uint32_t dim = 0;
    int32_t *lab = NULL;
    vs_status st = vs_vecfile_load_i32(path, &n, &dim, &lab, err);
    CHECKF(st == VS_OK, "%s", err);
    if (st != VS_OK)
        return;
    CHECK(n == want_n && dim == 1);
    size_t per_class[10] = {0};
    int in_range = 1;
    for (size_t i = 0; i < n; i++) {
        if (lab[i] < 0 || lab[i] > 9)
            in_range = 0;
        else
            per_class[lab[i]]++;
    }
    CHECK(in_range);
    for (int c = 0; c < 10; c++) /* Fashion-MNIST is balanced: 6000 (train) / 1000 (test) per class */
        CHECKF(per_class[c] == want_n / 10, "class %d has %zu labels", c, per_class[c]);
    free(lab);
}

static void test_fashion_mnist(void)
{
    const char *dir = "/usr/share/datasets/fashion-mnist";
    char p[512];
    snprintf(p, sizeof p, "%s/train-images-idx3-ubyte.gz", dir);
    if (access(p, R_OK) != 0) {
        printf("skip: fashion-mnist not installed\n");
        return;
    }
    check_fmnist_images(p, 60000);
    snprintf(p, sizeof p, "%s/t10k-images-idx3-ubyte.gz", dir);
    if (access(p, R_OK) == 0)
        check_fmnist_images(p, 10000);
    snprintf(p, sizeof p, "%s/train-labels-idx1-ubyte.gz", dir);
    if (access(p, R_OK) == 0)
        check_fmnist_labels(p, 60000);
    snprintf(p, sizeof p, "%s/t10k-labels-idx1-ubyte.gz", dir);
    if (access(p, R_OK) == 0)
        check_fmnist_labels(p, 10000);
}

/* numpy interop: our writer -> np.load, np.save -> our reader. */
static const char numpy_script[] =
    "import sys\n"
    "import numpy as np\n"
    "if sys.argv[1] == 'sum':\n"
    "    a = np.load(sys.argv[2])\n"
    "    print('%s %s %.6f' % (a.dtype.str, 'x'.join(str(s) for s in a.shape), a.astype(np.float64).sum()))\n"
    "else:\n"
    "    d = sys.argv[2]\n"
    "    np.save(d + '/py_f32.npy', np.arange(35, dtype=np.float32).reshape(5, 7))\n"
    "    np.save(d + '/py_u8.npy', (np.arange(24) * 7 % 256).astype(np.uint8).reshape(4, 6))\n"
    "    np.save(d + '/py_i32.npy', (np.arange(12, dtype=np.int32) - 6) * 100000)\n"
    "    np.save(d + '/py_fortran.npy', np.asfortranarray(np.ones((3, 4), dtype=np.float32)))\n"
    "    np.save(d + '/py_f64.npy', np.ones((2, 2)))\n"
    "    np.save(d + '/py_be.npy', np.ones((2, 2), dtype='>f4'))\n"
    "    print('saved')\n";

static int run_python(const char *cmd, char *out, size_t cap)
{
    FILE *pp = popen(cmd, "r");
    if (pp == NULL)
        return -1;
    size_t len = fread(out, 1, cap - 1, pp);
    out[len] = '\0';
    return pclose(pp);
}

static void test_numpy_interop(void)
{
    static const char *T = "vecio_numpy";
    if (access("/usr/bin/python3", X_OK) != 0 ||
        system("/usr/bin/python3 -c 'import numpy' 2>/dev/null") != 0) {
        printf("skip: python3 with numpy not available\n");
        return;
    }
    char err[VS_ERR_LEN];
    pathbuf script = tpath(T, "interop.py");
    CHECK(write_file(script.s, numpy_script, strlen(numpy_script)) == 0);

    /* ours -> numpy, for each dtype */
    uint64_t rng = 99;
    size_t n = 100;
    uint32_t dim = 17;
    float *fv = malloc(n * dim * sizeof *fv);
    uint8_t *bv = malloc(n * dim);
    int32_t *iv = malloc(n * dim * sizeof *iv);
    int64_t *lv = malloc(n * dim * sizeof *lv); /* item ids beyond int32 */
    double sf = 0, sb = 0, si = 0, sl = 0;
    for (size_t i = 0; i < n * dim; i++) {
        fv[i] = vs_test_randf(&rng) * 10.0f;
        bv[i] = (uint8_t)vs_test_rand(&rng);
        iv[i] = (int32_t)(vs_test_rand(&rng) % 2000001) - 1000000;
        lv[i] = 5000000000ll + (int64_t)(vs_test_rand(&rng) % 1000);
        sf += fv[i];
        sb += bv[i];
        si += iv[i];
        sl += (double)lv[i];
    }
    struct {
        const char *file, *descr;
        vs_vecio_dtype dtype;
        const void *data;
        double sum;
    } cases[4] = {
        {"ours_f32.npy", "<f4", VS_DTYPE_F32, fv, sf},
        {"ours_u8.npy", "|u1", VS_DTYPE_U8, bv, sb},
        {"ours_i32.npy", "<i4", VS_DTYPE_I32, iv, si},
        {"ours_i64.npy", "<i8", VS_DTYPE_I64, lv, sl},
    };
    for (int c = 0; c < 4; c++) {
        pathbuf p = tpath(T, cases[c].file);
        CHECKF(vs_vecio_write_npy(p.s, cases[c].dtype, n, dim, cases[c].data, err) == VS_OK, "%s", err);
        char cmd[3000], out[512];
        snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' sum '%s'", script.s, p.s);
        int rc = run_python(cmd, out, sizeof out);
        CHECKF(rc == 0, "python failed on %s: %s", p.s, out);
        char descr[16] = "", shape[64] = "";
        double py_sum = 0;
        CHECKF(sscanf(out, "%15s %63s %lf", descr, shape, &py_sum) == 3, "python said: %s", out);
        CHECKF(strcmp(descr, cases[c].descr) == 0, "numpy dtype %s, want %s", descr, cases[c].descr);
        CHECKF(strcmp(shape, "100x17") == 0, "numpy shape %s", shape);
        CHECKF(fabs(py_sum - cases[c].sum) <= 1e-6 * (1 + fabs(cases[c].sum)),
               "%s: numpy sum %.6f, ours %.6f", cases[c].file, py_sum, cases[c].sum);
    }
    /* int64 read back exactly; int32 widened; int64 refused where it would be truncated */
    pathbuf p64 = tpath(T, "ours_i64.npy"), p32 = tpath(T, "ours_i32.npy");
    vs_vecfile_t *vf = NULL;
    int64_t *back = malloc(n * dim * sizeof *back);
    int32_t one32[17];
    float onef[17];
    CHECK(vs_vecfile_open(p64.s, &vf, err) == VS_OK && vs_vecfile_dtype(vf) == VS_DTYPE_I64);
    CHECK(vs_vecfile_read_i64(vf, 0, n, back, err) == VS_OK && memcmp(back, lv, n * dim * sizeof *lv) == 0);
    CHECK(vs_vecfile_read_i32(vf, 0, 1, one32, err) == VS_ERR_INVALID_ARGUMENT && strstr(err, "int64"));
    CHECK(vs_vecfile_read_f32(vf, 0, 1, onef, err) == VS_ERR_INVALID_ARGUMENT);
    vs_vecfile_close(vf);
    CHECK(vs_vecfile_open(p32.s, &vf, err) == VS_OK && vs_vecfile_read_i64(vf, 0, n, back, err) == VS_OK);
    for (size_t i = 0; i < n * dim; i++)
        CHECK(back[i] == iv[i]);
    vs_vecfile_close(vf);
    free(back);
    free(fv);
    free(bv);
    free(iv);
    free(lv);

    /* numpy -> ours */
    char dir[1100], cmd[3000], out[512];
    snprintf(dir, sizeof dir, "%s", vs_test_tmpdir(T));
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' save '%s'", script.s, dir);
    CHECKF(run_python(cmd, out, sizeof out) == 0, "python failed: %s", out);

    float want_f[35];
    for (int i = 0; i < 35; i++)
        want_f[i] = (float)i;
    pathbuf p = tpath(T, "py_f32.npy");
    check_file(p.s, VS_VECIO_NPY, VS_DTYPE_F32, 5, 7, want_f, NULL);

    float uf[24];
    int32_t ui[24];
    for (int i = 0; i < 24; i++) {
        ui[i] = i * 7 % 256;
        uf[i] = (float)ui[i];
    }
    p = tpath(T, "py_u8.npy");
    check_file(p.s, VS_VECIO_NPY, VS_DTYPE_U8, 4, 6, uf, ui);

    float itf[12];
    int32_t iti[12];
    for (int i = 0; i < 12; i++) {
        iti[i] = (i - 6) * 100000;
        itf[i] = (float)iti[i];
    }
    p = tpath(T, "py_i32.npy");
    check_file(p.s, VS_VECIO_NPY, VS_DTYPE_I32, 12, 1, itf, iti);

    p = tpath(T, "py_fortran.npy");
    EXPECT_OPEN_ERR(p.s, VS_ERR_UNSUPPORTED, NULL);
    p = tpath(T, "py_f64.npy");
    EXPECT_OPEN_ERR(p.s, VS_ERR_UNSUPPORTED, "<f8");
    p = tpath(T, "py_be.npy");
    EXPECT_OPEN_ERR(p.s, VS_ERR_UNSUPPORTED, ">f4");
    cleanup(T);
}

int main(void)
{
    RUN(test_roundtrip);
    RUN(test_npy_header_variants);
    RUN(test_corrupt_vecs);
    RUN(test_corrupt_npy);
    RUN(test_idx);
    RUN(test_open_errors);
    RUN(test_fashion_mnist);
    RUN(test_numpy_interop);
    return vs_test_finish();
}
