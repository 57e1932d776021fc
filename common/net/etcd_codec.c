/* etcd_codec.c: base64, prefix range_end, int64 fields and reply parsers of the etcd JSON gateway.
 * No network and no threads here, so every decoder is tested on canned replies (tests/unit). */
#include "common/net/etcd_codec.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char b64_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t vs_etcd_b64_len(size_t n)
{
    return (n + 2) / 3 * 4;
}

void vs_etcd_b64_encode(const void *in, size_t n, char *out)
{
    const unsigned char *p = in;
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        out[o++] = b64_alphabet[v >> 18];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = b64_alphabet[(v >> 6) & 63];
        out[o++] = b64_alphabet[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0);
        out[o++] = b64_alphabet[v >> 18];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = i + 1 < n ? b64_alphabet[(v >> 6) & 63] : '=';
        out[o++] = '=';
    }
    out[o] = '\0';
}

static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

vs_status vs_etcd_b64_decode(const char *in, size_t len, char **out, size_t *out_len, char err[VS_ERR_LEN])
{
    if (len % 4 != 0)
        return vs_errf(err, VS_ERR_CORRUPT, "base64: length %zu is not a multiple of 4", len);
    size_t pad = 0;
    if (len > 0 && in[len - 1] == '=')
        pad = len > 1 && in[len - 2] == '=' ? 2 : 1;
    size_t n = len / 4 * 3 - pad;
    char *buf = malloc(n + 1);
    if (buf == NULL)
        return vs_errf(err, VS_ERR_NOMEM, "base64: out of memory for %zu bytes", n);
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        int last = i + 4 == len;
        int v[4];
        for (int j = 0; j < 4; j++) {
            v[j] = b64_value(in[i + j]);
            if (v[j] < 0 && !(last && in[i + j] == '=' && j >= 4 - (int)pad)) {
                free(buf);
                return vs_errf(err, VS_ERR_CORRUPT, "base64: bad character 0x%02x at %zu",
                               (unsigned char)in[i + j], i + j);
            }
            if (v[j] < 0)
                v[j] = 0;
        }
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        size_t bytes = last ? 3 - pad : 3;
        buf[o++] = (char)(w >> 16);
        if (bytes > 1)
            buf[o++] = (char)((w >> 8) & 0xff);
        if (bytes > 2)
            buf[o++] = (char)(w & 0xff);
    }
    buf[n] = '\0';
    *out = buf;
    *out_len = n;
    return VS_OK;
}

size_t vs_etcd_prefix_end(const void *prefix, size_t plen, unsigned char *out)
{
    const unsigned char *p = prefix;
    size_t i = plen;
    while (i > 0 && p[i - 1] == 0xff)
        i--;
    if (i == 0) {
        out[0] = 0;
        return 1;
    }
    memcpy(out, p, i);
    out[i - 1]++;
    return i;
}

const void *vs_etcd_prefix_key(const void *prefix, size_t *inout_len)
{
    if (*inout_len == 0) {
        *inout_len = 1;
        return "";
    }
    return prefix;
}

vs_status vs_etcd_json_i64(const cJSON *obj, const char *name, int64_t *out, char err[VS_ERR_LEN])
{
    *out = 0;
    const cJSON *it = obj != NULL ? cJSON_GetObjectItemCaseSensitive(obj, name) : NULL;
    if (it == NULL || cJSON_IsNull(it))
        return VS_OK;
    if (cJSON_IsString(it)) {
        const char *s = it->valuestring;
        char *end = NULL;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (s[0] == '\0' || *end != '\0' || errno == ERANGE)
            return vs_errf(err, VS_ERR_CORRUPT, "etcd reply: field %s is not an int64: \"%.40s\"", name, s);
        *out = (int64_t)v;
        return VS_OK;
    }
    if (cJSON_IsNumber(it)) {
        double d = it->valuedouble;
        if (!(fabs(d) <= 9007199254740992.0) || d != floor(d))
            return vs_errf(err, VS_ERR_CORRUPT, "etcd reply: field %s is not an exact integer", name);
        *out = (int64_t)d;
        return VS_OK;
    }
    return vs_errf(err, VS_ERR_CORRUPT, "etcd reply: field %s has the wrong JSON type", name);
}

vs_status vs_etcd_json_bool(const cJSON *obj, const char *name, int *out, char err[VS_ERR_LEN])
{
    *out = 0;
    const cJSON *it = obj != NULL ? cJSON_GetObjectItemCaseSensitive(obj, name) : NULL;
    if (it == NULL || cJSON_IsNull(it))
        return VS_OK;
    if (!cJSON_IsBool(it))
        return vs_errf(err, VS_ERR_CORRUPT, "etcd reply: field %s is not a bool", name);
    *out = cJSON_IsTrue(it);
    return VS_OK;
}

/* Decodes base64 field name of obj into a new buffer (missing -> empty, still allocated). */
static vs_status json_bytes(const cJSON *obj, const char *name, char **out, size_t *out_len,
                            char err[VS_ERR_LEN])
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
    const char *s = "";
    if (it != NULL && !cJSON_IsNull(it)) {
        if (!cJSON_IsString(it))
            return vs_errf(err, VS_ERR_CORRUPT, "etcd reply: field %s is not a base64 string", name);
        s = it->valuestring;
    }
    vs_status st = vs_etcd_b64_decode(s, strlen(s), out, out_len, err);
    if (st == VS_ERR_CORRUPT)
        return vs_errf(err, st, "etcd reply: field %s is not valid base64", name);
    return st;
}

vs_status vs_etcd_parse_kv(const cJSON *kv, vs_etcd_kv_t *out, char err[VS_ERR_LEN])
{
    memset(out, 0, sizeof *out);
    if (!cJSON_IsObject(kv))
        return vs_errf(err, VS_ERR_CORRUPT, "etcd reply: a key-value is not an object");
    vs_etcd_kv_t r = {0};
    vs_status st;
    if ((st = vs_etcd_json_i64(kv, "create_revision", &r.create_revision, err)) != VS_OK ||
        (st = vs_etcd_json_i64(kv, "mod_revision", &r.mod_revision, err)) != VS_OK ||
        (st = vs_etcd_json_i64(kv, "version", &r.version, err)) != VS_OK ||
        (st = vs_etcd_json_i64(kv, "lease", &r.lease, err)) != VS_OK)
        return st;
    if ((st = json_bytes(kv, "key", &r.key, &r.key_len, err)) != VS_OK)
        return st;
    if ((st = json_bytes(kv, "value", &r.value, &r.value_len, err)) != VS_OK) {
        free(r.key);
        return st;
    }
    *out = r;
    return VS_OK;
}

void vs_etcd_kvs_fini(vs_etcd_kvs_t *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->n; i++) {
        free(r->kvs[i].key);
        free(r->kvs[i].value);
    }
    free(r->kvs);
    memset(r, 0, sizeof *r);
}

vs_status vs_etcd_parse_kvs_into(const cJSON *obj, vs_etcd_kvs_t *out, char err[VS_ERR_LEN])
{
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(obj, "kvs");
    if (arr == NULL || cJSON_IsNull(arr))
        return VS_OK;
    if (!cJSON_IsArray(arr))
        return vs_errf(err, VS_ERR_CORRUPT, "etcd reply: kvs is not an array");
    size_t add = (size_t)cJSON_GetArraySize(arr);
    if (add == 0)
        return VS_OK;
    vs_etcd_kv_t *grown = realloc(out->kvs, (out->n + add) * sizeof *grown);
    if (grown == NULL)
        return vs_errf(err, VS_ERR_NOMEM, "etcd reply: out of memory for %zu pairs", out->n + add);
    out->kvs = grown;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr)
    {
        vs_status st = vs_etcd_parse_kv(it, &out->kvs[out->n], err);
        if (st != VS_OK)
            return st;
        out->n++;
    }
    return VS_OK;
}

vs_status vs_etcd_parse_header_rev(const cJSON *obj, int64_t *out, char err[VS_ERR_LEN])
{
    *out = 0;
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(obj, "header");
    if (h == NULL || cJSON_IsNull(h))
        return VS_OK;
    if (!cJSON_IsObject(h))
        return vs_errf(err, VS_ERR_CORRUPT, "etcd reply: header is not an object");
    return vs_etcd_json_i64(h, "revision", out, err);
}

static vs_status parse_object(const char *body, size_t len, cJSON **out, char err[VS_ERR_LEN])
{
    cJSON *root = cJSON_ParseWithLength(body, len);
    if (root == NULL || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return vs_errf(err, VS_ERR_CORRUPT, "etcd reply is not a JSON object (%zu bytes: \"%.*s\")", len,
                       (int)(len < 60 ? len : 60), len > 0 ? body : "");
    }
    *out = root;
    return VS_OK;
}

vs_status vs_etcd_parse_reply(const char *body, size_t len, int64_t *out_rev, const char *field,
                              int64_t *out_field, char err[VS_ERR_LEN])
{
    cJSON *root = NULL;
    vs_status st = parse_object(body, len, &root, err);
    if (st != VS_OK)
        return st;
    int64_t rev = 0, f = 0;
    st = vs_etcd_parse_header_rev(root, &rev, err);
    if (st == VS_OK && field != NULL)
        st = vs_etcd_json_i64(root, field, &f, err);
    cJSON_Delete(root);
    if (st != VS_OK)
        return st;
    if (out_rev != NULL)
        *out_rev = rev;
    if (out_field != NULL)
        *out_field = f;
    return VS_OK;
}

vs_status vs_etcd_parse_range(const char *body, size_t len, vs_etcd_kvs_t *out, char err[VS_ERR_LEN])
{
    memset(out, 0, sizeof *out);
    cJSON *root = NULL;
    vs_status st = parse_object(body, len, &root, err);
    if (st != VS_OK)
        return st;
    vs_etcd_kvs_t r = {0};
    st = vs_etcd_parse_header_rev(root, &r.revision, err);
    if (st == VS_OK)
        st = vs_etcd_parse_kvs_into(root, &r, err);
    cJSON_Delete(root);
    if (st != VS_OK) {
        vs_etcd_kvs_fini(&r);
        return st;
    }
    *out = r;
    return VS_OK;
}

void vs_etcd_txn_result_fini(vs_etcd_txn_result_t *r)
{
    if (r == NULL)
        return;
    vs_etcd_kvs_fini(&r->kvs);
    memset(r, 0, sizeof *r);
}

vs_status vs_etcd_parse_txn(const char *body, size_t len, vs_etcd_txn_result_t *out, char err[VS_ERR_LEN])
{
    memset(out, 0, sizeof *out);
    cJSON *root = NULL;
    vs_status st = parse_object(body, len, &root, err);
    if (st != VS_OK)
        return st;
    vs_etcd_txn_result_t r = {0};
    st = vs_etcd_parse_header_rev(root, &r.revision, err);
    if (st == VS_OK)
        st = vs_etcd_json_bool(root, "succeeded", &r.succeeded, err);
    r.kvs.revision = r.revision;
    const cJSON *resps = cJSON_GetObjectItemCaseSensitive(root, "responses");
    if (st == VS_OK && resps != NULL && !cJSON_IsNull(resps)) {
        if (!cJSON_IsArray(resps))
            st = vs_errf(err, VS_ERR_CORRUPT, "etcd txn reply: responses is not an array");
        const cJSON *it;
        cJSON_ArrayForEach(it, resps)
        {
            if (st != VS_OK)
                break;
            const cJSON *rr = cJSON_GetObjectItemCaseSensitive(it, "response_range");
            if (rr != NULL)
                st = vs_etcd_parse_kvs_into(rr, &r.kvs, err);
        }
    }
    cJSON_Delete(root);
    if (st != VS_OK) {
        vs_etcd_txn_result_fini(&r);
        return st;
    }
    *out = r;
    return VS_OK;
}

static vs_status status_from_http(long http_code)
{
    switch (http_code) {
    case 400:
        return VS_ERR_INVALID_ARGUMENT;
    case 404:
        return VS_ERR_NOT_FOUND;
    case 503:
        return VS_ERR_UNAVAILABLE;
    case 504:
        return VS_ERR_DEADLINE_EXCEEDED;
    default:
        return VS_ERR_INTERNAL;
    }
}

/* Fills st/message from an error object: {"error":"..","message":"..","code":N} (unary) or the stream form
 * {"grpc_code":N,"http_code":N,"message":".."}. Returns 1 if a code was found. */
static int error_fields(const cJSON *o, int64_t *code, const char **msg)
{
    char ignored[VS_ERR_LEN];
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, "message");
    if (!cJSON_IsString(m))
        m = cJSON_GetObjectItemCaseSensitive(o, "error");
    if (cJSON_IsString(m))
        *msg = m->valuestring;
    const char *names[] = {"code", "grpc_code"};
    for (int i = 0; i < 2; i++)
        if (cJSON_GetObjectItemCaseSensitive(o, names[i]) != NULL &&
            vs_etcd_json_i64(o, names[i], code, ignored) == VS_OK)
            return 1;
    return 0;
}

vs_status vs_etcd_parse_error(const char *what, long http_code, const char *body, size_t len,
                              char err[VS_ERR_LEN])
{
    cJSON *root = cJSON_ParseWithLength(body, len);
    int64_t code = 0;
    const char *msg = NULL;
    int have = 0;
    if (cJSON_IsObject(root)) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "error");
        if (cJSON_IsObject(e))
            have = error_fields(e, &code, &msg);
        else
            have = error_fields(root, &code, &msg);
    }
    vs_status st =
        have ? vs_status_from_grpc(code >= 0 && code < VS_GRPC_CODE_COUNT_ ? (int)code : VS_GRPC_UNKNOWN)
             : status_from_http(http_code);
    if (st == VS_OK) /* an error reply that claims code 0 is still not a success */
        st = VS_ERR_INTERNAL;
    if (msg != NULL)
        vs_errf(err, st, "etcd %s: HTTP %ld, code %" PRId64 ": %.300s", what, http_code, code, msg);
    else
        vs_errf(err, st, "etcd %s: HTTP %ld: %.*s", what, http_code,
                len > 0 ? (int)(len < 200 ? len : 200) : 12, len > 0 ? body : "(empty body)");
    cJSON_Delete(root);
    return st;
}

vs_status vs_etcd_parse_keepalive(const char *body, size_t len, int64_t *out_ttl, char err[VS_ERR_LEN])
{
    *out_ttl = 0;
    cJSON *root = NULL;
    vs_status st = parse_object(body, len, &root, err);
    if (st != VS_OK)
        return st;
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(root, "result");
    if (cJSON_GetObjectItemCaseSensitive(root, "error") != NULL) {
        cJSON_Delete(root);
        return vs_etcd_parse_error("lease keepalive", 200, body, len, err);
    }
    int64_t ttl = 0;
    if (!cJSON_IsObject(res))
        st = vs_errf(err, VS_ERR_CORRUPT, "etcd lease keepalive reply has no result object");
    else
        st = vs_etcd_json_i64(res, "TTL", &ttl, err);
    cJSON_Delete(root);
    if (st != VS_OK)
        return st;
    if (ttl <= 0)
        return vs_errf(err, VS_ERR_NOT_FOUND, "etcd lease keepalive: lease expired or revoked (no TTL)");
    *out_ttl = ttl;
    return VS_OK;
}

void vs_etcd_watch_msg_fini(vs_etcd_watch_msg_t *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->n_events; i++) {
        free(m->events[i].key);
        free(m->events[i].value);
    }
    free(m->events);
    free(m->is_delete);
    memset(m, 0, sizeof *m);
}

static vs_status parse_watch_result(const cJSON *res, vs_etcd_watch_msg_t *m, char err[VS_ERR_LEN])
{
    vs_status st;
    if ((st = vs_etcd_parse_header_rev(res, &m->revision, err)) != VS_OK ||
        (st = vs_etcd_json_bool(res, "created", &m->created, err)) != VS_OK ||
        (st = vs_etcd_json_bool(res, "canceled", &m->canceled, err)) != VS_OK ||
        (st = vs_etcd_json_i64(res, "compact_revision", &m->compact_revision, err)) != VS_OK)
        return st;
    const cJSON *reason = cJSON_GetObjectItemCaseSensitive(res, "cancel_reason");
    if (cJSON_IsString(reason))
        snprintf(m->cancel_reason, sizeof m->cancel_reason, "%s", reason->valuestring);
    const cJSON *evs = cJSON_GetObjectItemCaseSensitive(res, "events");
    if (evs == NULL || cJSON_IsNull(evs))
        return VS_OK;
    if (!cJSON_IsArray(evs))
        return vs_errf(err, VS_ERR_CORRUPT, "etcd watch: events is not an array");
    size_t n = (size_t)cJSON_GetArraySize(evs);
    if (n == 0)
        return VS_OK;
    m->events = calloc(n, sizeof *m->events);
    m->is_delete = calloc(n, sizeof *m->is_delete);
    if (m->events == NULL || m->is_delete == NULL)
        return vs_errf(err, VS_ERR_NOMEM, "etcd watch: out of memory for %zu events", n);
    const cJSON *ev;
    cJSON_ArrayForEach(ev, evs)
    {
        if (!cJSON_IsObject(ev))
            return vs_errf(err, VS_ERR_CORRUPT, "etcd watch: an event is not an object");
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(ev, "type");
        int del = 0;
        if (type != NULL && !cJSON_IsNull(type)) {
            if (!cJSON_IsString(type))
                return vs_errf(err, VS_ERR_CORRUPT, "etcd watch: event type is not a string");
            if (strcmp(type->valuestring, "DELETE") == 0)
                del = 1;
            else if (strcmp(type->valuestring, "PUT") != 0)
                return vs_errf(err, VS_ERR_CORRUPT, "etcd watch: unknown event type \"%.40s\"",
                               type->valuestring);
        }
        const cJSON *kv = cJSON_GetObjectItemCaseSensitive(ev, "kv");
        if ((st = vs_etcd_parse_kv(kv, &m->events[m->n_events], err)) != VS_OK)
            return st;
        m->is_delete[m->n_events] = del;
        m->n_events++;
    }
    return VS_OK;
}

vs_status vs_etcd_parse_watch_msg(const char *line, size_t len, vs_etcd_watch_msg_t *out,
                                  char err[VS_ERR_LEN])
{
    memset(out, 0, sizeof *out);
    cJSON *root = NULL;
    vs_status st = parse_object(line, len, &root, err);
    if (st != VS_OK)
        return st;
    if (cJSON_GetObjectItemCaseSensitive(root, "error") != NULL) {
        cJSON_Delete(root);
        return vs_etcd_parse_error("watch", 200, line, len, err);
    }
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(root, "result");
    vs_etcd_watch_msg_t m = {0};
    if (!cJSON_IsObject(res))
        st = vs_errf(err, VS_ERR_CORRUPT, "etcd watch: message has no result object");
    else
        st = parse_watch_result(res, &m, err);
    cJSON_Delete(root);
    if (st != VS_OK) {
        vs_etcd_watch_msg_fini(&m);
        return st;
    }
    *out = m;
    return VS_OK;
}

int vs_etcd_json_add_i64(cJSON *obj, const char *name, int64_t v)
{
    char s[32];
    snprintf(s, sizeof s, "%" PRId64, v);
    return cJSON_AddStringToObject(obj, name, s) != NULL ? 0 : -1;
}

int vs_etcd_json_add_b64(cJSON *obj, const char *name, const void *data, size_t len)
{
    char small[256];
    size_t need = vs_etcd_b64_len(len) + 1;
    char *s = need <= sizeof small ? small : malloc(need);
    if (s == NULL)
        return -1;
    vs_etcd_b64_encode(data, len, s);
    int rc = cJSON_AddStringToObject(obj, name, s) != NULL ? 0 : -1;
    if (s != small)
        free(s);
    return rc;
}
