/*
 * Request intake inside the shard loops: every shard keeps reads of
 * /dev/fuse in flight on its own io_uring and runs the requests it receives,
 * so a page the receiving shard owns is served with no thread hop.
 */
#ifndef CACHEFS_INTAKE_H
#define CACHEFS_INTAKE_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

struct intake;

/*
 * Answers the kernel's INIT on the calling thread, after mounting and
 * before any intake starts: libfuse builds the reply (running the
 * file system's init), and parallel directory operations are switched on
 * when the kernel offers them. libfuse before 3.17 never passes that flag
 * on, and without it the kernel serializes every lookup and readdir of a
 * directory: 8 lookups waiting on a stalled source took 8 timeouts.
 * Returns 0 or a negative errno (logged).
 */
int intake_handshake(struct fuse_session *se);

/*
 * Prepares `per_shard` reads for each of `nshards` shards (buffers, the
 * session's fd switched to non-blocking). Returns 0 or a negative errno.
 */
int intake_create(struct intake **out, struct fuse_session *se, unsigned nshards, unsigned per_shard);
/* Starts the reads on every shard (they must run). */
void intake_start(struct intake *in);
/*
 * Blocks the calling (main) thread until the session ends: the file system
 * was unmounted, or a signal handler called fuse_session_exit().
 */
void intake_wait(struct intake *in);
/*
 * Ends the session and cancels every read still in flight, waiting up to 5 s
 * for the shards to see it; call before unmounting and stopping the shards.
 */
void intake_stop(struct intake *in);
/* After shards_stop() (or before intake_start): frees the buffers. */
void intake_free(struct intake *in);

#endif
