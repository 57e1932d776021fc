/* rollout.c: see rollout.h. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "coordinator/cli/rollout.h"
#include "shard/server/manifest.h"

static void now_iso(char buf[32])
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Reads one key's JSON; *out NULL when absent. *rev = its mod_revision (0 when absent). */
static vs_status get_json(vs_etcd_t *e, const char *key, cJSON **out, int64_t *rev, char msg[VS_ERR_LEN])
{
    vs_etcd_kvs_t kvs = {0};
    *out = NULL;
    *rev = 0;
    vs_status st = vs_etcd_get(e, key, strlen(key), &kvs, msg);
    if (st == VS_OK && kvs.n == 1) {
        *out = cJSON_ParseWithLength(kvs.kvs[0].value, kvs.kvs[0].value_len);
        *rev = kvs.kvs[0].mod_revision;
        if (!*out)
            st = vs_errf(msg, VS_ERR_CORRUPT, "%s holds malformed JSON", key);
    }
    vs_etcd_kvs_fini(&kvs);
    return st;
}

static const char *str(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}

vs_status vs_rollout_deploy(vs_etcd_t *e, const char *cluster, const char *manifest_path,
                            char msg[VS_ERR_LEN])
{
    vs_manifest_t m;
    vs_status st = vs_manifest_load(manifest_path, &m, msg);
    if (st != VS_OK)
        return st;
    char abs[PATH_MAX], key[512], ts[32];
    if (!realpath(manifest_path, abs)) {
        vs_manifest_fini(&m);
        return vs_errf(msg, VS_ERR_IO, "%s: cannot resolve the path", manifest_path);
    }
    snprintf(key, sizeof key, "/vecshard/%s/versions/%s", cluster, m.version);
    now_iso(ts);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "version", m.version);
    cJSON_AddStringToObject(o, "manifest", abs);
    cJSON_AddStringToObject(o, "model_version", m.model_version);
    cJSON_AddNumberToObject(o, "partitions", m.n_partitions);
    cJSON_AddStringToObject(o, "state", "staged");
    cJSON_AddStringToObject(o, "staged_at", ts);
    char *json = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    vs_etcd_cmp_t cmp = {
        .key = key, .key_len = strlen(key), .target = VS_ETCD_CMP_CREATE, .result = VS_ETCD_EQUAL};
    vs_etcd_op_t put = {.kind = VS_ETCD_OP_PUT,
                        .key = key,
                        .key_len = strlen(key),
                        .value = json,
                        .value_len = json ? strlen(json) : 0};
    vs_etcd_op_t get = {.kind = VS_ETCD_OP_RANGE, .key = key, .key_len = strlen(key)};
    vs_etcd_txn_result_t res = {0};
    st = json ? vs_etcd_txn(e, &cmp, 1, &put, 1, &get, 1, &res, msg)
              : vs_errf(msg, VS_ERR_NOMEM, "out of memory");
    if (st == VS_OK && res.succeeded) {
        snprintf(msg, VS_ERR_LEN, "staged %.64s (%u partitions, model \"%.64s\") from %.300s", m.version,
                 m.n_partitions, m.model_version, abs);
    } else if (st == VS_OK) {
        cJSON *cur = res.kvs.n ? cJSON_ParseWithLength(res.kvs.kvs[0].value, res.kvs.kvs[0].value_len) : NULL;
        if (cur && strcmp(str(cur, "manifest"), abs) == 0)
            snprintf(msg, VS_ERR_LEN, "%s is already deployed from %.300s (state %s)", m.version, abs,
                     str(cur, "state"));
        else
            st = vs_errf(msg, VS_ERR_ALREADY_EXISTS,
                         "version %s is already deployed from another manifest (%s)", m.version,
                         cur ? str(cur, "manifest") : "?");
        cJSON_Delete(cur);
    }
    vs_etcd_txn_result_fini(&res);
    cJSON_free(json);
    vs_manifest_fini(&m);
    return st;
}

/* Counts, per partition, member replicas (not draining) holding version READY; writes a refusal into msg
 * and returns VS_ERR_FAILED_PRECONDITION when one has fewer than min_ready. */
static vs_status check_ready(vs_etcd_t *e, const char *cluster, const char *version, size_t partitions,
                             size_t min_ready, char msg[VS_ERR_LEN])
{
    char prefix[256];
    snprintf(prefix, sizeof prefix, "/vecshard/%s/members/", cluster);
    vs_etcd_kvs_t kvs = {0};
    vs_status st = vs_etcd_range_prefix(e, prefix, strlen(prefix), &kvs, msg);
    if (st != VS_OK)
        return st;
    size_t *ready = calloc(partitions ? partitions : 1, sizeof(size_t));
    char failures[VS_ERR_LEN / 2] = "";
    size_t off = 0;
    for (size_t i = 0; ready && i < kvs.n; i++) {
        cJSON *o = cJSON_ParseWithLength(kvs.kvs[i].value, kvs.kvs[i].value_len);
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "partition");
        const cJSON *vers = cJSON_GetObjectItemCaseSensitive(o, "versions"), *v;
        int draining = strcmp(str(o, "state"), "DRAINING") == 0;
        cJSON_ArrayForEach(v, vers)
        {
            if (strcmp(str(v, "version"), version) != 0)
                continue;
            if (strcmp(str(v, "state"), "READY") == 0 && !draining && cJSON_IsNumber(p) &&
                p->valuedouble >= 0 && (size_t)p->valuedouble < partitions)
                ready[(size_t)p->valuedouble]++;
            else if (strcmp(str(v, "state"), "FAILED") == 0 && off < sizeof failures - 1)
                off += (size_t)snprintf(failures + off, sizeof failures - off, "; %s: FAILED: %.120s",
                                        str(o, "replica_id"), str(v, "error"));
        }
        cJSON_Delete(o);
    }
    vs_etcd_kvs_fini(&kvs);
    if (!ready)
        return vs_errf(msg, VS_ERR_NOMEM, "out of memory");
    char counts[VS_ERR_LEN / 2] = "";
    size_t coff = 0;
    int short_of = 0;
    for (size_t p = 0; p < partitions; p++) {
        short_of |= ready[p] < min_ready;
        if (coff < sizeof counts - 1)
            coff += (size_t)snprintf(counts + coff, sizeof counts - coff, "%sp%zu %zu/%zu", p ? ", " : "", p,
                                     ready[p], min_ready);
    }
    free(ready);
    if (short_of)
        return vs_errf(msg, VS_ERR_FAILED_PRECONDITION,
                       "%s is not ready on every partition (ready replicas / required: %s)%s", version,
                       counts, failures);
    return VS_OK;
}

/* Rewrites a version record with a new state (appended as a txn op into ops/bufs). */
static int state_op(vs_etcd_t *e, const char *cluster, const char *version, const char *state,
                    vs_etcd_op_t *op, char **buf, char keybuf[512], char msg[VS_ERR_LEN])
{
    snprintf(keybuf, 512, "/vecshard/%s/versions/%s", cluster, version);
    cJSON *o;
    int64_t rev;
    if (get_json(e, keybuf, &o, &rev, msg) != VS_OK || !o)
        return 0;
    cJSON_DeleteItemFromObjectCaseSensitive(o, "state");
    cJSON_AddStringToObject(o, "state", state);
    *buf = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    *op = (vs_etcd_op_t){.kind = VS_ETCD_OP_PUT,
                         .key = keybuf,
                         .key_len = strlen(keybuf),
                         .value = *buf,
                         .value_len = *buf ? strlen(*buf) : 0};
    return *buf != NULL;
}

/* Switches active to `version` with `previous` kept, retiring `retire` (may be ""), if the active key is
 * still at revision rev (0 = absent). */
static vs_status switch_active(vs_etcd_t *e, const char *cluster, const char *version, const char *previous,
                               const char *retire, int64_t rev, char msg[VS_ERR_LEN])
{
    char akey[512], ts[32], keys[3][512];
    char *bufs[4] = {0};
    vs_etcd_op_t ops[4];
    size_t n = 0;
    snprintf(akey, sizeof akey, "/vecshard/%s/active", cluster);
    now_iso(ts);
    cJSON *a = cJSON_CreateObject();
    cJSON_AddStringToObject(a, "version", version);
    cJSON_AddStringToObject(a, "previous", previous);
    cJSON_AddStringToObject(a, "activated_at", ts);
    bufs[0] = cJSON_PrintUnformatted(a);
    cJSON_Delete(a);
    ops[n++] = (vs_etcd_op_t){.kind = VS_ETCD_OP_PUT,
                              .key = akey,
                              .key_len = strlen(akey),
                              .value = bufs[0],
                              .value_len = bufs[0] ? strlen(bufs[0]) : 0};
    n += state_op(e, cluster, version, "active", &ops[n], &bufs[n], keys[0], msg);
    if (previous[0])
        n += state_op(e, cluster, previous, "previous", &ops[n], &bufs[n], keys[1], msg);
    if (retire[0] && strcmp(retire, version) != 0 && strcmp(retire, previous) != 0)
        n += state_op(e, cluster, retire, "retired", &ops[n], &bufs[n], keys[2], msg);
    vs_etcd_cmp_t cmp = {.key = akey,
                         .key_len = strlen(akey),
                         .target = rev ? VS_ETCD_CMP_MOD : VS_ETCD_CMP_CREATE,
                         .result = VS_ETCD_EQUAL,
                         .number = rev};
    vs_etcd_txn_result_t res = {0};
    vs_status st = vs_etcd_txn(e, &cmp, 1, ops, n, NULL, 0, &res, msg);
    if (st == VS_OK && !res.succeeded)
        st = vs_errf(msg, VS_ERR_FAILED_PRECONDITION,
                     "the active version changed meanwhile; nothing done, retry");
    vs_etcd_txn_result_fini(&res);
    for (size_t i = 0; i < 4; i++)
        cJSON_free(bufs[i]);
    return st;
}

vs_status vs_rollout_activate(vs_etcd_t *e, const char *cluster, const char *version, size_t min_ready,
                              char msg[VS_ERR_LEN])
{
    char vkey[512], akey[512];
    snprintf(vkey, sizeof vkey, "/vecshard/%s/versions/%s", cluster, version);
    snprintf(akey, sizeof akey, "/vecshard/%s/active", cluster);
    cJSON *rec = NULL, *act = NULL;
    int64_t vrev, arev;
    vs_status st = get_json(e, vkey, &rec, &vrev, msg);
    if (st == VS_OK && !rec)
        st = vs_errf(msg, VS_ERR_NOT_FOUND, "version %s is not deployed (vecshard deploy MANIFEST first)",
                     version);
    if (st == VS_OK && strcmp(str(rec, "state"), "retired") == 0)
        st = vs_errf(msg, VS_ERR_FAILED_PRECONDITION, "version %s is retired; deploy it again", version);
    if (st == VS_OK)
        st = get_json(e, akey, &act, &arev, msg);
    const char *cur = act ? str(act, "version") : "";
    const char *prev = act ? str(act, "previous") : "";
    if (st == VS_OK && strcmp(cur, version) == 0) {
        snprintf(msg, VS_ERR_LEN, "%s is already active", version);
    } else if (st == VS_OK) {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(rec, "partitions");
        size_t parts = cJSON_IsNumber(p) && p->valuedouble >= 1 ? (size_t)p->valuedouble : 1;
        st = check_ready(e, cluster, version, parts, min_ready ? min_ready : 1, msg);
        if (st == VS_OK)
            st = switch_active(e, cluster, version, cur, prev, arev, msg);
        if (st == VS_OK)
            snprintf(msg, VS_ERR_LEN, "%s is active%s%s%s%s", version, cur[0] ? "; previous: " : "", cur,
                     prev[0] && strcmp(prev, version) ? "; retired: " : "",
                     prev[0] && strcmp(prev, version) ? prev : "");
    }
    cJSON_Delete(rec);
    cJSON_Delete(act);
    return st;
}

vs_status vs_rollout_rollback(vs_etcd_t *e, const char *cluster, size_t min_ready, char msg[VS_ERR_LEN])
{
    char akey[512];
    snprintf(akey, sizeof akey, "/vecshard/%s/active", cluster);
    cJSON *act = NULL, *rec = NULL;
    int64_t arev, vrev;
    vs_status st = get_json(e, akey, &act, &arev, msg);
    const char *cur = act ? str(act, "version") : "", *prev = act ? str(act, "previous") : "";
    if (st == VS_OK && !prev[0])
        st = vs_errf(msg, VS_ERR_FAILED_PRECONDITION, "no previous version to roll back to (active: %s)",
                     cur[0] ? cur : "none");
    char vkey[512];
    snprintf(vkey, sizeof vkey, "/vecshard/%s/versions/%s", cluster, prev);
    if (st == VS_OK)
        st = get_json(e, vkey, &rec, &vrev, msg);
    if (st == VS_OK && (!rec || strcmp(str(rec, "state"), "retired") == 0))
        st = vs_errf(msg, VS_ERR_FAILED_PRECONDITION, "previous version %s is no longer held", prev);
    if (st == VS_OK) {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(rec, "partitions");
        st = check_ready(e, cluster, prev,
                         cJSON_IsNumber(p) && p->valuedouble >= 1 ? (size_t)p->valuedouble : 1,
                         min_ready ? min_ready : 1, msg);
    }
    if (st == VS_OK)
        st = switch_active(e, cluster, prev, cur, "", arev, msg);
    if (st == VS_OK)
        snprintf(msg, VS_ERR_LEN, "rolled back: %s is active; previous: %s", prev, cur);
    cJSON_Delete(act);
    cJSON_Delete(rec);
    return st;
}
