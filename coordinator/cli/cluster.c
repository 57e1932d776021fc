/* cluster.c: the cluster views of `vecshard status`, `versions` and `health`: the coordinator's Status
 * decoded, member records read from etcd, versions summarised across members, and their renderings.
 * See admin.h. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/cluster/keys.h"
#include "common/net/etcd.h"
#include "common/net/rpc.h"
#include "coordinator/cli/admin.h"
#include "grpc/health/v1/health.pb-c.h"
#include "vecshard/v1/coordinator.pb-c.h"

void vs_admin_cluster_fini(vs_admin_cluster_t *c)
{
    if (!c)
        return;
    free(c->members);
    memset(c, 0, sizeof *c);
}

static int cmp_member(const void *a, const void *b)
{
    const vs_admin_member_t *x = a, *y = b;
    if (x->partition != y->partition)
        return x->partition < y->partition ? -1 : 1;
    return strcmp(x->replica_id, y->replica_id);
}

vs_status vs_admin_status_decode(const uint8_t *body, size_t len, vs_admin_cluster_t *out,
                                 char err[VS_ERR_LEN])
{
    Vecshard__V1__StatusResponse *s = vecshard__v1__status_response__unpack(NULL, len, body);
    if (!s)
        return vs_errf(err, VS_ERR_CORRUPT, "StatusResponse does not decode (%zu bytes)", len);
    vs_admin_cluster_t c;
    memset(&c, 0, sizeof c);
    snprintf(c.source, sizeof c.source, "coordinator");
    snprintf(c.cluster, sizeof c.cluster, "%s", s->cluster ? s->cluster : "");
    snprintf(c.active_version, sizeof c.active_version, "%s", s->active_version ? s->active_version : "");
    c.etcd_connected = s->etcd_connected;
    c.members = calloc(s->n_members ? s->n_members : 1, sizeof *c.members);
    if (!c.members) {
        vecshard__v1__status_response__free_unpacked(s, NULL);
        return vs_errf(err, VS_ERR_NOMEM, "no memory for %zu members", s->n_members);
    }
    for (size_t i = 0; i < s->n_members; i++) {
        const Vecshard__V1__MemberStatus *m = s->members[i];
        vs_admin_member_t *d = &c.members[c.n_members++];
        d->partition = m->partition;
        snprintf(d->replica_id, sizeof d->replica_id, "%s", m->replica_id ? m->replica_id : "");
        snprintf(d->address, sizeof d->address, "%s", m->address ? m->address : "");
        snprintf(d->state, sizeof d->state, "%s", m->state ? m->state : "");
        for (size_t v = 0; v < m->n_versions && d->n_held < VS_ADMIN_MAX_VERSIONS; v++) {
            vs_admin_held_t *h = &d->held[d->n_held++];
            snprintf(h->name, sizeof h->name, "%s", m->versions[v] ? m->versions[v] : "");
            h->n_vectors = -1;
            h->partitions = -1;
        }
        d->has_load = 1;
        d->latency_ewma_ms = m->latency_ewma_ms;
        d->outstanding = m->outstanding;
        snprintf(d->zone, sizeof d->zone, "%s", m->zone ? m->zone : "");
    }
    vecshard__v1__status_response__free_unpacked(s, NULL);
    qsort(c.members, c.n_members, sizeof *c.members, cmp_member);
    *out = c;
    return VS_OK;
}

static void copy_str(const cJSON *o, const char *name, char *dst, size_t n)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (cJSON_IsString(v))
        snprintf(dst, n, "%s", v->valuestring);
}

/* A count given as a number or a decimal string (docs/protocol.md allows both); -1 when absent or bad. */
static int64_t get_count(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < 9e18)
        return (int64_t)v->valuedouble;
    if (cJSON_IsString(v)) {
        char *end = NULL;
        long long x = strtoll(v->valuestring, &end, 10);
        if (*v->valuestring && !*end && x >= 0)
            return x;
    }
    return -1;
}

vs_status vs_admin_member_parse(const char *json, size_t len, vs_admin_member_t *out, char err[VS_ERR_LEN])
{
    cJSON *o = cJSON_ParseWithLength(json, len);
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return vs_errf(err, VS_ERR_CORRUPT, "member record is not a JSON object");
    }
    vs_admin_member_t m = *out;
    copy_str(o, "replica_id", m.replica_id, sizeof m.replica_id);
    copy_str(o, "address", m.address, sizeof m.address);
    copy_str(o, "state", m.state, sizeof m.state);
    copy_str(o, "zone", m.zone, sizeof m.zone);
    copy_str(o, "active_version", m.active_version, sizeof m.active_version);
    int64_t p = get_count(o, "partition");
    if (p >= 0 && p <= UINT32_MAX)
        m.partition = (uint32_t)p;
    const cJSON *vs = cJSON_GetObjectItemCaseSensitive(o, "versions");
    if (cJSON_IsArray(vs)) {
        m.n_held = 0;
        const cJSON *v;
        cJSON_ArrayForEach(v, vs)
        {
            if (!cJSON_IsObject(v) || m.n_held == VS_ADMIN_MAX_VERSIONS)
                continue;
            vs_admin_held_t *h = &m.held[m.n_held++];
            memset(h, 0, sizeof *h);
            copy_str(v, "version", h->name, sizeof h->name);
            copy_str(v, "state", h->state, sizeof h->state);
            copy_str(v, "error", h->error, sizeof h->error);
            h->n_vectors = get_count(v, "n_vectors");
            h->partitions = get_count(v, "partitions");
        }
    }
    cJSON_Delete(o);
    *out = m;
    return VS_OK;
}

vs_status vs_admin_status_fetch(const char *coordinator, int64_t timeout_ms, vs_admin_cluster_t *out,
                                char err[VS_ERR_LEN])
{
    vs_rpc_channel_t *ch = NULL;
    vs_status st = vs_rpc_channel_create_env(coordinator, 0, &ch, err);
    if (st != VS_OK)
        return st;
    Vecshard__V1__StatusRequest req = VECSHARD__V1__STATUS_REQUEST__INIT;
    uint8_t buf[16];
    size_t len = vecshard__v1__status_request__pack(&req, buf);
    int code = -1;
    char msg[VS_ERR_LEN] = "";
    uint8_t *body = NULL;
    size_t blen = 0;
    st = vs_rpc_call_unary(ch, "/vecshard.v1.Coordinator/Status", buf, len, timeout_ms, &code, msg, &body,
                           &blen);
    vs_rpc_channel_destroy(ch);
    if (st != VS_OK)
        return vs_errf(err, st, "Status to %s: %s", coordinator, msg);
    if (code != 0) {
        free(body);
        return vs_errf(err, VS_ERR_UNAVAILABLE, "Status to %s: %s: %s", coordinator,
                       vs_admin_outcome_name(code), msg);
    }
    st = vs_admin_status_decode(body, blen, out, err);
    free(body);
    return st;
}

vs_status vs_admin_find_cluster(const char *endpoints, int64_t timeout_ms, char out[65], char err[VS_ERR_LEN])
{
    vs_etcd_opts_t eo = {.endpoints = endpoints, .timeout_ms = (int)timeout_ms};
    vs_etcd_t *e = NULL;
    vs_status st = vs_etcd_create(&eo, &e, err);
    if (st != VS_OK)
        return st;
    vs_etcd_kvs_t kvs = {0};
    st = vs_etcd_range_prefix(e, "/vecshard/", 10, &kvs, err);
    vs_etcd_destroy(e);
    if (st != VS_OK)
        return st;
    char names[8][65];
    size_t n = 0, more = 0;
    for (size_t i = 0; i < kvs.n; i++) {
        const char *c = kvs.kvs[i].key + 10, *slash = memchr(c, '/', kvs.kvs[i].key_len - 10);
        if (!slash || slash == c || slash - c > 64)
            continue;
        char name[65];
        snprintf(name, sizeof name, "%.*s", (int)(slash - c), c);
        int known = 0;
        for (size_t j = 0; j < n && !known; j++)
            known = strcmp(names[j], name) == 0;
        if (!known && n < 8)
            snprintf(names[n++], 65, "%s", name);
        else if (!known)
            more++;
    }
    vs_etcd_kvs_fini(&kvs);
    if (n == 0) {
        snprintf(out, 65, "default");
        return VS_OK;
    }
    if (n == 1 && !more) {
        snprintf(out, 65, "%s", names[0]);
        return VS_OK;
    }
    char list[512] = "";
    size_t off = 0;
    for (size_t j = 0; j < n && off < sizeof list - 1; j++)
        off += (size_t)snprintf(list + off, sizeof list - off, "%s%s", j ? ", " : "", names[j]);
    return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "etcd holds several clusters (%s%s): give --cluster NAME",
                   list, more ? ", ..." : "");
}

vs_status vs_admin_members_from_etcd(const char *endpoints, const char *cluster, int64_t timeout_ms,
                                     vs_admin_cluster_t *out, char err[VS_ERR_LEN])
{
    vs_etcd_opts_t eo = {.endpoints = endpoints, .timeout_ms = (int)timeout_ms};
    vs_etcd_t *e = NULL;
    vs_status st = vs_etcd_create(&eo, &e, err);
    if (st != VS_OK)
        return st;
    char prefix[VS_KEY_LEN];
    size_t pl = vs_key_members_prefix(prefix, cluster);
    if (pl == 0) {
        vs_etcd_destroy(e);
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "cluster name '%s' is not valid", cluster);
    }
    vs_etcd_kvs_t kvs = {0};
    st = vs_etcd_range_prefix(e, prefix, pl, &kvs, err);
    vs_etcd_destroy(e);
    if (st != VS_OK)
        return st;
    vs_admin_cluster_t c;
    memset(&c, 0, sizeof c);
    snprintf(c.source, sizeof c.source, "etcd");
    snprintf(c.cluster, sizeof c.cluster, "%s", cluster);
    c.members = calloc(kvs.n ? kvs.n : 1, sizeof *c.members);
    if (!c.members) {
        vs_etcd_kvs_fini(&kvs);
        return vs_errf(err, VS_ERR_NOMEM, "no memory for %zu members", kvs.n);
    }
    for (size_t i = 0; i < kvs.n; i++) {
        vs_admin_member_t m;
        memset(&m, 0, sizeof m);
        /* key: <prefix><partition>/<replica-id>; the record's own fields win when present */
        const char *rest = kvs.kvs[i].key + pl;
        char *slash = NULL;
        unsigned long p = strtoul(rest, &slash, 10);
        if (slash && *slash == '/') {
            m.partition = (uint32_t)p;
            snprintf(m.replica_id, sizeof m.replica_id, "%s", slash + 1);
        }
        char perr[VS_ERR_LEN];
        if (vs_admin_member_parse(kvs.kvs[i].value, kvs.kvs[i].value_len, &m, perr) != VS_OK) {
            fprintf(stderr, "vecshard: skipping %s: %s\n", kvs.kvs[i].key, perr);
            continue;
        }
        c.members[c.n_members++] = m;
    }
    vs_etcd_kvs_fini(&kvs);
    qsort(c.members, c.n_members, sizeof *c.members, cmp_member);
    *out = c;
    return VS_OK;
}

static int cmp_summary(const void *a, const void *b)
{
    return strcmp(((const vs_admin_version_summary_t *)a)->name,
                  ((const vs_admin_version_summary_t *)b)->name);
}

void vs_admin_versions_summarise(const vs_admin_cluster_t *c, vs_admin_version_summary_t *out, size_t cap,
                                 size_t *out_n)
{
    /* distinct version names: the first cap in order of appearance are kept, all are counted */
    size_t n = 0;
    for (size_t i = 0; i < c->n_members; i++)
        for (size_t h = 0; h < c->members[i].n_held; h++) {
            const char *name = c->members[i].held[h].name;
            int before = 0;
            for (size_t i2 = 0; i2 <= i && !before; i2++)
                for (size_t h2 = 0; h2 < (i2 == i ? h : c->members[i2].n_held) && !before; h2++)
                    before = strcmp(c->members[i2].held[h2].name, name) == 0;
            if (before)
                continue;
            if (n < cap) {
                memset(&out[n], 0, sizeof out[n]);
                snprintf(out[n].name, sizeof out[n].name, "%s", name);
            }
            n++;
        }
    size_t w = n < cap ? n : cap;
    qsort(out, w, sizeof *out, cmp_summary);
    /* partitions in the view */
    size_t seen = 0;
    for (size_t i = 0; i < c->n_members; i++)
        if (i == 0 || c->members[i].partition != c->members[i - 1].partition) /* members are sorted */
            seen++;
    for (size_t s = 0; s < w; s++) {
        vs_admin_version_summary_t *v = &out[s];
        v->partitions_seen = seen;
        for (size_t i = 0; i < c->n_members; i++) /* the version's own count, when replicas report it */
            for (size_t h = 0; h < c->members[i].n_held; h++)
                if (strcmp(c->members[i].held[h].name, v->name) == 0 && c->members[i].held[h].partitions > 0)
                    v->partitions_seen = (size_t)c->members[i].held[h].partitions;
        v->n_vectors = 0;
        int counted_partition = 0, vectors_known = 1;
        for (size_t i = 0; i < c->n_members; i++) {
            const vs_admin_member_t *m = &c->members[i];
            if (i > 0 && m->partition != c->members[i - 1].partition)
                counted_partition = 0;
            const char *active = m->active_version[0] ? m->active_version : c->active_version;
            if (strcmp(active, v->name) == 0)
                v->active_on++;
            for (size_t h = 0; h < m->n_held; h++) {
                const vs_admin_held_t *held = &m->held[h];
                if (strcmp(held->name, v->name) != 0)
                    continue;
                v->replicas++;
                int ready = !held->state[0] || strcmp(held->state, "READY") == 0;
                if (ready)
                    v->ready++;
                else if (strcmp(held->state, "FAILED") == 0)
                    v->failed++;
                else
                    v->loading++;
                if (ready && !counted_partition) {
                    counted_partition = 1;
                    v->partitions_ready++;
                    if (held->n_vectors < 0)
                        vectors_known = 0;
                    else
                        v->n_vectors += held->n_vectors;
                }
            }
        }
        if (!vectors_known || v->partitions_ready == 0)
            v->n_vectors = -1;
    }
    *out_n = n;
}

/* "members": [{partition, replica_id, address, state, active_version, versions: [{version, state,
 * n_vectors, error}], latency_ewma_ms, outstanding}]; unknown fields are left out. */
static void add_members_json(cJSON *j, const vs_admin_cluster_t *c)
{
    cJSON *ms = cJSON_AddArrayToObject(j, "members");
    for (size_t i = 0; i < c->n_members; i++) {
        const vs_admin_member_t *m = &c->members[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "partition", m->partition);
        cJSON_AddStringToObject(o, "replica_id", m->replica_id);
        cJSON_AddStringToObject(o, "address", m->address);
        cJSON_AddStringToObject(o, "state", m->state);
        cJSON_AddStringToObject(o, "active_version", m->active_version);
        cJSON *hs = cJSON_AddArrayToObject(o, "versions");
        for (size_t h = 0; h < m->n_held; h++) {
            const vs_admin_held_t *v = &m->held[h];
            cJSON *ho = cJSON_CreateObject();
            cJSON_AddStringToObject(ho, "version", v->name);
            cJSON_AddStringToObject(ho, "state", v->state);
            if (v->n_vectors >= 0)
                cJSON_AddNumberToObject(ho, "n_vectors", (double)v->n_vectors);
            if (v->error[0])
                cJSON_AddStringToObject(ho, "error", v->error);
            cJSON_AddItemToArray(hs, ho);
        }
        if (m->has_load) {
            cJSON_AddNumberToObject(o, "latency_ewma_ms", m->latency_ewma_ms);
            cJSON_AddNumberToObject(o, "outstanding", (double)m->outstanding);
        }
        if (m->zone[0])
            cJSON_AddStringToObject(o, "zone", m->zone);
        cJSON_AddItemToArray(ms, o);
    }
}

/* "v1,v2(LOADING)": versions held, with their state when it is not READY; "-" for none. */
static void held_list(const vs_admin_member_t *m, char *buf, size_t n)
{
    size_t w = 0;
    buf[0] = 0;
    for (size_t h = 0; h < m->n_held && w + 1 < n; h++) {
        const vs_admin_held_t *v = &m->held[h];
        int plain = !v->state[0] || strcmp(v->state, "READY") == 0;
        int r = plain ? snprintf(buf + w, n - w, "%s%s", h ? "," : "", v->name)
                      : snprintf(buf + w, n - w, "%s%s(%s)", h ? "," : "", v->name, v->state);
        if (r < 0)
            break;
        w += (size_t)r;
    }
    if (!buf[0])
        snprintf(buf, n, "-");
}

void vs_admin_status_print(FILE *f, const vs_admin_cluster_t *c, int json)
{
    if (json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "source", c->source);
        cJSON_AddStringToObject(j, "cluster", c->cluster);
        cJSON_AddStringToObject(j, "active_version", c->active_version);
        cJSON_AddBoolToObject(j, "etcd_connected", c->etcd_connected);
        add_members_json(j, c);
        vs_admin_print_json(f, j);
        return;
    }
    fprintf(f, "cluster %s  active version %s  etcd %s  members %zu\n", c->cluster[0] ? c->cluster : "?",
            c->active_version[0] ? c->active_version : "-", c->etcd_connected ? "connected" : "NOT connected",
            c->n_members);
    if (!c->n_members)
        return;
    /* columns as wide as their longest value */
    int wr = 7, wa = 7, wv = 8;
    for (size_t i = 0; i < c->n_members; i++) {
        char held[256];
        held_list(&c->members[i], held, sizeof held);
        int lr = (int)strlen(c->members[i].replica_id), la = (int)strlen(c->members[i].address);
        int lv = (int)strlen(held);
        wr = lr > wr ? lr : wr;
        wa = la > wa ? la : wa;
        wv = lv > wv ? lv : wv;
    }
    int zones = 0; /* a ZONE column only when some replica has one */
    for (size_t i = 0; i < c->n_members; i++)
        zones |= c->members[i].zone[0] != 0;
    fprintf(f, "%-9s  %-*s  %-*s  %-9s  %-*s  %12s  %11s%s\n", "PARTITION", wr, "REPLICA", wa, "ADDRESS",
            "STATE", wv, "VERSIONS", "LATENCY_EWMA", "OUTSTANDING", zones ? "  ZONE" : "");
    for (size_t i = 0; i < c->n_members; i++) {
        const vs_admin_member_t *m = &c->members[i];
        char held[256];
        held_list(m, held, sizeof held);
        fprintf(f, "%-9u  %-*s  %-*s  %-9s  %-*s  %9.3f ms  %11llu%s%s\n", m->partition, wr, m->replica_id, wa,
                m->address, m->state, wv, held, m->latency_ewma_ms, (unsigned long long)m->outstanding,
                zones ? "  " : "", zones ? (m->zone[0] ? m->zone : "-") : "");
    }
}

void vs_admin_versions_print(FILE *f, const vs_admin_cluster_t *c, int json)
{
    vs_admin_version_summary_t sum[64];
    size_t n = 0;
    vs_admin_versions_summarise(c, sum, 64, &n);
    size_t w = n < 64 ? n : 64;
    if (json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "source", c->source);
        cJSON_AddStringToObject(j, "cluster", c->cluster);
        cJSON *vs = cJSON_AddArrayToObject(j, "versions");
        for (size_t i = 0; i < w; i++) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "version", sum[i].name);
            cJSON_AddNumberToObject(o, "replicas", (double)sum[i].replicas);
            cJSON_AddNumberToObject(o, "ready", (double)sum[i].ready);
            cJSON_AddNumberToObject(o, "loading", (double)sum[i].loading);
            cJSON_AddNumberToObject(o, "failed", (double)sum[i].failed);
            cJSON_AddNumberToObject(o, "active_on", (double)sum[i].active_on);
            cJSON_AddNumberToObject(o, "partitions_ready", (double)sum[i].partitions_ready);
            cJSON_AddNumberToObject(o, "partitions_seen", (double)sum[i].partitions_seen);
            if (sum[i].n_vectors >= 0)
                cJSON_AddNumberToObject(o, "n_vectors", (double)sum[i].n_vectors);
            else
                cJSON_AddNullToObject(o, "n_vectors");
            cJSON_AddItemToArray(vs, o);
        }
        add_members_json(j, c);
        vs_admin_print_json(f, j);
        return;
    }
    fprintf(f, "cluster %s (from %s): %zu members, %zu versions\n", c->cluster[0] ? c->cluster : "?",
            c->source, c->n_members, n);
    if (w) {
        int wn = 7;
        for (size_t i = 0; i < w; i++)
            wn = (int)strlen(sum[i].name) > wn ? (int)strlen(sum[i].name) : wn;
        fprintf(f, "%-*s  %8s  %5s  %7s  %6s  %9s  %10s  %12s\n", wn, "VERSION", "REPLICAS", "READY",
                "LOADING", "FAILED", "ACTIVE_ON", "PARTITIONS", "VECTORS");
        for (size_t i = 0; i < w; i++) {
            char parts[32], vec[32];
            snprintf(parts, sizeof parts, "%zu/%zu", sum[i].partitions_ready, sum[i].partitions_seen);
            if (sum[i].n_vectors >= 0)
                snprintf(vec, sizeof vec, "%lld", (long long)sum[i].n_vectors);
            else
                snprintf(vec, sizeof vec, "-");
            fprintf(f, "%-*s  %8zu  %5zu  %7zu  %6zu  %9zu  %10s  %12s\n", wn, sum[i].name, sum[i].replicas,
                    sum[i].ready, sum[i].loading, sum[i].failed, sum[i].active_on, parts, vec);
        }
    }
    for (size_t i = 0; i < c->n_members; i++)
        for (size_t h = 0; h < c->members[i].n_held; h++)
            if (c->members[i].held[h].error[0])
                fprintf(f, "partition %u replica %s: %s FAILED: %s\n", c->members[i].partition,
                        c->members[i].replica_id, c->members[i].held[h].name, c->members[i].held[h].error);
}

vs_status vs_admin_health_check(const char *target, const char *service, int64_t timeout_ms, int *out_status,
                                char err[VS_ERR_LEN])
{
    vs_rpc_channel_t *ch = NULL;
    vs_status st = vs_rpc_channel_create_env(target, 0, &ch, err);
    if (st != VS_OK)
        return st;
    Grpc__Health__V1__HealthCheckRequest r = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    r.service = (char *)service;
    size_t len = grpc__health__v1__health_check_request__get_packed_size(&r);
    uint8_t *buf = malloc(len + 1);
    if (!buf) {
        vs_rpc_channel_destroy(ch);
        return vs_errf(err, VS_ERR_NOMEM, "no memory");
    }
    grpc__health__v1__health_check_request__pack(&r, buf);
    int code = -1;
    char msg[VS_ERR_LEN] = "";
    uint8_t *body = NULL;
    size_t blen = 0;
    st =
        vs_rpc_call_unary(ch, "/grpc.health.v1.Health/Check", buf, len, timeout_ms, &code, msg, &body, &blen);
    free(buf);
    vs_rpc_channel_destroy(ch);
    if (st != VS_OK)
        return vs_errf(err, st, "health check of %s: %s", target, msg);
    if (code != 0) {
        free(body);
        snprintf(err, VS_ERR_LEN, "%s", msg);
        *out_status = -code;
        return VS_OK;
    }
    Grpc__Health__V1__HealthCheckResponse *resp =
        grpc__health__v1__health_check_response__unpack(NULL, blen, body);
    free(body);
    if (!resp)
        return vs_errf(err, VS_ERR_CORRUPT, "health check of %s: response does not decode", target);
    *out_status = (int)resp->status;
    grpc__health__v1__health_check_response__free_unpacked(resp, NULL);
    return VS_OK;
}

void vs_admin_health_print(FILE *f, const char *target, const char *service, const char *status,
                           const char *detail, int json)
{
    if (!json) {
        fprintf(f, "%s%s%s\n", status, detail[0] ? ": " : "", detail);
        return;
    }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "target", target);
    cJSON_AddStringToObject(j, "service", service);
    cJSON_AddStringToObject(j, "status", status);
    cJSON_AddStringToObject(j, "detail", detail);
    vs_admin_print_json(f, j);
}
