#include "config.h"
#include "core/shard.h"
#include "core/log.h"
#include "core/util.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <numa.h>
#include <numaif.h>
#ifdef HAVE_JEMALLOC
#include <jemalloc/jemalloc.h>
#endif

struct shard {
	/* Written by senders (any thread). */
	_Atomic(struct shard_msg *) tail;  /* MPSC queue, Vyukov style */
	atomic_int wake_pending;           /* awake or being woken: senders skip the eventfd */
	char pad[64];
	/* Owned by the shard thread. */
	struct shard_msg stub;
	struct shard_msg *head;
	struct io_uring ring;
	struct shard_op efd_op;
	uint64_t efd_val;
	unsigned id;
	unsigned spin_ns;                  /* how long to poll before sleeping */
	int cpu;
	int efd;
	unsigned inflight;                 /* SQEs whose CQE has not come */
	unsigned timers;                   /* of those, armed timers */
	struct shard_stats stats;
	char *buf_base;                    /* fixed buffers: nbufs chunks of buf_len bytes */
	size_t buf_len, buf_chunk;
	unsigned nbufs;
	uint8_t *buf_ok;                   /* chunk i is registered */
	pthread_t thread;
	atomic_bool stopping;
	bool manual;                       /* no thread: driven by shard_poll() */
};

static struct shard **shards;
static unsigned nshards;
static __thread struct shard *self;

unsigned shard_count(void) { return nshards; }
struct shard *shard_get(unsigned idx) { return idx < nshards ? shards[idx] : NULL; }
unsigned shard_id(const struct shard *s) { return s->id; }

void shard_prefer_node(const struct shard *s, void *addr, size_t len)
{
	unsigned long mask;
	int node;

	if (!s || s->cpu < 0 || numa_available() < 0 || numa_max_node() <= 0)
		return;
	node = numa_node_of_cpu(s->cpu);
	if (node < 0 || node >= (int)(8 * sizeof(mask)))
		return;
	mask = 1UL << node;
	if (mbind(addr, len, MPOL_PREFERRED, &mask, 8 * sizeof(mask), 0))
		log_debug("shard %u: mbind to node %d: %s", s->id, node, strerror(errno));
}
struct shard *shard_self(void) { return self; }
const struct shard_stats *shard_stats(const struct shard *s) { return &s->stats; }
unsigned shard_inflight(const struct shard *s) { return s->inflight; }

static void mq_init(struct shard *s)
{
	atomic_store(&s->stub.next, NULL);
	s->head = &s->stub;
	atomic_store(&s->tail, &s->stub);
}

static void mq_push(struct shard *s, struct shard_msg *m)
{
	atomic_store_explicit(&m->next, NULL, memory_order_relaxed);
	struct shard_msg *prev = atomic_exchange_explicit(&s->tail, m, memory_order_acq_rel);
	atomic_store_explicit(&prev->next, m, memory_order_release);
}

/* Owner only. Returns NULL when empty or when a push is half done. */
static struct shard_msg *mq_pop(struct shard *s)
{
	struct shard_msg *head = s->head;
	struct shard_msg *next = atomic_load_explicit(&head->next, memory_order_acquire);

	if (head == &s->stub) {
		if (!next)
			return NULL;
		s->head = next;
		head = next;
		next = atomic_load_explicit(&next->next, memory_order_acquire);
	}
	if (next) {
		s->head = next;
		return head;
	}
	if (head != atomic_load_explicit(&s->tail, memory_order_acquire))
		return NULL;
	mq_push(s, &s->stub);
	next = atomic_load_explicit(&head->next, memory_order_acquire);
	if (next) {
		s->head = next;
		return head;
	}
	return NULL;
}

void shard_run(unsigned owner, struct shard_msg *m, void (*fn)(struct shard_msg *m))
{
	struct shard *me = shard_self();

	if (me && shard_id(me) == owner)
		fn(m);
	else
		shard_send(shard_get(owner), m, fn);
}

void shard_send(struct shard *to, struct shard_msg *m, void (*fn)(struct shard_msg *m))
{
	m->fn = fn;
	mq_push(to, m);
	/*
	 * Push before testing the flag: the loop clears the flag and then
	 * drains again, so either it sees this message or we see the flag
	 * clear and wake it. Skipping the write while one is pending keeps a
	 * burst of messages to one syscall.
	 */
	if (!atomic_exchange(&to->wake_pending, 1)) {
		uint64_t one = 1;
		ssize_t n = write(to->efd, &one, sizeof(one));
		(void)n; /* eventfd writes of 1 cannot fail short of overflow */
	}
}

static unsigned drain_msgs(struct shard *s)
{
	struct shard_msg *m;
	unsigned n = 0;

	while ((m = mq_pop(s))) {
		m->fn(m);
		n++;
	}
	s->stats.msgs += n;
	return n;
}

struct io_uring_sqe *shard_sqe(struct shard_op *op)
{
	struct shard *s = self;
	struct io_uring_sqe *sqe;

	assert(s);
	while (!(sqe = io_uring_get_sqe(&s->ring))) {
		int rc = io_uring_submit(&s->ring);
		if (rc < 0 && rc != -EAGAIN && rc != -EBUSY)
			log_err("io_uring_submit(shard %u): %s", s->id, strerror(-rc));
	}
	op->gen++;
	/* x86-64 and arm64 user pointers fit in 48 bits; the top 16 carry gen. */
	io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)op | ((uint64_t)op->gen << 48));
	s->inflight++;
	return sqe;
}

static void timer_done(struct shard_op *op, int res)
{
	struct shard_timer *t = container_of(op, struct shard_timer, op);

	(void)res; /* -ETIME is the normal expiry */
	t->pending = false;
	self->timers--;
	t->fn(t);
}

static void timer_submit(struct shard_timer *t)
{
	struct io_uring_sqe *sqe;

	t->op.done = timer_done;
	sqe = shard_sqe(&t->op);
	io_uring_prep_timeout(sqe, &t->ts, 0, 0);
	t->data = sqe->user_data;
	t->pending = true;
	self->timers++;
}

/* An update that found its timer already expired: arm it afresh. */
static void timer_upd_done(struct shard_op *op, int res)
{
	struct shard_timer *t = container_of(op, struct shard_timer, upd);

	if (res == -ENOENT && !t->pending)
		timer_submit(t);
}

void shard_timer_arm(struct shard_timer *t, uint64_t ns, void (*fn)(struct shard_timer *t))
{
	t->fn = fn;
	t->ts.tv_sec = (long long)(ns / 1000000000ULL);
	t->ts.tv_nsec = (long long)(ns % 1000000000ULL);
	if (!t->pending) {
		timer_submit(t);
		return;
	}
	t->upd.done = timer_upd_done;
	io_uring_prep_timeout_update(shard_sqe(&t->upd), &t->ts, t->data, 0);
}

static void efd_arm(struct shard *s);

static void efd_done(struct shard_op *op, int res)
{
	struct shard *s = container_of(op, struct shard, efd_op);

	if (res < 0 && res != -EINTR && res != -EAGAIN)
		log_err("eventfd read(shard %u): %s", s->id, strerror(-res));
	s->stats.wakeups++;
	if (!atomic_load(&s->stopping))
		efd_arm(s);
}

static void efd_arm(struct shard *s)
{
	s->efd_op.done = efd_done;
	io_uring_prep_read(shard_sqe(&s->efd_op), s->efd, &s->efd_val, sizeof(s->efd_val), 0);
}

static unsigned reap(struct shard *s)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;

	io_uring_for_each_cqe(&s->ring, head, cqe) {
		uint64_t data = io_uring_cqe_get_data64(cqe);
		struct shard_op *op = (struct shard_op *)(uintptr_t)(data & ((1ULL << 48) - 1));
		uint16_t gen = (uint16_t)(data >> 48);

		n++;
		s->inflight--;
		if (unlikely(op->gen != gen)) {
			s->stats.stale_cqes++;
			continue;
		}
		op->done(op, cqe->res);
	}
	io_uring_cq_advance(&s->ring, n);
	s->stats.cqes += n;
	return n;
}

static bool spin(struct shard *s)
{
	uint64_t until;

	io_uring_submit(&s->ring);
	until = now_ns() + s->spin_ns;
	do {
		for (int i = 0; i < 64; i++) {
			if (atomic_load_explicit(&s->head->next, memory_order_acquire) ||
			    io_uring_cq_ready(&s->ring))
				return true;
			__builtin_ia32_pause();
		}
	} while (now_ns() < until && !atomic_load_explicit(&s->stopping, memory_order_relaxed));
	return false;
}

/* Counts one loop turn that started at `start` (now_ns()). */
static void count_turn(struct shard *s, uint64_t start)
{
	static const uint64_t bounds_us[] = SHARD_TURN_BOUNDS_US;
	uint64_t ns = now_ns() - start;
	unsigned b = 0;

	while (b < SHARD_TURN_BUCKETS && ns > bounds_us[b] * 1000)
		b++;
	s->stats.turns[b]++;
	s->stats.turn_sum_ns += ns;
	if (ns > s->stats.turn_max_ns)
		s->stats.turn_max_ns = ns;
}

static void bind_memory(struct shard *s)
{
#ifdef HAVE_JEMALLOC
	/* One arena per shard: no allocator lock shared with other shards. */
	unsigned arena;
	size_t sz = sizeof(arena);
	if (mallctl("arenas.create", &arena, &sz, NULL, 0) == 0)
		mallctl("thread.arena", NULL, NULL, &arena, sizeof(arena));
#endif
	/* Arena pages are first touched here, so they land on our node. */
	if (s->cpu >= 0 && numa_available() >= 0 && numa_max_node() > 0)
		numa_set_preferred(numa_node_of_cpu(s->cpu));
}

static void *shard_main(void *arg)
{
	struct shard *s = arg;
	char name[16];

	sigset_t sigs;

	/* Signals go to the main thread, which owns shutdown. */
	sigfillset(&sigs);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	self = s;
	snprintf(name, sizeof(name), "cachefs-s%u", s->id);
	pthread_setname_np(pthread_self(), name);
	bind_memory(s);
	efd_arm(s);

	for (;;) {
		uint64_t start = now_ns();

		s->stats.loops++;
		if (drain_msgs(s) + reap(s))
			count_turn(s, start);
		/* Stop once only the eventfd read and timers are left: the
		 * ring's teardown cancels those. */
		if (atomic_load(&s->stopping) && s->inflight <= 1 + s->timers) {
			/* A message the reaped completions sent this shard still runs. */
			if (drain_msgs(s))
				continue;
			break;
		}
		/*
		 * Poll a little before sleeping: a request usually follows soon,
		 * and while wake_pending stays set its sender makes no syscall
		 * and we take no context switch.
		 */
		if (s->spin_ns && spin(s))
			continue;
		atomic_store(&s->wake_pending, 0);
		if (drain_msgs(s))
			continue;
		int rc = io_uring_submit_and_wait(&s->ring, 1);
		if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY && rc != -ETIME)
			log_err("io_uring_submit_and_wait(shard %u): %s", s->id, strerror(-rc));
	}
	self = NULL;
	return NULL;
}

unsigned shard_poll(struct shard *s)
{
	struct shard *prev = self;
	unsigned n;

	assert(s->manual);
	/* No eventfd read is armed: the caller decides when a shard runs. */
	self = s;
	io_uring_submit(&s->ring);
	atomic_store(&s->wake_pending, 0);
	n = drain_msgs(s);
	n += reap(s);
	self = prev;
	return n;
}

struct call {
	struct shard_msg msg;
	void (*fn)(void *arg);
	void *arg;
	sem_t done;
};

static void call_run(struct shard_msg *m)
{
	struct call *c = container_of(m, struct call, msg);

	c->fn(c->arg);
	sem_post(&c->done);
}

void shard_call(struct shard *s, void (*fn)(void *arg), void *arg)
{
	struct call c = { .fn = fn, .arg = arg };

	if (s->manual) {
		struct shard *prev = self;
		self = s;
		fn(arg);
		self = prev;
		return;
	}
	sem_init(&c.done, 0, 0);
	shard_send(s, &c.msg, call_run);
	while (sem_wait(&c.done) < 0 && errno == EINTR)
		;
	sem_destroy(&c.done);
}

int shard_register_files(const int *fds, unsigned n)
{
	struct shard *s = self;
	int rc;

	assert(s);
	/* One table per ring: the store is its only user so far. */
	rc = io_uring_register_files(&s->ring, fds, n);
	return rc < 0 ? rc : 0;
}

void shard_unregister_files(void)
{
	io_uring_unregister_files(&self->ring);
}

int shard_buffers_init(void *base, size_t len, size_t chunk)
{
	unsigned n = (unsigned)((len + chunk - 1) / chunk);
	struct shard *s = self;
	int rc;

	assert(s && !s->buf_ok);
	s->buf_ok = calloc(n, 1);
	if (!s->buf_ok)
		return -ENOMEM;
	rc = io_uring_register_buffers_sparse(&s->ring, n);
	if (rc < 0) {
		free(s->buf_ok);
		s->buf_ok = NULL;
		return rc;
	}
	s->buf_base = base;
	s->buf_len = len;
	s->buf_chunk = chunk;
	s->nbufs = n;
	return 0;
}

int shard_buffer_register(unsigned i)
{
	struct shard *s = self;
	size_t off = (size_t)i * s->buf_chunk;
	struct iovec iov = { .iov_base = s->buf_base + off, .iov_len = MIN(s->buf_chunk, s->buf_len - off) };
	int rc;

	assert(i < s->nbufs);
	rc = io_uring_register_buffers_update_tag(&s->ring, i, &iov, NULL, 1);
	if (rc < 0)
		return rc;
	s->buf_ok[i] = 1;
	return 0;
}

int shard_buf_index(const void *p, size_t len)
{
	struct shard *s = self;
	const char *c = p;
	size_t i;

	if (!s->buf_ok || c < s->buf_base || c + len > s->buf_base + s->buf_len)
		return -1;
	i = (size_t)(c - s->buf_base) / s->buf_chunk;
	if (!s->buf_ok[i] || c + len > s->buf_base + (i + 1) * s->buf_chunk)
		return -1;
	return (int)i;
}

static int pick_cpus(int *cpus, unsigned n)
{
	cpu_set_t set;
	unsigned found = 0;

	if (sched_getaffinity(0, sizeof(set), &set) < 0)
		return -errno;
	unsigned allowed = (unsigned)CPU_COUNT(&set);
	for (int c = 0; c < CPU_SETSIZE && found < n; c++)
		if (CPU_ISSET(c, &set))
			cpus[found++] = c;
	/* More shards than CPUs: wrap around (useful only for testing). */
	for (unsigned i = found; i < n; i++)
		cpus[i] = cpus[i % (allowed ? allowed : 1)];
	return 0;
}

static void shard_free(struct shard *s)
{
	if (s->efd >= 0)
		close(s->efd);
	if (s->ring.ring_fd > 0)
		io_uring_queue_exit(&s->ring);
	free(s->buf_ok);
	free(s);
}

int shards_start(const struct shards_opts *o)
{
	unsigned n = o->count ? o->count : (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
	unsigned entries = o->ring_entries ? o->ring_entries : 256;
	int rc, *cpus = calloc(n, sizeof(int));

	shards = calloc(n, sizeof(*shards));
	if (!shards || !cpus)
		abort();
	if (o->pin && pick_cpus(cpus, n) < 0)
		log_warn("sched_getaffinity failed; shards are not pinned");
	for (unsigned i = 0; i < n; i++) {
		struct shard *s;
		if (posix_memalign((void **)&s, 64, sizeof(*s)))
			abort();
		memset(s, 0, sizeof(*s));
		s->id = i;
		s->cpu = o->pin ? cpus[i] : -1;
		s->spin_ns = o->spin_us * 1000;
		s->manual = o->manual;
		mq_init(s);
		s->efd = eventfd(0, EFD_CLOEXEC);
		if (s->efd < 0) {
			rc = -errno;
			log_err("eventfd(shard %u): %s", i, strerror(-rc));
			free(s);
			goto undo;
		}
		struct io_uring_params p = { 0 };
		if (o->sqpoll) {
			p.flags = IORING_SETUP_SQPOLL;
			p.sq_thread_idle = 100;   /* ms before the poller sleeps */
		}
		rc = io_uring_queue_init_params(entries, &s->ring, &p);
		if (rc < 0) {
			log_err("io_uring_queue_init(shard %u, %u entries): %s", i, entries, strerror(-rc));
			close(s->efd);
			free(s);
			goto undo;
		}
		shards[i] = s;
		nshards = i + 1;
	}
	for (unsigned i = 0; i < n && !o->manual; i++) {
		struct shard *s = shards[i];
		rc = -pthread_create(&s->thread, NULL, shard_main, s);
		if (rc) {
			log_err("pthread_create(shard %u): %s", i, strerror(-rc));
			for (unsigned j = i; j < n; j++)
				atomic_store(&shards[j]->stopping, true);
			n = i;
			nshards = n;
			shards_stop();
			free(cpus);
			return rc;
		}
		if (s->cpu >= 0) {
			cpu_set_t set;
			CPU_ZERO(&set);
			CPU_SET(s->cpu, &set);
			pthread_setaffinity_np(s->thread, sizeof(set), &set);
		}
	}
	free(cpus);
	return 0;
undo:
	for (unsigned i = 0; i < nshards; i++)
		shard_free(shards[i]);
	free(shards);
	shards = NULL;
	nshards = 0;
	free(cpus);
	return rc;
}

void shards_stop(void)
{
	for (unsigned i = 0; i < nshards; i++) {
		atomic_store(&shards[i]->stopping, true);
		uint64_t one = 1;
		ssize_t w = write(shards[i]->efd, &one, sizeof(one));
		(void)w;
	}
	for (unsigned i = 0; i < nshards; i++) {
		if (!shards[i]->manual)
			pthread_join(shards[i]->thread, NULL);
		shard_free(shards[i]);
	}
	free(shards);
	shards = NULL;
	nshards = 0;
}
