/* writes_client.c: see writes_client.h. */
#include "tests/support/writes_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/net/wlog.h"
#include "vecshard/v1/coordinator.pb-c.h"

uint64_t vs_test_log_last_seq(const char *url, const char *cluster)
{
    char err[VS_ERR_LEN];
    vs_wlog_opts_t o = {.url = url, .cluster = cluster, .timeout_ms = 2000};
    vs_wlog_t *l = NULL;
    vs_wlog_state_t s = {0};
    if (vs_wlog_open(&o, 0, &l, err) == VS_OK)
        vs_wlog_state(l, &s, err);
    vs_wlog_close(l);
    return s.last_seq;
}

vs_test_write_answer_t vs_test_call_write(vs_rpc_channel_t *ch, const char *method, const uint8_t *req,
                                          size_t len)
{
    vs_test_write_answer_t a = {.code = -1};
    uint8_t *out = NULL;
    size_t out_len = 0;
    if (vs_rpc_call_unary(ch, method, req, len, 10000, &a.code, a.msg, &out, &out_len) == VS_OK &&
        a.code == 0) {
        Vecshard__V1__WriteResponse *r = vecshard__v1__write_response__unpack(NULL, out_len, out);
        if (r) {
            a.seq = r->log_seq;
            a.dup = r->duplicate;
            vecshard__v1__write_response__free_unpacked(r, NULL);
        }
    }
    free(out);
    return a;
}

vs_test_write_answer_t vs_test_upsert(vs_rpc_channel_t *ch, const int64_t *ids, size_t n, const float *x,
                                      size_t n_floats, uint32_t dim, const char *model, const char *wid)
{
    Vecshard__V1__UpsertRequest r = VECSHARD__V1__UPSERT_REQUEST__INIT;
    r.ids = (int64_t *)ids;
    r.n_ids = n;
    r.dim = dim;
    r.vectors = (float *)x;
    r.n_vectors = n_floats;
    r.model_version = (char *)(model ? model : "");
    r.write_id = (char *)(wid ? wid : "");
    size_t len = vecshard__v1__upsert_request__get_packed_size(&r);
    uint8_t *b = malloc(len + 1);
    vecshard__v1__upsert_request__pack(&r, b);
    vs_test_write_answer_t a = vs_test_call_write(ch, "/vecshard.v1.Coordinator/Upsert", b, len);
    free(b);
    return a;
}

vs_test_write_answer_t vs_test_delete(vs_rpc_channel_t *ch, const int64_t *ids, size_t n, const char *wid)
{
    Vecshard__V1__DeleteRequest r = VECSHARD__V1__DELETE_REQUEST__INIT;
    r.ids = (int64_t *)ids;
    r.n_ids = n;
    r.write_id = (char *)(wid ? wid : "");
    size_t len = vecshard__v1__delete_request__get_packed_size(&r);
    uint8_t *b = malloc(len + 1);
    vecshard__v1__delete_request__pack(&r, b);
    vs_test_write_answer_t a = vs_test_call_write(ch, "/vecshard.v1.Coordinator/Delete", b, len);
    free(b);
    return a;
}

int vs_test_search_ids(vs_rpc_channel_t *ch, const float *q, uint32_t dim, uint32_t nprobe, uint32_t k,
                       int64_t *out)
{
    int code, partial;
    char msg[VS_ERR_LEN];
    return vs_test_search_at(ch, q, dim, nprobe, k, 0, out, &code, msg, &partial);
}

int vs_test_search_at(vs_rpc_channel_t *ch, const float *q, uint32_t dim, uint32_t nprobe, uint32_t k,
                      uint64_t min_log_seq, int64_t *out, int *code, char *msg, int *partial)
{
    Vecshard__V1__SearchRequest r = VECSHARD__V1__SEARCH_REQUEST__INIT;
    Vecshard__V1__SearchParams p = VECSHARD__V1__SEARCH_PARAMS__INIT;
    p.nprobe = nprobe;
    r.dim = dim;
    r.queries = (float *)q;
    r.n_queries = dim;
    r.k = k;
    r.params = &p;
    r.min_log_seq = min_log_seq;
    size_t len = vecshard__v1__search_request__get_packed_size(&r);
    uint8_t *b = malloc(len);
    vecshard__v1__search_request__pack(&r, b);
    int n = -1;
    *code = -1;
    *partial = 0;
    msg[0] = 0;
    uint8_t *body = NULL;
    size_t blen = 0;
    if (vs_rpc_call_unary(ch, "/vecshard.v1.Coordinator/Search", b, len, 5000, code, msg, &body, &blen) ==
            VS_OK &&
        *code == 0) {
        Vecshard__V1__SearchResponse *resp = vecshard__v1__search_response__unpack(NULL, blen, body);
        if (resp) {
            n = 0;
            for (size_t i = 0; i < resp->n_ids && i < k; i++)
                out[n++] = resp->ids[i];
            *partial = resp->coverage && resp->coverage->partial;
            if (resp->coverage && resp->coverage->n_reasons)
                snprintf(msg, VS_ERR_LEN, "%s", resp->coverage->reasons[0]);
            vecshard__v1__search_response__free_unpacked(resp, NULL);
        }
    }
    free(body);
    free(b);
    return n;
}
