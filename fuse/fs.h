/*
 * The libfuse low-level front end: decodes a request, calls the engine,
 * replies. Metadata replies come when the engine answers, on whatever
 * thread that is; reads reply from the pinned pages the read engine hands
 * back.
 */
#ifndef CACHEFS_FS_H
#define CACHEFS_FS_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include "core/options.h"
#include "engine/engine.h"

struct fusefs;

/* FUSE requests counted for metrics, by operation. */
enum fusefs_op { FS_OP_LOOKUP, FS_OP_GETATTR, FS_OP_STATFS, FS_OP_OPENDIR, FS_OP_READDIR,
		 FS_OP_READDIRPLUS, FS_OP_OPEN, FS_OP_READ, FS_OP_RELEASE, FS_OP_WRITE, FS_OP_FLUSH,
		 FS_OP_CHANGE, FS_OP_COUNT };
#define FS_OP_NAMES { "lookup", "getattr", "statfs", "opendir", "readdir", "readdirplus", \
		      "open", "read", "release", "write", "flush", "change" }

/* The front end over engine e, with options o; mnt is the mount point. */
int fusefs_create(struct fusefs **out, struct engine *e, const struct front_opts *o,
		  const char *mnt);
void fusefs_destroy(struct fusefs *ff);
const struct fuse_lowlevel_ops *fusefs_ops(void);
/* The session the front end serves, for notifications to the kernel; before it runs. */
void fusefs_set_session(struct fusefs *ff, struct fuse_session *se);
/* Any thread: the kernel's attribute, entry and negative cache times (SIGHUP). */
void fusefs_set_ttls(struct fusefs *ff, const struct front_opts *o);
/* Requests served so far, by operation; any thread, racy. */
void fusefs_requests(const struct fusefs *ff, uint64_t out[FS_OP_COUNT]);

#endif
