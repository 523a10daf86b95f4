/* What the cluster's parts share (cluster/ only). */
#ifndef CACHEFS_CLUSTER_I_H
#define CACHEFS_CLUSTER_I_H

#include <curl/curl.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "cluster/cluster.h"
#include "cluster/placement.h"

#define CLUSTER_TOKEN_MAX 256

struct cluster {
	struct cluster_opts o;
	struct engine *e;
	char token[CLUSTER_TOKEN_MAX];
	char self[PL_NAME_MAX];          /* this node's member name: its serve address */
	uint64_t page_size;              /* members must share it */
	/*
	 * The live member list, replaced whole by the membership thread
	 * (placement_set). Old lists are kept until cluster_stop: readers on
	 * the shards take no reference, and lists change only when nodes
	 * come and go.
	 */
	_Atomic(struct placement *) pl;
	/* Counters, any thread. */
	atomic_ullong served_requests, served_bytes, unauthorized;
	atomic_ullong sent_requests, sent_bytes, peer_failures, peer_corrupt, peer_skipped;
};

extern struct cluster cluster;

/* Publishes a new member list (owned by the cluster from then on). */
void placement_set(struct placement *pl);
/* The current list, or NULL: valid until cluster_stop. */
struct placement *placement_get(void);

/* cluster.c: l with the token's Authorization header appended, or NULL (out of memory; l unchanged). */
struct curl_slist *cluster_auth(struct curl_slist *l);
/*
 * A blocking HTTP call of the cluster's own threads (membership, loads,
 * `cachefsctl cluster`), never of a shard, through http_perform: `body`
 * is POSTed when not NULL, the cluster's token sent with `auth`, `c` (or
 * NULL) a handle of the caller's whose connection is kept between calls.
 * The parsed JSON answer of a 2xx, or NULL with a one-line reason in err.
 */
json_t *cluster_call(CURL *c, const char *url, const char *body, bool auth, long timeout_ms, char *err,
		     size_t errlen);
/* http://NAME/v1/API?QUERY for member NAME into buf; false when it does not fit. */
bool member_url(char *buf, size_t len, const char *name, const char *api, const char *query);

/* server.c */
int pserve_start(char *err, size_t errlen);
void pserve_stop(void);

/* peer.c */
int peers_create(uint64_t source_timeout_ns, char *err, size_t errlen);
/* A new member list: a member that failed before (restarted since) is asked again at once. */
void peers_forget_failures(void);
/* On every shard while they run: ends the peer requests in flight. */
void peers_shard_stop(void *arg);
/* After the shards stopped. */
void peers_destroy(void);
extern const struct engine_peers peers_fetcher;

/* member.c: etcd, or the static list of -o members. */
/* Before daemonizing: takes a fixed list, or checks etcd's (a node cut another way is refused). */
int members_check(char *err, size_t errlen);
/* With etcd: registers, reads the members, and starts the thread that keeps both up to date. */
int members_start(char *err, size_t errlen);
void members_stop(void);

#endif
