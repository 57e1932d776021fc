/* vecshard-build: builds an index version (partition files + manifest.json) from a vector file; the
 * work is vs_builder_run (builder.h), this file parses flags and draws progress lines. */
#include <errno.h>
#include <getopt.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/cli/flags.h"
#include "common/cli/progress.h"
#include "common/filter.h"
#include "shard/builder/builder.h"

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: vecshard-build --base FILE --factory STRING --out DIR --version NAME [options]\n"
        "\n"
        "Builds index version NAME in DIR/NAME: part-<p>.vsidx for every partition, centroids.fvecs (IVF)\n"
        "and manifest.json, written last (docs/protocol.md). Trains once on a sample; every partition\n"
        "shares the coarse centroids and codebooks. Streams the base: vectors are never all in memory.\n"
        "\n"
        "  --base FILE            vectors: .fvecs .bvecs .npy (float32/uint8/int32) or idx[.gz]\n"
        "  --ids FILE             int64 ids, one per base row: .npy (<i8) or .i64 (raw little-endian);\n"
        "                         default: the row numbers 0..n-1. Ids must be >= 0 (not checked unique)\n"
        "  --attr NAME=FILE       an attribute of the items, for filtered search (repeatable, at most 16\n"
        "                         fields): one value per base row, in the base's order, as a .npy of shape\n"
        "                         (n,) or (n,1): <i8 or <i4 = an integer field, <f4 or <f8 = a float field;\n"
        "                         missing values INT64_MIN or NaN. NAME: [a-z0-9_], starting with a\n"
        "                         letter, at most 48 characters. Stored in every partition file and named\n"
        "                         in the manifest (\"attributes\")\n"
        "  --metric M             l2 (default), ip or cosine\n"
        "  --factory STRING       FAISS index_factory string: IVF{nlist},Flat | IVF{nlist},PQ{m}[x4fs]\n"
        "                         [,RFlat|,RSQ8] | HNSW{M}[,SQ8] (hash partitioning). e.g.\n"
        "                         \"IVF1024,PQ32x4fs,RSQ8\"\n"
        "  --partitions P         number of partitions, 1..4096 (default 1)\n"
        "  --partitioning KIND    hash (default): partition splitmix64(id) %% P;\n"
        "                         cluster (IVF only, P <= nlist): whole IVF lists per partition, packed\n"
        "                         largest first into the least loaded partition\n"
        "  --version NAME         version name [A-Za-z0-9._-], 1..64 bytes\n"
        "  --model-version NAME   embedding model the vectors came from (recorded, default \"\")\n"
        "  --log-upto SEQ         the write log's last sequence folded into --base (vecshard-fold prints "
        "it):\n"
        "                         recorded in the manifest; replicas apply the log after it (default 0)\n"
        "  --out DIR              output directory (created)\n"
        "  --train-sample N       training rows (default max(256*nlist, 100000), at most n)\n"
        "  --assign MODE          grouped (default): from 8,192 lists on (L2, cosine), each vector's list\n"
        "                         is its nearest centroid among those of its nearest groups of centroids,\n"
        "                         ~1/3 of the exact assignment's time at 16,384 lists, ~3%% of vectors in\n"
        "                         a near list instead (docs/benchmarks.md); exact: always the nearest\n"
        "                         list. Below 8,192 lists, and for ip, both are exact\n"
        "  --seed N               training sample seed (default 1)\n"
        "  --threads N            worker threads (default: all CPUs; the output does not depend on it)\n"
        "  --chunk N              rows per streaming read (default 65536, rounded up to a multiple of 256;\n"
        "                         the output does not depend on it)\n"
        "  --memory-mb N          memory for the partitions encoded in one pass over the base (default:\n"
        "                         half the RAM; 0 = all partitions in one pass)\n"
        "  --resume               keep partitions whose part-<p>.done marker matches this build. A "
        "directory\n"
        "                         holding a finished version is never rebuilt (versions are immutable)\n"
        "                         except by --resume of the same build, which rewrites the same bytes\n"
        "                         (same inputs, options and trained state); rebuild the others\n"
        "  --build-time SECONDS   time recorded in the partition files (default: $SOURCE_DATE_EPOCH, else\n"
        "                         now); fix it for byte-identical rebuilds\n"
        "  --target-recall R      record per-version search defaults: the cheapest nprobe / efSearch /\n"
        "                         k_factor reaching recall@K >= R on the tune queries (default 0.95;\n"
        "                         0 = do not tune). Queries without parameters get them\n"
        "  --tune-queries FILE    tune queries (a vector file of the base's dimension); default: --tune-n\n"
        "                         rows sampled from the base (in the index: slightly optimistic recall)\n"
        "  --tune-n N             sampled tune queries (default 500)\n"
        "  --tune-k K             K of the recall target (default 10)\n"
        "  --quiet                no progress lines\n"
        "\n"
        "Distributed build (IVF factories; byte-identical to the one-process build; docs/operations.md):\n"
        "  --stage train          validate, train once, write DIR/NAME/.build/{trained.vsidx,train.json}\n"
        "  --stage encode         worker --worker I of --workers W: assign and encode rows\n"
        "                         [I*n/W, (I+1)*n/W) into DIR/NAME/.build/wI.*; in parallel, any order\n"
        "  --stage merge          --workers W: merge the workers' parts into the partitions, manifest last\n"
        "  --worker I             this worker, 0..W-1 (default: $JOB_COMPLETION_INDEX, as a Kubernetes\n"
        "                         Indexed Job sets it)\n"
        "  --workers W            number of encode workers, 1..65536 (the same for encode and merge)\n"
        "  --local-workers W      the three stages here, the encode stage as W processes at once\n"
        "                         (--threads each; default: all CPUs / W)\n"
        "Every stage takes the same build flags; --resume redoes only what is not done (a worker whose\n"
        "marker matches is kept). A stage on a finished version is refused, or with --resume does nothing.\n"
        "  -h, --help             this help\n"
        "\n"
        "Exit status 0 when the manifest is written (a stage: when its work is done); 1 on any error (no\n"
        "manifest then); 2 on bad flags; 3 for --stage encode or merge when an earlier stage has not yet\n"
        "finished this build (no trained state for these flags, a worker not done): try again later.\n");
}

typedef struct cli_progress {
    vs_progress_t p;
    int quiet;
    int active;
} cli_progress_t;

static void on_begin(void *ctx, const char *stage, size_t total)
{
    (void)total;
    cli_progress_t *c = ctx;
    vs_progress_start(&c->p, stage, c->quiet);
    c->active = 1;
}

static void on_update(void *ctx, size_t done, size_t total)
{
    cli_progress_t *c = ctx;
    if (c->active)
        vs_progress_update(&c->p, done, total);
}

static void on_end(void *ctx, size_t total)
{
    cli_progress_t *c = ctx;
    if (c->active)
        vs_progress_finish(&c->p, total);
    c->active = 0;
}

static void on_note(void *ctx, const char *line)
{
    cli_progress_t *c = ctx;
    if (!c->quiet)
        fprintf(stderr, "vecshard-build: %s\n", line);
}

/* --local-workers W: train here, the encode stage as W child processes at once (fork: this process has
 * no threads between stages), then merge here. */
static vs_status run_local(vs_builder_opts_t *o, uint32_t W, cli_progress_t *cp, vs_builder_result_t *res,
                           char err[VS_ERR_LEN])
{
    size_t threads = o->n_threads;
    o->stage = VS_BUILD_TRAIN;
    vs_status st = vs_builder_run(o, res, err);
    if (st != VS_OK || res->nothing_to_do)
        return st;
    o->stage = VS_BUILD_ENCODE;
    o->n_workers = W;
    if (!threads) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        o->n_threads = cpus > (long)W ? (size_t)cpus / W : 1;
    }
    pid_t *pids = calloc(W, sizeof *pids);
    if (!pids)
        return vs_errf(err, VS_ERR_NOMEM, "out of memory");
    fflush(NULL);
    for (uint32_t i = 0; i < W; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            o->worker = i;
            cp->quiet = 1; /* one progress line per terminal: the workers only report errors */
            vs_builder_result_t r;
            char e[VS_ERR_LEN];
            if (vs_builder_run(o, &r, e) != VS_OK) {
                fprintf(stderr, "vecshard-build: worker %u: %s\n", i, e);
                _exit(1);
            }
            _exit(0);
        }
        pids[i] = pid;
        if (pid < 0)
            st = vs_errf(err, VS_ERR_INTERNAL, "fork: %s", strerror(errno));
    }
    uint32_t failed = 0;
    for (uint32_t i = 0; i < W; i++) {
        int ws = 0;
        if (pids[i] > 0 && (waitpid(pids[i], &ws, 0) < 0 || !WIFEXITED(ws) || WEXITSTATUS(ws) != 0))
            failed++;
    }
    free(pids);
    if (st == VS_OK && failed)
        st = vs_errf(err, VS_ERR_INTERNAL, "%u of %u encode workers failed (above); --resume redoes only them",
                     failed, W);
    if (st != VS_OK)
        return st;
    o->n_threads = threads;
    o->stage = VS_BUILD_MERGE;
    return vs_builder_run(o, res, err);
}

static unsigned long long number(const char *flag, const char *s, unsigned long long max)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (s[0] < '0' || s[0] > '9' || *end || errno || v > max) {
        fprintf(stderr, "vecshard-build: %s '%s' must be an integer in 0..%llu\n", flag, s, max);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    if (vs_cli_version_flag(argc, argv, "vecshard-build"))
        return 0;
    vs_builder_opts_t o = {.metric = VS_METRIC_L2,
                           .n_partitions = 1,
                           .partitioning = VS_PARTITION_HASH,
                           .seed = 1,
                           .target_recall = 0.95};
    const char *metric = "l2", *partitioning = "hash", *build_time = getenv("SOURCE_DATE_EPOCH");
    vs_builder_attr_t attrs[VS_ATTR_MAX_FIELDS];
    char attr_names[VS_ATTR_MAX_FIELDS][VS_ATTR_NAME_MAX + 1];
    long long memory_mb = -1;
    int quiet = 0, build_time_flag = 0, worker_flag = 0;
    unsigned long long local_workers = 0;
    static const struct option opts[] = {
        {"base", required_argument, 0, 'b'},
        {"ids", required_argument, 0, 'i'},
        {"attr", required_argument, 0, 'A'},
        {"metric", required_argument, 0, 'm'},
        {"factory", required_argument, 0, 'f'},
        {"partitions", required_argument, 0, 'P'},
        {"partitioning", required_argument, 0, 'K'},
        {"version", required_argument, 0, 'v'},
        {"model-version", required_argument, 0, 'M'},
        {"log-upto", required_argument, 0, 'U'},
        {"out", required_argument, 0, 'o'},
        {"train-sample", required_argument, 0, 's'},
        {"seed", required_argument, 0, 'S'},
        {"threads", required_argument, 0, 't'},
        {"chunk", required_argument, 0, 'c'},
        {"memory-mb", required_argument, 0, 'R'},
        {"resume", no_argument, 0, 'r'},
        {"build-time", required_argument, 0, 'T'},
        {"target-recall", required_argument, 0, 'G'},
        {"tune-queries", required_argument, 0, 'Q'},
        {"tune-n", required_argument, 0, 'N'},
        {"tune-k", required_argument, 0, 'k'},
        {"quiet", no_argument, 0, 'q'},
        {"stage", required_argument, 0, 'X'},
        {"worker", required_argument, 0, 'I'},
        {"workers", required_argument, 0, 'W'},
        {"local-workers", required_argument, 0, 'L'},
        {"assign", required_argument, 0, 'Y'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    int c;
    char xerr[VS_ERR_LEN];
    if (vs_cli_exact_long_options(argc, argv, opts, xerr) != 0) {
        fprintf(stderr, "vecshard-build: %s\n", xerr);
        return 2;
    }
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'b':
            o.base_path = optarg;
            break;
        case 'i':
            o.ids_path = optarg;
            break;
        case 'A': {
            const char *eq = strchr(optarg, '=');
            if (!eq || eq == optarg || !eq[1]) {
                fprintf(stderr, "vecshard-build: --attr '%s' must be NAME=FILE\n", optarg);
                return 2;
            }
            if (o.n_attrs == VS_ATTR_MAX_FIELDS) {
                fprintf(stderr, "vecshard-build: at most %d --attr fields\n", VS_ATTR_MAX_FIELDS);
                return 2;
            }
            size_t len = (size_t)(eq - optarg);
            if (len > VS_ATTR_NAME_MAX) {
                fprintf(stderr, "vecshard-build: --attr '%s': the name is longer than %d characters\n",
                        optarg, VS_ATTR_NAME_MAX);
                return 2;
            }
            memcpy(attr_names[o.n_attrs], optarg, len);
            attr_names[o.n_attrs][len] = 0;
            attrs[o.n_attrs] = (vs_builder_attr_t){attr_names[o.n_attrs], eq + 1};
            o.attrs = attrs;
            o.n_attrs++;
            break;
        }
        case 'm':
            metric = optarg;
            break;
        case 'f':
            o.factory = optarg;
            break;
        case 'P':
            o.n_partitions = (uint32_t)number("--partitions", optarg, UINT32_MAX);
            break;
        case 'K':
            partitioning = optarg;
            break;
        case 'v':
            o.version = optarg;
            break;
        case 'M':
            o.model_version = optarg;
            break;
        case 'Y':
            if (strcmp(optarg, "exact") != 0 && strcmp(optarg, "grouped") != 0) {
                fprintf(stderr, "vecshard-build: --assign must be exact or grouped, not '%s'\n", optarg);
                return 2;
            }
            o.assign_exact = strcmp(optarg, "exact") == 0;
            break;
        case 'U': {
            long long v;
            char perr[VS_ERR_LEN];
            if (vs_cli_parse_int("--log-upto", optarg, 0, (long long)(UINT64_MAX >> 2), &v, perr) != VS_OK) {
                fprintf(stderr, "vecshard-build: %s\n", perr);
                return 2;
            }
            o.log_upto = (uint64_t)v;
            break;
        }
        case 'o':
            o.out_dir = optarg;
            break;
        case 's':
            o.train_sample = (size_t)number("--train-sample", optarg, SIZE_MAX);
            break;
        case 'S':
            o.seed = number("--seed", optarg, UINT64_MAX);
            break;
        case 't':
            o.n_threads = (size_t)number("--threads", optarg, 4096);
            break;
        case 'c':
            o.chunk_rows = (size_t)number("--chunk", optarg, 1u << 30);
            break;
        case 'R':
            memory_mb = (long long)number("--memory-mb", optarg, 1ull << 40);
            break;
        case 'r':
            o.resume = 1;
            break;
        case 'T':
            build_time = optarg;
            build_time_flag = 1;
            break;
        case 'G': {
            char *end;
            o.target_recall = strtod(optarg, &end);
            if (*end || !(o.target_recall >= 0 && o.target_recall <= 1)) {
                fprintf(stderr, "vecshard-build: --target-recall '%s' must be a number in 0..1\n", optarg);
                return 2;
            }
            break;
        }
        case 'Q':
            o.tune_queries_path = optarg;
            break;
        case 'N':
            o.tune_n = (size_t)number("--tune-n", optarg, 1000000);
            break;
        case 'k':
            o.tune_k = (uint32_t)number("--tune-k", optarg, 1000);
            break;
        case 'q':
            quiet = 1;
            break;
        case 'X':
            if (strcmp(optarg, "train") == 0) {
                o.stage = VS_BUILD_TRAIN;
            } else if (strcmp(optarg, "encode") == 0) {
                o.stage = VS_BUILD_ENCODE;
            } else if (strcmp(optarg, "merge") == 0) {
                o.stage = VS_BUILD_MERGE;
            } else {
                fprintf(stderr, "vecshard-build: --stage '%s' must be train, encode or merge\n", optarg);
                return 2;
            }
            break;
        case 'I':
            o.worker = (uint32_t)number("--worker", optarg, 65535);
            worker_flag = 1;
            break;
        case 'W':
            o.n_workers = (uint32_t)number("--workers", optarg, 65536);
            break;
        case 'L':
            local_workers = number("--local-workers", optarg, 256);
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "vecshard-build: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!o.base_path || !o.factory || !o.out_dir || !o.version) {
        fprintf(stderr, "vecshard-build: --base, --factory, --out and --version are required (see --help)\n");
        return 2;
    }
    if (o.stage == VS_BUILD_ENCODE && !worker_flag) {
        const char *idx = getenv("JOB_COMPLETION_INDEX");
        if (!idx) {
            fprintf(stderr, "vecshard-build: --stage encode needs --worker (or $JOB_COMPLETION_INDEX)\n");
            return 2;
        }
        o.worker = (uint32_t)number("JOB_COMPLETION_INDEX", idx, 65535);
    }
    if (o.stage != VS_BUILD_ALL && o.stage != VS_BUILD_TRAIN && o.n_workers == 0) {
        fprintf(stderr, "vecshard-build: --stage encode and --stage merge need --workers\n");
        return 2;
    }
    if (local_workers && o.stage != VS_BUILD_ALL) {
        fprintf(stderr, "vecshard-build: --local-workers runs every stage: leave out --stage\n");
        return 2;
    }
    if (local_workers == 0 && (o.n_workers || worker_flag) && o.stage == VS_BUILD_ALL) {
        fprintf(stderr, "vecshard-build: --worker and --workers go with --stage encode or merge\n");
        return 2;
    }
    char err[VS_ERR_LEN];
    if (vs_metric_parse(metric, &o.metric, err) != VS_OK) {
        fprintf(stderr, "vecshard-build: --metric: %s\n", err);
        return 2;
    }
    if (strcmp(partitioning, "hash") == 0) {
        o.partitioning = VS_PARTITION_HASH;
    } else if (strcmp(partitioning, "cluster") == 0) {
        o.partitioning = VS_PARTITION_CLUSTER;
    } else {
        fprintf(stderr, "vecshard-build: --partitioning '%s' must be hash or cluster\n", partitioning);
        return 2;
    }
    o.build_time_unix =
        build_time ? number(build_time_flag ? "--build-time" : "SOURCE_DATE_EPOCH", build_time, UINT64_MAX)
                   : (uint64_t)time(NULL);
    if (memory_mb < 0) {
        long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
        o.memory_bytes = pages > 0 && page > 0 ? (size_t)pages * (size_t)page / 2 : 0;
    } else {
        o.memory_bytes = (size_t)memory_mb << 20;
    }
    cli_progress_t cp = {.quiet = quiet};
    vs_builder_progress_t pr = {on_begin, on_update, on_end, on_note, &cp};
    o.progress = &pr;
    vs_builder_result_t res;
    vs_status st;
    if (local_workers) {
        st = run_local(&o, (uint32_t)local_workers, &cp, &res, err);
    } else {
        st = vs_builder_run(&o, &res, err);
    }
    if (st != VS_OK) {
        fprintf(stderr, "vecshard-build: %s: %s\n", vs_status_name(st), err);
        /* encode before the trained state of this build exists, merge before every worker finished */
        return st == VS_ERR_FAILED_PRECONDITION && (o.stage == VS_BUILD_ENCODE || o.stage == VS_BUILD_MERGE)
                   ? 3
                   : 1;
    }
    if (o.stage == VS_BUILD_TRAIN || o.stage == VS_BUILD_ENCODE) {
        if (!quiet && !res.nothing_to_do)
            fprintf(stderr, "vecshard-build: %s done (%zu rows encoded by this run)\n",
                    o.stage == VS_BUILD_TRAIN ? "train" : "encode", res.rows_encoded);
        return 0;
    }
    if (!quiet && !res.nothing_to_do)
        fprintf(
            stderr,
            "vecshard-build: %zu vectors of dim %u, %u partitions (%u built, %u kept from an earlier run) in "
            "%u pass(es); trained on %zu rows\n",
            res.n_vectors, res.dim, res.n_partitions, res.partitions_built, res.partitions_resumed,
            res.n_passes, res.train_rows);
    printf("%s\n", res.manifest_path);
    return 0;
}
