#include "config.h"
#include "ufs/object.h"
#include "core/log.h"
#include "core/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>

uint64_t obj_version(const char *etag, uint64_t size)
{
	return mix64(XXH3_64bits(etag, strlen(etag)) ^ mix64(size + 1));
}

void obj_file_stat(const struct obj_source *src, struct ufs_stat *st, const char *name,
		   uint64_t size, uint64_t mtime_ns, const char *etag)
{
	memset(st, 0, sizeof(*st));
	st->size = size;
	st->mtime_ns = st->ctime_ns = st->atime_ns = mtime_ns;
	st->mode = S_IFREG | 0444;
	st->uid = src->uid;
	st->gid = src->gid;
	st->nlink = 1;
	st->version = obj_version(etag, size);
	/* An object's identity is its name: a key copied elsewhere is another object. */
	st->id = mix64(XXH3_64bits(name, strlen(name)) ^ st->version);
}

void obj_dir_stat(const struct obj_source *src, struct ufs_stat *st, uint64_t mtime_ns)
{
	memset(st, 0, sizeof(*st));
	st->mtime_ns = st->ctime_ns = st->atime_ns = mtime_ns;
	st->mode = S_IFDIR | 0555;
	st->uid = src->uid;
	st->gid = src->gid;
	st->nlink = 2;
	st->version = 1;
}

void obj_statfs(struct ufs_call *c)
{
	struct statvfs *st = &c->vfs;

	memset(st, 0, sizeof(*st));
	st->f_bsize = st->f_frsize = 4096;
	st->f_blocks = st->f_bfree = st->f_bavail = 1ULL << 40;
	st->f_files = st->f_ffree = 1ULL << 32;
	st->f_namemax = 255;
	c->done(c, 0);
}

void obj_log_requests(const struct obj_source *src, const char *drv)
{
	struct http_counters c = { 0 };
	uint64_t retried = 0;

	http_pool_counters(src->pool, &c);
	for (unsigned i = 0; i < HTTP_RETRY_CAUSES; i++)
		retried += c.retries[i];
	log_info("%s %s: %llu GET, %llu HEAD, %llu LIST requests; %llu retried, %llu failed", drv,
		 src->root, (unsigned long long)c.requests[UFS_REQ_GET],
		 (unsigned long long)c.requests[UFS_REQ_HEAD], (unsigned long long)c.requests[UFS_REQ_LIST],
		 (unsigned long long)retried, (unsigned long long)c.failed);
}

void obj_open(const struct obj_source *src, struct ufs_call *c, const char *key)
{
	struct obj_file *of;

	c->fetched = false;
	if (S_ISDIR(c->st.mode)) {
		c->done(c, -EISDIR);
		return;
	}
	of = calloc(1, sizeof(*of));
	if (!of || !(of->key = strdup(key)) || asprintf(&of->f.name, "%s%s", src->root, key) < 0) {
		if (of)
			free(of->key);
		free(of);
		c->done(c, -ENOMEM);
		return;
	}
	of->src = src;
	snprintf(of->etag, sizeof(of->etag), "%s", c->etag);
	of->f.ops = src->ops;
	atomic_init(&of->f.refs, 1);
	of->obj.prepare = src->prepare;
	of->obj.ctx = of;
	of->obj.name = of->f.name;
	of->obj.etag = of->etag;
	of->obj.size = c->st.size;
	of->obj.kind = UFS_REQ_GET;
	c->file = &of->f;
	c->done(c, 0);
}

void obj_release(struct ufs_file *f)
{
	struct obj_file *of = container_of(f, struct obj_file, f);

	free(of->f.name);
	free(of->key);
	free(of);
}

static void read_done(struct http_read *hr, int res)
{
	struct ufs_read *r = container_of(hr, struct ufs_read, hr);

	r->got = hr->got;
	r->done(r, res == -ECANCELED ? -EIO : res);
}

int obj_read(struct ufs_read *r)
{
	struct obj_file *of = container_of(r->file, struct obj_file, f);

	r->got = 0;
	r->hr.obj = &of->obj;
	r->hr.buf = r->buf;
	r->hr.off = r->off;
	r->hr.len = r->len;
	r->hr.done = read_done;
	http_read_submit(of->src->pool, &r->hr);
	return 0;
}
