/* report.c: the network-free half of `vecshard query`: recall, percentiles, the report built from the
 * per-call outcomes, and its text and JSON renderings. See admin.h. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/topk.h"
#include "coordinator/cli/admin.h"

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* |row[:at] & g[:at]| with each gt id counted once; sorted is scratch of at ids (used when at is large). */
static size_t row_hits(const int64_t *row, const int64_t *g, size_t at, int64_t *sorted)
{
    size_t hits = 0;
    if (at <= 64) {
        for (size_t j = 0; j < at; j++) {
            if (g[j] < 0)
                continue;
            int dup = 0;
            for (size_t i = 0; i < j && !dup; i++)
                dup = g[i] == g[j];
            if (dup)
                continue;
            for (size_t i = 0; i < at; i++) {
                if (row[i] == g[j]) {
                    hits++;
                    break;
                }
            }
        }
        return hits;
    }
    memcpy(sorted, row, at * sizeof *sorted);
    vs_ids_sort(sorted, at);
    for (size_t j = 0; j < at; j++) {
        int64_t want = g[j];
        if (want < 0)
            continue;
        int dup = 0;
        for (size_t i = 0; i < j && !dup; i++) /* quadratic only for at > 64 with duplicate gt ids; rare */
            dup = g[i] == g[j];
        if (!dup && bsearch(&want, sorted, at, sizeof *sorted, cmp_i64))
            hits++;
    }
    return hits;
}

double vs_admin_recall(const int64_t *ids, size_t k_ids, const int64_t *gt, size_t k_gt, size_t nq, size_t at)
{
    if (nq == 0 || at == 0)
        return 0;
    int64_t *scratch = at > 64 ? malloc(at * sizeof *scratch) : NULL;
    if (at > 64 && !scratch)
        return NAN;
    double sum = 0;
    for (size_t q = 0; q < nq; q++)
        sum += (double)row_hits(ids + q * k_ids, gt + q * k_gt, at, scratch) / (double)at;
    free(scratch);
    return sum / (double)nq;
}

double vs_admin_percentile(const double *sorted, size_t n, double p)
{
    if (n == 0)
        return NAN;
    if (p <= 0)
        return sorted[0];
    double rank = ceil(p / 100.0 * (double)n); /* 1-based */
    size_t r = rank < 1 ? 1 : rank > (double)n ? n : (size_t)rank;
    return sorted[r - 1];
}

const char *vs_admin_outcome_name(int outcome)
{
    static const char *const names[VS_ADMIN_N_OUTCOMES] = {
        "OK",        "CANCELLED",       "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
        "NOT_FOUND", "ALREADY_EXISTS",  "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
        "ABORTED",   "OUT_OF_RANGE",    "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
        "DATA_LOSS", "UNAUTHENTICATED", "BAD_RESPONSE",      "CLIENT_ERROR"};
    return outcome >= 0 && outcome < VS_ADMIN_N_OUTCOMES ? names[outcome] : "UNKNOWN";
}

vs_status vs_admin_report_build(const vs_admin_call_t *calls, size_t n_calls, const int64_t *ids,
                                size_t n_rows, uint32_t k, const int64_t *gt, uint32_t gt_dim, double seconds,
                                vs_admin_report_t *out, char err[VS_ERR_LEN])
{
    vs_admin_report_t r;
    memset(&r, 0, sizeof r);
    double *lat = malloc((n_calls ? n_calls : 1) * sizeof *lat);
    double *ok_lat = malloc((n_calls ? n_calls : 1) * sizeof *ok_lat);
    size_t n_ok = 0;
    if (!lat || !ok_lat) {
        free(lat);
        free(ok_lat);
        return vs_errf(err, VS_ERR_NOMEM, "no memory for %zu latencies", n_calls);
    }
    double recall_sum = 0, lat_sum = 0;
    int64_t *scratch = k > 64 ? malloc((size_t)k * sizeof *scratch) : NULL;
    if (k > 64 && !scratch) {
        free(lat);
        free(ok_lat);
        return vs_errf(err, VS_ERR_NOMEM, "no memory");
    }
    for (size_t i = 0; i < n_calls; i++) {
        const vs_admin_call_t *c = &calls[i];
        int oc = c->outcome >= 0 && c->outcome < VS_ADMIN_N_OUTCOMES ? c->outcome : 2 /* UNKNOWN */;
        r.calls++;
        r.queries_sent += c->nq;
        r.by_outcome[oc]++;
        lat[i] = c->latency_ms;
        lat_sum += c->latency_ms;
        if (oc != 0) {
            r.calls_failed++;
            if (!r.first_message[oc][0])
                snprintf(r.first_message[oc], sizeof r.first_message[oc], "%s",
                         c->message[0] ? c->message : "-");
            continue;
        }
        r.queries_answered += c->nq;
        ok_lat[n_ok++] = c->latency_ms;
        if (c->partial)
            r.partial_responses++;
        size_t v = 0;
        while (v < r.n_versions && strcmp(r.versions[v].name, c->version) != 0)
            v++;
        if (v == r.n_versions && r.n_versions < VS_ADMIN_MAX_VERSIONS)
            snprintf(r.versions[r.n_versions++].name, VS_ADMIN_NAME_LEN, "%s", c->version);
        if (v < r.n_versions)
            r.versions[v].calls++;
        else
            r.calls_other_versions++;
        if (gt && c->row0 + c->nq <= n_rows)
            for (size_t q = c->row0; q < c->row0 + c->nq; q++) {
                recall_sum += (double)row_hits(ids + q * k, gt + q * gt_dim, k, scratch) / (double)k;
                for (size_t j = 0; j < k && ids[q * k + j] >= 0; j++)
                    r.ids_returned++;
            }
    }
    free(scratch);
    qsort(lat, n_calls, sizeof *lat, cmp_double);
    r.lat_p50_ms = vs_admin_percentile(lat, n_calls, 50);
    r.lat_p95_ms = vs_admin_percentile(lat, n_calls, 95);
    r.lat_p99_ms = vs_admin_percentile(lat, n_calls, 99);
    r.lat_max_ms = n_calls ? lat[n_calls - 1] : NAN;
    r.lat_mean_ms = n_calls ? lat_sum / (double)n_calls : NAN;
    free(lat);
    qsort(ok_lat, n_ok, sizeof *ok_lat, cmp_double);
    r.ok_lat_p50_ms = n_ok ? vs_admin_percentile(ok_lat, n_ok, 50) : NAN;
    r.ok_lat_p99_ms = n_ok ? vs_admin_percentile(ok_lat, n_ok, 99) : NAN;
    free(ok_lat);
    r.calls_shed = r.by_outcome[8]; /* RESOURCE_EXHAUSTED */
    r.has_recall = gt != NULL;
    r.recall_at = k;
    r.recall = r.queries_answered ? recall_sum / (double)r.queries_answered : 0;
    r.seconds = seconds;
    r.qps = seconds > 0 ? (double)r.queries_answered / seconds : 0;
    *out = r;
    return VS_OK;
}

/* ---- printing ---- */

static void add_num_or_null(cJSON *o, const char *name, double v)
{
    if (isfinite(v))
        cJSON_AddNumberToObject(o, name, v);
    else
        cJSON_AddNullToObject(o, name);
}

void vs_admin_print_json(FILE *f, cJSON *o)
{
    char *s = cJSON_PrintUnformatted(o);
    if (s) {
        fprintf(f, "%s\n", s);
        cJSON_free(s);
    } else {
        fprintf(f, "{\"error\":\"out of memory\"}\n");
    }
    cJSON_Delete(o);
}

static void report_json(FILE *f, const vs_admin_opts_t *o, const vs_admin_report_t *r)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "coordinator", o->coordinator ? o->coordinator : "");
    cJSON_AddStringToObject(j, "queries_file", o->queries_path ? o->queries_path : "");
    cJSON_AddNumberToObject(j, "k", o->k);
    cJSON_AddNumberToObject(j, "batch", (double)o->batch);
    cJSON_AddNumberToObject(j, "concurrency", (double)o->concurrency);
    cJSON_AddStringToObject(j, "load", o->rate > 0 ? "open" : "closed");
    cJSON_AddNumberToObject(j, "rate", o->rate);
    cJSON *p = cJSON_AddObjectToObject(j, "params");
    cJSON_AddNumberToObject(p, "nprobe", o->nprobe);
    cJSON_AddNumberToObject(p, "ef_search", o->ef_search);
    cJSON_AddNumberToObject(p, "quantizer_ef_search", o->quantizer_ef_search);
    cJSON_AddNumberToObject(p, "k_factor", o->k_factor);
    cJSON_AddNumberToObject(j, "calls", (double)r->calls);
    cJSON_AddNumberToObject(j, "calls_failed", (double)r->calls_failed);
    cJSON_AddNumberToObject(j, "queries_sent", (double)r->queries_sent);
    cJSON_AddNumberToObject(j, "queries_answered", (double)r->queries_answered);
    cJSON *fb = cJSON_AddObjectToObject(j, "failed_by_status");
    for (int i = 1; i < VS_ADMIN_N_OUTCOMES; i++)
        if (r->by_outcome[i])
            cJSON_AddNumberToObject(fb, vs_admin_outcome_name(i), (double)r->by_outcome[i]);
    cJSON *fm = cJSON_AddObjectToObject(j, "first_error");
    for (int i = 1; i < VS_ADMIN_N_OUTCOMES; i++)
        if (r->by_outcome[i])
            cJSON_AddStringToObject(fm, vs_admin_outcome_name(i), r->first_message[i]);
    cJSON_AddNumberToObject(j, "partial_responses", (double)r->partial_responses);
    if (r->has_recall && r->queries_answered)
        cJSON_AddNumberToObject(j, "recall_at_k", r->recall);
    else
        cJSON_AddNullToObject(j, "recall_at_k");
    cJSON_AddNumberToObject(j, "seconds", r->seconds);
    cJSON_AddNumberToObject(j, "qps", r->qps);
    cJSON *l = cJSON_AddObjectToObject(j, "latency_ms");
    add_num_or_null(l, "mean", r->lat_mean_ms);
    add_num_or_null(l, "p50", r->lat_p50_ms);
    add_num_or_null(l, "p95", r->lat_p95_ms);
    add_num_or_null(l, "p99", r->lat_p99_ms);
    cJSON_AddNumberToObject(j, "calls_shed", (double)r->calls_shed);
    cJSON *lo = cJSON_AddObjectToObject(j, "answered_latency_ms");
    add_num_or_null(lo, "p50", r->ok_lat_p50_ms);
    add_num_or_null(lo, "p99", r->ok_lat_p99_ms);
    add_num_or_null(l, "max", r->lat_max_ms);
    cJSON *v = cJSON_AddObjectToObject(j, "index_versions");
    for (size_t i = 0; i < r->n_versions; i++)
        cJSON_AddNumberToObject(v, r->versions[i].name, (double)r->versions[i].calls);
    if (r->calls_other_versions)
        cJSON_AddNumberToObject(j, "calls_other_versions", (double)r->calls_other_versions);
    cJSON_AddBoolToObject(j, "mixed_versions", r->n_versions + (r->calls_other_versions > 0) > 1);
    vs_admin_print_json(f, j);
}

void vs_admin_report_print(FILE *f, const vs_admin_opts_t *o, const vs_admin_report_t *r, int json)
{
    if (json) {
        report_json(f, o, r);
        return;
    }
    fprintf(f, "queries sent       %zu in %zu calls (batch %zu, concurrency %zu) to %s\n", r->queries_sent,
            r->calls, o->batch, o->concurrency, o->coordinator ? o->coordinator : "?");
    if (o->rate > 0)
        fprintf(
            f,
            "load               open loop at %.1f calls/s (Poisson); latency from each call's arrival time\n",
            o->rate);
    fprintf(f, "failed calls       %zu", r->calls_failed);
    for (int i = 1; i < VS_ADMIN_N_OUTCOMES; i++)
        if (r->by_outcome[i])
            fprintf(f, "\n  %-18s %zu (first: %s)", vs_admin_outcome_name(i), r->by_outcome[i],
                    r->first_message[i]);
    fprintf(f, "\n");
    fprintf(f, "partial responses  %zu\n", r->partial_responses);
    if (r->has_recall && r->queries_answered)
        fprintf(f, "recall@%-11u %.4f (over %zu answered queries)\n", r->recall_at, r->recall,
                r->queries_answered);
    else if (r->has_recall)
        fprintf(f, "recall@%-11u - (no query answered)\n", r->recall_at);
    fprintf(f, "QPS                %.1f (%zu answered queries in %.2f s)\n", r->qps, r->queries_answered,
            r->seconds);
    if (r->calls)
        fprintf(f, "latency per call   p50 %.3f ms  p95 %.3f ms  p99 %.3f ms  max %.3f ms  mean %.3f ms\n",
                r->lat_p50_ms, r->lat_p95_ms, r->lat_p99_ms, r->lat_max_ms, r->lat_mean_ms);
    if (r->calls_shed)
        fprintf(f, "shed calls         %zu refused for overload; answered calls: p50 %.3f ms  p99 %.3f ms\n",
                r->calls_shed, r->ok_lat_p50_ms, r->ok_lat_p99_ms);
    fprintf(f, "index versions     ");
    if (!r->n_versions)
        fprintf(f, "-");
    for (size_t i = 0; i < r->n_versions; i++)
        fprintf(f, "%s%s (%zu calls)", i ? ", " : "", r->versions[i].name[0] ? r->versions[i].name : "\"\"",
                r->versions[i].calls);
    if (r->calls_other_versions)
        fprintf(f, ", others (%zu calls)", r->calls_other_versions);
    fprintf(f, "\n");
    if (r->n_versions + (r->calls_other_versions > 0) > 1)
        fprintf(
            f,
            "warning: responses came from %zu different index versions (a version switch during the run?)\n",
            r->n_versions + (r->calls_other_versions > 0));
}
