/* rpc_multi.c: concurrent unary calls on one completion queue, collected by the caller (rpc.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "common/cli/timing.h"
#include "common/net/rpc.h"
#include "common/net/tsan.h"

/* The channel's grpc_channel (rpc_client.c); declared here to keep rpc.h free of grpc types. */
grpc_channel *vs_rpc_channel_grpc(vs_rpc_channel_t *ch);

typedef struct mcall {
    struct mcall *next;
    uint64_t handle;
    void *user;
    grpc_call *call;
    grpc_byte_buffer *send, *recv;
    grpc_metadata_array init_md, trail_md;
    grpc_status_code status;
    grpc_slice details;
    const char *error_string;
    double t0;
} mcall_t;

struct vs_rpc_multi {
    grpc_completion_queue *cq;
    mcall_t *calls; /* in flight */
    size_t n;
    uint64_t next_handle;
};

vs_status vs_rpc_multi_create(vs_rpc_multi_t **out, char err[VS_ERR_LEN])
{
    vs_rpc_multi_t *m = calloc(1, sizeof *m);
    if (!m)
        return vs_errf(err, VS_ERR_NOMEM, "rpc multi: out of memory");
    grpc_init();
    m->cq = grpc_completion_queue_create_for_next(NULL);
    m->next_handle = 1;
    *out = m;
    return VS_OK;
}

static void mcall_free(mcall_t *c)
{
    grpc_metadata_array_destroy(&c->init_md);
    grpc_metadata_array_destroy(&c->trail_md);
    grpc_slice_unref(c->details);
    if (c->error_string)
        gpr_free((void *)c->error_string);
    if (c->send)
        grpc_byte_buffer_destroy(c->send);
    if (c->recv)
        grpc_byte_buffer_destroy(c->recv);
    if (c->call)
        grpc_call_unref(c->call);
    free(c);
}

uint64_t vs_rpc_multi_start(vs_rpc_multi_t *m, vs_rpc_channel_t *ch, const char *method, const void *req,
                            size_t len, int64_t timeout_ms, void *user, char err[VS_ERR_LEN])
{
    mcall_t *c = calloc(1, sizeof *c);
    if (!c) {
        vs_errf(err, VS_ERR_NOMEM, "rpc multi: out of memory");
        return 0;
    }
    c->user = user;
    c->details = grpc_empty_slice();
    grpc_metadata_array_init(&c->init_md);
    grpc_metadata_array_init(&c->trail_md);
    gpr_timespec deadline = timeout_ms > 0 ? gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                                          gpr_time_from_millis(timeout_ms, GPR_TIMESPAN))
                                           : gpr_inf_future(GPR_CLOCK_MONOTONIC);
    grpc_slice msl = grpc_slice_from_copied_string(method);
    c->call = grpc_channel_create_call(vs_rpc_channel_grpc(ch), NULL, GRPC_PROPAGATE_DEFAULTS, m->cq, msl,
                                       NULL, deadline, NULL);
    grpc_slice_unref(msl);
    grpc_slice body = grpc_slice_from_copied_buffer(req, len);
    c->send = grpc_raw_byte_buffer_create(&body, 1);
    grpc_slice_unref(body);
    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = c->send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &c->init_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &c->recv;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &c->trail_md;
    ops[5].data.recv_status_on_client.status = &c->status;
    ops[5].data.recv_status_on_client.status_details = &c->details;
    ops[5].data.recv_status_on_client.error_string = &c->error_string;
    c->t0 = vs_now_s();
    VS_TSAN_RELEASE(c);
    grpc_call_error e = grpc_call_start_batch(c->call, ops, 6, c, NULL);
    if (e != GRPC_CALL_OK) {
        vs_errf(err, VS_ERR_INTERNAL, "rpc multi %s: start_batch failed (%d)", method, (int)e);
        mcall_free(c);
        return 0;
    }
    c->handle = m->next_handle++;
    c->next = m->calls;
    m->calls = c;
    m->n++;
    return c->handle;
}

int vs_rpc_multi_next(vs_rpc_multi_t *m, int64_t timeout_ms, vs_rpc_result_t *out)
{
    if (m->n == 0)
        return -1;
    gpr_timespec until = timeout_ms < 0 ? gpr_inf_future(GPR_CLOCK_MONOTONIC)
                                        : gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                                       gpr_time_from_micros(timeout_ms * 1000, GPR_TIMESPAN));
    grpc_event ev = grpc_completion_queue_next(m->cq, until, NULL);
    if (ev.type != GRPC_OP_COMPLETE)
        return 0;
    mcall_t *c = ev.tag;
    VS_TSAN_ACQUIRE(c);
    for (mcall_t **pp = &m->calls; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    m->n--;
    memset(out, 0, sizeof *out);
    out->user = c->user;
    out->seconds = vs_now_s() - c->t0;
    out->code = ev.success ? (int)c->status : VS_GRPC_INTERNAL;
    char *d = grpc_slice_to_c_string(c->details);
    snprintf(out->message, sizeof out->message, "%s", d);
    gpr_free(d);
    if (out->code == VS_GRPC_OK && c->recv) {
        grpc_byte_buffer_reader r;
        if (grpc_byte_buffer_reader_init(&r, c->recv)) {
            grpc_slice all = grpc_byte_buffer_reader_readall(&r);
            grpc_byte_buffer_reader_destroy(&r);
            size_t n = GRPC_SLICE_LENGTH(all);
            out->body = malloc(n ? n : 1);
            if (out->body) {
                memcpy(out->body, GRPC_SLICE_START_PTR(all), n);
                out->body_len = n;
            } else {
                out->code = VS_GRPC_INTERNAL;
                snprintf(out->message, sizeof out->message, "out of memory for the response");
            }
            grpc_slice_unref(all);
        }
    } else if (out->code == VS_GRPC_OK) {
        out->code = VS_GRPC_INTERNAL;
        snprintf(out->message, sizeof out->message, "OK status without a response message");
    }
    mcall_free(c);
    return 1;
}

void vs_rpc_multi_cancel(vs_rpc_multi_t *m, uint64_t handle)
{
    for (mcall_t *c = m->calls; c; c = c->next)
        if (c->handle == handle) {
            grpc_call_cancel(c->call, NULL);
            return;
        }
}

size_t vs_rpc_multi_pending(const vs_rpc_multi_t *m)
{
    return m->n;
}

void vs_rpc_multi_destroy(vs_rpc_multi_t *m)
{
    if (!m)
        return;
    for (mcall_t *c = m->calls; c; c = c->next)
        grpc_call_cancel(c->call, NULL);
    vs_rpc_result_t r;
    while (vs_rpc_multi_next(m, -1, &r) == 1)
        free(r.body);
    grpc_completion_queue_shutdown(m->cq);
    while (grpc_completion_queue_next(m->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(m->cq);
    free(m);
    grpc_shutdown();
}
