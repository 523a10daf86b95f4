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

/* FUSE requests counted for metrics, by operation. */
enum fs_op { FS_OP_LOOKUP, FS_OP_GETATTR, FS_OP_STATFS, FS_OP_OPENDIR, FS_OP_READDIR,
	     FS_OP_READDIRPLUS, FS_OP_OPEN, FS_OP_READ, FS_OP_RELEASE, FS_OP_COUNT };
#define FS_OP_NAMES { "lookup", "getattr", "statfs", "opendir", "readdir", "readdirplus", \
		      "open", "read", "release" }

/* Upper bounds (seconds) of the source read latency histogram's buckets. */
#define FS_LAT_BOUNDS { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 }
#define FS_LAT_BUCKETS 13

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
	/* Metrics: relaxed atomics, bumped by whichever thread serves. */
	atomic_ullong requests[FS_OP_COUNT];
	atomic_ullong lat[FS_LAT_BUCKETS + 1];   /* source reads; the last is +Inf */
	atomic_ullong lat_sum_us, lat_count;
};

/*
 * pgcache_fetch.start of every page get: reads the page from the UFS file
 * `ctx` (a struct ufs_file) on the calling (owner) shard.
 */
int fs_fetch_start(void *ctx, const struct pgkey *key, uint64_t off, void *buf, size_t len,
		   struct page *pg);

#endif
