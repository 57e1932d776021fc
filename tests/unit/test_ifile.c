/* test_ifile: unit tests of shard/index/ifile: round trips (empty, tiny, large and streamed sections,
 * 64-byte alignment, header fields); one flipped byte in the header, the section table and each section
 * is refused naming that part, and a small file is refused for a flip at EVERY byte and a truncation at
 * EVERY length; files forged with valid CRCs check each structural rule (the test re-encodes the layout
 * from ifile.h on its own); the writer's refusals, atomic commit by rename, abort, and an open file
 * surviving its replacement. */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/crc32c.h"
#include "shard/index/ifile.h"
#include "tests/testlib.h"

typedef vs_test_pathbuf_t pathbuf;
#define tpath vs_test_pathcopy
#define cleanup vs_test_cleanup

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

#define write_file vs_test_write_file
#define slurp vs_test_read_file

static void fill_random(unsigned char *p, size_t n, uint64_t *rng)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)vs_test_rand(rng);
}

/* Independent little-endian codec of the layout documented in ifile.h. */
static uint32_t rd32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t rd64(const unsigned char *p)
{
    return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

static void wr32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void wr64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void fix_header_crc(unsigned char *b)
{
    wr32(b + 508, 0);
    wr32(b + 508, vs_crc32c(0, b, 512));
}

static uint64_t table_off_of(const unsigned char *b)
{
    return rd64(b + 48);
}

static uint32_t n_sections_of(const unsigned char *b)
{
    return rd32(b + 28);
}

static unsigned char *entry_of(unsigned char *b, uint32_t i)
{
    return b + table_off_of(b) + 64u * i;
}

static void fix_table_crc(unsigned char *b)
{
    uint32_t n = n_sections_of(b);
    unsigned char *t = b + table_off_of(b);
    wr32(t + 64u * n, vs_crc32c(0, t, 64u * n));
}

/* Opens path expecting status want and a message containing path and needle (NULL = any). */
static void check_open_fails(const char *what, const char *path, vs_status want, const char *needle)
{
    char err[VS_ERR_LEN] = "";
    vs_ifile_t *f = NULL;
    vs_status st = vs_ifile_open(path, &f, err);
    CHECKF(st == want, "%s: status %s, want %s (%s)", what, vs_status_name(st), vs_status_name(want), err);
    CHECKF(f == NULL, "%s: *out set on failure", what);
    if (st != VS_OK) {
        CHECKF(strstr(err, path) != NULL, "%s: message does not name the file: %s", what, err);
        if (needle != NULL)
            CHECKF(strstr(err, needle) != NULL, "%s: message lacks \"%s\": %s", what, needle, err);
    }
    vs_ifile_close(f);
}

/* Writes buf with one change to path and checks the open. */
static void check_variant(const char *what, const char *path, const unsigned char *buf, size_t len,
                          vs_status want, const char *needle)
{
    CHECKF(write_file(path, buf, len) == 0, "%s: cannot write %s", what, path);
    check_open_fails(what, path, want, needle);
}

/* ---------------------------------------------------------------------------------------------------
 * The sample file: sections "empty" (0 bytes), "one" (1), "big" (100000 random), "ivf.codes" (streamed:
 * many small appends, one append larger than the writer's buffer, more small appends).
 * ------------------------------------------------------------------------------------------------- */

typedef struct sample {
    unsigned char one;
    unsigned char *big;
    size_t big_len;
    unsigned char *streamed;
    size_t streamed_len;
    vs_ifile_header_t hdr;
} sample_t;

static const char *const sample_tags[4] = {"empty", "one", "big", "ivf.codes"};

static void sample_free(sample_t *s)
{
    free(s->big);
    free(s->streamed);
}

static int write_sample(const char *path, sample_t *s)
{
    char err[VS_ERR_LEN];
    uint64_t rng = 12345;
    memset(s, 0, sizeof *s);
    s->one = 0xA5;
    s->big_len = 100000;
    s->big = malloc(s->big_len);
    fill_random(s->big, s->big_len, &rng);
    s->streamed_len = 900000;
    s->streamed = malloc(s->streamed_len);
    fill_random(s->streamed, s->streamed_len, &rng);

    if (vs_ifile_header_init(&s->hdr, VS_INDEX_IVF, VS_METRIC_IP, 128, "IVF1024,PQ16x8",
                             "text-embed-3@2024-06", err) != VS_OK) {
        fprintf(stderr, "header_init: %s\n", err);
        return -1;
    }
    s->hdr.n_vectors = 123456789012ull;
    s->hdr.build_time_unix = 1700000000ull;
    for (int i = 0; i < 128; i++)
        s->hdr.params[i] = (uint8_t)(i * 7 + 1);

    vs_ifile_writer_t *w = NULL;
    vs_status st = vs_ifile_writer_open(path, &w, err);
    if (st == VS_OK)
        st = vs_ifile_writer_add_section(w, "empty", NULL, 0, err);
    if (st == VS_OK)
        st = vs_ifile_writer_add_section(w, "one", &s->one, 1, err);
    if (st == VS_OK)
        st = vs_ifile_writer_add_section(w, "big", s->big, s->big_len, err);
    if (st == VS_OK)
        st = vs_ifile_writer_begin_section(w, "ivf.codes", err);
    size_t pos = 0;
    while (st == VS_OK && pos < s->streamed_len) {
        size_t n = (size_t)(vs_test_rand(&rng) % 300);
        if (pos >= 200000 && pos < 600000)
            n = 400000; /* one append bigger than the 256 KiB buffer */
        if (n > s->streamed_len - pos)
            n = s->streamed_len - pos;
        st = vs_ifile_writer_append(w, s->streamed + pos, n, err);
        pos += n;
    }
    if (st == VS_OK)
        st = vs_ifile_writer_end_section(w, err);
    if (st == VS_OK) {
        st = vs_ifile_writer_commit(w, &s->hdr, err);
        w = NULL;
    }
    vs_ifile_writer_abort(w);
    if (st != VS_OK) {
        fprintf(stderr, "write_sample: %s\n", err);
        return -1;
    }
    return 0;
}

static void test_round_trip(void)
{
    const char *tc = "ifile_round_trip";
    pathbuf p = tpath(tc, "x.vsi");
    sample_t s;
    CHECK(write_sample(p.s, &s) == 0);
    pathbuf tmp = tpath(tc, "x.vsi.tmp");
    CHECK(!exists(tmp.s));

    char err[VS_ERR_LEN];
    vs_ifile_t *f = NULL;
    vs_status st = vs_ifile_open(p.s, &f, err);
    CHECKF(st == VS_OK, "open: %s", err);
    if (st != VS_OK) {
        sample_free(&s);
        return;
    }
    const vs_ifile_header_t *h = vs_ifile_header(f);
    CHECK(h->index_type == VS_INDEX_IVF);
    CHECK(h->metric == VS_METRIC_IP);
    CHECK(h->dim == 128);
    CHECK(h->n_vectors == 123456789012ull);
    CHECK(h->build_time_unix == 1700000000ull);
    CHECK(strcmp(h->factory, "IVF1024,PQ16x8") == 0);
    CHECK(strcmp(h->model_version, "text-embed-3@2024-06") == 0);
    CHECK(memcmp(h->params, s.hdr.params, sizeof h->params) == 0);

    const void *data[4];
    size_t len[4];
    for (int i = 0; i < 4; i++) {
        st = vs_ifile_section(f, sample_tags[i], &data[i], &len[i], err);
        CHECKF(st == VS_OK, "section %s: %s", sample_tags[i], err);
        if (st != VS_OK)
            data[i] = NULL, len[i] = 0;
        CHECKF(data[i] != NULL && ((uintptr_t)data[i] & 63u) == 0, "section %s at %p is not 64-aligned",
               sample_tags[i], data[i]);
    }
    CHECK(len[0] == 0);
    CHECK(len[1] == 1 && data[1] != NULL && *(const unsigned char *)data[1] == 0xA5);
    CHECK(len[2] == s.big_len && data[2] != NULL && memcmp(data[2], s.big, s.big_len) == 0);
    CHECK(len[3] == s.streamed_len && data[3] != NULL && memcmp(data[3], s.streamed, s.streamed_len) == 0);

    CHECK(vs_ifile_section_count(f) == 4);
    for (size_t i = 0; i < 4; i++) {
        const char *tag = NULL;
        const void *d = NULL;
        size_t n = 99;
        CHECK(vs_ifile_section_at(f, i, &tag, &d, &n, err) == VS_OK);
        CHECK(tag != NULL && strcmp(tag, sample_tags[i]) == 0 && d == data[i] && n == len[i]);
    }
    const char *tag = "untouched";
    CHECK(vs_ifile_section_at(f, 4, &tag, &data[0], &len[0], err) == VS_ERR_OUT_OF_RANGE);
    CHECK(strcmp(tag, "untouched") == 0);

    const void *nd = (const void *)&st;
    size_t nl = 77;
    st = vs_ifile_section(f, "pq.codebook", &nd, &nl, err);
    CHECK(st == VS_ERR_NOT_FOUND);
    CHECKF(strstr(err, "'pq.codebook'") != NULL && strstr(err, p.s) != NULL, "NOT_FOUND message: %s", err);
    CHECK(nd == (const void *)&st && nl == 77);

    /* The layout as documented: size, placement and alignment. */
    size_t flen = 0;
    unsigned char *b = slurp(p.s, &flen);
    CHECK(b != NULL && vs_ifile_mapped_bytes(f) == flen);
    if (b != NULL) {
        CHECK(memcmp(b, "VSHIDX01", 8) == 0 && rd32(b + 8) == 1 && rd32(b + 12) == 512);
        CHECK(rd32(b + 16) == VS_INDEX_IVF && rd32(b + 20) == VS_METRIC_IP && rd32(b + 24) == 128);
        CHECK(n_sections_of(b) == 4);
        uint64_t toff = table_off_of(b);
        CHECK(toff % 64 == 0 && toff + 5 * 64 == flen);
        CHECK(memcmp(entry_of(b, 2), "big\0\0\0\0\0\0\0\0\0\0\0\0\0", 16) == 0);
        CHECK(rd64(entry_of(b, 2) + 24) == s.big_len);
        CHECK(rd32(entry_of(b, 2) + 32) == vs_crc32c(0, s.big, s.big_len));
        free(b);
    }
    vs_ifile_close(f);
    vs_ifile_close(NULL);
    sample_free(&s);
    cleanup(tc);
}

/* One flipped byte in the header, the table and each section of the sample file. */
static void test_flipped_bytes(void)
{
    const char *tc = "ifile_flips";
    pathbuf p = tpath(tc, "x.vsi"), q = tpath(tc, "bad.vsi");
    sample_t s;
    CHECK(write_sample(p.s, &s) == 0);
    size_t len = 0;
    unsigned char *b = slurp(p.s, &len);
    CHECK(b != NULL);
    if (b == NULL) {
        sample_free(&s);
        return;
    }
    unsigned char *c = malloc(len);
    const size_t header_bytes[] = {13, 24, 33, 47, 60, 130, 300, 400, 507, 509};
    for (size_t i = 0; i < sizeof header_bytes / sizeof header_bytes[0]; i++) {
        memcpy(c, b, len);
        c[header_bytes[i]] ^= 0x10;
        char what[64];
        snprintf(what, sizeof what, "header byte %zu", header_bytes[i]);
        check_variant(what, q.s, c, len, VS_ERR_CORRUPT, "header fails its CRC32C check");
    }
    uint64_t toff = table_off_of(b);
    const size_t table_bytes[] = {0,  3,  16,          20,         24,     32,        36,
                                  40, 63, 64 * 2 + 17, 64 * 3 + 9, 64 * 4, 64 * 4 + 3};
    for (size_t i = 0; i < sizeof table_bytes / sizeof table_bytes[0]; i++) {
        memcpy(c, b, len);
        c[toff + table_bytes[i]] ^= 0x01;
        char what[64];
        snprintf(what, sizeof what, "table byte %zu", table_bytes[i]);
        check_variant(what, q.s, c, len, VS_ERR_CORRUPT, "section table");
    }
    for (uint32_t i = 0; i < 4; i++) {
        const unsigned char *e = entry_of(b, i);
        uint64_t off = rd64(e + 16), slen = rd64(e + 24);
        if (slen == 0)
            continue;
        const uint64_t picks[3] = {off, off + slen / 2, off + slen - 1};
        for (int k = 0; k < 3; k++) {
            memcpy(c, b, len);
            c[picks[k]] ^= 0x80;
            char what[64], needle[1400];
            snprintf(what, sizeof what, "section %s byte %llu", sample_tags[i], (unsigned long long)picks[k]);
            snprintf(needle, sizeof needle, "%s: section '%s' fails its CRC32C check (stored 0x", q.s,
                     sample_tags[i]);
            check_variant(what, q.s, c, len, VS_ERR_CORRUPT, needle);
        }
    }
    /* Padding after "one" (1 byte, then 63 zero bytes before "big") */
    memcpy(c, b, len);
    c[rd64(entry_of(b, 1) + 16) + 5] = 1;
    check_variant("padding before big", q.s, c, len, VS_ERR_CORRUPT, "padding byte");
    CHECKF(write_file(q.s, b, len) == 0, "restore");
    vs_ifile_t *f = NULL;
    char err[VS_ERR_LEN];
    CHECKF(vs_ifile_open(q.s, &f, err) == VS_OK, "the unmodified copy opens: %s", err);
    vs_ifile_close(f);
    free(c);
    free(b);
    sample_free(&s);
    cleanup(tc);
}

static void test_truncated_and_trailing(void)
{
    const char *tc = "ifile_trunc";
    pathbuf p = tpath(tc, "x.vsi"), q = tpath(tc, "cut.vsi");
    sample_t s;
    CHECK(write_sample(p.s, &s) == 0);
    size_t len = 0;
    unsigned char *b = slurp(p.s, &len);
    CHECK(b != NULL);
    if (b == NULL) {
        sample_free(&s);
        return;
    }
    uint64_t toff = table_off_of(b);
    uint64_t big_off = rd64(entry_of(b, 2) + 16);
    const size_t cuts[] = {0,
                           1,
                           7,
                           8,
                           100,
                           511,
                           512,
                           513,
                           (size_t)big_off + 5000,
                           (size_t)toff - 1,
                           (size_t)toff,
                           (size_t)toff + 1,
                           (size_t)toff + 64,
                           len - 64,
                           len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        char what[64];
        snprintf(what, sizeof what, "truncated to %zu of %zu", cuts[i], len);
        check_variant(what, q.s, b, cuts[i], VS_ERR_CORRUPT, "truncated: file is");
    }
    char needle[128];
    snprintf(needle, sizeof needle, "truncated: file is %llu bytes, the section table needs %zu",
             (unsigned long long)toff, len);
    check_variant("truncated at the table", q.s, b, (size_t)toff, VS_ERR_CORRUPT, needle);
    unsigned char *c = malloc(len + 64);
    memcpy(c, b, len);
    c[len] = 0;
    check_variant("one trailing byte", q.s, c, len + 1, VS_ERR_CORRUPT, "trailing");
    memset(c + len, 0, 64);
    check_variant("64 trailing bytes", q.s, c, len + 64, VS_ERR_CORRUPT, "trailing");
    free(c);
    free(b);
    sample_free(&s);
    cleanup(tc);
}

static void test_magic_and_version(void)
{
    const char *tc = "ifile_magic";
    pathbuf p = tpath(tc, "x.vsi"), q = tpath(tc, "v.vsi");
    sample_t s;
    CHECK(write_sample(p.s, &s) == 0);
    size_t len = 0;
    unsigned char *b = slurp(p.s, &len);
    CHECK(b != NULL);
    if (b == NULL) {
        sample_free(&s);
        return;
    }
    unsigned char *c = malloc(len);
    memcpy(c, b, len);
    c[3] = 'X';
    check_variant("bad magic", q.s, c, len, VS_ERR_CORRUPT, "not a vecshard index file");
    check_variant("text file", q.s, (const unsigned char *)"hello\n", 6, VS_ERR_CORRUPT,
                  "not a vecshard index file");
    memcpy(c, b, len);
    wr32(c + 8, 2);
    check_variant("version 2, stale CRC", q.s, c, len, VS_ERR_UNSUPPORTED, "version 2");
    fix_header_crc(c);
    check_variant("version 2", q.s, c, len, VS_ERR_UNSUPPORTED, "version 2");
    wr32(c + 8, 0);
    fix_header_crc(c);
    check_variant("version 0", q.s, c, len, VS_ERR_CORRUPT, "version 0");

    pathbuf missing = tpath(tc, "missing.vsi");
    check_open_fails("missing file", missing.s, VS_ERR_NOT_FOUND, NULL);
    pathbuf dir = tpath(tc, "adir");
    CHECK(mkdir(dir.s, 0755) == 0);
    check_open_fails("a directory", dir.s, VS_ERR_IO, NULL);
    char err[VS_ERR_LEN];
    vs_ifile_t *f = NULL;
    CHECK(vs_ifile_open(NULL, &f, err) == VS_ERR_INVALID_ARGUMENT);
    CHECK(vs_ifile_open(p.s, NULL, err) == VS_ERR_INVALID_ARGUMENT);
    free(c);
    free(b);
    sample_free(&s);
    cleanup(tc);
}

/* Files forged with correct CRCs: every structural rule on its own. */
static void test_forged_structure(void)
{
    const char *tc = "ifile_forged";
    pathbuf p = tpath(tc, "x.vsi"), q = tpath(tc, "f.vsi");
    sample_t s;
    CHECK(write_sample(p.s, &s) == 0);
    size_t len = 0;
    unsigned char *b = slurp(p.s, &len);
    CHECK(b != NULL);
    if (b == NULL) {
        sample_free(&s);
        return;
    }
    unsigned char *c = malloc(len + 4096);

#define HDR_CASE(what, edit, want, needle)                                                                   \
    do {                                                                                                     \
        memcpy(c, b, len);                                                                                   \
        edit;                                                                                                \
        fix_header_crc(c);                                                                                   \
        check_variant(what, q.s, c, len, want, needle);                                                      \
    } while (0)
#define TAB_CASE(what, edit, want, needle)                                                                   \
    do {                                                                                                     \
        memcpy(c, b, len);                                                                                   \
        edit;                                                                                                \
        fix_table_crc(c);                                                                                    \
        check_variant(what, q.s, c, len, want, needle);                                                      \
    } while (0)

    HDR_CASE("header_size", wr32(c + 12, 1024), VS_ERR_CORRUPT, "header_size");
    HDR_CASE("index type", wr32(c + 16, 99), VS_ERR_UNSUPPORTED, "index type 99");
    HDR_CASE("index type 0", wr32(c + 16, 0), VS_ERR_UNSUPPORTED, "index type 0");
    HDR_CASE("metric", wr32(c + 20, 7), VS_ERR_UNSUPPORTED, "metric 7");
    HDR_CASE("dim 0", wr32(c + 24, 0), VS_ERR_CORRUPT, "dim 0");
    HDR_CASE("dim 65537", wr32(c + 24, 65537), VS_ERR_CORRUPT, "dim 65537");
    HDR_CASE("65 sections", wr32(c + 28, 65), VS_ERR_CORRUPT, "65 sections");
    HDR_CASE("3 sections", wr32(c + 28, 3), VS_ERR_CORRUPT, "trailing");
    HDR_CASE("5 sections", wr32(c + 28, 5), VS_ERR_CORRUPT, "truncated");
    HDR_CASE("factory unterminated", memset(c + 56, 'A', 64), VS_ERR_CORRUPT, "factory");
    HDR_CASE("factory padding", c[56 + 60] = 'x', VS_ERR_CORRUPT, "factory");
    HDR_CASE("model unterminated", memset(c + 120, 'm', 128), VS_ERR_CORRUPT, "model_version");
    HDR_CASE("model padding", c[120 + 127] = 1, VS_ERR_CORRUPT, "model_version");
    HDR_CASE("reserved", c[450] = 1, VS_ERR_CORRUPT, "reserved byte 450");
    HDR_CASE("table misaligned", wr64(c + 48, table_off_of(b) + 8), VS_ERR_CORRUPT, "section table offset");
    HDR_CASE("table inside header", wr64(c + 48, 256), VS_ERR_CORRUPT, "section table offset");
    HDR_CASE("table past the end", wr64(c + 48, table_off_of(b) + 4096), VS_ERR_CORRUPT, "truncated");
    HDR_CASE("table at 2^64-64", wr64(c + 48, UINT64_MAX - 63), VS_ERR_CORRUPT, "truncated");
    HDR_CASE("table earlier", wr64(c + 48, table_off_of(b) - 64), VS_ERR_CORRUPT, "trailing");

    TAB_CASE("tag upper case", entry_of(c, 1)[0] = 'O', VS_ERR_CORRUPT, "invalid tag");
    TAB_CASE("tag empty", memset(entry_of(c, 1), 0, 16), VS_ERR_CORRUPT, "invalid tag");
    TAB_CASE("tag 16 chars", memset(entry_of(c, 1), 'a', 16), VS_ERR_CORRUPT, "invalid tag");
    TAB_CASE("tag junk after NUL", entry_of(c, 1)[10] = 'z', VS_ERR_CORRUPT, "invalid tag");
    TAB_CASE("duplicate tag", (memset(entry_of(c, 3), 0, 16), memcpy(entry_of(c, 3), "big", 3)),
             VS_ERR_CORRUPT, "'big' appears twice");
    TAB_CASE("flags", wr32(entry_of(c, 2) + 36, 1), VS_ERR_UNSUPPORTED, "flags");
    TAB_CASE("entry reserved", entry_of(c, 2)[50] = 3, VS_ERR_CORRUPT, "reserved byte");
    TAB_CASE("misaligned", wr64(entry_of(c, 2) + 16, rd64(entry_of(b, 2) + 16) + 8), VS_ERR_CORRUPT,
             "not 64-byte aligned");
    TAB_CASE("inside header", wr64(entry_of(c, 0) + 16, 448), VS_ERR_CORRUPT, "overlaps the header");
    TAB_CASE("overlap", wr64(entry_of(c, 3) + 16, rd64(entry_of(b, 2) + 16) + 64), VS_ERR_CORRUPT,
             "overlaps section 'big'");
    TAB_CASE("out of order", wr64(entry_of(c, 1) + 16, rd64(entry_of(b, 3) + 16)), VS_ERR_CORRUPT,
             "overlaps");
    TAB_CASE("length into table", wr64(entry_of(c, 3) + 24, rd64(entry_of(b, 3) + 24) + 64), VS_ERR_CORRUPT,
             "runs past the section table");
    TAB_CASE("length 2^64-1", wr64(entry_of(c, 3) + 24, UINT64_MAX), VS_ERR_CORRUPT, "runs past");
    TAB_CASE("offset 2^64-64", wr64(entry_of(c, 3) + 16, UINT64_MAX - 63), VS_ERR_CORRUPT, "runs past");
    TAB_CASE("shorter section", wr64(entry_of(c, 2) + 24, rd64(entry_of(b, 2) + 24) - 1), VS_ERR_CORRUPT,
             NULL); /* the cut-off byte is now nonzero padding, or the CRC differs */
    TAB_CASE("stored crc", wr32(entry_of(c, 3) + 32, 0), VS_ERR_CORRUPT,
             "section 'ivf.codes' fails its CRC32C");
    TAB_CASE("table padding", entry_of(c, 4)[40] = 1, VS_ERR_CORRUPT, "section table: nonzero padding");

    /* A gap the writer would not leave, zero-filled, is valid; nonzero, it is refused. Build it by moving
     * the table 64 bytes later. */
    {
        uint64_t toff = table_off_of(b);
        memcpy(c, b, (size_t)toff);
        memset(c + toff, 0, 64);
        memcpy(c + toff + 64, b + toff, len - (size_t)toff);
        wr64(c + 48, toff + 64);
        fix_header_crc(c);
        CHECK(write_file(q.s, c, len + 64) == 0);
        char err[VS_ERR_LEN];
        vs_ifile_t *f = NULL;
        CHECKF(vs_ifile_open(q.s, &f, err) == VS_OK, "zero gap before the table: %s", err);
        vs_ifile_close(f);
        c[toff + 10] = 9;
        check_variant("nonzero gap before the table", q.s, c, len + 64, VS_ERR_CORRUPT, "padding byte at");
    }
#undef HDR_CASE
#undef TAB_CASE
    free(c);
    free(b);
    sample_free(&s);
    cleanup(tc);
}

/* A small file: every single-byte change and every truncation is refused, never read out of bounds. */
static void test_exhaustive_small(void)
{
    const char *tc = "ifile_exhaustive";
    pathbuf p = tpath(tc, "s.vsi"), q = tpath(tc, "m.vsi");
    char err[VS_ERR_LEN];
    vs_ifile_header_t h;
    CHECK(vs_ifile_header_init(&h, VS_INDEX_HNSW, VS_METRIC_L2, 3, "HNSW32", "m1", err) == VS_OK);
    unsigned char a[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, cc[100];
    for (int i = 0; i < 100; i++)
        cc[i] = (unsigned char)(i * 3);
    vs_ifile_writer_t *w = NULL;
    CHECK(vs_ifile_writer_open(p.s, &w, err) == VS_OK);
    CHECK(vs_ifile_writer_add_section(w, "a", a, sizeof a, err) == VS_OK);
    CHECK(vs_ifile_writer_add_section(w, "b", NULL, 0, err) == VS_OK);
    CHECK(vs_ifile_writer_add_section(w, "c.c_9", cc, sizeof cc, err) == VS_OK);
    CHECKF(vs_ifile_writer_commit(w, &h, err) == VS_OK, "commit: %s", err);
    size_t len = 0;
    unsigned char *b = slurp(p.s, &len);
    CHECK(b != NULL && len == 512 + 64 + 128 + 4 * 64);
    if (b == NULL)
        return;
    unsigned char *c = malloc(len);
    int bad_status = 0, bad_msg = 0;
    for (size_t i = 0; i < len; i++)
        for (int bit = 0; bit < 8; bit += 7) {
            memcpy(c, b, len);
            c[i] ^= (unsigned char)(1u << bit);
            if (write_file(q.s, c, len) != 0) {
                bad_status++;
                continue;
            }
            vs_ifile_t *f = NULL;
            vs_status st = vs_ifile_open(q.s, &f, err);
            int in_version = i >= 8 && i < 12;
            if (!(st == VS_ERR_CORRUPT || (in_version && st == VS_ERR_UNSUPPORTED))) {
                if (bad_status++ < 5)
                    CHECKF(0, "byte %zu bit %d: status %s (%s)", i, bit, vs_status_name(st), err);
            } else if (strstr(err, q.s) == NULL && bad_msg++ < 5) {
                CHECKF(0, "byte %zu bit %d: message does not name the file: %s", i, bit, err);
            }
            vs_ifile_close(f);
        }
    CHECKF(bad_status == 0 && bad_msg == 0, "%d flips accepted or misreported, %d messages without path",
           bad_status, bad_msg);
    int bad_cut = 0;
    for (size_t cut = 0; cut < len; cut++) {
        if (write_file(q.s, b, cut) != 0) {
            bad_cut++;
            continue;
        }
        vs_ifile_t *f = NULL;
        vs_status st = vs_ifile_open(q.s, &f, err);
        if ((st != VS_ERR_CORRUPT || strstr(err, q.s) == NULL) && bad_cut++ < 5)
            CHECKF(0, "cut at %zu: status %s (%s)", cut, vs_status_name(st), err);
        vs_ifile_close(f);
    }
    CHECKF(bad_cut == 0, "%d truncations misreported", bad_cut);
    free(c);
    free(b);
    cleanup(tc);
}

/* ---------------------------------------------------------------------------------------------------
 * Writer
 * ------------------------------------------------------------------------------------------------- */

static void test_header_init(void)
{
    char err[VS_ERR_LEN];
    vs_ifile_header_t h, before;
    memset(&h, 0x5A, sizeof h);
    before = h;
    char f63[64], f64[65], m127[128], m128[129];
    memset(f63, 'F', 63), f63[63] = 0;
    memset(f64, 'F', 64), f64[64] = 0;
    memset(m127, 'm', 127), m127[127] = 0;
    memset(m128, 'm', 128), m128[128] = 0;
    CHECK(vs_ifile_header_init(&h, VS_INDEX_IVF, VS_METRIC_L2, 8, f64, "", err) == VS_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err, "factory") != NULL);
    CHECK(vs_ifile_header_init(&h, VS_INDEX_IVF, VS_METRIC_L2, 8, "Flat", m128, err) ==
          VS_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err, "model_version") != NULL);
    CHECK(vs_ifile_header_init(&h, VS_INDEX_IVF, VS_METRIC_L2, 0, "Flat", "", err) ==
          VS_ERR_INVALID_ARGUMENT);
    CHECK(vs_ifile_header_init(&h, VS_INDEX_IVF, VS_METRIC_L2, 65537, "Flat", "", err) ==
          VS_ERR_INVALID_ARGUMENT);
    CHECK(vs_ifile_header_init(&h, (vs_index_type)42, VS_METRIC_L2, 8, "Flat", "", err) ==
          VS_ERR_INVALID_ARGUMENT);
    CHECK(vs_ifile_header_init(&h, VS_INDEX_FLAT, (vs_metric)9, 8, "Flat", "", err) ==
          VS_ERR_INVALID_ARGUMENT);
    CHECK(vs_ifile_header_init(&h, VS_INDEX_FLAT, VS_METRIC_L2, 8, NULL, "", err) == VS_ERR_INVALID_ARGUMENT);
    CHECK(memcmp(&h, &before, sizeof h) == 0);
    CHECK(vs_ifile_header_init(&h, VS_INDEX_FLAT, VS_METRIC_COSINE, 65536, f63, m127, err) == VS_OK);
    CHECK(strcmp(h.factory, f63) == 0 && strcmp(h.model_version, m127) == 0 && h.dim == 65536);
    CHECK(h.n_vectors == 0 && h.build_time_unix == 0 && h.params[0] == 0 && h.params[127] == 0);
    CHECK(vs_ifile_header_init(&h, VS_INDEX_FLAT, VS_METRIC_L2, 1, "Flat", NULL, err) == VS_OK);
    CHECK(h.model_version[0] == '\0');
}

static void test_writer_refusals(void)
{
    const char *tc = "ifile_writer";
    pathbuf p = tpath(tc, "w.vsi"), tmp = tpath(tc, "w.vsi.tmp");
    char err[VS_ERR_LEN];
    vs_ifile_header_t h;
    CHECK(vs_ifile_header_init(&h, VS_INDEX_FLAT, VS_METRIC_L2, 4, "Flat", "v1", err) == VS_OK);
    vs_ifile_writer_t *w = NULL;
    CHECK(vs_ifile_writer_open(p.s, &w, err) == VS_OK);
    if (w == NULL)
        return;
    CHECK(exists(tmp.s) && !exists(p.s));

    const char *bad_tags[] = {"", "Upper", "has space", "abcdefghijklmnop", "a/b", "-", "tab\t", "\xc3\xa9"};
    for (size_t i = 0; i < sizeof bad_tags / sizeof bad_tags[0]; i++) {
        vs_status st = vs_ifile_writer_begin_section(w, bad_tags[i], err);
        CHECKF(st == VS_ERR_INVALID_ARGUMENT, "tag \"%s\": %s", bad_tags[i], vs_status_name(st));
        CHECKF(strstr(err, p.s) != NULL, "message names the file: %s", err);
    }
    CHECK(vs_ifile_writer_append(w, "x", 1, err) == VS_ERR_FAILED_PRECONDITION);
    CHECK(vs_ifile_writer_end_section(w, err) == VS_ERR_FAILED_PRECONDITION);
    CHECK(vs_ifile_writer_add_section(w, "abcdefghijklmno", "xyz", 3, err) == VS_OK); /* 15 chars */
    CHECK(vs_ifile_writer_add_section(w, "abcdefghijklmno", "xyz", 3, err) == VS_ERR_ALREADY_EXISTS);
    CHECK(strstr(err, "'abcdefghijklmno'") != NULL);
    CHECK(vs_ifile_writer_add_section(w, "nul.data", NULL, 5, err) == VS_ERR_INVALID_ARGUMENT);
    CHECK(vs_ifile_writer_begin_section(w, "open_one", err) == VS_OK);
    CHECK(vs_ifile_writer_begin_section(w, "another", err) == VS_ERR_FAILED_PRECONDITION);
    CHECK(vs_ifile_writer_add_section(w, "another", "q", 1, err) == VS_ERR_FAILED_PRECONDITION);
    CHECK(vs_ifile_writer_append(w, "12345", 5, err) == VS_OK);
    CHECK(vs_ifile_writer_append(w, NULL, 0, err) == VS_OK);
    CHECK(vs_ifile_writer_end_section(w, err) == VS_OK);
    /* 64 sections in all: 2 so far. */
    for (int i = 2; i < 64; i++) {
        char tag[16];
        snprintf(tag, sizeof tag, "s%d", i);
        CHECKF(vs_ifile_writer_add_section(w, tag, tag, strlen(tag), err) == VS_OK, "%s: %s", tag, err);
    }
    CHECK(vs_ifile_writer_add_section(w, "s64", "z", 1, err) == VS_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err, "64") != NULL);
    CHECK(!exists(p.s));
    CHECKF(vs_ifile_writer_commit(w, &h, err) == VS_OK, "commit: %s", err);
    CHECK(exists(p.s) && !exists(tmp.s));

    vs_ifile_t *f = NULL;
    CHECKF(vs_ifile_open(p.s, &f, err) == VS_OK, "open: %s", err);
    if (f != NULL) {
        CHECK(vs_ifile_section_count(f) == 64);
        const void *d = NULL;
        size_t n = 0;
        CHECK(vs_ifile_section(f, "open_one", &d, &n, err) == VS_OK && n == 5 && memcmp(d, "12345", 5) == 0);
        CHECK(vs_ifile_section(f, "s63", &d, &n, err) == VS_OK && n == 3 && memcmp(d, "s63", 3) == 0);
        CHECK(vs_ifile_section(f, "nul.data", &d, &n, err) == VS_ERR_NOT_FOUND);
        vs_ifile_close(f);
    }

    /* Commit with a section open, or a bad header: refused, tmp removed, the old file untouched. */
    size_t old_len = 0;
    unsigned char *old = slurp(p.s, &old_len);
    CHECK(vs_ifile_writer_open(p.s, &w, err) == VS_OK);
    CHECK(vs_ifile_writer_begin_section(w, "x", err) == VS_OK);
    CHECK(vs_ifile_writer_commit(w, &h, err) == VS_ERR_FAILED_PRECONDITION);
    CHECK(!exists(tmp.s));
    vs_ifile_header_t bad = h;
    bad.dim = 0;
    CHECK(vs_ifile_writer_open(p.s, &w, err) == VS_OK);
    CHECK(vs_ifile_writer_commit(w, &bad, err) == VS_ERR_INVALID_ARGUMENT);
    CHECK(!exists(tmp.s));
    bad = h;
    memset(bad.factory, 'F', sizeof bad.factory);
    CHECK(vs_ifile_writer_open(p.s, &w, err) == VS_OK);
    CHECK(vs_ifile_writer_commit(w, &bad, err) == VS_ERR_INVALID_ARGUMENT);
    CHECK(!exists(tmp.s));
    size_t now_len = 0;
    unsigned char *now = slurp(p.s, &now_len);
    CHECK(old != NULL && now != NULL && old_len == now_len && memcmp(old, now, old_len) == 0);
    free(old);
    free(now);

    /* Cannot create the tmp file. */
    pathbuf nodir = tpath(tc, "no/such/dir.vsi");
    w = NULL;
    CHECK(vs_ifile_writer_open(nodir.s, &w, err) == VS_ERR_IO && w == NULL);
    CHECK(strstr(err, nodir.s) != NULL);
    CHECK(vs_ifile_writer_open(NULL, &w, err) == VS_ERR_INVALID_ARGUMENT);
    CHECK(vs_ifile_writer_open("", &w, err) == VS_ERR_INVALID_ARGUMENT);
    cleanup(tc);
}

static void test_abort_and_atomic_replace(void)
{
    const char *tc = "ifile_atomic";
    pathbuf p = tpath(tc, "a.vsi"), tmp = tpath(tc, "a.vsi.tmp");
    char err[VS_ERR_LEN];
    vs_ifile_header_t h;
    CHECK(vs_ifile_header_init(&h, VS_INDEX_FLAT, VS_METRIC_L2, 2, "Flat", "old", err) == VS_OK);

    vs_ifile_writer_abort(NULL);
    vs_ifile_writer_t *w = NULL;
    CHECK(vs_ifile_writer_open(p.s, &w, err) == VS_OK);
    CHECK(vs_ifile_writer_add_section(w, "data", "old data", 8, err) == VS_OK);
    CHECK(exists(tmp.s) && !exists(p.s));
    vs_ifile_writer_abort(w);
    CHECK(!exists(tmp.s) && !exists(p.s));

    /* A file with no section at all is valid. */
    CHECK(vs_ifile_writer_open(p.s, &w, err) == VS_OK);
    CHECK(vs_ifile_writer_commit(w, &h, err) == VS_OK);
    vs_ifile_t *f = NULL;
    CHECKF(vs_ifile_open(p.s, &f, err) == VS_OK, "empty file: %s", err);
    if (f != NULL) {
        CHECK(vs_ifile_section_count(f) == 0 && vs_ifile_mapped_bytes(f) == 512 + 64);
        vs_ifile_close(f);
    }

    CHECK(vs_ifile_writer_open(p.s, &w, err) == VS_OK);
    CHECK(vs_ifile_writer_add_section(w, "data", "old data", 8, err) == VS_OK);
    CHECK(vs_ifile_writer_commit(w, &h, err) == VS_OK);
    f = NULL;
    CHECKF(vs_ifile_open(p.s, &f, err) == VS_OK, "old: %s", err);
    if (f == NULL)
        return;
    const void *old_d = NULL;
    size_t old_n = 0;
    CHECK(vs_ifile_section(f, "data", &old_d, &old_n, err) == VS_OK && old_n == 8);

    /* While a new version is written, readers still get the old one; after commit the new one, and
     * the old mapping stays intact (the old inode lives on until unmapped). */
    CHECK(vs_ifile_writer_open(p.s, &w, err) == VS_OK);
    CHECK(vs_ifile_writer_add_section(w, "data", "NEW DATA!", 9, err) == VS_OK);
    vs_ifile_t *g = NULL;
    CHECK(vs_ifile_open(p.s, &g, err) == VS_OK && g != NULL &&
          strcmp(vs_ifile_header(g)->model_version, "old") == 0);
    vs_ifile_close(g);
    snprintf(h.model_version, sizeof h.model_version, "new");
    CHECK(vs_ifile_writer_commit(w, &h, err) == VS_OK);
    CHECK(!exists(tmp.s));
    g = NULL;
    CHECK(vs_ifile_open(p.s, &g, err) == VS_OK && g != NULL);
    if (g != NULL) {
        const void *d = NULL;
        size_t n = 0;
        CHECK(strcmp(vs_ifile_header(g)->model_version, "new") == 0);
        CHECK(vs_ifile_section(g, "data", &d, &n, err) == VS_OK && n == 9 && memcmp(d, "NEW DATA!", 9) == 0);
        vs_ifile_close(g);
    }
    CHECK(memcmp(old_d, "old data", 8) == 0);
    CHECK(strcmp(vs_ifile_header(f)->model_version, "old") == 0);
    vs_ifile_close(f);
    cleanup(tc);
}

int main(void)
{
    RUN(test_round_trip);
    RUN(test_flipped_bytes);
    RUN(test_truncated_and_trailing);
    RUN(test_magic_and_version);
    RUN(test_forged_structure);
    RUN(test_exhaustive_small);
    RUN(test_header_init);
    RUN(test_writer_refusals);
    RUN(test_abort_and_atomic_replace);
    return vs_test_finish();
}
