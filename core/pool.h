/*
 * Blocking work off the shard loops: a few threads that run system calls
 * which may wait (stat, getdents and open on NFS) and hand the result back
 * to the shard that asked, by message. A shard only pushes onto a short
 * mutex-guarded queue; it never waits for the work.
 */
#ifndef CACHEFS_POOL_H
#define CACHEFS_POOL_H

#include <stdbool.h>

#include "core/shard.h"

struct pool_job {
	void (*run)(struct pool_job *j);    /* on a pool thread: may block */
	void (*done)(struct pool_job *j);   /* then on the shard that submitted it */
	/* the pool's */
	struct shard_msg msg;
	struct shard *from;
	struct pool_job *next;
};

/* Starts n threads (n > 0). Returns 0 or a negative errno (logged). */
int pool_start(unsigned n);
/*
 * From a shard: queues j; j->done runs later on this shard (never before
 * this returns). A job completed unrun (queued at pool_stop, or submitted
 * after it) keeps the result the submitter set before: make it an error.
 */
void pool_submit(struct pool_job *j);
/*
 * Stops taking work and waits up to `wait_ms` for the jobs running now: a
 * thread stuck in a system call (a hung NFS server) is left behind rather
 * than holding up the exit. Jobs never started are completed unrun. Call
 * while the shards still run, so that the done callbacks can.
 */
void pool_stop(unsigned wait_ms);
/* Whether pool_stop left threads behind: what their jobs use must outlive the exit. */
bool pool_abandoned(void);

#endif
