/*
 * RAM page tier. Pages of (file, index) live in per-shard partitions; a
 * partition is touched only by its owner shard, except for page pins, which
 * any thread may drop. Misses are single-flight: concurrent gets of a missing
 * page start one fetch and all wait on it.
 */
#ifndef CACHEFS_PGCACHE_H
#define CACHEFS_PGCACHE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "iostore/pgkey.h"
#include "iostore/pgstore.h"

struct pgcache;
struct page;

/* Called on the owner shard with a pinned page (err == 0) or an error. */
struct pgcache_waiter {
	void (*cb)(struct pgcache_waiter *w, struct page *pg, int err);
	struct pgcache_waiter *next;
};

/*
 * How to fill a missing page: start() begins reading up to `len` bytes of
 * the file at byte `off` into `buf` (both 4 KiB aligned) and later calls
 * pgcache_fetch_done(pg, res) on the owner shard, res being the byte count
 * or a negative errno. It returns 0, or a negative errno if nothing was
 * started. It must hold what it needs (file references) itself: the
 * caller's objects may be gone by completion. With an SSD store, start()
 * may run later than pgcache_get() (after a store miss or a bad checksum):
 * the first waiter of the page keeps ctx alive until its callback runs.
 */
struct pgcache_fetch {
	int (*start)(void *ctx, const struct pgkey *key, uint64_t off, void *buf, size_t len,
		     struct page *pg);
	void *ctx;
	uint64_t version;     /* UFS version of the file, recorded with stored pages */
};

struct pgcache_opts {
	uint64_t page_size;   /* power of two */
	uint64_t capacity;    /* bytes of page data across all partitions: a hard cap */
	unsigned nparts;      /* one per shard */
	struct pgstore *store;/* SSD tier below, or NULL; partitions match */
	uint64_t prefault;    /* slab bytes kept faulted in ahead of use; UINT64_MAX: all; 0: none */
};

/*
 * Misses look in the store first; pages fetched from the UFS are offered to
 * it in the background once their readers have them. With a store, each
 * partition's page slab becomes fixed buffers on its shard's ring, chunk by
 * chunk as it fills.
 */

/* Per-partition counters, written by the owner only. */
struct pgcache_stats {
	uint64_t hits, misses, joins;   /* joins: a get that waited on a fetch */
	uint64_t store_hits;            /* misses served by the SSD store */
	uint64_t fetches, fetch_errors, evictions, transient;
	uint64_t fetches_done;          /* fetches - fetches_done: in flight */
	uint64_t dropped;               /* pages dropped on request (evict) */
	uint64_t bytes_hit, bytes_fetched;
	uint64_t pages;                 /* pages holding data now */
	uint64_t bytes;                 /* bytes they hold against the cap */
	uint64_t pinned_bytes;          /* of those, held by pins (no SSD store only) */
	uint64_t faulted;               /* slab bytes the kernel has backed (prefaulted or used) */
};

/* Call on the main thread once the shards run (or with none, in tests). */
int pgcache_create(struct pgcache **out, const struct pgcache_opts *o);
/* All pins must have been dropped and no fetch may be in flight. */
void pgcache_destroy(struct pgcache *c);

uint64_t pgcache_page_size(const struct pgcache *c);
/* The partition (and so the shard) that owns key: the same for every page
 * of a stripe (PAGE_STRIPE_BYTES). */
unsigned pgcache_owner(const struct pgcache *c, const struct pgkey *key);

/*
 * On the owner shard of `part`: calls w->cb with the page pinned once for the
 * waiter, now on a hit or when the fetch completes. The waiter releases the
 * pin with pgcache_unpin(). `want` is the most bytes the page can hold (less
 * than the page size for a file's last page): a miss reserves only that,
 * rounded up to 4 KiB, so small files do not cost a whole page.
 */
void pgcache_get(struct pgcache *c, unsigned part, const struct pgkey *key, uint64_t want,
		 const struct pgcache_fetch *f, struct pgcache_waiter *w);
/* On the owner shard of `part`: whether key's page is in the RAM tier, read or being fetched. */
bool pgcache_has(struct pgcache *c, unsigned part, const struct pgkey *key);
/* Completes a fetch started through pgcache_fetch.start; owner shard only. */
void pgcache_fetch_done(struct page *pg, int res);
/*
 * Owner shard of `part`: forgets key in RAM and in the SSD store. Returns 0
 * if a copy was dropped, -ENOENT if none was cached, -EPERM if the page is
 * held (pinned), -EBUSY if it is in use (being fetched, read or replied
 * from): try again later.
 */
int pgcache_drop(struct pgcache *c, unsigned part, const struct pgkey *key);
/*
 * Holds (cachefsctl pin; not to be confused with the short pins above): a
 * held page is never evicted. With an SSD store the store holds it, and the
 * hold survives a restart; without one the RAM tier holds it. Holds may
 * fill at most PIN_MAX_PCT of a partition of that tier.
 */
struct pgcache_hold {
	void (*done)(struct pgcache_hold *h, int res);
	/* the cache's, while the hold runs */
	struct pgcache_waiter w;
	struct pgstore_io io;
	struct pgcache *c;
	unsigned part;
	struct page *pg;
};
/*
 * Owner shard of `part`: gets key's page as pgcache_get() does, then holds
 * it. h->done(h, res) runs on the owner: res 0 (held now), 1 (held
 * already), -ENOSPC (the partition's hold limit is reached) or an error of
 * the fetch or the store write.
 */
void pgcache_hold(struct pgcache *c, unsigned part, const struct pgkey *key, uint64_t want,
		  const struct pgcache_fetch *f, struct pgcache_hold *h);
/* Owner shard: releases key's hold. 0, or -ENOENT if it had none. */
int pgcache_unhold(struct pgcache *c, unsigned part, const struct pgkey *key);
/* Owner shard: releases every hold of the partition; returns how many. */
uint64_t pgcache_unhold_all(struct pgcache *c, unsigned part);
/* Bytes a held page of `want` bytes counts against its partition's limit. */
uint64_t pgcache_hold_cost(const struct pgcache *c, uint64_t want);
/* A partition's hold limit, in bytes. */
uint64_t pgcache_hold_limit(const struct pgcache *c, unsigned part);
/* Bytes held over all partitions, and the sum of their limits (any
 * thread: a snapshot). */
void pgcache_held_total(const struct pgcache *c, uint64_t *held, uint64_t *limit);

/* Any thread. The page's data stays valid until its last pin is dropped. */
void pgcache_unpin(struct page *pg);
const void *page_data(const struct page *pg);
size_t page_len(const struct page *pg);

void pgcache_stats(const struct pgcache *c, unsigned part, struct pgcache_stats *out);
/* The sum over all partitions; exact once the shards have stopped. */
void pgcache_stats_total(const struct pgcache *c, struct pgcache_stats *out);
unsigned pgcache_parts(const struct pgcache *c);

#endif
