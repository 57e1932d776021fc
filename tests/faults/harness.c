/* harness.c: see harness.h. */
#include "tests/faults/harness.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <curl/curl.h>

#include "common/cli/timing.h"
#include "common/cluster/keys.h"
#include "common/cluster/records.h"
#include "common/net/etcd.h"
#include "common/net/rpc.h"
#include "shard/index/index.h"
#include "tests/testlib.h"
#include "vecshard/v1/coordinator.pb-c.h"

static vs_rpc_channel_t *coord_channel(vs_fault_cluster_t *c)
{
    char target[64], err[VS_ERR_LEN];
    vs_rpc_channel_t *ch = NULL;
    snprintf(target, sizeof target, "127.0.0.1:%d", c->coord.grpc_port);
    return vs_rpc_channel_create(target, 0, &ch, err) == VS_OK ? ch : NULL;
}

int vs_fault_start_shard(vs_fault_cluster_t *c, vs_test_proc_t *p, uint32_t partition, const char *replica_id,
                         const char *const *extra_args)
{
    char part[16];
    snprintf(part, sizeof part, "%u", partition);
    const char *argv[40] = {
        "--listen",     "127.0.0.1:0", "--metrics-listen", "none",
        "--partition",  part,          "--cluster",        c->cluster,
        "--replica-id", replica_id,    "--etcd",           vs_etcd_fixture_endpoint(c->etcd),
        "--lease-ttl",  "3",           "--threads",        "2"};
    size_t n = 16;
    for (size_t i = 0; extra_args && extra_args[i] && n < 38; i++)
        argv[n++] = extra_args[i];
    argv[n] = NULL;
    return vs_test_proc_start(p, c->dir, replica_id, "vecshard-shard", argv);
}

int vs_fault_start_shard_from(vs_fault_cluster_t *c, vs_test_proc_t *p, uint32_t partition,
                              const char *replica_id, const char *bin_dir, const char *const *extra_args)
{
    const char *cur = getenv("VS_BIN_DIR");
    char saved[PATH_MAX] = "";
    if (cur)
        snprintf(saved, sizeof saved, "%s", cur);
    setenv("VS_BIN_DIR", bin_dir, 1); /* vs_test_proc_start resolves the binary through it */
    int rc = vs_fault_start_shard(c, p, partition, replica_id, extra_args);
    if (cur)
        setenv("VS_BIN_DIR", saved, 1);
    else
        unsetenv("VS_BIN_DIR");
    return rc;
}

int vs_fault_start(vs_fault_cluster_t *c, const char *dir, const char *cluster, uint32_t partitions,
                   uint32_t replicas, const vs_test_version_t *bootstrap)
{
    char err[VS_ERR_LEN];
    memset(c, 0, sizeof *c);
    c->dir = dir;
    c->cluster = cluster;
    c->partitions = partitions;
    c->replicas = replicas;
    if (partitions * replicas > VS_FAULT_MAX_SHARDS)
        return -1;
    if (vs_etcd_fixture_start(cluster, &c->etcd, err) != VS_OK) {
        fprintf(stderr, "etcd: %s\n", err);
        return -1;
    }
    const char *boot[] = {"--manifest", bootstrap ? bootstrap->manifest : NULL, NULL};
    for (uint32_t p = 0; p < partitions; p++)
        for (uint32_t r = 0; r < replicas; r++) {
            char id[32];
            snprintf(id, sizeof id, "s%u-%u", p, r);
            if (vs_fault_start_shard(c, &c->shards[p * replicas + r], p, id, bootstrap ? boot : NULL) != 0)
                return -1;
        }
    const char *cargv[] = {"--listen",
                           "127.0.0.1:0",
                           "--metrics-listen",
                           "none",
                           "--etcd",
                           vs_etcd_fixture_endpoint(c->etcd),
                           "--cluster",
                           cluster,
                           "--threads",
                           "4",
                           bootstrap ? "--manifest" : NULL,
                           bootstrap ? bootstrap->manifest : NULL,
                           NULL};
    return vs_test_proc_start(&c->coord, dir, "coordinator", "vecshard-coordinator", cargv);
}

void vs_fault_expect(vs_fault_cluster_t *c, const char *name, const vs_test_version_t *v)
{
    if (c->n_expect == VS_FAULT_MAX_EXPECT || !c->queries_from)
        return;
    size_t nq = c->queries_from->nq;
    float *d = malloc(nq * VS_FAULT_K * sizeof *d);
    int64_t *ids = malloc(nq * VS_FAULT_K * sizeof *ids);
    char err[VS_ERR_LEN];
    vs_search_params_t sp = {.nprobe = VS_FAULT_NPROBE};
    CHECKF(d && ids &&
               vs_test_version_search(v, c->queries_from->queries, nq, VS_FAULT_K, &sp, d, ids, err) == VS_OK,
           "oracle of %s: %s", name, err);
    free(d);
    snprintf(c->expect_name[c->n_expect], sizeof c->expect_name[0], "%s", name);
    c->expect_ids[c->n_expect++] = ids;
}

void vs_fault_expect_replace(vs_fault_cluster_t *c, const char *name, const vs_test_version_t *v)
{
    for (size_t i = 0; i < c->n_expect; i++)
        if (strcmp(c->expect_name[i], name) == 0) {
            free(c->expect_ids[i]);
            c->expect_ids[i] = c->expect_ids[--c->n_expect];
            memcpy(c->expect_name[i], c->expect_name[c->n_expect], sizeof c->expect_name[i]);
            break;
        }
    vs_fault_expect(c, name, v);
}

static int query_on(vs_fault_cluster_t *c, vs_rpc_channel_t *ch, size_t q, uint32_t nprobe, char version[64],
                    int *correct, int *which, int *clipped)
{
    const vs_test_version_t *qv = c->queries_from;
    q %= qv->nq;
    Vecshard__V1__SearchRequest r = VECSHARD__V1__SEARCH_REQUEST__INIT;
    Vecshard__V1__SearchParams sp = VECSHARD__V1__SEARCH_PARAMS__INIT;
    r.dim = qv->dim;
    r.queries = qv->queries + q * qv->dim;
    r.n_queries = qv->dim;
    r.k = VS_FAULT_K;
    sp.nprobe = nprobe;
    r.params = &sp;
    size_t len = vecshard__v1__search_request__get_packed_size(&r), blen = 0;
    uint8_t buf[65536], *body = NULL;
    vecshard__v1__search_request__pack(&r, buf);
    int code = -1;
    char msg[VS_ERR_LEN] = "";
    version[0] = 0;
    *correct = 0;
    *which = -1;
    if (vs_rpc_call_unary(ch, "/vecshard.v1.Coordinator/Search", buf, len, 2000, &code, msg, &body, &blen) !=
        VS_OK)
        code = -1;
    if (code == 0) {
        Vecshard__V1__SearchResponse *resp = vecshard__v1__search_response__unpack(NULL, blen, body);
        if (resp) {
            snprintf(version, 64, "%s", resp->index_version);
            if (clipped)
                *clipped = resp->params_clipped;
            for (size_t i = 0; i < c->n_expect; i++)
                if (strcmp(c->expect_name[i], version) == 0) {
                    *which = (int)i;
                    *correct =
                        resp->n_ids == VS_FAULT_K && memcmp(resp->ids, c->expect_ids[i] + q * VS_FAULT_K,
                                                            VS_FAULT_K * sizeof(int64_t)) == 0;
                }
            vecshard__v1__search_response__free_unpacked(resp, NULL);
        }
    } else {
        snprintf(c->last_error, sizeof c->last_error, "code %d: %.200s", code, msg);
    }
    free(body);
    return code;
}

int vs_fault_query(vs_fault_cluster_t *c, size_t q, char version[64], int *correct)
{
    vs_rpc_channel_t *ch = coord_channel(c);
    int which, code = ch ? query_on(c, ch, q, VS_FAULT_NPROBE, version, correct, &which, NULL) : -1;
    vs_rpc_channel_destroy(ch);
    return code;
}

int vs_fault_query_nprobe(vs_fault_cluster_t *c, size_t q, uint32_t nprobe, char version[64], int *clipped)
{
    vs_rpc_channel_t *ch = coord_channel(c);
    int which, correct;
    *clipped = 0;
    int code = ch ? query_on(c, ch, q, nprobe, version, &correct, &which, clipped) : -1;
    vs_rpc_channel_destroy(ch);
    return code;
}

typedef struct load_arg {
    vs_fault_cluster_t *c;
    size_t start;
} load_arg_t;

static void *load_main(void *arg)
{
    load_arg_t *a = arg;
    vs_fault_cluster_t *c = a->c;
    vs_rpc_channel_t *ch = coord_channel(c);
    for (size_t i = a->start; ch && !atomic_load(&c->stop); i++) {
        char v[64];
        int correct, which;
        int code = query_on(c, ch, i, VS_FAULT_NPROBE, v, &correct, &which, NULL);
        atomic_fetch_add(&c->sent, 1);
        if (code != 0)
            atomic_fetch_add(&c->failed, 1);
        else if (!correct)
            atomic_fetch_add(&c->wrong, 1);
        if (which >= 0)
            atomic_fetch_add(&c->by_version[which], 1);
    }
    vs_rpc_channel_destroy(ch);
    free(a);
    return NULL;
}

void vs_fault_load_start(vs_fault_cluster_t *c, int n_threads)
{
    pthread_t *th = calloc((size_t)n_threads, sizeof *th);
    atomic_store(&c->stop, 0);
    c->threads = th;
    c->n_threads = 0;
    for (int t = 0; th && t < n_threads; t++) {
        load_arg_t *a = malloc(sizeof *a);
        *a = (load_arg_t){c, (size_t)t * 7};
        if (pthread_create(&th[t], NULL, load_main, a) == 0)
            c->n_threads++;
        else
            free(a);
    }
}

void vs_fault_load_stop(vs_fault_cluster_t *c)
{
    atomic_store(&c->stop, 1);
    pthread_t *th = c->threads;
    for (int t = 0; t < c->n_threads; t++)
        pthread_join(th[t], NULL);
    free(th);
    c->threads = NULL;
    c->n_threads = 0;
}

void vs_fault_check_load(vs_fault_cluster_t *c, const char *when)
{
    unsigned long failed = atomic_load(&c->failed), wrong = atomic_load(&c->wrong);
    CHECKF(failed == 0 && wrong == 0, "%s: %lu failed (%s), %lu wrong of %lu", when, failed, c->last_error,
           wrong, atomic_load(&c->sent));
}

int vs_fault_cli(vs_fault_cluster_t *c, const char *args, char *out, size_t cap)
{
    char log[PATH_MAX];
    snprintf(log, sizeof log, "%s/cli.log", c->dir);
    return vs_test_proc_cli(log, vs_etcd_fixture_endpoint(c->etcd), c->cluster, args, out, cap);
}

int vs_fault_cli_until_ok(vs_fault_cluster_t *c, const char *args, double timeout_s, char *out, size_t cap)
{
    double t0 = vs_now_s();
    int rc;
    while ((rc = vs_fault_cli(c, args, out, cap)) != 0 && vs_now_s() - t0 < timeout_s)
        usleep(100000);
    return rc;
}

int vs_fault_cli_until_says(vs_fault_cluster_t *c, const char *args, const char *needle, double timeout_s,
                            char *out, size_t cap)
{
    double t0 = vs_now_s();
    do {
        vs_fault_cli(c, args, out, cap);
        if (strstr(out, needle))
            return 1;
        usleep(100000);
    } while (vs_now_s() - t0 < timeout_s);
    return 0;
}

int vs_fault_wait_served_by(vs_fault_cluster_t *c, const char *version, double timeout_s)
{
    double t0 = vs_now_s();
    while (vs_now_s() - t0 < timeout_s) {
        char v[64];
        int correct;
        if (vs_fault_query(c, 0, v, &correct) == 0 && strcmp(v, version) == 0)
            return 1;
        usleep(50000);
    }
    return 0;
}

long vs_fault_count_keys(vs_fault_cluster_t *c, const char *sub, int64_t *rev)
{
    char prefix[VS_KEY_LEN], err[VS_ERR_LEN];
    size_t pl = vs_key_root(prefix, c->cluster);
    pl += (size_t)snprintf(prefix + pl, sizeof prefix - pl, "%s", sub);
    vs_etcd_opts_t eo = {.endpoints = vs_etcd_fixture_endpoint(c->etcd)};
    vs_etcd_t *e = NULL;
    vs_etcd_kvs_t kvs = {0};
    long n = -1;
    if (vs_etcd_create(&eo, &e, err) == VS_OK && vs_etcd_range_prefix(e, prefix, pl, &kvs, err) == VS_OK) {
        n = (long)kvs.n;
        if (rev)
            *rev = kvs.revision;
    }
    vs_etcd_kvs_fini(&kvs);
    vs_etcd_destroy(e);
    return n;
}

long vs_fault_members_created_after(vs_fault_cluster_t *c, int64_t rev)
{
    char prefix[VS_KEY_LEN], err[VS_ERR_LEN];
    size_t pl = vs_key_members_prefix(prefix, c->cluster);
    vs_etcd_opts_t eo = {.endpoints = vs_etcd_fixture_endpoint(c->etcd)};
    vs_etcd_t *e = NULL;
    vs_etcd_kvs_t kvs = {0};
    long n = -1;
    if (vs_etcd_create(&eo, &e, err) == VS_OK && vs_etcd_range_prefix(e, prefix, pl, &kvs, err) == VS_OK) {
        n = 0;
        for (size_t i = 0; i < kvs.n; i++)
            n += kvs.kvs[i].create_revision > rev;
    }
    vs_etcd_kvs_fini(&kvs);
    vs_etcd_destroy(e);
    return n;
}

/* The coordinator's Status, decoded (free with vecshard__v1__status_response__free_unpacked), or NULL. */
static Vecshard__V1__StatusResponse *coord_status(vs_fault_cluster_t *c)
{
    vs_rpc_channel_t *ch = coord_channel(c);
    Vecshard__V1__StatusRequest req = VECSHARD__V1__STATUS_REQUEST__INIT;
    uint8_t buf[16], *body = NULL;
    size_t len = vecshard__v1__status_request__pack(&req, buf), blen = 0;
    int code = -1;
    char msg[VS_ERR_LEN];
    Vecshard__V1__StatusResponse *r = NULL;
    if (ch &&
        vs_rpc_call_unary(ch, "/vecshard.v1.Coordinator/Status", buf, len, 1000, &code, msg, &body, &blen) ==
            VS_OK &&
        code == 0)
        r = vecshard__v1__status_response__unpack(NULL, blen, body);
    free(body);
    vs_rpc_channel_destroy(ch);
    return r;
}

int vs_fault_coord_member(vs_fault_cluster_t *c, const char *replica_id, double *out_latency_ms)
{
    Vecshard__V1__StatusResponse *r = coord_status(c);
    if (!r)
        return -1;
    int found = 0;
    for (size_t i = 0; i < r->n_members && !found; i++)
        if (r->members[i]->replica_id && strcmp(r->members[i]->replica_id, replica_id) == 0) {
            found = 1;
            *out_latency_ms = r->members[i]->latency_ewma_ms;
        }
    vecshard__v1__status_response__free_unpacked(r, NULL);
    return found;
}

int vs_fault_coord_etcd_connected(vs_fault_cluster_t *c)
{
    vs_rpc_channel_t *ch = coord_channel(c);
    Vecshard__V1__StatusRequest req = VECSHARD__V1__STATUS_REQUEST__INIT;
    uint8_t buf[16], *body = NULL;
    size_t len = vecshard__v1__status_request__pack(&req, buf), blen = 0;
    int code = -1, out = -1;
    char msg[VS_ERR_LEN];
    if (ch &&
        vs_rpc_call_unary(ch, "/vecshard.v1.Coordinator/Status", buf, len, 1000, &code, msg, &body, &blen) ==
            VS_OK &&
        code == 0) {
        Vecshard__V1__StatusResponse *r = vecshard__v1__status_response__unpack(NULL, blen, body);
        out = r ? (r->etcd_connected ? 1 : 0) : -1;
        if (r)
            vecshard__v1__status_response__free_unpacked(r, NULL);
    }
    free(body);
    vs_rpc_channel_destroy(ch);
    return out;
}

static size_t sink(char *p, size_t sz, size_t n, void *u)
{
    size_t *len = u;
    char *buf = (char *)(len + 1);
    size_t take = sz * n;
    if (*len + take < 65536) {
        memcpy(buf + *len, p, take);
        *len += take;
        buf[*len] = 0;
    }
    return sz * n;
}

long vs_fault_count_leases(vs_fault_cluster_t *c)
{
    char url[256];
    snprintf(url, sizeof url, "%s/v3/lease/leases", vs_etcd_fixture_endpoint(c->etcd));
    size_t *acc = calloc(1, sizeof(size_t) + 65537);
    CURL *h = curl_easy_init();
    long n = -1;
    if (acc && h) {
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, "{}");
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, acc);
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 2000L);
        if (curl_easy_perform(h) == CURLE_OK) {
            n = 0;
            for (const char *s = (char *)(acc + 1); (s = strstr(s, "\"ID\"")) != NULL; s += 4)
                n++;
        }
    }
    if (h)
        curl_easy_cleanup(h);
    free(acc);
    return n;
}

long vs_fault_shard_versions(vs_fault_cluster_t *c, uint32_t partition, const char *replica_id)
{
    char key[VS_KEY_LEN], err[VS_ERR_LEN];
    size_t kl = vs_key_member(key, c->cluster, partition, replica_id);
    vs_etcd_opts_t eo = {.endpoints = vs_etcd_fixture_endpoint(c->etcd)};
    vs_etcd_t *e = NULL;
    vs_etcd_kvs_t kvs = {0};
    long n = -1;
    vs_member_rec_t *r = malloc(sizeof *r);
    if (r && vs_etcd_create(&eo, &e, err) == VS_OK && vs_etcd_get(e, key, kl, &kvs, err) == VS_OK &&
        kvs.n == 1 && vs_member_rec_decode(kvs.kvs[0].value, kvs.kvs[0].value_len, r, err) == VS_OK)
        n = (long)r->n_versions;
    free(r);
    vs_etcd_kvs_fini(&kvs);
    vs_etcd_destroy(e);
    return n;
}

void vs_fault_stop(vs_fault_cluster_t *c, int failed)
{
    if (c->threads)
        vs_fault_load_stop(c);
    if (failed) {
        vs_test_proc_tail(&c->coord, 20);
        for (uint32_t i = 0; i < c->partitions * c->replicas; i++)
            vs_test_proc_tail(&c->shards[i], 20);
    }
    /* every process drains and exits 0 on SIGTERM (a sanitizer report would make it exit otherwise) */
    int rc = vs_test_proc_stop(&c->coord, SIGTERM, 10);
    CHECKF(rc == 0, "coordinator exit status %d", rc);
    for (uint32_t i = 0; i < c->partitions * c->replicas; i++) {
        rc = vs_test_proc_stop(&c->shards[i], SIGTERM, 10);
        CHECKF(rc == 0, "shard %u exit status %d", i, rc);
    }
    char err[VS_ERR_LEN];
    if (c->etcd) {
        vs_etcd_fixture_stop(c->etcd, err);
        vs_etcd_fixture_destroy(c->etcd);
    }
    for (size_t i = 0; i < c->n_expect; i++)
        free(c->expect_ids[i]);
    c->n_expect = 0;
}
