/* test_cli_cluster: deploy/local/cluster.sh and the `vecshard` CLI end to end. `cluster.sh up` starts etcd,
 * two shards of a small IVF16,Flat version (hash partitions) and the coordinator; `vecshard query --gt
 * --json` through the coordinator must report exactly the recall of in-process search on the same
 * partition files merged the same way (nprobe = nlist: exact, recall 1; nprobe = 1: approximate), with no
 * failed call; `status` and `versions` see both members; then a stand-in coordinator with injected faults
 * (tests/integration/fake_coordinator.py, on the same shards) checks that the CLI counts failed calls by
 * status, partial responses and mixed versions, and exits 1. Own ids: `vecshard-gt --ids` writes the ground
 * truth as the items' ids (.npy int64, the same neighbours), `query --gt` reads .npy ids as it reads
 * .ivecs rows, and refuses (exit 1, says why) a ground truth whose ids the index does not answer with.
 * `cluster.sh down` must leave no process: the test is a child subreaper, so the cluster's processes become
 * its children and are reaped here. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "common/vecio.h"
#include "shard/index/index.h"
#include "tests/support/version_fixture.h"
#include "tests/testlib.h"

#define N 4000
#define D 16
#define NQ 200
#define K 10
#define NLIST 16

static char dir[1024], cluster_dir[1100], bin[1024], src[1024];
static pid_t pids[16];
static size_t n_pids;

/* Runs a shell command line, returns its exit status and (if out) its stdout as a malloc'd string. */
static int run(const char *cmd, char **out)
{
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    size_t got;
    while ((got = fread(buf + len, 1, cap - len - 1, p)) > 0) {
        len += got;
        if (len + 1 == cap)
            buf = realloc(buf, cap *= 2);
    }
    buf[len] = 0;
    int st = pclose(p);
    if (out)
        *out = buf;
    else
        free(buf);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

/* Value of key=... in the cluster's state file ("" when absent). */
static void state_get(const char *file, const char *key, char *out, size_t n)
{
    out[0] = 0;
    FILE *f = fopen(file, "r");
    if (!f)
        return;
    char line[1024];
    size_t kl = strlen(key);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, kl) == 0 && line[kl] == '=') {
            line[strcspn(line, "\n")] = 0;
            snprintf(out, n, "%s", line + kl + 1);
        }
    fclose(f);
}

/* Records the pids of the state file's processes (proc_<name>_pid=). */
static void collect_pids(const char *file)
{
    FILE *f = fopen(file, "r");
    if (!f)
        return;
    char line[1024];
    while (fgets(line, sizeof line, f) && n_pids < 16) {
        char *eq = strchr(line, '=');
        if (strncmp(line, "proc_", 5) == 0 && eq && eq - line > 4 && strncmp(eq - 4, "_pid", 4) == 0)
            pids[n_pids++] = (pid_t)atoi(eq + 1);
    }
    fclose(f);
}

/* Reaps exited children (the cluster's processes are ours: we are a subreaper). */
static void reap(void)
{
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

/* 1 when every recorded pid is gone (reaped) within timeout_ms. */
static int all_gone(int timeout_ms)
{
    int64_t t0 = vs_test_now_ms();
    for (;;) {
        reap();
        size_t left = 0;
        for (size_t i = 0; i < n_pids; i++)
            left += pids[i] > 0 && (kill(pids[i], 0) == 0 || errno != ESRCH);
        if (left == 0)
            return 1;
        if (vs_test_now_ms() - t0 > timeout_ms)
            return 0;
        vs_test_sleep_ms(50);
    }
}

/* In-process: each partition's index searched with nprobe, merged by (distance, id) into top-K. */
static void expected_ids(const vs_test_version_t *v, uint32_t nprobe, int64_t *ids)
{
    char err[VS_ERR_LEN];
    float d[NQ * K];
    vs_search_params_t sp = {.nprobe = nprobe};
    CHECKF(vs_test_version_search(v, v->queries, NQ, K, &sp, d, ids, err) == VS_OK, "%s", err);
}

static cJSON *query_json_gt(const char *addr, const char *gt, const char *extra, int *rc)
{
    char cmd[4096];
    char *out = NULL;
    snprintf(cmd, sizeof cmd,
             "%s/vecshard query --coordinator %s --queries %s/queries.fvecs --gt %s/%s --k %d "
             "--concurrency 2 --timeout-ms 5000 --json %s",
             bin, addr, dir, dir, gt, K, extra);
    *rc = run(cmd, &out);
    cJSON *j = cJSON_Parse(out);
    if (!j)
        fprintf(stderr, "vecshard query output is not JSON (rc %d): %s\n", *rc, out);
    free(out);
    return j;
}

static cJSON *query_json(const char *addr, const char *extra, int *rc)
{
    return query_json_gt(addr, "gt.ivecs", extra, rc);
}

static double num(const cJSON *o, const char *path1, const char *path2)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, path1);
    if (path2)
        v = cJSON_GetObjectItemCaseSensitive(v, path2);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static vs_test_version_t ver;

static void test_cluster(void)
{
    const vs_test_version_t *v = &ver;
    char cmd[16384], state[1200], addr[128], etcd[128];
    snprintf(state, sizeof state, "%s/state", cluster_dir);
    snprintf(cmd, sizeof cmd,
             "%s/deploy/local/cluster.sh up --insecure --dir %s --partitions 2 --replicas 1 --manifest %s "
             "--timeout 60 --shard-threads 1",
             src, cluster_dir, v->manifest);
    int rc = run(cmd, NULL);
    collect_pids(state);
    CHECKF(rc == 0, "cluster.sh up exited %d", rc);
    CHECKF(n_pids == 4, "%zu processes recorded", n_pids);
    state_get(state, "coordinator_addr", addr, sizeof addr);
    state_get(state, "etcd_url", etcd, sizeof etcd);
    if (rc != 0 || !addr[0])
        return;

    /* a second up while it runs is refused */
    CHECK(run(cmd, NULL) != 0);

    int64_t want[NQ * K];
    int64_t gt[NQ * K];
    size_t ng = 0;
    uint32_t gd = 0;
    int32_t *gt32 = NULL;
    char err[VS_ERR_LEN], path[1200];
    snprintf(path, sizeof path, "%s/gt.ivecs", dir);
    CHECK(vs_vecfile_load_i32(path, &ng, &gd, &gt32, err) == VS_OK && ng == NQ && gd == K);
    for (size_t i = 0; gt32 && i < NQ * K; i++)
        gt[i] = gt32[i];
    free(gt32);

    static const uint32_t nprobes[] = {NLIST, 1};
    static const char *const batches[] = {"--batch 1", "--batch 7"};
    for (size_t t = 0; t < 2; t++) {
        expected_ids(v, nprobes[t], want);
        double want_recall = vs_test_recall(want, K, gt, K, NQ, K);
        if (nprobes[t] == NLIST)
            CHECKF(want_recall == 1.0, "in-process recall with nprobe = nlist is %f", want_recall);
        char extra[64];
        snprintf(extra, sizeof extra, "--nprobe %u %s", nprobes[t], batches[t]);
        cJSON *j = query_json(addr, extra, &rc);
        CHECKF(rc == 0, "vecshard query exited %d", rc);
        CHECK(j != NULL);
        double got = num(j, "recall_at_k", NULL);
        printf("  nprobe %2u: in-process recall@%d %.4f, through the coordinator %.4f, p50 %.3f ms\n",
               nprobes[t], K, want_recall, got, num(j, "latency_ms", "p50"));
        CHECKF(fabs(got - want_recall) < 1e-9, "nprobe %u: recall %f through the coordinator, %f in process",
               nprobes[t], got, want_recall);
        CHECK(num(j, "calls_failed", NULL) == 0 && num(j, "queries_answered", NULL) == NQ);
        CHECK(num(j, "queries_sent", NULL) == NQ && num(j, "partial_responses", NULL) == 0);
        CHECK(num(j, "calls", NULL) == (t == 0 ? NQ : (NQ + 6) / 7));
        CHECK(num(j, "index_versions", "c1") == num(j, "calls", NULL));
        cJSON_Delete(j);
    }

    /* own ids: vecshard-gt --ids writes the same neighbours as the items' ids (here row + 10^9) */
    snprintf(cmd, sizeof cmd,
             "%s/vecshard-gt --base %s/base.fvecs --queries %s/queries.fvecs --k %d --ids %s/ids.npy --out "
             "%s/gt_ids.npy --quiet",
             bin, dir, dir, K, dir, dir);
    CHECK(run(cmd, NULL) == 0);
    snprintf(path, sizeof path, "%s/gt_ids.npy", dir);
    vs_vecfile_t *gf = NULL;
    int64_t own[NQ * K], shifted[NQ * K];
    CHECKF(vs_vecfile_open(path, &gf, err) == VS_OK && vs_vecfile_dtype(gf) == VS_DTYPE_I64 &&
               vs_vecfile_count(gf) == NQ && vs_vecfile_dim(gf) == K &&
               vs_vecfile_read_i64(gf, 0, NQ, own, err) == VS_OK,
           "%s", err);
    vs_vecfile_close(gf);
    for (size_t i = 0; i < NQ * K; i++)
        shifted[i] = gt[i] + 1000000000;
    CHECKF(vs_test_recall(own, K, shifted, K, NQ, K) == 1.0, "vecshard-gt --ids: other neighbours");
    { /* ties: three copies of one vector, ids in the reverse of row order, come back smallest id first */
        float tb[20 * D];
        int64_t tid[20];
        for (size_t i = 0; i < 20; i++) {
            for (size_t j = 0; j < D; j++)
                tb[i * D + j] = i < 3 ? ver.queries[j] : ver.base[(100 + i) * D + j];
            tid[i] = 100 - (int64_t)i;
        }
        char tp[1200];
        snprintf(tp, sizeof tp, "%s/tie.fvecs", dir);
        CHECK(vs_vecio_write_fvecs(tp, 20, D, tb, err) == VS_OK);
        snprintf(tp, sizeof tp, "%s/tie_ids.npy", dir);
        CHECK(vs_vecio_write_npy(tp, VS_DTYPE_I64, 20, 1, tid, err) == VS_OK);
        snprintf(
            cmd, sizeof cmd,
            "%s/vecshard-gt --base %s/tie.fvecs --queries %s/queries.fvecs --nq 1 --k 3 --ids %s/tie_ids.npy "
            "--out %s/tie_gt.npy --quiet",
            bin, dir, dir, dir, dir);
        CHECK(run(cmd, NULL) == 0);
        snprintf(tp, sizeof tp, "%s/tie_gt.npy", dir);
        int64_t got[3] = {0};
        vs_vecfile_t *tf = NULL;
        CHECK(vs_vecfile_open(tp, &tf, err) == VS_OK && vs_vecfile_read_i64(tf, 0, 1, got, err) == VS_OK);
        vs_vecfile_close(tf);
        CHECKF(got[0] == 98 && got[1] == 99 && got[2] == 100, "ties by id: %lld %lld %lld", (long long)got[0],
               (long long)got[1], (long long)got[2]);
    }
    snprintf(
        cmd, sizeof cmd, /* ids are int64: .ivecs is refused */
        "%s/vecshard-gt --base %s/base.fvecs --queries %s/queries.fvecs --ids %s/ids.npy --out %s/x.ivecs "
        "--quiet 2>/dev/null",
        bin, dir, dir, dir, dir);
    CHECK(run(cmd, NULL) != 0);
    /* query --gt reads .npy ids: the rows as int64 give the .ivecs recall; ids it never answers with are
     * refused loudly (exit 1, after the report) instead of reporting recall 0 */
    snprintf(path, sizeof path, "%s/gt_rows.npy", dir);
    CHECK(vs_vecio_write_npy(path, VS_DTYPE_I64, NQ, K, gt, err) == VS_OK);
    cJSON *jr = query_json_gt(addr, "gt_rows.npy", "--nprobe 16", &rc);
    CHECKF(rc == 0 && jr && num(jr, "recall_at_k", NULL) == 1.0, "query --gt gt_rows.npy: rc %d", rc);
    cJSON_Delete(jr);
    char *msg = NULL;
    snprintf(cmd, sizeof cmd,
             "%s/vecshard query --coordinator %s --queries %s/queries.fvecs --gt %s/gt_ids.npy --k %d "
             "--timeout-ms 5000 2>&1",
             bin, addr, dir, dir, K);
    rc = run(cmd, &msg);
    CHECKF(rc != 0 && msg && strstr(msg, "recall@10 is 0") && strstr(msg, "item ids") && strstr(msg, "QPS"),
           "a ground truth of other ids: rc %d, %s", rc, msg ? msg : "");
    free(msg);

    /* --limit sends only the first rows; an unknown pinned version fails every call with NOT_FOUND */
    cJSON *j = query_json(addr, "--limit 5 --index-version nope", &rc);
    CHECK(rc == 1);
    CHECK(j && num(j, "calls", NULL) == 5 && num(j, "failed_by_status", "NOT_FOUND") == 5);
    cJSON_Delete(j);

    char *out = NULL;
    snprintf(cmd, sizeof cmd, "%s/vecshard status --coordinator %s --json", bin, addr);
    CHECK(run(cmd, &out) == 0);
    j = cJSON_Parse(out);
    CHECKF(j && cJSON_GetArraySize(cJSON_GetObjectItem(j, "members")) == 2, "%s", out);
    CHECK(j && cJSON_IsTrue(cJSON_GetObjectItem(j, "etcd_connected")));
    cJSON_Delete(j);
    free(out);
    snprintf(cmd, sizeof cmd, "%s/vecshard versions --etcd %s --cluster local --json", bin, etcd);
    CHECK(run(cmd, &out) == 0);
    j = cJSON_Parse(out);
    cJSON *v0 = j ? cJSON_GetArrayItem(cJSON_GetObjectItem(j, "versions"), 0) : NULL;
    CHECKF(v0 && num(v0, "partitions_ready", NULL) == 2 && num(v0, "n_vectors", NULL) == N, "%s", out);
    cJSON_Delete(j);
    free(out);
    /* open loop: 200 calls at 200 calls/s take about a second whatever the server's speed */
    j = query_json(addr, "--limit 200 --rate 200 --concurrency 8", &rc);
    CHECKF(rc == 0 && j && cJSON_GetObjectItem(j, "load") &&
               strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(j, "load")), "open") == 0 &&
               num(j, "seconds", NULL) > 0.7 && num(j, "seconds", NULL) < 5,
           "open loop: rc %d, %.2f s", rc, j ? num(j, "seconds", NULL) : -1.0);
    cJSON_Delete(j);
    /* without --cluster: the one cluster etcd holds ("local") */
    snprintf(cmd, sizeof cmd, "%s/vecshard versions --etcd %s --json", bin, etcd);
    CHECK(run(cmd, &out) == 0);
    j = cJSON_Parse(out);
    v0 = j ? cJSON_GetArrayItem(cJSON_GetObjectItem(j, "versions"), 0) : NULL;
    CHECKF(v0 && num(v0, "partitions_ready", NULL) == 2 && num(v0, "partitions_seen", NULL) == 2, "%s", out);
    cJSON_Delete(j);
    free(out);
    snprintf(cmd, sizeof cmd, "%s/deploy/local/cluster.sh status --dir %s", src, cluster_dir);
    CHECK(run(cmd, &out) == 0 && strstr(out, "coordinator") != NULL);
    free(out);
    /* --json: one JSON object, the processes and the coordinator's Status in it */
    snprintf(cmd, sizeof cmd, "%s/deploy/local/cluster.sh status --dir %s --json", src, cluster_dir);
    CHECK(run(cmd, &out) == 0);
    j = cJSON_Parse(out);
    const cJSON *procs = j ? cJSON_GetObjectItem(j, "processes") : NULL;
    const cJSON *co = j ? cJSON_GetObjectItem(j, "coordinator") : NULL;
    CHECKF(j && cJSON_IsTrue(cJSON_GetObjectItem(j, "ok")) && cJSON_GetArraySize(procs) == 4 &&
               cJSON_IsObject(co) && cJSON_GetObjectItem(co, "members"),
           "cluster.sh status --json: %s", out);
    cJSON_Delete(j);
    free(out);

    /* the CLI's accounting against injected faults, on the same shards */
    char s0[128], s1[128], desc[1200], fports[1200];
    state_get(state, "shard_p0r0_addr", s0, sizeof s0);
    state_get(state, "shard_p1r0_addr", s1, sizeof s1);
    snprintf(desc, sizeof desc, "%s/../protos/vecshard.desc", bin);
    snprintf(fports, sizeof fports, "%s/fake.ports", dir);
    unlink(fports);
    pid_t fake = fork();
    if (fake == 0) {
        char log[1200], shards[300];
        snprintf(log, sizeof log, "%s/fake.log", dir);
        snprintf(shards, sizeof shards, "0=%s,1=%s", s0, s1);
        FILE *lf = fopen(log, "w");
        if (lf) {
            dup2(fileno(lf), 1);
            dup2(fileno(lf), 2);
        }
        setenv("VS_PROTO_DESC", desc, 1);
        char script[1200];
        snprintf(script, sizeof script, "%s/tests/integration/fake_coordinator.py", src);
        execl("/usr/bin/python3", "python3", script, "--listen", "127.0.0.1:0", "--shards", shards,
              "--manifest", v->manifest, "--port-file", fports, "--grace-ms", "500", "--fake-fail-every", "5",
              "--fake-partial-every", "7", "--fake-alt-version", "other", (char *)NULL);
        _exit(127);
    }
    int fport = 0;
    for (int64_t t0 = vs_test_now_ms(); fake > 0 && !fport && vs_test_now_ms() - t0 < 20000;) {
        FILE *f = fopen(fports, "r");
        if (!f || fscanf(f, "grpc=%d", &fport) != 1)
            vs_test_sleep_ms(50);
        if (f)
            fclose(f);
    }
    CHECKF(fport > 0, "the stand-in coordinator did not start (see %s/fake.log)", dir);
    if (fport > 0) {
        char faddr[64];
        snprintf(faddr, sizeof faddr, "127.0.0.1:%d", fport);
        /* one thread, batch 1, 50 rows: calls 1..50; every 5th fails, every 7th (not failed) is partial,
         * every even successful one says version "other" */
        j = query_json(faddr, "--limit 50 --concurrency 1 --nprobe 16", &rc);
        CHECKF(rc == 1, "exit status %d with failed calls", rc);
        CHECK(j && num(j, "calls", NULL) == 50 && num(j, "calls_failed", NULL) == 10);
        CHECK(j && num(j, "failed_by_status", "UNAVAILABLE") == 10 && num(j, "queries_answered", NULL) == 40);
        CHECK(j && num(j, "partial_responses", NULL) == 6);
        CHECK(j && num(j, "index_versions", "c1") == 20 && num(j, "index_versions", "other") == 20);
        CHECK(j && cJSON_IsTrue(cJSON_GetObjectItem(j, "mixed_versions")));
        double r = j ? num(j, "recall_at_k", NULL) : NAN;
        CHECKF(r > 0.5 && r < 1.0, "recall %f: partial answers must cost recall",
               r); /* 6 of 40 lack a half */
        cJSON_Delete(j);
    }
    if (fake > 0) {
        kill(fake, SIGTERM);
        int st = 0;
        for (int64_t t0 = vs_test_now_ms(); waitpid(fake, &st, WNOHANG) != fake;) {
            if (vs_test_now_ms() - t0 > 5000) {
                kill(fake, SIGKILL);
                waitpid(fake, &st, 0);
                break;
            }
            vs_test_sleep_ms(20);
        }
    }
}

int main(void)
{
    const char *b = getenv("VS_BIN_DIR"), *s = getenv("VS_SOURCE_DIR");
    snprintf(bin, sizeof bin, "%s", b ? b : "build/bin");
    snprintf(src, sizeof src, "%s", s ? s : ".");
    char exe[1100];
    snprintf(exe, sizeof exe, "%s/vecshard-coordinator", bin);
    const char *alt = getenv("VS_COORDINATOR_BIN");
    if (access(alt ? alt : exe, X_OK) != 0) {
        fprintf(stderr, "test_cli_cluster: vecshard-coordinator not built (%s)\n", alt ? alt : exe);
        return 1;
    }
    /* the cluster's processes outlive cluster.sh; as a subreaper this test inherits and reaps them */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    snprintf(dir, sizeof dir, "%s", vs_test_tmpdir("cli_cluster"));
    snprintf(cluster_dir, sizeof cluster_dir, "%s/cluster", dir);

    vs_test_version_t *vp = &ver;
    char err[VS_ERR_LEN];
    if (vs_test_version_build(dir, "c1", "IVF16,Flat", VS_METRIC_L2, N, D, 2, NQ, 21, vp, err) != VS_OK) {
        fprintf(stderr, "version: %s\n", err);
        return 1;
    }
    /* the queries and their exact top-K (brute force) as files for the CLI */
    int32_t *gt = malloc(sizeof(int32_t) * NQ * K);
    for (size_t q = 0; q < NQ; q++) {
        float best_d[K];
        int32_t best_i[K];
        size_t have = 0;
        for (size_t i = 0; i < N; i++) {
            float d2 = 0;
            for (size_t c = 0; c < D; c++) {
                float t = vp->queries[q * D + c] - vp->base[i * D + c];
                d2 += t * t;
            }
            if (have == K && d2 >= best_d[K - 1])
                continue;
            size_t at = have < K ? have++ : K - 1;
            while (at > 0 && best_d[at - 1] > d2) {
                best_d[at] = best_d[at - 1];
                best_i[at] = best_i[at - 1];
                at--;
            }
            best_d[at] = d2;
            best_i[at] = (int32_t)i;
        }
        memcpy(gt + q * K, best_i, sizeof best_i);
    }
    char path[1200];
    snprintf(path, sizeof path, "%s/queries.fvecs", dir);
    CHECK(vs_vecio_write_fvecs(path, NQ, D, vp->queries, err) == VS_OK);
    snprintf(path, sizeof path, "%s/gt.ivecs", dir);
    CHECK(vs_vecio_write_ivecs(path, NQ, K, gt, err) == VS_OK);
    free(gt);
    snprintf(path, sizeof path, "%s/base.fvecs", dir); /* for vecshard-gt, with ids row + 10^9 */
    CHECK(vs_vecio_write_fvecs(path, N, D, vp->base, err) == VS_OK);
    int64_t *own_ids = malloc(N * sizeof *own_ids);
    for (size_t i = 0; own_ids && i < N; i++)
        own_ids[i] = (int64_t)i + 1000000000;
    snprintf(path, sizeof path, "%s/ids.npy", dir);
    CHECK(own_ids && vs_vecio_write_npy(path, VS_DTYPE_I64, N, 1, own_ids, err) == VS_OK);
    free(own_ids);

    RUN(test_cluster);

    /* down stops everything (always run, also after a failure above), and a second down is a no-op */
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s/deploy/local/cluster.sh down --dir %s --timeout 10", src, cluster_dir);
    int64_t t0 = vs_test_now_ms();
    int rc = run(cmd, NULL);
    CHECKF(rc == 0, "cluster.sh down exited %d", rc);
    printf("  cluster.sh down took %lld ms\n", (long long)(vs_test_now_ms() - t0));
    CHECKF(all_gone(5000), "a process of the cluster is still running after down");
    CHECK(run(cmd, NULL) == 0);
    for (size_t i = 0; i < n_pids; i++) /* never leave one behind, whatever failed */
        if (pids[i] > 0 && kill(pids[i], 0) == 0)
            kill(pids[i], SIGKILL);
    reap();
    vs_test_version_fini(vp);
    if (vs_test_failures == 0) { /* keep the logs of a failed run */
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        CHECK(run(cmd, NULL) == 0);
    }
    return vs_test_finish();
}
