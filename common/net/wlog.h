/* wlog.h: the cluster's write log on NATS JetStream (issue 15; Debian nats-server 2.9, libnats 3.4).
 *
 * One stream per cluster, VS_<cluster>, file storage, one subject vs.<cluster>.writes: a single total order
 * of writes (the last write of an id in log order wins), and a reader of any partition reads every write
 * and keeps what its partition owns (JetStream 2.9 consumers filter on one subject only, and a
 * version's partitioning changes between versions while the log does not; docs/decisions.md). The stream
 * discards new messages when full (DiscardNew: a full log refuses writes instead of silently dropping
 * unapplied ones), keeps messages for max_age, and drops a message whose write id (Nats-Msg-Id) it has
 * seen within the dedup window, answering with the first copy's sequence.
 *
 * Durability (nats-server 2.9): a message is acknowledged once written to the stream's file (it survives
 * kill -9 of nats-server); fsync runs on a 2-minute timer, so a host crash can lose acknowledged writes of
 * a 1-replica stream; production runs 3 replicas (docs/operations.md).
 *
 * A reader starts at a sequence and checks every message it gets is the one it expects: a stream that no
 * longer holds that sequence (expired, purged, recreated) silently starts later, which would serve a
 * partition with writes missing, so a gap is an error (VS_ERR_FAILED_PRECONDITION), never skipped.
 * Not here: what a message says (protos/vecshard/v1/writelog.proto) and applying it (shard/). */
#ifndef VS_COMMON_NET_WLOG_H
#define VS_COMMON_NET_WLOG_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

typedef struct vs_wlog vs_wlog_t;

typedef struct vs_wlog_opts {
    const char *url;     /* "nats://127.0.0.1:4222" (a comma-separated list is fine) */
    const char *cluster; /* the stream is VS_<cluster>: 1-64 of [A-Za-z0-9_-] */
    int64_t timeout_ms;  /* connect, stream calls and publish acknowledgements; 0 = 5000 */
    /* Used when the stream is created (vs_wlog_open with create = 1): */
    int64_t max_bytes;       /* 0 = 8 GiB */
    int64_t max_age_s;       /* 0 = 7 days */
    int64_t dedup_window_ms; /* 0 = 120000 (the server's default; at most max_age) */
    int replicas;            /* 0 = 1 */
    /* TLS and credentials; each NULL field is taken from the environment, the same for every process and
     * tool: $VECSHARD_NATS_CA (set: TLS, the server's certificate must chain to it and name the first
     * URL's host, or $VECSHARD_NATS_SERVER_NAME), $VECSHARD_NATS_CERT + $VECSHARD_NATS_KEY (client
     * certificate for a server with verify: true), $VECSHARD_NATS_USER with $VECSHARD_NATS_PASSWORD_FILE
     * or $VECSHARD_NATS_PASSWORD. A wrong password is VS_ERR_FAILED_PRECONDITION at open; a publish or
     * subscription the user's permissions forbid fails its call. */
    const char *ca_file, *cert_file, *key_file, *user, *password;
} vs_wlog_opts_t;

/* 1 when cluster can name a stream: 1-64 of [A-Za-z0-9_-] (NATS stream names hold no '.'). */
int vs_wlog_cluster_valid(const char *cluster);

/* Connects and finds the stream; with create, creates it when missing (an existing stream is used as
 * it is). VS_ERR_UNAVAILABLE (no server), VS_ERR_NOT_FOUND (no stream, create = 0),
 * VS_ERR_INVALID_ARGUMENT (options). */
vs_status vs_wlog_open(const vs_wlog_opts_t *o, int create, vs_wlog_t **out, char err[VS_ERR_LEN]);
void vs_wlog_close(vs_wlog_t *w); /* NULL is a no-op */

/* The longest write id (vs_ident_valid). */
#define VS_WLOG_WRITE_ID_MAX 128

/* Appends one message under write_id (1-128 printable ASCII without spaces) and waits for the stream's
 * acknowledgement: *seq is its sequence, *duplicate 1 when the stream already held write_id (then *seq is the
 * first copy's). VS_ERR_UNAVAILABLE: no acknowledgement (server down, timeout): the outcome is unknown, so
 * retry with the same write_id. VS_ERR_RESOURCE_EXHAUSTED: the log is full. VS_ERR_INVALID_ARGUMENT: too
 * large for the server's max_payload (the limit is in the message) or a bad write_id. Thread-safe. */
vs_status vs_wlog_append(vs_wlog_t *w, const void *msg, size_t len, const char *write_id, uint64_t *seq,
                         int *duplicate, char err[VS_ERR_LEN]);

/* Called once per asynchronous append, on a libnats thread (keep it short; it may call back into the
 * log): st VS_OK with the sequence (duplicate as for vs_wlog_append), or the error vs_wlog_append would
 * have returned (VS_ERR_UNAVAILABLE: outcome unknown, also for appends still unanswered at vs_wlog_drain
 * or vs_wlog_close). */
typedef void (*vs_wlog_acked_fn)(void *user, vs_status st, uint64_t seq, int duplicate, const char *err);

/* Appends at most this many messages not yet acknowledged; a further one waits up to the timeout. */
#define VS_WLOG_MAX_IN_FLIGHT 8192

/* vs_wlog_append without waiting: many appends travel pipelined on the connection, and fn answers each
 * when the stream acknowledged it (or timed out). A non-OK return means nothing was sent and fn is not
 * called. Thread-safe; the order of messages on the stream is the order of the calls. */
vs_status vs_wlog_append_async(vs_wlog_t *w, const void *msg, size_t len, const char *write_id,
                               vs_wlog_acked_fn fn, void *user, char err[VS_ERR_LEN]);

/* Waits up to wait_ms for every asynchronous append to be answered, then answers the rest
 * VS_ERR_UNAVAILABLE (outcome unknown). vs_wlog_close drains with the log's timeout. */
void vs_wlog_drain(vs_wlog_t *w, int64_t wait_ms);

typedef struct vs_wlog_state {
    uint64_t first_seq, last_seq, msgs, bytes;
    int64_t created_ns;  /* the stream's creation time: it changes when the stream is recreated */
    int64_t max_payload; /* the server's largest message */
} vs_wlog_state_t;

vs_status vs_wlog_state(vs_wlog_t *w, vs_wlog_state_t *out, char err[VS_ERR_LEN]);

/* ---- readers ---- */

typedef struct vs_wlog_reader vs_wlog_reader_t;

/* A reader of every message from sequence from (>= 1) on. VS_ERR_FAILED_PRECONDITION when the stream no
 * longer holds from (its first sequence is later) or never reached from - 1 (it lost messages). */
vs_status vs_wlog_reader_open(vs_wlog_t *w, uint64_t from, vs_wlog_reader_t **out, char err[VS_ERR_LEN]);
void vs_wlog_reader_close(vs_wlog_reader_t *r); /* NULL is a no-op */

/* Called for each message in sequence order; a non-OK status stops the batch (the reader stays on that
 * message, which is offered again by the next call). */
typedef vs_status (*vs_wlog_apply_fn)(void *user, uint64_t seq, const uint8_t *msg, size_t len,
                                      char err[VS_ERR_LEN]);

/* Takes up to max messages (waiting up to wait_ms for the first) and applies them in order; *n receives
 * how many were applied (0 when the reader is caught up). VS_ERR_FAILED_PRECONDITION on a gap;
 * VS_ERR_UNAVAILABLE when the server cannot be reached (the next call tries again from the same place);
 * apply's status when it refused a message. */
vs_status vs_wlog_reader_next(vs_wlog_reader_t *r, size_t max, int64_t wait_ms, vs_wlog_apply_fn apply,
                              void *user, size_t *n, char err[VS_ERR_LEN]);

/* The sequence of the next message to apply. */
uint64_t vs_wlog_reader_position(const vs_wlog_reader_t *r);

/* Messages the stream held after the last one applied, as JetStream said with it (0 once a fetch found
 * nothing more): the reader's lag. */
uint64_t vs_wlog_reader_pending(const vs_wlog_reader_t *r);

#endif
