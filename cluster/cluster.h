/*
 * Nodes sharing one cache (-o serve, etcd, members): a page server that
 * answers other nodes and the Python client, the member list, and the
 * peer fetcher the engine asks before the source on a miss. One cluster
 * per daemon.
 */
#ifndef CACHEFS_CLUSTER_H
#define CACHEFS_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include "core/options.h"
#include "ctl/jobs.h"
#include "ctl/metrics.h"
#include "engine/engine.h"

/* Wire version of the page server and the member records: nodes with another refuse each other. */
#define CLUSTER_PROTO 1

/*
 * Before daemonizing, so that errors reach the terminal: the token file
 * (present, one line, mode 0600 or stricter), the serve address (it can
 * be bound), the member list or etcd's URLs, and whether the cluster in
 * etcd is cut the same way (page_size). Nothing to do without serve.
 * Returns 0, or a negative errno with a one-line reason in err.
 */
int cluster_check(const struct cluster_opts *o, uint64_t page_size, char *err, size_t errlen);
/* Before the shards start: the peer client; an owner fetching a page is waited for source_timeout seconds. */
int cluster_create(double source_timeout, char *err, size_t errlen);
/*
 * Once the engine runs: the member list (etcd or fixed), the page server,
 * and the peer fetcher plugged into e. Returns 0 or a negative errno with
 * a one-line reason in err.
 */
int cluster_start(struct engine *e, char *err, size_t errlen);
/* While the shards run: ends the page server, the membership and the peer requests. */
void cluster_stop(void);
/* After the shards stopped. */
void cluster_destroy(void);
/* Loads split among the members by owner (ctl/jobs.h): plug into the jobs table once the cluster started. */
const struct jobs_cluster *cluster_load_ops(void);
/*
 * `cachefsctl cluster`: every member's /v1/info, or why it did not
 * answer, as {"cluster", "self", "members": [...]}; blocks up to a few
 * seconds for each member that hangs. NULL outside a cluster.
 */
json_t *cluster_members_json(void);
/* This node's cluster numbers (peer traffic) as /v1/info shows them. */
json_t *cluster_peer_json(void);
/* The cluster's families on /metrics (nothing when it is off). */
void cluster_metrics(struct metrics_buf *b);

#endif
