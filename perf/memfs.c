/*
 * memfs: the smallest useful libfuse low-level file system. It loads one file
 * into RAM and serves it as /data; its read speed is the FUSE limit of the
 * machine, the reference the benchmarks compare cachefs's RAM tier against.
 *
 * usage: memfs FILE MOUNTPOINT [-f] [-o fuse options]
 */
#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char *data;
static size_t data_len;
static const char name[] = "data";

static void attr_of(fuse_ino_t ino, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	if (ino == 1) {
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 2;
	} else {
		st->st_mode = S_IFREG | 0444;
		st->st_nlink = 1;
		st->st_size = (off_t)data_len;
	}
}

static void mf_lookup(fuse_req_t req, fuse_ino_t parent, const char *n)
{
	struct fuse_entry_param e = { .attr_timeout = 60, .entry_timeout = 60 };

	if (parent != 1 || strcmp(n, name)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	e.ino = 2;
	attr_of(2, &e.attr);
	fuse_reply_entry(req, &e);
}

static void mf_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stat st;

	attr_of(ino, &st);
	fuse_reply_attr(req, &st, 60);
}

static void mf_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	char buf[512];
	struct stat st;
	size_t n = 0;

	if (off == 0) {
		attr_of(2, &st);
		n = fuse_add_direntry(req, buf, sizeof(buf), name, &st, 1);
	}
	fuse_reply_buf(req, buf, n < size ? n : 0);
}

static void mf_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	fi->keep_cache = 1;
	fuse_reply_open(req, fi);
}

static void mf_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	if ((size_t)off >= data_len) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	if (size > data_len - (size_t)off)
		size = data_len - (size_t)off;
	fuse_reply_buf(req, data + off, size);
}

static void mf_init(void *ud, struct fuse_conn_info *conn)
{
	conn->max_write = 1 << 20;
	conn->max_read = 1 << 20;
	conn->want &= ~(unsigned)(FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE | FUSE_CAP_SPLICE_READ);
}

static const struct fuse_lowlevel_ops ops = {
	.init = mf_init,
	.lookup = mf_lookup,
	.getattr = mf_getattr,
	.readdir = mf_readdir,
	.open = mf_open,
	.read = mf_read,
};

int main(int argc, char **argv)
{
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct fuse_session *se;
	struct stat st;
	int fd, fg = 0, rc = 1;

	if (argc < 3) {
		fprintf(stderr, "usage: memfs FILE MOUNTPOINT [-f] [-o opts]\n");
		return 2;
	}
	fd = open(argv[1], O_RDONLY);
	if (fd < 0 || fstat(fd, &st) < 0) {
		perror(argv[1]);
		return 1;
	}
	data_len = (size_t)st.st_size;
	data = malloc(data_len ? data_len : 1);
	for (size_t got = 0; got < data_len;) {
		ssize_t n = read(fd, data + got, data_len - got);
		if (n <= 0) {
			perror("read");
			return 1;
		}
		got += (size_t)n;
	}
	close(fd);
	fuse_opt_add_arg(&args, argv[0]);
	fuse_opt_add_arg(&args, "-omax_read=1048576,fsname=memfs");
	for (int i = 3; i < argc; i++) {
		if (!strcmp(argv[i], "-f"))
			fg = 1;
		else
			fuse_opt_add_arg(&args, argv[i]);
	}
	se = fuse_session_new(&args, &ops, sizeof(ops), NULL);
	if (!se || fuse_set_signal_handlers(se) || fuse_session_mount(se, argv[2]))
		return 1;
	fuse_daemonize(fg);
	struct fuse_loop_config *lc = fuse_loop_cfg_create();
	fuse_loop_cfg_set_clone_fd(lc, 1);
	fuse_loop_cfg_set_max_threads(lc, 16);
	rc = fuse_session_loop_mt(se, lc) ? 1 : 0;
	fuse_loop_cfg_destroy(lc);
	fuse_session_unmount(se);
	fuse_remove_signal_handlers(se);
	fuse_session_destroy(se);
	fuse_opt_free_args(&args);
	free(data);
	return rc;
}
