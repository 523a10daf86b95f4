/*
 * The control server behind `cachefsctl` (protocol: ctl/proto.h). Its
 * thread parses requests, answers and reports progress; the work of a
 * load, pin or evict runs in the job's own thread (ctl/jobs.h), pages on
 * their owner shards.
 */
#ifndef CACHEFS_CTL_SERVER_H
#define CACHEFS_CTL_SERVER_H

#include <jansson.h>
#include <stddef.h>

#include "engine/engine.h"

/*
 * Called on the control thread when SIGHUP asks for a reload: re-reads what
 * can change at run time and writes a one-line account into msg.
 */
typedef void (*ctl_reload_fn)(void *arg, char *msg, size_t len);

/*
 * Binds `path` (mode 0600, or 0660 with group `group`, which may be NULL or
 * ""), before the mount so that its errors reach the terminal. The default
 * runtime directory is created 0700 (0711 with a group); a directory that
 * is not ours or that others may write is refused. A socket left by a dead
 * daemon is replaced; one a live daemon answers on is not. Returns 0, or a
 * negative errno with a one-line reason in err.
 */
int ctl_open(const char *path, const char *group, char *err, size_t errlen);
/* Serves the socket from its own thread, once the shards and the engine run. */
int ctl_start(struct engine *e, ctl_reload_fn reload, void *reload_arg);
/* Async-signal-safe: asks the control thread to run the reload callback. */
void ctl_request_reload(void);
/* Cancels the jobs, waits for them, closes and removes the socket; call
 * before the shards stop. Safe when nothing was opened. */
void ctl_stop(void);
/* The jobs of the running control server (NULL before ctl_start), for the status page. */
struct jobs *ctl_jobs(void);
/* In a cluster: what `cluster` answers (cluster/cluster.h's cluster_members_json). */
typedef json_t *(*ctl_members_fn)(void);
void ctl_set_cluster(ctl_members_fn members);

#endif
