/* vecshard-bench-shard: what the shard's gRPC path adds to a search. Runs the same queries through
 * in-process search on an index file and through a vecshard-shard process serving that file on loopback
 * (started by this tool), one call at a time, and reports p50/p99 latency per call of each and the
 * difference, for each batch size. Encoding the request and decoding the response are inside the RPC
 * timing: that is what a client pays. Results as a table and JSON lines (docs/benchmarks.md). */
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/cli/timing.h"
#include "common/net/rpc.h"
#include "common/parallel.h"
#include "common/vecio.h"
#include "shard/index/index.h"
#include "common/cluster/manifest.h"
#include "vecshard/v1/shard.pb-c.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, size_t n, double p)
{
    qsort(v, n, sizeof *v, cmp_double);
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return v[i];
}

static void usage(FILE *f)
{
    fprintf(f, "usage: vecshard-bench-shard --index FILE --queries FILE [options]\n"
               "Latency of one search call in process and through vecshard-shard over loopback gRPC.\n"
               "  --index FILE      an index file (vs_index_save); served as version 'bench', partition 0\n"
               "  --queries FILE    .fvecs/.bvecs/.npy/idx queries\n"
               "  --k N             results per query (default 10)\n"
               "  --params S        search parameters, e.g. nprobe=16,k_factor=4 (FAISS names)\n"
               "  --batches LIST    queries per call, comma-separated (default 1,100)\n"
               "  --calls N         calls per batch size and path (default 2000, fewer for big batches)\n"
               "  --dataset NAME    label for the output\n"
               "  --shard-threads N gRPC worker threads of the shard (default: its default, one per core)\n"
               "  -h, --help        this help\n");
}

/* Threads the shard uses for a batch of nq when one call is in flight (shard.c's policy). */
static size_t shard_threads(size_t nq)
{
    if (nq < 32)
        return 1;
    size_t t = vs_parallel_cpus();
    return t > nq / 16 ? nq / 16 : t;
}

static pid_t start_shard(const char *self, const char *manifest, const char *dir, const char *threads,
                         int *port)
{
    char exe[PATH_MAX], pf[PATH_MAX + 16];
    const char *slash = strrchr(self, '/');
    snprintf(exe, sizeof exe, "%.*s/vecshard-shard", slash ? (int)(slash - self) : 1, slash ? self : ".");
    snprintf(pf, sizeof pf, "%s/ports", dir);
    unlink(pf);
    pid_t pid = fork();
    if (pid == 0) {
        execl(exe, exe, "--listen", "127.0.0.1:0", "--metrics-listen", "none", "--manifest", manifest,
              "--partition", "0", "--replica-id", "bench", "--port-file", pf, "--skip-crc",
              threads ? "--threads" : NULL, threads, (char *)NULL);
        perror(exe);
        _exit(127);
    }
    double t0 = vs_now_s();
    while (vs_now_s() - t0 < 120) {
        FILE *f = fopen(pf, "r");
        if (f) {
            int ok = fscanf(f, "grpc=%d", port) == 1;
            fclose(f);
            if (ok)
                return pid;
        }
        if (waitpid(pid, NULL, WNOHANG) == pid)
            return -1;
        usleep(20000);
    }
    kill(pid, SIGKILL);
    return -1;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"index", required_argument, 0, 'i'},   {"queries", required_argument, 0, 'q'},
        {"k", required_argument, 0, 'k'},       {"params", required_argument, 0, 'p'},
        {"batches", required_argument, 0, 'b'}, {"calls", required_argument, 0, 'c'},
        {"dataset", required_argument, 0, 'd'}, {"shard-threads", required_argument, 0, 't'},
        {"help", no_argument, 0, 'h'},          {0, 0, 0, 0}};
    const char *index_path = NULL, *qpath = NULL, *params_s = "", *batches = "1,100", *dataset = "";
    const char *shard_threads_s = NULL;
    long k = 10, calls = 2000;
    int o;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case 'i':
            index_path = optarg;
            break;
        case 'q':
            qpath = optarg;
            break;
        case 't':
            shard_threads_s = optarg;
            break;
        case 'k':
            k = strtol(optarg, NULL, 10);
            break;
        case 'p':
            params_s = optarg;
            break;
        case 'b':
            batches = optarg;
            break;
        case 'c':
            calls = strtol(optarg, NULL, 10);
            break;
        case 'd':
            dataset = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!index_path || !qpath || k < 1 || k > 10000 || calls < 10) {
        usage(stderr);
        return 2;
    }
    char err[VS_ERR_LEN];
    vs_search_params_t params;
    if (vs_search_params_parse(params_s, &params, err) != VS_OK) {
        fprintf(stderr, "vecshard-bench-shard: %s\n", err);
        return 2;
    }
    vs_parallel_blas_single();
    vs_index_t *idx;
    if (vs_index_load(index_path, &idx, err) != VS_OK) {
        fprintf(stderr, "vecshard-bench-shard: %s\n", err);
        return 1;
    }
    size_t nq;
    uint32_t dim;
    float *q;
    if (vs_vecfile_load_f32(qpath, &nq, &dim, &q, err) != VS_OK || dim != vs_index_dim(idx)) {
        fprintf(stderr, "vecshard-bench-shard: queries: %s\n",
                err[0] ? err : "dimension differs from the index");
        return 1;
    }

    /* a version directory holding the index (symlink) and its manifest */
    char dir[] = "/tmp/vecshard-bench-shard.XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    char link_path[PATH_MAX], man_path[PATH_MAX], abs_index[PATH_MAX];
    snprintf(link_path, sizeof link_path, "%s/part-0.vsidx", dir);
    snprintf(man_path, sizeof man_path, "%s/manifest.json", dir);
    if (!realpath(index_path, abs_index) || symlink(abs_index, link_path) != 0) {
        perror("symlink");
        return 1;
    }
    vs_manifest_partition_t mp = {.id = 0, .n_vectors = vs_index_count(idx)};
    snprintf(mp.file, sizeof mp.file, "part-0.vsidx");
    vs_manifest_t m = {.metric = vs_index_metric(idx), .dim = dim, .n_partitions = 1, .partitions = &mp};
    snprintf(m.version, sizeof m.version, "bench");
    snprintf(m.partitioning, sizeof m.partitioning, "hash");
    vs_factory_format(vs_index_spec(idx), m.factory, sizeof m.factory);
    if (vs_manifest_write(man_path, &m, err) != VS_OK) {
        fprintf(stderr, "vecshard-bench-shard: %s\n", err);
        return 1;
    }
    int port = 0;
    pid_t pid = start_shard(argv[0], man_path, dir, shard_threads_s, &port);
    if (pid < 0) {
        fprintf(stderr, "vecshard-bench-shard: vecshard-shard did not start\n");
        return 1;
    }
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", port);
    vs_rpc_channel_t *ch;
    if (vs_rpc_channel_create(target, 0, &ch, err) != VS_OK) {
        fprintf(stderr, "vecshard-bench-shard: %s\n", err);
        return 1;
    }
    /* wait for SERVING: a search with the active version succeeds */
    Vecshard__V1__SearchParams sp = VECSHARD__V1__SEARCH_PARAMS__INIT;
    sp.nprobe = params.nprobe;
    sp.ef_search = params.ef_search;
    sp.k_factor = params.k_factor;
    int rc = 0;
    {
        Vecshard__V1__ShardSearchRequest r = VECSHARD__V1__SHARD_SEARCH_REQUEST__INIT;
        r.dim = dim;
        r.queries = q;
        r.n_queries = dim;
        r.k = (uint32_t)k;
        uint8_t buf[65536];
        size_t len = dim * 4 + 64 <= sizeof buf ? vecshard__v1__shard_search_request__pack(&r, buf) : 0;
        int code = -1;
        double t0 = vs_now_s();
        while (len && code != 0 && vs_now_s() - t0 < 300) {
            uint8_t *body = NULL;
            size_t blen;
            char msg[VS_ERR_LEN];
            vs_rpc_call_unary(ch, "/vecshard.v1.Shard/Search", buf, len, 10000, &code, msg, &body, &blen);
            free(body);
            if (code != 0)
                usleep(50000);
        }
        if (code != 0) {
            fprintf(stderr, "vecshard-bench-shard: the shard never answered a search\n");
            kill(pid, SIGKILL);
            return 1;
        }
    }
    {
        /* the floor: an empty health check, same channel, same path through both stacks */
        double *t = malloc((size_t)calls * sizeof(double));
        static const uint8_t empty[1];
        for (long c = 0; c < calls; c++) {
            double t0 = vs_now_s();
            int code;
            char msg[VS_ERR_LEN];
            uint8_t *body = NULL;
            size_t blen;
            vs_rpc_call_unary(ch, "/grpc.health.v1.Health/Check", empty, 0, 10000, &code, msg, &body, &blen);
            free(body);
            t[c] = (vs_now_s() - t0) * 1e6;
        }
        double p50 = pct(t, (size_t)calls, 0.5), p99 = pct(t, (size_t)calls, 0.99);
        printf("gRPC floor (empty Health/Check on loopback): p50 %.1f us, p99 %.1f us\n", p50, p99);
        fprintf(
            stderr,
            "{\"dataset\":\"%s\",\"rpc\":\"health_check\",\"calls\":%ld,\"p50_us\":%.1f,\"p99_us\":%.1f}\n",
            dataset, calls, p50, p99);
        free(t);
    }
    printf("%-22s %6s %8s %12s %12s %12s %12s %12s %12s\n", "dataset", "batch", "calls", "inproc p50",
           "inproc p99", "rpc p50", "rpc p99", "added p50", "added p99");
    char *save = NULL, *bl = strdup(batches);
    for (char *tok = strtok_r(bl, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        size_t b = strtoul(tok, NULL, 10);
        if (b < 1 || b > nq)
            continue;
        size_t n_calls = (size_t)calls;
        if (b * n_calls > 200000)
            n_calls = 200000 / b < 50 ? 50 : 200000 / b;
        double *t_in = malloc(n_calls * sizeof(double)), *t_rpc = malloc(n_calls * sizeof(double));
        float *dist = malloc(b * (size_t)k * sizeof(float));
        int64_t *ids = malloc(b * (size_t)k * sizeof(int64_t));
        size_t threads = shard_threads(b);
        for (size_t pass = 0; pass < 2; pass++) { /* pass 0 warms up both paths */
            size_t n = pass ? n_calls : n_calls / 10 + 1;
            for (size_t c = 0; c < n; c++) {
                const float *qq = q + ((c * b) % (nq - b + 1)) * dim;
                double t0 = vs_now_s();
                vs_index_search(idx, b, qq, (size_t)k, &params, threads, dist, ids, err);
                double t1 = vs_now_s();
                Vecshard__V1__ShardSearchRequest r = VECSHARD__V1__SHARD_SEARCH_REQUEST__INIT;
                r.dim = dim;
                r.queries = (float *)qq;
                r.n_queries = b * dim;
                r.k = (uint32_t)k;
                r.params = &sp;
                size_t len = vecshard__v1__shard_search_request__get_packed_size(&r);
                uint8_t *buf = malloc(len), *body = NULL;
                vecshard__v1__shard_search_request__pack(&r, buf);
                size_t blen;
                int code;
                char msg[VS_ERR_LEN];
                vs_rpc_call_unary(ch, "/vecshard.v1.Shard/Search", buf, len, 10000, &code, msg, &body, &blen);
                Vecshard__V1__ShardSearchResponse *resp =
                    code == 0 ? vecshard__v1__shard_search_response__unpack(NULL, blen, body) : NULL;
                double t2 = vs_now_s();
                if (!resp || memcmp(resp->ids, ids, b * (size_t)k * sizeof(int64_t)) != 0) {
                    if (!rc)
                        fprintf(stderr, "vecshard-bench-shard: RPC answer differs or failed (%d %s)\n", code,
                                msg);
                    rc = 1;
                }
                if (resp)
                    vecshard__v1__shard_search_response__free_unpacked(resp, NULL);
                free(buf);
                free(body);
                if (pass) {
                    t_in[c] = (t1 - t0) * 1e6;
                    t_rpc[c] = (t2 - t1) * 1e6;
                }
            }
        }
        double ip50 = pct(t_in, n_calls, 0.5), ip99 = pct(t_in, n_calls, 0.99);
        double rp50 = pct(t_rpc, n_calls, 0.5), rp99 = pct(t_rpc, n_calls, 0.99);
        printf("%-22s %6zu %8zu %10.1fus %10.1fus %10.1fus %10.1fus %10.1fus %10.1fus\n", dataset, b, n_calls,
               ip50, ip99, rp50, rp99, rp50 - ip50, rp99 - ip99);
        fprintf(stderr,
                "{\"dataset\":\"%s\",\"batch\":%zu,\"calls\":%zu,\"k\":%ld,\"params\":\"%s\",\"threads\":%zu,"
                "\"inproc_p50_us\":%.1f,\"inproc_p99_us\":%.1f,\"rpc_p50_us\":%.1f,\"rpc_p99_us\":%.1f}\n",
                dataset, b, n_calls, k, params_s, threads, ip50, ip99, rp50, rp99);
        free(t_in);
        free(t_rpc);
        free(dist);
        free(ids);
    }
    free(bl);
    vs_rpc_channel_destroy(ch);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    unlink(link_path);
    unlink(man_path);
    char pf[PATH_MAX + 16];
    snprintf(pf, sizeof pf, "%s/ports", dir);
    unlink(pf);
    rmdir(dir);
    vs_index_destroy(idx);
    free(q);
    if (rc)
        fprintf(stderr, "vecshard-bench-shard: some RPC answers differed from in-process search\n");
    return rc;
}
