/* redis.h: a blocking Redis client: connect with a timeout on connect, every read and every write, TLS,
 * AUTH, single commands and pipelines of binary-safe argument vectors, INFO fields. Commands are formatted
 * and replies parsed by hiredis 0.14 (Debian's libhiredis-dev); the connection is our own socket because
 * that hiredis has no TLS. TLS is on when $VECSHARD_REDIS_CA is set (the convention of every vecshard
 * client of etcd, NATS and Redis): the server's certificate must chain to it and name the host (or
 * $VECSHARD_REDIS_SERVER_NAME); $VECSHARD_REDIS_CERT + $VECSHARD_REDIS_KEY are the client certificate
 * Redis asks for by default (tls-auth-clients yes).
 *
 * Errors: a reply of type error becomes a status (OOM -> VS_ERR_RESOURCE_EXHAUSTED, NOPERM/NOAUTH/WRONGPASS
 * -> VS_ERR_FAILED_PRECONDITION, others VS_ERR_INTERNAL) with Redis's text; a lost connection or a timeout
 * becomes VS_ERR_UNAVAILABLE and the connection is dead from then on (the reply stream cannot be
 * resynchronised): every later call fails at once with the same error. Not here: Redis Cluster
 * redirections. Not thread-safe: one connection per thread. */
#ifndef VS_COMMON_NET_REDIS_H
#define VS_COMMON_NET_REDIS_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

typedef struct vs_redis vs_redis_t;
struct redisReply;

/* Connects to addr ("host:port", or "host" for port 6379); timeout_ms > 0 bounds connect and every later
 * read or write. user/password: AUTH after connect when password is non-NULL (user NULL = the default
 * user). *out on success; VS_ERR_UNAVAILABLE (cannot connect, TLS handshake refused: the reason named),
 * VS_ERR_INVALID_ARGUMENT (unreadable TLS files) or the AUTH error otherwise. */
vs_status vs_redis_open(const char *addr, int timeout_ms, const char *user, const char *password,
                        vs_redis_t **out, char err[VS_ERR_LEN]);
void vs_redis_close(vs_redis_t *r); /* NULL is a no-op */

/* "host:port" as given to open. */
const char *vs_redis_addr(const vs_redis_t *r);

/* One command of argc binary-safe arguments (lens NULL = NUL-terminated strings). *out_reply (may be
 * NULL: discarded) is the reply, freed with vs_redis_reply_free; an error reply is returned as a status
 * (its text in err) and never as *out_reply. */
vs_status vs_redis_command(vs_redis_t *r, int argc, const char *const *argv, const size_t *lens,
                           struct redisReply **out_reply, char err[VS_ERR_LEN]);
/* The same with a NULL-terminated list of string arguments. */
vs_status vs_redis_commandl(vs_redis_t *r, struct redisReply **out_reply, char err[VS_ERR_LEN], ...);
void vs_redis_reply_free(struct redisReply *reply); /* NULL is a no-op */

/* Pipelining: append queues a command without sending it; collect sends everything queued and reads
 * one reply per queued command, all of them even after an error reply (so the stream stays in step),
 * and returns the first error. At most VS_REDIS_PIPELINE_MAX commands may be queued. */
#define VS_REDIS_PIPELINE_MAX 65536
vs_status vs_redis_append(vs_redis_t *r, int argc, const char *const *argv, const size_t *lens,
                          char err[VS_ERR_LEN]);
vs_status vs_redis_collect(vs_redis_t *r, char err[VS_ERR_LEN]);
/* Commands queued and not yet collected. */
size_t vs_redis_pending(const vs_redis_t *r);
/* Sends what is queued without reading replies (they are read by the next collect). For tests that
 * stop a process between writing a pipeline and reading its replies. */
vs_status vs_redis_flush(vs_redis_t *r, char err[VS_ERR_LEN]);

/* Field `field` of INFO section `section` as an unsigned integer (VS_ERR_NOT_FOUND when absent). */
vs_status vs_redis_info_u64(vs_redis_t *r, const char *section, const char *field, uint64_t *out,
                            char err[VS_ERR_LEN]);
/* Field `field` of INFO section `section` as text into buf (n bytes); VS_ERR_NOT_FOUND when absent. */
vs_status vs_redis_info_str(vs_redis_t *r, const char *section, const char *field, char *buf, size_t n,
                            char err[VS_ERR_LEN]);

#endif
