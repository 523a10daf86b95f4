/*
 * The control server behind `cachefsctl`: a Unix stream socket taking one
 * JSON request per line and answering JSON lines (status, load with
 * progress, jobs, cancel, evict). Its thread only parses, answers and
 * reports; walks and page loads run in one thread per job, pages on their
 * owner shards.
 */
#ifndef CACHEFS_CTL_H
#define CACHEFS_CTL_H

#include <stddef.h>

struct cachefs;

/*
 * Called on the control thread when SIGHUP asks for a reload: re-reads what
 * can change at run time and writes a one-line account into msg.
 */
typedef void (*ctl_reload_fn)(void *arg, char *msg, size_t len);

/*
 * Binds `path` (mode 0600, or 0660 with group `group`, which may be NULL or
 * ""), before the mount so that its errors reach the terminal. A socket
 * left by a dead daemon is replaced; one a live daemon answers on is not.
 * Returns 0, or a negative errno with a one-line reason in err.
 */
int ctl_open(const char *path, const char *group, char *err, size_t errlen);
/* Serves the socket from its own thread, once the shards and the cache run. */
int ctl_start(struct cachefs *fs, ctl_reload_fn reload, void *reload_arg);
/* Async-signal-safe: asks the control thread to run the reload callback. */
void ctl_request_reload(void);
/* Cancels the jobs, waits for them, closes and removes the socket; call
 * before the shards stop. Safe when nothing was opened. */
void ctl_stop(void);

#endif
