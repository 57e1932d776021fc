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
#include "common/net/rpc_ucall.h"
#include "common/net/tsan.h"

typedef struct mcall {
    vs_rpc_ucall_t u; /* first: the tag is the call */
    struct mcall *next;
    uint64_t handle;
    void *user;
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
    vs_rpc_ucall_fini(&c->u);
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
    if (vs_rpc_ucall_start(&c->u, vs_rpc_channel_grpc(ch), m->cq, method, req, len, timeout_ms, c, err) !=
        VS_OK) {
        free(c);
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
    vs_rpc_ucall_result(&c->u, ev.success, out);
    mcall_free(c);
    return 1;
}

void vs_rpc_multi_cancel(vs_rpc_multi_t *m, uint64_t handle)
{
    for (mcall_t *c = m->calls; c; c = c->next)
        if (c->handle == handle) {
            grpc_call_cancel(c->u.call, NULL);
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
        grpc_call_cancel(c->u.call, NULL);
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
