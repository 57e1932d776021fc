/* auth.h: client authentication of the coordinator (issue 18, security half): bearer tokens with
 * per-token permissions. The tokens file (--auth-tokens) holds one line per token,
 *     <permission> <sha256 hex of the token> [name]
 * permission: search (Search), write (Search, Upsert, Delete) or admin (everything, Status too); '#'
 * starts a comment. It holds no secret (hashes only); clients send "authorization: Bearer <token>".
 * `vecshard token new --permission P [--name N]` makes a token and its line. Health checks are never
 * authenticated (probes). Tokens are compared by hash in constant time; no token is ever logged. Pure: no
 * network; thread-safe once loaded. */
#ifndef VS_COORDINATOR_AUTH_H
#define VS_COORDINATOR_AUTH_H

#include <stddef.h>

#include "common/status.h"

typedef enum vs_auth_perm {
    VS_AUTH_NONE = 0,
    VS_AUTH_SEARCH = 1,
    VS_AUTH_WRITE = 2,
    VS_AUTH_ADMIN = 3
} vs_auth_perm;

typedef struct vs_auth vs_auth_t;

/* Loads the tokens file: VS_ERR_CORRUPT naming the line when malformed, VS_ERR_NOT_FOUND / VS_ERR_IO. */
vs_status vs_auth_load(const char *path, vs_auth_t **out, char err[VS_ERR_LEN]);
void vs_auth_destroy(vs_auth_t *a);
size_t vs_auth_count(const vs_auth_t *a);

/* The permission a method path needs (VS_AUTH_NONE: none, health checks). */
vs_auth_perm vs_auth_required(const char *path);

typedef enum vs_auth_outcome {
    VS_AUTH_OK = 0,
    VS_AUTH_MISSING,
    VS_AUTH_INVALID,
    VS_AUTH_DENIED
} vs_auth_outcome;

/* Checks an "authorization" metadata value (NULL = absent) for a call needing `need`: VS_AUTH_OK, or why
 * not with a message (naming the token's name and permission when known, never the token). */
vs_auth_outcome vs_auth_check(const vs_auth_t *a, const char *authorization, vs_auth_perm need,
                              char msg[VS_ERR_LEN]);

const char *vs_auth_perm_name(vs_auth_perm p);

/* The name of the token an "authorization" value carries (the client's identity for quotas; borrowed
 * from a), or NULL when it carries no known token. */
const char *vs_auth_name(const vs_auth_t *a, const char *authorization);

/* SHA-256 of s as 64 lower-case hex digits into out (65 bytes). */
void vs_auth_hash(const char *s, char out[65]);

#endif
