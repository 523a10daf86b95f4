/*
 * Metadata: lookups, attributes, opens and listings over the namespace and
 * the source. An answer the source gave is reused until its TTL (the
 * driver's: dir_cache_ttl for object stores, none for local directories);
 * then one source call per node is in flight however many requests wait
 * for it (struct meta_op), and none of them holds the namespace lock while
 * it waits.
 *
 * Stale-if-error: when the source fails (a timeout, a refused connection,
 * 5xx after the retries), what the mount listed or opened within
 * stale_if_error is served from the cache, and while that source is known
 * to be down such answers come at once, with a refresh in the background,
 * rather than after another timeout. Names never seen still wait for the
 * source and fail with EIO.
 */
#include "config.h"
#include "engine/engine_i.h"
#include "core/log.h"
#include "core/pool.h"
#include "core/shard.h"
#include "core/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Answers served stale tell the kernel to ask again this soon. */
#define STALE_VALID_NS 1000000000ULL

/* One source call for one node: a stat or a listing. */
struct meta_op {
	struct ufs_call call;
	struct engine *e;
	struct node *node;        /* held through node->stat_op or list_op */
	bool list;
	char *path;
	unsigned flags;           /* the call's, set under the lock */
	uint32_t gen;             /* list: stamped on the children it saw */
	uint64_t start_ns;        /* names confirmed since are newer than the listing */
	struct emeta *waiters;
	struct shard_msg msg;
};

struct edir {
	struct node *node;        /* held */
	uint64_t valid_ns;
	struct edir_ent *ents;
	size_t n;
	char *names;              /* every entry's name, one block */
};

/* A shard to run a source call on, from a thread that is not one. */
static struct shard *any_shard(const void *key)
{
	return shard_get((unsigned)(mix64((uintptr_t)key) % shard_count()));
}

void engine_run_any(struct shard_msg *m, void (*fn)(struct shard_msg *m))
{
	if (shard_self())
		fn(m);
	else
		shard_send(any_shard(m), m, fn);
}

/* ---- outages ---- */

static _Atomic uint64_t *outage_of(struct engine *e, unsigned src)
{
	return &e->outage_since[src % ENG_SOURCES];
}

static bool in_outage(struct engine *e, unsigned src)
{
	return atomic_load_explicit(outage_of(e, src), memory_order_relaxed) != 0;
}

/* Logged once per outage, when the first call fails. */
static void source_failed(struct engine *e, const struct ufs_call *c, int rc)
{
	uint64_t zero = 0;

	if (!atomic_compare_exchange_strong(outage_of(e, c->source), &zero, now_ns()))
		return;
	if (e->stale_ns)
		log_warn("source unreachable (%s): serving cached metadata for up to %.0f s "
			 "(stale_if_error); names never seen fail with EIO until it answers",
			 c->err[0] ? c->err : strerror(-rc), (double)e->stale_ns / 1e9);
	else
		log_warn("source unreachable (%s): readers get EIO until it answers (stale_if_error=0)",
			 c->err[0] ? c->err : strerror(-rc));
}

static void source_ok(struct engine *e, unsigned src)
{
	uint64_t since = atomic_load(outage_of(e, src));

	if (since && atomic_compare_exchange_strong(outage_of(e, src), &since, 0))
		log_info("source answers again, after %.1f s of outage", (double)(now_ns() - since) / 1e9);
}

/* ---- answers, under the lock ---- */

uint64_t valid_for(const struct node *n, uint64_t now, bool stale)
{
	if (stale)
		return STALE_VALID_NS;
	if (n->fresh_until == n->st_ns)
		return UINT64_MAX;    /* the source keeps nothing here: the kernel's timeouts apply */
	return n->fresh_until > now ? n->fresh_until - now : 0;
}

void node_describe(struct node *n, const struct ufs_call *c, uint64_t now)
{
	n->st = c->st;
	n->st_ns = now;
	n->fresh_until = add_sat(now, c->ttl_ns);
	n->src = (uint16_t)c->source;
}

int dir_usable(const struct ns *ns, const struct node *dir)
{
	if (!dir)
		return -ENOENT;
	if (dir->st.mode && !S_ISDIR(dir->st.mode))
		return -ENOTDIR;
	/* A directory gone from the source (a shell may sit in it). */
	return ns_reachable(ns, dir) ? 0 : -ENOENT;
}

static int cmp_ent(const void *a, const void *b)
{
	return strcmp(((const struct edir_ent *)a)->name, ((const struct edir_ent *)b)->name);
}

void engine_attr(struct engine *e, uint64_t ino, struct ufs_stat *st, char *etag)
{
	struct node *n;

	ns_lock(e->ns);
	n = ns_by_ino(e->ns, ino);
	if (n)
		*st = n->st;
	snprintf(etag, UFS_ETAG_MAX, "%s", n && n->etag ? n->etag : "");
	ns_unlock(e->ns);
}

/* The directory's named, existing children (names and tags), in one allocation each for entries and names. */
static int snapshot(struct engine *e, struct node *dir, struct edir **out)
{
	struct edir *d = calloc(1, sizeof(*d));
	size_t n = 0, bytes = 0;
	char *p;

	if (!d)
		return -ENOMEM;
	for (struct node *k = dir->kids; k; k = k->sib_next)
		if (k->st.mode) {
			n++;
			bytes += strlen(k->name) + 1 + (k->etag ? strlen(k->etag) : 0) + 1;
		}
	d->ents = malloc(MAX(n, 1) * sizeof(*d->ents));
	d->names = malloc(MAX(bytes, 1));
	if (!d->ents || !d->names) {
		free(d->ents);
		free(d->names);
		free(d);
		return -ENOMEM;
	}
	p = d->names;
	for (struct node *k = dir->kids; k; k = k->sib_next) {
		if (!k->st.mode)
			continue;
		size_t l = strlen(k->name) + 1, t = (k->etag ? strlen(k->etag) : 0) + 1;
		memcpy(p, k->name, l);
		memcpy(p + l, k->etag ? k->etag : "", t);
		d->ents[d->n++] = (struct edir_ent){ .name = p, .etag = p + l, .ino = k->ino, .st = k->st };
		p += l + t;
	}
	d->node = dir;
	ns_hold(e->ns, dir);
	*out = d;
	return 0;
}

/* How long a listing's entries stay true, as valid_for() tells of attributes. */
static uint64_t list_valid_for(const struct node *dir, uint64_t now, bool stale)
{
	if (stale)
		return STALE_VALID_NS;
	if (dir->list_until == dir->list_ns)
		return UINT64_MAX;
	return dir->list_until > now ? dir->list_until - now : 0;
}

/* Fills m from n as the source last described it. */
static void answer(struct engine *e, struct emeta *m, struct node *n, uint64_t now, bool stale)
{
	m->err = 0;
	m->valid_ns = valid_for(n, now, stale);
	if (stale)
		atomic_fetch_add_explicit(&e->stale_answers, 1, memory_order_relaxed);
	if (!n->st.mode) {
		m->err = -ENOENT;
		return;
	}
	m->ino = n->ino;
	m->st = n->st;
	if (n->wfiles)
		m->st.size = engine_written_size(n);
	switch (m->kind) {
	case EM_LOOKUP:
		ns_ref(e->ns, n, 1);
		break;
	case EM_OPEN:
	case EM_OPEN_WRITE:
		if (S_ISDIR(n->st.mode)) {
			m->err = -EISDIR;
			break;
		}
		m->node = n;
		ns_hold(e->ns, n);   /* through the source's open */
		break;
	case EM_OPENDIR:
		if (!S_ISDIR(n->st.mode))
			m->err = -ENOTDIR;
		else if (!(m->err = snapshot(e, n, &m->dir)))
			m->dir->valid_ns = list_valid_for(n, now, stale);
		break;
	default:
		break;
	}
}

int engine_error(int rc)
{
	return ufs_unavailable(rc) || rc == -ECANCELED ? -EIO : rc;
}

/* The error a waiter gets when the source call failed and nothing stale will do. */
static void fail(struct emeta *m, int rc)
{
	m->err = engine_error(rc);
}

/* ---- source calls ---- */

static void op_done(struct ufs_call *c, int rc);
static int list_entry(struct ufs_call *c, const struct ufs_dirent *d);

static struct meta_op *op_new(struct engine *e, struct node *n, bool list)
{
	struct meta_op *op = calloc(1, sizeof(*op));

	if (!op || !(op->path = ns_path(e->ns, n))) {
		free(op);
		return NULL;
	}
	op->e = e;
	op->node = n;
	op->list = list;
	op->flags = !list && n->alias ? UFS_OBJECT : 0;
	op->start_ns = now_ns();
	if (list) {
		op->gen = ++e->list_gen;
		n->list_op = op;
	} else {
		n->stat_op = op;
	}
	ns_settle(e->ns, n);
	return op;
}

static void op_start_msg(struct shard_msg *msg)
{
	struct meta_op *op = container_of(msg, struct meta_op, msg);
	struct engine *e = op->e;

	op->call.u = e->ufs;
	op->call.path = op->path;
	op->call.flags = op->flags;
	op->call.done = op_done;
	op->call.entry = list_entry;
	if (op->list)
		e->ops->list(&op->call);
	else
		e->ops->stat(&op->call);
}

/* Outside the lock: starts op's call, on this shard or another. */
static void op_start(struct meta_op *op)
{
	engine_run_any(&op->msg, op_start_msg);
}

/*
 * Under the lock: answers m from n if that may be done now (true), else
 * queues it on n's call in flight or a new one, which *start then names.
 * While n's source is down, a cached answer comes at once and the call
 * runs in the background.
 */
static bool route(struct engine *e, struct emeta *m, struct node *n, bool list, uint64_t now,
		  struct meta_op **start)
{
	uint64_t until = list ? n->list_until : n->fresh_until;
	uint64_t got = list ? n->list_ns : n->st_ns;
	struct meta_op *op = list ? n->list_op : n->stat_op;

	*start = NULL;
	/* Being written through this mount, staged: what it knows is newer than the source's. */
	if (now < until || (!list && n->st.mode && engine_written_ahead(n))) {
		answer(e, m, n, now, false);
		return true;
	}
	if (!ns_reachable(e->ns, n)) {
		/* No name reaches it any more: what we know is all there is. */
		answer(e, m, n, now, false);
		return true;
	}
	if (got && in_outage(e, n->src) && now - got < e->stale_ns) {
		answer(e, m, n, now, true);
		if (!op)
			*start = op_new(e, n, list);
		return true;
	}
	if (op) {
		m->next = op->waiters;
		op->waiters = m;
		return false;
	}
	op = op_new(e, n, list);
	if (!op) {
		m->err = -ENOMEM;
		return true;
	}
	m->next = NULL;
	op->waiters = m;
	*start = op;
	return false;
}

/* A name a file system can show: the engine checks what drivers send. */
static bool name_ok(const char *name)
{
	size_t l = strlen(name);

	return l && l <= 255 && strcmp(name, ".") && strcmp(name, "..") && !strchr(name, '/');
}

/*
 * The attributes node k takes from listing entry d. A bare entry (no
 * metadata) of the bytes k describes (the same version: a key moved by a
 * copy keeps it too) keeps the mode, owner and times a stat or our own
 * write told, not the source's defaults.
 */
static struct ufs_stat listed_stat(const struct node *k, const struct ufs_dirent *d)
{
	struct ufs_stat st = d->st;

	if (d->bare && k->st.mode && (k->st.mode & S_IFMT) == (d->st.mode & S_IFMT) &&
	    k->st.version == d->st.version) {
		st.mode = k->st.mode;
		st.uid = k->st.uid;
		st.gid = k->st.gid;
		st.mtime_ns = k->st.mtime_ns;
		st.ctime_ns = k->st.ctime_ns;
		st.atime_ns = k->st.atime_ns;
	}
	return st;
}

static int list_entry(struct ufs_call *c, const struct ufs_dirent *d)
{
	struct meta_op *op = container_of(c, struct meta_op, call);
	struct engine *e = op->e;
	struct node *dir = op->node, *k;
	uint64_t now;
	int rc = 0;

	if (!name_ok(d->name))
		return 0;    /* the driver logged why */
	ns_lock(e->ns);
	now = now_ns();
	k = ns_child(e->ns, dir, d->name);
	if (!k)
		k = ns_add(e->ns, dir, d->name);
	if (!k || ns_set_etag(k, d->etag) || ns_set_srcname(k, d->srcname)) {
		rc = -ENOMEM;
	} else {
		k->st = listed_stat(k, d);
		k->alias = d->srcname && !S_ISDIR(d->st.mode);
		k->st_ns = now;
		k->fresh_until = add_sat(now, c->ttl_ns);
		k->list_gen = op->gen;
		k->src = (uint16_t)c->source;
		ns_settle(e->ns, k);
	}
	ns_unlock(e->ns);
	return rc;
}

/* Under the lock: the names below n are gone (those with a stat in flight wait for it). */
static void drop_kids(struct engine *e, struct node *n)
{
	for (struct node *k = n->kids, *next; k; k = next) {
		next = k->sib_next;
		if (!k->stat_op)
			ns_detach(e->ns, k);
	}
}

/* Under the lock: a listing completed; names it did not show are gone. */
static void list_complete(struct engine *e, struct meta_op *op, uint64_t now, uint64_t ttl)
{
	struct node *dir = op->node, *k, *next;

	for (k = dir->kids; k; k = next) {
		next = k->sib_next;
		/* Not listed, and not confirmed by a stat since the listing began, nor being written. */
		if (k->list_gen != op->gen && !k->stat_op && k->st_ns < op->start_ns && !k->wfiles)
			ns_detach(e->ns, k);
	}
	dir->list_ns = now;
	dir->list_until = add_sat(now, ttl);
}

static void resume(struct emeta *m);

static void op_done(struct ufs_call *c, int rc)
{
	struct meta_op *op = container_of(c, struct meta_op, call);
	struct engine *e = op->e;
	struct node *n = op->node;
	struct emeta *w, *next;
	uint64_t now, got;
	bool stale = false;

	engine_count_latency(e, op->list ? ENG_SRC_LIST : ENG_SRC_STAT, op->start_ns);
	if (ufs_unavailable(rc))
		source_failed(e, c, rc);
	else if (c->asked)
		source_ok(e, c->source);
	ns_lock(e->ns);
	now = now_ns();
	/* Held to the end: dropping its children may leave it with nothing else. */
	ns_hold(e->ns, n);
	if (op->list)
		n->list_op = NULL;
	else
		n->stat_op = NULL;
	got = op->list ? n->list_ns : n->st_ns;
	if (rc == -ENOENT && n == ns_root(e->ns))
		rc = -EIO;    /* a driver's mistake: the root always exists */
	if (rc == 0 || rc == -ENOENT)
		n->src = (uint16_t)c->source;
	if (rc == 0 && op->list) {
		list_complete(e, op, now, c->ttl_ns);
	} else if (rc == 0) {
		node_describe(n, c, now);
		if (ns_set_etag(n, c->etag))
			rc = -ENOMEM;
	} else if (rc == -ENOENT) {
		/* Gone, or never there: a negative entry for the TTL. */
		n->st.mode = 0;
		ns_set_etag(n, NULL);
		n->st_ns = now;
		n->fresh_until = add_sat(now, c->ttl_ns);
		n->list_ns = n->list_until = 0;
		drop_kids(e, n);
	} else if (ufs_unavailable(rc)) {
		/* The root is a directory even before the source first said so. */
		stale = (got && now - got < e->stale_ns) || (n == ns_root(e->ns) && !op->list);
	}
	for (w = op->waiters; w; w = w->next) {
		if (rc == 0 || rc == -ENOENT || stale)
			answer(e, w, n, now, stale);
		else
			fail(w, rc);
	}
	w = op->waiters;
	ns_unhold(e->ns, n);
	ns_trim(e->ns);
	ns_unlock(e->ns);
	free(op->path);
	free(op);
	for (; w; w = next) {
		next = w->next;
		resume(w);
	}
}

/* ---- the requests ---- */

static void open_start(struct emeta *m);

/* After an answer: done, or the next step of an open. */
static void resume(struct emeta *m)
{
	if (m->kind == EM_OPEN && !m->err) {
		open_start(m);
		return;
	}
	if (m->kind == EM_OPEN_WRITE && !m->err) {
		engine_open_write_node(m);
		return;
	}
	if (m->kind == EM_OPENDIR && !m->err)
		qsort(m->dir->ents, m->dir->n, sizeof(*m->dir->ents), cmp_ent);
	m->done(m);
}

/* Runs m against node n under the lock, then answers or starts what it waits for. */
static void run(struct engine *e, struct emeta *m, struct node *n, bool list, uint64_t now)
{
	struct meta_op *start = NULL;
	bool answered = route(e, m, n, list, now, &start);

	ns_trim(e->ns);
	ns_unlock(e->ns);
	if (start)
		op_start(start);
	if (answered)
		resume(m);
}

void emeta_begin(struct engine *e, struct emeta *m, enum emeta_kind kind)
{
	m->e = e;
	m->kind = kind;
	m->err = 0;
	m->file = NULL;
	m->dir = NULL;
	m->node = NULL;
	m->changed = false;
	m->shared = false;
	m->valid_ns = 0;
	m->wfile = NULL;
	m->link = NULL;
}

/* The node of ino under the lock, or NULL after answering m with ENOENT (lock released). */
static struct node *node_of(struct engine *e, struct emeta *m, uint64_t ino)
{
	struct node *n;

	ns_lock(e->ns);
	n = ns_by_ino(e->ns, ino);
	if (n)
		return n;
	ns_unlock(e->ns);
	m->err = -ENOENT;
	m->done(m);
	return NULL;
}

void engine_lookup(struct engine *e, uint64_t parent, const char *name, struct emeta *m)
{
	uint64_t now;
	struct node *dir, *n;

	emeta_begin(e, m, EM_LOOKUP);
	if (!(dir = node_of(e, m, parent)))
		return;
	now = now_ns();
	if ((m->err = dir_usable(e->ns, dir))) {
		ns_unlock(e->ns);
		m->done(m);
		return;
	}
	n = ns_child(e->ns, dir, name);
	if (!n) {
		/* Not in a listing that is fresh, or stale while the source is down: no such name. */
		bool listed = now < dir->list_until ||
			      (dir->list_ns && in_outage(e, dir->src) && now - dir->list_ns < e->stale_ns);
		if (listed) {
			m->err = -ENOENT;
			m->valid_ns = now < dir->list_until ? dir->list_until - now : STALE_VALID_NS;
			ns_unlock(e->ns);
			m->done(m);
			return;
		}
		n = ns_add(e->ns, dir, name);
		if (!n) {
			ns_unlock(e->ns);
			m->err = -ENOMEM;
			m->done(m);
			return;
		}
		n->src = dir->src;
	}
	run(e, m, n, false, now);
}

void engine_forget(struct engine *e, uint64_t ino, uint64_t nlookup)
{
	struct efile *shared = NULL;
	struct node *n;

	ns_lock(e->ns);
	n = ns_by_ino(e->ns, ino);
	if (n) {
		if (n->nlookup <= nlookup) {
			/* The kernel lets go of the inode: no reader can use its handle. */
			shared = n->shared;
			n->shared = NULL;
		}
		ns_forget(e->ns, n, nlookup);   /* may free a detached n */
		ns_trim(e->ns);
	}
	ns_unlock(e->ns);
	if (shared)
		efile_put(shared);
}

void engine_getattr(struct engine *e, uint64_t ino, struct emeta *m)
{
	struct node *n;

	emeta_begin(e, m, EM_GETATTR);
	if ((n = node_of(e, m, ino)))
		run(e, m, n, false, now_ns());   /* node_of holds the lock: now is after it */
}

void engine_stat_node(struct engine *e, struct emeta *m, struct node *n)
{
	run(e, m, n, false, now_ns());
}

void engine_opendir(struct engine *e, uint64_t ino, struct emeta *m)
{
	struct node *n;

	emeta_begin(e, m, EM_OPENDIR);
	if (!(n = node_of(e, m, ino)))
		return;
	if (n->st.mode && !S_ISDIR(n->st.mode)) {
		ns_unlock(e->ns);
		m->err = -ENOTDIR;
		m->done(m);
		return;
	}
	run(e, m, n, true, now_ns());
}

void engine_closedir(struct engine *e, struct edir *d)
{
	ns_lock(e->ns);
	ns_unhold(e->ns, d->node);
	ns_trim(e->ns);
	ns_unlock(e->ns);
	free(d->ents);
	free(d->names);
	free(d);
}

size_t edir_count(const struct edir *d)
{
	return d->n;
}

const struct edir_ent *edir_get(const struct edir *d, size_t i)
{
	return i < d->n ? &d->ents[i] : NULL;
}

uint64_t edir_valid_ns(const struct edir *d)
{
	return d->valid_ns;
}

uint64_t engine_dir_ref(struct engine *e, struct edir *d, size_t i)
{
	const struct edir_ent *ent = &d->ents[i];
	struct node *k;
	uint64_t ino = 0;

	ns_lock(e->ns);
	k = ns_by_ino(e->ns, ent->ino);
	if (!k || k->parent != d->node) {
		/* Evicted since the snapshot: the name comes back with what the listing said. */
		k = ns_child(e->ns, d->node, ent->name);
		if (!k && ns_reachable(e->ns, d->node) && (k = ns_add(e->ns, d->node, ent->name)))
			k->st = ent->st;
	}
	if (k && k->st.mode) {
		ns_ref(e->ns, k, 1);
		ino = k->ino;
	}
	ns_unlock(e->ns);
	return ino;
}

/* ---- open ---- */

struct open_call {
	struct ufs_call call;
	struct emeta *m;
	char *path;
	uint64_t start_ns;
	struct shard_msg msg;
};

static void open_done(struct ufs_call *c, int rc)
{
	struct open_call *oc = container_of(c, struct open_call, call);
	struct emeta *m = oc->m;
	struct engine *e = m->e;
	struct node *n = m->node;
	struct efile *old = NULL;
	uint64_t now;

	engine_count_latency(e, ENG_SRC_OPEN, oc->start_ns);
	if (ufs_unavailable(rc))
		source_failed(e, c, rc);
	ns_lock(e->ns);
	now = now_ns();
	if (rc == 0) {
		/* What was opened: the node may have been refreshed meanwhile. */
		if (c->fetched)
			node_describe(n, c, now);
		m->st = c->st;
		m->changed = n->open_id != c->st.id;
		n->open_id = c->st.id;
		m->file = efile_new(e, c->file, &c->st);
		if (!m->file) {
			ufs_file_put(c->file);
			rc = -ENOMEM;
		} else if (!c->flags) {
			/* (An alias's object is opened by flags a peer would not know.) */
			efile_set_source(m->file, oc->path, c->etag);
		}
	} else if (ufs_unavailable(rc) && n->st.mode && n->st_ns && now - n->st_ns < e->stale_ns) {
		/* The cached pages can still be read. */
		atomic_fetch_add_explicit(&e->stale_answers, 1, memory_order_relaxed);
		m->changed = n->open_id != n->st.id;
		m->file = efile_new(e, NULL, &n->st);
		rc = m->file ? 0 : -ENOMEM;
	} else if (rc == -ENOENT) {
		n->st.mode = 0;
		n->st_ns = now;
		n->fresh_until = add_sat(now, c->ttl_ns);
	}
	if (m->file) {
		m->file->node = n;      /* keeps the hold until release */
		if (m->shared) {
			old = n->shared;
			n->shared = m->file;
			efile_get(m->file);
			m->file->shared = true;
			atomic_fetch_sub_explicit(&e->open_files, 1, memory_order_relaxed);
			atomic_fetch_add_explicit(&e->shared_files, 1, memory_order_relaxed);
		}
	} else {
		ns_unhold(e->ns, n);
		ns_trim(e->ns);
	}
	ns_unlock(e->ns);
	if (old)
		efile_put(old);
	free(oc->path);
	free(oc);
	m->err = 0;
	if (rc)
		fail(m, rc);
	m->done(m);
}

static void open_msg(struct shard_msg *msg)
{
	struct open_call *oc = container_of(msg, struct open_call, msg);

	oc->start_ns = now_ns();
	oc->m->e->ops->open(&oc->call);
}

/* The node exists and is a file (held through m->node): open it at the source. */
static void open_start(struct emeta *m)
{
	struct engine *e = m->e;
	struct open_call *oc = calloc(1, sizeof(*oc));
	struct node *n = m->node;
	int err = 0;

	ns_lock(e->ns);
	if (!oc) {
		err = -ENOMEM;
	} else if (!(oc->path = ns_path(e->ns, n))) {
		/* No name reaches it: deleted or renamed over while the kernel held it. */
		err = ns_reachable(e->ns, n) ? -ENOMEM : -ENOENT;
	} else {
		oc->call.st = n->st;
		snprintf(oc->call.etag, sizeof(oc->call.etag), "%s", n->etag ? n->etag : "");
		oc->call.flags = n->alias ? UFS_OBJECT : 0;
	}
	if (err) {
		ns_unhold(e->ns, n);
		ns_trim(e->ns);
	}
	ns_unlock(e->ns);
	if (err) {
		free(oc);
		m->err = err;
		m->done(m);
		return;
	}
	oc->m = m;
	oc->call.u = e->ufs;
	oc->call.path = oc->path;
	oc->call.done = open_done;
	engine_run_any(&oc->msg, open_msg);
}

/* Opens node n (locked by node_of) for m: for reading, or for writing (EM_OPEN_WRITE). */
void open_node(struct engine *e, struct emeta *m, struct node *n)
{
	uint64_t now = now_ns();

	if (n->st_ns && n->fresh_until == n->st_ns && n->parent && n->st.mode) {
		/* A source that keeps nothing here (local): its open answers
		 * fresh attributes itself, so no stat first. */
		answer(e, m, n, now, false);
		ns_unlock(e->ns);
		resume(m);
		return;
	}
	run(e, m, n, false, now);
}

void engine_open(struct engine *e, uint64_t ino, struct emeta *m)
{
	struct node *n;

	emeta_begin(e, m, EM_OPEN);
	if ((n = node_of(e, m, ino)))
		open_node(e, m, n);
}

void engine_release(struct engine *e, struct efile *f)
{
	efile_put(f);
}

/* Under the lock: n's shared handle with a reference, if it still fits n's attributes. */
static struct efile *shared_of(struct engine *e, struct node *n)
{
	struct efile *f = n->shared;

	/* One opened while the source failed (cached pages only) serves until the outage ends. */
	if (!f || !n->st.mode || f->fid != n->st.id || f->version != n->st.version || f->size != n->st.size ||
	    (!f->file && !in_outage(e, n->src)))
		return NULL;
	efile_get(f);
	return f;
}

struct efile *engine_shared_get(struct engine *e, uint64_t ino)
{
	struct efile *f = NULL;
	struct node *n;

	ns_lock(e->ns);
	if ((n = ns_by_ino(e->ns, ino)))
		f = shared_of(e, n);
	ns_unlock(e->ns);
	return f;
}

void engine_open_shared(struct engine *e, uint64_t ino, struct emeta *m)
{
	struct node *n;

	emeta_begin(e, m, EM_OPEN);
	m->shared = true;
	if (!(n = node_of(e, m, ino)))
		return;
	if ((m->file = shared_of(e, n))) {
		m->ino = n->ino;
		m->st = n->st;
		ns_unlock(e->ns);
		m->done(m);
		return;
	}
	open_node(e, m, n);
}

/* ---- statfs ---- */

struct statfs_call {
	struct ufs_call call;
	struct emeta *m;
	struct shard_msg msg;
};

static void statfs_done(struct ufs_call *c, int rc)
{
	struct statfs_call *sc = container_of(c, struct statfs_call, call);
	struct emeta *m = sc->m;

	if (rc) {
		/* Something for df rather than an error: the source is what failed. */
		memset(&m->vfs, 0, sizeof(m->vfs));
		m->vfs.f_bsize = m->vfs.f_frsize = 4096;
		m->vfs.f_namemax = 255;
	} else {
		m->vfs = c->vfs;
	}
	free(sc);
	m->done(m);
}

static void statfs_msg(struct shard_msg *msg)
{
	struct statfs_call *sc = container_of(msg, struct statfs_call, msg);

	sc->m->e->ops->statfs(&sc->call);
}

void engine_statfs(struct engine *e, struct emeta *m)
{
	struct statfs_call *sc = calloc(1, sizeof(*sc));

	emeta_begin(e, m, EM_STATFS);
	if (!sc) {
		m->err = -ENOMEM;
		m->done(m);
		return;
	}
	sc->m = m;
	sc->call.u = e->ufs;
	sc->call.path = "";
	sc->call.done = statfs_done;
	engine_run_any(&sc->msg, statfs_msg);
}
