#include "config.h"
#include "fuse/intake.h"
#include "core/log.h"
#include "core/shard.h"
#include "core/util.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <stdatomic.h>
#include <unistd.h>

/*
 * Large enough for any request the kernel may send (a 1 MiB WRITE and its
 * headers): the kernel refuses reads into smaller buffers.
 */
#define INTAKE_BUF_SIZE ((1 << 20) + 4096)

struct intake_slot {
	struct shard_op op;
	struct shard_msg msg;
	struct intake *in;
	char *buf;
};

/* Per shard: cancels that shard's reads when the session ends. */
struct intake_cancel {
	struct shard_msg msg;
	struct shard_op op;
	struct intake *in;
};

struct intake {
	struct fuse_session *se;
	int fd;                   /* the session's /dev/fuse descriptor */
	int exit_efd;             /* a shard saw the end of the session */
	atomic_uint active;       /* slots with a read in flight */
	unsigned nslots;
	struct intake_slot *slots;
	struct intake_cancel *cancels;
};

static void slot_arm(struct intake_slot *sl);

/* Reads one request from fd (blocking, whatever its O_NONBLOCK). */
static ssize_t read_request(int fd, char *buf, size_t len)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	for (;;) {
		ssize_t n = read(fd, buf, len);
		if (n >= 0 || (errno != EAGAIN && errno != EINTR))
			return n;
		if (errno == EAGAIN)
			poll(&p, 1, -1);
	}
}

/*
 * Runs libfuse on INIT with its reply going into a pipe, which *reply gets.
 * Returns the reply's length; -1 with *ran false when libfuse did not see
 * the request (it may be given it again), with *ran true when it did.
 */
static ssize_t capture_reply(struct fuse_session *se, const struct fuse_buf *fb, char *reply,
			     size_t len, bool *ran)
{
	int fd = fuse_session_fd(se), saved = fcntl(fd, F_DUPFD_CLOEXEC, 0), p[2];
	ssize_t n = -1;

	*ran = false;
	/* Non-blocking: a libfuse that wrote nothing must not hang the read. */
	if (saved < 0 || pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0) {
		if (saved >= 0)
			close(saved);
		return -1;
	}
	/* libfuse writes to the session's descriptor: make it the pipe for a moment. */
	if (dup3(p[1], fd, O_CLOEXEC) == fd) {
		fuse_session_process_buf(se, fb);
		*ran = true;
		n = read(p[0], reply, len);
		if (dup3(saved, fd, O_CLOEXEC) != fd) {
			log_err("putting /dev/fuse back after INIT: %s", strerror(errno));
			n = -1;
		}
	}
	close(saved);
	close(p[0]);
	close(p[1]);
	return n;
}

int intake_handshake(struct fuse_session *se)
{
	int fd = fuse_session_fd(se);
	char *buf = malloc(INTAKE_BUF_SIZE), reply[4096];
	const struct fuse_in_header *ih = (const void *)buf;
	const struct fuse_init_in *in = (const void *)(buf + sizeof(*ih));
	struct fuse_out_header *oh = (void *)reply;
	struct fuse_init_out *out = (void *)(reply + sizeof(*oh));
	ssize_t n, m;
	bool ran;
	int rc = 0;

	if (!buf)
		return -ENOMEM;
	n = read_request(fd, buf, INTAKE_BUF_SIZE);
	if (n < (ssize_t)(sizeof(*ih) + offsetof(struct fuse_init_in, flags2)) || ih->opcode != FUSE_INIT) {
		rc = n < 0 ? -errno : -EPROTO;
		log_err("reading INIT from /dev/fuse: %s", strerror(-rc));
		free(buf);
		return rc;
	}
	struct fuse_buf fb = { .mem = buf, .size = (size_t)n };
	m = capture_reply(se, &fb, reply, sizeof(reply), &ran);
	if (m < 0 && !ran) {
		/* Could not capture it: libfuse answers INIT as it would have. */
		fuse_session_process_buf(se, &fb);
		free(buf);
		return 0;
	}
	if (m < (ssize_t)(sizeof(*oh) + offsetof(struct fuse_init_out, max_background)) || oh->error) {
		/* Refused (a kernel too old, say) or no reply: pass on what there is. */
		if (m >= (ssize_t)sizeof(*oh) && write(fd, reply, (size_t)m) != m)
			log_err("answering INIT on /dev/fuse: %s", strerror(errno));
		log_err("INIT: %s", m >= (ssize_t)sizeof(*oh) ? strerror(-oh->error) : "libfuse gave no reply");
		free(buf);
		return m >= (ssize_t)sizeof(*oh) && oh->error ? oh->error : -EPROTO;
	}
	if ((in->flags & FUSE_PARALLEL_DIROPS) && !(out->flags & FUSE_PARALLEL_DIROPS)) {
		out->flags |= FUSE_PARALLEL_DIROPS;
		log_debug("INIT: parallel directory operations on");
	}
	if (write(fd, reply, (size_t)m) != m) {
		rc = -errno;
		log_err("answering INIT on /dev/fuse: %s", strerror(-rc));
	}
	free(buf);
	return rc;
}

static void slot_done(struct shard_op *op, int res)
{
	struct intake_slot *sl = container_of(op, struct intake_slot, op);
	struct intake *in = sl->in;

	if (res > 0) {
		struct fuse_buf fb = { .mem = sl->buf, .size = (size_t)res };
		fuse_session_process_buf(in->se, &fb);
	} else if (res == -ENODEV) {
		/* Unmounted: the kernel has no more requests for anyone. */
		fuse_session_exit(in->se);
	} else if (res == -ECANCELED && fuse_session_exited(in->se)) {
		/* intake_stop's own cancel at shutdown: nothing to say. */
	} else if (res != -EAGAIN && res != -EINTR && res != -ENOENT) {
		/* ENOENT: the request was interrupted before we read it. */
		log_err("read(/dev/fuse, shard %u): %s", shard_id(shard_self()), strerror(-res));
		fuse_session_exit(in->se);
	}
	if (fuse_session_exited(in->se)) {
		uint64_t one = 1;
		atomic_fetch_sub(&in->active, 1);
		ssize_t w = write(in->exit_efd, &one, sizeof(one));
		(void)w;
		return;
	}
	slot_arm(sl);
}

static void slot_arm(struct intake_slot *sl)
{
	sl->op.done = slot_done;
	/* /dev/fuse is a stream: the offset is ignored. */
	io_uring_prep_read(shard_sqe(&sl->op), sl->in->fd, sl->buf, INTAKE_BUF_SIZE, 0);
}

static void slot_start(struct shard_msg *m)
{
	slot_arm(container_of(m, struct intake_slot, msg));
}

int intake_create(struct intake **out, struct fuse_session *se, unsigned nshards, unsigned per_shard)
{
	struct intake *in = calloc(1, sizeof(*in));
	unsigned n = nshards * per_shard;
	int flags;

	if (!in)
		return -ENOMEM;
	in->se = se;
	in->fd = fuse_session_fd(se);
	/*
	 * Non-blocking, so io_uring waits for readiness by poll instead of
	 * parking a worker thread in read(). One descriptor for all shards:
	 * the kernel matches a reply only on the descriptor its request was
	 * read from, and libfuse's public API replies on this one.
	 */
	flags = fcntl(in->fd, F_GETFL);
	if (flags < 0 || fcntl(in->fd, F_SETFL, flags | O_NONBLOCK) < 0) {
		int rc = -errno;
		log_err("fcntl(/dev/fuse, O_NONBLOCK): %s", strerror(-rc));
		free(in);
		return rc;
	}
	in->exit_efd = eventfd(0, EFD_CLOEXEC);
	in->slots = calloc(n, sizeof(*in->slots));
	if (in->exit_efd < 0 || !in->slots)
		abort();
	in->nslots = n;
	atomic_init(&in->active, n);
	for (unsigned i = 0; i < n; i++) {
		struct intake_slot *sl = &in->slots[i];
		sl->in = in;
		if (posix_memalign((void **)&sl->buf, 4096, INTAKE_BUF_SIZE))
			abort();
	}
	*out = in;
	return 0;
}

void intake_start(struct intake *in)
{
	for (unsigned i = 0; i < in->nslots; i++)
		shard_send(shard_get(i % shard_count()), &in->slots[i].msg, slot_start);
}

void intake_wait(struct intake *in)
{
	struct pollfd p = { .fd = in->exit_efd, .events = POLLIN };

	/*
	 * Signals (SIGTERM, SIGINT) are blocked in the shards and land here:
	 * libfuse's handler calls fuse_session_exit() and poll returns EINTR.
	 */
	while (!fuse_session_exited(in->se))
		poll(&p, 1, 1000);
}

static void cancel_done(struct shard_op *op, int res)
{
	(void)op;
	(void)res;   /* the reads complete with -ECANCELED, or already had */
}

static void cancel_run(struct shard_msg *m)
{
	struct intake_cancel *c = container_of(m, struct intake_cancel, msg);

	c->op.done = cancel_done;
	io_uring_prep_cancel_fd(shard_sqe(&c->op), c->in->fd, IORING_ASYNC_CANCEL_ALL);
}

void intake_stop(struct intake *in)
{
	struct pollfd p = { .fd = in->exit_efd, .events = POLLIN };
	uint64_t v;

	fuse_session_exit(in->se);
	in->cancels = calloc(shard_count(), sizeof(*in->cancels));
	if (!in->cancels)
		abort();
	for (unsigned i = 0; i < shard_count(); i++) {
		in->cancels[i].in = in;
		shard_send(shard_get(i), &in->cancels[i].msg, cancel_run);
	}
	for (int i = 0; i < 50 && atomic_load(&in->active); i++) {
		if (poll(&p, 1, 100) > 0 && read(in->exit_efd, &v, sizeof(v)) < 0)
			break;
	}
	if (atomic_load(&in->active))
		log_warn("%u /dev/fuse reads still in flight at shutdown", atomic_load(&in->active));
}

void intake_free(struct intake *in)
{
	if (!in)
		return;
	free(in->cancels);
	for (unsigned i = 0; i < in->nslots; i++)
		free(in->slots[i].buf);
	free(in->slots);
	close(in->exit_efd);
	free(in);
}
