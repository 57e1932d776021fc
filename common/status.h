/* status.h: the one error enum of vecshard, its text, and its gRPC status code.
 *
 * Every function that can fail returns vs_status (VS_OK == 0) and writes results through out_*
 * parameters; human-readable detail goes into a caller-provided char err[VS_ERR_LEN], never a global.
 * The table in status.c is the single place mapping a status to text and to a gRPC code, so the
 * servers answer with the code a client expects (INVALID_ARGUMENT, NOT_FOUND, ...). This header does
 * not depend on gRPC: the codes are the numeric values of grpc_status_code. */
#ifndef VS_COMMON_STATUS_H
#define VS_COMMON_STATUS_H

#include <stddef.h>

#define VS_ERR_LEN 512

typedef enum vs_status {
    VS_OK = 0,
    VS_ERR_INVALID_ARGUMENT, /* caller passed something malformed: wrong dim, NaN, k out of range */
    VS_ERR_OUT_OF_RANGE,     /* a value outside its allowed range (offsets, list ids) */
    VS_ERR_NOT_FOUND,        /* file, version, partition or key does not exist */
    VS_ERR_ALREADY_EXISTS,
    VS_ERR_IO,      /* the OS refused: open, read, write, mmap */
    VS_ERR_CORRUPT, /* data on disk or on the wire fails validation (magic, size, CRC) */
    VS_ERR_NOMEM,
    VS_ERR_UNSUPPORTED, /* valid request for something not built (yet) */
    VS_ERR_FAILED_PRECONDITION,
    VS_ERR_UNAVAILABLE,
    VS_ERR_DEADLINE_EXCEEDED,
    VS_ERR_CANCELLED,
    VS_ERR_RESOURCE_EXHAUSTED,
    VS_ERR_INTERNAL,
    VS_STATUS_COUNT_
} vs_status;

/* gRPC status codes: the numeric values of grpc_status_code, so services need not include grpc.h. */
typedef enum vs_grpc_code {
    VS_GRPC_OK = 0,
    VS_GRPC_CANCELLED = 1,
    VS_GRPC_UNKNOWN = 2,
    VS_GRPC_INVALID_ARGUMENT = 3,
    VS_GRPC_DEADLINE_EXCEEDED = 4,
    VS_GRPC_NOT_FOUND = 5,
    VS_GRPC_ALREADY_EXISTS = 6,
    VS_GRPC_PERMISSION_DENIED = 7,
    VS_GRPC_RESOURCE_EXHAUSTED = 8,
    VS_GRPC_FAILED_PRECONDITION = 9,
    VS_GRPC_ABORTED = 10,
    VS_GRPC_OUT_OF_RANGE = 11,
    VS_GRPC_UNIMPLEMENTED = 12,
    VS_GRPC_INTERNAL = 13,
    VS_GRPC_UNAVAILABLE = 14,
    VS_GRPC_DATA_LOSS = 15,
    VS_GRPC_UNAUTHENTICATED = 16,
    VS_GRPC_CODE_COUNT_
} vs_grpc_code;

/* Short constant name of a status ("INVALID_ARGUMENT"); never NULL, "UNKNOWN" out of range. */
const char *vs_status_name(vs_status s);

/* gRPC status code (numeric grpc_status_code) that a server answers for s. */
int vs_status_grpc_code(vs_status s);

/* The vs_status a caller acts on for a gRPC code received from a peer (a shard, etcd's gateway):
 * the inverse of vs_status_grpc_code where it is one to one; PERMISSION_DENIED, ABORTED and
 * UNAUTHENTICATED become FAILED_PRECONDITION, UNIMPLEMENTED UNSUPPORTED, DATA_LOSS CORRUPT, UNKNOWN
 * and anything out of range INTERNAL. */
vs_status vs_status_from_grpc(int code);

/* The code's name in CamelCase as go-grpc-prometheus labels it ("InvalidArgument"); "Unknown" out of
 * range. */
const char *vs_grpc_code_label(int code);

/* Writes a formatted message into err (VS_ERR_LEN bytes) when err is non-NULL, and returns s so that
 * callers can write `return vs_errf(err, VS_ERR_IO, "open %s: %s", path, strerror(errno));`. */
vs_status vs_errf(char *err, vs_status s, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
