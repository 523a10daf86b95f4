/* The engine's life, open files, counters, and blocking source calls for jobs. */
#include "config.h"
#include "engine/engine_i.h"
#include "core/log.h"
#include "core/pool.h"
#include "core/shard.h"
#include "core/util.h"

#include <errno.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* How long shutdown waits for metadata calls stuck in the kernel (NFS). */
#define POOL_STOP_MS 300

int engine_create(struct engine **out, const struct cache_opts *cfg, const struct meta_opts *meta,
		  const struct ufs_ops *ops, struct ufs *ufs)
{
	struct engine *e = calloc(1, sizeof(*e));
	uint64_t now = realtime_ns();
	/* The root's attributes until the source first gives them. */
	struct ufs_stat root = { .mode = S_IFDIR | 0755, .nlink = 2, .uid = getuid(), .gid = getgid(),
				 .mtime_ns = now, .ctime_ns = now, .atime_ns = now, .version = 1 };

	if (!e)
		return -ENOMEM;
	e->cfg = *cfg;
	e->meta = *meta;
	e->ops = ops;
	e->ufs = ufs;
	e->ns = ns_create(&root, meta->meta_cache);
	e->stale_ns = secs_to_ns(meta->stale_if_error);
	e->started = time(NULL);
	e->ra.page_size = cfg->page_size;
	e->ra.min_window = 4;
	e->ra.max_window = (uint32_t)MAX(cfg->max_readahead / cfg->page_size, 1);
	e->ra.batch = (uint32_t)MAX(PAGE_STRIPE_BYTES / cfg->page_size, 1);
	e->ra_budget.limit = cfg->readahead_budget;
	atomic_init(&e->ra_budget.used, 0);
	pthread_mutex_init(&e->files_lock, NULL);
	*out = e;
	return 0;
}

void engine_set_names(struct engine *e, const char *source, const char *mnt)
{
	snprintf(e->source, sizeof(e->source), "%s", source);
	snprintf(e->mnt, sizeof(e->mnt), "%s", mnt);
}

int engine_open_store(struct engine *e, unsigned nshards, char *err, size_t errlen)
{
	struct pgstore_opts so = {
		.nfiles = e->cfg.nssd,
		.page_size = e->cfg.page_size,
		.nparts = nshards,
		.second_touch = e->cfg.ssd_admit == SSD_ADMIT_SECOND_TOUCH,
	};

	if (!e->cfg.nssd)
		return 0;
	for (unsigned i = 0; i < e->cfg.nssd; i++) {
		so.files[i].path = e->cfg.ssd[i].path;
		so.files[i].size = e->cfg.ssd[i].size;
	}
	return pgstore_open(&e->store, &so, err, errlen);
}

int engine_start(struct engine *e)
{
	struct pgcache_opts po = {
		.page_size = e->cfg.page_size,
		.capacity = e->cfg.ram_cache,
		.nparts = shard_count(),
		.store = e->store,
		.prefault = e->cfg.ram_prefault,
	};
	int rc;

	if (e->store) {
		rc = pgstore_attach(e->store);
		if (rc)
			return rc;
	}
	rc = pgcache_create(&e->cache, &po);
	if (rc) {
		log_err("page cache of %llu bytes in %u parts: %s",
			(unsigned long long)po.capacity, po.nparts, strerror(-rc));
		return rc;
	}
	if ((rc = pool_start(e->meta.meta_threads)))
		return rc;
	if (e->ops->start)
		e->ops->start(e->ufs);
	return 0;
}

static void ufs_shard_stop(void *arg)
{
	struct engine *e = arg;

	e->ops->shard_stop(e->ufs);
}

void engine_stop(struct engine *e)
{
	pool_stop(POOL_STOP_MS);
	if (e->ops->shard_stop)
		for (unsigned i = 0; i < shard_count(); i++)
			shard_call(shard_get(i), ufs_shard_stop, e);
	if (e->store)
		pgstore_detach(e->store);
}

void engine_destroy(struct engine *e)
{
	if (!e)
		return;
	if (e->cache) {
		/* The shards are stopped: their counters are final. */
		struct pgcache_stats t;
		pgcache_stats_total(e->cache, &t);
		log_info("page cache: %llu hits, %llu misses, %llu from the SSD, %llu joined a fetch, %llu fetches "
			 "(%llu failed), %llu evictions, %llu uncached; %llu bytes read from the source",
			 (unsigned long long)t.hits, (unsigned long long)t.misses,
			 (unsigned long long)t.store_hits,
			 (unsigned long long)t.joins, (unsigned long long)t.fetches,
			 (unsigned long long)t.fetch_errors, (unsigned long long)t.evictions,
			 (unsigned long long)t.transient, (unsigned long long)t.bytes_fetched);
		pgcache_destroy(e->cache);
	}
	if (e->store) {
		struct pgstore_stats t;
		pgstore_stats_total(e->store, &t);
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
		pgstore_close(e->store);
	}
	/* Files still open when the kernel let go of the mount. */
	while (e->files) {
		struct efile *f = e->files;
		e->files = f->next;
		if (f->file)
			ufs_file_put(f->file);
		ra_fini(&f->ra);
		free(f->path);
		free(f->etag);
		free(f);
	}
	pthread_mutex_destroy(&e->files_lock);
	ns_destroy(e->ns);
	e->ops->fini(e->ufs);
	free(e);
}

/* ---- open files ---- */

struct efile *efile_new(struct engine *e, struct ufs_file *file, const struct ufs_stat *st)
{
	struct efile *f = calloc(1, sizeof(*f));

	if (!f)
		return NULL;
	f->e = e;
	atomic_init(&f->refs, 1);
	f->file = file;
	f->fid = st->id;
	f->size = st->size;
	f->version = st->version;
	ra_init(&f->ra);
	atomic_fetch_add_explicit(&e->open_files, 1, memory_order_relaxed);
	pthread_mutex_lock(&e->files_lock);
	f->next = e->files;
	if (f->next)
		f->next->prev = f;
	e->files = f;
	pthread_mutex_unlock(&e->files_lock);
	return f;
}

void efile_get(struct efile *f)
{
	atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
}

void efile_put(struct efile *f)
{
	struct engine *e = f->e;

	if (atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) != 1)
		return;
	pthread_mutex_lock(&e->files_lock);
	if (f->prev)
		f->prev->next = f->next;
	else
		e->files = f->next;
	if (f->next)
		f->next->prev = f->prev;
	pthread_mutex_unlock(&e->files_lock);
	if (f->node) {
		ns_lock(e->ns);
		ns_unhold(e->ns, f->node);
		ns_trim(e->ns);
		ns_unlock(e->ns);
	}
	if (f->file)
		ufs_file_put(f->file);
	ra_fini(&f->ra);
	free(f->path);
	free(f->etag);
	atomic_fetch_sub_explicit(f->shared ? &e->shared_files : &e->open_files, 1, memory_order_relaxed);
	free(f);
}

uint64_t efile_size(const struct efile *f) { return f->size; }

void efile_set_source(struct efile *f, const char *path, const char *etag)
{
	/* Only peers read them: a mount without a cluster allocates nothing per open. */
	if (!f->e->peers.fetch)
		return;
	f->path = strdup(path);
	f->etag = strdup(etag);
	if (!f->path || !f->etag) {
		/* Both or neither: without them the file is read from the source only. */
		free(f->path);
		free(f->etag);
		f->path = f->etag = NULL;
	}
}

void efile_set_local_only(struct efile *f) { f->local_only = true; }

void efile_identity(const struct efile *f, uint64_t *fid, uint64_t *version)
{
	*fid = f->fid;
	*version = f->version;
}

void engine_set_peers(struct engine *e, const struct engine_peers *p)
{
	e->peers = *p;
}

bool engine_read_only(const struct engine *e) { return e->meta.read_only; }

/* ---- counters ---- */

void engine_count_latency(struct engine *e, enum engine_src_op op, uint64_t start_ns)
{
	static const double bounds[] = ENG_LAT_BOUNDS;
	uint64_t ns = now_ns() - start_ns;
	double secs = (double)ns / 1e9;
	unsigned b = 0;

	while (b < ENG_LAT_BUCKETS && secs > bounds[b])
		b++;
	atomic_fetch_add_explicit(&e->lat[op][b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&e->lat_sum_us[op], ns / 1000, memory_order_relaxed);
}

void engine_stats(struct engine *e, struct engine_stats *o)
{
	memset(o, 0, sizeof(*o));
	o->open_files = atomic_load_explicit(&e->open_files, memory_order_relaxed);
	o->shared_files = atomic_load_explicit(&e->shared_files, memory_order_relaxed);
	for (unsigned op = 0; op < ENG_SRC_OPS; op++) {
		for (unsigned b = 0; b <= ENG_LAT_BUCKETS; b++)
			o->lat[op][b] = atomic_load_explicit(&e->lat[op][b], memory_order_relaxed);
		o->lat_sum_us[op] = atomic_load_explicit(&e->lat_sum_us[op], memory_order_relaxed);
	}
	for (unsigned b = 0; b <= ENG_RA_BUCKETS; b++)
		o->ra_windows[b] = atomic_load_explicit(&e->ra_windows[b], memory_order_relaxed);
	o->ra_window_pages = atomic_load_explicit(&e->ra_window_pages, memory_order_relaxed);
	o->ra_bytes_in_flight = atomic_load(&e->ra_budget.used);
	o->ra_budget = e->ra_budget.limit;
	o->stale_answers = atomic_load_explicit(&e->stale_answers, memory_order_relaxed);
	o->peer_pages = atomic_load_explicit(&e->peer_pages, memory_order_relaxed);
	o->peer_bytes = atomic_load_explicit(&e->peer_bytes, memory_order_relaxed);
	o->peer_fallbacks = atomic_load_explicit(&e->peer_fallbacks, memory_order_relaxed);
	o->bytes_written = atomic_load_explicit(&e->bytes_written, memory_order_relaxed);
	o->commits = atomic_load_explicit(&e->commits, memory_order_relaxed);
	o->commit_failures = atomic_load_explicit(&e->commit_failures, memory_order_relaxed);
	ns_lock(e->ns);
	o->nodes = ns_count(e->ns);
	ns_unlock(e->ns);
	if (e->ops->counters) {
		o->has_source_counters = true;
		e->ops->counters(e->ufs, &o->source);
	}
}

struct pgcache *engine_cache(const struct engine *e) { return e->cache; }
struct pgstore *engine_store(const struct engine *e) { return e->store; }
const struct cache_opts *engine_cache_opts(const struct engine *e) { return &e->cfg; }
uint64_t engine_page_size(const struct engine *e) { return e->cfg.page_size; }
const char *engine_source(const struct engine *e) { return e->source; }
const char *engine_mountpoint(const struct engine *e) { return e->mnt; }
time_t engine_started(const struct engine *e) { return e->started; }

/* ---- blocking source calls, for jobs ---- */

struct sync_ent {
	char *name;
	char *etag;
	struct ufs_stat st;
};

struct sync_call {
	struct ufs_call call;
	struct engine *e;
	struct shard_msg msg;
	sem_t sem;
	int rc;
	enum { SYNC_STAT, SYNC_LIST, SYNC_OPEN } op;
	struct sync_ent *ents;    /* list: gathered on the shard */
	size_t n, cap;
};

static int sync_entry(struct ufs_call *c, const struct ufs_dirent *d)
{
	struct sync_call *s = container_of(c, struct sync_call, call);

	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		struct sync_ent *n = realloc(s->ents, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		s->ents = n;
		s->cap = cap;
	}
	s->ents[s->n].name = strdup(d->srcname ? d->srcname : d->name);
	s->ents[s->n].etag = strdup(d->etag);
	if (!s->ents[s->n].name || !s->ents[s->n].etag) {
		free(s->ents[s->n].name);
		free(s->ents[s->n].etag);
		return -ENOMEM;
	}
	s->ents[s->n].st = d->st;
	s->n++;
	return 0;
}

static void sync_done(struct ufs_call *c, int rc)
{
	struct sync_call *s = container_of(c, struct sync_call, call);

	s->rc = rc;
	sem_post(&s->sem);
}

static void sync_run(struct shard_msg *m)
{
	struct sync_call *s = container_of(m, struct sync_call, msg);
	const struct ufs_ops *ops = s->e->ops;

	switch (s->op) {
	case SYNC_STAT: ops->stat(&s->call); break;
	case SYNC_LIST: ops->list(&s->call); break;
	case SYNC_OPEN: ops->open(&s->call); break;
	}
}

/* Runs s on a shard and waits for it. */
static int sync_call(struct engine *e, struct sync_call *s)
{
	static atomic_uint next;

	s->e = e;
	s->call.u = e->ufs;
	s->call.done = sync_done;
	s->call.entry = sync_entry;
	sem_init(&s->sem, 0, 0);
	shard_send(shard_get(atomic_fetch_add(&next, 1) % shard_count()), &s->msg, sync_run);
	while (sem_wait(&s->sem) < 0 && errno == EINTR)
		;
	sem_destroy(&s->sem);
	return ufs_unavailable(s->rc) ? -EIO : s->rc;
}

int engine_src_stat(struct engine *e, const char *path, struct ufs_stat *st, char *etag)
{
	struct sync_call s = { .op = SYNC_STAT, .call.path = path };
	uint64_t t = now_ns();
	int rc = sync_call(e, &s);

	engine_count_latency(e, ENG_SRC_STAT, t);
	if (!rc) {
		*st = s.call.st;
		snprintf(etag, UFS_ETAG_MAX, "%s", s.call.etag);
	}
	return rc;
}

int engine_src_list(struct engine *e, const char *path,
		    int (*cb)(void *arg, const char *name, const struct ufs_stat *st, const char *etag),
		    void *arg)
{
	struct sync_call s = { .op = SYNC_LIST, .call.path = path };
	uint64_t t = now_ns();
	int rc = sync_call(e, &s);

	engine_count_latency(e, ENG_SRC_LIST, t);
	for (size_t i = 0; i < s.n; i++) {
		if (!rc)
			rc = cb(arg, s.ents[i].name, &s.ents[i].st, s.ents[i].etag);
		free(s.ents[i].name);
		free(s.ents[i].etag);
	}
	free(s.ents);
	return rc < 0 ? rc : 0;
}

int engine_src_open(struct engine *e, const char *path, const struct ufs_stat *st,
		    const char *etag, struct efile **out)
{
	struct sync_call s = { .op = SYNC_OPEN, .call.path = path, .call.st = *st };
	uint64_t t = now_ns();
	int rc;

	snprintf(s.call.etag, sizeof(s.call.etag), "%s", etag);
	rc = sync_call(e, &s);
	engine_count_latency(e, ENG_SRC_OPEN, t);
	if (rc)
		return rc;
	*out = efile_new(e, s.call.file, s.call.fetched ? &s.call.st : st);
	if (!*out) {
		ufs_file_put(s.call.file);
		return -ENOMEM;
	}
	efile_set_source(*out, path, s.call.fetched ? s.call.etag : etag);
	return 0;
}
