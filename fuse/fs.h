/*
 * The libfuse low-level front end: joins a UFS and the page cache, routes
 * reads to the shards that own their pages.
 */
#ifndef CACHEFS_FS_H
#define CACHEFS_FS_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include "core/config.h"
#include "ufs/ufs.h"

struct cachefs;

/*
 * Creates the file system over an initialised UFS; on success the UFS is
 * owned by it. Returns a negative errno (the root could not be stat'ed).
 */
int cachefs_create(struct cachefs **out, const struct cachefs_config *cfg,
		   const struct ufs_ops *ops, struct ufs *ufs);
/* Creates the page cache; the shards must run. Logs why it failed. */
int cachefs_start(struct cachefs *fs);
void cachefs_destroy(struct cachefs *fs);
const struct fuse_lowlevel_ops *cachefs_ll_ops(void);
/* Where the mount is; used to set the kernel read-ahead after INIT. */
void cachefs_set_mountpoint(struct cachefs *fs, const char *mnt);

#endif
