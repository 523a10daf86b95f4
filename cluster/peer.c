/*
 * The peer fetcher: a page missing here whose stripe another member owns
 * is asked of that member's page server, on the shard's own HTTP client
 * (curl multi on the shard's ring: nothing blocks). The answer must come
 * within peer_timeout, be the whole page and match its X-Cachefs-Digest;
 * anything else, and the engine reads the source. An owner that must
 * fetch the page itself says so within the timeout (202) and is then
 * waited for as long as the source would be, since its fetch is the one
 * the whole cluster shares. A member that cannot be reached, or failed
 * PEER_DOWN_AFTER times in a row, is skipped for PEER_BACKOFF_NS, so
 * while a node is dead (its lease not yet expired) readers pay its
 * timeout a few times, not at every page; one slow answer from a busy
 * owner costs only its page (read from the source: a second copy of it),
 * not two seconds of its stripes.
 */
#include "config.h"
#include "cluster/cluster_i.h"
#include "core/http.h"
#include "core/log.h"
#include "core/util.h"
#include "iostore/pgkey.h"

#include <curl/curl.h>
#include <stdarg.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define PEER_BACKOFF_NS 2000000000ULL
#define PEER_DOWN_AFTER 3         /* failures in a row that mark a reachable member down */
#define PEER_HEALTH 256           /* members' health slots, by name hash */
#define PEER_MAX_CONNS 256        /* per shard: a read-ahead window's pages are in flight at once */

static struct http_pool *pool;
static atomic_bool stopping;
/* When each member (by its name's hash) may be asked again; 0: now. Any shard, and the membership thread. */
static _Atomic uint64_t down_until[PEER_HEALTH];
/* Its failures since its last answer; the same. Shards racing may blur a count by one: a hint, not a tally. */
static atomic_uint failed_in_a_row[PEER_HEALTH];
static struct log_limit failures_logged;
/* How long an owner that said it is fetching is waited for: the source's timeout. */
static uint64_t fetch_timeout_ns;

/* One page asked of its owner; the submitting shard's until finish(). */
struct peer_io {
	struct http_req req;
	struct epeer_fetch *pf;
	uint64_t want;                 /* bytes the answer must have */
	bool patient;                  /* the owner said it is fetching: asked again, waiting for it */
	unsigned slot;
	char member[PL_NAME_MAX];
};

__attribute__((format(printf, 2, 3)))
static void peer_log(const struct peer_io *io, const char *fmt, ...)
{
	uint64_t n;
	char why[512];
	va_list ap;

	if (!log_limit_pass(&failures_logged, &n))
		return;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	log_warn("peer %s: page %" PRIu64 " of %s: %s; read from the source instead%s", io->member,
		 io->pf->index, io->pf->path, why, n ? " (and other pages since the last message)" : "");
}

static int prepare(void *ctx, const char *method, const char *range, char **url, struct curl_slist **hdrs)
{
	struct peer_io *io = ctx;
	struct epeer_fetch *pf = io->pf;
	char *path = curl_easy_escape(NULL, pf->path, 0), *etag = curl_easy_escape(NULL, pf->etag, 0);
	char h[64];                  /* the Range header */
	struct curl_slist *l = NULL, *t;
	int rc = -ENOMEM;

	if (!path || !etag)
		goto out;
	if (asprintf(url, "http://%s/v1/read?path=%s&id=%016" PRIx64 "&version=%016" PRIx64 "&size=%" PRIu64
		     "&etag=%s&peer=1%s", io->member, path, pf->fid, pf->version, pf->size, etag,
		     io->patient ? "" : "&soon=1") < 0) {
		*url = NULL;
		goto out;
	}
	if (!(t = cluster_auth(l)))
		goto out_url;
	l = t;
	snprintf(h, sizeof(h), "Range: bytes=%" PRIu64 "-%" PRIu64, pf->off, pf->off + io->want - 1);
	if (!(t = curl_slist_append(l, h)))
		goto out_url;
	*hdrs = t;
	rc = 0;
	goto out;
out_url:
	curl_slist_free_all(l);
	free(*url);
	*url = NULL;
out:
	curl_free(path);
	curl_free(etag);
	return rc;
}

static void finish(struct peer_io *io, int res)
{
	struct epeer_fetch *pf = io->pf;

	if (res < 0) {
		/* Not reachable at all (refused, reset): down now; else after a few in a row. */
		bool unreachable = res == -ECONNREFUSED || res == -EHOSTDOWN;
		atomic_fetch_add_explicit(&cluster.peer_failures, 1, memory_order_relaxed);
		if (atomic_fetch_add(&failed_in_a_row[io->slot], 1) + 1 >= PEER_DOWN_AFTER || unreachable) {
			atomic_store(&failed_in_a_row[io->slot], 0);
			atomic_store(&down_until[io->slot], now_ns() + PEER_BACKOFF_NS);
		}
	} else {
		atomic_store_explicit(&failed_in_a_row[io->slot], 0, memory_order_relaxed);
		atomic_fetch_add_explicit(&cluster.sent_bytes, (uint64_t)res, memory_order_relaxed);
	}
	free(io->req.resp.body);   /* an error body, if any */
	free(io);
	pf->done(pf, res);
}

static void answered(struct http_req *r, int rc)
{
	struct peer_io *io = container_of(r, struct peer_io, req);
	const struct http_resp *a = &r->resp;
	char want[40];

	if (rc) {
		peer_log(io, "%s", r->err[0] ? r->err : strerror(-rc));
		finish(io, rc);
		return;
	}
	if (a->status == 202 && !io->patient) {
		/* Alive and fetching from the source for the cluster: wait for it as for the source. */
		free(r->resp.body);        /* http_submit starts a new answer */
		io->patient = true;
		r->deadline_ns = now_ns() + fetch_timeout_ns;
		http_submit(pool, r);
		return;
	}
	if (a->status != 206 && a->status != 200) {
		peer_log(io, "HTTP %ld%s%.200s", a->status, a->body ? ": " : "", a->body ? a->body : "");
		finish(io, -EIO);
		return;
	}
	if (a->len != io->want) {
		peer_log(io, "%zu bytes, not %" PRIu64, a->len, io->want);
		finish(io, -EIO);
		return;
	}
	snprintf(want, sizeof(want), "xxh3:%016llx", (unsigned long long)XXH3_64bits(io->pf->buf, a->len));
	if (strcmp(want, a->digest)) {
		/* Wrong bytes, or no proof: never served. */
		atomic_fetch_add_explicit(&cluster.peer_corrupt, 1, memory_order_relaxed);
		peer_log(io, "the bytes do not match their digest (%s, computed %s): counted as corrupt",
			 a->digest[0] ? a->digest : "none sent", want);
		finish(io, -EIO);
		return;
	}
	finish(io, (int)a->len);
}

/* engine_peers.fetch, on the calling shard. */
static int fetch(void *arg, struct epeer_fetch *pf)
{
	struct placement *pl = placement_get();
	struct peer_io *io;
	unsigned owner, slot;
	int self;

	if (!pl || atomic_load_explicit(&stopping, memory_order_relaxed) || pf->off >= pf->size)
		return -ENOENT;
	self = placement_self(pl);
	owner = placement_owner(pl, pf->fid, pf->off / PAGE_STRIPE_BYTES);
	if ((int)owner == self)
		return -ENOENT;
	slot = (unsigned)(placement_hash(pl, owner) % PEER_HEALTH);
	if (atomic_load_explicit(&down_until[slot], memory_order_relaxed) > now_ns()) {
		atomic_fetch_add_explicit(&cluster.peer_skipped, 1, memory_order_relaxed);
		return -EHOSTDOWN;
	}
	if (!(io = calloc(1, sizeof(*io))))
		return -ENOMEM;
	io->pf = pf;
	io->slot = slot;
	io->want = MIN((uint64_t)pf->len, pf->size - pf->off);
	snprintf(io->member, sizeof(io->member), "%s", placement_name(pl, owner));
	io->req.method = "GET";
	io->req.prepare = prepare;
	io->req.ctx = io;
	io->req.kind = 0;
	/* Into the page itself: no buffer to grow, no copy after. On a failure the source overwrites it. */
	io->req.sink = pf->buf;
	io->req.sink_len = io->want;
	io->req.done = answered;
	io->req.deadline_ns = now_ns() + secs_to_ns(cluster.o.peer_timeout);
	atomic_fetch_add_explicit(&cluster.sent_requests, 1, memory_order_relaxed);
	http_submit(pool, &io->req);
	return 0;
}

const struct engine_peers peers_fetcher = { .fetch = fetch };

int peers_create(uint64_t source_timeout_ns, char *err, size_t errlen)
{
	struct http_pool_opts po = { .name = "peer", .max_conns = PEER_MAX_CONNS, .retries = 0,
				     .timeout_ns = secs_to_ns(cluster.o.peer_timeout) };
	int rc = http_pool_create(&pool, &po);

	if (rc)
		snprintf(err, errlen, "peer client: %s", strerror(-rc));
	atomic_store(&stopping, false);
	fetch_timeout_ns = source_timeout_ns;
	return rc;
}

void peers_forget_failures(void)
{
	for (unsigned i = 0; i < PEER_HEALTH; i++) {
		atomic_store_explicit(&down_until[i], 0, memory_order_relaxed);
		atomic_store_explicit(&failed_in_a_row[i], 0, memory_order_relaxed);
	}
}

void peers_shard_stop(void *arg)
{
	atomic_store(&stopping, true);
	if (pool)
		http_pool_shard_stop(pool);
}

void peers_destroy(void)
{
	if (pool)
		http_pool_destroy(pool);
	pool = NULL;
}
