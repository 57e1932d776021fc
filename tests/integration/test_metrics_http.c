/* test_metrics_http: the /metrics HTTP server on an ephemeral loopback port, scraped with libcurl.
 * Checks status codes, content types, an owner endpoint and bind errors; lints the scraped text with
 * promtool (`promtool check metrics`, which must also reject a bad sample); parses it with the
 * reference Python parser (prometheus_client.parser) and asserts families and sample values round-trip,
 * including an escaped label value. Hostile clients: scrapes succeed while 1,000 idle and 100 slow
 * (1 byte/s, headers never finished) connections from the same address are open. */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/net/http.h"
#include "common/net/metrics.h"
#include "tests/testlib.h"

#define TEST_NAME "test_metrics_http"

typedef struct growbuf {
    char *p;
    size_t len;
} growbuf_t;

static size_t on_data(char *data, size_t size, size_t nmemb, void *user)
{
    growbuf_t *b = user;
    size_t n = size * nmemb;
    char *np = realloc(b->p, b->len + n + 1);
    if (!np)
        return 0;
    memcpy(np + b->len, data, n);
    b->p = np;
    b->len += n;
    b->p[b->len] = '\0';
    return n;
}

/* Performs one request; returns the HTTP status (0 on transport failure). *body: malloc'd, caller frees. */
static long request(uint16_t port, const char *method, const char *path, char **body, char *ctype,
                    size_t ctype_len)
{
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%u%s", (unsigned)port, path);
    CURL *c = curl_easy_init();
    if (!c)
        return 0;
    growbuf_t b = {calloc(1, 1), 0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    else if (strcmp(method, "POST") == 0)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, "a=1");
    else if (strcmp(method, "GET") != 0)
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    long code = 0;
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
        char *ct = NULL;
        curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
        if (ctype)
            snprintf(ctype, ctype_len, "%s", ct ? ct : "");
    } else {
        fprintf(stderr, "curl %s %s: %s\n", method, url, curl_easy_strerror(rc));
    }
    curl_easy_cleanup(c);
    *body = b.p;
    return code;
}

/* Exit status of `promtool check metrics` on text, -1 if promtool could not be run. Its findings go to
 * stderr unless quiet. */
static int promtool_check(const char *text, int quiet)
{
    FILE *p = popen(quiet ? "promtool check metrics >/dev/null 2>&1" : "promtool check metrics 1>&2", "w");
    if (!p)
        return -1;
    fputs(text, p);
    int st = pclose(p);
    if (st == -1 || !WIFEXITED(st))
        return -1;
    return WEXITSTATUS(st);
}

static int have_promtool(void)
{
    return system("command -v promtool >/dev/null 2>&1") == 0;
}

static const char *parse_script =
    "import sys\n"
    "from prometheus_client.parser import text_string_to_metric_families\n"
    "for f in text_string_to_metric_families(open(sys.argv[1], encoding='utf-8').read()):\n"
    "    print('F', f.name, f.type, repr(f.documentation))\n"
    "    for s in f.samples:\n"
    "        print('S', s.name, repr(sorted(s.labels.items())), repr(s.value))\n";

/* Runs the reference parser over text; returns its stdout (malloc'd) or NULL if it failed. */
static char *python_parse(const char *text)
{
    vs_test_pathbuf_t txt = vs_test_pathcopy(TEST_NAME, "scrape.txt");
    vs_test_pathbuf_t py = vs_test_pathcopy(TEST_NAME, "parse.py");
    if (vs_test_write_file(txt.s, text, strlen(text)) != 0 ||
        vs_test_write_file(py.s, parse_script, strlen(parse_script)) != 0)
        return NULL;
    char cmd[3000];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' '%s'", py.s, txt.s);
    FILE *p = popen(cmd, "r");
    if (!p)
        return NULL;
    growbuf_t b = {calloc(1, 1), 0};
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, p)) > 0)
        on_data(chunk, 1, n, &b);
    int st = pclose(p);
    if (st != 0) {
        fprintf(stderr, "python parser failed (status %d):\n%s\n", st, b.p);
        free(b.p);
        return NULL;
    }
    return b.p;
}

static int statusz(void *user, char **out_body, size_t *out_len, const char **out_content_type)
{
    int *calls = user;
    (*calls)++;
    *out_body = strdup("{\"state\":\"SERVING\"}");
    *out_len = strlen(*out_body);
    *out_content_type = "application/json";
    return 200;
}

static void test_scrape(void)
{
    vs_test_tmpdir(TEST_NAME);
    vs_metrics_t *reg = vs_metrics_create();
    vs_metric_family_t *handled =
        vs_metrics_counter(reg, "grpc_server_handled_total",
                           "Total number of RPCs completed on the server, regardless of success or failure.",
                           4, (const char *const[]){"grpc_service", "grpc_method", "grpc_type", "grpc_code"});
    vs_metric_family_t *seconds =
        vs_metrics_histogram(reg, "grpc_server_handling_seconds",
                             "Histogram of response latency (seconds) of gRPC that had been "
                             "application-level handled by the server.",
                             3, (const char *const[]){"grpc_service", "grpc_method", "grpc_type"},
                             vs_metrics_grpc_buckets, VS_METRICS_GRPC_BUCKETS_N);
    vs_histogram_t *search =
        vs_metrics_histogram_single(reg, "vecshard_search_duration_seconds", "ANN search latency in seconds.",
                                    vs_metrics_fine_buckets, VS_METRICS_FINE_BUCKETS_N);
    vs_gauge_t *vectors =
        vs_metrics_gauge_single(reg, "vecshard_shard_vectors", "Vectors served by this shard.");
    vs_metric_family_t *esc = vs_metrics_gauge(
        reg, "vecshard_test_escape", "Help with \\ backslash\nand newline.", 1, (const char *const[]){"v"});
    char err[VS_ERR_LEN];
    CHECK(handled && seconds && search && vectors && esc);
    CHECK(vs_metrics_add_process(reg, err) == VS_OK);
    CHECK(vs_metrics_add_build_info(reg, "vecshard_build_info", "Version of this build.", "0.2.0"));

    vs_counter_add(VS_COUNTER_WITH(handled, "vecshard.Shard", "Search", "unary", "OK"), 3);
    vs_counter_inc(VS_COUNTER_WITH(handled, "vecshard.Shard", "Search", "unary", "INVALID_ARGUMENT"));
    vs_histogram_t *hs = VS_HISTOGRAM_WITH(seconds, "vecshard.Shard", "Search", "unary");
    vs_histogram_observe(hs, 0.005);
    vs_histogram_observe(hs, 0.5);
    vs_histogram_observe(hs, 20);
    vs_histogram_observe(search, 0.0002);
    vs_histogram_observe(search, 0.0002);
    vs_gauge_set(vectors, 1000000);
    vs_gauge_set(VS_GAUGE_WITH(esc, "q\"b\\s\nn"), 0.25);

    vs_http_t *h = NULL;
    uint16_t port = 0;
    vs_status s = vs_http_start("127.0.0.1", 0, reg, &h, &port, err);
    CHECKF(s == VS_OK, "%s", err);
    if (s != VS_OK) {
        vs_metrics_destroy(reg);
        return;
    }
    CHECK(port != 0);
    int statusz_calls = 0;
    CHECK(vs_http_add_handler(h, "/statusz", statusz, &statusz_calls) == VS_OK);
    CHECK(vs_http_add_handler(h, "/metrics", statusz, NULL) == VS_ERR_INVALID_ARGUMENT);
    CHECK(vs_http_add_handler(h, "nope", statusz, NULL) == VS_ERR_INVALID_ARGUMENT);

    /* The same port again must fail: no silent port sharing. */
    vs_http_t *h2 = NULL;
    CHECK(vs_http_start("127.0.0.1", port, reg, &h2, NULL, err) == VS_ERR_UNAVAILABLE && h2 == NULL);
    CHECK(strstr(err, "127.0.0.1") != NULL);
    CHECK(vs_http_start("localhost", 0, reg, &h2, NULL, err) == VS_ERR_INVALID_ARGUMENT && h2 == NULL);

    char ctype[256], *body = NULL;
    long code = request(port, "GET", "/metrics", &body, ctype, sizeof ctype);
    CHECKF(code == 200, "GET /metrics: %ld", code);
    CHECKF(strcmp(ctype, "text/plain; version=0.0.4; charset=utf-8") == 0, "content type '%s'", ctype);
    char *text = body;
    CHECK(vs_test_has_line(text,
                           "grpc_server_handled_total{grpc_service=\"vecshard.Shard\",grpc_method=\"Search\","
                           "grpc_type=\"unary\",grpc_code=\"OK\"} 3"));
    CHECK(vs_test_has_line(
        text, "grpc_server_handling_seconds_bucket{grpc_service=\"vecshard.Shard\",grpc_method=\"Search\","
              "grpc_type=\"unary\",le=\"0.005\"} 1"));

    code = request(port, "GET", "/healthz", &body, ctype, sizeof ctype);
    CHECK(code == 200 && strcmp(body, "ok\n") == 0);
    free(body);
    static const struct {
        const char *method, *path;
        long code;
    } refused[] = {{"GET", "/nope", 404},     {"GET", "/metrics/", 404},   {"GET", "/", 404},
                   {"POST", "/metrics", 405}, {"DELETE", "/healthz", 405}, {"PUT", "/nope", 405}};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        code = request(port, refused[i].method, refused[i].path, &body, NULL, 0);
        CHECKF(code == refused[i].code, "%s %s: %ld", refused[i].method, refused[i].path, code);
        free(body);
    }
    code = request(port, "HEAD", "/metrics", &body, ctype, sizeof ctype);
    CHECKF(code == 200 && body[0] == '\0', "HEAD /metrics: %ld", code);
    free(body);
    code = request(port, "GET", "/statusz", &body, ctype, sizeof ctype);
    CHECK(code == 200 && statusz_calls == 1 && strcmp(body, "{\"state\":\"SERVING\"}") == 0 &&
          strcmp(ctype, "application/json") == 0);
    free(body);
    /* Still serving after all that. */
    code = request(port, "GET", "/healthz", &body, NULL, 0);
    CHECK(code == 200);
    free(body);

    /* promtool lints the scrape; it must also reject a bad sample, or this check proves nothing. */
    if (!have_promtool()) {
        CHECKF(0, "promtool not found: install Debian package 'prometheus' (deploy/local/install-deps.sh)");
    } else {
        int rc = promtool_check(text, 0);
        CHECKF(rc == 0, "promtool check metrics exit %d on:\n%s", rc, text);
        rc = promtool_check("# HELP bad_requests x\n# TYPE bad_requests counter\nbad_requests 1\n", 1);
        CHECKF(rc != 0 && rc != -1, "promtool accepted a counter without _total (exit %d)", rc);
    }

    char *parsed = python_parse(text);
    CHECKF(parsed != NULL, "python3-prometheus-client parser failed (install python3-prometheus-client)");
    if (parsed) {
        const char *want[] = {
            "F grpc_server_handled counter 'Total number of RPCs completed on the server, regardless of "
            "success or "
            "failure.'",
            "S grpc_server_handled_total [('grpc_code', 'OK'), ('grpc_method', 'Search'), ('grpc_service', "
            "'vecshard.Shard'), ('grpc_type', 'unary')] 3.0",
            "S grpc_server_handled_total [('grpc_code', 'INVALID_ARGUMENT'), ('grpc_method', 'Search'), "
            "('grpc_service', 'vecshard.Shard'), ('grpc_type', 'unary')] 1.0",
            "F grpc_server_handling_seconds histogram 'Histogram of response latency (seconds) of gRPC that "
            "had been "
            "application-level handled by the server.'",
            "S grpc_server_handling_seconds_bucket [('grpc_method', 'Search'), ('grpc_service', "
            "'vecshard.Shard'), "
            "('grpc_type', 'unary'), ('le', '0.005')] 1.0",
            "S grpc_server_handling_seconds_bucket [('grpc_method', 'Search'), ('grpc_service', "
            "'vecshard.Shard'), "
            "('grpc_type', 'unary'), ('le', '0.25')] 1.0",
            "S grpc_server_handling_seconds_bucket [('grpc_method', 'Search'), ('grpc_service', "
            "'vecshard.Shard'), "
            "('grpc_type', 'unary'), ('le', '0.5')] 2.0",
            "S grpc_server_handling_seconds_bucket [('grpc_method', 'Search'), ('grpc_service', "
            "'vecshard.Shard'), "
            "('grpc_type', 'unary'), ('le', '10')] 2.0",
            "S grpc_server_handling_seconds_bucket [('grpc_method', 'Search'), ('grpc_service', "
            "'vecshard.Shard'), "
            "('grpc_type', 'unary'), ('le', '+Inf')] 3.0",
            "S grpc_server_handling_seconds_count [('grpc_method', 'Search'), ('grpc_service', "
            "'vecshard.Shard'), "
            "('grpc_type', 'unary')] 3.0",
            "S grpc_server_handling_seconds_sum [('grpc_method', 'Search'), ('grpc_service', "
            "'vecshard.Shard'), "
            "('grpc_type', 'unary')] 20.505",
            "F vecshard_search_duration_seconds histogram 'ANN search latency in seconds.'",
            "S vecshard_search_duration_seconds_bucket [('le', '0.0001')] 0.0",
            "S vecshard_search_duration_seconds_bucket [('le', '0.00025')] 2.0",
            "S vecshard_search_duration_seconds_count [] 2.0",
            "S vecshard_search_duration_seconds_sum [] 0.0004",
            "F vecshard_shard_vectors gauge 'Vectors served by this shard.'",
            "S vecshard_shard_vectors [] 1000000.0",
            "F vecshard_test_escape gauge 'Help with \\\\ backslash\\nand newline.'",
            "S vecshard_test_escape [('v', 'q\"b\\\\s\\nn')] 0.25",
            "S vecshard_build_info [('version', '0.2.0')] 1.0",
            "F process_cpu_seconds counter 'Total user and system CPU time spent in seconds.'",
            "F process_resident_memory_bytes gauge 'Resident memory size in bytes.'",
            "F process_open_fds gauge 'Number of open file descriptors.'",
        };
        for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
            CHECKF(vs_test_has_line(parsed, want[i]), "parser output lacks: %s\n--- parser output:\n%s",
                   want[i], parsed);
        /* Family order as served (sorted by name). */
        const char *a = strstr(parsed, "F grpc_server_handled "),
                   *b = strstr(parsed, "F process_cpu_seconds "),
                   *c = strstr(parsed, "F vecshard_build_info ");
        CHECK(a && b && c && a < b && b < c);
        free(parsed);
    }
    free(text);

    vs_http_stop(h);
    vs_http_stop(NULL);
    /* After stop the port is closed. */
    fprintf(stderr, "expected next: a refused connection after vs_http_stop\n");
    code = request(port, "GET", "/healthz", &body, NULL, 0);
    CHECK(code == 0);
    free(body);
    vs_metrics_destroy(reg);
    vs_test_cleanup(TEST_NAME);
}

static void test_ipv6_and_no_registry(void)
{
    vs_http_t *h = NULL;
    uint16_t port = 0;
    char err[VS_ERR_LEN];
    /* Without a registry /metrics is 404 and /healthz still answers. */
    CHECK(vs_http_start("127.0.0.1", 0, NULL, &h, &port, err) == VS_OK);
    char *body = NULL;
    CHECK(request(port, "GET", "/metrics", &body, NULL, 0) == 404);
    free(body);
    CHECK(request(port, "GET", "/healthz", &body, NULL, 0) == 200);
    free(body);
    vs_http_stop(h);
    CHECK(vs_http_start("127.0.0.1", 0, NULL, NULL, &port, err) == VS_ERR_INVALID_ARGUMENT);
    /* IPv6 loopback, if the machine has it. */
    h = NULL;
    if (vs_http_start("::1", 0, NULL, &h, &port, err) == VS_OK) {
        CHECK(port != 0);
        vs_http_stop(h);
    } else {
        fprintf(stderr, "note: no IPv6 loopback here (%s)\n", err);
    }
}

enum { N_IDLE = 1000, N_SLOW = 100 };

typedef struct slow_feed {
    int fds[N_SLOW];
    atomic_int stop;
    int sent; /* bytes sent on each connection */
} slow_feed_t;

/* Sends one more byte of a request whose headers never end on every slow connection, once a second. */
static void *slow_main(void *arg)
{
    slow_feed_t *f = arg;
    static const char req[] = "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    while (!atomic_load(&f->stop)) {
        char c = f->sent < (int)sizeof req - 1 ? req[f->sent] : 'a';
        for (int i = 0; i < N_SLOW; i++)
            CHECK(send(f->fds[i], &c, 1, MSG_NOSIGNAL) == 1);
        f->sent++;
        for (int t = 0; t < 10 && !atomic_load(&f->stop); t++)
            nanosleep(&(struct timespec){0, 100 * 1000 * 1000}, NULL);
    }
    return NULL;
}

static int connect_to(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* 1 when the server has not closed fd (no EOF or reset pending). */
static int still_open(int fd)
{
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_DONTWAIT | MSG_PEEK);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

static void test_hostile_clients(void)
{
    /* The client and the server ends of 1,100 connections live in this process. */
    struct rlimit rl;
    CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    rlim_t need = 2 * (N_IDLE + N_SLOW) + 256;
    if (rl.rlim_cur < need) {
        rl.rlim_cur = rl.rlim_max < need ? rl.rlim_max : need;
        CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
    }
    if (rl.rlim_cur < need) {
        fprintf(stderr, "FAIL: the descriptor limit (%llu) is below the %llu this test needs\n",
                (unsigned long long)rl.rlim_cur, (unsigned long long)need);
        CHECK(0);
        return;
    }
    vs_metrics_t *reg = vs_metrics_create();
    vs_counter_inc(vs_metrics_counter_single(reg, "vecshard_test_hostile_total", "A test counter."));
    vs_http_t *h = NULL;
    uint16_t port = 0;
    char err[VS_ERR_LEN];
    CHECK(vs_http_start("127.0.0.1", 0, reg, &h, &port, err) == VS_OK);
    int idle[N_IDLE];
    slow_feed_t feed = {.sent = 0};
    atomic_init(&feed.stop, 0);
    for (int i = 0; i < N_IDLE; i++)
        CHECK((idle[i] = connect_to(port)) >= 0);
    for (int i = 0; i < N_SLOW; i++)
        CHECK((feed.fds[i] = connect_to(port)) >= 0);
    pthread_t th;
    CHECK(pthread_create(&th, NULL, slow_main, &feed) == 0);
    /* Scrapes for 3 s while the slow clients trickle: each one is accepted after the 1,100 connections
     * queued before it, and must be answered in full. */
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int scrapes = 0;
    do {
        char *body = NULL;
        long code = request(port, "GET", "/metrics", &body, NULL, 0);
        CHECK(code == 200);
        CHECK(body && strstr(body, "vecshard_test_hostile_total 1") != NULL);
        free(body);
        scrapes++;
        nanosleep(&(struct timespec){0, 200 * 1000 * 1000}, NULL);
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while ((now.tv_sec - t0.tv_sec) + (now.tv_nsec - t0.tv_nsec) / 1e9 < 3.0);
    atomic_store(&feed.stop, 1);
    pthread_join(th, NULL);
    CHECK(feed.sent >= 3); /* the slow clients really were trickling during the scrapes */
    /* The hostile connections were held, not refused or dropped to make room. */
    int open_idle = 0, open_slow = 0;
    for (int i = 0; i < N_IDLE; i++)
        open_idle += still_open(idle[i]);
    for (int i = 0; i < N_SLOW; i++)
        open_slow += still_open(feed.fds[i]);
    fprintf(stderr, "hostile clients: %d scrapes answered; %d/%d idle and %d/%d slow connections open\n",
            scrapes, open_idle, N_IDLE, open_slow, N_SLOW);
    CHECK(open_idle == N_IDLE && open_slow == N_SLOW);
    for (int i = 0; i < N_IDLE; i++)
        close(idle[i]);
    for (int i = 0; i < N_SLOW; i++)
        close(feed.fds[i]);
    vs_http_stop(h);
    vs_metrics_destroy(reg);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    RUN(test_scrape);
    RUN(test_ipv6_and_no_registry);
    RUN(test_hostile_clients);
    curl_global_cleanup();
    return vs_test_finish();
}
