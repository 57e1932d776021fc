/* vecshard-bench-rpc: what one gRPC unary call costs against one message on a persistent bidirectional
 * stream, on the gRPC C core as vecshard uses it (issue 14: "a persistent bidirectional stream per shard;
 * measure both"). A server process (this binary, forked) echoes a fixed-size answer to every request,
 * either as a unary method or on streams; the client keeps --inflight requests outstanding (unary calls,
 * or one stream per slot with one message in flight each) and both run one thread polling one completion
 * queue, as the coordinator and the shard do. Reports messages/s and the CPU (utime + stime from /proc)
 * of the client and of the server per message, modes interleaved (unary, stream, unary, stream, ...),
 * each mode's best round. No vecshard code on the path: the figure is gRPC's and the kernel's. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>

#include "common/cli/timing.h"

#define METHOD_UNARY "/bench.Echo/Unary"
#define METHOD_STREAM "/bench.Echo/Stream"
#define MAX_INFLIGHT 256

static size_t g_resp_bytes = 200;

static double proc_cpu_s(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char buf[1024];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    unsigned long ut = 0, st = 0;
    if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2)
        return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
    return 0;
}

static grpc_byte_buffer *make_buffer(size_t len)
{
    grpc_slice s = grpc_slice_malloc(len);
    memset(GRPC_SLICE_START_PTR(s), 0x5a, len);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

/* ---- server ---- */

enum { S_UNARY_NEW, S_UNARY_DONE, S_STREAM_NEW, S_STREAM_RECV, S_STREAM_SENT, S_STREAM_CLOSED };

typedef struct scall {
    int kind;
    grpc_call *call;
    grpc_call_details details;
    grpc_metadata_array md;
    grpc_byte_buffer *recv;
    grpc_byte_buffer *send;
    int cancelled;
    int closed;    /* RECV_CLOSE_ON_SERVER completed */
    int finishing; /* status sent or being sent */
    int sent_md;
    int refs;
    struct {
        struct scall *c;
        int ev;
    } tag[3];
} scall_t;

static grpc_server *g_srv;
static grpc_completion_queue *g_scq;
static void *g_reg_unary, *g_reg_stream;

static scall_t *scall_new(int kind)
{
    scall_t *c = calloc(1, sizeof *c);
    c->kind = kind;
    grpc_call_details_init(&c->details);
    grpc_metadata_array_init(&c->md);
    for (int i = 0; i < 3; i++)
        c->tag[i].c = c;
    return c;
}

static void scall_free(scall_t *c)
{
    if (c->call)
        grpc_call_unref(c->call);
    if (c->recv)
        grpc_byte_buffer_destroy(c->recv);
    if (c->send)
        grpc_byte_buffer_destroy(c->send);
    grpc_call_details_destroy(&c->details);
    grpc_metadata_array_destroy(&c->md);
    free(c);
}

static void request_unary(void)
{
    scall_t *c = scall_new(0);
    c->tag[0].ev = S_UNARY_NEW;
    gpr_timespec dl;
    grpc_server_request_registered_call(g_srv, g_reg_unary, &c->call, &dl, &c->md, &c->recv, g_scq, g_scq,
                                        &c->tag[0]);
}

static void request_stream(void)
{
    scall_t *c = scall_new(1);
    c->tag[0].ev = S_STREAM_NEW;
    gpr_timespec dl;
    grpc_server_request_registered_call(g_srv, g_reg_stream, &c->call, &dl, &c->md, NULL, g_scq, g_scq,
                                        &c->tag[0]);
}

static void stream_recv(scall_t *c)
{
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &c->recv;
    c->tag[1].ev = S_STREAM_RECV;
    c->refs++;
    grpc_call_start_batch(c->call, &op, 1, &c->tag[1], NULL);
}

static int serve_main(int port_fd)
{
    grpc_init();
    g_scq = grpc_completion_queue_create_for_next(NULL);
    g_srv = grpc_server_create(NULL, NULL);
    g_reg_unary =
        grpc_server_register_method(g_srv, METHOD_UNARY, NULL, GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
    g_reg_stream = grpc_server_register_method(g_srv, METHOD_STREAM, NULL, GRPC_SRM_PAYLOAD_NONE, 0);
    grpc_server_register_completion_queue(g_srv, g_scq, NULL);
    grpc_server_credentials *cr = grpc_insecure_server_credentials_create();
    int port = grpc_server_add_http2_port(g_srv, "127.0.0.1:0", cr);
    grpc_server_credentials_release(cr);
    grpc_server_start(g_srv);
    if (write(port_fd, &port, sizeof port) != (ssize_t)sizeof port)
        return 1;
    close(port_fd);
    for (int i = 0; i < MAX_INFLIGHT; i++) {
        request_unary();
        request_stream();
    }
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(g_scq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        scall_t *c = ((struct {
                          scall_t *c;
                          int ev;
                      } *)ev.tag)
                         ->c;
        int what = ((struct {
                        scall_t *c;
                        int ev;
                    } *)ev.tag)
                       ->ev;
        grpc_op ops[4];
        memset(ops, 0, sizeof ops);
        switch (what) {
        case S_UNARY_NEW:
            request_unary();
            c->send = make_buffer(g_resp_bytes);
            ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
            ops[1].op = GRPC_OP_SEND_MESSAGE;
            ops[1].data.send_message.send_message = c->send;
            ops[2].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
            ops[2].data.send_status_from_server.status = GRPC_STATUS_OK;
            ops[3].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
            ops[3].data.recv_close_on_server.cancelled = &c->cancelled;
            c->tag[1].ev = S_UNARY_DONE;
            grpc_call_start_batch(c->call, ops, 4, &c->tag[1], NULL);
            break;
        case S_UNARY_DONE:
            scall_free(c);
            break;
        case S_STREAM_NEW:
            request_stream();
            ops[0].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
            ops[0].data.recv_close_on_server.cancelled = &c->cancelled;
            c->tag[2].ev = S_STREAM_CLOSED;
            c->refs = 1;
            grpc_call_start_batch(c->call, ops, 1, &c->tag[2], NULL);
            stream_recv(c);
            break;
        case S_STREAM_RECV:
            c->refs--;
            if (!ev.success || !c->recv) { /* client half-closed or went away */
                c->finishing = 1;
                ops[0].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
                ops[0].data.send_status_from_server.status = GRPC_STATUS_OK;
                c->tag[1].ev = S_STREAM_SENT;
                c->refs++;
                grpc_call_start_batch(c->call, ops, 1, &c->tag[1], NULL);
                break;
            }
            grpc_byte_buffer_destroy(c->recv);
            c->recv = NULL;
            if (c->send)
                grpc_byte_buffer_destroy(c->send);
            c->send = make_buffer(g_resp_bytes);
            int n = 0;
            if (!c->sent_md) {
                ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
                c->sent_md = 1;
            }
            ops[n].op = GRPC_OP_SEND_MESSAGE;
            ops[n++].data.send_message.send_message = c->send;
            c->tag[1].ev = S_STREAM_SENT;
            c->refs++;
            grpc_call_start_batch(c->call, ops, (size_t)n, &c->tag[1], NULL);
            break;
        case S_STREAM_SENT: /* the ping-pong client sends its next request only after this answer */
            c->refs--;
            if (c->finishing || c->closed) {
                if (c->refs == 0)
                    scall_free(c);
                break;
            }
            stream_recv(c);
            break;
        case S_STREAM_CLOSED:
            c->refs--;
            c->closed = 1;
            if (c->refs == 0)
                scall_free(c);
            break;
        }
    }
}

/* ---- client ---- */

typedef struct ccall {
    grpc_call *call;
    grpc_byte_buffer *send, *recv;
    grpc_metadata_array imd, tmd;
    grpc_status_code status;
    grpc_slice details;
    int started;
} ccall_t;

static grpc_channel *g_ch;
static grpc_completion_queue *g_ccq;
static size_t g_req_bytes = 600;

static void unary_start(ccall_t *c)
{
    memset(c, 0, sizeof *c);
    grpc_metadata_array_init(&c->imd);
    grpc_metadata_array_init(&c->tmd);
    grpc_slice m = grpc_slice_from_static_string(METHOD_UNARY);
    c->call = grpc_channel_create_call(g_ch, NULL, GRPC_PROPAGATE_DEFAULTS, g_ccq, m, NULL,
                                       gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
    c->send = make_buffer(g_req_bytes);
    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = c->send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &c->imd;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &c->recv;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &c->tmd;
    ops[5].data.recv_status_on_client.status = &c->status;
    ops[5].data.recv_status_on_client.status_details = &c->details;
    grpc_call_start_batch(c->call, ops, 6, c, NULL);
}

static void unary_end(ccall_t *c)
{
    grpc_byte_buffer_destroy(c->send);
    if (c->recv)
        grpc_byte_buffer_destroy(c->recv);
    grpc_metadata_array_destroy(&c->imd);
    grpc_metadata_array_destroy(&c->tmd);
    grpc_slice_unref(c->details);
    grpc_call_unref(c->call);
}

static void stream_send(ccall_t *c)
{
    grpc_op ops[4];
    memset(ops, 0, sizeof ops);
    int n = 0;
    if (!c->started) {
        ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
        ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
        ops[n++].data.recv_initial_metadata.recv_initial_metadata = &c->imd;
        c->started = 1;
    }
    if (c->send)
        grpc_byte_buffer_destroy(c->send);
    c->send = make_buffer(g_req_bytes);
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n++].data.send_message.send_message = c->send;
    ops[n].op = GRPC_OP_RECV_MESSAGE;
    ops[n++].data.recv_message.recv_message = &c->recv;
    grpc_call_error e = grpc_call_start_batch(c->call, ops, (size_t)n, c, NULL);
    if (e != GRPC_CALL_OK) {
        fprintf(stderr, "vecshard-bench-rpc: stream batch failed (%d)\n", (int)e);
        exit(1);
    }
}

static void stream_open(ccall_t *c)
{
    memset(c, 0, sizeof *c);
    grpc_metadata_array_init(&c->imd);
    grpc_metadata_array_init(&c->tmd);
    grpc_slice m = grpc_slice_from_static_string(METHOD_STREAM);
    c->call = grpc_channel_create_call(g_ch, NULL, GRPC_PROPAGATE_DEFAULTS, g_ccq, m, NULL,
                                       gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
}

static void stream_close(ccall_t *c)
{
    grpc_op ops[2];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[1].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[1].data.recv_status_on_client.trailing_metadata = &c->tmd;
    ops[1].data.recv_status_on_client.status = &c->status;
    ops[1].data.recv_status_on_client.status_details = &c->details;
    grpc_call_start_batch(c->call, ops, 2, c, NULL);
    for (;;) { /* nothing else is outstanding now */
        grpc_event ev = grpc_completion_queue_next(g_ccq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_OP_COMPLETE && ev.tag == c)
            break;
    }
}

typedef struct round {
    double wall, client_cpu, server_cpu;
} round_t;

static round_t run_round(int stream, size_t inflight, size_t n, pid_t server)
{
    static ccall_t calls[MAX_INFLIGHT];
    if (stream)
        for (size_t i = 0; i < inflight; i++)
            stream_open(&calls[i]);
    /* warm-up: one message per slot, untimed */
    size_t started = 0, done = 0, target = inflight;
    for (int timed = 0; timed < 2; timed++) {
        double t0 = vs_now_s(), c0 = proc_cpu_s(getpid()), s0 = proc_cpu_s(server);
        for (size_t i = 0; i < inflight && started < target; i++, started++) {
            if (stream)
                stream_send(&calls[i]);
            else
                unary_start(&calls[i]);
        }
        while (done < target) {
            grpc_event ev = grpc_completion_queue_next(g_ccq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
            if (ev.type != GRPC_OP_COMPLETE)
                continue;
            ccall_t *c = ev.tag;
            done++;
            if (stream) {
                grpc_byte_buffer_destroy(c->recv);
                c->recv = NULL;
                if (started < target) {
                    started++;
                    stream_send(c);
                }
            } else {
                unary_end(c);
                if (started < target) {
                    started++;
                    unary_start(c);
                }
            }
        }
        if (timed) {
            round_t r = {vs_now_s() - t0, proc_cpu_s(getpid()) - c0, proc_cpu_s(server) - s0};
            if (stream)
                for (size_t i = 0; i < inflight; i++) {
                    stream_close(&calls[i]);
                    unary_end(&calls[i]); /* frees the same fields */
                }
            return r;
        }
        started = done = 0;
        target = n;
    }
    return (round_t){0, 0, 0};
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: vecshard-bench-rpc [--n N] [--inflight P] [--rounds R] [--req-bytes B] [--resp-bytes B]\n"
            "Unary calls against messages on persistent bidirectional streams, gRPC C core on loopback:\n"
            "messages/s and CPU per message (client, server) for each, interleaved, best of R rounds.\n"
            "  --n N           messages per round (default 50000)\n"
            "  --inflight P    requests outstanding at once (default 8; at most 256)\n"
            "  --rounds R      rounds per mode (default 3)\n"
            "  --req-bytes B   request size (default 600: one 128-d query and its parameters)\n"
            "  --resp-bytes B  answer size (default 200: ten results)\n");
}

int main(int argc, char **argv)
{
    size_t n = 50000, inflight = 8, rounds = 3;
    static const struct option lo[] = {
        {"n", 1, 0, 'n'},          {"inflight", 1, 0, 'p'}, {"rounds", 1, 0, 'r'}, {"req-bytes", 1, 0, 'q'},
        {"resp-bytes", 1, 0, 'a'}, {"help", 0, 0, 'h'},     {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (o) {
        case 'n':
            n = strtoul(optarg, NULL, 10);
            break;
        case 'p':
            inflight = strtoul(optarg, NULL, 10);
            break;
        case 'r':
            rounds = strtoul(optarg, NULL, 10);
            break;
        case 'q':
            g_req_bytes = strtoul(optarg, NULL, 10);
            break;
        case 'a':
            g_resp_bytes = strtoul(optarg, NULL, 10);
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (n == 0 || inflight == 0 || inflight > MAX_INFLIGHT || rounds == 0 || g_req_bytes == 0) {
        fprintf(stderr, "vecshard-bench-rpc: --n, --rounds, --req-bytes > 0 and 1 <= --inflight <= %d\n",
                MAX_INFLIGHT);
        return 2;
    }
    int pfd[2];
    if (pipe(pfd) != 0)
        return 1;
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        close(pfd[0]);
        return serve_main(pfd[1]);
    }
    close(pfd[1]);
    int port = 0;
    if (read(pfd[0], &port, sizeof port) != (ssize_t)sizeof port || port <= 0) {
        fprintf(stderr, "vecshard-bench-rpc: the server did not start\n");
        return 1;
    }
    grpc_init();
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", port);
    grpc_channel_credentials *cr = grpc_insecure_credentials_create();
    g_ch = grpc_channel_create(target, cr, NULL);
    grpc_channel_credentials_release(cr);
    g_ccq = grpc_completion_queue_create_for_next(NULL);
    round_t best[2] = {{0, 0, 0}, {0, 0, 0}};
    printf("mode    round  msgs/s    client us/msg  server us/msg  total us/msg\n");
    for (size_t r = 0; r < rounds; r++)
        for (int m = 0; m < 2; m++) {
            round_t x = run_round(m, inflight, n, pid);
            double tot = (x.client_cpu + x.server_cpu) / (double)n * 1e6;
            printf("%-7s %5zu  %8.0f  %13.1f  %13.1f  %12.1f\n", m ? "stream" : "unary", r + 1,
                   (double)n / x.wall, x.client_cpu / (double)n * 1e6, x.server_cpu / (double)n * 1e6, tot);
            if (best[m].wall == 0 || x.client_cpu + x.server_cpu < best[m].client_cpu + best[m].server_cpu)
                best[m] = x;
        }
    for (int m = 0; m < 2; m++)
        printf("{\"mode\":\"%s\",\"inflight\":%zu,\"req_bytes\":%zu,\"resp_bytes\":%zu,\"msgs_per_s\":%.0f,"
               "\"client_us\":%.2f,\"server_us\":%.2f}\n",
               m ? "stream" : "unary", inflight, g_req_bytes, g_resp_bytes, (double)n / best[m].wall,
               best[m].client_cpu / (double)n * 1e6, best[m].server_cpu / (double)n * 1e6);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return 0;
}
