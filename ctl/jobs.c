#include "config.h"
#include "ctl/jobs.h"
#include "core/log.h"
#include "core/shard.h"
#include "core/util.h"
#include "iostore/pgkey.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define JOB_MAX_ERRORS 32
#define JOB_KEEP 32            /* finished jobs kept for `jobs` */
#define JOB_MAX_DEPTH 256      /* directories below a path; deeper is a loop */

static const char *const kind_names[] = CTL_JOB_KIND_NAMES;
static const char *const state_names[] = CTL_JOB_STATE_NAMES;

struct job_file {
	char *path;                /* the source's */
	struct ufs_stat st;
	char *etag;
	struct efile *ef;          /* open while its pages load (load, pin) */
	uint64_t pages_left;       /* under the job's lock */
	bool failed;
};

struct held_page {
	struct pgkey key;
};

/* A job's counters are under `lock`; the rest is set before its thread. */
struct job {
	unsigned id;
	enum ctl_job_kind kind;
	unsigned parallel;          /* page operations in flight */
	char **paths;
	unsigned npaths;
	bool all;                   /* unpin: every held page */
	bool source_paths;
	enum job_scope scope;
	const struct jobs_cluster *cl;  /* set when the load is (a part of) a cluster's */
	struct engine *e;
	pthread_t thread;
	bool joined;                /* control thread's */
	atomic_bool cancel;
	atomic_bool finished;       /* the thread is about to return */
	atomic_bool full;           /* pin: a shard's hold limit was reached */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	enum ctl_job_state state;
	struct job_file *files;
	size_t nfiles, capfiles;
	uint64_t files_done, bytes_total, bytes_done, pages_dropped, pages_busy;
	uint64_t pages_pinned, pages_unpinned, pages_kept;
	struct held_page *held;     /* pin: pages this job held, for a rollback */
	size_t nheld, capheld;
	unsigned inflight;
	char *errors[JOB_MAX_ERRORS];
	unsigned nerrors;           /* all of them; the first JOB_MAX_ERRORS kept */
	uint64_t t_start, t_end;
	void *remote;               /* the other members' parts of a cluster load, while they run */
	json_t *remote_last;        /* their progress when they ended */
	struct job *next;
};

/* One page of a job. */
struct job_page {
	struct page_op op;
	struct job *job;
	struct job_file *file;     /* NULL for unpin --all */
};

/*
 * The control server's thread starts, finds and trims jobs; the page
 * server's threads start and render them (jobs_json_of); the status
 * page's thread lists them. `lock` guards the list, the ids and cl.
 */
struct jobs {
	struct engine *e;
	const struct jobs_cluster *cl;
	pthread_mutex_t lock;
	struct job *list;           /* newest first */
	unsigned next_id;
};

unsigned job_id(const struct job *j) { return j->id; }
void job_cancel(struct job *j) { atomic_store(&j->cancel, true); }
bool job_finished(const struct job *j) { return atomic_load(&j->finished); }

__attribute__((format(printf, 2, 3)))
static void job_error(struct job *j, const char *fmt, ...)
{
	char line[PATH_MAX + 256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&j->lock);
	if (j->nerrors < JOB_MAX_ERRORS)
		j->errors[j->nerrors] = strdup(line);
	j->nerrors++;
	pthread_mutex_unlock(&j->lock);
}

/* ---- a cluster's share ---- */

/* Whether j loads only the stripes this node owns. */
static bool owned_only(const struct job *j)
{
	return j->cl && j->scope != JOB_HERE;
}

static bool page_mine(const struct job *j, uint64_t fid, uint64_t index)
{
	return !owned_only(j) || j->cl->owns(fid, index * engine_page_size(j->e) / PAGE_STRIPE_BYTES);
}

/* The bytes of a file that j loads. */
static uint64_t bytes_mine(const struct job *j, const struct ufs_stat *st)
{
	uint64_t n = 0;

	if (!owned_only(j))
		return st->size;
	for (uint64_t s = 0; s * PAGE_STRIPE_BYTES < st->size; s++)
		if (j->cl->owns(st->id, s))
			n += MIN((uint64_t)PAGE_STRIPE_BYTES, st->size - s * PAGE_STRIPE_BYTES);
	return n;
}

/* ---- the walk ---- */

static int add_file(struct job *j, const char *path, const struct ufs_stat *st, const char *etag)
{
	int rc = 0;

	pthread_mutex_lock(&j->lock);
	if (j->nfiles == j->capfiles) {
		size_t cap = j->capfiles ? j->capfiles * 2 : 256;
		struct job_file *n = realloc(j->files, cap * sizeof(*n));
		if (!n) {
			rc = -ENOMEM;
			goto out;
		}
		j->files = n;
		j->capfiles = cap;
	}
	j->files[j->nfiles] = (struct job_file){ .path = strdup(path), .st = *st, .etag = strdup(etag) };
	if (!j->files[j->nfiles].path || !j->files[j->nfiles].etag) {
		free(j->files[j->nfiles].path);
		free(j->files[j->nfiles].etag);
		rc = -ENOMEM;
		goto out;
	}
	j->bytes_total += j->kind == CTL_JOB_LOAD ? bytes_mine(j, st) : st->size;
	j->nfiles++;
out:
	pthread_mutex_unlock(&j->lock);
	return rc;
}

struct walk_ent {
	char *name;
	struct ufs_stat st;
	char *etag;
};

struct walk_dir {
	struct job *job;
	struct walk_ent *ents;
	size_t n, cap;
};

static int collect(void *arg, const char *name, const struct ufs_stat *st, const char *etag)
{
	struct walk_dir *d = arg;

	if (atomic_load(&d->job->cancel))
		return -ECANCELED;
	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 64;
		struct walk_ent *n = realloc(d->ents, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		d->ents = n;
		d->cap = cap;
	}
	d->ents[d->n] = (struct walk_ent){ .name = strdup(name), .st = *st, .etag = strdup(etag) };
	if (!d->ents[d->n].name || !d->ents[d->n].etag) {
		free(d->ents[d->n].name);
		free(d->ents[d->n].etag);
		return -ENOMEM;
	}
	d->n++;
	return 0;
}

static void walk(struct job *j, const char *path, const char *shown, const struct ufs_stat *st,
		 const char *etag, unsigned depth);

/* Adds the regular files under directory `path` (relative to the root). */
static void walk_dir(struct job *j, const char *path, const char *shown, unsigned depth)
{
	struct walk_dir d = { .job = j };
	int rc;

	if (depth > JOB_MAX_DEPTH) {
		job_error(j, "%s: more than %d directories deep (a loop in the source?); not walked",
			  shown, JOB_MAX_DEPTH);
		return;
	}
	rc = engine_src_list(j->e, path, collect, &d);
	if (rc && rc != -ECANCELED)
		job_error(j, "%s: listing: %s", shown, strerror(-rc));
	for (size_t i = 0; i < d.n; i++) {
		char *sub, *sub_shown;
		if (asprintf(&sub, "%s%s%s", path, *path ? "/" : "", d.ents[i].name) >= 0) {
			if (asprintf(&sub_shown, "%s/%s", shown, d.ents[i].name) >= 0) {
				walk(j, sub, sub_shown, &d.ents[i].st, d.ents[i].etag, depth + 1);
				free(sub_shown);
			}
			free(sub);
		}
		free(d.ents[i].name);
		free(d.ents[i].etag);
	}
	free(d.ents);
}

/* Adds the regular files at and under `path`, whose attributes are st. */
static void walk(struct job *j, const char *path, const char *shown, const struct ufs_stat *st,
		 const char *etag, unsigned depth)
{
	if (atomic_load(&j->cancel))
		return;
	if (S_ISREG(st->mode)) {
		if (add_file(j, path, st, etag))
			job_error(j, "%s: %s", shown, strerror(ENOMEM));
	} else if (S_ISDIR(st->mode)) {
		walk_dir(j, path, shown, depth);
	}
}

/* A client's absolute path (or a source path) as a clean path of the source, or NULL (the job has the error). */
static char *source_path(struct job *j, const char *p)
{
	const char *mnt = engine_mountpoint(j->e);
	size_t mlen = strlen(mnt);
	bool root = !strcmp(mnt, "/") || j->source_paths;
	char *rel;
	bool dir;

	if (!root && (strncmp(p, mnt, mlen) || (p[mlen] && p[mlen] != '/'))) {
		job_error(j, "%s: not under the mount point %s", p, mnt);
		return NULL;
	}
	rel = strdup(p + (root ? 0 : mlen));
	if (!rel || path_clean(rel, &dir)) {
		job_error(j, "%s: not a plain path", p);
		free(rel);
		return NULL;
	}
	return rel;
}

/* ---- pages ---- */

/* Under j->lock: drops a reference to f (its pages', and the sender's). */
static void file_put(struct job *j, struct job_file *f)
{
	if (!f || --f->pages_left)
		return;
	j->files_done++;
	if (f->ef) {
		efile_put(f->ef);
		f->ef = NULL;
	}
}

/* Under j->lock: marks f failed; true the first time, which reports it
 * (one message per file, not per page). */
static bool first_failure(struct job_file *f)
{
	bool first = !f->failed;

	f->failed = true;
	return first;
}

/* On the page's owner shard: one page finished, its counts taken. */
static void page_finished(struct job_page *jp, uint64_t bytes, int err)
{
	struct job *j = jp->job;
	bool first_error;

	/* Everything that touches the job comes before inflight drops: at
	 * zero its thread may end and the control thread free it. */
	page_op_release(&jp->op);
	pthread_mutex_lock(&j->lock);
	first_error = err && jp->file && first_failure(jp->file);
	pthread_mutex_unlock(&j->lock);
	if (first_error)
		job_error(j, "%s: %s", jp->file->path, strerror(-err));
	pthread_mutex_lock(&j->lock);
	j->bytes_done += bytes;
	file_put(j, jp->file);
	j->inflight--;
	pthread_cond_signal(&j->cond);
	pthread_mutex_unlock(&j->lock);
	free(jp);
}

static void load_done(struct page_op *op)
{
	struct job_page *jp = op->arg;

	page_finished(jp, op->res > 0 ? (uint64_t)op->res : 0, op->res < 0 ? (int)op->res : 0);
}

static void drop_done(struct page_op *op)
{
	struct job_page *jp = op->arg;
	struct job *j = jp->job;

	pthread_mutex_lock(&j->lock);
	if (op->res == 0)
		j->pages_dropped++;
	else if (op->res == -EBUSY)
		j->pages_busy++;
	else if (op->res == -EPERM)
		j->pages_kept++;
	pthread_mutex_unlock(&j->lock);
	page_finished(jp, op->res == 0 ? op->want : 0, 0);
}

static void hold_done(struct page_op *op)
{
	struct job_page *jp = op->arg;
	struct job *j = jp->job;
	int64_t res = op->res;

	pthread_mutex_lock(&j->lock);
	if (res == 0 && j->nheld == j->capheld) {
		size_t cap = j->capheld ? j->capheld * 2 : 1024;
		struct held_page *n = realloc(j->held, cap * sizeof(*n));
		if (n) {
			j->held = n;
			j->capheld = cap;
		}
	}
	if (res == 0 && j->nheld < j->capheld) {
		j->held[j->nheld++] = (struct held_page){ op->key };
	} else if (res == 0) {
		/* No room to remember it for a rollback: not held, then (we are
		 * its owner shard). */
		pgcache_unhold(engine_cache(j->e), op->owner, &op->key);
		res = -ENOMEM;
	}
	if (res >= 0)
		j->pages_pinned++;
	else if (res == -ENOSPC)
		atomic_store(&j->full, true);
	pthread_mutex_unlock(&j->lock);
	page_finished(jp, res >= 0 ? op->want : 0, res < 0 && res != -ENOSPC ? (int)res : 0);
}

static void unhold_done(struct page_op *op)
{
	struct job_page *jp = op->arg;
	struct job *j = jp->job;

	pthread_mutex_lock(&j->lock);
	if (op->kind == PGOP_UNHOLD_ALL)
		j->pages_unpinned += (uint64_t)op->res;
	else
		j->pages_unpinned += op->res == 0;
	pthread_mutex_unlock(&j->lock);
	page_finished(jp, op->kind == PGOP_UNHOLD && op->res == 0 ? op->want : 0, 0);
}

static void (*const page_done[])(struct page_op *op) = {
	[PGOP_LOAD] = load_done, [PGOP_HOLD] = hold_done, [PGOP_DROP] = drop_done,
	[PGOP_UNHOLD] = unhold_done, [PGOP_UNHOLD_ALL] = unhold_done,
};

static const enum page_op_kind page_kind[] = {
	[CTL_JOB_LOAD] = PGOP_LOAD, [CTL_JOB_PIN] = PGOP_HOLD, [CTL_JOB_EVICT] = PGOP_DROP,
	[CTL_JOB_UNPIN] = PGOP_UNHOLD,
};

/* Sends jp to its owner once fewer than the job's window are in flight. */
static void job_send(struct job *j, struct job_page *jp)
{
	pthread_mutex_lock(&j->lock);
	while (j->inflight >= j->parallel)
		pthread_cond_wait(&j->cond, &j->lock);
	j->inflight++;
	if (jp->file)
		jp->file->pages_left++;
	pthread_mutex_unlock(&j->lock);
	jp->job = j;
	jp->op.arg = jp;
	jp->op.done = page_done[jp->op.kind];
	page_op_submit(&jp->op);
}

static void job_wait(struct job *j)
{
	pthread_mutex_lock(&j->lock);
	while (j->inflight)
		pthread_cond_wait(&j->cond, &j->lock);
	pthread_mutex_unlock(&j->lock);
}

static bool job_stopped(struct job *j)
{
	return atomic_load(&j->cancel) || atomic_load(&j->full);
}

/* Opens f's source file for the pages that read it (load, pin): 0 or -errno. */
static int open_file(struct job *j, struct job_file *f)
{
	int rc = engine_src_open(j->e, f->path, &f->st, f->etag, &f->ef);

	if (rc)
		job_error(j, "%s: %s", f->path, strerror(-rc));
	return rc;
}

/* Sends every page of every file to its owner, `parallel` at a time. */
static void run_pages(struct job *j)
{
	uint64_t ps = engine_page_size(j->e);
	enum page_op_kind kind = page_kind[j->kind];

	for (size_t i = 0; i < j->nfiles && !job_stopped(j); i++) {
		struct job_file *f = &j->files[i];
		uint64_t npages = (f->st.size + ps - 1) / ps;

		if (kind == PGOP_LOAD && !bytes_mine(j, &f->st))
			npages = 0;         /* none of its stripes is this node's */
		if ((kind == PGOP_LOAD || kind == PGOP_HOLD) && npages && open_file(j, f))
			npages = 0;
		pthread_mutex_lock(&j->lock);
		f->pages_left = 1;   /* this loop's reference, until it sent them all */
		pthread_mutex_unlock(&j->lock);
		for (uint64_t p = 0; p < npages && !job_stopped(j); p++) {
			struct job_page *jp;
			if (kind == PGOP_LOAD && !page_mine(j, f->st.id, p))
				continue;
			if (!(jp = calloc(1, sizeof(*jp)))) {
				job_error(j, "%s: %s", f->path, strerror(ENOMEM));
				break;
			}
			jp->file = f;
			if (f->ef) {
				page_op_init(&jp->op, j->e, kind, f->ef, p);
			} else {
				struct pgkey k = { f->st.id, p };
				page_op_init_key(&jp->op, j->e, kind, &k, MIN(ps, f->st.size - p * ps));
			}
			job_send(j, jp);
		}
		pthread_mutex_lock(&j->lock);
		file_put(j, f);
		pthread_mutex_unlock(&j->lock);
	}
	job_wait(j);
}

/* unpin --all: every shard releases every hold it has. */
static void run_unpin_all(struct job *j)
{
	for (unsigned i = 0; i < pgcache_parts(engine_cache(j->e)); i++) {
		struct job_page *jp = calloc(1, sizeof(*jp));
		if (!jp) {
			job_error(j, "unpin: %s", strerror(ENOMEM));
			break;
		}
		page_op_init_part(&jp->op, j->e, i);
		job_send(j, jp);
	}
	job_wait(j);
}

/*
 * A pin that cannot fit is refused before anything is held: each shard's
 * share of the pages must fit under its hold limit. Pages held already
 * count again here; the limit is checked page by page while pinning too.
 */
static bool pin_fits(struct job *j)
{
	struct pgcache *c = engine_cache(j->e);
	unsigned n = pgcache_parts(c), worst = 0;
	uint64_t ps = engine_page_size(j->e), total = 0, limit = 0;
	uint64_t *need = calloc(n, sizeof(*need));
	char a[32], b[32], d[32], e[32];

	if (!need)
		return true;
	for (size_t i = 0; i < j->nfiles; i++) {
		struct job_file *f = &j->files[i];
		struct pgkey k = { f->st.id, 0 };
		for (; k.index * ps < f->st.size; k.index++) {
			uint64_t cost = pgcache_hold_cost(c, MIN(ps, f->st.size - k.index * ps));
			need[pgcache_owner(c, &k)] += cost;
			total += cost;
		}
	}
	for (unsigned i = 0; i < n; i++) {
		limit += pgcache_hold_limit(c, i);
		/* need/limit compared crosswise; 128 bits so TB by TB cannot wrap */
		if ((unsigned __int128)need[i] * pgcache_hold_limit(c, worst) >
		    (unsigned __int128)need[worst] * pgcache_hold_limit(c, i))
			worst = i;
	}
	bool fits = need[worst] <= pgcache_hold_limit(c, worst);
	if (!fits)
		job_error(j, "pin: these files need %s of the %s tier%s, more than pins may hold: "
			  "%s (%d%% of it; shard %u would need %s of its %s); nothing was pinned",
			  fmt_size(total, a, sizeof(a)), engine_store(j->e) ? "SSD" : "RAM",
			  engine_store(j->e) ? " (a whole page per page)" : "", fmt_size(limit, b, sizeof(b)),
			  PIN_MAX_PCT, worst, fmt_size(need[worst], d, sizeof(d)),
			  fmt_size(pgcache_hold_limit(c, worst), e, sizeof(e)));
	free(need);
	return fits;
}

/* A pin stopped by a full shard: releases what it held, so it pins all or nothing. */
static void pin_rollback(struct job *j)
{
	char a[32];
	size_t n = j->nheld;

	for (size_t i = 0; i < n; i++) {
		struct job_page *jp = calloc(1, sizeof(*jp));
		if (!jp)
			break;
		page_op_init_key(&jp->op, j->e, PGOP_UNHOLD, &j->held[i].key, 0);
		job_send(j, jp);
	}
	job_wait(j);
	job_error(j, "pin: the pin limit of a shard was reached (%d%% of its %s tier, %s "
		  "per shard); the %zu pages this job had pinned were released again. "
		  "Unpin something first: `cachefsctl status` shows what is pinned", PIN_MAX_PCT,
		  engine_store(j->e) ? "SSD" : "RAM",
		  fmt_size(pgcache_hold_limit(engine_cache(j->e), 0), a, sizeof(a)), n);
	pthread_mutex_lock(&j->lock);
	j->pages_pinned -= MIN(j->pages_pinned, j->pages_unpinned);
	j->pages_unpinned = 0;
	pthread_mutex_unlock(&j->lock);
}

/* A cluster load: the other members start on their parts before this node lists its own. */
static void remote_start(struct job *j, char **rel)
{
	const char **live = calloc(j->npaths ? j->npaths : 1, sizeof(*live));
	unsigned n = 0;
	void *h;

	if (!live)
		return;
	for (unsigned i = 0; i < j->npaths; i++)
		if (rel[i])
			live[n++] = rel[i];
	h = n ? j->cl->start(live, n, j->parallel) : NULL;
	free(live);
	pthread_mutex_lock(&j->lock);
	j->remote = h;
	pthread_mutex_unlock(&j->lock);
}

/* Waits for the other members' parts; their errors become the job's. */
static void remote_finish(struct job *j)
{
	json_t *last, *node, *e;
	size_t i, k;

	if (!j->remote)
		return;
	j->cl->wait(j->remote, &j->cancel);
	pthread_mutex_lock(&j->lock);     /* job_json reads j->remote under it */
	last = j->cl->progress(j->remote);
	j->cl->free(j->remote);
	j->remote = NULL;
	j->remote_last = last;
	pthread_mutex_unlock(&j->lock);
	json_array_foreach(last, i, node) {
		json_array_foreach(json_object_get(node, "errors"), k, e)
			job_error(j, "node %s: %s", json_string_value(json_object_get(node, "node")),
				  json_string_value(e) ? json_string_value(e) : "?");
	}
}

static void *job_main(void *arg)
{
	struct job *j = arg;
	char **rel = calloc(j->npaths ? j->npaths : 1, sizeof(*rel));

	bool cluster = rel && j->scope == JOB_CLUSTER && j->cl;

	/* The other members start on their parts first; else each path's errors come in order. */
	for (unsigned i = 0; cluster && i < j->npaths; i++)
		rel[i] = source_path(j, j->paths[i]);
	if (cluster)
		remote_start(j, rel);
	for (unsigned i = 0; rel && i < j->npaths && !atomic_load(&j->cancel); i++) {
		char etag[UFS_ETAG_MAX];
		struct ufs_stat st;
		int rc;

		if (!cluster)
			rel[i] = source_path(j, j->paths[i]);
		if (!rel[i])
			continue;
		rc = engine_src_stat(j->e, rel[i], &st, etag);
		if (rc)
			job_error(j, "%s: %s", j->paths[i], strerror(-rc));
		else
			walk(j, rel[i], j->paths[i], &st, etag, 0);
	}
	for (unsigned i = 0; rel && i < j->npaths; i++)
		free(rel[i]);
	free(rel);
	pthread_mutex_lock(&j->lock);
	j->state = CTL_JOB_RUNNING;
	pthread_mutex_unlock(&j->lock);
	bool refused = j->kind == CTL_JOB_PIN && !atomic_load(&j->cancel) && !pin_fits(j);
	if (j->all)
		run_unpin_all(j);
	else if (!refused)
		run_pages(j);
	if (atomic_load(&j->full))
		pin_rollback(j);
	remote_finish(j);
	pthread_mutex_lock(&j->lock);
	j->state = refused || atomic_load(&j->full) ? CTL_JOB_FAILED :
		   atomic_load(&j->cancel) ? CTL_JOB_CANCELLED : CTL_JOB_DONE;
	j->t_end = now_ns();
	pthread_mutex_unlock(&j->lock);
	log_info("job %u (%s) %s: %llu of %zu files, %llu bytes, %u errors", j->id,
		 kind_names[j->kind], state_names[j->state],
		 (unsigned long long)j->files_done, j->nfiles, (unsigned long long)j->bytes_done,
		 j->nerrors);
	atomic_store(&j->finished, true);
	return NULL;
}

/* ---- the table ---- */

static void job_free(struct job *j)
{
	if (!j->joined)
		pthread_join(j->thread, NULL);
	for (size_t i = 0; i < j->nfiles; i++) {
		free(j->files[i].path);
		free(j->files[i].etag);
	}
	free(j->files);
	for (unsigned i = 0; i < j->npaths; i++)
		free(j->paths[i]);
	free(j->paths);
	free(j->held);
	json_decref(j->remote_last);
	for (unsigned i = 0; i < MIN(j->nerrors, JOB_MAX_ERRORS); i++)
		free(j->errors[i]);
	pthread_mutex_destroy(&j->lock);
	pthread_cond_destroy(&j->cond);
	free(j);
}

struct jobs *jobs_create(struct engine *e)
{
	struct jobs *t = calloc(1, sizeof(*t));

	if (t) {
		t->e = e;
		pthread_mutex_init(&t->lock, NULL);
	}
	return t;
}

void jobs_set_cluster(struct jobs *t, const struct jobs_cluster *c)
{
	pthread_mutex_lock(&t->lock);
	t->cl = c;
	pthread_mutex_unlock(&t->lock);
}

void jobs_destroy(struct jobs *t)
{
	if (!t)
		return;
	for (struct job *j = t->list; j; j = j->next)
		job_cancel(j);
	while (t->list) {
		struct job *j = t->list;
		t->list = j->next;
		job_free(j);
	}
	pthread_mutex_destroy(&t->lock);
	free(t);
}

void job_wait_finished(struct job *j)
{
	if (!j->joined)
		pthread_join(j->thread, NULL);
	j->joined = true;
}

void jobs_trim(struct jobs *t, bool (*keep)(const struct job *j, void *arg), void *arg)
{
	unsigned kept = 0;

	pthread_mutex_lock(&t->lock);
	for (struct job **pp = &t->list; *pp;) {
		struct job *j = *pp;
		if (job_finished(j) && !(keep && keep(j, arg)) && ++kept > JOB_KEEP) {
			*pp = j->next;
			job_free(j);
		} else {
			pp = &j->next;
		}
	}
	pthread_mutex_unlock(&t->lock);
}

struct job *jobs_find(struct jobs *t, unsigned id)
{
	struct job *j;

	pthread_mutex_lock(&t->lock);
	for (j = t->list; j && j->id != id; j = j->next)
		;
	pthread_mutex_unlock(&t->lock);
	return j;
}

json_t *jobs_json_of(struct jobs *t, unsigned id, bool cancel)
{
	json_t *o = NULL;

	pthread_mutex_lock(&t->lock);     /* no trim frees it meanwhile */
	for (struct job *j = t->list; j; j = j->next) {
		if (j->id != id)
			continue;
		if (cancel)
			job_cancel(j);
		o = job_json(j);
		break;
	}
	pthread_mutex_unlock(&t->lock);
	return o;
}

unsigned jobs_running(struct jobs *t)
{
	unsigned n = 0;

	pthread_mutex_lock(&t->lock);
	for (struct job *j = t->list; j; j = j->next)
		n += !job_finished(j);
	pthread_mutex_unlock(&t->lock);
	return n;
}

/*
 * Under j->lock: a cluster load's parts, this node's first, into o's
 * "nodes"; o's totals become the cluster's (files: the fewest any node
 * finished, since each walks every file).
 */
static void add_nodes(struct job *j, json_t *o)
{
	json_t *others = j->remote ? j->cl->progress(j->remote) : json_incref(j->remote_last);
	json_t *nodes = json_array(), *n;
	uint64_t files = j->files_done, done = j->bytes_done, total = j->bytes_total;
	unsigned errors = j->nerrors;
	size_t i;

	json_array_append_new(nodes, json_pack("{s:s, s:s, s:I, s:I, s:I, s:I}", "node", j->cl->self,
					       "state", state_names[j->state], "files_done", (json_int_t)j->files_done,
					       "bytes_done", (json_int_t)j->bytes_done,
					       "bytes_total", (json_int_t)j->bytes_total, "error_count",
					       (json_int_t)j->nerrors));
	json_array_foreach(others, i, n) {
		files = MIN(files, (uint64_t)json_integer_value(json_object_get(n, "files_done")));
		done += (uint64_t)json_integer_value(json_object_get(n, "bytes_done"));
		total += (uint64_t)json_integer_value(json_object_get(n, "bytes_total"));
		if (!j->remote_last)    /* once they ended, their errors are the job's own */
			errors += (unsigned)json_integer_value(json_object_get(n, "error_count"));
		json_array_append(nodes, n);
	}
	json_decref(others);
	json_object_set_new(o, "files_done", json_integer((json_int_t)files));
	json_object_set_new(o, "bytes_done", json_integer((json_int_t)done));
	json_object_set_new(o, "bytes_total", json_integer((json_int_t)total));
	json_object_set_new(o, "error_count", json_integer(errors));
	json_object_set_new(o, "nodes", nodes);
}

json_t *job_json(struct job *j)
{
	json_t *o, *errs = json_array();
	double secs;

	pthread_mutex_lock(&j->lock);
	secs = (double)((j->t_end ? j->t_end : now_ns()) - j->t_start) / 1e9;
	for (unsigned i = 0; i < MIN(j->nerrors, JOB_MAX_ERRORS); i++)
		json_array_append_new(errs, ctl_json_text(j->errors[i] ? j->errors[i] : "?"));
	o = json_pack("{s:I, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:o}",
		      "job", (json_int_t)j->id, "kind", kind_names[j->kind],
		      "state", state_names[j->state], "files_done", (json_int_t)j->files_done,
		      "files_total", (json_int_t)j->nfiles, "bytes_done", (json_int_t)j->bytes_done,
		      "bytes_total", (json_int_t)j->bytes_total,
		      "pages_dropped", (json_int_t)j->pages_dropped,
		      "pages_busy", (json_int_t)j->pages_busy, "pages_kept", (json_int_t)j->pages_kept,
		      "pages_pinned", (json_int_t)j->pages_pinned,
		      "pages_unpinned", (json_int_t)j->pages_unpinned, "error_count", (json_int_t)j->nerrors,
		      "seconds", secs, "errors", errs);
	if (o && j->scope == JOB_CLUSTER && j->cl)
		add_nodes(j, o);
	pthread_mutex_unlock(&j->lock);
	return o;
}

json_t *jobs_json(struct jobs *t)
{
	json_t *arr = json_array();

	pthread_mutex_lock(&t->lock);
	for (struct job *j = t->list; j; j = j->next)
		json_array_append_new(arr, job_json(j));
	pthread_mutex_unlock(&t->lock);
	return arr;
}

struct job *jobs_start(struct jobs *t, const struct job_spec *s, char *err, size_t errlen)
{
	enum ctl_job_kind kind = s->kind;
	const char *const *paths = s->paths;
	unsigned n = s->all ? 0 : s->n;
	bool all = s->all;
	struct job *j;
	int rc;

	if (jobs_running(t) >= CTL_MAX_JOBS) {
		snprintf(err, errlen, "%d jobs are running already: wait for one or cancel it "
			 "(cachefsctl jobs lists them)", CTL_MAX_JOBS);
		return NULL;
	}
	j = calloc(1, sizeof(*j));
	if (!j || !(j->paths = calloc(n ? n : 1, sizeof(*j->paths)))) {
		free(j);
		snprintf(err, errlen, "%s", strerror(ENOMEM));
		return NULL;
	}
	for (unsigned i = 0; i < n; i++)
		if ((j->paths[j->npaths] = strdup(paths[i])))
			j->npaths++;
	j->kind = kind;
	j->all = all;
	j->parallel = s->parallel;
	j->source_paths = s->source_paths;
	j->scope = kind == CTL_JOB_LOAD ? s->scope : JOB_HERE;

	j->e = t->e;
	j->t_start = now_ns();
	pthread_mutex_init(&j->lock, NULL);
	pthread_cond_init(&j->cond, NULL);
	pthread_mutex_lock(&t->lock);
	j->id = ++t->next_id;
	j->cl = t->cl;
	pthread_mutex_unlock(&t->lock);
	rc = pthread_create(&j->thread, NULL, job_main, j);
	if (rc) {
		for (unsigned i = 0; i < j->npaths; i++)
			free(j->paths[i]);
		free(j->paths);
		pthread_mutex_destroy(&j->lock);
		pthread_cond_destroy(&j->cond);
		free(j);
		snprintf(err, errlen, "%s", strerror(rc));
		return NULL;
	}
	pthread_mutex_lock(&t->lock);
	j->next = t->list;
	t->list = j;
	pthread_mutex_unlock(&t->lock);
	if (all)
		log_info("job %u: unpin of every pinned page started", j->id);
	else
		log_info("job %u: %s of %u path%s started", j->id, kind_names[kind], j->npaths,
			 j->npaths == 1 ? "" : "s");
	return j;
}
