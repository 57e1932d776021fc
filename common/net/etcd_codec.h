/* etcd_codec.h: the encoding side of the etcd JSON-gateway client, without any network: base64, the
 * prefix range_end, int64-as-string fields, and parsers for the gateway's replies. Internal to common/net
 * (etcd.c and the unit tests use it); callers of the client use common/net/etcd.h.
 *
 * Rules of the gateway these helpers enforce: keys and values are base64 (standard alphabet, padded);
 * int64 fields arrive as JSON strings (parsed with strtoll, never through a double, since lease ids
 * exceed 2^53) and are accepted as integral JSON numbers too; proto3 JSON omits zero values, so a missing
 * field is 0, false or empty; a malformed field is VS_ERR_CORRUPT. */
#ifndef VS_COMMON_NET_ETCD_CODEC_H
#define VS_COMMON_NET_ETCD_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "common/net/etcd.h"
#include "common/status.h"

/* Length of the base64 text for n bytes (without the NUL). */
size_t vs_etcd_b64_len(size_t n);

/* Writes vs_etcd_b64_len(n) characters and a NUL to out. */
void vs_etcd_b64_encode(const void *in, size_t n, char *out);

/* Decodes len characters of padded standard base64 into a new malloc'd buffer with one extra NUL byte
 * (*out, *out_len). Returns VS_ERR_CORRUPT for a bad length, character or padding, VS_ERR_NOMEM. */
vs_status vs_etcd_b64_decode(const char *in, size_t len, char **out, size_t *out_len, char err[VS_ERR_LEN]);

/* The range_end selecting every key that starts with prefix: the prefix with its last byte that is not
 * 0xff incremented and the 0xff bytes after it dropped. When no such byte exists (plen 0 or all 0xff),
 * the result is the single byte 0x00, which etcd reads as "every key >= key" (and for plen 0 the key
 * itself must be sent as "\0": see vs_etcd_prefix_key). out must hold max(plen, 1) bytes; returns the
 * length written. */
size_t vs_etcd_prefix_end(const void *prefix, size_t plen, unsigned char *out);

/* The key to send for a prefix range: the prefix itself, or "\0" (length 1) when plen is 0. */
const void *vs_etcd_prefix_key(const void *prefix, size_t *inout_len);

/* Reads int64 field name of obj: a decimal string (strtoll, whole string) or an integral JSON number
 * within +-2^53. Missing or null -> 0. Anything else -> VS_ERR_CORRUPT. obj may be NULL (-> 0). */
vs_status vs_etcd_json_i64(const cJSON *obj, const char *name, int64_t *out, char err[VS_ERR_LEN]);

/* Reads a bool field: missing -> 0; a non-bool -> VS_ERR_CORRUPT. */
vs_status vs_etcd_json_bool(const cJSON *obj, const char *name, int *out, char err[VS_ERR_LEN]);

/* Parses one mvccpb.KeyValue object (key/value base64, int64 strings) into *out (owning key/value). */
vs_status vs_etcd_parse_kv(const cJSON *kv, vs_etcd_kv_t *out, char err[VS_ERR_LEN]);

/* Parses the "kvs" array of obj (missing -> none), appending to *out (its revision is not touched). */
vs_status vs_etcd_parse_kvs_into(const cJSON *obj, vs_etcd_kvs_t *out, char err[VS_ERR_LEN]);

/* Parses the header revision of obj ("header":{"revision":"N"}); missing -> 0. */
vs_status vs_etcd_parse_header_rev(const cJSON *obj, int64_t *out, char err[VS_ERR_LEN]);

/* Parses a unary reply body: its header revision (*out_rev, nullable) and, when field is non-NULL, the int64
 * field of that name at top level (*out_field; missing -> 0). For put, deleterange, lease grant. */
vs_status vs_etcd_parse_reply(const char *body, size_t len, int64_t *out_rev, const char *field,
                              int64_t *out_field, char err[VS_ERR_LEN]);

/* Parses a /v3/kv/range reply body. *out is overwritten (zeroed on failure). */
vs_status vs_etcd_parse_range(const char *body, size_t len, vs_etcd_kvs_t *out, char err[VS_ERR_LEN]);

/* Parses a /v3/kv/txn reply body. *out is overwritten (zeroed on failure). */
vs_status vs_etcd_parse_txn(const char *body, size_t len, vs_etcd_txn_result_t *out, char err[VS_ERR_LEN]);

/* Parses a /v3/lease/keepalive reply body ({"result":{"ID","TTL"}} or {"error":{...}}). A missing or
 * zero TTL means the lease is gone: VS_ERR_NOT_FOUND. */
vs_status vs_etcd_parse_keepalive(const char *body, size_t len, int64_t *out_ttl, char err[VS_ERR_LEN]);

/* Turns a non-200 reply (or a 200 reply carrying {"error":...}) into a status and an err message naming
 * what, the HTTP code and etcd's message. Without a JSON code the HTTP status decides (404 NOT_FOUND,
 * 400 INVALID_ARGUMENT, 503 UNAVAILABLE, 504 DEADLINE_EXCEEDED, else INTERNAL). */
vs_status vs_etcd_parse_error(const char *what, long http_code, const char *body, size_t len,
                              char err[VS_ERR_LEN]);

/* One message of a watch stream (one NDJSON line). */
typedef struct vs_etcd_watch_msg {
    int created, canceled;
    int64_t revision;         /* header revision */
    int64_t compact_revision; /* set when canceled because the start revision was compacted */
    size_t n_events;
    vs_etcd_kv_t *events; /* key/value owned; */
    int *is_delete;       /* per event: 1 DELETE, 0 PUT */
    char cancel_reason[128];
} vs_etcd_watch_msg_t;

/* Parses one watch line ({"result":{...}}; {"error":{...}} becomes the mapped status). *out is
 * overwritten (zeroed on failure); free with vs_etcd_watch_msg_fini. */
vs_status vs_etcd_parse_watch_msg(const char *line, size_t len, vs_etcd_watch_msg_t *out,
                                  char err[VS_ERR_LEN]);
void vs_etcd_watch_msg_fini(vs_etcd_watch_msg_t *m);

/* Adds "name":"<decimal>" to obj (int64 as a string, as the gateway emits them). 0 on success. */
int vs_etcd_json_add_i64(cJSON *obj, const char *name, int64_t v);

/* Adds "name":"<base64 of data>" to obj. 0 on success. */
int vs_etcd_json_add_b64(cJSON *obj, const char *name, const void *data, size_t len);

#endif
