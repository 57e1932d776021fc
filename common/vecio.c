/* vecio.c: opens, validates and reads .fvecs/.ivecs/.bvecs, .npy and MNIST idx vector files, and writes
 * the first four.
 *
 * Design: every file is turned into one description, "count rows of dim elements of esize bytes, the
 * first at `rows`, one every `row_bytes`, elements starting elem_off bytes into a row", over either a
 * read-only private mapping (plain files) or a heap buffer (.gz idx, inflated fully with zlib). All
 * validation happens once in vs_vecfile_open, so the readers are plain copy/convert loops with a range
 * check. Data on disk is little-endian (idx headers are big-endian) and the host is assumed
 * little-endian, which the build checks.
 * Not here: writing idx or gzip, big-endian or Fortran-order npy, dtypes other than f4/u1/i4/i8 (and f8
 * columns, opened only by vs_vecfile_open_column), files whose rows differ in dimension. */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* mmap, fsync, fileno, O_CLOEXEC when built outside CMake */
#endif
#include "common/vecio.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "vecio.c assumes a little-endian host (vector payloads are copied as-is)"
#endif

struct vs_vecfile {
    char *path;
    vs_vecio_format format;
    vs_vecio_dtype dtype;
    size_t count;
    uint32_t dim;
    size_t esize;              /* bytes per element: 8, 4 or 1 */
    size_t row_bytes;          /* distance between consecutive rows */
    size_t elem_off;           /* offset of the first element inside a row (4 for *vecs, else 0) */
    const unsigned char *rows; /* row 0 */
    void *map;                 /* mmap'd file, or NULL */
    size_t map_len;
    unsigned char *heap; /* inflated .gz contents, or NULL */
};

/* ---------------------------------------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------------------------------------- */

static inline uint32_t get_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint32_t get_be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static inline uint16_t get_le16(const unsigned char *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static int mul_overflows(size_t a, size_t b, size_t *out)
{
    if (a != 0 && b > SIZE_MAX / a)
        return 1;
    *out = a * b;
    return 0;
}

static size_t dtype_size(vs_vecio_dtype dtype)
{
    return dtype == VS_DTYPE_U8 ? 1 : dtype == VS_DTYPE_I64 || dtype == VS_DTYPE_F64 ? 8 : 4;
}

static int has_suffix(const char *s, size_t len, const char *suffix)
{
    size_t n = strlen(suffix);
    return len >= n && memcmp(s + len - n, suffix, n) == 0;
}

/* Finds needle within the first len bytes of s. */
static int contains(const char *s, size_t len, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= len; i++)
        if (memcmp(s + i, needle, n) == 0)
            return 1;
    return 0;
}

static vs_status detect_format(const char *path, vs_vecio_format *out_fmt, int *out_gz, char *err)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash != NULL ? slash + 1 : path;
    size_t len = strlen(base);
    int gz = 0;
    if (has_suffix(base, len, ".gz")) {
        gz = 1;
        len -= 3;
    }
    vs_vecio_format fmt;
    if (has_suffix(base, len, ".fvecs"))
        fmt = VS_VECIO_FVECS;
    else if (has_suffix(base, len, ".ivecs"))
        fmt = VS_VECIO_IVECS;
    else if (has_suffix(base, len, ".bvecs"))
        fmt = VS_VECIO_BVECS;
    else if (has_suffix(base, len, ".npy"))
        fmt = VS_VECIO_NPY;
    else if (contains(base, len, "-idx") || contains(base, len, ".idx"))
        fmt = VS_VECIO_IDX;
    else
        return vs_errf(err, VS_ERR_UNSUPPORTED,
                       "%s: unknown vector file type (expected .fvecs, .ivecs, .bvecs, .npy or an idx name)",
                       path);
    if (gz && fmt != VS_VECIO_IDX)
        return vs_errf(err, VS_ERR_UNSUPPORTED, "%s: gzip is supported for idx files only", path);
    *out_fmt = fmt;
    *out_gz = gz;
    return VS_OK;
}

/* Maps the whole file read-only. An empty file is CORRUPT (there is nothing to map or validate). */
static vs_status map_file(const char *path, void **out_map, size_t *out_len, char *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return vs_errf(err, e == ENOENT ? VS_ERR_NOT_FOUND : VS_ERR_IO, "open %s: %s", path, strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return vs_errf(err, VS_ERR_IO, "stat %s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return vs_errf(err, VS_ERR_IO, "%s: not a regular file", path);
    }
    if (st.st_size == 0) {
        close(fd);
        return vs_errf(err, VS_ERR_CORRUPT, "%s: empty file", path);
    }
    if ((uintmax_t)st.st_size > (uintmax_t)SIZE_MAX) {
        close(fd);
        return vs_errf(err, VS_ERR_IO, "%s: file too large to map (%jd bytes)", path, (intmax_t)st.st_size);
    }
    size_t len = (size_t)st.st_size;
    void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (map == MAP_FAILED)
        return vs_errf(err, VS_ERR_IO, "mmap %s (%zu bytes): %s", path, len, strerror(e));
    *out_map = map;
    *out_len = len;
    return VS_OK;
}

/* Inflates a complete gzip stream (one or more members) into a new heap buffer. */
static vs_status gunzip_all(const char *path, const unsigned char *src, size_t src_len, unsigned char **out,
                            size_t *out_len, char *err)
{
    /* The gzip trailer holds the inflated size mod 2^32: a good first guess, bounded by deflate's
     * maximum ratio (~1032:1) so a forged trailer cannot make us allocate gigabytes up front. */
    size_t cap = 1u << 16;
    if (src_len >= 18) {
        size_t hint = get_le32(src + src_len - 4);
        size_t bound = src_len > (SIZE_MAX - 4096) / 1040 ? SIZE_MAX - 4096 : src_len * 1040;
        if (hint > bound)
            hint = bound;
        if (hint > cap)
            cap = hint;
    }
    cap += 1; /* spare byte: a stream that fills the guess exactly still finds room to finish */
    unsigned char *buf = malloc(cap);
    if (buf == NULL)
        return vs_errf(err, VS_ERR_NOMEM, "%s: cannot allocate %zu bytes to inflate", path, cap);

    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) {
        free(buf);
        return vs_errf(err, VS_ERR_NOMEM, "%s: zlib inflateInit2 failed", path);
    }
    size_t in_off = 0, out_off = 0;
    vs_status st = VS_OK;
    for (;;) {
        if (out_off == cap) {
            size_t ncap = cap > SIZE_MAX / 2 ? SIZE_MAX : cap * 2;
            unsigned char *nbuf = ncap > cap ? realloc(buf, ncap) : NULL;
            if (nbuf == NULL) {
                st = vs_errf(err, VS_ERR_NOMEM, "%s: cannot grow inflate buffer past %zu bytes", path, cap);
                break;
            }
            buf = nbuf;
            cap = ncap;
        }
        size_t in_chunk = src_len - in_off < UINT_MAX ? src_len - in_off : UINT_MAX;
        size_t out_chunk = cap - out_off < UINT_MAX ? cap - out_off : UINT_MAX;
        zs.next_in = (Bytef *)(uintptr_t)(src + in_off); /* zlib does not write through next_in */
        zs.avail_in = (uInt)in_chunk;
        zs.next_out = buf + out_off;
        zs.avail_out = (uInt)out_chunk;
        int rc = inflate(&zs, Z_NO_FLUSH);
        in_off += in_chunk - zs.avail_in;
        out_off += out_chunk - zs.avail_out;
        if (rc == Z_STREAM_END) {
            if (in_off == src_len)
                break;
            inflateReset(&zs); /* concatenated gzip members, as gzip(1) accepts */
            continue;
        }
        if (rc == Z_OK)
            continue;
        if (rc == Z_BUF_ERROR && zs.avail_out == 0)
            continue; /* output full: grow and go on */
        if (rc == Z_BUF_ERROR && in_off == src_len) {
            st = vs_errf(err, VS_ERR_CORRUPT,
                         "%s: truncated gzip stream: input ends at compressed byte %zu after %zu bytes "
                         "inflated",
                         path, in_off, out_off);
            break;
        }
        if (rc == Z_MEM_ERROR) {
            st = vs_errf(err, VS_ERR_NOMEM, "%s: zlib out of memory", path);
            break;
        }
        st = vs_errf(err, VS_ERR_CORRUPT, "%s: corrupt gzip at compressed byte %zu: %s", path, in_off,
                     zs.msg != NULL ? zs.msg : "inflate failed");
        break;
    }
    inflateEnd(&zs);
    if (st != VS_OK) {
        free(buf);
        return st;
    }
    *out = buf;
    *out_len = out_off;
    return VS_OK;
}

/* ---------------------------------------------------------------------------------------------------
 * *vecs
 * ------------------------------------------------------------------------------------------------- */

static vs_status parse_vecs(vs_vecfile_t *vf, const unsigned char *b, size_t len, char *err)
{
    const char *path = vf->path;
    size_t esize = vf->format == VS_VECIO_BVECS ? 1 : 4;
    if (len < 4)
        return vs_errf(err, VS_ERR_CORRUPT,
                       "%s: truncated at byte 0: row 0 needs a 4-byte dimension header, %zu remain", path,
                       len);
    uint32_t raw = get_le32(b);
    int32_t d = (int32_t)raw;
    if (d < 0)
        return vs_errf(err, VS_ERR_CORRUPT, "%s: negative dimension %d in row 0 at byte 0", path, (int)d);
    if (d == 0 || (uint32_t)d > VS_VECIO_MAX_DIM)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "%s: dimension %u in row 0 at byte 0 is outside 1..%u",
                       path, (unsigned)d, VS_VECIO_MAX_DIM);
    size_t row_bytes = 4 + (size_t)d * esize; /* d <= 65536: cannot overflow */
    size_t full = len / row_bytes;

    /* Every row header must repeat row 0's. One load and compare per row, so a million rows take a
     * millisecond or so once the pages are in; the kernel is told we read front to back. */
    (void)posix_madvise((void *)(uintptr_t)b, len, POSIX_MADV_SEQUENTIAL);
    size_t bad = full;
    for (size_t i = 1; i < full; i++) {
        if (get_le32(b + i * row_bytes) != raw) {
            bad = i;
            break;
        }
    }
    (void)posix_madvise((void *)(uintptr_t)b, len, POSIX_MADV_NORMAL);
    if (bad < full) {
        size_t off = bad * row_bytes;
        return vs_errf(
            err, VS_ERR_CORRUPT,
            "%s: row %zu at byte %zu has dimension %d, row 0 has %d (per-row dimensions must match)", path,
            bad, off, (int)(int32_t)get_le32(b + off), (int)d);
    }
    size_t rem = len - full * row_bytes;
    if (rem != 0)
        return vs_errf(err, VS_ERR_CORRUPT, "%s: truncated at byte %zu: row %zu needs %zu bytes, %zu remain",
                       path, full * row_bytes, full, row_bytes, rem);

    vf->dtype = vf->format == VS_VECIO_FVECS   ? VS_DTYPE_F32
                : vf->format == VS_VECIO_IVECS ? VS_DTYPE_I32
                                               : VS_DTYPE_U8;
    vf->count = full;
    vf->dim = (uint32_t)d;
    vf->esize = esize;
    vf->row_bytes = row_bytes;
    vf->elem_off = 4;
    vf->rows = b;
    return VS_OK;
}

/* ---------------------------------------------------------------------------------------------------
 * npy: the header is an ASCII Python dict literal, e.g.
 *   {'descr': '<f4', 'fortran_order': False, 'shape': (1000, 128), }
 * parsed with a small cursor; positions are absolute file offsets so errors can name them.
 * ------------------------------------------------------------------------------------------------- */

typedef struct cursor {
    const unsigned char *b; /* whole file */
    size_t pos;
    size_t end; /* one past the header's last byte */
    const char *path;
    char *err;
} cursor;

static vs_status hdr_err(cursor *c, const char *what)
{
    return vs_errf(c->err, VS_ERR_CORRUPT, "%s: bad npy header at byte %zu: %s", c->path, c->pos, what);
}

static void skip_ws(cursor *c)
{
    while (c->pos < c->end) {
        unsigned char ch = c->b[c->pos];
        if (ch != ' ' && ch != '\t' && ch != '\n' && ch != '\r')
            break;
        c->pos++;
    }
}

static int peek(const cursor *c)
{
    return c->pos < c->end ? c->b[c->pos] : -1;
}

/* A quoted string without escapes; copies at most cap-1 bytes into out (NUL-terminated). */
static vs_status parse_str(cursor *c, char *out, size_t cap)
{
    int q = peek(c);
    if (q != '\'' && q != '"')
        return hdr_err(c, "expected a quoted string");
    size_t start = ++c->pos;
    while (c->pos < c->end && c->b[c->pos] != q) {
        if (c->b[c->pos] == '\\')
            return hdr_err(c, "escapes in strings are not supported");
        c->pos++;
    }
    if (c->pos >= c->end)
        return hdr_err(c, "unterminated string");
    size_t n = c->pos - start;
    if (n >= cap)
        n = cap - 1;
    memcpy(out, c->b + start, n);
    out[n] = '\0';
    c->pos++;
    return VS_OK;
}

static int match_word(cursor *c, const char *word)
{
    size_t n = strlen(word);
    if (c->end - c->pos < n || memcmp(c->b + c->pos, word, n) != 0)
        return 0;
    if (c->pos + n < c->end) {
        unsigned char next = c->b[c->pos + n];
        if ((next >= 'a' && next <= 'z') || (next >= 'A' && next <= 'Z') || (next >= '0' && next <= '9') ||
            next == '_')
            return 0;
    }
    c->pos += n;
    return 1;
}

/* (n, d), (n,), (n, d,), () ... at most max_dims entries are stored; *out_ndims counts them all. */
static vs_status parse_shape(cursor *c, uint64_t *dims, int max_dims, int *out_ndims)
{
    if (peek(c) != '(')
        return hdr_err(c, "'shape' must be a tuple");
    c->pos++;
    int nd = 0;
    for (;;) {
        skip_ws(c);
        if (peek(c) == ')') {
            c->pos++;
            break;
        }
        int ch = peek(c);
        if (ch < '0' || ch > '9')
            return hdr_err(c, "expected a non-negative integer in 'shape'");
        uint64_t v = 0;
        while ((ch = peek(c)) >= '0' && ch <= '9') {
            if (v > (UINT64_MAX - 9) / 10)
                return hdr_err(c, "shape entry too large");
            v = v * 10 + (uint64_t)(ch - '0');
            c->pos++;
        }
        if (peek(c) == 'L') /* Python 2 long literal */
            c->pos++;
        if (nd < max_dims)
            dims[nd] = v;
        if (nd < INT_MAX)
            nd++;
        skip_ws(c);
        if (peek(c) == ',') {
            c->pos++;
            continue;
        }
        if (peek(c) == ')') {
            c->pos++;
            break;
        }
        return hdr_err(c, "expected ',' or ')' in 'shape'");
    }
    *out_ndims = nd;
    return VS_OK;
}

/* Skips any value of a key we do not use: a string, a bracketed literal, or a bare token. */
static vs_status skip_value(cursor *c)
{
    int depth = 0;
    for (;;) {
        int ch = peek(c);
        if (ch < 0)
            return hdr_err(c, "unterminated value");
        if (ch == '\'' || ch == '"') {
            char tmp[2];
            vs_status st = parse_str(c, tmp, sizeof tmp);
            if (st != VS_OK)
                return st;
            continue;
        }
        if (depth == 0 && (ch == ',' || ch == '}'))
            return VS_OK;
        if (ch == '(' || ch == '[' || ch == '{')
            depth++;
        else if (ch == ')' || ch == ']' || ch == '}') {
            if (depth == 0)
                return hdr_err(c, "unbalanced bracket");
            depth--;
        }
        c->pos++;
    }
}

/* allow_f64: also <f8 (vs_vecfile_open_column); vs_vecfile_open refuses it. */
static vs_status parse_npy(vs_vecfile_t *vf, const unsigned char *b, size_t len, int allow_f64, char *err)
{
    const char *path = vf->path;
    static const unsigned char magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
    if (len < 8 || memcmp(b, magic, 6) != 0)
        return vs_errf(err, VS_ERR_CORRUPT, "%s: bad magic at byte 0: not a .npy file", path);
    unsigned major = b[6], minor = b[7];
    size_t hdr_start, hdr_len;
    if (major == 1) {
        if (len < 10)
            return vs_errf(err, VS_ERR_CORRUPT,
                           "%s: truncated at byte 8: npy v1 header length needs 2 bytes, %zu remain", path,
                           len - 8);
        hdr_len = get_le16(b + 8);
        hdr_start = 10;
    } else if (major == 2 || major == 3) {
        if (len < 12)
            return vs_errf(err, VS_ERR_CORRUPT,
                           "%s: truncated at byte 8: npy v%u header length needs 4 bytes, %zu remain", path,
                           major, len - 8);
        hdr_len = get_le32(b + 8);
        hdr_start = 12;
    } else {
        return vs_errf(err, VS_ERR_UNSUPPORTED, "%s: npy format version %u.%u at byte 6 is not supported",
                       path, major, minor);
    }
    if (hdr_len > len - hdr_start)
        return vs_errf(err, VS_ERR_CORRUPT,
                       "%s: truncated at byte %zu: npy header needs %zu bytes, %zu remain", path, hdr_start,
                       hdr_len, len - hdr_start);

    cursor cur = {b, hdr_start, hdr_start + hdr_len, path, err};
    cursor *c = &cur;
    char descr[32] = "";
    int fortran = -1;
    uint64_t shape[2] = {0, 0};
    int ndims = -1, have_descr = 0;
    vs_status st;

    skip_ws(c);
    if (peek(c) != '{')
        return hdr_err(c, "expected '{'");
    c->pos++;
    for (;;) {
        skip_ws(c);
        if (peek(c) == '}') {
            c->pos++;
            break;
        }
        char key[32];
        size_t key_pos = c->pos;
        if ((st = parse_str(c, key, sizeof key)) != VS_OK)
            return st;
        skip_ws(c);
        if (peek(c) != ':')
            return hdr_err(c, "expected ':' after a key");
        c->pos++;
        skip_ws(c);
        size_t val_pos = c->pos;
        if (strcmp(key, "descr") == 0) {
            if (have_descr) {
                c->pos = key_pos;
                return hdr_err(c, "duplicate key 'descr'");
            }
            if (peek(c) != '\'' && peek(c) != '"')
                return vs_errf(err, VS_ERR_UNSUPPORTED,
                               "%s: npy structured dtype at byte %zu is not supported (want <f4, |u1 or <i4)",
                               path, val_pos);
            if ((st = parse_str(c, descr, sizeof descr)) != VS_OK)
                return st;
            have_descr = 1;
        } else if (strcmp(key, "fortran_order") == 0) {
            if (fortran >= 0) {
                c->pos = key_pos;
                return hdr_err(c, "duplicate key 'fortran_order'");
            }
            if (match_word(c, "True"))
                fortran = 1;
            else if (match_word(c, "False"))
                fortran = 0;
            else
                return hdr_err(c, "'fortran_order' must be True or False");
        } else if (strcmp(key, "shape") == 0) {
            if (ndims >= 0) {
                c->pos = key_pos;
                return hdr_err(c, "duplicate key 'shape'");
            }
            if ((st = parse_shape(c, shape, 2, &ndims)) != VS_OK)
                return st;
        } else {
            if ((st = skip_value(c)) != VS_OK)
                return st;
        }
        skip_ws(c);
        if (peek(c) == ',') {
            c->pos++;
            continue;
        }
        if (peek(c) == '}') {
            c->pos++;
            break;
        }
        return hdr_err(c, "expected ',' or '}'");
    }
    skip_ws(c);
    if (c->pos != c->end)
        return hdr_err(c, "unexpected bytes after the header dict");
    if (!have_descr)
        return hdr_err(c, "missing key 'descr'");
    if (fortran < 0)
        return hdr_err(c, "missing key 'fortran_order'");
    if (ndims < 0)
        return hdr_err(c, "missing key 'shape'");

    vs_vecio_dtype dtype;
    if (strcmp(descr, "<f4") == 0)
        dtype = VS_DTYPE_F32;
    else if (strcmp(descr, "|u1") == 0 || strcmp(descr, "<u1") == 0 || strcmp(descr, "u1") == 0)
        dtype = VS_DTYPE_U8;
    else if (strcmp(descr, "<i4") == 0)
        dtype = VS_DTYPE_I32;
    else if (strcmp(descr, "<i8") == 0)
        dtype = VS_DTYPE_I64;
    else if (allow_f64 && strcmp(descr, "<f8") == 0)
        dtype = VS_DTYPE_F64;
    else if (descr[0] == '>')
        return vs_errf(err, VS_ERR_UNSUPPORTED, "%s: big-endian npy dtype '%s' is not supported", path,
                       descr);
    else
        return vs_errf(err, VS_ERR_UNSUPPORTED,
                       "%s: npy dtype '%s' is not supported (want <f4, |u1, <i4%s or <i8)", path, descr,
                       allow_f64 ? ", <f8" : "");
    if (fortran)
        return vs_errf(err, VS_ERR_UNSUPPORTED, "%s: Fortran-order npy arrays are not supported", path);
    if (ndims != 1 && ndims != 2)
        return vs_errf(err, VS_ERR_UNSUPPORTED, "%s: npy array has %d dimensions, want 1 or 2", path, ndims);
    uint64_t n64 = shape[0], d64 = ndims == 2 ? shape[1] : 1;
    if (d64 == 0 || d64 > VS_VECIO_MAX_DIM)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "%s: npy row dimension %llu is outside 1..%u", path,
                       (unsigned long long)d64, VS_VECIO_MAX_DIM);
    size_t esize = dtype_size(dtype);
    size_t row_bytes = (size_t)d64 * esize;
    size_t need;
    if (n64 > SIZE_MAX || mul_overflows((size_t)n64, row_bytes, &need))
        return vs_errf(err, VS_ERR_CORRUPT, "%s: npy shape (%llu, %llu) is too large", path,
                       (unsigned long long)n64, (unsigned long long)d64);
    size_t data_off = c->end;
    size_t have = len - data_off;
    if (have < need)
        return vs_errf(err, VS_ERR_CORRUPT,
                       "%s: truncated at byte %zu: data starting at byte %zu needs %zu bytes, %zu remain",
                       path, len, data_off, need, have);
    if (have > need)
        return vs_errf(err, VS_ERR_CORRUPT, "%s: trailing bytes: data ends at byte %zu but the file has %zu",
                       path, data_off + need, len);

    vf->dtype = dtype;
    vf->count = (size_t)n64;
    vf->dim = (uint32_t)d64;
    vf->esize = esize;
    vf->row_bytes = row_bytes;
    vf->elem_off = 0;
    vf->rows = b + data_off;
    return VS_OK;
}

/* ---------------------------------------------------------------------------------------------------
 * idx: 00 00 <dtype> <ndims>, ndims big-endian uint32 sizes, then the data.
 * ------------------------------------------------------------------------------------------------- */

static vs_status parse_idx(vs_vecfile_t *vf, const unsigned char *b, size_t len, int gz, char *err)
{
    const char *path = vf->path;
    const char *where = gz ? " (offsets are in the decompressed stream)" : "";
    if (len < 4)
        return vs_errf(err, VS_ERR_CORRUPT, "%s: truncated at byte 0: idx magic needs 4 bytes, %zu remain%s",
                       path, len, where);
    if (b[0] != 0 || b[1] != 0)
        return vs_errf(err, VS_ERR_CORRUPT, "%s: bad idx magic %02x %02x at byte 0 (want 00 00)%s", path,
                       b[0], b[1], where);
    if (b[2] != 0x08)
        return vs_errf(err, VS_ERR_UNSUPPORTED,
                       "%s: idx dtype 0x%02x at byte 2 is not supported (only 0x08 unsigned byte)", path,
                       b[2]);
    unsigned ndims = b[3];
    if (ndims < 1 || ndims > 4)
        return vs_errf(err, VS_ERR_CORRUPT, "%s: idx dimension count %u at byte 3 is outside 1..4%s", path,
                       ndims, where);
    size_t hdr = 4 + 4 * (size_t)ndims;
    if (len < hdr)
        return vs_errf(err, VS_ERR_CORRUPT, "%s: truncated at byte 4: idx sizes need %zu bytes, %zu remain%s",
                       path, hdr - 4, len - 4, where);
    size_t n = get_be32(b + 4);
    /* dim stays <= 65536 before each multiplication, so the uint64 product cannot overflow; once over
     * the limit we stop multiplying but still look for a zero size. */
    uint64_t dim = 1;
    int zero = 0;
    for (unsigned i = 1; i < ndims; i++) {
        uint32_t s = get_be32(b + 4 + 4 * i);
        if (s == 0)
            zero = 1;
        if (dim <= VS_VECIO_MAX_DIM)
            dim *= s;
    }
    if (zero)
        dim = 0;
    if (dim == 0 || dim > VS_VECIO_MAX_DIM)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "%s: idx row dimension %llu%s is outside 1..%u", path,
                       (unsigned long long)dim, dim > VS_VECIO_MAX_DIM ? " (or more)" : "", VS_VECIO_MAX_DIM);
    size_t need;
    if (mul_overflows(n, (size_t)dim, &need))
        return vs_errf(err, VS_ERR_CORRUPT, "%s: idx sizes %zu x %llu are too large", path, n,
                       (unsigned long long)dim);
    size_t have = len - hdr;
    if (have < need)
        return vs_errf(err, VS_ERR_CORRUPT,
                       "%s: truncated at byte %zu: data starting at byte %zu needs %zu bytes, %zu remain%s",
                       path, len, hdr, need, have, where);
    if (have > need)
        return vs_errf(err, VS_ERR_CORRUPT, "%s: trailing bytes: data ends at byte %zu but there are %zu%s",
                       path, hdr + need, len, where);
    vf->dtype = VS_DTYPE_U8;
    vf->count = n;
    vf->dim = (uint32_t)dim;
    vf->esize = 1;
    vf->row_bytes = (size_t)dim;
    vf->elem_off = 0;
    vf->rows = b + hdr;
    return VS_OK;
}

/* ---------------------------------------------------------------------------------------------------
 * Open / close / accessors
 * ------------------------------------------------------------------------------------------------- */

void vs_vecfile_close(vs_vecfile_t *vf)
{
    if (vf == NULL)
        return;
    if (vf->map != NULL)
        munmap(vf->map, vf->map_len);
    free(vf->heap);
    free(vf->path);
    free(vf);
}

static vs_status open_file(const char *path, int allow_f64, vs_vecfile_t **out_vf, char *err)
{
    if (path == NULL || out_vf == NULL)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "vs_vecfile_open: NULL %s",
                       path == NULL ? "path" : "out_vf");
    vs_vecio_format fmt = VS_VECIO_FVECS;
    int gz = 0;
    vs_status st = detect_format(path, &fmt, &gz, err);
    if (st != VS_OK)
        return st;

    vs_vecfile_t *vf = calloc(1, sizeof *vf);
    size_t plen = strlen(path);
    char *pcopy = malloc(plen + 1);
    if (vf == NULL || pcopy == NULL) {
        free(vf);
        free(pcopy);
        return vs_errf(err, VS_ERR_NOMEM, "%s: out of memory", path);
    }
    memcpy(pcopy, path, plen + 1);
    vf->path = pcopy;
    vf->format = fmt;

    void *map = NULL;
    size_t map_len = 0;
    st = map_file(path, &map, &map_len, err);
    if (st != VS_OK) {
        vs_vecfile_close(vf);
        return st;
    }
    const unsigned char *bytes = map;
    size_t len = map_len;
    if (gz) {
        unsigned char *heap = NULL;
        size_t heap_len = 0;
        st = gunzip_all(path, map, map_len, &heap, &heap_len, err);
        munmap(map, map_len);
        if (st != VS_OK) {
            vs_vecfile_close(vf);
            return st;
        }
        vf->heap = heap; /* owned by vf from here: freed by vs_vecfile_close */
        if (heap_len == 0) {
            vs_vecfile_close(vf);
            return vs_errf(err, VS_ERR_CORRUPT, "%s: empty file (after decompression)", path);
        }
        bytes = heap;
        len = heap_len;
    } else {
        vf->map = map;
        vf->map_len = map_len;
    }

    switch (fmt) {
    case VS_VECIO_FVECS:
    case VS_VECIO_IVECS:
    case VS_VECIO_BVECS:
        st = parse_vecs(vf, bytes, len, err);
        break;
    case VS_VECIO_NPY:
        st = parse_npy(vf, bytes, len, allow_f64, err);
        break;
    case VS_VECIO_IDX:
        st = parse_idx(vf, bytes, len, gz, err);
        break;
    }
    if (st != VS_OK) {
        vs_vecfile_close(vf);
        return st;
    }
    *out_vf = vf;
    return VS_OK;
}

vs_status vs_vecfile_open(const char *path, vs_vecfile_t **out_vf, char err[VS_ERR_LEN])
{
    return open_file(path, 0, out_vf, err);
}

vs_status vs_vecfile_open_column(const char *path, vs_vecfile_t **out_vf, char err[VS_ERR_LEN])
{
    vs_vecfile_t *vf = NULL;
    vs_status st = open_file(path, 1, &vf, err);
    if (st != VS_OK)
        return st;
    if (vf->dim != 1) {
        st = vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                     "%s: rows of %u values; a column holds one value per row (npy shape (n,) or (n, 1))",
                     path, vf->dim);
        vs_vecfile_close(vf);
        return st;
    }
    *out_vf = vf;
    return VS_OK;
}

size_t vs_vecfile_count(const vs_vecfile_t *vf)
{
    return vf->count;
}

uint32_t vs_vecfile_dim(const vs_vecfile_t *vf)
{
    return vf->dim;
}

vs_vecio_dtype vs_vecfile_dtype(const vs_vecfile_t *vf)
{
    return vf->dtype;
}

vs_vecio_format vs_vecfile_format(const vs_vecfile_t *vf)
{
    return vf->format;
}

const char *vs_vecfile_path(const vs_vecfile_t *vf)
{
    return vf->path;
}

const float *vs_vecfile_f32_rows(const vs_vecfile_t *vf)
{
    if (vf->dtype != VS_DTYPE_F32 || vf->elem_off != 0 || ((uintptr_t)vf->rows & 3u) != 0)
        return NULL;
    return (const float *)(const void *)vf->rows;
}

/* ---------------------------------------------------------------------------------------------------
 * Readers
 * ------------------------------------------------------------------------------------------------- */

static vs_status check_range(const vs_vecfile_t *vf, size_t row0, size_t n_rows, const void *out, char *err)
{
    if (row0 > vf->count || n_rows > vf->count - row0)
        return vs_errf(err, VS_ERR_OUT_OF_RANGE, "%s: rows [%zu, %zu+%zu) are outside the file's %zu rows",
                       vf->path, row0, row0, n_rows, vf->count);
    if (out == NULL && n_rows != 0)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "%s: NULL output buffer", vf->path);
    return VS_OK;
}

static void u8_to_f32(const unsigned char *restrict src, float *restrict dst, size_t n)
{
    for (size_t j = 0; j < n; j++)
        dst[j] = (float)src[j];
}

static void i32_to_f32(const unsigned char *restrict src, float *restrict dst, size_t n)
{
    for (size_t j = 0; j < n; j++) {
        int32_t v;
        memcpy(&v, src + 4 * j, 4);
        dst[j] = (float)v;
    }
}

/* float64 to the nearest float32; a finite value beyond float32's range is refused (NaN and +-inf stay). */
static vs_status f64_to_f32(const vs_vecfile_t *vf, size_t row0, const unsigned char *restrict src,
                            float *restrict dst, size_t n, char *err)
{
    for (size_t j = 0; j < n; j++) {
        double v;
        memcpy(&v, src + 8 * j, 8);
        if (isfinite(v) && (v > FLT_MAX || v < -FLT_MAX))
            return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "%s: row %zu: %g does not fit a float32", vf->path,
                           row0 + j / vf->dim, v);
        dst[j] = (float)v;
    }
    return VS_OK;
}

static void u8_to_i32(const unsigned char *restrict src, int32_t *restrict dst, size_t n)
{
    for (size_t j = 0; j < n; j++)
        dst[j] = (int32_t)src[j];
}

/* Rows [row0, row0 + n_rows) as runs of `run` elements, one every `stride` bytes from src: contiguous rows
 * (npy, idx) are one long run, *vecs rows one run each past their 4-byte header, so the readers dispatch
 * on the dtype once, outside the row loop. */
typedef struct span {
    const unsigned char *src;
    size_t stride, run, runs;
} span_t;

static vs_status rows_span(const vs_vecfile_t *vf, size_t row0, size_t n_rows, const void *out, span_t *sp,
                           char *err)
{
    vs_status st = check_range(vf, row0, n_rows, out, err);
    if (st != VS_OK)
        return st;
    sp->stride = vf->row_bytes;
    sp->src = vf->rows + row0 * vf->row_bytes + vf->elem_off;
    sp->run = vf->elem_off == 0 ? n_rows * vf->dim : vf->dim;
    sp->runs = vf->elem_off == 0 ? 1 : n_rows;
    return VS_OK;
}

vs_status vs_vecfile_read_f32(const vs_vecfile_t *vf, size_t row0, size_t n_rows, float *out,
                              char err[VS_ERR_LEN])
{
    if (vf->dtype == VS_DTYPE_I64)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "%s: holds int64 ids, not vectors", vf->path);
    span_t sp;
    vs_status st = rows_span(vf, row0, n_rows, out, &sp, err);
    if (st != VS_OK || n_rows == 0)
        return st;
    const unsigned char *src = sp.src;
    const size_t stride = sp.stride, run = sp.run, runs = sp.runs;
    switch (vf->dtype) {
    case VS_DTYPE_F32:
        for (size_t i = 0; i < runs; i++)
            memcpy(out + i * run, src + i * stride, run * sizeof(float));
        break;
    case VS_DTYPE_U8:
        for (size_t i = 0; i < runs; i++)
            u8_to_f32(src + i * stride, out + i * run, run);
        break;
    case VS_DTYPE_I32:
        for (size_t i = 0; i < runs; i++)
            i32_to_f32(src + i * stride, out + i * run, run);
        break;
    case VS_DTYPE_F64:
        for (size_t i = 0; i < runs && st == VS_OK; i++)
            st = f64_to_f32(vf, row0 + i * run / vf->dim, src + i * stride, out + i * run, run, err);
        break;
    case VS_DTYPE_I64:
        break; /* refused above */
    }
    return st;
}

vs_status vs_vecfile_read_i32(const vs_vecfile_t *vf, size_t row0, size_t n_rows, int32_t *out,
                              char err[VS_ERR_LEN])
{
    if (vf->dtype == VS_DTYPE_F32 || vf->dtype == VS_DTYPE_I64 || vf->dtype == VS_DTYPE_F64)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "%s: holds %s; read_i32 only reads int32 or uint8 files",
                       vf->path,
                       vf->dtype == VS_DTYPE_F32   ? "float32 vectors"
                       : vf->dtype == VS_DTYPE_F64 ? "float64 values"
                                                   : "int64 ids");
    span_t sp;
    vs_status st = rows_span(vf, row0, n_rows, out, &sp, err);
    if (st != VS_OK || n_rows == 0)
        return st;
    const unsigned char *src = sp.src;
    const size_t stride = sp.stride, run = sp.run, runs = sp.runs;
    if (vf->dtype == VS_DTYPE_I32) {
        for (size_t i = 0; i < runs; i++)
            memcpy(out + i * run, src + i * stride, run * sizeof(int32_t));
    } else {
        for (size_t i = 0; i < runs; i++)
            u8_to_i32(src + i * stride, out + i * run, run);
    }
    return VS_OK;
}

vs_status vs_vecfile_read_i64(const vs_vecfile_t *vf, size_t row0, size_t n_rows, int64_t *out,
                              char err[VS_ERR_LEN])
{
    if (vf->dtype == VS_DTYPE_F32 || vf->dtype == VS_DTYPE_F64)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "%s: holds %s; read_i64 only reads integer files",
                       vf->path, vf->dtype == VS_DTYPE_F32 ? "float32 vectors" : "float64 values");
    span_t sp;
    vs_status st = rows_span(vf, row0, n_rows, out, &sp, err);
    if (st != VS_OK || n_rows == 0)
        return st;
    const unsigned char *src = sp.src;
    const size_t stride = sp.stride, run = sp.run, runs = sp.runs;
    for (size_t i = 0; i < runs; i++) {
        const unsigned char *p = src + i * stride;
        int64_t *o = out + i * run;
        if (vf->dtype == VS_DTYPE_I64) {
            memcpy(o, p, run * sizeof(int64_t)); /* little-endian host */
        } else if (vf->dtype == VS_DTYPE_I32) {
            for (size_t j = 0; j < run; j++) {
                int32_t v;
                memcpy(&v, p + 4 * j, 4);
                o[j] = v;
            }
        } else {
            for (size_t j = 0; j < run; j++)
                o[j] = p[j];
        }
    }
    return VS_OK;
}

/* Opens path, allocates count*dim elements of elem_size bytes and hands back the open file. */
static vs_status load_prepare(const char *path, size_t elem_size, vs_vecfile_t **out_vf, void **out_buf,
                              char *err)
{
    vs_vecfile_t *vf = NULL;
    vs_status st = vs_vecfile_open(path, &vf, err);
    if (st != VS_OK)
        return st;
    size_t n = vf->count, elems, bytes;
    unsigned d = vf->dim;
    if (mul_overflows(n, d, &elems) || mul_overflows(elems, elem_size, &bytes)) {
        vs_vecfile_close(vf);
        return vs_errf(err, VS_ERR_NOMEM, "%s: %zu x %u elements do not fit in memory", path, n, d);
    }
    void *buf = malloc(bytes != 0 ? bytes : 1);
    if (buf == NULL) {
        vs_vecfile_close(vf);
        return vs_errf(err, VS_ERR_NOMEM, "%s: cannot allocate %zu bytes for %zu x %u elements", path, bytes,
                       n, d);
    }
    *out_vf = vf;
    *out_buf = buf;
    return VS_OK;
}

static vs_status read_f32_any(const vs_vecfile_t *vf, size_t row0, size_t n, void *out, char *err)
{
    return vs_vecfile_read_f32(vf, row0, n, out, err);
}

static vs_status read_i32_any(const vs_vecfile_t *vf, size_t row0, size_t n, void *out, char *err)
{
    return vs_vecfile_read_i32(vf, row0, n, out, err);
}

/* Opens path and reads every row with read() into a new buffer; outputs untouched on failure. */
static vs_status load_all(const char *path, size_t elem_size,
                          vs_status (*read)(const vs_vecfile_t *, size_t, size_t, void *, char *),
                          size_t *out_n, uint32_t *out_dim, void **out_data, char *err)
{
    vs_vecfile_t *vf = NULL;
    void *buf = NULL;
    vs_status st = load_prepare(path, elem_size, &vf, &buf, err);
    if (st != VS_OK)
        return st;
    st = read(vf, 0, vf->count, buf, err);
    if (st != VS_OK) {
        free(buf);
        vs_vecfile_close(vf);
        return st;
    }
    *out_n = vf->count;
    *out_dim = vf->dim;
    *out_data = buf;
    vs_vecfile_close(vf);
    return VS_OK;
}

vs_status vs_vecfile_load_f32(const char *path, size_t *out_n, uint32_t *out_dim, float **out_data,
                              char err[VS_ERR_LEN])
{
    void *data;
    vs_status st = load_all(path, sizeof(float), read_f32_any, out_n, out_dim, &data, err);
    if (st == VS_OK)
        *out_data = data;
    return st;
}

vs_status vs_vecfile_load_i32(const char *path, size_t *out_n, uint32_t *out_dim, int32_t **out_data,
                              char err[VS_ERR_LEN])
{
    void *data;
    vs_status st = load_all(path, sizeof(int32_t), read_i32_any, out_n, out_dim, &data, err);
    if (st == VS_OK)
        *out_data = data;
    return st;
}

/* ---------------------------------------------------------------------------------------------------
 * Writers: everything goes to "<path>.tmp", which is flushed, synced and renamed over path.
 * ------------------------------------------------------------------------------------------------- */

typedef struct writer {
    const char *path;
    char *tmp;
    FILE *f;
    int failed_errno; /* first write error, 0 if none */
} writer;

static vs_status writer_begin(writer *w, const char *path, size_t n, uint32_t dim, const void *data,
                              size_t esize, char *err)
{
    memset(w, 0, sizeof *w);
    if (path == NULL)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "vecio write: NULL path");
    if (dim == 0 || dim > VS_VECIO_MAX_DIM)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "%s: dimension %u is outside 1..%u", path, (unsigned)dim,
                       VS_VECIO_MAX_DIM);
    size_t elems, bytes;
    if (mul_overflows(n, dim, &elems) || mul_overflows(elems, esize, &bytes))
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "%s: %zu x %u elements overflow size_t", path, n,
                       (unsigned)dim);
    if (data == NULL && n != 0)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "%s: NULL data for %zu rows", path, n);
    size_t plen = strlen(path);
    w->tmp = malloc(plen + 5);
    if (w->tmp == NULL)
        return vs_errf(err, VS_ERR_NOMEM, "%s: out of memory", path);
    memcpy(w->tmp, path, plen);
    memcpy(w->tmp + plen, ".tmp", 5);
    w->path = path;
    w->f = fopen(w->tmp, "wb");
    if (w->f == NULL) {
        int e = errno;
        free(w->tmp);
        w->tmp = NULL;
        return vs_errf(err, VS_ERR_IO, "%s: cannot create %s.tmp: %s", path, path, strerror(e));
    }
    return VS_OK;
}

static void writer_put(writer *w, const void *p, size_t len)
{
    if (w->failed_errno != 0 || len == 0)
        return;
    errno = 0;
    if (fwrite(p, 1, len, w->f) != len)
        w->failed_errno = errno != 0 ? errno : EIO;
}

static vs_status writer_end(writer *w, char *err)
{
    int e = w->failed_errno;
    errno = 0;
    if (e == 0 && fflush(w->f) != 0)
        e = errno != 0 ? errno : EIO;
    if (e == 0 && fsync(fileno(w->f)) != 0)
        e = errno;
    errno = 0;
    if (fclose(w->f) != 0 && e == 0)
        e = errno != 0 ? errno : EIO;
    w->f = NULL;
    if (e == 0 && rename(w->tmp, w->path) != 0)
        e = errno;
    vs_status st = VS_OK;
    if (e != 0) {
        unlink(w->tmp);
        st = vs_errf(err, VS_ERR_IO, "%s: writing %s.tmp failed: %s", w->path, w->path, strerror(e));
    }
    free(w->tmp);
    w->tmp = NULL;
    return st;
}

static vs_status write_vecs(const char *path, size_t n, uint32_t dim, const void *data, size_t esize,
                            char *err)
{
    writer w;
    vs_status st = writer_begin(&w, path, n, dim, data, esize, err);
    if (st != VS_OK)
        return st;
    unsigned char hdr[4] = {(unsigned char)dim, (unsigned char)(dim >> 8), (unsigned char)(dim >> 16),
                            (unsigned char)(dim >> 24)};
    size_t row_bytes = (size_t)dim * esize;
    const unsigned char *src = data;
    for (size_t i = 0; i < n && w.failed_errno == 0; i++) {
        writer_put(&w, hdr, 4);
        writer_put(&w, src + i * row_bytes, row_bytes);
    }
    return writer_end(&w, err);
}

vs_status vs_vecio_write_fvecs(const char *path, size_t n, uint32_t dim, const float *data,
                               char err[VS_ERR_LEN])
{
    return write_vecs(path, n, dim, data, 4, err);
}

vs_status vs_vecio_write_ivecs(const char *path, size_t n, uint32_t dim, const int32_t *data,
                               char err[VS_ERR_LEN])
{
    return write_vecs(path, n, dim, data, 4, err);
}

vs_status vs_vecio_write_bvecs(const char *path, size_t n, uint32_t dim, const uint8_t *data,
                               char err[VS_ERR_LEN])
{
    return write_vecs(path, n, dim, data, 1, err);
}

/* ---------------------------------------------------------------------------------------------------
 * Streaming npy writer: the rows come in pieces and the count is known at the end, so the header is
 * reserved at its largest (a count of SIZE_MAX digits) and written over at close, padded to that length.
 * ------------------------------------------------------------------------------------------------- */

struct vs_npy_writer {
    writer w;
    char *path; /* owned: w.path points here */
    const char *descr;
    uint32_t dim;
    size_t esize, n, hdr_len;
};

static const char *npy_descr(vs_vecio_dtype dtype)
{
    switch (dtype) {
    case VS_DTYPE_F32:
        return "<f4";
    case VS_DTYPE_U8:
        return "|u1";
    case VS_DTYPE_I32:
        return "<i4";
    case VS_DTYPE_I64:
        return "<i8";
    case VS_DTYPE_F64:
        return "<f8";
    }
    return NULL;
}

/* The npy v1.0 header of n rows of dim descr into hdr (256 bytes), padded to at least min_total bytes
 * and to a multiple of 64; returns its length, 0 when it does not fit. */
static size_t npy_header(unsigned char *hdr, const char *descr, size_t n, uint32_t dim, size_t min_total)
{
    int dict_len =
        snprintf((char *)hdr + 10, 256 - 10, "{'descr': '%s', 'fortran_order': False, 'shape': (%zu, %u), }",
                 descr, n, (unsigned)dim);
    if (dict_len < 0 || (size_t)dict_len + 10 + 1 > 256)
        return 0;
    size_t total = ((size_t)dict_len + 10 + 1 + 63) / 64 * 64;
    if (total < min_total)
        total = min_total;
    if (total > 256)
        return 0;
    memset(hdr + 10 + dict_len, ' ', total - 10 - (size_t)dict_len - 1);
    hdr[total - 1] = '\n';
    static const unsigned char magic[8] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
    memcpy(hdr, magic, 8);
    hdr[8] = (unsigned char)((total - 10) & 0xff);
    hdr[9] = (unsigned char)((total - 10) >> 8);
    return total;
}

vs_status vs_vecio_write_npy(const char *path, vs_vecio_dtype dtype, size_t n, uint32_t dim, const void *data,
                             char err[VS_ERR_LEN])
{
    const char *descr = npy_descr(dtype);
    if (descr == NULL)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "%s: unknown dtype %d", path != NULL ? path : "(null)",
                       (int)dtype);
    /* 10-byte preamble + dict + space padding + '\n', a multiple of 64 in total. */
    unsigned char hdr[256];
    size_t total = npy_header(hdr, descr, n, dim, 0);
    if (total == 0)
        return vs_errf(err, VS_ERR_INTERNAL, "%s: npy header does not fit", path != NULL ? path : "(null)");
    writer w;
    size_t esize = dtype_size(dtype);
    vs_status st = writer_begin(&w, path, n, dim, data, esize, err);
    if (st != VS_OK)
        return st;
    writer_put(&w, hdr, total);
    writer_put(&w, data, n * dim * esize);
    return writer_end(&w, err);
}

vs_status vs_npy_writer_open(const char *path, vs_vecio_dtype dtype, uint32_t dim, vs_npy_writer_t **out,
                             char err[VS_ERR_LEN])
{
    *out = NULL;
    const char *descr = npy_descr(dtype);
    if (path == NULL || descr == NULL)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "%s: unknown dtype %d", path != NULL ? path : "(null)",
                       (int)dtype);
    vs_npy_writer_t *nw = calloc(1, sizeof *nw);
    char *p = strdup(path);
    if (nw == NULL || p == NULL) {
        free(nw);
        free(p);
        return vs_errf(err, VS_ERR_NOMEM, "%s: out of memory", path);
    }
    unsigned char hdr[256];
    nw->path = p;
    nw->descr = descr;
    nw->dim = dim;
    nw->esize = dtype_size(dtype);
    nw->hdr_len = npy_header(hdr, descr, SIZE_MAX, dim, 0);
    vs_status st = nw->hdr_len == 0 ? vs_errf(err, VS_ERR_INTERNAL, "%s: npy header does not fit", path)
                                    : writer_begin(&nw->w, nw->path, 0, dim, NULL, nw->esize, err);
    if (st != VS_OK) { /* writer_begin left nothing open */
        free(nw->path);
        free(nw);
        return st;
    }
    writer_put(&nw->w, hdr, nw->hdr_len); /* a placeholder of the final length */
    *out = nw;
    return VS_OK;
}

vs_status vs_npy_writer_put(vs_npy_writer_t *nw, const void *rows, size_t n_rows, char err[VS_ERR_LEN])
{
    size_t elems, bytes;
    if (mul_overflows(n_rows, nw->dim, &elems) || mul_overflows(elems, nw->esize, &bytes))
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "%s: %zu rows overflow size_t", nw->path, n_rows);
    writer_put(&nw->w, rows, bytes);
    if (nw->w.failed_errno != 0)
        return vs_errf(err, VS_ERR_IO, "%s: writing %s.tmp failed: %s", nw->path, nw->path,
                       strerror(nw->w.failed_errno));
    nw->n += n_rows;
    return VS_OK;
}

vs_status vs_npy_writer_close(vs_npy_writer_t *nw, char err[VS_ERR_LEN])
{
    unsigned char hdr[256];
    size_t len = npy_header(hdr, nw->descr, nw->n, nw->dim, nw->hdr_len);
    if (len != nw->hdr_len && nw->w.failed_errno == 0)
        nw->w.failed_errno = EOVERFLOW; /* cannot happen: the placeholder was the largest header */
    errno = 0;
    if (nw->w.failed_errno == 0 && fseek(nw->w.f, 0, SEEK_SET) != 0)
        nw->w.failed_errno = errno != 0 ? errno : EIO;
    writer_put(&nw->w, hdr, len);
    vs_status st = writer_end(&nw->w, err); /* flush, sync, rename; removes the .tmp on failure */
    free(nw->path);
    free(nw);
    return st;
}

void vs_npy_writer_discard(vs_npy_writer_t *nw)
{
    if (nw == NULL)
        return;
    if (nw->w.f != NULL)
        fclose(nw->w.f);
    if (nw->w.tmp != NULL)
        unlink(nw->w.tmp);
    free(nw->w.tmp);
    free(nw->path);
    free(nw);
}
