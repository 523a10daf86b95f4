/* The file system's state, shared by the FUSE front end (fs.c) and the
 * control server (ctl.c). */
#ifndef CACHEFS_FS_I_H
#define CACHEFS_FS_I_H

#include <limits.h>
#include <stdatomic.h>
#include <time.h>

#include "core/options.h"
#include "iostore/pgcache.h"
#include "iostore/pgstore.h"
#include "iostore/readahead.h"
#include "ufs/ufs.h"

/* FUSE requests counted for metrics, by operation. */
enum fs_op { FS_OP_LOOKUP, FS_OP_GETATTR, FS_OP_STATFS, FS_OP_OPENDIR, FS_OP_READDIR,
	     FS_OP_READDIRPLUS, FS_OP_OPEN, FS_OP_READ, FS_OP_RELEASE, FS_OP_COUNT };
#define FS_OP_NAMES { "lookup", "getattr", "statfs", "opendir", "readdir", "readdirplus", \
		      "open", "read", "release" }

/* Source (UFS) calls timed for metrics, and their histogram's upper bounds
 * in seconds. */
enum fs_src_op { FS_SRC_READ, FS_SRC_STAT, FS_SRC_LIST, FS_SRC_OPEN, FS_SRC_OPS };
#define FS_SRC_NAMES { "read", "stat", "list", "open" }
#define FS_LAT_BOUNDS { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 }
#define FS_LAT_BUCKETS 13
/* Read-ahead windows, counted at each read-ahead: powers of two pages, 1 to 2^(N-1), then more. */
#define FS_RA_BUCKETS 12

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
	atomic_ullong lat[FS_SRC_OPS][FS_LAT_BUCKETS + 1];   /* the last is +Inf */
	atomic_ullong lat_sum_us[FS_SRC_OPS];
	atomic_ullong ra_windows[FS_RA_BUCKETS + 1];        /* the last is +Inf */
	atomic_ullong ra_window_pages;                      /* their sum */
};

/* Counts a source call of kind `op` that began at start_ns (now_ns()). */
void fs_count_latency(struct cachefs *fs, enum fs_src_op op, uint64_t start_ns);
/* The UFS's metadata calls, timed. */
int fs_src_stat(struct cachefs *fs, const char *path, struct ufs_stat *st);
int fs_src_list(struct cachefs *fs, const char *path, ufs_list_cb cb, void *arg);
int fs_src_open(struct cachefs *fs, const char *path, struct ufs_file **out);

/*
 * pgcache_fetch.start of every page get: reads the page from the UFS file
 * `ctx` (a struct ufs_file) on the calling (owner) shard.
 */
int fs_fetch_start(void *ctx, const struct pgkey *key, uint64_t off, void *buf, size_t len,
		   struct page *pg);

#endif
