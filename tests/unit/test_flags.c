/* test_flags: command-line checks shared by every binary (common/cli/flags.h).
 * - vs_cli_exact_long_options: a long option must be spelt out in full (getopt_long alone takes `--n 5` as
 *   `--nprobe 5`); "--name=value" and "--name value" both pass; the value of an option that takes one is
 *   skipped whatever it looks like; short options, positionals and everything after "--" are left alone;
 *   the error names the option and suggests the one it abbreviates.
 * - vs_cli_parse_int / vs_cli_parse_double: whole numbers in range only. */
#include <getopt.h>
#include <string.h>

#include "common/cli/flags.h"
#include "tests/testlib.h"

static const struct option opts[] = {{"nprobe", required_argument, 0, 'n'},
                                     {"k", required_argument, 0, 'k'},
                                     {"json", no_argument, 0, 'j'},
                                     {"help", no_argument, 0, 'h'},
                                     {0, 0, 0, 0}};

static int check(int argc, char **argv, char err[VS_ERR_LEN])
{
    err[0] = 0;
    return vs_cli_exact_long_options(argc, argv, opts, err);
}

static void test_exact(void)
{
    char err[VS_ERR_LEN];
    char *ok1[] = {"prog", "--nprobe", "5", "--k=3", "--json", "-h", "file.fvecs", NULL};
    CHECK(check(7, ok1, err) == 0);
    char *ok2[] = {"prog", "--nprobe", "--n", "--", "--whatever", NULL}; /* a value that looks like a flag */
    CHECK(check(5, ok2, err) == 0);
    char *bad1[] = {"prog", "--n", "5", NULL};
    CHECK(check(3, bad1, err) == -1 && strstr(err, "'--n'") && strstr(err, "--nprobe?"));
    char *bad2[] = {"prog", "--k", "3", "--js", NULL};
    CHECK(check(4, bad2, err) == -1 && strstr(err, "'--js'") && strstr(err, "--json?"));
    char *bad3[] = {"prog", "--zzz=1", NULL};
    CHECK(check(2, bad3, err) == -1 && strstr(err, "'--zzz'") && !strstr(err, "?"));
    char *bad4[] = {"prog", "--nprobes", "2", NULL}; /* longer than any option: not a prefix either */
    CHECK(check(3, bad4, err) == -1 && strstr(err, "'--nprobes'"));
    char *bad5[] = {"prog", "--json=1", "--", NULL}; /* (no_argument with a value: getopt's to refuse) */
    CHECK(check(3, bad5, err) == 0);
}

static void test_numbers(void)
{
    char err[VS_ERR_LEN];
    long long v;
    double d;
    CHECK(vs_cli_parse_int("--k", "10", 1, 100, &v, err) == VS_OK && v == 10);
    CHECK(vs_cli_parse_int("--k", "10x", 1, 100, &v, err) != VS_OK && strstr(err, "--k"));
    CHECK(vs_cli_parse_int("--k", "101", 1, 100, &v, err) != VS_OK);
    CHECK(vs_cli_parse_double("--r", "0.5", 0, 1, &d, err) == VS_OK && d == 0.5);
    CHECK(vs_cli_parse_double("--r", "nan", 0, 1, &d, err) != VS_OK);
}

int main(void)
{
    RUN(test_exact);
    RUN(test_numbers);
    return vs_test_finish();
}
