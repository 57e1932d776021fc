/* value.c: see value.h. Little-endian stores through memcpy (x86-64 and aarch64 are little-endian; a
 * big-endian build would byte-swap here). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/crc32c.h"
#include "coordinator/nbrs/value.h"

static int name_chars_ok(const char *s, size_t max, const char *extra)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                 c == '_' || c == '-' || (c && strchr(extra, c));
        if (!ok)
            return 0;
    }
    return 1;
}

int vs_nbrs_set_name_valid(const char *name)
{
    return name && name_chars_ok(name, VS_NBRS_MAX_NAME, "") && strcmp(name, ".") != 0 &&
           strcmp(name, "..") != 0;
}

int vs_nbrs_prefix_valid(const char *prefix)
{
    return prefix && name_chars_ok(prefix, VS_NBRS_MAX_PREFIX, ":");
}

uint32_t vs_nbrs_set_tag(const char *set)
{
    return vs_crc32c(0, set, strlen(set));
}

size_t vs_nbrs_value_max_bytes(vs_nbrs_format f, size_t n, size_t set_len)
{
    if (f == VS_NBRS_BINARY)
        return VS_NBRS_HEADER_BYTES + 12 * n;
    /* {"set":"","ids":[],"scores":[]} + per neighbour an id (<= 20 chars) and a score (<= 16) with commas */
    return 40 + set_len + n * (21 + 17) + 1;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4);
}

size_t vs_nbrs_value_encode(vs_nbrs_format f, const char *set, int similarity, const int64_t *ids,
                            const float *scores, size_t k, uint8_t *buf)
{
    size_t n = 0;
    while (n < k && ids[n] >= 0)
        n++;
    if (f == VS_NBRS_BINARY) {
        memcpy(buf, VS_NBRS_MAGIC, 4);
        put_u32(buf + 4, (uint32_t)n);
        put_u32(buf + 8, vs_nbrs_set_tag(set));
        put_u32(buf + 12, similarity ? VS_NBRS_FLAG_SIMILARITY : 0);
        memcpy(buf + VS_NBRS_HEADER_BYTES, ids, n * 8);
        memcpy(buf + VS_NBRS_HEADER_BYTES + 8 * n, scores, n * 4);
        return VS_NBRS_HEADER_BYTES + 12 * n;
    }
    char *p = (char *)buf;
    p += sprintf(p, "{\"set\":\"%s\",\"ids\":[", set);
    for (size_t i = 0; i < n; i++)
        p += sprintf(p, i ? ",%lld" : "%lld", (long long)ids[i]);
    p += sprintf(p, "],\"scores\":[");
    for (size_t i = 0; i < n; i++) {
        if (i)
            *p++ = ',';
        p += isfinite(scores[i]) ? sprintf(p, "%.9g", (double)scores[i]) : sprintf(p, "null");
    }
    p += sprintf(p, "]}");
    return (size_t)(p - (char *)buf);
}

vs_status vs_nbrs_value_decode(const uint8_t *buf, size_t len, vs_nbrs_value_t *out, char err[VS_ERR_LEN])
{
    if (len < VS_NBRS_HEADER_BYTES || memcmp(buf, VS_NBRS_MAGIC, 4) != 0)
        return vs_errf(err, VS_ERR_CORRUPT, "neighbours value: %zu bytes without the %s header", len,
                       VS_NBRS_MAGIC);
    vs_nbrs_value_t v;
    memcpy(&v.n, buf + 4, 4);
    memcpy(&v.set_tag, buf + 8, 4);
    memcpy(&v.flags, buf + 12, 4);
    if ((len - VS_NBRS_HEADER_BYTES) % 12 != 0 || (len - VS_NBRS_HEADER_BYTES) / 12 != v.n)
        return vs_errf(err, VS_ERR_CORRUPT, "neighbours value: %zu bytes for %u neighbours (expected %zu)",
                       len, v.n, (size_t)VS_NBRS_HEADER_BYTES + 12 * (size_t)v.n);
    v.ids = buf + VS_NBRS_HEADER_BYTES;
    v.scores = v.ids + 8 * (size_t)v.n;
    *out = v;
    return VS_OK;
}

int64_t vs_nbrs_value_id(const vs_nbrs_value_t *v, size_t i)
{
    int64_t id;
    memcpy(&id, v->ids + 8 * i, 8);
    return id;
}

float vs_nbrs_value_score(const vs_nbrs_value_t *v, size_t i)
{
    float s;
    memcpy(&s, v->scores + 4 * i, 4);
    return s;
}

size_t vs_nbrs_key_data(char *buf, size_t n, const char *prefix, const char *set, const char *key,
                        size_t key_len)
{
    size_t pl = strlen(prefix), sl = strlen(set), total = pl + 1 + sl + 1 + key_len;
    if (total + 1 > n)
        return 0;
    memcpy(buf, prefix, pl);
    buf[pl] = '/';
    memcpy(buf + pl + 1, set, sl);
    buf[pl + 1 + sl] = ':';
    memcpy(buf + pl + sl + 2, key, key_len);
    buf[total] = 0;
    return total;
}

static size_t fmt_key(size_t n, int len)
{
    return len > 0 && (size_t)len < n ? (size_t)len : 0;
}

size_t vs_nbrs_key_current(char *buf, size_t n, const char *prefix)
{
    return fmt_key(n, snprintf(buf, n, "%s:#current", prefix));
}

size_t vs_nbrs_key_sets(char *buf, size_t n, const char *prefix)
{
    return fmt_key(n, snprintf(buf, n, "%s:#sets", prefix));
}

size_t vs_nbrs_key_meta(char *buf, size_t n, const char *prefix, const char *set)
{
    return fmt_key(n, snprintf(buf, n, "%s:#meta:%s", prefix, set));
}
