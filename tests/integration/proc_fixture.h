/* proc_fixture.h: a real server process for integration tests (etcd, nats-server), on loopback with
 * ephemeral ports and a fresh directory under $VS_TEST_TMPDIR (or /tmp).
 *
 * The fixture finds the binary ($<bin_env>, else PATH, else /usr/sbin), picks the ports, starts the
 * process with the argv its spec builds, waits until the spec says it is ready (10 s), and can then stop
 * (SIGTERM), kill (SIGKILL), pause (SIGSTOP), resume (SIGCONT) and restart it on the same ports and
 * directory. Output goes to <dir>/<what>.log, whose tail is printed when a start fails; a start whose
 * process exits early (a port taken meanwhile) is retried on new ports. destroy always reaps the process
 * and removes the directory. The child gets PR_SET_PDEATHSIG(SIGKILL), so a crashed test leaves nothing
 * running. Not thread-safe: drive one fixture from the thread that created it. */
#ifndef VS_TESTS_PROC_FIXTURE_H
#define VS_TESTS_PROC_FIXTURE_H

#include <stddef.h>

#include "common/status.h"

#define VS_PROC_FIXTURE_MAX_PORTS 4
#define VS_PROC_FIXTURE_MAX_ARGS 32

typedef struct vs_proc_fixture vs_proc_fixture_t;

typedef struct vs_proc_spec {
    const char *what;     /* "etcd": messages, the directory's and the log's names */
    const char *bin_name; /* executable searched on PATH, then in /usr/sbin */
    const char *bin_env;  /* environment variable naming the binary instead (may be NULL) */
    const char *package;  /* Debian package named when the binary is missing */
    int n_ports;          /* loopback ports picked per start attempt (1..4) */
    /* Fills argv (argv[0] is the binary; at most VS_PROC_FIXTURE_MAX_ARGS - 1 entries, then NULL) with
     * strings kept in buf (cap bytes). */
    void (*argv)(const vs_proc_fixture_t *f, char **argv, char *buf, size_t cap);
    int (*ready)(const vs_proc_fixture_t *f); /* 1 once the process serves */
    const char *data_subdir; /* removed before every first-start attempt (half-made state); may be NULL */
} vs_proc_spec_t;

/* For argv builders: formats one argument at buf + *off (cap bytes in all), advances *off past it and
 * returns it. */
char *vs_proc_fixture_arg(char *buf, size_t cap, size_t *off, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Starts the process (spec and user are borrowed for the fixture's life). VS_ERR_NOT_FOUND names the
 * package when the binary is missing; VS_ERR_DEADLINE_EXCEEDED when it never became ready; VS_ERR_IO. */
vs_status vs_proc_fixture_start(const vs_proc_spec_t *spec, const char *name, void *user,
                                vs_proc_fixture_t **out, char err[VS_ERR_LEN]);

int vs_proc_fixture_port(const vs_proc_fixture_t *f, int i); /* the same across restarts */
const char *vs_proc_fixture_dir(const vs_proc_fixture_t *f);
const char *vs_proc_fixture_name(const vs_proc_fixture_t *f);
const char *vs_proc_fixture_bin(const vs_proc_fixture_t *f);
void *vs_proc_fixture_user(const vs_proc_fixture_t *f);

vs_status vs_proc_fixture_stop(vs_proc_fixture_t *f, char err[VS_ERR_LEN]);  /* SIGTERM, SIGKILL after 10 s */
vs_status vs_proc_fixture_kill(vs_proc_fixture_t *f, char err[VS_ERR_LEN]);  /* SIGKILL and reap */
vs_status vs_proc_fixture_pause(vs_proc_fixture_t *f, char err[VS_ERR_LEN]); /* SIGSTOP */
vs_status vs_proc_fixture_resume(vs_proc_fixture_t *f, char err[VS_ERR_LEN]);  /* SIGCONT */
vs_status vs_proc_fixture_restart(vs_proc_fixture_t *f, char err[VS_ERR_LEN]); /* same ports and directory */
void vs_proc_fixture_destroy(vs_proc_fixture_t *f);                            /* NULL is a no-op */

#endif
