/* rpc_ucall.h (private to common/net): one client unary call on a completion queue of the caller's
 * choosing - the ops, and the result read back - used by rpc_server.c (calls completed by the server's
 * workers). */
#ifndef VS_COMMON_NET_RPC_UCALL_H
#define VS_COMMON_NET_RPC_UCALL_H

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>

#include "common/net/rpc.h"

typedef struct vs_rpc_ucall {
    grpc_call *call;
    grpc_byte_buffer *send, *recv;
    grpc_metadata_array init_md, trail_md;
    grpc_status_code status;
    grpc_slice details;
    const char *error_string;
    double t0;
    grpc_metadata md[2];  /* the channel's, then VS_RPC_MD_TIMEOUT */
    char md_timeout[24];
} vs_rpc_ucall_t;

/* timeout_ms rounded down to what gRPC's grpc-timeout header carries exactly (it rounds up: to 10 ms from
 * 1 s, 100 ms from 10 s, 1 s from 100 s, 10 s from 1,000 s), so that the server's deadline is the one the
 * client meant and VS_RPC_MD_TIMEOUT minus the time left is the time the call queued. At least 1. */
int64_t vs_rpc_timeout_exact_ms(int64_t timeout_ms);

/* The request metadata of one call on ch with timeout_ms: the channel's (authorization) and, with a
 * timeout, VS_RPC_MD_TIMEOUT (rpc.h) = the timeout in microseconds. Fills md (2 entries; values point into
 * buf and the channel), returns the count. */
size_t vs_rpc_call_md(vs_rpc_channel_t *ch, int64_t timeout_ms, grpc_metadata md[2], char buf[24]);

/* The value of metadata `key` (lower case) in md into out (n bytes, NUL-terminated): its length, or -1
 * when absent or longer than n - 1. */
long vs_rpc_md_get(const grpc_metadata_array *md, const char *key, char *out, size_t n);

/* VS_RPC_MD_RETRY_AFTER in trailing metadata as milliseconds; 0 when absent or malformed. */
int64_t vs_rpc_md_retry_after_ms(const grpc_metadata_array *trail);

grpc_channel *vs_rpc_channel_grpc(vs_rpc_channel_t *ch);
/* The metadata every call on ch carries (*n of them; NULL when none). */
const grpc_metadata *vs_rpc_channel_md(const vs_rpc_channel_t *ch, size_t *n);

/* Creates the call on cq and starts its one batch (send request, close, receive everything) with tag.
 * VS_OK, or VS_ERR_INTERNAL with err (then u holds nothing; vs_rpc_ucall_fini is still safe). */
vs_status vs_rpc_ucall_start(vs_rpc_ucall_t *u, vs_rpc_channel_t *ch, grpc_completion_queue *cq,
                             const char *method, const void *req, size_t len, int64_t timeout_ms, void *tag,
                             char err[VS_ERR_LEN]);

/* The outcome once the batch completed (success: the event's flag); out->body is malloc'd. */
void vs_rpc_ucall_result(vs_rpc_ucall_t *u, int success, vs_rpc_result_t *out);

void vs_rpc_ucall_fini(vs_rpc_ucall_t *u);

/* rpc_tls.c: credentials watching t's files (NULL when gRPC refuses them), and a call's verified peer.
 * Channel credentials are checked (vs_rpc_tls_check) and shared by every channel of one configuration:
 * the caller releases them only when *owned (err says why on NULL). */
grpc_server_credentials *vs_rpc_tls_server_creds(const vs_rpc_tls_t *t);
grpc_channel_credentials *vs_rpc_tls_channel_creds(const vs_rpc_tls_t *t, int *owned, char err[VS_ERR_LEN]);
long vs_rpc_peer_name(grpc_call *call, char *out, size_t n);

#endif
