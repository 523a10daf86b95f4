/* RAM tier without shards: the test thread is every partition's owner, and
 * fetches complete when the test says, so interleavings are deterministic. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <unistd.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>
#include "iostore/pgcache.h"
#include "core/util.h"

#define PS 4096

struct pending {
	struct page *pg;
	struct pgkey key;
	char *buf;
};

static struct pending pend[64];
static unsigned npend, fetch_calls;
static int fail_next;

static size_t last_len;
static uint64_t last_off;

static int fake_start(void *ctx, const struct pgkey *key, uint64_t off, void *buf, size_t len,
		      struct page *pg)
{
	fetch_calls++;
	last_len = len;
	last_off = off;
	if (fail_next) {
		fail_next = 0;
		return -EIO;
	}
	pend[npend++] = (struct pending){ .pg = pg, .key = *key, .buf = buf };
	return 0;
}

static const struct pgcache_fetch fetch = { .start = fake_start };

/* Completes the oldest pending fetch with a page full of key.index. */
static void complete_one(size_t len)
{
	struct pending p = pend[0];

	memmove(pend, pend + 1, --npend * sizeof(pend[0]));
	memset(p.buf, (int)(p.key.index & 0xff), len);
	pgcache_fetch_done(p.pg, (int)len);
}

struct rec {
	struct pgcache_waiter w;
	struct page *pg;
	int err, calls;
};

static void rec_cb(struct pgcache_waiter *w, struct page *pg, int err)
{
	struct rec *r = container_of(w, struct rec, w);

	r->pg = pg;
	r->err = err;
	r->calls++;
}

static struct pgcache *make_sized(uint64_t page_size, uint64_t capacity)
{
	struct pgcache *c;
	struct pgcache_opts o = { .page_size = page_size, .capacity = capacity, .nparts = 1 };

	npend = fetch_calls = 0;
	assert_int_equal(pgcache_create(&c, &o), 0);
	return c;
}

static struct pgcache *make(unsigned pages)
{
	return make_sized(PS, (uint64_t)pages * PS);
}

static void get_want(struct pgcache *c, uint64_t idx, uint64_t want, struct rec *r)
{
	struct pgkey k = { .file = 7, .index = idx };

	memset(r, 0, sizeof(*r));
	r->w.cb = rec_cb;
	pgcache_get(c, 0, &k, want, &fetch, &r->w);
}

static void get(struct pgcache *c, uint64_t idx, struct rec *r)
{
	get_want(c, idx, PS, r);
}

static void test_single_flight(void **state)
{
	struct pgcache *c = make(8);
	struct rec r[5];
	struct pgcache_stats st;

	for (int i = 0; i < 5; i++)
		get(c, 3, &r[i]);
	assert_int_equal(fetch_calls, 1);
	for (int i = 0; i < 5; i++)
		assert_int_equal(r[i].calls, 0);
	complete_one(PS);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(r[i].calls, 1);
		assert_ptr_equal(r[i].pg, r[0].pg);
		assert_int_equal(((const unsigned char *)page_data(r[i].pg))[100], 3);
		pgcache_unpin(r[i].pg);
	}
	get(c, 3, &r[0]);                 /* now a hit, answered at once */
	assert_int_equal(r[0].calls, 1);
	assert_int_equal(fetch_calls, 1);
	pgcache_unpin(r[0].pg);
	pgcache_stats(c, 0, &st);
	assert_int_equal(st.misses, 1);
	assert_int_equal(st.joins, 4);
	assert_int_equal(st.hits, 1);
	pgcache_destroy(c);
}

static void test_capacity_and_eviction(void **state)
{
	struct pgcache *c = make(4);
	struct pgcache_stats st;
	struct rec r;

	for (uint64_t i = 0; i < 10; i++) {
		get(c, i, &r);
		complete_one(PS);
		assert_int_equal(r.err, 0);
		pgcache_unpin(r.pg);
		pgcache_stats(c, 0, &st);
		assert_true(st.pages <= 4);
	}
	assert_int_equal(st.evictions, 6);
	assert_int_equal(st.transient, 0);
	pgcache_destroy(c);
}

/* The prefaulter keeps the slab faulted in ahead of use, or all of it with UINT64_MAX. */
static void test_prefault(void **state)
{
	struct pgcache *c;
	struct pgcache_stats st;
	struct pgcache_opts o = { .page_size = PS, .capacity = 64 * PS, .nparts = 1, .prefault = 8 * PS };
	struct rec r;

	assert_int_equal(pgcache_create(&c, &o), 0);
	for (int i = 0; i < 10000; i++) {   /* up to 10 s: the thread runs at idle priority */
		pgcache_stats(c, 0, &st);
		if (st.faulted >= 8 * PS)
			break;
		usleep(1000);
	}
	assert_int_equal(st.faulted, 8 * PS);   /* ahead of nothing yet: 8 pages */
	npend = 0;
	for (uint64_t i = 0; i < 10; i++) {
		get(c, i, &r);
		complete_one(PS);
		pgcache_unpin(r.pg);
	}
	for (int i = 0; i < 10000; i++) {
		pgcache_stats(c, 0, &st);
		if (st.faulted >= 18 * PS)
			break;
		usleep(1000);
	}
	assert_true(st.faulted >= 16 * PS && st.faulted <= 18 * PS);   /* 10 used, 8 ahead */
	pgcache_destroy(c);

	o.prefault = UINT64_MAX;
	assert_int_equal(pgcache_create(&c, &o), 0);
	for (int i = 0; i < 10000; i++) {
		pgcache_stats(c, 0, &st);
		if (st.faulted == 64 * PS)
			break;
		usleep(1000);
	}
	assert_int_equal(st.faulted, 64 * PS);
	pgcache_destroy(c);
}

static void test_pinned_pages_stay(void **state)
{
	struct pgcache *c = make(2);
	struct rec a, b, x;
	struct pgcache_stats st;

	get(c, 0, &a); complete_one(PS);
	get(c, 1, &b); complete_one(PS);
	/* Both slots pinned: a third page is served from a private page. */
	get(c, 2, &x); complete_one(100);
	assert_int_equal(x.err, 0);
	assert_int_equal(page_len(x.pg), 100);
	pgcache_unpin(x.pg);            /* frees the transient page */
	pgcache_stats(c, 0, &st);
	assert_int_equal(st.transient, 1);
	assert_int_equal(st.evictions, 0);
	assert_int_equal(((const unsigned char *)page_data(a.pg))[0], 0);
	assert_int_equal(((const unsigned char *)page_data(b.pg))[0], 1);
	pgcache_unpin(a.pg);
	pgcache_unpin(b.pg);
	pgcache_destroy(c);
}

struct hold_rec {
	struct pgcache_hold h;
	int res, calls;
};

static void hold_cb(struct pgcache_hold *h, int res)
{
	struct hold_rec *r = container_of(h, struct hold_rec, h);

	r->res = res;
	r->calls++;
}

/* Bytes held by c's holds (one partition in these tests). */
static uint64_t held(struct pgcache *c)
{
	uint64_t h, limit;

	pgcache_held_total(c, &h, &limit);
	assert_int_equal(limit, pgcache_hold_limit(c, 0));
	return h;
}

static int hold(struct pgcache *c, uint64_t idx)
{
	struct pgkey k = { .file = 7, .index = idx };
	struct hold_rec r = { .h.done = hold_cb };

	pgcache_hold(c, 0, &k, PS, &fetch, &r.h);
	if (npend)
		complete_one(PS);
	assert_int_equal(r.calls, 1);
	return r.res;
}

/* Without a store, holds keep RAM pages through any number of misses, up
 * to 90% of the tier; drop refuses them; unhold lets CLOCK take them. */
static void test_holds(void **state)
{
	struct pgcache *c = make(10);
	struct pgkey k0 = { .file = 7, .index = 0 };
	struct pgcache_stats st;
	struct rec r;

	assert_int_equal(pgcache_hold_limit(c, 0), 9 * PS);
	for (uint64_t i = 0; i < 9; i++)
		assert_int_equal(hold(c, i), 0);
	assert_int_equal(hold(c, 3), 1);
	assert_int_equal(hold(c, 9), -ENOSPC);
	assert_int_equal(held(c), 9 * PS);
	for (uint64_t i = 100; i < 150; i++) {
		get(c, i, &r);
		complete_one(PS);
		pgcache_unpin(r.pg);
	}
	unsigned before = fetch_calls;
	for (uint64_t i = 0; i < 9; i++) {
		get(c, i, &r);
		assert_int_equal(r.calls, 1);      /* a hit, at once */
		pgcache_unpin(r.pg);
	}
	assert_int_equal(fetch_calls, before);
	assert_int_equal(pgcache_drop(c, 0, &k0), -EPERM);
	assert_int_equal(pgcache_unhold(c, 0, &k0), 0);
	assert_int_equal(pgcache_unhold(c, 0, &k0), -ENOENT);
	assert_int_equal(pgcache_drop(c, 0, &k0), 0);
	assert_int_equal(pgcache_unhold_all(c, 0), 8);
	assert_int_equal(held(c), 0);
	for (uint64_t i = 200; i < 230; i++) {
		get(c, i, &r);
		complete_one(PS);
		pgcache_unpin(r.pg);
	}
	pgcache_stats(c, 0, &st);
	assert_int_equal(st.pages, 10);
	before = fetch_calls;
	get(c, 5, &r);
	assert_int_equal(fetch_calls, before + 1);   /* evicted once released */
	complete_one(PS);
	pgcache_unpin(r.pg);
	pgcache_destroy(c);
}

static void test_fetch_error(void **state)
{
	struct pgcache *c = make(4);
	struct rec r1, r2;

	fail_next = 1;
	get(c, 5, &r1);
	assert_int_equal(r1.err, -EIO);
	assert_null(r1.pg);
	get(c, 5, &r2);                 /* the failure was not cached */
	assert_int_equal(fetch_calls, 2);
	complete_one(PS);
	assert_int_equal(r2.err, 0);
	pgcache_unpin(r2.pg);
	/* Async failure reaches every waiter. */
	get(c, 6, &r1);
	get(c, 6, &r2);
	struct pending p = pend[0];
	npend = 0;
	pgcache_fetch_done(p.pg, -EIO);
	assert_int_equal(r1.err, -EIO);
	assert_int_equal(r2.err, -EIO);
	pgcache_destroy(c);
}

/* Small pages (small files, file tails) are held at their own size,
 * rounded to 4 KiB: room for 4 full 64 KiB pages holds 16 pages of 10000
 * bytes with no eviction. */
static void test_small_pages_pack(void **state)
{
	struct pgcache *c = make_sized(64 << 10, 256 << 10);
	struct pgcache_stats st;
	struct rec r;

	for (uint64_t i = 0; i < 16; i++) {
		struct pgkey k = { .file = 3, .index = i };
		memset(&r, 0, sizeof(r));
		r.w.cb = rec_cb;
		pgcache_get(c, 0, &k, 10000, &fetch, &r.w);
		assert_int_equal(last_len, 12288);
		assert_int_equal(last_off, i * (64 << 10));
		complete_one(10000);
		assert_int_equal(page_len(r.pg), 10000);
		pgcache_unpin(r.pg);
	}
	pgcache_stats(c, 0, &st);
	assert_int_equal(st.evictions, 0);
	assert_int_equal(st.pages, 16);
	assert_int_equal(st.bytes, 16 * 12288);
	pgcache_destroy(c);
}

static void test_mixed_sizes_respect_cap(void **state)
{
	struct pgcache *c = make_sized(64 << 10, 256 << 10);
	struct pgcache_stats st;
	struct rec r;

	for (uint64_t i = 0; i < 200; i++) {
		uint64_t want = (i % 3 == 0) ? (64 << 10) : (i % 3 == 1) ? 5000 : 20000;
		struct pgkey k = { .file = 9, .index = i };
		memset(&r, 0, sizeof(r));
		r.w.cb = rec_cb;
		pgcache_get(c, 0, &k, want, &fetch, &r.w);
		complete_one(MIN(want, last_len));
		assert_int_equal(r.err, 0);
		pgcache_unpin(r.pg);
		pgcache_stats(c, 0, &st);
		assert_true(st.bytes <= (256 << 10));
	}
	/* A 64 KiB partition of 20 KiB pages holds more than 4 pages. */
	assert_true(st.pages > 4);
	assert_int_equal(st.transient, 0);
	pgcache_destroy(c);
}

static void test_owner_spread(void **state)
{
	struct pgcache *c;
	struct pgcache_opts o = { .page_size = PS, .capacity = 64 * PS, .nparts = 4 };
	unsigned hist[4] = { 0 };

	uint64_t stripe = PAGE_STRIPE_BYTES / PS;

	assert_int_equal(pgcache_create(&c, &o), 0);
	/* Stripes spread evenly ... */
	for (uint64_t i = 0; i < 4000; i++) {
		struct pgkey k = { .file = 1 + i / 100, .index = i % 100 * stripe };
		hist[pgcache_owner(c, &k)]++;
	}
	for (int i = 0; i < 4; i++)
		assert_true(hist[i] > 800 && hist[i] < 1200);
	/* ... and a stripe's pages share an owner. */
	for (uint64_t i = 0; i < 3 * stripe; i++) {
		struct pgkey k = { .file = 9, .index = i }, first = { 9, i / stripe * stripe };
		assert_int_equal(pgcache_owner(c, &k), pgcache_owner(c, &first));
	}
	pgcache_destroy(c);
	o.page_size = 3000;
	assert_int_equal(pgcache_create(&c, &o), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_single_flight),
		cmocka_unit_test(test_capacity_and_eviction),
		cmocka_unit_test(test_prefault),
		cmocka_unit_test(test_pinned_pages_stay),
		cmocka_unit_test(test_holds),
		cmocka_unit_test(test_fetch_error),
		cmocka_unit_test(test_small_pages_pack),
		cmocka_unit_test(test_mixed_sizes_respect_cap),
		cmocka_unit_test(test_owner_spread),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
