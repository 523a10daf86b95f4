/*
 * S3 driver internals, shared by s3.c (setup, signed requests, stat, open,
 * reads) and s3_list.c (ListObjectsV2: parsing, pagination, names that
 * cannot be shown as they are).
 */
#ifndef CACHEFS_S3_I_H
#define CACHEFS_S3_I_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <time.h>

#include "core/options.h"
#include "core/http.h"
#include "ufs/creds.h"
#include "ufs/object.h"
#include "ufs/sigv4.h"
#include "ufs/ufs.h"

struct ufs {
	char *root;               /* "s3://bucket/": key prefix in messages */
	char *bucket;
	char *prefix;             /* "" or "dir/sub/": keys under the mount root */
	char *url_base;           /* "http://host:port/bucket" or "https://bucket.host" */
	char *path_base;          /* "/bucket" (path style) or "" (virtual) */
	char *host;               /* Host header value */
	char *endpoint;           /* for messages: where requests go */
	struct s3_creds creds;
	struct obj_source src;    /* open objects and their reads */
	unsigned list_max_keys;
	uint64_t ttl_ns;          /* dir_cache_ttl */
	uint64_t mount_ns;        /* mtime shown for prefixes */
	bool mounted;             /* init succeeded: fini reports the counters */
	time_t fixed_time;        /* tests: sign as of this time; 0: now */
	/* writes (s3_write.c) */
	char *stage_dir;          /* staging_dir/SOURCE-HASH */
	char *own_dir;            /* stage_dir/d-PID-TIME: this daemon's staged files and their records */
	int lock_fd;              /* own_dir/lock, flock()ed for the daemon's life */
	char *recovery_dir;       /* stage_dir/recovery: uploads that failed */
	uint64_t part_size, staging_max, copy_max;
	pthread_mutex_t buf_lock;   /* part buffers: at most buf_max in use */
	pthread_cond_t buf_free;
	unsigned buf_used, buf_max;
	atomic_bool streams_stop; /* set under buf_lock by fini: part senders stop, buf_take says no */
	atomic_uint upload_threads;   /* part senders started on their own threads, not yet gone */
	_Atomic uint64_t staged;  /* bytes of staged files now */
	pthread_mutex_t wlock;    /* writers and what they upload; taken off the shards only */
	struct s3_wfile *writers;
};

/*
 * URL and signed headers of one request: key is the full object key (""
 * for bucket requests), q the query, range "bytes=A-B" or NULL. The date
 * is taken now (or fixed_time). Returns 0 or -errno.
 */
int s3_sign(struct ufs *u, const char *method, const char *key, const struct sigv4_param *q,
	    unsigned nq, const char *range, char **url, struct curl_slist **hdrs);
/*
 * The same with a body: payload is its lower-case hex SHA-256 (signed, so
 * the store checks the bytes it got) or SIGV4_UNSIGNED, and extra headers
 * (x-amz-meta-*, x-amz-copy-source, ...) are sent and signed.
 */
#define S3_MAX_EXTRA 8
int s3_sign_body(struct ufs *u, const char *method, const char *key, const struct sigv4_param *q,
		 unsigned nq, const char *range, const char *payload, const struct sigv4_header *extra,
		 unsigned nextra, char **url, struct curl_slist **hdrs);
/* HTTP status of an answer that is not a success, as an errno (5xx: the source failed). */
int s3_errno(long status);
/* "HTTP N Code: Message" from an S3 error body, or "HTTP N". */
void s3_error_text(const struct http_resp *resp, char *out, size_t len);

/* ---- ListObjectsV2 (s3_list.c) ---- */

/* One Contents entry of a page. */
struct s3_obj {
	char *key;
	uint64_t size, mtime_ns;
	char etag[UFS_ETAG_MAX];
};

/* A parsed ListObjectsV2 page, or an error body. */
struct s3_page {
	bool truncated;
	bool url_encoded;         /* <EncodingType>url: keys and prefixes were %-encoded */
	char *token;              /* NextContinuationToken, or NULL */
	struct s3_obj *objs;
	size_t nobjs, capobjs;
	char **prefixes;          /* CommonPrefixes */
	size_t nprefixes, capprefixes;
	char code[128], message[512], region[64];   /* <Error> */
};

/* Parses body into p (zeroed first). 0, -EIO for XML that does not parse, -ENOMEM. */
int s3_parse_page(const char *body, size_t len, struct s3_page *p);
void s3_page_free(struct s3_page *p);

/*
 * A directory's entries gathered from every page of its listing: keys
 * below `prefix` become names, prefixes directories. Names Linux cannot
 * show as they are get an alias (an object next to a same-named prefix is
 * NAME@object, "." and ".." become .@object/.@prefix, ..@object/..@prefix);
 * the rest (empty, over 255 bytes, outside the prefix) are left out and
 * counted in `skipped`, with the first in `skipped_why`.
 */
struct s3_entry {
	char *name;               /* as shown */
	char *srcname;            /* the key's own name part, when it differs */
	bool dir;
	struct s3_obj obj;        /* files: key (owned), size, ETag, mtime */
};
struct s3_listing {
	const char *prefix;
	struct s3_entry *ents;
	size_t n, cap;
	bool marker;              /* the "dir/" object of the listed prefix itself */
	unsigned skipped;
	char skipped_why[512];
};
/* Adds a page's entries (its strings move into l). 0 or -ENOMEM. */
int s3_listing_add(struct s3_listing *l, struct s3_page *p);
/* Sorts the entries and gives aliases. 0 or -ENOMEM. */
int s3_listing_finish(struct s3_listing *l);
void s3_listing_free(struct s3_listing *l);

/* ufs_ops.list; and the probe of a prefix behind stat (is `key/` a directory?). */
void s3_list(struct ufs_call *c);
/*
 * Lists one key of `dirkey` + "/": done(arg, rc, is_dir) on the shard, rc
 * as an http_req's with the answer judged (0, or -errno).
 */
void s3_probe_prefix(struct ufs *u, const char *dirkey,
		     void (*done)(void *arg, int rc, bool is_dir, const char *err), void *arg);
/* A blocking ListObjectsV2 page, for the mount-time check: 0 with *resp
 * (the caller frees its body), or -errno with a reason in err. */
int s3_list_sync(struct ufs *u, const char *prefix, unsigned max_keys, struct http_resp *resp,
		 char *err, size_t errlen);
/* The same for any page: flat lists every key below prefix (no delimiter);
 * token is "" or the last page's NextContinuationToken. Not on a shard. */
int s3_list_page_sync(struct ufs *u, const char *prefix, unsigned max_keys, bool flat, const char *token,
		      struct http_resp *resp, char *err, size_t errlen);
/* The text of the element at `path` ("Root/Child") of an XML body: 0, -ENOENT, -EIO (not XML). */
int s3_xml_text(const char *body, size_t len, const char *path, char *out, size_t cap);

/* ---- writes (s3_write.c) ---- */

struct s3_wfile;

/* At init, writable mounts: the staging folder. */
int s3_write_init(struct ufs *u, const struct source_opts *o, char *err, size_t errlen);
/* Once the daemon runs: finishes, in the background, what stopped daemons left. */
void s3_write_start(struct ufs *u);
void s3_write_fini(struct ufs *u);
void s3_create(struct ufs_call *c);
/* open with a write access mode or O_TRUNC: a staged copy of the object. */
void s3_open_write(struct ufs_call *c);
void s3_mkdir(struct ufs_call *c);
void s3_unlink(struct ufs_call *c);
void s3_rmdir(struct ufs_call *c);
void s3_rename(struct ufs_call *c);
void s3_setattr(struct ufs_call *c);

#endif
