/* nats_fixture.h: a real nats-server with JetStream (Debian nats-server 2.9) for integration tests, on the
 * generic process fixture (proc_fixture.h: start, kill -9, pause, restart on the same port and store).
 * JetStream keeps its file store in <dir>/js, so a restart after kill -9 finds what was acknowledged. */
#ifndef VS_TESTS_NATS_FIXTURE_H
#define VS_TESTS_NATS_FIXTURE_H

#include <stddef.h>

#include "tests/integration/proc_fixture.h"

/* Starts nats-server -js named name; free with vs_proc_fixture_destroy. */
vs_status vs_nats_fixture_start(const char *name, vs_proc_fixture_t **out, char err[VS_ERR_LEN]);

/* "nats://127.0.0.1:<port>" into out. */
void vs_nats_fixture_url(const vs_proc_fixture_t *f, char *out, size_t cap);

#endif
