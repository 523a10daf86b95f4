/* The read engine: a read fans out into a page operation per page on each
 * page's owner shard and completes once, when the last part did, with
 * iovecs over the pinned pages; errors, the end of the file, and a failure
 * remembered per handle. Three manual shards and a source whose reads the
 * test completes by hand keep it deterministic. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "core/shard.h"
#include "core/util.h"
#include "engine/engine_i.h"

#define NSHARDS 3
#define PS (64u << 10)
#define FILE_SIZE (5 * PS + 1000)

/* ---- a source whose reads wait for the test ---- */

static struct ufs_read *pending[64];
static struct shard *pending_on[64];
static unsigned npending, reads_started;
static uint64_t fail_off = UINT64_MAX;   /* a read at this offset fails */

static uint8_t byte_at(uint64_t off)
{
	return (uint8_t)(off * 7 + 3);
}

static int fake_read(struct ufs_read *r)
{
	reads_started++;
	pending[npending] = r;
	pending_on[npending++] = shard_self();
	return 0;
}

static void fake_release(struct ufs_file *f)
{
}

static void fake_fini(struct ufs *u)
{
}

static const struct ufs_ops fake_ops = { .name = "fake", .read = fake_read, .release = fake_release,
					 .fini = fake_fini };
static struct ufs_file fake_file = { .ops = &fake_ops, .name = "fake" };

static void complete(void *arg)
{
	struct ufs_read *r = arg;

	if (r->off == fail_off) {
		r->done(r, -EIO);
		return;
	}
	size_t n = (size_t)MIN((uint64_t)r->len, FILE_SIZE - MIN(r->off, FILE_SIZE));
	for (size_t i = 0; i < n; i++)
		r->buf[i] = (char)byte_at(r->off + i);
	r->done(r, (int)n);
}

static void poll_all(void)
{
	while (1) {
		unsigned n = 0;
		for (unsigned i = 0; i < NSHARDS; i++)
			n += shard_poll(shard_get(i));
		if (!n)
			return;
	}
}

/* Completes every source read asked for so far, each on its own shard. */
static void serve_reads(void)
{
	poll_all();
	while (npending) {
		struct ufs_read *r = pending[--npending];
		shard_call(pending_on[npending], complete, r);
		poll_all();
	}
}

/* ---- the engine over it ---- */

static struct engine *e;

static int setup(void **state)
{
	struct shards_opts so = { .count = NSHARDS, .manual = true };
	struct cache_opts co = { .page_size = PS, .ram_cache = 64 * PS, .max_readahead = 4 * PS,
				 .readahead_budget = 1 /* no read-ahead: only what is asked */ };
	struct meta_opts mo = { .meta_cache = 1000, .meta_threads = 1, .stale_if_error = 0 };

	assert_int_equal(shards_start(&so), 0);
	assert_int_equal(engine_create(&e, &co, &mo, &fake_ops, NULL), 0);
	assert_int_equal(engine_start(e), 0);
	return 0;
}

static int teardown(void **state)
{
	engine_stop(e);
	shards_stop();
	engine_destroy(e);
	return 0;
}

static struct efile *open_fake(uint64_t id)
{
	struct ufs_stat st = { .size = FILE_SIZE, .id = id, .version = 1, .mode = 0100444 };

	atomic_store(&fake_file.refs, 100);
	return efile_new(e, &fake_file, &st);
}

struct got {
	int calls, err;
	size_t bytes;
	unsigned niov;
	int good;            /* the bytes match the source's */
	uint64_t off;
};

static void read_done(struct eread *r)
{
	struct got *g = r->arg;
	uint64_t at = g->off;

	g->calls++;
	g->err = r->err;
	g->niov = r->niov;
	g->good = 1;
	for (unsigned i = 0; i < r->niov; i++) {
		const uint8_t *p = r->iov[i].iov_base;
		for (size_t k = 0; k < r->iov[i].iov_len; k++, at++)
			g->good &= p[k] == byte_at(at);
		g->bytes += r->iov[i].iov_len;
	}
	eread_release(r);
}

static struct got read_range(struct efile *f, uint64_t off, size_t len)
{
	struct got g = { .off = off };

	assert_int_equal(engine_read(e, f, off, len, read_done, &g), 0);
	serve_reads();
	return g;
}

static void test_fan_out(void **state)
{
	struct efile *f = open_fake(1);
	unsigned before = reads_started;
	struct got g;

	/* 100 bytes into page 0 to 100 bytes into page 3: four pages. */
	g = read_range(f, 100, 3 * PS);
	assert_int_equal(g.calls, 1);           /* answered once */
	assert_int_equal(g.err, 0);
	assert_int_equal(g.niov, 4);
	assert_int_equal(g.bytes, 3 * PS);
	assert_true(g.good);
	assert_true(reads_started - before >= 1 && reads_started - before <= 4);
	/* Again: every page is in the RAM tier, the source is not asked. */
	before = reads_started;
	g = read_range(f, 100, 3 * PS);
	assert_int_equal(g.calls, 1);
	assert_true(g.good);
	assert_int_equal(reads_started, before);
	efile_put(f);
}

static void test_end_of_file(void **state)
{
	struct efile *f = open_fake(2);
	struct got g;

	g = read_range(f, FILE_SIZE - 10, PS);     /* across the end: 10 bytes */
	assert_int_equal(g.err, 0);
	assert_int_equal(g.bytes, 10);
	assert_true(g.good);
	g = read_range(f, FILE_SIZE + 5, PS);      /* past it: nothing */
	assert_int_equal(g.calls, 1);
	assert_int_equal(g.bytes, 0);
	efile_put(f);
}

static void test_failure(void **state)
{
	struct efile *f = open_fake(3), *other;
	unsigned before;
	struct got g;

	fail_off = 2 * PS;
	g = read_range(f, 0, 4 * PS);
	assert_int_equal(g.calls, 1);             /* once, whichever part failed */
	assert_int_equal(g.err, -EIO);
	/* The kernel's retry on the same handle: the same error, no fetch. */
	before = reads_started;
	g = read_range(f, 2 * PS, PS);
	assert_int_equal(g.err, -EIO);
	assert_int_equal(reads_started, before);
	/* Another reader (another handle) asks the source again. */
	fail_off = UINT64_MAX;
	other = open_fake(3);
	g = read_range(other, 2 * PS, PS);
	assert_int_equal(g.err, 0);
	assert_true(g.good);
	assert_int_equal(reads_started, before + 1);
	efile_put(other);
	efile_put(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fan_out),
		cmocka_unit_test(test_end_of_file),
		cmocka_unit_test(test_failure),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
