/* test_metrics: the Prometheus registry. Exact 0.0.4 text for a small registry (sorting, escaping,
 * inclusive cumulative histogram buckets), name validation, duplicates and series collisions, child
 * pointer stability, exact totals under concurrent updates, callbacks and the process collector. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/net/metrics.h"
#include "tests/testlib.h"

static char *format(const vs_metrics_t *reg)
{
    char *text = NULL;
    size_t len = 0;
    vs_status s = vs_metrics_format(reg, &text, &len);
    CHECK(s == VS_OK);
    CHECK(text && strlen(text) == len);
    return text;
}

static void test_exact_text(void)
{
    vs_metrics_t *reg = vs_metrics_create();
    CHECK(reg);
    /* Registered out of name order: the text must come out sorted. */
    const char *const v[] = {"v"};
    vs_metric_family_t *vec = vs_metrics_gauge(reg, "vecshard_test_vectors",
                                               "Vectors loaded.\nSecond line \\ \"quoted\".", 0, NULL);
    vs_metric_family_t *unused = vs_metrics_counter(reg, "vecshard_test_unused_total", "Never incremented.",
                                                    2, (const char *const[]){"a", "b"});
    vs_metric_family_t *req = vs_metrics_counter(reg, "vecshard_test_requests_total", "Requests handled.", 2,
                                                 (const char *const[]){"method", "code"});
    vs_metric_family_t *esc =
        vs_metrics_gauge(reg, "vecshard_test_escape", "Escaping of label values.", 1, v);
    const double bounds[] = {0.25, 0.5, 1};
    vs_histogram_t *lat =
        vs_metrics_histogram_single(reg, "vecshard_test_latency_seconds", "Latency.", bounds, 3);
    const double one[] = {1};
    vs_metric_family_t *per = vs_metrics_histogram(reg, "vecshard_test_shard_seconds", "Per shard.", 1,
                                                   (const char *const[]){"shard"}, one, 1);
    CHECK(vec && unused && req && esc && lat && per);

    vs_gauge_set(vs_gauge_get(vec, NULL), 1234.5);
    vs_counter_t *ok = VS_COUNTER_WITH(req, "Search", "OK");
    vs_counter_add(ok, 2);
    vs_counter_inc(ok);
    vs_counter_inc(VS_COUNTER_WITH(req, "Insert", "NOT_FOUND"));
    CHECK(VS_COUNTER_WITH(req, "Search", "INVALID_ARGUMENT") != NULL);
    vs_gauge_set(VS_GAUGE_WITH(esc, "a\"b\\c\nd"), -2);
    /* Bounds are inclusive: 0.25 and 0.5 land in their own buckets. */
    vs_histogram_observe(lat, 0.25);
    vs_histogram_observe(lat, 0.5);
    vs_histogram_observe(lat, 0.5);
    vs_histogram_observe(lat, 0.125);
    vs_histogram_observe(lat, 2);
    vs_histogram_observe(VS_HISTOGRAM_WITH(per, "a"), 1);
    CHECK(vs_histogram_count(lat) == 5);
    CHECK(vs_histogram_sum(lat) == 3.375);

    const char *want = "# HELP vecshard_test_escape Escaping of label values.\n"
                       "# TYPE vecshard_test_escape gauge\n"
                       "vecshard_test_escape{v=\"a\\\"b\\\\c\\nd\"} -2\n"
                       "# HELP vecshard_test_latency_seconds Latency.\n"
                       "# TYPE vecshard_test_latency_seconds histogram\n"
                       "vecshard_test_latency_seconds_bucket{le=\"0.25\"} 2\n"
                       "vecshard_test_latency_seconds_bucket{le=\"0.5\"} 4\n"
                       "vecshard_test_latency_seconds_bucket{le=\"1\"} 4\n"
                       "vecshard_test_latency_seconds_bucket{le=\"+Inf\"} 5\n"
                       "vecshard_test_latency_seconds_sum 3.375\n"
                       "vecshard_test_latency_seconds_count 5\n"
                       "# HELP vecshard_test_requests_total Requests handled.\n"
                       "# TYPE vecshard_test_requests_total counter\n"
                       "vecshard_test_requests_total{method=\"Insert\",code=\"NOT_FOUND\"} 1\n"
                       "vecshard_test_requests_total{method=\"Search\",code=\"INVALID_ARGUMENT\"} 0\n"
                       "vecshard_test_requests_total{method=\"Search\",code=\"OK\"} 3\n"
                       "# HELP vecshard_test_shard_seconds Per shard.\n"
                       "# TYPE vecshard_test_shard_seconds histogram\n"
                       "vecshard_test_shard_seconds_bucket{shard=\"a\",le=\"1\"} 1\n"
                       "vecshard_test_shard_seconds_bucket{shard=\"a\",le=\"+Inf\"} 1\n"
                       "vecshard_test_shard_seconds_sum{shard=\"a\"} 1\n"
                       "vecshard_test_shard_seconds_count{shard=\"a\"} 1\n"
                       "# HELP vecshard_test_unused_total Never incremented.\n"
                       "# TYPE vecshard_test_unused_total counter\n"
                       "# HELP vecshard_test_vectors Vectors loaded.\\nSecond line \\\\ \"quoted\".\n"
                       "# TYPE vecshard_test_vectors gauge\n"
                       "vecshard_test_vectors 1234.5\n";
    char *text = format(reg);
    CHECKF(text && strcmp(text, want) == 0, "got:\n%s", text ? text : "(null)");
    free(text);
    vs_metrics_destroy(reg);
}

static void test_empty_and_null(void)
{
    vs_metrics_t *reg = vs_metrics_create();
    char *text = format(reg);
    CHECK(text && text[0] == '\0');
    free(text);
    vs_metrics_destroy(reg);
    vs_metrics_destroy(NULL);
    /* Updates on NULL children are no-ops (a failed lookup must not crash a hot path). */
    vs_counter_inc(NULL);
    vs_gauge_add(NULL, 1);
    vs_histogram_observe(NULL, 1);
    CHECK(vs_counter_value(NULL) == 0 && vs_histogram_count(NULL) == 0);
    CHECK(vs_metrics_format(NULL, &text, &(size_t){0}) == VS_ERR_INVALID_ARGUMENT);
}

static void test_number_format(void)
{
    vs_metrics_t *reg = vs_metrics_create();
    struct {
        const char *name;
        double v;
        const char *line;
    } cases[] = {
        {"g_tenth", 0.1, "g_tenth 0.1"},
        {"g_third", 1.0 / 3, "g_third 0.3333333333333333"},
        {"g_big", 1e21, "g_big 1e+21"},
        {"g_int", 123456789, "g_int 123456789"},
        {"g_neg", -42, "g_neg -42"},
        {"g_zero", 0, "g_zero 0"},
        {"g_nan", NAN, "g_nan NaN"},
        {"g_pinf", INFINITY, "g_pinf +Inf"},
        {"g_ninf", -INFINITY, "g_ninf -Inf"},
        {"g_tiny", 5e-324, "g_tiny 5e-324"},
        {"g_small", 1.5e-7, "g_small 0.00000015"},
        {"g_smaller", 1.5e-8, "g_smaller 1.5e-08"},
        {"g_million", 1e6, "g_million 1000000"},
        {"g_1e20", 1e20, "g_1e20 100000000000000000000"},
        {"g_ten", 10, "g_ten 10"},
        {"g_neg_small", -0.00025, "g_neg_small -0.00025"},
    };
    size_t n = sizeof cases / sizeof cases[0];
    for (size_t i = 0; i < n; i++)
        vs_gauge_set(vs_metrics_gauge_single(reg, cases[i].name, "x"), cases[i].v);
    vs_counter_add(vs_metrics_counter_single(reg, "c_big_total", "x"), UINT64_MAX);
    vs_metrics_histogram(reg, "h_fine_seconds", "x", 0, NULL, vs_metrics_fine_buckets,
                         VS_METRICS_FINE_BUCKETS_N);
    vs_histogram_observe(
        vs_histogram_get(vs_metrics_histogram(reg, "h_grpc_seconds", "x", 0, NULL, vs_metrics_grpc_buckets,
                                              VS_METRICS_GRPC_BUCKETS_N),
                         NULL),
        0.005);
    vs_histogram_t *hf = NULL;
    char *text = format(reg);
    for (size_t i = 0; i < n; i++)
        CHECKF(vs_test_has_line(text, cases[i].line), "missing '%s'", cases[i].line);
    CHECK(vs_test_has_line(text, "c_big_total 18446744073709551615"));
    CHECK(vs_test_has_line(text, "h_grpc_seconds_bucket{le=\"0.005\"} 1"));
    CHECK(vs_test_has_line(text, "h_grpc_seconds_bucket{le=\"2.5\"} 1"));
    CHECK(vs_test_has_line(text, "h_grpc_seconds_bucket{le=\"10\"} 1"));
    CHECK(vs_test_has_line(text, "h_grpc_seconds_sum 0.005"));
    /* The fine family has no child yet: only its HELP and TYPE lines. */
    CHECK(vs_test_has_line(text, "# TYPE h_fine_seconds histogram") &&
          !strstr(text, "h_fine_seconds_bucket"));
    free(text);
    hf = vs_histogram_get(vs_metrics_histogram(reg, "h_fine2_seconds", "x", 0, NULL, vs_metrics_fine_buckets,
                                               VS_METRICS_FINE_BUCKETS_N),
                          NULL);
    vs_histogram_observe(hf, 0.00005);
    vs_histogram_observe(hf, 0.0000501);
    text = format(reg);
    CHECK(vs_test_has_line(text, "h_fine2_seconds_bucket{le=\"0.00005\"} 1"));
    CHECK(vs_test_has_line(text, "h_fine2_seconds_bucket{le=\"0.0001\"} 2"));
    CHECK(vs_test_has_line(text, "h_fine2_seconds_bucket{le=\"0.00025\"} 2"));
    CHECK(vs_test_has_line(text, "h_fine2_seconds_bucket{le=\"1\"} 2"));
    free(text);
    vs_metrics_destroy(reg);
}

static void test_invalid_names(void)
{
    vs_metrics_t *reg = vs_metrics_create();
    const char *const l1[] = {"method"};
    const double b[] = {1, 2};
    const char *bad_names[] = {"", "1abc", "a-b", "a b", "é", "a.b"};
    for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++) {
        CHECKF(!vs_metrics_gauge(reg, bad_names[i], "h", 0, NULL), "'%s' accepted", bad_names[i]);
        CHECK(vs_metrics_last_error(reg)[0] != '\0');
    }
    CHECK(vs_metrics_gauge(reg, "ns:sub_ok9", "h", 0, NULL));
    CHECK(vs_metrics_gauge(reg, "_under", "h", 0, NULL));
    CHECK(!vs_metrics_gauge(reg, NULL, "h", 0, NULL));
    CHECK(!vs_metrics_counter(reg, "requests", "h", 0, NULL)); /* counters end in _total */
    CHECK(strstr(vs_metrics_last_error(reg), "_total"));
    CHECK(!vs_metrics_counter_fn(reg, "cpu_seconds", "h", NULL, NULL));
    const char *bad_labels[] = {"__reserved", "1x", "a-b", "", "a:b"};
    for (size_t i = 0; i < sizeof bad_labels / sizeof bad_labels[0]; i++)
        CHECKF(!vs_metrics_gauge(reg, "g_labels", "h", 1, (const char *const[]){bad_labels[i]}),
               "label '%s' accepted", bad_labels[i]);
    CHECK(!vs_metrics_gauge(reg, "g_labels", "h", 2, (const char *const[]){"a", "a"}));
    CHECK(!vs_metrics_gauge(reg, "g_labels", "h", 5, (const char *const[]){"a", "b", "c", "d", "e"}));
    CHECK(!vs_metrics_gauge(reg, "g_labels", "h", 1, NULL));
    CHECK(vs_metrics_gauge(reg, "g_labels", "h", 4, (const char *const[]){"a", "b", "c", "d"}));
    CHECK(!vs_metrics_histogram(reg, "h_le", "h", 1, (const char *const[]){"le"}, b, 2));
    CHECK(!vs_metrics_histogram(reg, "h_dec", "h", 0, NULL, (const double[]){2, 1}, 2));
    CHECK(!vs_metrics_histogram(reg, "h_eq", "h", 0, NULL, (const double[]){1, 1}, 2));
    CHECK(!vs_metrics_histogram(reg, "h_nan", "h", 0, NULL, (const double[]){1, NAN}, 2));
    CHECK(!vs_metrics_histogram(reg, "h_ninf", "h", 0, NULL, (const double[]){-INFINITY, 1}, 2));
    CHECK(!vs_metrics_histogram(reg, "h_null", "h", 0, NULL, NULL, 2));
    double many[VS_METRICS_MAX_BUCKETS + 1];
    for (int i = 0; i <= VS_METRICS_MAX_BUCKETS; i++)
        many[i] = i;
    CHECK(!vs_metrics_histogram(reg, "h_many", "h", 0, NULL, many, VS_METRICS_MAX_BUCKETS + 1));
    CHECK(vs_metrics_histogram(reg, "h_many", "h", 0, NULL, many, VS_METRICS_MAX_BUCKETS));
    /* A trailing +Inf bound is the implicit one: accepted and not printed twice. */
    vs_histogram_t *hi = vs_metrics_histogram_single(reg, "h_inf", "h", (const double[]){1, INFINITY}, 2);
    CHECK(hi);
    vs_histogram_t *h0 = vs_metrics_histogram_single(reg, "h_none", "h", NULL, 0);
    vs_histogram_observe(h0, -5);
    char *text = format(reg);
    CHECK(vs_test_has_line(text, "h_inf_bucket{le=\"1\"} 0") &&
          vs_test_has_line(text, "h_inf_bucket{le=\"+Inf\"} 0"));
    CHECK(strstr(text, "le=\"+Inf\"} 0\nh_inf_sum") != NULL);
    CHECK(vs_test_has_line(text, "h_none_bucket{le=\"+Inf\"} 1") && vs_test_has_line(text, "h_none_sum -5"));
    free(text);

    /* Duplicates and series collisions, both directions. */
    CHECK(vs_metrics_counter(reg, "dup_total", "h", 1, l1));
    CHECK(!vs_metrics_counter(reg, "dup_total", "h", 1, l1));
    CHECK(!vs_metrics_gauge(reg, "dup_total", "h", 0, NULL));
    CHECK(strstr(vs_metrics_last_error(reg), "dup_total"));
    CHECK(vs_metrics_histogram(reg, "lat", "h", 0, NULL, b, 2));
    CHECK(!vs_metrics_gauge(reg, "lat_count", "h", 0, NULL));
    CHECK(!vs_metrics_gauge(reg, "lat_bucket", "h", 0, NULL));
    CHECK(vs_metrics_gauge(reg, "lat_counts", "h", 0, NULL));
    CHECK(vs_metrics_gauge(reg, "other_sum", "h", 0, NULL));
    CHECK(!vs_metrics_histogram(reg, "other", "h", 0, NULL, b, 2));

    /* Lookups that must fail. */
    vs_metric_family_t *fam =
        vs_metrics_counter(reg, "lookups_total", "h", 2, (const char *const[]){"a", "b"});
    CHECK(fam);
    CHECK(!vs_gauge_get(fam, (const char *const[]){"x", "y"}));     /* wrong type */
    CHECK(!vs_histogram_get(fam, (const char *const[]){"x", "y"})); /* wrong type */
    CHECK(!VS_COUNTER_WITH(fam, "x"));                              /* wrong count */
    CHECK(!VS_COUNTER_WITH(fam, "x", "y", "z"));
    CHECK(!vs_counter_get(fam, NULL));
    CHECK(!vs_counter_get(fam, (const char *const[]){"x", NULL}));
    char *long_value = malloc(VS_METRICS_MAX_VALUE_LEN + 2);
    memset(long_value, 'v', VS_METRICS_MAX_VALUE_LEN + 1);
    long_value[VS_METRICS_MAX_VALUE_LEN + 1] = '\0';
    CHECK(!VS_COUNTER_WITH(fam, "x", long_value));
    long_value[VS_METRICS_MAX_VALUE_LEN] = '\0';
    CHECK(VS_COUNTER_WITH(fam, "x", long_value));
    free(long_value);
    CHECK(!vs_counter_get(NULL, NULL));
    /* Label values may be anything UTF-8, including the empty string. */
    CHECK(VS_COUNTER_WITH(fam, "", "ünïcode"));
    vs_metrics_destroy(reg);
}

static void test_child_stability(void)
{
    vs_metrics_t *reg = vs_metrics_create();
    vs_metric_family_t *fam = vs_metrics_counter(reg, "stable_total", "h", 1, (const char *const[]){"k"});
    vs_counter_t *first = VS_COUNTER_WITH(fam, "first");
    vs_counter_add(first, 7);
    char key[32];
    for (int i = 0; i < 2000; i++) { /* forces the child array to grow many times */
        snprintf(key, sizeof key, "k%d", i);
        vs_counter_add(VS_COUNTER_WITH(fam, key), (uint64_t)i);
    }
    CHECK(VS_COUNTER_WITH(fam, "first") == first);
    CHECK(vs_counter_value(first) == 7);
    CHECK(vs_counter_value(VS_COUNTER_WITH(fam, "k1999")) == 1999);
    /* ("ab","c") and ("a","bc") are different children. */
    vs_metric_family_t *two = vs_metrics_gauge(reg, "two", "h", 2, (const char *const[]){"x", "y"});
    CHECK(VS_GAUGE_WITH(two, "ab", "c") != VS_GAUGE_WITH(two, "a", "bc"));
    CHECK(VS_GAUGE_WITH(two, "ab", "c") == VS_GAUGE_WITH(two, "ab", "c"));
    vs_metrics_destroy(reg);
}

static void test_cardinality_cap(void)
{
    vs_metrics_t *reg = vs_metrics_create();
    vs_metric_family_t *fam = vs_metrics_gauge(reg, "capped", "h", 1, (const char *const[]){"k"});
    char key[32];
    int all = 1;
    for (int i = 0; i < VS_METRICS_MAX_CHILDREN; i++) {
        snprintf(key, sizeof key, "%d", i);
        all &= VS_GAUGE_WITH(fam, key) != NULL;
    }
    CHECK(all);
    CHECK(VS_GAUGE_WITH(fam, "one-too-many") == NULL);
    CHECK(VS_GAUGE_WITH(fam, "0") != NULL); /* existing children are still found */
    vs_metrics_destroy(reg);
}

enum { N_THREADS = 4, N_PER_THREAD = 100000 };

typedef struct worker {
    vs_metric_family_t *fam;
    vs_counter_t *counter;
    vs_gauge_t *gauge;
    vs_histogram_t *hist;
    int id;
} worker_t;

static void *counter_worker(void *arg)
{
    worker_t *w = arg;
    char key[32];
    for (int i = 0; i < N_PER_THREAD; i++) {
        vs_counter_inc(w->counter);
        vs_gauge_add(w->gauge, 1.0);
        if (i % 1000 == 0) { /* new children concurrently with the hot updates */
            snprintf(key, sizeof key, "t%d_%d", w->id, i);
            vs_counter_inc(VS_COUNTER_WITH(w->fam, key));
        }
    }
    return NULL;
}

static void *hist_worker(void *arg)
{
    worker_t *w = arg;
    for (int i = 0; i < N_PER_THREAD; i++)
        vs_histogram_observe(w->hist, (i % 4) * 0.5); /* 0, 0.5, 1, 1.5: exact sums */
    return NULL;
}

static void *scrape_worker(void *arg)
{
    const vs_metrics_t *reg = arg;
    for (int i = 0; i < 20; i++) {
        char *text;
        size_t len;
        if (vs_metrics_format(reg, &text, &len) == VS_OK)
            free(text);
    }
    return NULL;
}

static void test_concurrent_updates(void)
{
    vs_metrics_t *reg = vs_metrics_create();
    vs_metric_family_t *fam = vs_metrics_counter(reg, "conc_total", "h", 1, (const char *const[]){"k"});
    vs_counter_t *c = VS_COUNTER_WITH(fam, "hot");
    vs_gauge_t *g = vs_metrics_gauge_single(reg, "conc_gauge", "h");
    const double b[] = {0, 0.5, 1};
    vs_histogram_t *h = vs_metrics_histogram_single(reg, "conc_seconds", "h", b, 3);
    pthread_t t[N_THREADS + 1];
    worker_t w[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) {
        w[i] = (worker_t){fam, c, g, h, i};
        CHECK(pthread_create(&t[i], NULL, counter_worker, &w[i]) == 0);
    }
    CHECK(pthread_create(&t[N_THREADS], NULL, scrape_worker, reg) == 0);
    for (int i = 0; i <= N_THREADS; i++)
        pthread_join(t[i], NULL);
    CHECK(vs_counter_value(c) == (uint64_t)N_THREADS * N_PER_THREAD);
    CHECK(vs_gauge_value(g) == (double)N_THREADS * N_PER_THREAD);
    CHECK(VS_COUNTER_WITH(fam, "hot") == c);
    CHECK(vs_counter_value(VS_COUNTER_WITH(fam, "t3_99000")) == 1);

    for (int i = 0; i < N_THREADS; i++)
        CHECK(pthread_create(&t[i], NULL, hist_worker, &w[i]) == 0);
    for (int i = 0; i < N_THREADS; i++)
        pthread_join(t[i], NULL);
    uint64_t total = (uint64_t)N_THREADS * N_PER_THREAD;
    CHECK(vs_histogram_count(h) == total);
    CHECK(vs_histogram_sum(h) == 0.75 * (double)total);
    char *text = format(reg);
    char line[128];
    snprintf(line, sizeof line, "conc_seconds_bucket{le=\"0\"} %llu", (unsigned long long)total / 4);
    CHECKF(vs_test_has_line(text, line), "missing %s", line);
    snprintf(line, sizeof line, "conc_seconds_bucket{le=\"0.5\"} %llu", (unsigned long long)total / 2);
    CHECKF(vs_test_has_line(text, line), "missing %s", line);
    snprintf(line, sizeof line, "conc_seconds_bucket{le=\"1\"} %llu", (unsigned long long)total * 3 / 4);
    CHECKF(vs_test_has_line(text, line), "missing %s", line);
    snprintf(line, sizeof line, "conc_seconds_bucket{le=\"+Inf\"} %llu", (unsigned long long)total);
    CHECKF(vs_test_has_line(text, line), "missing %s", line);
    snprintf(line, sizeof line, "conc_seconds_count %llu", (unsigned long long)total);
    CHECKF(vs_test_has_line(text, line), "missing %s", line);
    snprintf(line, sizeof line, "conc_seconds_sum %llu", (unsigned long long)total * 3 / 4);
    CHECKF(vs_test_has_line(text, line), "missing %s", line);
    free(text);
    vs_metrics_destroy(reg);
}

static void test_gauge_ops(void)
{
    vs_metrics_t *reg = vs_metrics_create();
    vs_gauge_t *g = vs_metrics_gauge_single(reg, "ops", "h");
    CHECK(vs_gauge_value(g) == 0);
    vs_gauge_set(g, 10);
    vs_gauge_add(g, 2.5);
    vs_gauge_sub(g, 0.5);
    CHECK(vs_gauge_value(g) == 12);
    vs_gauge_sub(g, 20);
    CHECK(vs_gauge_value(g) == -8);
    vs_metrics_destroy(reg);
}

static double count_calls(void *user)
{
    int *n = user;
    return ++*n;
}

static double line_value(const char *text, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = text; (p = strstr(p, name)) != NULL; p++)
        if ((p == text || p[-1] == '\n') && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    return NAN;
}

static void test_callbacks_and_process(void)
{
    vs_metrics_t *reg = vs_metrics_create();
    int calls = 0;
    CHECK(vs_metrics_gauge_fn(reg, "vecshard_loaded_bytes", "Bytes loaded.", count_calls, &calls));
    CHECK(vs_metrics_counter_fn(reg, "vecshard_calls_total", "Calls.", count_calls, &calls));
    char err[VS_ERR_LEN];
    CHECK(vs_metrics_add_process(reg, err) == VS_OK);
    CHECK(vs_metrics_add_process(reg, err) == VS_ERR_ALREADY_EXISTS);
    CHECK(strstr(err, "process_cpu_seconds_total") != NULL);
    CHECK(vs_metrics_add_build_info(reg, "vecshard_build_info", "Build version.", "1.2.3"));
    char *text = format(reg);
    CHECK(calls == 2);
    CHECK(vs_test_has_line(text, "# TYPE vecshard_calls_total counter"));
    CHECK(vs_test_has_line(text, "# TYPE vecshard_loaded_bytes gauge"));
    CHECK(line_value(text, "vecshard_calls_total") + line_value(text, "vecshard_loaded_bytes") == 3);
    CHECK(vs_test_has_line(text, "vecshard_build_info{version=\"1.2.3\"} 1"));
    CHECK(vs_test_has_line(text, "# TYPE process_cpu_seconds_total counter"));
    double rss = line_value(text, "process_resident_memory_bytes");
    double vsz = line_value(text, "process_virtual_memory_bytes");
    double fds = line_value(text, "process_open_fds");
    double maxfds = line_value(text, "process_max_fds");
    double start = line_value(text, "process_start_time_seconds");
    double cpu = line_value(text, "process_cpu_seconds_total");
    double now = (double)time(NULL);
    CHECKF(rss > 100000 && vsz >= rss, "rss %g vsz %g", rss, vsz);
    CHECKF(fds >= 3 && maxfds >= fds, "fds %g max %g", fds, maxfds);
    CHECKF(start > now - 3600 && start <= now + 1, "start %f now %f", start, now);
    CHECKF(cpu >= 0 && cpu < 3600, "cpu %g", cpu);
    free(text);
    vs_metrics_destroy(reg);
}

/* vs_metrics_histogram_each: one family, one child per value, each observed on its own; a second
 * registration of the name fails. */
static void test_histogram_each(void)
{
    vs_metrics_t *reg = vs_metrics_create();
    static const char *const stages[] = {"route", "merge"};
    static const double bounds[] = {0.001, 0.01};
    vs_histogram_t *h[2] = {NULL, NULL};
    CHECK(vs_metrics_histogram_each(reg, "t_stage_seconds", "Stages.", "stage", stages, 2, bounds, 2, h) ==
          0);
    CHECK(h[0] && h[1] && h[0] != h[1]);
    vs_histogram_observe(h[0], 0.0005);
    vs_histogram_observe(h[1], 0.5);
    vs_histogram_observe(h[1], 0.5);
    CHECK(vs_histogram_count(h[0]) == 1 && vs_histogram_count(h[1]) == 2);
    char *text = NULL;
    size_t len = 0;
    CHECK(vs_metrics_format(reg, &text, &len) == VS_OK);
    CHECK(text && strstr(text, "t_stage_seconds_count{stage=\"route\"} 1\n") &&
          strstr(text, "t_stage_seconds_count{stage=\"merge\"} 2\n"));
    free(text);
    vs_histogram_t *again[2];
    CHECK(vs_metrics_histogram_each(reg, "t_stage_seconds", "Stages.", "stage", stages, 2, bounds, 2,
                                    again) == -1);
    vs_metrics_destroy(reg);
}

int main(void)
{
    RUN(test_exact_text);
    RUN(test_empty_and_null);
    RUN(test_number_format);
    RUN(test_invalid_names);
    RUN(test_child_stability);
    RUN(test_cardinality_cap);
    RUN(test_concurrent_updates);
    RUN(test_gauge_ops);
    RUN(test_callbacks_and_process);
    RUN(test_histogram_each);
    return vs_test_finish();
}
