/* main.c: `vecshard`, the admin CLI and load generator. Picks the subcommand, lets admin.h parse its flags
 * and do the work, prints, and decides the exit status: 0 success, 1 a call failed or a server could not
 * be reached (query: any failed call), 2 usage error. */
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/cli/flags.h"
#include "coordinator/cli/admin.h"
#include "coordinator/auth.h"
#include "coordinator/cli/canary.h"
#include "coordinator/cli/rollout.h"
#include "coordinator/nbrs/run.h"

static int run_query(const vs_admin_opts_t *o)
{
    vs_admin_report_t r;
    char err[VS_ERR_LEN] = "";
    vs_status st = vs_admin_query_run(o, &r, err);
    if (st == VS_ERR_FAILED_PRECONDITION) { /* the ground truth shares no id with the answers: the run is
                                             * reported all the same, then refused */
        vs_admin_report_print(stdout, o, &r, o->json);
        fprintf(stderr, "vecshard query: %s\n", err);
        return 1;
    }
    if (st != VS_OK) {
        fprintf(stderr, "vecshard query: %s\n", err);
        return 1;
    }
    vs_admin_report_print(stdout, o, &r, o->json);
    return r.calls_failed ? 1 : 0;
}

static int run_status(const vs_admin_opts_t *o)
{
    vs_admin_cluster_t c;
    char err[VS_ERR_LEN] = "", cluster[65];
    snprintf(cluster, sizeof cluster, "%s", o->cluster);
    vs_status st = VS_OK;
    if (o->cmd == VS_ADMIN_VERSIONS && o->etcd && !o->cluster_given) /* the one cluster etcd holds */
        st = vs_admin_find_cluster(o->etcd, o->timeout_ms, cluster, err);
    if (st == VS_OK)
        st = o->cmd == VS_ADMIN_VERSIONS && o->etcd
                 ? vs_admin_members_from_etcd(o->etcd, cluster, o->timeout_ms, &c, err)
                 : vs_admin_status_fetch(o->coordinator, o->timeout_ms, &c, err);
    if (st != VS_OK) {
        fprintf(stderr, "vecshard %s: %s\n", o->cmd == VS_ADMIN_VERSIONS ? "versions" : "status", err);
        return 1;
    }
    if (o->cmd == VS_ADMIN_VERSIONS)
        vs_admin_versions_print(stdout, &c, o->json);
    else
        vs_admin_status_print(stdout, &c, o->json);
    vs_admin_cluster_fini(&c);
    return 0;
}

static const char *health_name(int s)
{
    switch (s) {
    case 0:
        return "UNKNOWN";
    case 1:
        return "SERVING";
    case 2:
        return "NOT_SERVING";
    case 3:
        return "SERVICE_UNKNOWN";
    }
    return s < 0 ? vs_admin_outcome_name(-s) : "?";
}

static int run_health(const vs_admin_opts_t *o)
{
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int status = 0;
    char err[VS_ERR_LEN] = "";
    for (;;) {
        err[0] = 0;
        vs_status st = vs_admin_health_check(o->coordinator, o->service, o->timeout_ms, &status, err);
        if (st != VS_OK)
            status = -14; /* reported as UNAVAILABLE */
        clock_gettime(CLOCK_MONOTONIC, &now);
        int64_t waited_ms = (now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000;
        if (status == 1 || waited_ms + 100 > o->wait_ms)
            break;
        nanosleep(&(struct timespec){0, 100 * 1000000L}, NULL);
    }
    vs_admin_health_print(stdout, o->coordinator, o->service, health_name(status), status != 1 ? err : "",
                          o->json);
    return status == 1 ? 0 : 1;
}

static void rollout_usage(FILE *f)
{
    fprintf(
        f, "usage: vecshard deploy MANIFEST --etcd URLS [--cluster NAME]\n"
           "       vecshard activate VERSION --etcd URLS [--cluster NAME] [--min-ready N] [--force]\n"
           "                [--canary COORDINATOR [--canary-min-recall R] [--canary-queries N]]\n"
           "       vecshard rollback --etcd URLS [--cluster NAME] [--min-ready N]\n"
           "       vecshard retire VERSION --etcd URLS [--cluster NAME]\n"
           "       vecshard remove VERSION --etcd URLS [--cluster NAME]\n"
           "deploy stages an index version (shards load it in the background); the same name with other\n"
           "content is refused. activate switches the active version once every partition has N replicas\n"
           "(default 1) with it READY, and refuses a version whose dim, metric, partitioning, partition\n"
           "count or embedding model differs from the active one unless --force (an intended model change).\n"
           "With --canary, activate first measures the version's recall through that coordinator on the\n"
           "query set stored with the version (its answers with its search defaults against exact answers\n"
           "from the shards) and refuses, with the figures, below R (default: the target recorded in its\n"
           "manifest); --canary-queries: how many of the stored queries (default 500).\n"
           "rollback switches back to the previous version, kept loaded until the next activation.\n"
           "retire makes shards unload a staged, failed or previous version; remove deletes the record of a\n"
           "staged, failed or retired version (its slot is freed, the name can be deployed again).\n"
           "Every change leaves an audit record under /vecshard/<cluster>/audit/.\n"
           "The protocol and its etcd keys: docs/protocol.md, \"Rollout\". Exit status: 0 done, 1 refused\n"
           "or failed (the message says why), 2 usage.\n");
}

/* `vecshard token new --permission search|write|admin [--name N]`: a random token (32 bytes from
 * /dev/urandom, hex) for a client, and the line of the coordinator's --auth-tokens file (its SHA-256). */
static int run_token(int argc, char **argv)
{
    const char *perm = NULL, *name = "unnamed"; /* argv[0] "token", argv[1] "new" */
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--permission") == 0 && i + 1 < argc)
            perm = argv[++i];
        else if (strcmp(argv[i], "--name") == 0 && i + 1 < argc)
            name = argv[++i];
        else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            perm = NULL, argc = 0;
        else
            perm = NULL;
    }
    if (argc < 2 || strcmp(argv[1], "new") != 0 || !perm ||
        (strcmp(perm, "search") != 0 && strcmp(perm, "write") != 0 && strcmp(perm, "admin") != 0) ||
        strlen(name) > 63 || strchr(name, ' ')) {
        fprintf(
            argc ? stderr : stdout,
            "usage: vecshard token new --permission search|write|admin [--name NAME]\n"
            "Prints a new bearer token (give it to the client: $VECSHARD_TOKEN for the vecshard tools,\n"
            "vecshard.Client(token=...) in Python) and the line to add to the coordinator's --auth-tokens\n"
            "file, which keeps only its SHA-256. search: Search; write: Search, Upsert, Delete; admin: "
            "all.\n");
        return argc ? 2 : 0;
    }
    unsigned char raw[32];
    FILE *f = fopen("/dev/urandom", "rb");
    if (!f || fread(raw, 1, sizeof raw, f) != sizeof raw) {
        if (f)
            fclose(f);
        fprintf(stderr, "vecshard token: cannot read /dev/urandom\n");
        return 1;
    }
    fclose(f);
    char token[5 + 64 + 1] = "vst_", hash[65];
    for (int i = 0; i < 32; i++)
        sprintf(token + 4 + 2 * i, "%02x", raw[i]);
    vs_auth_hash(token, hash);
    printf("token: %s\nline:  %s %s %s\n", token, perm, hash, name);
    return 0;
}

/* The canary gate of activate --canary: measured recall at or above the minimum (default: the version's
 * recorded target), else VS_ERR_FAILED_PRECONDITION with the figures. Prints the measurement. */
static vs_status run_canary(vs_etcd_t *e, const char *cluster, const char *version, const char *addr,
                            double min_recall, size_t max_queries, char msg[VS_ERR_LEN])
{
    char manifest[PATH_MAX];
    vs_status st = vs_rollout_version_manifest(e, cluster, version, manifest, msg);
    vs_canary_result_t r;
    if (st == VS_OK)
        st = vs_canary_measure(addr, manifest, version, 0, max_queries, 60000, &r, msg);
    if (st != VS_OK)
        return st;
    double min = min_recall >= 0 ? min_recall : r.target;
    if (min_recall < 0 && r.target <= 0)
        return vs_errf(
            msg, VS_ERR_FAILED_PRECONDITION,
            "canary: version %s measured recall@%u %.4f on %zu stored queries, but its manifest records "
            "no target: give --canary-min-recall",
            version, r.k, r.recall, r.queries);
    printf(
        "canary: version %s recall@%u %.4f on %zu stored queries through %s (minimum %.4f; at build %.4f)\n",
        version, r.k, r.recall, r.queries, addr, min, r.build_measured);
    if (r.recall + 1e-9 < min)
        return vs_errf(
            msg, VS_ERR_FAILED_PRECONDITION,
            "canary: version %s measured recall@%u %.4f on %zu stored queries, below %.4f (%s; %.4f at "
            "build): not activated",
            version, r.k, r.recall, r.queries, min, min_recall >= 0 ? "--canary-min-recall" : "its target",
            r.build_measured);
    return VS_OK;
}

/* deploy / activate / rollback: the rollout writes in etcd (rollout.h). */
static int run_rollout(const char *cmd, int argc, char **argv)
{
    static const struct option opts[] = {{"etcd", required_argument, 0, 'e'},
                                         {"cluster", required_argument, 0, 'c'},
                                         {"min-ready", required_argument, 0, 'r'},
                                         {"force", no_argument, 0, 'f'},
                                         {"canary", required_argument, 0, 'C'},
                                         {"canary-min-recall", required_argument, 0, 'R'},
                                         {"canary-queries", required_argument, 0, 'Q'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *etcd = NULL, *cluster = "default", *canary = NULL;
    double canary_min = -1;
    long long canary_queries = 500;
    long long min_ready = 1;
    int force = 0;
    char msg[VS_ERR_LEN] = "";
    int o;
    optind = 1;
    if (vs_cli_exact_long_options(argc, argv, opts, msg) != 0) {
        fprintf(stderr, "vecshard %s: %s\n", cmd, msg);
        return 2;
    }
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case 'e':
            etcd = optarg;
            break;
        case 'c':
            cluster = optarg;
            break;
        case 'r':
            if (vs_cli_parse_int("--min-ready", optarg, 1, 1000, &min_ready, msg) != VS_OK) {
                fprintf(stderr, "vecshard %s: %s\n", cmd, msg);
                return 2;
            }
            break;
        case 'f':
            force = 1;
            break;
        case 'C':
            canary = optarg;
            break;
        case 'R':
            if (vs_cli_parse_double("--canary-min-recall", optarg, 0, 1, &canary_min, msg) != VS_OK) {
                fprintf(stderr, "vecshard %s: %s\n", cmd, msg);
                return 2;
            }
            break;
        case 'Q':
            if (vs_cli_parse_int("--canary-queries", optarg, 1, 1000000, &canary_queries, msg) != VS_OK) {
                fprintf(stderr, "vecshard %s: %s\n", cmd, msg);
                return 2;
            }
            break;
        case 'h':
            rollout_usage(stdout);
            return 0;
        default:
            rollout_usage(stderr);
            return 2;
        }
    }
    int need_arg = strcmp(cmd, "rollback") != 0;
    if (!etcd || optind + need_arg != argc || (canary && strcmp(cmd, "activate") != 0)) {
        rollout_usage(stderr);
        return 2;
    }
    vs_etcd_t *e;
    vs_etcd_opts_t eo = {.endpoints = etcd};
    vs_status st = vs_etcd_create(&eo, &e, msg);
    if (st == VS_OK) {
        if (strcmp(cmd, "deploy") == 0)
            st = vs_rollout_deploy(e, cluster, argv[optind], msg);
        else if (strcmp(cmd, "activate") == 0) {
            if (canary)
                st = run_canary(e, cluster, argv[optind], canary, canary_min, (size_t)canary_queries, msg);
            if (st == VS_OK)
                st = vs_rollout_activate(e, cluster, argv[optind], (size_t)min_ready, force, msg);
        } else if (strcmp(cmd, "retire") == 0)
            st = vs_rollout_retire(e, cluster, argv[optind], msg);
        else if (strcmp(cmd, "remove") == 0)
            st = vs_rollout_remove(e, cluster, argv[optind], msg);
        else
            st = vs_rollout_rollback(e, cluster, (size_t)min_ready, msg);
        vs_etcd_destroy(e);
    }
    if (st != VS_OK) {
        fprintf(stderr, "vecshard %s: %s (%s)\n", cmd, msg, vs_status_name(st));
        return 1;
    }
    printf("%s\n", msg);
    return 0;
}

int main(int argc, char **argv)
{
    if (vs_cli_version_flag(argc, argv, "vecshard"))
        return 0;
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2) {
        vs_admin_usage(stderr, 0);
        return 2;
    }
    const char *name = argv[1];
    if (strcmp(name, "-h") == 0 || strcmp(name, "--help") == 0 || strcmp(name, "help") == 0) {
        vs_admin_cmd c = argc > 2 ? vs_admin_cmd_parse(argv[2]) : 0;
        vs_admin_usage(stdout, c);
        return 0;
    }
    if (strcmp(name, "deploy") == 0 || strcmp(name, "activate") == 0 || strcmp(name, "rollback") == 0 ||
        strcmp(name, "retire") == 0 || strcmp(name, "remove") == 0)
        return run_rollout(name, argc - 1, argv + 1);
    if (strcmp(name, "batch") == 0)
        return vs_nbrs_main(argc - 1, argv + 1);
    if (strcmp(name, "token") == 0)
        return run_token(argc - 1, argv + 1);
    vs_admin_cmd cmd = vs_admin_cmd_parse(name);
    if (!cmd) {
        fprintf(stderr, "vecshard: unknown command '%s' (see vecshard --help)\n", name);
        return 2;
    }
    vs_admin_opts_t o;
    char err[VS_ERR_LEN] = "";
    if (vs_admin_parse(cmd, argc - 1, argv + 1, &o, err) != VS_OK) {
        fprintf(stderr, "vecshard %s: %s\n", name, err);
        return 2;
    }
    if (o.help) {
        vs_admin_usage(stdout, cmd);
        return 0;
    }
    switch (cmd) {
    case VS_ADMIN_QUERY:
        return run_query(&o);
    case VS_ADMIN_STATUS:
    case VS_ADMIN_VERSIONS:
        return run_status(&o);
    case VS_ADMIN_HEALTH:
        return run_health(&o);
    }
    return 2;
}
