#include "config.h"
#include "fuse/fs.h"
#include "core/log.h"
#include "core/shard.h"
#include "core/util.h"

#include <alloca.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Request counters: a row per shard (written by that shard only, no
 * shared cache line on the request path), row 0 for other threads. */
#define COUNTER_ROWS 1025

struct fusefs {
	struct engine *e;
	struct fuse_session *se;
	struct front_opts o;        /* as mounted; the times below are SIGHUP's */
	char mnt[PATH_MAX];
	/* The kernel's cache times: SIGHUP may change them (fusefs_set_ttls). */
	_Atomic double attr_timeout, entry_timeout, negative_timeout;
	struct {
		_Atomic uint64_t n[FS_OP_COUNT];
	} __attribute__((aligned(64))) req[COUNTER_ROWS];
};

static struct fusefs *ff_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static void count_op(fuse_req_t req, enum fusefs_op op)
{
	struct fusefs *ff = ff_of(req);
	struct shard *s = shard_self();
	unsigned row = s ? shard_id(s) + 1 : 0;

	if (row && row < COUNTER_ROWS) {
		/* Owner-written: a plain increment, read racily by metrics. */
		atomic_store_explicit(&ff->req[row].n[op],
				      atomic_load_explicit(&ff->req[row].n[op], memory_order_relaxed) + 1,
				      memory_order_relaxed);
		return;
	}
	atomic_fetch_add_explicit(&ff->req[0].n[op], 1, memory_order_relaxed);
}

void fusefs_requests(const struct fusefs *ff, uint64_t out[FS_OP_COUNT])
{
	memset(out, 0, FS_OP_COUNT * sizeof(*out));
	for (unsigned r = 0; r < COUNTER_ROWS; r++)
		for (unsigned i = 0; i < FS_OP_COUNT; i++)
			out[i] += atomic_load_explicit(&ff->req[r].n[i], memory_order_relaxed);
}

static double timeout_of(_Atomic double *cfg, uint64_t valid_ns)
{
	double t = atomic_load_explicit(cfg, memory_order_relaxed);

	/* Never longer than the engine's own answer stays true. */
	return valid_ns == UINT64_MAX ? t : MIN(t, (double)valid_ns / 1e9);
}

/*
 * A file with several names is several inodes to the kernel (a node is
 * one name here): on a writable mount, a change through one name would
 * leave the others' cached link counts and times wrong, so their
 * attributes are not cached.
 */
static double attr_timeout_of(struct fusefs *ff, const struct ufs_stat *st, uint64_t valid_ns)
{
	if (st->nlink > 1 && !S_ISDIR(st->mode) && !engine_read_only(ff->e))
		return 0;
	return timeout_of(&ff->attr_timeout, valid_ns);
}

static void fill_attr(struct stat *a, uint64_t ino, const struct ufs_stat *st)
{
	memset(a, 0, sizeof(*a));
	/* The source's own inode number where it has one: hard links show as one file. */
	a->st_ino = st->ino ? st->ino : ino;
	a->st_mode = st->mode;
	a->st_rdev = st->rdev;
	a->st_nlink = st->nlink;
	a->st_uid = st->uid;
	a->st_gid = st->gid;
	a->st_size = (off_t)st->size;
	a->st_blksize = 1 << 20;
	a->st_blocks = (blkcnt_t)((st->size + 511) / 512);
	a->st_mtim.tv_sec = (time_t)(st->mtime_ns / 1000000000ULL);
	a->st_mtim.tv_nsec = (long)(st->mtime_ns % 1000000000ULL);
	a->st_ctim.tv_sec = (time_t)(st->ctime_ns / 1000000000ULL);
	a->st_ctim.tv_nsec = (long)(st->ctime_ns % 1000000000ULL);
	a->st_atim.tv_sec = (time_t)(st->atime_ns / 1000000000ULL);
	a->st_atim.tv_nsec = (long)(st->atime_ns % 1000000000ULL);
}

static void fill_entry(struct fusefs *ff, struct fuse_entry_param *e, uint64_t ino,
		       const struct ufs_stat *st, uint64_t valid_ns)
{
	memset(e, 0, sizeof(*e));
	e->ino = ino;
	e->generation = 1;
	e->attr_timeout = attr_timeout_of(ff, st, valid_ns);
	e->entry_timeout = timeout_of(&ff->entry_timeout, valid_ns);
	fill_attr(&e->attr, ino, st);
}

/* ---- INIT and the kernel read-ahead ---- */

/* The "MAJOR:MINOR" of the mount at `mnt`, from /proc/self/mountinfo. */
static int mount_devnum(const char *mnt, char *out, size_t len)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[4096], dev[64], path[PATH_MAX];
	int rc = -ENOENT;

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		char *o = path, *i;
		if (sscanf(line, "%*u %*u %63s %*s %4095s", dev, path) != 2)
			continue;
		/* mountinfo escapes space, tab, newline and backslash as \ooo. */
		for (i = path; *i; i++) {
			if (i[0] == '\\' && i[1] >= '0' && i[1] <= '7' && i[2] && i[3]) {
				*o++ = (char)((i[1] - '0') * 64 + (i[2] - '0') * 8 + (i[3] - '0'));
				i += 3;
			} else {
				*o++ = *i;
			}
		}
		*o = '\0';
		if (!strcmp(path, mnt)) {
			snprintf(out, len, "%s", dev);
			rc = 0;   /* keep going: the last match is the top mount */
		}
	}
	fclose(f);
	return rc;
}

static void set_bdi_readahead(struct fusefs *ff)
{
	char dev[64], path[128], val[32];
	int fd, rc;

	rc = mount_devnum(ff->mnt, dev, sizeof(dev));
	if (rc < 0) {
		log_warn("read_ahead: mount %s not found in mountinfo", ff->mnt);
		return;
	}
	snprintf(path, sizeof(path), "/sys/class/bdi/%s/read_ahead_kb", dev);
	snprintf(val, sizeof(val), "%llu", (unsigned long long)(ff->o.read_ahead >> 10));
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, val, strlen(val)) < 0)
		log_info("read_ahead=%sK not set (%s: %s); the kernel default applies", val, path,
			 strerror(errno));
	else
		log_debug("%s = %s", path, val);
	if (fd >= 0)
		close(fd);
}

static void fs_init(void *userdata, struct fuse_conn_info *conn)
{
	struct fusefs *ff = userdata;

	conn->want |= FUSE_CAP_ASYNC_READ;
	if (conn->capable & FUSE_CAP_READDIRPLUS)
		conn->want |= FUSE_CAP_READDIRPLUS;
	conn->want &= ~(unsigned)FUSE_CAP_READDIRPLUS_AUTO;
	if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
		conn->want |= FUSE_CAP_PARALLEL_DIROPS;
	/* O_TRUNC comes with the OPEN, not as a SETATTR before it: one round trip, one upload. */
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	/* Writes arrive copied out of the request: splice only matters for replies. */
	conn->want &= ~(unsigned)(FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE | FUSE_CAP_SPLICE_READ);
	if (ff->o.splice)
		conn->want |= conn->capable & FUSE_CAP_SPLICE_WRITE;
	conn->max_write = 1 << 20;
	conn->max_read = (unsigned)ff->o.max_read;   /* must echo the mount option */
	conn->max_readahead = (unsigned)MIN(ff->o.read_ahead, UINT_MAX);
	conn->max_background = ff->o.max_background;
	conn->congestion_threshold = ff->o.congestion_threshold;
	/*
	 * The kernel lowers the mount's read-ahead to min(bdi, max_readahead)
	 * when it gets this reply: raise the bdi first, before any read.
	 */
	if (ff->mnt[0] && ff->o.read_ahead)
		set_bdi_readahead(ff);
}

/* ---- metadata ---- */

/*
 * fi->fh: an efile (read-only opens) or an ewfile with FH_WRITE set (opens
 * for writing); both are malloc'd, so the low bit is free.
 */
#define FH_WRITE 1u

static struct ewfile *wfile_of(const struct fuse_file_info *fi)
{
	return fi && (fi->fh & FH_WRITE) ? (struct ewfile *)(uintptr_t)(fi->fh & ~(uint64_t)FH_WRITE) : NULL;
}

/* A request waiting for the engine. */
struct rq {
	struct emeta m;
	fuse_req_t req;
	struct fusefs *ff;
	struct fuse_file_info fi;   /* open: a copy, replied with later */
	fuse_ino_t ino;             /* link: the inode linked */
};

static struct rq *rq_new(fuse_req_t req, void (*done)(struct emeta *m))
{
	struct rq *r = malloc(sizeof(*r));

	if (!r) {
		fuse_reply_err(req, ENOMEM);
		return NULL;
	}
	r->req = req;
	r->ff = ff_of(req);
	r->m.done = done;
	r->m.arg = r;
	return r;
}

static void lookup_done(struct emeta *m)
{
	struct rq *r = m->arg;
	struct fuse_entry_param e;

	if (m->err == -ENOENT) {
		/* A negative entry the kernel may cache. */
		memset(&e, 0, sizeof(e));
		e.entry_timeout = timeout_of(&r->ff->negative_timeout, m->valid_ns);
		fuse_reply_entry(r->req, &e);
	} else if (m->err) {
		fuse_reply_err(r->req, -m->err);
	} else {
		fill_entry(r->ff, &e, m->ino, &m->st, m->valid_ns);
		/* Not delivered (the request was interrupted): the kernel holds no reference. */
		if (fuse_reply_entry(r->req, &e))
			engine_forget(r->ff->e, m->ino, 1);
	}
	free(r);
}

static void fs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct rq *r;

	count_op(req, FS_OP_LOOKUP);
	if ((r = rq_new(req, lookup_done)))
		engine_lookup(r->ff->e, parent, name, &r->m);
}

static void fs_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	engine_forget(ff_of(req)->e, ino, nlookup);
	fuse_reply_none(req);
}

static void fs_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *f)
{
	for (size_t i = 0; i < count; i++)
		engine_forget(ff_of(req)->e, f[i].ino, f[i].nlookup);
	fuse_reply_none(req);
}

static void getattr_done(struct emeta *m)
{
	struct rq *r = m->arg;
	struct stat a;

	if (m->err) {
		fuse_reply_err(r->req, -m->err);
	} else {
		fill_attr(&a, m->ino, &m->st);
		fuse_reply_attr(r->req, &a, attr_timeout_of(r->ff, &m->st, m->valid_ns));
	}
	free(r);
}

static void fs_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct rq *r;

	count_op(req, FS_OP_GETATTR);
	if (!(r = rq_new(req, getattr_done)))
		return;
	if (wfile_of(fi))
		engine_fgetattr(r->ff->e, wfile_of(fi), &r->m);
	else
		engine_getattr(r->ff->e, ino, &r->m);
}

/* Permissions are the kernel's (default_permissions) or the mount owner's alone. */
static void fs_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
	fuse_reply_err(req, (mask & W_OK) && engine_read_only(ff_of(req)->e) ? EROFS : 0);
}

static void statfs_done(struct emeta *m)
{
	struct rq *r = m->arg;

	fuse_reply_statfs(r->req, &m->vfs);
	free(r);
}

static void fs_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct rq *r;

	count_op(req, FS_OP_STATFS);
	if ((r = rq_new(req, statfs_done)))
		engine_statfs(r->ff->e, &r->m);
}

/*
 * Answering ENOSYS makes the kernel remember that this file system has no
 * xattrs and stop asking: `ls -l` then costs no extra round trips per file.
 */
static void fs_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	fuse_reply_err(req, ENOSYS);
}

static void fs_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	fuse_reply_err(req, ENOSYS);
}

/* ---- directories ---- */

static void opendir_done(struct emeta *m)
{
	struct rq *r = m->arg;

	if (m->err) {
		fuse_reply_err(r->req, -m->err);
	} else {
		r->fi.fh = (uintptr_t)m->dir;
		r->fi.cache_readdir = 0;
		if (fuse_reply_open(r->req, &r->fi))
			engine_closedir(r->ff->e, m->dir);
	}
	free(r);
}

static void fs_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct rq *r;

	count_op(req, FS_OP_OPENDIR);
	if (!(r = rq_new(req, opendir_done)))
		return;
	r->fi = *fi;
	engine_opendir(r->ff->e, ino, &r->m);
}

static void do_readdir(fuse_req_t req, size_t size, off_t off, struct fuse_file_info *fi, bool plus)
{
	struct fusefs *ff = ff_of(req);
	struct edir *d = (struct edir *)(uintptr_t)fi->fh;
	char *buf = malloc(size);
	/* readdirplus: the references this reply hands over, taken back if it
	 * is not delivered. No entry is smaller than one with an empty name. */
	size_t min_ent = fuse_add_direntry_plus(req, NULL, 0, "", NULL, 0);
	uint64_t *refs = plus ? malloc((size / min_ent + 1) * sizeof(*refs)) : NULL;
	size_t used = 0, nrefs = 0;

	if (!buf || (plus && !refs)) {
		free(buf);
		free(refs);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	for (size_t i = (size_t)off; i < edir_count(d); i++) {
		const struct edir_ent *de = edir_get(d, i);
		struct fuse_entry_param e;
		size_t need;

		if (!plus) {
			struct stat a = { .st_mode = de->st.mode, .st_ino = de->st.ino ? de->st.ino : de->ino };
			need = fuse_add_direntry(req, buf + used, size - used, de->name, &a, (off_t)i + 1);
			if (need > size - used)
				break;
			used += need;
			continue;
		}
		/* Size it first: an entry that does not fit must not take a reference. */
		need = fuse_add_direntry_plus(req, NULL, 0, de->name, NULL, 0);
		if (need > size - used)
			break;
		uint64_t ino = engine_dir_ref(ff->e, d, i);
		if (ino) {
			fill_entry(ff, &e, ino, &de->st, edir_valid_ns(d));
			refs[nrefs++] = ino;
		} else {
			/* Named without a reference (ino 0 in the entry): no dentry */
			memset(&e, 0, sizeof(e));
			e.attr.st_mode = de->st.mode;
			e.attr.st_ino = de->st.ino ? de->st.ino : de->ino;
		}
		used += fuse_add_direntry_plus(req, buf + used, size - used, de->name, &e, (off_t)i + 1);
	}
	if (fuse_reply_buf(req, buf, used))
		for (size_t i = 0; i < nrefs; i++)
			engine_forget(ff->e, refs[i], 1);
	free(buf);
	free(refs);
}

static void fs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	count_op(req, FS_OP_READDIR);
	do_readdir(req, size, off, fi, false);
}

static void fs_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			   struct fuse_file_info *fi)
{
	count_op(req, FS_OP_READDIRPLUS);
	do_readdir(req, size, off, fi, true);
}

static void fs_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	engine_closedir(ff_of(req)->e, (struct edir *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

/* ---- files ---- */

static void open_done(struct emeta *m)
{
	struct rq *r = m->arg;
	struct fusefs *ff = r->ff;

	if (m->err) {
		fuse_reply_err(r->req, -m->err);
		free(r);
		return;
	}
	r->fi.fh = (uintptr_t)m->file;
	/* auto_cache: keep the kernel's pages only if the file did not change. */
	r->fi.keep_cache = ff->o.kernel_cache || (ff->o.auto_cache && !m->changed);
	r->fi.noflush = 1;
	/*
	 * Nearly every open is followed by a read of the start: fetch page 0
	 * now, so the source read overlaps the reply and the READ round trip
	 * (a small file costs lookup, open, read, release). Kernel-cached
	 * pages (keep_cache) need no fetch, but the RAM tier may lack them.
	 */
	if (efile_size(m->file) && !r->fi.keep_cache)
		engine_prefetch(m->file, 0, 1);
	if (fuse_reply_open(r->req, &r->fi))
		engine_release(ff->e, m->file);
	free(r);
}

/* Replies to an open or create of a file opened for writing (m->wfile). */
static void open_write_done(struct emeta *m)
{
	struct rq *r = m->arg;
	struct fusefs *ff = r->ff;
	struct fuse_entry_param e;
	int rc;

	if (m->err) {
		fuse_reply_err(r->req, -m->err);
		free(r);
		return;
	}
	r->fi.fh = (uintptr_t)m->wfile | FH_WRITE;
	/* The kernel's pages stay right: every write through this mount passes through them. */
	r->fi.keep_cache = ff->o.kernel_cache;
	r->fi.noflush = 0;     /* close() must wait for the commit */
	if (m->kind == EM_CREATE) {
		fill_entry(ff, &e, m->ino, &m->st, m->valid_ns);
		rc = fuse_reply_create(r->req, &e, &r->fi);
		if (rc)
			engine_forget(ff->e, m->ino, 1);
	} else {
		rc = fuse_reply_open(r->req, &r->fi);
	}
	if (rc)
		engine_release_write(m->wfile);
	free(r);
}

static void fs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct rq *r;

	count_op(req, FS_OP_OPEN);
	if (ufs_writing(fi->flags)) {
		if ((r = rq_new(req, open_write_done))) {
			r->fi = *fi;
			engine_open_write(r->ff->e, ino, fi->flags, &r->m);
		}
		return;
	}
	if (ff_of(req)->o.no_open == TRI_ON) {
		/*
		 * The kernel takes ENOSYS as "opens need no daemon" for the rest
		 * of the mount: no OPEN or RELEASE again (FLUSH stops at its own
		 * ENOSYS, fs_flush), and it keeps the file's pages
		 * (FOPEN_KEEP_CACHE). Reads come with no handle.
		 */
		fuse_reply_err(req, ENOSYS);
		return;
	}
	if (!(r = rq_new(req, open_done)))
		return;
	r->fi = *fi;
	engine_open(r->ff->e, ino, &r->m);
}

static void fs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct ewfile *wf = wfile_of(fi);

	count_op(req, FS_OP_RELEASE);
	if (wf)
		engine_release_write(wf);
	else if (fi->fh)
		engine_release(ff_of(req)->e, (struct efile *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

static void fs_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct rq *r;

	count_op(req, FS_OP_OPEN);
	if (!(r = rq_new(req, open_write_done)))
		return;
	r->fi = *fi;
	engine_create_file(r->ff->e, parent, name, mode, fi->flags, ctx->uid, ctx->gid, &r->m);
}

static void err_done(struct emeta *m)
{
	struct rq *r = m->arg;

	fuse_reply_err(r->req, -m->err);
	free(r);
}

/* FLUSH (close) and FSYNC of a file open for writing: the commit's answer. */
static void sync_fs(fuse_req_t req, struct fuse_file_info *fi, bool fsync, int datasync)
{
	struct ewfile *wf = wfile_of(fi);
	struct rq *r;

	count_op(req, FS_OP_FLUSH);
	if (!wf) {
		fuse_reply_err(req, 0);
		return;
	}
	if (!(r = rq_new(req, err_done)))
		return;
	if (fsync)
		engine_fsync(wf, datasync, &r->m);
	else
		engine_flush(wf, &r->m);
}

static void fs_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	if (ff_of(req)->o.no_open == TRI_ON) {
		/*
		 * A kernel that opens without asking still sends FLUSH at each
		 * close, until FLUSH says ENOSYS once: a small file would cost a
		 * round trip after all. no_open mounts are read-only, so no file
		 * open for writing waits for a commit at close.
		 */
		count_op(req, FS_OP_FLUSH);
		fuse_reply_err(req, ENOSYS);
		return;
	}
	sync_fs(req, fi, false, 0);
}

static void fs_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	sync_fs(req, fi, true, datasync);
}

static void write_done(void *arg, int res)
{
	fuse_req_t req = arg;

	if (res < 0)
		fuse_reply_err(req, -res);
	else
		fuse_reply_write(req, (size_t)res);
}

static void fs_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	struct ewfile *wf = wfile_of(fi);

	count_op(req, FS_OP_WRITE);
	if (!wf) {
		/* no_open (read-only mounts): the kernel opened for writing without asking. */
		fuse_reply_err(req, engine_read_only(ff_of(req)->e) ? EROFS : EBADF);
		return;
	}
	/* The engine copies the bytes: the intake reuses the request buffer at once. */
	if (engine_write(wf, (uint64_t)off, buf, size, write_done, req))
		fuse_reply_err(req, ENOMEM);
}

/*
 * writev by default: one copy into the kernel. With `splice`, libfuse
 * vmsplices the pages into a pipe and splices that to /dev/fuse; the pages
 * are never gifted (SPLICE_MOVE), since the cache keeps them.
 */
static void reply_pages(struct fusefs *ff, fuse_req_t req, const struct iovec *iov, unsigned n)
{
	if (!ff->o.splice || n == 0) {
		fuse_reply_iov(req, iov, (int)n);
		return;
	}
	struct fuse_bufvec *bv = alloca(sizeof(*bv) + n * sizeof(bv->buf[0]));
	memset(bv, 0, sizeof(*bv) + n * sizeof(bv->buf[0]));
	bv->count = n;
	for (unsigned i = 0; i < n; i++) {
		bv->buf[i].mem = iov[i].iov_base;
		bv->buf[i].size = iov[i].iov_len;
	}
	fuse_reply_data(req, bv, 0);
}

static void read_done(struct eread *r)
{
	fuse_req_t req = r->arg;

	if (r->err)
		fuse_reply_err(req, -r->err);
	else
		reply_pages(ff_of(req), req, r->iov, r->niov);
	eread_release(r);
}

/* A READ without a handle (no_open) waits for the inode's shared one. */
struct shared_read {
	struct emeta m;
	fuse_req_t req;
	size_t size;
	off_t off;
};

static void shared_read_go(struct emeta *m)
{
	struct shared_read *sr = m->arg;
	struct fusefs *ff = ff_of(sr->req);

	if (m->err)
		fuse_reply_err(sr->req, -m->err);
	else if (engine_read(ff->e, m->file, (uint64_t)sr->off, sr->size, read_done, sr->req))
		fuse_reply_err(sr->req, ENOMEM);
	if (m->file)
		efile_put(m->file);   /* the read holds its own reference */
	free(sr);
}

static void fs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct fusefs *ff = ff_of(req);
	struct shared_read *sr;
	struct efile *f;

	count_op(req, FS_OP_READ);
	if (wfile_of(fi)) {
		if (engine_wread(wfile_of(fi), (uint64_t)off, size, read_done, req))
			fuse_reply_err(req, ENOMEM);
		return;
	}
	if (fi->fh) {
		if (engine_read(ff->e, (struct efile *)(uintptr_t)fi->fh, (uint64_t)off, size, read_done, req))
			fuse_reply_err(req, ENOMEM);
		return;
	}
	/* No handle (no_open): the inode's shared one, without an allocation when it is there. */
	if ((f = engine_shared_get(ff->e, ino))) {
		if (engine_read(ff->e, f, (uint64_t)off, size, read_done, req))
			fuse_reply_err(req, ENOMEM);
		efile_put(f);   /* the read holds its own reference */
		return;
	}
	if (!(sr = malloc(sizeof(*sr)))) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	sr->req = req;
	sr->size = size;
	sr->off = off;
	sr->m.done = shared_read_go;
	sr->m.arg = sr;
	engine_open_shared(ff->e, ino, &sr->m);
}

/* ---- changes ---- */

static void entry_done(struct emeta *m)
{
	struct rq *r = m->arg;
	struct fuse_entry_param e;

	if (m->err) {
		fuse_reply_err(r->req, -m->err);
	} else {
		fill_entry(r->ff, &e, m->ino, &m->st, m->valid_ns);
		if (fuse_reply_entry(r->req, &e))
			engine_forget(r->ff->e, m->ino, 1);
	}
	free(r);
}

static void fs_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct rq *r;

	count_op(req, FS_OP_CHANGE);
	if ((r = rq_new(req, entry_done)))
		engine_mkdir(r->ff->e, parent, name, S_IFDIR | mode, ctx->uid, ctx->gid, &r->m);
}

static void fs_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct rq *r;

	count_op(req, FS_OP_CHANGE);
	if ((r = rq_new(req, entry_done)))
		engine_mknod(r->ff->e, parent, name, mode, rdev, ctx->uid, ctx->gid, &r->m);
}

static void fs_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct rq *r;

	count_op(req, FS_OP_CHANGE);
	if ((r = rq_new(req, entry_done)))
		engine_symlink(r->ff->e, parent, name, link, ctx->uid, ctx->gid, &r->m);
}

/*
 * The new name is a new inode to the kernel, which does not know that the
 * one linked gained a link: have it forget that one's attributes. Only
 * attributes (offset < 0), so no page or inode lock is taken that the
 * LINK in flight might hold.
 */
static void link_done(struct emeta *m)
{
	struct rq *r = m->arg;

	if (!m->err && r->ff->se)
		fuse_lowlevel_notify_inval_inode(r->ff->se, r->ino, -1, 0);
	entry_done(m);
}

static void fs_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	struct rq *r;

	count_op(req, FS_OP_CHANGE);
	if (!(r = rq_new(req, link_done)))
		return;
	r->ino = ino;
	engine_link(r->ff->e, ino, newparent, newname, &r->m);
}

static void fs_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct rq *r;

	count_op(req, FS_OP_CHANGE);
	if ((r = rq_new(req, err_done)))
		engine_unlink(r->ff->e, parent, name, &r->m);
}

static void fs_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct rq *r;

	count_op(req, FS_OP_CHANGE);
	if ((r = rq_new(req, err_done)))
		engine_rmdir(r->ff->e, parent, name, &r->m);
}

static void fs_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		      const char *newname, unsigned int flags)
{
	struct rq *r;

	count_op(req, FS_OP_CHANGE);
	if ((r = rq_new(req, err_done)))
		engine_rename(r->ff->e, parent, name, newparent, newname, flags, &r->m);
}

static uint64_t ts_ns(const struct timespec *ts)
{
	return (uint64_t)ts->tv_sec * 1000000000ULL + (uint64_t)ts->tv_nsec;
}

static void fs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	static const struct { int fuse; unsigned ufs; } bits[] = {
		{ FUSE_SET_ATTR_MODE, UFS_SET_MODE },
		{ FUSE_SET_ATTR_UID, UFS_SET_UID },
		{ FUSE_SET_ATTR_GID, UFS_SET_GID },
		{ FUSE_SET_ATTR_SIZE, UFS_SET_SIZE },
		{ FUSE_SET_ATTR_ATIME, UFS_SET_ATIME },
		{ FUSE_SET_ATTR_MTIME, UFS_SET_MTIME },
		{ FUSE_SET_ATTR_ATIME_NOW, UFS_SET_ATIME_NOW },
		{ FUSE_SET_ATTR_MTIME_NOW, UFS_SET_MTIME_NOW },
	};
	struct ufs_stat to = {
		.mode = attr->st_mode, .uid = attr->st_uid, .gid = attr->st_gid, .size = (uint64_t)attr->st_size,
		.atime_ns = ts_ns(&attr->st_atim), .mtime_ns = ts_ns(&attr->st_mtim),
	};
	unsigned set = 0;
	struct rq *r;

	count_op(req, FS_OP_CHANGE);
	for (unsigned i = 0; i < ARRAY_SIZE(bits); i++)
		if (to_set & bits[i].fuse)
			set |= bits[i].ufs;
	if (!set) {
		/* ctime alone (the kernel's killpriv dance): what the source has is the answer. */
		if ((r = rq_new(req, getattr_done)))
			engine_getattr(r->ff->e, ino, &r->m);
		return;
	}
	if ((r = rq_new(req, getattr_done)))
		engine_setattr(r->ff->e, ino, set, &to, wfile_of(fi), &r->m);
}

static void readlink_done(struct emeta *m)
{
	struct rq *r = m->arg;

	if (m->err)
		fuse_reply_err(r->req, -m->err);
	else
		fuse_reply_readlink(r->req, m->link);
	free(m->link);
	free(r);
}

static void fs_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct rq *r;

	count_op(req, FS_OP_GETATTR);
	if ((r = rq_new(req, readlink_done)))
		engine_readlink(r->ff->e, ino, &r->m);
}

static const struct fuse_lowlevel_ops ll_ops = {
	.init = fs_init,
	.lookup = fs_lookup,
	.forget = fs_forget,
	.forget_multi = fs_forget_multi,
	.getattr = fs_getattr,
	.access = fs_access,
	.statfs = fs_statfs,
	.getxattr = fs_getxattr,
	.listxattr = fs_listxattr,
	.opendir = fs_opendir,
	.readdir = fs_readdir,
	.readdirplus = fs_readdirplus,
	.releasedir = fs_releasedir,
	.open = fs_open,
	.read = fs_read,
	.release = fs_release,
	.flush = fs_flush,
	.fsync = fs_fsync,
	.write = fs_write,
	.create = fs_create,
	.mkdir = fs_mkdir,
	.mknod = fs_mknod,
	.symlink = fs_symlink,
	.link = fs_link,
	.unlink = fs_unlink,
	.rmdir = fs_rmdir,
	.rename = fs_rename,
	.setattr = fs_setattr,
	.readlink = fs_readlink,
};

const struct fuse_lowlevel_ops *fusefs_ops(void)
{
	return &ll_ops;
}

int fusefs_create(struct fusefs **out, struct engine *e, const struct front_opts *o,
		  const char *mnt)
{
	struct fusefs *ff;

	if (posix_memalign((void **)&ff, 64, sizeof(*ff)))
		return -ENOMEM;
	memset(ff, 0, sizeof(*ff));
	ff->e = e;
	ff->o = *o;
	snprintf(ff->mnt, sizeof(ff->mnt), "%s", mnt);
	fusefs_set_ttls(ff, o);
	*out = ff;
	return 0;
}

void fusefs_destroy(struct fusefs *ff)
{
	free(ff);
}

void fusefs_set_session(struct fusefs *ff, struct fuse_session *se)
{
	ff->se = se;
}

void fusefs_set_ttls(struct fusefs *ff, const struct front_opts *o)
{
	atomic_store(&ff->attr_timeout, o->attr_timeout);
	atomic_store(&ff->entry_timeout, o->entry_timeout);
	atomic_store(&ff->negative_timeout, o->negative_timeout);
}
