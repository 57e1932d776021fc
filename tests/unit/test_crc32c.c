/* test_crc32c: CRC-32C against published check values and against a bit-at-a-time shift register
 * written here from the definition; the hardware and table paths agree on every length 0..1000 at
 * every misalignment and across the three-way block boundaries; chaining over random splits; first use
 * from several threads at once. Prints the throughput of both paths (informational, never a failure). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/crc32c.h"
#include "tests/testlib.h"

/* The definition: reflected register, polynomial 0x82F63B78, init and final xor all ones. */
static uint32_t crc_bitwise(uint32_t crc, const unsigned char *p, size_t n)
{
    uint32_t s = ~crc;
    for (size_t i = 0; i < n; i++) {
        s ^= p[i];
        for (int b = 0; b < 8; b++)
            s = (s >> 1) ^ (0x82F63B78u & (0u - (s & 1u)));
    }
    return ~s;
}

static void fill_random(unsigned char *p, size_t n, uint64_t *rng)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)vs_test_rand(rng);
}

static void *first_use_thread(void *arg)
{
    uint32_t *out = arg;
    *out = vs_crc32c(0, "123456789", 9);
    return NULL;
}

/* Runs first in the process: the table initialisation races with itself. */
static void test_first_use_concurrent(void)
{
    enum { N = 4 };
    pthread_t th[N];
    uint32_t got[N] = {0};
    int started[N] = {0};
    for (int i = 0; i < N; i++)
        started[i] = pthread_create(&th[i], NULL, first_use_thread, &got[i]) == 0;
    for (int i = 0; i < N; i++)
        if (started[i]) {
            pthread_join(th[i], NULL);
            CHECKF(got[i] == 0xE3069283u, "thread %d got 0x%08x", i, (unsigned)got[i]);
        }
}

static void test_check_values(void)
{
    unsigned char buf[32];
    struct {
        const char *name;
        uint32_t want;
    } cases[] = {{"123456789", 0xE3069283u},
                 {"zeros", 0x8A9136AAu},
                 {"ones", 0x62A8AB43u},
                 {"ascending", 0x46DD794Eu},
                 {"descending", 0x113FDB5Cu}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t n = 32;
        if (c == 0) {
            memcpy(buf, "123456789", 9);
            n = 9;
        } else {
            for (int i = 0; i < 32; i++)
                buf[i] = c == 1 ? 0x00 : c == 2 ? 0xFF : c == 3 ? (unsigned char)i : (unsigned char)(31 - i);
        }
        uint32_t hw = vs_crc32c(0, buf, n), sw = vs_crc32c_portable(0, buf, n), bit = crc_bitwise(0, buf, n);
        CHECKF(hw == cases[c].want, "%s: vs_crc32c 0x%08x want 0x%08x", cases[c].name, (unsigned)hw,
               (unsigned)cases[c].want);
        CHECKF(sw == cases[c].want, "%s: portable 0x%08x want 0x%08x", cases[c].name, (unsigned)sw,
               (unsigned)cases[c].want);
        CHECKF(bit == cases[c].want, "%s: reference 0x%08x want 0x%08x", cases[c].name, (unsigned)bit,
               (unsigned)cases[c].want);
    }
    CHECK(vs_crc32c(0, NULL, 0) == 0);
    CHECK(vs_crc32c(0x12345678u, NULL, 0) == 0x12345678u);
    CHECK(vs_crc32c_portable(0xDEADBEEFu, NULL, 0) == 0xDEADBEEFu);
    const char *impl = vs_crc32c_impl();
    CHECK(impl != NULL && (strcmp(impl, "sse4.2") == 0 || strcmp(impl, "portable") == 0));
}

/* Every length 0..1000 at misalignments 0..15; each path against the reference. */
static void test_paths_agree_small(void)
{
    uint64_t rng = 42;
    enum { MAXLEN = 1000, MIS = 16 };
    unsigned char *buf = malloc(MAXLEN + MIS);
    fill_random(buf, MAXLEN + MIS, &rng);
    int bad = 0;
    for (size_t len = 0; len <= MAXLEN; len++)
        for (size_t off = 0; off < MIS; off++) {
            uint32_t seed = (uint32_t)vs_test_rand(&rng);
            uint32_t ref = crc_bitwise(seed, buf + off, len);
            uint32_t hw = vs_crc32c(seed, buf + off, len), sw = vs_crc32c_portable(seed, buf + off, len);
            if ((hw != ref || sw != ref) && bad++ < 5)
                CHECKF(0, "len %zu off %zu: hw 0x%08x portable 0x%08x reference 0x%08x", len, off,
                       (unsigned)hw, (unsigned)sw, (unsigned)ref);
        }
    CHECKF(bad == 0, "%d (length, offset) pairs disagree", bad);
    free(buf);
}

/* Lengths around the three-way block sizes (3 x 256 and 3 x 2048 bytes) and some large random ones. */
static void test_paths_agree_blocks(void)
{
    uint64_t rng = 7;
    size_t max = 200000 + 64;
    unsigned char *buf = malloc(max);
    fill_random(buf, max, &rng);
    size_t lens[64];
    size_t nl = 0;
    const size_t centers[] = {768, 1536, 6144, 6144 + 768, 12288, 12288 + 767};
    for (size_t c = 0; c < sizeof centers / sizeof centers[0]; c++)
        for (int d = -9; d <= 9; d += 3)
            lens[nl++] = (size_t)((long)centers[c] + d);
    while (nl < sizeof lens / sizeof lens[0])
        lens[nl++] = (size_t)(vs_test_rand(&rng) % 200000);
    for (size_t i = 0; i < nl; i++)
        for (size_t off = 0; off < 9; off += 4) {
            uint32_t ref = crc_bitwise(0, buf + off, lens[i]);
            uint32_t hw = vs_crc32c(0, buf + off, lens[i]), sw = vs_crc32c_portable(0, buf + off, lens[i]);
            CHECKF(hw == ref && sw == ref, "len %zu off %zu: hw 0x%08x portable 0x%08x reference 0x%08x",
                   lens[i], off, (unsigned)hw, (unsigned)sw, (unsigned)ref);
        }
    free(buf);
}

/* vs_crc32c(vs_crc32c(0, a), b) == vs_crc32c(0, a || b), over random multi-way splits. */
static void test_chaining(void)
{
    uint64_t rng = 99;
    size_t n = 50000;
    unsigned char *buf = malloc(n);
    fill_random(buf, n, &rng);
    for (int trial = 0; trial < 200; trial++) {
        size_t len = (size_t)(vs_test_rand(&rng) % n);
        uint32_t whole = vs_crc32c(0, buf, len), whole_sw = vs_crc32c_portable(0, buf, len);
        uint32_t hw = 0, sw = 0;
        size_t pos = 0;
        while (pos < len) {
            size_t cut = (size_t)(vs_test_rand(&rng) % (trial % 2 ? 64 : 9000)) + (trial % 3 == 0 ? 0 : 1);
            if (cut > len - pos)
                cut = len - pos;
            hw = vs_crc32c(hw, buf + pos, cut);
            sw = vs_crc32c_portable(sw, buf + pos, cut);
            pos += cut;
        }
        CHECKF(hw == whole && sw == whole && whole == whole_sw,
               "trial %d len %zu: chained hw 0x%08x sw 0x%08x whole 0x%08x / 0x%08x", trial, len,
               (unsigned)hw, (unsigned)sw, (unsigned)whole, (unsigned)whole_sw);
    }
    free(buf);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double gbps(uint32_t (*fn)(uint32_t, const void *, size_t), const unsigned char *p, size_t n, int reps,
                   uint32_t *sink)
{
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        *sink ^= fn(0, p, n);
        double dt = now_s() - t0;
        if (dt < best)
            best = dt;
    }
    return (double)n / best / 1e9;
}

/* Informational only (no pass/fail on time): 64 MiB, best of 5. */
static void test_throughput(void)
{
    size_t n = (size_t)64 << 20;
    unsigned char *buf = malloc(n);
    if (buf == NULL)
        return;
    uint64_t rng = 1;
    for (size_t i = 0; i < n; i += 8) {
        uint64_t v = vs_test_rand(&rng);
        memcpy(buf + i, &v, 8);
    }
    uint32_t sink = 0;
    double hw = gbps(vs_crc32c, buf, n, 5, &sink);
    double sw = gbps(vs_crc32c_portable, buf, n, 3, &sink);
    printf("crc32c on 64 MiB: vs_crc32c (%s) %.2f GB/s, portable %.2f GB/s (sink %08x)\n", vs_crc32c_impl(),
           hw, sw, (unsigned)sink);
    CHECK(vs_crc32c(0, buf, n) == vs_crc32c_portable(0, buf, n));
    free(buf);
}

int main(void)
{
    RUN(test_first_use_concurrent);
    RUN(test_check_values);
    RUN(test_paths_agree_small);
    RUN(test_paths_agree_blocks);
    RUN(test_chaining);
    RUN(test_throughput);
    return vs_test_finish();
}
