/* etcd_fixture.h: a real etcd process for integration tests, on loopback with ephemeral ports and a fresh
 * data directory under $VS_TEST_TMPDIR (or /tmp).
 *
 * The fixture starts `etcd` ($VS_ETCD_BIN, else etcd on PATH), waits until GET /health answers
 * {"health":"true"}, and can then stop (SIGTERM), kill (SIGKILL), pause (SIGSTOP), resume (SIGCONT) and
 * restart it on the same ports and data directory. etcd's output goes to <dir>/etcd.log, whose tail is
 * printed when a start fails. vs_etcd_fixture_destroy always reaps the process and removes the directory.
 * The child gets PR_SET_PDEATHSIG(SIGKILL), so a crashed test does not leave etcd running.
 * Not thread-safe: drive one fixture from one thread (the one that created it). */
#ifndef VS_TESTS_ETCD_FIXTURE_H
#define VS_TESTS_ETCD_FIXTURE_H

#include "common/status.h"

typedef struct vs_etcd_fixture vs_etcd_fixture_t;

/* Starts etcd named name (used in the temp directory's name) and waits for health (10 s). Returns
 * VS_ERR_NOT_FOUND with a message naming the package when etcd is not installed, VS_ERR_DEADLINE_EXCEEDED
 * when it never became healthy, VS_ERR_IO for fork/exec/directory failures. Free with destroy. */
vs_status vs_etcd_fixture_start(const char *name, vs_etcd_fixture_t **out, char err[VS_ERR_LEN]);

/* "http://127.0.0.1:<client port>"; borrowed, valid until destroy, the same across restarts. */
const char *vs_etcd_fixture_endpoint(const vs_etcd_fixture_t *f);

/* The temp directory (holds data/ and etcd.log); borrowed. */
const char *vs_etcd_fixture_dir(const vs_etcd_fixture_t *f);

/* SIGTERM and wait for exit (SIGKILL after 10 s). No-op if not running. */
vs_status vs_etcd_fixture_stop(vs_etcd_fixture_t *f, char err[VS_ERR_LEN]);

/* SIGKILL and reap. No-op if not running. */
vs_status vs_etcd_fixture_kill(vs_etcd_fixture_t *f, char err[VS_ERR_LEN]);

/* SIGSTOP / SIGCONT: the process keeps its sockets but answers nothing while paused. */
vs_status vs_etcd_fixture_pause(vs_etcd_fixture_t *f, char err[VS_ERR_LEN]);
vs_status vs_etcd_fixture_resume(vs_etcd_fixture_t *f, char err[VS_ERR_LEN]);

/* Starts etcd again (after stop or kill) on the same ports and data directory; waits for health. */
vs_status vs_etcd_fixture_restart(vs_etcd_fixture_t *f, char err[VS_ERR_LEN]);

/* Kills and reaps etcd if running, removes the temp directory and frees f. NULL is a no-op. */
void vs_etcd_fixture_destroy(vs_etcd_fixture_t *f);

#endif
