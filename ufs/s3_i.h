/*
 * Object-store driver internals, shared by s3.c (setup, requests, retries),
 * s3_meta.c (listings, stat cache), s3_io.c (ranged GETs on the shard loops)
 * and http.c (plain HTTP(S) sources: the same requests, unsigned, with
 * listings from a manifest).
 */
#ifndef CACHEFS_S3_I_H
#define CACHEFS_S3_I_H

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <time.h>

#include "core/options.h"
#include "ufs/creds.h"
#include "ufs/sigv4.h"
#include "ufs/ufs.h"

#define S3_MAX_SHARDS 1024
#define S3_ETAG_MAX 128
#define S3_POOL 32

struct s3_shard;
struct meta_map;

/* Response fields every request parses from its headers. */
struct s3_resp {
	long status;
	char etag[S3_ETAG_MAX];
	char region[64];          /* x-amz-bucket-region */
	char last_modified[64];
	uint64_t length;          /* Content-Length, if has_length */
	bool has_length;
	/* the body, for metadata requests (grown as it arrives, capped) */
	char *body;
	size_t len, cap;
};

struct ufs {
	const char *drv;          /* "s3" or "http", for messages */
	bool http;                /* no listings: directories come from a manifest */
	char *root;               /* "s3://bucket/" or "http://host/dir/": key prefix in messages */
	char *bucket;
	char *prefix;             /* "" or "dir/sub/": keys under the mount root */
	char *url_base;           /* "http://host:port/bucket" or "https://bucket.host" */
	char *path_base;          /* "/bucket" (path style) or "" (virtual) */
	char *host;               /* Host header value */
	char *endpoint;           /* for messages: where requests go */
	struct s3_creds creds;
	char ca_bundle[PATH_MAX];
	unsigned retries, max_conns, list_max_keys;
	uint64_t timeout_ns, ttl_ns;
	uid_t uid;
	gid_t gid;
	uint64_t mount_ns;        /* mtime shown for prefixes */
	bool mounted;             /* init succeeded: fini reports the counters */
	time_t fixed_time;        /* tests: sign as of this time; 0: now */

	/* Easy handles for blocking metadata requests; each keeps its connection. */
	pthread_mutex_t pool_lock;
	CURL *pool[S3_POOL];
	unsigned npool;

	/* Listings and stats (s3_meta.c), under meta_lock. */
	pthread_mutex_t meta_lock;
	struct meta_map *dirs, *stats;

	/* Per shard, created and used by its owner (s3_io.c). */
	struct s3_shard *shards[S3_MAX_SHARDS];

	/* Counters, any thread. */
	atomic_ulong requests[UFS_REQ_KINDS], retried[UFS_RETRY_CAUSES], failed;
	/* Read failures: the first in a second is logged, the rest counted (s3_io.c). */
	_Atomic uint64_t fail_logged_ns, fail_suppressed;
	atomic_bool warned_norange;   /* "the server ignores Range" was logged */
};

/* An open object: the ETag every response must carry. */
struct s3_file {
	struct ufs_file f;
	struct ufs *u;
	char *key;                /* full key */
	char etag[S3_ETAG_MAX];
	uint64_t size;
	atomic_bool warned;       /* one "changed on the server" line per open */
};

enum s3_outcome { S3_OK, S3_RETRY, S3_FAIL };

/* s3.c */
/* What to do after a transfer ended with cc and HTTP status. */
enum s3_outcome s3_classify(CURLcode cc, long status);
/* Counts a retry of a transfer that ended with cc and HTTP status. */
void s3_count_retry(struct ufs *u, CURLcode cc, long status);
void s3_counters(struct ufs *u, struct ufs_counters *out);
/* Backoff before retry number `attempt` (1-based): exponential, jittered. */
uint64_t s3_backoff_ns(unsigned attempt);
/*
 * Sets up e for one signed request: URL, headers (returned in *hdrs, which
 * the caller frees after the transfer), timeouts, TLS, header parsing into
 * resp. key is the full object key ("" for bucket requests). Returns 0 or
 * -errno.
 */
int s3_prepare(struct ufs *u, CURL *e, const char *method, const char *key,
	       const struct sigv4_param *q, unsigned nq, const char *range,
	       uint64_t timeout_ns, struct s3_resp *resp, struct curl_slist **hdrs);
/*
 * A blocking request with retries (metadata, mount checks), on any thread.
 * resp->body gets the body (at most 16 MiB); the caller frees it. Returns 0
 * with resp->status set for any HTTP answer, or -EIO with a message in err
 * when none came.
 */
int s3_perform(struct ufs *u, const char *method, const char *key, const struct sigv4_param *q,
	       unsigned nq, struct s3_resp *resp, char *err, size_t errlen);
/*
 * One ListObjectsV2 page of `prefix` with delimiter "/": at most max_keys
 * keys, after continuation `token` ("" for the first page). As s3_perform.
 */
int s3_list_page(struct ufs *u, const char *prefix, unsigned max_keys, const char *token,
		 struct s3_resp *resp, char *err, size_t errlen);
/* "Code: Message" from an S3 error body, or "HTTP N". */
void s3_error_text(const struct s3_resp *resp, char *out, size_t len);
/* Version of an object for page keys: from its ETag and size. */
uint64_t s3_version(const char *etag, uint64_t size);
/* HTTP status of a failed answer as an errno. */
int s3_errno(long status);

/* What s3 and http sources share: options, locks, the stat cache. 0 or -errno, err says why. */
int s3_common_init(struct ufs *u, const struct cachefs_config *cfg, char *err, size_t errlen);
/* Frees u and everything it holds; logs the request counters if it was mounted. */
void s3_common_fini(struct ufs *u);
/* ufs_ops of both drivers. */
int s3_open(struct ufs *u, const char *path, struct ufs_file **out);
void s3_release(struct ufs_file *f);
int s3_statfs(struct ufs *u, struct statvfs *st);

/* s3_meta.c */
int s3_meta_init(struct ufs *u);
/*
 * Adds `path` to the listings that never expire (http manifests), creating
 * its parent directories; a directory st makes an empty one. need_head: the
 * size is unknown, a stat sends HEAD. Returns 0 or -ENOMEM.
 */
int s3_meta_pin(struct ufs *u, const char *path, const struct ufs_stat *st, const char *etag,
		bool need_head);
/* After the last pin: sorts the listings. -EEXIST names a path in dup. */
int s3_meta_pin_done(struct ufs *u, char *dup, size_t duplen);
/* Fills st as a file of the mount / as a directory. */
void s3_file_stat(struct ufs *u, struct ufs_stat *st, uint64_t size, uint64_t mtime_ns, const char *etag);
void s3_dir_stat(struct ufs *u, struct ufs_stat *st);
void s3_meta_fini(struct ufs *u);
int s3_stat(struct ufs *u, const char *path, struct ufs_stat *st);
/* s3_stat, and the ETag of a file. */
int s3_stat_etag(struct ufs *u, const char *path, struct ufs_stat *st, char etag[S3_ETAG_MAX]);
int s3_list(struct ufs *u, const char *path, ufs_list_cb cb, void *arg);

/* s3_io.c */
int s3_read(struct ufs_read *r);
/* On each shard at unmount: fails transfers in flight, closes connections. */
void s3_shard_stop(struct ufs *u);
/* After the shards stopped: frees what the shards left. */
void s3_io_fini(struct ufs *u);

#endif
