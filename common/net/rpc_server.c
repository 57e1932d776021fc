/* rpc_server.c: the gRPC C-core server behind rpc.h.
 *
 * Every event carries a tag that points into a call (or the server) and names what completed. A call
 * lives until every batch it started has completed (pending counter) and, for streams, until the owner
 * released it. Every worker polls the one completion queue, so the events of a call may be handled by
 * different workers: a call's counters are under its mutex, and the handler holds a reference while it
 * runs. */
#include <errno.h>
#include <stdio.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "common/cli/timing.h"
#include "common/net/rpc.h"
#include "common/net/rpc_ucall.h"
#include "common/net/tsan.h"

enum tag_kind { TAG_NEW, TAG_CLOSE, TAG_SEND, TAG_SHUTDOWN, TAG_CLIENT };

typedef struct tag {
    enum tag_kind kind;
    struct vs_rpc_call *call;
} tag_t;

typedef struct worker {
    struct vs_rpc_server *srv;
    grpc_completion_queue *cq;
    pthread_t thread;
    int started;
} worker_t;

struct vs_rpc_call {
    struct vs_rpc_server *srv;
    worker_t *w;
    int method; /* index into srv->methods, -1 = generic (unknown method) */
    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array md;
    grpc_call_details details; /* generic calls */
    grpc_byte_buffer *payload;
    tag_t t_new, t_close, t_send;
    double t0;     /* arrival at a worker (async calls report their latency at the reply) */
    gpr_timespec picked; /* when a worker took the call (the deadline's clock) */
    double picked_s;     /* the same on vs_now_s()'s clock */
    double last_done_s;  /* the server's last_done_us then, in seconds (0 = no handler had finished) */
    int cancelled; /* written by RECV_CLOSE_ON_SERVER */
    int pending;   /* batches started and not completed */

    /* streams only (under mu) */
    pthread_mutex_t mu;
    int owner_ref;
    int closed;       /* client gone or finished */
    int sending;      /* a SEND_MESSAGE is in flight */
    int sent_initial; /* initial metadata went with the first message */
    uint8_t *queued;  /* latest message waiting for the write in flight */
    size_t queued_len;
    int finish_wanted; /* status to send once the write in flight completes */
    int finish_code;
    char finish_msg[VS_ERR_LEN];
    int status_sent;
    grpc_byte_buffer *send_bb;
    grpc_metadata trail; /* VS_RPC_MD_RETRY_AFTER of a refused unary call */
    char trail_val[24];
};

/* A client call completed by the workers (vs_rpc_server_call). The tag comes first: the event's tag is
 * the call. */
struct vs_rpc_ccall {
    tag_t tag; /* TAG_CLIENT */
    vs_rpc_ucall_t u;
    struct vs_rpc_server *srv;
    struct vs_rpc_ccall *prev, *next; /* srv->ccalls, under srv->mu */
    vs_rpc_client_done_fn done;
    void *user;
};

struct vs_rpc_server {
    grpc_server *server;
    worker_t *workers;
    size_t n_workers;
    const vs_rpc_method_t *methods;
    void **registered; /* grpc_server_register_method handles */
    size_t n_methods;
    vs_rpc_done_fn on_done;
    void *on_done_user;
    int (*authorize)(void *user, const char *path, const vs_rpc_call_t *call, char msg[VS_ERR_LEN]);
    void *authorize_user;
    atomic_int stopping;
    atomic_size_t in_flight;
    atomic_llong last_done_us; /* vs_now_s() in us when a handler last finished (0 = none yet) */
    tag_t t_shutdown;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int shutdown_done;
    double (*tick)(void *user, double now);
    void *tick_user;
    struct vs_rpc_ccall *ccalls; /* client calls in flight (under mu) */
    int cq_closing;              /* no client call may start any more (under mu) */
};

static void call_free(struct vs_rpc_call *c)
{
    if (c->call)
        grpc_call_unref(c->call);
    grpc_metadata_array_destroy(&c->md);
    grpc_call_details_destroy(&c->details);
    if (c->payload)
        grpc_byte_buffer_destroy(c->payload);
    if (c->send_bb)
        grpc_byte_buffer_destroy(c->send_bb);
    free(c->queued);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

/* Posts a request for the next call of method m (-1 = generic) on worker w. */
static void post_request(worker_t *w, int m)
{
    struct vs_rpc_server *s = w->srv;
    if (atomic_load(&s->stopping))
        return;
    struct vs_rpc_call *c = calloc(1, sizeof *c);
    if (!c)
        abort(); /* a few hundred bytes; nothing sensible to do without them */
    c->srv = s;
    c->w = w;
    c->method = m;
    c->t_new = (tag_t){TAG_NEW, c};
    c->t_close = (tag_t){TAG_CLOSE, c};
    c->t_send = (tag_t){TAG_SEND, c};
    pthread_mutex_init(&c->mu, NULL);
    grpc_metadata_array_init(&c->md);
    grpc_call_details_init(&c->details);
    grpc_call_error e;
    VS_TSAN_RELEASE(&c->t_new);
    if (m >= 0)
        e = grpc_server_request_registered_call(s->server, s->registered[m], &c->call, &c->deadline, &c->md,
                                                &c->payload, w->cq, w->cq, &c->t_new);
    else
        e = grpc_server_request_call(s->server, &c->call, &c->details, &c->md, w->cq, w->cq, &c->t_new);
    if (e != GRPC_CALL_OK)
        call_free(c); /* the server is shutting down */
}

/* Starts the final batch of a unary call: initial metadata, message when OK, status. */
static void send_unary(struct vs_rpc_call *c, int code, const char *message, uint8_t *body, size_t len,
                       int64_t retry_after_ms)
{
    grpc_op ops[3];
    memset(ops, 0, sizeof ops);
    size_t n = 0;
    ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    if (code == VS_GRPC_OK && body) {
        grpc_slice sl = grpc_slice_new(body, len, free); /* the slice frees body */
        c->send_bb = grpc_raw_byte_buffer_create(&sl, 1);
        grpc_slice_unref(sl);
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = c->send_bb;
    } else {
        free(body);
    }
    grpc_slice details = grpc_slice_from_copied_string(message ? message : "");
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = (grpc_status_code)code;
    ops[n].data.send_status_from_server.status_details = message && *message ? &details : NULL;
    if (code != VS_GRPC_OK && retry_after_ms > 0) {
        int vl = snprintf(c->trail_val, sizeof c->trail_val, "%lld", (long long)retry_after_ms);
        c->trail.key = grpc_slice_from_static_string(VS_RPC_MD_RETRY_AFTER);
        c->trail.value = grpc_slice_from_static_buffer(c->trail_val, (size_t)vl);
        ops[n].data.send_status_from_server.trailing_metadata_count = 1;
        ops[n].data.send_status_from_server.trailing_metadata = &c->trail;
    }
    n++;
    pthread_mutex_lock(&c->mu); /* completions may run on another worker: pending is under mu */
    VS_TSAN_RELEASE(&c->t_send);
    if (grpc_call_start_batch(c->call, ops, n, &c->t_send, NULL) == GRPC_CALL_OK)
        c->pending++;
    pthread_mutex_unlock(&c->mu);
    grpc_slice_unref(details);
}

/* Reads a received message into one contiguous malloc'd buffer (NULL + 0 for an empty message). */
static int read_payload(grpc_byte_buffer *bb, uint8_t **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    if (!bb)
        return 0;
    grpc_byte_buffer_reader r;
    if (!grpc_byte_buffer_reader_init(&r, bb))
        return -1;
    grpc_slice sl = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    size_t len = GRPC_SLICE_LENGTH(sl);
    if (len) {
        *out = malloc(len);
        if (!*out) {
            grpc_slice_unref(sl);
            return -1;
        }
        memcpy(*out, GRPC_SLICE_START_PTR(sl), len);
    }
    *out_len = len;
    grpc_slice_unref(sl);
    return 0;
}

/* Stream writes (c->mu held): the latest queued message, or, once nothing is queued, the status asked
 * for; each in one batch, with the initial metadata the first time. */
static void stream_pump(struct vs_rpc_call *c)
{
    if (c->sending || c->status_sent)
        return;
    int send_message = c->queued && !c->closed;
    if (!send_message && !c->finish_wanted)
        return;
    grpc_op ops[2];
    memset(ops, 0, sizeof ops);
    size_t n = 0;
    if (!c->sent_initial) {
        ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
        c->sent_initial = 1;
    }
    grpc_slice details = grpc_empty_slice();
    if (send_message) {
        grpc_slice sl = grpc_slice_new(c->queued, c->queued_len, free);
        c->queued = NULL;
        if (c->send_bb)
            grpc_byte_buffer_destroy(c->send_bb);
        c->send_bb = grpc_raw_byte_buffer_create(&sl, 1);
        grpc_slice_unref(sl);
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = c->send_bb;
    } else {
        details = grpc_slice_from_copied_string(c->finish_msg);
        ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
        ops[n].data.send_status_from_server.status = (grpc_status_code)c->finish_code;
        ops[n++].data.send_status_from_server.status_details = c->finish_msg[0] ? &details : NULL;
        c->status_sent = 1;
        c->closed = 1;
    }
    VS_TSAN_RELEASE(&c->t_send);
    if (grpc_call_start_batch(c->call, ops, n, &c->t_send, NULL) == GRPC_CALL_OK) {
        c->pending++;
        c->sending = 1;
    }
    grpc_slice_unref(details);
}

/* Frees a stream call when nothing refers to it any more (c->mu held; unlocks). */
static void stream_unlock_maybe_free(struct vs_rpc_call *c)
{
    int dead = c->pending == 0 && c->owner_ref == 0;
    pthread_mutex_unlock(&c->mu);
    if (dead)
        call_free(c);
}

/* A handler is over: the server was busy until now (vs_rpc_call_queued_s), one call fewer in flight. Before
 * the reply leaves, so a client's next call never seems to have waited behind the one just answered. */
static void handler_done(struct vs_rpc_server *s)
{
    atomic_store(&s->last_done_us, (long long)(vs_now_s() * 1e6));
    atomic_fetch_sub(&s->in_flight, 1);
}

static void handle_new(worker_t *w, struct vs_rpc_call *c)
{
    struct vs_rpc_server *s = w->srv;
    int m = c->method;
    /* Watch for the client going away (cancel, deadline, broken connection) from now on. */
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &c->cancelled;
    pthread_mutex_lock(&c->mu);
    VS_TSAN_RELEASE(&c->t_close);
    if (grpc_call_start_batch(c->call, &op, 1, &c->t_close, NULL) == GRPC_CALL_OK)
        c->pending++;
    pthread_mutex_unlock(&c->mu);

    if (m < 0) {
        char msg[VS_ERR_LEN];
        char *method = grpc_slice_to_c_string(c->details.method);
        snprintf(msg, sizeof msg, "unknown method %s", method);
        gpr_free(method);
        send_unary(c, VS_GRPC_UNIMPLEMENTED, msg, NULL, 0, 0);
        if (s->on_done)
            s->on_done(s->on_done_user, "", VS_GRPC_UNIMPLEMENTED, 0.0);
        post_request(w, -1);
        return;
    }

    const vs_rpc_method_t *md = &s->methods[m];
    c->picked = gpr_now(c->deadline.clock_type);
    c->picked_s = vs_now_s();
    c->last_done_s = (double)atomic_load(&s->last_done_us) * 1e-6;
    atomic_fetch_add(&s->in_flight, 1);
    double t0 = vs_now_s();
    uint8_t *req = NULL;
    size_t len = 0;
    vs_rpc_reply_t reply = {.code = VS_GRPC_OK};
    if (!c->payload) {
        /* No message: the client gave up while the call was queued (deadline, cancel) or sent none. */
        reply.code = VS_GRPC_CANCELLED;
        snprintf(reply.message, sizeof reply.message, "no request message (cancelled or deadline passed)");
    } else if (read_payload(c->payload, &req, &len) != 0) {
        reply.code = VS_GRPC_INTERNAL;
        snprintf(reply.message, sizeof reply.message, "cannot read the request message");
    } else if (vs_rpc_call_remaining_ms(c) <= 0) {
        reply.code = VS_GRPC_DEADLINE_EXCEEDED;
        snprintf(reply.message, sizeof reply.message, "deadline passed before the call was handled");
    } else if (s->authorize &&
               (reply.code = s->authorize(s->authorize_user, md->path, c, reply.message)) != 0) {
        /* refused: reply.message says why */
    } else if (md->async) {
        /* the handler's owner reference keeps the call until vs_rpc_call_reply */
        pthread_mutex_lock(&c->mu);
        c->pending++;
        c->t0 = t0;
        pthread_mutex_unlock(&c->mu);
        md->async(md->user, c, req, len);
        free(req);
        post_request(w, m);
        return;
    } else if (md->stream) {
        pthread_mutex_lock(&c->mu);
        c->owner_ref = 1;
        pthread_mutex_unlock(&c->mu);
        md->stream(md->user, c, req, len);
        free(req);
        handler_done(s);
        post_request(w, m);
        return;
    } else {
        md->unary(md->user, c, req, len, &reply);
    }
    free(req);
    handler_done(s);
    send_unary(c, reply.code, reply.message, reply.body, reply.body_len, reply.retry_after_ms);
    if (s->on_done)
        s->on_done(s->on_done_user, md->path, reply.code, vs_now_s() - t0);
    post_request(w, m);
}

static void handle_event(worker_t *w, grpc_event ev)
{
    tag_t *t = ev.tag;
    struct vs_rpc_server *s = w->srv;
    if (t->kind == TAG_SHUTDOWN) {
        pthread_mutex_lock(&s->mu);
        s->shutdown_done = 1;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        return;
    }
    if (t->kind == TAG_CLIENT) {
        struct vs_rpc_ccall *cc = (struct vs_rpc_ccall *)t;
        pthread_mutex_lock(&s->mu);
        if (cc->prev)
            cc->prev->next = cc->next;
        else
            s->ccalls = cc->next;
        if (cc->next)
            cc->next->prev = cc->prev;
        pthread_mutex_unlock(&s->mu);
        vs_rpc_result_t res;
        memset(&res, 0, sizeof res);
        res.user = cc->user;
        vs_rpc_ucall_result(&cc->u, ev.success, &res);
        cc->done(cc->user, &res);
        vs_rpc_ucall_fini(&cc->u);
        free(cc);
        return;
    }
    struct vs_rpc_call *c = t->call;
    switch (t->kind) {
    case TAG_NEW:
        if (!ev.success) { /* shutting down: no call was created */
            call_free(c);
            return;
        }
        /* The handler holds a reference while it runs, so that completions of the batches it starts
         * (handled by other workers on the shared queue) cannot free the call under it. */
        c->pending = 1;
        handle_new(w, c);
        pthread_mutex_lock(&c->mu);
        c->pending--;
        stream_unlock_maybe_free(c);
        return;
    case TAG_CLOSE:
    case TAG_SEND: /* unary calls take the same path: their stream fields stay idle */
        pthread_mutex_lock(&c->mu);
        c->pending--;
        if (t->kind == TAG_CLOSE) {
            c->closed = 1;
        } else {
            c->sending = 0;
            if (!ev.success)
                c->closed = 1;
            stream_pump(c);
        }
        stream_unlock_maybe_free(c);
        return;
    case TAG_SHUTDOWN:
    case TAG_CLIENT:
        return;
    }
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    struct vs_rpc_server *s = w->srv;
    for (;;) {
        gpr_timespec until = gpr_inf_future(GPR_CLOCK_MONOTONIC);
        if (s->tick) { /* wait at most until the owner's next timer (and 1 s) */
            double now = vs_now_s(), wake = s->tick(s->tick_user, now);
            double wait_s = wake > now && wake < now + 1.0 ? wake - now : wake > now ? 1.0 : 0.0;
            until = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                 gpr_time_from_micros((int64_t)(wait_s * 1e6), GPR_TIMESPAN));
        }
        grpc_event ev = grpc_completion_queue_next(w->cq, until, NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type == GRPC_OP_COMPLETE) {
            VS_TSAN_ACQUIRE(ev.tag); /* before the tag is read */
            handle_event(w, ev);
        }
    }
    return NULL;
}

static size_t ncpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (size_t)n : 1;
}

vs_status vs_rpc_server_start(const vs_rpc_server_opts_t *opts, const vs_rpc_method_t *methods, size_t n,
                              vs_rpc_server_t **out, int *out_port, char err[VS_ERR_LEN])
{
    if (!opts || !opts->address || !out || (n && !methods))
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "rpc server: address and methods are required");
    size_t max_msg = opts->max_message_bytes ? opts->max_message_bytes : VS_RPC_DEFAULT_MAX_MESSAGE_BYTES;
    if (max_msg > (1u << 30))
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "rpc server: max message size %zu above 1 GiB", max_msg);
    for (size_t i = 0; i < n; i++)
        if (!methods[i].path || methods[i].path[0] != '/' ||
            !!methods[i].unary + !!methods[i].stream + !!methods[i].async != 1)
            return vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                           "rpc server: method %zu needs a \"/pkg.Service/Method\" path and one handler", i);
    if (opts->tls && vs_rpc_tls_check(opts->tls, 1, err) != VS_OK)
        return VS_ERR_INVALID_ARGUMENT;

    struct vs_rpc_server *s = calloc(1, sizeof *s);
    size_t nw = opts->n_threads ? opts->n_threads : ncpus();
    if (!s || !(s->workers = calloc(nw, sizeof *s->workers)) ||
        !(s->registered = calloc(n ? n : 1, sizeof *s->registered))) {
        if (s)
            free(s->workers);
        free(s);
        return vs_errf(err, VS_ERR_NOMEM, "rpc server: out of memory");
    }
    grpc_init();
    s->n_workers = nw;
    s->methods = methods;
    s->n_methods = n;
    s->on_done = opts->on_done;
    s->on_done_user = opts->on_done_user;
    s->tick = opts->tick;
    s->tick_user = opts->tick_user;
    s->authorize = opts->authorize;
    s->authorize_user = opts->authorize_user;
    s->t_shutdown = (tag_t){TAG_SHUTDOWN, NULL};
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);

    grpc_arg args[5];
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = GRPC_ARG_ALLOW_REUSEPORT;
    args[0].value.integer = 0;
    args[1].type = GRPC_ARG_INTEGER;
    args[1].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[1].value.integer = (int)max_msg;
    args[2].type = GRPC_ARG_INTEGER;
    args[2].key = GRPC_ARG_MAX_SEND_MESSAGE_LENGTH;
    args[2].value.integer = (int)max_msg;
    grpc_channel_args cargs = {3, args};
    if (opts->max_connection_age_ms > 0) {
        args[3].type = GRPC_ARG_INTEGER;
        args[3].key = GRPC_ARG_MAX_CONNECTION_AGE_MS;
        args[3].value.integer =
            opts->max_connection_age_ms > INT32_MAX ? INT32_MAX : (int)opts->max_connection_age_ms;
        args[4].type = GRPC_ARG_INTEGER;
        args[4].key = GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS;
        args[4].value.integer = 10000;
        cargs.num_args = 5;
    }
    s->server = grpc_server_create(&cargs, NULL);
    /* One completion queue polled by every worker, so any idle worker takes the next event. (Measured
     * on loopback: an empty call costs ~68 us p50 with one worker and ~90 us with two, whether the two
     * share a queue or not; see docs/benchmarks.md.) */
    grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(s->server, cq, NULL);
    for (size_t i = 0; i < nw; i++) {
        s->workers[i].srv = s;
        s->workers[i].cq = cq;
    }
    for (size_t i = 0; i < n; i++)
        s->registered[i] = grpc_server_register_method(s->server, methods[i].path, NULL,
                                                       GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
    grpc_server_credentials *creds =
        opts->tls ? vs_rpc_tls_server_creds(opts->tls) : grpc_insecure_server_credentials_create();
    if (!creds) {
        vs_errf(err, VS_ERR_INVALID_ARGUMENT, "rpc server: gRPC refused the TLS configuration");
        vs_rpc_server_stop(s, 0);
        return VS_ERR_INVALID_ARGUMENT;
    }
    int port = grpc_server_add_http2_port(s->server, opts->address, creds);
    grpc_server_credentials_release(creds);
    if (port == 0) {
        vs_errf(err, VS_ERR_UNAVAILABLE, "rpc server: cannot listen on %s (address in use or invalid)",
                opts->address);
        vs_rpc_server_stop(s, 0); /* never started: no call to wait for */
        return VS_ERR_UNAVAILABLE;
    }
    grpc_server_start(s->server);
    for (size_t i = 0; i < nw; i++) {
        for (size_t m = 0; m < n; m++)
            post_request(&s->workers[i], (int)m);
        post_request(&s->workers[i], -1);
    }
    for (size_t i = 0; i < nw; i++) {
        if (pthread_create(&s->workers[i].thread, NULL, worker_main, &s->workers[i]) != 0) {
            vs_rpc_server_stop(s, 0);
            return vs_errf(err, VS_ERR_INTERNAL, "rpc server: cannot start worker thread: %s",
                           strerror(errno));
        }
        s->workers[i].started = 1;
    }
    if (out_port)
        *out_port = port;
    *out = s;
    return VS_OK;
}

/* Waits for the shutdown tag until the given time; 1 when it came. */
static int wait_shutdown(struct vs_rpc_server *s, const struct timespec *until)
{
    pthread_mutex_lock(&s->mu);
    while (!s->shutdown_done) {
        if (pthread_cond_timedwait(&s->cv, &s->mu, until) == ETIMEDOUT)
            break;
    }
    int done = s->shutdown_done;
    pthread_mutex_unlock(&s->mu);
    return done;
}

/* Cancels the client calls in flight and refuses new ones. */
static void end_client_calls(struct vs_rpc_server *s)
{
    pthread_mutex_lock(&s->mu);
    s->cq_closing = 1;
    for (struct vs_rpc_ccall *cc = s->ccalls; cc; cc = cc->next)
        grpc_call_cancel(cc->u.call, NULL);
    pthread_mutex_unlock(&s->mu);
}

void vs_rpc_server_stop(vs_rpc_server_t *s, int64_t grace_ms)
{
    if (!s)
        return;
    atomic_store(&s->stopping, 1);
    VS_TSAN_RELEASE(&s->t_shutdown);
    grpc_server_shutdown_and_notify(s->server, s->workers[0].cq, &s->t_shutdown);
    int any_started = 0;
    for (size_t i = 0; i < s->n_workers; i++)
        any_started |= s->workers[i].started;
    if (any_started) {
        struct timespec until = vs_timespec_in_ms(CLOCK_REALTIME, grace_ms); /* (< 0: now) */
        int done = wait_shutdown(s, &until);
        if (!done) {
            /* grace is over: the client calls that asynchronous handlers wait on end first (no new one may
             * start), so those handlers answer with what they have; 200 ms later every call still in flight
             * is cancelled */
            end_client_calls(s);
            until = vs_timespec_in_ms(CLOCK_REALTIME, 200);
            done = wait_shutdown(s, &until);
        }
        if (!done) {
            grpc_server_cancel_all_calls(s->server);
            pthread_mutex_lock(&s->mu);
            while (!s->shutdown_done)
                pthread_cond_wait(&s->cv, &s->mu);
            pthread_mutex_unlock(&s->mu);
        }
    } else {
        /* No worker runs: drain the shutdown tag here. */
        grpc_server_cancel_all_calls(s->server);
    }
    end_client_calls(s); /* none may start on the queue being shut down */
    grpc_completion_queue_shutdown(s->workers[0].cq);
    if (!any_started)
        worker_main(&s->workers[0]); /* drain it here */
    for (size_t i = 0; i < s->n_workers; i++)
        if (s->workers[i].started)
            pthread_join(s->workers[i].thread, NULL);
    grpc_server_destroy(s->server);
    grpc_completion_queue_destroy(s->workers[0].cq);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s->registered);
    free(s->workers);
    free(s);
    grpc_shutdown();
}

size_t vs_rpc_server_in_flight(const vs_rpc_server_t *s)
{
    return atomic_load(&((vs_rpc_server_t *)s)->in_flight);
}

long vs_rpc_call_metadata(const vs_rpc_call_t *c, const char *key, char *out, size_t n)
{
    return vs_rpc_md_get(&c->md, key, out, n);
}

long vs_rpc_call_peer_name(const vs_rpc_call_t *c, char *out, size_t n)
{
    return vs_rpc_peer_name(c->call, out, n);
}

double vs_rpc_call_queued_s(const vs_rpc_call_t *c)
{
    char v[24];
    long n = vs_rpc_call_metadata(c, VS_RPC_MD_TIMEOUT, v, sizeof v);
    gpr_timespec d = c->deadline;
    if (n <= 0 || gpr_time_cmp(d, gpr_inf_future(d.clock_type)) == 0)
        return -1;
    char *end;
    double sent_s = strtod(v, &end) * 1e-6;
    if (*end || !(sent_s > 0))
        return -1;
    gpr_timespec left = gpr_time_sub(d, c->picked);
    double waited = sent_s - ((double)left.tv_sec + (double)left.tv_nsec * 1e-9);
    if (!(waited > 0))
        return 0;
    /* Only the part of the wait up to the last time a handler finished was spent behind other work: a
     * worker that frees itself takes the next call at once, so a call that waited behind busy workers was
     * taken just after a handler finished and counts in full; a call that waited while nothing finished
     * (a cold start, a paused process, a slow sanitizer build) did not wait in a queue, and refusing it
     * would relieve nothing. Both as they were when the worker took the call. */
    double busy_s = c->last_done_s > 0 ? waited - (c->picked_s - c->last_done_s) : 0;
    return busy_s <= 0 ? 0 : busy_s < waited ? busy_s : waited;
}

int64_t vs_rpc_call_remaining_ms(const vs_rpc_call_t *c)
{
    gpr_timespec d = c->deadline;
    if (gpr_time_cmp(d, gpr_inf_future(d.clock_type)) == 0)
        return INT64_MAX;
    gpr_timespec now = gpr_now(d.clock_type);
    gpr_timespec diff = gpr_time_sub(d, now);
    return (int64_t)diff.tv_sec * 1000 + diff.tv_nsec / 1000000;
}

vs_status vs_rpc_stream_send(vs_rpc_stream_t *c, const void *msg, size_t len)
{
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy)
        return VS_ERR_NOMEM;
    memcpy(copy, msg, len);
    pthread_mutex_lock(&c->mu);
    if (c->closed || c->finish_wanted) {
        pthread_mutex_unlock(&c->mu);
        free(copy);
        return VS_ERR_CANCELLED;
    }
    free(c->queued);
    c->queued = copy;
    c->queued_len = len;
    stream_pump(c);
    pthread_mutex_unlock(&c->mu);
    return VS_OK;
}

void vs_rpc_stream_finish(vs_rpc_stream_t *c, int code, const char *message)
{
    pthread_mutex_lock(&c->mu);
    if (!c->finish_wanted && !c->closed) {
        c->finish_wanted = 1;
        c->finish_code = code;
        snprintf(c->finish_msg, sizeof c->finish_msg, "%s", message ? message : "");
        stream_pump(c);
    }
    pthread_mutex_unlock(&c->mu);
}

int vs_rpc_stream_closed(vs_rpc_stream_t *c)
{
    pthread_mutex_lock(&c->mu);
    int closed = c->closed || c->finish_wanted;
    pthread_mutex_unlock(&c->mu);
    return closed;
}

void vs_rpc_stream_release(vs_rpc_stream_t *c)
{
    pthread_mutex_lock(&c->mu);
    c->owner_ref = 0;
    if (!c->closed && !c->finish_wanted) {
        /* The owner gives up an open stream: end it cleanly. */
        c->finish_wanted = 1;
        c->finish_code = VS_GRPC_UNAVAILABLE;
        snprintf(c->finish_msg, sizeof c->finish_msg, "server stopping");
        stream_pump(c);
    }
    stream_unlock_maybe_free(c);
}

void vs_rpc_call_reply(vs_rpc_call_t *c, vs_rpc_reply_t *reply)
{
    struct vs_rpc_server *s = c->srv;
    handler_done(s);
    send_unary(c, reply->code, reply->message, reply->body, reply->body_len, reply->retry_after_ms);
    reply->body = NULL;
    if (s->on_done)
        s->on_done(s->on_done_user, s->methods[c->method].path, reply->code, vs_now_s() - c->t0);
    pthread_mutex_lock(&c->mu);
    c->pending--; /* the handler's owner reference */
    stream_unlock_maybe_free(c);
}

vs_rpc_server_t *vs_rpc_call_server(const vs_rpc_call_t *c)
{
    return c->srv;
}

vs_rpc_ccall_t *vs_rpc_server_call(vs_rpc_server_t *s, vs_rpc_channel_t *ch, const char *method,
                                   const void *req, size_t len, int64_t timeout_ms,
                                   vs_rpc_client_done_fn done, void *user, char err[VS_ERR_LEN])
{
    struct vs_rpc_ccall *cc = calloc(1, sizeof *cc);
    if (!cc) {
        vs_errf(err, VS_ERR_NOMEM, "rpc call: out of memory");
        return NULL;
    }
    cc->tag = (tag_t){TAG_CLIENT, NULL};
    cc->srv = s;
    cc->done = done;
    cc->user = user;
    pthread_mutex_lock(&s->mu); /* registered before it can complete, and never on a closing queue */
    vs_status st = s->cq_closing ? vs_errf(err, VS_ERR_UNAVAILABLE, "rpc call %s: server stopping", method)
                                 : vs_rpc_ucall_start(&cc->u, ch, s->workers[0].cq, method, req, len,
                                                      timeout_ms, cc, err);
    if (st == VS_OK) {
        cc->next = s->ccalls;
        if (s->ccalls)
            s->ccalls->prev = cc;
        s->ccalls = cc;
    }
    pthread_mutex_unlock(&s->mu);
    if (st != VS_OK) {
        free(cc);
        return NULL;
    }
    return cc;
}
