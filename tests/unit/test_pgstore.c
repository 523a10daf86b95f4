/* SSD page store on a real file with real io_uring IO, driven by one manual
 * shard so every completion happens when the test polls. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "iostore/pgstore.h"
#include "iostore/pgstore_i.h"
#include "core/shard.h"
#include "core/util.h"

#define PS 4096
static char path[256];

struct op {
	struct pgstore_io io;
	int res, done;
};

static void op_done(struct pgstore_io *io, int res)
{
	struct op *o = container_of(io, struct op, io);

	o->res = res;
	o->done = 1;
}

/* Polls the shard until o completes: IO under a loaded CI machine can
 * take a while, so the limit is time, not a number of polls. */
static void wait_op(struct op *o)
{
	uint64_t until = now_ns() + 30000000000ULL;

	while (!o->done && now_ns() < until)
		if (!shard_poll(shard_get(0)))
			usleep(20);
	assert_true(o->done);
}

/* Until every IO (log writes included) has completed. */
static void drain(void)
{
	uint64_t until = now_ns() + 30000000000ULL;
	struct shard *s = shard_get(0);

	do {
		if (!shard_poll(s))
			usleep(20);
	} while (shard_inflight(s) && now_ns() < until);
	assert_int_equal(shard_inflight(s), 0);
}

/* Calls run on the shard, as the daemon's would. */
struct call {
	struct pgstore *ps;
	struct pgkey key;
	void *buf;
	uint32_t len;
	struct op *op;
	int rc;
};

static void do_put(void *arg)
{
	struct call *c = arg;

	c->rc = pgstore_put(c->ps, 0, &c->key, 7, c->buf, c->len, &c->op->io);
}

static void do_read(void *arg)
{
	struct call *c = arg;

	c->rc = pgstore_read(c->ps, 0, &c->key, c->buf, PS, &c->op->io);
}

static void do_hold(void *arg)
{
	struct call *c = arg;

	c->rc = pgstore_hold(c->ps, 0, &c->key, 7, c->buf, c->len, &c->op->io);
}

struct key_call {
	struct pgstore *ps;
	struct pgkey key;
	int rc;
};

static void do_unhold(void *arg)
{
	struct key_call *c = arg;

	c->rc = pgstore_unhold(c->ps, 0, &c->key);
}

static void do_drop(void *arg)
{
	struct key_call *c = arg;

	c->rc = pgstore_drop(c->ps, 0, &c->key);
}

static void unhold_all(void *arg)
{
	struct key_call *c = arg;

	c->rc = (int)pgstore_unhold_all(c->ps, 0);
}

static int key_call(struct pgstore *ps, void (*fn)(void *), uint64_t file, uint64_t index)
{
	struct key_call c = { .ps = ps, .key = { file, index } };

	shard_call(shard_get(0), fn, &c);
	drain();
	return c.rc;
}

static void *page_of(uint64_t file, uint64_t index)
{
	char *b = NULL;

	assert_int_equal(posix_memalign((void **)&b, PS, PS), 0);
	for (int i = 0; i < PS; i += 8) {
		uint64_t v = file * 1000003 + index * 31 + (uint64_t)i;
		memcpy(b + i, &v, 8);
	}
	return b;
}

static int put(struct pgstore *ps, uint64_t file, uint64_t index)
{
	struct op o = { .io.done = op_done };
	struct call c = { .ps = ps, .key = { file, index }, .buf = page_of(file, index), .len = PS, .op = &o };

	shard_call(shard_get(0), do_put, &c);
	if (!c.rc)
		wait_op(&o);
	drain();    /* the log write */
	free(c.buf);
	return c.rc;
}

/* Returns 1 if the stored page reads back with the right bytes, 0 if not
 * stored, or the read's negative result. */
static int get(struct pgstore *ps, uint64_t file, uint64_t index)
{
	struct op o = { .io.done = op_done };
	char *buf = NULL, *want = page_of(file, index);
	struct call c = { .ps = ps, .key = { file, index }, .op = &o };
	int rc;

	assert_int_equal(posix_memalign((void **)&buf, PS, PS), 0);
	c.buf = buf;
	shard_call(shard_get(0), do_read, &c);
	if (c.rc == -ENOENT) {
		rc = 0;
	} else {
		wait_op(&o);
		rc = o.res < 0 ? o.res : !memcmp(buf, want, PS);
	}
	drain();
	free(buf);
	free(want);
	return rc;
}

/* Each test its own store file: a failed test leaves nothing locked. */
static int setup_path(void **state)
{
	static int n;

	snprintf(path, sizeof(path), "/var/tmp/test_pgstore.%d.%d", getpid(), n++);
	unlink(path);
	return 0;
}

static struct pgstore *open_store(uint64_t size, uint64_t page_size, bool second_touch)
{
	struct pgstore_opts o = {
		.files = { { path, size } }, .nfiles = 1, .page_size = page_size, .nparts = 1,
		.second_touch = second_touch,
	};
	struct pgstore *ps;
	char err[512];
	int rc = pgstore_open(&ps, &o, err, sizeof(err));

	if (rc)
		print_message("pgstore_open: %s\n", err);
	assert_int_equal(rc, 0);
	assert_non_null(ps);
	pgstore_attach(ps);
	return ps;
}

static int setup(void **state)
{
	struct shards_opts so = { .count = 1, .manual = true };

	return shards_start(&so);
}

static int teardown(void **state)
{
	shards_stop();
	return 0;
}

static int teardown_path(void **state)
{
	unlink(path);
	return 0;
}

static uint64_t stat_of(struct pgstore *ps, size_t off)
{
	struct pgstore_stats st;

	pgstore_stats(ps, 0, &st);
	return *(uint64_t *)((char *)&st + off);
}
#define STAT(ps, f) stat_of(ps, offsetof(struct pgstore_stats, f))

static void test_reopen_is_warm(void **state)
{
	struct pgstore *ps = open_store(1 << 20, PS, false);

	for (uint64_t i = 0; i < 20; i++)
		assert_int_equal(put(ps, 42, i), 0);
	assert_int_equal(put(ps, 42, 3), -EEXIST);
	assert_int_equal(get(ps, 42, 5), 1);
	assert_int_equal(get(ps, 43, 5), 0);
	pgstore_close(ps);

	ps = open_store(1 << 20, PS, false);
	assert_int_equal(STAT(ps, recovered), 20);
	for (uint64_t i = 0; i < 20; i++)
		assert_int_equal(get(ps, 42, i), 1);
	assert_int_equal(STAT(ps, hits), 20);
	pgstore_close(ps);
	unlink(path);
}

/* Many more puts than slots: the store stays within its slots, the log is
 * compacted several times, and a reopen finds exactly the live pages. */
static void test_capacity_and_compaction(void **state)
{
	struct pgstore *ps = open_store(1 << 20, PS, false);
	uint64_t slots = STAT(ps, capacity) / PS, n = 6 * slots + 2000, found = 0;

	assert_true(slots > 10 && slots < 256);
	for (uint64_t i = 0; i < n; i++) {
		assert_int_equal(put(ps, 9, i), 0);
		assert_true(STAT(ps, pages) <= slots);
	}
	assert_int_equal(STAT(ps, pages), slots);
	assert_true(STAT(ps, compactions) >= 2);
	pgstore_close(ps);

	ps = open_store(1 << 20, PS, false);
	assert_int_equal(STAT(ps, recovered), slots);
	for (uint64_t i = 0; i < n; i++) {
		int rc = get(ps, 9, i);
		assert_true(rc == 0 || rc == 1);
		found += (uint64_t)rc;
	}
	assert_int_equal(found, slots);
	pgstore_close(ps);
	unlink(path);
}

/* Returns pgstore_hold's result, or the write's once it was started. */
static int hold(struct pgstore *ps, uint64_t file, uint64_t index)
{
	struct op o = { .io.done = op_done };
	struct call c = { .ps = ps, .key = { file, index }, .buf = page_of(file, index), .len = PS, .op = &o };

	shard_call(shard_get(0), do_hold, &c);
	if (c.rc == -EINPROGRESS) {
		wait_op(&o);
		c.rc = o.res;
	}
	drain();
	free(c.buf);
	return c.rc;
}

/*
 * Held pages are never evicted, whether held after their put or written by
 * the hold; their holds pass through compactions and a reopen; at most 90%
 * of the slots are held; drop refuses a held page; unhold and unhold_all
 * make them evictable again.
 */
static void test_holds(void **state)
{
	struct pgstore *ps = open_store(1 << 20, PS, false);
	uint64_t slots = STAT(ps, capacity) / PS, limit = slots * PIN_MAX_PCT / 100, i;

	assert_int_equal(pgstore_hold_limit(ps, 0), limit);
	assert_int_equal(put(ps, 5, 0), 0);
	assert_int_equal(hold(ps, 5, 0), 0);     /* stored: held in place */
	assert_int_equal(hold(ps, 5, 0), 1);
	assert_int_equal(hold(ps, 5, 1), 0);     /* not stored: written held */
	assert_int_equal(key_call(ps, do_drop, 5, 1), -EPERM);
	for (i = 0; i < 6 * slots + 2000; i++)
		assert_int_equal(put(ps, 9, i), 0);
	assert_true(STAT(ps, compactions) >= 2);
	assert_int_equal(get(ps, 5, 0), 1);
	assert_int_equal(get(ps, 5, 1), 1);
	assert_int_equal(STAT(ps, pinned), 2);
	pgstore_close(ps);

	ps = open_store(1 << 20, PS, false);
	assert_int_equal(STAT(ps, pinned), 2);
	for (i = 2; i < limit; i++)
		assert_int_equal(hold(ps, 5, i), 0);
	assert_int_equal(hold(ps, 5, limit), -ENOSPC);
	assert_int_equal(hold(ps, 5, 3), 1);     /* held already: no new room needed */
	/* The unheld slots still cycle. */
	for (i = 0; i < 4 * slots; i++)
		assert_int_equal(put(ps, 10, i), 0);
	for (i = 0; i < limit; i++)
		assert_int_equal(get(ps, 5, i), 1);
	assert_int_equal(key_call(ps, do_unhold, 5, 0), 0);
	assert_int_equal(key_call(ps, do_unhold, 5, 0), -ENOENT);
	assert_int_equal(key_call(ps, do_drop, 5, 0), 0);
	assert_int_equal(STAT(ps, pinned), limit - 1);
	pgstore_close(ps);

	ps = open_store(1 << 20, PS, false);
	assert_int_equal(STAT(ps, pinned), limit - 1);
	assert_int_equal(get(ps, 5, 0), 0);
	struct key_call all = { .ps = ps };
	shard_call(shard_get(0), unhold_all, &all);
	drain();
	assert_int_equal(all.rc, limit - 1);
	assert_int_equal(STAT(ps, pinned), 0);
	for (i = 0; i < 4 * slots; i++)
		assert_int_equal(put(ps, 11, i), 0);
	for (i = 1; i < limit; i++)
		assert_int_equal(get(ps, 5, i), 0);
	pgstore_close(ps);
	unlink(path);
}

static void count_rec(void *arg, const struct pgs_rec *r)
{
	(*(uint64_t *)arg)++;
}

static struct pgs_replay replay(int fd, struct pgs_super *sb)
{
	struct pgs_replay r;
	uint64_t n = 0;

	assert_int_equal(pread(fd, sb, sizeof(*sb), 0), sizeof(*sb));
	assert_int_equal(pgs_replay_part(fd, sb, 0, count_rec, &n, &r), 0);
	assert_int_equal(n, r.recs);
	return r;
}

static void scribble(int fd, const struct pgs_super *sb, const struct pgs_replay *r, uint64_t rec)
{
	char junk[PGS_REC_SIZE];

	memset(junk, 0x5a, sizeof(junk));
	assert_int_equal(pwrite(fd, junk, sizeof(junk),
				(off_t)(sb->log_off + r->half * sb->log_half + PGS_BLOCK + rec * PGS_REC_SIZE)),
			 sizeof(junk));
}

/* A torn tail (garbage after the last record) is cut off and counted; a
 * corrupt record in the middle ends the log there; a reopen keeps what came
 * before and starts a clean log. */
static void test_torn_tail(void **state)
{
	struct pgstore *ps = open_store(1 << 20, PS, false);
	struct pgs_super sb;
	struct pgs_replay r;
	int fd;

	for (uint64_t i = 0; i < 10; i++)
		assert_int_equal(put(ps, 5, i), 0);
	pgstore_close(ps);

	fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	r = replay(fd, &sb);
	assert_int_equal(r.recs, 10);
	assert_int_equal(r.bad, 0);
	scribble(fd, &sb, &r, 10);
	r = replay(fd, &sb);
	assert_int_equal(r.recs, 10);
	assert_int_equal(r.bad, 1);
	scribble(fd, &sb, &r, 6);
	r = replay(fd, &sb);
	assert_int_equal(r.recs, 6);
	assert_true(r.bad >= 1);
	close(fd);

	ps = open_store(1 << 20, PS, false);
	assert_int_equal(STAT(ps, recovered), 6);
	for (uint64_t i = 0; i < 10; i++)
		assert_int_equal(get(ps, 5, i), i < 6);
	pgstore_close(ps);
	fd = open(path, O_RDONLY);
	r = replay(fd, &sb);
	assert_int_equal(r.recs, 6);
	assert_int_equal(r.bad, 0);
	close(fd);
	unlink(path);
}

/* Flipped bytes in a slot: the read reports -EBADMSG, the slot is dropped
 * and the counter rises; the bytes never reach the caller as a hit. */
static void test_corrupt_page(void **state)
{
	struct pgstore *ps = open_store(1 << 20, PS, false);
	struct pgs_super sb;
	int fd;

	assert_int_equal(put(ps, 77, 0), 0);
	fd = open(path, O_RDWR);
	assert_int_equal(pread(fd, &sb, sizeof(sb), 0), sizeof(sb));
	/* The first put takes slot 0 of the only partition. */
	assert_int_equal(pwrite(fd, "XYZ", 3, (off_t)sb.data_off + 100), 3);
	close(fd);
	assert_int_equal(get(ps, 77, 0), -EBADMSG);
	assert_int_equal(STAT(ps, corrupt), 1);
	assert_int_equal(get(ps, 77, 0), 0);    /* dropped */
	assert_int_equal(put(ps, 77, 0), 0);
	assert_int_equal(get(ps, 77, 0), 1);
	pgstore_close(ps);
	unlink(path);
}

static void test_second_touch(void **state)
{
	struct pgstore *ps = open_store(1 << 20, PS, true);

	assert_int_equal(put(ps, 1, 1), -EAGAIN);
	assert_int_equal(get(ps, 1, 1), 0);
	assert_int_equal(put(ps, 1, 1), 0);
	assert_int_equal(get(ps, 1, 1), 1);
	assert_int_equal(STAT(ps, not_admitted), 1);
	pgstore_close(ps);
	unlink(path);
}

/* Another page size or shard count is refused with the way to reset it;
 * a second opener is refused while the first holds the store. */
static void test_refusals(void **state)
{
	struct pgstore *ps = open_store(1 << 20, PS, false), *ps2;
	struct pgstore_opts o = { .files = { { path, 1 << 20 } }, .nfiles = 1, .page_size = PS, .nparts = 1 };
	char err[512];

	assert_int_equal(pgstore_open(&ps2, &o, err, sizeof(err)), -EBUSY);
	assert_non_null(strstr(err, "in use by another cachefs"));
	pgstore_close(ps);
	o.page_size = 2 * PS;
	assert_int_equal(pgstore_open(&ps2, &o, err, sizeof(err)), -EINVAL);
	print_message("%s\n", err);
	assert_non_null(strstr(err, "page_size=4K"));
	assert_non_null(strstr(err, "cachefs-fsck --reset"));
	o.page_size = PS;
	o.nparts = 2;
	assert_int_equal(pgstore_open(&ps2, &o, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "shards=1"));
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_reopen_is_warm, setup_path, teardown_path),
		cmocka_unit_test_setup_teardown(test_capacity_and_compaction, setup_path, teardown_path),
		cmocka_unit_test_setup_teardown(test_torn_tail, setup_path, teardown_path),
		cmocka_unit_test_setup_teardown(test_corrupt_page, setup_path, teardown_path),
		cmocka_unit_test_setup_teardown(test_second_touch, setup_path, teardown_path),
		cmocka_unit_test_setup_teardown(test_refusals, setup_path, teardown_path),
		cmocka_unit_test_setup_teardown(test_holds, setup_path, teardown_path),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
