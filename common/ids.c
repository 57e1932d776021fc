/* ids.c: item-id files (ids.h). */
#include "common/ids.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static int has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* Parses the npy header of an int64 vector: descr '<i8', C order, shape (n,) or (n, 1). */
static vs_status npy_int64_header(const unsigned char *b, size_t len, const char *path, size_t *out_off,
                                  size_t *out_n, char *err)
{
    if (len < 10 || memcmp(b, "\x93NUMPY", 6) != 0)
        return vs_errf(err, VS_ERR_CORRUPT, "ids file %s: not an .npy file (bad magic)", path);
    size_t hlen, off;
    if (b[6] == 1) {
        hlen = (size_t)b[8] | (size_t)b[9] << 8;
        off = 10;
    } else if (b[6] == 2 || b[6] == 3) {
        if (len < 12)
            return vs_errf(err, VS_ERR_CORRUPT, "ids file %s: truncated header", path);
        hlen = (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 | (size_t)b[11] << 24;
        off = 12;
    } else {
        return vs_errf(err, VS_ERR_UNSUPPORTED, "ids file %s: npy version %u", path, b[6]);
    }
    if (hlen > 65536 || off + hlen > len)
        return vs_errf(err, VS_ERR_CORRUPT, "ids file %s: header of %zu bytes does not fit the file", path,
                       hlen);
    char h[65537];
    memcpy(h, b + off, hlen);
    h[hlen] = 0;
    const char *descr = strstr(h, "'descr'");
    const char *fo = strstr(h, "'fortran_order'");
    const char *shape = strstr(h, "'shape'");
    if (!descr || !fo || !shape)
        return vs_errf(err, VS_ERR_CORRUPT, "ids file %s: header lacks descr, fortran_order or shape", path);
    descr = strchr(descr + 7, '\'');
    if (!descr || (strncmp(descr, "'<i8'", 5) != 0 && strncmp(descr, "'<u8'", 5) != 0))
        return vs_errf(err, VS_ERR_UNSUPPORTED,
                       "ids file %s: dtype must be int64 ('<i8'), the header says %.40s", path,
                       descr ? descr : "?");
    fo += 15;
    while (*fo == ' ' || *fo == ':')
        fo++;
    if (strncmp(fo, "False", 5) != 0)
        return vs_errf(err, VS_ERR_UNSUPPORTED, "ids file %s: fortran_order arrays are not read", path);
    shape = strchr(shape, '(');
    char *end;
    errno = 0;
    unsigned long long n = shape ? strtoull(shape + 1, &end, 10) : 0;
    if (!shape || errno || end == shape + 1)
        return vs_errf(err, VS_ERR_CORRUPT, "ids file %s: unreadable shape", path);
    while (*end == ' ')
        end++;
    if (*end == ',') {
        end++;
        while (*end == ' ')
            end++;
        if (*end != ')' && !(end[0] == '1' && (end[1] == ')' || (end[1] == ',' && end[2] == ')'))))
            return vs_errf(err, VS_ERR_UNSUPPORTED, "ids file %s: shape must be (n,) or (n, 1)", path);
    } else if (*end != ')') {
        return vs_errf(err, VS_ERR_CORRUPT, "ids file %s: unreadable shape", path);
    }
    off += hlen;
    if (n > (len - off) / 8 || len - off != n * 8)
        return vs_errf(err, VS_ERR_CORRUPT, "ids file %s: %llu ids need %llu bytes of data, the file has %zu",
                       path, n, n * 8, len - off);
    *out_off = off;
    *out_n = (size_t)n;
    return VS_OK;
}

vs_status vs_ids_file_open(const char *path, vs_ids_file_t *f, char err[VS_ERR_LEN])
{
    memset(f, 0, sizeof *f);
    int npy = has_suffix(path, ".npy");
    if (!npy && !has_suffix(path, ".i64"))
        return vs_errf(
            err, VS_ERR_UNSUPPORTED,
            "ids file %s: unknown format (use .npy with int64 ids, or .i64: raw little-endian int64)", path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return vs_errf(err, errno == ENOENT ? VS_ERR_NOT_FOUND : VS_ERR_IO, "ids file %s: %s", path,
                       strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return vs_errf(err, VS_ERR_IO, "ids file %s: %s", path, strerror(errno));
    }
    size_t len = (size_t)st.st_size;
    void *map = len ? mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
    close(fd);
    if (len && map == MAP_FAILED)
        return vs_errf(err, VS_ERR_IO, "ids file %s: mmap: %s", path, strerror(errno));
    size_t off = 0, n = len / 8;
    vs_status s = VS_OK;
    if (npy)
        s = npy_int64_header(map, len, path, &off, &n, err);
    else if (len % 8 != 0)
        s = vs_errf(err, VS_ERR_CORRUPT, "ids file %s: %zu bytes is not a whole number of int64 ids", path,
                    len);
    if (s != VS_OK) {
        if (map)
            munmap(map, len);
        return s;
    }
    f->map = map;
    f->map_len = len;
    f->data = (const unsigned char *)map + off;
    f->n = n;
    return VS_OK;
}

void vs_ids_file_close(vs_ids_file_t *f)
{
    if (f->map)
        munmap(f->map, f->map_len);
    memset(f, 0, sizeof *f);
}

int64_t vs_ids_file_get(const vs_ids_file_t *f, size_t i)
{
    uint64_t v = 0;
    for (int b = 7; b >= 0; b--)
        v = v << 8 | f->data[i * 8 + (size_t)b];
    return (int64_t)v;
}
