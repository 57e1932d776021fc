/* auth.c: see auth.h. SHA-256 from OpenSSL's libcrypto (already in the process through gRPC's TLS). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "coordinator/auth.h"

typedef struct entry {
    unsigned char hash[32];
    vs_auth_perm perm;
    char name[64];
} entry_t;

struct vs_auth {
    entry_t *e;
    size_t n;
};

const char *vs_auth_perm_name(vs_auth_perm p)
{
    return p == VS_AUTH_SEARCH  ? "search"
           : p == VS_AUTH_WRITE ? "write"
           : p == VS_AUTH_ADMIN ? "admin"
                                : "none";
}

static int hexval(int c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

void vs_auth_hash(const char *s, char out[65])
{
    unsigned char h[32];
    SHA256((const unsigned char *)s, strlen(s), h);
    for (int i = 0; i < 32; i++)
        sprintf(out + 2 * i, "%02x", h[i]);
}

vs_status vs_auth_load(const char *path, vs_auth_t **out, char err[VS_ERR_LEN])
{
    FILE *f = fopen(path, "r");
    if (!f)
        return vs_errf(err, VS_ERR_NOT_FOUND, "auth tokens %s: cannot open", path);
    vs_auth_t *a = calloc(1, sizeof *a);
    vs_status st = a ? VS_OK : vs_errf(err, VS_ERR_NOMEM, "auth: out of memory");
    char line[512];
    size_t lineno = 0, cap = 0;
    while (st == VS_OK && fgets(line, sizeof line, f)) {
        lineno++;
        char perm_s[16] = "", hs[80] = "", nm[64] = "";
        char *p = line;
        while (isspace((unsigned char)*p))
            p++;
        if (!*p || *p == '#')
            continue;
        int got = sscanf(p, "%15s %79s %63s", perm_s, hs, nm);
        vs_auth_perm perm = strcmp(perm_s, "search") == 0  ? VS_AUTH_SEARCH
                            : strcmp(perm_s, "write") == 0 ? VS_AUTH_WRITE
                            : strcmp(perm_s, "admin") == 0 ? VS_AUTH_ADMIN
                                                           : VS_AUTH_NONE;
        if (got < 2 || perm == VS_AUTH_NONE || strlen(hs) != 64) {
            st = vs_errf(err, VS_ERR_CORRUPT,
                         "auth tokens %s line %zu: expected \"search|write|admin <sha256 hex> [name]\"", path,
                         lineno);
            break;
        }
        if (a->n == cap) {
            cap = cap ? 2 * cap : 16;
            entry_t *ne = realloc(a->e, cap * sizeof *ne);
            if (!ne) {
                st = vs_errf(err, VS_ERR_NOMEM, "auth: out of memory");
                break;
            }
            a->e = ne;
        }
        entry_t *e = &a->e[a->n];
        for (int i = 0; i < 32 && st == VS_OK; i++) {
            int hi = hexval(hs[2 * i]), lo = hexval(hs[2 * i + 1]);
            if (hi < 0 || lo < 0)
                st = vs_errf(err, VS_ERR_CORRUPT, "auth tokens %s line %zu: the hash is not hex", path,
                             lineno);
            e->hash[i] = (unsigned char)(hi << 4 | lo);
        }
        e->perm = perm;
        snprintf(e->name, sizeof e->name, "%s", got >= 3 ? nm : "unnamed");
        if (st == VS_OK)
            a->n++;
    }
    fclose(f);
    if (st == VS_OK && a->n == 0)
        st = vs_errf(err, VS_ERR_CORRUPT, "auth tokens %s: no token (every call would be refused)", path);
    if (st != VS_OK) {
        vs_auth_destroy(a);
        return st;
    }
    *out = a;
    return VS_OK;
}

void vs_auth_destroy(vs_auth_t *a)
{
    if (!a)
        return;
    free(a->e);
    free(a);
}

size_t vs_auth_count(const vs_auth_t *a)
{
    return a ? a->n : 0;
}

vs_auth_perm vs_auth_required(const char *path)
{
    if (strncmp(path, "/grpc.health.v1.Health/", 23) == 0)
        return VS_AUTH_NONE;
    if (strcmp(path, "/vecshard.v1.Coordinator/Search") == 0)
        return VS_AUTH_SEARCH;
    if (strcmp(path, "/vecshard.v1.Coordinator/Upsert") == 0 ||
        strcmp(path, "/vecshard.v1.Coordinator/Delete") == 0)
        return VS_AUTH_WRITE;
    return VS_AUTH_ADMIN; /* Status and anything added later: admin until decided otherwise */
}

/* The entry whose token `authorization` carries, or NULL (compared as vs_auth_check does). */
static const entry_t *lookup(const vs_auth_t *a, const char *authorization)
{
    if (!a || !authorization || strncasecmp(authorization, "Bearer ", 7) != 0 || !authorization[7])
        return NULL;
    unsigned char h[32];
    SHA256((const unsigned char *)authorization + 7, strlen(authorization + 7), h);
    const entry_t *hit = NULL;
    for (size_t i = 0; i < a->n; i++)
        if (CRYPTO_memcmp(h, a->e[i].hash, 32) == 0)
            hit = &a->e[i];
    return hit;
}

const char *vs_auth_name(const vs_auth_t *a, const char *authorization)
{
    const entry_t *e = lookup(a, authorization);
    return e ? e->name : NULL;
}

vs_auth_outcome vs_auth_check(const vs_auth_t *a, const char *authorization, vs_auth_perm need,
                              char msg[VS_ERR_LEN])
{
    if (need == VS_AUTH_NONE)
        return VS_AUTH_OK;
    if (!authorization || strncasecmp(authorization, "Bearer ", 7) != 0 || !authorization[7]) {
        snprintf(msg, VS_ERR_LEN, "missing credentials: send \"authorization: Bearer <token>\"");
        return VS_AUTH_MISSING;
    }
    unsigned char h[32];
    SHA256((const unsigned char *)authorization + 7, strlen(authorization + 7), h);
    const entry_t *hit = NULL;
    for (size_t i = 0; i < a->n; i++) /* every entry compared, in constant time each */
        if (CRYPTO_memcmp(h, a->e[i].hash, 32) == 0)
            hit = &a->e[i];
    if (!hit) {
        snprintf(msg, VS_ERR_LEN, "invalid token");
        return VS_AUTH_INVALID;
    }
    if (hit->perm < need) {
        snprintf(msg, VS_ERR_LEN, "token \"%s\" may %s, this call needs %s", hit->name,
                 vs_auth_perm_name(hit->perm), vs_auth_perm_name(need));
        return VS_AUTH_DENIED;
    }
    return VS_AUTH_OK;
}
