/*
 * The file system without FUSE: a namespace over a source (UFS), the RAM
 * and SSD page tiers, and the read engine. Front ends (the FUSE ops, the
 * control jobs, later the page server) call it; nothing here knows a
 * fuse_req_t.
 *
 * Metadata calls are asynchronous: each takes a struct emeta the caller
 * embeds, and calls m->done once, on a shard or on the caller's thread
 * (possibly before the call returns), with m->err 0 or a negative errno.
 * A source that does not answer is EIO to callers; what the mount listed
 * or opened before is served from the cache meanwhile (stale_if_error).
 */
#ifndef CACHEFS_ENGINE_H
#define CACHEFS_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <time.h>

#include "core/options.h"
#include "iostore/pgcache.h"
#include "ufs/ufs.h"

struct engine;
struct efile;    /* an open file */
struct edir;     /* a directory's entries, as listed at opendir */
struct ewfile;   /* a file open for writing */

enum emeta_kind {
	EM_LOOKUP, EM_GETATTR, EM_OPEN, EM_OPENDIR, EM_STATFS,
	/* changes (write.c) */
	EM_MKDIR, EM_MKNOD, EM_SYMLINK, EM_LINK, EM_CREATE, EM_OPEN_WRITE, EM_UNLINK, EM_RMDIR,
	EM_RENAME, EM_SETATTR, EM_READLINK, EM_FLUSH, EM_FSYNC,
};

struct emeta {
	void (*done)(struct emeta *m);
	void *arg;                /* the caller's */
	/* results */
	int err;
	uint64_t ino;             /* lookup, getattr, open */
	struct ufs_stat st;       /* lookup, getattr, open */
	/*
	 * How long st (or a negative lookup) stays true as far as the engine
	 * knows, in ns: the kernel's caches should not outlive it. UINT64_MAX
	 * when the source keeps nothing in the daemon (local directories: the
	 * kernel's own timeouts apply).
	 */
	uint64_t valid_ns;
	struct efile *file;       /* open */
	bool changed;             /* open: other bytes than at the last open (auto_cache) */
	bool shared;              /* open: the inode's shared handle (engine_open_shared) */
	struct edir *dir;         /* opendir */
	struct statvfs vfs;       /* statfs */
	struct ewfile *wfile;     /* create, open for writing: until engine_release_write */
	int oflags;               /* open for writing: the open's flags */
	char *link;               /* readlink: malloc'd, the caller frees it */
	/* the engine's */
	enum emeta_kind kind;
	struct engine *e;
	struct node *node;
	struct emeta *next;       /* waiting on the same source call */
};

/* ---- life ---- */

/*
 * Creates the engine over an initialised UFS (owned by the engine from
 * then). Returns 0 or a negative errno.
 */
int engine_create(struct engine **out, const struct cache_opts *cache, const struct meta_opts *meta,
		  const struct ufs_ops *ops, struct ufs *ufs);
/* The source as named and the mount point, for status and messages. */
void engine_set_names(struct engine *e, const char *source, const char *mnt);
/*
 * Opens the SSD store of -o ssd_cache, if any, for `nshards` shards: before
 * daemonizing, so its errors reach the terminal. Returns 0 or a negative
 * errno with a one-line message in err.
 */
int engine_open_store(struct engine *e, unsigned nshards, char *err, size_t errlen);
/* Once the shards run: the page cache, the store's rings, the metadata threads. */
int engine_start(struct engine *e);
/* Before the shards stop: fails what waits on the source, lets go of the rings. */
void engine_stop(struct engine *e);
void engine_destroy(struct engine *e);

/* ---- metadata ---- */

/* parent's entry `name`; a found inode gets one kernel reference. */
void engine_lookup(struct engine *e, uint64_t parent, const char *name, struct emeta *m);
void engine_forget(struct engine *e, uint64_t ino, uint64_t nlookup);
void engine_getattr(struct engine *e, uint64_t ino, struct emeta *m);
/* Opens a regular file for reading: m->file until engine_release. */
void engine_open(struct engine *e, uint64_t ino, struct emeta *m);
void engine_release(struct engine *e, struct efile *f);
/*
 * The inode's shared handle, for a kernel that sends no OPEN (no_open): m->file
 * holds a reference the caller drops with efile_put. Opened at the first
 * read and kept while the kernel holds the inode; opened anew when the
 * inode's attributes (refreshed by lookup and getattr) show another version.
 * One opened while the source failed (cached pages only) is kept until the
 * outage ends, so reads during it do not each try the source.
 */
void engine_open_shared(struct engine *e, uint64_t ino, struct emeta *m);
/* The same when it needs no source call: the handle with a reference, or NULL. */
struct efile *engine_shared_get(struct engine *e, uint64_t ino);
/*
 * The attributes and the source's version tag (UFS_ETAG_MAX bytes; "" for
 * none) of an inode the caller holds a reference on, read together.
 */
void engine_attr(struct engine *e, uint64_t ino, struct ufs_stat *st, char *etag);
/* A snapshot of a directory's entries: m->dir until engine_closedir. */
void engine_opendir(struct engine *e, uint64_t ino, struct emeta *m);
void engine_closedir(struct engine *e, struct edir *d);
/* The source's sizes in m->vfs; made-up ones when it does not answer. */
void engine_statfs(struct engine *e, struct emeta *m);

struct edir_ent {
	char *name;
	const char *etag;         /* the source's version tag, or "" */
	uint64_t ino;
	struct ufs_stat st;
};
size_t edir_count(const struct edir *d);
const struct edir_ent *edir_get(const struct edir *d, size_t i);
/* How long the entries' attributes stay true (as emeta.valid_ns). */
uint64_t edir_valid_ns(const struct edir *d);
/* readdirplus: a kernel reference on entry i; its inode number, or 0. */
uint64_t engine_dir_ref(struct engine *e, struct edir *d, size_t i);

/*
 * Blocking calls on the source itself, for threads that are not shards
 * (control jobs): they run on a shard and wait. A stat fills st and etag
 * (UFS_ETAG_MAX bytes); list calls cb per entry on the waiting thread, with
 * the entry's source name. A source that does not answer is -EIO.
 */
int engine_src_stat(struct engine *e, const char *path, struct ufs_stat *st, char *etag);
int engine_src_list(struct engine *e, const char *path,
		    int (*cb)(void *arg, const char *name, const struct ufs_stat *st, const char *etag),
		    void *arg);
/* An open file for page operations and reads, from a stat's answer. */
int engine_src_open(struct engine *e, const char *path, const struct ufs_stat *st,
		    const char *etag, struct efile **out);

/* ---- reads ---- */

/*
 * A read of [off, off + len) of an open file. done() runs once, on the
 * shard that completed the last page; then iov/niov point into pinned
 * pages (short at the end of the file), or err is set. The caller replies
 * and then calls eread_release(), from any thread.
 */
struct eread {
	void (*done)(struct eread *r);
	void *arg;
	int err;
	struct iovec *iov;
	unsigned niov;
	void (*release)(struct eread *r);   /* the engine's */
};
/* Starts a read: 0 (done may run before this returns), or -ENOMEM and
 * nothing will be called. */
int engine_read(struct engine *e, struct efile *f, uint64_t off, size_t len,
		void (*done)(struct eread *r), void *arg);
void eread_release(struct eread *r);
/* Reads pages [first, first + n) of f ahead of a reader, within the
 * read-ahead budget; nothing waits for them. */
void engine_prefetch(struct efile *f, uint64_t first, uint32_t n);
/*
 * Reads the whole 4 MiB stripe holding byte `off` of f ahead, from any
 * thread: its pages share an owner shard, which starts them in one turn of
 * its loop, so their source reads merge into one GET.
 */
void engine_prefetch_stripe(struct efile *f, uint64_t off);

/* An open file's size. */
uint64_t efile_size(const struct efile *f);
/* Its page keys' file (struct pgkey.file) and its version. */
void efile_identity(const struct efile *f, uint64_t *fid, uint64_t *version);
/* Pages of f missing here come from the source, never from a peer: what a
 * peer asked for (the asker already found that this node owns it). */
void efile_set_local_only(struct efile *f);
/* References: the opener's is dropped by engine_release (FUSE) or efile_put. */
void efile_get(struct efile *f);
void efile_put(struct efile *f);

/*
 * One page operation, run on the page's owner shard: load (get the page,
 * from the source if need be), hold (cachefsctl pin), drop (evict), unhold
 * (unpin), or unhold every page of one shard. The one struct behind FUSE
 * reads, read-ahead and control jobs. done() runs on the owner with
 * op->res; then the caller calls page_op_release() (any thread).
 */
enum page_op_kind { PGOP_LOAD, PGOP_HOLD, PGOP_DROP, PGOP_UNHOLD, PGOP_UNHOLD_ALL };
struct page_op {
	enum page_op_kind kind;
	void (*done)(struct page_op *op);
	void *arg;
	/* load: bytes or -errno; hold: 0 held now, 1 held already, or
	 * -ENOSPC, -errno; drop: 0, -ENOENT, -EPERM (held), -EBUSY; unhold:
	 * 0 or -ENOENT; unhold all: how many */
	int64_t res;
	struct page *pg;          /* load: the page, pinned until page_op_release */
	uint32_t off, len;        /* reads: the bytes of the page wanted */
	struct pgkey key;
	uint64_t want;            /* bytes the page can hold */
	unsigned owner;
	/* the engine's */
	struct engine *e;
	struct efile *file;       /* referenced until page_op_release */
	struct pgcache_fetch fetch;
	struct shard_msg msg;
	union {
		struct pgcache_waiter w;
		struct pgcache_hold hold;
	};
};
/* Page `index` of open file f (referenced by the op). */
void page_op_init(struct page_op *op, struct engine *e, enum page_op_kind kind, struct efile *f,
		  uint64_t index);
/* Drop or unhold of a page by key, its file not open. */
void page_op_init_key(struct page_op *op, struct engine *e, enum page_op_kind kind,
		      const struct pgkey *key, uint64_t want);
/* Unhold every hold of shard `part`. */
void page_op_init_part(struct page_op *op, struct engine *e, unsigned part);
/* Runs op inline if the calling shard owns its page, else sends it there. */
void page_op_submit(struct page_op *op);
/* Lets go of the page and the file; op may be freed afterwards. */
void page_op_release(struct page_op *op);

/* ---- changes ---- */

/*
 * Namespace changes, asynchronous like the metadata calls. A read-only
 * mount, or a source that cannot change, answers -EROFS. What is made
 * (mkdir, mknod, symlink, link, create) answers m->ino with one kernel
 * reference and m->st; uid and gid are the caller's, who owns it.
 */
void engine_mkdir(struct engine *e, uint64_t parent, const char *name, mode_t mode, uid_t uid,
		  gid_t gid, struct emeta *m);
void engine_mknod(struct engine *e, uint64_t parent, const char *name, mode_t mode, dev_t rdev,
		  uid_t uid, gid_t gid, struct emeta *m);
void engine_symlink(struct engine *e, uint64_t parent, const char *name, const char *target,
		    uid_t uid, gid_t gid, struct emeta *m);
/* A new name newparent/newname for inode ino. */
void engine_link(struct engine *e, uint64_t ino, uint64_t newparent, const char *newname,
		 struct emeta *m);
void engine_unlink(struct engine *e, uint64_t parent, const char *name, struct emeta *m);
void engine_rmdir(struct engine *e, uint64_t parent, const char *name, struct emeta *m);
/* flags: RENAME_NOREPLACE, or 0; RENAME_EXCHANGE is -EINVAL. */
void engine_rename(struct engine *e, uint64_t parent, const char *name, uint64_t newparent,
		   const char *newname, unsigned flags, struct emeta *m);
/*
 * Changes what `set` (UFS_SET_*) names to the values in *to; through wf
 * when the caller has the file open for writing (NULL otherwise).
 * m->st: the attributes after it.
 */
void engine_setattr(struct engine *e, uint64_t ino, unsigned set, const struct ufs_stat *to,
		    struct ewfile *wf, struct emeta *m);
/* fstat of a file open for writing: what the open file holds (it may be unlinked). */
void engine_fgetattr(struct engine *e, struct ewfile *wf, struct emeta *m);
/* m->link: where the symlink ino points. */
void engine_readlink(struct engine *e, uint64_t ino, struct emeta *m);

/*
 * Files open for writing. create makes parent/name and opens it
 * (oflags: the access mode, O_EXCL, O_TRUNC); open_write opens an
 * existing file with a write access mode or O_TRUNC. m->wfile until
 * engine_release_write. Reads through such a handle see what was written
 * (they bypass the page tiers).
 */
void engine_create_file(struct engine *e, uint64_t parent, const char *name, mode_t mode, int oflags,
		   uid_t uid, gid_t gid, struct emeta *m);
void engine_open_write(struct engine *e, uint64_t ino, int oflags, struct emeta *m);
/*
 * Writes buf[0, len) at off: done(arg, res) once, res = len or -errno,
 * on some shard. buf is copied: the caller's may go once this returns.
 * 0, or -ENOMEM and nothing will be called.
 */
int engine_write(struct ewfile *wf, uint64_t off, const void *buf, size_t len,
		 void (*done)(void *arg, int res), void *arg);
/* A read through a handle open for writing, as engine_read. */
int engine_wread(struct ewfile *wf, uint64_t off, size_t len, void (*done)(struct eread *r), void *arg);
/*
 * close(): what was written becomes the source's (an object store
 * uploads it); m->err is the answer close() gives, including a write
 * that failed before. fsync: the same, and to stable storage.
 */
void engine_flush(struct ewfile *wf, struct emeta *m);
void engine_fsync(struct ewfile *wf, bool datasync, struct emeta *m);
/* The last close: commits what the last flush did not, then lets go. */
void engine_release_write(struct ewfile *wf);

/* ---- other nodes ---- */

/*
 * A cache miss asks the stripe's owner node before the source, through a
 * fetcher the daemon plugs in (cluster/peer.c): the engine knows no
 * cluster. One page fetch from a peer: the engine fills the first block.
 */
struct epeer_fetch {
	const char *path;         /* the file at the source, from the mount's root */
	const char *etag;         /* its version tag ("" for none) */
	uint64_t fid, version, size;
	uint64_t index;           /* page number */
	uint64_t off;             /* its first byte */
	char *buf;                /* up to len bytes, 4 KiB aligned */
	size_t len;
	/* Once, on the shard that called fetch(): res = the bytes (short only
	 * at the end of the file) or a negative errno, after which the engine
	 * reads the page from the source. */
	void (*done)(struct epeer_fetch *pf, int res);
};
struct engine_peers {
	/*
	 * Starts pf on the calling shard: 0 when started (done will run),
	 * -ENOENT when this node owns the page's stripe or no peer is known,
	 * another negative errno when it could not start: the source is read.
	 */
	int (*fetch)(void *arg, struct epeer_fetch *pf);
	void *arg;
};
/* Before the mount serves (files opened before do not ask peers); p is copied. */
void engine_set_peers(struct engine *e, const struct engine_peers *p);

/* ---- what status, metrics and jobs read ---- */

/* Source calls timed for metrics, and their histogram's upper bounds in seconds. */
enum engine_src_op { ENG_SRC_READ, ENG_SRC_STAT, ENG_SRC_LIST, ENG_SRC_OPEN, ENG_SRC_OPS };
#define ENG_SRC_NAMES { "read", "stat", "list", "open" }
#define ENG_LAT_BOUNDS { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 }
#define ENG_LAT_BUCKETS 13
/* Read-ahead windows, counted at each read-ahead: powers of two pages, 1 to 2^(N-1), then more. */
#define ENG_RA_BUCKETS 12

/* Counters, summed racily from any thread. */
struct engine_stats {
	uint64_t open_files;      /* opened by OPEN (FUSE) or by jobs */
	uint64_t shared_files;    /* inodes with a shared handle (no_open): the kernel may have them open */
	uint64_t lat[ENG_SRC_OPS][ENG_LAT_BUCKETS + 1];    /* the last is +Inf */
	uint64_t lat_sum_us[ENG_SRC_OPS];
	uint64_t ra_windows[ENG_RA_BUCKETS + 1];           /* the last is +Inf */
	uint64_t ra_window_pages;                          /* their sum */
	uint64_t ra_bytes_in_flight, ra_budget;
	uint64_t stale_answers;   /* metadata answered from the cache while the source failed */
	uint64_t bytes_written;   /* through files open for writing */
	uint64_t commits;          /* closes and fsyncs the source took */
	uint64_t commit_failures;  /* open files whose commit failed (each once until one succeeds) */
	uint64_t nodes;           /* names in the namespace */
	uint64_t peer_pages;      /* pages a peer sent */
	uint64_t peer_bytes;      /* their bytes (counted in the RAM tier's fetched bytes too) */
	uint64_t peer_fallbacks;  /* pages a peer was asked for and the source sent */
	bool has_source_counters; /* a network source: */
	struct http_counters source;
};
void engine_stats(struct engine *e, struct engine_stats *out);

struct pgcache *engine_cache(const struct engine *e);
struct pgstore *engine_store(const struct engine *e);
const struct cache_opts *engine_cache_opts(const struct engine *e);
uint64_t engine_page_size(const struct engine *e);
const char *engine_source(const struct engine *e);
/* Whether changes answer EROFS (ro, or a source that cannot change). */
bool engine_read_only(const struct engine *e);
const char *engine_mountpoint(const struct engine *e);
time_t engine_started(const struct engine *e);

#endif
