/* rpc_client.c: blocking unary calls over a gRPC C-core channel (rpc.h).
 * Each call uses its own pluck completion queue, so any number of threads can call at once on one
 * channel; the channel (one HTTP/2 connection) is shared. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "common/net/rpc.h"
#include "common/net/rpc_ucall.h"

#define CQ_POOL 64

struct vs_rpc_channel {
    grpc_channel *ch;
    /* Completion queues reused across calls: creating one per call costs a pollset set-up each time
     * (measured: about half of an empty call's latency on loopback). */
    pthread_mutex_t mu;
    grpc_completion_queue *pool[CQ_POOL];
    size_t n_pool;
    grpc_metadata auth; /* "authorization" metadata every call carries (vs_rpc_channel_set_authorization) */
    int has_auth;
};

static grpc_completion_queue *cq_take(struct vs_rpc_channel *c)
{
    grpc_completion_queue *cq = NULL;
    pthread_mutex_lock(&c->mu);
    if (c->n_pool)
        cq = c->pool[--c->n_pool];
    pthread_mutex_unlock(&c->mu);
    return cq ? cq : grpc_completion_queue_create_for_pluck(NULL);
}

static void cq_destroy(grpc_completion_queue *cq)
{
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(cq);
}

static void cq_give(struct vs_rpc_channel *c, grpc_completion_queue *cq)
{
    pthread_mutex_lock(&c->mu);
    if (c->n_pool < CQ_POOL) {
        c->pool[c->n_pool++] = cq;
        cq = NULL;
    }
    pthread_mutex_unlock(&c->mu);
    if (cq)
        cq_destroy(cq);
}

vs_status vs_rpc_channel_create(const char *target, size_t max_message_bytes, vs_rpc_channel_t **out,
                                char err[VS_ERR_LEN])
{
    return vs_rpc_channel_create_tls(target, max_message_bytes, NULL, out, err);
}

vs_status vs_rpc_channel_create_env(const char *target, size_t max_message_bytes, vs_rpc_channel_t **out,
                                  char err[VS_ERR_LEN])
{
    vs_rpc_tls_t tls;
    int on = vs_rpc_tls_from_env(&tls);
    vs_status st = vs_rpc_channel_create_tls(target, max_message_bytes, on ? &tls : NULL, out, err);
    if (st == VS_OK && (st = vs_rpc_channel_auth_from_env(*out, err)) != VS_OK) {
        vs_rpc_channel_destroy(*out);
        *out = NULL;
    }
    return st;
}

vs_status vs_rpc_channel_create_tls(const char *target, size_t max_message_bytes, const vs_rpc_tls_t *tls,
                              vs_rpc_channel_t **out, char err[VS_ERR_LEN])
{
    if (!target || !*target || !out)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "rpc channel: empty target");
    size_t max_msg = max_message_bytes ? max_message_bytes : VS_RPC_DEFAULT_MAX_MESSAGE_BYTES;
    if (max_msg > (1u << 30))
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "rpc channel: max message size above 1 GiB");
    struct vs_rpc_channel *c = calloc(1, sizeof *c);
    if (!c)
        return vs_errf(err, VS_ERR_NOMEM, "rpc channel: out of memory");
    grpc_init();
    pthread_mutex_init(&c->mu, NULL);
    grpc_arg args[4];
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[0].value.integer = (int)max_msg;
    args[1].type = GRPC_ARG_INTEGER;
    args[1].key = GRPC_ARG_MAX_SEND_MESSAGE_LENGTH;
    args[1].value.integer = (int)max_msg;
    args[2].type = GRPC_ARG_INTEGER;
    args[2].key = GRPC_ARG_ENABLE_HTTP_PROXY;
    args[2].value.integer = 0;
    grpc_channel_args cargs = {3, args};
    if (tls && tls->server_name) {
        args[3].type = GRPC_ARG_STRING;
        args[3].key = GRPC_SSL_TARGET_NAME_OVERRIDE_ARG;
        args[3].value.string = (char *)tls->server_name;
        cargs.num_args = 4;
    }
    int owned = 1;
    char terr[VS_ERR_LEN] = "";
    grpc_channel_credentials *creds =
        tls ? vs_rpc_tls_channel_creds(tls, &owned, terr) : grpc_insecure_credentials_create();
    c->ch = creds ? grpc_channel_create(target, creds, &cargs) : NULL; /* the channel takes its own ref */
    if (creds && owned)
        grpc_channel_credentials_release(creds);
    if (!c->ch && terr[0]) {
        free(c);
        grpc_shutdown();
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "rpc channel to %s: %s", target, terr);
    }
    if (!c->ch) {
        free(c);
        grpc_shutdown();
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "rpc channel: cannot create a channel to %s", target);
    }
    *out = c;
    return VS_OK;
}

vs_status vs_rpc_channel_set_authorization(vs_rpc_channel_t *c, const char *value, char err[VS_ERR_LEN])
{
    (void)err;
    if (c->has_auth) {
        grpc_slice_unref(c->auth.key);
        grpc_slice_unref(c->auth.value);
        c->has_auth = 0;
    }
    if (value) {
        memset(&c->auth, 0, sizeof c->auth);
        c->auth.key = grpc_slice_from_static_string("authorization");
        c->auth.value = grpc_slice_from_copied_string(value);
        c->has_auth = 1;
    }
    return VS_OK;
}

vs_status vs_rpc_channel_auth_from_env(vs_rpc_channel_t *c, char err[VS_ERR_LEN])
{
    const char *t = getenv("VECSHARD_TOKEN");
    if (!t || !*t)
        return VS_OK;
    char v[600];
    if (strlen(t) > 512)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "$VECSHARD_TOKEN is longer than 512 bytes");
    snprintf(v, sizeof v, "Bearer %s", t);
    return vs_rpc_channel_set_authorization(c, v, err);
}

const grpc_metadata *vs_rpc_channel_md(const vs_rpc_channel_t *c, size_t *n)
{
    *n = c->has_auth ? 1 : 0;
    return c->has_auth ? &c->auth : NULL;
}

void vs_rpc_channel_destroy(vs_rpc_channel_t *c)
{
    if (!c)
        return;
    (void)vs_rpc_channel_set_authorization(c, NULL, NULL);
    for (size_t i = 0; i < c->n_pool; i++)
        cq_destroy(c->pool[i]);
    pthread_mutex_destroy(&c->mu);
    grpc_channel_destroy(c->ch);
    free(c);
    grpc_shutdown();
}

vs_status vs_rpc_call_unary(vs_rpc_channel_t *c, const char *method, const void *req, size_t len,
                            int64_t timeout_ms, int *out_code, char message[VS_ERR_LEN], uint8_t **out_body,
                            size_t *out_len)
{
    *out_body = NULL;
    *out_len = 0;
    message[0] = 0;
    if (timeout_ms > 0)
        timeout_ms = vs_rpc_timeout_exact_ms(timeout_ms);
    grpc_completion_queue *cq = cq_take(c);
    gpr_timespec deadline = timeout_ms > 0 ? gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                                          gpr_time_from_millis(timeout_ms, GPR_TIMESPAN))
                                           : gpr_inf_future(GPR_CLOCK_MONOTONIC);
    grpc_slice msl = grpc_slice_from_copied_string(method);
    grpc_call *call =
        grpc_channel_create_call(c->ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, msl, NULL, deadline, NULL);
    grpc_slice_unref(msl);
    grpc_slice body = grpc_slice_from_copied_buffer(req, len);
    grpc_byte_buffer *send = grpc_raw_byte_buffer_create(&body, 1);
    grpc_slice_unref(body);
    grpc_byte_buffer *recv = NULL;
    grpc_metadata_array init_md, trail_md;
    grpc_metadata_array_init(&init_md);
    grpc_metadata_array_init(&trail_md);
    grpc_status_code status = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();
    const char *error_string = NULL;

    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    grpc_metadata md[2];
    char md_timeout[24];
    ops[0].data.send_initial_metadata.count = vs_rpc_call_md(c, timeout_ms, md, md_timeout);
    ops[0].data.send_initial_metadata.metadata = md;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &init_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &recv;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &trail_md;
    ops[5].data.recv_status_on_client.status = &status;
    ops[5].data.recv_status_on_client.status_details = &details;
    ops[5].data.recv_status_on_client.error_string = &error_string;

    vs_status st = VS_OK;
    int tag = 0;
    grpc_call_error e = grpc_call_start_batch(call, ops, 6, &tag, NULL);
    if (e != GRPC_CALL_OK) {
        st = vs_errf(message, VS_ERR_INTERNAL, "rpc call %s: start_batch failed (%d)", method, (int)e);
    } else {
        grpc_event ev = grpc_completion_queue_pluck(cq, &tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type != GRPC_OP_COMPLETE)
            st = vs_errf(message, VS_ERR_INTERNAL, "rpc call %s: completion queue failed", method);
    }
    if (st == VS_OK) {
        *out_code = (int)status;
        char *d = grpc_slice_to_c_string(details);
        snprintf(message, VS_ERR_LEN, "%s", d);
        gpr_free(d);
        if (status == GRPC_STATUS_OK && recv) {
            grpc_byte_buffer_reader r;
            if (grpc_byte_buffer_reader_init(&r, recv)) {
                grpc_slice all = grpc_byte_buffer_reader_readall(&r);
                grpc_byte_buffer_reader_destroy(&r);
                size_t n = GRPC_SLICE_LENGTH(all);
                *out_body = malloc(n ? n : 1);
                if (*out_body) {
                    memcpy(*out_body, GRPC_SLICE_START_PTR(all), n);
                    *out_len = n;
                } else {
                    st =
                        vs_errf(message, VS_ERR_NOMEM, "rpc call %s: out of memory for the response", method);
                }
                grpc_slice_unref(all);
            }
        }
    }
    if (error_string)
        gpr_free((void *)error_string);
    grpc_slice_unref(details);
    grpc_metadata_array_destroy(&init_md);
    grpc_metadata_array_destroy(&trail_md);
    grpc_byte_buffer_destroy(send);
    if (recv)
        grpc_byte_buffer_destroy(recv);
    grpc_call_unref(call);
    cq_give(c, cq);
    return st;
}

/* For rpc_ucall.c (same library): the grpc channel behind ch. */
grpc_channel *vs_rpc_channel_grpc(vs_rpc_channel_t *ch)
{
    return ch->ch;
}
