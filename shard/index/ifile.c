/* ifile.c: writer and validating reader of the index file container (layout in ifile.h).
 *
 * The writer keeps the section list in memory (at most 64 entries), buffers appends in 256 KiB and
 * writes appends of a buffer or more directly, so a section larger than RAM streams through. The header
 * is written last, with pwrite at offset 0, so a tmp file left by a crash has no magic and is refused.
 * The reader maps the file read-only and validates in order of cost: header fields, table placement,
 * table CRC, each entry, the padding, and only then the CRC of every section. No index code runs on a
 * file that failed any of these. Not here: repairing files, reading without mapping, locking. */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* mmap, fsync, pwrite, O_CLOEXEC when built outside CMake */
#endif
#include "shard/index/ifile.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cli/timing.h"
#include "common/crc32c.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "ifile.c assumes a little-endian host (section payloads are used in place)"
#endif

#define WBUF_SIZE (256u * 1024u)
#define ENTRY_SIZE 64u

/* Header field offsets (see the layout in ifile.h). */
#define H_VERSION 8
#define H_HEADER_SIZE 12
#define H_INDEX_TYPE 16
#define H_METRIC 20
#define H_DIM 24
#define H_N_SECTIONS 28
#define H_N_VECTORS 32
#define H_BUILD_TIME 40
#define H_TABLE_OFFSET 48
#define H_FACTORY 56
#define H_MODEL_VERSION 120
#define H_PARAMS 248
#define H_RESERVED 376
#define H_CRC 508

/* Section table entry field offsets. */
#define E_OFFSET 16
#define E_LENGTH 24
#define E_CRC 32
#define E_FLAGS 36
#define E_RESERVED 40

typedef struct section {
    char tag[VS_IFILE_TAG_MAX + 1];
    uint64_t offset;
    uint64_t length;
    uint32_t crc;
    int lazy; /* its CRC was not checked at open (vs_ifile_open_lazy): vs_ifile_verify_section does it */
} section_t;

struct vs_ifile_writer {
    char *path;
    char *tmp;
    int fd;
    unsigned char *buf; /* WBUF_SIZE bytes; buf_len of them pending */
    size_t buf_len;
    uint64_t pos;     /* logical end of the file, pending bytes included */
    int in_section;   /* between begin_section and end_section */
    uint32_t crc;     /* running CRC32C of the open section */
    int failed_errno; /* first write error (sticky), 0 if none */
    uint64_t failed_pos;
    size_t n_sections;
    section_t sec[VS_IFILE_MAX_SECTIONS];
};

struct vs_ifile {
    char *path;
    const unsigned char *map;
    size_t map_len;
    vs_ifile_header_t hdr;
    size_t n_sections;
    section_t sec[VS_IFILE_MAX_SECTIONS];
};

/* ---------------------------------------------------------------------------------------------------
 * Helpers shared by writer and reader
 * ------------------------------------------------------------------------------------------------- */

static inline void put_le32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static inline void put_le64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static inline uint32_t get_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t get_le64(const unsigned char *p)
{
    return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

static int type_known(uint32_t t)
{
    return t == VS_INDEX_FLAT || t == VS_INDEX_IVF || t == VS_INDEX_HNSW;
}

static int metric_known(uint32_t m)
{
    return m == VS_METRIC_L2 || m == VS_METRIC_IP || m == VS_METRIC_COSINE;
}

static int tag_char_ok(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_';
}

/* A caller's tag: 1..15 characters of [a-z0-9._]. */
static int tag_ok(const char *tag)
{
    size_t i = 0;
    for (; tag[i] != '\0'; i++)
        if (i >= VS_IFILE_TAG_MAX || !tag_char_ok((unsigned char)tag[i]))
            return 0;
    return i >= 1;
}

/* A stored tag field: 1..15 valid characters, then NUL bytes to the end of the 16. */
static int tag_field_ok(const unsigned char *t)
{
    size_t n = 0;
    while (n < VS_IFILE_TAG_MAX + 1 && t[n] != 0)
        n++;
    if (n == 0 || n > VS_IFILE_TAG_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!tag_char_ok(t[i]))
            return 0;
    for (size_t i = n; i < VS_IFILE_TAG_MAX + 1; i++)
        if (t[i] != 0)
            return 0;
    return 1;
}

/* Index of the first nonzero byte in p[0, n), or n. */
static size_t first_nonzero(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0)
            return i;
    return n;
}

/* CRC32C of the 512 header bytes with the CRC field taken as zero. */
static uint32_t header_crc(const unsigned char *h)
{
    static const unsigned char zero4[4] = {0, 0, 0, 0};
    return vs_crc32c(vs_crc32c(0, h, H_CRC), zero4, 4);
}

static vs_status check_header_args(const vs_ifile_header_t *h, const char *who, char *err)
{
    if (!type_known((uint32_t)h->index_type))
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "%s: unknown index type %d", who, (int)h->index_type);
    if (!metric_known((uint32_t)h->metric))
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "%s: unknown metric %d", who, (int)h->metric);
    if (h->dim == 0 || h->dim > VS_IFILE_MAX_DIM)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "%s: dimension %u is outside 1..%u", who,
                       (unsigned)h->dim, VS_IFILE_MAX_DIM);
    if (memchr(h->factory, '\0', sizeof h->factory) == NULL)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                       "%s: factory string is not NUL-terminated within %zu bytes", who, sizeof h->factory);
    if (memchr(h->model_version, '\0', sizeof h->model_version) == NULL)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                       "%s: model_version string is not NUL-terminated within %zu bytes", who,
                       sizeof h->model_version);
    return VS_OK;
}

vs_status vs_ifile_header_init(vs_ifile_header_t *h, vs_index_type type, vs_metric metric, uint32_t dim,
                               const char *factory, const char *model_version, char err[VS_ERR_LEN])
{
    if (h == NULL)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "vs_ifile_header_init: NULL header");
    if (factory == NULL)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "vs_ifile_header_init: NULL factory string");
    if (model_version == NULL)
        model_version = "";
    size_t fl = strlen(factory), ml = strlen(model_version);
    if (fl >= sizeof h->factory)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                       "vs_ifile_header_init: factory string is %zu characters, at most %zu fit", fl,
                       sizeof h->factory - 1);
    if (ml >= sizeof h->model_version)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                       "vs_ifile_header_init: model_version is %zu characters, at most %zu fit", ml,
                       sizeof h->model_version - 1);
    vs_ifile_header_t t;
    memset(&t, 0, sizeof t);
    t.index_type = type;
    t.metric = metric;
    t.dim = dim;
    memcpy(t.factory, factory, fl);
    memcpy(t.model_version, model_version, ml);
    vs_status st = check_header_args(&t, "vs_ifile_header_init", err);
    if (st != VS_OK)
        return st;
    *h = t;
    return VS_OK;
}

/* ---------------------------------------------------------------------------------------------------
 * Writer
 * ------------------------------------------------------------------------------------------------- */

/* Writes all n bytes at the file position (pos < 0) or at offset pos; 0 or an errno. */
static int write_all(int fd, const unsigned char *p, size_t n, off_t pos)
{
    while (n > 0) {
        size_t chunk = n < ((size_t)1 << 30) ? n : ((size_t)1 << 30);
        ssize_t k = pos < 0 ? write(fd, p, chunk) : pwrite(fd, p, chunk, pos);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        if (k == 0)
            return EIO;
        p += k;
        n -= (size_t)k;
        if (pos >= 0)
            pos += k;
    }
    return 0;
}

static void fail(vs_ifile_writer_t *w, int e, uint64_t at)
{
    if (w->failed_errno == 0) {
        w->failed_errno = e;
        w->failed_pos = at;
    }
}

static void flush_buf(vs_ifile_writer_t *w)
{
    if (w->failed_errno != 0 || w->buf_len == 0)
        return;
    int e = write_all(w->fd, w->buf, w->buf_len, -1);
    if (e != 0)
        fail(w, e, w->pos - w->buf_len);
    w->buf_len = 0;
}

static void put(vs_ifile_writer_t *w, const void *data, size_t n)
{
    if (w->failed_errno != 0 || n == 0)
        return;
    if (n >= WBUF_SIZE) {
        flush_buf(w);
        if (w->failed_errno != 0)
            return;
        int e = write_all(w->fd, data, n, -1);
        if (e != 0)
            fail(w, e, w->pos);
        w->pos += n;
        return;
    }
    if (w->buf_len + n > WBUF_SIZE)
        flush_buf(w);
    memcpy(w->buf + w->buf_len, data, n);
    w->buf_len += n;
    w->pos += n;
}

static void pad_to_align(vs_ifile_writer_t *w)
{
    static const unsigned char zeros[VS_IFILE_ALIGN];
    size_t rem = (size_t)(w->pos % VS_IFILE_ALIGN);
    if (rem != 0)
        put(w, zeros, VS_IFILE_ALIGN - rem);
}

static vs_status failed_status(const vs_ifile_writer_t *w, char *err)
{
    return vs_errf(err, VS_ERR_IO, "%s: writing %s failed at byte %" PRIu64 ": %s", w->path, w->tmp,
                   w->failed_pos, strerror(w->failed_errno));
}

static void writer_free(vs_ifile_writer_t *w)
{
    if (w->fd >= 0)
        close(w->fd);
    free(w->buf);
    free(w->tmp);
    free(w->path);
    free(w);
}

vs_status vs_ifile_writer_open(const char *path, vs_ifile_writer_t **out, char err[VS_ERR_LEN])
{
    if (path == NULL || out == NULL || path[0] == '\0')
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "vs_ifile_writer_open: %s",
                       out == NULL ? "NULL out" : "empty or NULL path");
    size_t plen = strlen(path);
    vs_ifile_writer_t *w = calloc(1, sizeof *w);
    if (w == NULL)
        return vs_errf(err, VS_ERR_NOMEM, "%s: out of memory", path);
    w->fd = -1;
    w->path = malloc(plen + 1);
    w->tmp = malloc(plen + 5);
    w->buf = malloc(WBUF_SIZE);
    if (w->path == NULL || w->tmp == NULL || w->buf == NULL) {
        writer_free(w);
        return vs_errf(err, VS_ERR_NOMEM, "%s: out of memory", path);
    }
    memcpy(w->path, path, plen + 1);
    memcpy(w->tmp, path, plen);
    memcpy(w->tmp + plen, ".tmp", 5);
    w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (w->fd < 0) {
        int e = errno;
        vs_status st = vs_errf(err, VS_ERR_IO, "%s: cannot create %s: %s", path, w->tmp, strerror(e));
        writer_free(w);
        return st;
    }
    /* Header placeholder: zeros until commit writes the real one, so an unfinished file has no magic. */
    static const unsigned char zero_header[VS_IFILE_HEADER_SIZE];
    put(w, zero_header, sizeof zero_header);
    *out = w;
    return VS_OK;
}

vs_status vs_ifile_writer_begin_section(vs_ifile_writer_t *w, const char *tag, char err[VS_ERR_LEN])
{
    if (w == NULL || tag == NULL)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "vs_ifile_writer_begin_section: NULL %s",
                       w == NULL ? "writer" : "tag");
    if (w->failed_errno != 0)
        return failed_status(w, err);
    if (w->in_section)
        return vs_errf(err, VS_ERR_FAILED_PRECONDITION, "%s: section '%s' is still open; end it first",
                       w->path, w->sec[w->n_sections].tag);
    if (!tag_ok(tag))
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                       "%s: bad section tag '%.40s': use 1..%u characters of [a-z0-9._]", w->path, tag,
                       VS_IFILE_TAG_MAX);
    for (size_t i = 0; i < w->n_sections; i++)
        if (strcmp(w->sec[i].tag, tag) == 0)
            return vs_errf(err, VS_ERR_ALREADY_EXISTS, "%s: section '%s' already written", w->path, tag);
    if (w->n_sections >= VS_IFILE_MAX_SECTIONS)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "%s: cannot add section '%s': a file holds at most %u",
                       w->path, tag, VS_IFILE_MAX_SECTIONS);
    pad_to_align(w);
    if (w->failed_errno != 0)
        return failed_status(w, err);
    section_t *s = &w->sec[w->n_sections];
    memset(s, 0, sizeof *s);
    memcpy(s->tag, tag, strlen(tag));
    s->offset = w->pos;
    w->crc = 0;
    w->in_section = 1;
    return VS_OK;
}

vs_status vs_ifile_writer_append(vs_ifile_writer_t *w, const void *data, size_t n, char err[VS_ERR_LEN])
{
    if (w == NULL || (data == NULL && n != 0))
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "vs_ifile_writer_append: NULL %s",
                       w == NULL ? "writer" : "data");
    if (w->failed_errno != 0)
        return failed_status(w, err);
    if (!w->in_section)
        return vs_errf(err, VS_ERR_FAILED_PRECONDITION, "%s: append with no open section", w->path);
    if (n == 0)
        return VS_OK;
    w->crc = vs_crc32c(w->crc, data, n);
    put(w, data, n);
    if (w->failed_errno != 0)
        return failed_status(w, err);
    return VS_OK;
}

vs_status vs_ifile_writer_end_section(vs_ifile_writer_t *w, char err[VS_ERR_LEN])
{
    if (w == NULL)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "vs_ifile_writer_end_section: NULL writer");
    if (w->failed_errno != 0)
        return failed_status(w, err);
    if (!w->in_section)
        return vs_errf(err, VS_ERR_FAILED_PRECONDITION, "%s: end_section with no open section", w->path);
    section_t *s = &w->sec[w->n_sections];
    s->length = w->pos - s->offset;
    s->crc = w->crc;
    w->n_sections++;
    w->in_section = 0;
    return VS_OK;
}

vs_status vs_ifile_writer_add_section(vs_ifile_writer_t *w, const char *tag, const void *data, size_t n,
                                      char err[VS_ERR_LEN])
{
    if (w != NULL && data == NULL && n != 0)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "%s: NULL data for %zu bytes of section '%.40s'",
                       w->path, n, tag != NULL ? tag : "(null)");
    vs_status st = vs_ifile_writer_begin_section(w, tag, err);
    if (st == VS_OK)
        st = vs_ifile_writer_append(w, data, n, err);
    if (st == VS_OK)
        st = vs_ifile_writer_end_section(w, err);
    return st;
}

/* Encodes the 512-byte header of h with the given table placement, CRC included. */
static void encode_header(unsigned char *out, const vs_ifile_header_t *h, uint32_t n_sections,
                          uint64_t table_offset)
{
    memset(out, 0, VS_IFILE_HEADER_SIZE);
    memcpy(out, VS_IFILE_MAGIC, 8);
    put_le32(out + H_VERSION, VS_IFILE_FORMAT_VERSION);
    put_le32(out + H_HEADER_SIZE, VS_IFILE_HEADER_SIZE);
    put_le32(out + H_INDEX_TYPE, (uint32_t)h->index_type);
    put_le32(out + H_METRIC, (uint32_t)h->metric);
    put_le32(out + H_DIM, h->dim);
    put_le32(out + H_N_SECTIONS, n_sections);
    put_le64(out + H_N_VECTORS, h->n_vectors);
    put_le64(out + H_BUILD_TIME, h->build_time_unix);
    put_le64(out + H_TABLE_OFFSET, table_offset);
    memcpy(out + H_FACTORY, h->factory, strlen(h->factory)); /* NUL padding: the rest stays zero */
    memcpy(out + H_MODEL_VERSION, h->model_version, strlen(h->model_version));
    memcpy(out + H_PARAMS, h->params, sizeof h->params);
    put_le32(out + H_CRC, header_crc(out));
}

/* fsync of the directory holding path, so that the rename is durable; 0 or an errno. */
static int sync_parent_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir;
    if (slash == NULL) {
        dir = strdup(".");
    } else {
        size_t n = slash == path ? 1 : (size_t)(slash - path);
        dir = malloc(n + 1);
        if (dir != NULL) {
            memcpy(dir, path, n);
            dir[n] = '\0';
        }
    }
    if (dir == NULL)
        return ENOMEM;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(dir);
    if (fd < 0)
        return errno;
    int e = fsync(fd) != 0 ? errno : 0;
    close(fd);
    return e == EINVAL ? 0 : e; /* some file systems cannot sync a directory; nothing more to do then */
}

vs_status vs_ifile_writer_commit(vs_ifile_writer_t *w, const vs_ifile_header_t *hdr, char err[VS_ERR_LEN])
{
    if (w == NULL)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "vs_ifile_writer_commit: NULL writer");
    vs_status st = VS_OK;
    if (w->failed_errno != 0)
        st = failed_status(w, err);
    else if (hdr == NULL)
        st = vs_errf(err, VS_ERR_INVALID_ARGUMENT, "%s: commit with a NULL header", w->path);
    else if (w->in_section)
        st = vs_errf(err, VS_ERR_FAILED_PRECONDITION, "%s: commit with section '%s' still open", w->path,
                     w->sec[w->n_sections].tag);
    else
        st = check_header_args(hdr, w->path, err);
    if (st != VS_OK) {
        vs_ifile_writer_abort(w);
        return st;
    }

    /* Section table, then its CRC block. */
    pad_to_align(w);
    uint64_t table_offset = w->pos;
    unsigned char table[(VS_IFILE_MAX_SECTIONS + 1) * ENTRY_SIZE];
    size_t entries_len = w->n_sections * ENTRY_SIZE;
    memset(table, 0, entries_len + ENTRY_SIZE);
    for (size_t i = 0; i < w->n_sections; i++) {
        unsigned char *e = table + i * ENTRY_SIZE;
        memcpy(e, w->sec[i].tag, strlen(w->sec[i].tag));
        put_le64(e + E_OFFSET, w->sec[i].offset);
        put_le64(e + E_LENGTH, w->sec[i].length);
        put_le32(e + E_CRC, w->sec[i].crc);
    }
    put_le32(table + entries_len, vs_crc32c(0, table, entries_len));
    put(w, table, entries_len + ENTRY_SIZE);
    flush_buf(w);
    if (w->failed_errno != 0) {
        st = failed_status(w, err);
        vs_ifile_writer_abort(w);
        return st;
    }

    unsigned char header[VS_IFILE_HEADER_SIZE];
    encode_header(header, hdr, (uint32_t)w->n_sections, table_offset);
    const char *step = "writing the header of";
    int e = write_all(w->fd, header, sizeof header, 0);
    if (e == 0) {
        step = "syncing";
        if (fsync(w->fd) != 0)
            e = errno;
    }
    if (e == 0) {
        step = "closing";
        int rc = close(w->fd);
        w->fd = -1;
        if (rc != 0)
            e = errno;
    }
    if (e == 0) {
        step = "renaming";
        if (rename(w->tmp, w->path) != 0)
            e = errno;
    }
    if (e != 0) {
        st = vs_errf(err, VS_ERR_IO, "%s: %s %s failed: %s", w->path, step, w->tmp, strerror(e));
        vs_ifile_writer_abort(w);
        return st;
    }
    e = sync_parent_dir(w->path);
    if (e != 0)
        st = vs_errf(err, VS_ERR_IO, "%s: written, but syncing its directory failed: %s", w->path,
                     strerror(e));
    writer_free(w);
    return st;
}

void vs_ifile_writer_abort(vs_ifile_writer_t *w)
{
    if (w == NULL)
        return;
    if (w->fd >= 0) {
        close(w->fd);
        w->fd = -1;
    }
    unlink(w->tmp);
    writer_free(w);
}

/* ---------------------------------------------------------------------------------------------------
 * Reader
 * ------------------------------------------------------------------------------------------------- */

/* A NUL-padded string field of n bytes at byte off: NUL-terminated, and zeros after the terminator. */
static vs_status check_string_field(const vs_ifile_t *f, size_t off, size_t n, const char *name, char *out,
                                    char *err)
{
    const unsigned char *p = f->map + off;
    const unsigned char *nul = memchr(p, 0, n);
    if (nul == NULL)
        return vs_errf(err, VS_ERR_CORRUPT, "%s: header: %s string at byte %zu is not NUL-terminated",
                       f->path, name, off);
    size_t len = (size_t)(nul - p);
    size_t nz = first_nonzero(nul, n - len);
    if (nz != n - len)
        return vs_errf(err, VS_ERR_CORRUPT, "%s: header: nonzero byte at %zu after the end of the %s string",
                       f->path, off + len + nz, name);
    memcpy(out, p, len + 1);
    return VS_OK;
}

static vs_status validate_header(vs_ifile_t *f, uint32_t *out_n_sections, uint64_t *out_table_offset,
                                 char *err)
{
    const unsigned char *b = f->map;
    size_t len = f->map_len;
    const char *path = f->path;
    size_t magic_n = len < 8 ? len : 8;
    if (memcmp(b, VS_IFILE_MAGIC, magic_n) != 0)
        return vs_errf(err, VS_ERR_CORRUPT, "%s: not a vecshard index file (no \"%s\" magic at byte 0)", path,
                       VS_IFILE_MAGIC);
    if (len < VS_IFILE_HEADER_SIZE)
        return vs_errf(err, VS_ERR_CORRUPT, "%s: truncated: file is %zu bytes, the header needs %u", path,
                       len, VS_IFILE_HEADER_SIZE);
    /* The version decides the layout, so it is read before the CRC whose place it defines. */
    uint32_t version = get_le32(b + H_VERSION);
    if (version > VS_IFILE_FORMAT_VERSION)
        return vs_errf(
            err, VS_ERR_UNSUPPORTED,
            "%s: index file format version %u is newer than this build reads (%u); upgrade vecshard", path,
            (unsigned)version, VS_IFILE_FORMAT_VERSION);
    if (version == 0)
        return vs_errf(err, VS_ERR_CORRUPT, "%s: header: format version 0 at byte %d", path, H_VERSION);
    uint32_t stored = get_le32(b + H_CRC), computed = header_crc(b);
    if (stored != computed)
        return vs_errf(err, VS_ERR_CORRUPT,
                       "%s: header fails its CRC32C check (stored 0x%08x, computed 0x%08x)", path,
                       (unsigned)stored, (unsigned)computed);
    uint32_t header_size = get_le32(b + H_HEADER_SIZE);
    if (header_size != VS_IFILE_HEADER_SIZE)
        return vs_errf(err, VS_ERR_CORRUPT, "%s: header: header_size %u at byte %d, format version 1 has %u",
                       path, (unsigned)header_size, H_HEADER_SIZE, VS_IFILE_HEADER_SIZE);
    uint32_t type = get_le32(b + H_INDEX_TYPE), metric = get_le32(b + H_METRIC), dim = get_le32(b + H_DIM);
    if (!type_known(type))
        return vs_errf(err, VS_ERR_UNSUPPORTED,
                       "%s: header: index type %u (byte %d) is not known to this build", path, (unsigned)type,
                       H_INDEX_TYPE);
    if (!metric_known(metric))
        return vs_errf(err, VS_ERR_UNSUPPORTED, "%s: header: metric %u (byte %d) is not known to this build",
                       path, (unsigned)metric, H_METRIC);
    if (dim == 0 || dim > VS_IFILE_MAX_DIM)
        return vs_errf(err, VS_ERR_CORRUPT, "%s: header: dim %u at byte %d is outside 1..%u", path,
                       (unsigned)dim, H_DIM, VS_IFILE_MAX_DIM);
    uint32_t n_sections = get_le32(b + H_N_SECTIONS);
    if (n_sections > VS_IFILE_MAX_SECTIONS)
        return vs_errf(err, VS_ERR_CORRUPT, "%s: header: %u sections (byte %d), at most %u are allowed", path,
                       (unsigned)n_sections, H_N_SECTIONS, VS_IFILE_MAX_SECTIONS);
    vs_ifile_header_t *h = &f->hdr;
    vs_status st = check_string_field(f, H_FACTORY, sizeof h->factory, "factory", h->factory, err);
    if (st == VS_OK)
        st = check_string_field(f, H_MODEL_VERSION, sizeof h->model_version, "model_version",
                                h->model_version, err);
    if (st != VS_OK)
        return st;
    size_t nz = first_nonzero(b + H_RESERVED, H_CRC - H_RESERVED);
    if (nz != H_CRC - H_RESERVED)
        return vs_errf(err, VS_ERR_CORRUPT, "%s: header: reserved byte %zu is not zero", path,
                       H_RESERVED + nz);
    h->index_type = (vs_index_type)type;
    h->metric = (vs_metric)metric;
    h->dim = dim;
    h->n_vectors = get_le64(b + H_N_VECTORS);
    h->build_time_unix = get_le64(b + H_BUILD_TIME);
    memcpy(h->params, b + H_PARAMS, sizeof h->params);
    *out_n_sections = n_sections;
    *out_table_offset = get_le64(b + H_TABLE_OFFSET);
    return VS_OK;
}

/* Checks that bytes [from, to) (a gap before a section or the table) are zero. */
static vs_status check_gap(const vs_ifile_t *f, uint64_t from, uint64_t to, const char *before_what,
                           const char *tag, char *err)
{
    size_t nz = first_nonzero(f->map + from, (size_t)(to - from));
    if (nz != (size_t)(to - from))
        return vs_errf(err, VS_ERR_CORRUPT, "%s: nonzero padding byte at %" PRIu64 " before %s%s%s", f->path,
                       from + nz, before_what, tag != NULL ? tag : "", tag != NULL ? "'" : "");
    return VS_OK;
}

static int is_lazy(const char *const *lazy, const char *tag)
{
    for (size_t i = 0; lazy && lazy[i]; i++)
        if (strcmp(lazy[i], tag) == 0)
            return 1;
    return 0;
}

static vs_status validate_table(vs_ifile_t *f, uint32_t n, uint64_t table_off, const char *const *lazy,
                                char *err)
{
    const unsigned char *b = f->map;
    const char *path = f->path;
    uint64_t len = f->map_len;
    uint64_t entries_len = (uint64_t)n * ENTRY_SIZE, table_len = entries_len + ENTRY_SIZE;
    if (table_off % VS_IFILE_ALIGN != 0 || table_off < VS_IFILE_HEADER_SIZE)
        return vs_errf(err, VS_ERR_CORRUPT,
                       "%s: header: section table offset %" PRIu64
                       " (byte %d) is not a 64-byte-aligned offset past the header",
                       path, table_off, H_TABLE_OFFSET);
    if (table_off > len || len - table_off < table_len) {
        uint64_t need = table_off > UINT64_MAX - table_len ? UINT64_MAX : table_off + table_len;
        return vs_errf(err, VS_ERR_CORRUPT,
                       "%s: truncated: file is %" PRIu64 " bytes, the section table needs %" PRIu64, path,
                       len, need);
    }
    if (len - table_off > table_len)
        return vs_errf(err, VS_ERR_CORRUPT,
                       "%s: %" PRIu64 " trailing bytes after the section table, which ends at byte %" PRIu64,
                       path, len - table_off - table_len, table_off + table_len);
    const unsigned char *t = b + table_off;
    uint32_t stored = get_le32(t + entries_len), computed = vs_crc32c(0, t, (size_t)entries_len);
    if (stored != computed)
        return vs_errf(err, VS_ERR_CORRUPT,
                       "%s: section table at byte %" PRIu64
                       " fails its CRC32C check (stored 0x%08x, computed 0x%08x)",
                       path, table_off, (unsigned)stored, (unsigned)computed);
    size_t nz = first_nonzero(t + entries_len + 4, ENTRY_SIZE - 4);
    if (nz != ENTRY_SIZE - 4)
        return vs_errf(err, VS_ERR_CORRUPT, "%s: section table: nonzero padding byte at %" PRIu64, path,
                       table_off + entries_len + 4 + nz);

    uint64_t prev_end = VS_IFILE_HEADER_SIZE;
    const char *prev_tag = NULL;
    for (uint32_t i = 0; i < n; i++) {
        const unsigned char *e = t + (size_t)i * ENTRY_SIZE;
        uint64_t at = table_off + (uint64_t)i * ENTRY_SIZE;
        if (!tag_field_ok(e))
            return vs_errf(err, VS_ERR_CORRUPT,
                           "%s: section table entry %u (byte %" PRIu64 ") has an invalid tag", path,
                           (unsigned)i, at);
        section_t *s = &f->sec[i];
        memcpy(s->tag, e, sizeof s->tag);
        for (uint32_t j = 0; j < i; j++)
            if (strcmp(f->sec[j].tag, s->tag) == 0)
                return vs_errf(err, VS_ERR_CORRUPT,
                               "%s: section table: tag '%s' appears twice (entries %u and %u)", path, s->tag,
                               (unsigned)j, (unsigned)i);
        s->offset = get_le64(e + E_OFFSET);
        s->length = get_le64(e + E_LENGTH);
        s->crc = get_le32(e + E_CRC);
        uint32_t flags = get_le32(e + E_FLAGS);
        if (flags != 0)
            return vs_errf(err, VS_ERR_UNSUPPORTED,
                           "%s: section '%s' has flags 0x%x that this build does not know (newer writer?)",
                           path, s->tag, (unsigned)flags);
        nz = first_nonzero(e + E_RESERVED, ENTRY_SIZE - E_RESERVED);
        if (nz != ENTRY_SIZE - E_RESERVED)
            return vs_errf(err, VS_ERR_CORRUPT,
                           "%s: section table entry %u ('%s'): reserved byte %" PRIu64 " is not zero", path,
                           (unsigned)i, s->tag, at + E_RESERVED + nz);
        if (s->offset % VS_IFILE_ALIGN != 0)
            return vs_errf(err, VS_ERR_CORRUPT, "%s: section '%s': offset %" PRIu64 " is not 64-byte aligned",
                           path, s->tag, s->offset);
        if (s->offset < prev_end)
            return vs_errf(err, VS_ERR_CORRUPT,
                           "%s: section '%s' at byte %" PRIu64 " overlaps %s%s%s, which ends at byte %" PRIu64
                           " (sections must be in file order)",
                           path, s->tag, s->offset, prev_tag != NULL ? "section '" : "the header",
                           prev_tag != NULL ? prev_tag : "", prev_tag != NULL ? "'" : "", prev_end);
        if (s->offset > table_off || s->length > table_off - s->offset)
            return vs_errf(err, VS_ERR_CORRUPT,
                           "%s: section '%s' (byte %" PRIu64 ", %" PRIu64
                           " bytes) runs past the section table at byte %" PRIu64,
                           path, s->tag, s->offset, s->length, table_off);
        prev_end = s->offset + s->length;
        prev_tag = s->tag;
    }
    /* With the order known, the gaps between sections and before the table must be zero. */
    prev_end = VS_IFILE_HEADER_SIZE;
    for (uint32_t i = 0; i < n; i++) {
        vs_status st = check_gap(f, prev_end, f->sec[i].offset, "section '", f->sec[i].tag, err);
        if (st != VS_OK)
            return st;
        prev_end = f->sec[i].offset + f->sec[i].length;
    }
    vs_status st = check_gap(f, prev_end, table_off, "the section table", NULL, err);
    if (st != VS_OK)
        return st;
    f->n_sections = n;

    /* Only now, with every offset known to be inside the file, the expensive part: every byte's CRC. */
    for (uint32_t i = 0; i < n; i++) {
        section_t *s = &f->sec[i];
        if ((s->lazy = is_lazy(lazy, s->tag)) != 0)
            continue;
        uint32_t c = vs_crc32c(0, b + s->offset, (size_t)s->length);
        if (c != s->crc)
            return vs_errf(
                err, VS_ERR_CORRUPT,
                "%s: section '%s' fails its CRC32C check (stored 0x%08x, computed 0x%08x); it spans "
                "bytes %" PRIu64 "..%" PRIu64,
                path, s->tag, (unsigned)s->crc, (unsigned)c, s->offset, s->offset + s->length);
    }
    return VS_OK;
}

void vs_ifile_close(vs_ifile_t *f)
{
    if (f == NULL)
        return;
    if (f->map != NULL)
        munmap((void *)(uintptr_t)f->map, f->map_len);
    free(f->path);
    free(f);
}

vs_status vs_ifile_open(const char *path, vs_ifile_t **out, char err[VS_ERR_LEN])
{
    return vs_ifile_open_lazy(path, NULL, out, err);
}

vs_status vs_ifile_open_lazy(const char *path, const char *const *lazy, vs_ifile_t **out, char err[VS_ERR_LEN])
{
    if (path == NULL || out == NULL)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "vs_ifile_open: NULL %s", path == NULL ? "path" : "out");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return vs_errf(err, e == ENOENT ? VS_ERR_NOT_FOUND : VS_ERR_IO, "open %s: %s", path, strerror(e));
    }
    struct stat stt;
    if (fstat(fd, &stt) != 0) {
        int e = errno;
        close(fd);
        return vs_errf(err, VS_ERR_IO, "stat %s: %s", path, strerror(e));
    }
    if (!S_ISREG(stt.st_mode)) {
        close(fd);
        return vs_errf(err, VS_ERR_IO, "%s: not a regular file", path);
    }
    if ((uintmax_t)stt.st_size > (uintmax_t)SIZE_MAX) {
        close(fd);
        return vs_errf(err, VS_ERR_IO, "%s: file too large to map (%jd bytes)", path, (intmax_t)stt.st_size);
    }
    size_t len = (size_t)stt.st_size;
    if (len == 0) {
        close(fd);
        return vs_errf(err, VS_ERR_CORRUPT, "%s: truncated: file is 0 bytes, the header needs %u", path,
                       VS_IFILE_HEADER_SIZE);
    }
    vs_ifile_t *f = calloc(1, sizeof *f);
    size_t plen = strlen(path);
    char *pcopy = malloc(plen + 1);
    if (f == NULL || pcopy == NULL) {
        close(fd);
        free(f);
        free(pcopy);
        return vs_errf(err, VS_ERR_NOMEM, "%s: out of memory", path);
    }
    memcpy(pcopy, path, plen + 1);
    f->path = pcopy;
    void *map = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
    int e = errno;
    close(fd);
    if (map == MAP_FAILED) {
        vs_ifile_close(f);
        return vs_errf(err, VS_ERR_IO, "mmap %s (%zu bytes): %s", path, len, strerror(e));
    }
    f->map = map;
    f->map_len = len;

    uint32_t n_sections = 0;
    uint64_t table_off = 0;
    vs_status st = validate_header(f, &n_sections, &table_off, err);
    if (st == VS_OK)
        st = validate_table(f, n_sections, table_off, lazy, err);
    if (st != VS_OK) {
        vs_ifile_close(f);
        return st;
    }
    *out = f;
    return VS_OK;
}

const vs_ifile_header_t *vs_ifile_header(const vs_ifile_t *f)
{
    return &f->hdr;
}

/* Section tag of f, or NULL with err saying so (VS_ERR_NOT_FOUND). */
static const section_t *find_section(const vs_ifile_t *f, const char *tag, char *err)
{
    for (size_t i = 0; i < f->n_sections; i++)
        if (strcmp(f->sec[i].tag, tag) == 0)
            return &f->sec[i];
    vs_errf(err, VS_ERR_NOT_FOUND, "%s: no section '%.40s' in this index file", f->path, tag);
    return NULL;
}

vs_status vs_ifile_section(const vs_ifile_t *f, const char *tag, const void **out_data, size_t *out_len,
                           char err[VS_ERR_LEN])
{
    if (f == NULL || tag == NULL || out_data == NULL || out_len == NULL)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "vs_ifile_section: NULL argument");
    const section_t *s = find_section(f, tag, err);
    if (!s)
        return VS_ERR_NOT_FOUND;
    *out_data = f->map + s->offset;
    *out_len = (size_t)s->length;
    return VS_OK;
}

vs_status vs_ifile_section_span(const vs_ifile_t *f, const char *tag, uint64_t *out_offset, uint64_t *out_len,
                                char err[VS_ERR_LEN])
{
    const section_t *s = find_section(f, tag, err);
    if (!s)
        return VS_ERR_NOT_FOUND;
    *out_offset = s->offset;
    *out_len = s->length;
    return VS_OK;
}

vs_status vs_ifile_verify_section(const vs_ifile_t *f, const char *tag, double bytes_per_s,
                                  const volatile int *stop, char err[VS_ERR_LEN])
{
    const section_t *s = find_section(f, tag, err);
    if (!s)
        return VS_ERR_NOT_FOUND;
    int fd = open(f->path, O_RDONLY | O_CLOEXEC | O_DIRECT);
    if (fd < 0)
        fd = open(f->path, O_RDONLY | O_CLOEXEC); /* a file system without O_DIRECT */
    if (fd < 0)
        return vs_errf(err, VS_ERR_IO, "open %s: %s", f->path, strerror(errno));
    enum { CHUNK = 1 << 20, BLOCK = 4096 };
    unsigned char *buf = NULL;
    if (posix_memalign((void **)&buf, BLOCK, CHUNK + 2 * BLOCK) != 0) {
        close(fd);
        return vs_errf(err, VS_ERR_NOMEM, "%s: out of memory", f->path);
    }
    uint32_t c = 0;
    vs_status st = VS_OK;
    const uint64_t end = s->offset + s->length;
    double t0 = vs_now_s();
    for (uint64_t at = s->offset; at < end && st == VS_OK;) {
        if (stop && *stop) {
            st = vs_errf(err, VS_ERR_CANCELLED, "%s: verification of '%s' stopped", f->path, tag);
            break;
        }
        uint64_t a0 = at / BLOCK * BLOCK, want = end - at < CHUNK ? end - at : CHUNK;
        uint64_t a1 = (at + want + BLOCK - 1) / BLOCK * BLOCK;
        ssize_t got = pread(fd, buf, (size_t)(a1 - a0), (off_t)a0);
        if (got < 0 || (uint64_t)got < at + want - a0) {
            st = vs_errf(err, VS_ERR_IO, "%s: read of '%s' at byte %" PRIu64 ": %s", f->path, tag, at,
                         got < 0 ? strerror(errno) : "short read");
            break;
        }
        c = vs_crc32c(c, buf + (at - a0), (size_t)want);
        at += want;
        if (bytes_per_s > 0) { /* at most bytes_per_s on average: sleep what the pace asks, in slices */
            double ahead;
            while ((ahead = (double)(at - s->offset) / bytes_per_s - (vs_now_s() - t0)) > 0 && !(stop && *stop))
                usleep((useconds_t)(ahead < 0.1 ? ahead * 1e6 : 1e5));
        }
    }
    close(fd);
    free(buf);
    if (st == VS_OK && c != s->crc)
        st = vs_errf(err, VS_ERR_CORRUPT,
                     "%s: section '%s' fails its CRC32C check (stored 0x%08x, computed 0x%08x); it spans "
                     "bytes %" PRIu64 "..%" PRIu64,
                     f->path, tag, (unsigned)s->crc, (unsigned)c, s->offset, end);
    return st;
}

static uint32_t content_crc(const vs_ifile_t *f, uint32_t seed)
{
    uint32_t c = vs_crc32c(seed, f->map, VS_IFILE_HEADER_SIZE);
    for (size_t i = 0; i < f->n_sections; i++) {
        unsigned char e[40] = {0};
        memcpy(e, f->sec[i].tag, strlen(f->sec[i].tag));
        put_le64(e + 16, f->sec[i].offset);
        put_le64(e + 24, f->sec[i].length);
        put_le32(e + 32, f->sec[i].crc);
        c = vs_crc32c(c, e, sizeof e);
    }
    return c;
}

void vs_ifile_content_id(const vs_ifile_t *f, char out[17])
{
    snprintf(out, 17, "%08x%08x", content_crc(f, 0), content_crc(f, 0x9e3779b9u));
}

vs_status vs_ifile_section_crc(const vs_ifile_t *f, const char *tag, uint32_t *out_crc, char err[VS_ERR_LEN])
{
    const section_t *s = find_section(f, tag, err);
    if (!s)
        return VS_ERR_NOT_FOUND;
    *out_crc = s->crc;
    return VS_OK;
}

size_t vs_ifile_section_count(const vs_ifile_t *f)
{
    return f->n_sections;
}

vs_status vs_ifile_section_at(const vs_ifile_t *f, size_t i, const char **out_tag, const void **out_data,
                              size_t *out_len, char err[VS_ERR_LEN])
{
    if (f == NULL || out_tag == NULL || out_data == NULL || out_len == NULL)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "vs_ifile_section_at: NULL argument");
    if (i >= f->n_sections)
        return vs_errf(err, VS_ERR_OUT_OF_RANGE, "%s: section %zu requested, the file has %zu", f->path, i,
                       f->n_sections);
    *out_tag = f->sec[i].tag;
    *out_data = f->map + f->sec[i].offset;
    *out_len = (size_t)f->sec[i].length;
    return VS_OK;
}

size_t vs_ifile_mapped_bytes(const vs_ifile_t *f)
{
    return f->map_len;
}

vs_status vs_ifile_section_sized(const vs_ifile_t *f, const char *path, const char *tag, size_t want,
                                 const void **out_data, char err[VS_ERR_LEN])
{
    size_t len = 0;
    const void *data = NULL;
    vs_status st = vs_ifile_section(f, tag, &data, &len, err);
    if (st != VS_OK)
        return st == VS_ERR_NOT_FOUND ? vs_errf(err, VS_ERR_CORRUPT, "%s: section '%s' is missing", path, tag)
                                      : st;
    if (len != want)
        return vs_errf(err, VS_ERR_CORRUPT, "%s: section '%s' has %zu bytes, the index needs %zu", path, tag,
                       len, want);
    *out_data = data;
    return VS_OK;
}
