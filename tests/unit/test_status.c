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

/* The receiving side: a code a peer sends maps back to the status it was made from, where that is one to
 * one; every code has a Prometheus label. */
static void test_from_grpc(void)
{
    const vs_status one_to_one[] = {VS_OK,
                                    VS_ERR_INVALID_ARGUMENT,
                                    VS_ERR_OUT_OF_RANGE,
                                    VS_ERR_NOT_FOUND,
                                    VS_ERR_ALREADY_EXISTS,
                                    VS_ERR_CORRUPT,
                                    VS_ERR_UNSUPPORTED,
                                    VS_ERR_FAILED_PRECONDITION,
                                    VS_ERR_UNAVAILABLE,
                                    VS_ERR_DEADLINE_EXCEEDED,
                                    VS_ERR_CANCELLED,
                                    VS_ERR_RESOURCE_EXHAUSTED,
                                    VS_ERR_INTERNAL};
    for (size_t i = 0; i < sizeof one_to_one / sizeof *one_to_one; i++)
        CHECKF(vs_status_from_grpc(vs_status_grpc_code(one_to_one[i])) == one_to_one[i], "%s",
               vs_status_name(one_to_one[i]));
    CHECK(vs_status_from_grpc(VS_GRPC_UNAUTHENTICATED) == VS_ERR_FAILED_PRECONDITION);
    CHECK(vs_status_from_grpc(VS_GRPC_UNKNOWN) == VS_ERR_INTERNAL);
    CHECK(vs_status_from_grpc(-1) == VS_ERR_INTERNAL && vs_status_from_grpc(17) == VS_ERR_INTERNAL);
    for (int c = 0; c < VS_GRPC_CODE_COUNT_; c++)
        CHECKF(strcmp(vs_grpc_code_label(c), "Unknown") != 0 || c == VS_GRPC_UNKNOWN, "code %d", c);
    CHECK(strcmp(vs_grpc_code_label(VS_GRPC_INVALID_ARGUMENT), "InvalidArgument") == 0);
    CHECK(strcmp(vs_grpc_code_label(99), "Unknown") == 0);
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
    RUN(test_from_grpc);
    RUN(test_errf);
    return vs_test_finish();
}
