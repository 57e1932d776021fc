/* args.c: flags of the `vecshard` subcommands (one option table, a mask of the flags each command takes)
 * and their help texts. See admin.h. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/cli/flags.h"
#include "common/net/overload.h"
#include "coordinator/cli/admin.h"

/* Flag bits: which command takes which flag. */
enum {
    F_COORD = 1 << 0,
    F_ETCD = 1 << 1,
    F_CLUSTER = 1 << 2,
    F_JSON = 1 << 3,
    F_TIMEOUT = 1 << 4,
    F_QUERY = 1 << 5,  /* --queries --gt --k --nprobe ... --min-coverage */
    F_HEALTH = 1 << 6, /* --service --wait-ms */
};

static unsigned cmd_flags(vs_admin_cmd cmd)
{
    switch (cmd) {
    case VS_ADMIN_QUERY:
        return F_COORD | F_JSON | F_TIMEOUT | F_QUERY;
    case VS_ADMIN_STATUS:
        return F_COORD | F_JSON | F_TIMEOUT;
    case VS_ADMIN_VERSIONS:
        return F_COORD | F_ETCD | F_CLUSTER | F_JSON | F_TIMEOUT;
    case VS_ADMIN_HEALTH:
        return F_COORD | F_JSON | F_TIMEOUT | F_HEALTH;
    }
    return 0;
}

static const char *cmd_name(vs_admin_cmd cmd)
{
    switch (cmd) {
    case VS_ADMIN_QUERY:
        return "query";
    case VS_ADMIN_STATUS:
        return "status";
    case VS_ADMIN_VERSIONS:
        return "versions";
    case VS_ADMIN_HEALTH:
        return "health";
    }
    return "?";
}

vs_admin_cmd vs_admin_cmd_parse(const char *name)
{
    static const vs_admin_cmd all[] = {VS_ADMIN_QUERY, VS_ADMIN_STATUS, VS_ADMIN_VERSIONS, VS_ADMIN_HEALTH};
    for (size_t i = 0; name && i < sizeof all / sizeof all[0]; i++)
        if (strcmp(name, cmd_name(all[i])) == 0)
            return all[i];
    return 0;
}

typedef struct flag {
    const char *name;
    int has_arg;
    int id;
    unsigned group;
} flag_t;

enum {
    O_COORD = 256,
    O_ETCD,
    O_CLUSTER,
    O_JSON,
    O_TIMEOUT,
    O_QUERIES,
    O_GT,
    O_K,
    O_NPROBE,
    O_EF,
    O_QEF,
    O_KFACTOR,
    O_BATCH,
    O_CONC,
    O_LIMIT,
    O_INDEX_VERSION,
    O_MODEL_VERSION,
    O_MIN_COVERAGE,
    O_SERVICE,
    O_WAIT,
    O_RATE,
    O_FILTER,
    O_GROUP_BY,
    O_PRIORITY,
};

static const flag_t flags[] = {
    {"coordinator", 1, O_COORD, F_COORD},
    {"etcd", 1, O_ETCD, F_ETCD},
    {"cluster", 1, O_CLUSTER, F_CLUSTER},
    {"json", 0, O_JSON, F_JSON},
    {"timeout-ms", 1, O_TIMEOUT, F_TIMEOUT},
    {"queries", 1, O_QUERIES, F_QUERY},
    {"gt", 1, O_GT, F_QUERY},
    {"k", 1, O_K, F_QUERY},
    {"nprobe", 1, O_NPROBE, F_QUERY},
    {"ef-search", 1, O_EF, F_QUERY},
    {"quantizer-ef-search", 1, O_QEF, F_QUERY},
    {"k-factor", 1, O_KFACTOR, F_QUERY},
    {"batch", 1, O_BATCH, F_QUERY},
    {"concurrency", 1, O_CONC, F_QUERY},
    {"limit", 1, O_LIMIT, F_QUERY},
    {"index-version", 1, O_INDEX_VERSION, F_QUERY},
    {"model-version", 1, O_MODEL_VERSION, F_QUERY},
    {"min-coverage", 1, O_MIN_COVERAGE, F_QUERY},
    {"service", 1, O_SERVICE, F_HEALTH},
    {"wait-ms", 1, O_WAIT, F_HEALTH},
    {"rate", 1, O_RATE, F_QUERY},
    {"filter", 1, O_FILTER, F_QUERY},
    {"group-by", 1, O_GROUP_BY, F_QUERY},
    {"priority", 1, O_PRIORITY, F_QUERY},
};
#define N_FLAGS (sizeof flags / sizeof flags[0])

/* flag is the name without dashes; the messages say "--name". */
static vs_status parse_int(const char *flag, const char *s, long long lo, long long hi, long long *out,
                           char err[VS_ERR_LEN])
{
    char name[64];
    snprintf(name, sizeof name, "--%s", flag);
    return vs_cli_parse_int(name, s, lo, hi, out, err);
}

static vs_status parse_float(const char *flag, const char *s, double lo, double hi, float *out,
                             char err[VS_ERR_LEN])
{
    char name[64];
    double v;
    snprintf(name, sizeof name, "--%s", flag);
    vs_status st = vs_cli_parse_double(name, s, lo, hi, &v, err);
    if (st == VS_OK)
        *out = (float)v;
    return st;
}

static const flag_t *flag_by_id(int id)
{
    for (size_t i = 0; i < N_FLAGS; i++)
        if (flags[i].id == id)
            return &flags[i];
    return NULL;
}

/* One flag's value into o. */
static vs_status set_flag(vs_admin_opts_t *o, const flag_t *f, const char *arg, char err[VS_ERR_LEN])
{
    long long v = 0;
    vs_status st = VS_OK;
    switch (f->id) {
    case O_COORD:
        o->coordinator = arg;
        break;
    case O_ETCD:
        o->etcd = arg;
        break;
    case O_CLUSTER:
        o->cluster = arg;
        o->cluster_given = 1;
        break;
    case O_JSON:
        o->json = 1;
        break;
    case O_TIMEOUT:
        if ((st = parse_int(f->name, arg, 1, 3600000, &v, err)) == VS_OK)
            o->timeout_ms = v;
        break;
    case O_QUERIES:
        o->queries_path = arg;
        break;
    case O_GT:
        o->gt_path = arg;
        break;
    case O_K:
        if ((st = parse_int(f->name, arg, 1, VS_ADMIN_MAX_K, &v, err)) == VS_OK)
            o->k = (uint32_t)v;
        break;
    case O_NPROBE:
        if ((st = parse_int(f->name, arg, 0, 65536, &v, err)) == VS_OK)
            o->nprobe = (uint32_t)v;
        break;
    case O_EF:
        if ((st = parse_int(f->name, arg, 0, 65536, &v, err)) == VS_OK)
            o->ef_search = (uint32_t)v;
        break;
    case O_QEF:
        if ((st = parse_int(f->name, arg, 0, 65536, &v, err)) == VS_OK)
            o->quantizer_ef_search = (uint32_t)v;
        break;
    case O_KFACTOR:
        st = parse_float(f->name, arg, 0, 1000, &o->k_factor, err);
        if (st == VS_OK && o->k_factor != 0 && o->k_factor < 1)
            st = vs_errf(err, VS_ERR_INVALID_ARGUMENT, "--k-factor '%s' must be 0 (default) or 1..1000", arg);
        break;
    case O_BATCH:
        if ((st = parse_int(f->name, arg, 1, VS_ADMIN_MAX_BATCH, &v, err)) == VS_OK)
            o->batch = (size_t)v;
        break;
    case O_CONC:
        if ((st = parse_int(f->name, arg, 1, VS_ADMIN_MAX_CONCURRENCY, &v, err)) == VS_OK)
            o->concurrency = (size_t)v;
        break;
    case O_LIMIT:
        if ((st = parse_int(f->name, arg, 0, (long long)1 << 40, &v, err)) == VS_OK)
            o->limit = (size_t)v;
        break;
    case O_INDEX_VERSION:
        o->index_version = arg;
        break;
    case O_MODEL_VERSION:
        o->model_version = arg;
        break;
    case O_MIN_COVERAGE:
        st = parse_float(f->name, arg, 0, 1, &o->min_coverage, err);
        break;
    case O_PRIORITY:
        if ((o->priority = vs_priority_parse(arg)) < 0)
            st = vs_errf(err, VS_ERR_INVALID_ARGUMENT,
                         "--priority must be online, batch, recall or canary, not '%s'", arg);
        break;
    case O_SERVICE:
        o->service = arg;
        break;
    case O_WAIT:
        if ((st = parse_int(f->name, arg, 0, 3600000, &v, err)) == VS_OK)
            o->wait_ms = v;
        break;
    case O_FILTER: {
        vs_filter_spec_t spec;
        if ((st = vs_filter_spec_parse(arg, &spec, err)) == VS_OK) {
            vs_filter_spec_fini(&spec);
            o->filter = arg;
        }
        break;
    }
    case O_GROUP_BY: {
        const char *colon = strchr(arg, ':');
        size_t len = colon ? (size_t)(colon - arg) : strlen(arg);
        o->group_size = 1;
        if (len == 0 || len > VS_ATTR_NAME_MAX) {
            st = vs_errf(err, VS_ERR_INVALID_ARGUMENT, "--group-by '%s' is not FIELD or FIELD:N", arg);
            break;
        }
        memcpy(o->group_by, arg, len);
        o->group_by[len] = '\0';
        if (!vs_attr_name_valid(o->group_by))
            st = vs_errf(err, VS_ERR_INVALID_ARGUMENT, "--group-by: '%s' is not a field name", o->group_by);
        else if (colon && (st = parse_int(f->name, colon + 1, 1, VS_ADMIN_MAX_K, &v, err)) == VS_OK)
            o->group_size = (uint32_t)v;
        break;
    }
    case O_RATE: {
        float rate;
        if ((st = parse_float(f->name, arg, 0, 1000000, &rate, err)) == VS_OK)
            o->rate = rate;
        break;
    }
    default:
        st = vs_errf(err, VS_ERR_INTERNAL, "flag table out of sync");
    }
    return st;
}

vs_status vs_admin_parse(vs_admin_cmd cmd, int argc, char **argv, vs_admin_opts_t *out, char err[VS_ERR_LEN])
{
    unsigned allowed = cmd_flags(cmd);
    if (!allowed)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "unknown command");
    struct option longopts[N_FLAGS + 2];
    for (size_t i = 0; i < N_FLAGS; i++)
        longopts[i] = (struct option){flags[i].name, flags[i].has_arg ? required_argument : no_argument, 0,
                                      flags[i].id};
    longopts[N_FLAGS] = (struct option){"help", no_argument, 0, 'h'};
    longopts[N_FLAGS + 1] = (struct option){0, 0, 0, 0};

    vs_admin_opts_t o = {.cmd = cmd,
                         .cluster = "default",
                         .service = "",
                         .k = 10,
                         .batch = 1,
                         .concurrency = 1,
                         .timeout_ms = cmd == VS_ADMIN_QUERY ? 1000 : 5000};
    optind = 0; /* glibc: full re-initialisation, so the parser can run more than once per process */
    opterr = 0;
    char xerr[VS_ERR_LEN];
    if (vs_cli_exact_long_options(argc, argv, longopts, xerr) != 0)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "%.400s (see vecshard %s --help)", xerr, cmd_name(cmd));
    int c;
    /* "+": stop at the first non-option, so a stray positional is reported rather than permuted. */
    while ((c = getopt_long(argc, argv, "+:h", longopts, NULL)) != -1) {
        if (c == 'h') {
            *out = o;
            out->help = 1;
            return VS_OK;
        }
        if (c == '?' || c == ':') {
            const char *bad = argv[optind - 1];
            return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "%s '%s' (see vecshard %s --help)",
                           c == ':' ? "missing value for" : "unknown flag", bad, cmd_name(cmd));
        }
        const flag_t *f = flag_by_id(c);
        if (!f)
            return vs_errf(err, VS_ERR_INTERNAL, "flag table out of sync");
        if (!(f->group & allowed))
            return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "it does not take --%s (see vecshard %s --help)",
                           f->name, cmd_name(cmd));
        vs_status st = set_flag(&o, f, optarg, err);
        if (st != VS_OK)
            return st;
    }
    if (optind < argc)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "unexpected argument '%s' (see vecshard %s --help)",
                       argv[optind], cmd_name(cmd));

    switch (cmd) {
    case VS_ADMIN_QUERY:
        if (!o.coordinator || !o.queries_path)
            return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "--coordinator and --queries are required");
        break;
    case VS_ADMIN_STATUS:
    case VS_ADMIN_HEALTH:
        if (!o.coordinator)
            return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "--coordinator is required");
        break;
    case VS_ADMIN_VERSIONS:
        if (!o.coordinator == !o.etcd)
            return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "give exactly one of --etcd and --coordinator");
        break;
    }
    if (o.coordinator && !*o.coordinator)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "--coordinator must not be empty");
    if (o.etcd && !*o.etcd)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "--etcd must not be empty");
    size_t cl = strlen(o.cluster);
    if (cl == 0 || cl >= VS_ADMIN_NAME_LEN ||
        strspn(o.cluster, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                          "0123456789._-") != cl)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "--cluster '%s' must match [A-Za-z0-9._-]{1,64}",
                       o.cluster);
    *out = o;
    return VS_OK;
}

void vs_admin_usage(FILE *f, vs_admin_cmd cmd)
{
    switch (cmd) {
    case VS_ADMIN_QUERY:
        fputs(
            "usage: vecshard query --coordinator ADDR --queries FILE [options]\n"
            "Sends each row of FILE once (or the first --limit rows) to vecshard.v1.Coordinator/Search in\n"
            "batches of --batch rows with --concurrency calls in flight, a new call leaving as one answers\n"
            "(bounded, closed-loop load; one client thread, asynchronous calls), then prints queries sent, "
            "failed calls by gRPC status,\n"
            "partial responses, recall@k against --gt, QPS, latency per call and the versions that "
            "answered.\n"
            "\n"
            "  --coordinator ADDR   coordinator gRPC address (host:port)\n"
            "  --queries FILE       query vectors: .fvecs, .bvecs, .npy, or MNIST idx (.gz too)\n"
            "  --gt FILE            ground truth, row i for query row i, at least k columns: .ivecs (base\n"
            "                       rows) or .npy int64 (item ids: vecshard-gt --ids)\n"
            "  --k N                results per query (default 10; 1..10000)\n"
            "  --nprobe N           IVF lists scanned per query (default: the index's)\n"
            "  --ef-search N        HNSW candidate list size (default: the index's)\n"
            "  --quantizer-ef-search N  IVF{n}_HNSW{M}: candidate list of the centroid search (FAISS\n"
            "                       quantizer_efSearch; default max(64, 2 nprobe))\n"
            "  --k-factor F         refine: re-rank k*F candidates (default: the index's)\n"
            "  --batch N            queries per call (default 1; 1..10000)\n"
            "  --concurrency N      calls in flight at once (default 1; 1..8192)\n"
            "  --limit N            send only the first N rows (default: every row)\n"
            "  --index-version V    pin index version V (default: the coordinator's active version)\n"
            "  --model-version M    only index versions built from embedding model M\n"
            "  --min-coverage F     below this fraction of partitions answer UNAVAILABLE, not partial "
            "(0..1)\n"
            "  --timeout-ms MS      deadline of each call (default 1000)\n"
            "  --priority P         online (default), batch, recall or canary: shed order under overload\n"
            "  --rate R             open loop: calls arrive at R per second (Poisson), whether or not "
            "earlier\n"
            "                       ones have answered (up to --concurrency in flight); latency is measured\n"
            "                       from each call's arrival time, so queueing is not hidden (default 0:\n"
            "                       closed loop)\n"
            "  --filter TEXT        only items whose attributes match: terms joined by '&', FIELD=V1|V2\n"
            "                       (integer field in a set) or FIELD=LO..HI (inclusive range, a side may\n"
            "                       be empty), e.g. 'market=3|7&price=..9.5'\n"
            "  --group-by FIELD[:N] at most N results (default 1) per value of integer field FIELD\n"
            "  --json               one JSON object instead of text\n"
            "  -h, --help           this help\n"
            "\n"
            "recall@k: mean over answered queries of |results[:k] & gt[:k]| / k. Latency: per call (a call\n"
            "carries --batch queries), send to answer, every call including failed ones. QPS: answered\n"
            "queries / wall time of the run. Calls are never retried.\n"
            "Exit status: 0 every call succeeded; 1 a call failed or a file could not be read; 2 usage.\n",
            f);
        break;
    case VS_ADMIN_STATUS:
        fputs("usage: vecshard status --coordinator ADDR [--json] [--timeout-ms MS]\n"
              "The coordinator's view (vecshard.v1.Coordinator/Status): cluster, active version, whether it\n"
              "reaches etcd, and per member: partition, replica id, address, state, versions held, latency\n"
              "EWMA and calls outstanding.\n"
              "\n"
              "  --coordinator ADDR   coordinator gRPC address (host:port)\n"
              "  --timeout-ms MS      deadline of the call (default 5000)\n"
              "  --json               one JSON object instead of text\n"
              "  -h, --help           this help\n"
              "Exit status: 0 answered; 1 the call failed; 2 usage.\n",
              f);
        break;
    case VS_ADMIN_VERSIONS:
        fputs(
            "usage: vecshard versions (--etcd URLS [--cluster NAME] | --coordinator ADDR) [--json]\n"
            "Index versions held by the cluster's members: per version, replicas by state (READY, LOADING,\n"
            "FAILED), partitions with a ready replica, members serving it as their active version, vectors.\n"
            "With --etcd it reads the member records /vecshard/<cluster>/members/<partition>/<replica-id>;\n"
            "with --coordinator, the members in its Status (versions there count as ready).\n"
            "\n"
            "  --etcd URLS          etcd client URLs, comma-separated (http://127.0.0.1:2379)\n"
            "  --cluster NAME       cluster name in the etcd keys (default: the one cluster etcd holds;\n"
            "                       'default' when it holds none)\n"
            "  --coordinator ADDR   coordinator gRPC address (host:port), instead of --etcd\n"
            "  --timeout-ms MS      deadline of each call (default 5000)\n"
            "  --json               one JSON object instead of text\n"
            "  -h, --help           this help\n"
            "Exit status: 0 read; 1 etcd or the coordinator could not be read; 2 usage.\n"
            "(vecshard deploy / activate / rollback change what is served: vecshard deploy --help.)\n",
            f);
        break;
    case VS_ADMIN_HEALTH:
        fputs(
            "usage: vecshard health --coordinator ADDR [--service NAME] [--wait-ms MS] [--json]\n"
            "grpc.health.v1.Health/Check of a coordinator (any vecshard server answers it: a shard too).\n"
            "\n"
            "  --coordinator ADDR   gRPC address (host:port)\n"
            "  --service NAME       health service name (default \"\": the server as a whole)\n"
            "  --wait-ms MS         poll every 100 ms until SERVING, for at most MS (default 0: check once)\n"
            "  --timeout-ms MS      deadline of each check (default 5000)\n"
            "  --json               one JSON object instead of text\n"
            "  -h, --help           this help\n"
            "Exit status: 0 SERVING; 1 anything else (NOT_SERVING, unreachable, unknown service); 2 usage.\n",
            f);
        break;
    default:
        fputs("usage: vecshard <command> [options]\n"
              "Admin tool and load generator for a vecshard cluster.\n"
              "\n"
              "commands:\n"
              "  query      send a query file through a coordinator: recall@k, QPS, latency, failed calls\n"
              "  status     the coordinator's members, versions and per-replica load\n"
              "  versions   index versions held by the members (from etcd or from the coordinator)\n"
              "  health     grpc.health.v1 check of a coordinator; --wait-ms waits for SERVING\n"
              "  deploy     stage an index version in etcd (shards load it in the background)\n"
              "  activate   switch the active version when every partition has it READY\n"
              "  rollback   switch back to the previous version\n"
              "  retire     make shards unload a staged, failed or previous version\n"
              "  remove     delete a staged, failed or retired version's record (frees its slot)\n"
              "  batch      offline batch neighbours: every query's top-K into Redis, switched atomically\n"
              "  token      new bearer token for a coordinator's --auth-tokens ($VECSHARD_TOKEN for the tools)\n"
              "\n"
              "'vecshard <command> --help' describes a command's options.\n"
              "Output is for people; --json gives one JSON object for scripts.\n"
              "Exit status: 0 success; 1 a call failed or a server could not be reached (query: any failed\n"
              "call); 2 usage error.\n",
              f);
    }
}
