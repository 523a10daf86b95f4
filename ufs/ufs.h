/*
 * Under file systems: one ops table per driver. Metadata calls may block the
 * caller for local sources; data reads are asynchronous on the calling
 * shard's io_uring and complete on that shard.
 */
#ifndef CACHEFS_UFS_H
#define CACHEFS_UFS_H

#include <stdatomic.h>
#include <stdint.h>
#include <sys/statvfs.h>
#include <sys/types.h>

#include "core/options.h"
#include "core/shard.h"

struct ufs;

struct ufs_stat {
	uint64_t size;
	uint64_t mtime_ns;
	uint64_t ctime_ns;
	uint64_t atime_ns;
	mode_t mode;
	uid_t uid;
	gid_t gid;
	uint32_t nlink;
	uint64_t version;   /* changes whenever the file's bytes may have */
};

/* An open source file; shared by every handle of one inode, refcounted. */
struct ufs_file {
	const struct ufs_ops *ops;
	atomic_uint refs;
	char *name;        /* path within the source, for messages; driver-owned */
};

/* One asynchronous read; the driver owns it until done() runs. */
struct ufs_read {
	struct shard_op op;
	struct ufs_file *file;
	char *buf;
	uint64_t off;
	size_t len, got;
	void (*done)(struct ufs_read *r, int res);   /* res: bytes or -errno */
};

/* Request counters of a network source, for metrics. */
enum ufs_req_kind { UFS_REQ_GET, UFS_REQ_HEAD, UFS_REQ_LIST, UFS_REQ_KINDS };
#define UFS_REQ_NAMES { "get", "head", "list" }
/* Why a request was retried: 429/503 throttling, another 5xx, a timeout
 * (curl's or a 408), or a connection failure (refused, reset, cut short). */
enum ufs_retry_cause { UFS_RETRY_THROTTLED, UFS_RETRY_SERVER, UFS_RETRY_TIMEOUT,
		       UFS_RETRY_CONNECTION, UFS_RETRY_CAUSES };
#define UFS_RETRY_NAMES { "throttled", "server_error", "timeout", "connection" }
struct ufs_counters {
	uint64_t requests[UFS_REQ_KINDS];
	uint64_t retries[UFS_RETRY_CAUSES];
	uint64_t failed;          /* requests that failed after their retries */
};

/* Called once per entry; return non-zero to stop the listing. */
typedef int (*ufs_list_cb)(void *arg, const char *name, const struct ufs_stat *st);

struct ufs_ops {
	const char *name;
	/*
	 * Opens the source named by `source` (a path or URL) with the mount's
	 * options; on failure returns -errno and a one-line reason in err.
	 * NULL for the mount table, which ufs_mtab_init opens.
	 */
	int (*init)(struct ufs **out, const char *source, const struct cachefs_config *cfg,
		    char *err, size_t errlen);
	void (*fini)(struct ufs *u);
	/* path is relative to the source root; "" is the root. */
	int (*stat)(struct ufs *u, const char *path, struct ufs_stat *st);
	int (*list)(struct ufs *u, const char *path, ufs_list_cb cb, void *arg);
	int (*open)(struct ufs *u, const char *path, struct ufs_file **out);
	void (*release)(struct ufs_file *f);   /* last reference dropped */
	/* Owner: the calling shard. Fills r->buf; short only at end of file. */
	int (*read)(struct ufs_read *r);
	int (*statfs)(struct ufs *u, struct statvfs *st);
	/* Optional, run on every shard at unmount: fail reads in flight, close connections. */
	void (*shard_stop)(struct ufs *u);
	/* Optional (network sources): adds the request counters to *out; any thread. */
	void (*counters)(struct ufs *u, struct ufs_counters *out);
};

extern const struct ufs_ops ufs_local_ops;
extern const struct ufs_ops ufs_s3_ops;
extern const struct ufs_ops ufs_http_ops;

/*
 * The mount table of a config file: every [mount] section's source, opened
 * with cfg plus the section's options. err names the failing section.
 */
extern const struct ufs_ops ufs_mtab_ops;
int ufs_mtab_init(struct ufs **out, const struct config_file *f, const struct cachefs_config *cfg,
		  char *err, size_t errlen);

/* For messages: the sources this build reads. */
#define UFS_SCHEMES "local directories, s3://BUCKET/PREFIX and http[s]://HOST/PATH"

/* The driver for `source` ("/dir" and "file:///dir" are local, "s3://", "http(s)://"), or NULL. */
const struct ufs_ops *ufs_driver_for(const char *source);

static inline void ufs_file_get(struct ufs_file *f)
{
	atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
}

static inline void ufs_file_put(struct ufs_file *f)
{
	if (atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) == 1)
		f->ops->release(f);
}

#endif
