/*
 * HTTP client on the shard loops, shared by every network source (S3, plain
 * HTTP) and later by uploads, peers and etcd. A pool holds one user's
 * options (connections, retries, timeout, CAs); each shard that uses it
 * owns a libcurl multi handle whose sockets and timer are io_uring
 * operations on that shard's ring: no threads, no busy polling, keep-alive
 * connections reused, at most max_conns per shard.
 *
 * Two kinds of work:
 *  - a request (struct http_req): one method and URL, the body kept in
 *    memory; metadata, listings, uploads;
 *  - ranged reads (struct http_read) of an object into caller buffers.
 *    Reads that reach a shard in one turn of its loop are sorted, and
 *    contiguous ones of one object become one ranged GET.
 * Both retry 5xx, 429, 408, timeouts and connection failures with
 * exponential backoff and jitter (a shard timer, never a sleep) until the
 * retries or the deadline run out.
 */
#ifndef CACHEFS_HTTP_H
#define CACHEFS_HTTP_H

#include <curl/curl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP_ETAG_MAX 128
#define HTTP_KINDS 8          /* request kinds a pool counts (the caller names them) */
#define HTTP_MAX_SHARDS 1024

/* Why a request was retried: 429/503 throttling, another 5xx, a timeout
 * (curl's or a 408), or a connection failure (refused, reset, cut short). */
enum http_retry_cause { HTTP_RETRY_THROTTLED, HTTP_RETRY_SERVER, HTTP_RETRY_TIMEOUT,
			HTTP_RETRY_CONNECTION, HTTP_RETRY_CAUSES };
#define HTTP_RETRY_NAMES { "throttled", "server_error", "timeout", "connection" }

struct http_counters {
	uint64_t requests[HTTP_KINDS];       /* attempts, by the caller's kind */
	uint64_t retries[HTTP_RETRY_CAUSES];
	uint64_t failed;                     /* requests that failed after their retries */
};

struct http_pool;

struct http_pool_opts {
	const char *name;         /* the user, for messages: "s3", "http" */
	unsigned max_conns;       /* keep-alive connections per shard */
	unsigned retries;         /* of a request that failed in a retryable way */
	uint64_t timeout_ns;      /* a request's deadline from its start, retries included */
	const char *ca_bundle;    /* PEM file of trusted CAs; NULL or "": the system store */
};

int http_pool_create(struct http_pool **out, const struct http_pool_opts *o);
/* After the shards stopped: frees what they left. */
void http_pool_destroy(struct http_pool *p);
/* On each shard at shutdown: fails its requests and reads in flight with
 * -ECANCELED and closes its connections. */
void http_pool_shard_stop(struct http_pool *p);
/* Adds the pool's counters to *out; any thread, racy. */
void http_pool_counters(struct http_pool *p, struct http_counters *out);

/* Response fields parsed from the headers of the last attempt. */
struct http_resp {
	long status;              /* 0: no answer */
	char etag[HTTP_ETAG_MAX];
	char last_modified[64];
	char region[64];          /* x-amz-bucket-region */
	/* x-amz-meta-{mode,uid,gid,mtime}: attributes as s3fs keeps them, or "" */
	char meta_mode[16], meta_uid[16], meta_gid[16], meta_mtime[32];
	char digest[40];          /* X-Cachefs-Digest: a cachefs page server's checksum of the body */
	uint64_t length;          /* Content-Length, if has_length */
	bool has_length;
	char *body;               /* the body (NUL-terminated), when kept; the caller frees it */
	size_t len;
};

/*
 * Builds one attempt of a request: its URL (malloc'd; the client frees it)
 * and header list (the client frees it). range is NULL or "bytes=A-B".
 * Called for every attempt, so a signature carries a fresh date. Returns 0
 * or a negative errno, which fails the request.
 */
typedef int (*http_prepare_fn)(void *ctx, const char *method, const char *range, char **url,
			       struct curl_slist **hdrs);

/*
 * One request. The caller owns it and fills the first block; done() runs
 * once on the submitting shard with rc 0 when an answer came (resp.status
 * says which: a 404 or 500 is an answer too, after the retries a 5xx was
 * worth) or a negative errno when none did: -ETIMEDOUT (the deadline
 * passed), -ECONNREFUSED, -EHOSTDOWN (another transport failure, err says
 * which), -ECANCELED (shutdown), -ENOMEM, -EFBIG (a body over body_max).
 */
struct http_req {
	const char *method;       /* "GET", "HEAD", "PUT", "POST", "DELETE" */
	http_prepare_fn prepare;
	void *ctx;
	unsigned kind;            /* < HTTP_KINDS: which counter an attempt bumps */
	uint64_t deadline_ns;     /* now_ns() clock; 0: now + the pool's timeout */
	const void *body;         /* request body, or NULL */
	size_t body_len;
	size_t body_max;          /* keep the response body up to this size; 0: drop it */
	/* Or, when set, a 2xx body goes straight here (resp.len bytes of it, at
	 * most sink_len; more is -EFBIG) and only an error body is kept. */
	char *sink;
	size_t sink_len;
	void (*done)(struct http_req *r, int rc);
	/* http_perform only: the caller's handle, reused so that its connection
	 * stays open between calls; NULL: a new one for this call. */
	CURL *easy;
	/* results */
	struct http_resp resp;
	unsigned attempts;
	char err[CURL_ERROR_SIZE];   /* why no answer came, for messages */
	/* the client's */
	struct http_xfer *x;
};

/* Starts r on the calling shard's connections (owner: the calling shard). */
void http_submit(struct http_pool *p, struct http_req *r);
/*
 * The same request, blocking the calling thread, which must not be a shard
 * (mount-time checks and manifests before the shards run; the cluster's
 * membership, load and status threads). Retries sleep. Returns what
 * done() would get; done is not called.
 */
int http_perform(struct http_pool *p, struct http_req *r);

/* What the ranged reads of one object share. Set by the caller, which keeps
 * it alive until every read of it completed. */
struct http_object {
	http_prepare_fn prepare;
	void *ctx;
	const char *name;         /* "s3://bucket/key", for messages */
	const char *etag;         /* every response must carry it; "" accepts any */
	uint64_t size;            /* reads are clipped to it */
	unsigned kind;            /* counter of its GETs */
	atomic_bool warned;       /* "changed on the server" was logged */
};

/*
 * One ranged read. done() runs once on the submitting shard with the bytes
 * read (short only at the object's end), -ESTALE when the object's ETag
 * changed, -EIO when the server failed (the first failure in a second is
 * logged with the object, the range and the cause), -ECANCELED at shutdown.
 */
struct http_read {
	struct http_object *obj;
	char *buf;
	uint64_t off;
	size_t len, got;
	void (*done)(struct http_read *rd, int res);
};

/* Owner: the calling shard. */
void http_read_submit(struct http_pool *p, struct http_read *rd);

/* What to do after a transfer ended with curl code cc and HTTP status. */
enum http_outcome { HTTP_OK, HTTP_RETRY, HTTP_FAIL };
enum http_outcome http_classify(CURLcode cc, long status);
/* Backoff before retry number `attempt` (1-based): exponential from 50 ms,
 * capped at 2 s, half of it random. */
uint64_t http_backoff_ns(unsigned attempt);
/* Whether two ETags name the same version (quotes ignored). */
bool http_etag_eq(const char *a, const char *b);

#endif
