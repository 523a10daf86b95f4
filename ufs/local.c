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
	dev_t dev;         /* its device */
	char *path;
	bool on_shards;    /* metadata calls run on the calling shard */
	bool network;      /* a network file system (NFS): a commit flushes to the server */
	/*
	 * Read-only mounts show a symlink as what it points to, so a dataset
	 * made of links reads as files (and is cached); writable ones show
	 * links as links, so that cp -a, tar and rsync round-trip them.
	 */
	bool follow;
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

/* dev: the source directory's device, whose inode numbers show as they are. */
static void fill_stat(struct ufs_stat *o, const struct stat *st, dev_t dev)
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
	/* One st_dev for the whole mount: a file system mounted inside the source must not collide. */
	o->ino = st->st_dev == dev ? st->st_ino : st->st_ino ^ mix64(st->st_dev);
	o->rdev = st->st_rdev;
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
	u->dev = st.st_dev;
	u->path = strdup(source);
	{
		struct statfs sfs;
		u->network = fstatfs(u->root, &sfs) < 0 || !local_disk((long)sfs.f_type);
	}
	if (o->local_meta == LOCAL_META_AUTO) {
		u->on_shards = !u->network;
		log_info("local source %s: metadata calls on the %s (%s file system)", source,
			 u->on_shards ? "shards" : "metadata threads", u->on_shards ? "a local" : "a network or unknown");
	} else {
		u->on_shards = o->local_meta == LOCAL_META_SHARDS;
	}
	u->follow = o->read_only;
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
	dev_t dev;
	bool follow, network;
	char *path;
	int rc;
	/* changes: copies of the call's inputs */
	char *path2;
	int oflags, fd;            /* fd: that of `held`, or -1 */
	struct ufs_file *held;     /* the open file of a setattr, fsync or commit: a reference */
	unsigned rflags, set;
	mode_t mode;
	dev_t rdev;
	uid_t uid;
	gid_t gid;
	struct ufs_stat in;        /* setattr: the new values */
	char *link;                /* readlink */
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
		c->link = lj->link;
		lj->link = NULL;
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
	free(lj->path2);
	free(lj->link);
	if (lj->held)
		ufs_file_put(lj->held);
	free(lj);
	c->done(c, rc);
}

/*
 * Runs fn on a metadata thread, or here for a local disk unless it is
 * `slow` (truncate, unlink, rename, O_TRUNC: freeing a large file's blocks
 * takes ext4 hundreds of ms); c->done follows on this shard.
 */
static void submit_job(struct ufs_call *c, void (*fn)(struct pool_job *j), bool slow)
{
	struct local_job *lj = calloc(1, sizeof(*lj));

	if (!lj) {
		c->done(c, -ENOMEM);
		return;
	}
	lj->c = c;
	lj->root = c->u->root;
	lj->dev = c->u->dev;
	lj->follow = c->u->follow;
	lj->network = c->u->network;
	/* Calls on an open file need no path: its name is for messages. */
	lj->path = strdup(c->path ? rel(c->path) : c->file ? c->file->name : ".");
	lj->path2 = c->path2 ? strdup(c->path2) : NULL;
	lj->oflags = c->oflags;
	lj->rflags = c->rflags;
	lj->set = c->set;
	lj->mode = c->mode;
	lj->rdev = c->rdev;
	lj->uid = c->uid;
	lj->gid = c->gid;
	lj->in = c->st;
	/*
	 * A reference, not a copy of the descriptor: a job left behind on a
	 * hung NFS server keeps it open (it is never put), and no close(2) of
	 * a copy runs here, which on NFS would flush the file on the shard.
	 */
	lj->fd = -1;
	if ((lj->held = c->file)) {
		ufs_file_get(lj->held);
		lj->fd = container_of(lj->held, struct local_file, f)->fd;
	}
	/* What a job completed unrun reports. */
	lj->rc = lj->path && (lj->path2 || !c->path2) ? -ECANCELED : -ENOMEM;
	lj->job.run = fn;
	lj->job.done = job_done;
	if (lj->rc == -ENOMEM) {
		job_done(&lj->job);
		return;
	}
	if (c->u->on_shards && !slow) {
		fn(&lj->job);
		job_done(&lj->job);
		return;
	}
	pool_submit(&lj->job);
}

static void submit(struct ufs_call *c, void (*fn)(struct pool_job *j))
{
	submit_job(c, fn, false);
}

static void stat_run(struct pool_job *j)
{
	struct local_job *lj = container_of(j, struct local_job, job);
	struct stat st;

	/* Follow links (read-only mounts) so a dataset made of symlinks reads as files. */
	if ((!lj->follow || fstatat(lj->root, lj->path, &st, 0) < 0) &&
	    fstatat(lj->root, lj->path, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		lj->rc = -errno;
		return;
	}
	fill_stat(&lj->st, &st, lj->dev);
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
	fill_stat(&lj->ents[lj->n].st, st, lj->dev);
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
		if ((!lj->follow || fstatat(dirfd(d), de->d_name, &st, 0) < 0) &&
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

/* Makes lj->file of fd (closed on failure), with the attributes of what was opened. */
static void adopt(struct local_job *lj, int fd, bool direct)
{
	struct local_file *lf = calloc(1, sizeof(*lf));
	struct stat st;

	if (fd < 0)
		lj->rc = -errno;
	else if (!lf)
		lj->rc = -ENOMEM;
	else if (fstat(fd, &st) < 0)
		lj->rc = -errno;
	else if (S_ISDIR(st.st_mode))
		lj->rc = -EISDIR;
	else if (!(lf->f.name = strdup(lj->path)))
		lj->rc = -ENOMEM;
	else
		lj->rc = 0;
	if (lj->rc) {
		if (fd >= 0)
			close(fd);
		free(lf);
		return;
	}
	lf->fd = fd;
	lf->direct = direct;
	lf->f.ops = &ufs_local_ops;
	lf->f.readable = (lj->oflags & O_ACCMODE) != O_WRONLY;
	atomic_init(&lf->f.refs, 1);
	fill_stat(&lj->st, &st, lj->dev);
	lj->file = lf;
}

static void open_run(struct pool_job *j)
{
	struct local_job *lj = container_of(j, struct local_job, job);
	int fd;

	if (ufs_writing(lj->oflags)) {
		/*
		 * Buffered, and without O_APPEND: the kernel places appends
		 * itself and sends their offsets, which must be obeyed.
		 */
		adopt(lj, openat(lj->root, lj->path, (lj->oflags & (O_ACCMODE | O_TRUNC)) | O_CLOEXEC), false);
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
	fd = openat(lj->root, lj->path, O_RDONLY | O_CLOEXEC | O_DIRECT);
	if (fd >= 0 || errno != EINVAL) {
		adopt(lj, fd, fd >= 0);
		return;
	}
	adopt(lj, openat(lj->root, lj->path, O_RDONLY | O_CLOEXEC), false);
}

static void local_open(struct ufs_call *c)
{
	c->fetched = false;
	c->file = NULL;
	submit_job(c, open_run, c->oflags & O_TRUNC);
}

static void local_release(struct ufs_file *f)
{
	struct local_file *lf = container_of(f, struct local_file, f);

	close(lf->fd);
	free(lf->f.name);
	free(lf);
}

static int local_read(struct ufs_read *r)
{
	struct local_file *lf = container_of(r->file, struct local_file, f);

	ufs_fd_read(r, lf->fd, lf->direct);
	return 0;
}

/* ---- changes ---- */

/*
 * What the daemon made belongs to the caller, as if it had made it itself:
 * its uid; its gid unless the directory hands down its own (setgid), as
 * the kernel did when the daemon made it; the mode asked for, not cut by
 * the daemon's umask (the kernel applied the caller's). Through fd, or
 * the path without following a link.
 */
static int give(struct local_job *lj, int fd, bool dir, bool link)
{
	char *slash = strrchr(lj->path, '/');
	mode_t mode = lj->mode & 07777;
	gid_t gid = lj->gid;
	struct stat pst;
	int rc;

	if (slash)
		*slash = '\0';
	rc = fstatat(lj->root, slash ? lj->path : ".", &pst, 0);
	if (slash)
		*slash = '/';
	if (rc == 0 && (pst.st_mode & S_ISGID)) {
		gid = (gid_t)-1;
		if (dir)
			mode |= S_ISGID;
	}
	rc = fd >= 0 ? fchown(fd, lj->uid, gid) : fchownat(lj->root, lj->path, lj->uid, gid, AT_SYMLINK_NOFOLLOW);
	/*
	 * After the chown, which clears set-id bits. Links have no mode of
	 * their own; never through one: the name may have been swapped for a
	 * link since it was made, and the daemon may be root.
	 */
	if (rc == 0 && !link)
		rc = fd >= 0 ? fchmod(fd, mode) : fchmodat(lj->root, lj->path, mode, AT_SYMLINK_NOFOLLOW);
	if (rc < 0) {
		rc = -errno;
		log_warn("%s: giving what was made to uid %u, gid %d: %s", lj->path, (unsigned)lj->uid, (int)gid,
			 strerror(-rc));
	}
	return rc;
}

/* lj->st of what lj->path names now, not following a link. */
static void stat_made(struct local_job *lj, const char *path)
{
	struct stat st;

	if (fstatat(lj->root, path, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		lj->rc = -errno;
		return;
	}
	fill_stat(&lj->st, &st, lj->dev);
	lj->rc = 0;
}

/* After making lj->path by `rc` (0 or -1 with errno): hand it over and stat it, or undo. */
static void made(struct local_job *lj, int rc, bool dir, bool link)
{
	if (rc < 0) {
		lj->rc = -errno;
		return;
	}
	if ((lj->rc = give(lj, -1, dir, link))) {
		unlinkat(lj->root, lj->path, dir ? AT_REMOVEDIR : 0);
		return;
	}
	stat_made(lj, lj->path);
}

static void mkdir_run(struct pool_job *j)
{
	struct local_job *lj = container_of(j, struct local_job, job);

	made(lj, mkdirat(lj->root, lj->path, lj->mode & 07777), true, false);
}

static void mknod_run(struct pool_job *j)
{
	struct local_job *lj = container_of(j, struct local_job, job);

	made(lj, mknodat(lj->root, lj->path, lj->mode, lj->rdev), false, false);
}

static void symlink_run(struct pool_job *j)
{
	struct local_job *lj = container_of(j, struct local_job, job);

	made(lj, symlinkat(lj->path2, lj->root, lj->path), false, true);
}

/* path2: the new name of path. */
static void link_run(struct pool_job *j)
{
	struct local_job *lj = container_of(j, struct local_job, job);

	if (linkat(lj->root, lj->path, lj->root, lj->path2, 0) < 0)
		lj->rc = -errno;
	else
		stat_made(lj, lj->path2);
}

static void create_run(struct pool_job *j)
{
	struct local_job *lj = container_of(j, struct local_job, job);
	int fd = openat(lj->root, lj->path, O_CREAT | O_EXCL | (lj->oflags & O_ACCMODE) | O_CLOEXEC,
			lj->mode & 07777);

	if (fd >= 0) {
		if ((lj->rc = give(lj, fd, false, false))) {
			close(fd);
			unlinkat(lj->root, lj->path, 0);
			return;
		}
		adopt(lj, fd, false);
		if (lj->rc)
			unlinkat(lj->root, lj->path, 0);   /* made, but not to be had: not left behind */
		return;
	}
	/* Made by someone else since the kernel looked: open it as it is. */
	if (errno == EEXIST && !(lj->oflags & O_EXCL)) {
		adopt(lj, openat(lj->root, lj->path, (lj->oflags & (O_ACCMODE | O_TRUNC)) | O_CLOEXEC), false);
		return;
	}
	lj->rc = -errno;
}

static void unlink_run(struct pool_job *j)
{
	struct local_job *lj = container_of(j, struct local_job, job);

	lj->rc = unlinkat(lj->root, lj->path, 0) < 0 ? -errno : 0;
}

static void rmdir_run(struct pool_job *j)
{
	struct local_job *lj = container_of(j, struct local_job, job);

	lj->rc = unlinkat(lj->root, lj->path, AT_REMOVEDIR) < 0 ? -errno : 0;
}

static void rename_run(struct pool_job *j)
{
	struct local_job *lj = container_of(j, struct local_job, job);

	lj->rc = renameat2(lj->root, lj->path, lj->root, lj->path2, lj->rflags) < 0 ? -errno : 0;
}

static struct timespec set_time(unsigned set, unsigned now_bit, unsigned bit, uint64_t ns)
{
	if (set & now_bit)
		return (struct timespec){ .tv_nsec = UTIME_NOW };
	if (set & bit)
		return (struct timespec){ .tv_sec = (time_t)(ns / 1000000000ULL), .tv_nsec = (long)(ns % 1000000000ULL) };
	return (struct timespec){ .tv_nsec = UTIME_OMIT };
}

/* In the order chmod(1) and friends would: owner, mode, size, times. */
static int setattr_steps(struct local_job *lj, int fd)
{
	unsigned set = lj->set;
	uid_t uid = set & UFS_SET_UID ? lj->in.uid : (uid_t)-1;
	gid_t gid = set & UFS_SET_GID ? lj->in.gid : (gid_t)-1;

	if ((set & (UFS_SET_UID | UFS_SET_GID)) &&
	    (fd >= 0 ? fchown(fd, uid, gid) : fchownat(lj->root, lj->path, uid, gid, AT_SYMLINK_NOFOLLOW)) < 0)
		return -errno;
	/* chmod(2) follows links, but the kernel resolved them: a link here is a swapped name. */
	if ((set & UFS_SET_MODE) &&
	    (fd >= 0 ? fchmod(fd, lj->in.mode & 07777) :
		       fchmodat(lj->root, lj->path, lj->in.mode & 07777, AT_SYMLINK_NOFOLLOW)) < 0)
		return -errno;
	if (set & UFS_SET_SIZE) {
		int tfd = fd >= 0 ? fd : openat(lj->root, lj->path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
		int rc = tfd < 0 || ftruncate(tfd, (off_t)lj->in.size) < 0 ? -errno : 0;
		if (tfd >= 0 && tfd != fd)
			close(tfd);
		if (rc)
			return rc;
	}
	if (set & (UFS_SET_ATIME | UFS_SET_MTIME | UFS_SET_ATIME_NOW | UFS_SET_MTIME_NOW)) {
		struct timespec ts[2] = {
			set_time(set, UFS_SET_ATIME_NOW, UFS_SET_ATIME, lj->in.atime_ns),
			set_time(set, UFS_SET_MTIME_NOW, UFS_SET_MTIME, lj->in.mtime_ns),
		};
		if ((fd >= 0 ? futimens(fd, ts) : utimensat(lj->root, lj->path, ts, AT_SYMLINK_NOFOLLOW)) < 0)
			return -errno;
	}
	return 0;
}

static void setattr_run(struct pool_job *j)
{
	struct local_job *lj = container_of(j, struct local_job, job);
	struct stat st;

	if ((lj->rc = setattr_steps(lj, lj->fd)))
		return;
	if (lj->fd >= 0) {
		if (fstat(lj->fd, &st) < 0) {
			lj->rc = -errno;
			return;
		}
		fill_stat(&lj->st, &st, lj->dev);
		return;
	}
	stat_made(lj, lj->path);
}

static void readlink_run(struct pool_job *j)
{
	struct local_job *lj = container_of(j, struct local_job, job);
	char buf[PATH_MAX + 1];   /* a target up to PATH_MAX - 1 bytes, and room to see a longer one */
	ssize_t n = readlinkat(lj->root, lj->path, buf, sizeof(buf));

	if (n < 0) {
		lj->rc = -errno;
		return;
	}
	if ((size_t)n >= PATH_MAX) {
		lj->rc = -ENAMETOOLONG;   /* maybe cut short: not answered half */
		return;
	}
	buf[n] = '\0';
	lj->link = strdup(buf);
	lj->rc = lj->link ? 0 : -ENOMEM;
}

/*
 * At close. On a local disk the written bytes are the file system's once
 * written; on a network one (NFS) they are the server's when the client
 * flushed them, which its own close would do: flush them here, so that
 * close() returns the server's answer.
 */
static void commit_run(struct pool_job *j)
{
	struct local_job *lj = container_of(j, struct local_job, job);
	struct stat st;

	if (lj->network && fsync(lj->fd) < 0) {
		lj->rc = -errno;
		log_warn("closing %s: the server did not take its writes: %s", lj->path, strerror(-lj->rc));
		return;
	}
	if (fstat(lj->fd, &st) < 0) {
		lj->rc = -errno;
		return;
	}
	fill_stat(&lj->st, &st, lj->dev);
	lj->rc = 0;
}

/* Calls that may free a large file's blocks (slow) go to the threads even from a local disk. */
#define LOCAL_CALL(op, fn, slow) static void local_##op(struct ufs_call *c) { submit_job(c, fn, slow); }
LOCAL_CALL(mkdir, mkdir_run, false)
LOCAL_CALL(mknod, mknod_run, false)
LOCAL_CALL(symlink, symlink_run, false)
LOCAL_CALL(link, link_run, false)
LOCAL_CALL(unlink, unlink_run, true)
LOCAL_CALL(rmdir, rmdir_run, false)
LOCAL_CALL(rename, rename_run, true)
LOCAL_CALL(setattr, setattr_run, (c->set & UFS_SET_SIZE) != 0)
LOCAL_CALL(readlink, readlink_run, false)
LOCAL_CALL(commit, commit_run, false)
#undef LOCAL_CALL

static void local_create(struct ufs_call *c)
{
	c->fetched = false;
	c->file = NULL;
	submit_job(c, create_run, c->oflags & O_TRUNC);
}

static int local_write(struct ufs_write *w)
{
	ufs_fd_write(w, container_of(w->file, struct local_file, f)->fd);
	return 0;
}

/* fsync on the calling shard's ring: an NFS server may take its time. */
struct local_sync {
	struct shard_op op;
	struct ufs_call *c;
};

static void local_fsync_done(struct shard_op *op, int res)
{
	struct local_sync *ls = container_of(op, struct local_sync, op);
	struct ufs_call *c = ls->c;

	if (res < 0)
		log_warn("fsync of %s: %s", c->file->name, strerror(-res));
	free(ls);
	c->ttl_ns = 0;
	c->asked = true;
	c->done(c, res < 0 ? res : 0);
}

static void local_fsync(struct ufs_call *c)
{
	struct local_sync *ls = calloc(1, sizeof(*ls));
	struct local_file *lf = container_of(c->file, struct local_file, f);

	if (!ls) {
		c->done(c, -ENOMEM);
		return;
	}
	ls->c = c;
	ls->op.done = local_fsync_done;
	io_uring_prep_fsync(shard_sqe(&ls->op), lf->fd, c->datasync ? IORING_FSYNC_DATASYNC : 0);
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
	.mkdir = local_mkdir,
	.mknod = local_mknod,
	.create = local_create,
	.symlink = local_symlink,
	.link = local_link,
	.unlink = local_unlink,
	.rmdir = local_rmdir,
	.rename = local_rename,
	.setattr = local_setattr,
	.readlink = local_readlink,
	.write = local_write,
	.fsync = local_fsync,
	.commit = local_commit,
};

