/* proc_fixture.c: starts, signals, restarts and cleans up a real server process for tests (proc_fixture.h).
 * Ports come from binding 127.0.0.1:0 and reading the port back (a small race with other processes; a
 * start whose process exits early is retried on new ports). Readiness is polled every 50 ms. */
#include "tests/integration/proc_fixture.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/testlib.h"

#define READY_TIMEOUT_MS 10000
#define STOP_TIMEOUT_MS 10000

struct vs_proc_fixture {
    const vs_proc_spec_t *spec;
    void *user;
    char dir[1024];
    char log_path[1100];
    char bin[1024];
    char name[64];
    int ports[VS_PROC_FIXTURE_MAX_PORTS];
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

/* Finds the binary: $bin_env, else the first executable bin_name on PATH, else in /usr/sbin. */
static int find_bin(const vs_proc_spec_t *spec, char *out, size_t cap)
{
    const char *env = spec->bin_env ? getenv(spec->bin_env) : NULL;
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
        snprintf(out, cap, "%.*s/%s", (int)n, n > 0 ? path : ".", spec->bin_name);
        if (access(out, X_OK) == 0)
            return 0;
        path += n + (end != NULL);
    }
    snprintf(out, cap, "/usr/sbin/%s", spec->bin_name);
    return access(out, X_OK) == 0 ? 0 : -1;
}

static void print_log_tail(const vs_proc_fixture_t *f)
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
static int reap_if_exited(vs_proc_fixture_t *f, int *status)
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

static vs_status spawn(vs_proc_fixture_t *f, char err[VS_ERR_LEN])
{
    char *argv[VS_PROC_FIXTURE_MAX_ARGS] = {0};
    char buf[4096];
    f->spec->argv(f, argv, buf, sizeof buf);
    argv[VS_PROC_FIXTURE_MAX_ARGS - 1] = NULL;
    int logfd = open(f->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (logfd < 0)
        return vs_errf(err, VS_ERR_IO, "%s fixture: open %s: %s", f->spec->what, f->log_path,
                       strerror(errno));
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        close(logfd);
        return vs_errf(err, VS_ERR_IO, "%s fixture: fork: %s", f->spec->what, strerror(errno));
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

/* Spawns the process and waits until ready; on an early exit reports VS_ERR_UNAVAILABLE (port taken). */
static vs_status launch(vs_proc_fixture_t *f, char err[VS_ERR_LEN])
{
    vs_status st = spawn(f, err);
    if (st != VS_OK)
        return st;
    int64_t deadline = vs_test_now_ms() + READY_TIMEOUT_MS;
    while (vs_test_now_ms() < deadline) {
        int status = 0;
        if (reap_if_exited(f, &status)) {
            print_log_tail(f);
            return vs_errf(err, VS_ERR_UNAVAILABLE,
                           "%s fixture: %s exited during start (status 0x%x); see %s", f->spec->what,
                           f->spec->what, status, f->log_path);
        }
        if (f->spec->ready(f))
            return VS_OK;
        vs_test_sleep_ms(50);
    }
    print_log_tail(f);
    kill(f->pid, SIGKILL);
    waitpid(f->pid, NULL, 0);
    f->pid = 0;
    return vs_errf(err, VS_ERR_DEADLINE_EXCEEDED, "%s fixture: not ready after %d ms; see %s", f->spec->what,
                   READY_TIMEOUT_MS, f->log_path);
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

vs_status vs_proc_fixture_start(const vs_proc_spec_t *spec, const char *name, void *user,
                                vs_proc_fixture_t **out, char err[VS_ERR_LEN])
{
    *out = NULL;
    vs_proc_fixture_t *f = calloc(1, sizeof *f);
    if (f == NULL)
        return vs_errf(err, VS_ERR_NOMEM, "%s fixture: out of memory", spec->what);
    f->spec = spec;
    f->user = user;
    if (find_bin(spec, f->bin, sizeof f->bin) != 0) {
        free(f);
        return vs_errf(err, VS_ERR_NOT_FOUND,
                       "%s fixture: no %s executable (%s%sinstall Debian's %s: apt-get install %s)",
                       spec->what, spec->bin_name, spec->bin_env ? "set " : "",
                       spec->bin_env ? spec->bin_env : "", spec->package, spec->package);
    }
    snprintf(f->name, sizeof f->name, "%s", name != NULL && name[0] ? name : "vs");
    const char *base = getenv("VS_TEST_TMPDIR");
    if (base == NULL || base[0] == '\0')
        base = "/tmp";
    mkdir(base, 0755);
    snprintf(f->dir, sizeof f->dir, "%s/%s-%.40s.XXXXXX", base, spec->what, f->name);
    if (mkdtemp(f->dir) == NULL) {
        vs_status st =
            vs_errf(err, VS_ERR_IO, "%s fixture: mkdtemp %s: %s", spec->what, f->dir, strerror(errno));
        free(f);
        return st;
    }
    snprintf(f->log_path, sizeof f->log_path, "%s/%s.log", f->dir, spec->what);
    vs_status st = VS_ERR_UNAVAILABLE;
    for (int attempt = 0; attempt < 3 && st == VS_ERR_UNAVAILABLE; attempt++) {
        int ok = 1;
        for (int i = 0; i < spec->n_ports && ok; i++) {
            f->ports[i] = free_port();
            ok = f->ports[i] > 0;
            for (int j = 0; j < i && ok; j++)
                ok = f->ports[j] != f->ports[i];
        }
        if (!ok) {
            st = vs_errf(err, VS_ERR_UNAVAILABLE, "%s fixture: no free loopback port", spec->what);
            continue;
        }
        if (spec->data_subdir) { /* a failed attempt may have left half-made state */
            char data[1100];
            snprintf(data, sizeof data, "%s/%s", f->dir, spec->data_subdir);
            remove_tree(data);
        }
        st = launch(f, err);
    }
    if (st != VS_OK) {
        vs_proc_fixture_destroy(f);
        return st;
    }
    *out = f;
    return VS_OK;
}

char *vs_proc_fixture_arg(char *buf, size_t cap, size_t *off, const char *fmt, ...)
{
    char *s = buf + *off;
    va_list ap;
    va_start(ap, fmt);
    int n = *off < cap ? vsnprintf(s, cap - *off, fmt, ap) : -1;
    va_end(ap);
    *off = n >= 0 && *off + (size_t)n + 1 <= cap ? *off + (size_t)n + 1 : cap;
    return s;
}

int vs_proc_fixture_port(const vs_proc_fixture_t *f, int i)
{
    return i >= 0 && i < VS_PROC_FIXTURE_MAX_PORTS ? f->ports[i] : -1;
}

const char *vs_proc_fixture_dir(const vs_proc_fixture_t *f)
{
    return f->dir;
}

const char *vs_proc_fixture_name(const vs_proc_fixture_t *f)
{
    return f->name;
}

const char *vs_proc_fixture_bin(const vs_proc_fixture_t *f)
{
    return f->bin;
}

void *vs_proc_fixture_user(const vs_proc_fixture_t *f)
{
    return f->user;
}

static vs_status signal_and_reap(vs_proc_fixture_t *f, int sig, int timeout_ms, char err[VS_ERR_LEN])
{
    if (f->pid == 0)
        return VS_OK;
    if (kill(f->pid, sig) != 0 && errno != ESRCH)
        return vs_errf(err, VS_ERR_IO, "%s fixture: kill %d: %s", f->spec->what, (int)f->pid,
                       strerror(errno));
    int64_t deadline = vs_test_now_ms() + timeout_ms;
    int status;
    while (!reap_if_exited(f, &status)) {
        if (vs_test_now_ms() > deadline) {
            kill(f->pid, SIGKILL);
            waitpid(f->pid, NULL, 0);
            f->pid = 0;
            return vs_errf(err, VS_ERR_DEADLINE_EXCEEDED, "%s fixture: %s ignored signal %d; killed",
                           f->spec->what, f->spec->what, sig);
        }
        vs_test_sleep_ms(10);
    }
    return VS_OK;
}

vs_status vs_proc_fixture_stop(vs_proc_fixture_t *f, char err[VS_ERR_LEN])
{
    if (f->pid != 0)
        kill(f->pid, SIGCONT); /* a paused process cannot handle SIGTERM */
    return signal_and_reap(f, SIGTERM, STOP_TIMEOUT_MS, err);
}

vs_status vs_proc_fixture_kill(vs_proc_fixture_t *f, char err[VS_ERR_LEN])
{
    return signal_and_reap(f, SIGKILL, STOP_TIMEOUT_MS, err);
}

static vs_status send_signal(vs_proc_fixture_t *f, int sig, char err[VS_ERR_LEN])
{
    if (f->pid == 0)
        return vs_errf(err, VS_ERR_FAILED_PRECONDITION, "%s fixture: %s is not running", f->spec->what,
                       f->spec->what);
    if (kill(f->pid, sig) != 0)
        return vs_errf(err, VS_ERR_IO, "%s fixture: kill %d: %s", f->spec->what, (int)f->pid,
                       strerror(errno));
    return VS_OK;
}

/* Sends sig and waits until the child reports the state change (kill() returns before it happens). */
static vs_status signal_and_wait(vs_proc_fixture_t *f, int sig, int flag, char err[VS_ERR_LEN])
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
        return vs_errf(err, VS_ERR_UNAVAILABLE, "%s fixture: %s exited (status 0x%x)", f->spec->what,
                       f->spec->what, status);
    }
    return VS_OK;
}

vs_status vs_proc_fixture_pause(vs_proc_fixture_t *f, char err[VS_ERR_LEN])
{
    return signal_and_wait(f, SIGSTOP, WUNTRACED, err);
}

vs_status vs_proc_fixture_resume(vs_proc_fixture_t *f, char err[VS_ERR_LEN])
{
    return signal_and_wait(f, SIGCONT, WCONTINUED, err);
}

vs_status vs_proc_fixture_restart(vs_proc_fixture_t *f, char err[VS_ERR_LEN])
{
    if (f->pid != 0)
        return vs_errf(err, VS_ERR_FAILED_PRECONDITION, "%s fixture: %s is still running", f->spec->what,
                       f->spec->what);
    return launch(f, err);
}

void vs_proc_fixture_destroy(vs_proc_fixture_t *f)
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
