/* rollout.c: see rollout.h. Reads what it needs (version records, the active pointer, member records),
 * decides with common/cluster/ (state machine, records, keys), then writes in one etcd transaction that
 * compares every key it read: a concurrent command makes the compare fail and nothing is written. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "common/cluster/keys.h"
#include "common/cluster/lifecycle.h"
#include "common/cluster/manifest.h"
#include "common/cluster/records.h"
#include "coordinator/cli/rollout.h"

static void now_iso(char buf[32])
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int name_ok(const char *cluster, const char *version, char msg[VS_ERR_LEN], vs_status *st)
{
    if (!vs_cluster_name_valid(cluster, 64))
        *st = vs_errf(msg, VS_ERR_INVALID_ARGUMENT, "cluster name '%s' is not valid ([A-Za-z0-9._-]{1,64})",
                      cluster);
    else if (version && !vs_cluster_name_valid(version, 64))
        *st = vs_errf(msg, VS_ERR_INVALID_ARGUMENT, "version name '%s' is not valid ([A-Za-z0-9._-]{1,64})",
                      version);
    else
        return 1;
    return 0;
}

/* ---- reads ------------------------------------------------------------------------------------- */

/* A version record: *found 0 when absent; *rev its mod revision. */
static vs_status get_version(vs_etcd_t *e, const char *cluster, const char *version, vs_version_rec_t *out,
                             int64_t *rev, int *found, char msg[VS_ERR_LEN])
{
    char key[VS_KEY_LEN];
    size_t kl = vs_key_version(key, cluster, version);
    vs_etcd_kvs_t kvs = {0};
    *found = 0;
    *rev = 0;
    vs_status st = vs_etcd_get(e, key, kl, &kvs, msg);
    if (st == VS_OK && kvs.n == 1) {
        st = vs_version_rec_decode(kvs.kvs[0].value, kvs.kvs[0].value_len, out, msg);
        *rev = kvs.kvs[0].mod_revision;
        *found = st == VS_OK;
    }
    vs_etcd_kvs_fini(&kvs);
    return st;
}

static vs_status get_active(vs_etcd_t *e, const char *cluster, vs_active_rec_t *out, int64_t *rev, int *found,
                            char msg[VS_ERR_LEN])
{
    char key[VS_KEY_LEN];
    size_t kl = vs_key_active(key, cluster);
    vs_etcd_kvs_t kvs = {0};
    *found = 0;
    *rev = 0;
    memset(out, 0, sizeof *out);
    vs_status st = vs_etcd_get(e, key, kl, &kvs, msg);
    if (st == VS_OK && kvs.n == 1) {
        st = vs_active_rec_decode(kvs.kvs[0].value, kvs.kvs[0].value_len, out, msg);
        *rev = kvs.kvs[0].mod_revision;
        *found = st == VS_OK;
    }
    vs_etcd_kvs_fini(&kvs);
    return st;
}

/* Every member record that decodes (malformed ones are skipped: they serve nobody either). */
static vs_status get_members(vs_etcd_t *e, const char *cluster, vs_member_rec_t **out, size_t *n,
                             char msg[VS_ERR_LEN])
{
    char prefix[VS_KEY_LEN];
    size_t pl = vs_key_members_prefix(prefix, cluster);
    vs_etcd_kvs_t kvs = {0};
    *out = NULL;
    *n = 0;
    vs_status st = vs_etcd_range_prefix(e, prefix, pl, &kvs, msg);
    if (st != VS_OK)
        return st;
    vs_member_rec_t *m = calloc(kvs.n ? kvs.n : 1, sizeof *m);
    if (!m) {
        vs_etcd_kvs_fini(&kvs);
        return vs_errf(msg, VS_ERR_NOMEM, "out of memory for %zu member records", kvs.n);
    }
    char perr[VS_ERR_LEN];
    for (size_t i = 0; i < kvs.n; i++)
        if (vs_member_rec_decode(kvs.kvs[i].value, kvs.kvs[i].value_len, &m[*n], perr) == VS_OK)
            (*n)++;
    vs_etcd_kvs_fini(&kvs);
    *out = m;
    return VS_OK;
}

/* The version members serve by default when etcd has no active key (a cluster bootstrapped with
 * --manifest): the most common active_version of SERVING members; "" when none. */
static void members_active(const vs_member_rec_t *m, size_t n, char out[VS_RECORD_NAME_LEN])
{
    size_t best = 0;
    out[0] = 0;
    for (size_t i = 0; i < n; i++) {
        if (!m[i].active_version[0] || strcmp(m[i].state, "SERVING") != 0)
            continue;
        size_t c = 0;
        for (size_t j = 0; j < n; j++)
            c += strcmp(m[j].active_version, m[i].active_version) == 0 && strcmp(m[j].state, "SERVING") == 0;
        if (c > best) {
            best = c;
            snprintf(out, VS_RECORD_NAME_LEN, "%s", m[i].active_version);
        }
    }
}

/* ---- what a version is: the activation guards -------------------------------------------------- */

typedef struct desc {
    int known;
    uint32_t dim, partitions;
    char metric[16], partitioning[16], model[VS_RECORD_NAME_LEN];
} desc_t;

static void desc_set(desc_t *d, uint32_t dim, uint32_t partitions, const char *metric,
                     const char *partitioning, const char *model)
{
    d->known = 1;
    d->dim = dim;
    d->partitions = partitions;
    snprintf(d->metric, sizeof d->metric, "%s", metric);
    snprintf(d->partitioning, sizeof d->partitioning, "%s", partitioning);
    snprintf(d->model, sizeof d->model, "%s", model);
}

/* From a version record; records written before dim existed are completed from their manifest. */
static void desc_from_record(const vs_version_rec_t *r, desc_t *d)
{
    memset(d, 0, sizeof *d);
    if (r->dim) {
        desc_set(d, r->dim, r->partitions, r->metric, r->partitioning, r->model_version);
        return;
    }
    vs_manifest_t m;
    char err[VS_ERR_LEN];
    if (vs_manifest_load(r->manifest, &m, err) != VS_OK)
        return;
    desc_set(d, m.dim, m.n_partitions, vs_metric_name(m.metric), m.partitioning, m.model_version);
    vs_manifest_fini(&m);
}

/* From what READY replicas report (a version with no record: bootstrapped with --manifest). */
static void desc_from_members(const vs_member_rec_t *m, size_t n, const char *version, desc_t *d)
{
    memset(d, 0, sizeof *d);
    for (size_t i = 0; i < n && !d->known; i++) {
        const vs_member_version_t *v = vs_member_rec_find(&m[i], version);
        if (!v || strcmp(v->state, "READY") != 0 || !v->dim)
            continue;
        desc_set(d, v->dim, v->partitions, v->metric, v->partitioning, v->model_version);
    }
}

/* Refuses a switch from cur to next that changes what clients get, unless forced. */
static vs_status guard(const char *from, const desc_t *cur, const char *to, const desc_t *next, int force,
                       char msg[VS_ERR_LEN], char note[VS_ERR_LEN])
{
    note[0] = 0;
    if (!cur->known || !next->known)
        return VS_OK;
    char diff[VS_ERR_LEN] = "";
    size_t off = 0;
#define DIFF(fmt, ...)                                                                                       \
    if (off < sizeof diff - 1)                                                                               \
    off += (size_t)snprintf(diff + off, sizeof diff - off, "%s" fmt, off ? "; " : "", __VA_ARGS__)
    if (cur->dim != next->dim)
        DIFF("dim %u -> %u", cur->dim, next->dim);
    if (strcmp(cur->metric, next->metric) != 0)
        DIFF("metric %s -> %s", cur->metric, next->metric);
    if (strcmp(cur->partitioning, next->partitioning) != 0)
        DIFF("partitioning %s -> %s", cur->partitioning, next->partitioning);
    if (cur->partitions != next->partitions)
        DIFF("partitions %u -> %u", cur->partitions, next->partitions);
    if (strcmp(cur->model, next->model) != 0)
        DIFF("model \"%s\" -> \"%s\"", cur->model, next->model);
#undef DIFF
    if (!diff[0])
        return VS_OK;
    if (!force)
        return vs_errf(msg, VS_ERR_FAILED_PRECONDITION,
                       "%s differs from the active version %s (%s): clients built for %s would fail or get "
                       "wrong answers; refused (--force if this model change is intended)",
                       to, from, diff, from);
    snprintf(note, VS_ERR_LEN, "FORCED: %.200s differs from %.64s (%.200s)", to, from, diff);
    return VS_OK;
}

/* Counts, per partition, member replicas that may serve version (records.h's rule; content: per partition
 * the file content id the version's manifest records, NULL = unknown); refuses with the count per partition
 * and the load failures when one has fewer than min_ready. A replica holding other data under the
 * version's name (another content id) does not count. */
static vs_status check_ready(const vs_member_rec_t *m, size_t n, const char *version, size_t partitions,
                             const char (*content)[17], size_t min_ready, char msg[VS_ERR_LEN])
{
    if (partitions == 0 || partitions > 65536)
        return vs_errf(msg, VS_ERR_FAILED_PRECONDITION, "%s: partition count unknown (%zu)", version,
                       partitions);
    size_t *ready = calloc(partitions, sizeof(size_t));
    if (!ready)
        return vs_errf(msg, VS_ERR_NOMEM, "out of memory");
    char failures[VS_ERR_LEN / 2] = "";
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        if (m[i].partition < partitions &&
            vs_member_holds_ready(&m[i], version, m[i].partition, content ? content[m[i].partition] : ""))
            ready[m[i].partition]++;
        const vs_member_version_t *v = vs_member_rec_find(&m[i], version);
        if (v && strcmp(v->state, "FAILED") == 0 && off < sizeof failures - 1)
            off += (size_t)snprintf(failures + off, sizeof failures - off, "; %s: FAILED: %.120s",
                                    m[i].replica_id, v->error);
    }
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

/* ---- writes ------------------------------------------------------------------------------------ */

/* A transaction under construction: compares and puts/deletes whose keys and values it owns. */
#define TXN_MAX 8
typedef struct txn {
    vs_etcd_cmp_t cmp[TXN_MAX];
    vs_etcd_op_t ops[TXN_MAX];
    char keys[2 * TXN_MAX][VS_KEY_LEN];
    char *vals[TXN_MAX];
    size_t ncmp, nops, nkeys;
    int oom;
} txn_t;

static char *txn_key(txn_t *t, const char *key)
{
    char *k = t->keys[t->nkeys++];
    snprintf(k, VS_KEY_LEN, "%s", key);
    return k;
}

/* Compare: key's mod revision is rev (0 = the key does not exist). */
static void txn_cmp(txn_t *t, const char *key, int64_t rev)
{
    const char *k = txn_key(t, key);
    t->cmp[t->ncmp++] = (vs_etcd_cmp_t){.key = k,
                                        .key_len = strlen(k),
                                        .target = rev ? VS_ETCD_CMP_MOD : VS_ETCD_CMP_CREATE,
                                        .result = VS_ETCD_EQUAL,
                                        .number = rev};
}

static void txn_put(txn_t *t, const char *key, char *json /* taken */)
{
    if (!json) {
        t->oom = 1;
        return;
    }
    const char *k = txn_key(t, key);
    t->vals[t->nops] = json;
    t->ops[t->nops++] = (vs_etcd_op_t){
        .kind = VS_ETCD_OP_PUT, .key = k, .key_len = strlen(k), .value = json, .value_len = strlen(json)};
}

static void txn_del(txn_t *t, const char *key)
{
    const char *k = txn_key(t, key);
    t->ops[t->nops++] = (vs_etcd_op_t){.kind = VS_ETCD_OP_DELETE, .key = k, .key_len = strlen(k)};
}

static void txn_put_version(txn_t *t, const char *cluster, const vs_version_rec_t *r)
{
    char key[VS_KEY_LEN], *json = NULL;
    vs_key_version(key, cluster, r->version);
    if (vs_version_rec_encode(r, &json, NULL) != VS_OK)
        json = NULL;
    txn_put(t, key, json);
}

/* The audit record of this command, written with its effect. */
static void txn_audit(txn_t *t, const char *cluster, const char *command, const char *version,
                      const char *detail)
{
    vs_audit_rec_t a;
    memset(&a, 0, sizeof a);
    char host[64] = "?";
    gethostname(host, sizeof host);
    host[sizeof host - 1] = 0;
    const char *user = getenv("USER");
    snprintf(a.who, sizeof a.who, "%.60s@%.60s", user && user[0] ? user : "unknown", host);
    now_iso(a.at);
    snprintf(a.command, sizeof a.command, "%s", command);
    snprintf(a.version, sizeof a.version, "%s", version);
    snprintf(a.detail, sizeof a.detail, "%.255s", detail);
    struct timeval tv;
    gettimeofday(&tv, NULL);
    char key[VS_KEY_LEN], *json = NULL;
    vs_key_audit(key, cluster, (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u,
                 (uint32_t)getpid() % 1000000u);
    if (vs_audit_rec_encode(&a, &json, NULL) != VS_OK)
        json = NULL;
    txn_put(t, key, json);
}

/* Runs the transaction; a failed compare is FAILED_PRECONDITION "changed meanwhile". */
static vs_status txn_run(vs_etcd_t *e, txn_t *t, char msg[VS_ERR_LEN])
{
    vs_status st = VS_OK;
    if (t->oom) {
        st = vs_errf(msg, VS_ERR_NOMEM, "out of memory");
    } else {
        vs_etcd_txn_result_t res = {0};
        st = vs_etcd_txn(e, t->cmp, t->ncmp, t->ops, t->nops, NULL, 0, &res, msg);
        if (st == VS_OK && !res.succeeded)
            st = vs_errf(
                msg, VS_ERR_FAILED_PRECONDITION,
                "the cluster's versions changed meanwhile (another command ran); nothing done, retry");
        vs_etcd_txn_result_fini(&res);
    }
    for (size_t i = 0; i < t->nops; i++)
        free(t->vals[i]);
    return st;
}

/* Admission by bytes and slots: every serving replica of a partition the version has must have a free
 * version slot and room for its partition file (memory limit minus RSS, as its record reports). Replicas
 * that report neither (the previous release) are not checked. */
static vs_status check_room(vs_etcd_t *e, const char *cluster, const vs_manifest_t *m, char msg[VS_ERR_LEN])
{
    vs_member_rec_t *mem = NULL;
    size_t n = 0;
    vs_status st = get_members(e, cluster, &mem, &n, msg);
    if (st != VS_OK)
        return st;
    char why[VS_ERR_LEN / 2] = "";
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        const vs_member_rec_t *r = &mem[i];
        const vs_manifest_partition_t *p = vs_manifest_partition(m, r->partition);
        if (!p || strcmp(r->state, "DRAINING") == 0 || vs_member_rec_find(r, m->version))
            continue;
        if (r->has_free_slots && r->free_slots == 0 && off < sizeof why - 1)
            off +=
                (size_t)snprintf(why + off, sizeof why - off,
                                 "%s%s (partition %u) has no free version slot: retire or remove a version",
                                 off ? "; " : "", r->replica_id, r->partition);
        if (r->memory_limit_bytes) {
            uint64_t free_b = r->memory_limit_bytes > r->rss_bytes ? r->memory_limit_bytes - r->rss_bytes : 0;
            if (p->size_bytes > free_b && off < sizeof why - 1)
                off += (size_t)snprintf(
                    why + off, sizeof why - off,
                    "%s%s (partition %u) needs %.1f MB, has %.1f MB free (limit %.1f MB, RSS "
                    "%.1f MB)",
                    off ? "; " : "", r->replica_id, r->partition, p->size_bytes / 1048576.0,
                    free_b / 1048576.0, r->memory_limit_bytes / 1048576.0, r->rss_bytes / 1048576.0);
        }
    }
    free(mem);
    if (why[0])
        return vs_errf(msg, VS_ERR_RESOURCE_EXHAUSTED, "%s does not fit the serving shards: %s", m->version,
                       why);
    return VS_OK;
}

/* Audit retention: keeps the newest $VS_AUDIT_KEEP (default 1000) audit records, deleting the oldest
 * (keys sort by time). Best effort, after a command succeeded: the command's own effect is not undone by a
 * failed clean-up. */
static void prune_audit(vs_etcd_t *e, const char *cluster)
{
    const char *env = getenv("VS_AUDIT_KEEP");
    long keep = env && atol(env) > 0 ? atol(env) : 1000;
    char prefix[VS_KEY_LEN], err[VS_ERR_LEN];
    size_t pl = vs_key_audit_prefix(prefix, cluster);
    vs_etcd_kvs_t kvs = {0};
    if (pl && vs_etcd_range_prefix(e, prefix, pl, &kvs, err) == VS_OK)
        for (size_t i = 0; kvs.n > (size_t)keep && i < kvs.n - (size_t)keep; i++)
            (void)vs_etcd_delete(e, kvs.kvs[i].key, kvs.kvs[i].key_len, 0, NULL, err);
    vs_etcd_kvs_fini(&kvs);
}

/* ---- commands ---------------------------------------------------------------------------------- */

vs_status vs_rollout_deploy(vs_etcd_t *e, const char *cluster, const char *manifest_path,
                            char msg[VS_ERR_LEN])
{
    vs_status st;
    if (!name_ok(cluster, NULL, msg, &st))
        return st;
    vs_manifest_t m;
    if ((st = vs_manifest_load(manifest_path, &m, msg)) != VS_OK)
        return st;
    vs_version_rec_t *rec = calloc(2, sizeof *rec), *cur = rec ? rec + 1 : NULL;
    char abs[PATH_MAX];
    if (!rec) {
        vs_manifest_fini(&m);
        return vs_errf(msg, VS_ERR_NOMEM, "out of memory");
    }
    if (!realpath(manifest_path, abs)) {
        st = vs_errf(msg, VS_ERR_IO, "%s: cannot resolve the path", manifest_path);
        goto out;
    }
    snprintf(rec->version, sizeof rec->version, "%s", m.version);
    snprintf(rec->manifest, sizeof rec->manifest, "%s", abs);
    snprintf(rec->model_version, sizeof rec->model_version, "%s", m.model_version);
    rec->partitions = m.n_partitions;
    snprintf(rec->state, sizeof rec->state, "%s", vs_cver_state_name(VS_CVER_STAGED));
    now_iso(rec->staged_at);
    rec->dim = m.dim;
    snprintf(rec->metric, sizeof rec->metric, "%s", vs_metric_name(m.metric));
    snprintf(rec->partitioning, sizeof rec->partitioning, "%s", m.partitioning);
    vs_manifest_content_id(&m, rec->content_id);

    int64_t rev;
    int found;
    if ((st = get_version(e, cluster, m.version, cur, &rev, &found, msg)) != VS_OK)
        goto out;
    vs_cver_state from = VS_CVER_NONE, to;
    if (found && vs_cver_state_parse(cur->state, &from) != VS_OK) {
        st = vs_errf(msg, VS_ERR_CORRUPT, "version %s: record has state \"%s\"", m.version, cur->state);
        goto out;
    }
    if (found) {
        /* the name is known: the content must be the same (older records: the same manifest path) */
        int same = cur->content_id[0] ? strcmp(cur->content_id, rec->content_id) == 0
                                      : strcmp(cur->manifest, rec->manifest) == 0;
        if (!same) {
            st = vs_errf(msg, VS_ERR_ALREADY_EXISTS,
                         "version %s is already deployed with other content (content id %s from %.200s; this "
                         "manifest: %s): build under a new version name",
                         m.version, cur->content_id[0] ? cur->content_id : "?", cur->manifest,
                         rec->content_id);
            goto out;
        }
        if (from == VS_CVER_FAILED) {
            st = vs_errf(msg, VS_ERR_FAILED_PRECONDITION,
                         "%s is deployed and FAILED%s%.200s: retire or remove it first, then deploy again",
                         m.version, cur->reason[0] ? ": " : "", cur->reason);
            goto out;
        }
        if (from != VS_CVER_RETIRED) {
            snprintf(msg, VS_ERR_LEN, "%s is already deployed from %.300s (state %s)", m.version,
                     cur->manifest, cur->state);
            goto out;
        }
    }
    if ((st = vs_cver_next(from, VS_CVER_DEPLOY, &to, msg)) != VS_OK)
        goto out;
    if ((st = check_room(e, cluster, &m, msg)) != VS_OK)
        goto out;
    snprintf(rec->state, sizeof rec->state, "%s", vs_cver_state_name(to));
    txn_t *t = calloc(1, sizeof *t);
    if (!t) {
        st = vs_errf(msg, VS_ERR_NOMEM, "out of memory");
        goto out;
    }
    char key[VS_KEY_LEN], detail[VS_ERR_LEN];
    vs_key_version(key, cluster, m.version);
    txn_cmp(t, key, rev);
    txn_put_version(t, cluster, rec);
    snprintf(detail, sizeof detail, "staged content %s from %.300s", rec->content_id, abs);
    txn_audit(t, cluster, "deploy", m.version, detail);
    st = txn_run(e, t, msg);
    free(t);
    if (st == VS_OK)
        prune_audit(e, cluster);
    if (st == VS_OK)
        snprintf(msg, VS_ERR_LEN, "staged %.64s (%u partitions, model \"%.64s\", content %s)%s from %.300s",
                 m.version, m.n_partitions, m.model_version, rec->content_id, found ? " again" : "", abs);
out:
    free(rec);
    vs_manifest_fini(&m);
    return st;
}

/* Switches the active version to `to` (a version record when has_rec; a bootstrapped version without one
 * otherwise). `from` is the active one ("" none); from's record (if any) becomes previous and the old
 * previous's record (if any) retired. Compares the active key and every record it rewrites. */
static vs_status switch_to(vs_etcd_t *e, const char *cluster, const char *command, const char *to,
                           size_t min_ready, int force, char msg[VS_ERR_LEN])
{
    vs_status st;
    vs_version_rec_t *recs = calloc(3, sizeof *recs); /* to, from, previous */
    vs_member_rec_t *members = NULL;
    size_t n_members = 0;
    txn_t *t = calloc(1, sizeof *t);
    if (!recs || !t) {
        free(recs);
        free(t);
        return vs_errf(msg, VS_ERR_NOMEM, "out of memory");
    }
    vs_active_rec_t act;
    int64_t arev, rev[3] = {0};
    int has_act, found[3] = {0};
    char from[VS_RECORD_NAME_LEN] = "", prev[VS_RECORD_NAME_LEN] = "", note[VS_ERR_LEN] = "";
    if ((st = get_version(e, cluster, to, &recs[0], &rev[0], &found[0], msg)) != VS_OK ||
        (st = get_active(e, cluster, &act, &arev, &has_act, msg)) != VS_OK ||
        (st = get_members(e, cluster, &members, &n_members, msg)) != VS_OK)
        goto out;
    if (has_act) {
        snprintf(from, sizeof from, "%s", act.version);
        snprintf(prev, sizeof prev, "%s", act.previous);
    } else {
        members_active(members, n_members, from); /* bootstrapped with --manifest */
    }
    if (strcmp(from, to) == 0 && has_act) {
        snprintf(msg, VS_ERR_LEN, "%s is already active", to);
        goto out;
    }
    /* the state machine: is `to` allowed to become active? */
    vs_cver_state s_to = VS_CVER_NONE, next;
    if (found[0] && (st = vs_cver_state_parse(recs[0].state, &s_to)) != VS_OK) {
        st = vs_errf(msg, VS_ERR_CORRUPT, "version %s: record has state \"%s\"", to, recs[0].state);
        goto out;
    }
    desc_t d_to, d_from;
    if (found[0]) {
        if ((st = vs_cver_next(s_to, VS_CVER_ACTIVATE, &next, msg)) != VS_OK)
            goto out;
        desc_from_record(&recs[0], &d_to);
    } else {
        /* no record: only a version the replicas already hold (bootstrapped) can be switched to */
        desc_from_members(members, n_members, to, &d_to);
        if (!d_to.known) {
            st = vs_errf(msg, VS_ERR_NOT_FOUND, "version %s is not deployed (vecshard deploy MANIFEST first)",
                         to);
            goto out;
        }
    }
    if (from[0] && (st = get_version(e, cluster, from, &recs[1], &rev[1], &found[1], msg)) != VS_OK)
        goto out;
    if (found[1])
        desc_from_record(&recs[1], &d_from);
    else
        desc_from_members(members, n_members, from, &d_from);
    if (from[0] && (st = guard(from, &d_from, to, &d_to, force, msg, note)) != VS_OK)
        goto out;
    size_t parts = found[0] && recs[0].partitions ? recs[0].partitions : d_to.partitions;
    /* the partitions' content ids, from the manifest the version record names */
    char(*content)[17] = NULL;
    vs_manifest_t man;
    char merr[VS_ERR_LEN];
    if (found[0] && vs_manifest_load(recs[0].manifest, &man, merr) == VS_OK) {
        if (man.n_partitions == parts && (content = calloc(parts, sizeof *content)) != NULL)
            for (uint32_t i = 0; i < man.n_partitions; i++)
                if (man.partitions[i].id < parts)
                    memcpy(content[man.partitions[i].id], man.partitions[i].content_id, 17);
        vs_manifest_fini(&man);
    }
    st = check_ready(members, n_members, to, parts, (const char(*)[17])content, min_ready ? min_ready : 1,
                     msg);
    free(content);
    if (st != VS_OK)
        goto out;
    if (prev[0] && strcmp(prev, to) != 0 && strcmp(prev, from) != 0 &&
        (st = get_version(e, cluster, prev, &recs[2], &rev[2], &found[2], msg)) != VS_OK)
        goto out;

    char key[VS_KEY_LEN], *json = NULL, detail[VS_ERR_LEN];
    vs_active_rec_t na;
    memset(&na, 0, sizeof na);
    snprintf(na.version, sizeof na.version, "%s", to);
    snprintf(na.previous, sizeof na.previous, "%s", strcmp(from, to) == 0 ? "" : from);
    now_iso(na.activated_at);
    vs_key_active(key, cluster);
    txn_cmp(t, key, arev);
    if (vs_active_rec_encode(&na, &json, msg) != VS_OK)
        json = NULL;
    txn_put(t, key, json);
    const vs_cver_event evs[3] = {VS_CVER_ACTIVATE, VS_CVER_DEMOTE, VS_CVER_SUPERSEDE};
    for (int i = 0; i < 3; i++) {
        if (!found[i] || (i > 0 && strcmp(recs[i].version, to) == 0))
            continue;
        vs_cver_state s, ns;
        if (vs_cver_state_parse(recs[i].state, &s) != VS_OK || vs_cver_next(s, evs[i], &ns, NULL) != VS_OK)
            continue; /* a record out of step (e.g. staged but named previous) is left as it is */
        vs_key_version(key, cluster, recs[i].version);
        txn_cmp(t, key, rev[i]);
        snprintf(recs[i].state, sizeof recs[i].state, "%s", vs_cver_state_name(ns));
        txn_put_version(t, cluster, &recs[i]);
    }
    snprintf(detail, sizeof detail, "%.64s active; previous %.64s%s%.300s", to, from[0] ? from : "none",
             note[0] ? "; " : "", note);
    txn_audit(t, cluster, command, to, detail);
    if ((st = txn_run(e, t, msg)) != VS_OK)
        goto out;
    prune_audit(e, cluster);
    snprintf(msg, VS_ERR_LEN, "%s%.64s is active%s%.64s%s%.64s%s%.200s",
             strcmp(command, "rollback") == 0 ? "rolled back: " : "", to, from[0] ? "; previous: " : "", from,
             found[2] ? "; retired: " : "", found[2] ? recs[2].version : "", note[0] ? "\n" : "", note);
out:
    free(members);
    free(recs);
    free(t);
    return st;
}

vs_status vs_rollout_activate(vs_etcd_t *e, const char *cluster, const char *version, size_t min_ready,
                              int force, char msg[VS_ERR_LEN])
{
    vs_status st;
    if (!name_ok(cluster, version, msg, &st))
        return st;
    return switch_to(e, cluster, "activate", version, min_ready, force, msg);
}

vs_status vs_rollout_version_manifest(vs_etcd_t *e, const char *cluster, const char *version, char *out,
                                      char msg[VS_ERR_LEN])
{
    vs_status st;
    if (!name_ok(cluster, version, msg, &st))
        return st;
    vs_version_rec_t *rec = calloc(1, sizeof *rec);
    if (!rec)
        return vs_errf(msg, VS_ERR_NOMEM, "out of memory");
    int64_t rev;
    int found = 0;
    st = get_version(e, cluster, version, rec, &rev, &found, msg);
    if (st == VS_OK && !found)
        st = vs_errf(msg, VS_ERR_NOT_FOUND, "version %s has no record in cluster %s", version, cluster);
    if (st == VS_OK)
        snprintf(out, PATH_MAX, "%s", rec->manifest);
    free(rec);
    return st;
}

vs_status vs_rollout_rollback(vs_etcd_t *e, const char *cluster, size_t min_ready, char msg[VS_ERR_LEN])
{
    vs_status st;
    if (!name_ok(cluster, NULL, msg, &st))
        return st;
    vs_active_rec_t act;
    int64_t arev;
    int has_act;
    if ((st = get_active(e, cluster, &act, &arev, &has_act, msg)) != VS_OK)
        return st;
    if (!has_act || !act.previous[0])
        return vs_errf(msg, VS_ERR_FAILED_PRECONDITION, "no previous version to roll back to (active: %s)",
                       has_act ? act.version : "none recorded");
    char prev[VS_RECORD_NAME_LEN];
    snprintf(prev, sizeof prev, "%s", act.previous);
    return switch_to(e, cluster, "rollback", prev, min_ready, 0, msg);
}

/* retire / remove: one state-machine event on a version record. */
static vs_status lifecycle_cmd(vs_etcd_t *e, const char *cluster, const char *version, vs_cver_event ev,
                               char msg[VS_ERR_LEN])
{
    vs_status st;
    if (!name_ok(cluster, version, msg, &st))
        return st;
    vs_version_rec_t *rec = calloc(1, sizeof *rec);
    txn_t *t = calloc(1, sizeof *t);
    int64_t rev;
    int found;
    vs_cver_state from, to;
    if (!rec || !t) {
        st = vs_errf(msg, VS_ERR_NOMEM, "out of memory");
        goto out;
    }
    if ((st = get_version(e, cluster, version, rec, &rev, &found, msg)) != VS_OK)
        goto out;
    if (!found) {
        st = vs_errf(msg, VS_ERR_NOT_FOUND, "version %s has no record in cluster %s", version, cluster);
        goto out;
    }
    if ((st = vs_cver_state_parse(rec->state, &from)) != VS_OK) {
        st = vs_errf(msg, VS_ERR_CORRUPT, "version %s: record has state \"%s\"", version, rec->state);
        goto out;
    }
    if ((st = vs_cver_next(from, ev, &to, msg)) != VS_OK)
        goto out;
    if (to == from) {
        snprintf(msg, VS_ERR_LEN, "%s is already %s", version, rec->state);
        goto out;
    }
    char key[VS_KEY_LEN], detail[128];
    vs_key_version(key, cluster, version);
    txn_cmp(t, key, rev);
    if (to == VS_CVER_REMOVED) {
        txn_del(t, key);
    } else {
        snprintf(rec->state, sizeof rec->state, "%s", vs_cver_state_name(to));
        txn_put_version(t, cluster, rec);
    }
    snprintf(detail, sizeof detail, "%s -> %s", vs_cver_state_name(from), vs_cver_state_name(to));
    txn_audit(t, cluster, vs_cver_event_name(ev), version, detail);
    if ((st = txn_run(e, t, msg)) == VS_OK) {
        prune_audit(e, cluster);
        snprintf(msg, VS_ERR_LEN, "%s: %s -> %s%s", version, vs_cver_state_name(from), vs_cver_state_name(to),
                 to == VS_CVER_REMOVED ? " (shards unload it; the name can be deployed again)"
                                       : " (shards unload it)");
    }
out:
    free(rec);
    free(t);
    return st;
}

vs_status vs_rollout_retire(vs_etcd_t *e, const char *cluster, const char *version, char msg[VS_ERR_LEN])
{
    return lifecycle_cmd(e, cluster, version, VS_CVER_RETIRE, msg);
}

vs_status vs_rollout_remove(vs_etcd_t *e, const char *cluster, const char *version, char msg[VS_ERR_LEN])
{
    return lifecycle_cmd(e, cluster, version, VS_CVER_REMOVE, msg);
}
