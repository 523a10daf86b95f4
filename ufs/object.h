/*
 * What the object-store drivers (s3, http) share: the attributes they make
 * for objects and prefixes, and open objects read by ranged GETs on the
 * shard's HTTP client, each response checked against the ETag the object
 * was opened with.
 */
#ifndef CACHEFS_OBJECT_H
#define CACHEFS_OBJECT_H

#include "core/http.h"
#include "ufs/ufs.h"

/* How a driver names and signs the GETs of one of its objects. */
struct obj_source {
	const struct ufs_ops *ops;
	struct http_pool *pool;
	http_prepare_fn prepare;  /* ctx: the struct obj_file */
	const char *root;         /* "s3://bucket/", "https://host/dir/": names in messages */
	uid_t uid;
	gid_t gid;
	mode_t file_mode, dir_mode;   /* permission bits of what has no x-amz-meta-mode */
	bool amz_meta;            /* x-amz-meta-* are the objects' attributes (S3; not a web server's headers) */
};

/* The owner and modes objects without metadata show: -o uid=,gid=,umask=, and read_only. */
void obj_source_owner(struct obj_source *src, const struct source_opts *o, bool read_only);
/*
 * Applies what an object's x-amz-meta-* headers say (s3fs's names and
 * formats: decimal mode with the file type, uid, gid, mtime in seconds).
 */
void obj_apply_meta(struct ufs_stat *st, const struct http_resp *r);
/*
 * The attributes of object `name` from a 200 answer to its HEAD: size,
 * Last-Modified, the ETag (or Last-Modified) as version, x-amz-meta-*
 * where src->amz_meta. -EIO with the reason in err when the answer has no
 * Content-Length (the size is unknown).
 */
int obj_head_stat(const struct obj_source *src, struct ufs_stat *st, const char *name,
		  const struct http_resp *r, char *err, size_t errlen);

/* An open object. */
struct obj_file {
	struct ufs_file f;        /* f.name: root + key */
	struct http_object obj;
	const struct obj_source *src;
	char *key;                /* what prepare() puts in the URL */
	char etag[UFS_ETAG_MAX];
};

/*
 * ufs_ops.open for objects: no request, the caller's attributes (c->st,
 * c->etag) are what the reads must match. key is the object's name at the
 * source (copied).
 */
void obj_open(const struct obj_source *src, struct ufs_call *c, const char *key);
void obj_release(struct ufs_file *f);
/* ufs_ops.read: a ranged GET of the object, merged with its neighbours. */
int obj_read(struct ufs_read *r);

/* The version of an object's bytes, from its ETag (or Last-Modified) and size. */
uint64_t obj_version(const char *etag, uint64_t size);
/*
 * Attributes of an object `name` (its full key or URL path, for the page
 * identity), with the source's default owner and mode.
 */
void obj_file_stat(const struct obj_source *src, struct ufs_stat *st, const char *name,
		   uint64_t size, uint64_t mtime_ns, const char *etag);
/* Attributes of a prefix or manifest directory. */
void obj_dir_stat(const struct obj_source *src, struct ufs_stat *st, uint64_t mtime_ns);
/* A made-up statfs: an object store has no size. */
void obj_statfs(struct ufs_call *c);
/* At unmount: one line of the source's requests, retries and failures. */
void obj_log_requests(const struct obj_source *src, const char *drv);

#endif
