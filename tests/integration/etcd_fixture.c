/* etcd_fixture.c: starts, signals, restarts and cleans up a real etcd for tests. Ports come from binding
 * 127.0.0.1:0 and reading the port back (a small race with other processes; a start whose etcd exits
 * early is retried on new ports). Health is polled with libcurl every 50 ms. */
#include "tests/integration/etcd_fixture.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "tests/testlib.h"

#define HEALTH_TIMEOUT_MS 10000
#define STOP_TIMEOUT_MS 10000

struct vs_etcd_fixture {
    char dir[1024];
    char data_dir[1100];
    char log_path[1100];
    char bin[1024];
    char name[64];
    int client_port, peer_port;
    char endpoint[96];
    pid_t pid; /* 0 when not running */
};

static int free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int port = -1;
    if (bind(s, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(s, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(s);
    return port;
}

/* Finds etcd: $VS_ETCD_BIN, else the first executable "etcd" on PATH. */
static int find_etcd(char *out, size_t cap)
{
    const char *env = getenv("VS_ETCD_BIN");
    if (env != NULL && env[0] != '\0') {
        snprintf(out, cap, "%s", env);
        return access(out, X_OK) == 0 ? 0 : -1;
    }
    const char *path = getenv("PATH");
    if (path == NULL)
        path = "/usr/local/bin:/usr/bin:/bin";
    while (*path) {
        const char *end = strchr(path, ':');
        size_t n = end != NULL ? (size_t)(end - path) : strlen(path);
        snprintf(out, cap, "%.*s/etcd", (int)n, n > 0 ? path : ".");
        if (access(out, X_OK) == 0)
            return 0;
        path += n + (end != NULL);
    }
    return -1;
}

typedef struct small_body {
    char buf[256];
    size_t n;
} small_body_t;

static size_t keep_head(char *p, size_t size, size_t nmemb, void *ud)
{
    small_body_t *b = ud;
    size_t n = size * nmemb, room = sizeof b->buf - 1 - b->n;
    size_t take = n < room ? n : room;
    memcpy(b->buf + b->n, p, take);
    b->n += take;
    b->buf[b->n] = '\0';
    return n;
}

/* One GET /health; 1 when etcd says {"health":"true"}. */
static int healthy(const vs_etcd_fixture_t *f)
{
    CURL *h = curl_easy_init();
    if (h == NULL)
        return 0;
    char url[128];
    snprintf(url, sizeof url, "%s/health", f->endpoint);
    small_body_t b = {{0}, 0};
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 1000L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, keep_head);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    long code = 0;
    int ok = curl_easy_perform(h) == CURLE_OK &&
             curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code) == CURLE_OK && code == 200;
    curl_easy_cleanup(h);
    return ok && strstr(b.buf, "\"health\":\"true\"") != NULL;
}

static void print_log_tail(const vs_etcd_fixture_t *f)
{
    FILE *fp = fopen(f->log_path, "r");
    if (fp == NULL)
        return;
    fseek(fp, 0, SEEK_END);
    long size = ftell(fp);
    fseek(fp, size > 3000 ? size - 3000 : 0, SEEK_SET);
    char buf[3001];
    size_t n = fread(buf, 1, 3000, fp);
    buf[n] = '\0';
    fclose(fp);
    fprintf(stderr, "---- tail of %s ----\n%s\n----\n", f->log_path, buf);
}

/* Reaps the child if it exited; returns 1 if it is gone. */
static int reap_if_exited(vs_etcd_fixture_t *f, int *status)
{
    if (f->pid == 0)
        return 1;
    pid_t r = waitpid(f->pid, status, WNOHANG);
    if (r == f->pid || (r < 0 && errno == ECHILD)) {
        f->pid = 0;
        return 1;
    }
    return 0;
}

static vs_status spawn(vs_etcd_fixture_t *f, char err[VS_ERR_LEN])
{
    char a_name[96], a_client[96], a_peer[96], a_cluster[160];
    snprintf(a_name, sizeof a_name, "%s", f->name);
    snprintf(a_client, sizeof a_client, "http://127.0.0.1:%d", f->client_port);
    snprintf(a_peer, sizeof a_peer, "http://127.0.0.1:%d", f->peer_port);
    snprintf(a_cluster, sizeof a_cluster, "%s=http://127.0.0.1:%d", f->name, f->peer_port);
    snprintf(f->endpoint, sizeof f->endpoint, "%s", a_client);
    char *argv[] = {f->bin,      "--name",
                    a_name,      "--data-dir",
                    f->data_dir, "--listen-client-urls",
                    a_client,    "--advertise-client-urls",
                    a_client,    "--listen-peer-urls",
                    a_peer,      "--initial-advertise-peer-urls",
                    a_peer,      "--initial-cluster",
                    a_cluster,   "--initial-cluster-state",
                    "new",       NULL};
    int logfd = open(f->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (logfd < 0)
        return vs_errf(err, VS_ERR_IO, "etcd fixture: open %s: %s", f->log_path, strerror(errno));
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        close(logfd);
        return vs_errf(err, VS_ERR_IO, "etcd fixture: fork: %s", strerror(errno));
    }
    if (pid == 0) {
        /* child: only async-signal-safe calls until exec */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0)
            dup2(devnull, 0);
        dup2(logfd, 1);
        dup2(logfd, 2);
        close_range(3, ~0U, 0);
        execv(f->bin, argv);
        _exit(127);
    }
    close(logfd);
    f->pid = pid;
    return VS_OK;
}

/* Spawns etcd and waits for health; on an early exit reports VS_ERR_UNAVAILABLE (e.g. port taken). */
static vs_status launch(vs_etcd_fixture_t *f, char err[VS_ERR_LEN])
{
    vs_status st = spawn(f, err);
    if (st != VS_OK)
        return st;
    int64_t deadline = vs_test_now_ms() + HEALTH_TIMEOUT_MS;
    while (vs_test_now_ms() < deadline) {
        int status = 0;
        if (reap_if_exited(f, &status)) {
            print_log_tail(f);
            return vs_errf(err, VS_ERR_UNAVAILABLE,
                           "etcd fixture: etcd exited during start (status 0x%x); see %s", status,
                           f->log_path);
        }
        if (healthy(f))
            return VS_OK;
        vs_test_sleep_ms(50);
    }
    print_log_tail(f);
    kill(f->pid, SIGKILL);
    waitpid(f->pid, NULL, 0);
    f->pid = 0;
    return vs_errf(err, VS_ERR_DEADLINE_EXCEEDED, "etcd fixture: not healthy after %d ms; see %s",
                   HEALTH_TIMEOUT_MS, f->log_path);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

static void remove_tree(const char *dir)
{
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

vs_status vs_etcd_fixture_start(const char *name, vs_etcd_fixture_t **out, char err[VS_ERR_LEN])
{
    static int curl_ready = 0;
    if (!curl_ready) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        curl_ready = 1;
    }
    vs_etcd_fixture_t *f = calloc(1, sizeof *f);
    if (f == NULL)
        return vs_errf(err, VS_ERR_NOMEM, "etcd fixture: out of memory");
    if (find_etcd(f->bin, sizeof f->bin) != 0) {
        free(f);
        return vs_errf(err, VS_ERR_NOT_FOUND,
                       "etcd fixture: no etcd executable (set VS_ETCD_BIN or install Debian's etcd-server: "
                       "apt-get install etcd-server)");
    }
    snprintf(f->name, sizeof f->name, "%s", name != NULL && name[0] ? name : "vs");
    const char *base = getenv("VS_TEST_TMPDIR");
    if (base == NULL || base[0] == '\0')
        base = "/tmp";
    mkdir(base, 0755);
    snprintf(f->dir, sizeof f->dir, "%s/etcd-%.40s.XXXXXX", base, f->name);
    if (mkdtemp(f->dir) == NULL) {
        vs_status st = vs_errf(err, VS_ERR_IO, "etcd fixture: mkdtemp %s: %s", f->dir, strerror(errno));
        free(f);
        return st;
    }
    snprintf(f->data_dir, sizeof f->data_dir, "%s/data", f->dir);
    snprintf(f->log_path, sizeof f->log_path, "%s/etcd.log", f->dir);
    vs_status st = VS_ERR_UNAVAILABLE;
    for (int attempt = 0; attempt < 3 && st == VS_ERR_UNAVAILABLE; attempt++) {
        f->client_port = free_port();
        f->peer_port = free_port();
        if (f->client_port <= 0 || f->peer_port <= 0 || f->client_port == f->peer_port) {
            st = vs_errf(err, VS_ERR_UNAVAILABLE, "etcd fixture: no free loopback port");
            continue;
        }
        remove_tree(f->data_dir); /* a failed attempt may have left a half-made member */
        st = launch(f, err);
    }
    if (st != VS_OK) {
        vs_etcd_fixture_destroy(f);
        return st;
    }
    *out = f;
    return VS_OK;
}

const char *vs_etcd_fixture_endpoint(const vs_etcd_fixture_t *f)
{
    return f->endpoint;
}

const char *vs_etcd_fixture_dir(const vs_etcd_fixture_t *f)
{
    return f->dir;
}

static vs_status signal_and_reap(vs_etcd_fixture_t *f, int sig, int timeout_ms, char err[VS_ERR_LEN])
{
    if (f->pid == 0)
        return VS_OK;
    if (kill(f->pid, sig) != 0 && errno != ESRCH)
        return vs_errf(err, VS_ERR_IO, "etcd fixture: kill %d: %s", (int)f->pid, strerror(errno));
    int64_t deadline = vs_test_now_ms() + timeout_ms;
    int status;
    while (!reap_if_exited(f, &status)) {
        if (vs_test_now_ms() > deadline) {
            kill(f->pid, SIGKILL);
            waitpid(f->pid, NULL, 0);
            f->pid = 0;
            return vs_errf(err, VS_ERR_DEADLINE_EXCEEDED, "etcd fixture: etcd ignored signal %d; killed",
                           sig);
        }
        vs_test_sleep_ms(10);
    }
    return VS_OK;
}

vs_status vs_etcd_fixture_stop(vs_etcd_fixture_t *f, char err[VS_ERR_LEN])
{
    if (f->pid != 0)
        kill(f->pid, SIGCONT); /* a paused etcd cannot handle SIGTERM */
    return signal_and_reap(f, SIGTERM, STOP_TIMEOUT_MS, err);
}

vs_status vs_etcd_fixture_kill(vs_etcd_fixture_t *f, char err[VS_ERR_LEN])
{
    return signal_and_reap(f, SIGKILL, STOP_TIMEOUT_MS, err);
}

static vs_status send_signal(vs_etcd_fixture_t *f, int sig, char err[VS_ERR_LEN])
{
    if (f->pid == 0)
        return vs_errf(err, VS_ERR_FAILED_PRECONDITION, "etcd fixture: etcd is not running");
    if (kill(f->pid, sig) != 0)
        return vs_errf(err, VS_ERR_IO, "etcd fixture: kill %d: %s", (int)f->pid, strerror(errno));
    return VS_OK;
}

/* Sends sig and waits until the child reports the state change (kill() returns before it happens). */
static vs_status signal_and_wait(vs_etcd_fixture_t *f, int sig, int flag, char err[VS_ERR_LEN])
{
    vs_status st = send_signal(f, sig, err);
    if (st != VS_OK)
        return st;
    int status = 0;
    pid_t r;
    while ((r = waitpid(f->pid, &status, flag)) < 0 && errno == EINTR) {
    }
    if (r == f->pid && (WIFEXITED(status) || WIFSIGNALED(status))) {
        f->pid = 0;
        return vs_errf(err, VS_ERR_UNAVAILABLE, "etcd fixture: etcd exited (status 0x%x)", status);
    }
    return VS_OK;
}

vs_status vs_etcd_fixture_pause(vs_etcd_fixture_t *f, char err[VS_ERR_LEN])
{
    return signal_and_wait(f, SIGSTOP, WUNTRACED, err);
}

vs_status vs_etcd_fixture_resume(vs_etcd_fixture_t *f, char err[VS_ERR_LEN])
{
    return signal_and_wait(f, SIGCONT, WCONTINUED, err);
}

vs_status vs_etcd_fixture_restart(vs_etcd_fixture_t *f, char err[VS_ERR_LEN])
{
    if (f->pid != 0)
        return vs_errf(err, VS_ERR_FAILED_PRECONDITION, "etcd fixture: etcd is still running");
    return launch(f, err);
}

void vs_etcd_fixture_destroy(vs_etcd_fixture_t *f)
{
    if (f == NULL)
        return;
    if (f->pid != 0) {
        kill(f->pid, SIGKILL);
        waitpid(f->pid, NULL, 0);
    }
    remove_tree(f->dir);
    free(f);
}
