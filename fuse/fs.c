#include "config.h"
#include "fuse/fs.h"
#include "fuse/fs_i.h"
#include "fuse/inode_i.h"
#include "iostore/pgcache.h"
#include "iostore/pgstore.h"
#include "iostore/readahead.h"
#include "core/log.h"
#include "core/shard.h"
#include "core/util.h"

#include <errno.h>
#include <fcntl.h>
#include <alloca.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* An open file. Handles are shared by the kernel's threads: fields are set
 * at open and read-only afterwards, except `ra` (its own lock). */
struct fhandle {
	struct ufs_file *file;
	uint64_t fid, size, version;
	struct ra_state ra;
};

/* A directory listing snapshot taken at opendir. */
struct dirent_snap {
	char *name;
	struct ufs_stat st;
};

struct dhandle {
	struct dirent_snap *ents;
	size_t n, cap;
	char *path;
};

static struct cachefs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static void count_op(fuse_req_t req, enum fs_op op)
{
	atomic_fetch_add_explicit(&fs_of(req)->requests[op], 1, memory_order_relaxed);
}

static void fill_attr(struct stat *a, uint64_t ino, const struct ufs_stat *st)
{
	memset(a, 0, sizeof(*a));
	a->st_ino = ino;
	/* Modes as the source has them; writes answer EROFS regardless. */
	a->st_mode = st->mode;
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

static char *join_path(const char *dir, const char *name)
{
	char *p;

	if (asprintf(&p, "%s%s%s", dir, *dir ? "/" : "", name) < 0)
		return NULL;
	return p;
}

static void fill_entry(struct cachefs *fs, struct fuse_entry_param *e, const struct inode *in)
{
	memset(e, 0, sizeof(*e));
	e->ino = in->ino;
	e->generation = 1;
	e->attr_timeout = atomic_load_explicit(&fs->attr_timeout, memory_order_relaxed);
	e->entry_timeout = atomic_load_explicit(&fs->entry_timeout, memory_order_relaxed);
	fill_attr(&e->attr, in->ino, &in->st);
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

static void set_bdi_readahead(struct cachefs *fs)
{
	char dev[64], path[128], val[32];
	int fd, rc;

	rc = mount_devnum(fs->mnt, dev, sizeof(dev));
	if (rc < 0) {
		log_warn("read_ahead: mount %s not found in mountinfo", fs->mnt);
		return;
	}
	snprintf(path, sizeof(path), "/sys/class/bdi/%s/read_ahead_kb", dev);
	snprintf(val, sizeof(val), "%llu", (unsigned long long)(fs->cfg.read_ahead >> 10));
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
	struct cachefs *fs = userdata;
	const struct cachefs_config *c = &fs->cfg;

	conn->want |= FUSE_CAP_ASYNC_READ;
	if (conn->capable & FUSE_CAP_READDIRPLUS)
		conn->want |= FUSE_CAP_READDIRPLUS;
	conn->want &= ~(unsigned)FUSE_CAP_READDIRPLUS_AUTO;
	if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
		conn->want |= FUSE_CAP_PARALLEL_DIROPS;
	/* Requests are small (no writes yet): splice only matters for replies. */
	conn->want &= ~(unsigned)(FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE | FUSE_CAP_SPLICE_READ);
	if (c->splice)
		conn->want |= conn->capable & FUSE_CAP_SPLICE_WRITE;
	conn->max_write = 1 << 20;
	conn->max_read = (unsigned)c->max_read;   /* must echo the mount option */
	conn->max_readahead = (unsigned)MIN(c->read_ahead, UINT_MAX);
	conn->max_background = c->max_background;
	conn->congestion_threshold = c->congestion_threshold;
	/*
	 * The kernel lowers the mount's read-ahead to min(bdi, max_readahead)
	 * when it gets this reply: raise the bdi first, before any read.
	 */
	if (fs->mnt[0] && c->read_ahead)
		set_bdi_readahead(fs);
}

/* ---- metadata ---- */

static void fs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	count_op(req, FS_OP_LOOKUP);
	struct cachefs *fs = fs_of(req);
	struct fuse_entry_param e;
	struct inode pin, in;
	struct ufs_stat st;
	char *path = NULL;
	int rc;

	rc = itable_get(fs->itable, parent, NULL, &pin);
	if (rc)
		goto out;
	path = join_path(pin.path, name);
	free(pin.path);
	if (!path) {
		rc = -ENOMEM;
		goto out;
	}
	rc = fs_src_stat(fs, path, &st);
	if (rc == -ENOENT) {
		memset(&e, 0, sizeof(e));
		e.entry_timeout = atomic_load_explicit(&fs->negative_timeout, memory_order_relaxed);
		fuse_reply_entry(req, &e);
		free(path);
		return;
	}
	if (!rc)
		rc = itable_ref(fs->itable, path, &st, 1, &in);
	if (!rc) {
		fill_entry(fs, &e, &in);
		fuse_reply_entry(req, &e);
	}
out:
	free(path);
	if (rc)
		fuse_reply_err(req, -rc);
}

static void fs_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	itable_forget(fs_of(req)->itable, ino, nlookup);
	fuse_reply_none(req);
}

static void fs_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *f)
{
	for (size_t i = 0; i < count; i++)
		itable_forget(fs_of(req)->itable, f[i].ino, f[i].nlookup);
	fuse_reply_none(req);
}

/* Re-stats inode `ino` from the UFS; *in gets a path the caller frees. */
static int refresh(struct cachefs *fs, fuse_ino_t ino, struct inode *in)
{
	struct ufs_stat st;
	int rc = itable_get(fs->itable, ino, NULL, in);

	if (rc)
		return rc;
	rc = fs_src_stat(fs, in->path, &st);
	if (!rc) {
		free(in->path);
		rc = itable_get(fs->itable, ino, &st, in);
	}
	if (rc) {
		free(in->path);
		in->path = NULL;
	}
	return rc;
}

static void fs_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	count_op(req, FS_OP_GETATTR);
	struct cachefs *fs = fs_of(req);
	struct inode in;
	struct stat a;
	int rc = refresh(fs, ino, &in);

	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	fill_attr(&a, ino, &in.st);
	free(in.path);
	fuse_reply_attr(req, &a, atomic_load_explicit(&fs->attr_timeout, memory_order_relaxed));
}

static void fs_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
	fuse_reply_err(req, (mask & W_OK) ? EROFS : 0);
}

static void fs_statfs(fuse_req_t req, fuse_ino_t ino)
{
	count_op(req, FS_OP_STATFS);
	struct cachefs *fs = fs_of(req);
	struct statvfs st;
	int rc = fs->ops->statfs ? fs->ops->statfs(fs->ufs, &st) : -ENOSYS;

	if (rc) {
		memset(&st, 0, sizeof(st));
		st.f_bsize = st.f_frsize = 4096;
		st.f_namemax = 255;
	}
	fuse_reply_statfs(req, &st);
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

static int snap_add(void *arg, const char *name, const struct ufs_stat *st)
{
	struct dhandle *d = arg;

	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 64;
		struct dirent_snap *n = realloc(d->ents, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		d->ents = n;
		d->cap = cap;
	}
	d->ents[d->n].name = strdup(name);
	if (!d->ents[d->n].name)
		return -ENOMEM;
	d->ents[d->n].st = *st;
	d->n++;
	return 0;
}

static void dhandle_free(struct dhandle *d)
{
	for (size_t i = 0; i < d->n; i++)
		free(d->ents[i].name);
	free(d->ents);
	free(d->path);
	free(d);
}

static void fs_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	count_op(req, FS_OP_OPENDIR);
	struct cachefs *fs = fs_of(req);
	struct dhandle *d = calloc(1, sizeof(*d));
	struct inode in;
	int rc;

	if (!d) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	rc = itable_get(fs->itable, ino, NULL, &in);
	if (!rc) {
		d->path = in.path;
		rc = fs_src_list(fs, d->path, snap_add, d);
	}
	if (rc) {
		dhandle_free(d);
		fuse_reply_err(req, -rc);
		return;
	}
	fi->fh = (uintptr_t)d;
	fi->cache_readdir = 0;
	fuse_reply_open(req, fi);
}

static void do_readdir(fuse_req_t req, size_t size, off_t off, struct fuse_file_info *fi, bool plus)
{
	struct cachefs *fs = fs_of(req);
	struct dhandle *d = (struct dhandle *)(uintptr_t)fi->fh;
	char *buf = malloc(size);
	size_t used = 0;
	int rc = 0;

	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	for (size_t i = (size_t)off; i < d->n; i++) {
		struct dirent_snap *de = &d->ents[i];
		struct fuse_entry_param e;
		struct inode in;
		size_t need;

		if (!plus) {
			struct stat a = { .st_mode = de->st.mode };
			need = fuse_add_direntry(req, buf + used, size - used, de->name, &a, (off_t)i + 1);
			if (need > size - used)
				break;
			used += need;
			continue;
		}
		/* Size it first: an entry that does not fit must not take a lookup. */
		need = fuse_add_direntry_plus(req, NULL, 0, de->name, NULL, 0);
		if (need > size - used)
			break;
		char *path = join_path(d->path, de->name);
		rc = path ? itable_ref(fs->itable, path, &de->st, 1, &in) : -ENOMEM;
		free(path);
		if (rc)
			break;
		fill_entry(fs, &e, &in);
		used += fuse_add_direntry_plus(req, buf + used, size - used, de->name, &e, (off_t)i + 1);
	}
	if (rc && !used)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_buf(req, buf, used);
	free(buf);
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
	dhandle_free((struct dhandle *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

/* ---- files ---- */

static void prefetch_pages(struct cachefs *fs, struct fhandle *fh, uint64_t first, uint32_t n);

static void fs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	count_op(req, FS_OP_OPEN);
	struct cachefs *fs = fs_of(req);
	struct fhandle *fh;
	struct inode in;
	uint64_t old_fid;
	int rc;

	if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
		fuse_reply_err(req, EROFS);
		return;
	}
	rc = itable_get(fs->itable, ino, NULL, &in);
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	old_fid = in.fid;
	free(in.path);
	rc = refresh(fs, ino, &in);
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	fh = calloc(1, sizeof(*fh));
	if (!fh) {
		free(in.path);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	rc = fs_src_open(fs, in.path, &fh->file);
	free(in.path);
	if (rc) {
		free(fh);
		fuse_reply_err(req, -rc);
		return;
	}
	fh->fid = in.fid;
	fh->size = in.st.size;
	fh->version = in.st.version;
	ra_init(&fh->ra);
	fi->fh = (uintptr_t)fh;
	/* auto_cache: keep the kernel's pages only if the file did not change. */
	fi->keep_cache = fs->cfg.kernel_cache || (fs->cfg.auto_cache && old_fid == in.fid);
	fi->noflush = 1;
	/*
	 * Nearly every open is followed by a read of the start: fetch page 0
	 * now, so the source read overlaps the reply and the READ round trip
	 * (a small file costs lookup, open, read, release). Kernel-cached
	 * pages (keep_cache) need no fetch, but the RAM tier may lack them.
	 */
	if (fh->size && !fi->keep_cache)
		prefetch_pages(fs, fh, 0, 1);
	atomic_fetch_add_explicit(&fs->open_files, 1, memory_order_relaxed);
	fuse_reply_open(req, fi);
}

static void fs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	count_op(req, FS_OP_RELEASE);
	struct fhandle *fh = (struct fhandle *)(uintptr_t)fi->fh;

	ufs_file_put(fh->file);
	ra_fini(&fh->ra);
	free(fh);
	atomic_fetch_sub_explicit(&fs_of(req)->open_files, 1, memory_order_relaxed);
	fuse_reply_err(req, 0);
}

/*
 * The most bytes page `index` of fh can hold: a file's last page is short,
 * and the RAM tier reserves no more than that. A file that grew after the
 * open shows its new bytes to the next open.
 */
static uint64_t page_want(const struct cachefs *fs, const struct fhandle *fh, uint64_t index)
{
	uint64_t start = index * fs->ra.page_size;

	return start < fh->size ? MIN(fs->ra.page_size, fh->size - start) : fs->ra.page_size;
}

struct fetch_io {
	struct ufs_read r;
	struct page *pg;
	uint64_t start_ns;
};

/*
 * The fetch callback gets only the UFS file: source read latencies go to
 * the process's one file system (set at cachefs_create).
 */
static struct cachefs *lat_fs;

void fs_count_latency(struct cachefs *fs, enum fs_src_op op, uint64_t start_ns)
{
	static const double bounds[] = FS_LAT_BOUNDS;
	uint64_t ns = now_ns() - start_ns;
	double secs = (double)ns / 1e9;
	unsigned b = 0;

	while (b < FS_LAT_BUCKETS && secs > bounds[b])
		b++;
	atomic_fetch_add_explicit(&fs->lat[op][b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&fs->lat_sum_us[op], ns / 1000, memory_order_relaxed);
}

int fs_src_stat(struct cachefs *fs, const char *path, struct ufs_stat *st)
{
	uint64_t t = now_ns();
	int rc = fs->ops->stat(fs->ufs, path, st);

	fs_count_latency(fs, FS_SRC_STAT, t);
	return rc;
}

int fs_src_list(struct cachefs *fs, const char *path, ufs_list_cb cb, void *arg)
{
	uint64_t t = now_ns();
	int rc = fs->ops->list(fs->ufs, path, cb, arg);

	fs_count_latency(fs, FS_SRC_LIST, t);
	return rc;
}

int fs_src_open(struct cachefs *fs, const char *path, struct ufs_file **out)
{
	uint64_t t = now_ns();
	int rc = fs->ops->open(fs->ufs, path, out);

	fs_count_latency(fs, FS_SRC_OPEN, t);
	return rc;
}

static void fetch_done(struct ufs_read *r, int res)
{
	struct fetch_io *io = container_of(r, struct fetch_io, r);

	/* The driver logged the failure, with what it knows of the cause. */
	if (lat_fs)
		fs_count_latency(lat_fs, FS_SRC_READ, io->start_ns);
	pgcache_fetch_done(io->pg, res);
	ufs_file_put(r->file);
	free(io);
}

int fs_fetch_start(void *ctx, const struct pgkey *key, uint64_t off, void *buf, size_t len,
		       struct page *pg)
{
	struct ufs_file *file = ctx;
	struct fetch_io *io = calloc(1, sizeof(*io));

	if (!io)
		return -ENOMEM;
	ufs_file_get(file);
	io->pg = pg;
	io->r.file = file;
	io->r.buf = buf;
	io->r.off = off;
	io->r.len = len;
	io->r.done = fetch_done;
	io->start_ns = now_ns();
	return file->ops->read(&io->r);
}

/*
 * One READ request. It fans out into a part per page, each sent to the page's
 * owner shard; whichever part completes last replies.
 */
struct rd_part {
	struct shard_msg msg;
	struct pgcache_waiter w;
	struct pgkey key;
	uint64_t want;
	struct rd_req *rd;
	struct page *pg;
	uint32_t off, len;        /* byte range within the page */
	unsigned owner;
};

struct rd_req {
	fuse_req_t req;
	struct cachefs *fs;
	struct pgcache_fetch fetch;
	atomic_uint pending;
	atomic_int err;
	unsigned nparts;
	struct rd_part parts[];
};

/*
 * writev by default: one copy into the kernel. With `splice`, libfuse
 * vmsplices the pages into a pipe and splices that to /dev/fuse; the pages
 * are never gifted (SPLICE_MOVE), since the cache keeps them.
 */
static void reply_pages(struct cachefs *fs, fuse_req_t req, struct iovec *iov, unsigned n)
{
	if (!fs->cfg.splice || n == 0) {
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

static void rd_finish(struct rd_req *rd)
{
	int err = atomic_load(&rd->err);
	struct iovec iov[rd->nparts];
	unsigned n = 0;

	if (err) {
		fuse_reply_err(rd->req, -err);
	} else {
		for (unsigned i = 0; i < rd->nparts; i++) {
			struct rd_part *p = &rd->parts[i];
			size_t have = page_len(p->pg);
			if (have <= p->off)
				break;
			iov[n].iov_base = (char *)page_data(p->pg) + p->off;
			iov[n].iov_len = MIN(p->len, have - p->off);
			n++;
			/* A short page (the file shrank) ends the reply. */
			if (have < p->off + p->len)
				break;
		}
		reply_pages(rd->fs, rd->req, iov, n);
	}
	for (unsigned i = 0; i < rd->nparts; i++)
		if (rd->parts[i].pg)
			pgcache_unpin(rd->parts[i].pg);
	free(rd);
}

static void rd_part_done(struct pgcache_waiter *w, struct page *pg, int err)
{
	struct rd_part *p = container_of(w, struct rd_part, w);
	struct rd_req *rd = p->rd;

	p->pg = pg;
	if (err)
		atomic_store(&rd->err, err);
	if (atomic_fetch_sub_explicit(&rd->pending, 1, memory_order_acq_rel) == 1)
		rd_finish(rd);
}

static void rd_part_run(struct shard_msg *m)
{
	struct rd_part *p = container_of(m, struct rd_part, msg);

	p->w.cb = rd_part_done;
	pgcache_get(p->rd->fs->cache, p->owner, &p->key, p->want, &p->rd->fetch, &p->w);
}

/* Read-ahead of one page: a get whose waiter only lets go. */
struct prefetch {
	struct shard_msg msg;
	struct pgcache_waiter w;
	struct pgcache_fetch fetch;
	struct pgkey key;
	uint64_t want;
	struct cachefs *fs;
	unsigned owner;
};

static void prefetch_done(struct pgcache_waiter *w, struct page *pg, int err)
{
	struct prefetch *pf = container_of(w, struct prefetch, w);

	if (pg)
		pgcache_unpin(pg);
	ra_budget_give(&pf->fs->ra_budget, pf->fs->ra.page_size);
	ufs_file_put(pf->fetch.ctx);
	free(pf);
}

static void prefetch_run(struct shard_msg *m)
{
	struct prefetch *pf = container_of(m, struct prefetch, msg);

	pf->w.cb = prefetch_done;
	pgcache_get(pf->fs->cache, pf->owner, &pf->key, pf->want, &pf->fetch, &pf->w);
}

/* Prefetches pages [first, first + n) of fh, within the read-ahead budget. */
static void prefetch_pages(struct cachefs *fs, struct fhandle *fh, uint64_t first, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		struct prefetch *pf;
		if (!ra_budget_take(&fs->ra_budget, fs->ra.page_size))
			return;    /* over budget: demand reads still go through */
		pf = malloc(sizeof(*pf));
		if (!pf) {
			ra_budget_give(&fs->ra_budget, fs->ra.page_size);
			return;
		}
		pf->fs = fs;
		pf->key.file = fh->fid;
		pf->key.index = first + i;
		pf->want = page_want(fs, fh, first + i);
		pf->owner = pgcache_owner(fs->cache, &pf->key);
		pf->fetch.start = fs_fetch_start;
		pf->fetch.ctx = fh->file;
		pf->fetch.version = fh->version;
		ufs_file_get(fh->file);
		if (shard_self() && shard_id(shard_self()) == pf->owner)
			prefetch_run(&pf->msg);
		else
			shard_send(shard_get(pf->owner), &pf->msg, prefetch_run);
	}
}

static void fs_readahead(struct cachefs *fs, struct fhandle *fh, uint64_t off, size_t size)
{
	uint64_t first;
	uint32_t window, b = 0;
	uint32_t n = ra_on_read(&fh->ra, &fs->ra, off, size, fh->size, &first, &window);

	if (!n)
		return;
	while (b < FS_RA_BUCKETS && window > 1u << b)
		b++;
	atomic_fetch_add_explicit(&fs->ra_windows[b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&fs->ra_window_pages, window, memory_order_relaxed);
	prefetch_pages(fs, fh, first, n);
}

static void fs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	count_op(req, FS_OP_READ);
	struct cachefs *fs = fs_of(req);
	struct fhandle *fh = (struct fhandle *)(uintptr_t)fi->fh;
	uint64_t ps = fs->ra.page_size, uoff = (uint64_t)off, first, last;
	struct shard *self = shard_self();
	struct rd_req *rd;
	unsigned n;

	if (uoff >= fh->size || !size) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	size = MIN(size, fh->size - uoff);
	first = uoff / ps;
	last = (uoff + size - 1) / ps;
	n = (unsigned)(last - first + 1);
	rd = malloc(sizeof(*rd) + n * sizeof(rd->parts[0]));
	if (!rd) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	rd->req = req;
	rd->fs = fs;
	rd->fetch.start = fs_fetch_start;
	rd->fetch.ctx = fh->file;
	rd->fetch.version = fh->version;
	rd->nparts = n;
	/* One reference per part plus one for this dispatch loop: a part served
	 * inline may complete before the loop has sent the others. */
	atomic_init(&rd->pending, n + 1);
	atomic_init(&rd->err, 0);
	for (unsigned i = 0; i < n; i++) {
		struct rd_part *p = &rd->parts[i];
		uint64_t pstart = (first + i) * ps;
		uint64_t a = MAX(uoff, pstart), b = MIN(uoff + size, pstart + ps);
		p->rd = rd;
		p->pg = NULL;
		p->key.file = fh->fid;
		p->key.index = first + i;
		p->want = page_want(fs, fh, first + i);
		p->off = (uint32_t)(a - pstart);
		p->len = (uint32_t)(b - a);
		p->owner = pgcache_owner(fs->cache, &p->key);
	}
	for (unsigned i = 0; i < n; i++) {
		struct rd_part *p = &rd->parts[i];
		/* Intake on a shard: its own pages need no message. */
		if (self && shard_id(self) == p->owner)
			rd_part_run(&p->msg);
		else
			shard_send(shard_get(p->owner), &p->msg, rd_part_run);
	}
	/*
	 * Read-ahead before letting go of the dispatch reference: once the
	 * reply is out, the reader may close the file and a RELEASE on another
	 * shard free fh. The kernel never releases a file with a READ pending.
	 */
	fs_readahead(fs, fh, uoff, size);
	if (atomic_fetch_sub_explicit(&rd->pending, 1, memory_order_acq_rel) == 1)
		rd_finish(rd);
}

/* Everything that would change the source answers EROFS until writes land. */
static void fs_erofs_entry(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	fuse_reply_err(req, EROFS);
}

static void fs_erofs_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	fuse_reply_err(req, EROFS);
}

static void fs_erofs_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
			    struct fuse_file_info *fi)
{
	fuse_reply_err(req, EROFS);
}

static void fs_erofs_name(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, EROFS);
}

static void fs_erofs_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
			    fuse_ino_t newparent, const char *newname, unsigned int flags)
{
	fuse_reply_err(req, EROFS);
}

static void fs_erofs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
			     struct fuse_file_info *fi)
{
	fuse_reply_err(req, EROFS);
}

static void fs_erofs_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, EROFS);
}

static void fs_erofs_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	fuse_reply_err(req, EROFS);
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
	.mkdir = fs_erofs_entry,
	.mknod = fs_erofs_mknod,
	.create = fs_erofs_create,
	.unlink = fs_erofs_name,
	.rmdir = fs_erofs_name,
	.rename = fs_erofs_rename,
	.setattr = fs_erofs_setattr,
	.symlink = fs_erofs_symlink,
	.link = fs_erofs_link,
};

const struct fuse_lowlevel_ops *cachefs_ll_ops(void)
{
	return &ll_ops;
}

int cachefs_create(struct cachefs **out, const struct cachefs_config *cfg,
		   const struct ufs_ops *ops, struct ufs *ufs)
{
	struct cachefs *fs = calloc(1, sizeof(*fs));
	struct ufs_stat root;
	int rc;

	if (!fs)
		return -ENOMEM;
	rc = ops->stat(ufs, "", &root);
	if (rc) {
		free(fs);
		return rc;
	}
	fs->cfg = *cfg;
	fs->started = time(NULL);
	lat_fs = fs;
	cachefs_set_ttls(fs, cfg);
	fs->ops = ops;
	fs->ufs = ufs;
	itable_create(&fs->itable, &root);
	fs->ra.page_size = cfg->page_size;
	fs->ra.min_window = 4;
	fs->ra.max_window = (uint32_t)MAX(cfg->max_readahead / cfg->page_size, 1);
	fs->ra.batch = (uint32_t)MAX(PAGE_STRIPE_BYTES / cfg->page_size, 1);
	fs->ra_budget.limit = cfg->readahead_budget;
	atomic_init(&fs->ra_budget.used, 0);
	*out = fs;
	return 0;
}

int cachefs_open_store(struct cachefs *fs, unsigned nshards, char *err, size_t errlen)
{
	struct pgstore_opts so = {
		.nfiles = fs->cfg.nssd,
		.page_size = fs->cfg.page_size,
		.nparts = nshards,
		.second_touch = fs->cfg.ssd_admit == SSD_ADMIT_SECOND_TOUCH,
	};

	if (!fs->cfg.nssd)
		return 0;
	for (unsigned i = 0; i < fs->cfg.nssd; i++) {
		so.files[i].path = fs->cfg.ssd[i].path;
		so.files[i].size = fs->cfg.ssd[i].size;
	}
	return pgstore_open(&fs->store, &so, err, errlen);
}

int cachefs_start(struct cachefs *fs)
{
	struct pgcache_opts po = {
		.page_size = fs->cfg.page_size,
		.capacity = fs->cfg.ram_cache,
		.nparts = shard_count(),
		.store = fs->store,
	};
	int rc;

	if (fs->store) {
		rc = pgstore_attach(fs->store);
		if (rc)
			return rc;
	}
	rc = pgcache_create(&fs->cache, &po);

	if (rc)
		log_err("page cache of %llu bytes in %u parts: %s",
			(unsigned long long)po.capacity, po.nparts, strerror(-rc));
	return rc;
}

static void ufs_shard_stop(void *arg)
{
	struct cachefs *fs = arg;

	fs->ops->shard_stop(fs->ufs);
}

void cachefs_stop(struct cachefs *fs)
{
	if (fs->ops->shard_stop)
		for (unsigned i = 0; i < shard_count(); i++)
			shard_call(shard_get(i), ufs_shard_stop, fs);
	if (fs->store)
		pgstore_detach(fs->store);
}

void cachefs_set_names(struct cachefs *fs, const char *source, const char *mnt)
{
	snprintf(fs->source, sizeof(fs->source), "%s", source);
	snprintf(fs->mnt, sizeof(fs->mnt), "%s", mnt);
}

void cachefs_set_ttls(struct cachefs *fs, const struct cachefs_config *cfg)
{
	atomic_store(&fs->attr_timeout, cfg->attr_timeout);
	atomic_store(&fs->entry_timeout, cfg->entry_timeout);
	atomic_store(&fs->negative_timeout, cfg->negative_timeout);
}

void cachefs_summary(void *arg, char *buf, size_t len)
{
	struct cachefs *fs = arg;
	struct pgcache_stats t;
	uint64_t looked;

	pgcache_stats_total(fs->cache, &t);
	/* Gets answered without a source read, prefetches included. */
	looked = t.hits + t.joins + t.misses;
	snprintf(buf, len, "%u shards, RAM %llu of %llu MiB, %.1f%% hit ratio, %llu fetches in flight, "
		 "%llu source errors", shard_count(), (unsigned long long)(t.bytes >> 20),
		 (unsigned long long)(fs->cfg.ram_cache >> 20),
		 looked ? 100.0 * (double)(looked - MIN(t.fetches, looked)) / (double)looked : 0.0,
		 (unsigned long long)(t.fetches - t.fetches_done), (unsigned long long)t.fetch_errors);
}

void cachefs_destroy(struct cachefs *fs)
{
	if (!fs)
		return;
	if (fs->cache) {
		/* The shards are stopped: their counters are final. */
		struct pgcache_stats t;
		pgcache_stats_total(fs->cache, &t);
		log_info("page cache: %llu hits, %llu misses, %llu from the SSD, %llu joined a fetch, %llu fetches "
			 "(%llu failed), %llu evictions, %llu uncached; %llu bytes read from the source",
			 (unsigned long long)t.hits, (unsigned long long)t.misses,
			 (unsigned long long)t.store_hits,
			 (unsigned long long)t.joins, (unsigned long long)t.fetches,
			 (unsigned long long)t.fetch_errors, (unsigned long long)t.evictions,
			 (unsigned long long)t.transient, (unsigned long long)t.bytes_fetched);
		pgcache_destroy(fs->cache);
	}
	if (fs->store) {
		struct pgstore_stats t;
		pgstore_stats_total(fs->store, &t);
		log_info("ssd cache: %llu hits, %llu writes (%llu IOs on fixed buffers), %llu not admitted, "
			 "%llu corrupt, %llu IO errors, %llu evictions, %llu log compactions; %llu pages "
			 "(%llu bytes of %llu) held, %llu found at start",
			 (unsigned long long)t.hits, (unsigned long long)t.writes,
			 (unsigned long long)t.fixed_ios,
			 (unsigned long long)t.not_admitted, (unsigned long long)t.corrupt,
			 (unsigned long long)t.io_errors, (unsigned long long)t.evictions,
			 (unsigned long long)t.compactions, (unsigned long long)t.pages,
			 (unsigned long long)t.bytes, (unsigned long long)t.capacity,
			 (unsigned long long)t.recovered);
		pgstore_close(fs->store);
	}
	itable_destroy(fs->itable);
	fs->ops->fini(fs->ufs);
	if (lat_fs == fs)
		lat_fs = NULL;
	free(fs);
}
