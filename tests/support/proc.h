/* proc.h: processes started by integration tests (vecshard-shard, vecshard-coordinator): spawn with a
 * --port-file, wait for the ports, signal, wait for exit. Output goes to a log file per process. */
#ifndef VS_TESTS_SUPPORT_PROC_H
#define VS_TESTS_SUPPORT_PROC_H

#include <limits.h>
#include <sys/types.h>

typedef struct vs_test_proc {
    pid_t pid;
    int grpc_port, metrics_port;
    char port_file[PATH_MAX];
    char log[PATH_MAX];
} vs_test_proc_t;

/* Starts $VS_BIN_DIR/<exe> with argv (NULL-terminated, without the program name) plus
 * "--port-file <dir>/ports-<name>", logs to <dir>/log-<name>, and waits up to 20 s for the port file.
 * 0 on success; -1 if the process exited or never wrote its ports (then p->pid is 0). */
int vs_test_proc_start(vs_test_proc_t *p, const char *dir, const char *name, const char *exe,
                       const char *const *argv);

/* Sends sig and waits up to timeout_s for exit (SIGKILL after). Returns the exit status (128+signal
 * when killed by a signal), -1 if it had to be killed. */
int vs_test_proc_stop(vs_test_proc_t *p, int sig, double timeout_s);

/* Sends sig without waiting (SIGSTOP, SIGCONT). */
void vs_test_proc_signal(const vs_test_proc_t *p, int sig);

/* A sample without labels from the process's /metrics ("name value"), -1 if absent or unreachable.
 * scratch: a file path the scrape is written to. */
double vs_test_proc_metric(const vs_test_proc_t *p, const char *name, const char *scratch);

/* Prints the last n lines of the process's log to stderr. */
void vs_test_proc_tail(const vs_test_proc_t *p, int n);

/* Runs a shell command line (an offline tool) with its output into the file log: 0 when it succeeded, else
 * its status, with the command and the log's last 20 lines on stderr. */
int vs_test_run_tool(const char *cmd, const char *log);

/* Runs `$VS_BIN_DIR/vecshard <args> --etcd <endpoint> --cluster <cluster>` (the admin CLI against a test
 * cluster), stdout and stderr into the file log; returns the exit status (-1 if it did not exit) and, when
 * out is non-NULL, the output (cap bytes at most). */
int vs_test_proc_cli(const char *log, const char *endpoint, const char *cluster, const char *args, char *out,
                     size_t cap);

#endif
