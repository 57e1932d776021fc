/* test_secret: credentials from the environment (common/cli/secret.h): a secret file's first line, a
 * secret of exactly the buffer's room with its newline, one byte too long, an empty or missing file,
 * $NAME_FILE before $NAME, neither set. */
#include <stdlib.h>
#include <string.h>

#include "common/cli/secret.h"
#include "tests/testlib.h"

#define T "test_secret"

static void test_read_file(void)
{
    char out[8], err[VS_ERR_LEN];
    const char *p = vs_test_path(T, "s1");
    CHECK(vs_test_write_file(p, "abc\nsecond line\n", 16) == 0);
    CHECK(vs_secret_read_file(p, out, sizeof out, err) == VS_OK && strcmp(out, "abc") == 0);
    /* 7 bytes (the room of out) then the newline a text editor adds: accepted */
    CHECK(vs_test_write_file(p, "1234567\n", 8) == 0);
    CHECK(vs_secret_read_file(p, out, sizeof out, err) == VS_OK && strcmp(out, "1234567") == 0);
    CHECK(vs_test_write_file(p, "1234567\r\n", 9) == 0);
    CHECK(vs_secret_read_file(p, out, sizeof out, err) == VS_OK && strcmp(out, "1234567") == 0);
    CHECK(vs_test_write_file(p, "12345678", 8) == 0);
    CHECKF(vs_secret_read_file(p, out, sizeof out, err) == VS_ERR_INVALID_ARGUMENT && strstr(err, "longer"), "%s",
           err);
    CHECK(out[0] == 0);
    CHECK(vs_test_write_file(p, "\nafter an empty line\n", 21) == 0);
    CHECKF(vs_secret_read_file(p, out, sizeof out, err) == VS_ERR_INVALID_ARGUMENT && strstr(err, "empty"), "%s",
           err);
    CHECK(vs_secret_read_file(vs_test_path(T, "missing"), out, sizeof out, err) == VS_ERR_INVALID_ARGUMENT);
}

static void test_from_env(void)
{
    char out[32], err[VS_ERR_LEN];
    int found = 1;
    unsetenv("VS_TEST_SECRET");
    unsetenv("VS_TEST_SECRET_FILE");
    CHECK(vs_secret_from_env("VS_TEST_SECRET", out, sizeof out, &found, err) == VS_OK && !found && !out[0]);
    setenv("VS_TEST_SECRET", "from-value", 1);
    CHECK(vs_secret_from_env("VS_TEST_SECRET", out, sizeof out, &found, err) == VS_OK && found &&
          strcmp(out, "from-value") == 0);
    const char *p = vs_test_path(T, "s2");
    CHECK(vs_test_write_file(p, "from-file\n", 10) == 0);
    setenv("VS_TEST_SECRET_FILE", p, 1);
    CHECK(vs_secret_from_env("VS_TEST_SECRET", out, sizeof out, &found, err) == VS_OK && found &&
          strcmp(out, "from-file") == 0);
    setenv("VS_TEST_SECRET_FILE", vs_test_path(T, "missing"), 1);
    CHECK(vs_secret_from_env("VS_TEST_SECRET", out, sizeof out, &found, err) == VS_ERR_INVALID_ARGUMENT);
    CHECK(vs_secret_getenv("VS_TEST_SECRET") && !vs_secret_getenv("VS_TEST_UNSET_VARIABLE"));
    setenv("VS_TEST_SECRET", "", 1);
    CHECK(vs_secret_getenv("VS_TEST_SECRET") == NULL);
}

int main(void)
{
    vs_test_tmpdir(T);
    RUN(test_read_file);
    RUN(test_from_env);
    vs_test_cleanup(T);
    return vs_test_finish();
}
