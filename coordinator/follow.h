/* follow.h: the coordinator following its cluster in etcd (docs/protocol.md, "Rollout"): the member
 * records feed the membership view (view.h), the version records add and forget the versions the
 * coordinator can serve (coord.h), and the active pointer switches the active version, but only once
 * the view has a replica with it READY for every partition (member records and the active key arrive
 * on different watches, so the switch may be seen first).
 *
 * Keys, records and states come from common/cluster/: a version is tracked while its state is one the
 * coordinators hold (vs_cver_coordinators_hold) and forgotten when it leaves that set or its record is
 * deleted (never the active one). When etcd is unreachable the view and the versions are kept as they
 * were. Not here: health and metrics (main.c reads vs_coord_follow_etcd_connected). */
#ifndef VS_COORDINATOR_FOLLOW_H
#define VS_COORDINATOR_FOLLOW_H

#include "common/status.h"
#include "coordinator/coord.h"
#include "coordinator/view.h"

typedef struct vs_coord_follow vs_coord_follow_t;

/* Called after every change the follower applied (main re-evaluates health). May run on a watch thread. */
typedef void (*vs_coord_follow_change_fn)(void *user);

/* Starts the three watches (members/, versions/, active). c and view are borrowed and must outlive the
 * follower. VS_ERR_INVALID_ARGUMENT for a bad cluster name or endpoint list. */
vs_status vs_coord_follow_start(const char *endpoints, const char *cluster, vs_coord_t *c, vs_view_t *view,
                                vs_coord_follow_change_fn on_change, void *user, vs_coord_follow_t **out,
                                char err[VS_ERR_LEN]);

/* Retries a pending switch of the active version (call periodically: the view changes with time). */
void vs_coord_follow_tick(vs_coord_follow_t *f);

/* 1 while the membership watch is connected to etcd and the heartbeat (a read with a 1 s timeout, once a
 * second) answers: a frozen etcd keeps the watch's stream open but fails the heartbeat. */
int vs_coord_follow_etcd_connected(const vs_coord_follow_t *f);

/* Stops the watches and frees. NULL is a no-op. */
void vs_coord_follow_stop(vs_coord_follow_t *f);

#endif
