/* etcd.h: a small etcd v3 client over the JSON gateway (etcd 3.4 /v3/ paths), built on libcurl and cJSON.
 *
 * What it does: binary-safe put/get/prefix range/delete, compare-and-swap transactions, leases (grant,
 * keepalive, revoke), compaction, a watch thread that keeps a prefix in sync (snapshot, then ordered
 * events, full resync after compaction or disconnection), and a session (a lease kept alive on its own
 * thread, with keys re-registered when the lease is lost). It is what the shard uses for membership and
 * the coordinator for its view of the cluster.
 * TLS and auth: https:// endpoints verified against a CA file, an optional client certificate (it must
 * have no CN: etcd's gateway refuses one once auth is on), and an RBAC user whose token
 * (/v3/auth/authenticate) is fetched before the first call and again whenever etcd refuses it (401: a
 * simple token expires after --auth-token-ttl of idleness, a changed password invalidates it; or "revision
 * of auth store is old" after any user or role change); the call is then retried once. A password file is read again at every authentication, so a rotated password is used
 * without a restart.
 * What it does not: gRPC, leader election recipes, or retries of non-idempotent calls after a request may
 * have reached the server.
 * Key design choice: the JSON gateway over plain HTTP/1.1, one short POST per unary call (curl easy
 * handles from a small pool under a mutex), one long-lived streaming POST per watch on its own thread;
 * everything etcd sends is validated and answered with a vs_status, never asserted. See docs/decisions.md
 * ("etcd client") for the timeouts, backoff values and the error mapping.
 *
 * Status mapping (every call): connection refused / unresolvable on every endpoint -> VS_ERR_UNAVAILABLE,
 * timeout -> VS_ERR_DEADLINE_EXCEEDED, gRPC code 5 (lease or key not found) -> VS_ERR_NOT_FOUND, code 11
 * (revision compacted or in the future) -> VS_ERR_OUT_OF_RANGE, code 3 -> VS_ERR_INVALID_ARGUMENT, code 14
 * -> VS_ERR_UNAVAILABLE, code 4 -> VS_ERR_DEADLINE_EXCEEDED, code 8 -> VS_ERR_RESOURCE_EXHAUSTED, a reply
 * over VS_ETCD_MAX_BODY bytes -> VS_ERR_RESOURCE_EXHAUSTED, malformed JSON -> VS_ERR_CORRUPT. */
#ifndef VS_COMMON_NET_ETCD_H
#define VS_COMMON_NET_ETCD_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

/* Largest reply body (or watch line) accepted from a server: 64 MiB. */
#define VS_ETCD_MAX_BODY ((size_t)64 << 20)
#define VS_ETCD_DEFAULT_TIMEOUT_MS 2000

/* Thread-safety: a vs_etcd_t may be used from any number of threads at once (each call takes a curl easy
 * handle from an internal pool under a mutex). */
typedef struct vs_etcd vs_etcd_t;

typedef struct vs_etcd_opts {
    const char *endpoints; /* "http://127.0.0.1:2379[,http://host:port...]"; borrowed, copied by create */
    int timeout_ms;        /* per unary call, all endpoint attempts included; <= 0 means 2000 */
    /* TLS and auth; each NULL field is taken from the environment (the same for every vecshard process
     * and tool, like etcdctl's ETCDCTL_*): $VECSHARD_ETCD_CA, $VECSHARD_ETCD_CERT, $VECSHARD_ETCD_KEY,
     * $VECSHARD_ETCD_USER, $VECSHARD_ETCD_PASSWORD_FILE (a file holding the password: a mounted Secret)
     * or $VECSHARD_ETCD_PASSWORD. All borrowed, copied by create. */
    const char *ca_file;   /* roots for https:// endpoints (NULL: the system's) */
    const char *cert_file; /* client certificate + key (PEM) for etcd --client-cert-auth */
    const char *key_file;
    const char *user;      /* RBAC user; NULL = no authentication */
    const char *password;
} vs_etcd_opts_t;

/* Parses the endpoint list and prepares the client; does not contact the server (the first call
 * authenticates). Returns VS_ERR_INVALID_ARGUMENT for an empty list, an endpoint that is not http:// or
 * https://, a user without a password or with an unreadable password file, a user with an http:// endpoint
 * (a password is never sent in plain text), VS_ERR_NOMEM.
 * *out is freed with vs_etcd_destroy. */
vs_status vs_etcd_create(const vs_etcd_opts_t *o, vs_etcd_t **out, char err[VS_ERR_LEN]);

/* Tokens fetched for the user so far: the first, then one after each expiry or refusal (0 without a
 * user). */
uint64_t vs_etcd_authentications(const vs_etcd_t *e);

/* Frees the client. Every watch and session made from it must be stopped/closed first. NULL is a no-op. */
void vs_etcd_destroy(vs_etcd_t *e);

/* One key-value pair as etcd holds it. key and value are malloc'd and owned by the enclosing
 * vs_etcd_kvs_t; each has one extra NUL byte after its length so text values can be printed directly. */
typedef struct vs_etcd_kv {
    char *key;
    size_t key_len;
    char *value;
    size_t value_len;
    int64_t create_revision, mod_revision, version, lease;
} vs_etcd_kv_t;

/* A range result in caller storage. Zero-initialise (or let a call fill it), free with vs_etcd_kvs_fini. */
typedef struct vs_etcd_kvs {
    vs_etcd_kv_t *kvs;
    size_t n;
    int64_t revision; /* header revision: the store revision the read saw */
} vs_etcd_kvs_t;

/* Frees the pairs and zeroes *r. Safe on a zeroed struct and on NULL. */
void vs_etcd_kvs_fini(vs_etcd_kvs_t *r);

/* Puts key -> value (either may be empty, binary-safe), attached to lease when lease != 0.
 * *out_revision (nullable) receives the revision of the write. A dead lease gives VS_ERR_NOT_FOUND. */
vs_status vs_etcd_put(vs_etcd_t *e, const void *key, size_t klen, const void *val, size_t vlen, int64_t lease,
                      int64_t *out_revision, char err[VS_ERR_LEN]);

/* Reads one key: out->n is 0 (absent) or 1. *out is overwritten (not freed first); free with
 * vs_etcd_kvs_fini. On failure *out is zeroed. */
vs_status vs_etcd_get(vs_etcd_t *e, const void *key, size_t klen, vs_etcd_kvs_t *out, char err[VS_ERR_LEN]);

/* Reads every key starting with prefix, in key order (plen 0: every key). Same ownership as get. */
vs_status vs_etcd_range_prefix(vs_etcd_t *e, const void *prefix, size_t plen, vs_etcd_kvs_t *out,
                               char err[VS_ERR_LEN]);

/* Deletes key, or every key starting with key when prefix != 0. *out_deleted (nullable) gets the count. */
vs_status vs_etcd_delete(vs_etcd_t *e, const void *key, size_t klen, int prefix, int64_t *out_deleted,
                         char err[VS_ERR_LEN]);

/* ---- transactions (compare-and-swap) ---- */

typedef enum vs_etcd_cmp_target {
    VS_ETCD_CMP_VERSION = 1, /* compares number with the key's version (0 = absent) */
    VS_ETCD_CMP_CREATE,      /* number vs create_revision (0 = absent): create-if-absent */
    VS_ETCD_CMP_MOD,         /* number vs mod_revision: optimistic concurrency */
    VS_ETCD_CMP_VALUE,       /* value vs the key's value (bytes) */
    VS_ETCD_CMP_LEASE,       /* number vs the key's lease id */
} vs_etcd_cmp_target;

typedef enum vs_etcd_cmp_result {
    VS_ETCD_EQUAL = 1,
    VS_ETCD_NOT_EQUAL,
    VS_ETCD_GREATER, /* the key's field is greater than the given number / value */
    VS_ETCD_LESS,
} vs_etcd_cmp_result;

/* One compare; pointers are borrowed for the call. */
typedef struct vs_etcd_cmp {
    const void *key;
    size_t key_len;
    vs_etcd_cmp_target target;
    vs_etcd_cmp_result result;
    int64_t number;    /* VERSION, CREATE, MOD, LEASE */
    const void *value; /* VALUE */
    size_t value_len;
} vs_etcd_cmp_t;

typedef enum vs_etcd_op_kind {
    VS_ETCD_OP_PUT = 1, /* key, value, lease */
    VS_ETCD_OP_DELETE,  /* key, or every key with prefix key when prefix != 0 */
    VS_ETCD_OP_RANGE,   /* key, or prefix; the kvs read come back in the txn result */
} vs_etcd_op_kind;

/* One operation of a txn branch; pointers are borrowed for the call. */
typedef struct vs_etcd_op {
    vs_etcd_op_kind kind;
    const void *key;
    size_t key_len;
    const void *value;
    size_t value_len;
    int64_t lease;
    int prefix;
} vs_etcd_op_t;

/* Result of a txn in caller storage; free with vs_etcd_txn_result_fini. */
typedef struct vs_etcd_txn_result {
    int succeeded;     /* 1: every compare held and the success ops ran; 0: the failure ops ran */
    int64_t revision;  /* header revision after the txn */
    vs_etcd_kvs_t kvs; /* pairs read by the RANGE ops of the branch that ran, in op order */
} vs_etcd_txn_result_t;

void vs_etcd_txn_result_fini(vs_etcd_txn_result_t *r);

/* Runs "if all cmp then succ else fail" atomically (etcd allows at most 128 ops per branch by default).
 * A failed compare is not an error: VS_OK with out->succeeded == 0. *out is overwritten (zeroed on
 * failure). Example, create-if-absent: cmp {key, CREATE, EQUAL, 0}, succ {PUT key value lease},
 * fail {RANGE key} -> on failure out->kvs holds the current holder. */
vs_status vs_etcd_txn(vs_etcd_t *e, const vs_etcd_cmp_t *cmp, size_t ncmp, const vs_etcd_op_t *succ,
                      size_t nsucc, const vs_etcd_op_t *fail, size_t nfail, vs_etcd_txn_result_t *out,
                      char err[VS_ERR_LEN]);

/* ---- leases ---- */

/* Grants a lease of ttl_s seconds (etcd raises values under its minimum, about 2 s). */
vs_status vs_etcd_lease_grant(vs_etcd_t *e, int64_t ttl_s, int64_t *out_id, char err[VS_ERR_LEN]);

/* Sends one keepalive (one POST; call every ttl/3). *out_ttl (nullable) gets the renewed TTL in seconds.
 * A lease that expired or was revoked gives VS_ERR_NOT_FOUND (the gateway answers 200 with no TTL). */
vs_status vs_etcd_lease_keepalive(vs_etcd_t *e, int64_t id, int64_t *out_ttl, char err[VS_ERR_LEN]);

/* Revokes a lease: its keys are deleted at once. An unknown lease gives VS_ERR_NOT_FOUND. */
vs_status vs_etcd_lease_revoke(vs_etcd_t *e, int64_t id, char err[VS_ERR_LEN]);

/* Compacts the history up to revision (physical: returns once applied). Revisions before it can no longer
 * be read or watched (VS_ERR_OUT_OF_RANGE if revision is already compacted or in the future). */
vs_status vs_etcd_compact(vs_etcd_t *e, int64_t revision, char err[VS_ERR_LEN]);

/* ---- watch: keep a prefix in sync ---- */

typedef enum vs_etcd_watch_kind {
    VS_ETCD_WATCH_SNAPSHOT = 1, /* snapshot: every key under the prefix at revision; replaces the view */
    VS_ETCD_WATCH_PUT,          /* kv: the new pair (create or update) */
    VS_ETCD_WATCH_DELETE,       /* kv: key only (value empty), mod_revision = revision of the delete */
    VS_ETCD_WATCH_CONNECTED,    /* state change: etcd answers again (a SNAPSHOT follows) */
    VS_ETCD_WATCH_DISCONNECTED, /* state change: etcd unreachable; keep the last view, resync follows */
} vs_etcd_watch_kind;

/* One delivery. Everything it points to is borrowed for the duration of the callback only. */
typedef struct vs_etcd_watch_event {
    vs_etcd_watch_kind kind;
    const vs_etcd_kvs_t *snapshot; /* SNAPSHOT only, else NULL */
    const vs_etcd_kv_t *kv;        /* PUT / DELETE only, else NULL */
    int64_t revision;              /* SNAPSHOT: read revision; PUT/DELETE: revision of the change; else 0 */
} vs_etcd_watch_event_t;

/* Runs on the watch thread, one event at a time, in revision order. It may call other vs_etcd functions
 * but must not call vs_etcd_watch_stop on its own watch. A slow callback only delays the watch. */
typedef void (*vs_etcd_watch_cb)(const vs_etcd_watch_event_t *ev, void *user);

typedef struct vs_etcd_watch vs_etcd_watch_t;

typedef struct vs_etcd_watch_stats {
    uint64_t snapshots;   /* SNAPSHOT deliveries */
    uint64_t events;      /* PUT + DELETE deliveries */
    uint64_t compactions; /* watch canceled by etcd because its start revision was compacted */
    uint64_t disconnects; /* failed ranges or broken streams */
    int connected;        /* 1 while the last range or stream succeeded */
} vs_etcd_watch_stats_t;

/* Starts a thread that ranges prefix (plen 0: all keys), delivers a SNAPSHOT, then watches from the
 * snapshot revision + 1 and delivers PUT/DELETE in order. On cancellation by compaction, a broken stream
 * or a connection error it backs off (100 ms doubling to 5 s; no wait after compaction), ranges again,
 * delivers a fresh SNAPSHOT and watches again. Returns without waiting for etcd (an unreachable etcd gives
 * DISCONNECTED and retries). prefix is copied; e must outlive the watch. *out is stopped and freed by
 * vs_etcd_watch_stop. Errors: VS_ERR_NOMEM, VS_ERR_INTERNAL (thread creation). */
vs_status vs_etcd_watch_start(vs_etcd_t *e, const void *prefix, size_t plen, vs_etcd_watch_cb cb, void *user,
                              vs_etcd_watch_t **out, char err[VS_ERR_LEN]);

/* Snapshot of the counters; thread-safe. */
void vs_etcd_watch_stats(const vs_etcd_watch_t *w, vs_etcd_watch_stats_t *out);

/* Stops the thread (aborting a stream or backoff within about 100 ms, an in-flight range within the
 * client timeout), joins it and frees w; safe while etcd is down. No callback runs after it returns.
 * NULL is a no-op. */
void vs_etcd_watch_stop(vs_etcd_watch_t *w);

/* ---- session: a lease kept alive, with keys re-registered when it is lost ---- */

typedef struct vs_etcd_session vs_etcd_session_t;

typedef struct vs_etcd_session_stats {
    int64_t lease;               /* the last lease granted (it may be lost until the re-registration) */
    uint64_t keepalives;         /* successful keepalives */
    uint64_t keepalive_failures; /* keepalives that failed (lease gone or etcd unreachable) */
    uint64_t reregistrations;    /* new leases granted with every remembered key put again */
} vs_etcd_session_stats_t;

/* Called on the session thread after a re-registration, with the new lease id. */
typedef void (*vs_etcd_session_cb)(int64_t new_lease, void *user);

/* Grants a lease of ttl_s seconds (VS_ERR_INVALID_ARGUMENT if ttl_s < 1; the grant's errors if etcd does
 * not answer) and starts a thread that sends a keepalive every ttl/3. When a keepalive reports the lease
 * gone, or none succeeded for longer than the ttl, the thread grants a new lease and puts every remembered
 * key again (a re-registration). e must outlive the session; close with vs_etcd_session_close. */
vs_status vs_etcd_session_create(vs_etcd_t *e, int64_t ttl_s, vs_etcd_session_t **out, char err[VS_ERR_LEN]);

/* Sets (or clears, cb NULL) the re-registration callback. Thread-safe. */
void vs_etcd_session_on_reregister(vs_etcd_session_t *s, vs_etcd_session_cb cb, void *user);

/* Puts key -> value under the session's lease and remembers the pair (a later put of the same key replaces
 * the value). The pair is remembered even if this put fails; the session thread then retries it.
 * Thread-safe. Errors: those of vs_etcd_put, VS_ERR_NOMEM. */
vs_status vs_etcd_session_put(vs_etcd_session_t *s, const void *key, size_t klen, const void *val,
                              size_t vlen, char err[VS_ERR_LEN]);

/* Copies the counters; thread-safe. */
void vs_etcd_session_stats(const vs_etcd_session_t *s, vs_etcd_session_stats_t *out);

/* Stops the keepalive thread, revokes the lease (the session's keys vanish at once; a failure because
 * etcd is down is ignored, the lease then expires after its ttl) and frees s. NULL is a no-op. */
void vs_etcd_session_close(vs_etcd_session_t *s);

#endif
