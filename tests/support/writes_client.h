/* writes_client.h: the calls integration tests make to a coordinator for fresh writes (issue 15): Upsert,
 * Delete and a search for the nearest ids, each one unary call with its gRPC code and message. */
#ifndef VS_TESTS_SUPPORT_WRITES_CLIENT_H
#define VS_TESTS_SUPPORT_WRITES_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "common/net/rpc.h"

typedef struct vs_test_write_answer {
    int code; /* gRPC status; -1 when the call could not be made */
    char msg[VS_ERR_LEN];
    uint64_t seq;
    int dup;
} vs_test_write_answer_t;

/* A serialized UpsertRequest / DeleteRequest (or anything else) to method; the WriteResponse read. */
vs_test_write_answer_t vs_test_call_write(vs_rpc_channel_t *ch, const char *method, const uint8_t *req,
                                          size_t len);
/* model, wid: NULL = "" (the active version's model; a new write id). */
vs_test_write_answer_t vs_test_upsert(vs_rpc_channel_t *ch, const int64_t *ids, size_t n, const float *x,
                                      size_t n_floats, uint32_t dim, const char *model, const char *wid);
vs_test_write_answer_t vs_test_delete(vs_rpc_channel_t *ch, const int64_t *ids, size_t n, const char *wid);

/* The last sequence of the write log of cluster on the NATS server at url (0 when it cannot be read). */
uint64_t vs_test_log_last_seq(const char *url, const char *cluster);

/* Searches q (dim floats) through the coordinator with nprobe and k: the ids answered into out (up to k),
 * their count, or -1 when the call failed. */
int vs_test_search_ids(vs_rpc_channel_t *ch, const float *q, uint32_t dim, uint32_t nprobe, uint32_t k,
                       int64_t *out);
/* The same with min_log_seq (read-your-writes); *code and msg (VS_ERR_LEN) say how the call ended, and
 * *partial whether some partition did not answer. */
int vs_test_search_at(vs_rpc_channel_t *ch, const float *q, uint32_t dim, uint32_t nprobe, uint32_t k,
                      uint64_t min_log_seq, int64_t *out, int *code, char *msg, int *partial);

#endif
