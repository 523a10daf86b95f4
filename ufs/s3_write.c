/*
 * Writes to S3: every file open for writing is staged in a local file, and
 * uploaded when the writer closes or fsyncs it: one PUT up to
 * write_part_size, a multipart upload above it. The promise: a close() or
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
 * The parts of a multipart upload go UPLOAD_THREADS at a time, their
 * buffers drawn from the mount's write_buffer.
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

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

/* S3's limits: parts of an upload, and the longest key. */
#define MAX_PARTS 10000
#define MAX_KEY 1024
/* The largest object CopyObject copies in one request. */
#define MAX_COPY (5ULL << 30)

struct s3_wfile {
	struct ufs_file f;        /* f.name: s3://bucket/key when opened */
	struct ufs *u;
	int fd;                   /* the staged bytes */
	char *data, *record;      /* their paths: NNN.data, and NNN.json saying where they go */
	uint64_t size;            /* staged bytes (owner shard and jobs, one at a time) */
	/* under u->wlock: rename, unlink and setattr change them while it is open */
	char *key;
	bool gone;                /* unlinked while open: nothing to upload */
	bool recorded;            /* the record is on disk (the bytes are not uploaded) */
	bool kept;                /* an upload failed: recovery/ has a link to the staged file */
	char base_etag[UFS_ETAG_MAX];   /* the object when opened ("": new); a later one is not overwritten at recovery */
	mode_t mode;
	uid_t uid;
	gid_t gid;
	uint64_t mtime_ns;        /* set by utime; 0: the upload's time */
	struct s3_wfile *prev, *next;   /* u->writers */
};

static const struct ufs_ops s3_wfile_ops;

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
	if (q->nextra < S3_MAX_EXTRA)
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

/* 0 for a 2xx answer (and no <Error> in its body), else -errno with the reason in err. */
static int judge(struct rq *q, const struct http_resp *r, char *err, size_t errlen)
{
	char why[512];

	/* CopyObject and CompleteMultipartUpload can fail after their 200. */
	if (r->status / 100 == 2 && !(r->body && strstr(r->body, "<Error>")))
		return 0;
	s3_error_text(r, why, sizeof(why));
	snprintf(err, errlen, "%s %s%s: %s", q->method, q->u->root, q->key, why);
	return r->status / 100 == 2 ? -EIO : s3_errno(r->status);
}

/* One request judged: 0 or -errno with a reason. */
static int rq_do(struct rq *q, unsigned kind, const void *body, size_t len, size_t body_max,
		 struct http_resp *resp, char *err, size_t errlen)
{
	int rc = rq_run(q, kind, body, len, body_max, resp, err, errlen);

	if (!rc && (rc = judge(q, resp, err, errlen))) {
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
	rc = rq_do(&q, UFS_REQ_PUT, buf, p->size, 0, &r, err, errlen);
	if (!rc)
		snprintf(p->etag, sizeof(p->etag), "%s", r.etag);
	free(r.body);
	return rc;
}

/* A part buffer of the mount's write_buffer, waiting while all are in use; NULL: out of memory. */
static char *buf_take(struct ufs *u)
{
	char *b;

	pthread_mutex_lock(&u->buf_lock);
	while (u->buf_used >= u->buf_max)
		pthread_cond_wait(&u->buf_free, &u->buf_lock);
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

/* Threads of one multipart upload; one of them is the caller. */
#define UPLOAD_THREADS 8

/* A multipart upload's parts, sent by several threads at once. */
struct mp {
	struct put *p;
	const char *id;
	uint64_t nparts;
	atomic_ulong next;        /* the next part to send */
	char (*etags)[UFS_ETAG_MAX];
	pthread_mutex_t lock;     /* rc, err */
	int rc;
	char err[1024];
};

static void mp_fail(struct mp *m, int rc, const char *err)
{
	pthread_mutex_lock(&m->lock);
	if (!m->rc) {
		m->rc = rc;
		snprintf(m->err, sizeof(m->err), "%s", err);
	}
	pthread_mutex_unlock(&m->lock);
}

static bool mp_failed(struct mp *m)
{
	bool f;

	pthread_mutex_lock(&m->lock);
	f = m->rc != 0;
	pthread_mutex_unlock(&m->lock);
	return f;
}

static void *mp_worker(void *arg)
{
	struct mp *m = arg;
	struct put *p = m->p;
	struct ufs *u = p->u;
	char err[1024], num[24];
	uint64_t i;

	while ((i = atomic_fetch_add(&m->next, 1)) < m->nparts && !mp_failed(m)) {
		uint64_t off = i * u->part_size, len = MIN(u->part_size, p->size - off);
		struct http_resp r = { 0 };
		char *buf = buf_take(u);
		struct rq q;
		int rc;

		if (!buf) {
			mp_fail(m, -ENOMEM, "out of memory for a part");
			break;
		}
		if ((rc = pread_all(p->fd, buf, len, off))) {
			snprintf(err, sizeof(err), "reading the staged bytes of %s%s: %s", u->root, p->key, strerror(-rc));
			buf_give(u, buf);
			mp_fail(m, rc, err);
			break;
		}
		/* A failed part is retried by the HTTP client on its own: the upload goes on. */
		rq_init(&q, u, "PUT", p->key);
		snprintf(num, sizeof(num), "%llu", (unsigned long long)i + 1);
		q.q[q.nq++] = (struct sigv4_param){ "partNumber", num };
		q.q[q.nq++] = (struct sigv4_param){ "uploadId", m->id };
		rc = rq_do(&q, UFS_REQ_PUT, buf, len, 0, &r, err, sizeof(err));
		buf_give(u, buf);
		free(r.body);
		if (rc) {
			mp_fail(m, rc, err);
			break;
		}
		snprintf(m->etags[i], sizeof(m->etags[i]), "%s", r.etag);
	}
	return NULL;
}

/* The parts of m, UPLOAD_THREADS at a time (fewer when threads cannot be had). */
static void mp_send(struct mp *m)
{
	pthread_t t[UPLOAD_THREADS - 1];
	unsigned n = 0;

	while (n < MIN(UPLOAD_THREADS - 1, m->nparts - 1) && !pthread_create(&t[n], NULL, mp_worker, m))
		n++;
	mp_worker(m);
	for (unsigned i = 0; i < n; i++)
		pthread_join(t[i], NULL);
}

static int put_multipart(struct put *p, char *err, size_t errlen)
{
	uint64_t psz = p->u->part_size, nparts = (p->size + psz - 1) / psz;
	struct mp m = { .p = p, .nparts = nparts };
	char id[1024], *xml = NULL, *x;
	struct http_resp r = { 0 };
	struct rq q;
	int rc;

	if (!(m.etags = calloc(nparts, sizeof(*m.etags))))
		return -ENOMEM;
	pthread_mutex_init(&m.lock, NULL);
	rq_init(&q, p->u, "POST", p->key);
	q.q[q.nq++] = (struct sigv4_param){ "uploads", NULL };
	rq_meta(&q, S_IFREG | (p->mode & 07777), p->uid, p->gid, p->mtime_ns);
	if ((rc = rq_do(&q, UFS_REQ_PUT, "", 0, 64 << 10, &r, err, errlen)))
		goto out;
	rc = s3_xml_text(r.body, r.len, "InitiateMultipartUploadResult/UploadId", id, sizeof(id));
	free(r.body);
	r.body = NULL;
	if (rc || !id[0]) {
		snprintf(err, errlen, "POST %s%s?uploads: no UploadId in the answer", p->u->root, p->key);
		rc = -EIO;
		goto out;
	}
	m.id = id;
	uint64_t t0 = now_ns();
	mp_send(&m);
	log_debug("%s%s: %llu parts sent in %.3f s", p->u->root, p->key, (unsigned long long)nparts,
		  (double)(now_ns() - t0) / 1e9);
	if ((rc = m.rc)) {
		snprintf(err, errlen, "%s", m.err);
		goto abort;
	}
	if (!(xml = malloc(nparts * (UFS_ETAG_MAX + 64) + 128))) {
		rc = -ENOMEM;
		goto abort;
	}
	x = xml + sprintf(xml, "<CompleteMultipartUpload>");
	for (uint64_t i = 0; i < nparts; i++)
		x += sprintf(x, "<Part><PartNumber>%llu</PartNumber><ETag>%s</ETag></Part>",
			     (unsigned long long)i + 1, m.etags[i]);
	x += sprintf(x, "</CompleteMultipartUpload>");
	rq_init(&q, p->u, "POST", p->key);
	q.q[q.nq++] = (struct sigv4_param){ "uploadId", id };
	if ((rc = rq_do(&q, UFS_REQ_PUT, xml, (size_t)(x - xml), 64 << 10, &r, err, errlen)))
		goto abort;
	if (s3_xml_text(r.body, r.len, "CompleteMultipartUploadResult/ETag", p->etag, sizeof(p->etag)))
		snprintf(p->etag, sizeof(p->etag), "%s", r.etag);
	free(r.body);
	goto out;
abort:
	/* Best effort: a store keeps the parts of an upload nobody completes until it is aborted. */
	rq_init(&q, p->u, "DELETE", p->key);
	q.q[q.nq++] = (struct sigv4_param){ "uploadId", id };
	{
		char ignored[256];
		r = (struct http_resp){ 0 };
		if (!rq_run(&q, UFS_REQ_DELETE, NULL, 0, 0, &r, ignored, sizeof(ignored)))
			free(r.body);
	}
out:
	pthread_mutex_destroy(&m.lock);
	free(xml);
	free(m.etags);
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
		rc = -ENOMEM;
	} else {
		rc = p->size ? pread_all(p->fd, buf, p->size, 0) : 0;
		if (rc)
			snprintf(err, errlen, "reading the staged bytes of %s%s: %s", p->u->root, p->key, strerror(-rc));
		else
			rc = put_single(p, buf, err, errlen);
		buf_give(p->u, buf);
	}
	atomic_fetch_add_explicit(rc ? &p->u->upload_failures : &p->u->uploads, 1, memory_order_relaxed);
	return rc;
}

/* ---- staging files and their records ---- */

/* A new NNN.data, open for reading and writing, and the NNN.json beside it (not written yet). */
static int stage_new(struct ufs *u, int *fd, char **data, char **record)
{
	static atomic_ulong seq;
	unsigned long n = atomic_fetch_add(&seq, 1);

	*data = *record = NULL;
	if (asprintf(data, "%s/%ld-%lu.data", u->stage_dir, (long)getpid(), n) < 0 ||
	    asprintf(record, "%s/%ld-%lu.json", u->stage_dir, (long)getpid(), n) < 0) {
		free(*data);
		*data = *record = NULL;
		return -ENOMEM;
	}
	*fd = open(*data, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (*fd < 0) {
		int rc = -errno;
		log_err("staging a write in %s: %s", u->stage_dir, strerror(-rc));
		free(*data);
		free(*record);
		*data = *record = NULL;
		return rc;
	}
	return 0;
}

/*
 * Under u->wlock: writes wf's record (where its bytes go), replacing it
 * whole by rename so that a crash leaves the old one or the new one.
 */
static int record_write(struct s3_wfile *wf)
{
	json_t *j = json_pack("{s:i, s:s, s:s, s:s, s:I, s:I, s:I, s:I}", "version", 1, "bucket", wf->u->bucket,
			      "key", wf->key, "etag", wf->base_etag, "mode", (json_int_t)wf->mode,
			      "uid", (json_int_t)wf->uid, "gid", (json_int_t)wf->gid,
			      "mtime_ns", (json_int_t)wf->mtime_ns);
	char *tmp = NULL;
	int rc = 0;

	if (!j || asprintf(&tmp, "%s.tmp", wf->record) < 0)
		rc = -ENOMEM;
	else if (json_dump_file(j, tmp, JSON_COMPACT) < 0 || rename(tmp, wf->record) < 0)
		rc = -errno ? -errno : -EIO;
	json_decref(j);
	free(tmp);
	if (rc)
		log_err("recording the staged write of %s%s in %s: %s", wf->u->root, wf->key, wf->record,
			strerror(-rc));
	else
		wf->recorded = true;
	return rc;
}

/*
 * Keeps the staged bytes at `data` in recovery/ under a name that says what
 * they are (the key, '/' as %2F, cut to what a file name holds, then a
 * time stamp), and logs where: one line per failed or stale upload.
 */
static void keep_for_recovery(struct ufs *u, const char *data, const char *key, const char *why)
{
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
	if (asprintf(&name, "%s/%s.%s-%08lx", u->recovery_dir, esc, stamp, (unsigned long)random()) < 0) {
		log_err("%s%s: %s; its bytes stay in %s", u->root, key, why, data);
		return;
	}
	if (link(data, name) < 0)
		log_err("%s%s: %s; its bytes stay in %s (keeping them in %s failed: %s)", u->root, key, why, data,
			u->recovery_dir, strerror(errno));
	else
		log_err("%s%s: %s; its bytes are kept in %s", u->root, key, why, name);
	free(name);
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
		if (j->file) {
			c->file = j->file;
			c->fetched = true;
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

static uint64_t now_real_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
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

/* HEAD of key: 0 with its attributes (metadata applied) and ETag, -ENOENT, or -errno. */
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
	if ((rc = judge(&q, &r, err, errlen)))
		return rc;
	obj_file_stat(&u->src, st, key, r.length,
		      (uint64_t)MAX(curl_getdate(r.last_modified, NULL), 0) * 1000000000ULL,
		      r.etag[0] ? r.etag : r.last_modified);
	obj_apply_meta(st, &r);
	if (etag)
		snprintf(etag, UFS_ETAG_MAX, "%s", r.etag);
	return 0;
}

/* ---- files open for writing ---- */

/* Under u->wlock: the writer of key, or NULL. */
static struct s3_wfile *writer_of(struct ufs *u, const char *key)
{
	for (struct s3_wfile *wf = u->writers; wf; wf = wf->next)
		if (!wf->gone && !strcmp(wf->key, key))
			return wf;
	return NULL;
}

static struct s3_wfile *wfile_of(struct ufs_file *f)
{
	return container_of(f, struct s3_wfile, f);
}

/*
 * Copies the first `size` bytes of object key (of objsize bytes) into fd,
 * a staged copy to change in place: 0 or -errno with a reason.
 */
static int download(struct ufs *u, const char *key, uint64_t size, uint64_t objsize, int fd, char *err,
		    size_t errlen)
{
	uint64_t chunk = u->part_size;

	for (uint64_t off = 0; off < size; off += chunk) {
		uint64_t len = MIN(chunk, size - off), ask = len;
		struct http_resp r = { 0 };
		struct rq q;
		int rc;

		rq_init(&q, u, "GET", key);
		/* Some servers (s3rver) answer "bytes=N-N" with the whole object: ask for two bytes, or the tail. */
		if (len == 1 && off + 2 <= objsize)
			ask = 2;
		if (len == 1 && ask == 1)
			snprintf(q.range, sizeof(q.range), "bytes=%llu-", (unsigned long long)off);
		else
			snprintf(q.range, sizeof(q.range), "bytes=%llu-%llu", (unsigned long long)off,
				 (unsigned long long)(off + ask - 1));
		if ((rc = rq_do(&q, UFS_REQ_GET, NULL, 0, ask + 1, &r, err, errlen)))
			return rc;
		if (r.len == ask)
			r.len = len;
		if (r.len != len) {
			snprintf(err, errlen, "GET %s%s: %zu bytes at %llu, expected %llu", u->root, key, r.len,
				 (unsigned long long)off, (unsigned long long)len);
			free(r.body);
			return -EIO;
		}
		if (pwrite(fd, r.body, len, (off_t)off) != (ssize_t)len) {
			rc = errno ? -errno : -EIO;
			snprintf(err, errlen, "staging %s%s: %s", u->root, key, strerror(-rc));
			free(r.body);
			return rc;
		}
		free(r.body);
	}
	return 0;
}

/* A staged file for j->key: empty (create, O_TRUNC) or a copy of the object as opened. */
static void open_run(struct job *j)
{
	struct ufs_call *c = j->c;
	struct ufs *u = j->u;
	bool create = c->mode != 0;
	struct s3_wfile *wf = calloc(1, sizeof(*wf));
	int rc;

	if (!wf || !(wf->key = strdup(j->key)) || asprintf(&wf->f.name, "%s%s", u->root, j->key) < 0) {
		rc = -ENOMEM;
		goto fail;
	}
	if ((rc = stage_new(u, &wf->fd, &wf->data, &wf->record))) {
		snprintf(j->err, sizeof(j->err), "staging %s%s in %s: %s", u->root, j->key, u->stage_dir, strerror(-rc));
		goto fail;
	}
	wf->u = u;
	wf->f.ops = &s3_wfile_ops;
	wf->f.readable = true;   /* the staged copy, whatever the writer's access mode */
	atomic_init(&wf->f.refs, 1);
	if (create) {
		wf->mode = c->mode & 07777;
		wf->uid = c->uid;
		wf->gid = c->gid;
	} else {
		wf->mode = c->st.mode & 07777;
		wf->uid = c->st.uid;
		wf->gid = c->st.gid;
		snprintf(wf->base_etag, sizeof(wf->base_etag), "%s", c->etag);
		if (!(c->oflags & O_TRUNC) && c->st.size &&
		    (rc = download(u, j->key, c->st.size, c->st.size, wf->fd, j->err, sizeof(j->err))))
			goto fail;
		wf->size = (c->oflags & O_TRUNC) ? 0 : c->st.size;
	}
	atomic_fetch_add(&u->staged, wf->size);
	pthread_mutex_lock(&u->wlock);
	/* Created or truncated: what the bucket holds is already not what the file does. */
	if (create || (c->oflags & O_TRUNC))
		record_write(wf);
	wf->next = u->writers;
	if (wf->next)
		wf->next->prev = wf;
	u->writers = wf;
	pthread_mutex_unlock(&u->wlock);
	written_stat(u, &j->st, j->key, wf->size, wf->mode, wf->uid, wf->gid, now_real_ns(), "");
	/* Pages of what it will hold are keyed apart from any other version. */
	j->st.id = mix64(j->st.id ^ (uint64_t)(uintptr_t)wf);
	j->file = &wf->f;
	j->rc = 0;
	return;
fail:
	if (wf) {
		if (wf->data) {
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
	c->mode = S_IFREG | (c->mode & 07777);   /* non-zero: a create */
	submit(c, NULL, open_run);
}

void s3_open_write(struct ufs_call *c)
{
	c->fetched = false;
	c->file = NULL;
	c->mode = 0;
	if (S_ISDIR(c->st.mode)) {
		c->done(c, -EISDIR);
		return;
	}
	submit(c, NULL, open_run);
}

static int wfile_read(struct ufs_read *r)
{
	ufs_fd_read(r, wfile_of(r->file)->fd, false);
	return 0;
}

/* On the writer's shard: the bytes go to the staging file, within staging_max and S3's limits. */
static int wfile_write(struct ufs_write *w)
{
	struct s3_wfile *wf = wfile_of(w->file);
	struct ufs *u = wf->u;
	uint64_t end = w->off + w->len;

	if (end > u->part_size * MAX_PARTS)
		return -EFBIG;
	if (end > wf->size) {
		uint64_t grow = end - wf->size;
		if (u->staging_max && atomic_load(&u->staged) + grow > u->staging_max)
			return -ENOSPC;
		atomic_fetch_add(&u->staged, grow);
		wf->size = end;
	}
	if (!wf->recorded) {
		/* The first change since the last upload: from now on a crash must not lose it. */
		pthread_mutex_lock(&u->wlock);
		record_write(wf);
		pthread_mutex_unlock(&u->wlock);
	}
	ufs_fd_write(w, wf->fd);
	return 0;
}

/* close, fsync: the staged bytes to the bucket. */
static void commit_run(struct job *j)
{
	struct s3_wfile *wf = j->wf;
	struct ufs *u = wf->u;
	struct put p = { .u = u, .fd = wf->fd };
	char *key, etag[UFS_ETAG_MAX];
	bool gone, changed;

	pthread_mutex_lock(&u->wlock);
	key = strdup(wf->key);
	gone = wf->gone;
	changed = wf->recorded;   /* not since the last upload: an fsync and then the close put it once */
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
		/* Unlinked while open, nothing is to be in the bucket; or it is there already. */
		written_stat(u, &j->st, key, wf->size, p.mode, p.uid, p.gid, p.mtime_ns ? p.mtime_ns : now_real_ns(),
			     gone ? "" : etag);
		snprintf(j->etag, sizeof(j->etag), "%s", gone ? "" : etag);
		j->rc = 0;
		free(key);
		return;
	}
	uint64_t t0 = now_ns();
	j->rc = upload(&p, j->err, sizeof(j->err));
	log_debug("%s%s: %llu bytes uploaded in %.3f s", u->root, key, (unsigned long long)p.size,
		  (double)(now_ns() - t0) / 1e9);
	pthread_mutex_lock(&u->wlock);
	if (j->rc) {
		/* A hard link: the kept file is the staged one, and holds what later writes put there too. */
		if (!wf->kept)
			keep_for_recovery(u, wf->data, key, j->err);
		else
			log_err("%s%s: %s; its bytes are still in %s", u->root, key, j->err, u->recovery_dir);
		wf->kept = true;
	} else if (!strcmp(key, wf->key)) {
		/* Uploaded: nothing to finish after a crash until the next write. */
		unlink(wf->record);
		wf->recorded = false;
		snprintf(wf->base_etag, sizeof(wf->base_etag), "%s", p.etag);
	}
	pthread_mutex_unlock(&u->wlock);
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
 * Under u->wlock: setattr of a file open for writing changes the staged
 * copy and the metadata its upload will carry (the bucket may not have it
 * yet).
 */
static void setattr_staged(struct job *j, struct s3_wfile *wf)
{
	struct ufs_call *c = j->c;
	struct ufs *u = wf->u;

	if ((c->set & UFS_SET_SIZE) && ftruncate(wf->fd, (off_t)c->st.size) < 0) {
		j->rc = -errno;
		return;
	}
	if (c->set & UFS_SET_SIZE) {
		atomic_fetch_add(&u->staged, c->st.size - wf->size);   /* wraps back down when it shrinks */
		wf->size = c->st.size;
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
		wf->mtime_ns = now_real_ns();
	if (c->set)
		record_write(wf);
	written_stat(u, &j->st, wf->key, wf->size, wf->mode, wf->uid, wf->gid,
		     wf->mtime_ns ? wf->mtime_ns : now_real_ns(), "");
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

static void wfile_release(struct ufs_file *f)
{
	struct s3_wfile *wf = wfile_of(f);
	struct ufs *u = wf->u;

	pthread_mutex_lock(&u->wlock);
	if (wf->prev)
		wf->prev->next = wf->next;
	else
		u->writers = wf->next;
	if (wf->next)
		wf->next->prev = wf->prev;
	/* Still recorded: never uploaded (the daemon stops): the next mount finishes it. */
	if (!wf->recorded || wf->gone) {
		unlink(wf->data);
		unlink(wf->record);
	}
	pthread_mutex_unlock(&u->wlock);
	atomic_fetch_sub(&u->staged, wf->size);
	close(wf->fd);
	free(wf->data);
	free(wf->record);
	free(wf->key);
	free(wf->f.name);
	free(wf);
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
		rc = judge(&q, &r, err, errlen);
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
	rc = rq_do(&q, UFS_REQ_PUT, "", 0, 0, &r, err, errlen);
	free(r.body);
	free(marker);
	return rc;
}

static void mkdir_run(struct job *j)
{
	struct ufs_call *c = j->c;
	uint64_t now = now_real_ns();

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
	struct s3_wfile *wf;

	/* Open for writing: its close must not bring it back. */
	pthread_mutex_lock(&j->u->wlock);
	if ((wf = writer_of(j->u, j->key)))
		wf->gone = true;
	pthread_mutex_unlock(&j->u->wlock);
	j->rc = delete_key(j->u, j->key, j->err, sizeof(j->err));
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

/* CopyObject src -> dst, attributes kept (or replaced with those of meta). */
static int copy_key(struct ufs *u, const char *src, const char *dst, const struct ufs_stat *meta,
		    char *err, size_t errlen)
{
	struct http_resp r = { 0 };
	char enc[3 * MAX_KEY + 8];
	struct rq q;
	int rc;

	if (sigv4_uri_encode(enc, sizeof(enc), src, 1) < 0)
		return -ENAMETOOLONG;
	rq_init(&q, u, "PUT", dst);
	snprintf(q.copy_source, sizeof(q.copy_source), "/%s/%s", u->bucket, enc);
	rq_header(&q, "x-amz-copy-source", q.copy_source);
	if (meta) {
		rq_header(&q, "x-amz-metadata-directive", "REPLACE");
		rq_meta(&q, meta->mode, meta->uid, meta->gid, meta->mtime_ns);
	}
	rc = rq_do(&q, UFS_REQ_COPY, "", 0, 64 << 10, &r, err, errlen);
	free(r.body);
	return rc;
}

/* A key moves: its copy, then the original's delete; a writer of it follows. */
static int move_key(struct ufs *u, const char *src, const char *dst, uint64_t size, char *err, size_t errlen)
{
	struct s3_wfile *wf;
	bool writing;
	int rc;

	pthread_mutex_lock(&u->wlock);
	if ((wf = writer_of(u, src))) {
		char *k = strdup(dst);
		if (k) {
			free(wf->key);
			wf->key = k;
			if (wf->recorded)
				record_write(wf);
		}
	}
	writing = wf != NULL;
	pthread_mutex_unlock(&u->wlock);
	if (size > MAX_COPY) {
		snprintf(err, errlen, "rename of %s%s: over the %llu GiB a CopyObject takes", u->root, src,
			 (unsigned long long)(MAX_COPY >> 30));
		return -EFBIG;
	}
	rc = copy_key(u, src, dst, NULL, err, errlen);
	/* Not in the bucket yet: its writer uploads it under the new name. */
	if (rc == -ENOENT && writing)
		return 0;
	return rc ? rc : delete_key(u, src, err, errlen);
}

static void rename_dir(struct job *j)
{
	struct s3_page pg = { 0 };
	char *from = NULL, *to = NULL, token[4096] = "";
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
				j->rc = move_key(j->u, pg.objs[i].key, dst, pg.objs[i].size, j->err, sizeof(j->err));
			free(dst);
		}
		snprintf(token, sizeof(token), "%s", pg.truncated && pg.token ? pg.token : "");
		s3_page_free(&pg);
		memset(&pg, 0, sizeof(pg));
	} while (!j->rc && token[0]);
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
	j->rc = move_key(j->u, j->key, j->key2, c->st.size, j->err, sizeof(j->err));
}

void s3_rename(struct ufs_call *c)
{
	submit(c, NULL, rename_run);
}

/* A new size for object key (attributes st): the bytes, staged, cut or grown, and put back. */
static void resize(struct job *j, const struct ufs_stat *st, uint64_t size)
{
	struct ufs *u = j->u;
	char *data, *record;
	int fd;

	if ((j->rc = stage_new(u, &fd, &data, &record)))
		return;
	j->rc = download(u, j->key, MIN(st->size, size), st->size, fd, j->err, sizeof(j->err));
	if (!j->rc && ftruncate(fd, (off_t)size) < 0)
		j->rc = -errno;
	if (!j->rc) {
		struct put p = { .u = u, .fd = fd, .key = j->key, .mode = st->mode, .uid = st->uid, .gid = st->gid,
				 .mtime_ns = st->mtime_ns };
		if (!(j->rc = upload(&p, j->err, sizeof(j->err)))) {
			written_stat(u, &j->st, j->key, p.size, p.mode, p.uid, p.gid, p.mtime_ns, p.etag);
			snprintf(j->etag, sizeof(j->etag), "%s", p.etag);
		}
	}
	close(fd);
	unlink(data);
	free(data);
	free(record);
}

/* setattr by name: metadata by a copy onto itself, a size by a staged round trip. */
static void setattr_run(struct job *j)
{
	struct ufs_call *c = j->c;
	struct ufs *u = j->u;
	struct ufs_stat st;
	char etag[UFS_ETAG_MAX];
	unsigned meta = UFS_SET_MODE | UFS_SET_UID | UFS_SET_GID | UFS_SET_MTIME | UFS_SET_MTIME_NOW;

	if (!*c->path) {
		j->rc = -EPERM;   /* the bucket's root has no object to hold attributes */
		return;
	}
	if (S_ISDIR(c->st.mode)) {
		/* A directory's attributes live on its marker. */
		st = c->st;
		if (c->set & UFS_SET_MODE)
			st.mode = S_IFDIR | (c->st.mode & 07777);
		j->rc = put_marker(u, j->key, st.mode, st.uid, st.gid, now_real_ns(), j->err, sizeof(j->err));
		j->st = st;
		return;
	}
	/*
	 * Open for writing here, with bytes not uploaded yet (utime after a
	 * write, before the close): the upload at its close carries it.
	 */
	pthread_mutex_lock(&u->wlock);
	struct s3_wfile *wf = writer_of(u, j->key);
	if (wf && !wf->recorded)
		wf = NULL;
	if (wf) {
		j->wf = wf;
		setattr_staged(j, wf);
	}
	pthread_mutex_unlock(&u->wlock);
	if (wf)
		return;
	if ((j->rc = head(u, j->key, &st, etag, j->err, sizeof(j->err))))
		return;
	if (c->set & UFS_SET_MODE)
		st.mode = S_IFREG | (c->st.mode & 07777);
	if (c->set & UFS_SET_UID)
		st.uid = c->st.uid;
	if (c->set & UFS_SET_GID)
		st.gid = c->st.gid;
	if (c->set & UFS_SET_MTIME)
		st.mtime_ns = c->st.mtime_ns;
	if (c->set & (UFS_SET_MTIME_NOW | UFS_SET_SIZE))
		st.mtime_ns = c->set & UFS_SET_MTIME ? st.mtime_ns : now_real_ns();
	if (c->set & UFS_SET_SIZE) {
		resize(j, &st, c->st.size);
		return;
	}
	if (c->set & meta) {
		if (st.size > MAX_COPY) {
			snprintf(j->err, sizeof(j->err), "changing the attributes of %s%s: over what a CopyObject takes",
				 u->root, j->key);
			j->rc = -EFBIG;
			return;
		}
		if ((j->rc = copy_key(u, j->key, j->key, &st, j->err, sizeof(j->err))) ||
		    (j->rc = head(u, j->key, &st, etag, j->err, sizeof(j->err))))
			return;
	}
	j->st = st;
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

/* ---- life: the staging folder, and what an earlier daemon left there ---- */

static int mkdirs(const char *path)
{
	char *p = strdup(path);
	int rc = 0;

	if (!p)
		return -ENOMEM;
	for (char *s = p + 1; *s && !rc; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, 0700) < 0 && errno != EEXIST)
			rc = -errno;
		*s = '/';
	}
	if (!rc && mkdir(p, 0700) < 0 && errno != EEXIST)
		rc = -errno;
	free(p);
	return rc;
}

/* One staged file an earlier daemon left with its record: uploaded now, or kept in recovery/. */
static void finish_left(struct ufs *u, const char *data, const char *record)
{
	json_error_t je;
	json_t *j = json_load_file(record, 0, &je);
	const char *key = NULL, *base = NULL, *bucket = NULL;
	json_int_t mode = 0644, uid = 0, gid = 0, mtime = 0;
	struct ufs_stat st;
	char etag[UFS_ETAG_MAX] = "", err[1024];
	struct put p = { .u = u, .fd = -1 };
	int rc;

	if (!j || json_unpack(j, "{s:s, s:s, s:s, s:I, s:I, s:I, s:I}", "bucket", &bucket, "key", &key, "etag", &base,
			      "mode", &mode, "uid", &uid, "gid", &gid, "mtime_ns", &mtime) ||
	    strcmp(bucket, u->bucket)) {
		keep_for_recovery(u, data, "unnamed", "a staged write whose record does not say where it goes");
		goto out;
	}
	rc = head(u, key, &st, etag, err, sizeof(err));
	if (rc && rc != -ENOENT) {
		/* The bucket cannot say: try again at the next mount. */
		log_warn("%s%s: a write staged before the daemon stopped is not uploaded yet (%s); "
			 "the next mount tries again", u->root, key, err);
		json_decref(j);
		return;
	}
	if (rc == -ENOENT ? base[0] != '\0' : !http_etag_eq(etag, base)) {
		keep_for_recovery(u, data, key, "changed in the bucket since a write staged before the daemon stopped");
		goto out;
	}
	if ((p.fd = open(data, O_RDONLY | O_CLOEXEC)) < 0) {
		log_err("%s: %s", data, strerror(errno));
		goto out;
	}
	p.key = key;
	p.mode = (mode_t)mode;
	p.uid = (uid_t)uid;
	p.gid = (gid_t)gid;
	p.mtime_ns = (uint64_t)mtime;
	if ((rc = upload(&p, err, sizeof(err))))
		keep_for_recovery(u, data, key, err);
	else
		log_info("%s%s: finished the upload of %llu bytes a stopped daemon had staged", u->root, key,
			 (unsigned long long)p.size);
out:
	if (p.fd >= 0)
		close(p.fd);
	unlink(data);
	unlink(record);
	json_decref(j);
}

/* The staging folder: data with a record was not uploaded, data alone was. */
static void finish_all_left(struct ufs *u)
{
	DIR *d = opendir(u->stage_dir);
	struct dirent *de;

	if (!d)
		return;
	while ((de = readdir(d))) {
		size_t l = strlen(de->d_name);
		char *data = NULL, *record = NULL;
		if (l < 6 || strcmp(de->d_name + l - 5, ".data"))
			continue;
		if (asprintf(&data, "%s/%s", u->stage_dir, de->d_name) < 0 ||
		    asprintf(&record, "%s/%.*s.json", u->stage_dir, (int)(l - 5), de->d_name) < 0) {
			free(data);
			break;
		}
		if (access(record, F_OK) == 0)
			finish_left(u, data, record);
		else
			unlink(data);
		free(data);
		free(record);
	}
	closedir(d);
}

int s3_write_init(struct ufs *u, const struct source_opts *o, char *err, size_t errlen)
{
	char id[1024];
	int rc;

	u->read_only = o->read_only;
	u->part_size = o->write_part_size;
	u->staging_max = o->staging_max;
	u->buf_max = (unsigned)MAX(o->write_buffer / o->write_part_size, 1);
	if (u->read_only)
		return 0;
	/* One folder per bucket and prefix: the next mount of it finds what this one left. */
	snprintf(id, sizeof(id), "%s\n%s\n%s", u->endpoint, u->bucket, u->prefix);
	if (asprintf(&u->stage_dir, "%s/%016llx", o->staging_dir,
		     (unsigned long long)XXH3_64bits(id, strlen(id))) < 0 ||
	    asprintf(&u->recovery_dir, "%s/recovery", u->stage_dir) < 0)
		return -ENOMEM;
	if ((rc = mkdirs(u->recovery_dir))) {
		snprintf(err, errlen, "cannot create the staging folder %s: %s; give a writable one with "
			 "-o staging_dir=, or mount with -o ro", u->stage_dir, strerror(-rc));
		return rc == -ENOMEM ? rc : -EINVAL;
	}
	finish_all_left(u);
	return 0;
}

void s3_write_fini(struct ufs *u)
{
	free(u->stage_dir);
	free(u->recovery_dir);
}
