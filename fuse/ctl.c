/*
 * Control server. Requests and replies are JSON objects, one per line
 * (jansson): {"cmd":"status"}, {"cmd":"load","paths":[...],"parallel":N},
 * {"cmd":"evict","paths":[...]}, {"cmd":"pin","paths":[...],"parallel":N},
 * {"cmd":"unpin","paths":[...]} or {"cmd":"unpin","all":true},
 * {"cmd":"jobs"}, {"cmd":"cancel","job":ID}, {"cmd":"watch","job":ID}. A
 * watched job sends a progress line every 200 ms and a last one with its
 * final state. Jobs belong to the daemon, not to the connection: a load goes
 * on when its client goes away.
 */
#include "config.h"
#include "fuse/ctl.h"
#include "fuse/fs_i.h"
#include "fuse/inode_i.h"
#include "core/log.h"
#include "core/shard.h"
#include "core/util.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <jansson.h>
#include <poll.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define CTL_MAX_CLIENTS 64
#define CTL_MAX_LINE (1 << 20)
#define JOB_MAX_ERRORS 32
#define JOB_KEEP 32            /* finished jobs kept for `jobs` */
#define PROGRESS_NS 200000000ULL

enum job_kind { JOB_LOAD, JOB_EVICT, JOB_PIN, JOB_UNPIN };
static const char *const kind_names[] = { "load", "evict", "pin", "unpin" };
enum job_state { JOB_LISTING, JOB_RUNNING, JOB_DONE, JOB_CANCELLED, JOB_FAILED };
static const char *const state_names[] = { "listing", "running", "done", "cancelled", "failed" };

struct job_file {
	char *path;
	uint64_t size, version;
	struct ufs_file *uf;       /* open while its pages load */
	uint64_t pages_left;       /* under the job's lock */
	bool failed;
};

/* A job's counters are under `lock`; the rest is set before its thread. */
struct job {
	unsigned id;
	enum job_kind kind;
	unsigned parallel;          /* page gets in flight */
	char **paths;
	unsigned npaths;
	bool all;                   /* unpin: every pinned page */
	struct cachefs *fs;
	pthread_t thread;
	atomic_bool cancel;
	atomic_bool finished;       /* the thread is about to return */
	atomic_bool full;           /* pin: a shard's hold limit was reached */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	enum job_state state;
	struct job_file *files;
	size_t nfiles, capfiles;
	uint64_t files_done, bytes_total, bytes_done, pages_dropped, pages_busy;
	uint64_t pages_pinned, pages_unpinned, pages_kept;
	struct job_held *held;      /* pin: pages this job held, for a rollback */
	size_t nheld, capheld;
	unsigned inflight;
	char *errors[JOB_MAX_ERRORS];
	unsigned nerrors;           /* all of them; the first JOB_MAX_ERRORS kept */
	uint64_t t_start, t_end;
	struct job *next;
};

struct job_held {
	struct pgkey key;
	unsigned owner;
};

struct job_page {
	struct shard_msg msg;
	union {
		struct pgcache_waiter w;
		struct pgcache_hold hold;
	};
	struct pgcache_fetch fetch;
	struct pgkey key;
	uint64_t want;
	struct job *job;
	struct job_file *file;
	unsigned owner;
};

struct client {
	int fd;
	char *buf;
	size_t len;
	struct job *watch;          /* progress goes to this client */
	uint64_t last_push;
};

/* Owned by the control thread, except where noted. */
static struct {
	struct cachefs *fs;
	int lfd;
	int wake[2];                /* SIGHUP and stop write here */
	char path[108];
	pthread_t thread;
	bool running;
	atomic_bool stop;
	volatile sig_atomic_t reload;
	ctl_reload_fn reload_fn;
	void *reload_arg;
	struct client clients[CTL_MAX_CLIENTS];
	unsigned nclients;
	struct job *jobs;           /* newest first */
	unsigned next_id;
} ctl = { .lfd = -1, .wake = { -1, -1 } };

/* ---- jobs ---- */

__attribute__((format(printf, 2, 3)))
static void job_error(struct job *j, const char *fmt, ...)
{
	char line[PATH_MAX + 128];
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

static int job_add_file(struct job *j, const char *path, const struct ufs_stat *st)
{
	pthread_mutex_lock(&j->lock);
	if (j->nfiles == j->capfiles) {
		size_t cap = j->capfiles ? j->capfiles * 2 : 256;
		struct job_file *n = realloc(j->files, cap * sizeof(*n));
		if (!n) {
			pthread_mutex_unlock(&j->lock);
			return -ENOMEM;
		}
		j->files = n;
		j->capfiles = cap;
	}
	j->files[j->nfiles] = (struct job_file){ .path = strdup(path), .size = st->size,
						 .version = st->version };
	j->bytes_total += st->size;
	j->nfiles++;
	pthread_mutex_unlock(&j->lock);
	return 0;
}

struct walk_dir {
	char **names;
	size_t n, cap;
};

static int walk_collect(void *arg, const char *name, const struct ufs_stat *st)
{
	struct walk_dir *d = arg;

	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 64;
		char **n = realloc(d->names, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		d->names = n;
		d->cap = cap;
	}
	d->names[d->n] = strdup(name);
	return d->names[d->n++] ? 0 : -ENOMEM;
}

/* Adds the regular files at and under `path` (relative to the root). */
static void walk(struct job *j, const char *path, const char *shown)
{
	struct cachefs *fs = j->fs;
	struct walk_dir d = { 0 };
	struct ufs_stat st;
	int rc;

	if (atomic_load(&j->cancel))
		return;
	rc = fs_src_stat(fs, path, &st);
	if (rc) {
		job_error(j, "%s: %s", shown, strerror(-rc));
		return;
	}
	if (S_ISREG(st.mode)) {
		if (job_add_file(j, path, &st))
			job_error(j, "%s: %s", shown, strerror(ENOMEM));
		return;
	}
	if (!S_ISDIR(st.mode))
		return;
	rc = fs_src_list(fs, path, walk_collect, &d);
	if (rc)
		job_error(j, "%s: listing: %s", shown, strerror(-rc));
	for (size_t i = 0; i < d.n; i++) {
		char *sub, *sub_shown;
		if (asprintf(&sub, "%s%s%s", path, *path ? "/" : "", d.names[i]) >= 0) {
			if (asprintf(&sub_shown, "%s/%s", shown, d.names[i]) >= 0) {
				walk(j, sub, sub_shown);
				free(sub_shown);
			}
			free(sub);
		}
		free(d.names[i]);
	}
	free(d.names);
}

/* Under j->lock: drops a reference to f (its pages, and the sender's). */
static void file_put(struct job *j, struct job_file *f)
{
	if (!f || --f->pages_left)
		return;
	j->files_done++;
	if (f->uf) {
		ufs_file_put(f->uf);
		f->uf = NULL;
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

/* Under j->lock, on the page's owner shard: one page of f finished. */
static void page_finished(struct job *j, struct job_file *f, uint64_t bytes)
{
	j->bytes_done += bytes;
	j->inflight--;
	file_put(j, f);
	pthread_cond_signal(&j->cond);
}

static void load_page_done(struct pgcache_waiter *w, struct page *pg, int err)
{
	struct job_page *jp = container_of(w, struct job_page, w);
	struct job *j = jp->job;
	uint64_t got = pg ? page_len(pg) : 0;

	bool first_error;

	if (pg)
		pgcache_unpin(pg);
	pthread_mutex_lock(&j->lock);
	first_error = err && first_failure(jp->file);
	page_finished(j, jp->file, got);
	pthread_mutex_unlock(&j->lock);
	/* One message per file, not per page. */
	if (first_error)
		job_error(j, "%s: %s", jp->file->path, strerror(-err));
	free(jp);
}

static void load_page_run(struct shard_msg *m)
{
	struct job_page *jp = container_of(m, struct job_page, msg);

	jp->w.cb = load_page_done;
	pgcache_get(jp->job->fs->cache, jp->owner, &jp->key, jp->want, &jp->fetch, &jp->w);
}

static void evict_page_run(struct shard_msg *m)
{
	struct job_page *jp = container_of(m, struct job_page, msg);
	struct job *j = jp->job;
	int rc = pgcache_drop(j->fs->cache, jp->owner, &jp->key);

	pthread_mutex_lock(&j->lock);
	if (rc == 0)
		j->pages_dropped++;
	else if (rc == -EBUSY)
		j->pages_busy++;
	else if (rc == -EPERM)
		j->pages_kept++;
	page_finished(j, jp->file, rc == 0 ? jp->want : 0);
	pthread_mutex_unlock(&j->lock);
	free(jp);
}

static void pin_page_done(struct pgcache_hold *h, int res)
{
	struct job_page *jp = container_of(h, struct job_page, hold);
	struct job *j = jp->job;
	bool first_error = false;

	pthread_mutex_lock(&j->lock);
	if (res == 0 && j->nheld == j->capheld) {
		size_t cap = j->capheld ? j->capheld * 2 : 1024;
		struct job_held *n = realloc(j->held, cap * sizeof(*n));
		if (n) {
			j->held = n;
			j->capheld = cap;
		}
	}
	if (res == 0 && j->nheld < j->capheld) {
		j->held[j->nheld++] = (struct job_held){ jp->key, jp->owner };
	} else if (res == 0) {
		/* No room to remember it for a rollback: not held, then (we are
		 * its owner shard). */
		pgcache_unhold(j->fs->cache, jp->owner, &jp->key);
		res = -ENOMEM;
	}
	if (res >= 0) {
		j->pages_pinned++;
	} else if (res == -ENOSPC) {
		atomic_store(&j->full, true);
	} else {
		first_error = first_failure(jp->file);
	}
	page_finished(j, jp->file, res >= 0 ? jp->want : 0);
	pthread_mutex_unlock(&j->lock);
	if (first_error)
		job_error(j, "%s: %s", jp->file->path, strerror(-res));
	free(jp);
}

static void pin_page_run(struct shard_msg *m)
{
	struct job_page *jp = container_of(m, struct job_page, msg);

	jp->hold.done = pin_page_done;
	pgcache_hold(jp->job->fs->cache, jp->owner, &jp->key, jp->want, &jp->fetch, &jp->hold);
}

static void unpin_page_run(struct shard_msg *m)
{
	struct job_page *jp = container_of(m, struct job_page, msg);
	struct job *j = jp->job;
	int rc = pgcache_unhold(j->fs->cache, jp->owner, &jp->key);

	pthread_mutex_lock(&j->lock);
	j->pages_unpinned += rc == 0;
	page_finished(j, jp->file, rc == 0 ? jp->want : 0);
	pthread_mutex_unlock(&j->lock);
	free(jp);
}

static void unpin_all_run(struct shard_msg *m)
{
	struct job_page *jp = container_of(m, struct job_page, msg);
	struct job *j = jp->job;
	uint64_t n = pgcache_unhold_all(j->fs->cache, jp->owner);

	pthread_mutex_lock(&j->lock);
	j->pages_unpinned += n;
	page_finished(j, NULL, 0);
	pthread_mutex_unlock(&j->lock);
	free(jp);
}

static void (*const page_run[])(struct shard_msg *m) = {
	[JOB_LOAD] = load_page_run, [JOB_EVICT] = evict_page_run,
	[JOB_PIN] = pin_page_run, [JOB_UNPIN] = unpin_page_run,
};

/* Sends jp to its owner once fewer than the job's window are in flight. */
static void job_send(struct job *j, struct job_page *jp, void (*fn)(struct shard_msg *m))
{
	pthread_mutex_lock(&j->lock);
	while (j->inflight >= j->parallel)
		pthread_cond_wait(&j->cond, &j->lock);
	j->inflight++;
	if (jp->file)
		jp->file->pages_left++;
	pthread_mutex_unlock(&j->lock);
	jp->job = j;
	shard_send(shard_get(jp->owner), &jp->msg, fn);
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

/* Sends every page of every file to its owner, `window` at a time. */
static void run_pages(struct job *j)
{
	struct cachefs *fs = j->fs;
	uint64_t ps = fs->ra.page_size;

	for (size_t i = 0; i < j->nfiles && !job_stopped(j); i++) {
		struct job_file *f = &j->files[i];
		uint64_t npages = (f->size + ps - 1) / ps;
		uint64_t fid = file_id(f->path, f->version);

		if ((j->kind == JOB_LOAD || j->kind == JOB_PIN) && npages) {
			int rc = fs_src_open(fs, f->path, &f->uf);
			if (rc) {
				job_error(j, "%s: %s", f->path, strerror(-rc));
				npages = 0;
			}
		}
		pthread_mutex_lock(&j->lock);
		f->pages_left = 1;   /* this loop's reference, until it sent them all */
		pthread_mutex_unlock(&j->lock);
		for (uint64_t p = 0; p < npages && !job_stopped(j); p++) {
			struct job_page *jp = calloc(1, sizeof(*jp));
			if (!jp) {
				job_error(j, "%s: %s", f->path, strerror(ENOMEM));
				break;
			}
			jp->file = f;
			jp->key.file = fid;
			jp->key.index = p;
			jp->want = MIN(ps, f->size - p * ps);
			jp->owner = pgcache_owner(fs->cache, &jp->key);
			jp->fetch.start = fs_fetch_start;
			jp->fetch.ctx = f->uf;
			jp->fetch.version = f->version;
			job_send(j, jp, page_run[j->kind]);
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
	for (unsigned i = 0; i < pgcache_parts(j->fs->cache); i++) {
		struct job_page *jp = calloc(1, sizeof(*jp));
		if (!jp) {
			job_error(j, "unpin: %s", strerror(ENOMEM));
			break;
		}
		jp->owner = i;
		job_send(j, jp, unpin_all_run);
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
	struct pgcache *c = j->fs->cache;
	unsigned n = pgcache_parts(c), worst = 0;
	uint64_t ps = j->fs->ra.page_size, total = 0, limit = 0;
	uint64_t *need = calloc(n, sizeof(*need));
	char a[32], b[32], d[32], e[32];

	if (!need)
		return true;
	for (size_t i = 0; i < j->nfiles; i++) {
		struct job_file *f = &j->files[i];
		struct pgkey k = { file_id(f->path, f->version), 0 };
		for (; k.index * ps < f->size; k.index++) {
			uint64_t cost = pgcache_hold_cost(c, MIN(ps, f->size - k.index * ps));
			need[pgcache_owner(c, &k)] += cost;
			total += cost;
		}
	}
	for (unsigned i = 0; i < n; i++) {
		limit += pgcache_hold_limit(c, i);
		if (need[i] * pgcache_hold_limit(c, worst) > need[worst] * pgcache_hold_limit(c, i))
			worst = i;
	}
	bool fits = need[worst] <= pgcache_hold_limit(c, worst);
	if (!fits)
		job_error(j, "pin: these files need %s of the %s tier%s, more than pins may hold: "
			  "%s (%d%% of it; shard %u would need %s of its %s); nothing was pinned",
			  fmt_size(total, a, sizeof(a)), j->fs->store ? "SSD" : "RAM",
			  j->fs->store ? " (a whole page per page)" : "", fmt_size(limit, b, sizeof(b)),
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
		jp->key = j->held[i].key;
		jp->owner = j->held[i].owner;
		job_send(j, jp, unpin_page_run);
	}
	job_wait(j);
	job_error(j, "pin: the pin limit of a shard was reached (%d%% of its %s tier, %s "
		  "per shard); the %zu pages this job had pinned were released again. "
		  "Unpin something first: `cachefsctl status` shows what is pinned", PIN_MAX_PCT,
		  j->fs->store ? "SSD" : "RAM", fmt_size(pgcache_hold_limit(j->fs->cache, 0), a, sizeof(a)), n);
	pthread_mutex_lock(&j->lock);
	j->pages_pinned -= MIN(j->pages_pinned, j->pages_unpinned);
	j->pages_unpinned = 0;
	pthread_mutex_unlock(&j->lock);
}

static void *job_main(void *arg)
{
	struct job *j = arg;
	struct cachefs *fs = j->fs;
	size_t mlen = strlen(fs->mnt);

	for (unsigned i = 0; i < j->npaths && !atomic_load(&j->cancel); i++) {
		const char *p = j->paths[i];
		char *rel;
		bool dir;

		/* Clients send absolute paths; ours are relative to the root. */
		if (strncmp(p, fs->mnt, mlen) || (p[mlen] && p[mlen] != '/' && strcmp(fs->mnt, "/"))) {
			job_error(j, "%s: not under the mount point %s", p, fs->mnt);
			continue;
		}
		rel = strdup(p + (strcmp(fs->mnt, "/") ? mlen : 0));
		if (!rel || path_clean(rel, &dir))
			job_error(j, "%s: not a plain path", p);
		else
			walk(j, rel, p);
		free(rel);
	}
	pthread_mutex_lock(&j->lock);
	j->state = JOB_RUNNING;
	pthread_mutex_unlock(&j->lock);
	bool refused = j->kind == JOB_PIN && !atomic_load(&j->cancel) && !pin_fits(j);
	if (j->all)
		run_unpin_all(j);
	else if (!refused)
		run_pages(j);
	if (atomic_load(&j->full))
		pin_rollback(j);
	pthread_mutex_lock(&j->lock);
	j->state = refused || atomic_load(&j->full) ? JOB_FAILED :
		   atomic_load(&j->cancel) ? JOB_CANCELLED : JOB_DONE;
	j->t_end = now_ns();
	pthread_mutex_unlock(&j->lock);
	log_info("job %u (%s) %s: %llu of %zu files, %llu bytes, %u errors", j->id,
		 kind_names[j->kind], state_names[j->state],
		 (unsigned long long)j->files_done, j->nfiles, (unsigned long long)j->bytes_done,
		 j->nerrors);
	atomic_store(&j->finished, true);
	return NULL;
}

static void job_free(struct job *j)
{
	pthread_join(j->thread, NULL);
	for (size_t i = 0; i < j->nfiles; i++)
		free(j->files[i].path);
	free(j->files);
	for (unsigned i = 0; i < j->npaths; i++)
		free(j->paths[i]);
	free(j->paths);
	free(j->held);
	for (unsigned i = 0; i < MIN(j->nerrors, JOB_MAX_ERRORS); i++)
		free(j->errors[i]);
	pthread_mutex_destroy(&j->lock);
	pthread_cond_destroy(&j->cond);
	free(j);
}

/* Keeps the newest JOB_KEEP finished jobs that no client watches. */
static void jobs_trim(void)
{
	unsigned kept = 0;

	for (struct job **pp = &ctl.jobs; *pp;) {
		struct job *j = *pp;
		bool watched = false;
		for (unsigned c = 0; c < ctl.nclients; c++)
			watched |= ctl.clients[c].watch == j;
		if (atomic_load(&j->finished) && !watched && ++kept > JOB_KEEP) {
			*pp = j->next;
			job_free(j);
		} else {
			pp = &j->next;
		}
	}
}

static struct job *job_find(unsigned id)
{
	for (struct job *j = ctl.jobs; j; j = j->next)
		if (j->id == id)
			return j;
	return NULL;
}

static json_t *job_json(struct job *j)
{
	json_t *o, *errs = json_array();
	double secs;

	pthread_mutex_lock(&j->lock);
	secs = (double)((j->t_end ? j->t_end : now_ns()) - j->t_start) / 1e9;
	for (unsigned i = 0; i < MIN(j->nerrors, JOB_MAX_ERRORS); i++)
		json_array_append_new(errs, json_string(j->errors[i] ? j->errors[i] : "?"));
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
	pthread_mutex_unlock(&j->lock);
	return o;
}

static json_t *job_start(enum job_kind kind, json_t *paths, bool all, unsigned parallel)
{
	struct job *j = calloc(1, sizeof(*j));
	size_t n = json_array_size(paths);
	int rc;

	if (!j)
		return json_pack("{s:b, s:s}", "ok", 0, "error", strerror(ENOMEM));
	j->paths = calloc(n ? n : 1, sizeof(*j->paths));
	for (size_t i = 0; i < n; i++)
		if (j->paths && json_is_string(json_array_get(paths, i)))
			j->paths[j->npaths++] = strdup(json_string_value(json_array_get(paths, i)));
	j->id = ++ctl.next_id;
	j->kind = kind;
	j->all = all;
	j->parallel = parallel;
	j->fs = ctl.fs;
	j->t_start = now_ns();
	pthread_mutex_init(&j->lock, NULL);
	pthread_cond_init(&j->cond, NULL);
	rc = pthread_create(&j->thread, NULL, job_main, j);
	if (rc) {
		for (unsigned i = 0; i < j->npaths; i++)
			free(j->paths[i]);
		free(j->paths);
		free(j);
		return json_pack("{s:b, s:s}", "ok", 0, "error", strerror(rc));
	}
	j->next = ctl.jobs;
	ctl.jobs = j;
	if (all)
		log_info("job %u: unpin of every pinned page started", j->id);
	else
		log_info("job %u: %s of %u path%s started", j->id, kind_names[kind], j->npaths,
			 j->npaths == 1 ? "" : "s");
	return json_pack("{s:b, s:I}", "ok", 1, "job", (json_int_t)j->id);
}

/* ---- status ---- */

static json_t *status_json(void)
{
	struct cachefs *fs = ctl.fs;
	struct pgcache_stats t;
	struct pgstore_stats s = { 0 };
	unsigned running = 0;
	uint64_t looked;
	json_t *o;

	pgcache_stats_total(fs->cache, &t);
	if (fs->store)
		pgstore_stats_total(fs->store, &s);
	for (struct job *j = ctl.jobs; j; j = j->next)
		running += !atomic_load(&j->finished);
	looked = t.hits + t.joins + t.misses;
	o = json_pack("{s:b, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I}", "ok", 1, "version",
		      PACKAGE_VERSION, "source", fs->source, "mountpoint", fs->mnt, "pid",
		      (json_int_t)getpid(), "uptime_s", (json_int_t)(time(NULL) - fs->started),
		      "shards", (json_int_t)shard_count(), "open_files",
		      (json_int_t)atomic_load(&fs->open_files), "jobs_running", (json_int_t)running);
	json_object_set_new(o, "ram", json_pack("{s:I, s:I, s:I, s:I, s:I}", "used",
		(json_int_t)t.bytes, "capacity", (json_int_t)fs->cfg.ram_cache, "pages",
		(json_int_t)t.pages, "hits", (json_int_t)t.hits, "bytes_served",
		(json_int_t)t.bytes_hit));
	json_object_set_new(o, "ssd", fs->store ? json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}",
		"used", (json_int_t)s.bytes, "capacity", (json_int_t)s.capacity, "pages",
		(json_int_t)s.pages, "hits", (json_int_t)s.hits, "bytes_served",
		(json_int_t)s.bytes_read, "corrupt", (json_int_t)s.corrupt) : json_null());
	json_object_set_new(o, "source_reads", json_pack("{s:I, s:I, s:I, s:I}", "fetches",
		(json_int_t)t.fetches, "in_flight", (json_int_t)(t.fetches - t.fetches_done),
		"errors", (json_int_t)t.fetch_errors, "bytes", (json_int_t)t.bytes_fetched));
	json_object_set_new(o, "hit_ratio",
		json_real(looked ? (double)(looked - MIN(t.fetches, looked)) / (double)looked : 0));
	json_object_set_new(o, "evictions", json_integer((json_int_t)(t.evictions + s.evictions)));
	uint64_t held, limit;
	pgcache_held_total(fs->cache, &held, &limit);
	json_object_set_new(o, "pinned", json_pack("{s:I, s:I, s:s}", "bytes", (json_int_t)held,
		"limit", (json_int_t)limit, "tier", fs->store ? "ssd" : "ram"));
	return o;
}

/* ---- the connection side ---- */

static void client_send(struct client *c, json_t *o)
{
	char *s = json_dumps(o, JSON_COMPACT);
	size_t len, off = 0;

	json_decref(o);
	if (!s)
		return;
	len = strlen(s);
	s[len++] = '\n';   /* json_dumps left room: its NUL */
	while (off < len) {
		ssize_t w = send(c->fd, s + off, len - off, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;     /* gone: poll reports the hang-up */
		off += (size_t)w;
	}
	free(s);
}

__attribute__((format(printf, 1, 2)))
static json_t *err_reply(const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return json_pack("{s:b, s:s}", "ok", 0, "error", msg);
}

static int job_kind_of(const char *cmd)
{
	for (unsigned k = 0; k < ARRAY_SIZE(kind_names); k++)
		if (!strcmp(cmd, kind_names[k]))
			return (int)k;
	return -1;
}

static void handle(struct client *c, const char *line)
{
	json_error_t jerr;
	json_t *req = json_loads(line, 0, &jerr), *paths;
	const char *cmd;
	json_int_t id = 0, parallel = 16;

	if (!req || json_unpack(req, "{s:s}", "cmd", &cmd)) {
		client_send(c, err_reply("bad request: %s", req ? "no \"cmd\"" : jerr.text));
		json_decref(req);
		return;
	}
	if (!strcmp(cmd, "status") || !strcmp(cmd, "stats")) {
		client_send(c, status_json());
	} else if (job_kind_of(cmd) >= 0) {
		int all = 0;
		paths = json_object_get(req, "paths");
		json_unpack(req, "{s?I, s?b}", "parallel", &parallel, "all", &all);
		if (all && strcmp(cmd, "unpin"))
			client_send(c, err_reply("%s: \"all\" is for unpin only", cmd));
		else if (!all && (!json_is_array(paths) || !json_array_size(paths)))
			client_send(c, err_reply("%s: no paths", cmd));
		else if (parallel < 1 || parallel > 1024)
			client_send(c, err_reply("%s: parallel must be 1 to 1024", cmd));
		else
			client_send(c, job_start((enum job_kind)job_kind_of(cmd), all ? NULL : paths,
						 all, (unsigned)parallel));
	} else if (!strcmp(cmd, "jobs")) {
		json_t *arr = json_array();
		for (struct job *j = ctl.jobs; j; j = j->next)
			json_array_append_new(arr, job_json(j));
		client_send(c, json_pack("{s:b, s:o}", "ok", 1, "jobs", arr));
	} else if (!strcmp(cmd, "cancel") || !strcmp(cmd, "watch")) {
		struct job *j;
		json_unpack(req, "{s?I}", "job", &id);
		j = job_find((unsigned)id);
		if (!j) {
			client_send(c, err_reply("no job %lld (cachefsctl jobs lists them)", (long long)id));
		} else if (!strcmp(cmd, "cancel")) {
			atomic_store(&j->cancel, true);
			client_send(c, json_pack("{s:b, s:I}", "ok", 1, "job", (json_int_t)j->id));
		} else {
			c->watch = j;
			c->last_push = 0;
		}
	} else {
		client_send(c, err_reply("unknown command '%s'", cmd));
	}
	json_decref(req);
}

static void client_close(unsigned i)
{
	close(ctl.clients[i].fd);
	free(ctl.clients[i].buf);
	ctl.clients[i] = ctl.clients[--ctl.nclients];
}

/* Reads what is there; runs every complete line. Returns false at EOF. */
static bool client_read(struct client *c)
{
	char tmp[65536];
	ssize_t n = recv(c->fd, tmp, sizeof(tmp), MSG_DONTWAIT);
	char *nl;

	if (n < 0)
		return errno == EINTR || errno == EAGAIN;
	if (n == 0 || c->len + (size_t)n > CTL_MAX_LINE)
		return false;
	char *b = realloc(c->buf, c->len + (size_t)n + 1);
	if (!b)
		return false;
	c->buf = b;
	memcpy(c->buf + c->len, tmp, (size_t)n);
	c->len += (size_t)n;
	c->buf[c->len] = '\0';
	while ((nl = memchr(c->buf, '\n', c->len))) {
		*nl = '\0';
		handle(c, c->buf);
		c->len -= (size_t)(nl + 1 - c->buf);
		memmove(c->buf, nl + 1, c->len + 1);
	}
	return true;
}

static void push_progress(uint64_t now)
{
	for (unsigned i = 0; i < ctl.nclients; i++) {
		struct client *c = &ctl.clients[i];
		if (!c->watch || now - c->last_push < PROGRESS_NS)
			continue;
		bool fin = atomic_load(&c->watch->finished);
		c->last_push = now;
		client_send(c, job_json(c->watch));
		if (fin)
			c->watch = NULL;
	}
}

static void accept_client(void)
{
	int fd = accept4(ctl.lfd, NULL, NULL, SOCK_CLOEXEC);

	if (fd < 0)
		return;
	if (ctl.nclients == CTL_MAX_CLIENTS) {
		struct client tmp = { .fd = fd };
		client_send(&tmp, err_reply("%s", "too many control connections"));
		close(fd);
		return;
	}
	ctl.clients[ctl.nclients++] = (struct client){ .fd = fd };
}

static void *ctl_main(void *arg)
{
	struct pollfd pfd[CTL_MAX_CLIENTS + 2];

	while (!atomic_load(&ctl.stop)) {
		unsigned n = 0;
		pfd[n++] = (struct pollfd){ .fd = ctl.wake[0], .events = POLLIN };
		pfd[n++] = (struct pollfd){ .fd = ctl.lfd, .events = POLLIN };
		for (unsigned i = 0; i < ctl.nclients; i++)
			pfd[n++] = (struct pollfd){ .fd = ctl.clients[i].fd, .events = POLLIN };
		if (poll(pfd, n, 100) < 0 && errno != EINTR)
			break;
		if (pfd[0].revents) {
			char b[64];
			while (read(ctl.wake[0], b, sizeof(b)) > 0)
				;
		}
		if (ctl.reload) {
			char msg[512];
			ctl.reload = 0;
			ctl.reload_fn(ctl.reload_arg, msg, sizeof(msg));
			log_info("SIGHUP: %s", msg);
		}
		if (pfd[1].revents & POLLIN)
			accept_client();
		/* Backwards: closing moves the last client into slot i. */
		for (unsigned i = n - 2; i-- > 0;) {
			if (i >= ctl.nclients || !pfd[i + 2].revents)
				continue;
			if (!client_read(&ctl.clients[i]))
				client_close(i);
		}
		push_progress(now_ns());
		jobs_trim();
		log_tick(false);
	}
	return NULL;
}

/* ---- start and stop ---- */

static int bind_socket(const char *path, const char *group, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char dir[sizeof(sa.sun_path)];
	char *slash;
	gid_t gid = (gid_t)-1;
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "control socket %s: path too long for a Unix socket", path);
		return -ENAMETOOLONG;
	}
	if (group && *group) {
		struct group *g = getgrnam(group);
		if (!g) {
			snprintf(err, errlen, "ctl_group=%s: no such group", group);
			return -EINVAL;
		}
		gid = g->gr_gid;
	}
	strcpy(sa.sun_path, path);
	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
			snprintf(err, errlen, "control socket directory %s: %s", dir, strerror(errno));
			return -errno;
		}
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket(AF_UNIX): %s", strerror(errno));
		return -errno;
	}
	/* A live daemon answers on it; a dead one left a file to replace. */
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
		close(fd);
		snprintf(err, errlen, "control socket %s is in use by another cachefs daemon; "
			 "give this one its own with -o ctl_socket=PATH", path);
		return -EADDRINUSE;
	}
	unlink(path);
	mode_t old = umask(0177);
	int rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (rc < 0 || listen(fd, 16) < 0 ||
	    (gid != (gid_t)-1 && (chown(path, (uid_t)-1, gid) < 0 || chmod(path, 0660) < 0))) {
		int e = errno;
		snprintf(err, errlen, "control socket %s: %s", sa.sun_path, strerror(e));
		rc = -e;
		close(fd);
		unlink(path);
		return rc;
	}
	return fd;
}

int ctl_open(const char *path, const char *group, char *err, size_t errlen)
{
	int rc = bind_socket(path, group, err, errlen);

	if (rc < 0)
		return rc;
	ctl.lfd = rc;
	snprintf(ctl.path, sizeof(ctl.path), "%s", path);
	if (pipe2(ctl.wake, O_CLOEXEC | O_NONBLOCK) < 0) {
		snprintf(err, errlen, "pipe2: %s", strerror(errno));
		rc = -errno;
		close(ctl.lfd);
		unlink(path);
		ctl.lfd = -1;
		return rc;
	}
	return 0;
}

int ctl_start(struct cachefs *fs, ctl_reload_fn reload, void *reload_arg)
{
	int rc;

	if (ctl.lfd < 0)
		return -EBADF;
	ctl.fs = fs;
	ctl.reload_fn = reload;
	ctl.reload_arg = reload_arg;
	rc = pthread_create(&ctl.thread, NULL, ctl_main, NULL);
	if (rc) {
		log_err("pthread_create(control): %s", strerror(rc));
		return -rc;
	}
	pthread_setname_np(ctl.thread, "cachefs-ctl");
	ctl.running = true;
	return 0;
}

void ctl_request_reload(void)
{
	ctl.reload = 1;
	if (ctl.wake[1] >= 0) {
		ssize_t w = write(ctl.wake[1], "h", 1);
		(void)w;
	}
}

void ctl_stop(void)
{
	if (ctl.running) {
		atomic_store(&ctl.stop, true);
		ssize_t w = write(ctl.wake[1], "s", 1);
		(void)w;
		pthread_join(ctl.thread, NULL);
		ctl.running = false;
	}
	for (struct job *j = ctl.jobs; j; j = j->next)
		atomic_store(&j->cancel, true);
	while (ctl.jobs) {
		struct job *j = ctl.jobs;
		ctl.jobs = j->next;
		job_free(j);
	}
	while (ctl.nclients)
		client_close(0);
	if (ctl.lfd >= 0) {
		close(ctl.lfd);
		unlink(ctl.path);
		close(ctl.wake[0]);
		close(ctl.wake[1]);
	}
	ctl.wake[0] = ctl.wake[1] = ctl.lfd = -1;
}
