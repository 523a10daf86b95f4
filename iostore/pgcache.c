#include "config.h"
#include "iostore/pgcache.h"
#include "iostore/pgstore.h"
#include "core/shard.h"
#include "core/util.h"
#include "core/log.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

/*
 * The slab is faulted in ahead of the highest slot handed out (pgcache_opts.
 * prefault bytes across the cache, or all of it from the start), by a thread
 * of the cache's own, so that a cold read does not wait while the kernel
 * finds, zeroes and maps fresh memory for the page it fills: on the
 * development VM that was 77% of the daemon's CPU in a cold read (perf), a
 * fresh mapping taking its first writes at 0.3-0.5 GB/s.
 *
 * The thread must never slow a shard. It runs at SCHED_IDLE, on CPU time no
 * one else wants. It faults pages in by touching them (an atomic add of 0
 * per 4 KiB, so a slot a shard is already filling keeps its bytes), not
 * with MADV_POPULATE_WRITE: a fault holds only its own mapping's lock, while
 * MADV_POPULATE_WRITE holds the process's mmap lock for the whole range,
 * which a shard that maps memory (jemalloc, curl) then waits for. Measured
 * here beside a thread that maps and unmaps 1 MiB in a loop: its worst wait
 * was 29-30 ms with MADV_POPULATE_WRITE in 2 MiB steps, 4.2-4.5 ms (one huge
 * page's fault) touching. The first version used it, and was off by default.
 */
#define PREFAULT_STEP (2ULL << 20)

enum page_state { PG_FREE, PG_FETCHING, PG_READY };

struct page {
	struct pgkey key;
	void *data;               /* a slab slot (full pages) or its own buffer */
	uint32_t cap;             /* bytes of data held against the capacity */
	int32_t slot;             /* slab slot index, or -1 for an own buffer */
	uint32_t len;             /* valid bytes; short for a file's last page */
	uint8_t state;            /* enum page_state */
	uint8_t ref;              /* CLOCK reference bit */
	uint8_t transient;        /* not in the table; freed by the last unpin */
	uint8_t from_store;       /* filled from the SSD store: not offered back */
	uint8_t held;             /* pinned by pgcache_hold (no store): never evicted */
	uint64_t version;         /* UFS version, for the store */
	atomic_uint pins;         /* added by the owner, dropped by any thread */
	struct page *hnext;
	struct pgcache_waiter *waiters;
	struct pgcache_part *part;
};

struct pgcache_part {
	struct pgcache *cache;
	struct shard *owner;      /* NULL when no shards run (unit tests) */
	struct page *slots;       /* page descriptors */
	uint32_t nslots, used, hand;
	uint64_t bytes, capacity; /* bytes held by pages, and the cap */
	char *slab;               /* nfull * page_size bytes, reserved at create */
	uint32_t nfull;           /* slab slots */
	uint32_t *free_full;      /* stack of free slab slots */
	uint32_t nfree_full;
	uint32_t chunk_slots;     /* slots per fixed-buffer chunk; 0: none */
	uint32_t high;            /* slots below this have been handed out */
	uint32_t nreg;            /* chunks registered, from the first */
	uint32_t prefault_ahead;  /* slots to keep faulted in beyond high */
	_Atomic uint32_t prefault_want; /* the prefaulter faults slots below this in */
	_Atomic uint32_t prefault_done; /* written by the prefaulter: slots below this are in */
	struct page **buckets;
	uint32_t bucket_mask;
	struct pgcache_stats stats;
} __attribute__((aligned(64)));

struct pgcache {
	uint64_t page_size;
	uint64_t stripe;          /* pages per stripe: they share an owner */
	unsigned nparts;
	struct pgcache_part *parts;
	struct pgstore *store;
	pthread_t prefaulter;
	bool prefaulting;
	int prefault_fd;          /* eventfd: more is wanted, or stop */
	atomic_bool stop;
};

uint64_t pgcache_page_size(const struct pgcache *c) { return c->page_size; }
unsigned pgcache_parts(const struct pgcache *c) { return c->nparts; }
const void *page_data(const struct page *pg) { return pg->data; }
size_t page_len(const struct page *pg) { return pg->len; }

unsigned pgcache_owner(const struct pgcache *c, const struct pgkey *k)
{
	struct pgkey stripe = { k->file, k->index / c->stripe };

	return (unsigned)(pgkey_hash(&stripe) % c->nparts);
}

#define assert_owner(p) assert((p)->owner == shard_self())

/*
 * Descriptors per partition: enough for pages averaging 16 KiB (small files
 * and file tails are held in buffers of their own size), and never fewer
 * than four per full page.
 */
static uint64_t descriptors_for(uint64_t capacity, uint64_t page_size)
{
	return MAX(capacity / 16384, 4 * (capacity / page_size));
}

/*
 * On the owner shard: the slab becomes the ring's fixed buffers, so SSD
 * reads and writes skip per-IO page pinning. Registering pins (and so
 * faults in) memory: done chunk by chunk as the slab fills, never all at
 * mount, which would cost seconds of page zeroing for a large RAM tier.
 */
static void register_slab(void *arg)
{
	struct pgcache_part *p = arg;
	uint64_t ps = p->cache->page_size;
	/* 64 MiB chunks, fewer than 16384 of them, none over 1 GiB. */
	uint64_t slots = MAX((64ULL << 20) / ps, 1);
	int rc;

	while (((uint64_t)p->nfull + slots - 1) / slots >= 16384 && slots * ps < (1ULL << 30))
		slots *= 2;
	p->chunk_slots = (uint32_t)slots;
	rc = shard_buffers_init(p->slab, (size_t)p->nfull * ps, slots * ps);
	if (rc < 0) {
		log_info("shard %u: no fixed buffers for the page slab (%s); SSD IO uses plain "
			 "reads and writes", shard_id(p->owner), strerror(-rc));
		p->chunk_slots = 0;
	}
}

/* Faults [at, at + len) in for writing without changing a byte. */
static void touch(char *at, size_t len)
{
	for (size_t o = 0; o < len; o += 4096)
		__atomic_fetch_add((volatile char *)at + o, 0, __ATOMIC_RELAXED);
}

static void *prefault_main(void *arg)
{
	struct pgcache *c = arg;
	uint32_t step = (uint32_t)MAX(PREFAULT_STEP / c->page_size, 1);
	struct sched_param idle = { 0 };
	eventfd_t v;

	pthread_setname_np(pthread_self(), "cachefs-fault");
	/* Lowering one's own priority needs no privilege; should it fail, the thread still helps. */
	pthread_setschedparam(pthread_self(), SCHED_IDLE, &idle);
	while (!atomic_load(&c->stop)) {
		for (unsigned i = 0; i < c->nparts && !atomic_load(&c->stop); i++) {
			struct pgcache_part *p = &c->parts[i];
			uint32_t want = atomic_load_explicit(&p->prefault_want, memory_order_relaxed);
			uint32_t done = atomic_load_explicit(&p->prefault_done, memory_order_relaxed);
			while (done < want && !atomic_load(&c->stop)) {
				uint32_t n = MIN(step, want - done);
				touch(p->slab + (size_t)done * c->page_size, (size_t)n * c->page_size);
				done += n;
				atomic_store_explicit(&p->prefault_done, done, memory_order_relaxed);
			}
		}
		eventfd_read(c->prefault_fd, &v);
	}
	return NULL;
}

/* Asks the prefaulter to keep p's slab faulted in up to `ahead` slots beyond high. */
static void prefault_more(struct pgcache_part *p)
{
	struct pgcache *c = p->cache;
	uint32_t want = (uint32_t)MIN((uint64_t)p->high + p->prefault_ahead, p->nfull);
	uint32_t cur = atomic_load_explicit(&p->prefault_want, memory_order_relaxed);

	/* Every quarter of the distance ahead, not every slot: one write per few MiB. */
	if (!c->prefaulting || want <= cur || want - cur < MAX(p->prefault_ahead / 4, 1))
		return;
	atomic_store_explicit(&p->prefault_want, want, memory_order_relaxed);
	eventfd_write(c->prefault_fd, 1);
}

/* A full-page slot was handed out: fault in ahead, register every chunk now wholly in use. */
static void slab_touched(struct pgcache_part *p, uint32_t slot)
{
	if (slot < p->high)
		return;
	p->high = slot + 1;
	prefault_more(p);
	if (!p->chunk_slots)
		return;
	while (p->nreg * p->chunk_slots < p->nfull &&
	       p->high >= MIN((p->nreg + 1) * p->chunk_slots, p->nfull)) {
		int rc = shard_buffer_register(p->nreg);
		if (rc < 0) {
			log_info("shard %u: registering page slab chunk %u: %s; SSD IO on the rest "
				 "uses plain reads and writes", shard_id(p->owner), p->nreg, strerror(-rc));
			p->chunk_slots = 0;
			return;
		}
		p->nreg++;
	}
}

int pgcache_create(struct pgcache **out, const struct pgcache_opts *o)
{
	struct pgcache *c;
	uint64_t per_part, nfull, ndesc;

	if (!is_pow2(o->page_size) || o->page_size < 4096 || !o->nparts)
		return -EINVAL;
	per_part = o->capacity / o->nparts;
	nfull = per_part / o->page_size;
	if (nfull < 1)
		return -ENOSPC;
	ndesc = descriptors_for(per_part, o->page_size);
	if (ndesc > UINT32_MAX / 2)
		return -E2BIG;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->page_size = o->page_size;
	c->stripe = MAX(PAGE_STRIPE_BYTES / o->page_size, 1);
	c->nparts = o->nparts;
	c->store = o->store;
	c->prefault_fd = -1;
	if (posix_memalign((void **)&c->parts, 64, sizeof(*c->parts) * o->nparts)) {
		free(c);
		return -ENOMEM;
	}
	memset(c->parts, 0, sizeof(*c->parts) * o->nparts);
	for (unsigned i = 0; i < o->nparts; i++) {
		struct pgcache_part *p = &c->parts[i];
		uint32_t nb = 16;
		while (nb < ndesc * 2)
			nb <<= 1;
		p->cache = c;
		p->owner = shard_get(i);
		p->capacity = per_part;
		p->nslots = (uint32_t)ndesc;
		p->nfull = (uint32_t)nfull;
		p->slots = calloc(ndesc, sizeof(*p->slots));
		p->buckets = calloc(nb, sizeof(*p->buckets));
		p->free_full = calloc(nfull, sizeof(*p->free_full));
		p->bucket_mask = nb - 1;
		/*
		 * Full pages live in one reservation per partition: memory is
		 * committed when a slot is first filled or the prefaulter gets
		 * ahead to it, on the owner's NUMA node either way, and huge pages
		 * make that one fault per 2 MiB.
		 */
		p->slab = mmap(NULL, nfull * o->page_size, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (p->slab == MAP_FAILED)
			p->slab = NULL;
		if (!p->slots || !p->buckets || !p->free_full || !p->slab) {
			c->nparts = i + 1;
			pgcache_destroy(c);
			return -ENOMEM;
		}
		madvise(p->slab, nfull * o->page_size, MADV_HUGEPAGE);
		/* The prefault thread may be the first to touch it: the owner's node still. */
		shard_prefer_node(p->owner, p->slab, nfull * o->page_size);
		for (uint32_t s = 0; s < p->nfull; s++)
			p->free_full[s] = p->nfull - 1 - s;    /* slot 0 on top: high only grows */
		p->prefault_ahead = o->prefault == UINT64_MAX ? p->nfull : !o->prefault ? 0 :
			(uint32_t)MIN(MAX(o->prefault / o->nparts / o->page_size, 2), p->nfull);
		atomic_init(&p->prefault_want, p->prefault_ahead);
		p->nfree_full = p->nfull;
		for (uint32_t s = 0; s < p->nslots; s++) {
			p->slots[s].part = p;
			p->slots[s].slot = -1;
		}
	}
	if (c->store)
		for (unsigned i = 0; i < o->nparts; i++)
			if (c->parts[i].owner)
				shard_call(c->parts[i].owner, register_slab, &c->parts[i]);
	if (o->prefault) {
		c->prefault_fd = eventfd(0, EFD_CLOEXEC);
		int rc = c->prefault_fd < 0 ? errno : pthread_create(&c->prefaulter, NULL, prefault_main, c);
		c->prefaulting = !rc;
		if (rc)
			log_info("ram_prefault: no prefault thread (%s); cold reads fault the RAM tier in",
				 strerror(rc));
	}
	*out = c;
	return 0;
}

static void release_buffer(struct pgcache_part *p, struct page *pg)
{
	if (pg->slot >= 0)
		p->free_full[p->nfree_full++] = (uint32_t)pg->slot;
	else
		free(pg->data);
	p->bytes -= pg->cap;
	pg->data = NULL;
	pg->cap = 0;
	pg->slot = -1;
}

void pgcache_destroy(struct pgcache *c)
{
	if (!c)
		return;
	if (c->prefaulting) {
		atomic_store(&c->stop, true);
		eventfd_write(c->prefault_fd, 1);
		pthread_join(c->prefaulter, NULL);
	}
	if (c->prefault_fd >= 0)
		close(c->prefault_fd);
	for (unsigned i = 0; i < c->nparts; i++) {
		struct pgcache_part *p = &c->parts[i];
		for (uint32_t s = 0; p->slots && s < p->nslots; s++)
			if (p->slots[s].data && p->slots[s].slot < 0)
				free(p->slots[s].data);
		if (p->slab)
			munmap(p->slab, (size_t)p->nfull * c->page_size);
		free(p->slots);
		free(p->free_full);
		free(p->buckets);
	}
	free(c->parts);
	free(c);
}

static struct page **bucket_of(struct pgcache_part *p, const struct pgkey *k)
{
	return &p->buckets[(pgkey_hash(k) >> 20) & p->bucket_mask];
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

static void evict(struct pgcache_part *p, struct page *pg)
{
	unlink_page(p, pg);
	release_buffer(p, pg);
	pg->state = PG_FREE;
	p->stats.evictions++;
	p->stats.pages--;
}

/*
 * CLOCK over unpinned ready pages until there is a free descriptor, `need`
 * bytes of room under the cap and, for a full page, a free slab slot.
 * Returns a free descriptor, or NULL if pins and fetches hold too much.
 */
static struct page *make_room(struct pgcache_part *p, uint64_t need, bool full)
{
	struct page *free_pg = NULL;

	for (uint64_t i = 0; i < 2ULL * p->nslots; i++) {
		if (!free_pg && p->used < p->nslots)
			free_pg = &p->slots[p->used++];
		if (free_pg && p->bytes + need <= p->capacity && (!full || p->nfree_full))
			return free_pg;
		struct page *pg = &p->slots[p->hand];
		p->hand = p->hand + 1 == p->nslots ? 0 : p->hand + 1;
		if (pg->state == PG_FREE) {
			if (!free_pg)
				free_pg = pg;
			continue;
		}
		if (pg->state != PG_READY || pg->held ||
		    atomic_load_explicit(&pg->pins, memory_order_acquire))
			continue;
		if (pg->ref) {
			pg->ref = 0;
			continue;
		}
		evict(p, pg);
		if (!free_pg)
			free_pg = pg;
	}
	if (free_pg && p->bytes + need <= p->capacity && (!full || p->nfree_full))
		return free_pg;
	return NULL;
}

/* Gives pg a buffer for `need` bytes; full pages take a slab slot. */
static int take_buffer(struct pgcache *c, struct pgcache_part *p, struct page *pg, uint64_t need)
{
	if (need == c->page_size) {
		pg->slot = (int32_t)p->free_full[--p->nfree_full];
		pg->data = p->slab + (size_t)pg->slot * c->page_size;
		slab_touched(p, (uint32_t)pg->slot);
	} else {
		pg->slot = -1;
		if (posix_memalign(&pg->data, 4096, need)) {
			pg->data = NULL;
			return -ENOMEM;
		}
	}
	pg->cap = (uint32_t)need;
	p->bytes += need;
	return 0;
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

static void start_fetch(struct pgcache *c, struct page *pg, const struct pgcache_fetch *f)
{
	int rc;

	/* No start: a lookup by key alone whose stored copy failed its read (see pgcache_get). */
	if (!f->start) {
		pgcache_fetch_done(pg, -ENOENT);
		return;
	}
	pg->part->stats.fetches++;
	rc = f->start(f->ctx, &pg->key, pg->key.index * c->page_size, pg->data, pg->cap, pg);
	if (rc < 0)
		pgcache_fetch_done(pg, rc);
}

/* A miss that tries the SSD store before the UFS. */
struct store_read {
	struct pgstore_io io;
	struct pgcache_fetch f;
	struct page *pg;
};

static void store_read_done(struct pgstore_io *io, int res)
{
	struct store_read *r = container_of(io, struct store_read, io);
	struct page *pg = r->pg;

	if (res >= 0) {
		pg->from_store = 1;
		pgcache_fetch_done(pg, res);
	} else {
		/* Not there after all, or a bad checksum: the UFS has it. */
		start_fetch(pg->part->cache, pg, &r->f);
	}
	free(r);
}

static bool store_lookup(struct pgcache *c, unsigned part, struct page *pg,
			 const struct pgcache_fetch *f)
{
	struct store_read *r = malloc(sizeof(*r));

	if (!r)
		return false;
	r->f = *f;
	r->pg = pg;
	r->io.done = store_read_done;
	if (pgstore_read(c->store, part, &pg->key, pg->data, pg->cap, &r->io) == 0)
		return true;
	free(r);
	return false;
}

/* A page fetched from the UFS goes to the store; a pin holds it meanwhile. */
struct store_put {
	struct pgstore_io io;
	struct page *pg;
};

static void store_put_done(struct pgstore_io *io, int res)
{
	struct store_put *sp = container_of(io, struct store_put, io);

	pgcache_unpin(sp->pg);
	free(sp);
}

static void store_offer(struct pgcache_part *p, struct page *pg)
{
	struct pgcache *c = p->cache;
	struct store_put *sp;

	if (!c->store || pg->from_store || !pg->len)
		return;
	sp = malloc(sizeof(*sp));
	if (!sp)
		return;
	sp->pg = pg;
	sp->io.done = store_put_done;
	atomic_fetch_add(&pg->pins, 1);
	if (pgstore_put(c->store, (unsigned)(p - c->parts), &pg->key, pg->version, pg->data,
			pg->len, &sp->io) < 0) {
		atomic_fetch_sub(&pg->pins, 1);
		free(sp);
	}
}

bool pgcache_has(struct pgcache *c, unsigned part, const struct pgkey *key)
{
	struct pgcache_part *p = &c->parts[part];

	assert_owner(p);
	return lookup(p, key) != NULL;
}

void pgcache_get(struct pgcache *c, unsigned part, const struct pgkey *key, uint64_t want,
		 const struct pgcache_fetch *f, struct pgcache_waiter *w)
{
	struct pgcache_part *p = &c->parts[part];
	/* Rounded to 4 KiB: sources read with O_DIRECT need aligned lengths. */
	uint64_t need = MIN((MAX(want, 1) + 4095) & ~4095ULL, c->page_size);
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
	/* A lookup by key alone (the page server's /v1/page) gets only what is cached: a miss takes no page. */
	if (!f->start && !(c->store && pgstore_has(c->store, part, key))) {
		w->cb(w, NULL, -ENOENT);
		return;
	}
	p->stats.misses++;
	pg = make_room(p, need, need == c->page_size);
	if (pg) {
		rc = take_buffer(c, p, pg, need);
	} else {
		/*
		 * Pins and fetches hold the whole partition: serve this read from
		 * a private page rather than exceed the cap or stall the reader.
		 */
		pg = calloc(1, sizeof(*pg));
		if (!pg) {
			w->cb(w, NULL, -ENOMEM);
			return;
		}
		pg->transient = 1;
		pg->part = p;
		p->stats.transient++;
		rc = posix_memalign(&pg->data, 4096, need) ? -ENOMEM : 0;
		pg->slot = -1;
		pg->cap = (uint32_t)need;
	}
	if (rc) {
		if (pg->transient)
			free(pg);
		w->cb(w, NULL, rc);
		return;
	}
	pg->key = *key;
	pg->len = 0;
	/*
	 * Referenced from the start: a read-ahead page has not been read yet,
	 * and CLOCK must not take it before the pages the stream already
	 * consumed (measured: with a RAM tier 4x the window, a 0 here
	 * evicted most read-ahead pages before their READ came).
	 */
	pg->ref = 1;
	pg->from_store = 0;
	pg->version = f->version;
	pg->state = PG_FETCHING;
	pg->waiters = w;
	if (!pg->transient) {
		struct page **b = bucket_of(p, key);
		pg->hnext = *b;
		*b = pg;
	}
	if (c->store && store_lookup(c, part, pg, f))
		return;
	start_fetch(c, pg, f);
}

void pgcache_fetch_done(struct page *pg, int res)
{
	struct pgcache_part *p = pg->part;

	assert_owner(p);
	assert(pg->state == PG_FETCHING);
	if (!pg->from_store)
		p->stats.fetches_done++;
	if (res < 0) {
		p->stats.fetch_errors++;
		if (!pg->transient) {
			unlink_page(p, pg);
			release_buffer(p, pg);
		}
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
	if (pg->from_store)
		p->stats.store_hits++;
	else
		p->stats.bytes_fetched += (uint64_t)res;
	if (pg->transient) {
		/* Hold a pin across notify so a quick unpin cannot free it. */
		atomic_fetch_add(&pg->pins, 1);
		notify(pg, 0);
		store_offer(p, pg);
		pgcache_unpin(pg);
		return;
	}
	p->stats.pages++;
	/* Readers first: the store's checksum and write come after the reply. */
	notify(pg, 0);
	store_offer(p, pg);
}

int pgcache_drop(struct pgcache *c, unsigned part, const struct pgkey *key)
{
	struct pgcache_part *p = &c->parts[part];
	struct page *pg;
	int ram = -ENOENT, ssd = -ENOENT;

	assert_owner(p);
	pg = lookup(p, key);
	if ((pg && pg->held) || (c->store && pgstore_held(c->store, part, key)))
		return -EPERM;
	if (pg && (pg->state != PG_READY || atomic_load(&pg->pins)))
		return -EBUSY;
	if (pg) {
		evict(p, pg);
		p->stats.evictions--;      /* asked for: not an eviction by the CLOCK */
		p->stats.dropped++;
		ram = 0;
	}
	if (c->store)
		ssd = pgstore_drop(c->store, part, key);
	if (ssd == -EBUSY)
		return -EBUSY;
	return ram == 0 || ssd == 0 ? 0 : -ENOENT;
}

uint64_t pgcache_hold_cost(const struct pgcache *c, uint64_t want)
{
	/* A store slot is a whole page; RAM takes what the page needs. */
	return c->store ? c->page_size : MIN((MAX(want, 1) + 4095) & ~4095ULL, c->page_size);
}

uint64_t pgcache_hold_limit(const struct pgcache *c, unsigned part)
{
	if (c->store)
		return pgstore_hold_limit(c->store, part) * c->page_size;
	return c->parts[part].capacity * PIN_MAX_PCT / 100;
}

void pgcache_held_total(const struct pgcache *c, uint64_t *held, uint64_t *limit)
{
	struct pgstore_stats s;

	*held = *limit = 0;
	for (unsigned i = 0; i < c->nparts; i++) {
		*limit += pgcache_hold_limit(c, i);
		if (!c->store)
			*held += c->parts[i].stats.pinned_bytes;
	}
	if (c->store) {
		/* With a store, holds live there and count whole pages. */
		pgstore_stats_total(c->store, &s);
		*held = s.pinned * c->page_size;
	}
}

static void hold_stored(struct pgstore_io *io, int res)
{
	struct pgcache_hold *h = container_of(io, struct pgcache_hold, io);

	pgcache_unpin(h->pg);
	h->done(h, res);
}

static void hold_got(struct pgcache_waiter *w, struct page *pg, int err)
{
	struct pgcache_hold *h = container_of(w, struct pgcache_hold, w);
	struct pgcache_part *p = &h->c->parts[h->part];
	int rc;

	if (err) {
		h->done(h, err);
		return;
	}
	if (h->c->store) {
		h->pg = pg;
		h->io.done = hold_stored;
		rc = pgstore_hold(h->c->store, h->part, &pg->key, pg->version, pg->data, pg->len,
				  &h->io);
		if (rc == -EINPROGRESS)
			return;
	} else if (pg->held) {
		rc = 1;
	} else if (pg->transient ||
		   p->stats.pinned_bytes + pg->cap > pgcache_hold_limit(h->c, h->part)) {
		rc = -ENOSPC;
	} else {
		pg->held = 1;
		p->stats.pinned_bytes += pg->cap;
		rc = 0;
	}
	pgcache_unpin(pg);
	h->done(h, rc);
}

void pgcache_hold(struct pgcache *c, unsigned part, const struct pgkey *key, uint64_t want,
		  const struct pgcache_fetch *f, struct pgcache_hold *h)
{
	h->c = c;
	h->part = part;
	h->w.cb = hold_got;
	pgcache_get(c, part, key, want, f, &h->w);
}

static void unhold_page(struct pgcache_part *p, struct page *pg)
{
	pg->held = 0;
	p->stats.pinned_bytes -= pg->cap;
}

int pgcache_unhold(struct pgcache *c, unsigned part, const struct pgkey *key)
{
	struct pgcache_part *p = &c->parts[part];
	struct page *pg;

	assert_owner(p);
	if (c->store)
		return pgstore_unhold(c->store, part, key);
	pg = lookup(p, key);
	if (!pg || !pg->held)
		return -ENOENT;
	unhold_page(p, pg);
	return 0;
}

uint64_t pgcache_unhold_all(struct pgcache *c, unsigned part)
{
	struct pgcache_part *p = &c->parts[part];
	uint64_t n = 0;

	assert_owner(p);
	if (c->store)
		return pgstore_unhold_all(c->store, part);
	for (uint32_t s = 0; s < p->used; s++)
		if (p->slots[s].held) {
			unhold_page(p, &p->slots[s]);
			n++;
		}
	return n;
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
	const struct pgcache_part *p = &c->parts[part];

	*out = p->stats;
	out->bytes = p->bytes;
	/* Read racily (high is the owner's): a gauge. */
	out->faulted = (uint64_t)MAX(atomic_load_explicit(&p->prefault_done, memory_order_relaxed),
				     p->high) * c->page_size;
}

_Static_assert(sizeof(struct pgcache_stats) % sizeof(uint64_t) == 0, "stats are uint64_t counters");

void pgcache_stats_total(const struct pgcache *c, struct pgcache_stats *out)
{
	struct pgcache_stats p;

	memset(out, 0, sizeof(*out));
	for (unsigned i = 0; i < c->nparts; i++) {
		pgcache_stats(c, i, &p);
		sum_u64((uint64_t *)out, (const uint64_t *)&p, sizeof(p) / sizeof(uint64_t));
	}
}
