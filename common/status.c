/* status.c: names and gRPC codes of vs_status, and the error-message helper. */
#include "common/status.h"

#include <stdarg.h>
#include <stdio.h>

static const struct {
    const char *name;
    int grpc_code; /* values of grpc_status_code (grpc/impl/codegen/status.h) */
} status_table[VS_STATUS_COUNT_] = {
    [VS_OK] = {"OK", 0},
    [VS_ERR_INVALID_ARGUMENT] = {"INVALID_ARGUMENT", 3},
    [VS_ERR_OUT_OF_RANGE] = {"OUT_OF_RANGE", 11},
    [VS_ERR_NOT_FOUND] = {"NOT_FOUND", 5},
    [VS_ERR_ALREADY_EXISTS] = {"ALREADY_EXISTS", 6},
    [VS_ERR_IO] = {"IO_ERROR", 13},
    [VS_ERR_CORRUPT] = {"CORRUPT", 15},
    [VS_ERR_NOMEM] = {"OUT_OF_MEMORY", 8},
    [VS_ERR_UNSUPPORTED] = {"UNSUPPORTED", 12},
    [VS_ERR_FAILED_PRECONDITION] = {"FAILED_PRECONDITION", 9},
    [VS_ERR_UNAVAILABLE] = {"UNAVAILABLE", 14},
    [VS_ERR_DEADLINE_EXCEEDED] = {"DEADLINE_EXCEEDED", 4},
    [VS_ERR_CANCELLED] = {"CANCELLED", 1},
    [VS_ERR_RESOURCE_EXHAUSTED] = {"RESOURCE_EXHAUSTED", 8},
    [VS_ERR_INTERNAL] = {"INTERNAL", 13},
};

const char *vs_status_name(vs_status s)
{
    if ((int)s < 0 || s >= VS_STATUS_COUNT_)
        return "UNKNOWN";
    return status_table[s].name;
}

int vs_status_grpc_code(vs_status s)
{
    if ((int)s < 0 || s >= VS_STATUS_COUNT_)
        return 2; /* UNKNOWN */
    return status_table[s].grpc_code;
}

vs_status vs_errf(char *err, vs_status s, const char *fmt, ...)
{
    if (err != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, VS_ERR_LEN, fmt, ap);
        va_end(ap);
    }
    return s;
}
