/* rpc_ucall.c: one client unary call (rpc_ucall.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "common/cli/timing.h"
#include "common/net/rpc_ucall.h"
#include "common/net/tsan.h"

int64_t vs_rpc_timeout_exact_ms(int64_t ms)
{
    int64_t unit = ms < 1000 ? 1 : ms < 10000 ? 10 : ms < 100000 ? 100 : ms < 1000000 ? 1000 : 10000;
    ms -= ms % unit;
    return ms > 0 ? ms : 1;
}

size_t vs_rpc_call_md(vs_rpc_channel_t *ch, int64_t timeout_ms, grpc_metadata md[2], char buf[24])
{
    size_t n = 0, nch = 0;
    const grpc_metadata *cm = vs_rpc_channel_md(ch, &nch);
    if (nch) /* at most one: authorization */
        md[n++] = cm[0];
    if (timeout_ms > 0) {
        int len = snprintf(buf, 24, "%lld", (long long)timeout_ms * 1000);
        memset(&md[n], 0, sizeof md[n]);
        md[n].key = grpc_slice_from_static_string(VS_RPC_MD_TIMEOUT);
        md[n++].value = grpc_slice_from_static_buffer(buf, (size_t)len);
    }
    return n;
}

long vs_rpc_md_get(const grpc_metadata_array *md, const char *key, char *out, size_t n)
{
    size_t kl = strlen(key);
    for (size_t i = 0; i < md->count; i++) {
        const grpc_slice *k = &md->metadata[i].key, *v = &md->metadata[i].value;
        if (GRPC_SLICE_LENGTH(*k) != kl || memcmp(GRPC_SLICE_START_PTR(*k), key, kl) != 0)
            continue;
        size_t vl = GRPC_SLICE_LENGTH(*v);
        if (vl + 1 > n)
            return -1;
        memcpy(out, GRPC_SLICE_START_PTR(*v), vl);
        out[vl] = 0;
        return (long)vl;
    }
    return -1;
}

int64_t vs_rpc_md_retry_after_ms(const grpc_metadata_array *trail)
{
    char v[13];
    if (vs_rpc_md_get(trail, VS_RPC_MD_RETRY_AFTER, v, sizeof v) <= 0)
        return 0;
    int64_t ms = 0;
    for (const char *p = v; *p; p++) {
        if (*p < '0' || *p > '9')
            return 0;
        ms = ms * 10 + (*p - '0');
    }
    return ms;
}

vs_status vs_rpc_ucall_start(vs_rpc_ucall_t *c, vs_rpc_channel_t *ch, grpc_completion_queue *cq,
                             const char *method, const void *req, size_t len, int64_t timeout_ms, void *tag,
                             char err[VS_ERR_LEN])
{
    memset(c, 0, sizeof *c);
    if (timeout_ms > 0)
        timeout_ms = vs_rpc_timeout_exact_ms(timeout_ms);
    c->details = grpc_empty_slice();
    grpc_metadata_array_init(&c->init_md);
    grpc_metadata_array_init(&c->trail_md);
    gpr_timespec deadline = timeout_ms > 0 ? gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                                          gpr_time_from_millis(timeout_ms, GPR_TIMESPAN))
                                           : gpr_inf_future(GPR_CLOCK_MONOTONIC);
    grpc_slice msl = grpc_slice_from_copied_string(method);
    c->call = grpc_channel_create_call(vs_rpc_channel_grpc(ch), NULL, GRPC_PROPAGATE_DEFAULTS, cq, msl, NULL,
                                       deadline, NULL);
    grpc_slice_unref(msl);
    grpc_slice body = grpc_slice_from_copied_buffer(req, len);
    c->send = grpc_raw_byte_buffer_create(&body, 1);
    grpc_slice_unref(body);
    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = vs_rpc_call_md(ch, timeout_ms, c->md, c->md_timeout);
    ops[0].data.send_initial_metadata.metadata = c->md;
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
    VS_TSAN_RELEASE(tag);
    grpc_call_error e = grpc_call_start_batch(c->call, ops, 6, tag, NULL);
    if (e != GRPC_CALL_OK) {
        vs_rpc_ucall_fini(c);
        return vs_errf(err, VS_ERR_INTERNAL, "rpc call %s: start_batch failed (%d)", method, (int)e);
    }
    return VS_OK;
}

void vs_rpc_ucall_result(vs_rpc_ucall_t *c, int success, vs_rpc_result_t *out)
{
    out->seconds = vs_now_s() - c->t0;
    out->code = success ? (int)c->status : VS_GRPC_INTERNAL;
    char *d = grpc_slice_to_c_string(c->details);
    snprintf(out->message, sizeof out->message, "%s", d);
    gpr_free(d);
    out->retry_after_ms = out->code == VS_GRPC_OK ? 0 : vs_rpc_md_retry_after_ms(&c->trail_md);
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
}

void vs_rpc_ucall_fini(vs_rpc_ucall_t *c)
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
    memset(c, 0, sizeof *c);
    c->details = grpc_empty_slice();
}
