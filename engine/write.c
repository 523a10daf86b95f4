/*
 * Changes: namespace calls (mkdir, unlink, rename, setattr, ...) and files
 * open for writing. Each change is one source call, made on a shard with
 * no lock held; when the source said yes, the namespace takes the change
 * under its lock, so that the next lookup or listing answers from it
 * without asking. A failed change leaves the namespace as it was.
 *
 * Pages: a written file's pages are keyed by its new version (the local
 * driver's id mixes mtime and size; an object store's is its new ETag), so
 * pages of what it held before are never served again. A handle open for
 * writing reads the source directly, never the page tiers: the bytes it
 * wrote a moment ago are not in them. At the last close, a committed
 * file's pages are loaded into the tiers (engine_prefetch).
 *
 * While a file is open for writing, its node answers stats itself (the
 * source may not have the file yet), with the size the writes reached.
 */
#include "config.h"
#include "engine/engine_i.h"
#include "core/log.h"
#include "core/shard.h"
#include "core/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* One change in flight. */
struct change {
	struct ufs_call call;
	struct emeta *m;
	struct node *dir, *newdir;   /* held: where the name is made, removed or moved */
	struct node *node;           /* held: what is changed (setattr, readlink, open, link) */
	char *name, *newname;
	char *path, *path2;
	struct ewfile *wf;           /* referenced: setattr, flush and fsync through a handle */
	struct shard_msg msg;
};

static void ewfile_get(struct ewfile *wf)
{
	atomic_fetch_add_explicit(&wf->refs, 1, memory_order_relaxed);
}

static void ewfile_put(struct ewfile *wf)
{
	struct engine *e = wf->e;
	struct node *n = wf->node;

	if (atomic_fetch_sub_explicit(&wf->refs, 1, memory_order_acq_rel) != 1)
		return;
	ns_lock(e->ns);
	for (struct ewfile **p = &n->wfiles; *p; p = &(*p)->wnext)
		if (*p == wf) {
			*p = wf->wnext;
			break;
		}
	if (!n->wfiles && (uint64_t)atomic_load(&wf->end) > n->st.size)
		n->st.size = atomic_load(&wf->end);   /* what the last writer left, until the source says */
	ns_unhold(e->ns, n);
	ns_trim(e->ns);
	ns_unlock(e->ns);
	ufs_file_put(wf->file);
	atomic_fetch_sub_explicit(&e->open_files, 1, memory_order_relaxed);
	free(wf);
}

uint64_t engine_written_size(const struct node *n)
{
	uint64_t size = n->st.size;

	for (const struct ewfile *wf = n->wfiles; wf; wf = wf->wnext)
		size = MAX(size, (uint64_t)atomic_load_explicit(&wf->end, memory_order_relaxed));
	return size;
}

bool engine_written_ahead(const struct node *n)
{
	for (const struct ewfile *wf = n->wfiles; wf; wf = wf->wnext)
		if (wf->staged)
			return true;
	return false;
}

/* Under the ns lock: n's size is `size` now (a truncate); its writers' ends follow. */
static void truncated(struct node *n, uint64_t size)
{
	for (struct ewfile *wf = n->wfiles; wf; wf = wf->wnext)
		atomic_store(&wf->end, size);
}

/* Runs fn(msg) on wf's owner shard. */
static void on_owner(struct ewfile *wf, struct shard_msg *msg, void (*fn)(struct shard_msg *msg))
{
	shard_run(wf->owner, msg, fn);
}

/*
 * After the last close of a committed file: its pages go into the tiers
 * under the version the source now has, read through the handle (a staged
 * copy, or the local file), as far as the read-ahead budget lets, so that
 * a checkpoint read back right after it is written is a hit. Files over a
 * quarter of the RAM tier are left out: a checkpoint must not push the
 * dataset out of the cache.
 */
static void load_into_tiers(struct engine *e, struct ewfile *wf, const struct ufs_stat *st)
{
	uint64_t ps = e->ra.page_size;
	struct efile *f;

	if (!st->size || st->size > e->cfg.ram_cache / 4 || !wf->file->readable)
		return;
	ufs_file_get(wf->file);
	if (!(f = efile_new(e, wf->file, st))) {
		ufs_file_put(wf->file);
		return;
	}
	engine_prefetch(f, 0, (uint32_t)MIN((st->size + ps - 1) / ps, UINT32_MAX));
	efile_put(f);   /* the page operations hold their own references */
}

/* ---- running a change ---- */

static void finish(struct change *ch, int rc);

static void call_done(struct ufs_call *c, int rc)
{
	finish(container_of(c, struct change, call), rc);
}

static void run_msg(struct shard_msg *msg)
{
	struct change *ch = container_of(msg, struct change, msg);
	struct ufs_call *c = &ch->call;
	/* Calls on an open file go to its driver (a mount table's is a source's). */
	const struct ufs_ops *ops = c->file ? c->file->ops : ch->m->e->ops;
	void (*call)(struct ufs_call *c) = NULL;

	switch (ch->m->kind) {
	case EM_MKDIR:      call = ops->mkdir; break;
	case EM_MKNOD:      call = ops->mknod; break;
	case EM_SYMLINK:    call = ops->symlink; break;
	case EM_LINK:       call = ops->link; break;
	case EM_CREATE:     call = ops->create; break;
	case EM_OPEN_WRITE: call = ops->open; break;
	case EM_UNLINK:     call = ops->unlink; break;
	case EM_RMDIR:      call = ops->rmdir; break;
	case EM_RENAME:     call = ops->rename; break;
	case EM_SETATTR:    call = ops->setattr; break;
	case EM_READLINK:   call = ops->readlink; break;
	case EM_FLUSH:      call = ops->commit; break;
	case EM_FSYNC:      call = ops->fsync; break;
	default:            break;
	}
	/* What the source cannot hold (links in a bucket): EPERM, as link(2) and symlink(2) say. */
	if (call)
		call(c);
	else
		c->done(c, -EPERM);
}

/* Outside the lock: on the handle's owner shard, else this one, else any. */
static void start(struct change *ch)
{
	ch->call.u = ch->m->e->ufs;
	ch->call.done = call_done;
	ch->call.path = ch->path;
	ch->call.path2 = ch->path2;
	if (ch->wf) {
		ch->call.file = ch->wf->file;
		on_owner(ch->wf, &ch->msg, run_msg);
	} else {
		engine_run_any(&ch->msg, run_msg);
	}
}

static void answer_now(struct emeta *m, int err)
{
	m->err = err;
	m->done(m);
}

/* Under the lock: lets go of what ch holds in the namespace. */
static void unhold(struct engine *e, struct change *ch)
{
	struct node *held[] = { ch->dir, ch->newdir, ch->node };

	for (unsigned i = 0; i < ARRAY_SIZE(held); i++)
		if (held[i])
			ns_unhold(e->ns, held[i]);
	ch->dir = ch->newdir = ch->node = NULL;
	ns_trim(e->ns);
}

static void change_free(struct change *ch)
{
	struct engine *e = ch->m->e;

	if (ch->dir || ch->newdir || ch->node) {
		ns_lock(e->ns);
		unhold(e, ch);
		ns_unlock(e->ns);
	}
	if (ch->wf)
		ewfile_put(ch->wf);
	free(ch->name);
	free(ch->newname);
	free(ch->path);
	free(ch->path2);
	free(ch);
}

/* The source path of dir/name, malloc'd; NULL when no name reaches dir (or out of memory). */
static char *child_path(struct ns *ns, const struct node *dir, const char *name)
{
	char *dp = ns_path(ns, dir), *p = NULL;

	if (dp && asprintf(&p, "%s%s%s", dp, *dp ? "/" : "", name) < 0)
		p = NULL;
	free(dp);
	return p;
}

static struct change *change_new(struct engine *e, struct emeta *m, enum emeta_kind kind)
{
	struct change *ch;

	emeta_begin(e, m, kind);
	if (e->meta.read_only)
		return answer_now(m, -EROFS), NULL;
	if (!(ch = calloc(1, sizeof(*ch))))
		return answer_now(m, -ENOMEM), NULL;
	ch->m = m;
	return ch;
}

/*
 * Under no lock: fills ch for a change of parent/name (and of
 * newparent/newname when newname is set), holding the directories; for a
 * rename, ch->call.st gets what moves. Returns 0, or answers m with the
 * error and frees ch.
 */
static int at_names(struct engine *e, struct change *ch, uint64_t parent, const char *name,
		    uint64_t newparent, const char *newname)
{
	struct ns *ns = e->ns;
	struct node *k;
	int err;

	ns_lock(ns);
	ch->dir = ns_by_ino(ns, parent);
	err = dir_usable(ns, ch->dir);
	if (!err && newname) {
		ch->newdir = ns_by_ino(ns, newparent);
		err = dir_usable(ns, ch->newdir);
	}
	if (!err) {
		ch->name = strdup(name);
		ch->path = child_path(ns, ch->dir, name);
		if (newname) {
			ch->newname = strdup(newname);
			ch->path2 = child_path(ns, ch->newdir, newname);
			/* An object store moves a directory key by key. */
			if ((k = ns_child(ns, ch->dir, name)))
				ch->call.st = k->st;
		}
		if (!ch->name || !ch->path || (newname && (!ch->newname || !ch->path2)))
			err = -ENOMEM;
	}
	if (err) {
		ch->dir = ch->newdir = NULL;
	} else {
		ns_hold(ns, ch->dir);
		if (ch->newdir)
			ns_hold(ns, ch->newdir);
	}
	ns_unlock(ns);
	if (err) {
		struct emeta *m = ch->m;
		change_free(ch);
		answer_now(m, err);
	}
	return err;
}

/* Under the lock: ch is a change of node n (held from now on), known by its path. */
static int take_node(struct ns *ns, struct change *ch, struct node *n)
{
	if (!n || (!n->st.mode && !ch->wf))
		return -ENOENT;
	if (!(ch->path = ns_path(ns, n)) && !ch->wf)   /* an open file needs no name */
		return ns_reachable(ns, n) ? -ENOMEM : -ENOENT;
	ch->node = n;
	ns_hold(ns, n);
	/* What the engine knows of it: an object store opens by it. */
	ch->call.st = n->st;
	snprintf(ch->call.etag, sizeof(ch->call.etag), "%s", n->etag ? n->etag : "");
	return 0;
}

/* The same for a change of inode ino, under no lock: 0, or answers m and frees ch. */
static int at_node(struct engine *e, struct change *ch, uint64_t ino)
{
	int err;

	ns_lock(e->ns);
	err = take_node(e->ns, ch, ns_by_ino(e->ns, ino));
	ns_unlock(e->ns);
	if (err) {
		struct emeta *m = ch->m;
		change_free(ch);
		answer_now(m, err);
	}
	return err;
}

/* ---- what a change does to the namespace ---- */

/* Under the lock: n is as the source described it just now, ETag and all. */
static void describe(struct node *n, const struct ufs_call *c, uint64_t now)
{
	node_describe(n, c, now);
	/* Out of memory: no ETag, so an object store's open takes any version. */
	if (ns_set_etag(n, c->etag[0] ? c->etag : NULL))
		ns_set_etag(n, NULL);
}

/* Under the lock: dir/name was made; the kernel gets a reference to it. NULL: out of memory. */
static struct node *made(struct engine *e, struct change *ch, struct node *dir, const char *name, uint64_t now)
{
	struct node *k = ns_child(e->ns, dir, name);
	struct emeta *m = ch->m;

	if (!k && !(k = ns_add(e->ns, dir, name)))
		return NULL;
	ns_set_srcname(k, NULL);
	k->alias = false;
	describe(k, &ch->call, now);
	if (S_ISDIR(k->st.mode)) {
		/* Empty, as far as anyone may know until the listing's TTL. */
		k->list_ns = now;
		k->list_until = add_sat(now, ch->call.ttl_ns);
	}
	ns_settle(e->ns, k);
	ns_ref(e->ns, k, 1);
	m->ino = k->ino;
	m->st = k->st;
	m->valid_ns = valid_for(k, now, false);
	return k;
}

/* Under the lock: a handle open for writing on n (which it holds), its writes run on this shard. */
static struct ewfile *ewfile_new(struct engine *e, struct ufs_file *file, bool staged, struct node *n)
{
	struct ewfile *wf = calloc(1, sizeof(*wf));

	if (!wf)
		return NULL;
	wf->e = e;
	atomic_init(&wf->refs, 1);
	wf->file = file;
	wf->staged = staged;
	wf->node = n;
	wf->owner = shard_id(shard_self());   /* apply() runs on a shard */
	atomic_init(&wf->end, n->st.size);
	ns_hold(e->ns, n);
	wf->wnext = n->wfiles;
	n->wfiles = wf;
	atomic_fetch_add_explicit(&e->open_files, 1, memory_order_relaxed);
	return wf;
}

/* Under the lock: the namespace after the source said yes to ch. */
static int apply(struct engine *e, struct change *ch, uint64_t now)
{
	struct emeta *m = ch->m;
	struct ufs_call *c = &ch->call;
	struct node *k;

	switch (m->kind) {
	case EM_MKDIR:
	case EM_MKNOD:
	case EM_SYMLINK:
		return made(e, ch, ch->dir, ch->name, now) ? 0 : -ENOMEM;
	case EM_LINK:
		/*
		 * A node is one name: the new name gets a node of its own
		 * (showing the source's st_ino, the same), so that either name
		 * works on after the other is gone. The linked one's link count
		 * changed too.
		 */
		describe(ch->node, c, now);
		return made(e, ch, ch->dir, ch->name, now) ? 0 : -ENOMEM;
	case EM_CREATE:
		if (!(k = made(e, ch, ch->dir, ch->name, now)))
			return -ENOMEM;
		if (!(m->wfile = ewfile_new(e, c->file, c->staged, k))) {
			ns_forget(e->ns, k, 1);
			return -ENOMEM;
		}
		/* Made, if empty: an object store has it once it is committed. */
		atomic_store(&m->wfile->dirty, true);
		c->file = NULL;
		return 0;
	case EM_OPEN_WRITE:
		if (c->fetched)
			describe(ch->node, c, now);
		m->ino = ch->node->ino;
		m->st = c->st;
		if (!(m->wfile = ewfile_new(e, c->file, c->staged, ch->node)))
			return -ENOMEM;
		if (c->oflags & O_TRUNC) {
			truncated(ch->node, 0);
			atomic_store(&m->wfile->dirty, true);   /* emptied, even if never written */
		}
		c->file = NULL;
		return 0;
	case EM_UNLINK:
	case EM_RMDIR:
		if ((k = ns_child(e->ns, ch->dir, ch->name))) {
			/* What an fstat of it, still open, answers from now on. */
			k->st.nlink = m->kind == EM_RMDIR || !k->st.nlink ? 0 : k->st.nlink - 1;
			ns_detach(e->ns, k);
		}
		return 0;
	case EM_RENAME:
		/* Whatever the namespace cannot follow, it forgets: the next lookups ask the source. */
		if (ns_rename(e->ns, ch->dir, ch->name, ch->newdir, ch->newname, false)) {
			if ((k = ns_child(e->ns, ch->dir, ch->name)))
				ns_detach(e->ns, k);
			if ((k = ns_child(e->ns, ch->newdir, ch->newname)))
				ns_detach(e->ns, k);
		} else if (c->fetched && (k = ns_child(e->ns, ch->newdir, ch->newname))) {
			/* An object store's copy: another version, under another key. */
			describe(k, c, now);
		}
		return 0;
	case EM_SETATTR:
		describe(ch->node, c, now);
		if (c->set & UFS_SET_SIZE)
			truncated(ch->node, c->st.size);
		/* Changed by name while open for writing: each handle's close commits it. */
		if (c->set & UFS_SET_KEPT)
			for (struct ewfile *wf = ch->node->wfiles; wf; wf = wf->wnext)
				atomic_store(&wf->dirty, true);
		m->ino = ch->node->ino;
		m->st = c->st;
		m->valid_ns = valid_for(ch->node, now, false);
		return 0;
	case EM_FLUSH:
	case EM_FSYNC:
		/* A commit that says what the source holds now (an object store's fsync is one too). */
		if (c->st.mode) {
			describe(ch->wf->node, c, now);
			m->ino = ch->wf->node->ino;
			m->st = c->st;
		}
		return 0;
	case EM_READLINK:
		m->link = c->link;
		c->link = NULL;
		return 0;
	default:
		return 0;
	}
}

static void finish(struct change *ch, int rc)
{
	struct emeta *m = ch->m;
	struct engine *e = m->e;
	bool commit = m->kind == EM_FLUSH || m->kind == EM_FSYNC;

	/* The source did not answer a change: say why once here (commits: the drivers say where the bytes are). */
	if (rc && !commit && ufs_unavailable(rc) && ch->call.err[0])
		log_warn("%s", ch->call.err);
	else if (rc && !commit && ufs_unavailable(rc))
		log_warn("changing %s: %s", ch->path ? ch->path : "a file", strerror(-rc));
	ns_lock(e->ns);
	if (rc == 0)
		rc = apply(e, ch, now_ns());
	unhold(e, ch);
	ns_unlock(e->ns);
	if (commit) {
		/*
		 * A file counts as failed once, however many closes try it
		 * again (the last close retries a failed flush's commit).
		 */
		if (!rc) {
			atomic_fetch_add_explicit(&e->commits, 1, memory_order_relaxed);
			atomic_store(&ch->wf->failing, false);
		} else if (!atomic_exchange(&ch->wf->failing, true)) {
			atomic_fetch_add_explicit(&e->commit_failures, 1, memory_order_relaxed);
		}
		/* Not in the source: the next close or fsync tries again, and cannot say 0 before. */
		if (rc)
			atomic_store(&ch->wf->dirty, true);
	}
	if (commit && !rc && ch->call.st.mode) {
		/* Loaded into the tiers at the last close, when no more writes can come. */
		ch->wf->committed_st = ch->call.st;
		atomic_store_explicit(&ch->wf->committed, true, memory_order_release);
	}
	if (ch->call.file && (m->kind == EM_CREATE || m->kind == EM_OPEN_WRITE))
		ufs_file_put(ch->call.file);   /* opened, but the namespace could not take it */
	free(ch->call.link);
	m->err = rc ? engine_error(rc) : 0;
	change_free(ch);
	m->done(m);
}

/* ---- namespace calls ---- */

static void make(struct engine *e, enum emeta_kind kind, uint64_t parent, const char *name, mode_t mode,
		 dev_t rdev, const char *target, int oflags, uid_t uid, gid_t gid, struct emeta *m)
{
	struct change *ch = change_new(e, m, kind);

	if (!ch || at_names(e, ch, parent, name, 0, NULL))
		return;
	ch->call.mode = mode;
	ch->call.rdev = rdev;
	ch->call.uid = uid;
	ch->call.gid = gid;
	ch->call.oflags = oflags;
	if (target && !(ch->path2 = strdup(target))) {
		change_free(ch);
		answer_now(m, -ENOMEM);
		return;
	}
	start(ch);
}

void engine_mkdir(struct engine *e, uint64_t parent, const char *name, mode_t mode, uid_t uid,
		  gid_t gid, struct emeta *m)
{
	make(e, EM_MKDIR, parent, name, mode, 0, NULL, 0, uid, gid, m);
}

void engine_mknod(struct engine *e, uint64_t parent, const char *name, mode_t mode, dev_t rdev,
		  uid_t uid, gid_t gid, struct emeta *m)
{
	make(e, EM_MKNOD, parent, name, mode, rdev, NULL, 0, uid, gid, m);
}

void engine_symlink(struct engine *e, uint64_t parent, const char *name, const char *target,
		    uid_t uid, gid_t gid, struct emeta *m)
{
	make(e, EM_SYMLINK, parent, name, S_IFLNK | 0777, 0, target, 0, uid, gid, m);
}

void engine_create_file(struct engine *e, uint64_t parent, const char *name, mode_t mode, int oflags,
		   uid_t uid, gid_t gid, struct emeta *m)
{
	make(e, EM_CREATE, parent, name, mode, 0, NULL, oflags, uid, gid, m);
}

void engine_link(struct engine *e, uint64_t ino, uint64_t newparent, const char *newname,
		 struct emeta *m)
{
	struct change *ch = change_new(e, m, EM_LINK);
	char *newpath;

	/* dir/name: the new name; the call's path is the node's, path2 the new one. */
	if (!ch || at_names(e, ch, newparent, newname, 0, NULL))
		return;
	newpath = ch->path;
	ch->path = NULL;
	if (at_node(e, ch, ino)) {
		free(newpath);
		return;
	}
	ch->path2 = newpath;
	start(ch);
}

static void remove_name(struct engine *e, enum emeta_kind kind, uint64_t parent, const char *name,
			struct emeta *m)
{
	struct change *ch = change_new(e, m, kind);

	if (ch && !at_names(e, ch, parent, name, 0, NULL))
		start(ch);
}

void engine_unlink(struct engine *e, uint64_t parent, const char *name, struct emeta *m)
{
	remove_name(e, EM_UNLINK, parent, name, m);
}

void engine_rmdir(struct engine *e, uint64_t parent, const char *name, struct emeta *m)
{
	remove_name(e, EM_RMDIR, parent, name, m);
}

void engine_rename(struct engine *e, uint64_t parent, const char *name, uint64_t newparent,
		   const char *newname, unsigned flags, struct emeta *m)
{
	struct change *ch;

	if (flags & ~(unsigned)RENAME_NOREPLACE) {
		/* RENAME_EXCHANGE, RENAME_WHITEOUT: no source can do them in one step. */
		emeta_begin(e, m, EM_RENAME);
		answer_now(m, -EINVAL);
		return;
	}
	ch = change_new(e, m, EM_RENAME);
	if (!ch || at_names(e, ch, parent, name, newparent, newname))
		return;
	ch->call.rflags = flags;
	start(ch);
}

void engine_setattr(struct engine *e, uint64_t ino, unsigned set, const struct ufs_stat *to,
		    struct ewfile *wf, struct emeta *m)
{
	struct change *ch = change_new(e, m, EM_SETATTR);

	if (!ch)
		return;
	if (wf) {
		ewfile_get(wf);
		ch->wf = wf;
	}
	if (at_node(e, ch, ino))
		return;
	ch->call.set = set;
	/* What the node is, with the new values: an object store puts all of them back. */
	if (set & UFS_SET_MODE)
		ch->call.st.mode = (to->mode & 07777) | (ch->call.st.mode & S_IFMT);
	if (set & UFS_SET_UID)
		ch->call.st.uid = to->uid;
	if (set & UFS_SET_GID)
		ch->call.st.gid = to->gid;
	if (set & UFS_SET_SIZE)
		ch->call.st.size = to->size;
	if (set & UFS_SET_ATIME)
		ch->call.st.atime_ns = to->atime_ns;
	if (set & UFS_SET_MTIME)
		ch->call.st.mtime_ns = to->mtime_ns;
	start(ch);
}

void engine_fgetattr(struct engine *e, struct ewfile *wf, struct emeta *m)
{
	struct node *n = wf->node;

	emeta_begin(e, m, EM_GETATTR);
	ns_lock(e->ns);
	/* A file written in place (local, NFS): the source has its times, as a stat of the node asks. */
	if (!wf->staged) {
		engine_stat_node(e, m, n);
		return;
	}
	/* Staged: the node, held by the handle, answers while the file is open (even unlinked). */
	m->ino = n->ino;
	m->st = n->st;
	m->st.size = engine_written_size(n);
	ns_unlock(e->ns);
	m->valid_ns = 0;   /* the writes go on */
	m->done(m);
}

void engine_readlink(struct engine *e, uint64_t ino, struct emeta *m)
{
	struct change *ch;

	/* Reading a link changes nothing: read-only mounts answer it too. */
	emeta_begin(e, m, EM_READLINK);
	if (!e->ops->readlink)
		return answer_now(m, -EINVAL);
	if (!(ch = calloc(1, sizeof(*ch))))
		return answer_now(m, -ENOMEM);
	ch->m = m;
	if (!at_node(e, ch, ino))
		start(ch);
}

/* ---- files open for writing ---- */

void engine_open_write(struct engine *e, uint64_t ino, int oflags, struct emeta *m)
{
	struct node *n;

	emeta_begin(e, m, EM_OPEN_WRITE);
	if (e->meta.read_only)
		return answer_now(m, -EROFS);
	m->oflags = oflags;
	ns_lock(e->ns);
	if (!(n = ns_by_ino(e->ns, ino))) {
		ns_unlock(e->ns);
		return answer_now(m, -ENOENT);
	}
	/*
	 * Opened with its attributes fresh (a stat first when they are stale):
	 * an object store stages a copy of the object by them.
	 */
	open_node(e, m, n);
}

void engine_open_write_node(struct emeta *m)
{
	struct engine *e = m->e;
	struct change *ch = calloc(1, sizeof(*ch));
	int err = ch ? 0 : -ENOMEM;

	ns_lock(e->ns);
	if (ch) {
		ch->m = m;
		err = take_node(e->ns, ch, m->node);
	}
	ns_unhold(e->ns, m->node);   /* the open's hold: ch has its own */
	ns_trim(e->ns);
	ns_unlock(e->ns);
	m->node = NULL;
	if (err) {
		if (ch)
			change_free(ch);
		return answer_now(m, err);
	}
	ch->call.oflags = m->oflags;
	start(ch);
}

/* One write, run on the handle's owner, with its bytes. */
struct wio {
	struct ufs_write w;
	struct ewfile *wf;
	void (*done)(void *arg, int res);
	void *arg;
	struct shard_msg msg;
	char buf[];
};

static void wio_done(struct ufs_write *w, int res)
{
	struct wio *io = container_of(w, struct wio, w);
	struct ewfile *wf = io->wf;
	uint64_t end = w->off + (uint64_t)MAX(res, 0), cur;

	if (res > 0) {
		atomic_fetch_add_explicit(&wf->e->bytes_written, (uint64_t)res, memory_order_relaxed);
		/* Where the writes reached: a stat answers it (no lock taken per write). */
		cur = atomic_load_explicit(&wf->end, memory_order_relaxed);
		while (end > cur && !atomic_compare_exchange_weak(&wf->end, &cur, end))
			;
	}
	io->done(io->arg, res < 0 ? engine_error(res) : res);
	ewfile_put(wf);
	free(io);
}

static void wio_run(struct shard_msg *msg)
{
	struct wio *io = container_of(msg, struct wio, msg);
	int rc;

	/* Marked before the write lands: a flush racing it must commit it too. */
	atomic_store(&io->wf->dirty, true);
	if ((rc = io->wf->file->ops->write(&io->w)))
		wio_done(&io->w, rc);
}

int engine_write(struct ewfile *wf, uint64_t off, const void *buf, size_t len,
		 void (*done)(void *arg, int res), void *arg)
{
	struct wio *io = malloc(sizeof(*io) + len);

	if (!io)
		return -ENOMEM;
	memset(io, 0, sizeof(*io));
	memcpy(io->buf, buf, len);
	ewfile_get(wf);
	io->wf = wf;
	io->done = done;
	io->arg = arg;
	io->w.file = wf->file;
	io->w.buf = io->buf;
	io->w.off = off;
	io->w.len = len;
	io->w.done = wio_done;
	on_owner(wf, &io->msg, wio_run);
	return 0;
}

/* A read through a handle open for writing: the source's bytes, past the tiers. */
struct wrd {
	struct eread pub;
	struct ufs_read r;
	struct ewfile *wf;
	struct iovec iov;
	struct shard_msg msg;
	char buf[];
};

static void wrd_release(struct eread *r)
{
	struct wrd *rd = container_of(r, struct wrd, pub);

	ewfile_put(rd->wf);
	free(rd);
}

static void wrd_done(struct ufs_read *r, int res)
{
	struct wrd *rd = container_of(r, struct wrd, r);

	rd->pub.err = res < 0 ? engine_error(res) : 0;
	rd->iov.iov_base = rd->buf;
	rd->iov.iov_len = res > 0 ? (size_t)res : 0;
	rd->pub.iov = &rd->iov;
	rd->pub.niov = res > 0;
	rd->pub.done(&rd->pub);
}

static void wrd_run(struct shard_msg *msg)
{
	struct wrd *rd = container_of(msg, struct wrd, msg);
	int rc = rd->wf->file->ops->read(&rd->r);

	if (rc)
		wrd_done(&rd->r, rc);
}

int engine_wread(struct ewfile *wf, uint64_t off, size_t len, void (*done)(struct eread *r), void *arg)
{
	struct wrd *rd = malloc(sizeof(*rd) + len);

	if (!rd)
		return -ENOMEM;
	memset(rd, 0, sizeof(*rd));   /* not the buffer: the read fills it */
	ewfile_get(wf);
	rd->wf = wf;
	rd->pub.done = done;
	rd->pub.arg = arg;
	rd->pub.release = wrd_release;
	rd->r.file = wf->file;
	rd->r.buf = rd->buf;
	rd->r.off = off;
	rd->r.len = len;
	rd->r.done = wrd_done;
	on_owner(wf, &rd->msg, wrd_run);
	return 0;
}

/* A flush or fsync through wf: the source's answer. */
static void sync_file(struct ewfile *wf, enum emeta_kind kind, bool datasync, struct emeta *m)
{
	struct engine *e = wf->e;
	struct change *ch;

	emeta_begin(e, m, kind);
	/*
	 * Nothing changed since the last commit: close() has nothing to wait
	 * for. fsync asks the source anyway (a local file's bytes may not be
	 * on disk yet; an object store answers at once when it has them).
	 */
	if (!atomic_exchange(&wf->dirty, false) && kind == EM_FLUSH)
		return answer_now(m, 0);
	if (!(ch = calloc(1, sizeof(*ch)))) {
		atomic_store(&wf->dirty, true);
		return answer_now(m, -ENOMEM);
	}
	ch->m = m;
	ch->call.datasync = datasync;
	ewfile_get(wf);
	ch->wf = wf;   /* which holds the node */
	start(ch);
}

void engine_flush(struct ewfile *wf, struct emeta *m)
{
	sync_file(wf, EM_FLUSH, false, m);
}

void engine_fsync(struct ewfile *wf, bool datasync, struct emeta *m)
{
	sync_file(wf, EM_FSYNC, datasync, m);
}

/* The last close, when its flush did not commit everything (or a dup'd descriptor wrote after it). */
struct last_commit {
	struct emeta m;
	struct ewfile *wf;
};

/* The last close of a file whose bytes are all committed. */
static void released(struct ewfile *wf)
{
	if (atomic_load_explicit(&wf->committed, memory_order_acquire) && !atomic_load(&wf->dirty))
		load_into_tiers(wf->e, wf, &wf->committed_st);
	ewfile_put(wf);
}

static void last_commit_done(struct emeta *m)
{
	struct last_commit *lc = m->arg;

	if (m->err)
		log_err("closing %s: %s; the file's last writes may not be in the source",
			lc->wf->file->name, strerror(-m->err));
	released(lc->wf);
	free(lc);
}

void engine_release_write(struct ewfile *wf)
{
	struct last_commit *lc;

	if (!atomic_load(&wf->dirty)) {
		released(wf);
		return;
	}
	if (!(lc = calloc(1, sizeof(*lc)))) {
		log_err("closing %s: out of memory; the file's last writes may not be in the source",
			wf->file->name);
		ewfile_put(wf);
		return;
	}
	lc->wf = wf;
	lc->m.done = last_commit_done;
	lc->m.arg = lc;
	engine_flush(wf, &lc->m);
}
