/* records.c: JSON codecs of the cluster's etcd records (records.h), with cJSON. */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/cluster/records.h"

static const char *const member_states[] = {"LOADING", "SERVING", "DRAINING", NULL};
static const char *const replica_version_states[] = {"LOADING", "VERIFYING", "READY",
                                                     "FAILED",  "UNLOADING", NULL};
static const char *const version_states[] = {"staged", "active", "previous", "retired", "failed", NULL};

static int one_of(const char *s, const char *const *set)
{
    for (; *set; set++)
        if (strcmp(s, *set) == 0)
            return 1;
    return 0;
}

/* ---- encoding ---------------------------------------------------------------------------------- */

static vs_status finish(cJSON *o, int ok, char **out, char err[VS_ERR_LEN])
{
    char *s = ok && o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!s)
        return vs_errf(err, VS_ERR_NOMEM, "record: out of memory");
    /* cJSON allocates with malloc (no hooks installed), so callers free() it */
    *out = s;
    return VS_OK;
}

static int add_str(cJSON *o, const char *k, const char *v)
{
    return cJSON_AddStringToObject(o, k, v) != NULL;
}

static int add_num(cJSON *o, const char *k, double v)
{
    return cJSON_AddNumberToObject(o, k, v) != NULL;
}

vs_status vs_member_rec_encode(const vs_member_rec_t *r, char **out, char err[VS_ERR_LEN])
{
    cJSON *o = cJSON_CreateObject();
    int ok = o && add_str(o, "address", r->address) && add_num(o, "partition", r->partition) &&
             add_str(o, "replica_id", r->replica_id) && add_str(o, "state", r->state) &&
             add_str(o, "active_version", r->active_version);
    if (ok && r->instance_id[0])
        ok = add_str(o, "instance_id", r->instance_id);
    if (ok && r->zone[0])
        ok = add_str(o, "zone", r->zone);
    cJSON *arr = ok ? cJSON_AddArrayToObject(o, "versions") : NULL;
    ok = ok && arr;
    for (size_t i = 0; ok && i < r->n_versions && i < VS_MEMBER_MAX_VERSIONS; i++) {
        const vs_member_version_t *v = &r->versions[i];
        cJSON *e = cJSON_CreateObject();
        ok = e && add_str(e, "version", v->version) && add_str(e, "state", v->state) &&
             (!v->error[0] || add_str(e, "error", v->error)) &&
             add_num(e, "n_vectors", (double)v->n_vectors) &&
             (!v->content_id[0] || add_str(e, "content_id", v->content_id)) &&
             (!v->fresh_fill_pct || add_num(e, "fresh_fill_pct", v->fresh_fill_pct));
        if (ok && v->dim)
            ok = add_num(e, "dim", v->dim) && add_str(e, "metric", v->metric) &&
                 add_str(e, "model_version", v->model_version) &&
                 add_str(e, "partitioning", v->partitioning) && add_num(e, "partitions", v->partitions);
        if (e && !cJSON_AddItemToArray(arr, e)) {
            cJSON_Delete(e);
            ok = 0;
        }
    }
    ok = ok && add_str(o, "started_at", r->started_at);
    if (ok && r->memory_limit_bytes)
        ok = add_num(o, "memory_limit_bytes", (double)r->memory_limit_bytes) &&
             add_num(o, "rss_bytes", (double)r->rss_bytes);
    if (ok && r->has_free_slots)
        ok = add_num(o, "free_slots", r->free_slots);
    return finish(o, ok, out, err);
}

vs_status vs_version_rec_encode(const vs_version_rec_t *r, char **out, char err[VS_ERR_LEN])
{
    cJSON *o = cJSON_CreateObject();
    int ok = o && add_str(o, "version", r->version) && add_str(o, "manifest", r->manifest) &&
             add_str(o, "model_version", r->model_version) && add_num(o, "partitions", r->partitions) &&
             add_str(o, "state", r->state) && add_str(o, "staged_at", r->staged_at);
    if (ok && r->dim)
        ok = add_num(o, "dim", r->dim);
    if (ok && r->metric[0])
        ok = add_str(o, "metric", r->metric);
    if (ok && r->partitioning[0])
        ok = add_str(o, "partitioning", r->partitioning);
    if (ok && r->content_id[0])
        ok = add_str(o, "content_id", r->content_id);
    if (ok && r->reason[0])
        ok = add_str(o, "reason", r->reason);
    return finish(o, ok, out, err);
}

vs_status vs_active_rec_encode(const vs_active_rec_t *r, char **out, char err[VS_ERR_LEN])
{
    cJSON *o = cJSON_CreateObject();
    int ok = o && add_str(o, "version", r->version) && add_str(o, "previous", r->previous) &&
             add_str(o, "activated_at", r->activated_at);
    return finish(o, ok, out, err);
}

vs_status vs_audit_rec_encode(const vs_audit_rec_t *r, char **out, char err[VS_ERR_LEN])
{
    cJSON *o = cJSON_CreateObject();
    int ok = o && add_str(o, "who", r->who) && add_str(o, "at", r->at) && add_str(o, "command", r->command) &&
             add_str(o, "version", r->version) && add_str(o, "detail", r->detail);
    return finish(o, ok, out, err);
}

/* ---- decoding ---------------------------------------------------------------------------------- */

static vs_status parse_root(const char *json, size_t len, const char *what, cJSON **out, char err[VS_ERR_LEN])
{
    if (len > VS_RECORD_MAX_BYTES)
        return vs_errf(err, VS_ERR_CORRUPT, "%s record: %zu bytes, more than %u", what, len,
                       VS_RECORD_MAX_BYTES);
    cJSON *o = cJSON_ParseWithLength(json, len);
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return vs_errf(err, VS_ERR_CORRUPT, "%s record: not a JSON object", what);
    }
    *out = o;
    return VS_OK;
}

/* String field into dst (cap bytes). Missing: "" unless required. Not a string or too long: CORRUPT. */
static vs_status get_str(const cJSON *o, const char *k, int required, char *dst, size_t cap, const char *what,
                         char err[VS_ERR_LEN])
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!v || cJSON_IsNull(v)) {
        dst[0] = 0;
        return required ? vs_errf(err, VS_ERR_CORRUPT, "%s record: missing \"%s\"", what, k) : VS_OK;
    }
    if (!cJSON_IsString(v) || strlen(v->valuestring) >= cap)
        return vs_errf(err, VS_ERR_CORRUPT, "%s record: \"%s\" must be a string of at most %zu bytes", what,
                       k, cap - 1);
    memcpy(dst, v->valuestring, strlen(v->valuestring) + 1);
    return VS_OK;
}

/* Whole number in [0, max]; missing: 0 unless required. */
static vs_status get_uint(const cJSON *o, const char *k, int required, double max, uint64_t *out,
                          const char *what, char err[VS_ERR_LEN])
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!v) {
        *out = 0;
        return required ? vs_errf(err, VS_ERR_CORRUPT, "%s record: missing \"%s\"", what, k) : VS_OK;
    }
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 && v->valuedouble <= max) ||
        v->valuedouble != (double)(uint64_t)v->valuedouble)
        return vs_errf(err, VS_ERR_CORRUPT, "%s record: \"%s\" must be a whole number in 0..%.0f", what, k,
                       max);
    *out = (uint64_t)v->valuedouble;
    return VS_OK;
}

vs_status vs_member_rec_decode(const char *json, size_t len, vs_member_rec_t *out, char err[VS_ERR_LEN])
{
    cJSON *o = NULL;
    vs_status st = parse_root(json, len, "member", &o, err);
    if (st != VS_OK)
        return st;
    vs_member_rec_t *r = calloc(1, sizeof *r);
    if (!r) {
        cJSON_Delete(o);
        return vs_errf(err, VS_ERR_NOMEM, "member record: out of memory");
    }
    uint64_t u;
    const char *w = "member";
    if ((st = get_str(o, "address", 1, r->address, sizeof r->address, w, err)) == VS_OK &&
        (st = get_uint(o, "partition", 1, 65535, &u, w, err)) == VS_OK &&
        (st = get_str(o, "replica_id", 1, r->replica_id, sizeof r->replica_id, w, err)) == VS_OK &&
        (st = get_str(o, "instance_id", 0, r->instance_id, sizeof r->instance_id, w, err)) == VS_OK &&
        (st = get_str(o, "zone", 0, r->zone, sizeof r->zone, w, err)) == VS_OK &&
        (st = get_str(o, "state", 1, r->state, sizeof r->state, w, err)) == VS_OK &&
        (st = get_str(o, "active_version", 0, r->active_version, sizeof r->active_version, w, err)) ==
            VS_OK &&
        (st = get_str(o, "started_at", 0, r->started_at, sizeof r->started_at, w, err)) == VS_OK &&
        (st = get_uint(o, "memory_limit_bytes", 0, 9007199254740992.0, &r->memory_limit_bytes, w, err)) ==
            VS_OK &&
        (st = get_uint(o, "rss_bytes", 0, 9007199254740992.0, &r->rss_bytes, w, err)) == VS_OK) {
        uint64_t slots = 0;
        r->has_free_slots = cJSON_GetObjectItemCaseSensitive(o, "free_slots") != NULL;
        if ((st = get_uint(o, "free_slots", 0, 65536, &slots, w, err)) != VS_OK)
            goto done;
        r->free_slots = (uint32_t)slots;
        r->partition = (uint32_t)(u);
        if (!r->address[0])
            st = vs_errf(err, VS_ERR_CORRUPT, "member record: empty \"address\"");
        else if (!vs_cluster_name_valid(r->replica_id, VS_REPLICA_ID_MAX))
            st = vs_errf(err, VS_ERR_CORRUPT, "member record: replica_id \"%s\" is not a valid name",
                         r->replica_id);
        else if (!one_of(r->state, member_states))
            st = vs_errf(err, VS_ERR_CORRUPT, "member record: unknown state \"%s\"", r->state);
    }
done:;
    const cJSON *vers = cJSON_GetObjectItemCaseSensitive(o, "versions");
    if (st == VS_OK && vers && !cJSON_IsArray(vers))
        st = vs_errf(err, VS_ERR_CORRUPT, "member record: \"versions\" must be an array");
    const cJSON *e, *walk = st == VS_OK ? vers : NULL;
    cJSON_ArrayForEach(e, walk)
    {
        if (r->n_versions == VS_MEMBER_MAX_VERSIONS) {
            st = vs_errf(err, VS_ERR_CORRUPT, "member record: more than %d versions", VS_MEMBER_MAX_VERSIONS);
            break;
        }
        vs_member_version_t *v = &r->versions[r->n_versions];
        const char *wv = "member version";
        if (!cJSON_IsObject(e)) {
            st = vs_errf(err, VS_ERR_CORRUPT, "member record: versions[%zu] is not an object", r->n_versions);
            break;
        }
        if ((st = get_str(e, "version", 1, v->version, sizeof v->version, wv, err)) != VS_OK ||
            (st = get_str(e, "state", 1, v->state, sizeof v->state, wv, err)) != VS_OK ||
            (st = get_str(e, "error", 0, v->error, sizeof v->error, wv, err)) != VS_OK ||
            (st = get_uint(e, "n_vectors", 0, 9007199254740992.0, &v->n_vectors, wv, err)) != VS_OK ||
            (st = get_str(e, "content_id", 0, v->content_id, sizeof v->content_id, wv, err)) != VS_OK ||
            (st = get_uint(e, "dim", 0, 65536, &u, wv, err)) != VS_OK)
            break;
        v->dim = (uint32_t)u;
        if ((st = get_str(e, "metric", 0, v->metric, sizeof v->metric, wv, err)) != VS_OK ||
            (st = get_str(e, "model_version", 0, v->model_version, sizeof v->model_version, wv, err)) !=
                VS_OK ||
            (st = get_str(e, "partitioning", 0, v->partitioning, sizeof v->partitioning, wv, err)) != VS_OK ||
            (st = get_uint(e, "partitions", 0, 65536, &u, wv, err)) != VS_OK)
            break;
        v->partitions = (uint32_t)u;
        if ((st = get_uint(e, "fresh_fill_pct", 0, 4294967295.0, &u, wv, err)) != VS_OK)
            break;
        v->fresh_fill_pct = u > 100 ? 100 : (uint32_t)u; /* (a later shard's overfull report: full) */
        if (!vs_cluster_name_valid(v->version, 64)) {
            st =
                vs_errf(err, VS_ERR_CORRUPT, "member record: version \"%s\" is not a valid name", v->version);
            break;
        }
        if (!one_of(v->state, replica_version_states)) {
            st = vs_errf(err, VS_ERR_CORRUPT, "member record: version %s has unknown state \"%s\"",
                         v->version, v->state);
            break;
        }
        r->n_versions++;
    }
    cJSON_Delete(o);
    if (st == VS_OK)
        *out = *r;
    free(r);
    return st;
}

vs_status vs_version_rec_decode(const char *json, size_t len, vs_version_rec_t *out, char err[VS_ERR_LEN])
{
    cJSON *o = NULL;
    vs_status st = parse_root(json, len, "version", &o, err);
    if (st != VS_OK)
        return st;
    vs_version_rec_t *r = calloc(1, sizeof *r);
    if (!r) {
        cJSON_Delete(o);
        return vs_errf(err, VS_ERR_NOMEM, "version record: out of memory");
    }
    uint64_t parts = 0, dim = 0;
    const char *w = "version";
    if ((st = get_str(o, "version", 1, r->version, sizeof r->version, w, err)) == VS_OK &&
        (st = get_str(o, "manifest", 1, r->manifest, sizeof r->manifest, w, err)) == VS_OK &&
        (st = get_str(o, "model_version", 0, r->model_version, sizeof r->model_version, w, err)) == VS_OK &&
        (st = get_uint(o, "partitions", 0, 65536, &parts, w, err)) == VS_OK &&
        (st = get_str(o, "state", 1, r->state, sizeof r->state, w, err)) == VS_OK &&
        (st = get_str(o, "staged_at", 0, r->staged_at, sizeof r->staged_at, w, err)) == VS_OK &&
        (st = get_uint(o, "dim", 0, 65536, &dim, w, err)) == VS_OK &&
        (st = get_str(o, "metric", 0, r->metric, sizeof r->metric, w, err)) == VS_OK &&
        (st = get_str(o, "partitioning", 0, r->partitioning, sizeof r->partitioning, w, err)) == VS_OK &&
        (st = get_str(o, "content_id", 0, r->content_id, sizeof r->content_id, w, err)) == VS_OK &&
        (st = get_str(o, "reason", 0, r->reason, sizeof r->reason, w, err)) == VS_OK) {
        r->partitions = (uint32_t)parts;
        r->dim = (uint32_t)dim;
        if (!vs_cluster_name_valid(r->version, 64))
            st = vs_errf(err, VS_ERR_CORRUPT, "version record: \"%s\" is not a valid version name",
                         r->version);
        else if (!r->manifest[0])
            st = vs_errf(err, VS_ERR_CORRUPT, "version record %s: empty \"manifest\"", r->version);
        else if (!one_of(r->state, version_states))
            st =
                vs_errf(err, VS_ERR_CORRUPT, "version record %s: unknown state \"%s\"", r->version, r->state);
    }
    cJSON_Delete(o);
    if (st == VS_OK)
        *out = *r;
    free(r);
    return st;
}

vs_status vs_active_rec_decode(const char *json, size_t len, vs_active_rec_t *out, char err[VS_ERR_LEN])
{
    cJSON *o = NULL;
    vs_status st = parse_root(json, len, "active", &o, err);
    if (st != VS_OK)
        return st;
    vs_active_rec_t r;
    memset(&r, 0, sizeof r);
    const char *w = "active";
    if ((st = get_str(o, "version", 1, r.version, sizeof r.version, w, err)) == VS_OK &&
        (st = get_str(o, "previous", 0, r.previous, sizeof r.previous, w, err)) == VS_OK &&
        (st = get_str(o, "activated_at", 0, r.activated_at, sizeof r.activated_at, w, err)) == VS_OK) {
        if (!vs_cluster_name_valid(r.version, 64))
            st = vs_errf(err, VS_ERR_CORRUPT, "active record: \"%s\" is not a valid version name", r.version);
        else if (r.previous[0] && !vs_cluster_name_valid(r.previous, 64))
            st = vs_errf(err, VS_ERR_CORRUPT, "active record: previous \"%s\" is not a valid version name",
                         r.previous);
    }
    cJSON_Delete(o);
    if (st == VS_OK)
        *out = r;
    return st;
}

vs_status vs_audit_rec_decode(const char *json, size_t len, vs_audit_rec_t *out, char err[VS_ERR_LEN])
{
    cJSON *o = NULL;
    vs_status st = parse_root(json, len, "audit", &o, err);
    if (st != VS_OK)
        return st;
    vs_audit_rec_t r;
    memset(&r, 0, sizeof r);
    const char *w = "audit";
    if ((st = get_str(o, "who", 1, r.who, sizeof r.who, w, err)) == VS_OK &&
        (st = get_str(o, "at", 1, r.at, sizeof r.at, w, err)) == VS_OK &&
        (st = get_str(o, "command", 1, r.command, sizeof r.command, w, err)) == VS_OK &&
        (st = get_str(o, "version", 0, r.version, sizeof r.version, w, err)) == VS_OK)
        st = get_str(o, "detail", 0, r.detail, sizeof r.detail, w, err);
    cJSON_Delete(o);
    if (st == VS_OK)
        *out = r;
    return st;
}

const vs_member_version_t *vs_member_rec_find(const vs_member_rec_t *r, const char *version)
{
    for (size_t i = 0; i < r->n_versions; i++)
        if (strcmp(r->versions[i].version, version) == 0)
            return &r->versions[i];
    return NULL;
}

int vs_member_holds_ready(const vs_member_rec_t *r, const char *version, uint32_t partition,
                          const char *expected_content_id)
{
    if (r->partition != partition || strcmp(r->state, "DRAINING") == 0)
        return 0;
    const vs_member_version_t *v = vs_member_rec_find(r, version);
    if (!v || strcmp(v->state, "READY") != 0)
        return 0;
    if (expected_content_id && expected_content_id[0] && v->content_id[0] &&
        strcmp(expected_content_id, v->content_id) != 0)
        return 0;
    return 1;
}

int vs_member_may_serve(const vs_member_rec_t *r, const char *version, uint32_t partition,
                        const char *expected_content_id)
{
    return strcmp(r->state, "SERVING") == 0 &&
           vs_member_holds_ready(r, version, partition, expected_content_id);
}
