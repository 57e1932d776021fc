/* testlib.h: the tiny assertion layer of vecshard's C tests. A test binary runs its cases, prints one
 * line per failed check with file:line, and a closing "N passed, N failed" line; it exits 1 on any
 * failure. Checks never abort the process, so one run reports every failure. */
#ifndef VS_TESTS_TESTLIB_H
#define VS_TESTS_TESTLIB_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

extern int vs_test_failures;
extern int vs_test_checks;

#define CHECK(cond)                                                                                          \
    do {                                                                                                     \
        vs_test_checks++;                                                                                    \
        if (!(cond)) {                                                                                       \
            vs_test_failures++;                                                                              \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);                         \
        }                                                                                                    \
    } while (0)

#define CHECKF(cond, ...)                                                                                    \
    do {                                                                                                     \
        vs_test_checks++;                                                                                    \
        if (!(cond)) {                                                                                       \
            vs_test_failures++;                                                                              \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);                         \
            fprintf(stderr, __VA_ARGS__);                                                                    \
            fputc('\n', stderr);                                                                             \
        }                                                                                                    \
    } while (0)

/* Runs one test case function and reports it. */
#define RUN(fn)                                                                                              \
    do {                                                                                                     \
        int before_ = vs_test_failures;                                                                      \
        fn();                                                                                                \
        vs_test_case_done(#fn, vs_test_failures == before_);                                                 \
    } while (0)

void vs_test_case_done(const char *name, int ok);
/* Prints the closing line and returns the process exit code. */
int vs_test_finish(void);

/* A fresh directory for this test's files under $VS_TEST_TMPDIR (or /tmp); returns a static buffer. */
const char *vs_test_tmpdir(const char *test_name);
/* Joins the test tmpdir and a file name into a static rotating buffer (8 slots). */
const char *vs_test_path(const char *test_name, const char *file);

/* A copy of vs_test_path's result (tests keep many paths alive at once). */
typedef struct vs_test_pathbuf {
    char s[1200];
} vs_test_pathbuf_t;
vs_test_pathbuf_t vs_test_pathcopy(const char *test_name, const char *file);

/* Removes the test's (flat) tmpdir and everything in it, unless a check failed: then it is kept (and
 * named on stderr), so that the logs of the processes the test ran explain the failure. */
void vs_test_cleanup(const char *test_name);

/* Writes len bytes to path (0 or -1); reads a whole file into a new malloc'd buffer (NULL on error). */
int vs_test_write_file(const char *path, const void *data, size_t len);
/* Reads a whole file (malloc, with one NUL byte after *out_len bytes so text can be used as a string); NULL
 * when it cannot be read. */
unsigned char *vs_test_read_file(const char *path, size_t *out_len);
/* 1 when both files can be read and hold the same bytes, else 0. */
int vs_test_same_file(const char *a, const char *b);

/* Monotonic clock in milliseconds, and a sleep, for tests that poll with deadlines. */
int64_t vs_test_now_ms(void);
void vs_test_sleep_ms(int ms);
/* 1 if text contains line as a whole line (between line starts/ends, the final '\n' required), else 0. */
int vs_test_has_line(const char *text, const char *line);

/* Deterministic PRNG (splitmix64) for test data. */
uint64_t vs_test_rand(uint64_t *state);
float vs_test_randf(uint64_t *state); /* uniform in [-1, 1) */

/* Standard normal deviate (Box-Muller on vs_test_rand). */
double vs_test_gauss(uint64_t *state);

/* Synthetic clustered data, deterministic from seed: n_centers centres drawn N(0, 1) per dimension
 * (from center_seed, so base and queries can share centres), then each of the n points is a random
 * centre plus N(0, sigma) noise per dimension. out: n*d floats. */
void vs_test_clustered(float *out, size_t n, uint32_t d, uint32_t n_centers, float sigma,
                       uint64_t center_seed, uint64_t point_seed);

/* Loads Fashion-MNIST from Debian's dataset-fashion-mnist (train as base: 60,000 x 784, t10k as
 * queries: 10,000), *b and *q malloc'd. Returns 0 with a "skip:" line (b, q NULL) when not installed. */
int vs_test_load_fashion(uint32_t *d, float **b, float **q);

/* Mean over nq queries of |ids[:at] & gt[:at]| / at (ids and gt rows of stride k_ids / k_gt). */
double vs_test_recall(const int64_t *ids, size_t k_ids, const int64_t *gt, size_t k_gt, size_t nq, size_t at);

#endif
