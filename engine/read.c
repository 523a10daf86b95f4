/*
 * The read engine: a read of an open file fans out into one page
 * operation per page, each run on the page's owner shard (inline when the
 * calling shard owns it), and completes once, when the last part did.
 * Sequential streams get read-ahead here too, bounded by the mount's
 * read-ahead budget; control jobs use the same page operations.
 */
#include "config.h"
#include "engine/engine_i.h"
#include "core/log.h"
#include "core/shard.h"
#include "core/util.h"

#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* ---- fetches from the source ---- */

struct fetch_io {
	struct shard_msg m;            /* a source read started a turn later (fetch_start) */
	struct ufs_read r;
	struct epeer_fetch pf;
	struct page *pg;
	struct efile *f;
	uint64_t start_ns;
};

static void fetch_done(struct ufs_read *r, int res)
{
	struct fetch_io *io = container_of(r, struct fetch_io, r);

	/* The driver logged the failure, with what it knows of the cause. */
	engine_count_latency(io->f->e, ENG_SRC_READ, io->start_ns);
	pgcache_fetch_done(io->pg, res < 0 && res != -ESTALE ? -EIO : res);
	efile_put(io->f);
	free(io);
}

/* From the source itself (f->file is set): 0, or an errno and nothing will call fetch_done. */
static int source_start(struct fetch_io *io)
{
	struct efile *f = io->f;

	io->r.file = f->file;
	io->r.done = fetch_done;
	io->start_ns = now_ns();
	return f->file->ops->read(&io->r);
}

/* A peer answered, or failed: in the second case the source has it. */
static void peer_done(struct epeer_fetch *pf, int res)
{
	struct fetch_io *io = container_of(pf, struct fetch_io, pf);
	struct engine *e = io->f->e;
	int rc;

	if (res >= 0) {
		atomic_fetch_add_explicit(&e->peer_pages, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&e->peer_bytes, (uint64_t)res, memory_order_relaxed);
		pgcache_fetch_done(io->pg, res);
		efile_put(io->f);
		free(io);
		return;
	}
	/* The peer logged why (rate-limited); the reader must not notice. */
	atomic_fetch_add_explicit(&e->peer_fallbacks, 1, memory_order_relaxed);
	rc = source_start(io);
	if (rc) {
		pgcache_fetch_done(io->pg, rc == -ESTALE ? rc : -EIO);
		efile_put(io->f);
		free(io);
	}
}

static void source_start_later(struct shard_msg *m)
{
	struct fetch_io *io = container_of(m, struct fetch_io, m);
	int rc = source_start(io);

	if (rc) {
		pgcache_fetch_done(io->pg, rc == -ESTALE ? rc : -EIO);
		efile_put(io->f);
		free(io);
	}
}

/*
 * The stripe's owner node, when the daemon plugged peers in; else or then
 * the source. `together`: when this node owns the stripe, its other pages
 * are started with this one (a turn later, all in the same turn), so the
 * source serves the stripe in one GET however the reads came.
 */
static int fetch_start(void *ctx, const struct pgkey *key, uint64_t off, void *buf, size_t len,
		       struct page *pg, bool together)
{
	struct efile *f = ctx;
	struct engine *e = f->e;
	struct fetch_io *io;
	int rc;

	if (!f->file)
		return -EIO;    /* opened while the source failed: cached pages only */
	io = calloc(1, sizeof(*io));
	if (!io)
		return -ENOMEM;
	efile_get(f);
	io->pg = pg;
	io->f = f;
	io->r.buf = buf;
	io->r.off = off;
	io->r.len = len;
	if (e->peers.fetch && f->path && !f->local_only) {
		io->pf = (struct epeer_fetch){ .path = f->path, .etag = f->etag, .fid = f->fid,
					       .version = f->version, .size = f->size, .index = key->index,
					       .off = off, .buf = buf, .len = len, .done = peer_done };
		rc = e->peers.fetch(e->peers.arg, &io->pf);
		if (rc == 0)
			return 0;
		if (rc == -ENOENT && together) {
			/* Ours: the stripe's pages go first, then this one's read, in one turn. */
			assert(shard_self());    /* fetches start on the page's owner shard */
			engine_prefetch_stripe(f, off);
			shard_send(shard_self(), &io->m, source_start_later);
			return 0;
		}
	}
	rc = source_start(io);
	if (rc) {
		/* Not started: nothing will call fetch_done. */
		efile_put(f);
		free(io);
	}
	return rc;
}

int engine_fetch_start(void *ctx, const struct pgkey *key, uint64_t off, void *buf, size_t len,
		       struct page *pg)
{
	return fetch_start(ctx, key, off, buf, len, pg, true);
}

/* For the pages a stripe's prefetch starts: they are the stripe's other pages already. */
static int fetch_start_alone(void *ctx, const struct pgkey *key, uint64_t off, void *buf, size_t len,
			     struct page *pg)
{
	return fetch_start(ctx, key, off, buf, len, pg, false);
}

/* ---- page operations ---- */

/*
 * The most bytes page `index` of f can hold: a file's last page is short,
 * and the RAM tier reserves no more than that. A file that grew after the
 * open shows its new bytes to the next open.
 */
static uint64_t page_want(const struct efile *f, uint64_t index)
{
	uint64_t ps = f->e->ra.page_size, start = index * ps;

	return start < f->size ? MIN(ps, f->size - start) : ps;
}

/* ref: the op holds its own reference to f (a read's parts share the read's). */
static void op_init(struct page_op *op, struct engine *e, enum page_op_kind kind, struct efile *f,
		    uint64_t index, bool ref)
{
	op->kind = kind;
	op->e = e;
	op->file = f;
	op->pg = NULL;
	op->res = 0;
	op->key.file = f->fid;
	op->key.index = index;
	op->want = page_want(f, index);
	op->off = 0;
	op->len = (uint32_t)op->want;
	op->owner = pgcache_owner(e->cache, &op->key);
	op->fetch.start = engine_fetch_start;
	op->fetch.ctx = f;
	op->fetch.version = f->version;
	if (ref)
		efile_get(f);
	else
		op->file = NULL;
}

void page_op_init(struct page_op *op, struct engine *e, enum page_op_kind kind, struct efile *f,
		  uint64_t index)
{
	op_init(op, e, kind, f, index, true);
}

/* An operation on no open file: nothing to fetch with. */
static void op_init_fileless(struct page_op *op, struct engine *e, enum page_op_kind kind)
{
	memset(&op->fetch, 0, sizeof(op->fetch));
	op->kind = kind;
	op->e = e;
	op->file = NULL;
	op->pg = NULL;
	op->res = 0;
}

void page_op_init_key(struct page_op *op, struct engine *e, enum page_op_kind kind,
		      const struct pgkey *key, uint64_t want)
{
	op_init_fileless(op, e, kind);
	op->key = *key;
	op->want = want;
	op->owner = pgcache_owner(e->cache, key);
}

void page_op_init_part(struct page_op *op, struct engine *e, unsigned part)
{
	op_init_fileless(op, e, PGOP_UNHOLD_ALL);
	op->owner = part;
}

static void op_got(struct pgcache_waiter *w, struct page *pg, int err)
{
	struct page_op *op = container_of(w, struct page_op, w);

	op->pg = pg;
	op->res = err ? err : (int64_t)page_len(pg);
	op->done(op);
}

static void op_held(struct pgcache_hold *h, int res)
{
	struct page_op *op = container_of(h, struct page_op, hold);

	op->res = res;
	op->done(op);
}

static void op_run(struct page_op *op)
{
	struct pgcache *c = op->e->cache;

	switch (op->kind) {
	case PGOP_LOAD:
		op->w.cb = op_got;
		pgcache_get(c, op->owner, &op->key, op->want, &op->fetch, &op->w);
		return;
	case PGOP_HOLD:
		op->hold.done = op_held;
		pgcache_hold(c, op->owner, &op->key, op->want, &op->fetch, &op->hold);
		return;
	case PGOP_DROP:
		op->res = pgcache_drop(c, op->owner, &op->key);
		break;
	case PGOP_UNHOLD:
		op->res = pgcache_unhold(c, op->owner, &op->key);
		break;
	case PGOP_UNHOLD_ALL:
		op->res = (int64_t)pgcache_unhold_all(c, op->owner);
		break;
	}
	op->done(op);
}

static void op_msg(struct shard_msg *m)
{
	op_run(container_of(m, struct page_op, msg));
}

void page_op_submit(struct page_op *op)
{
	/* A request that arrived on the page's owner needs no message. */
	shard_run(op->owner, &op->msg, op_msg);
}

void page_op_release(struct page_op *op)
{
	if (op->pg)
		pgcache_unpin(op->pg);
	op->pg = NULL;
	if (op->file)
		efile_put(op->file);
	op->file = NULL;
}

/* ---- failures: once per reader ---- */

#define FAIL_MEMORY_NS 1000000000ULL

static void remember_failure(struct efile *f, uint64_t index, int err)
{
	atomic_store_explicit(&f->fail_err, err, memory_order_relaxed);
	atomic_store_explicit(&f->fail_index, index, memory_order_relaxed);
	atomic_store_explicit(&f->fail_until, now_ns() + FAIL_MEMORY_NS, memory_order_release);
}

/* The error of a page of [first, last] that just failed on this handle, or 0. */
static int recent_failure(struct efile *f, uint64_t first, uint64_t last)
{
	uint64_t until = atomic_load_explicit(&f->fail_until, memory_order_acquire), i;

	if (!until || now_ns() >= until)
		return 0;
	i = atomic_load_explicit(&f->fail_index, memory_order_relaxed);
	return i >= first && i <= last ? atomic_load_explicit(&f->fail_err, memory_order_relaxed) : 0;
}

/* ---- read-ahead ---- */

static void prefetch_done(struct page_op *op)
{
	struct engine *e = op->e;

	if (op->res < 0 && op->file)
		remember_failure(op->file, op->key.index, (int)op->res);
	page_op_release(op);
	ra_budget_give(&e->ra_budget, e->ra.page_size);
	free(op);
}

/*
 * alone: the pages of a stripe, on its owner shard: those in the RAM tier
 * or being fetched already are left alone (every page of a stripe that
 * missed at once asks for the stripe), and the others fetch without asking
 * for it again.
 */
static void prefetch(struct efile *f, uint64_t first, uint32_t n, bool alone)
{
	struct engine *e = f->e;

	for (uint32_t i = 0; i < n; i++) {
		struct pgkey k = { .file = f->fid, .index = first + i };
		struct page_op *op;
		if (alone && pgcache_has(e->cache, pgcache_owner(e->cache, &k), &k))
			continue;
		if (!ra_budget_take(&e->ra_budget, e->ra.page_size))
			return;    /* over budget: demand reads still go through */
		op = malloc(sizeof(*op));
		if (!op) {
			ra_budget_give(&e->ra_budget, e->ra.page_size);
			return;
		}
		page_op_init(op, e, PGOP_LOAD, f, first + i);
		if (alone)
			op->fetch.start = fetch_start_alone;
		op->done = prefetch_done;
		page_op_submit(op);
	}
}

void engine_prefetch(struct efile *f, uint64_t first, uint32_t n)
{
	prefetch(f, first, n, false);
}

struct stripe_msg {
	struct shard_msg m;
	struct efile *f;
	uint64_t first;
	uint32_t n;
};

static void stripe_run(struct shard_msg *m)
{
	struct stripe_msg *sm = container_of(m, struct stripe_msg, m);

	prefetch(sm->f, sm->first, sm->n, true);
	efile_put(sm->f);
	free(sm);
}

void engine_prefetch_stripe(struct efile *f, uint64_t off)
{
	uint64_t ps = f->e->ra.page_size, start = off / PAGE_STRIPE_BYTES * PAGE_STRIPE_BYTES;
	uint64_t end = MIN(start + PAGE_STRIPE_BYTES, f->size);
	struct pgkey k = { .file = f->fid, .index = start / ps };
	struct stripe_msg *sm;

	if (start >= f->size || !(sm = malloc(sizeof(*sm))))
		return;
	efile_get(f);
	sm->f = f;
	sm->first = k.index;
	sm->n = (uint32_t)((end + ps - 1) / ps - k.index);
	/* Sent even from the owner itself: after what it is doing now, so that the pages start together. */
	shard_send(shard_get(pgcache_owner(f->e->cache, &k)), &sm->m, stripe_run);
}

void engine_readahead(struct efile *f, uint64_t off, size_t len)
{
	struct engine *e = f->e;
	uint64_t first;
	uint32_t window, b = 0;
	uint32_t n = ra_on_read(&f->ra, &e->ra, off, len, f->size, &first, &window);

	if (!n)
		return;
	while (b < ENG_RA_BUCKETS && window > 1u << b)
		b++;
	atomic_fetch_add_explicit(&e->ra_windows[b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&e->ra_window_pages, window, memory_order_relaxed);
	engine_prefetch(f, first, n);
}

/* ---- reads ---- */

struct rd {
	struct eread pub;
	struct efile *f;
	atomic_uint pending;
	atomic_int err;
	unsigned nparts;
	struct iovec *iov;
	struct page_op parts[];
};

static void rd_finish(struct rd *rd)
{
	int err = atomic_load(&rd->err);
	unsigned n = 0;

	rd->pub.err = err;
	if (!err) {
		for (unsigned i = 0; i < rd->nparts; i++) {
			struct page_op *p = &rd->parts[i];
			size_t have = page_len(p->pg);
			if (have <= p->off)
				break;
			rd->iov[n].iov_base = (char *)page_data(p->pg) + p->off;
			rd->iov[n].iov_len = MIN(p->len, have - p->off);
			n++;
			/* A short page (the file shrank) ends the reply. */
			if (have < p->off + p->len)
				break;
		}
	}
	rd->pub.iov = rd->iov;
	rd->pub.niov = n;
	rd->pub.done(&rd->pub);
}

static void rd_part_done(struct page_op *op)
{
	struct rd *rd = op->arg;

	if (op->res < 0) {
		atomic_store(&rd->err, (int)op->res);
		remember_failure(rd->f, op->key.index, (int)op->res);
	}
	if (atomic_fetch_sub_explicit(&rd->pending, 1, memory_order_acq_rel) == 1)
		rd_finish(rd);
}

static void rd_release(struct eread *r);

int engine_read(struct engine *e, struct efile *f, uint64_t off, size_t len,
		void (*done)(struct eread *r), void *arg)
{
	uint64_t ps = e->ra.page_size, first, last;
	struct rd *rd;
	unsigned n;
	int failed = off < f->size && len ? recent_failure(f, off / ps, (off + MIN(len, f->size - off) - 1) / ps) : 0;

	if (off >= f->size || !len || failed) {
		rd = calloc(1, sizeof(*rd));
		if (!rd)
			return -ENOMEM;
		rd->pub.done = done;
		rd->pub.arg = arg;
		rd->pub.release = rd_release;
		rd->pub.err = failed;
		rd->f = f;
		efile_get(f);
		done(&rd->pub);    /* nothing to read, or what just failed: answered now */
		return 0;
	}
	len = MIN(len, f->size - off);
	first = off / ps;
	last = (off + len - 1) / ps;
	n = (unsigned)(last - first + 1);
	rd = malloc(sizeof(*rd) + n * (sizeof(rd->parts[0]) + sizeof(struct iovec)));
	if (!rd)
		return -ENOMEM;
	memset(&rd->pub, 0, sizeof(rd->pub));
	rd->pub.done = done;
	rd->pub.arg = arg;
	rd->pub.release = rd_release;
	rd->f = f;
	efile_get(f);
	rd->nparts = n;
	rd->iov = (struct iovec *)&rd->parts[n];
	/* One reference per part plus one for this dispatch loop: a part served
	 * inline may complete before the loop has sent the others. */
	atomic_init(&rd->pending, n + 1);
	atomic_init(&rd->err, 0);
	for (unsigned i = 0; i < n; i++) {
		struct page_op *p = &rd->parts[i];
		uint64_t pstart = (first + i) * ps;
		uint64_t a = MAX(off, pstart), b = MIN(off + len, pstart + ps);

		op_init(p, e, PGOP_LOAD, f, first + i, false);
		p->off = (uint32_t)(a - pstart);
		p->len = (uint32_t)(b - a);
		p->done = rd_part_done;
		p->arg = rd;
	}
	for (unsigned i = 0; i < n; i++)
		page_op_submit(&rd->parts[i]);
	/*
	 * Read-ahead before letting go of the dispatch reference: once the
	 * reply is out, the reader may close the file and a RELEASE on another
	 * shard drop the opener's reference (ours keeps f alive regardless).
	 */
	engine_readahead(f, off, len);
	if (atomic_fetch_sub_explicit(&rd->pending, 1, memory_order_acq_rel) == 1)
		rd_finish(rd);
	return 0;
}

static void rd_release(struct eread *r)
{
	struct rd *rd = container_of(r, struct rd, pub);

	for (unsigned i = 0; i < rd->nparts; i++)
		page_op_release(&rd->parts[i]);
	efile_put(rd->f);
	free(rd);
}

void eread_release(struct eread *r)
{
	r->release(r);
}
