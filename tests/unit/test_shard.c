/* Shard runtime: messages from many threads run exactly once, on the shard
 * they were sent to, and timers fire on their shard. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>
#include "core/shard.h"
#include "core/util.h"

#define NSHARDS 3
#define SENDERS 4
#define PER_SENDER 20000

struct tmsg {
	struct shard_msg m;
	unsigned target;
};

static uint64_t ran[NSHARDS];          /* each written by its own shard only */
static atomic_uint misrouted, total;

static void on_msg(struct shard_msg *m)
{
	struct tmsg *t = container_of(m, struct tmsg, m);
	unsigned me = shard_id(shard_self());

	if (me != t->target)
		atomic_fetch_add(&misrouted, 1);
	ran[me]++;
	atomic_fetch_add(&total, 1);
	free(t);
}

static void *sender(void *arg)
{
	for (unsigned i = 0; i < PER_SENDER; i++) {
		struct tmsg *t = malloc(sizeof(*t));
		t->target = (i + (unsigned)(uintptr_t)arg) % NSHARDS;
		shard_send(shard_get(t->target), &t->m, on_msg);
	}
	return NULL;
}

static void test_messages(void **state)
{
	struct shards_opts o = { .count = NSHARDS, .pin = true };
	pthread_t t[SENDERS];

	assert_int_equal(shards_start(&o), 0);
	assert_int_equal(shard_count(), NSHARDS);
	assert_null(shard_self());
	for (unsigned i = 0; i < SENDERS; i++)
		pthread_create(&t[i], NULL, sender, (void *)(uintptr_t)i);
	for (unsigned i = 0; i < SENDERS; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < 2000 && atomic_load(&total) < SENDERS * PER_SENDER; i++)
		usleep(1000);
	shards_stop();
	assert_int_equal(atomic_load(&total), SENDERS * PER_SENDER);
	assert_int_equal(atomic_load(&misrouted), 0);
	uint64_t sum = 0;
	for (unsigned i = 0; i < NSHARDS; i++) {
		assert_true(ran[i] > 0);
		sum += ran[i];
	}
	assert_int_equal(sum, SENDERS * PER_SENDER);
}

struct ttimer {
	struct shard_msg m;
	struct shard_timer t;
	uint64_t armed_at, fired_at;
	unsigned shard;
	atomic_int fired;
	atomic_int count;
};

static void on_timer(struct shard_timer *t)
{
	struct ttimer *tt = container_of(t, struct ttimer, t);

	tt->fired_at = now_ns();
	tt->shard = shard_id(shard_self());
	atomic_store(&tt->fired, 1);
	atomic_fetch_add(&tt->count, 1);
}

static void arm(struct shard_msg *m)
{
	struct ttimer *tt = container_of(m, struct ttimer, m);

	tt->armed_at = now_ns();
	shard_timer_arm(&tt->t, 20 * 1000000ULL, on_timer);
}

static void test_timer(void **state)
{
	struct shards_opts o = { .count = 2 };
	static struct ttimer tt;

	assert_int_equal(shards_start(&o), 0);
	shard_send(shard_get(1), &tt.m, arm);
	for (int i = 0; i < 2000 && !atomic_load(&tt.fired); i++)
		usleep(1000);
	shards_stop();
	assert_int_equal(atomic_load(&tt.fired), 1);
	assert_int_equal(tt.shard, 1);
	assert_true(tt.fired_at - tt.armed_at >= 19 * 1000000ULL);
}

/*
 * Re-arming a pending timer moves it: armed for 10 s, then for 20 ms, it
 * fires once, soon, and leaves nothing in flight (the loop stops at once).
 */
static void rearm(struct shard_msg *m)
{
	struct ttimer *tt = container_of(m, struct ttimer, m);

	tt->armed_at = now_ns();
	shard_timer_arm(&tt->t, 10ULL * 1000000000ULL, on_timer);
	shard_timer_arm(&tt->t, 20 * 1000000ULL, on_timer);
}

static void test_timer_rearm(void **state)
{
	struct shards_opts o = { .count = 1 };
	static struct ttimer tt;
	uint64_t t0;

	assert_int_equal(shards_start(&o), 0);
	shard_send(shard_get(0), &tt.m, rearm);
	for (int i = 0; i < 3000 && !atomic_load(&tt.fired); i++)
		usleep(1000);
	usleep(100000);
	t0 = now_ns();
	shards_stop();
	assert_int_equal(atomic_load(&tt.count), 1);
	assert_true(tt.fired_at - tt.armed_at >= 19 * 1000000ULL);
	assert_true(tt.fired_at - tt.armed_at < 2000 * 1000000ULL);
	assert_true(now_ns() - t0 < 2000 * 1000000ULL);
}

/*
 * Manual shards: a chain of messages hops 0 -> 1 -> 2 -> 0; each poll runs
 * exactly the step that is due, so the order is checked, not just the sum.
 */
struct hop {
	struct shard_msg m;
	unsigned trail[8], n;
};

static void hop_fn(struct shard_msg *m)
{
	struct hop *h = container_of(m, struct hop, m);
	unsigned me = shard_id(shard_self());

	h->trail[h->n++] = me;
	if (h->n < 6)
		shard_send(shard_get((me + 1) % 3), &h->m, hop_fn);
}

static void test_manual_poll_order(void **state)
{
	struct shards_opts o = { .count = 3, .manual = true };
	static struct hop h;

	assert_int_equal(shards_start(&o), 0);
	shard_send(shard_get(0), &h.m, hop_fn);
	assert_int_equal(shard_poll(shard_get(1)), 0);   /* nothing for shard 1 yet */
	assert_int_equal(shard_poll(shard_get(0)), 1);
	assert_int_equal(h.n, 1);
	assert_int_equal(shard_poll(shard_get(2)), 0);
	assert_int_equal(shard_poll(shard_get(1)), 1);
	assert_int_equal(shard_poll(shard_get(2)), 1);
	assert_int_equal(shard_poll(shard_get(0)), 1);
	assert_int_equal(shard_poll(shard_get(1)), 1);
	assert_int_equal(shard_poll(shard_get(2)), 1);
	assert_int_equal(h.n, 6);
	for (unsigned i = 0; i < 6; i++)
		assert_int_equal(h.trail[i], i % 3);
	for (unsigned i = 0; i < 3; i++)
		shard_poll(shard_get(i));
	assert_int_equal(h.n, 6);
	shards_stop();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_messages),
		cmocka_unit_test(test_timer),
		cmocka_unit_test(test_timer_rearm),
		cmocka_unit_test(test_manual_poll_order),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
