/* keys.c: the etcd key schema (keys.h). */
#include <stdio.h>
#include <string.h>

#include "common/cluster/keys.h"

int vs_cluster_name_valid(const char *s, size_t max_len)
{
    size_t n = strnlen(s, max_len + 1);
    if (n == 0 || n > max_len || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
              c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

static size_t put(char out[VS_KEY_LEN], int n)
{
    if (n < 0 || n >= VS_KEY_LEN) {
        out[0] = 0;
        return 0;
    }
    return (size_t)n;
}

static int cluster_ok(char out[VS_KEY_LEN], const char *cluster)
{
    out[0] = 0;
    return vs_cluster_name_valid(cluster, 64);
}

size_t vs_key_root(char out[VS_KEY_LEN], const char *cluster)
{
    return cluster_ok(out, cluster) ? put(out, snprintf(out, VS_KEY_LEN, "/vecshard/%s/", cluster)) : 0;
}

size_t vs_key_members_prefix(char out[VS_KEY_LEN], const char *cluster)
{
    return cluster_ok(out, cluster) ? put(out, snprintf(out, VS_KEY_LEN, "/vecshard/%s/members/", cluster))
                                    : 0;
}

size_t vs_key_member(char out[VS_KEY_LEN], const char *cluster, uint32_t partition, const char *replica_id)
{
    if (!cluster_ok(out, cluster) || !vs_cluster_name_valid(replica_id, VS_REPLICA_ID_MAX))
        return 0;
    return put(out, snprintf(out, VS_KEY_LEN, "/vecshard/%s/members/%u/%s", cluster, partition, replica_id));
}

size_t vs_key_versions_prefix(char out[VS_KEY_LEN], const char *cluster)
{
    return cluster_ok(out, cluster) ? put(out, snprintf(out, VS_KEY_LEN, "/vecshard/%s/versions/", cluster))
                                    : 0;
}

size_t vs_key_version(char out[VS_KEY_LEN], const char *cluster, const char *version)
{
    if (!cluster_ok(out, cluster) || !vs_cluster_name_valid(version, 64))
        return 0;
    return put(out, snprintf(out, VS_KEY_LEN, "/vecshard/%s/versions/%s", cluster, version));
}

size_t vs_key_active(char out[VS_KEY_LEN], const char *cluster)
{
    return cluster_ok(out, cluster) ? put(out, snprintf(out, VS_KEY_LEN, "/vecshard/%s/active", cluster)) : 0;
}

size_t vs_key_audit_prefix(char out[VS_KEY_LEN], const char *cluster)
{
    return cluster_ok(out, cluster) ? put(out, snprintf(out, VS_KEY_LEN, "/vecshard/%s/audit/", cluster)) : 0;
}

size_t vs_key_audit(char out[VS_KEY_LEN], const char *cluster, uint64_t unix_ms, uint32_t seq)
{
    if (!cluster_ok(out, cluster))
        return 0;
    return put(out, snprintf(out, VS_KEY_LEN, "/vecshard/%s/audit/%015llu-%06u", cluster,
                             (unsigned long long)unix_ms, seq));
}

/* 1 when the klen bytes at s equal the NUL-terminated lit. */
static int starts(const char *s, size_t klen, const char *lit, size_t *off)
{
    size_t n = strlen(lit);
    if (klen - *off < n || memcmp(s + *off, lit, n) != 0)
        return 0;
    *off += n;
    return 1;
}

/* Copies s[off..klen) into out if it is a valid name of at most max bytes. */
static int take_name(const char *s, size_t off, size_t klen, size_t max, char out[VS_REPLICA_ID_MAX + 1])
{
    char buf[VS_REPLICA_ID_MAX + 1];
    size_t n = klen - off;
    if (n == 0 || n > max || n > VS_REPLICA_ID_MAX)
        return 0;
    memcpy(buf, s + off, n);
    buf[n] = 0;
    if (!vs_cluster_name_valid(buf, max))
        return 0;
    if (out)
        memcpy(out, buf, n + 1);
    return 1;
}

vs_key_kind vs_key_parse(const char *cluster, const char *key, size_t klen, uint32_t *out_partition,
                         char out_name[VS_REPLICA_ID_MAX + 1])
{
    char root[VS_KEY_LEN];
    size_t rl = vs_key_root(root, cluster), off = 0;
    if (rl == 0 || !starts(key, klen, root, &off))
        return VS_KEY_OTHER;
    if (klen == off + 6 && memcmp(key + off, "active", 6) == 0)
        return VS_KEY_ACTIVE;
    if (starts(key, klen, "versions/", &off))
        return take_name(key, off, klen, 64, out_name) ? VS_KEY_VERSION : VS_KEY_OTHER;
    if (starts(key, klen, "audit/", &off))
        return klen > off ? VS_KEY_AUDIT : VS_KEY_OTHER;
    if (!starts(key, klen, "members/", &off))
        return VS_KEY_OTHER;
    uint64_t p = 0;
    size_t digits = 0;
    while (off < klen && key[off] >= '0' && key[off] <= '9' && digits < 10) {
        p = p * 10 + (uint64_t)(key[off++] - '0');
        digits++;
    }
    if (digits == 0 || p > UINT32_MAX || off >= klen || key[off] != '/')
        return VS_KEY_OTHER;
    off++;
    if (!take_name(key, off, klen, VS_REPLICA_ID_MAX, out_name))
        return VS_KEY_OTHER;
    if (out_partition)
        *out_partition = (uint32_t)p;
    return VS_KEY_MEMBER;
}
