/* metrics.h: a small Prometheus metrics registry (counters, gauges, histograms with labels) and its
 * text exposition format 0.0.4.
 *
 * It does not open sockets or start threads: common/net/http.h serves the text on GET /metrics.
 * Key design choice: a labelled child (one label-value combination) is created once under the registry
 * mutex and never moves or dies before the registry does, so hot paths look it up once, cache the
 * pointer, and then update it with C11 atomics only (no lock, no allocation). Counters and histogram
 * buckets are _Atomic uint64_t; gauges and histogram sums are doubles kept as bits in an _Atomic
 * uint64_t and updated by compare-and-swap.
 *
 * Naming (docs/decisions.md, "Metrics"): go-grpc-prometheus names for RPC metrics, a `vecshard_` prefix
 * for domain metrics, base units (seconds, bytes), counters end in `_total`. */
#ifndef VS_COMMON_NET_METRICS_H
#define VS_COMMON_NET_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

/* Limits checked at registration and lookup. */
#define VS_METRICS_MAX_LABELS 4       /* label names per family */
#define VS_METRICS_MAX_BUCKETS 64     /* finite bucket bounds per histogram (+Inf is implicit) */
#define VS_METRICS_MAX_CHILDREN 10000 /* label-value combinations per family (a cardinality cap) */
#define VS_METRICS_MAX_VALUE_LEN 1024 /* bytes per label value */

/* gRPC default latency buckets in seconds (as go-grpc-prometheus and etcd):
 * .005 .01 .025 .05 .1 .25 .5 1 2.5 5 10. */
#define VS_METRICS_GRPC_BUCKETS_N 11
extern const double vs_metrics_grpc_buckets[VS_METRICS_GRPC_BUCKETS_N];
/* Fine latency buckets in seconds for sub-millisecond ANN searches:
 * 50us 100us 250us 500us 1ms 2.5ms 5ms 10ms 25ms 50ms 100ms 250ms 500ms 1s. */
#define VS_METRICS_FINE_BUCKETS_N 14
extern const double vs_metrics_fine_buckets[VS_METRICS_FINE_BUCKETS_N];

typedef struct vs_metrics vs_metrics_t;             /* the registry (opaque) */
typedef struct vs_metric_family vs_metric_family_t; /* one metric name with its label names (opaque) */
typedef struct vs_counter vs_counter_t;             /* one child of a counter family (opaque) */
typedef struct vs_gauge vs_gauge_t;                 /* one child of a gauge family (opaque) */
typedef struct vs_histogram vs_histogram_t;         /* one child of a histogram family (opaque) */

/* ---- Registry ---------------------------------------------------------------------------------- */

/* A new empty registry; NULL when out of memory. Free with vs_metrics_destroy. */
vs_metrics_t *vs_metrics_create(void);

/* Frees the registry, its families and every child (all pointers handed out die with it). NULL is a
 * no-op. Call it only once nothing else uses the registry (stop the HTTP server first). */
void vs_metrics_destroy(vs_metrics_t *reg);

/* Text of the last refused registration on this registry ("" if none). The pointer is valid until the
 * next registration call on reg; registration is rare, so it is meant for a log line right after a
 * NULL return. */
const char *vs_metrics_last_error(const vs_metrics_t *reg);

/* ---- Registration -------------------------------------------------------------------------------
 * All registration functions are thread-safe (they take the registry mutex), copy every string they
 * are given (all parameters are borrowed), and return a family owned by the registry, or NULL when:
 * the name is not [a-zA-Z_:][a-zA-Z0-9_:]*, a counter name does not end in `_total`, a label name is
 * not [a-zA-Z_][a-zA-Z0-9_]* or starts with `__`, label names repeat, nlabels > VS_METRICS_MAX_LABELS,
 * a histogram uses the label `le` or has bounds that are not strictly increasing and finite (a last
 * bound of +Inf is accepted and dropped), a family of that name exists already, or the series names
 * collide with another family's (a gauge `x_count` next to a histogram `x`), or memory ran out.
 * vs_metrics_last_error(reg) then says why. help may be NULL (printed as empty). */

vs_metric_family_t *vs_metrics_counter(vs_metrics_t *reg, const char *name, const char *help, size_t nlabels,
                                       const char *const *label_names);
vs_metric_family_t *vs_metrics_gauge(vs_metrics_t *reg, const char *name, const char *help, size_t nlabels,
                                     const char *const *label_names);
/* bounds: nbounds upper bounds (inclusive: an observation equal to a bound lands in that bucket),
 * strictly increasing; the +Inf bucket is always added. nbounds may be 0 (only +Inf). */
vs_metric_family_t *vs_metrics_histogram(vs_metrics_t *reg, const char *name, const char *help,
                                         size_t nlabels, const char *const *label_names, const double *bounds,
                                         size_t nbounds);

/* Conveniences for families without labels: register and return the single child (NULL on any
 * failure, with the same reasons as above). */
vs_counter_t *vs_metrics_counter_single(vs_metrics_t *reg, const char *name, const char *help);
vs_gauge_t *vs_metrics_gauge_single(vs_metrics_t *reg, const char *name, const char *help);
vs_histogram_t *vs_metrics_histogram_single(vs_metrics_t *reg, const char *name, const char *help,
                                            const double *bounds, size_t nbounds);

/* A histogram family with one label and its children for values[0..n): out[i] is values[i]'s. 0, or -1
 * with the reason in vs_metrics_last_error. */
int vs_metrics_histogram_each(vs_metrics_t *reg, const char *name, const char *help, const char *label,
                              const char *const *values, size_t n, const double *bounds, size_t nbounds,
                              vs_histogram_t **out);

/* Callback families without labels, whose value is read at scrape time: fn(user) is called from the
 * thread running vs_metrics_format, with the registry mutex held (so calls never overlap; fn must not
 * call into this registry). fn and user are borrowed and must stay valid for the registry's life.
 * A counter callback's name must end in `_total` and its values must never decrease. */
vs_metric_family_t *vs_metrics_gauge_fn(vs_metrics_t *reg, const char *name, const char *help,
                                        double (*fn)(void *user), void *user);
vs_metric_family_t *vs_metrics_counter_fn(vs_metrics_t *reg, const char *name, const char *help,
                                          double (*fn)(void *user), void *user);

/* Registers the standard process metrics, read from /proc/self at scrape time:
 * process_resident_memory_bytes, process_virtual_memory_bytes, process_cpu_seconds_total,
 * process_open_fds, process_max_fds, process_start_time_seconds (Unix time). A value that cannot be
 * read is reported as NaN. Returns VS_OK, or the status of the first refused registration
 * (VS_ERR_ALREADY_EXISTS if called twice) with the reason in err (VS_ERR_LEN bytes, may be NULL). */
vs_status vs_metrics_add_process(vs_metrics_t *reg, char *err);

/* Registers the gauge `name` (e.g. "vecshard_build_info") with the single label `version` and sets
 * {version="<version>"} to 1. Returns the family, or NULL as for vs_metrics_gauge. */
vs_metric_family_t *vs_metrics_add_build_info(vs_metrics_t *reg, const char *name, const char *help,
                                              const char *version);

/* ---- Child lookup --------------------------------------------------------------------------------
 * label_values: the family's nlabels values in the order of its label names (may be NULL when nlabels
 * is 0); any UTF-8, at most VS_METRICS_MAX_VALUE_LEN bytes each; copied. The first lookup of a
 * combination creates the child (value 0) under the registry mutex; later ones return the same
 * pointer, which stays valid until vs_metrics_destroy. Cache it: lookups cost a mutex and a scan.
 * NULL when fam is NULL or of another type, a value is NULL or too long, the family already has
 * VS_METRICS_MAX_CHILDREN children, or memory ran out. Thread-safe. */
vs_counter_t *vs_counter_get(vs_metric_family_t *fam, const char *const *label_values);
vs_gauge_t *vs_gauge_get(vs_metric_family_t *fam, const char *const *label_values);
vs_histogram_t *vs_histogram_get(vs_metric_family_t *fam, const char *const *label_values);

/* The same with an explicit count, which must equal the family's nlabels (NULL otherwise); used by the
 * VS_*_WITH macros below. */
vs_counter_t *vs_counter_get_n(vs_metric_family_t *fam, size_t n, const char *const *label_values);
vs_gauge_t *vs_gauge_get_n(vs_metric_family_t *fam, size_t n, const char *const *label_values);
vs_histogram_t *vs_histogram_get_n(vs_metric_family_t *fam, size_t n, const char *const *label_values);

/* Variadic-looking lookups with the count checked at run time:
 *   vs_counter_t *c = VS_COUNTER_WITH(handled, "vecshard.Shard", "Search", "unary", "OK"); */
#define VS_METRICS_NARGS_(...) (sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *))
#define VS_COUNTER_WITH(fam, ...)                                                                            \
    vs_counter_get_n((fam), VS_METRICS_NARGS_(__VA_ARGS__), (const char *const[]){__VA_ARGS__})
#define VS_GAUGE_WITH(fam, ...)                                                                              \
    vs_gauge_get_n((fam), VS_METRICS_NARGS_(__VA_ARGS__), (const char *const[]){__VA_ARGS__})
#define VS_HISTOGRAM_WITH(fam, ...)                                                                          \
    vs_histogram_get_n((fam), VS_METRICS_NARGS_(__VA_ARGS__), (const char *const[]){__VA_ARGS__})

/* ---- Updates: lock-free, allocation-free, safe from any thread. A NULL child is a no-op, so a failed
 * lookup never crashes a hot path. ---------------------------------------------------------------- */

void vs_counter_add(vs_counter_t *c, uint64_t n);
void vs_counter_inc(vs_counter_t *c);
uint64_t vs_counter_value(const vs_counter_t *c); /* 0 for NULL */

void vs_gauge_set(vs_gauge_t *g, double v);
void vs_gauge_add(vs_gauge_t *g, double v);
void vs_gauge_sub(vs_gauge_t *g, double v);
double vs_gauge_value(const vs_gauge_t *g); /* 0 for NULL */

/* Adds one observation: the first bucket whose bound is >= value (else +Inf) gains one, and value is
 * added to the sum. NaN lands in +Inf and makes the sum NaN (as the Go client). O(log nbounds). */
void vs_histogram_observe(vs_histogram_t *h, double value);
/* Total observations (the +Inf cumulative count) and their sum; 0 for NULL. */
uint64_t vs_histogram_count(const vs_histogram_t *h);
double vs_histogram_sum(const vs_histogram_t *h);

/* ---- Exposition ---------------------------------------------------------------------------------- */

/* Renders every family in Prometheus text format 0.0.4: families sorted by name, each with `# HELP`
 * and `# TYPE` lines (also when it has no children yet), children sorted by label values, histograms as
 * cumulative `_bucket{le=...}` (ending with le="+Inf"), `_sum` and `_count`. Label values are escaped
 * (\\, \", \n), help text too (\\, \n); numbers use the shortest text that reads back to the same double
 * ("0.005", "1", "+Inf", "-Inf", "NaN"), counters print as integers. A histogram's _count equals its
 * +Inf bucket; under concurrent observations _sum may lag or lead by the in-flight ones.
 * *out_text: a new NUL-terminated buffer of *out_len bytes (without the NUL), freed by the caller with
 * free(). Returns VS_OK or VS_ERR_NOMEM (outputs unchanged). Thread-safe (holds the registry mutex
 * while rendering; updates proceed meanwhile). O(total series). */
vs_status vs_metrics_format(const vs_metrics_t *reg, char **out_text, size_t *out_len);

#endif
