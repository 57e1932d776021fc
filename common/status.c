/* status.c: names and gRPC codes of vs_status, and the error-message helper. */
#include "common/status.h"

#include <stdarg.h>
#include <stdio.h>

static const struct {
    const char *name;
    vs_grpc_code grpc_code;
} status_table[VS_STATUS_COUNT_] = {
    [VS_OK] = {"OK", VS_GRPC_OK},
    [VS_ERR_INVALID_ARGUMENT] = {"INVALID_ARGUMENT", VS_GRPC_INVALID_ARGUMENT},
    [VS_ERR_OUT_OF_RANGE] = {"OUT_OF_RANGE", VS_GRPC_OUT_OF_RANGE},
    [VS_ERR_NOT_FOUND] = {"NOT_FOUND", VS_GRPC_NOT_FOUND},
    [VS_ERR_ALREADY_EXISTS] = {"ALREADY_EXISTS", VS_GRPC_ALREADY_EXISTS},
    [VS_ERR_IO] = {"IO_ERROR", VS_GRPC_INTERNAL},
    [VS_ERR_CORRUPT] = {"CORRUPT", VS_GRPC_DATA_LOSS},
    [VS_ERR_NOMEM] = {"OUT_OF_MEMORY", VS_GRPC_RESOURCE_EXHAUSTED},
    [VS_ERR_UNSUPPORTED] = {"UNSUPPORTED", VS_GRPC_UNIMPLEMENTED},
    [VS_ERR_FAILED_PRECONDITION] = {"FAILED_PRECONDITION", VS_GRPC_FAILED_PRECONDITION},
    [VS_ERR_UNAVAILABLE] = {"UNAVAILABLE", VS_GRPC_UNAVAILABLE},
    [VS_ERR_DEADLINE_EXCEEDED] = {"DEADLINE_EXCEEDED", VS_GRPC_DEADLINE_EXCEEDED},
    [VS_ERR_CANCELLED] = {"CANCELLED", VS_GRPC_CANCELLED},
    [VS_ERR_RESOURCE_EXHAUSTED] = {"RESOURCE_EXHAUSTED", VS_GRPC_RESOURCE_EXHAUSTED},
    [VS_ERR_INTERNAL] = {"INTERNAL", VS_GRPC_INTERNAL},
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
        return VS_GRPC_UNKNOWN;
    return status_table[s].grpc_code;
}

static const struct {
    vs_status status; /* what a receiver acts on */
    const char *label;
} grpc_table[VS_GRPC_CODE_COUNT_] = {
    [VS_GRPC_OK] = {VS_OK, "OK"},
    [VS_GRPC_CANCELLED] = {VS_ERR_CANCELLED, "Canceled"},
    [VS_GRPC_UNKNOWN] = {VS_ERR_INTERNAL, "Unknown"},
    [VS_GRPC_INVALID_ARGUMENT] = {VS_ERR_INVALID_ARGUMENT, "InvalidArgument"},
    [VS_GRPC_DEADLINE_EXCEEDED] = {VS_ERR_DEADLINE_EXCEEDED, "DeadlineExceeded"},
    [VS_GRPC_NOT_FOUND] = {VS_ERR_NOT_FOUND, "NotFound"},
    [VS_GRPC_ALREADY_EXISTS] = {VS_ERR_ALREADY_EXISTS, "AlreadyExists"},
    [VS_GRPC_PERMISSION_DENIED] = {VS_ERR_FAILED_PRECONDITION, "PermissionDenied"},
    [VS_GRPC_RESOURCE_EXHAUSTED] = {VS_ERR_RESOURCE_EXHAUSTED, "ResourceExhausted"},
    [VS_GRPC_FAILED_PRECONDITION] = {VS_ERR_FAILED_PRECONDITION, "FailedPrecondition"},
    [VS_GRPC_ABORTED] = {VS_ERR_FAILED_PRECONDITION, "Aborted"},
    [VS_GRPC_OUT_OF_RANGE] = {VS_ERR_OUT_OF_RANGE, "OutOfRange"},
    [VS_GRPC_UNIMPLEMENTED] = {VS_ERR_UNSUPPORTED, "Unimplemented"},
    [VS_GRPC_INTERNAL] = {VS_ERR_INTERNAL, "Internal"},
    [VS_GRPC_UNAVAILABLE] = {VS_ERR_UNAVAILABLE, "Unavailable"},
    [VS_GRPC_DATA_LOSS] = {VS_ERR_CORRUPT, "DataLoss"},
    [VS_GRPC_UNAUTHENTICATED] = {VS_ERR_FAILED_PRECONDITION, "Unauthenticated"},
};

vs_status vs_status_from_grpc(int code)
{
    return code >= 0 && code < VS_GRPC_CODE_COUNT_ ? grpc_table[code].status : VS_ERR_INTERNAL;
}

const char *vs_grpc_code_label(int code)
{
    return code >= 0 && code < VS_GRPC_CODE_COUNT_ ? grpc_table[code].label : "Unknown";
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
