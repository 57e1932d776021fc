/* vecshard-bench: recall/QPS/latency of our indexes and, in the same run on the same data, of the
 * peers FAISS and hnswlib. Protocol of ann-benchmarks by default (one thread, one query per call);
 * --threads N --batch B measures batched throughput. Prints one JSON line per (index, search setting).
 *
 * Recall is computed here for every participant, from the ids each one returns, against the same
 * ground truth, so the figures are comparable by construction. Peers run as child processes on .npy
 * copies of exactly the data we search, and each calls its library's search from a compiled loop as we
 * do: vecshard-peer-faiss (tests/bench/peer_faiss.cpp, built when an installed FAISS is found) and
 * vecshard-peer-hnswlib. The FAISS script (tests/bench/peer_faiss.py, Debian python3-faiss) speaks the
 * same protocol; it is the peer "faiss-py", and "faiss" falls back to it when the compiled peer was not
 * built. Its per-call Python overhead is then part of FAISS's figures. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cJSON.h>

#include "common/cli/progress.h"
#include "common/cli/timing.h"
#include "common/topk.h"
#include "common/vecio.h"
#include "shard/index/index.h"

#define MAX_SETTINGS 256

typedef struct opts {
    const char *base, *queries, *gt, *dataset, *factory, *search, *peers, *metric_s, *peer_search,
        *peer_index, *peer_index_file, *save_index, *load_index;
    size_t k, threads, build_threads, batch, nq_limit, train_size, warmup;
    unsigned ef_construction, hnsw_m;
    int quiet, no_ours;
} opts_t;

typedef struct data {
    size_t n, nq, gt_k;
    uint32_t d;
    float *base, *q;
    int32_t *gt;
    vs_metric metric;
} data_t;

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: vecshard-bench --base FILE --queries FILE --gt FILE [--dataset NAME] [--k 10]\n"
        "                      --index \"FACTORY\" [--search \"nprobe=1,2,4,8\"] [--threads 1] [--batch 1]\n"
        "                      [--peers faiss,hnswlib]\n"
        "\n"
        "Measures recall, QPS and latency of a vecshard index and, in the same run and on the same data,\n"
        "of FAISS (same factory string) and hnswlib. One JSON line per setting:\n"
        "{\"dataset\",\"index\",\"params\",\"recall_at_10\",\"qps\",\"p50_us\",\"p99_us\",\"build_s\","
        "\"index_bytes\",\"threads\"} (ours also \"cpu_us_per_query\": process CPU time per query)\n"
        "\n"
        "  --base FILE        base vectors (.fvecs .bvecs .npy, Fashion-MNIST idx[.gz])\n"
        "  --queries FILE     query vectors\n"
        "  --gt FILE          ground truth .ivecs (from vecshard-gt), at least k per query\n"
        "  --dataset NAME     label for the output (default: base file name)\n"
        "  --k N              neighbours per query (default 10)\n"
        "  --index FACTORY    FAISS index_factory string: Flat, IVF1024,Flat, IVF1024,PQ32, ...\n"
        "  --search SWEEP     FAISS parameter names: \"nprobe=1,2,4\"; several joined by ';' sweep the "
        "product\n"
        "  --threads N        threads inside each search call (default 1)\n"
        "  --build-threads N  threads for train and add, ours and the peers' (default: --threads)\n"
        "  --batch B          queries per search call (default 1 = ann-benchmarks protocol)\n"
        "  --peers LIST       also run peers (comma-separated): faiss = vecshard-peer-faiss, FAISS called\n"
        "                     from a C++ loop (built when cmake is given -DVS_FAISS_ROOT=PREFIX, or\n"
        "                     -DVS_FAISS_SYSTEM=ON for libfaiss-dev; without it, faiss runs faiss-py);\n"
        "                     faiss-py = the Python script (Debian's python3-faiss; per-call Python\n"
        "                     overhead included); hnswlib\n"
        "  --peer-search S    hnswlib's sweep (default: --search, or efSearch=10..800 when --index is\n"
        "                     not HNSW), and FAISS's with --peer-index\n"
        "  --peer-index F     FAISS's factory string when it differs from ours (e.g. RaBitQ codes)\n"
        "  --peer-index-file F  each compiled peer's index cache, F.hnswlib or F.faiss: loaded when\n"
        "                     it exists (build_s is then the load time, as with --load-index), else\n"
        "                     built and saved there; F must name the data, metric and factory string\n"
        "                     (only the vector count, dimension and L2 against IP are checked)\n"
        "  --no-ours          run the peers only\n"
        "  --metric M         l2 (default), ip or cosine\n"
        "  --nq N             use only the first N queries\n"
        "  --train-size N     training sample for indexes that train (default: all base vectors)\n"
        "  --ef-construction N, --hnsw-m N   HNSW build parameters (default 200, 32): efConstruction for\n"
        "                     ours and the peers; M for hnswlib when --index is not HNSW{M}\n"
        "  --warmup N         untimed queries before each setting (default 100)\n"
        "  --save-index FILE  save our index after building it (IVF)\n"
        "  --load-index FILE  load our index (mmap) instead of building it; build_s is then the load time\n"
        "  --quiet            no progress lines\n"
        "  -h, --help         this help\n");
}

static void die(const char *what, const char *err)
{
    fprintf(stderr, "vecshard-bench: %s%s%s\n", what, err ? ": " : "", err ? err : "");
    exit(1);
}

/* ---- data --------------------------------------------------------------------------------------- */

static void load_data(const opts_t *o, data_t *D)
{
    char err[VS_ERR_LEN];
    size_t nq, ngt;
    uint32_t dq, gk;
    if (vs_metric_parse(o->metric_s, &D->metric, err) != VS_OK)
        die("--metric", err);
    if (vs_vecfile_load_f32(o->base, &D->n, &D->d, &D->base, err) != VS_OK)
        die("base", err);
    if (vs_vecfile_load_f32(o->queries, &nq, &dq, &D->q, err) != VS_OK)
        die("queries", err);
    if (vs_vecfile_load_i32(o->gt, &ngt, &gk, &D->gt, err) != VS_OK)
        die("ground truth", err);
    if (dq != D->d) {
        snprintf(err, sizeof err, "base has dim %u, queries %u", D->d, dq);
        die("data", err);
    }
    if (ngt < nq) {
        snprintf(err, sizeof err, "%s has %zu rows for %zu queries", o->gt, ngt, nq);
        die("ground truth", err);
    }
    if (gk < o->k) {
        snprintf(err, sizeof err, "%s has %u neighbours per query, --k is %zu", o->gt, gk, o->k);
        die("ground truth", err);
    }
    D->nq = o->nq_limit && o->nq_limit < nq ? o->nq_limit : nq;
    D->gt_k = gk;
}

/* Mean over queries of |ids[:at] & gt[:at]| / at; ids row stride k, gt row stride gt_k. */
static double recall_at(const data_t *D, const int64_t *ids, size_t k, size_t at)
{
    double sum = 0.0;
    for (size_t i = 0; i < D->nq; i++) {
        const int32_t *g = D->gt + i * D->gt_k;
        size_t hit = 0;
        for (size_t a = 0; a < at; a++)
            for (size_t b = 0; b < at; b++)
                if (ids[i * k + a] == g[b] && ids[i * k + a] >= 0) {
                    hit++;
                    break;
                }
        sum += (double)hit / (double)at;
    }
    return sum / (double)D->nq;
}

/* ---- settings ----------------------------------------------------------------------------------- */

/* Expands "nprobe=1,2;k_factor=1,4" into "nprobe=1,k_factor=1", "nprobe=1,k_factor=4", ... */
static size_t expand_sweep(const char *sweep, char out[][128], size_t max)
{
    if (sweep == NULL || sweep[0] == '\0') {
        out[0][0] = '\0';
        return 1;
    }
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", sweep);
    size_t n = 1;
    out[0][0] = '\0';
    char *save1;
    for (char *group = strtok_r(buf, ";", &save1); group; group = strtok_r(NULL, ";", &save1)) {
        char *eq = strchr(group, '=');
        if (eq == NULL)
            die("--search", "each parameter must be name=v1,v2,...");
        *eq = '\0';
        const char *name = group;
        char vals[512];
        snprintf(vals, sizeof vals, "%s", eq + 1);
        char prev[MAX_SETTINGS][128];
        size_t np = n;
        memcpy(prev, out, np * sizeof prev[0]);
        n = 0;
        for (size_t p = 0; p < np; p++) {
            char vcopy[512];
            snprintf(vcopy, sizeof vcopy, "%s", vals);
            char *save2;
            for (char *v = strtok_r(vcopy, ",", &save2); v; v = strtok_r(NULL, ",", &save2)) {
                if (n >= max)
                    die("--search", "too many settings");
                int len = snprintf(NULL, 0, "%s%s%s=%s", prev[p], prev[p][0] ? "," : "", name, v);
                if (len < 0 || len >= 128)
                    die("--search", "a setting is longer than 127 characters");
                memcpy(out[n], prev[p], strlen(prev[p]) + 1);
                size_t at = strlen(out[n]);
                snprintf(out[n] + at, 128 - at, "%s%s=%s", at ? "," : "", name, v);
                n++;
            }
        }
    }
    return n;
}

/* ---- our index ---------------------------------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static double pct_us(uint64_t *lat, size_t n, double p)
{
    if (n == 0)
        return 0.0;
    size_t i = (size_t)ceil(p * (double)n) - 1;
    if (i >= n)
        i = n - 1;
    return (double)lat[i] / 1e3;
}

static void emit(cJSON *line)
{
    char *s = cJSON_PrintUnformatted(line);
    printf("%s\n", s);
    fflush(stdout);
    free(s);
    cJSON_Delete(line);
}

static cJSON *result_line(const opts_t *o, const data_t *D, const char *index, const char *params,
                          const int64_t *ids, size_t k, double qps, double p50, double p99, double build_s,
                          double index_bytes, size_t threads, size_t batch)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "dataset", o->dataset);
    cJSON_AddStringToObject(j, "index", index);
    cJSON_AddStringToObject(j, "params", params);
    if (k >= 10)
        cJSON_AddNumberToObject(j, "recall_at_10", round(recall_at(D, ids, k, 10) * 1e4) / 1e4);
    else
        cJSON_AddNullToObject(j, "recall_at_10");
    cJSON_AddNumberToObject(j, "qps", round(qps * 10) / 10);
    cJSON_AddNumberToObject(j, "p50_us", round(p50 * 10) / 10);
    cJSON_AddNumberToObject(j, "p99_us", round(p99 * 10) / 10);
    cJSON_AddNumberToObject(j, "build_s", round(build_s * 1000) / 1000);
    cJSON_AddNumberToObject(j, "index_bytes", index_bytes);
    cJSON_AddNumberToObject(j, "threads", (double)threads);
    cJSON_AddNumberToObject(j, "batch", (double)batch);
    cJSON_AddNumberToObject(j, "k", (double)k);
    cJSON_AddNumberToObject(j, "recall_at_k", round(recall_at(D, ids, k, k) * 1e4) / 1e4);
    cJSON_AddNumberToObject(j, "nq", (double)D->nq);
    cJSON_AddNumberToObject(j, "n_base", (double)D->n);
    return j;
}

/* CPU seconds used by this process so far (every thread). */
static double process_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void run_ours(const opts_t *o, const data_t *D)
{
    char err[VS_ERR_LEN];
    vs_index_t *idx;
    double t0 = vs_now_s();
    if (o->load_index) {
        if (vs_index_load(o->load_index, &idx, err) != VS_OK)
            die("--load-index", err);
        if (vs_index_dim(idx) != D->d || vs_index_metric(idx) != D->metric || vs_index_count(idx) != D->n)
            die("--load-index", "the index does not match --base and --metric (dim, metric or count)");
        char f[64];
        vs_factory_format(vs_index_spec(idx), f, sizeof f);
        if (strcmp(f, o->factory) != 0)
            die("--load-index", "the file holds a different index than --index says");
    } else {
        if (vs_index_create(D->d, D->metric, o->factory, &idx, err) != VS_OK)
            die("--index", err);
        if (vs_index_spec(idx)->type == VS_INDEX_HNSW &&
            vs_index_set_build_params(idx, o->ef_construction, 42, err) != VS_OK)
            die("--ef-construction", err);
        if (vs_index_needs_training(idx)) {
            size_t nt = o->train_size && o->train_size < D->n ? o->train_size : D->n;
            vs_progress_t p;
            vs_progress_start(&p, "train", o->quiet);
            vs_progress_cb_t cb = {vs_progress_report, &p};
            if (vs_index_train(idx, nt, D->base, o->build_threads, &cb, err) != VS_OK)
                die("train", err);
            vs_progress_finish(&p, nt);
        }
        vs_progress_t p;
        vs_progress_start(&p, "add", o->quiet);
        vs_progress_cb_t cb = {vs_progress_report, &p};
        if (vs_index_add(idx, D->n, D->base, NULL, o->build_threads, &cb, err) != VS_OK)
            die("add", err);
        vs_progress_finish(&p, D->n);
    }
    double build_s = vs_now_s() - t0;
    if (o->save_index && vs_index_save(idx, o->save_index, "", (uint64_t)time(NULL), err) != VS_OK)
        die("--save-index", err);

    static char settings[MAX_SETTINGS][128];
    size_t ns = expand_sweep(o->search, settings, MAX_SETTINGS);
    const size_t k = o->k, B = o->batch;
    float *dist = malloc(D->nq * k * sizeof(float));
    int64_t *ids = malloc(D->nq * k * sizeof(int64_t));
    size_t n_calls = (D->nq + B - 1) / B;
    uint64_t *lat = malloc(n_calls * sizeof(uint64_t));
    if (dist == NULL || ids == NULL || lat == NULL)
        die("out of memory", NULL);
    for (size_t s = 0; s < ns; s++) {
        vs_search_params_t sp;
        if (vs_search_params_parse(settings[s], &sp, err) != VS_OK)
            die("--search", err);
        size_t nw = o->warmup < D->nq ? o->warmup : D->nq;
        for (size_t i = 0; i < nw; i += B) {
            size_t m = nw - i < B ? nw - i : B;
            if (vs_index_search(idx, m, D->q + i * D->d, k, &sp, o->threads, dist, ids, err) != VS_OK)
                die("search", err);
        }
        uint64_t start = vs_now_ns();
        const double cpu0 = process_cpu_s();
        for (size_t c = 0; c < n_calls; c++) {
            size_t i = c * B, m = D->nq - i < B ? D->nq - i : B;
            uint64_t a = vs_now_ns();
            if (vs_index_search(idx, m, D->q + i * D->d, k, &sp, o->threads, dist + i * k, ids + i * k,
                                err) != VS_OK)
                die("search", err);
            lat[c] = vs_now_ns() - a;
        }
        double total_s = (double)(vs_now_ns() - start) * 1e-9;
        const double cpu_s = process_cpu_s() - cpu0;
        qsort(lat, n_calls, sizeof *lat, cmp_u64);
        cJSON *line = result_line(o, D, o->factory, settings[s], ids, k, (double)D->nq / total_s,
                                  pct_us(lat, n_calls, 0.5), pct_us(lat, n_calls, 0.99), build_s,
                                  (double)vs_index_memory_bytes(idx), o->threads, B);
        /* CPU time of the process per query over the timed pass (all threads): QPS per core is 1e6 / it */
        cJSON_AddNumberToObject(line, "cpu_us_per_query", round(cpu_s * 1e7 / (double)D->nq) / 10);
        emit(line);
    }
    free(dist);
    free(ids);
    free(lat);
    vs_index_destroy(idx);
}

/* ---- peers -------------------------------------------------------------------------------------- */

static void exe_dir(char *buf, size_t n)
{
    const char *env = getenv("VS_PEER_DIR");
    if (env != NULL) {
        snprintf(buf, n, "%s", env);
        return;
    }
    ssize_t len = readlink("/proc/self/exe", buf, n - 1);
    if (len <= 0) {
        snprintf(buf, n, ".");
        return;
    }
    buf[len] = '\0';
    char *slash = strrchr(buf, '/');
    if (slash)
        *slash = '\0';
}

/* Runs argv with stdout captured; feeds each line to the caller. Returns the exit status. */
static int run_child(char *const argv[], void (*on_line)(const char *line, void *ctx), void *ctx)
{
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]);
        close(fds[1]);
        execvp(argv[0], argv);
        fprintf(stderr, "vecshard-bench: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(fds[1]);
    FILE *f = fdopen(fds[0], "r");
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0)
        on_line(line, ctx);
    free(line);
    fclose(f);
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

typedef struct peer_ctx {
    const opts_t *o;
    const data_t *D;
    int lines, errors;
} peer_ctx_t;

static double num(const cJSON *j, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static const char *str(const cJSON *j, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void on_peer_line(const char *line, void *arg)
{
    peer_ctx_t *c = arg;
    cJSON *j = cJSON_Parse(line);
    const char *index = j ? str(j, "index") : NULL, *params = j ? str(j, "params") : NULL;
    const char *ids_file = j ? str(j, "ids_file") : NULL;
    if (index == NULL || params == NULL || ids_file == NULL) {
        fprintf(stderr, "vecshard-bench: unexpected peer output: %s", line);
        c->errors++;
        cJSON_Delete(j);
        return;
    }
    char err[VS_ERR_LEN];
    size_t n;
    uint32_t k;
    int32_t *ids32;
    if (vs_vecfile_load_i32(ids_file, &n, &k, &ids32, err) != VS_OK || n != c->D->nq || k != c->o->k) {
        fprintf(stderr, "vecshard-bench: peer result %s: %s\n", ids_file,
                n != c->D->nq ? "wrong shape" : err);
        c->errors++;
        cJSON_Delete(j);
        return;
    }
    int64_t *ids = malloc(n * k * sizeof(int64_t));
    for (size_t i = 0; i < n * k; i++)
        ids[i] = ids32[i];
    emit(result_line(c->o, c->D, index, params, ids, k, num(j, "qps"), num(j, "p50_us"), num(j, "p99_us"),
                     num(j, "build_s"), num(j, "index_bytes"), (size_t)num(j, "threads"),
                     (size_t)num(j, "batch")));
    c->lines++;
    unlink(ids_file);
    free(ids);
    free(ids32);
    cJSON_Delete(j);
}

static int run_peer(const opts_t *o, const data_t *D, const char *peer, const char *tmp, const char *bpath,
                    const char *qpath)
{
    char dir[PATH_MAX], prog[PATH_MAX + 64], k[32], th[32], bth[32], ba[32], efc[32], hm[32];
    exe_dir(dir, sizeof dir);
    snprintf(k, sizeof k, "%zu", o->k);
    snprintf(th, sizeof th, "%zu", o->threads);
    snprintf(bth, sizeof bth, "%zu", o->build_threads);
    snprintf(ba, sizeof ba, "%zu", o->batch);
    snprintf(efc, sizeof efc, "%u", o->ef_construction);
    snprintf(hm, sizeof hm, "%u", o->hnsw_m);
    const char *search = o->search ? o->search : "";
    char *argv[40];
    int a = 0, script = 0; /* script: the FAISS peer is the Python script (no index cache) */
    if (strcmp(peer, "faiss") == 0 || strcmp(peer, "faiss-py") == 0) {
        /* "faiss": the compiled peer when the build made it; "faiss-py" (or no compiled peer): the
         * script, which speaks the same protocol. */
        snprintf(prog, sizeof prog, "%s/vecshard-peer-faiss", dir);
        if (strcmp(peer, "faiss") == 0 && access(prog, X_OK) == 0) {
            argv[a++] = prog;
        } else {
            if (strcmp(peer, "faiss") == 0)
                fprintf(stderr,
                        "vecshard-bench: %s not built (no FAISS found by cmake): timing FAISS "
                        "from the Python script\n",
                        prog);
            snprintf(prog, sizeof prog, "%s/vecshard-peer-faiss.py", dir);
            argv[a++] = "/usr/bin/python3";
            argv[a++] = prog;
            script = 1;
        }
        if (o->peer_search && o->peer_index) /* FAISS's own sweep goes with its own factory string */
            search = o->peer_search;
    } else if (strcmp(peer, "hnswlib") == 0) {
        snprintf(prog, sizeof prog, "%s/vecshard-peer-hnswlib", dir);
        argv[a++] = prog;
        if (o->peer_search)
            search = o->peer_search;
    } else {
        fprintf(stderr, "vecshard-bench: unknown peer '%s' (known: faiss, faiss-py, hnswlib)\n", peer);
        return 1;
    }
    if (access(prog, R_OK) != 0) {
        fprintf(stderr, "vecshard-bench: peer %s is not available: %s is missing (%s)\n", peer, prog,
                strcmp(peer, "hnswlib") != 0 ? "rebuild; the script is copied at configure time"
                                             : "install libhnswlib-dev and rebuild");
        return 1;
    }
    const char *metric = vs_metric_name(D->metric);
    const char *index = o->peer_index && strcmp(peer, "hnswlib") != 0 ? o->peer_index : o->factory;
    const char *rest[] = {
        "--base",    bpath, "--queries",         qpath,  "--k",       k,  "--metric",        metric,
        "--index",   index, "--search",          search, "--threads", th, "--batch",         ba,
        "--out-dir", tmp,   "--ef-construction", efc,    "--hnsw-m",  hm, "--build-threads", bth};
    for (size_t i = 0; i < sizeof rest / sizeof *rest; i++)
        argv[a++] = (char *)rest[i];
    char ifile[PATH_MAX + 64];
    if (o->peer_index_file && script) {
        fprintf(stderr, "vecshard-bench: --peer-index-file: the FAISS script builds its index every time\n");
    } else if (o->peer_index_file) {
        snprintf(ifile, sizeof ifile, "%s.%s", o->peer_index_file,
                 strcmp(peer, "hnswlib") == 0 ? "hnswlib" : "faiss");
        argv[a++] = "--index-file";
        argv[a++] = ifile;
    }
    argv[a] = NULL;
    peer_ctx_t c = {o, D, 0, 0};
    int rc = run_child(argv, on_peer_line, &c);
    if (rc != 0 || c.errors || c.lines == 0) {
        fprintf(stderr, "vecshard-bench: peer %s failed (exit %d, %d results)\n", peer, rc, c.lines);
        return 1;
    }
    return 0;
}

static int run_peers(const opts_t *o, const data_t *D)
{
    char err[VS_ERR_LEN], tmp[PATH_MAX], bpath[PATH_MAX + 16], qpath[PATH_MAX + 16];
    const char *tdir = getenv("TMPDIR");
    snprintf(tmp, sizeof tmp, "%s/vecshard-bench.XXXXXX", tdir && *tdir ? tdir : "/tmp");
    if (mkdtemp(tmp) == NULL)
        die("mkdtemp", strerror(errno));
    snprintf(bpath, sizeof bpath, "%s/base.npy", tmp);
    snprintf(qpath, sizeof qpath, "%s/queries.npy", tmp);
    if (vs_vecio_write_npy(bpath, VS_DTYPE_F32, D->n, D->d, D->base, err) != VS_OK ||
        vs_vecio_write_npy(qpath, VS_DTYPE_F32, D->nq, D->d, D->q, err) != VS_OK)
        die("writing peer data", err);
    int failures = 0;
    char list[256];
    snprintf(list, sizeof list, "%s", o->peers);
    char *save;
    for (char *p = strtok_r(list, ",", &save); p; p = strtok_r(NULL, ",", &save))
        failures += run_peer(o, D, p, tmp, bpath, qpath);
    unlink(bpath);
    unlink(qpath);
    rmdir(tmp);
    return failures;
}

int main(int argc, char **argv)
{
    opts_t o = {.k = 10,
                .threads = 1,
                .batch = 1,
                .metric_s = "l2",
                .warmup = 100,
                .ef_construction = 200,
                .hnsw_m = 32};
    static const struct option lo[] = {
        {"base", required_argument, 0, 'b'},
        {"queries", required_argument, 0, 'q'},
        {"gt", required_argument, 0, 'g'},
        {"dataset", required_argument, 0, 'n'},
        {"k", required_argument, 0, 'k'},
        {"index", required_argument, 0, 'i'},
        {"search", required_argument, 0, 's'},
        {"threads", required_argument, 0, 't'},
        {"build-threads", required_argument, 0, 'U'},
        {"batch", required_argument, 0, 'B'},
        {"peers", required_argument, 0, 'p'},
        {"metric", required_argument, 0, 'm'},
        {"nq", required_argument, 0, 'N'},
        {"train-size", required_argument, 0, 'T'},
        {"warmup", required_argument, 0, 'W'},
        {"ef-construction", required_argument, 0, 'E'},
        {"hnsw-m", required_argument, 0, 'M'},
        {"peer-search", required_argument, 0, 'P'},
        {"peer-index", required_argument, 0, 'I'},
        {"peer-index-file", required_argument, 0, 'F'},
        {"no-ours", no_argument, 0, 'O'},
        {"quiet", no_argument, 0, 'Q'},
        {"save-index", required_argument, 0, 'S'},
        {"load-index", required_argument, 0, 'L'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case 'b':
            o.base = optarg;
            break;
        case 'q':
            o.queries = optarg;
            break;
        case 'g':
            o.gt = optarg;
            break;
        case 'n':
            o.dataset = optarg;
            break;
        case 'k':
            o.k = strtoul(optarg, NULL, 10);
            break;
        case 'i':
            o.factory = optarg;
            break;
        case 's':
            o.search = optarg;
            break;
        case 't':
            o.threads = strtoul(optarg, NULL, 10);
            break;
        case 'U':
            o.build_threads = strtoul(optarg, NULL, 10);
            break;
        case 'B':
            o.batch = strtoul(optarg, NULL, 10);
            break;
        case 'p':
            o.peers = optarg;
            break;
        case 'm':
            o.metric_s = optarg;
            break;
        case 'N':
            o.nq_limit = strtoul(optarg, NULL, 10);
            break;
        case 'T':
            o.train_size = strtoul(optarg, NULL, 10);
            break;
        case 'W':
            o.warmup = strtoul(optarg, NULL, 10);
            break;
        case 'E':
            o.ef_construction = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'M':
            o.hnsw_m = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'P':
            o.peer_search = optarg;
            break;
        case 'I':
            o.peer_index = optarg;
            break;
        case 'F':
            o.peer_index_file = optarg;
            break;
        case 'O':
            o.no_ours = 1;
            break;
        case 'Q':
            o.quiet = 1;
            break;
        case 'S':
            o.save_index = optarg;
            break;
        case 'L':
            o.load_index = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!o.base || !o.queries || !o.gt || !o.factory || optind != argc) {
        usage(stderr);
        return 2;
    }
    if (o.k == 0 || o.k > VS_TOPK_MAX_K || o.batch == 0 || o.threads == 0) {
        fprintf(stderr, "vecshard-bench: --k must be in 1..%u, --batch and --threads at least 1\n",
                VS_TOPK_MAX_K);
        return 2;
    }
    if (o.build_threads == 0)
        o.build_threads = o.threads;
    if (o.dataset == NULL) {
        const char *slash = strrchr(o.base, '/');
        o.dataset = slash ? slash + 1 : o.base;
    }
    data_t D = {0};
    load_data(&o, &D);
    if (!o.quiet)
        fprintf(stderr, "vecshard-bench: %s: %zu base x %u, %zu queries, k=%zu, %s, threads=%zu batch=%zu\n",
                o.dataset, D.n, D.d, D.nq, o.k, vs_metric_name(D.metric), o.threads, o.batch);
    if (!o.no_ours)
        run_ours(&o, &D);
    int failures = o.peers ? run_peers(&o, &D) : 0;
    free(D.base);
    free(D.q);
    free(D.gt);
    return failures ? 1 : 0;
}
