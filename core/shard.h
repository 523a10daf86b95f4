/*
 * Shard runtime: N threads, each pinned to a CPU, each owning one io_uring
 * and an event loop. State that belongs to a shard is touched only by its
 * thread; other threads reach it with shard_send(), which is lock-free.
 */
#ifndef CACHEFS_SHARD_H
#define CACHEFS_SHARD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <liburing.h>

struct shard;

/* A message: embedded by the sender in its own object, run on the target. */
struct shard_msg {
	_Atomic(struct shard_msg *) next;
	void (*fn)(struct shard_msg *m);
};

/*
 * An io_uring operation in flight. Put it in the object that owns the
 * buffers; `done` runs on the submitting shard with the CQE result. `gen` is
 * bumped by shard_sqe() so a completion for an earlier use is recognised.
 */
struct shard_op {
	void (*done)(struct shard_op *op, int res);
	uint16_t gen;
};

struct shard_timer {
	struct shard_op op;
	struct shard_op upd;          /* a TIMEOUT_UPDATE of op */
	struct __kernel_timespec ts;
	void (*fn)(struct shard_timer *t);
	uint64_t data;                /* op's user_data while pending */
	bool pending;
};

/*
 * A loop turn: the work between two waits (messages run, completions
 * handled). How long turns take, in buckets of these upper bounds (µs),
 * the last one unbounded: a turn that waited on anything shows here.
 */
#define SHARD_TURN_BOUNDS_US { 10, 50, 100, 500, 1000, 2000, 5000, 10000, 100000, 1000000 }
#define SHARD_TURN_BUCKETS 10

/* Per-shard counters: written by the owner only, read racily by others. */
struct shard_stats {
	uint64_t msgs;        /* messages run */
	uint64_t cqes;        /* completions handled */
	uint64_t stale_cqes;  /* completions dropped for a wrong generation */
	uint64_t wakeups;     /* eventfd wake-ups */
	uint64_t loops;       /* event loop iterations */
	uint64_t turns[SHARD_TURN_BUCKETS + 1];   /* the last is +Inf */
	uint64_t turn_sum_ns, turn_max_ns;
};

struct shards_opts {
	unsigned count;        /* 0: one per online CPU */
	unsigned ring_entries; /* SQ size per shard; 0: 256 */
	bool pin;              /* pin shard i to the i-th allowed CPU */
	unsigned spin_us;      /* poll this long for work before sleeping */
	bool manual;           /* tests: no threads; shard_poll() runs each loop */
	bool sqpoll;           /* a kernel thread per ring polls its submissions */
};

/*
 * Starts the shard threads. Returns 0 or a negative errno (logged). Must run
 * after any fork (daemonizing), since threads do not survive it.
 */
int shards_start(const struct shards_opts *o);
/*
 * Manual shards only: runs one loop iteration of s on the calling thread
 * (messages, then completions, never blocking) and returns how much it ran.
 * Lets a test interleave shards deterministically.
 */
unsigned shard_poll(struct shard *s);
/* Asks every loop to finish its in-flight operations and exit; joins them. */
void shards_stop(void);
unsigned shard_count(void);
struct shard *shard_get(unsigned idx);
unsigned shard_id(const struct shard *s);
/*
 * Asks the kernel to back [addr, addr + len) with memory on s's NUMA node
 * (preferred, not strict) wherever it is first touched: memory another
 * thread faults in for the shard. Nothing on a machine with one node.
 */
void shard_prefer_node(const struct shard *s, void *addr, size_t len);
/* The shard whose thread calls this, or NULL from any other thread. */
struct shard *shard_self(void);
const struct shard_stats *shard_stats(const struct shard *s);
/* Owner (or a manual shard's driver): io_uring operations in flight. */
unsigned shard_inflight(const struct shard *s);

/*
 * Queues m to run on shard `to`; callable from any thread, never blocks, never
 * fails. m must stay valid until m->fn runs, and m->fn owns it afterwards.
 */
void shard_send(struct shard *to, struct shard_msg *m, void (*fn)(struct shard_msg *m));
/* Runs fn(m) on shard `owner`: at once when the caller is that shard, else as shard_send. */
void shard_run(unsigned owner, struct shard_msg *m, void (*fn)(struct shard_msg *m));

/*
 * Owner only: an SQE whose completion calls op->done(op, res). Submission is
 * batched at the end of the loop iteration. Never returns NULL (it submits to
 * make room when the queue is full).
 */
struct io_uring_sqe *shard_sqe(struct shard_op *op);

/*
 * Runs fn(arg) on shard s and waits for it to return; for setup and
 * teardown from the main thread, never on the data path. Manual shards run
 * it inline on the caller, as s.
 */
void shard_call(struct shard *s, void (*fn)(void *arg), void *arg);

/*
 * Owner only: registers fds with this shard's ring (IOSQE_FIXED_FILE).
 * Returns the fixed index of fds[0] (the others follow), or a negative errno.
 */
int shard_register_files(const int *fds, unsigned n);
/* Owner only: drops the registered files. */
void shard_unregister_files(void);
/*
 * Owner only, once per shard: reserves fixed-buffer entries for [base,
 * base + len) in chunks of `chunk` bytes (at most 1 GiB), none registered yet.
 * shard_buffer_register(i) then registers chunk i, pinning its memory.
 * Both return 0 or a negative errno.
 */
int shard_buffers_init(void *base, size_t len, size_t chunk);
int shard_buffer_register(unsigned i);
/* Owner only: the fixed buffer holding [p, p + len), or -1. */
int shard_buf_index(const void *p, size_t len);

/*
 * Owner only: runs t->fn on this shard after `ns` nanoseconds. Arming a
 * pending timer moves its expiry (one kernel timer per shard_timer, however
 * often it is re-armed). t must stay valid while pending.
 */
void shard_timer_arm(struct shard_timer *t, uint64_t ns, void (*fn)(struct shard_timer *t));

#endif
