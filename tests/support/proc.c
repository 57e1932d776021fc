/* proc.c: see proc.h. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/cli/timing.h"
#include "tests/support/proc.h"
#include "tests/testlib.h"

int vs_test_proc_start(vs_test_proc_t *p, const char *dir, const char *name, const char *exe,
                       const char *const *argv)
{
    memset(p, 0, sizeof *p);
    const char *bin = getenv("VS_BIN_DIR");
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", bin ? bin : "build/bin", exe);
    snprintf(p->port_file, sizeof p->port_file, "%s/ports-%s", dir, name);
    snprintf(p->log, sizeof p->log, "%s/log-%s", dir, name);
    unlink(p->port_file);
    const char *args[64];
    size_t n = 0;
    args[n++] = path;
    for (size_t i = 0; argv[i] && n < 60; i++)
        args[n++] = argv[i];
    args[n++] = "--port-file";
    args[n++] = p->port_file;
    args[n] = NULL;
    p->pid = fork();
    if (p->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* a crashed test leaves nothing running */
        int fd = open(p->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execv(path, (char *const *)args);
        _exit(127);
    }
    double t0 = vs_now_s();
    while (vs_now_s() - t0 < 20) {
        FILE *f = fopen(p->port_file, "r");
        if (f) {
            int ok = fscanf(f, "grpc=%d\nmetrics=%d", &p->grpc_port, &p->metrics_port) == 2;
            fclose(f);
            if (ok)
                return 0;
        }
        int status;
        if (waitpid(p->pid, &status, WNOHANG) == p->pid) {
            p->pid = 0;
            return -1;
        }
        usleep(20000);
    }
    vs_test_proc_stop(p, SIGKILL, 5);
    return -1;
}

int vs_test_proc_stop(vs_test_proc_t *p, int sig, double timeout_s)
{
    if (p->pid <= 0)
        return -1;
    kill(p->pid, SIGCONT);
    kill(p->pid, sig);
    double t0 = vs_now_s();
    int status;
    while (vs_now_s() - t0 < timeout_s) {
        if (waitpid(p->pid, &status, WNOHANG) == p->pid) {
            p->pid = 0;
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
        usleep(10000);
    }
    kill(p->pid, SIGKILL);
    waitpid(p->pid, &status, 0);
    p->pid = 0;
    return -1;
}

void vs_test_proc_signal(const vs_test_proc_t *p, int sig)
{
    if (p->pid > 0)
        kill(p->pid, sig);
}

void vs_test_proc_tail(const vs_test_proc_t *p, int n)
{
    char cmd[PATH_MAX + 32];
    snprintf(cmd, sizeof cmd, "tail -n %d %s >&2", n, p->log);
    if (system(cmd) != 0)
        fprintf(stderr, "(no log %s)\n", p->log);
}

double vs_test_proc_metric(const vs_test_proc_t *p, const char *name, const char *scratch)
{
    char cmd[2 * PATH_MAX];
    snprintf(cmd, sizeof cmd, "curl -sf http://127.0.0.1:%d/metrics -o %s", p->metrics_port, scratch);
    if (system(cmd) != 0)
        return -1;
    FILE *f = fopen(scratch, "r");
    if (!f)
        return -1;
    char line[1024];
    size_t n = strlen(name);
    double v = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, name, n) == 0 && line[n] == ' ') {
            v = strtod(line + n + 1, NULL);
            break;
        }
    fclose(f);
    return v;
}

int vs_test_proc_cli(const char *log, const char *endpoint, const char *cluster, const char *args, char *out,
                     size_t cap)
{
    const char *bin = getenv("VS_BIN_DIR");
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s/vecshard %s --etcd %s --cluster %s >%s 2>&1", bin ? bin : "build/bin", args,
             endpoint, cluster, log);
    int rc = system(cmd);
    if (out) {
        size_t len;
        char *text = (char *)vs_test_read_file(log, &len);
        snprintf(out, cap, "%s", text ? text : "");
        free(text);
    }
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

int vs_test_run_tool(const char *cmd, const char *log)
{
    char full[8192];
    snprintf(full, sizeof full, "%s >%s 2>&1", cmd, log);
    int rc = system(full);
    if (rc != 0) {
        fprintf(stderr, "failed (%d): %s\n", rc, cmd);
        snprintf(full, sizeof full, "tail -n 20 %s >&2", log);
        (void)!system(full);
    }
    return rc;
}
