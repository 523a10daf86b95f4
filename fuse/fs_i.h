/* The file system's state, shared by the FUSE front end (fs.c) and the
 * control server (ctl.c). */
#ifndef CACHEFS_FS_I_H
#define CACHEFS_FS_I_H

#include <limits.h>
#include <stdatomic.h>
#include <time.h>

#include "core/config.h"
#include "iostore/pgcache.h"
#include "iostore/pgstore.h"
#include "iostore/readahead.h"
#include "ufs/ufs.h"

/* Set up before the shards serve and read-only afterwards, except the
 * atomics. */
struct cachefs {
	struct cachefs_config cfg;
	const struct ufs_ops *ops;
	struct ufs *ufs;
	struct itable *itable;
	struct pgcache *cache;
	struct pgstore *store;      /* SSD tier, or NULL */
	struct ra_params ra;
	struct ra_budget ra_budget;
	char mnt[PATH_MAX];
	char source[PATH_MAX];      /* as the user named it, for status */
	time_t started;
	atomic_ullong open_files;
	/* The kernel's cache times: SIGHUP may change them (cachefs_set_ttls). */
	_Atomic double attr_timeout, entry_timeout, negative_timeout;
};

/*
 * pgcache_fetch.start of every page get: reads the page from the UFS file
 * `ctx` (a struct ufs_file) on the calling (owner) shard.
 */
int fs_fetch_start(void *ctx, const struct pgkey *key, uint64_t off, void *buf, size_t len,
		   struct page *pg);

#endif
