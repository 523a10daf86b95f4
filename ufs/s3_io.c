/*
 * Ranged GETs on the shard loops. Each shard owns a libcurl multi handle
 * whose sockets and timer are io_uring operations on that shard's ring
 * (CURLMOPT_SOCKETFUNCTION -> POLL_ADD / POLL_REMOVE, CURLMOPT_TIMERFUNCTION
 * -> a shard timer): no threads of its own, no busy polling, and keep-alive
 * connections reused across reads, at most s3_max_connections per shard.
 *
 * Reads are not started at once: those that reach a shard in one turn of
 * its loop are sorted, and contiguous reads of one object become one ranged
 * GET (up to XFER_MAX_READS reads, XFER_MAX_BYTES). Pages of a stripe share
 * a shard and read-ahead asks for whole stripes, so a sequential stream
 * costs a request per stripe rather than per page: on s3rver here 1 MiB
 * GETs ran at a third of the rate of 4 MiB ones.
 */
#include "config.h"
#include "ufs/s3_i.h"
#include "core/log.h"
#include "core/shard.h"
#include "core/util.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One socket curl asked us to watch. Owner: the shard. */
struct csock {
	struct shard_op op;        /* the POLL_ADD in flight, if armed */
	struct shard_op rm;        /* a POLL_REMOVE of it */
	struct s3_shard *ss;
	struct csock *next;        /* every csock of the shard */
	curl_socket_t fd;
	unsigned want;             /* POLLIN|POLLOUT that curl wants; 0 when none */
	unsigned armed;            /* events of the poll in flight; 0 when none */
	uint64_t armed_data;       /* its user_data, for POLL_REMOVE */
	bool removing;             /* a POLL_REMOVE in flight */
	bool dead;                 /* curl is done with the socket */
};

enum xfer_state {
	XF_RUNNING,                /* in the multi handle */
	XF_BACKOFF,                /* waiting for a retry */
	XF_DONE,                   /* completed; memory kept until the timer is idle */
};

#define XFER_MAX_READS 64
#define XFER_MAX_BYTES (16u << 20)

/* One ranged GET for one or more contiguous reads. Owner: the shard. */
struct s3_xfer {
	struct ufs_read *reads[XFER_MAX_READS];   /* in offset order */
	unsigned nreads;
	unsigned cur;              /* reads before this one are complete */
	uint64_t off, len;         /* the range: [off, off + len) */
	struct s3_file *sf;
	struct s3_shard *ss;
	enum xfer_state state;
	CURL *e;
	struct curl_slist *hdrs;
	struct s3_resp resp;
	char errbuf[CURL_ERROR_SIZE];
	char range[64];
	uint64_t deadline, seen;   /* body bytes seen this attempt */
	unsigned attempt;
	int fail;                  /* our own verdict on the body: -ESTALE, -EIO */
	bool early;                /* all bytes came from a server that ignored Range */
	struct shard_timer timer;  /* backoff */
	struct s3_xfer *prev, *next;
};

/* Owner: its shard. */
struct s3_shard {
	struct ufs *u;
	CURLM *multi;
	struct shard_timer timer;
	bool timer_on;             /* curl wants a timeout callback */
	struct csock *socks;
	CURL *idle[64];
	unsigned nidle;
	struct s3_xfer *active;    /* RUNNING and BACKOFF transfers */
	struct s3_xfer *done;      /* finished, freed when their timer is idle */
	struct s3_xfer *pending;   /* not started: merged at the next turn */
	unsigned npending;
	struct shard_timer flush;  /* fires at the next turn of the loop */
};

static void process(struct s3_shard *ss);

/* ---- sockets and the timer ---- */

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

static void sock_removed(struct shard_op *op, int res)
{
	container_of(op, struct csock, rm)->removing = false;
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
	struct s3_shard *ss = cs->ss;
	int ev = 0, running;

	cs->armed = 0;
	if (cs->dead)
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
	curl_multi_socket_action(ss->multi, cs->fd, ev, &running);
	if (!cs->dead && !cs->armed && cs->want)
		sock_arm(cs);
	process(ss);
}

static int on_socket(CURL *e, curl_socket_t fd, int what, void *arg, void *sockp)
{
	struct s3_shard *ss = arg;
	struct csock *cs = sockp;
	unsigned want = (what == CURL_POLL_IN || what == CURL_POLL_INOUT ? POLLIN : 0) |
			(what == CURL_POLL_OUT || what == CURL_POLL_INOUT ? POLLOUT : 0);

	if (what == CURL_POLL_REMOVE) {
		if (cs) {
			cs->dead = true;
			cs->want = 0;
			sock_cancel(cs);
			curl_multi_assign(ss->multi, fd, NULL);
		}
		return 0;
	}
	if (!cs) {
		for (cs = ss->socks; cs; cs = cs->next)
			if (cs->dead && !cs->armed && !cs->removing)
				break;   /* reuse one with nothing in flight */
		if (!cs) {
			cs = calloc(1, sizeof(*cs));
			if (!cs)
				return -1;
			cs->ss = ss;
			cs->next = ss->socks;
			ss->socks = cs;
		}
		cs->fd = fd;
		cs->dead = false;
		curl_multi_assign(ss->multi, fd, cs);
	}
	cs->want = want;
	if (!cs->armed)
		sock_arm(cs);
	else if (cs->armed != want)
		sock_cancel(cs);   /* re-armed with the new events when it completes */
	return 0;
}

static void on_timer(struct shard_timer *t)
{
	struct s3_shard *ss = container_of(t, struct s3_shard, timer);
	int running;

	if (!ss->timer_on || !ss->multi)
		return;
	ss->timer_on = false;
	curl_multi_socket_action(ss->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	process(ss);
}

static int on_curl_timer(CURLM *m, long ms, void *arg)
{
	struct s3_shard *ss = arg;

	ss->timer_on = ms >= 0;
	if (ms >= 0)
		shard_timer_arm(&ss->timer, (uint64_t)ms * 1000000ULL, on_timer);
	return 0;
}

static struct s3_shard *shard_state(struct ufs *u)
{
	unsigned id = shard_id(shard_self());
	struct s3_shard *ss = u->shards[id];

	if (ss || id >= S3_MAX_SHARDS)
		return ss;
	ss = calloc(1, sizeof(*ss));
	if (!ss)
		return NULL;
	ss->u = u;
	ss->multi = curl_multi_init();
	if (!ss->multi) {
		free(ss);
		return NULL;
	}
	curl_multi_setopt(ss->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
	curl_multi_setopt(ss->multi, CURLMOPT_SOCKETDATA, ss);
	curl_multi_setopt(ss->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
	curl_multi_setopt(ss->multi, CURLMOPT_TIMERDATA, ss);
	curl_multi_setopt(ss->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)u->max_conns);
	curl_multi_setopt(ss->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)u->max_conns);
	curl_multi_setopt(ss->multi, CURLMOPT_MAXCONNECTS, (long)u->max_conns);
	u->shards[id] = ss;
	return ss;
}

/* ---- transfers ---- */

static bool etag_eq(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);

	if (la >= 2 && a[0] == '"' && a[la - 1] == '"')
		a++, la -= 2;
	if (lb >= 2 && b[0] == '"' && b[lb - 1] == '"')
		b++, lb -= 2;
	return la == lb && !memcmp(a, b, la);
}

static bool etag_ok(const struct s3_xfer *x)
{
	return !x->resp.etag[0] || !x->sf->etag[0] || etag_eq(x->resp.etag, x->sf->etag);
}

/*
 * Body bytes. A 206 starts at the range; a 200 (a server that ignored the
 * Range, as some do for "bytes=0-0") starts at the object's first byte, so
 * the range is cut out of it and the rest is not downloaded.
 */
static size_t on_data(char *data, size_t size, size_t n, void *arg)
{
	struct s3_xfer *x = arg;
	size_t len = size * n;
	long st = x->resp.status;
	/* Object offsets of this chunk. */
	uint64_t from = (st == 200 ? 0 : x->off) + x->seen, to = from + len;

	if (st != 200 && st != 206) {
		/* An error body: keep the start of it for the message. */
		size_t room = x->resp.cap > x->resp.len ? x->resp.cap - x->resp.len - 1 : 0;
		if (!x->resp.body && (x->resp.body = malloc(4096)))
			x->resp.cap = 4096, room = 4095;
		len = MIN(len, room);
		if (x->resp.body) {
			memcpy(x->resp.body + x->resp.len, data, len);
			x->resp.len += len;
			x->resp.body[x->resp.len] = '\0';
		}
		return size * n;
	}
	if (!etag_ok(x)) {
		x->fail = -ESTALE;
		return 0;
	}
	if (st == 200 && x->off && !x->seen && !atomic_exchange(&x->ss->u->warned_norange, true))
		log_warn("%s %s ignores Range requests: every page is read from the start of its file; "
			 "a server that honours Range (most do) is much faster", x->ss->u->drv, x->ss->u->endpoint);
	for (unsigned i = x->cur; i < x->nreads; i++) {
		struct ufs_read *r = x->reads[i];
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

static void xfer_unlink(struct s3_xfer *x)
{
	struct s3_shard *ss = x->ss;

	if (x->prev)
		x->prev->next = x->next;
	else
		ss->active = x->next;
	if (x->next)
		x->next->prev = x->prev;
	x->prev = x->next = NULL;
}

/*
 * Completes x's reads: with err if it is not 0, else each with its bytes
 * (-EIO for one the body did not fill). Its memory waits in ss->done while
 * its timer may fire.
 */
static void xfer_finish(struct s3_xfer *x, int err)
{
	struct s3_shard *ss = x->ss;
	struct ufs_read *reads[XFER_MAX_READS];
	unsigned n = x->nreads;

	memcpy(reads, x->reads, n * sizeof(*reads));
	xfer_unlink(x);
	x->state = XF_DONE;
	if (x->e) {
		if (ss->nidle < ARRAY_SIZE(ss->idle))
			ss->idle[ss->nidle++] = x->e;
		else
			curl_easy_cleanup(x->e);
		x->e = NULL;
	}
	curl_slist_free_all(x->hdrs);
	x->hdrs = NULL;
	free(x->resp.body);
	x->resp.body = NULL;
	if (x->timer.pending) {
		x->next = ss->done;
		ss->done = x;
	} else {
		free(x);
	}
	for (unsigned i = 0; i < n; i++)
		reads[i]->done(reads[i], err ? err : reads[i]->got == reads[i]->len ?
				(int)reads[i]->got : -EIO);
}

/* Frees finished transfers whose timers are idle. */
static void reap_done(struct s3_shard *ss)
{
	for (struct s3_xfer **p = &ss->done; *p;) {
		struct s3_xfer *x = *p;
		if (x->timer.pending) {
			p = &x->next;
			continue;
		}
		*p = x->next;
		free(x);
	}
}

/* Rate-limited: the first failure in a second is logged, the rest counted. */
static void log_read_failure(struct s3_xfer *x, const char *why)
{
	struct ufs *u = x->ss->u;
	uint64_t now = now_ns(), last = atomic_load(&u->fail_logged_ns), n;

	if (now - last < 1000000000ULL || !atomic_compare_exchange_strong(&u->fail_logged_ns, &last, now)) {
		atomic_fetch_add(&u->fail_suppressed, 1);
		return;
	}
	n = atomic_exchange(&u->fail_suppressed, 0);
	log_warn("%s read %s%s %s: %s (%u attempts); the reader gets EIO%s", u->drv, u->root,
		 x->sf->key, x->range, why, x->attempt + 1,
		 n ? " (and other reads failed since the last message)" : "");
}

static void start_attempt(struct s3_xfer *x);

static void on_backoff(struct shard_timer *t)
{
	struct s3_xfer *x = container_of(t, struct s3_xfer, timer);

	if (x->state == XF_BACKOFF)
		start_attempt(x);
}

static void xfer_ended(struct s3_xfer *x, CURLcode cc)
{
	struct s3_shard *ss = x->ss;
	struct ufs *u = ss->u;
	struct ufs_read *last = x->reads[x->nreads - 1];
	long status = 0;
	char why[700];
	uint64_t wait;

	curl_easy_getinfo(x->e, CURLINFO_RESPONSE_CODE, &status);
	curl_multi_remove_handle(ss->multi, x->e);
	curl_slist_free_all(x->hdrs);
	x->hdrs = NULL;
	x->resp.status = status;
	if (cc == CURLE_WRITE_ERROR && x->early && !x->fail)
		cc = CURLE_OK;
	if (x->fail == -ESTALE || (cc == CURLE_OK && (status == 200 || status == 206) && !etag_ok(x))) {
		if (!atomic_exchange(&x->sf->warned, true))
			log_warn("%s%s changed on the server while open (ETag %s, now %s): reads of pages "
				 "not cached fail with ESTALE; the new object shows after dir_cache_ttl",
				 u->root, x->sf->key, x->sf->etag, x->resp.etag);
		xfer_finish(x, -ESTALE);
		return;
	}
	if (x->fail) {
		log_read_failure(x, "the server sent more bytes than the range asked for");
		xfer_finish(x, x->fail);
		return;
	}
	switch (s3_classify(cc, status)) {
	case S3_OK:
		if (last->got < last->len) {
			/* The reads the body filled complete; the others get EIO. */
			snprintf(why, sizeof(why), "the object ended at %llu bytes; the listing said %llu",
				 (unsigned long long)(x->off + MIN(x->seen, x->len)),
				 (unsigned long long)x->sf->size);
			log_read_failure(x, why);
		}
		xfer_finish(x, 0);
		return;
	case S3_RETRY:
		wait = s3_backoff_ns(x->attempt + 1);
		if (x->attempt < u->retries && now_ns() + wait < x->deadline && ss->multi) {
			x->attempt++;
			x->state = XF_BACKOFF;
			s3_count_retry(u, cc, status);
			shard_timer_arm(&x->timer, wait, on_backoff);
			return;
		}
		break;
	case S3_FAIL:
		break;
	}
	if (cc != CURLE_OK)
		snprintf(why, sizeof(why), "%s", x->errbuf[0] ? x->errbuf : curl_easy_strerror(cc));
	else
		s3_error_text(&x->resp, why, sizeof(why));
	atomic_fetch_add_explicit(&u->failed, 1, memory_order_relaxed);
	log_read_failure(x, why);
	xfer_finish(x, -EIO);
}

static void process(struct s3_shard *ss)
{
	CURLMsg *m;
	int left;

	while (ss->multi && (m = curl_multi_info_read(ss->multi, &left))) {
		struct s3_xfer *x;
		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
		xfer_ended(x, m->data.result);
	}
	if (ss->done)
		reap_done(ss);
}

static void start_attempt(struct s3_xfer *x)
{
	struct s3_shard *ss = x->ss;
	uint64_t now = now_ns();
	int rc;

	x->state = XF_RUNNING;
	x->seen = 0;
	x->fail = 0;
	x->early = false;
	x->cur = 0;
	for (unsigned i = 0; i < x->nreads; i++)
		x->reads[i]->got = 0;
	x->errbuf[0] = '\0';
	x->resp.len = 0;
	rc = s3_prepare(ss->u, x->e, "GET", x->sf->key, NULL, 0, x->range,
			x->deadline > now ? x->deadline - now : 1, &x->resp, &x->hdrs);
	if (rc) {
		xfer_finish(x, rc);
		return;
	}
	curl_easy_setopt(x->e, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(x->e, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(x->e, CURLOPT_PRIVATE, x);
	curl_easy_setopt(x->e, CURLOPT_ERRORBUFFER, x->errbuf);
	if (curl_multi_add_handle(ss->multi, x->e) != CURLM_OK)
		xfer_finish(x, -EIO);
}

static void finish_empty(struct shard_timer *t)
{
	xfer_finish(container_of(t, struct s3_xfer, timer), 0);
}

static void xfer_activate(struct s3_shard *ss, struct s3_xfer *x)
{
	x->next = ss->active;
	if (ss->active)
		ss->active->prev = x;
	ss->active = x;
}

static int cmp_xfer(const void *a, const void *b)
{
	const struct s3_xfer *x = *(struct s3_xfer *const *)a, *y = *(struct s3_xfer *const *)b;

	if (x->sf != y->sf)
		return (uintptr_t)x->sf < (uintptr_t)y->sf ? -1 : 1;
	return x->off < y->off ? -1 : x->off > y->off;
}

/* The reads that came this turn: contiguous ones are merged, then started. */
static void flush_pending(struct shard_timer *t)
{
	struct s3_shard *ss = container_of(t, struct s3_shard, flush);
	unsigned n = ss->npending, m = 0;
	struct s3_xfer **v = malloc(n * sizeof(*v)), *x;

	if (!v) {
		/* Start them one by one, as they came. */
		while ((x = ss->pending)) {
			ss->pending = x->next;
			x->next = NULL;
			xfer_activate(ss, x);
			start_attempt(x);
		}
		ss->npending = 0;
		return;
	}
	for (x = ss->pending; x; x = x->next)
		v[m++] = x;
	ss->pending = NULL;
	ss->npending = 0;
	qsort(v, m, sizeof(*v), cmp_xfer);
	for (unsigned i = 0; i < m; i++) {
		x = v[i];
		while (i + 1 < m && v[i + 1]->sf == x->sf && v[i + 1]->off == x->off + x->len &&
		       x->nreads < XFER_MAX_READS && x->len + v[i + 1]->len <= XFER_MAX_BYTES) {
			struct s3_xfer *y = v[++i];
			x->reads[x->nreads++] = y->reads[0];
			x->len += y->len;
			if (ss->nidle < ARRAY_SIZE(ss->idle))
				ss->idle[ss->nidle++] = y->e;   /* y took it from there */
			else
				curl_easy_cleanup(y->e);
			free(y);
		}
		x->next = NULL;
		snprintf(x->range, sizeof(x->range), "bytes=%llu-%llu", (unsigned long long)x->off,
			 (unsigned long long)(x->off + x->len - 1));
		xfer_activate(ss, x);
		start_attempt(x);
	}
	free(v);
}

int s3_read(struct ufs_read *r)
{
	struct s3_file *sf = container_of(r->file, struct s3_file, f);
	struct s3_shard *ss = shard_state(sf->u);
	struct s3_xfer *x;

	if (!ss || !ss->multi)
		return ss ? -EIO : -ENOMEM;
	x = calloc(1, sizeof(*x));
	if (!x)
		return -ENOMEM;
	x->reads[0] = r;
	x->nreads = 1;
	x->sf = sf;
	x->ss = ss;
	x->deadline = now_ns() + ss->u->timeout_ns;
	r->got = 0;
	if (r->off >= sf->size) {
		/* Past the end the listing gave: nothing to fetch, but complete later. */
		r->len = 0;
		xfer_activate(ss, x);
		x->state = XF_BACKOFF;
		shard_timer_arm(&x->timer, 0, finish_empty);
		return 0;
	}
	r->len = (size_t)MIN((uint64_t)r->len, sf->size - r->off);
	x->off = r->off;
	x->len = r->len;
	x->e = ss->nidle ? ss->idle[--ss->nidle] : curl_easy_init();
	if (!x->e) {
		free(x);
		return -ENOMEM;
	}
	x->state = XF_RUNNING;
	x->next = ss->pending;
	ss->pending = x;
	if (!ss->npending++)
		shard_timer_arm(&ss->flush, 0, flush_pending);
	return 0;
}

void s3_shard_stop(struct ufs *u)
{
	struct s3_shard *ss = shard_self() ? u->shards[shard_id(shard_self())] : NULL;

	if (!ss || !ss->multi)
		return;
	while (ss->pending) {
		struct s3_xfer *x = ss->pending;
		ss->pending = x->next;
		x->next = NULL;
		xfer_activate(ss, x);
		x->state = XF_BACKOFF;     /* not in the multi handle */
		xfer_finish(x, -EIO);
	}
	ss->npending = 0;
	while (ss->active) {
		struct s3_xfer *x = ss->active;
		if (x->state == XF_RUNNING)
			curl_multi_remove_handle(ss->multi, x->e);
		xfer_finish(x, -EIO);
	}
	for (unsigned i = 0; i < ss->nidle; i++)
		curl_easy_cleanup(ss->idle[i]);
	ss->nidle = 0;
	curl_multi_cleanup(ss->multi);
	ss->multi = NULL;
	ss->timer_on = false;
	/* Polls still armed hold their sockets open; the loop waits for them. */
	for (struct csock *cs = ss->socks; cs; cs = cs->next) {
		cs->dead = true;
		sock_cancel(cs);
	}
}

void s3_io_fini(struct ufs *u)
{
	for (unsigned i = 0; i < S3_MAX_SHARDS; i++) {
		struct s3_shard *ss = u->shards[i];
		if (!ss)
			continue;
		if (ss->multi)
			curl_multi_cleanup(ss->multi);
		while (ss->socks) {
			struct csock *cs = ss->socks;
			ss->socks = cs->next;
			free(cs);
		}
		while (ss->done) {
			struct s3_xfer *x = ss->done;
			ss->done = x->next;
			free(x);
		}
		for (unsigned j = 0; j < ss->nidle; j++)
			curl_easy_cleanup(ss->idle[j]);
		free(ss);
	}
}
