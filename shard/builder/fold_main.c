/* vecshard-fold: folds the write log into the input of the next build (shard/builder/fold.h). Reads the
 * cluster's write log (NATS JetStream) from --from to --upto, applies it to --base/--ids with the
 * replicas' rules, writes the folded input (.fvecs + .i64 ids, and with --attr the folded attribute columns
 * in --out-attr) and prints the last sequence folded, for `vecshard-build --log-upto`. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cli/flags.h"
#include "common/filter.h"
#include "common/net/wlog.h"
#include "common/vecio.h"
#include "shard/builder/fold.h"

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: vecshard-fold --base FILE [--ids FILE] --nats-url URL --cluster NAME --out-base F.fvecs\n"
        "                     --out-ids F.i64 [--model-version M] [--from SEQ] [--upto SEQ]\n"
        "                     [--attr NAME=FILE ... --out-attr DIR]\n"
        "Folds the write log into the input of the next build: the rows of --base whose id the log did not\n"
        "touch, then every id's last upsert (deletes drop the id; upserts of another embedding model and\n"
        "malformed messages are skipped, as the replicas skip them). Prints JSON with log_upto, the last\n"
        "sequence folded: build with `vecshard-build --base F.fvecs --ids F.i64 --log-upto N ...`.\n"
        "With --attr, the base's attribute columns are folded with the rows (a kept row keeps its\n"
        "values, an upserted id takes its last upsert's, missing where that upsert gave none): add\n"
        "`--attr NAME=DIR/NAME.npy` for each field to the build.\n"
        "\n"
        "  --base FILE        the last build's vectors (.fvecs, .bvecs, .npy)\n"
        "  --ids FILE         their ids (.npy int64 or .i64; default: row numbers)\n"
        "  --nats-url URL     the write log's NATS server\n"
        "  --cluster NAME     the cluster (stream VS_<NAME>)\n"
        "  --model-version M  the embedding model of the build (default \"\": every model)\n"
        "  --from SEQ         the first sequence to fold: the last build's log_upto + 1 (default 1)\n"
        "  --upto SEQ         the last sequence to fold (default: the stream's last when the fold starts)\n"
        "  --out-base FILE    the folded vectors (.fvecs)\n"
        "  --out-ids FILE     the folded ids (.i64, raw little-endian int64)\n"
        "  --attr NAME=FILE   an attribute column of --base, as vecshard-build --attr takes it (repeatable,\n"
        "                     at most 16): one value per base row, .npy <i8/<i4 integer or <f4/<f8 float\n"
        "  --out-attr DIR     the folded columns: DIR/NAME.npy per field (<i8 integer, <f4 float; missing\n"
        "                     values INT64_MIN or NaN), one value per folded row (needs --attr)\n"
        "  -h, --help         this help\n");
}

typedef struct run {
    vs_fold_t *fold;
    uint64_t upto;
} run_t;

static vs_status add_one(void *user, uint64_t seq, const uint8_t *msg, size_t len, char err[VS_ERR_LEN])
{
    run_t *r = user;
    if (seq > r->upto)
        return vs_errf(err, VS_ERR_OUT_OF_RANGE, "past --upto"); /* stops the batch; not folded */
    return vs_fold_add(r->fold, msg, len, err);
}

int main(int argc, char **argv)
{
    const char *base = NULL, *ids = NULL, *url = NULL, *cluster = NULL, *model = "", *out_base = NULL,
               *out_ids = NULL, *out_attr = NULL;
    vs_builder_attr_t attrs[VS_ATTR_MAX_FIELDS];
    char attr_names[VS_ATTR_MAX_FIELDS][VS_ATTR_NAME_MAX + 1];
    size_t n_attrs = 0;
    long long from = 1, upto = 0;
    static const struct option lo[] = {{"base", 1, 0, 'b'},
                                       {"ids", 1, 0, 'i'},
                                       {"nats-url", 1, 0, 'n'},
                                       {"cluster", 1, 0, 'c'},
                                       {"model-version", 1, 0, 'm'},
                                       {"from", 1, 0, 'f'},
                                       {"upto", 1, 0, 'u'},
                                       {"out-base", 1, 0, 'B'},
                                       {"out-ids", 1, 0, 'I'},
                                       {"attr", 1, 0, 'A'},
                                       {"out-attr", 1, 0, 'O'},
                                       {"help", 0, 0, 'h'},
                                       {0, 0, 0, 0}};
    char err[VS_ERR_LEN];
    int o;
    if (vs_cli_exact_long_options(argc, argv, lo, err) != 0) {
        fprintf(stderr, "vecshard-fold: %s\n", err);
        return 2;
    }
    while ((o = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (o) {
        case 'b':
            base = optarg;
            break;
        case 'i':
            ids = optarg;
            break;
        case 'n':
            url = optarg;
            break;
        case 'c':
            cluster = optarg;
            break;
        case 'm':
            model = optarg;
            break;
        case 'B':
            out_base = optarg;
            break;
        case 'I':
            out_ids = optarg;
            break;
        case 'A': { /* NAME=FILE, as vecshard-build parses it */
            const char *eq = strchr(optarg, '=');
            if (!eq || eq == optarg || !eq[1]) {
                fprintf(stderr, "vecshard-fold: --attr '%s' must be NAME=FILE\n", optarg);
                return 2;
            }
            if (n_attrs == VS_ATTR_MAX_FIELDS) {
                fprintf(stderr, "vecshard-fold: at most %d --attr fields\n", VS_ATTR_MAX_FIELDS);
                return 2;
            }
            size_t len = (size_t)(eq - optarg);
            if (len > VS_ATTR_NAME_MAX) {
                fprintf(stderr, "vecshard-fold: --attr '%s': the name is longer than %d characters\n", optarg,
                        VS_ATTR_NAME_MAX);
                return 2;
            }
            memcpy(attr_names[n_attrs], optarg, len);
            attr_names[n_attrs][len] = 0;
            attrs[n_attrs] = (vs_builder_attr_t){attr_names[n_attrs], eq + 1};
            n_attrs++;
            break;
        }
        case 'O':
            out_attr = optarg;
            break;
        case 'f':
        case 'u':
            if (vs_cli_parse_int(o == 'f' ? "--from" : "--upto", optarg, o == 'f' ? 1 : 0, (1ll << 62),
                                 o == 'f' ? &from : &upto, err) != VS_OK) {
                fprintf(stderr, "vecshard-fold: %s\n", err);
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!base || !url || !cluster || !out_base || !out_ids || optind < argc) {
        fprintf(stderr, "vecshard-fold: --base, --nats-url, --cluster, --out-base and --out-ids are required "
                        "(see --help)\n");
        return 2;
    }
    if ((n_attrs > 0) != (out_attr != NULL)) {
        fprintf(stderr, "vecshard-fold: %s (see --help)\n",
                out_attr ? "--out-attr needs the base's columns (--attr NAME=FILE)"
                         : "--attr needs --out-attr DIR, where the folded columns go");
        return 2;
    }
    vs_vecfile_t *vf = NULL;
    if (vs_vecfile_open(base, &vf, err) != VS_OK) {
        fprintf(stderr, "vecshard-fold: %s\n", err);
        return 1;
    }
    uint32_t dim = vs_vecfile_dim(vf);
    size_t base_rows = vs_vecfile_count(vf);
    vs_vecfile_close(vf);
    vs_attr_field_t fields[VS_ATTR_MAX_FIELDS];
    if (vs_fold_attrs_schema(attrs, n_attrs, base_rows, fields, err) != VS_OK) { /* before reading the log */
        fprintf(stderr, "vecshard-fold: %s\n", err);
        return 1;
    }
    vs_wlog_opts_t wo = {.url = url, .cluster = cluster, .timeout_ms = 5000};
    vs_wlog_t *w = NULL;
    vs_wlog_state_t s;
    vs_status st = vs_wlog_open(&wo, 0, &w, err);
    if (st == VS_OK)
        st = vs_wlog_state(w, &s, err);
    if (st != VS_OK) {
        fprintf(stderr, "vecshard-fold: %s\n", err);
        vs_wlog_close(w);
        return 1;
    }
    if (upto == 0)
        upto = (long long)s.last_seq;
    if (upto > (long long)s.last_seq) {
        fprintf(stderr, "vecshard-fold: --upto %lld is past the log's last message (%llu)\n", upto,
                (unsigned long long)s.last_seq);
        vs_wlog_close(w);
        return 1;
    }
    run_t r = {.upto = (uint64_t)upto};
    st = vs_fold_create(dim, model, &r.fold, err);
    if (st == VS_OK)
        st = vs_fold_set_schema(r.fold, fields, n_attrs, err);
    vs_wlog_reader_t *rd = NULL;
    if (st == VS_OK && from <= upto)
        st = vs_wlog_reader_open(w, (uint64_t)from, &rd, err); /* refuses a log that lost what we need */
    while (st == VS_OK && rd && vs_wlog_reader_position(rd) <= (uint64_t)upto) {
        size_t n = 0;
        st = vs_wlog_reader_next(rd, 1024, 1000, add_one, &r, &n, err);
        if (st == VS_ERR_OUT_OF_RANGE)
            st = VS_OK;
    }
    vs_wlog_reader_close(rd);
    vs_wlog_close(w);
    if (st == VS_OK)
        st = vs_fold_write(r.fold, base, ids, n_attrs ? attrs : NULL, out_base, out_ids, out_attr, err);
    if (st != VS_OK) {
        fprintf(stderr, "vecshard-fold: %s\n", err);
        vs_fold_destroy(r.fold);
        return 1;
    }
    vs_fold_counts_t c;
    vs_fold_counts(r.fold, &c);
    printf("{\"log_from\":%lld,\"log_upto\":%lld,\"messages\":%llu,\"upserts\":%llu,\"deletes\":%llu,"
           "\"other_model\":%llu,\"rejected\":%llu,\"base_rows\":%llu,\"kept\":%llu,\"replaced\":%llu,"
           "\"removed\":%llu,\"rows\":%llu}\n",
           from, upto, (unsigned long long)c.messages, (unsigned long long)c.upserts,
           (unsigned long long)c.deletes, (unsigned long long)c.other_model, (unsigned long long)c.rejected,
           (unsigned long long)c.base_rows, (unsigned long long)c.kept, (unsigned long long)c.replaced,
           (unsigned long long)c.removed, (unsigned long long)c.written);
    vs_fold_destroy(r.fold);
    return 0;
}
