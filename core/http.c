/*
 * The HTTP client (see http.h). Sockets curl asks us to watch become
 * POLL_ADDs on the shard's ring (CURLMOPT_SOCKETFUNCTION), its timer a
 * shard timer (CURLMOPT_TIMERFUNCTION); a retry waits on a shard timer too.
 *
 * Ranged reads are not started at once: those that reach a shard in one
 * turn of its loop are sorted, and contiguous reads of one object become
 * one GET (up to XFER_MAX_READS reads, XFER_MAX_BYTES). Pages of a stripe
 * share a shard and read-ahead asks for whole stripes, so a sequential
 * stream costs a request per stripe rather than per page: on s3rver here
 * 1 MiB GETs ran at a third of the rate of 4 MiB ones. A read completes at
 * the turn after its last byte came, not at the end of its GET, and a GET
 * cut off is retried from its first read not complete.
 */
#include "config.h"
#include "core/http.h"
#include "core/log.h"
#include "core/shard.h"
#include "core/util.h"

#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define XFER_MAX_READS 64
#define XFER_MAX_BYTES (16u << 20)
#define ERROR_BODY_MAX 4096

struct http_pool {
	char *name;
	char *ca_bundle;          /* "" for the system store */
	unsigned max_conns, retries;
	uint64_t timeout_ns;
	/* Per shard, created and used by its owner. */
	struct http_shard *shards[HTTP_MAX_SHARDS];
	/* Counters, any thread. */
	atomic_ulong requests[HTTP_KINDS], retried[HTTP_RETRY_CAUSES], failed;
	/* Read failures: the first in a second is logged, the rest counted. */
	struct log_limit read_failures;
	atomic_bool warned_norange;
};

/* One socket curl asked us to watch. Owner: the shard. */
struct csock {
	struct shard_op op;        /* the POLL_ADD in flight, if armed */
	struct shard_op rm;        /* a POLL_REMOVE of it */
	struct http_shard *hs;
	struct csock *next;        /* every csock of the shard */
	curl_socket_t fd;
	unsigned want;             /* POLLIN|POLLOUT that curl wants; 0 when none */
	unsigned armed;            /* events of the poll in flight; 0 when none */
	uint64_t armed_data;       /* its user_data, for POLL_REMOVE */
	bool removing;             /* a POLL_REMOVE in flight */
	bool dead;                 /* curl is done with the socket */
};

enum xfer_state {
	XF_PENDING,                /* a read waiting for the turn's merge */
	XF_RUNNING,                /* in the multi handle */
	XF_BACKOFF,                /* waiting for a retry */
	XF_DONE,                   /* completed; memory kept until its timer is idle */
};

/* One transfer: a request, or a ranged GET for contiguous reads. Owner: the shard. */
struct http_xfer {
	struct http_shard *hs;
	enum xfer_state state;
	CURL *e;
	struct curl_slist *hdrs;
	struct http_req *req;      /* a request, or NULL for reads */
	struct http_read *reads[XFER_MAX_READS];   /* in offset order */
	unsigned nreads;
	unsigned cur;              /* reads before this one have their bytes */
	unsigned ndone;            /* reads before this one were completed (done() ran) */
	uint64_t off, len;         /* the reads' range: [off, off + len) */
	struct http_object *obj;
	struct http_resp *resp;    /* req->resp, or own_resp for reads */
	struct http_resp own_resp;
	size_t body_cap;
	char errbuf[CURL_ERROR_SIZE];
	char range[64];
	uint64_t deadline, seen;   /* body bytes seen this attempt */
	unsigned attempt;
	int fail;                  /* our own verdict on the body: -ESTALE, -EIO, -EFBIG */
	bool early;                /* all bytes came from a server that ignored Range */
	struct shard_timer timer;  /* backoff, or completion of an empty read */
	struct http_xfer *prev, *next;
};

struct http_shard {
	struct http_pool *pool;
	CURLM *multi;
	bool stopping;             /* shutdown: new work fails at once */
	struct shard_timer timer;
	bool timer_on;             /* curl wants a timeout callback */
	struct csock *socks;
	CURL *idle[64];
	unsigned nidle;
	struct http_xfer *active;  /* RUNNING and BACKOFF transfers */
	struct http_xfer *done;    /* finished, freed when their timer is idle */
	struct http_xfer *pending; /* reads not started: merged at the next turn */
	unsigned npending;
	struct shard_timer flush;  /* fires at the next turn of the loop */
	struct shard_timer filled; /* next turn: completes the reads whose bytes came */
};

/* ---- policy ---- */

enum http_outcome http_classify(CURLcode cc, long status)
{
	switch (cc) {
	case CURLE_OK:
		if (status >= 200 && status < 300)
			return HTTP_OK;
		/* 5xx, SlowDown (503) and throttling (429), request timeout (408). */
		return status >= 500 || status == 429 || status == 408 ? HTTP_RETRY : HTTP_FAIL;
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
		return HTTP_RETRY;
	default:
		return HTTP_FAIL;
	}
}

static void count_retry(struct http_pool *p, CURLcode cc, long status)
{
	enum http_retry_cause c = HTTP_RETRY_CONNECTION;

	if (cc == CURLE_OPERATION_TIMEDOUT || (cc == CURLE_OK && status == 408))
		c = HTTP_RETRY_TIMEOUT;
	else if (cc == CURLE_OK && (status == 429 || status == 503))
		c = HTTP_RETRY_THROTTLED;
	else if (cc == CURLE_OK)
		c = HTTP_RETRY_SERVER;
	atomic_fetch_add_explicit(&p->retried[c], 1, memory_order_relaxed);
}

uint64_t http_backoff_ns(unsigned attempt)
{
	/* 50 ms doubling, capped at 2 s; "equal jitter": half fixed, half random. */
	uint64_t base = 50000000ULL << MIN(attempt - 1, 10u);
	uint64_t r;

	base = MIN(base, 2000000000ULL);
	r = mix64(now_ns() ^ (uint64_t)pthread_self());
	return base / 2 + r % (base / 2 + 1);
}

bool http_etag_eq(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);

	if (la >= 2 && a[0] == '"' && a[la - 1] == '"')
		a++, la -= 2;
	if (lb >= 2 && b[0] == '"' && b[lb - 1] == '"')
		b++, lb -= 2;
	return la == lb && !memcmp(a, b, la);
}

/* The errno of a request that got no answer. */
static int transport_errno(CURLcode cc, uint64_t deadline)
{
	if (cc == CURLE_OPERATION_TIMEDOUT || now_ns() >= deadline)
		return -ETIMEDOUT;
	if (cc == CURLE_COULDNT_CONNECT)
		return -ECONNREFUSED;
	return -EHOSTDOWN;
}

/* ---- pools ---- */

int http_pool_create(struct http_pool **out, const struct http_pool_opts *o)
{
	struct http_pool *p = calloc(1, sizeof(*p));

	if (!p)
		return -ENOMEM;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	p->name = strdup(o->name ? o->name : "http");
	p->ca_bundle = strdup(o->ca_bundle ? o->ca_bundle : "");
	if (!p->name || !p->ca_bundle) {
		http_pool_destroy(p);
		return -ENOMEM;
	}
	p->max_conns = MAX(o->max_conns, 1u);
	p->retries = o->retries;
	p->timeout_ns = o->timeout_ns ? o->timeout_ns : 30000000000ULL;
	*out = p;
	return 0;
}

void http_pool_counters(struct http_pool *p, struct http_counters *out)
{
	for (unsigned i = 0; i < HTTP_KINDS; i++)
		out->requests[i] += atomic_load_explicit(&p->requests[i], memory_order_relaxed);
	for (unsigned i = 0; i < HTTP_RETRY_CAUSES; i++)
		out->retries[i] += atomic_load_explicit(&p->retried[i], memory_order_relaxed);
	out->failed += atomic_load_explicit(&p->failed, memory_order_relaxed);
}

/* ---- one attempt's easy handle ---- */

/* Header lines of every response; a new status line starts afresh. */
static size_t on_header(char *line, size_t size, size_t n, void *arg)
{
	struct http_resp *r = arg;
	size_t len = size * n, vlen;
	const char *colon, *v;

	if (len > 5 && !strncmp(line, "HTTP/", 5)) {
		const char *sp = memchr(line, ' ', len);
		r->status = sp ? strtol(sp + 1, NULL, 10) : 0;
		r->etag[0] = r->region[0] = r->last_modified[0] = '\0';
		r->meta_mode[0] = r->meta_uid[0] = r->meta_gid[0] = r->meta_mtime[0] = r->digest[0] = '\0';
		r->has_length = false;
		return len;
	}
	colon = memchr(line, ':', len);
	if (!colon)
		return len;
	v = colon + 1;
	while (v < line + len && (*v == ' ' || *v == '\t'))
		v++;
	vlen = (size_t)(line + len - v);
	while (vlen && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' '))
		vlen--;
#define IS(name) ((size_t)(colon - line) == sizeof(name) - 1 && !strncasecmp(line, name, sizeof(name) - 1))
#define COPY(dst) snprintf(dst, sizeof(dst), "%.*s", (int)vlen, v)
	if (IS("etag"))
		COPY(r->etag);
	else if (IS("x-amz-bucket-region"))
		COPY(r->region);
	else if (IS("last-modified"))
		COPY(r->last_modified);
	else if (IS("x-amz-meta-mode"))
		COPY(r->meta_mode);
	else if (IS("x-amz-meta-uid"))
		COPY(r->meta_uid);
	else if (IS("x-amz-meta-gid"))
		COPY(r->meta_gid);
	else if (IS("x-amz-meta-mtime"))
		COPY(r->meta_mtime);
	else if (IS("x-cachefs-digest"))
		COPY(r->digest);
	else if (IS("content-length")) {
		char num[32];
		char *end;
		snprintf(num, sizeof(num), "%.*s", (int)MIN(vlen, sizeof(num) - 1), v);
		r->length = strtoull(num, &end, 10);
		r->has_length = end != num && !*end && num[0] != '-';
	}
#undef IS
#undef COPY
	return len;
}

/* Appends to resp->body, growing it up to `max` bytes. */
static int body_append(struct http_resp *r, size_t *cap, size_t max, const char *data, size_t len)
{
	if (r->len + len > max)
		return -EFBIG;
	if (r->len + len + 1 > *cap) {
		size_t ncap = MAX(*cap * 2, r->len + len + 4096);
		char *b = realloc(r->body, MIN(ncap, max + 1));
		if (!b)
			return -ENOMEM;
		r->body = b;
		*cap = MIN(ncap, max + 1);
	}
	memcpy(r->body + r->len, data, len);
	r->len += len;
	r->body[r->len] = '\0';
	return 0;
}

/*
 * Sets e up for one attempt: the caller's URL and headers, our timeouts and
 * parsing. Returns 0 or a negative errno from prepare.
 */
static int setup_easy(struct http_pool *p, CURL *e, const char *method, http_prepare_fn prepare,
		      void *ctx, const char *range, uint64_t remain_ns, struct http_resp *resp,
		      struct curl_slist **hdrs, unsigned kind)
{
	char *url = NULL;
	struct curl_slist *l = NULL;
	int rc = prepare(ctx, method, range, &url, &l);

	*hdrs = NULL;
	if (rc) {
		free(url);
		curl_slist_free_all(l);
		return rc;
	}
	/* No "Expect: 100-continue" round trip before a body. */
	struct curl_slist *l2 = curl_slist_append(l, "Expect:");
	if (!l2) {
		free(url);
		curl_slist_free_all(l);
		return -ENOMEM;
	}
	l = l2;
	curl_easy_reset(e);
	memset(resp, 0, offsetof(struct http_resp, body));
	resp->len = 0;
	curl_easy_setopt(e, CURLOPT_URL, url);
	free(url);   /* curl copies it */
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, l);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "cachefs/" PACKAGE_VERSION);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)MAX(remain_ns / 1000000, 1));
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
			 (long)MAX(MIN(remain_ns, 10000000000ULL) / 1000000, 1));
	/*
	 * A connection that goes quiet for a third of the pool's timeout is
	 * given up and the request retried on another, within the deadline: a
	 * server that drops one request must not cost the whole timeout.
	 */
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, (long)MAX(p->timeout_ns / 3000000000ULL, 1));
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, resp);
	curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 512L * 1024);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	/* Keys may hold "." and ".." parts: send them as they are. */
	curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L);
	if (p->ca_bundle[0])
		curl_easy_setopt(e, CURLOPT_CAINFO, p->ca_bundle);
	if (!strcmp(method, "HEAD"))
		curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	else if (strcmp(method, "GET"))
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
	*hdrs = l;
	atomic_fetch_add_explicit(&p->requests[kind % HTTP_KINDS], 1, memory_order_relaxed);
	return 0;
}

static void set_body(CURL *e, const void *body, size_t len)
{
	if (!body)
		return;
	curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
}

/* ---- the blocking variant (before the shards run) ---- */

struct sync_sink {
	struct http_resp *resp;
	size_t cap, max;
	int fail;
};

static size_t sync_body(char *data, size_t size, size_t n, void *arg)
{
	struct sync_sink *s = arg;
	size_t len = size * n;

	if (!s->max)
		return len;
	s->fail = body_append(s->resp, &s->cap, s->max, data, len);
	return s->fail ? 0 : len;
}

int http_perform(struct http_pool *p, struct http_req *r)
{
	uint64_t deadline = r->deadline_ns ? r->deadline_ns : add_sat(now_ns(), p->timeout_ns);
	struct sync_sink sink = { .resp = &r->resp, .max = r->body_max };
	CURL *e = r->easy ? r->easy : curl_easy_init();
	CURLcode cc = CURLE_OK;
	int rc = 0;

	assert(!shard_self());
	if (!e)
		return -ENOMEM;
	r->resp.body = NULL;
	r->err[0] = '\0';
	for (r->attempts = 1;; r->attempts++) {
		struct curl_slist *hdrs;
		uint64_t now = now_ns(), wait;

		free(r->resp.body);
		r->resp.body = NULL;
		sink.cap = 0;
		sink.fail = 0;
		rc = setup_easy(p, e, r->method, r->prepare, r->ctx, NULL, deadline > now ? deadline - now : 1,
				&r->resp, &hdrs, r->kind);
		if (rc)
			break;
		set_body(e, r->body, r->body_len);
		r->err[0] = '\0';
		curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->err);
		curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, sync_body);
		curl_easy_setopt(e, CURLOPT_WRITEDATA, &sink);
		cc = curl_easy_perform(e);
		curl_slist_free_all(hdrs);
		if (sink.fail) {
			rc = sink.fail;
			break;
		}
		if (cc == CURLE_OK)
			curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r->resp.status);
		if (http_classify(cc, r->resp.status) != HTTP_RETRY)
			break;
		wait = http_backoff_ns(r->attempts);
		if (r->attempts > p->retries || now_ns() + wait >= deadline)
			break;
		count_retry(p, cc, r->resp.status);
		log_debug("%s %s: %s; retry %u in %llu ms", p->name, r->method,
			  cc ? curl_easy_strerror(cc) : "server error", r->attempts,
			  (unsigned long long)(wait / 1000000));
		struct timespec ts = { (time_t)(wait / 1000000000ULL), (long)(wait % 1000000000ULL) };
		nanosleep(&ts, NULL);
	}
	if (!r->easy)
		curl_easy_cleanup(e);
	else
		curl_easy_reset(e);   /* no pointers into this call's frame; its connection stays open */
	if (!rc && cc != CURLE_OK) {
		if (!r->err[0])
			snprintf(r->err, sizeof(r->err), "%s", curl_easy_strerror(cc));
		rc = transport_errno(cc, deadline);
	}
	if (rc) {
		atomic_fetch_add_explicit(&p->failed, 1, memory_order_relaxed);
		free(r->resp.body);
		r->resp.body = NULL;
		r->resp.len = 0;
	}
	return rc;
}

/* ---- sockets and the timer, on the shard ---- */

static void process(struct http_shard *hs);

static void sock_polled(struct shard_op *op, int res);

static void sock_arm(struct csock *cs)
{
	struct io_uring_sqe *sqe;

	cs->op.done = sock_polled;
	sqe = shard_sqe(&cs->op);
	io_uring_prep_poll_add(sqe, cs->fd, cs->want);
	cs->armed = cs->want;
	cs->armed_data = sqe->user_data;
}

static void sock_cancel(struct csock *cs);

static void sock_removed(struct shard_op *op, int res)
{
	struct csock *cs = container_of(op, struct csock, rm);

	cs->removing = false;
	/*
	 * The remove may have missed (the poll fired and was re-armed in
	 * between), and curl may have changed its mind while it was out:
	 * cancel what is armed now if it is not what is wanted.
	 */
	if (cs->armed && (cs->dead || cs->armed != cs->want))
		sock_cancel(cs);
}

static void sock_cancel(struct csock *cs)
{
	if (!cs->armed || cs->removing)
		return;
	cs->rm.done = sock_removed;
	io_uring_prep_poll_remove(shard_sqe(&cs->rm), cs->armed_data);
	cs->removing = true;
}

static void sock_polled(struct shard_op *op, int res)
{
	struct csock *cs = container_of(op, struct csock, op);
	struct http_shard *hs = cs->hs;
	int ev = 0, running;

	cs->armed = 0;
	if (cs->dead || !hs->multi)
		return;
	if (res == -ECANCELED) {
		if (cs->want)
			sock_arm(cs);   /* curl changed the events it waits for */
		return;
	}
	if (res < 0 || (res & (POLLERR | POLLHUP | POLLNVAL)))
		ev |= CURL_CSELECT_ERR;
	if (res > 0 && (res & POLLIN))
		ev |= CURL_CSELECT_IN;
	if (res > 0 && (res & POLLOUT))
		ev |= CURL_CSELECT_OUT;
	curl_multi_socket_action(hs->multi, cs->fd, ev, &running);
	if (!cs->dead && !cs->armed && cs->want)
		sock_arm(cs);
	process(hs);
}

static int on_socket(CURL *e, curl_socket_t fd, int what, void *arg, void *sockp)
{
	struct http_shard *hs = arg;
	struct csock *cs = sockp;
	unsigned want = (what == CURL_POLL_IN || what == CURL_POLL_INOUT ? POLLIN : 0) |
			(what == CURL_POLL_OUT || what == CURL_POLL_INOUT ? POLLOUT : 0);

	if (what == CURL_POLL_REMOVE) {
		if (cs) {
			cs->dead = true;
			cs->want = 0;
			sock_cancel(cs);
			curl_multi_assign(hs->multi, fd, NULL);
		}
		return 0;
	}
	if (!cs) {
		for (cs = hs->socks; cs; cs = cs->next)
			if (cs->dead && !cs->armed && !cs->removing)
				break;   /* reuse one with nothing in flight */
		if (!cs) {
			cs = calloc(1, sizeof(*cs));
			if (!cs)
				return -1;
			cs->hs = hs;
			cs->next = hs->socks;
			hs->socks = cs;
		}
		cs->fd = fd;
		cs->dead = false;
		curl_multi_assign(hs->multi, fd, cs);
	}
	cs->want = want;
	if (!cs->armed && want)
		sock_arm(cs);
	else if (cs->armed && cs->armed != want)
		sock_cancel(cs);   /* re-armed with the new events when it completes */
	return 0;
}

static void on_timer(struct shard_timer *t)
{
	struct http_shard *hs = container_of(t, struct http_shard, timer);
	int running;

	if (!hs->timer_on || !hs->multi)
		return;
	hs->timer_on = false;
	curl_multi_socket_action(hs->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	process(hs);
}

static int on_curl_timer(CURLM *m, long ms, void *arg)
{
	struct http_shard *hs = arg;

	hs->timer_on = ms >= 0;
	if (ms >= 0)
		shard_timer_arm(&hs->timer, (uint64_t)ms * 1000000ULL, on_timer);
	return 0;
}

/* The calling shard's state for p, created on first use. */
static struct http_shard *shard_state(struct http_pool *p)
{
	unsigned id = shard_id(shard_self());
	struct http_shard *hs;

	if (id >= HTTP_MAX_SHARDS)
		return NULL;
	hs = p->shards[id];
	if (hs)
		return hs;
	hs = calloc(1, sizeof(*hs));
	if (!hs)
		return NULL;
	hs->pool = p;
	hs->multi = curl_multi_init();
	if (!hs->multi) {
		free(hs);
		return NULL;
	}
	curl_multi_setopt(hs->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
	curl_multi_setopt(hs->multi, CURLMOPT_SOCKETDATA, hs);
	curl_multi_setopt(hs->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
	curl_multi_setopt(hs->multi, CURLMOPT_TIMERDATA, hs);
	curl_multi_setopt(hs->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)p->max_conns);
	curl_multi_setopt(hs->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)p->max_conns);
	curl_multi_setopt(hs->multi, CURLMOPT_MAXCONNECTS, (long)p->max_conns);
	p->shards[id] = hs;
	return hs;
}

static CURL *easy_get(struct http_shard *hs)
{
	return hs->nidle ? hs->idle[--hs->nidle] : curl_easy_init();
}

static void easy_put(struct http_shard *hs, CURL *e)
{
	if (!e)
		return;
	if (hs->nidle < ARRAY_SIZE(hs->idle))
		hs->idle[hs->nidle++] = e;
	else
		curl_easy_cleanup(e);
}

/* ---- transfers ---- */

static bool etag_ok(const struct http_xfer *x)
{
	return !x->obj || !x->resp->etag[0] || !x->obj->etag[0] ||
	       http_etag_eq(x->resp->etag, x->obj->etag);
}

/* Body bytes of a request: kept up to body_max (error bodies: a few KiB, for messages). */
static size_t on_req_data(char *data, size_t size, size_t n, void *arg)
{
	struct http_xfer *x = arg;
	size_t len = size * n;
	bool error = x->resp->status >= 300;
	size_t max = error ? MAX(x->req->body_max, (size_t)ERROR_BODY_MAX) : x->req->body_max;

	if (x->req->sink && !error) {
		if (x->resp->len + len > x->req->sink_len) {
			x->fail = -EFBIG;
			return 0;
		}
		memcpy(x->req->sink + x->resp->len, data, len);
		x->resp->len += len;
		return len;
	}
	if (!max)
		return len;
	if (error && x->resp->len + len > max)
		len = max - MIN(max, x->resp->len);   /* an error body is cut, not a failure */
	x->fail = body_append(x->resp, &x->body_cap, max, data, len);
	return x->fail ? 0 : size * n;
}

/*
 * Completes the reads of x whose bytes came, all but its last, which
 * completes with x: the caller may free the object once every read of it
 * completed.
 */
static void complete_filled(struct http_xfer *x)
{
	if (x->req)
		return;
	while (x->ndone < MIN(x->cur, x->nreads - 1)) {
		struct http_read *r = x->reads[x->ndone++];
		r->done(r, (int)r->got);
	}
}

/*
 * At the next turn of the loop (not inside curl's callback, where the
 * reads' owners could not start transfers): completes the filled reads.
 */
static void complete_filled_all(struct shard_timer *t)
{
	struct http_shard *hs = container_of(t, struct http_shard, filled);
	struct http_xfer *x, *next;

	for (x = hs->active; x; x = next) {
		next = x->next;   /* a completion may start a request: it goes to the head */
		if (x->state == XF_RUNNING)
			complete_filled(x);
	}
}

/*
 * Body bytes of a ranged GET. A 206 starts at the range; a 200 (a server
 * that ignored the Range, as some do for "bytes=0-0") starts at the
 * object's first byte, so the range is cut out of it and the rest is not
 * downloaded.
 */
static size_t on_read_data(char *data, size_t size, size_t n, void *arg)
{
	struct http_xfer *x = arg;
	struct http_pool *p = x->hs->pool;
	size_t len = size * n;
	long st = x->resp->status;
	/* Object offsets of this chunk. */
	uint64_t from = (st == 200 ? 0 : x->off) + x->seen, to = from + len;
	unsigned cur0 = x->cur;

	if (st != 200 && st != 206) {
		/* An error body: keep the start of it for the message. */
		size_t room = ERROR_BODY_MAX - MIN((size_t)ERROR_BODY_MAX, x->resp->len);
		body_append(x->resp, &x->body_cap, ERROR_BODY_MAX, data, MIN(len, room));
		return len;
	}
	if (!etag_ok(x)) {
		x->fail = -ESTALE;
		return 0;
	}
	if (st == 200 && x->off && !x->seen && !atomic_exchange(&p->warned_norange, true))
		log_warn("%s: the server of %s ignores Range requests: every page is read from the start of "
			 "its file; a server that honours Range (most do) is much faster", p->name, x->obj->name);
	for (unsigned i = x->cur; i < x->nreads; i++) {
		struct http_read *r = x->reads[i];
		uint64_t lo = MAX(from, r->off), hi = MIN(to, r->off + r->len);
		if (r->off >= to)
			break;
		if (lo < hi) {
			memcpy(r->buf + (lo - r->off), data + (lo - from), hi - lo);
			r->got = (size_t)(hi - r->off);
		}
		if (to >= r->off + r->len)
			x->cur = i + 1;
	}
	x->seen += len;
	if (x->cur > cur0 && x->ndone < MIN(x->cur, x->nreads - 1) && !x->hs->filled.pending)
		shard_timer_arm(&x->hs->filled, 0, complete_filled_all);
	/* Returning short ends the transfer: the range is complete (200), or
	 * the server sent more than the range asked for (206). */
	if (st == 200 && to >= x->off + x->len) {
		x->early = true;
		return 0;
	}
	if (st == 206 && x->seen > x->len) {
		x->fail = -EIO;
		return 0;
	}
	return len;
}

static void xfer_link(struct http_shard *hs, struct http_xfer *x)
{
	x->prev = NULL;
	x->next = hs->active;
	if (hs->active)
		hs->active->prev = x;
	hs->active = x;
}

static void xfer_unlink(struct http_xfer *x)
{
	struct http_shard *hs = x->hs;

	if (x->prev)
		x->prev->next = x->next;
	else if (hs->active == x)
		hs->active = x->next;
	if (x->next)
		x->next->prev = x->prev;
	x->prev = x->next = NULL;
}

/*
 * Completes x: a request with rc, or its reads with err if not 0, else each
 * with its bytes (-EIO for one the body did not fill). Its memory waits in
 * hs->done while its timer may fire.
 */
static void xfer_finish(struct http_xfer *x, int err)
{
	struct http_shard *hs = x->hs;
	struct http_read *reads[XFER_MAX_READS];
	struct http_req *req = x->req;
	unsigned n = x->nreads - x->ndone;

	memcpy(reads, x->reads + x->ndone, n * sizeof(*reads));
	xfer_unlink(x);
	x->state = XF_DONE;
	easy_put(hs, x->e);
	x->e = NULL;
	curl_slist_free_all(x->hdrs);
	x->hdrs = NULL;
	if (!req) {
		free(x->own_resp.body);
		x->own_resp.body = NULL;
	}
	if (x->timer.pending) {
		x->next = hs->done;
		hs->done = x;
	} else {
		free(x);
	}
	if (req) {
		req->x = NULL;
		if (err) {
			free(req->resp.body);
			req->resp.body = NULL;
			req->resp.len = 0;
		}
		req->done(req, err);
		return;
	}
	for (unsigned i = 0; i < n; i++)
		reads[i]->done(reads[i], err ? err : reads[i]->got == reads[i]->len ?
			       (int)reads[i]->got : -EIO);
}

/* Frees finished transfers whose timers are idle. */
static void reap_done(struct http_shard *hs)
{
	for (struct http_xfer **pp = &hs->done; *pp;) {
		struct http_xfer *x = *pp;
		if (x->timer.pending) {
			pp = &x->next;
			continue;
		}
		*pp = x->next;
		free(x);
	}
}

/* Rate-limited: the first failure in a second is logged, the rest counted. */
static void log_read_failure(struct http_xfer *x, const char *why)
{
	struct http_pool *p = x->hs->pool;
	uint64_t n;

	if (!log_limit_pass(&p->read_failures, &n))
		return;
	log_warn("%s read %s %s: %s (%u attempts); the reader gets EIO%s", p->name, x->obj->name,
		 x->range, why, x->attempt + 1,
		 n ? " (and other reads failed since the last message)" : "");
}

static void start_attempt(struct http_xfer *x);

static void on_backoff(struct shard_timer *t)
{
	struct http_xfer *x = container_of(t, struct http_xfer, timer);

	if (x->state == XF_BACKOFF)
		start_attempt(x);
}

/* A ranged GET ended: complete its reads, or retry. */
static void read_ended(struct http_xfer *x, CURLcode cc, long status)
{
	struct http_pool *p = x->hs->pool;
	struct http_read *last = x->reads[x->nreads - 1];
	char why[700];

	if (cc == CURLE_WRITE_ERROR && x->early && !x->fail)
		cc = CURLE_OK;
	if (x->fail == -ESTALE || (cc == CURLE_OK && (status == 200 || status == 206) && !etag_ok(x))) {
		if (!atomic_exchange(&x->obj->warned, true))
			log_warn("%s changed on the server while open (ETag %s, now %s): reads of pages not "
				 "cached fail with ESTALE; the new object shows after dir_cache_ttl",
				 x->obj->name, x->obj->etag, x->resp->etag);
		xfer_finish(x, -ESTALE);
		return;
	}
	if (x->fail) {
		log_read_failure(x, "the server sent more bytes than the range asked for");
		xfer_finish(x, x->fail);
		return;
	}
	switch (http_classify(cc, status)) {
	case HTTP_OK:
		if (last->got < last->len) {
			/* The reads the body filled complete; the others get EIO. */
			snprintf(why, sizeof(why), "the object ended at %llu bytes; the listing said %llu",
				 (unsigned long long)(x->off + MIN(x->seen, x->len)),
				 (unsigned long long)x->obj->size);
			log_read_failure(x, why);
		}
		xfer_finish(x, 0);
		return;
	case HTTP_RETRY: {
		uint64_t wait = http_backoff_ns(x->attempt + 1);
		if (x->attempt < p->retries && now_ns() + wait < x->deadline && !x->hs->stopping) {
			x->attempt++;
			x->state = XF_BACKOFF;
			count_retry(p, cc, status);
			shard_timer_arm(&x->timer, wait, on_backoff);
			return;
		}
		break;
	}
	case HTTP_FAIL:
		break;
	}
	if (cc != CURLE_OK) {
		snprintf(why, sizeof(why), "%s", x->errbuf[0] ? x->errbuf : curl_easy_strerror(cc));
	} else {
		snprintf(why, sizeof(why), "HTTP %ld", status);
		if (x->resp->len) {
			/* The start of an error body (S3: <Code>...): one line of it. */
			size_t l = strlen(why);
			snprintf(why + l, sizeof(why) - l, ": %.200s", x->resp->body);
			for (char *c = why + l; *c; c++)
				if (*c == '\n' || *c == '\r')
					*c = ' ';
		}
	}
	atomic_fetch_add_explicit(&p->failed, 1, memory_order_relaxed);
	log_read_failure(x, why);
	xfer_finish(x, -EIO);
}

/* A request ended: complete it, or retry. */
static void req_ended(struct http_xfer *x, CURLcode cc, long status)
{
	struct http_pool *p = x->hs->pool;
	struct http_req *r = x->req;

	if (x->fail) {
		xfer_finish(x, x->fail);
		return;
	}
	if (http_classify(cc, status) == HTTP_RETRY) {
		uint64_t wait = http_backoff_ns(x->attempt + 1);
		if (x->attempt < p->retries && now_ns() + wait < x->deadline && !x->hs->stopping) {
			x->attempt++;
			x->state = XF_BACKOFF;
			count_retry(p, cc, status);
			log_debug("%s %s: %s; retry %u in %llu ms", p->name, r->method,
				  cc ? curl_easy_strerror(cc) : "server error", x->attempt,
				  (unsigned long long)(wait / 1000000));
			shard_timer_arm(&x->timer, wait, on_backoff);
			return;
		}
	}
	r->attempts = x->attempt + 1;
	if (cc != CURLE_OK) {
		snprintf(r->err, sizeof(r->err), "%s", x->errbuf[0] ? x->errbuf : curl_easy_strerror(cc));
		atomic_fetch_add_explicit(&p->failed, 1, memory_order_relaxed);
		xfer_finish(x, transport_errno(cc, x->deadline));
		return;
	}
	if (status >= 500 || status == 429)
		atomic_fetch_add_explicit(&p->failed, 1, memory_order_relaxed);
	xfer_finish(x, 0);
}

static void xfer_ended(struct http_xfer *x, CURLcode cc)
{
	long status = 0;

	curl_easy_getinfo(x->e, CURLINFO_RESPONSE_CODE, &status);
	curl_multi_remove_handle(x->hs->multi, x->e);
	curl_slist_free_all(x->hdrs);
	x->hdrs = NULL;
	x->resp->status = status;
	if (x->req)
		req_ended(x, cc, status);
	else
		read_ended(x, cc, status);
}

static void process(struct http_shard *hs)
{
	CURLMsg *m;
	int left;

	while (hs->multi && (m = curl_multi_info_read(hs->multi, &left))) {
		struct http_xfer *x;
		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
		xfer_ended(x, m->data.result);
	}
	if (hs->done)
		reap_done(hs);
}

static void set_range(struct http_xfer *x)
{
	snprintf(x->range, sizeof(x->range), "bytes=%llu-%llu", (unsigned long long)x->off,
		 (unsigned long long)(x->off + x->len - 1));
}

static void start_attempt(struct http_xfer *x)
{
	struct http_shard *hs = x->hs;
	struct http_pool *p = hs->pool;
	uint64_t now = now_ns();
	int rc;

	complete_filled(x);   /* what the attempt before filled */
	if (x->ndone) {
		/* A retry asks only for the reads that have not completed. */
		struct http_read *last = x->reads[x->nreads - 1];
		memmove(x->reads, x->reads + x->ndone, (x->nreads - x->ndone) * sizeof(*x->reads));
		x->nreads -= x->ndone;
		x->ndone = 0;
		x->off = x->reads[0]->off;
		x->len = last->off + last->len - x->off;
		set_range(x);
	}
	x->state = XF_RUNNING;
	x->seen = 0;
	x->fail = 0;
	x->early = false;
	x->cur = 0;
	for (unsigned i = 0; i < x->nreads; i++)
		x->reads[i]->got = 0;
	x->errbuf[0] = '\0';
	free(x->resp->body);
	x->resp->body = NULL;
	x->resp->len = 0;
	x->body_cap = 0;
	if (x->req)
		rc = setup_easy(p, x->e, x->req->method, x->req->prepare, x->req->ctx, NULL,
				x->deadline > now ? x->deadline - now : 1, x->resp, &x->hdrs, x->req->kind);
	else
		rc = setup_easy(p, x->e, "GET", x->obj->prepare, x->obj->ctx, x->range,
				x->deadline > now ? x->deadline - now : 1, x->resp, &x->hdrs, x->obj->kind);
	if (rc) {
		xfer_finish(x, rc);
		return;
	}
	if (x->req)
		set_body(x->e, x->req->body, x->req->body_len);
	curl_easy_setopt(x->e, CURLOPT_WRITEFUNCTION, x->req ? on_req_data : on_read_data);
	curl_easy_setopt(x->e, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(x->e, CURLOPT_PRIVATE, x);
	curl_easy_setopt(x->e, CURLOPT_ERRORBUFFER, x->errbuf);
	if (curl_multi_add_handle(hs->multi, x->e) != CURLM_OK)
		xfer_finish(x, -EIO);
}

void http_submit(struct http_pool *p, struct http_req *r)
{
	struct http_shard *hs = shard_state(p);
	struct http_xfer *x;

	r->resp.body = NULL;
	r->resp.len = 0;
	r->err[0] = '\0';
	r->attempts = 0;
	if (!hs || hs->stopping || !(x = calloc(1, sizeof(*x)))) {
		r->done(r, hs && hs->stopping ? -ECANCELED : -ENOMEM);
		return;
	}
	x->hs = hs;
	x->req = r;
	x->resp = &r->resp;
	x->deadline = r->deadline_ns ? r->deadline_ns : add_sat(now_ns(), p->timeout_ns);
	x->e = easy_get(hs);
	if (!x->e) {
		free(x);
		r->done(r, -ENOMEM);
		return;
	}
	r->x = x;
	xfer_link(hs, x);
	start_attempt(x);
}

/* ---- ranged reads ---- */

static void finish_empty(struct shard_timer *t)
{
	struct http_xfer *x = container_of(t, struct http_xfer, timer);

	/* Finished already (failed at shutdown while the timer was pending). */
	if (x->state == XF_BACKOFF)
		xfer_finish(x, 0);
}

static int cmp_xfer(const void *a, const void *b)
{
	const struct http_xfer *x = *(struct http_xfer *const *)a, *y = *(struct http_xfer *const *)b;

	if (x->obj != y->obj)
		return (uintptr_t)x->obj < (uintptr_t)y->obj ? -1 : 1;
	return x->off < y->off ? -1 : x->off > y->off;
}

static void start_read(struct http_shard *hs, struct http_xfer *x)
{
	x->next = NULL;
	set_range(x);
	xfer_link(hs, x);
	start_attempt(x);
}

/* The reads that came this turn: contiguous ones are merged, then started. */
static void flush_pending(struct shard_timer *t)
{
	struct http_shard *hs = container_of(t, struct http_shard, flush);
	unsigned n = hs->npending, m = 0;
	struct http_xfer **v = malloc(n * sizeof(*v)), *x;

	if (!v) {
		/* Start them one by one, as they came. */
		while ((x = hs->pending)) {
			hs->pending = x->next;
			start_read(hs, x);
		}
		hs->npending = 0;
		return;
	}
	for (x = hs->pending; x; x = x->next)
		v[m++] = x;
	hs->pending = NULL;
	hs->npending = 0;
	qsort(v, m, sizeof(*v), cmp_xfer);
	for (unsigned i = 0; i < m; i++) {
		x = v[i];
		while (i + 1 < m && v[i + 1]->obj == x->obj && v[i + 1]->off == x->off + x->len &&
		       x->nreads < XFER_MAX_READS && x->len + v[i + 1]->len <= XFER_MAX_BYTES) {
			struct http_xfer *y = v[++i];
			x->reads[x->nreads++] = y->reads[0];
			x->len += y->len;
			easy_put(hs, y->e);   /* x has its own */
			free(y);
		}
		start_read(hs, x);
	}
	free(v);
}

void http_read_submit(struct http_pool *p, struct http_read *rd)
{
	struct http_shard *hs = shard_state(p);
	struct http_xfer *x;

	rd->got = 0;
	if (!hs || hs->stopping || !(x = calloc(1, sizeof(*x)))) {
		rd->done(rd, hs && hs->stopping ? -ECANCELED : -ENOMEM);
		return;
	}
	x->reads[0] = rd;
	x->nreads = 1;
	x->obj = rd->obj;
	x->hs = hs;
	x->resp = &x->own_resp;
	x->deadline = add_sat(now_ns(), p->timeout_ns);
	if (rd->off >= rd->obj->size) {
		/* Past the end the listing gave: nothing to fetch, but complete later. */
		rd->len = 0;
		xfer_link(hs, x);
		x->state = XF_BACKOFF;
		shard_timer_arm(&x->timer, 0, finish_empty);
		return;
	}
	rd->len = (size_t)MIN((uint64_t)rd->len, rd->obj->size - rd->off);
	x->off = rd->off;
	x->len = rd->len;
	x->e = easy_get(hs);
	if (!x->e) {
		free(x);
		rd->done(rd, -ENOMEM);
		return;
	}
	x->state = XF_PENDING;
	x->next = hs->pending;
	hs->pending = x;
	if (!hs->npending++)
		shard_timer_arm(&hs->flush, 0, flush_pending);
}

/* ---- shutdown ---- */

void http_pool_shard_stop(struct http_pool *p)
{
	struct http_shard *hs = shard_self() && shard_id(shard_self()) < HTTP_MAX_SHARDS ?
				p->shards[shard_id(shard_self())] : NULL;

	if (!hs || hs->stopping)
		return;
	/* Callbacks of what fails below may submit more: that fails at once. */
	hs->stopping = true;
	while (hs->pending) {
		struct http_xfer *x = hs->pending;
		hs->pending = x->next;
		x->next = NULL;
		xfer_link(hs, x);
		x->state = XF_BACKOFF;     /* not in the multi handle */
		xfer_finish(x, -ECANCELED);
	}
	hs->npending = 0;
	while (hs->active) {
		struct http_xfer *x = hs->active;
		if (x->state == XF_RUNNING)
			curl_multi_remove_handle(hs->multi, x->e);
		xfer_finish(x, -ECANCELED);
	}
	for (unsigned i = 0; i < hs->nidle; i++)
		curl_easy_cleanup(hs->idle[i]);
	hs->nidle = 0;
	curl_multi_cleanup(hs->multi);
	hs->multi = NULL;
	hs->timer_on = false;
	/* Polls still armed hold their sockets open; the loop waits for them. */
	for (struct csock *cs = hs->socks; cs; cs = cs->next) {
		cs->dead = true;
		sock_cancel(cs);
	}
}

void http_pool_destroy(struct http_pool *p)
{
	if (!p)
		return;
	for (unsigned i = 0; i < HTTP_MAX_SHARDS; i++) {
		struct http_shard *hs = p->shards[i];
		if (!hs)
			continue;
		if (hs->multi)
			curl_multi_cleanup(hs->multi);
		while (hs->socks) {
			struct csock *cs = hs->socks;
			hs->socks = cs->next;
			free(cs);
		}
		while (hs->done) {
			struct http_xfer *x = hs->done;
			hs->done = x->next;
			free(x);
		}
		for (unsigned j = 0; j < hs->nidle; j++)
			curl_easy_cleanup(hs->idle[j]);
		free(hs);
	}
	free(p->name);
	free(p->ca_bundle);
	free(p);
}
