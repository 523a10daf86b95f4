/*
 * Under file systems: one ops table per driver. Every call that may wait on
 * the source is asynchronous: it is made on a shard and completes on that
 * shard by a callback, never blocking the loop. Network drivers (s3, http)
 * run their requests on the shard's HTTP client; the local driver hands its
 * system calls to the metadata threads (core/pool.h), because an NFS server
 * can hang a stat for minutes and the kernel has no asynchronous getdents.
 */
#ifndef CACHEFS_UFS_H
#define CACHEFS_UFS_H

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/statvfs.h>
#include <sys/types.h>

#include "core/options.h"
#include "core/http.h"
#include "core/shard.h"

struct ufs;

#define UFS_ETAG_MAX 128

struct ufs_stat {
	uint64_t size;
	uint64_t mtime_ns;
	uint64_t ctime_ns;
	uint64_t atime_ns;
	mode_t mode;              /* 0 in a negative answer (no such name) */
	uid_t uid;
	gid_t gid;
	uint32_t nlink;
	uint64_t version;         /* changes whenever the file's bytes may have */
	/*
	 * The object's identity and version in one: page keys. Equal only for
	 * the same bytes of the same source object, whatever path reaches it
	 * (local: device, inode, mtime, size; object stores: key and ETag).
	 */
	uint64_t id;
	uint64_t ino;             /* the source's inode number, shown by stat; 0: none (object stores) */
	dev_t rdev;               /* device files */
};

/* An open source file; shared by every handle of one inode, refcounted. */
struct ufs_file {
	const struct ufs_ops *ops;
	atomic_uint refs;
	char *name;               /* for messages; driver-owned */
	bool readable;            /* reads work through it (not a file opened O_WRONLY) */
};

/* One asynchronous read; the driver owns it until done() runs. */
struct ufs_read {
	union {                   /* the driver's */
		struct shard_op op;       /* files: the io_uring read */
		struct http_read hr;      /* network: the ranged GET */
	};
	int fd;                   /* the driver's (ufs_fd_read) */
	bool direct;
	struct ufs_file *file;
	char *buf;
	uint64_t off;
	size_t len, got;
	void (*done)(struct ufs_read *r, int res);   /* res: bytes or -errno */
};

/* One asynchronous write of a file opened for writing; the driver owns it until done() runs. */
struct ufs_write {
	struct shard_op op;       /* the driver's */
	int fd;                   /* the driver's (ufs_fd_write) */
	void (*inner)(struct ufs_write *w, int res);   /* the driver's: a done() it wraps */
	struct ufs_file *file;
	const char *buf;
	uint64_t off;
	size_t len, put;
	void (*done)(struct ufs_write *w, int res);   /* res: bytes (all of len) or -errno */
};

/* What a setattr changes (ufs_call.set); the new values are in ufs_call.st. */
#define UFS_SET_MODE  0x01u
#define UFS_SET_UID   0x02u
#define UFS_SET_GID   0x04u
#define UFS_SET_SIZE  0x08u
#define UFS_SET_ATIME 0x10u
#define UFS_SET_MTIME 0x20u
#define UFS_SET_ATIME_NOW 0x40u
#define UFS_SET_MTIME_NOW 0x80u
/* What a file's source keeps: all but its access time (no object store holds one). */
#define UFS_SET_KEPT (~(UFS_SET_ATIME | UFS_SET_ATIME_NOW))

/* Request counters of a network source, for metrics. */
enum ufs_req_kind { UFS_REQ_GET, UFS_REQ_HEAD, UFS_REQ_LIST, UFS_REQ_PUT, UFS_REQ_DELETE, UFS_REQ_COPY,
		    UFS_REQ_KINDS };
#define UFS_REQ_NAMES { "get", "head", "list", "put", "delete", "copy" }

/* One entry of a listing. */
struct ufs_dirent {
	const char *name;         /* as shown: a valid file name */
	const char *srcname;      /* the source's own name when it differs (an alias), else NULL */
	const char *etag;         /* "" when the source has none */
	struct ufs_stat st;
	/* The listing names the bytes' version but carries no metadata (an
	 * object store's LIST): st's mode, owner and times are the source's
	 * defaults, and what a stat told of the same version is truer. */
	bool bare;
};

/* Flags of a call. */
#define UFS_OBJECT 1u         /* stat: the path's last part is an object a listing showed
			       * under an alias (s3: a file shadowed by a same-named prefix) */

/*
 * One asynchronous call: stat, list or open of `path` (relative to the
 * source root, "" for the root, built from source names). The caller owns
 * it and fills the first block; the driver calls done() exactly once, on
 * the calling shard, possibly before the call returns.
 *
 * rc: 0, or a negative errno. The source failing to answer (a timeout, a
 * refused connection, 5xx after the retries) is -EHOSTDOWN, -ETIMEDOUT or
 * -ECONNREFUSED (ufs_unavailable()), with a one-line reason in err: the
 * engine may then answer from what it cached before (stale-if-error).
 */
struct ufs_call {
	struct ufs *u;
	const char *path;
	unsigned flags;
	void (*done)(struct ufs_call *c, int rc);
	/* list: called once per entry, on the calling shard, before done();
	 * non-zero stops the listing and becomes rc */
	int (*entry)(struct ufs_call *c, const struct ufs_dirent *e);
	/* stat (out), open (in: the attributes the caller knows, fresh) */
	struct ufs_stat st;
	char etag[UFS_ETAG_MAX];
	/* open (out); fetched: c->st was read from the source by the open
	 * itself (local: fstat of the opened file), not passed through;
	 * rename (out): c->st and c->etag are the moved file's at its new
	 * name (an object store's copy is another version) */
	struct ufs_file *file;
	bool fetched;
	/* open, create for writing (out): the file's writes reach the source at
	 * its commit only (an object store), so until then the source's stat
	 * of it is older than what the engine knows */
	bool staged;
	/* statfs (out) */
	struct statvfs vfs;
	/* out, set before the first entry of a listing and for -ENOENT too:
	 * how long the answer stays true (dir_cache_ttl; 0 for local sources,
	 * UINT64_MAX for a fixed manifest) */
	uint64_t ttl_ns;
	/*
	 * Changes (in). mkdir, mknod, create, symlink: mode, rdev, and the
	 * caller's uid and gid, who own what is made. open: oflags (O_ACCMODE
	 * and O_TRUNC, O_APPEND; create adds O_EXCL). rename: path2 is the new
	 * path and rflags RENAME_NOREPLACE; link: path2 the new name; symlink:
	 * path2 the target. setattr: set (UFS_SET_*) with the values in st,
	 * on c->file when the caller has it open. fsync, commit: c->file.
	 * Each answers c->st: the attributes of what it made or changed (not
	 * for unlink, rmdir; for rename only with fetched).
	 */
	const char *path2;
	int oflags;
	unsigned rflags, set;
	mode_t mode;
	dev_t rdev;
	uid_t uid;
	gid_t gid;
	bool datasync;            /* fsync: data only */
	char *link;               /* readlink (out): malloc'd, the caller frees it */
	/* out: which source answered (the mount table's entry), so that the
	 * outage of one is told from another's; 0 for a single source */
	unsigned source;
	/* out: the answer came from the source itself, not from what the
	 * driver knows without asking (a bucket's root, a manifest): only
	 * such an answer ends an outage */
	bool asked;
	char err[1536];           /* the reason of a failure: a key may be 1 KiB */
	/* the driver's while the call runs */
	void *priv;
};

struct ufs_ops {
	const char *name;
	/*
	 * Opens the source named by `source` (a path or URL) with the mount's
	 * options, on the main thread before the shards run (it may block);
	 * on failure returns -errno and a one-line reason in err. NULL for the
	 * mount table, which ufs_mtab_init opens.
	 */
	int (*init)(struct ufs **out, const char *source, const struct source_opts *o,
		    char *err, size_t errlen);
	void (*fini)(struct ufs *u);
	/* c->st, c->etag and c->ttl_ns get the answer; a missing name is -ENOENT. */
	void (*stat)(struct ufs_call *c);
	/* c->entry for each entry; -ENOENT when the directory does not exist. */
	void (*list)(struct ufs_call *c);
	/*
	 * Opens the file at path, whose attributes the caller passes in c->st
	 * and c->etag (a driver that needs no request for an open, the object
	 * stores, uses them as they are). c->file gets a file with one
	 * reference; c->st the attributes of what was opened.
	 */
	void (*open)(struct ufs_call *c);
	void (*release)(struct ufs_file *f);   /* last reference dropped */
	/* Owner: the calling shard. Fills r->buf; short only at end of file. */
	int (*read)(struct ufs_read *r);
	/* The file system's sizes in c->vfs (made up by object stores). */
	void (*statfs)(struct ufs_call *c);
	/*
	 * Changes. NULL in a read-only source (http), whose mounts answer
	 * EROFS. Namespace calls take c->path (and c->path2); create opens a
	 * new file for writing like open with a write access mode in
	 * c->oflags, which a writable source also takes.
	 */
	void (*mkdir)(struct ufs_call *c);
	void (*mknod)(struct ufs_call *c);
	void (*create)(struct ufs_call *c);
	void (*symlink)(struct ufs_call *c);
	void (*link)(struct ufs_call *c);
	void (*unlink)(struct ufs_call *c);
	void (*rmdir)(struct ufs_call *c);
	void (*rename)(struct ufs_call *c);
	void (*setattr)(struct ufs_call *c);
	void (*readlink)(struct ufs_call *c);
	/* Owner: the calling shard. Writes all of w->buf or fails. */
	int (*write)(struct ufs_write *w);
	/* The file's written bytes to stable storage (fsync(2)). */
	void (*fsync)(struct ufs_call *c);
	/*
	 * At close: the file's bytes become the source's (an object store
	 * uploads them); c->st gets what the source now holds. The file
	 * takes no more writes afterwards.
	 */
	void (*commit)(struct ufs_call *c);
	/*
	 * Optional: the daemon runs (it forked after init, which threads
	 * started in init would not survive): background work may begin.
	 */
	void (*start)(struct ufs *u);
	/* Optional, run on every shard at unmount: fail calls and reads in flight. */
	void (*shard_stop)(struct ufs *u);
	/* Optional (network sources): adds the request counters to *out; any thread. */
	void (*counters)(struct ufs *u, struct http_counters *out);
};

extern const struct ufs_ops ufs_local_ops;
extern const struct ufs_ops ufs_s3_ops;
extern const struct ufs_ops ufs_http_ops;

/*
 * The mount table of a config file: every [mount] section's source, opened
 * with cfg plus the section's options. err names the failing section.
 */
extern const struct ufs_ops ufs_mtab_ops;
/* Whether some section of f's mount table takes writes (its source can, and it is not ro). */
bool ufs_mtab_writable(const struct config_file *f, const struct cachefs_config *cfg);
int ufs_mtab_init(struct ufs **out, const struct config_file *f, const struct cachefs_config *cfg,
		  char *err, size_t errlen);

/* For messages: the sources this build reads. */
#define UFS_SCHEMES "local directories, s3://BUCKET/PREFIX and http[s]://HOST/PATH"

/* The driver for `source` ("/dir" and "file:///dir" are local, "s3://", "http(s)://"), or NULL. */
const struct ufs_ops *ufs_driver_for(const char *source);

/* Writes the one-line reason of a failed call into c->err (cut to fit). */
__attribute__((format(printf, 2, 3)))
void ufs_call_err(struct ufs_call *c, const char *fmt, ...);

/*
 * Reads and writes of a file descriptor on the calling shard's ring, for
 * drivers whose bytes are in files (local sources, staged writes). A read
 * fills r->buf up to r->len or the end of the file (O_DIRECT: a short read
 * is the end); a write puts all of w->buf. Failures are logged with the
 * file's name.
 */
void ufs_fd_read(struct ufs_read *r, int fd, bool direct);
void ufs_fd_write(struct ufs_write *w, int fd);

/* Whether rc says the source did not answer (rather than answering no). */
static inline bool ufs_unavailable(int rc)
{
	return rc == -EHOSTDOWN || rc == -ETIMEDOUT || rc == -ECONNREFUSED || rc == -ECONNRESET ||
	       rc == -EHOSTUNREACH || rc == -ENETUNREACH || rc == -ENOTCONN;
}

/* Whether open flags ask for writing: a write access mode, or O_TRUNC. */
static inline bool ufs_writing(int oflags)
{
	return (oflags & O_ACCMODE) != O_RDONLY || (oflags & O_TRUNC);
}

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
