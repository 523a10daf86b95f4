/*
 * The libfuse low-level front end: joins a UFS and the page cache, routes
 * reads to the shards that own their pages.
 */
#ifndef CACHEFS_FS_H
#define CACHEFS_FS_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include "core/options.h"
#include "ufs/ufs.h"

struct cachefs;

/*
 * Creates the file system over an initialised UFS; on success the UFS is
 * owned by it. Returns a negative errno (the root could not be stat'ed).
 */
int cachefs_create(struct cachefs **out, const struct cachefs_config *cfg,
		   const struct ufs_ops *ops, struct ufs *ufs);
/* Creates the page cache; the shards must run. Logs why it failed. */
/*
 * Opens the SSD store of -o ssd_cache, if any, for `nshards` shards: before
 * daemonizing, so its errors reach the terminal. Returns 0 or a negative
 * errno with a one-line message in err.
 */
int cachefs_open_store(struct cachefs *fs, unsigned nshards, char *err, size_t errlen);
int cachefs_start(struct cachefs *fs);
/* Before the shards stop: lets go of what the rings hold. */
void cachefs_stop(struct cachefs *fs);
void cachefs_destroy(struct cachefs *fs);
/* Any thread: the kernel's attribute, entry and negative cache times. */
void cachefs_set_ttls(struct cachefs *fs, const struct cachefs_config *cfg);
/*
 * A one-line summary (shards, RAM tier use, hit ratio, fetches in flight,
 * source errors) for the service manager; any thread, counters read racily.
 * arg is the struct cachefs.
 */
void cachefs_summary(void *arg, char *buf, size_t len);
const struct fuse_lowlevel_ops *cachefs_ll_ops(void);
/* The source as named and where the mount is (the kernel read-ahead is set
 * on it after INIT); for status and messages. */
void cachefs_set_names(struct cachefs *fs, const char *source, const char *mnt);

#endif
