/* test_status: every status has a name and the gRPC code clients expect. */
#include <string.h>

#include "common/status.h"
#include "tests/testlib.h"

static void test_names_and_codes(void)
{
    for (int s = 0; s < VS_STATUS_COUNT_; s++) {
        CHECKF(strcmp(vs_status_name((vs_status)s), "UNKNOWN") != 0, "status %d has no name", s);
        CHECK(vs_status_grpc_code((vs_status)s) >= 0 && vs_status_grpc_code((vs_status)s) <= 16);
    }
    CHECK(vs_status_grpc_code(VS_OK) == 0);
    CHECK(vs_status_grpc_code(VS_ERR_INVALID_ARGUMENT) == 3);
    CHECK(vs_status_grpc_code(VS_ERR_NOT_FOUND) == 5);
    CHECK(vs_status_grpc_code(VS_ERR_FAILED_PRECONDITION) == 9);
    CHECK(vs_status_grpc_code(VS_ERR_UNAVAILABLE) == 14);
    CHECK(vs_status_grpc_code(VS_ERR_DEADLINE_EXCEEDED) == 4);
    CHECK(vs_status_grpc_code(VS_ERR_UNSUPPORTED) == 12);
    CHECK(strcmp(vs_status_name((vs_status)999), "UNKNOWN") == 0);
}

static void test_errf(void)
{
    char err[VS_ERR_LEN];
    CHECK(vs_errf(err, VS_ERR_IO, "open %s: %d", "x.fvecs", 7) == VS_ERR_IO);
    CHECK(strcmp(err, "open x.fvecs: 7") == 0);
    CHECK(vs_errf(NULL, VS_ERR_CORRUPT, "ignored") == VS_ERR_CORRUPT);
    char big[2 * VS_ERR_LEN];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    vs_errf(err, VS_ERR_IO, "%s", big);
    CHECK(strlen(err) == VS_ERR_LEN - 1);
}

int main(void)
{
    RUN(test_names_and_codes);
    RUN(test_errf);
    return vs_test_finish();
}
