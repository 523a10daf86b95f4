/* Local directory (or NFS mount) driver: metadata by *at() calls relative to
 * the source root on the metadata threads, data by io_uring reads on the
 * calling shard. */
#include "config.h"
#include "ufs/ufs.h"
#include "core/log.h"
#include "core/pool.h"
#include "core/util.h"

#include <dirent.h>
#include <stdbool.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

struct ufs {
	int root;          /* O_PATH descriptor of the source directory */
	char *path;
	bool on_shards;    /* metadata calls run on the calling shard */
};

struct local_file {
	struct ufs_file f;
	int fd;
	bool direct;       /* O_DIRECT: a short read means end of file */
};

static const char *rel(const char *path)
{
	return *path ? path : ".";
}

static uint64_t ts_ns(const struct timespec *ts)
{
	return (uint64_t)ts->tv_sec * 1000000000ULL + (uint64_t)ts->tv_nsec;
}

static void fill_stat(struct ufs_stat *o, const struct stat *st)
{
	o->size = (uint64_t)st->st_size;
	o->mtime_ns = ts_ns(&st->st_mtim);
	o->ctime_ns = ts_ns(&st->st_ctim);
	o->atime_ns = ts_ns(&st->st_atim);
	o->mode = st->st_mode;
	o->uid = st->st_uid;
	o->gid = st->st_gid;
	o->nlink = (uint32_t)st->st_nlink;
	o->version = mix64(o->mtime_ns ^ mix64((uint64_t)st->st_size) ^ mix64(st->st_ino + 1));
	/* The same inode under any name: a rename keeps its cached pages. */
	o->id = mix64(o->version ^ mix64((uint64_t)st->st_dev + 0x9e3779b97f4a7c15ULL));
}

/*
 * File systems whose calls the kernel answers from local storage: their
 * metadata runs on the shards. A thread hop per call cost 20% on a
 * re-read of 2000 small files with the dentries dropped (perf/meta.sh);
 * a local disk's stat does not hang. Anything else (NFS, SMB, FUSE,
 * Lustre, Ceph, GPFS, and types we do not know) goes to the threads.
 */
static bool local_disk(long type)
{
	static const long types[] = {
		0xEF53,             /* ext2, ext3, ext4 */
		0x58465342,         /* xfs */
		0x9123683E,         /* btrfs */
		0x01021994,         /* tmpfs */
		0x858458F6,         /* ramfs */
		0x2FC12FC1,         /* zfs */
		0xF2F52010,         /* f2fs */
		0x794C7630,         /* overlayfs */
		0x73717368,         /* squashfs */
		0x3153464A,         /* jfs */
		0x52654973,         /* reiserfs */
		0x4D44,             /* vfat */
		0x2011BAB0,         /* exfat */
		0x5346544E,         /* ntfs */
	};

	for (unsigned i = 0; i < ARRAY_SIZE(types); i++)
		if (type == types[i])
			return true;
	return false;
}

static int local_init(struct ufs **out, const char *source, const struct source_opts *o,
		      char *err, size_t errlen)
{
	struct ufs *u;
	struct stat st;

	if (!strncmp(source, "file://", 7))
		source += 7;
	u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	u->root = open(source, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (u->root < 0) {
		int rc = -errno;
		snprintf(err, errlen, "cannot read source %s: %s; check that it exists and is a readable directory",
			 source, strerror(-rc));
		free(u);
		return rc;
	}
	/* O_PATH opens need no read permission; check it now, not per file. */
	if (fstat(u->root, &st) < 0 || faccessat(u->root, ".", R_OK | X_OK, AT_EACCESS) < 0) {
		int rc = -errno;
		snprintf(err, errlen, "cannot read source %s: %s; check that it exists and is a readable directory",
			 source, strerror(-rc));
		close(u->root);
		free(u);
		return rc;
	}
	u->path = strdup(source);
	if (o->local_meta == LOCAL_META_AUTO) {
		struct statfs sfs;
		u->on_shards = fstatfs(u->root, &sfs) == 0 && local_disk((long)sfs.f_type);
		log_info("local source %s: metadata calls on the %s (%s file system)", source,
			 u->on_shards ? "shards" : "metadata threads", u->on_shards ? "a local" : "a network or unknown");
	} else {
		u->on_shards = o->local_meta == LOCAL_META_SHARDS;
	}
	*out = u;
	return 0;
}

static void local_fini(struct ufs *u)
{
	/* A metadata thread left stuck at shutdown may still use the root. */
	if (pool_abandoned())
		return;
	close(u->root);
	free(u->path);
	free(u);
}

/*
 * Metadata runs on the metadata threads (core/pool.h): a local disk answers
 * from the kernel's caches in microseconds, but an NFS server may hang a
 * stat for minutes, and that must not stall a shard's cached reads. The
 * result goes back to the calling shard, where done() runs.
 */
/*
 * What a metadata thread works on: its own copies only. A thread stuck on
 * a hung NFS server may come back after shutdown gave up on it, when the
 * call and the engine are gone; the job (and the root descriptor, which
 * local_fini then keeps) are all it touches.
 */
struct local_job {
	struct pool_job job;
	struct ufs_call *c;        /* touched on the shard only */
	int root;
	char *path;
	int rc;
	struct ufs_stat st;        /* stat, open */
	struct statvfs vfs;        /* statfs */
	struct local_file *file;   /* open */
	struct local_ent *ents;    /* list */
	size_t n, cap;
};

struct local_ent {
	char *name;
	struct ufs_stat st;
};

static void job_done(struct pool_job *j)
{
	struct local_job *lj = container_of(j, struct local_job, job);
	struct ufs_call *c = lj->c;
	int rc = lj->rc;

	c->ttl_ns = 0;   /* the kernel's own caches are the only ones */
	c->asked = lj->rc != -ECANCELED;
	if (!rc) {
		c->st = lj->st;
		c->vfs = lj->vfs;
		c->etag[0] = '\0';
		if (lj->file) {
			c->file = &lj->file->f;
			c->fetched = true;
		}
	}
	for (size_t i = 0; i < lj->n; i++) {
		struct ufs_dirent d = { .name = lj->ents[i].name, .etag = "", .st = lj->ents[i].st };
		if (!rc)
			rc = c->entry(c, &d);
		free(lj->ents[i].name);
	}
	free(lj->ents);
	free(lj->path);
	free(lj);
	c->done(c, rc);
}

/* Runs fn on a metadata thread, or here for a local disk; c->done follows on this shard. */
static void submit(struct ufs_call *c, void (*fn)(struct pool_job *j))
{
	struct local_job *lj = calloc(1, sizeof(*lj));

	if (!lj) {
		c->done(c, -ENOMEM);
		return;
	}
	lj->c = c;
	lj->root = c->u->root;
	lj->path = strdup(rel(c->path));
	lj->rc = lj->path ? -ECANCELED : -ENOMEM;   /* what a job completed unrun reports */
	lj->job.run = fn;
	lj->job.done = job_done;
	if (!lj->path) {
		job_done(&lj->job);
		return;
	}
	if (c->u->on_shards) {
		fn(&lj->job);
		job_done(&lj->job);
		return;
	}
	pool_submit(&lj->job);
}


static void stat_run(struct pool_job *j)
{
	struct local_job *lj = container_of(j, struct local_job, job);
	struct stat st;

	/* Follow links so a dataset made of symlinks reads as files. */
	if (fstatat(lj->root, lj->path, &st, 0) < 0 &&
	    fstatat(lj->root, lj->path, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		lj->rc = -errno;
		return;
	}
	fill_stat(&lj->st, &st);
	lj->rc = 0;
}

static void local_stat(struct ufs_call *c)
{
	submit(c, stat_run);
}

static int add_ent(struct local_job *lj, const char *name, const struct stat *st)
{
	if (lj->n == lj->cap) {
		size_t cap = lj->cap ? lj->cap * 2 : 64;
		struct local_ent *n = realloc(lj->ents, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		lj->ents = n;
		lj->cap = cap;
	}
	lj->ents[lj->n].name = strdup(name);
	if (!lj->ents[lj->n].name)
		return -ENOMEM;
	fill_stat(&lj->ents[lj->n].st, st);
	lj->n++;
	return 0;
}

static void list_run(struct pool_job *j)
{
	struct local_job *lj = container_of(j, struct local_job, job);
	int fd = openat(lj->root, lj->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct dirent *de;
	DIR *d;
	int rc = 0;

	if (fd < 0) {
		lj->rc = -errno;
		return;
	}
	d = fdopendir(fd);
	if (!d) {
		lj->rc = -errno;
		close(fd);
		return;
	}
	while (!rc && (errno = 0, de = readdir(d))) {
		struct stat st;
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (fstatat(dirfd(d), de->d_name, &st, 0) < 0 &&
		    fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;   /* vanished while listing */
		rc = add_ent(lj, de->d_name, &st);
	}
	if (!rc && errno)
		rc = -errno;
	closedir(d);
	lj->rc = rc;
}

static void local_list(struct ufs_call *c)
{
	submit(c, list_run);
}

static void open_run(struct pool_job *j)
{
	struct local_job *lj = container_of(j, struct local_job, job);
	struct local_file *lf = calloc(1, sizeof(*lf));
	struct stat st;

	if (!lf) {
		lj->rc = -ENOMEM;
		return;
	}
	/*
	 * O_DIRECT: the page is read straight into the cache slot (slots are
	 * page aligned), one copy fewer than a buffered read, and the source
	 * does not fill the kernel page cache a second time. Buffered cold
	 * reads also fell to io_uring's worker threads here: 2-20x the CPU
	 * for the same bytes. Filesystems that refuse O_DIRECT (tmpfs) get
	 * buffered reads.
	 */
	lf->fd = openat(lj->root, lj->path, O_RDONLY | O_CLOEXEC | O_DIRECT);
	lf->direct = lf->fd >= 0;
	if (lf->fd < 0 && errno == EINVAL)
		lf->fd = openat(lj->root, lj->path, O_RDONLY | O_CLOEXEC);
	/* The attributes of what was opened, not of what the name held a moment before. */
	if (lf->fd < 0 || fstat(lf->fd, &st) < 0)
		lj->rc = -errno;
	else if (S_ISDIR(st.st_mode))
		lj->rc = -EISDIR;
	else if (!(lf->f.name = strdup(lj->path)))
		lj->rc = -ENOMEM;
	else
		lj->rc = 0;
	if (lj->rc) {
		if (lf->fd >= 0)
			close(lf->fd);
		free(lf);
		return;
	}
	lf->f.ops = &ufs_local_ops;
	atomic_init(&lf->f.refs, 1);
	fill_stat(&lj->st, &st);
	lj->file = lf;
}

static void local_open(struct ufs_call *c)
{
	c->fetched = false;
	c->file = NULL;
	submit(c, open_run);
}

static void local_release(struct ufs_file *f)
{
	struct local_file *lf = container_of(f, struct local_file, f);

	close(lf->fd);
	free(lf->f.name);
	free(lf);
}

static void local_read_submit(struct ufs_read *r);

static void local_read_done(struct shard_op *op, int res)
{
	struct ufs_read *r = container_of(op, struct ufs_read, op);
	struct local_file *lf = container_of(r->file, struct local_file, f);

	if (res == -EAGAIN || res == -EINTR) {
		local_read_submit(r);
		return;
	}
	if (res < 0) {
		log_warn("reading %s at offset %llu: %s", lf->f.name, (unsigned long long)(r->off + r->got),
			 strerror(-res));
		r->done(r, res);
		return;
	}
	r->got += (size_t)res;
	/* Buffered reads may come back short mid-file; O_DIRECT ones only at EOF. */
	if (res > 0 && r->got < r->len && !lf->direct) {
		local_read_submit(r);
		return;
	}
	r->done(r, (int)r->got);
}

static void local_read_submit(struct ufs_read *r)
{
	struct local_file *lf = container_of(r->file, struct local_file, f);

	r->op.done = local_read_done;
	io_uring_prep_read(shard_sqe(&r->op), lf->fd, r->buf + r->got,
			   (unsigned)(r->len - r->got), r->off + r->got);
}

static int local_read(struct ufs_read *r)
{
	r->got = 0;
	local_read_submit(r);
	return 0;
}

static void statfs_run(struct pool_job *j)
{
	struct local_job *lj = container_of(j, struct local_job, job);

	lj->rc = fstatvfs(lj->root, &lj->vfs) < 0 ? -errno : 0;
}

static void local_statfs(struct ufs_call *c)
{
	submit(c, statfs_run);
}

const struct ufs_ops ufs_local_ops = {
	.name = "local",
	.init = local_init,
	.fini = local_fini,
	.stat = local_stat,
	.list = local_list,
	.open = local_open,
	.release = local_release,
	.read = local_read,
	.statfs = local_statfs,
};

