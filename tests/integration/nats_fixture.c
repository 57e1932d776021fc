/* nats_fixture.c: nats-server -js for tests (nats_fixture.h). Ready once the client port greets with
 * the protocol's INFO line. */
#include "tests/integration/nats_fixture.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

/* JetStream's default storage limit is 75 % of the disk's free space, and every stream reserves its
 * MaxBytes (the write log's default: 8 GiB): a test opening four logs failed on a disk with 40 GB free
 * (JetStream error 10047). The tests' server gets a fixed 1 TiB limit instead (they write kilobytes). */
static void nats_argv(const vs_proc_fixture_t *p, char **argv, char *buf, size_t cap)
{
    size_t off = 0;
    char *port = vs_proc_fixture_arg(buf, cap, &off, "%d", vs_proc_fixture_port(p, 0));
    char *store = vs_proc_fixture_arg(buf, cap, &off, "%s/js", vs_proc_fixture_dir(p));
    char *conf = vs_proc_fixture_arg(buf, cap, &off, "%s/nats.conf", vs_proc_fixture_dir(p));
    FILE *f = fopen(conf, "w");
    if (f != NULL) {
        fprintf(f, "jetstream {\n  store_dir: \"%s\"\n  max_file_store: 1099511627776\n}\n", store);
        fclose(f);
    }
    const char *v[] = {vs_proc_fixture_bin(p),  "-a", "127.0.0.1", "-p", port, "-c", conf, "-js", "-n",
                       vs_proc_fixture_name(p), NULL};
    for (size_t i = 0; i < sizeof v / sizeof *v; i++)
        argv[i] = (char *)v[i];
}

static int ready(const vs_proc_fixture_t *p)
{
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return 0;
    struct timeval tv = {1, 0};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)vs_proc_fixture_port(p, 0))};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    char buf[8] = {0};
    int ok = connect(s, (struct sockaddr *)&a, sizeof a) == 0 && recv(s, buf, 4, MSG_WAITALL) == 4 &&
             memcmp(buf, "INFO", 4) == 0;
    close(s);
    return ok;
}

static const vs_proc_spec_t nats_spec = {.what = "nats",
                                         .bin_name = "nats-server",
                                         .bin_env = "VS_NATS_BIN",
                                         .package = "nats-server",
                                         .n_ports = 1,
                                         .argv = nats_argv,
                                         .ready = ready,
                                         .data_subdir = "js"};

vs_status vs_nats_fixture_start(const char *name, vs_proc_fixture_t **out, char err[VS_ERR_LEN])
{
    return vs_proc_fixture_start(&nats_spec, name, NULL, out, err);
}

void vs_nats_fixture_url(const vs_proc_fixture_t *f, char *out, size_t cap)
{
    snprintf(out, cap, "nats://127.0.0.1:%d", vs_proc_fixture_port(f, 0));
}
