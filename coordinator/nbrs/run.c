/* run.c: see run.h. One thread drives the run: read a block of queries, search it (the searcher uses every
 * core), encode and write it to Redis in pipelined chunks, record the progress; then switch and expire. */
#include <getopt.h>
#include <pthread.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cli/flags.h"
#include "common/cli/progress.h"
#include "common/cli/secret.h"
#include "common/cli/timing.h"
#include "common/crc32c.h"
#include "common/hash.h"
#include "common/topk.h"
#include "common/vecio.h"
#include "coordinator/nbrs/remote.h"
#include "coordinator/nbrs/run.h"
#include "coordinator/nbrs/searcher.h"
#include "coordinator/nbrs/store.h"

void vs_nbrs_opts_init(vs_nbrs_opts_t *o)
{
    *o = (vs_nbrs_opts_t){.redis = "127.0.0.1:6379",
                          .prefix = "vs:nbrs",
                          .k = 100,
                          .keep = 2,
                          .block = 4096,
                          .timeout_ms = 30000,
                          .concurrency = 4,
                          .call_queries = 256,
                          .format = VS_NBRS_BINARY};
}

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: vecshard batch (--manifest PATH | --coordinator ADDR) --queries FILE [--keys FILE] "
        "[options]\n"
        "       vecshard batch --drop SET [--force] [--redis HOST:PORT] [--prefix P]\n"
        "Offline batch neighbours: every query's top-K from an index version, written into Redis as\n"
        "`<prefix>/<set>:<key>` -> ids and scores; when all are written, one atomic script makes the set\n"
        "current (`<prefix>:#current`) and the sets beyond the newest --keep are deleted. Resumable: rerun\n"
        "the same command after a crash. Read protocol: docs/protocol.md, \"Batch neighbours in Redis\".\n"
        "\n"
        "  --manifest PATH      the version's manifest.json: its partition files are searched in process "
        "(the\n"
        "                       version as built, multi-query kernels on --threads cores)\n"
        "  --coordinator ADDR   or search through a running cluster's coordinator (fresh writes included)\n"
        "  --index-version V    with --coordinator: the version to search (default: the active one); every\n"
        "                       call is pinned to it and asks for full coverage\n"
        "  --concurrency N      with --coordinator: Search calls in flight (default 4)\n"
        "  --call-queries N     with --coordinator: queries per Search call (default 256)\n"
        "  --queries FILE       query embeddings, .fvecs or .npy float32 (n x dim)\n"
        "  --keys FILE          one key per query: text (one per line) or .npy int64/int32; default: the\n"
        "                       row numbers 0..n-1. Keys must be distinct, 1..%u bytes\n"
        "  --k N                neighbours per key (default 100, max %d)\n"
        "  --params S           search parameters, FAISS names (nprobe=32,k_factor=4,efSearch=128);\n"
        "                       default: the version's tuned defaults\n"
        "  --redis HOST:PORT    Redis (default 127.0.0.1:6379); password from $VECSHARD_REDIS_PASSWORD_FILE\n"
        "                       (a file) or $VECSHARD_REDIS_PASSWORD; TLS when $VECSHARD_REDIS_CA is set\n"
        "                       (client certificate: $VECSHARD_REDIS_CERT, $VECSHARD_REDIS_KEY)\n"
        "  --redis-user USER    ACL user for AUTH (default $VECSHARD_REDIS_USER, else the default user)\n"
        "  --prefix P           key prefix (default vs:nbrs; [A-Za-z0-9._:-])\n"
        "  --set NAME           result set name (default <version>.<8 hex digits of the run's fingerprint>)\n"
        "  --format F           binary (default; 16 + 12 bytes per neighbour) or json\n"
        "  --keep N             completed sets kept, the current one included (default 2)\n"
        "  --block N            queries per block: search call and recorded progress (default 4096)\n"
        "  --threads N          search threads (default 0 = all CPUs)\n"
        "  --timeout-ms N       bound on every Redis connect, read and write, and on every Search call\n"
        "                       (default 30000)\n"
        "  --drop SET           delete a set that is not current and exit; a set still being written (or\n"
        "                       abandoned) needs --force too\n"
        "  --json               print the summary as one JSON object\n"
        "  --quiet              no progress line\n"
        "Exit status: 0 done, 1 failed (the current set is unchanged unless the run completed), 2 usage.\n",
        VS_NBRS_MAX_KEY, VS_TOPK_MAX_K);
}

int vs_nbrs_parse_args(int argc, char **argv, vs_nbrs_opts_t *o)
{
    enum {
        O_MANIFEST = 256,
        O_QUERIES,
        O_KEYS,
        O_K,
        O_PARAMS,
        O_REDIS,
        O_USER,
        O_PREFIX,
        O_SET,
        O_FORMAT,
        O_KEEP,
        O_BLOCK,
        O_THREADS,
        O_TIMEOUT,
        O_DROP,
        O_JSON,
        O_QUIET,
        O_HELP,
        O_COORD,
        O_IVERSION,
        O_CONC,
        O_CALLQ,
        O_FORCE
    };
    static const struct option opts[] = {{"manifest", 1, 0, O_MANIFEST}, {"queries", 1, 0, O_QUERIES},
                                         {"keys", 1, 0, O_KEYS},         {"k", 1, 0, O_K},
                                         {"params", 1, 0, O_PARAMS},     {"redis", 1, 0, O_REDIS},
                                         {"redis-user", 1, 0, O_USER},   {"prefix", 1, 0, O_PREFIX},
                                         {"set", 1, 0, O_SET},           {"format", 1, 0, O_FORMAT},
                                         {"keep", 1, 0, O_KEEP},         {"block", 1, 0, O_BLOCK},
                                         {"threads", 1, 0, O_THREADS},   {"timeout-ms", 1, 0, O_TIMEOUT},
                                         {"drop", 1, 0, O_DROP},         {"json", 0, 0, O_JSON},
                                         {"quiet", 0, 0, O_QUIET},       {"help", 0, 0, O_HELP},
                                         {"coordinator", 1, 0, O_COORD}, {"index-version", 1, 0, O_IVERSION},
                                         {"concurrency", 1, 0, O_CONC},  {"call-queries", 1, 0, O_CALLQ},
                                         {"force", 0, 0, O_FORCE},       {0, 0, 0, 0}};
    char err[VS_ERR_LEN] = "";
    long long v;
    optind = 1;
    opterr = 0;
    if (vs_cli_exact_long_options(argc, argv, opts, err) != 0) {
        fprintf(stderr, "vecshard batch: %s\n", err);
        return 2;
    }
    for (int c; (c = getopt_long(argc, argv, "h", opts, NULL)) != -1;) {
        vs_status st = VS_OK;
        switch (c) {
        case O_MANIFEST:
            o->manifest = optarg;
            break;
        case O_QUERIES:
            o->queries = optarg;
            break;
        case O_COORD:
            o->coordinator = optarg;
            break;
        case O_FORCE:
            o->force = 1;
            break;
        case O_IVERSION:
            o->index_version = optarg;
            break;
        case O_CONC:
            if ((st = vs_cli_parse_int("--concurrency", optarg, 1, 256, &v, err)) == VS_OK)
                o->concurrency = (size_t)v;
            break;
        case O_CALLQ:
            if ((st = vs_cli_parse_int("--call-queries", optarg, 1, 10000, &v, err)) == VS_OK)
                o->call_queries = (size_t)v;
            break;
        case O_KEYS:
            o->keys = optarg;
            break;
        case O_K:
            if ((st = vs_cli_parse_int("--k", optarg, 1, VS_TOPK_MAX_K, &v, err)) == VS_OK)
                o->k = (size_t)v;
            break;
        case O_PARAMS:
            st = vs_search_params_parse(optarg, &o->params, err);
            break;
        case O_REDIS:
            o->redis = optarg;
            break;
        case O_USER:
            o->redis_user = optarg;
            break;
        case O_PREFIX:
            o->prefix = optarg;
            break;
        case O_SET:
            o->set = optarg;
            break;
        case O_FORMAT:
            if (strcmp(optarg, "binary") == 0)
                o->format = VS_NBRS_BINARY;
            else if (strcmp(optarg, "json") == 0)
                o->format = VS_NBRS_JSON;
            else
                st = vs_errf(err, VS_ERR_INVALID_ARGUMENT, "--format '%s' must be binary or json", optarg);
            break;
        case O_KEEP:
            if ((st = vs_cli_parse_int("--keep", optarg, 1, 1000, &v, err)) == VS_OK)
                o->keep = (size_t)v;
            break;
        case O_BLOCK:
            if ((st = vs_cli_parse_int("--block", optarg, 1, 1 << 20, &v, err)) == VS_OK)
                o->block = (size_t)v;
            break;
        case O_THREADS:
            if ((st = vs_cli_parse_int("--threads", optarg, 0, 4096, &v, err)) == VS_OK)
                o->threads = (size_t)v;
            break;
        case O_TIMEOUT:
            if ((st = vs_cli_parse_int("--timeout-ms", optarg, 1, 3600000, &v, err)) == VS_OK)
                o->timeout_ms = (int)v;
            break;
        case O_DROP:
            o->drop = optarg;
            break;
        case O_JSON:
            o->json = 1;
            break;
        case O_QUIET:
            o->quiet = 1;
            break;
        case 'h':
        case O_HELP:
            usage(stdout);
            return 1;
        default:
            fprintf(stderr, "vecshard batch: unknown or incomplete option '%s'\n", argv[optind - 1]);
            usage(stderr);
            return 2;
        }
        if (st != VS_OK) {
            fprintf(stderr, "vecshard batch: %s\n", err);
            return 2;
        }
    }
    const char *bad = NULL;
    if (optind < argc)
        bad = "unexpected argument";
    else if (!vs_nbrs_prefix_valid(o->prefix))
        bad = "--prefix must be 1..128 bytes of [A-Za-z0-9._:-]";
    else if (o->set && !vs_nbrs_set_name_valid(o->set))
        bad = "--set must be 1..64 bytes of [A-Za-z0-9._-]";
    else if (o->drop && !vs_nbrs_set_name_valid(o->drop))
        bad = "--drop must name a set (1..64 bytes of [A-Za-z0-9._-])";
    else if (!o->drop && !o->queries)
        bad = "--queries is required";
    else if (!o->drop && !o->manifest == !o->coordinator)
        bad =
            "name the version's --manifest (in process) or a --coordinator (through a cluster), one of them";
    else if (o->index_version && !o->coordinator)
        bad = "--index-version goes with --coordinator (a manifest names its version)";
    if (bad) {
        fprintf(stderr, "vecshard batch: %s\n", bad);
        usage(stderr);
        return 2;
    }
    const char *stop = getenv("VS_NBRS_TEST_STOP_AFTER");
    if (stop && *stop)
        o->stop_after_blocks = (size_t)strtoull(stop, NULL, 10);
    return 0;
}

/* ---- keys ---- */

typedef struct keys {
    size_t n;
    char *bytes;       /* all keys, each NUL-terminated (owned) */
    size_t *off, *len; /* n each (owned) */
    uint64_t crc;      /* of the file's bytes; 0 = row numbers */
    uint64_t size;
} keys_t;

static void keys_fini(keys_t *k)
{
    free(k->bytes);
    free(k->off);
    free(k->len);
}

static vs_status keys_alloc(keys_t *k, size_t n, size_t bytes, char *err)
{
    k->n = n;
    k->bytes = malloc(bytes ? bytes : 1);
    k->off = malloc((n ? n : 1) * sizeof *k->off);
    k->len = malloc((n ? n : 1) * sizeof *k->len);
    if (!k->bytes || !k->off || !k->len)
        return vs_errf(err, VS_ERR_NOMEM, "batch: out of memory for %zu keys", n);
    return VS_OK;
}

/* Integer keys (row numbers when ids is NULL) as decimal strings. */
static vs_status keys_from_ints(keys_t *k, size_t n, const int64_t *ids, char *err)
{
    vs_status st = keys_alloc(k, n, n * 21, err);
    size_t at = 0;
    for (size_t i = 0; st == VS_OK && i < n; i++) {
        int l = sprintf(k->bytes + at, "%lld", (long long)(ids ? ids[i] : (int64_t)i));
        k->off[i] = at;
        k->len[i] = (size_t)l;
        at += (size_t)l + 1;
    }
    return st;
}

static int is_npy(const char *path)
{
    size_t l = strlen(path);
    return l >= 4 && strcmp(path + l - 4, ".npy") == 0;
}

static vs_status keys_load(const char *path, size_t n_queries, keys_t *k, char *err)
{
    memset(k, 0, sizeof *k);
    if (!path)
        return keys_from_ints(k, n_queries, NULL, err);
    uint64_t size;
    uint32_t crc;
    vs_status st = vs_file_crc32c(path, &size, &crc, err);
    if (st != VS_OK)
        return st;
    k->crc = crc;
    k->size = size;
    if (is_npy(path)) {
        vs_vecfile_t *vf = NULL;
        if ((st = vs_vecfile_open_column(path, &vf, err)) != VS_OK)
            return st;
        size_t n = vs_vecfile_count(vf);
        int64_t *ids = n == n_queries ? malloc((n ? n : 1) * sizeof *ids) : NULL;
        if (n != n_queries)
            st = vs_errf(err, VS_ERR_INVALID_ARGUMENT, "%s: %zu keys for %zu queries", path, n, n_queries);
        else if (!ids)
            st = vs_errf(err, VS_ERR_NOMEM, "batch: out of memory");
        else if ((st = vs_vecfile_read_i64(vf, 0, n, ids, err)) == VS_OK)
            st = keys_from_ints(k, n, ids, err);
        free(ids);
        vs_vecfile_close(vf);
        return st;
    }
    FILE *f = fopen(path, "rb");
    if (!f)
        return vs_errf(err, VS_ERR_NOT_FOUND, "%s: cannot open", path);
    if ((st = keys_alloc(k, n_queries, size + 1, err)) != VS_OK) {
        fclose(f);
        return st;
    }
    size_t got = fread(k->bytes, 1, size, f);
    fclose(f);
    if (got != size)
        return vs_errf(err, VS_ERR_IO, "%s: short read", path);
    k->bytes[size] = 0;
    size_t line = 0, at = 0;
    while (at < size && st == VS_OK) {
        char *nl = memchr(k->bytes + at, '\n', size - at);
        size_t end = nl ? (size_t)(nl - k->bytes) : size, l = end - at;
        if (l > 0 && k->bytes[at + l - 1] == '\r')
            l--;
        if (line >= n_queries)
            st = vs_errf(err, VS_ERR_INVALID_ARGUMENT, "%s: more than %zu keys (one per query)", path,
                         n_queries);
        else if (l == 0)
            st = vs_errf(err, VS_ERR_INVALID_ARGUMENT, "%s line %zu: empty key", path, line + 1);
        else if (l > VS_NBRS_MAX_KEY)
            st = vs_errf(err, VS_ERR_INVALID_ARGUMENT, "%s line %zu: key of %zu bytes (max %u)", path,
                         line + 1, l, VS_NBRS_MAX_KEY);
        else if (memchr(k->bytes + at, 0, l))
            st = vs_errf(err, VS_ERR_INVALID_ARGUMENT, "%s line %zu: key holds a NUL byte", path, line + 1);
        if (st != VS_OK)
            break;
        k->bytes[at + l] = 0;
        k->off[line] = at;
        k->len[line] = l;
        line++;
        at = end + 1;
    }
    if (st == VS_OK && line != n_queries)
        st = vs_errf(err, VS_ERR_INVALID_ARGUMENT, "%s: %zu keys for %zu queries", path, line, n_queries);
    return st;
}

typedef struct key_hash {
    uint64_t h;
    size_t i;
} key_hash_t;

static int cmp_key_hash(const void *a, const void *b)
{
    const key_hash_t *x = a, *y = b;
    return x->h < y->h ? -1 : x->h > y->h ? 1 : (x->i > y->i) - (x->i < y->i);
}

/* Two queries with one key would write one value twice: refused, naming both rows. */
static vs_status keys_check_distinct(const keys_t *k, const char *path, char *err)
{
    key_hash_t *h = malloc((k->n ? k->n : 1) * sizeof *h);
    if (!h)
        return vs_errf(err, VS_ERR_NOMEM, "batch: out of memory");
    for (size_t i = 0; i < k->n; i++)
        h[i] = (key_hash_t){vs_fnv1a64(VS_FNV1A64_INIT, k->bytes + k->off[i], k->len[i]), i};
    qsort(h, k->n, sizeof *h, cmp_key_hash);
    vs_status st = VS_OK;
    for (size_t a = 0; a + 1 < k->n && st == VS_OK; a++)
        for (size_t b = a + 1; b < k->n && h[b].h == h[a].h && st == VS_OK; b++) {
            size_t i = h[a].i, j = h[b].i;
            if (k->len[i] == k->len[j] && memcmp(k->bytes + k->off[i], k->bytes + k->off[j], k->len[i]) == 0)
                st = vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                             "%s: duplicate key '%.64s' (queries %zu and %zu): each query needs its own key",
                             path ? path : "keys", k->bytes + k->off[i], i, j);
        }
    free(h);
    return st;
}

/* ---- the run ---- */

static vs_status run_drop(const vs_nbrs_opts_t *o, vs_nbrs_result_t *res, char *err)
{
    vs_redis_t *r = NULL;
    vs_status st = vs_redis_open(o->redis, o->timeout_ms, o->redis_user, o->redis_password, &r, err);
    size_t keys = 0;
    if (st == VS_OK)
        st = vs_nbrs_store_drop(r, o->prefix, o->drop, o->force, &keys, err);
    vs_redis_close(r);
    snprintf(res->set, sizeof res->set, "%s", o->drop);
    res->expired_sets = st == VS_OK;
    res->expired_keys = keys;
    return st;
}

/* The run's fingerprint: everything that decides what it writes. */
static void fingerprint(const char *content, const char *version, const vs_search_params_t *p,
                        const vs_nbrs_opts_t *o, uint64_t q_size, uint32_t q_crc, const keys_t *k,
                        char out[17])
{
    char buf[512];
    int n = snprintf(buf, sizeof buf,
                     "vsnb1|%s|%s|k=%zu|nprobe=%u|ef=%u|kf=%.9g|qef=%u|fmt=%d|q=%llu:%08x|keys=%llu:%llx",
                     content, version, o->k, p->nprobe, p->ef_search, (double)p->k_factor,
                     p->quantizer_ef_search, (int)o->format, (unsigned long long)q_size, q_crc,
                     (unsigned long long)k->size, (unsigned long long)k->crc);
    snprintf(out, 17, "%016llx", (unsigned long long)vs_fnv1a64(VS_FNV1A64_INIT, buf, (size_t)n));
}

static vs_status check_block(const float *q, size_t n, uint32_t d, size_t row0, const char *path, char *err)
{
    for (size_t i = 0; i < n * d; i++)
        if (!isfinite(q[i]))
            return vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                           "%s row %zu: a non-finite value (NaN or inf) at dimension %zu", path, row0 + i / d,
                           i % d);
    return VS_OK;
}

static vs_status check_all_finite(const vs_vecfile_t *qf, size_t n, uint32_t d, const char *path, char *err)
{
    const size_t chunk = 4096;
    float *buf = malloc(chunk * d * sizeof *buf);
    if (!buf)
        return vs_errf(err, VS_ERR_NOMEM, "batch: out of memory");
    vs_status st = VS_OK;
    for (size_t row = 0; row < n && st == VS_OK; row += chunk) {
        size_t nb = n - row < chunk ? n - row : chunk;
        if ((st = vs_vecfile_read_f32(qf, row, nb, buf, err)) == VS_OK)
            st = check_block(buf, nb, d, row, path, err);
    }
    free(buf);
    return st;
}

/* Refuses a run whose remaining keys would not fit under Redis's maxmemory, or one Redis may evict from. */
static vs_status check_memory(const vs_nbrs_memory_t *mem, uint64_t need, uint64_t keys, uint64_t per_key,
                              const char *addr, char *err)
{
    if (strncmp(mem->policy, "allkeys-", 8) == 0)
        return vs_errf(
            err, VS_ERR_FAILED_PRECONDITION,
            "redis %s: maxmemory-policy %s may evict result keys (a reader would then miss keys of the "
            "current set); use noeviction or a volatile-* policy",
            addr, mem->policy);
    if (mem->max > 0 && mem->used + need > mem->max)
        return vs_errf(
            err, VS_ERR_RESOURCE_EXHAUSTED,
            "redis %s: the set needs about %.1f MiB more (%llu keys x %llu B) and Redis uses %.1f of its "
            "maxmemory %.1f MiB; raise maxmemory, lower --keep or --k, or drop a set",
            addr, (double)need / 1048576.0, (unsigned long long)keys, (unsigned long long)per_key,
            (double)mem->used / 1048576.0, (double)mem->max / 1048576.0);
    return VS_OK;
}

/* The writer thread: one block at a time, handed over by the searching thread (full = 1), written and
 * recorded in order; the first failure stops it and is reported back. Only it uses the Redis connection
 * while blocks flow. */
typedef struct writer {
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int full, quit;
    size_t row, nb; /* the block handed over */
    const float *dist;
    const int64_t *ids;
    vs_status st;
    char err[VS_ERR_LEN];
    /* fixed for the run */
    const vs_nbrs_store_t *store;
    const keys_t *keys;
    const char **kp;
    vs_nbrs_memory_t mem; /* Redis's memory before the run (re-checked after the first block) */
    size_t n, blocks, stop_after;
    vs_progress_t *progress;
    vs_nbrs_result_t *res;
} writer_t;

static vs_status write_block(writer_t *w, char *err)
{
    const size_t row = w->row, nb = w->nb, n = w->n;
    double t0 = vs_now_s();
    for (size_t i = 0; i < nb; i++)
        w->kp[i] = w->keys->bytes + w->keys->off[row + i];
    int stop = w->stop_after && w->blocks == w->stop_after;
    vs_status st =
        vs_nbrs_store_put(w->store, nb, w->kp, w->keys->len + row, w->ids, w->dist, row + nb, stop, err);
    if (st == VS_OK)
        w->res->written += nb; /* recorded in Redis */
    if (st == VS_OK && w->blocks == 0 && w->mem.max > 0 &&
        row + nb < n) { /* with the measured bytes per key */
        vs_nbrs_memory_t now;
        if ((st = vs_nbrs_store_memory(w->store->redis, &now, err)) == VS_OK && now.used > w->mem.used) {
            uint64_t per = (now.used - w->mem.used) / nb;
            st = check_memory(&now, (n - row - nb) * per, n - row - nb, per, vs_redis_addr(w->store->redis),
                              err);
        }
    }
    w->res->write_seconds += vs_now_s() - t0;
    if (st == VS_OK) {
        w->blocks++;
        vs_progress_update(w->progress, row + nb, n);
    }
    return st;
}

static void *writer_main(void *arg)
{
    writer_t *w = arg;
    char err[VS_ERR_LEN] = "";
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->full && !w->quit)
            pthread_cond_wait(&w->cv, &w->mu);
        if (!w->full)
            break;
        pthread_mutex_unlock(&w->mu);
        vs_status st = write_block(w, err);
        pthread_mutex_lock(&w->mu);
        w->full = 0;
        if (st != VS_OK) {
            w->st = st;
            memcpy(w->err, err, VS_ERR_LEN);
        }
        pthread_cond_broadcast(&w->cv);
        if (st != VS_OK)
            break;
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

vs_status vs_nbrs_run(const vs_nbrs_opts_t *o, vs_nbrs_result_t *res, char err[VS_ERR_LEN])
{
    memset(res, 0, sizeof *res);
    if (o->drop)
        return run_drop(o, res, err);
    const double t0 = vs_now_s(), c0 = vs_process_cpu_s();
    vs_nbrs_searcher_t *s = NULL;
    vs_nbrs_remote_t *rem = NULL;
    vs_vecfile_t *qf = NULL;
    keys_t keys = {0};
    vs_redis_t *r = NULL;
    float *qbuf = NULL, *dist[2] = {NULL, NULL};
    int64_t *ids[2] = {NULL, NULL};
    const char **kp = NULL;
    /* the version: in process (its manifest) or through a cluster (its name; the coordinator checks dims) */
    char version[VS_NAME_LEN] = "", content[VS_NAME_LEN + 16] = "";
    uint32_t dim = 0;
    vs_metric metric = VS_METRIC_L2;
    vs_status st = VS_OK;
    if (o->manifest && (st = vs_nbrs_searcher_open(o->manifest, &s, err)) == VS_OK) {
        const vs_manifest_t *m = vs_nbrs_searcher_manifest(s);
        snprintf(version, sizeof version, "%s", m->version);
        vs_manifest_content_id(m, content);
        dim = m->dim;
        metric = m->metric;
    } else if (!o->manifest &&
               (st = vs_nbrs_remote_open(o->coordinator, o->index_version, o->timeout_ms, o->call_queries,
                                         o->concurrency, &rem, err)) == VS_OK) {
        snprintf(version, sizeof version, "%s", vs_nbrs_remote_version(rem));
        snprintf(content, sizeof content, "cluster:%s", version); /* version names are never reused */
    }
    uint64_t q_size = 0;
    uint32_t q_crc = 0;
    if (st == VS_OK && (st = vs_vecfile_open(o->queries, &qf, err)) == VS_OK) {
        if (!dim)
            dim = vs_vecfile_dim(qf);
        if (vs_vecfile_dtype(qf) != VS_DTYPE_F32)
            st = vs_errf(err, VS_ERR_INVALID_ARGUMENT, "%s: queries must be float32 (.fvecs or .npy <f4)",
                         o->queries);
        else if (vs_vecfile_dim(qf) != dim)
            st = vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                         "%s: queries of dimension %u, version %s has dimension %u", o->queries,
                         vs_vecfile_dim(qf), version, dim);
        else if (vs_vecfile_count(qf) == 0)
            st = vs_errf(err, VS_ERR_INVALID_ARGUMENT, "%s: no queries", o->queries);
    }
    if (st == VS_OK)
        st = vs_file_crc32c(o->queries, &q_size, &q_crc, err);
    const size_t n = st == VS_OK ? vs_vecfile_count(qf) : 0, d = dim;
    if (st == VS_OK && (st = keys_load(o->keys, n, &keys, err)) == VS_OK)
        st = keys_check_distinct(&keys, o->keys, err);
    if (st == VS_OK) /* every row finite before anything is written (a bad row would stop the run halfway) */
        st = check_all_finite(qf, n, dim, o->queries, err);
    vs_search_params_t params = s ? vs_nbrs_searcher_params(s, &o->params) : o->params;
    res->params = params;
    vs_nbrs_store_t store = {.format = o->format, .k = o->k};
    if (st == VS_OK) {
        snprintf(store.prefix, sizeof store.prefix, "%s", o->prefix);
        store.similarity = vs_metric_larger_is_better(metric);
        fingerprint(content, version, &params, o, q_size, q_crc, &keys, res->fingerprint);
        memcpy(store.fingerprint, res->fingerprint, sizeof store.fingerprint);
        if (o->set)
            snprintf(store.set, sizeof store.set, "%s", o->set);
        else
            snprintf(store.set, sizeof store.set, "%.55s.%.8s", version, res->fingerprint);
        snprintf(res->set, sizeof res->set, "%s", store.set);
        snprintf(res->version, sizeof res->version, "%s", version);
        res->n_keys = n;
        st = vs_redis_open(o->redis, o->timeout_ms, o->redis_user, o->redis_password, &r, err);
        store.redis = r;
    }
    vs_nbrs_progress_t prog = {0};
    if (st == VS_OK)
        st = vs_nbrs_store_begin(&store, res->fingerprint, n, version, &prog, err);
    vs_nbrs_memory_t mem = {0};
    if (st == VS_OK && !prog.complete && (st = vs_nbrs_store_memory(r, &mem, err)) == VS_OK) {
        size_t avg_key = keys.n ? (keys.off[keys.n - 1] + keys.len[keys.n - 1]) / keys.n : 8;
        res->key_bytes_estimate = vs_nbrs_key_bytes_estimate(&store, avg_key);
        res->redis_used_before = mem.used;
        res->redis_max = mem.max;
        st = check_memory(&mem, (n - prog.done) * res->key_bytes_estimate, n - prog.done,
                          res->key_bytes_estimate, vs_redis_addr(r), err);
    }
    res->resumed_from = prog.done;
    res->already_complete = prog.complete;
    const size_t B = o->block;
    if (st == VS_OK && !prog.complete) {
        qbuf = malloc(B * d * sizeof *qbuf);
        for (int b = 0; b < 2; b++) {
            dist[b] = malloc(B * o->k * sizeof *dist[b]);
            ids[b] = malloc(B * o->k * sizeof *ids[b]);
        }
        kp = malloc(B * sizeof *kp);
        if (!qbuf || !dist[0] || !ids[0] || !dist[1] || !ids[1] || !kp)
            st = vs_errf(err, VS_ERR_NOMEM, "batch: out of memory for blocks of %zu queries", B);
    }
    vs_progress_t pl;
    char what[96];
    snprintf(what, sizeof what, "batch %s", store.set);
    if (st == VS_OK && !prog.complete)
        vs_progress_start(&pl, what, o->quiet);
    /* the writer thread writes block i while this thread searches block i + 1 */
    writer_t w = {.store = &store,
                  .keys = &keys,
                  .kp = kp,
                  .mem = mem,
                  .n = n,
                  .progress = &pl,
                  .res = res,
                  .stop_after = o->stop_after_blocks};
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    int writer_on = 0;
    if (st == VS_OK && !prog.complete) {
        if (pthread_create(&w.th, NULL, writer_main, &w) != 0)
            st = vs_errf(err, VS_ERR_INTERNAL, "batch: cannot start the writer thread");
        else
            writer_on = 1;
    }
    int cur = 0;
    for (size_t row = prog.done; st == VS_OK && !prog.complete && row < n; row += B) {
        size_t nb = n - row < B ? n - row : B;
        double ts = vs_now_s();
        if ((st = vs_vecfile_read_f32(qf, row, nb, qbuf, err)) == VS_OK &&
            (st = check_block(qbuf, nb, (uint32_t)d, row, o->queries, err)) == VS_OK)
            st = s ? vs_nbrs_searcher_search(s, nb, qbuf, o->k, &params, o->threads, dist[cur], ids[cur], err)
                   : vs_nbrs_remote_search(rem, nb, qbuf, (uint32_t)d, o->k, &params, dist[cur], ids[cur],
                                           err);
        res->search_seconds += vs_now_s() - ts;
        pthread_mutex_lock(&w.mu);
        while (w.full && w.st == VS_OK)
            pthread_cond_wait(&w.cv, &w.mu);
        if (w.st != VS_OK) { /* the writer failed: its error is the run's */
            st = w.st;
            memcpy(err, w.err, VS_ERR_LEN);
        } else if (st == VS_OK) {
            if (rem) /* the metric comes with the answers */
                store.similarity = vs_metric_larger_is_better(vs_nbrs_remote_metric(rem));
            w.row = row;
            w.nb = nb;
            w.dist = dist[cur];
            w.ids = ids[cur];
            w.full = 1;
            pthread_cond_broadcast(&w.cv);
        }
        pthread_mutex_unlock(&w.mu);
        cur ^= 1;
    }
    if (writer_on) {
        pthread_mutex_lock(&w.mu);
        while (w.full && w.st == VS_OK)
            pthread_cond_wait(&w.cv, &w.mu);
        if (st == VS_OK && w.st != VS_OK) {
            st = w.st;
            memcpy(err, w.err, VS_ERR_LEN);
        }
        w.quit = 1;
        pthread_cond_broadcast(&w.cv);
        pthread_mutex_unlock(&w.mu);
        pthread_join(w.th, NULL);
    }
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cv);
    if (st == VS_OK && !prog.complete)
        vs_progress_finish(&pl, n);
    if (st != VS_OK && st != VS_ERR_INVALID_ARGUMENT && r && res->written + prog.done < n && !prog.complete) {
        size_t l = strlen(err);
        snprintf(err + l, VS_ERR_LEN - l,
                 " (set %s: %llu of %llu keys recorded; the current set is unchanged; rerun "
                 "the same command to resume)",
                 store.set, (unsigned long long)(prog.done + res->written), (unsigned long long)n);
    }
    if (st == VS_OK && !(prog.complete && prog.is_current)) {
        st = vs_nbrs_store_switch(&store, n, err);
        res->switched = st == VS_OK;
    }
    if (st == VS_OK)
        st = vs_nbrs_store_expire(r, o->prefix, o->keep, &res->expired_sets, &res->expired_keys, err);
    vs_nbrs_memory_t after;
    if (r && st == VS_OK && vs_nbrs_store_memory(r, &after, NULL) == VS_OK)
        res->redis_used_after = after.used;
    res->seconds = vs_now_s() - t0;
    res->cpu_seconds = vs_process_cpu_s() - c0;
    free(qbuf);
    for (int b = 0; b < 2; b++) {
        free(dist[b]);
        free(ids[b]);
    }
    free(kp);
    vs_redis_close(r);
    keys_fini(&keys);
    vs_vecfile_close(qf);
    vs_nbrs_searcher_close(s);
    vs_nbrs_remote_close(rem);
    return st;
}

void vs_nbrs_report(FILE *f, const vs_nbrs_result_t *r, int json)
{
    double per_core_cpu_us = r->written ? 1e6 * r->cpu_seconds / (double)r->written : 0;
    double qps = r->seconds > 0 ? (double)r->written / r->seconds : 0;
    if (json) {
        fprintf(
            f,
            "{\"set\":\"%s\",\"version\":\"%s\",\"fingerprint\":\"%s\",\"keys\":%llu,\"resumed_from\":%llu,"
            "\"written\":%llu,\"already_complete\":%s,\"switched\":%s,\"expired_sets\":%zu,\"expired_keys\":%"
            "zu,"
            "\"seconds\":%.3f,\"cpu_seconds\":%.3f,\"search_seconds\":%.3f,\"write_seconds\":%.3f,"
            "\"qps\":%.1f,\"cpu_us_per_query\":%.2f,\"nprobe\":%u,\"ef_search\":%u,\"k_factor\":%g,"
            "\"key_bytes_estimate\":%llu,\"redis_used_before\":%llu,\"redis_used_after\":%llu,"
            "\"redis_maxmemory\":%llu}\n",
            r->set, r->version, r->fingerprint, (unsigned long long)r->n_keys,
            (unsigned long long)r->resumed_from, (unsigned long long)r->written,
            r->already_complete ? "true" : "false", r->switched ? "true" : "false", r->expired_sets,
            r->expired_keys, r->seconds, r->cpu_seconds, r->search_seconds, r->write_seconds, qps,
            per_core_cpu_us, r->params.nprobe, r->params.ef_search, (double)r->params.k_factor,
            (unsigned long long)r->key_bytes_estimate, (unsigned long long)r->redis_used_before,
            (unsigned long long)r->redis_used_after, (unsigned long long)r->redis_max);
        return;
    }
    if (!r->n_keys) { /* a drop */
        fprintf(f, "dropped set %s: %zu keys\n", r->set, r->expired_keys);
        return;
    }
    fprintf(f, "set %s (version %s, fingerprint %s): %llu keys", r->set, r->version, r->fingerprint,
            (unsigned long long)r->n_keys);
    if (r->already_complete)
        fprintf(f, ", already complete");
    else
        fprintf(f,
                ", %llu written%s in %.2f s (%.0f queries/s, %.1f CPU us/query; search %.2f s, Redis %.2f s)",
                (unsigned long long)r->written, r->resumed_from ? " after resuming" : "", r->seconds, qps,
                per_core_cpu_us, r->search_seconds, r->write_seconds);
    fprintf(f, "%s; %zu old sets expired (%zu keys)\n", r->switched ? "; now current" : "", r->expired_sets,
            r->expired_keys);
    if (r->redis_used_after && r->redis_used_after > r->redis_used_before && r->written)
        fprintf(f, "redis memory: %.1f MiB used (+%.1f MiB, %.0f B per key; estimated %llu)\n",
                (double)r->redis_used_after / 1048576.0,
                (double)(r->redis_used_after - r->redis_used_before) / 1048576.0,
                (double)(r->redis_used_after - r->redis_used_before) / (double)r->written,
                (unsigned long long)r->key_bytes_estimate);
}

int vs_nbrs_main(int argc, char **argv)
{
    vs_nbrs_opts_t o;
    vs_nbrs_opts_init(&o);
    int rc = vs_nbrs_parse_args(argc, argv, &o);
    if (rc == 1)
        return 0;
    if (rc == 2)
        return 2;
    vs_nbrs_result_t res;
    char err[VS_ERR_LEN] = "", password[256];
    int found = 0;
    if (vs_secret_from_env("VECSHARD_REDIS_PASSWORD", password, sizeof password, &found, err) != VS_OK) {
        fprintf(stderr, "vecshard batch: %s\n", err);
        return 2;
    }
    o.redis_password = found ? password : NULL;
    if (!o.redis_user)
        o.redis_user = vs_secret_getenv("VECSHARD_REDIS_USER");
    vs_status st = vs_nbrs_run(&o, &res, err);
    memset(password, 0, sizeof password);
    if (st != VS_OK) {
        fprintf(stderr, "vecshard batch: %s (%s)\n", err, vs_status_name(st));
        return 1;
    }
    vs_nbrs_report(stdout, &res, o.json);
    return 0;
}
