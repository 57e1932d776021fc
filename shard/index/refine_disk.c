/* refine_disk.c: see refine_disk.h. Per thread: one io_uring (RING_DEPTH entries), a 4 KiB-aligned read
 * buffer and the sort scratch, created on the thread's first fetch and freed by a pthread key destructor.
 * A fetch sorts the items by offset, merges items whose 4 KiB blocks overlap into one read, lays the
 * reads out one after the other in the buffer (each a whole number of blocks, so every read stays
 * aligned for O_DIRECT), submits them RING_DEPTH at a time and waits for all. */
#include "shard/index/refine_disk.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cli/timing.h"
#include "common/grow.h"

#define BLOCK 4096u
#define RING_DEPTH 64u
#define KEEP_BUFFER (16u << 20) /* a thread keeps at most this much read buffer between fetches */
#define MAX_BUFFER (256u << 20) /* one fetch reads at most this much */

struct vs_refine_disk {
    int fd;
    int direct;
    uint64_t off, len;
    size_t ib;
    atomic_uint_fast64_t fetches, items, reads, bytes, errors, read_ns;
    atomic_int uring_used;
};

typedef struct read_span {
    uint64_t a0, a1; /* file bytes read, block-aligned */
    uint64_t need;   /* bytes of it the items need (a short read past need is an error) */
    size_t at;       /* position in the buffer */
} read_span_t;

typedef struct thread_state {
    struct io_uring ring;
    int ring_state; /* 0: not tried, 1: ready, -1: unavailable (pread instead) */
    uint8_t *buf;
    size_t buf_cap;
    uint32_t *ord;
    size_t ord_cap;
    read_span_t *spans;
    size_t spans_cap;
    uint32_t *span_of; /* item i's span */
    size_t span_of_cap;
    void *scratch;
    size_t scratch_cap;
} thread_state_t;

static pthread_key_t key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;

static void state_free(void *p)
{
    thread_state_t *t = p;
    if (!t)
        return;
    if (t->ring_state == 1)
        io_uring_queue_exit(&t->ring);
    free(t->buf);
    free(t->ord);
    free(t->spans);
    free(t->span_of);
    free(t->scratch);
    free(t);
}

static void make_key(void)
{
    (void)pthread_key_create(&key, state_free);
}

static thread_state_t *state(void)
{
    pthread_once(&key_once, make_key);
    thread_state_t *t = pthread_getspecific(key);
    if (!t && (t = calloc(1, sizeof *t)) != NULL && pthread_setspecific(key, t) != 0) {
        free(t);
        t = NULL;
    }
    return t;
}

vs_status vs_refine_disk_open(const char *path, uint64_t section_off, uint64_t section_len, size_t item_bytes,
                              vs_refine_disk_t **out, char err[VS_ERR_LEN])
{
    if (item_bytes == 0)
        return vs_errf(err, VS_ERR_INVALID_ARGUMENT, "refine on disk: items of 0 bytes");
    vs_refine_disk_t *d = calloc(1, sizeof *d);
    if (!d)
        return vs_errf(err, VS_ERR_NOMEM, "refine on disk: out of memory");
    d->direct = 1;
    d->fd = open(path, O_RDONLY | O_CLOEXEC | O_DIRECT);
    if (d->fd < 0 && errno == EINVAL) { /* a file system without O_DIRECT (tmpfs): through the cache */
        d->direct = 0;
        d->fd = open(path, O_RDONLY | O_CLOEXEC);
    }
    if (d->fd < 0) {
        int e = errno;
        free(d);
        return vs_errf(err, VS_ERR_IO, "open %s: %s", path, strerror(e));
    }
    d->off = section_off;
    d->len = section_len;
    d->ib = item_bytes;
    *out = d;
    return VS_OK;
}

void vs_refine_disk_close(vs_refine_disk_t *d)
{
    if (!d)
        return;
    close(d->fd);
    free(d);
}

void *vs_refine_disk_scratch(size_t bytes)
{
    thread_state_t *t = state();
    if (!t || vs_grow(&t->scratch, &t->scratch_cap, bytes ? bytes : 1, 1, 64) != 0)
        return NULL;
    return t->scratch;
}

static int by_item(const void *a, const void *b, void *ctx)
{
    const uint64_t *items = ctx;
    uint64_t x = items[*(const uint32_t *)a], y = items[*(const uint32_t *)b];
    return (x > y) - (x < y);
}

/* The reads spans[0..ns) with pread, one after the other. 0 when every one returned its needed bytes. */
static int pread_all(vs_refine_disk_t *d, thread_state_t *t, size_t ns)
{
    for (size_t r = 0; r < ns; r++) {
        const read_span_t *s = &t->spans[r];
        uint64_t done = 0;
        while (done < s->need) { /* short reads (signals, a split request): the rest */
            ssize_t got = pread(d->fd, t->buf + s->at + done, (size_t)(s->a1 - s->a0 - done), (off_t)(s->a0 + done));
            if (got < 0 && errno == EINTR)
                continue;
            if (got <= 0)
                return -1;
            done += (uint64_t)got;
        }
    }
    return 0;
}

/* The thread's ring is in an unknown state (a submission refused, a wait failed): it is closed, and its
 * buffer abandoned, since the kernel may still write into it; the thread reads with pread from now on. */
static void ring_lost(thread_state_t *t)
{
    io_uring_queue_exit(&t->ring);
    t->ring_state = -1;
    t->buf = NULL; /* leaked on purpose: an in-flight read may still land in it */
    t->buf_cap = 0;
}

/* Runs the reads spans[0..ns) into t->buf: io_uring when the thread has one, else pread. 0 when every read
 * returned at least its needed bytes. */
static int run_reads(vs_refine_disk_t *d, thread_state_t *t, size_t ns)
{
    if (t->ring_state == 0)
        t->ring_state = io_uring_queue_init(RING_DEPTH, &t->ring, 0) == 0 ? 1 : -1;
    if (t->ring_state != 1)
        return pread_all(d, t, ns);
    atomic_store(&d->uring_used, 1);
    int failed = 0;
    for (size_t r0 = 0; r0 < ns; r0 += RING_DEPTH) {
        size_t m = ns - r0 < RING_DEPTH ? ns - r0 : RING_DEPTH, queued = 0;
        for (size_t r = r0; r < r0 + m; r++) {
            struct io_uring_sqe *sqe = io_uring_get_sqe(&t->ring);
            if (!sqe)
                break;
            const read_span_t *s = &t->spans[r];
            io_uring_prep_read(sqe, d->fd, t->buf + s->at, (unsigned)(s->a1 - s->a0), s->a0);
            io_uring_sqe_set_data64(sqe, (uint64_t)r);
            queued++;
        }
        int sub = queued ? io_uring_submit(&t->ring) : 0;
        if (sub < (int)queued) {
            /* not everything went in: take back the completions of what did, then leave the ring */
            for (int i = 0; i < sub; i++) {
                struct io_uring_cqe *cqe;
                int e;
                while ((e = io_uring_wait_cqe(&t->ring, &cqe)) == -EINTR)
                    ;
                if (e < 0)
                    break;
                io_uring_cqe_seen(&t->ring, cqe);
            }
            ring_lost(t);
            return -1;
        }
        for (size_t i = 0; i < queued; i++) {
            struct io_uring_cqe *cqe;
            int e;
            while ((e = io_uring_wait_cqe(&t->ring, &cqe)) == -EINTR)
                ;
            if (e < 0) { /* completions still owed: the ring cannot be trusted with the next fetch */
                ring_lost(t);
                return -1;
            }
            const read_span_t *s = &t->spans[io_uring_cqe_get_data64(cqe)];
            if (cqe->res < 0 || (uint64_t)cqe->res < s->need) {
                /* a short read: the rest with pread (the kernel may split large reads) */
                uint64_t done = cqe->res > 0 ? (uint64_t)cqe->res : 0;
                ssize_t got = cqe->res >= 0 ? pread(d->fd, t->buf + s->at + done, (size_t)(s->a1 - s->a0 - done),
                                                    (off_t)(s->a0 + done))
                                            : -1;
                if (got < 0 || done + (uint64_t)got < s->need)
                    failed = 1;
            }
            io_uring_cqe_seen(&t->ring, cqe);
        }
        if (queued < m)
            return -1;
    }
    return failed ? -1 : 0;
}

int vs_refine_disk_fetch(vs_refine_disk_t *d, const uint64_t *items, size_t n, const uint8_t **out)
{
    atomic_fetch_add(&d->fetches, 1);
    atomic_fetch_add(&d->items, n);
    if (n == 0)
        return 0;
    thread_state_t *t = state();
    if (!t || vs_grow((void **)&t->ord, &t->ord_cap, n, sizeof *t->ord, 64) != 0 ||
        vs_grow((void **)&t->spans, &t->spans_cap, n, sizeof *t->spans, 64) != 0 ||
        vs_grow((void **)&t->span_of, &t->span_of_cap, n, sizeof *t->span_of, 64) != 0) {
        atomic_fetch_add(&d->errors, 1);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (items[i] >= d->len / d->ib) {
            atomic_fetch_add(&d->errors, 1);
            return -1;
        }
        t->ord[i] = (uint32_t)i;
    }
    qsort_r(t->ord, n, sizeof *t->ord, by_item, (void *)items);
    /* merge items whose blocks overlap into one read each */
    size_t ns = 0, total = 0;
    for (size_t k = 0; k < n; k++) {
        uint32_t i = t->ord[k];
        uint64_t o = d->off + items[i] * d->ib, a0 = o / BLOCK * BLOCK;
        uint64_t a1 = (o + d->ib + BLOCK - 1) / BLOCK * BLOCK;
        if (ns > 0 && a0 < t->spans[ns - 1].a1) {
            read_span_t *s = &t->spans[ns - 1];
            if (a1 > s->a1) {
                total += a1 - s->a1;
                s->a1 = a1;
            }
            if (o + d->ib - s->a0 > s->need)
                s->need = o + d->ib - s->a0;
        } else {
            t->spans[ns] = (read_span_t){a0, a1, o + d->ib - a0, 0};
            total += a1 - a0;
            ns++;
        }
        t->span_of[i] = (uint32_t)(ns - 1);
    }
    if (total > MAX_BUFFER) { /* a huge k x k_factor: the caller reads through the mapping instead */
        atomic_fetch_add(&d->errors, 1);
        return -1;
    }
    if (t->buf_cap > KEEP_BUFFER && total <= KEEP_BUFFER) { /* give back what one large request took */
        free(t->buf);
        t->buf = NULL;
        t->buf_cap = 0;
    }
    if (total > t->buf_cap) {
        size_t cap = t->buf_cap ? t->buf_cap : 64 * BLOCK;
        while (cap < total)
            cap *= 2;
        void *b = NULL;
        if (posix_memalign(&b, BLOCK, cap) != 0) {
            atomic_fetch_add(&d->errors, 1);
            return -1;
        }
        free(t->buf);
        t->buf = b;
        t->buf_cap = cap;
    }
    size_t at = 0;
    for (size_t r = 0; r < ns; r++) {
        t->spans[r].at = at;
        at += (size_t)(t->spans[r].a1 - t->spans[r].a0);
    }
    uint64_t t0 = vs_now_ns();
    int rc = run_reads(d, t, ns);
    if (rc != 0 && t->buf) /* the ring failed: once more with pread (a disk error fails that too) */
        rc = pread_all(d, t, ns);
    atomic_fetch_add(&d->read_ns, vs_now_ns() - t0);
    atomic_fetch_add(&d->reads, ns);
    atomic_fetch_add(&d->bytes, total);
    if (rc != 0) {
        atomic_fetch_add(&d->errors, 1);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const read_span_t *s = &t->spans[t->span_of[i]];
        out[i] = t->buf + s->at + (d->off + items[i] * d->ib - s->a0);
    }
    return 0;
}

void vs_refine_disk_get_stats(const vs_refine_disk_t *d, vs_refine_disk_stats_t *out)
{
    vs_refine_disk_t *m = (vs_refine_disk_t *)d;
    *out = (vs_refine_disk_stats_t){.fetches = atomic_load(&m->fetches),
                                    .items = atomic_load(&m->items),
                                    .reads = atomic_load(&m->reads),
                                    .bytes = atomic_load(&m->bytes),
                                    .errors = atomic_load(&m->errors),
                                    .read_seconds = (double)atomic_load(&m->read_ns) * 1e-9,
                                    .uring = atomic_load(&m->uring_used),
                                    .direct = d->direct};
}
