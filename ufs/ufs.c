/* What every driver shares: choosing one, the reasons calls fail with, file IO. */
#include "config.h"
#include "ufs/ufs.h"
#include "core/log.h"
#include "core/util.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const struct ufs_ops *ufs_driver_for(const char *source)
{
	if (!strncmp(source, "file://", 7) || !strstr(source, "://"))
		return &ufs_local_ops;
	if (!strncmp(source, "s3://", 5))
		return &ufs_s3_ops;
	if (!strncmp(source, "http://", 7) || !strncmp(source, "https://", 8))
		return &ufs_http_ops;
	return NULL;
}

void ufs_call_err(struct ufs_call *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->err, sizeof(c->err), fmt, ap);
	va_end(ap);
}

static void fd_read_submit(struct ufs_read *r);

static void fd_read_done(struct shard_op *op, int res)
{
	struct ufs_read *r = container_of(op, struct ufs_read, op);

	if (res == -EAGAIN || res == -EINTR) {
		fd_read_submit(r);
		return;
	}
	if (res < 0) {
		log_warn("reading %s at offset %llu: %s", r->file->name, (unsigned long long)(r->off + r->got),
			 strerror(-res));
		r->done(r, res);
		return;
	}
	r->got += (size_t)res;
	/* Buffered reads may come back short mid-file; O_DIRECT ones only at EOF. */
	if (res > 0 && r->got < r->len && !r->direct) {
		fd_read_submit(r);
		return;
	}
	r->done(r, (int)r->got);
}

static void fd_read_submit(struct ufs_read *r)
{
	r->op.done = fd_read_done;
	io_uring_prep_read(shard_sqe(&r->op), r->fd, r->buf + r->got, (unsigned)(r->len - r->got),
			   r->off + r->got);
}

void ufs_fd_read(struct ufs_read *r, int fd, bool direct)
{
	r->fd = fd;
	r->direct = direct;
	r->got = 0;
	fd_read_submit(r);
}

static void fd_write_submit(struct ufs_write *w);

static void fd_write_done(struct shard_op *op, int res)
{
	struct ufs_write *w = container_of(op, struct ufs_write, op);

	if (res == -EAGAIN || res == -EINTR) {
		fd_write_submit(w);
		return;
	}
	if (res <= 0) {
		res = res ? res : -EIO;
		log_warn("writing %s at offset %llu: %s", w->file->name, (unsigned long long)(w->off + w->put),
			 strerror(-res));
		w->done(w, res);
		return;
	}
	w->put += (size_t)res;
	if (w->put < w->len) {
		fd_write_submit(w);
		return;
	}
	w->done(w, (int)w->put);
}

static void fd_write_submit(struct ufs_write *w)
{
	w->op.done = fd_write_done;
	io_uring_prep_write(shard_sqe(&w->op), w->fd, w->buf + w->put, (unsigned)(w->len - w->put),
			    w->off + w->put);
}

void ufs_fd_write(struct ufs_write *w, int fd)
{
	w->fd = fd;
	w->put = 0;
	fd_write_submit(w);
}
