/* rpc.h: gRPC on the C core API (libgrpc 1.51), the thin layer every vecshard server and client uses.
 *
 * Server: registered methods with the request read with the call: unary (the handler answers before it
 * returns), asynchronous unary (the handler keeps the call and answers later from any thread), or a server
 * stream that the owner feeds with the latest value (health Watch); a generic handler answers every other
 * method with UNIMPLEMENTED (otherwise such calls hang until their deadline); N worker threads polling one
 * completion queue and running handlers inline, so a unary handler may block for the length of a search.
 * Client calls started with vs_rpc_server_call complete on the same queue, and an optional timer runs
 * between events, so an asynchronous service (the coordinator) needs no thread of its own.
 * A worker re-posts its request for a method only after it has handled the previous call, so a busy
 * worker never holds a call that an idle one could take (gRPC queues calls that no request matches).
 * Channel args: grpc.so_reuseport = 0 (a second server on the port fails instead of stealing
 * connections), receive and send limits raised to max_message_bytes. Work whose deadline has passed when
 * it reaches a worker is answered DEADLINE_EXCEEDED without running the handler.
 * Shutdown order (docs/architecture.md): stop accepting, let in-flight calls finish within the grace
 * period, cancel the rest, shut down and drain every completion queue, destroy.
 *
 * Client: blocking unary calls on a channel (one completion queue per call, safe from any thread), and
 * calls completed by a server's workers (above).
 *
 * Not here: protobuf. Bodies are bytes; the services (shard/, coordinator/) encode and decode. */
#ifndef VS_COMMON_NET_RPC_H
#define VS_COMMON_NET_RPC_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

/* Request metadata our clients add to every call with a deadline: the timeout they gave, in microseconds.
 * gRPC's own grpc-timeout header is rounded (to 10 ms above 1 s) and the server's deadline counts from
 * when the headers arrived, so `sent timeout - time left when a worker takes the call` is how long the
 * call waited in the server's queue (vs_rpc_call_queued_s), with no clock shared between the hosts. */
#define VS_RPC_MD_TIMEOUT "vs-timeout-us"
/* Trailing metadata of a refused call (RESOURCE_EXHAUSTED): milliseconds the client should wait before it
 * tries again (the retry-pushback hint). gRPC's own grpc-retry-pushback-ms is consumed by gRPC's retry
 * machinery and never reaches the application, so ours has its own name. */
#define VS_RPC_MD_RETRY_AFTER "vs-retry-after-ms"

/* Default and maximum message size: 1,000 queries of 4,096 floats fit in 16 MiB; 64 MiB is the cap. */
#define VS_RPC_DEFAULT_MAX_MESSAGE_BYTES (64u << 20)

typedef struct vs_rpc_server vs_rpc_server_t;
typedef struct vs_rpc_call vs_rpc_call_t;   /* a call being handled (borrowed by handlers) */
typedef struct vs_rpc_call vs_rpc_stream_t; /* a server-streaming call held by its owner */

/* What a unary handler answers. body is malloc'd by the handler and freed by the server. */
typedef struct vs_rpc_reply {
    int code;                 /* gRPC status code */
    char message[VS_ERR_LEN]; /* status details; "" for none */
    uint8_t *body;            /* response message (sent only when code == OK) */
    size_t body_len;
    int64_t retry_after_ms; /* > 0 with a non-OK code: sent as VS_RPC_MD_RETRY_AFTER */
} vs_rpc_reply_t;

/* Unary handler: req (len bytes, borrowed until return) is the request message. reply starts as
 * {OK, "", NULL, 0}. Runs on a worker thread; may block. */
typedef void (*vs_rpc_unary_fn)(void *user, const vs_rpc_call_t *call, const uint8_t *req, size_t len,
                                vs_rpc_reply_t *reply);

/* Server-streaming handler: the owner takes one reference on stream and must give it back with
 * vs_rpc_stream_release; messages go out with vs_rpc_stream_send, the call ends with
 * vs_rpc_stream_finish (or when the client goes away). */
typedef void (*vs_rpc_stream_fn)(void *user, vs_rpc_stream_t *stream, const uint8_t *req, size_t len);

/* Asynchronous unary handler: the handler keeps call and answers it later, from any thread, with
 * vs_rpc_call_reply, exactly once (until then the call counts as in flight and shutdown waits for it,
 * up to the grace period). req (len bytes) is borrowed until return. The worker is free again as soon as
 * the handler returns, so one worker holds any number of such calls. */
typedef void (*vs_rpc_async_fn)(void *user, vs_rpc_call_t *call, const uint8_t *req, size_t len);

typedef struct vs_rpc_method {
    const char *path;      /* "/vecshard.v1.Shard/Search" */
    vs_rpc_unary_fn unary; /* exactly one of unary, stream, async */
    vs_rpc_stream_fn stream;
    vs_rpc_async_fn async;
    void *user;
} vs_rpc_method_t;

/* Called after every finished call (metrics): method path ("" for unknown methods), status code,
 * seconds from arrival at the worker to the reply being queued. May run on any worker thread. */
typedef void (*vs_rpc_done_fn)(void *user, const char *path, int code, double seconds);

/* TLS for a server or a channel: PEM files, re-read every refresh_s seconds by gRPC's file watcher, so a
 * rotated certificate (files replaced in place, as Kubernetes does with a mounted Secret) is used by new
 * connections without a restart; connections already open keep theirs. The files are checked (parsed, key
 * matches certificate, not expired) when the server or channel is created: a bad file is a clear error
 * then, and a bad replacement later is logged by gRPC while the previous certificate stays in use.
 * Server: cert_file + key_file are required; with ca_file, every client must present a certificate that
 * ca_file signs (mutual TLS; read the client's identity with vs_rpc_call_peer_name); without, clients
 * are not asked for one. Channel: ca_file (required) holds the roots the server's certificate must chain
 * to, and the server's name (the target's host, or server_name) must be in its SAN;
 * cert_file + key_file (optional) are the client certificate presented to a server that asks. */
typedef struct vs_rpc_tls {
    const char *cert_file;
    const char *key_file;
    const char *ca_file;
    const char *server_name; /* channel only: name to check instead of the target's host; NULL = host */
    unsigned refresh_s;      /* 0 = VS_RPC_TLS_DEFAULT_REFRESH_S */
} vs_rpc_tls_t;

#define VS_RPC_TLS_DEFAULT_REFRESH_S 10

/* Checks a TLS configuration's files as a server (is_server 1) or a channel would use them: present,
 * readable, PEM that OpenSSL parses, key matching certificate, certificate within its validity period,
 * ca_file holding at least one certificate. VS_ERR_INVALID_ARGUMENT naming the file and the reason. */
vs_status vs_rpc_tls_check(const vs_rpc_tls_t *tls, int is_server, char err[VS_ERR_LEN]);

/* The client tools' TLS convention (like $VECSHARD_TOKEN): $VECSHARD_TLS_CA (roots; set = TLS on),
 * $VECSHARD_TLS_CERT + $VECSHARD_TLS_KEY (client certificate), $VECSHARD_TLS_SERVER_NAME. Fills *out with
 * pointers into the environment and returns 1 when TLS is on, 0 when $VECSHARD_TLS_CA is unset. */
int vs_rpc_tls_from_env(vs_rpc_tls_t *out);

typedef struct vs_rpc_server_opts {
    const vs_rpc_tls_t *tls;       /* NULL = plain text */
    const char *address;           /* "127.0.0.1:0" (ephemeral), "0.0.0.0:50051", "unix:/path" */
    size_t n_threads;              /* worker threads (sharing one completion queue); 0 = CPUs */
    size_t max_message_bytes;      /* 0 = VS_RPC_DEFAULT_MAX_MESSAGE_BYTES; at most 1 GiB */
    int64_t max_connection_age_ms; /* > 0: close connections after this age (grace 10 s), so clients
                                      behind a ClusterIP reconnect and rebalance; 0 = never */
    vs_rpc_done_fn on_done;        /* optional */
    void *on_done_user;
    /* optional timer: a worker calls tick(tick_user, now) after every event it handles and whenever the
     * time tick last returned has come; tick does what is due and returns when it next needs to run
     * (vs_now_s() seconds; <= 0 or far away: in at most 1 s anyway). Must be cheap when nothing is due. */
    double (*tick)(void *user, double now);
    void *tick_user;
    /* optional: called before every call's handler with the method path; 0 lets the call through, a gRPC
     * code (UNAUTHENTICATED, PERMISSION_DENIED) refuses it with the message written to msg (never a secret).
     * Read the call's metadata with vs_rpc_call_metadata. Any worker thread. */
    int (*authorize)(void *user, const char *path, const vs_rpc_call_t *call, char msg[VS_ERR_LEN]);
    void *authorize_user;
} vs_rpc_server_opts_t;

/* Creates and starts a server with the n methods (the array and its strings must outlive the
 * server). *out_port receives the bound port (useful with port 0). VS_ERR_UNAVAILABLE when the address
 * cannot be bound (in use: so_reuseport is off), VS_ERR_INVALID_ARGUMENT for bad options. */
vs_status vs_rpc_server_start(const vs_rpc_server_opts_t *opts, const vs_rpc_method_t *methods, size_t n,
                              vs_rpc_server_t **out, int *out_port, char err[VS_ERR_LEN]);

/* Stops accepting calls, waits up to grace_ms for calls in flight to finish, cancels the rest, joins the
 * workers and frees the server. Open streams must have been finished or released by their owners (or
 * they are cancelled after the grace period). NULL is a no-op. */
void vs_rpc_server_stop(vs_rpc_server_t *srv, int64_t grace_ms);

/* Calls currently being handled (between arrival at a worker and the reply being queued). */
size_t vs_rpc_server_in_flight(const vs_rpc_server_t *srv);

/* The identity of the client of a mutual-TLS call: the common name of its verified certificate (or its
 * first SAN, as gRPC reports it, when it has no CN) into out (n bytes, NUL-terminated); its length, or -1
 * when the call came without a verified client certificate (plain text, or a server without ca_file) or the
 * name does not fit. */
long vs_rpc_call_peer_name(const vs_rpc_call_t *call, char *out, size_t n);

/* Seconds the call waited behind other work between its arrival (headers received) and a worker taking
 * it, from the client's VS_RPC_MD_TIMEOUT and the time left now; -1 when unknown (no deadline, or a client
 * that does not send it). Only the part of the wait before a handler of this server last finished counts
 * (a call that waited behind busy workers is taken as one frees itself, so it counts in full): an idle,
 * paused or starting server has no queue to shed. Our clients round their timeouts to what gRPC's grpc-timeout header carries exactly
 * (vs_rpc_timeout_exact_ms), so it is precise to about a millisecond; a client that does not round may
 * look up to one grpc-timeout unit (10 ms from 1 s of timeout, 100 ms from 10 s) less queued than it was.
 * Never negative when known. */
double vs_rpc_call_queued_s(const vs_rpc_call_t *call);

/* Milliseconds left before the call's deadline; INT64_MAX without a deadline, <= 0 when passed. */
int64_t vs_rpc_call_remaining_ms(const vs_rpc_call_t *call);

/* The value of the call's request metadata `key` (lower case, e.g. "authorization") into out (n bytes,
 * NUL-terminated): its length, or -1 when absent or longer than n - 1. */
long vs_rpc_call_metadata(const vs_rpc_call_t *call, const char *key, char *out, size_t n);

/* Answers an asynchronous call (vs_rpc_async_fn): takes reply->body; call must not be used afterwards.
 * Thread-safe. */
void vs_rpc_call_reply(vs_rpc_call_t *call, vs_rpc_reply_t *reply);

/* The server a call arrived at. */
vs_rpc_server_t *vs_rpc_call_server(const vs_rpc_call_t *call);

/* Sends msg (len bytes, copied) on a stream. Latest-value semantics: if a previous message is still
 * being written, msg replaces any message waiting behind it. VS_ERR_CANCELLED once the call has ended. */
vs_status vs_rpc_stream_send(vs_rpc_stream_t *stream, const void *msg, size_t len);

/* Ends the stream with a status (after the messages queued so far). Idempotent. */
void vs_rpc_stream_finish(vs_rpc_stream_t *stream, int code, const char *message);

/* 1 when the client has gone away or the stream was finished. */
int vs_rpc_stream_closed(vs_rpc_stream_t *stream);

/* Gives back the owner's reference; the stream must not be used afterwards. */
void vs_rpc_stream_release(vs_rpc_stream_t *stream);

/* ---- client ---- */

typedef struct vs_rpc_channel vs_rpc_channel_t;

/* Opens a channel to target ("host:port", "dns:///name:port", "unix:/path"); connects lazily.
 * max_message_bytes 0 = default. Proxies are ignored (loopback and in-cluster traffic). */
vs_status vs_rpc_channel_create(const char *target, size_t max_message_bytes, vs_rpc_channel_t **out,
                                char err[VS_ERR_LEN]);
void vs_rpc_channel_destroy(vs_rpc_channel_t *ch); /* NULL is a no-op */

/* As vs_rpc_channel_create, over TLS when tls is non-NULL (checked first with vs_rpc_tls_check). */
vs_status vs_rpc_channel_create_tls(const char *target, size_t max_message_bytes, const vs_rpc_tls_t *tls,
                              vs_rpc_channel_t **out, char err[VS_ERR_LEN]);

/* The client tools' channel: vs_rpc_channel_create_tls with TLS from the environment (vs_rpc_tls_from_env),
 * then the token of vs_rpc_channel_auth_from_env. */
vs_status vs_rpc_channel_create_env(const char *target, size_t max_message_bytes, vs_rpc_channel_t **out,
                                  char err[VS_ERR_LEN]);

/* Every later call on ch carries the metadata "authorization: <value>" (e.g. "Bearer <token>"); NULL
 * removes it. Call before ch is used by other threads. VS_ERR_NOMEM. */
vs_status vs_rpc_channel_set_authorization(vs_rpc_channel_t *ch, const char *value, char err[VS_ERR_LEN]);

/* The client tools' convention: when $VECSHARD_TOKEN is set, every call on ch carries "authorization:
 * Bearer $VECSHARD_TOKEN" (a coordinator started with --auth-tokens requires it). */
vs_status vs_rpc_channel_auth_from_env(vs_rpc_channel_t *ch, char err[VS_ERR_LEN]);

/* One blocking unary call: sends req (len bytes) to method with a deadline of timeout_ms (<= 0: none).
 * Returns VS_OK when the call completed, whatever its gRPC status: *out_code receives it, message its
 * details, *out_body the response (malloc'd, NULL unless OK; free with free()). Thread-safe. */
vs_status vs_rpc_call_unary(vs_rpc_channel_t *ch, const char *method, const void *req, size_t len,
                            int64_t timeout_ms, int *out_code, char message[VS_ERR_LEN], uint8_t **out_body,
                            size_t *out_len);

/* The outcome of an asynchronous client call (vs_rpc_queue_call, vs_rpc_server_call). */
typedef struct vs_rpc_result {
    void *user; /* what vs_rpc_server_call was given */
    int code;   /* gRPC status */
    char message[VS_ERR_LEN];
    uint8_t *body; /* response when OK (malloc'd; the caller frees it) */
    size_t body_len;
    double seconds;         /* start to completion */
    int64_t retry_after_ms; /* the server's VS_RPC_MD_RETRY_AFTER hint (non-OK only); 0 = none */
} vs_rpc_result_t;

/* ---- asynchronous client calls on a queue of their own (load generators) ---- */

/* One thread starts any number of unary calls and takes their outcomes as they complete: no thread per
 * call in flight and no hand-off between threads (vecshard query's load generator). Not thread-safe: one
 * thread owns the queue. */
typedef struct vs_rpc_queue vs_rpc_queue_t;

vs_status vs_rpc_queue_create(vs_rpc_queue_t **out, char err[VS_ERR_LEN]);

/* Cancels the calls still in flight, waits for them and frees the queue. NULL is a no-op. */
void vs_rpc_queue_destroy(vs_rpc_queue_t *q);

/* Starts a unary call of method on ch carrying req (len bytes, copied) with a deadline timeout_ms from
 * now (<= 0: none); its outcome comes out of vs_rpc_queue_next with res->user = user. VS_ERR_INTERNAL
 * (err says why) when it could not start; VS_ERR_NOMEM. */
vs_status vs_rpc_queue_call(vs_rpc_queue_t *q, vs_rpc_channel_t *ch, const char *method, const void *req,
                            size_t len, int64_t timeout_ms, void *user, char err[VS_ERR_LEN]);

/* Calls started and not yet taken out by vs_rpc_queue_next. */
size_t vs_rpc_queue_in_flight(const vs_rpc_queue_t *q);

/* Waits until a call completes or until the time `until` (vs_now_s() seconds; <= 0: no limit) and
 * returns 1 with its outcome in *res (res->body is the caller's to free), or 0 when the time came first.
 * With no call in flight it returns 0 at once when until <= 0, else it sleeps until `until` (a caller's
 * schedule loop does not spin). */
int vs_rpc_queue_next(vs_rpc_queue_t *q, double until, vs_rpc_result_t *res);

/* ---- client calls completed by a server's workers (asynchronous fan-out) ---- */

/* Called once per call, on a worker of the server that started it; res->body is the callee's to free. */
typedef void (*vs_rpc_client_done_fn)(void *user, vs_rpc_result_t *res);

typedef struct vs_rpc_ccall vs_rpc_ccall_t;

/* Starts a unary call of method on ch carrying req (len bytes, copied), with a deadline timeout_ms from
 * now (<= 0: none); its completion runs done(user, result) on one of srv's workers, then the call is
 * freed. Returns the call (non-NULL; opaque), or NULL when it could not start (err says why; done never
 * runs). Calls still in flight when srv stops are cancelled. */
vs_rpc_ccall_t *vs_rpc_server_call(vs_rpc_server_t *srv, vs_rpc_channel_t *ch, const char *method,
                                   const void *req, size_t len, int64_t timeout_ms,
                                   vs_rpc_client_done_fn done, void *user, char err[VS_ERR_LEN]);

#endif
