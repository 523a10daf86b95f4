#include "config.h"
#include "iostore/pgcache.h"
#include "core/shard.h"
#include "core/util.h"
#include "core/log.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

enum page_state { PG_FREE, PG_FETCHING, PG_READY };

struct page {
	struct pgkey key;
	void *data;               /* page_size bytes in the slab (transient: malloc) */
	uint32_t len;             /* valid bytes; short for a file's last page */
	uint8_t state;            /* enum page_state */
	uint8_t ref;              /* CLOCK reference bit */
	uint8_t transient;        /* not in the table; freed by the last unpin */
	atomic_uint pins;         /* added by the owner, dropped by any thread */
	struct page *hnext;
	struct pgcache_waiter *waiters;
	struct pgcache_part *part;
};

struct pgcache_part {
	struct pgcache *cache;
	struct shard *owner;      /* NULL when no shards run (unit tests) */
	struct page *slots;
	char *slab;               /* nslots * page_size bytes, reserved at create */
	uint32_t nslots, used, hand;
	struct page **buckets;
	uint32_t bucket_mask;
	struct pgcache_stats stats;
} __attribute__((aligned(64)));

struct pgcache {
	uint64_t page_size;
	unsigned nparts;
	struct pgcache_part *parts;
};

uint64_t pgcache_page_size(const struct pgcache *c) { return c->page_size; }
unsigned pgcache_parts(const struct pgcache *c) { return c->nparts; }
const void *page_data(const struct page *pg) { return pg->data; }
size_t page_len(const struct page *pg) { return pg->len; }

static uint64_t key_hash(const struct pgkey *k)
{
	return mix64(k->file * 0x9e3779b97f4a7c15ULL + k->index);
}

unsigned pgcache_owner(const struct pgcache *c, const struct pgkey *k)
{
	return (unsigned)(key_hash(k) % c->nparts);
}

#define assert_owner(p) assert((p)->owner == shard_self())

int pgcache_create(struct pgcache **out, const struct pgcache_opts *o)
{
	struct pgcache *c;
	uint64_t per_part;

	if (!is_pow2(o->page_size) || o->page_size < 4096 || !o->nparts)
		return -EINVAL;
	per_part = o->capacity / o->page_size / o->nparts;
	if (per_part < 1)
		return -ENOSPC;
	if (per_part > UINT32_MAX / 2)
		return -E2BIG;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->page_size = o->page_size;
	c->nparts = o->nparts;
	if (posix_memalign((void **)&c->parts, 64, sizeof(*c->parts) * o->nparts)) {
		free(c);
		return -ENOMEM;
	}
	memset(c->parts, 0, sizeof(*c->parts) * o->nparts);
	for (unsigned i = 0; i < o->nparts; i++) {
		struct pgcache_part *p = &c->parts[i];
		uint32_t nb = 16;
		while (nb < per_part * 2)
			nb <<= 1;
		p->cache = c;
		p->owner = shard_get(i);
		p->nslots = (uint32_t)per_part;
		p->slots = calloc(per_part, sizeof(*p->slots));
		p->buckets = calloc(nb, sizeof(*p->buckets));
		p->bucket_mask = nb - 1;
		/*
		 * One reservation per partition: memory is committed only when
		 * a slot is first filled (by the owner, so on its NUMA node), and
		 * huge pages make that one fault per 2 MiB instead of 512.
		 */
		p->slab = mmap(NULL, per_part * o->page_size, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (p->slab == MAP_FAILED)
			p->slab = NULL;
		if (!p->slots || !p->buckets || !p->slab) {
			c->nparts = i + 1;
			pgcache_destroy(c);
			return -ENOMEM;
		}
		madvise(p->slab, per_part * o->page_size, MADV_HUGEPAGE);
		for (uint32_t s = 0; s < p->nslots; s++) {
			p->slots[s].part = p;
			p->slots[s].data = p->slab + (size_t)s * o->page_size;
		}
	}
	*out = c;
	return 0;
}

void pgcache_destroy(struct pgcache *c)
{
	if (!c)
		return;
	for (unsigned i = 0; i < c->nparts; i++) {
		struct pgcache_part *p = &c->parts[i];
		if (p->slab)
			munmap(p->slab, (size_t)p->nslots * c->page_size);
		free(p->slots);
		free(p->buckets);
	}
	free(c->parts);
	free(c);
}

static struct page **bucket_of(struct pgcache_part *p, const struct pgkey *k)
{
	return &p->buckets[(key_hash(k) >> 20) & p->bucket_mask];
}

static struct page *lookup(struct pgcache_part *p, const struct pgkey *k)
{
	for (struct page *pg = *bucket_of(p, k); pg; pg = pg->hnext)
		if (pg->key.file == k->file && pg->key.index == k->index)
			return pg;
	return NULL;
}

static void unlink_page(struct pgcache_part *p, struct page *pg)
{
	struct page **pp = bucket_of(p, &pg->key);

	while (*pp != pg)
		pp = &(*pp)->hnext;
	*pp = pg->hnext;
	pg->hnext = NULL;
}

/* A slot to reuse: never-used first, then CLOCK over unpinned ready pages. */
static struct page *find_victim(struct pgcache_part *p)
{
	if (p->used < p->nslots)
		return &p->slots[p->used++];
	for (uint32_t i = 0; i < 2 * p->nslots; i++) {
		struct page *pg = &p->slots[p->hand];
		p->hand = p->hand + 1 == p->nslots ? 0 : p->hand + 1;
		if (pg->state == PG_FREE)
			return pg;
		if (pg->state != PG_READY || atomic_load_explicit(&pg->pins, memory_order_acquire))
			continue;
		if (pg->ref) {
			pg->ref = 0;
			continue;
		}
		unlink_page(p, pg);
		pg->state = PG_FREE;
		p->stats.evictions++;
		p->stats.pages--;
		return pg;
	}
	return NULL;
}

static void notify(struct page *pg, int err)
{
	struct pgcache_waiter *w = pg->waiters, *next;
	unsigned n = 0;

	pg->waiters = NULL;
	for (struct pgcache_waiter *i = w; i; i = i->next)
		n++;
	/* Pin for every waiter before the first callback can unpin. */
	if (!err)
		atomic_fetch_add(&pg->pins, n);
	for (; w; w = next) {
		next = w->next;
		w->cb(w, err ? NULL : pg, err);
	}
}

void pgcache_get(struct pgcache *c, unsigned part, const struct pgkey *key,
		 const struct pgcache_fetch *f, struct pgcache_waiter *w)
{
	struct pgcache_part *p = &c->parts[part];
	struct page *pg;
	int rc;

	assert_owner(p);
	w->next = NULL;
	pg = lookup(p, key);
	if (pg && pg->state == PG_READY) {
		pg->ref = 1;
		p->stats.hits++;
		p->stats.bytes_hit += pg->len;
		atomic_fetch_add(&pg->pins, 1);
		w->cb(w, pg, 0);
		return;
	}
	if (pg) {
		p->stats.joins++;
		w->next = pg->waiters;
		pg->waiters = w;
		return;
	}
	p->stats.misses++;
	pg = find_victim(p);
	if (!pg) {
		/*
		 * Every page is pinned or being fetched: serve this read from a
		 * private page rather than exceed the cap or stall the reader.
		 */
		pg = calloc(1, sizeof(*pg));
		if (!pg) {
			w->cb(w, NULL, -ENOMEM);
			return;
		}
		pg->transient = 1;
		pg->part = p;
		p->stats.transient++;
	}
	if (!pg->data && posix_memalign(&pg->data, 4096, c->page_size)) {
		pg->data = NULL;
		if (pg->transient)
			free(pg);
		w->cb(w, NULL, -ENOMEM);
		return;
	}
	pg->key = *key;
	pg->len = 0;
	pg->ref = 0;
	pg->state = PG_FETCHING;
	pg->waiters = w;
	if (!pg->transient) {
		struct page **b = bucket_of(p, key);
		pg->hnext = *b;
		*b = pg;
	}
	p->stats.fetches++;
	rc = f->start(f->ctx, key, pg->data, c->page_size, pg);
	if (rc < 0)
		pgcache_fetch_done(pg, rc);
}

void pgcache_fetch_done(struct page *pg, int res)
{
	struct pgcache_part *p = pg->part;

	assert_owner(p);
	assert(pg->state == PG_FETCHING);
	if (res < 0) {
		p->stats.fetch_errors++;
		if (!pg->transient)
			unlink_page(p, pg);
		pg->state = PG_FREE;
		notify(pg, res);
		if (pg->transient) {
			free(pg->data);
			free(pg);
		}
		return;
	}
	pg->len = (uint32_t)res;
	pg->state = PG_READY;
	p->stats.bytes_fetched += (uint64_t)res;
	if (pg->transient) {
		/* Hold a pin across notify so a quick unpin cannot free it. */
		atomic_fetch_add(&pg->pins, 1);
		notify(pg, 0);
		pgcache_unpin(pg);
		return;
	}
	p->stats.pages++;
	notify(pg, 0);
}

void pgcache_unpin(struct page *pg)
{
	if (atomic_fetch_sub_explicit(&pg->pins, 1, memory_order_acq_rel) == 1 && pg->transient) {
		free(pg->data);
		free(pg);
	}
}

void pgcache_stats(const struct pgcache *c, unsigned part, struct pgcache_stats *out)
{
	*out = c->parts[part].stats;
}
