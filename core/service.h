/*
 * The service manager's side of the daemon: systemd's notify protocol
 * (READY=1, STATUS=, STOPPING=1) and a watchdog fed only while every shard
 * loop answers. Without NOTIFY_SOCKET (not run by systemd) every call is a
 * no-op, so the daemon calls them unconditionally.
 */
#ifndef CACHEFS_SERVICE_H
#define CACHEFS_SERVICE_H

#include <stddef.h>

/*
 * Writes a one-line summary of the daemon's state for STATUS= into buf.
 * Runs on the service thread, racing the shards: counters may be stale.
 */
typedef void (*service_status_fn)(void *arg, char *buf, size_t len);

/*
 * Starts the service thread, once the shards run and the session is mounted:
 * it waits until `mnt` answers a statfs (the FUSE loop is serving), then
 * sends READY=1 with the first STATUS=, and every few seconds a fresh
 * STATUS=. With WatchdogSec= set it probes every shard twice per period and
 * sends WATCHDOG=1 only when each answered its previous probe, so a stalled
 * loop gets the daemon restarted. Returns 0 or a negative errno (logged).
 */
int service_start(const char *mnt, service_status_fn status, void *arg);
/* Sends STOPPING=1 and joins the thread. Call before the shards stop. */
void service_stop(void);

#endif
