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
 * wrote a moment ago are not in them.
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

	if (atomic_fetch_sub_explicit(&wf->refs, 1, memory_order_acq_rel) != 1)
		return;
	ns_lock(e->ns);
	wf->node->writers--;
	ns_unhold(e->ns, wf->node);
	ns_trim(e->ns);
	ns_unlock(e->ns);
	ufs_file_put(wf->file);
	atomic_fetch_sub_explicit(&e->open_files, 1, memory_order_relaxed);
	free(wf);
}

/* Runs fn(msg) on wf's owner shard: at once when this is it, else by message. */
static void on_owner(struct ewfile *wf, struct shard_msg *msg, void (*fn)(struct shard_msg *msg))
{
	struct shard *self = shard_self();

	if (self && shard_id(self) == wf->owner)
		fn(msg);
	else
		shard_send(shard_get(wf->owner), msg, fn);
}

/* ---- written bytes into the page tiers ---- */

/* Pages of a file loaded at once: enough to keep a source busy, few enough to leave room. */
#define WARM_DEPTH 8

/*
 * After a commit: the file's pages go into the tiers under the version it
 * now has, read from the handle (a staged copy, or the local file), so that
 * a checkpoint read back right after it is written is a hit. Files over a
 * quarter of the RAM tier are left out: a checkpoint must not push the
 * dataset out of the cache.
 */
struct warm {
	struct efile *f;
	atomic_ulong next;        /* the next page to load; completions on any shard take it */
	uint64_t end;
	atomic_uint in_flight;
	struct page_op ops[WARM_DEPTH];
};

static void warm_page(struct warm *w, struct page_op *op, uint64_t index);

static void warm_done(struct page_op *op)
{
	struct warm *w = op->arg;
	uint64_t i;

	page_op_release(op);
	if (op->res >= 0 && (i = atomic_fetch_add(&w->next, 1)) < w->end) {
		warm_page(w, op, i);
		return;
	}
	/* The last one out frees the loader. */
	if (atomic_fetch_sub(&w->in_flight, 1) == 1) {
		efile_put(w->f);
		free(w);
	}
}

static void warm_page(struct warm *w, struct page_op *op, uint64_t index)
{
	page_op_init(op, w->f->e, PGOP_LOAD, w->f, index);
	op->done = warm_done;
	op->arg = w;
	page_op_submit(op);
}

static void warm_tiers(struct engine *e, struct ewfile *wf, const struct ufs_stat *st)
{
	uint64_t ps = e->ra.page_size, pages = (st->size + ps - 1) / ps;
	struct warm *w;
	unsigned n;

	if (!st->size || st->size > e->cfg.ram_cache / 4 || !wf->file->readable || !(w = calloc(1, sizeof(*w))))
		return;
	ufs_file_get(wf->file);
	if (!(w->f = efile_new(e, wf->file, st))) {
		ufs_file_put(wf->file);
		free(w);
		return;
	}
	w->end = pages;
	n = (unsigned)MIN(pages, WARM_DEPTH);
	atomic_init(&w->next, n);
	atomic_init(&w->in_flight, n);
	for (unsigned i = 0; i < n; i++)
		warm_page(w, &w->ops[i], i);
}

/* ---- running a change ---- */

static void finish(struct change *ch, int rc);

static void call_done(struct ufs_call *c, int rc)
{
	finish(container_of(c, struct change, call), rc);
}

static void run_here(struct change *ch)
{
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

static void run_msg(struct shard_msg *msg)
{
	run_here(container_of(msg, struct change, msg));
}

/* Outside the lock: on the handle's owner shard, else this one, else any. */
static void start(struct change *ch)
{
	struct shard *self = shard_self();

	ch->call.u = ch->m->e->ufs;
	ch->call.done = call_done;
	ch->call.path = ch->path;
	ch->call.path2 = ch->path2;
	if (ch->wf) {
		ch->call.file = ch->wf->file;
		on_owner(ch->wf, &ch->msg, run_msg);
	} else if (self) {
		run_here(ch);
	} else {
		shard_send(engine_any_shard(ch), &ch->msg, run_msg);
	}
}

static void answer_now(struct emeta *m, int err)
{
	m->err = err;
	m->done(m);
}

static void change_free(struct change *ch)
{
	struct engine *e = ch->m->e;

	ns_lock(e->ns);
	if (ch->dir)
		ns_unhold(e->ns, ch->dir);
	if (ch->newdir)
		ns_unhold(e->ns, ch->newdir);
	if (ch->node)
		ns_unhold(e->ns, ch->node);
	ns_trim(e->ns);
	ns_unlock(e->ns);
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

/* Under the lock: a directory a name can be made in or removed from, or an error. */
static int usable_dir(struct ns *ns, struct node *dir)
{
	if (!dir)
		return -ENOENT;
	if (dir->st.mode && !S_ISDIR(dir->st.mode))
		return -ENOTDIR;
	return ns_reachable(ns, dir) ? 0 : -ENOENT;
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
 * newparent/newname when newname is set), holding the directories.
 * Returns 0, or answers m with the error and frees ch.
 */
static int at_names(struct engine *e, struct change *ch, uint64_t parent, const char *name,
		    uint64_t newparent, const char *newname)
{
	struct ns *ns = e->ns;
	int err;

	ns_lock(ns);
	ch->dir = ns_by_ino(ns, parent);
	err = usable_dir(ns, ch->dir);
	if (!err && newname) {
		ch->newdir = ns_by_ino(ns, newparent);
		err = usable_dir(ns, ch->newdir);
	}
	if (!err) {
		ch->name = strdup(name);
		ch->path = child_path(ns, ch->dir, name);
		if (newname) {
			ch->newname = strdup(newname);
			ch->path2 = child_path(ns, ch->newdir, newname);
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

/* The same for a change of inode ino, held in ch->node. */
static int at_node(struct engine *e, struct change *ch, uint64_t ino)
{
	struct ns *ns = e->ns;
	int err = 0;

	ns_lock(ns);
	ch->node = ns_by_ino(ns, ino);
	if (!ch->node || (!ch->node->st.mode && !ch->wf))
		err = -ENOENT;
	else if (!(ch->path = ns_path(ns, ch->node)) && !ch->wf)   /* an open file needs no name */
		err = ns_reachable(ns, ch->node) ? -ENOMEM : -ENOENT;
	if (err) {
		ch->node = NULL;
	} else {
		ns_hold(ns, ch->node);
		/* What the engine knows of it: an object store opens by it. */
		ch->call.st = ch->node->st;
		snprintf(ch->call.etag, sizeof(ch->call.etag), "%s", ch->node->etag ? ch->node->etag : "");
	}
	ns_unlock(ns);
	if (err) {
		struct emeta *m = ch->m;
		change_free(ch);
		answer_now(m, err);
	}
	return err;
}

/* ---- what a change does to the namespace ---- */

/* How long the kernel may keep what the source just said (as meta.c's valid_for). */
static uint64_t valid_of(uint64_t ttl)
{
	return ttl ? ttl : UINT64_MAX;
}

/* Under the lock: n is as the source described it just now. */
static void describe(struct node *n, const struct ufs_call *c, uint64_t now)
{
	n->st = c->st;
	ns_set_etag(n, c->etag[0] ? c->etag : NULL);
	n->st_ns = now;
	n->fresh_until = add_sat(now, c->ttl_ns);
	n->src = (uint16_t)c->source;
}

/* Under the lock: dir/name was made; the kernel gets a reference to it. */
static int made(struct engine *e, struct change *ch, struct node *dir, const char *name, uint64_t now)
{
	struct node *k = ns_child(e->ns, dir, name);
	struct emeta *m = ch->m;

	if (!k && !(k = ns_add(e->ns, dir, name)))
		return -ENOMEM;
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
	m->valid_ns = valid_of(ch->call.ttl_ns);
	return 0;
}

static struct ewfile *ewfile_new(struct engine *e, struct ufs_file *file, struct node *n)
{
	struct ewfile *wf = calloc(1, sizeof(*wf));
	struct shard *self = shard_self();

	if (!wf)
		return NULL;
	wf->e = e;
	atomic_init(&wf->refs, 1);
	wf->file = file;
	wf->node = n;
	wf->owner = self ? shard_id(self) : shard_id(engine_any_shard(wf));
	n->writers++;
	atomic_fetch_add_explicit(&e->open_files, 1, memory_order_relaxed);
	return wf;
}

/* Under the lock: the namespace after the source said yes to ch. */
static int apply(struct engine *e, struct change *ch, uint64_t now)
{
	struct emeta *m = ch->m;
	struct ufs_call *c = &ch->call;
	struct node *k;
	int rc = 0;

	switch (m->kind) {
	case EM_MKDIR:
	case EM_MKNOD:
	case EM_SYMLINK:
		return made(e, ch, ch->dir, ch->name, now);
	case EM_LINK:
		/*
		 * A node is one name: the new name gets a node of its own
		 * (showing the source's st_ino, the same), so that either name
		 * works on after the other is gone. The linked one's link count
		 * changed too.
		 */
		describe(ch->node, c, now);
		return made(e, ch, ch->newdir, ch->newname, now);
	case EM_CREATE:
		if ((rc = made(e, ch, ch->dir, ch->name, now)))
			return rc;
		k = ns_child(e->ns, ch->dir, ch->name);
		ns_hold(e->ns, k);
		if (!(m->wfile = ewfile_new(e, c->file, k))) {
			ns_unhold(e->ns, k);
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
		ns_hold(e->ns, ch->node);
		if (!(m->wfile = ewfile_new(e, c->file, ch->node))) {
			ns_unhold(e->ns, ch->node);
			return -ENOMEM;
		}
		if (c->oflags & O_TRUNC)
			atomic_store(&m->wfile->dirty, true);   /* emptied, even if never written */
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
		rc = ns_rename(e->ns, ch->dir, ch->name, ch->newdir, ch->newname, false);
		if (rc == -ENOENT && (k = ns_child(e->ns, ch->newdir, ch->newname)))
			ns_detach(e->ns, k);   /* the moved name was not known here: what it replaced is gone */
		return 0;
	case EM_SETATTR:
	case EM_FLUSH:
		describe(ch->node, c, now);
		m->ino = ch->node->ino;
		m->st = c->st;
		m->valid_ns = valid_of(c->ttl_ns);
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

	if (rc == 0) {
		ns_lock(e->ns);
		rc = apply(e, ch, now_ns());
		ns_unlock(e->ns);
	}
	if (m->kind == EM_FLUSH || m->kind == EM_FSYNC) {
		atomic_fetch_add_explicit(rc ? &e->commit_failures : &e->commits, 1, memory_order_relaxed);
		/* Not in the source: the next close or fsync tries again, and cannot say 0 before. */
		if (rc)
			atomic_store(&ch->wf->dirty, true);
	}
	if (m->kind == EM_FLUSH && !rc) {
		/* Loaded into the tiers at the last close, when no more writes can come. */
		ch->wf->committed = ch->call.st;
		ch->wf->has_committed = true;
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

	if (!ch || at_names(e, ch, newparent, newname, 0, NULL))
		return;
	/* at_names filled the new name's side: it becomes path2, the node's path path. */
	ch->newdir = ch->dir;
	ch->dir = NULL;
	ch->newname = ch->name;
	ch->name = NULL;
	ch->path2 = ch->path;
	ch->path = NULL;
	if (at_node(e, ch, ino))
		return;
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
	struct node *k;

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
	/* What moves: an object store moves a directory key by key. */
	ns_lock(e->ns);
	if ((k = ns_child(e->ns, ch->dir, name)))
		ch->call.st = k->st;
	ns_unlock(e->ns);
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
		/* A size or attributes changed through the file: its close commits them. */
		if (set)
			atomic_store(&wf->dirty, true);
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

void engine_fgetattr(struct engine *e, uint64_t ino, struct ewfile *wf, struct emeta *m)
{
	/* A setattr that sets nothing: the driver answers from the open file. */
	engine_setattr(e, ino, 0, &(struct ufs_stat){ 0 }, wf, m);
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
	struct change *ch = change_new(e, m, EM_OPEN_WRITE);

	if (!ch || at_node(e, ch, ino))
		return;
	if (S_ISDIR(ch->node->st.mode)) {
		change_free(ch);
		answer_now(m, -EISDIR);
		return;
	}
	ch->call.oflags = oflags;
	start(ch);
}

/* One write, run on the handle's owner. */
struct wio {
	struct ufs_write w;
	struct ewfile *wf;
	void (*done)(void *arg, int res);
	void *arg;
	struct shard_msg msg;
};

static void wio_done(struct ufs_write *w, int res)
{
	struct wio *io = container_of(w, struct wio, w);
	struct ewfile *wf = io->wf;
	struct engine *e = wf->e;

	if (res > 0)
		atomic_fetch_add_explicit(&e->bytes_written, (uint64_t)res, memory_order_relaxed);
	if (res > 0 && w->off + (uint64_t)res > wf->node->st.size) {
		/* A stat from elsewhere sees the file grow, as the kernel does (a source's TTL would hide it). */
		ns_lock(e->ns);
		if (w->off + (uint64_t)res > wf->node->st.size)
			wf->node->st.size = w->off + (uint64_t)res;
		ns_unlock(e->ns);
	}
	if (res < 0) {
		int zero = 0;
		/* The first failure is the one close() reports. */
		atomic_compare_exchange_strong(&wf->err, &zero, engine_error(res));
		res = engine_error(res);
	}
	io->done(io->arg, res);
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
	struct wio *io = calloc(1, sizeof(*io));

	if (!io)
		return -ENOMEM;
	ewfile_get(wf);
	io->wf = wf;
	io->done = done;
	io->arg = arg;
	io->w.file = wf->file;
	io->w.buf = buf;
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
	struct wrd *rd = calloc(1, sizeof(*rd) + len);

	if (!rd)
		return -ENOMEM;
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

/* A flush or fsync through wf (held by the change): the source's answer, or a write's error. */
static void sync_file(struct ewfile *wf, enum emeta_kind kind, bool datasync, struct emeta *m)
{
	struct engine *e = wf->e;
	struct change *ch;
	int err;

	emeta_begin(e, m, kind);
	if ((err = atomic_exchange(&wf->err, 0)))
		return answer_now(m, err);
	/*
	 * Nothing written since the last commit: close() has nothing to wait
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
	ch->wf = wf;
	ns_lock(e->ns);
	ch->node = wf->node;
	ns_hold(e->ns, ch->node);
	ns_unlock(e->ns);
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
	if (wf->has_committed && !atomic_load(&wf->dirty))
		warm_tiers(wf->e, wf, &wf->committed);
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

	if (!atomic_load(&wf->dirty) && !atomic_load(&wf->err)) {
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
