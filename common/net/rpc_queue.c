/* rpc_queue.c: asynchronous unary calls owned by one thread, on a completion queue of their own (rpc.h).
 * Every call in flight is on a list so that destroying the queue can cancel and reap them. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <string.h>

#include <grpc/grpc.h>
#include <grpc/support/time.h>

#include "common/cli/timing.h"
#include "common/net/rpc.h"
#include "common/net/rpc_ucall.h"

typedef struct qcall {
    vs_rpc_ucall_t u;
    void *user;
    struct qcall *prev, *next;
} qcall_t;

struct vs_rpc_queue {
    grpc_completion_queue *cq;
    qcall_t *head; /* calls in flight */
    size_t n;
};

vs_status vs_rpc_queue_create(vs_rpc_queue_t **out, char err[VS_ERR_LEN])
{
    *out = NULL;
    vs_rpc_queue_t *q = calloc(1, sizeof *q);
    if (!q)
        return vs_errf(err, VS_ERR_NOMEM, "no memory for a call queue");
    grpc_init();
    q->cq = grpc_completion_queue_create_for_next(NULL);
    *out = q;
    return VS_OK;
}

static void unlink_call(vs_rpc_queue_t *q, qcall_t *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        q->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    q->n--;
}

vs_status vs_rpc_queue_call(vs_rpc_queue_t *q, vs_rpc_channel_t *ch, const char *method, const void *req,
                            size_t len, int64_t timeout_ms, void *user, char err[VS_ERR_LEN])
{
    qcall_t *c = calloc(1, sizeof *c);
    if (!c)
        return vs_errf(err, VS_ERR_NOMEM, "no memory for a call");
    c->user = user;
    vs_status st =
        vs_rpc_ucall_start(&c->u, ch, q->cq, method, req, len, timeout_ms, c, err);
    if (st != VS_OK) {
        free(c);
        return st;
    }
    c->next = q->head;
    if (q->head)
        q->head->prev = c;
    q->head = c;
    q->n++;
    return VS_OK;
}

size_t vs_rpc_queue_in_flight(const vs_rpc_queue_t *q)
{
    return q->n;
}

int vs_rpc_queue_next(vs_rpc_queue_t *q, double until, vs_rpc_result_t *res)
{
    memset(res, 0, sizeof *res);
    while (q->n > 0) {
        gpr_timespec dl = gpr_inf_future(GPR_CLOCK_MONOTONIC);
        if (until > 0) {
            double left = until - vs_now_s();
            if (left <= 0)
                left = 0;
            dl = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                              gpr_time_from_nanos((int64_t)(left * 1e9), GPR_TIMESPAN));
        }
        grpc_event ev = grpc_completion_queue_next(q->cq, dl, NULL);
        if (ev.type == GRPC_QUEUE_TIMEOUT)
            return 0;
        if (ev.type != GRPC_OP_COMPLETE)
            continue; /* not shut down while the queue exists */
        qcall_t *c = ev.tag;
        unlink_call(q, c);
        vs_rpc_ucall_result(&c->u, ev.success, res);
        res->user = c->user;
        vs_rpc_ucall_fini(&c->u);
        free(c);
        return 1;
    }
    double left = until > 0 ? until - vs_now_s() : 0;
    if (left > 0) { /* nothing can complete: wait for the caller's time instead of returning at once */
        struct timespec ts = {(time_t)left, (long)((left - (double)(time_t)left) * 1e9)};
        nanosleep(&ts, NULL);
    }
    return 0;
}

void vs_rpc_queue_destroy(vs_rpc_queue_t *q)
{
    if (!q)
        return;
    for (qcall_t *c = q->head; c; c = c->next)
        grpc_call_cancel(c->u.call, NULL);
    vs_rpc_result_t res;
    while (vs_rpc_queue_next(q, 0, &res))
        free(res.body);
    grpc_completion_queue_shutdown(q->cq);
    while (grpc_completion_queue_next(q->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(q->cq);
    free(q);
    grpc_shutdown();
}
