#include "config.h"
#include "ufs/object.h"
#include "core/log.h"
#include "core/util.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
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
	st->mode = S_IFREG | src->file_mode;
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
	st->mode = S_IFDIR | src->dir_mode;
	st->uid = src->uid;
	st->gid = src->gid;
	st->nlink = 2;
	st->version = 1;
}

void obj_source_owner(struct obj_source *src, const struct source_opts *o, bool read_only)
{
	src->uid = o->uid >= 0 ? (uid_t)o->uid : getuid();
	src->gid = o->gid >= 0 ? (gid_t)o->gid : getgid();
	src->file_mode = (read_only ? 0444 : 0666) & ~o->umask;
	src->dir_mode = (read_only ? 0555 : 0777) & ~o->umask;
}

/* A decimal field of a header, within [0, max]; false when absent or malformed. */
static bool meta_num(const char *s, uint64_t max, uint64_t *out)
{
	char *end;

	if (!*s || *s == '-')
		return false;
	errno = 0;
	*out = strtoull(s, &end, 10);
	return !errno && (!*end || *end == '.') && *out <= max;
}

void obj_apply_meta(struct ufs_stat *st, const struct http_resp *r)
{
	uint64_t v;

	/* The type stays what the store says (a key or a prefix); only permission bits come from here. */
	if (meta_num(r->meta_mode, 0177777, &v))
		st->mode = (st->mode & S_IFMT) | ((mode_t)v & 07777);
	if (meta_num(r->meta_uid, UINT32_MAX - 1, &v))
		st->uid = (uid_t)v;
	if (meta_num(r->meta_gid, UINT32_MAX - 1, &v))
		st->gid = (gid_t)v;
	if (meta_num(r->meta_mtime, UINT64_MAX / 1000000000ULL, &v)) {
		const char *dot = strchr(r->meta_mtime, '.');
		uint64_t ns = 0;
		int i = 1;
		/* s3fs writes whole seconds; keep a fraction when one is there. */
		for (; dot && i <= 9 && isdigit((unsigned char)dot[i]); i++)
			ns = ns * 10 + (uint64_t)(dot[i] - '0');
		for (; dot && i <= 9; i++)
			ns *= 10;
		st->mtime_ns = st->ctime_ns = v * 1000000000ULL + ns;
	}
}

int obj_head_stat(const struct obj_source *src, struct ufs_stat *st, const char *name,
		  const struct http_resp *r, char *err, size_t errlen)
{
	if (!r->has_length) {
		msgf(err, errlen, "HEAD %s%s: the server gave no Content-Length, so the size is unknown", src->root,
		     name);
		return -EIO;
	}
	/* Without an ETag (plain servers), Last-Modified versions the pages. */
	obj_file_stat(src, st, name, r->length, (uint64_t)MAX(curl_getdate(r->last_modified, NULL), 0) * 1000000000ULL,
		      r->etag[0] ? r->etag : r->last_modified);
	if (src->amz_meta)
		obj_apply_meta(st, r);
	return 0;
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
	of->f.readable = true;
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
