/*
 * The mount table: several sources joined into one namespace by a config
 * file's [mount /PATH] sections. A path belongs to the mount with the
 * longest matching mount point; the directories above mount points exist
 * on their own ("/" lists the top-level mount points). A mount point hides
 * a same-named entry of the source it sits in.
 *
 * Files opened for reading are the sub-driver's own, so reads never pass
 * through here; files opened for writing are wrapped (struct tfile), so
 * that calls on them reach their source with its own struct ufs. Versions
 * are mixed with the mount's source, so that pages of two sources never
 * share a key even when paths and versions happen to agree.
 *
 * Changes go to the mount holding the path, when it takes writes (its
 * source can, and its section is not ro; else EROFS). A rename or a hard
 * link between two mounts is EXDEV, as between two file systems (mv then
 * copies); the directories above mount points, and mount points
 * themselves, cannot be made, removed or renamed (EROFS, EBUSY).
 */
#include "config.h"
#include "ufs/ufs.h"
#include "core/log.h"
#include "core/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

struct mnt {
	char *path;                 /* "training-data", "a/b"; "" for the root */
	size_t len;
	const char *source;         /* for messages; owned by cfg's file */
	const struct ufs_ops *ops;
	struct ufs *u;
	uint64_t seed;
	bool read_only;             /* ro in its section, or a source that cannot change */
};

/* Set by ufs_mtab_init, then read-only: any thread reads it without a lock. */
struct ufs {
	struct mnt *m;
	unsigned n;
	struct ufs_stat dir;        /* the directories above mount points */
};

/* The mount holding path, longest mount point first; *rest: the path inside it. */
static struct mnt *resolve(struct ufs *t, const char *path, const char **rest)
{
	struct mnt *best = NULL;

	for (unsigned i = 0; i < t->n; i++) {
		struct mnt *m = &t->m[i];
		if (m->len && (strncmp(path, m->path, m->len) || (path[m->len] && path[m->len] != '/')))
			continue;
		if (!best || m->len > best->len)
			best = m;
	}
	if (best)
		*rest = path + best->len + (best->len && path[best->len] == '/');
	return best;
}

/* Whether path is a directory above some mount point. */
static bool above_mount(struct ufs *t, const char *path)
{
	size_t plen = strlen(path);

	for (unsigned i = 0; i < t->n; i++) {
		const struct mnt *m = &t->m[i];
		if (m->len > plen && (!plen || (!strncmp(m->path, path, plen) && m->path[plen] == '/')))
			return true;
	}
	return false;
}

static void mix(const struct mnt *m, struct ufs_stat *st)
{
	st->version = mix64(st->version ^ m->seed);
	st->id = mix64(st->id ^ m->seed);
	/* One st_dev for the whole mount: two sources' inode numbers must not meet. */
	if (st->ino)
		st->ino = mix64(st->ino ^ m->seed);
}

/* A call forwarded to the mount holding its path. */
struct fwd {
	struct ufs_call sub;
	struct ufs_call *c;
	struct ufs *t;
	struct mnt *m;
	bool above;               /* the path is also a directory above mount points */
	char **hide;              /* list: names of mount points under the listed path */
	unsigned nhide;
};

static void fwd_free(struct fwd *f)
{
	for (unsigned i = 0; i < f->nhide; i++)
		free(f->hide[i]);
	free(f->hide);
	free(f);
}

/* Starts f->sub (path `rest` in mount m) with done; NULL and c->done(-ENOMEM) on failure. */
static struct fwd *fwd_new(struct ufs_call *c, struct mnt *m, const char *rest,
			   void (*done)(struct ufs_call *sub, int rc))
{
	struct fwd *f = calloc(1, sizeof(*f));

	if (!f) {
		c->done(c, -ENOMEM);
		return NULL;
	}
	f->c = c;
	f->t = c->u;
	f->m = m;
	f->sub.u = m ? m->u : NULL;
	f->sub.path = rest;
	f->sub.flags = c->flags;
	f->sub.done = done;
	/* What a change says (open and create: the access mode, the owner). */
	f->sub.oflags = c->oflags;
	f->sub.rflags = c->rflags;
	f->sub.set = c->set;
	f->sub.mode = c->mode;
	f->sub.rdev = c->rdev;
	f->sub.uid = c->uid;
	f->sub.gid = c->gid;
	f->sub.datasync = c->datasync;   /* fsync of a file opened for writing */
	c->source = m ? (unsigned)(m - f->t->m) + 1 : 0;
	return f;
}

static void stat_done(struct ufs_call *sub, int rc)
{
	struct fwd *f = container_of(sub, struct fwd, sub);
	struct ufs_call *c = f->c;

	c->ttl_ns = sub->ttl_ns;
	c->asked = sub->asked;
	ufs_call_err(c, "%s", sub->err);
	if (!rc && (!f->above || S_ISDIR(sub->st.mode))) {
		c->st = sub->st;
		mix(f->m, &c->st);
		snprintf(c->etag, sizeof(c->etag), "%s", sub->etag);
	} else if (f->above && (!rc || rc == -ENOENT)) {
		c->st = f->t->dir;    /* a directory above mount points */
		c->etag[0] = '\0';
		rc = 0;
	}
	fwd_free(f);
	c->done(c, rc);
}

static void mtab_stat(struct ufs_call *c)
{
	struct ufs *t = c->u;
	const char *rest;
	struct mnt *m = resolve(t, c->path, &rest);
	bool above = above_mount(t, c->path);
	struct fwd *f;

	if (!m) {
		c->ttl_ns = UINT64_MAX;
		c->st = t->dir;
		c->done(c, above ? 0 : -ENOENT);
		return;
	}
	if (!(f = fwd_new(c, m, rest, stat_done)))
		return;
	f->above = above;
	m->ops->stat(&f->sub);
}

static int list_entry(struct ufs_call *sub, const struct ufs_dirent *d)
{
	struct fwd *f = container_of(sub, struct fwd, sub);
	struct ufs_dirent e = *d;

	for (unsigned i = 0; i < f->nhide; i++)
		if (!strcmp(f->hide[i], d->name))
			return 0;
	mix(f->m, &e.st);
	f->c->ttl_ns = sub->ttl_ns;
	return f->c->entry(f->c, &e);
}

static void list_done(struct ufs_call *sub, int rc)
{
	struct fwd *f = container_of(sub, struct fwd, sub);
	struct ufs_call *c = f->c;

	ufs_call_err(c, "%s", sub->err);
	c->asked = sub->asked;
	if (rc == -ENOENT && f->nhide)
		rc = 0;
	fwd_free(f);
	c->done(c, rc);
}

/* The next name of every mount point below path, once each, as directories. */
static int list_mount_points(struct fwd *f, const char *path)
{
	struct ufs *t = f->t;
	size_t plen = strlen(path);
	int rc = 0;

	f->hide = calloc(t->n, sizeof(*f->hide));
	if (!f->hide)
		return -ENOMEM;
	f->c->ttl_ns = UINT64_MAX;
	for (unsigned i = 0; i < t->n && !rc; i++) {
		const struct mnt *sub = &t->m[i];
		const char *name;
		size_t nlen;
		bool seen = false;

		if (sub->len <= plen || (plen && (strncmp(sub->path, path, plen) || sub->path[plen] != '/')))
			continue;
		name = sub->path + plen + (plen ? 1 : 0);
		nlen = strcspn(name, "/");
		for (unsigned k = 0; k < f->nhide && !seen; k++)
			seen = strlen(f->hide[k]) == nlen && !strncmp(f->hide[k], name, nlen);
		if (seen)
			continue;
		if (!(f->hide[f->nhide] = strndup(name, nlen)))
			return -ENOMEM;
		struct ufs_dirent d = { .name = f->hide[f->nhide++], .etag = "", .st = t->dir };
		rc = f->c->entry(f->c, &d);
	}
	return rc;
}

static void mtab_list(struct ufs_call *c)
{
	struct ufs *t = c->u;
	const char *rest;
	struct mnt *m = resolve(t, c->path, &rest);
	struct fwd *f = fwd_new(c, m, rest, list_done);
	int rc;

	if (!f)
		return;
	rc = list_mount_points(f, c->path);
	if (!rc && m) {
		f->sub.entry = list_entry;
		m->ops->list(&f->sub);
		return;
	}
	if (!rc && !f->nhide)
		rc = -ENOENT;
	fwd_free(f);
	c->done(c, rc > 0 ? 0 : rc);
}

/* What the forwarded call answered, as the table answers it: attributes mixed with the mount's. */
static void answer(struct fwd *f, int rc)
{
	struct ufs_call *sub = &f->sub, *c = f->c;

	ufs_call_err(c, "%s", sub->err);
	c->asked = sub->asked;
	c->ttl_ns = sub->ttl_ns;
	c->fetched = sub->fetched;
	c->staged = sub->staged;
	/* Calls that describe what they made or changed (not unlink, readlink; rename with fetched). */
	if (!rc && sub->st.mode) {
		c->st = sub->st;
		mix(f->m, &c->st);
		snprintf(c->etag, sizeof(c->etag), "%s", sub->etag);
	}
	fwd_free(f);
	c->done(c, rc);
}

/* ---- files open for writing: the table's, around the source's ---- */

/*
 * Calls on a file the table opened for writing (writes, close, fsync,
 * setattr) go to its source's driver with that source's struct ufs, and
 * their answers are mixed as the table's own are. Files opened for
 * reading are the source's own: reads never pass through here.
 */
struct tfile {
	struct ufs_file f;        /* f.name: the source file's */
	struct ufs_file *in;      /* held */
	struct mnt *m;
};

static const struct ufs_ops tfile_ops;

static struct tfile *tfile_of(struct ufs_file *f)
{
	return container_of(f, struct tfile, f);
}

/* sub->file, wrapped when it was opened for writing; rc, or -ENOMEM (the file is let go). */
static int hand_out(struct fwd *f, int oflags, int rc)
{
	struct ufs_file *in = f->sub.file;
	struct tfile *t;

	f->c->file = in;
	if (rc || !in || !ufs_writing(oflags))
		return rc;
	if (!(t = calloc(1, sizeof(*t)))) {
		ufs_file_put(in);
		f->c->file = NULL;
		return -ENOMEM;
	}
	t->f.ops = &tfile_ops;
	t->f.name = in->name;
	t->f.readable = in->readable;
	atomic_init(&t->f.refs, 1);
	t->in = in;
	t->m = f->m;
	f->c->file = &t->f;
	return 0;
}

static void tfile_release(struct ufs_file *file)
{
	struct tfile *t = tfile_of(file);

	ufs_file_put(t->in);
	free(t);
}

/* Reads and writes are the source's: its file in their place, for the call's length. */
static int tfile_read(struct ufs_read *r)
{
	r->file = tfile_of(r->file)->in;
	return r->file->ops->read(r);
}

static int tfile_write(struct ufs_write *w)
{
	w->file = tfile_of(w->file)->in;
	return w->file->ops->write(w);
}

static void file_call_done(struct ufs_call *sub, int rc)
{
	answer(container_of(sub, struct fwd, sub), rc);
}

/* The forwarded call of c, a call on the table's file: the same call on the source's. */
static struct fwd *file_call(struct ufs_call *c)
{
	struct tfile *t = tfile_of(c->file);
	const char *rest = NULL;
	struct fwd *f;

	if (c->path)
		resolve(c->u, c->path, &rest);
	if (!(f = fwd_new(c, t->m, rest, file_call_done)))
		return NULL;
	f->sub.file = t->in;
	f->sub.st = c->st;   /* setattr: the values to set */
	return f;
}

#define FILE_CALL(name)                                              \
	static void tfile_##name(struct ufs_call *c)                 \
	{                                                            \
		struct fwd *f = file_call(c);                        \
		if (f && f->sub.file->ops->name)                     \
			f->sub.file->ops->name(&f->sub);             \
		else if (f)                                          \
			answer(f, -EPERM);                           \
	}
FILE_CALL(commit)
FILE_CALL(fsync)
FILE_CALL(setattr)
#undef FILE_CALL

static const struct ufs_ops tfile_ops = {
	.name = "mtab",
	.release = tfile_release,
	.read = tfile_read,
	.write = tfile_write,
	.commit = tfile_commit,
	.fsync = tfile_fsync,
	.setattr = tfile_setattr,
};

/* ---- open ---- */

static void open_done(struct ufs_call *sub, int rc)
{
	struct fwd *f = container_of(sub, struct fwd, sub);

	rc = hand_out(f, f->c->oflags, rc);
	/* The attributes the caller passed in come back only when the open read them itself. */
	if (!sub->fetched)
		sub->st.mode = 0;
	answer(f, rc);
}

static void mtab_open(struct ufs_call *c)
{
	struct ufs *t = c->u;
	const char *rest;
	struct mnt *m = resolve(t, c->path, &rest);
	struct fwd *f;

	if (above_mount(t, c->path) || !m) {
		c->done(c, m ? -EISDIR : -ENOENT);
		return;
	}
	if (m->read_only && ufs_writing(c->oflags)) {
		c->done(c, -EROFS);
		return;
	}
	if (!(f = fwd_new(c, m, rest, open_done)))
		return;
	/* The page identity was mixed on the way up; the sub-driver's reads do not use it. */
	f->sub.st = c->st;
	snprintf(f->sub.etag, sizeof(f->sub.etag), "%s", c->etag);
	m->ops->open(&f->sub);
}

/* ---- changes ---- */

static void change_done(struct ufs_call *sub, int rc)
{
	struct fwd *f = container_of(sub, struct fwd, sub);

	f->c->link = sub->link;
	/* create opens the file it made for writing. */
	answer(f, hand_out(f, O_WRONLY, rc));
}

/*
 * The forwarded call of a change of c->path, or NULL when it is answered
 * here: EROFS above the mount points and in a read-only mount, EBUSY on a
 * mount point (but for setattr, on_mount_point), EXDEV between two mounts
 * (two: c->path2 is a path too; symlink's is its target, as it is).
 */
static struct fwd *change(struct ufs_call *c, bool two, bool on_mount_point)
{
	struct ufs *t = c->u;
	const char *rest, *rest2 = NULL;
	struct mnt *m = resolve(t, c->path, &rest), *m2 = NULL;
	struct fwd *f;
	int rc = 0;

	if (two)
		m2 = resolve(t, c->path2, &rest2);
	if ((m && !*rest && m->len && !on_mount_point) || (m2 && !*rest2 && m2->len))
		rc = -EBUSY;   /* a mount point */
	else if (!m || above_mount(t, c->path) || (two && (!m2 || above_mount(t, c->path2))))
		rc = -EROFS;   /* the directories the table itself makes */
	else if (two && m2 != m)
		rc = -EXDEV;
	else if (m->read_only)
		rc = -EROFS;
	if (rc) {
		c->done(c, rc);
		return NULL;
	}
	if (!(f = fwd_new(c, m, rest, change_done)))
		return NULL;
	/* Both point into the caller's paths, which outlive the call. */
	f->sub.path2 = two ? rest2 : c->path2;
	f->sub.st = c->st;   /* setattr: the values to set */
	return f;
}

/* What the source cannot hold (links in a bucket): EPERM, as the engine says it. */
#define CHANGE(name, two, on_mount_point)                            \
	static void mtab_##name(struct ufs_call *c)                  \
	{                                                            \
		struct fwd *f = change(c, two, on_mount_point);      \
		if (f && f->m->ops->name)                            \
			f->m->ops->name(&f->sub);                    \
		else if (f)                                          \
			answer(f, -EPERM);                           \
	}
CHANGE(mkdir, false, false)
CHANGE(mknod, false, false)
CHANGE(create, false, false)
CHANGE(symlink, false, false)
CHANGE(link, true, false)
CHANGE(unlink, false, false)
CHANGE(rmdir, false, false)
CHANGE(rename, true, false)
CHANGE(setattr, false, true)
#undef CHANGE

static void mtab_readlink(struct ufs_call *c)
{
	const char *rest;
	struct mnt *m = resolve(c->u, c->path, &rest);
	struct fwd *f;

	if (!m || above_mount(c->u, c->path) || !m->ops->readlink) {
		c->done(c, -EINVAL);   /* not a symlink */
		return;
	}
	if ((f = fwd_new(c, m, rest, change_done)))
		m->ops->readlink(&f->sub);
}

static void statfs_done(struct ufs_call *sub, int rc)
{
	struct fwd *f = container_of(sub, struct fwd, sub);
	struct ufs_call *c = f->c;

	c->vfs = sub->vfs;
	fwd_free(f);
	c->done(c, rc);
}

static void mtab_statfs(struct ufs_call *c)
{
	const char *rest;
	struct mnt *m = resolve(c->u, "", &rest);
	struct fwd *f;

	if (!m) {
		memset(&c->vfs, 0, sizeof(c->vfs));
		c->vfs.f_bsize = c->vfs.f_frsize = 4096;
		c->vfs.f_namemax = 255;
		c->done(c, 0);
		return;
	}
	if ((f = fwd_new(c, m, rest, statfs_done)))
		m->ops->statfs(&f->sub);
}

static void mtab_start(struct ufs *t)
{
	for (unsigned i = 0; i < t->n; i++)
		if (t->m[i].ops->start)
			t->m[i].ops->start(t->m[i].u);
}

static void mtab_shard_stop(struct ufs *t)
{
	for (unsigned i = 0; i < t->n; i++)
		if (t->m[i].ops->shard_stop)
			t->m[i].ops->shard_stop(t->m[i].u);
}

static void mtab_counters(struct ufs *t, struct http_counters *out)
{
	for (unsigned i = 0; i < t->n; i++)
		if (t->m[i].ops->counters)
			t->m[i].ops->counters(t->m[i].u, out);
}

static void mtab_fini(struct ufs *t)
{
	for (unsigned i = 0; i < t->n; i++) {
		if (t->m[i].u)
			t->m[i].ops->fini(t->m[i].u);
		free(t->m[i].path);
	}
	free(t->m);
	free(t);
}

/*
 * *mc: cfg with section cm's options; a source that cannot change (http,
 * ops->create NULL) is read-only, and its driver opens it so.
 */
static void section_opts(const struct config_mount *cm, const struct ufs_ops *ops, const struct cachefs_config *cfg,
			 struct cachefs_config *mc)
{
	*mc = *cfg;
	config_mount_apply(cm, mc);
	mc->src.read_only |= !ops || !ops->create;
}

bool ufs_mtab_writable(const struct config_file *f, const struct cachefs_config *cfg)
{
	struct cachefs_config *mc = malloc(sizeof(*mc));
	bool writable = !mc;   /* out of memory: the sections say it at init */

	for (unsigned i = 0; mc && i < f->nmounts && !writable; i++) {
		section_opts(&f->mounts[i], ufs_driver_for(f->mounts[i].source), cfg, mc);
		writable = !mc->src.read_only;
	}
	free(mc);
	return writable;
}

int ufs_mtab_init(struct ufs **out, const struct config_file *f, const struct cachefs_config *cfg,
		  char *err, size_t errlen)
{
	struct ufs *t = calloc(1, sizeof(*t));
	struct cachefs_config *mc = malloc(sizeof(*mc));
	uint64_t now = realtime_ns();
	int rc = 0;

	if (!t || !mc || !(t->m = calloc(f->nmounts, sizeof(*t->m)))) {
		free(t);
		free(mc);
		return -ENOMEM;
	}
	t->dir = (struct ufs_stat){ .mode = S_IFDIR | 0555, .nlink = 2, .uid = getuid(), .gid = getgid(),
				    .mtime_ns = now, .ctime_ns = now, .atime_ns = now, .version = 1 };
	for (unsigned i = 0; i < f->nmounts && !rc; i++) {
		const struct config_mount *cm = &f->mounts[i];
		struct mnt *m = &t->m[t->n];
		char why[512] = "";

		m->path = strdup(cm->path + 1);
		if (!m->path) {
			rc = -ENOMEM;
			break;
		}
		m->len = strlen(m->path);
		m->source = cm->source;
		m->seed = XXH3_64bits(cm->source, strlen(cm->source));
		m->ops = ufs_driver_for(cm->source);
		t->n++;
		if (!m->ops) {
			snprintf(err, errlen, "[mount %s] source %s: no driver for this scheme (this build reads "
				 UFS_SCHEMES ")", cm->path, cm->source);
			rc = -EINVAL;
			break;
		}
		section_opts(cm, m->ops, cfg, mc);
		m->read_only = mc->src.read_only;
		rc = m->ops->init(&m->u, cm->source, &mc->src, why, sizeof(why));
		if (rc) {
			m->u = NULL;
			snprintf(err, errlen, "[mount %s] %s", cm->path, why[0] ? why : strerror(-rc));
		} else {
			log_info("mount %s: %s", cm->path, cm->source);
		}
	}
	free(mc);
	if (rc) {
		mtab_fini(t);
		return rc;
	}
	*out = t;
	return 0;
}

const struct ufs_ops ufs_mtab_ops = {
	.name = "mtab",
	.fini = mtab_fini,
	.stat = mtab_stat,
	.list = mtab_list,
	.open = mtab_open,   /* files are the sub-driver's: no .release, .read, .write, .commit */
	.statfs = mtab_statfs,
	.mkdir = mtab_mkdir,
	.mknod = mtab_mknod,
	.create = mtab_create,
	.symlink = mtab_symlink,
	.link = mtab_link,
	.unlink = mtab_unlink,
	.rmdir = mtab_rmdir,
	.rename = mtab_rename,
	.setattr = mtab_setattr,
	.readlink = mtab_readlink,
	.start = mtab_start,
	.shard_stop = mtab_shard_stop,
	.counters = mtab_counters,
};
