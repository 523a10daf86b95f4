/*
 * Writes to S3: every file open for writing is staged in a local file, and
 * uploaded when the writer closes or fsyncs it: one PUT up to
 * write_part_size, a multipart upload above it. A new file written from
 * its start in order streams: its whole parts go while it is written, and
 * the commit sends the last one and completes the upload; anything else
 * (a write out of order, a truncate, a setattr, a rename) makes the commit
 * abort the stream and upload the staged file whole. The promise: a close() or
 * fsync() that returned 0 put the bytes in the bucket; bytes a writer
 * handed over are in the staging file (the kernel's page cache: they
 * survive the daemon, not the machine) with a record of where they go, so
 * that the next mount of the bucket finishes an upload a killed daemon left
 * (s3_write_init), or keeps the bytes in recovery/ when the object changed
 * meanwhile. An upload that fails keeps its bytes in recovery/ as well, and
 * says so.
 *
 * Uploads and namespace calls block on the metadata threads (core/pool.h),
 * never on a shard: the shard hands a job over and gets its answer back.
 * The parts of a multipart upload go up to UPLOAD_THREADS at a time, on
 * threads of their own, their buffers drawn from the mount's write_buffer
 * (a part waits for one: memory stays bounded, a writer never sees ENOMEM).
 * Bytes are written to the staging file on the writer's shard, like a
 * local source's.
 *
 * Objects keep mode, uid, gid and mtime as s3fs does (x-amz-meta-*), so a
 * bucket written here reads right through s3fs and back. Directories are
 * "dir/" marker objects. rename is CopyObject and DeleteObject; renaming a
 * directory copies every key below it, one by one: not atomic.
 */
#include "config.h"
#include "ufs/s3_i.h"
#include "core/log.h"
#include "core/pool.h"
#include "core/util.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

/* S3's limits: parts of an upload, and the longest key. */
#define MAX_PARTS 10000
#define MAX_KEY 1024

/* Bumped when a record's fields change meaning: an older daemon's records are then kept, not guessed at. */
#define RECORD_VERSION 2

/*
 * A file open for writing. Its bytes live in a staged file; the bucket
 * gets them at close or fsync. Shards touch only the atomics (the writer's
 * shard raises size and gen); the rest is under u->wlock, which only
 * metadata threads take, never a shard.
 */
struct s3_wfile {
	struct ufs_file f;        /* f.name: s3://bucket/key when opened */
	struct ufs *u;
	int fd;                   /* the staged bytes */
	char *data, *record;      /* their paths, XXXXXX.data, and XXXXXX.json saying where they go */
	_Atomic uint64_t size;    /* staged bytes, counted in u->staged */
	atomic_ulong gen;         /* changes to the staged copy (writes that landed, staged setattrs) */
	/* under u->wlock */
	unsigned long uploaded;   /* the gen the bucket holds (an upload of it succeeded) */
	char *key;
	bool gone;                /* unlinked: nothing to upload, and no record to recover */
	char base_etag[UFS_ETAG_MAX];   /* what the bucket held under key as of the last upload or open ("": none) */
	mode_t mode;
	uid_t uid;
	gid_t gid;
	uint64_t mtime_ns;        /* set by utime; 0: the upload's time */
	char *kept;               /* recovery/ link made when an upload failed, until one succeeds */
	char *upload_id;          /* the stream's multipart upload, in the record until it ends */
	struct s3_wfile *prev, *next;   /* u->writers */
	/*
	 * Streaming: a file empty when opened and written from its start, in
	 * order, sends its whole parts while it is written; its commit sends
	 * the last one and completes the upload. front, landed and signaled
	 * are the owner shard's.
	 */
	uint64_t front;           /* where the in-order writes handed to the staged file end */
	uint64_t landed;          /* how many of their bytes landed */
	uint64_t signaled;        /* whole parts told to the stream */
	_Atomic uint64_t safe;    /* every byte below it landed */
	atomic_bool stream_off;   /* opened non-empty, a write out of order or short, a setattr, a commit */
	_Atomic(struct mp *) stream;
	atomic_bool stream_taken; /* by the commit that completes or aborts it, or by the last release */
	struct pool_job release;  /* after the last reference: closing it, on a metadata thread */
	bool closed;              /* by release.run; release.done then frees it */
};

struct mp;
static const struct ufs_ops s3_wfile_ops;
static int delete_key(struct ufs *u, const char *key, char *err, size_t errlen);

/* ---- one blocking request, on a metadata thread ---- */

struct rq {
	struct ufs *u;
	const char *method;
	const char *key;
	struct sigv4_param q[2];
	unsigned nq;
	char range[64];
	char payload[65];
	struct sigv4_header extra[S3_MAX_EXTRA];
	unsigned nextra;
	char meta[4][32];         /* values of the x-amz-meta-* headers */
	char copy_source[3 * MAX_KEY + 300];
};

static int rq_prepare(void *ctx, const char *method, const char *range, char **url,
		      struct curl_slist **hdrs)
{
	struct rq *q = ctx;
	struct curl_slist *l;
	int rc = s3_sign_body(q->u, method, q->key, q->q, q->nq, q->range[0] ? q->range : NULL,
			      q->payload[0] ? q->payload : SIGV4_UNSIGNED, q->extra, q->nextra, url, hdrs);

	if (rc)
		return rc;
	/* A body goes at once (no 100-continue round trip), as bytes. */
	if (!(l = curl_slist_append(*hdrs, "Expect:")) ||
	    !(l = curl_slist_append(l, "Content-Type: application/octet-stream"))) {
		curl_slist_free_all(*hdrs);
		free(*url);
		*hdrs = NULL;
		*url = NULL;
		return -ENOMEM;
	}
	*hdrs = l;
	return 0;
}

static void rq_init(struct rq *q, struct ufs *u, const char *method, const char *key)
{
	memset(q, 0, sizeof(*q));
	q->u = u;
	q->method = method;
	q->key = key;
}

static void rq_header(struct rq *q, const char *name, const char *value)
{
	assert(q->nextra < S3_MAX_EXTRA);   /* at most 6: four x-amz-meta-* and a copy's two */
	q->extra[q->nextra++] = (struct sigv4_header){ name, value };
}

/* x-amz-meta-* as s3fs writes them: decimal mode with the type, uid, gid, mtime in seconds. */
static void rq_meta(struct rq *q, mode_t mode, uid_t uid, gid_t gid, uint64_t mtime_ns)
{
	snprintf(q->meta[0], sizeof(q->meta[0]), "%u", (unsigned)mode);
	snprintf(q->meta[1], sizeof(q->meta[1]), "%u", (unsigned)uid);
	snprintf(q->meta[2], sizeof(q->meta[2]), "%u", (unsigned)gid);
	snprintf(q->meta[3], sizeof(q->meta[3]), "%llu", (unsigned long long)(mtime_ns / 1000000000ULL));
	rq_header(q, "x-amz-meta-mode", q->meta[0]);
	rq_header(q, "x-amz-meta-uid", q->meta[1]);
	rq_header(q, "x-amz-meta-gid", q->meta[2]);
	rq_header(q, "x-amz-meta-mtime", q->meta[3]);
}

/*
 * Runs q with body[0, len) (NULL: none), keeping up to body_max bytes of
 * the answer. 0 with *resp (status: the caller judges; it frees the body),
 * or -errno when no answer came, with a reason in err.
 */
static int rq_run(struct rq *q, unsigned kind, const void *body, size_t len, size_t body_max,
		  struct http_resp *resp, char *err, size_t errlen)
{
	struct http_req r = { .method = q->method, .prepare = rq_prepare, .ctx = q, .kind = kind,
			      .body = body, .body_len = len, .body_max = body_max };
	int rc;

	if (body)
		sigv4_sha256_hex(body, len, q->payload);
	rc = http_perform(q->u->src.pool, &r);
	*resp = r.resp;
	if (rc) {
		snprintf(err, errlen, "%s %s%s: %s", q->method, q->u->root, q->key,
			 r.err[0] ? r.err : strerror(-rc));
		free(resp->body);
		resp->body = NULL;
	}
	return rc;
}

/*
 * 0 for a 2xx answer, else -errno with the reason in err. may_fail: a
 * CopyObject or CompleteMultipartUpload, which can fail after their 200
 * with an <Error> body.
 */
static int judge(struct rq *q, const struct http_resp *r, bool may_fail, char *err, size_t errlen)
{
	char code[128] = "", why[512];

	if (r->status / 100 == 2 &&
	    !(may_fail && r->body && !s3_xml_text(r->body, r->len, "Error/Code", code, sizeof(code))))
		return 0;
	s3_error_text(r, why, sizeof(why));
	snprintf(err, errlen, "%s %s%s: %s", q->method, q->u->root, q->key, why);
	return r->status / 100 == 2 ? -EIO : s3_errno(r->status);
}

/* One request judged: 0 or -errno with a reason. */
static int rq_do(struct rq *q, unsigned kind, const void *body, size_t len, size_t body_max,
		 struct http_resp *resp, bool may_fail, char *err, size_t errlen)
{
	int rc = rq_run(q, kind, body, len, body_max, resp, err, errlen);

	if (!rc && (rc = judge(q, resp, may_fail, err, errlen))) {
		free(resp->body);
		resp->body = NULL;
	}
	return rc;
}

/* ---- uploads ---- */

/* What an upload puts: the staged bytes of fd and the object's attributes. */
struct put {
	struct ufs *u;
	int fd;
	const char *key;
	mode_t mode;
	uid_t uid;
	gid_t gid;
	uint64_t mtime_ns;
	uint64_t size;            /* out */
	char etag[UFS_ETAG_MAX];  /* out */
};

static int pread_all(int fd, char *buf, size_t len, uint64_t off)
{
	for (size_t got = 0; got < len;) {
		ssize_t n = pread(fd, buf + got, len - got, (off_t)(off + got));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;   /* the staging file shrank under us */
		got += (size_t)n;
	}
	return 0;
}

static int put_single(struct put *p, char *buf, char *err, size_t errlen)
{
	struct http_resp r = { 0 };
	struct rq q;
	int rc;

	rq_init(&q, p->u, "PUT", p->key);
	rq_meta(&q, S_IFREG | (p->mode & 07777), p->uid, p->gid, p->mtime_ns);
	rc = rq_do(&q, UFS_REQ_PUT, buf, p->size, 0, &r, false, err, errlen);
	if (!rc)
		snprintf(p->etag, sizeof(p->etag), "%s", r.etag);
	free(r.body);
	return rc;
}

/* A part buffer of the mount's write_buffer, waiting while all are in use; NULL: out of memory, or fini. */
static char *buf_take(struct ufs *u)
{
	char *b;

	pthread_mutex_lock(&u->buf_lock);
	while (u->buf_used >= u->buf_max && !u->streams_stop)
		pthread_cond_wait(&u->buf_free, &u->buf_lock);
	if (u->streams_stop) {
		pthread_mutex_unlock(&u->buf_lock);
		return NULL;
	}
	u->buf_used++;
	pthread_mutex_unlock(&u->buf_lock);
	if (!(b = malloc(MAX(u->part_size, 1)))) {
		pthread_mutex_lock(&u->buf_lock);
		u->buf_used--;
		pthread_cond_signal(&u->buf_free);
		pthread_mutex_unlock(&u->buf_lock);
	}
	return b;
}

static void buf_give(struct ufs *u, char *b)
{
	free(b);
	pthread_mutex_lock(&u->buf_lock);
	u->buf_used--;
	pthread_cond_signal(&u->buf_free);
	pthread_mutex_unlock(&u->buf_lock);
}

/* Threads sending the parts of one multipart upload at most. */
#define UPLOAD_THREADS 8

/*
 * A multipart upload of a staged file: parts go as they become ready,
 * each read back from the staged file into a write_buffer buffer, by up
 * to UPLOAD_THREADS threads (more are started while parts wait and
 * buffers are free). A whole-file upload has all its parts ready at once;
 * a stream (a new file written in order) gets them while it is written,
 * and its number of parts when it is committed.
 */
struct mp {
	struct ufs *u;
	int fd;                   /* the staged bytes; -1 for a copy */
	const char *from;         /* a copy: the object (of version from_etag) the parts are read from */
	char from_etag[UFS_ETAG_MAX];
	char *key;
	char id[1024];            /* the UploadId; "" until it is created */
	mode_t mode;              /* the attributes it was created with */
	uid_t uid;
	gid_t gid;
	uint64_t mtime_ns;
	pthread_mutex_t lock;     /* all below */
	pthread_cond_t cond;      /* parts ready, the end known, a worker gone */
	uint64_t ready;           /* parts whose bytes are staged */
	uint64_t next;            /* the next part a worker takes */
	uint64_t nparts, size;    /* known at the end: nparts is UINT64_MAX till then */
	unsigned workers;
	bool stop;                /* abandoned: workers take no more parts */
	bool ended;               /* completed or aborted */
	int rc;
	char err[1024];
	char (*etags)[UFS_ETAG_MAX];
	uint64_t cap;
};

/* key may be NULL: set by the stream's thread. */
static struct mp *mp_new(struct ufs *u, int fd, const char *key, mode_t mode, uid_t uid, gid_t gid,
			 uint64_t mtime_ns)
{
	struct mp *m = calloc(1, sizeof(*m));

	if (!m || (key && !(m->key = strdup(key)))) {
		free(m);
		return NULL;
	}
	m->u = u;
	m->fd = fd;
	m->mode = mode;
	m->uid = uid;
	m->gid = gid;
	m->mtime_ns = mtime_ns;
	m->nparts = UINT64_MAX;
	pthread_mutex_init(&m->lock, NULL);
	pthread_cond_init(&m->cond, NULL);
	return m;
}

static void mp_free(struct mp *m)
{
	if (!m)
		return;
	pthread_mutex_destroy(&m->lock);
	pthread_cond_destroy(&m->cond);
	free(m->etags);
	free(m->key);
	free(m);
}

/* Under m->lock: the first failure is the upload's; the other workers stop. */
static void mp_fail(struct mp *m, int rc, const char *err)
{
	if (!m->rc) {
		m->rc = rc;
		snprintf(m->err, sizeof(m->err), "%s", err);
	}
	pthread_cond_broadcast(&m->cond);
}

/* POST ?uploads: m->id, or -errno with the reason in m->err. */
static int mp_create(struct mp *m)
{
	struct http_resp r = { 0 };
	char err[1024];
	struct rq q;
	int rc;

	rq_init(&q, m->u, "POST", m->key);
	q.q[q.nq++] = (struct sigv4_param){ "uploads", NULL };
	rq_meta(&q, S_IFREG | (m->mode & 07777), m->uid, m->gid, m->mtime_ns);
	if (!(rc = rq_do(&q, UFS_REQ_PUT, "", 0, 64 << 10, &r, false, err, sizeof(err))) &&
	    (s3_xml_text(r.body, r.len, "InitiateMultipartUploadResult/UploadId", m->id, sizeof(m->id)) ||
	     !m->id[0])) {
		snprintf(err, sizeof(err), "POST %s%s?uploads: no UploadId in the answer", m->u->root, m->key);
		m->id[0] = '\0';
		rc = -EIO;
	}
	free(r.body);
	if (rc) {
		pthread_mutex_lock(&m->lock);
		mp_fail(m, rc, err);
		pthread_mutex_unlock(&m->lock);
	}
	return rc;
}

static void *mp_thread(void *arg);

/*
 * A detached thread running fn(arg), counted in u->upload_threads (fn
 * ends with upload_thread_gone). false: not started (fini began, or no
 * thread could be had).
 */
static bool upload_thread_start(struct ufs *u, void *(*fn)(void *), void *arg)
{
	pthread_attr_t a;
	pthread_t t;
	bool ok;

	pthread_mutex_lock(&u->buf_lock);
	if ((ok = !u->streams_stop))
		atomic_fetch_add(&u->upload_threads, 1);
	pthread_mutex_unlock(&u->buf_lock);
	if (!ok)
		return false;
	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	ok = !pthread_create(&t, &a, fn, arg);
	if (!ok)
		atomic_fetch_sub(&u->upload_threads, 1);
	pthread_attr_destroy(&a);
	return ok;
}

/* Under m->lock: another worker, when parts wait beyond those being sent and a buffer is free. */
static void mp_more_workers(struct mp *m)
{
	struct ufs *u = m->u;
	bool free_buf;

	pthread_mutex_lock(&u->buf_lock);
	free_buf = u->buf_used < u->buf_max;
	pthread_mutex_unlock(&u->buf_lock);
	if (m->next >= m->ready || m->workers >= UPLOAD_THREADS || !free_buf)
		return;
	m->workers++;
	if (!upload_thread_start(u, mp_thread, m))
		m->workers--;
}

/*
 * Bytes [off, off + len) of object key (objsize bytes, version etag:
 * checked when the answer names one) into buf: 0, or -errno with a reason.
 */
static int get_range(struct ufs *u, const char *key, const char *etag, uint64_t objsize, char *buf, uint64_t len,
		     uint64_t off, char *err, size_t errlen)
{
	uint64_t ask = len;
	struct http_resp r = { 0 };
	struct rq q;
	int rc;

	rq_init(&q, u, "GET", key);
	/* s3rver answers "bytes=N-N" with the whole object: ask for two bytes, or the tail. */
	if (len == 1 && off + 2 <= objsize)
		ask = 2;
	if (len == 1 && ask == 1)
		snprintf(q.range, sizeof(q.range), "bytes=%llu-", (unsigned long long)off);
	else
		snprintf(q.range, sizeof(q.range), "bytes=%llu-%llu", (unsigned long long)off,
			 (unsigned long long)(off + ask - 1));
	if ((rc = rq_do(&q, UFS_REQ_GET, NULL, 0, ask + 1, &r, false, err, errlen)))
		return rc;
	if (r.len == ask)
		r.len = len;
	/* One version of the object, or a copy that mixes two. */
	if (*etag && r.etag[0] && !http_etag_eq(etag, r.etag)) {
		snprintf(err, errlen, "GET %s%s: changed while it was being read (ETag %s, then %s)", u->root, key,
			 etag, r.etag);
		rc = -EIO;
	} else if (r.len != len) {
		snprintf(err, errlen, "GET %s%s: %zu bytes at %llu, expected %llu", u->root, key, r.len,
			 (unsigned long long)off, (unsigned long long)len);
		rc = -EIO;
	} else {
		memcpy(buf, r.body, len);
	}
	free(r.body);
	return rc;
}

/* Sends part i (0-based) of m: 0, or -errno with a reason. */
static int mp_send_part(struct mp *m, uint64_t i, uint64_t len, char *etag, char *err, size_t errlen)
{
	struct ufs *u = m->u;
	struct http_resp r = { 0 };
	char num[24], *buf = buf_take(u);
	struct rq q;
	int rc;

	if (!buf) {
		snprintf(err, errlen, "no buffer for a part of %s%s", u->root, m->key);
		return u->streams_stop ? -ECANCELED : -ENOMEM;
	}
	if (m->from)
		rc = get_range(u, m->from, m->from_etag, m->size, buf, len, i * u->part_size, err, errlen);
	else if ((rc = pread_all(m->fd, buf, len, i * u->part_size)))
		snprintf(err, errlen, "reading the staged bytes of %s%s: %s", u->root, m->key, strerror(-rc));
	if (rc) {
		buf_give(u, buf);
		return rc;
	}
	/* A failed part is retried by the HTTP client on its own: the upload goes on. */
	rq_init(&q, u, "PUT", m->key);
	snprintf(num, sizeof(num), "%llu", (unsigned long long)i + 1);
	q.q[q.nq++] = (struct sigv4_param){ "partNumber", num };
	q.q[q.nq++] = (struct sigv4_param){ "uploadId", m->id };
	rc = rq_do(&q, UFS_REQ_PUT, buf, len, 0, &r, false, err, errlen);
	buf_give(u, buf);
	if (!rc)
		snprintf(etag, UFS_ETAG_MAX, "%s", r.etag);
	free(r.body);
	return rc;
}

/*
 * A worker (m->workers counts it already): sends parts while they are
 * ready, and waits for more until the end is known, the upload failed or
 * it is abandoned.
 */
static void mp_work(struct mp *m)
{
	struct ufs *u = m->u;
	char err[1024], etag[UFS_ETAG_MAX];

	pthread_mutex_lock(&m->lock);
	for (;;) {
		uint64_t i, len;
		int rc;

		while (!m->rc && !m->stop && m->next >= m->ready && m->next < m->nparts)
			pthread_cond_wait(&m->cond, &m->lock);
		if (m->rc || m->stop || m->next >= m->nparts)
			break;
		if (m->next >= m->cap) {
			uint64_t cap = MAX(m->cap * 2, 64);
			void *e = realloc(m->etags, cap * sizeof(*m->etags));
			if (!e) {
				mp_fail(m, -ENOMEM, "out of memory for the parts of an upload");
				break;
			}
			m->etags = e;
			m->cap = cap;
		}
		i = m->next++;
		/* Whole parts, but for the last one. */
		len = i + 1 == m->nparts ? m->size - i * u->part_size : u->part_size;
		mp_more_workers(m);
		pthread_mutex_unlock(&m->lock);
		rc = mp_send_part(m, i, len, etag, err, sizeof(err));
		pthread_mutex_lock(&m->lock);
		if (rc) {
			mp_fail(m, rc, err);
			break;
		}
		snprintf(m->etags[i], sizeof(m->etags[i]), "%s", etag);
	}
	m->workers--;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
}

/* The last thing an upload thread does with u: fini waits for the count. */
static void upload_thread_gone(struct ufs *u)
{
	pthread_mutex_lock(&u->buf_lock);
	atomic_fetch_sub(&u->upload_threads, 1);
	pthread_cond_broadcast(&u->buf_free);
	pthread_mutex_unlock(&u->buf_lock);
}

static void *mp_thread(void *arg)
{
	struct mp *m = arg;
	struct ufs *u = m->u;

	mp_work(m);
	upload_thread_gone(u);
	return NULL;
}

/*
 * The end of m: it has `size` bytes (0: abandon it). Waits for its
 * workers; 0 when every part is sent, else -errno with a reason.
 */
static int mp_finish(struct mp *m, uint64_t size, char *err, size_t errlen)
{
	uint64_t psz = m->u->part_size;
	int rc;

	pthread_mutex_lock(&m->lock);
	if (size) {
		m->size = size;
		m->nparts = m->ready = (size + psz - 1) / psz;
	} else {
		m->stop = true;
	}
	pthread_cond_broadcast(&m->cond);
	while (m->workers)
		pthread_cond_wait(&m->cond, &m->lock);
	if (!(rc = m->rc) && m->stop)
		rc = -ECANCELED;
	if (rc)
		snprintf(err, errlen, "%s", m->rc ? m->err : "abandoned");
	pthread_mutex_unlock(&m->lock);
	return rc;
}

/* CompleteMultipartUpload of m's parts: 0 with etag, or -errno with a reason. */
static int mp_complete(struct mp *m, char *etag, char *err, size_t errlen)
{
	char *xml = malloc(m->nparts * (UFS_ETAG_MAX + 64) + 128), *x;
	struct http_resp r = { 0 };
	struct rq q;
	int rc;

	if (!xml)
		return -ENOMEM;
	x = xml + sprintf(xml, "<CompleteMultipartUpload>");
	for (uint64_t i = 0; i < m->nparts; i++)
		x += sprintf(x, "<Part><PartNumber>%llu</PartNumber><ETag>%s</ETag></Part>",
			     (unsigned long long)i + 1, m->etags[i]);
	x += sprintf(x, "</CompleteMultipartUpload>");
	rq_init(&q, m->u, "POST", m->key);
	q.q[q.nq++] = (struct sigv4_param){ "uploadId", m->id };
	if (!(rc = rq_do(&q, UFS_REQ_PUT, xml, (size_t)(x - xml), 64 << 10, &r, true, err, errlen))) {
		if (s3_xml_text(r.body, r.len, "CompleteMultipartUploadResult/ETag", etag, UFS_ETAG_MAX))
			snprintf(etag, UFS_ETAG_MAX, "%s", r.etag);
		m->ended = true;
	}
	free(r.body);
	free(xml);
	return rc;
}

/* A store keeps the parts of an upload nobody completes until it is aborted: 0, or -errno (logged). */
static int abort_upload(struct ufs *u, const char *key, const char *id)
{
	struct http_resp r = { 0 };
	char err[1024];
	struct rq q;
	int rc;

	rq_init(&q, u, "DELETE", key);
	q.q[q.nq++] = (struct sigv4_param){ "uploadId", id };
	if ((rc = rq_do(&q, UFS_REQ_DELETE, NULL, 0, 0, &r, false, err, sizeof(err))))
		log_warn("%s%s: the multipart upload %s was not aborted (%s); its parts stay in the store "
			 "until a lifecycle rule removes them", u->root, key, id, err);
	free(r.body);
	return rc;
}

static void mp_abort(struct mp *m)
{
	if (m->id[0] && !m->ended)
		abort_upload(m->u, m->key, m->id);
	m->ended = true;
}

/*
 * All of m's `size` bytes in parts, ready at once; this thread is one of
 * the workers. 0 with etag, or -errno with a reason (the upload aborted).
 */
static int mp_upload_all(struct mp *m, uint64_t size, char *etag, char *err, size_t errlen)
{
	uint64_t t0 = now_ns();
	int rc;

	if ((rc = mp_create(m))) {
		snprintf(err, errlen, "%s", m->err);
		return rc;
	}
	m->size = size;
	m->nparts = m->ready = (size + m->u->part_size - 1) / m->u->part_size;
	m->workers = 1;
	mp_work(m);
	if (!(rc = mp_finish(m, size, err, errlen)))
		log_debug("%s%s: %llu parts sent in %.3f s", m->u->root, m->key, (unsigned long long)m->nparts,
			  (double)(now_ns() - t0) / 1e9);
	if (!rc)
		rc = mp_complete(m, etag, err, errlen);
	if (rc)
		mp_abort(m);
	return rc;
}

/* The whole staged file in parts. */
static int put_multipart(struct put *p, char *err, size_t errlen)
{
	struct mp *m = mp_new(p->u, p->fd, p->key, p->mode, p->uid, p->gid, p->mtime_ns);
	int rc;

	if (!m)
		return -ENOMEM;
	rc = mp_upload_all(m, p->size, p->etag, err, errlen);
	mp_free(m);
	return rc;
}

/* Uploads the staged bytes of p->fd to p->key: 0 with p->etag, or -errno with a reason. */
static int upload(struct put *p, char *err, size_t errlen)
{
	struct stat st;
	char *buf;
	int rc;

	if (fstat(p->fd, &st) < 0) {
		snprintf(err, errlen, "staged bytes of %s%s: %s", p->u->root, p->key, strerror(errno));
		return -errno;
	}
	p->size = (uint64_t)st.st_size;
	if (!p->mtime_ns)
		p->mtime_ns = (uint64_t)st.st_mtim.tv_sec * 1000000000ULL + (uint64_t)st.st_mtim.tv_nsec;
	if (p->size > p->u->part_size) {
		rc = put_multipart(p, err, errlen);
	} else if (!(buf = buf_take(p->u))) {
		snprintf(err, errlen, "no buffer for %s%s", p->u->root, p->key);
		rc = p->u->streams_stop ? -ECANCELED : -ENOMEM;
	} else {
		rc = p->size ? pread_all(p->fd, buf, p->size, 0) : 0;
		if (rc)
			snprintf(err, errlen, "reading the staged bytes of %s%s: %s", p->u->root, p->key, strerror(-rc));
		else
			rc = put_single(p, buf, err, errlen);
		buf_give(p->u, buf);
	}
	return rc;
}

/* ---- staging files and their records ---- */

/*
 * A new XXXXXX.data in this daemon's staging folder, open for reading and
 * writing, and the XXXXXX.json beside it (not written yet). record may be
 * NULL when the bytes need no record (a staged round trip of setattr).
 */
static int stage_new(struct ufs *u, int *fd, char **data, char **record)
{
	int rc;

	*data = NULL;
	if (record)
		*record = NULL;
	if (asprintf(data, "%s/XXXXXX.data", u->own_dir) < 0) {
		*data = NULL;
		return -ENOMEM;
	}
	if ((*fd = mkostemps(*data, 5, O_CLOEXEC)) < 0) {
		rc = -errno;
		log_err("staging a write in %s: %s", u->own_dir, strerror(-rc));
		free(*data);
		*data = NULL;
		return rc;
	}
	if (record && asprintf(record, "%.*s.json", (int)(strlen(*data) - 5), *data) < 0) {
		close(*fd);
		unlink(*data);
		free(*data);
		*data = *record = NULL;
		return -ENOMEM;
	}
	return 0;
}

/* Reserves `grow` more staged bytes within staging_max: 0, or -ENOSPC. Any thread. */
static int stage_reserve(struct ufs *u, uint64_t grow)
{
	uint64_t cur = atomic_load(&u->staged);

	do {
		if (u->staging_max && cur + grow > u->staging_max)
			return -ENOSPC;
	} while (!atomic_compare_exchange_weak(&u->staged, &cur, cur + grow));
	return 0;
}

/* wf's staged size becomes `size` (a truncate), within staging_max: 0 or -ENOSPC. */
static int stage_resize(struct s3_wfile *wf, uint64_t size)
{
	uint64_t old = atomic_load(&wf->size), grow = size > old ? size - old : 0, was;

	if (grow && stage_reserve(wf->u, grow))
		return -ENOSPC;
	/* Accounted for it now: what it had (a racing write may have raised that) and grow. */
	was = atomic_exchange(&wf->size, size);
	atomic_fetch_sub(&wf->u->staged, was + grow - size);
	return 0;
}

/*
 * Under u->wlock, off the shards: writes wf's record (where its bytes go,
 * and what the bucket held when they were staged), replacing it whole by
 * rename so that a crash leaves the old one or the new one. A writer whose
 * name was unlinked has none.
 */
static int record_write(struct s3_wfile *wf)
{
	json_t *j;
	char *tmp = NULL;
	int rc = 0;

	if (wf->gone)
		return 0;
	j = json_pack("{s:i, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:s*, s:s*}", "version", RECORD_VERSION,
		      "bucket", wf->u->bucket, "key", wf->key, "etag", wf->base_etag, "mode", (json_int_t)wf->mode,
		      "uid", (json_int_t)wf->uid, "gid", (json_int_t)wf->gid, "mtime_ns", (json_int_t)wf->mtime_ns,
		      "kept", wf->kept, "upload", wf->upload_id);
	if (!j || asprintf(&tmp, "%s.tmp", wf->record) < 0)
		rc = -ENOMEM;
	else if (json_dump_file(j, tmp, JSON_COMPACT) < 0 || rename(tmp, wf->record) < 0)
		rc = errno ? -errno : -EIO;
	json_decref(j);
	free(tmp);
	if (rc)
		log_err("recording the staged write of %s%s in %s: %s", wf->u->root, wf->key, wf->record,
			strerror(-rc));
	return rc;
}

/*
 * Keeps the staged bytes at `path` in recovery/ under a name that says what
 * they are (the key, '/' as %2F, cut to what a file name holds, then a
 * time stamp), and logs where: one line per failed or stale upload. A
 * hard link, or the file itself moved there when nothing else needs it.
 * Returns the kept path (malloc'd), or NULL (logged) when it could not.
 */
static char *keep_for_recovery(struct ufs *u, const char *path, const char *key, const char *why, bool move)
{
	static atomic_ulong seq;
	char esc[200], stamp[32], *name = NULL;
	time_t now = time(NULL);
	size_t n = 0;
	struct tm tm;

	for (const char *k = key; *k && n + 4 < sizeof(esc); k++) {
		if (*k == '/') {
			memcpy(esc + n, "%2F", 3);
			n += 3;
		} else {
			esc[n++] = *k;
		}
	}
	esc[n] = '\0';
	gmtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
	if (asprintf(&name, "%s/%s.%s-%ld-%lu", u->recovery_dir, esc, stamp, (long)getpid(),
		     atomic_fetch_add(&seq, 1)) < 0) {
		log_err("%s%s: %s; its bytes stay in %s", u->root, key, why, path);
		return NULL;
	}
	if ((move ? rename(path, name) : link(path, name)) < 0) {
		log_err("%s%s: %s; its bytes stay in %s (keeping them in %s failed: %s)", u->root, key, why, path,
			u->recovery_dir, strerror(errno));
		free(name);
		return NULL;
	}
	log_err("%s%s: %s; its bytes are kept in %s", u->root, key, why, name);
	return name;
}

/* Under u->wlock: an upload of wf succeeded, so the copy a failed one kept can go. */
static void drop_kept(struct s3_wfile *wf)
{
	if (!wf->kept)
		return;
	if (unlink(wf->kept) == 0)
		log_info("%s%s: uploaded after all; removed %s", wf->u->root, wf->key, wf->kept);
	free(wf->kept);
	wf->kept = NULL;
}

/* ---- jobs: the blocking part of a call, on a metadata thread ---- */

struct job {
	struct pool_job job;
	struct ufs_call *c;
	struct ufs *u;
	struct s3_wfile *wf;
	int rc;
	char *key, *key2;         /* full keys of path and path2 */
	char err[1024];
	struct ufs_stat st;
	char etag[UFS_ETAG_MAX];
	bool fetched;             /* st and etag: what the bucket holds now (rename) */
	struct ufs_file *file;
	void (*run)(struct job *j);
};

static void job_run(struct pool_job *pj)
{
	struct job *j = container_of(pj, struct job, job);

	j->run(j);
}

static void job_done(struct pool_job *pj)
{
	struct job *j = container_of(pj, struct job, job);
	struct ufs_call *c = j->c;
	int rc;

	c->ttl_ns = j->u->ttl_ns;
	c->asked = j->rc != -ECANCELED;
	if (!j->rc) {
		c->st = j->st;
		snprintf(c->etag, sizeof(c->etag), "%s", j->etag);
		c->fetched = j->fetched;
		if (j->file) {
			c->file = j->file;
			c->fetched = true;
			c->staged = true;   /* open_run's files are staged */
		}
	} else {
		ufs_call_err(c, "%s", j->err[0] ? j->err : strerror(-j->rc));
	}
	rc = j->rc;
	free(j->key);
	free(j->key2);
	free(j);
	c->done(c, rc);
}

/* Hands fn to a metadata thread with the call's keys; c->done follows on this shard. */
static void submit(struct ufs_call *c, struct s3_wfile *wf, void (*fn)(struct job *j))
{
	struct ufs *u = wf ? wf->u : c->u;
	struct job *j = calloc(1, sizeof(*j));

	if (!j) {
		c->done(c, -ENOMEM);
		return;
	}
	j->c = c;
	j->u = u;
	j->wf = wf;
	j->run = fn;
	j->rc = -ECANCELED;   /* what a job completed unrun reports */
	j->job.run = job_run;
	j->job.done = job_done;
	if ((!wf && c->path && asprintf(&j->key, "%s%s", u->prefix, c->path) < 0) ||
	    (!wf && c->path2 && asprintf(&j->key2, "%s%s", u->prefix, c->path2) < 0)) {
		j->rc = -ENOMEM;
		job_done(&j->job);
		return;
	}
	if ((j->key && strlen(j->key) > MAX_KEY) || (j->key2 && strlen(j->key2) > MAX_KEY)) {
		snprintf(j->err, sizeof(j->err), "a key longer than S3's %d bytes", MAX_KEY);
		j->rc = -ENAMETOOLONG;
		job_done(&j->job);
		return;
	}
	pool_submit(&j->job);
}

/* The attributes of object `key` as we wrote it. */
static void written_stat(struct ufs *u, struct ufs_stat *st, const char *key, uint64_t size, mode_t mode,
			 uid_t uid, gid_t gid, uint64_t mtime_ns, const char *etag)
{
	obj_file_stat(&u->src, st, key, size, mtime_ns, etag);
	st->mode = S_IFREG | (mode & 07777);
	st->uid = uid;
	st->gid = gid;
}

/* HEAD of key: 0 with its attributes and ETag, -ENOENT, or -errno with a reason. */
static int head(struct ufs *u, const char *key, struct ufs_stat *st, char *etag, char *err, size_t errlen)
{
	struct http_resp r = { 0 };
	struct rq q;
	int rc;

	rq_init(&q, u, "HEAD", key);
	if ((rc = rq_run(&q, UFS_REQ_HEAD, NULL, 0, 0, &r, err, errlen)))
		return rc;
	if (r.status == 404)
		return -ENOENT;
	if ((rc = judge(&q, &r, false, err, errlen)))
		return rc;
	if ((rc = obj_head_stat(&u->src, st, key, &r, err, errlen)))
		return rc;
	if (etag)
		snprintf(etag, UFS_ETAG_MAX, "%s", r.etag);
	return 0;
}

/* ---- files open for writing ---- */

static struct s3_wfile *wfile_of(struct ufs_file *f)
{
	return container_of(f, struct s3_wfile, f);
}

/* Under u->wlock: whether wf writes key (and its name was not unlinked). */
static bool writes(const struct s3_wfile *wf, const char *key)
{
	return !wf->gone && !strcmp(wf->key, key);
}

/*
 * Copies the first `size` bytes of object key (objsize bytes, version etag)
 * into fd, a staged copy to change in place: 0 or -errno with a reason.
 */
static int download(struct ufs *u, const char *key, const char *etag, uint64_t size, uint64_t objsize, int fd,
		    char *err, size_t errlen)
{
	uint64_t chunk = MIN(u->part_size, size);
	char *buf = malloc(MAX(chunk, 1));
	int rc = 0;

	if (!buf)
		return -ENOMEM;
	for (uint64_t off = 0; off < size && !rc; off += chunk) {
		uint64_t len = MIN(chunk, size - off);
		if ((rc = get_range(u, key, etag, objsize, buf, len, off, err, errlen)))
			break;
		if (pwrite(fd, buf, len, (off_t)off) != (ssize_t)len) {
			rc = errno ? -errno : -EIO;
			snprintf(err, errlen, "staging %s%s: %s", u->root, key, strerror(-rc));
		}
	}
	free(buf);
	return rc;
}

/* A staged file for j->key: empty (create, O_TRUNC) or a copy of the object as opened. */
static void open_run(struct job *j)
{
	static atomic_ulong opens;
	struct ufs_call *c = j->c;
	struct ufs *u = j->u;
	bool create = c->oflags & O_CREAT, empty = create || (c->oflags & O_TRUNC);
	uint64_t size = empty ? 0 : c->st.size;
	struct s3_wfile *wf = calloc(1, sizeof(*wf));
	int rc;

	if (!wf || !(wf->key = strdup(j->key)) || asprintf(&wf->f.name, "%s%s", u->root, j->key) < 0) {
		rc = -ENOMEM;
		goto fail;
	}
	if ((rc = stage_new(u, &wf->fd, &wf->data, &wf->record))) {
		snprintf(j->err, sizeof(j->err), "staging %s%s in %s: %s", u->root, j->key, u->own_dir, strerror(-rc));
		goto fail;
	}
	if ((rc = stage_reserve(u, size))) {
		snprintf(j->err, sizeof(j->err), "staging a copy of %s%s: over staging_max", u->root, j->key);
		goto fail;
	}
	atomic_init(&wf->size, size);
	atomic_init(&wf->stream_off, size != 0);
	wf->u = u;
	wf->f.ops = &s3_wfile_ops;
	wf->f.readable = true;   /* the staged copy, whatever the writer's access mode */
	atomic_init(&wf->f.refs, 1);
	wf->mode = (create ? c->mode : c->st.mode) & 07777;
	wf->uid = create ? c->uid : c->st.uid;
	wf->gid = create ? c->gid : c->st.gid;
	if (!create)
		snprintf(wf->base_etag, sizeof(wf->base_etag), "%s", c->etag);
	if (size && (rc = download(u, j->key, c->etag, size, c->st.size, wf->fd, j->err, sizeof(j->err))))
		goto fail;
	/* Created or truncated: what the bucket holds is already not what the file does. */
	atomic_init(&wf->gen, empty ? 1 : 0);
	pthread_mutex_lock(&u->wlock);
	record_write(wf);
	wf->next = u->writers;
	if (wf->next)
		wf->next->prev = wf;
	u->writers = wf;
	pthread_mutex_unlock(&u->wlock);
	written_stat(u, &j->st, j->key, size, wf->mode, wf->uid, wf->gid, realtime_ns(), "");
	/* The bytes it will hold are another version than any before: keyed apart. */
	j->st.id = mix64(j->st.id ^ mix64(realtime_ns() ^ atomic_fetch_add(&opens, 1)));
	j->file = &wf->f;
	j->rc = 0;
	return;
fail:
	if (wf) {
		if (wf->data) {
			atomic_fetch_sub(&u->staged, atomic_load(&wf->size));
			close(wf->fd);
			unlink(wf->data);
		}
		free(wf->data);
		free(wf->record);
		free(wf->key);
		free(wf->f.name);
		free(wf);
	}
	j->rc = rc;
}

void s3_create(struct ufs_call *c)
{
	c->fetched = false;
	c->file = NULL;
	c->oflags |= O_CREAT;
	submit(c, NULL, open_run);
}

void s3_open_write(struct ufs_call *c)
{
	c->fetched = false;
	c->file = NULL;
	c->oflags &= ~O_CREAT;
	submit(c, NULL, open_run);
}

/* ---- streaming: parts sent while a new file is written ---- */

/* The stream's first thread: creates the upload, records it, then sends parts. */
static void *stream_thread(void *arg)
{
	struct s3_wfile *wf = arg;
	struct mp *m = atomic_load(&wf->stream);
	struct ufs *u = wf->u;

	pthread_mutex_lock(&u->wlock);
	m->key = strdup(wf->key);
	m->mode = wf->mode;
	m->uid = wf->uid;
	m->gid = wf->gid;
	pthread_mutex_unlock(&u->wlock);
	m->mtime_ns = realtime_ns();
	if (!m->key) {
		pthread_mutex_lock(&m->lock);
		mp_fail(m, -ENOMEM, "out of memory");
		pthread_mutex_unlock(&m->lock);
	} else if (!mp_create(m)) {
		/* In the record: the next mount aborts it, should the daemon die before its end. */
		pthread_mutex_lock(&u->wlock);
		if ((wf->upload_id = strdup(m->id)))
			record_write(wf);
		pthread_mutex_unlock(&u->wlock);
	}
	mp_work(m);
	upload_thread_gone(u);
	return NULL;
}

/* On the owner shard: wf's stream, started (a thread; no request is made here). NULL: none. */
static struct mp *stream_start(struct s3_wfile *wf)
{
	struct mp *m = mp_new(wf->u, wf->fd, NULL, 0, 0, 0, 0);

	if (!m)
		return NULL;
	m->workers = 1;
	/* Stored first: fini, once it refuses new threads, stops the streams it sees. */
	atomic_store(&wf->stream, m);
	if (!upload_thread_start(wf->u, stream_thread, wf)) {
		atomic_store(&wf->stream, NULL);
		mp_free(m);
		return NULL;
	}
	return m;
}

/* On the owner shard: every byte of wf below `safe` landed, in order. Whole parts go. */
static void stream_to(struct s3_wfile *wf, uint64_t safe)
{
	uint64_t psz = wf->u->part_size, parts = safe / psz;
	struct mp *m = atomic_load(&wf->stream);

	atomic_store(&wf->safe, safe);
	/* A file of one part is one PUT at close: a stream starts past it. */
	if (parts <= wf->signaled || (!m && safe <= psz))
		return;
	if (!m && !(m = stream_start(wf))) {
		atomic_store(&wf->stream_off, true);
		return;
	}
	pthread_mutex_lock(&m->lock);
	m->ready = MAX(m->ready, parts);   /* a commit may have set them all */
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
	wf->signaled = parts;
}

/*
 * At a commit, off the shards: completes wf's stream when it holds the
 * file as it is (`size` bytes, written in order, to `key`), else aborts
 * it. true with p->etag and the attributes it was created with when it
 * is the upload; false when the staged file is to be uploaded whole (no
 * stream, or it could not be completed: that is logged).
 */
static bool stream_commit(struct s3_wfile *wf, const char *key, uint64_t size, struct put *p, char *err,
			  size_t errlen)
{
	bool broken = atomic_exchange(&wf->stream_off, true);
	struct mp *m = atomic_load(&wf->stream);
	struct ufs *u = wf->u;
	uint64_t early, t0 = now_ns(), t1;
	bool whole;
	int rc;

	if (!m || atomic_exchange(&wf->stream_taken, true))
		return false;
	whole = !broken && size > u->part_size && atomic_load(&wf->safe) == size;
	pthread_mutex_lock(&m->lock);
	early = m->next;   /* parts sent, or being sent, before the commit */
	pthread_mutex_unlock(&m->lock);
	/* After its workers: m->key is set, the parts are sent or not. */
	rc = mp_finish(m, whole ? size : 0, err, errlen);
	t1 = now_ns();
	if (!rc && !(whole = m->key && !strcmp(m->key, key)))
		rc = -ECANCELED;
	if (!rc)
		rc = mp_complete(m, p->etag, err, errlen);
	if (rc)
		mp_abort(m);
	else
		log_debug("%s%s: %llu parts, %llu of them taken before the commit; the rest sent in %.3f s, "
			  "completed in %.3f s", u->root, key, (unsigned long long)m->nparts,
			  (unsigned long long)early, (double)(t1 - t0) / 1e9, (double)(now_ns() - t1) / 1e9);
	pthread_mutex_lock(&u->wlock);
	free(wf->upload_id);
	wf->upload_id = NULL;
	pthread_mutex_unlock(&u->wlock);
	if (rc) {
		if (whole)
			log_warn("%s%s: the parts sent while it was written did not make the object (%s); "
				 "uploading it whole", u->root, key, err);
		err[0] = '\0';
		return false;
	}
	p->size = size;
	p->mode = m->mode;
	p->uid = m->uid;
	p->gid = m->gid;
	p->mtime_ns = m->mtime_ns;
	return true;
}

/* The last release, off the shards: a stream no commit took is aborted. */
static void stream_drop(struct s3_wfile *wf)
{
	struct mp *m = atomic_load(&wf->stream);
	char ignored[256];

	if (!m)
		return;
	if (!atomic_exchange(&wf->stream_taken, true)) {
		mp_finish(m, 0, ignored, sizeof(ignored));
		mp_abort(m);
	}
	mp_free(m);
}

static int wfile_read(struct ufs_read *r)
{
	ufs_fd_read(r, wfile_of(r->file)->fd, false);
	return 0;
}

/* A write landed in the staged copy: it is a change the bucket does not have. */
static void wfile_wrote(struct ufs_write *w, int res)
{
	struct s3_wfile *wf = wfile_of(w->file);

	/* Counted after it landed: an upload that began before has not got it, one after has. */
	if (res > 0)
		atomic_fetch_add(&wf->gen, 1);
	if (!atomic_load_explicit(&wf->stream_off, memory_order_relaxed)) {
		if (res < 0 || (size_t)res != w->len)
			atomic_store(&wf->stream_off, true);
		else if ((wf->landed += (uint64_t)res) == wf->front)
			stream_to(wf, wf->front);
	}
	w->done = w->inner;
	w->done(w, res);
}

/*
 * On the writer's shard: the bytes go to the staging file, within
 * staging_max and S3's limits. No lock and no call but the write itself.
 */
static int wfile_write(struct ufs_write *w)
{
	struct s3_wfile *wf = wfile_of(w->file);
	struct ufs *u = wf->u;
	uint64_t end = w->off + w->len, cur = atomic_load(&wf->size);

	if (end > u->part_size * MAX_PARTS)
		return -EFBIG;
	while (end > cur) {
		uint64_t grow = end - cur;
		if (stage_reserve(u, grow))
			return -ENOSPC;
		if (atomic_compare_exchange_strong(&wf->size, &cur, end))
			break;
		atomic_fetch_sub(&u->staged, grow);   /* it moved meanwhile: try again from there */
	}
	if (!atomic_load_explicit(&wf->stream_off, memory_order_relaxed)) {
		if (w->off == wf->front)
			wf->front = end;
		else
			atomic_store(&wf->stream_off, true);   /* not in order: uploaded whole at close */
	}
	w->inner = w->done;
	w->done = wfile_wrote;
	ufs_fd_write(w, wf->fd);
	return 0;
}

/* close, fsync: the staged bytes to the bucket, unless it has them already. */
static void commit_run(struct job *j)
{
	struct s3_wfile *wf = j->wf;
	struct ufs *u = wf->u;
	struct put p = { .u = u, .fd = wf->fd };
	char *key, etag[UFS_ETAG_MAX];
	unsigned long gen;
	bool gone, changed;

	pthread_mutex_lock(&u->wlock);
	key = strdup(wf->key);
	gone = wf->gone;
	gen = atomic_load(&wf->gen);
	changed = gen != wf->uploaded;
	snprintf(etag, sizeof(etag), "%s", wf->base_etag);
	p.mode = wf->mode;
	p.uid = wf->uid;
	p.gid = wf->gid;
	p.mtime_ns = wf->mtime_ns;
	pthread_mutex_unlock(&u->wlock);
	if (!key) {
		j->rc = -ENOMEM;
		return;
	}
	p.key = key;
	if (gone || !changed) {
		/* Unlinked while open: nothing is to be in the bucket. Or it is there already. */
		written_stat(u, &j->st, key, atomic_load(&wf->size), p.mode, p.uid, p.gid,
			     p.mtime_ns ? p.mtime_ns : realtime_ns(), gone ? "" : etag);
		snprintf(j->etag, sizeof(j->etag), "%s", gone ? "" : etag);
		j->rc = 0;
		free(key);
		return;
	}
	uint64_t t0 = now_ns();
	if (stream_commit(wf, key, atomic_load(&wf->size), &p, j->err, sizeof(j->err)))
		j->rc = 0;
	else
		j->rc = upload(&p, j->err, sizeof(j->err));
	log_debug("%s%s: %llu bytes uploaded in %.3f s", u->root, key, (unsigned long long)p.size,
		  (double)(now_ns() - t0) / 1e9);
	pthread_mutex_lock(&u->wlock);
	gone = wf->gone;
	if (j->rc) {
		/* A hard link: the kept file is the staged one, and holds what later writes put there. */
		if (!wf->kept && (wf->kept = keep_for_recovery(u, wf->data, key, j->err, false)))
			record_write(wf);
	} else if (!strcmp(key, wf->key)) {
		/* What the bucket now holds: a crash from here on re-uploads nothing it lacks. */
		if (gen > wf->uploaded)
			wf->uploaded = gen;
		snprintf(wf->base_etag, sizeof(wf->base_etag), "%s", p.etag);
		drop_kept(wf);
		record_write(wf);
	}
	pthread_mutex_unlock(&u->wlock);
	if (!j->rc && gone) {
		/* Unlinked while this upload ran: the bucket must not keep it. */
		char ignored[256];
		delete_key(u, key, ignored, sizeof(ignored));
	}
	if (!j->rc) {
		written_stat(u, &j->st, key, p.size, p.mode, p.uid, p.gid, p.mtime_ns, p.etag);
		snprintf(j->etag, sizeof(j->etag), "%s", p.etag);
	} else if (ufs_unavailable(j->rc) || j->rc == -ECANCELED) {
		j->rc = -EIO;
	}
	free(key);
}

static void wfile_commit(struct ufs_call *c)
{
	submit(c, wfile_of(c->file), commit_run);
}

/*
 * Under u->wlock, off the shards: a setattr of a file open for writing
 * changes its staged copy and the attributes its upload will carry (the
 * bucket may not have it yet): a change the next close uploads.
 */
static void setattr_staged(struct job *j, struct s3_wfile *wf)
{
	struct ufs_call *c = j->c;
	struct ufs *u = wf->u;

	/* The stream's upload carries the size and attributes it began with. */
	if (c->set & UFS_SET_KEPT)
		atomic_store(&wf->stream_off, true);
	if (c->set & UFS_SET_SIZE) {
		if (stage_resize(wf, c->st.size)) {
			snprintf(j->err, sizeof(j->err), "truncating %s%s to %llu: over staging_max", u->root, wf->key,
				 (unsigned long long)c->st.size);
			j->rc = -ENOSPC;
			return;
		}
		if (ftruncate(wf->fd, (off_t)c->st.size) < 0) {
			j->rc = -errno;
			snprintf(j->err, sizeof(j->err), "truncating the staged copy of %s%s: %s", u->root, wf->key,
				 strerror(errno));
			return;
		}
	}
	if (c->set & UFS_SET_MODE)
		wf->mode = c->st.mode & 07777;
	if (c->set & UFS_SET_UID)
		wf->uid = c->st.uid;
	if (c->set & UFS_SET_GID)
		wf->gid = c->st.gid;
	if (c->set & UFS_SET_MTIME)
		wf->mtime_ns = c->st.mtime_ns;
	if (c->set & UFS_SET_MTIME_NOW)
		wf->mtime_ns = realtime_ns();
	if (c->set & UFS_SET_KEPT) {
		atomic_fetch_add(&wf->gen, 1);
		record_write(wf);
	}
	written_stat(u, &j->st, wf->key, atomic_load(&wf->size), wf->mode, wf->uid, wf->gid,
		     wf->mtime_ns ? wf->mtime_ns : realtime_ns(), "");
	j->rc = 0;
}

static void wfile_setattr_run(struct job *j)
{
	pthread_mutex_lock(&j->u->wlock);
	setattr_staged(j, j->wf);
	pthread_mutex_unlock(&j->u->wlock);
}

static void wfile_setattr(struct ufs_call *c)
{
	submit(c, wfile_of(c->file), wfile_setattr_run);
}

/*
 * After the last reference, off the shards: its stream stops, and the
 * staged files go, unless their bytes are not in the bucket.
 */
static void wfile_close(struct s3_wfile *wf)
{
	struct ufs *u = wf->u;
	bool keep;

	stream_drop(wf);
	pthread_mutex_lock(&u->wlock);
	if (wf->prev)
		wf->prev->next = wf->next;
	else
		u->writers = wf->next;
	if (wf->next)
		wf->next->prev = wf->prev;
	/* Changes never uploaded (the daemon stops, or every upload failed): the next mount finishes them. */
	keep = !wf->gone && atomic_load(&wf->gen) != wf->uploaded;
	pthread_mutex_unlock(&u->wlock);
	if (!keep) {
		unlink(wf->data);
		unlink(wf->record);
	}
	atomic_fetch_sub(&u->staged, atomic_load(&wf->size));
	close(wf->fd);
	wf->closed = true;
}

static void wfile_destroy(struct s3_wfile *wf)
{
	free(wf->data);
	free(wf->record);
	free(wf->key);
	free(wf->kept);
	free(wf->upload_id);
	free(wf->f.name);
	free(wf);
}

static void release_run(struct pool_job *pj)
{
	wfile_close(container_of(pj, struct s3_wfile, release));
}

static void release_done(struct pool_job *pj)
{
	struct s3_wfile *wf = container_of(pj, struct s3_wfile, release);

	/* Completed unrun (the daemon stops): the files stay for the next mount. */
	if (wf->closed)
		wfile_destroy(wf);
}

/* Whichever thread drops the last reference; a shard hands the closing over (no allocation). */
static void wfile_release(struct ufs_file *f)
{
	struct s3_wfile *wf = wfile_of(f);

	if (!shard_self()) {
		wfile_close(wf);
		wfile_destroy(wf);
		return;
	}
	wf->release.run = release_run;
	wf->release.done = release_done;
	pool_submit(&wf->release);
}

static const struct ufs_ops s3_wfile_ops = {
	.name = "s3",
	.release = wfile_release,
	.read = wfile_read,
	.write = wfile_write,
	.fsync = wfile_commit,
	.commit = wfile_commit,
	.setattr = wfile_setattr,
};

/* ---- namespace calls ---- */

static int delete_key(struct ufs *u, const char *key, char *err, size_t errlen)
{
	struct http_resp r = { 0 };
	struct rq q;
	int rc;

	rq_init(&q, u, "DELETE", key);
	rc = rq_run(&q, UFS_REQ_DELETE, NULL, 0, 0, &r, err, errlen);
	if (!rc && r.status != 404)
		rc = judge(&q, &r, false, err, errlen);
	free(r.body);
	return rc;
}

/* A directory's "dir/" marker, with its attributes. */
static int put_marker(struct ufs *u, const char *key, mode_t mode, uid_t uid, gid_t gid, uint64_t mtime_ns,
		      char *err, size_t errlen)
{
	struct http_resp r = { 0 };
	char *marker;
	struct rq q;
	int rc;

	if (asprintf(&marker, "%s/", key) < 0)
		return -ENOMEM;
	rq_init(&q, u, "PUT", marker);
	rq_meta(&q, S_IFDIR | (mode & 07777), uid, gid, mtime_ns);
	rc = rq_do(&q, UFS_REQ_PUT, "", 0, 0, &r, false, err, errlen);
	free(r.body);
	free(marker);
	return rc;
}

static void mkdir_run(struct job *j)
{
	struct ufs_call *c = j->c;
	uint64_t now = realtime_ns();

	if ((j->rc = put_marker(j->u, j->key, c->mode, c->uid, c->gid, now, j->err, sizeof(j->err))))
		return;
	obj_dir_stat(&j->u->src, &j->st, now);
	j->st.mode = S_IFDIR | (c->mode & 07777);
	j->st.uid = c->uid;
	j->st.gid = c->gid;
}

void s3_mkdir(struct ufs_call *c)
{
	submit(c, NULL, mkdir_run);
}

static void unlink_run(struct job *j)
{
	struct ufs *u = j->u;

	if ((j->rc = delete_key(u, j->key, j->err, sizeof(j->err))))
		return;
	/*
	 * Gone from the bucket: its writers' closes must not bring it back,
	 * nor a recovery after a crash (their records go; a writer keeps its
	 * open file, as after an unlink of a local one).
	 */
	pthread_mutex_lock(&u->wlock);
	for (struct s3_wfile *wf = u->writers; wf; wf = wf->next)
		if (writes(wf, j->key)) {
			wf->gone = true;
			unlink(wf->record);
		}
	pthread_mutex_unlock(&u->wlock);
}

void s3_unlink(struct ufs_call *c)
{
	submit(c, NULL, unlink_run);
}

/* One flat page of keys below prefix: 0 with *pg (the caller frees it), or -errno with a reason. */
static int list_keys(struct ufs *u, const char *prefix, unsigned max, const char *token, struct s3_page *pg,
		     char *err, size_t errlen)
{
	struct http_resp r = { 0 };
	int rc = s3_list_page_sync(u, prefix, max, true, token, &r, err, errlen);

	if (!rc && r.status != 200) {
		s3_error_text(&r, err, errlen);
		rc = s3_errno(r.status);
	}
	if (!rc && (rc = s3_parse_page(r.body, r.len, pg)))
		snprintf(err, errlen, "listing %s%s: an answer that does not parse", u->root, prefix);
	free(r.body);
	return rc;
}

static void rmdir_run(struct job *j)
{
	struct s3_page pg = { 0 };
	char *prefix;

	if (asprintf(&prefix, "%s/", j->key) < 0) {
		j->rc = -ENOMEM;
		return;
	}
	if (!(j->rc = list_keys(j->u, prefix, 2, "", &pg, j->err, sizeof(j->err)))) {
		for (size_t i = 0; i < pg.nobjs; i++)
			if (strcmp(pg.objs[i].key, prefix))
				j->rc = -ENOTEMPTY;
		if (!j->rc)
			j->rc = delete_key(j->u, prefix, j->err, sizeof(j->err));
	}
	s3_page_free(&pg);
	free(prefix);
}

void s3_rmdir(struct ufs_call *c)
{
	submit(c, NULL, rmdir_run);
}

/*
 * An object over copy_max, copied through the daemon: ranged GETs of the
 * version a HEAD saw into a multipart upload, with its attributes (or
 * meta's). 0 with the new etag, or -errno with a reason.
 */
static int copy_streamed(struct ufs *u, const char *src, const char *dst, const struct ufs_stat *meta,
			 char *etag, char *err, size_t errlen)
{
	struct ufs_stat st;
	char from_etag[UFS_ETAG_MAX];
	struct mp *m;
	int rc;

	if ((rc = head(u, src, &st, from_etag, err, errlen)))
		return rc;
	if (st.size > u->part_size * MAX_PARTS) {
		snprintf(err, errlen, "copying %s%s: over the %d parts of write_part_size a multipart upload takes",
			 u->root, src, MAX_PARTS);
		return -EFBIG;
	}
	if (meta) {
		st.mode = meta->mode;
		st.uid = meta->uid;
		st.gid = meta->gid;
		st.mtime_ns = meta->mtime_ns;
	}
	if (!(m = mp_new(u, -1, dst, st.mode, st.uid, st.gid, st.mtime_ns)))
		return -ENOMEM;
	m->from = src;
	snprintf(m->from_etag, sizeof(m->from_etag), "%s", from_etag);
	rc = mp_upload_all(m, st.size, etag, err, errlen);
	mp_free(m);
	return rc;
}

/*
 * Object src (size bytes) copied to dst, with meta's attributes or its
 * own: CopyObject on the server, or through the daemon over copy_max. 0
 * with the copy's ETag in etag, or -errno with a reason.
 */
static int copy_key(struct ufs *u, const char *src, const char *dst, uint64_t size, const struct ufs_stat *meta,
		    char *etag, char *err, size_t errlen)
{
	struct http_resp r = { 0 };
	char enc[3 * MAX_KEY + 8];
	struct rq q;
	int rc;

	if (size > u->copy_max)
		return copy_streamed(u, src, dst, meta, etag, err, errlen);
	if (sigv4_uri_encode(enc, sizeof(enc), src, 1) < 0)
		return -ENAMETOOLONG;
	rq_init(&q, u, "PUT", dst);
	snprintf(q.copy_source, sizeof(q.copy_source), "/%s/%s", u->bucket, enc);
	rq_header(&q, "x-amz-copy-source", q.copy_source);
	if (meta) {
		rq_header(&q, "x-amz-metadata-directive", "REPLACE");
		rq_meta(&q, meta->mode, meta->uid, meta->gid, meta->mtime_ns);
	}
	rc = rq_do(&q, UFS_REQ_COPY, "", 0, 64 << 10, &r, true, err, errlen);
	if (!rc && s3_xml_text(r.body, r.len, "CopyObjectResult/ETag", etag, UFS_ETAG_MAX))
		etag[0] = '\0';
	free(r.body);
	return rc;
}

/*
 * Under u->wlock: writers of `from` (or, with prefix, of keys below it)
 * write `to` (+ the rest of their key) from now on; etag: what the bucket
 * holds there now, if known.
 */
static void rekey(struct ufs *u, const char *from, const char *to, bool prefix, const char *etag)
{
	size_t flen = strlen(from);

	for (struct s3_wfile *wf = u->writers; wf; wf = wf->next) {
		char *k;
		if (wf->gone || (prefix ? strncmp(wf->key, from, flen) : strcmp(wf->key, from)))
			continue;
		if (asprintf(&k, "%s%s", to, wf->key + flen) < 0)
			continue;   /* out of memory: it uploads under the old name */
		free(wf->key);
		wf->key = k;
		if (etag)
			snprintf(wf->base_etag, sizeof(wf->base_etag), "%s", etag);
		record_write(wf);
	}
}

/*
 * A key moves: its copy, then the original's delete; its writers follow.
 * etag: the copy's, or "" when the server did not say or the key is being
 * written (its writers' commit makes the version the file shows).
 */
static int move_key(struct ufs *u, const char *src, const char *dst, uint64_t size, char *etag, char *err,
		    size_t errlen)
{
	bool writing = false;
	int rc;

	etag[0] = '\0';
	rc = copy_key(u, src, dst, size, NULL, etag, err, errlen);
	pthread_mutex_lock(&u->wlock);
	for (struct s3_wfile *wf = u->writers; wf && !writing; wf = wf->next)
		writing = writes(wf, src);
	if (!rc || (rc == -ENOENT && writing))
		rekey(u, src, dst, false, etag[0] ? etag : NULL);
	pthread_mutex_unlock(&u->wlock);
	if (writing)
		etag[0] = '\0';
	/* Not in the bucket yet: its writers upload it under the new name. */
	if (rc == -ENOENT && writing)
		return 0;
	return rc ? rc : delete_key(u, src, err, errlen);
}

static void rename_dir(struct job *j)
{
	struct s3_page pg = { 0 };
	char *from = NULL, *to = NULL, token[4096] = "", etag[UFS_ETAG_MAX];
	size_t flen;

	if (asprintf(&from, "%s/", j->key) < 0 || asprintf(&to, "%s/", j->key2) < 0) {
		j->rc = -ENOMEM;
		goto out;
	}
	flen = strlen(from);
	/* Page by page: each key copied, then deleted. Not atomic: a failure leaves both halves. */
	do {
		if ((j->rc = list_keys(j->u, from, 1000, token, &pg, j->err, sizeof(j->err))))
			goto out;
		for (size_t i = 0; i < pg.nobjs && !j->rc; i++) {
			char *dst = NULL;
			if (asprintf(&dst, "%s%s", to, pg.objs[i].key + flen) < 0)
				j->rc = -ENOMEM;
			else
				j->rc = move_key(j->u, pg.objs[i].key, dst, pg.objs[i].size, etag, j->err,
						 sizeof(j->err));
			free(dst);
		}
		snprintf(token, sizeof(token), "%s", pg.truncated && pg.token ? pg.token : "");
		s3_page_free(&pg);
	} while (!j->rc && token[0]);
	if (!j->rc) {
		/* Files below it that are not in the bucket yet: their uploads go to the new name. */
		pthread_mutex_lock(&j->u->wlock);
		rekey(j->u, from, to, true, NULL);
		pthread_mutex_unlock(&j->u->wlock);
	}
out:
	s3_page_free(&pg);
	free(from);
	free(to);
}

static void rename_run(struct job *j)
{
	struct ufs_call *c = j->c;
	struct ufs_stat st;

	if (c->rflags & RENAME_NOREPLACE) {
		int rc = head(j->u, j->key2, &st, NULL, j->err, sizeof(j->err));
		if (rc != -ENOENT) {
			j->rc = rc ? rc : -EEXIST;
			return;
		}
	}
	if (S_ISDIR(c->st.mode)) {
		rename_dir(j);
		return;
	}
	j->rc = move_key(j->u, j->key, j->key2, c->st.size, j->etag, j->err, sizeof(j->err));
	/* The copy is another version (a multipart object's ETag changes): the engine learns it. */
	if (!j->rc && j->etag[0] && c->st.mode) {
		written_stat(j->u, &j->st, j->key2, c->st.size, c->st.mode, c->st.uid, c->st.gid, c->st.mtime_ns,
			     j->etag);
		j->fetched = true;
	}
}

void s3_rename(struct ufs_call *c)
{
	submit(c, NULL, rename_run);
}

/* A new size for object key (attributes in *st): the bytes, staged, cut or grown, and put back. */
static void resize(struct job *j, const struct ufs_stat *st, const char *etag)
{
	struct ufs *u = j->u;
	uint64_t keep = MIN(st->size, j->c->st.size);
	char *data;
	int fd;

	if ((j->rc = stage_new(u, &fd, &data, NULL)))
		return;
	if ((j->rc = stage_reserve(u, j->c->st.size))) {
		snprintf(j->err, sizeof(j->err), "truncating %s%s: over staging_max", u->root, j->key);
		goto out;
	}
	j->rc = download(u, j->key, etag, keep, st->size, fd, j->err, sizeof(j->err));
	if (!j->rc && ftruncate(fd, (off_t)j->c->st.size) < 0) {
		j->rc = -errno;
		snprintf(j->err, sizeof(j->err), "truncating a staged copy of %s%s: %s", u->root, j->key,
			 strerror(errno));
	}
	if (!j->rc) {
		struct put p = { .u = u, .fd = fd, .key = j->key, .mode = st->mode, .uid = st->uid, .gid = st->gid,
				 .mtime_ns = st->mtime_ns };
		if (!(j->rc = upload(&p, j->err, sizeof(j->err)))) {
			written_stat(u, &j->st, j->key, p.size, p.mode, p.uid, p.gid, p.mtime_ns, p.etag);
			snprintf(j->etag, sizeof(j->etag), "%s", p.etag);
		}
	}
	atomic_fetch_sub(&u->staged, j->c->st.size);
out:
	close(fd);
	unlink(data);
	free(data);
}

static void s3_setattr_object(struct job *j, struct ufs_stat *st_in, char *etag);

/*
 * setattr by name. c->st is the node with the new values (the engine
 * merged them). Files open for writing here change their staged copies
 * too, so that a later upload carries the change; one with changes the
 * bucket lacks uploads it at its close (the engine marks it changed).
 * Otherwise the object changes now: metadata by a copy onto itself, a
 * size by a staged round trip.
 */
static void setattr_run(struct job *j)
{
	struct ufs_call *c = j->c;
	struct ufs *u = j->u;
	struct ufs_stat st = c->st;
	char etag[UFS_ETAG_MAX] = "";
	bool pending = false, now = false;

	j->rc = 0;
	if (!*c->path) {
		j->rc = -EPERM;   /* the bucket's root has no object to hold attributes */
		return;
	}
	if (c->set & UFS_SET_MTIME_NOW)
		st.mtime_ns = realtime_ns();
	if (S_ISDIR(st.mode)) {
		/* A directory's attributes live on its marker. */
		j->rc = put_marker(u, j->key, st.mode, st.uid, st.gid, st.mtime_ns, j->err, sizeof(j->err));
		/* What a stat of it answers from now on (not the caller's attributes passed back). */
		obj_dir_stat(&u->src, &j->st, st.mtime_ns);
		j->st.mode = S_IFDIR | (st.mode & 07777);
		j->st.uid = st.uid;
		j->st.gid = st.gid;
		return;
	}
	pthread_mutex_lock(&u->wlock);
	for (struct s3_wfile *wf = u->writers; wf && !j->rc; wf = wf->next) {
		if (!writes(wf, j->key))
			continue;
		bool behind = atomic_load(&wf->gen) != wf->uploaded;
		setattr_staged(j, wf);
		/* In step with the bucket, which changes below: no upload for this alone. */
		if (!behind)
			wf->uploaded = atomic_load(&wf->gen);
		pending |= behind;
		now |= !behind;
	}
	pthread_mutex_unlock(&u->wlock);
	if (j->rc || (pending && !now))
		return;
	s3_setattr_object(j, &st, etag);
	if (j->rc && now) {
		/* The bucket did not change: those writers' next closes upload it. */
		pthread_mutex_lock(&u->wlock);
		for (struct s3_wfile *wf = u->writers; wf; wf = wf->next)
			if (writes(wf, j->key) && atomic_load(&wf->gen) == wf->uploaded)
				wf->uploaded--;
		pthread_mutex_unlock(&u->wlock);
	}
}

/* The object itself, not open here for writing: j->st and j->etag get what it is now. */
static void s3_setattr_object(struct job *j, struct ufs_stat *st_in, char *etag)
{
	struct ufs_call *c = j->c;
	struct ufs *u = j->u;
	struct ufs_stat st = *st_in;

	if (c->set & UFS_SET_SIZE) {
		if (!(j->rc = head(u, j->key, &st, etag, j->err, sizeof(j->err)))) {
			st.mode = c->st.mode;
			st.uid = c->st.uid;
			st.gid = c->st.gid;
			st.mtime_ns = c->set & UFS_SET_MTIME ? c->st.mtime_ns : realtime_ns();
			resize(j, &st, etag);
		}
		return;
	}
	if ((j->rc = copy_key(u, j->key, j->key, st.size, &st, etag, j->err, sizeof(j->err))))
		return;
	written_stat(u, &j->st, j->key, st.size, st.mode, st.uid, st.gid, st.mtime_ns, etag);
	snprintf(j->etag, sizeof(j->etag), "%s", etag);
}

void s3_setattr(struct ufs_call *c)
{
	if (c->file) {
		wfile_setattr(c);
		return;
	}
	submit(c, NULL, setattr_run);
}

/* ---- life: the staging folder, and what earlier daemons left there ---- */

/*
 * One staged file a stopped daemon left with its record: uploaded now, or
 * moved to recovery/. false: it stays where it is for the next mount (the
 * bucket could not say, or keeping it failed; both logged).
 */
static bool finish_left(struct ufs *u, const char *data, const char *record)
{
	json_error_t je;
	json_t *j = json_load_file(record, 0, &je);
	const char *key = NULL, *base = NULL, *bucket = NULL, *kept = NULL, *upload_id = NULL;
	json_int_t version = 0, mode = 0644, uid = 0, gid = 0, mtime = 0;
	struct ufs_stat st;
	char etag[UFS_ETAG_MAX] = "", err[1024], *moved = NULL;
	struct put p = { .u = u, .fd = -1 };
	bool done = false;
	int rc;

	if (!j || json_unpack(j, "{s:I, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s?s, s?s}", "version", &version,
			      "bucket", &bucket, "key", &key, "etag", &base, "mode", &mode, "uid", &uid, "gid", &gid,
			      "mtime_ns", &mtime, "kept", &kept, "upload", &upload_id) ||
	    version != RECORD_VERSION || strcmp(bucket, u->bucket)) {
		moved = keep_for_recovery(u, data, "unnamed", "a staged write whose record does not say where it goes",
					  true);
		goto out;
	}
	rc = head(u, key, &st, etag, err, sizeof(err));
	if (rc && rc != -ENOENT) {
		log_warn("%s%s: a write staged before the daemon stopped is not uploaded yet (%s); "
			 "the next mount tries again", u->root, key, err);
		goto out;
	}
	/* The parts a stream had sent: the staged file holds them all, and goes whole. */
	if (upload_id && !abort_upload(u, key, upload_id))
		log_info("%s%s: aborted the multipart upload a stopped daemon had begun", u->root, key);
	/* Uploaded again when the bucket still holds what it was staged over: idempotent. */
	if (rc == -ENOENT ? base[0] != '\0' : !http_etag_eq(etag, base)) {
		moved = keep_for_recovery(u, data, key, "changed in the bucket since a write staged before the "
					  "daemon stopped", true);
		goto out;
	}
	if ((p.fd = open(data, O_RDONLY | O_CLOEXEC)) < 0) {
		log_err("%s%s: a write staged before the daemon stopped: %s: %s", u->root, key, data, strerror(errno));
		goto out;
	}
	p.key = key;
	p.mode = (mode_t)mode;
	p.uid = (uid_t)uid;
	p.gid = (gid_t)gid;
	p.mtime_ns = (uint64_t)mtime;
	rc = upload(&p, err, sizeof(err));
	close(p.fd);
	if (rc == -ECANCELED)
		goto out;   /* this daemon stops: the next mount tries again */
	if (rc) {
		moved = keep_for_recovery(u, data, key, err, true);
		goto out;
	}
	log_info("%s%s: finished the upload of %llu bytes a stopped daemon had staged", u->root, key,
		 (unsigned long long)p.size);
	if (kept && unlink(kept) == 0)
		log_info("%s%s: removed %s, kept when an upload failed", u->root, key, kept);
	unlink(data);
	done = true;
out:
	done |= moved != NULL;
	if (done)
		unlink(record);
	free(moved);
	json_decref(j);
	return done;
}

/*
 * A stopped daemon's staging folder (nobody holds its lock): every data
 * file with a record is finished, the rest was uploaded. The folder goes
 * when nothing in it is left for a later mount.
 */
static void finish_folder(struct ufs *u, const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	bool left = false;

	if (!d)
		return;
	while ((de = readdir(d))) {
		size_t l = strlen(de->d_name);
		char *data = NULL, *record = NULL;
		if (l < 6 || strcmp(de->d_name + l - 5, ".data"))
			continue;
		if (asprintf(&data, "%s/%s", dir, de->d_name) < 0 ||
		    asprintf(&record, "%s/%.*s.json", dir, (int)(l - 5), de->d_name) < 0) {
			free(data);
			left = true;
			break;
		}
		if (access(record, F_OK) == 0)
			left |= !finish_left(u, data, record);
		else
			unlink(data);
		free(data);
		free(record);
	}
	closedir(d);
	if (left)
		return;
	/* What is left: the lock, and records or temporary files of nothing. */
	if ((d = opendir(dir))) {
		while ((de = readdir(d)))
			if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
				unlinkat(dirfd(d), de->d_name, 0);
		closedir(d);
	}
	rmdir(dir);
}

/* Folders of stopped daemons: those whose lock can be taken. */
static void finish_all_left(struct ufs *u)
{
	DIR *d = opendir(u->stage_dir);
	struct dirent *de;

	if (!d)
		return;
	while ((de = readdir(d))) {
		char *dir = NULL, *lock = NULL;
		int fd;
		if (strncmp(de->d_name, "d-", 2) ||
		    asprintf(&dir, "%s/%s", u->stage_dir, de->d_name) < 0)
			continue;
		if (strcmp(dir, u->own_dir) && asprintf(&lock, "%s/lock", dir) >= 0) {
			fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
			if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0)
				finish_folder(u, dir);
			if (fd >= 0)
				close(fd);
		}
		free(lock);
		free(dir);
	}
	closedir(d);
}

/* After the mount: a large upload a killed daemon left must not hold the mount back. */
static void *finish_thread(void *arg)
{
	struct ufs *u = arg;

	finish_all_left(u);
	upload_thread_gone(u);
	return NULL;
}

int s3_write_init(struct ufs *u, const struct source_opts *o, char *err, size_t errlen)
{
	char id[1024], *lock = NULL;
	int rc;

	u->lock_fd = -1;
	u->part_size = o->write_part_size;
	u->copy_max = o->copy_max;
	u->staging_max = o->staging_max;
	u->buf_max = (unsigned)MAX(o->write_buffer / o->write_part_size, 1);
	if (o->read_only)
		return 0;
	/*
	 * One folder per bucket and prefix, so that the next mount of it finds
	 * what this one left; in it, one folder per daemon, held by a lock for
	 * its life, so that a daemon finishes only what stopped daemons left.
	 */
	snprintf(id, sizeof(id), "%s\n%s\n%s", u->endpoint, u->bucket, u->prefix);
	if (asprintf(&u->stage_dir, "%s/%016llx", o->staging_dir,
		     (unsigned long long)XXH3_64bits(id, strlen(id))) < 0 ||
	    asprintf(&u->recovery_dir, "%s/recovery", u->stage_dir) < 0 ||
	    asprintf(&u->own_dir, "%s/d-%ld-%llx", u->stage_dir, (long)getpid(),
		     (unsigned long long)realtime_ns()) < 0 ||
	    asprintf(&lock, "%s/lock", u->own_dir) < 0)
		return -ENOMEM;
	if ((rc = mkdir_p(u->recovery_dir, 0700)) || (rc = mkdir_p(u->own_dir, 0700))) {
		snprintf(err, errlen, "cannot create the staging folder %s: %s; give a writable one with "
			 "-o staging_dir=, or mount with -o ro", u->stage_dir, strerror(-rc));
		free(lock);
		return rc == -ENOMEM ? rc : -EINVAL;
	}
	u->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (u->lock_fd < 0 || flock(u->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		snprintf(err, errlen, "cannot lock the staging folder %s: %s", u->own_dir, strerror(errno));
		free(lock);
		return -EINVAL;
	}
	free(lock);
	return 0;
}

void s3_write_start(struct ufs *u)
{
	if (u->own_dir && !upload_thread_start(u, finish_thread, u))
		log_warn("%s: no thread to finish what stopped daemons left in %s; the next mount tries",
			 u->root, u->stage_dir);
}

/* The entries of dir but "." and "..", or -1. */
static int entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	if (!d)
		return -1;
	while ((de = readdir(d)))
		n += strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
	closedir(d);
	return n;
}

void s3_write_fini(struct ufs *u)
{
	char *lock = NULL;

	/* Files still open: their streams stop (the next mount finishes them from the staged files). */
	pthread_mutex_lock(&u->buf_lock);
	u->streams_stop = true;
	pthread_cond_broadcast(&u->buf_free);
	pthread_mutex_unlock(&u->buf_lock);
	pthread_mutex_lock(&u->wlock);
	for (struct s3_wfile *wf = u->writers; wf; wf = wf->next) {
		struct mp *m = atomic_load(&wf->stream);
		if (m) {
			pthread_mutex_lock(&m->lock);
			m->stop = true;
			pthread_cond_broadcast(&m->cond);
			pthread_mutex_unlock(&m->lock);
		}
	}
	pthread_mutex_unlock(&u->wlock);
	pthread_mutex_lock(&u->buf_lock);
	while (atomic_load(&u->upload_threads))
		pthread_cond_wait(&u->buf_free, &u->buf_lock);
	pthread_mutex_unlock(&u->buf_lock);

	/* Nothing left to finish (the lock alone): the folder goes; else the next mount takes it. */
	if (u->own_dir && entries(u->own_dir) == 1 && asprintf(&lock, "%s/lock", u->own_dir) >= 0) {
		unlink(lock);
		rmdir(u->own_dir);
		free(lock);
	}
	if (u->lock_fd >= 0)
		close(u->lock_fd);
	free(u->stage_dir);
	free(u->recovery_dir);
	free(u->own_dir);
}
