/* logfollow.h: the shard's write-log follower (issue 15). One thread reads the cluster's write log on NATS
 * JetStream (common/net/wlog.h) for every READY version that takes writes, from the position the version
 * expects (its manifest's log_upto + 1, then its own progress), and applies each message in order
 * (vs_shard_apply_log). A version whose log has a gap (writes it needs are gone from the stream) stops
 * serving (vs_shard_log_failed); a full fresh state holds its position and says so in the log until a
 * version that folds the log replaces it; NATS being down delays writes, never loses them: the follower
 * reconnects and continues where it was. */
#ifndef VS_SHARD_SERVER_LOGFOLLOW_H
#define VS_SHARD_SERVER_LOGFOLLOW_H

#include "common/status.h"
#include "shard/server/shard.h"

typedef struct vs_logfollow vs_logfollow_t;

typedef struct vs_logfollow_opts {
    const char *url;     /* NATS URL(s) */
    const char *cluster; /* the stream is VS_<cluster> */
    /* called (on the follower's thread) when a version's fresh fill crosses a VS_LOGFOLLOW_FILL_STEP
     * percent step, so that the member record reports it (the coordinator refuses writes near full) */
    void (*on_fill)(void *user);
    void *user;
} vs_logfollow_opts_t;

#define VS_LOGFOLLOW_FILL_STEP 5

/* Starts the thread (it connects on its own and keeps trying). sh outlives the follower. */
vs_status vs_logfollow_start(const vs_logfollow_opts_t *o, vs_shard_t *sh, vs_logfollow_t **out,
                             char err[VS_ERR_LEN]);
void vs_logfollow_stop(vs_logfollow_t *f); /* joins the thread; NULL is a no-op */

#endif
