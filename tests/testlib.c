/* testlib.c: see testlib.h. */
#include "tests/testlib.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/status.h"
#include "common/vecio.h"

int vs_test_failures = 0;
int vs_test_checks = 0;
static int cases_passed = 0;
static int cases_failed = 0;

void vs_test_case_done(const char *name, int ok)
{
    if (ok)
        cases_passed++;
    else
        cases_failed++;
    printf("%s %s\n", ok ? "ok  " : "FAIL", name);
    fflush(stdout);
}

int vs_test_finish(void)
{
    printf("%d checks; %d passed, %d failed\n", vs_test_checks, cases_passed, cases_failed);
    return cases_failed == 0 && vs_test_failures == 0 ? 0 : 1;
}

const char *vs_test_tmpdir(const char *test_name)
{
    static char dir[1024];
    const char *base = getenv("VS_TEST_TMPDIR");
    if (base == NULL || base[0] == '\0')
        base = "/tmp";
    snprintf(dir, sizeof dir, "%s/%s.%d", base, test_name, (int)getpid());
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "cannot create %s: %s\n", dir, strerror(errno));
        exit(2);
    }
    return dir;
}

const char *vs_test_path(const char *test_name, const char *file)
{
    static char slots[8][1200];
    static int next = 0;
    char *p = slots[next++ % 8];
    snprintf(p, sizeof slots[0], "%s/%s", vs_test_tmpdir(test_name), file);
    return p;
}

vs_test_pathbuf_t vs_test_pathcopy(const char *test_name, const char *file)
{
    vs_test_pathbuf_t p;
    snprintf(p.s, sizeof p.s, "%s", vs_test_path(test_name, file));
    return p;
}

void vs_test_cleanup(const char *test_name)
{
    char dir[1100];
    snprintf(dir, sizeof dir, "%s", vs_test_tmpdir(test_name));
    if (vs_test_failures > 0) { /* the processes' logs are what explains a failure: keep them */
        fprintf(stderr, "%s: failed; its files (process logs included) are kept in %s\n", test_name, dir);
        return;
    }
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char p[1400];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (unlink(p) != 0)
            rmdir(p);
    }
    closedir(d);
    rmdir(dir);
}

int vs_test_write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        return -1;
    size_t w = len != 0 ? fwrite(data, 1, len, f) : 0;
    return fclose(f) == 0 && w == len ? 0 : -1;
}

unsigned char *vs_test_read_file(const char *path, size_t *out_len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc(len > 0 ? (size_t)len + 1 : 1);
    if (buf != NULL && len > 0 && fread(buf, 1, (size_t)len, f) != (size_t)len) {
        free(buf);
        buf = NULL;
    }
    if (buf != NULL)
        buf[len > 0 ? len : 0] = 0; /* text files can be used as strings */
    fclose(f);
    *out_len = len > 0 ? (size_t)len : 0;
    return buf;
}

uint64_t vs_test_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

float vs_test_randf(uint64_t *state)
{
    return (float)((double)(vs_test_rand(state) >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}

double vs_test_gauss(uint64_t *state)
{
    double u1 = ((double)(vs_test_rand(state) >> 11) + 1.0) * 0x1.0p-53;
    double u2 = (double)(vs_test_rand(state) >> 11) * 0x1.0p-53;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

void vs_test_clustered(float *out, size_t n, uint32_t d, uint32_t n_centers, float sigma,
                       uint64_t center_seed, uint64_t point_seed)
{
    float *centers = malloc((size_t)n_centers * d * sizeof(float));
    if (centers == NULL) {
        fprintf(stderr, "vs_test_clustered: out of memory\n");
        exit(2);
    }
    uint64_t cs = center_seed;
    for (size_t i = 0; i < (size_t)n_centers * d; i++)
        centers[i] = (float)vs_test_gauss(&cs);
    uint64_t ps = point_seed;
    for (size_t i = 0; i < n; i++) {
        const float *c = centers + (vs_test_rand(&ps) % n_centers) * d;
        for (uint32_t j = 0; j < d; j++)
            out[i * d + j] = c[j] + sigma * (float)vs_test_gauss(&ps);
    }
    free(centers);
}

double vs_test_recall(const int64_t *ids, size_t k_ids, const int64_t *gt, size_t k_gt, size_t nq, size_t at)
{
    double sum = 0;
    for (size_t i = 0; i < nq; i++) {
        size_t hit = 0;
        for (size_t a = 0; a < at; a++)
            for (size_t b = 0; b < at; b++)
                if (ids[i * k_ids + a] >= 0 && ids[i * k_ids + a] == gt[i * k_gt + b]) {
                    hit++;
                    break;
                }
        sum += (double)hit / (double)at;
    }
    return sum / (double)nq;
}

int64_t vs_test_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void vs_test_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

int vs_test_has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)) != NULL; p++)
        if ((p == text || p[-1] == '\n') && p[n] == '\n')
            return 1;
    return 0;
}

int vs_test_same_file(const char *a, const char *b)
{
    size_t na = 0, nb = 0;
    unsigned char *x = vs_test_read_file(a, &na), *y = vs_test_read_file(b, &nb);
    int same = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

int vs_test_load_fashion(uint32_t *d, float **b, float **q)
{
    char err[VS_ERR_LEN];
    size_t n, nq;
    uint32_t dq;
    *b = *q = NULL;
    if (vs_vecfile_load_f32("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz", &n, d, b, err) !=
            VS_OK ||
        vs_vecfile_load_f32("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz", &nq, &dq, q,
                            err) != VS_OK) {
        /* the data is installed by deploy/local/install-deps.sh: missing data is a failure, never a test
         * that passes with zero checks (VS_ALLOW_MISSING_DATA=1 skips, for machines without it) */
        const char *allow = getenv("VS_ALLOW_MISSING_DATA");
        int skip = allow && strcmp(allow, "1") == 0;
        printf("%s: Fashion-MNIST not installed (%s)\n", skip ? "skip" : "FAIL", err);
        if (!skip)
            vs_test_failures++;
        free(*b);
        *b = NULL;
        return 0;
    }
    return 1;
}
