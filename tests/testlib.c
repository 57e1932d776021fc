/* testlib.c: see testlib.h. */
#include "tests/testlib.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
