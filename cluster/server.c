/*
 * The page server on -o serve=ADDR:PORT: other nodes read the pages this
 * node owns from it, and the Python client reads files, stats and lists
 * through it. Every request needs `Authorization: Bearer TOKEN` (the
 * cluster's shared token) or gets 401 and no data.
 *
 *   GET /v1/info                    {"node", "proto", "page_size", "stripe", "cluster",
 *                                   "members", "peer": traffic, "status": as cachefsctl status}
 *   GET /v1/stat?path=P             P's attributes (JSON), from the mount's namespace
 *   GET /v1/list?path=P             its entries (JSON), from the mount's namespace
 *   GET /v1/read?path=P[&id=&version=&size=&etag=][&peer=1]   bytes, Range honoured
 *   GET /v1/page?file=HEX&index=N   a page by its key (pgkey), if this node has it cached: 404 if not
 *   POST /v1/load?path=P[&path=Q...][&scope=cluster|owned|here][&parallel=N]   {"job": ID, "node"}
 *   GET /v1/load?job=ID             its progress, as cachefsctl shows it (a cluster load: every node's)
 *   POST /v1/load/cancel?job=ID     cancels it; its progress
 *
 * A read names its file by path; with id, version, size and etag (what a
 * peer knows from its own open) no source call is made before the pages
 * are looked up. peer=1 marks a peer's request: missing pages come from
 * the source, never from yet another node. soon=1 asks for an answer
 * within half of peer_timeout: 202 when the pages are still being
 * fetched, so that the asker tells a live owner from a hung one quickly
 * and then waits for the fetch (single-flight for the whole cluster). A read's answer carries
 * X-Cachefs-Digest (xxh3 of the body), which the asking node checks.
 *
 * Stats and listings go through the mount's namespace, as the FUSE mount's
 * lookups do: cached names and attributes are answered without a source
 * call while they are fresh, and while the source is down (stale_if_error).
 *
 * libmicrohttpd runs a thread per connection (at most SERVE_MAX_CONNS):
 * a request waits for the engine, and a stat or a listing for the
 * namespace or the source, without holding up the others. A read of up to SERVE_IOV_MAX
 * bytes is answered from the pinned pages themselves (an iovec response,
 * no copy); a longer one is streamed through a bounce buffer.
 */
#include "config.h"
#include "cluster/cluster_i.h"
#include "core/log.h"
#include "core/util.h"
#include "ctl/server.h"
#include "ctl/status.h"
#include "iostore/pgcache.h"
#include "iostore/pgkey.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <microhttpd.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <xxhash.h>

#define SERVE_MAX_CONNS 512
#define SERVE_IDLE_S 30
#define SERVE_IOV_MAX (16u << 20)        /* larger reads are streamed in chunks of this */

static struct MHD_Daemon *mhd;

/* ---- answers ---- */

static enum MHD_Result send_buf(struct MHD_Connection *c, unsigned status, const char *type, char *body,
				size_t len)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
	enum MHD_Result rc;

	if (!r) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, "Content-Type", type);
	if (status == MHD_HTTP_UNAUTHORIZED)
		MHD_add_response_header(r, "WWW-Authenticate", "Bearer realm=\"cachefs\"");
	rc = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return rc;
}

/* {"error": msg} with an HTTP status. */
static enum MHD_Result fail(struct MHD_Connection *c, unsigned status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static enum MHD_Result fail(struct MHD_Connection *c, unsigned status, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	json_t *o;
	char *s;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	o = json_pack("{s:s}", "error", msg);
	s = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	return s ? send_buf(c, status, "application/json", s, strlen(s)) : MHD_NO;
}

static enum MHD_Result send_json(struct MHD_Connection *c, json_t *o)
{
	char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;

	json_decref(o);
	return s ? send_buf(c, MHD_HTTP_OK, "application/json", s, strlen(s)) : MHD_NO;
}

static unsigned errno_status(int err)
{
	switch (err) {
	case -ENOENT: case -ENOTDIR: return MHD_HTTP_NOT_FOUND;
	case -EISDIR: case -EINVAL: return MHD_HTTP_BAD_REQUEST;
	case -EACCES: case -EPERM: return MHD_HTTP_FORBIDDEN;
	case -ESTALE: return MHD_HTTP_CONFLICT;       /* the object changed: stat it again */
	default: return MHD_HTTP_BAD_GATEWAY;         /* the source failed */
	}
}

/* ---- requests ---- */

/* Constant time: a guess of the token learns nothing from the answer's timing. */
static bool authorized(struct MHD_Connection *c)
{
	const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
	size_t tl = strlen(cluster.token);

	if (!h || strncmp(h, "Bearer ", 7))
		return false;
	h += 7;
	return strlen(h) == tl && !CRYPTO_memcmp(h, cluster.token, tl);
}

/* The path argument, cleaned ("" is the root); NULL when missing or not a plain path. */
static char *arg_path(struct MHD_Connection *c)
{
	const char *p = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "path");
	char *rel;
	bool dir;

	if (!p || !(rel = strdup(p)))
		return NULL;
	if (path_clean(rel, &dir)) {
		free(rel);
		return NULL;
	}
	return rel;
}

static bool arg_u64(struct MHD_Connection *c, const char *name, int base, uint64_t *out)
{
	const char *v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, name);
	char *end;

	if (!v || !*v)
		return false;
	errno = 0;
	*out = strtoull(v, &end, base);
	return !errno && !*end;
}

static const char *type_name(mode_t m)
{
	return S_ISDIR(m) ? "directory" : S_ISREG(m) ? "file" : S_ISLNK(m) ? "link" : "other";
}

static json_t *stat_json(const char *name, const struct ufs_stat *st, const char *etag)
{
	char id[20], ver[20];

	snprintf(id, sizeof(id), "%016" PRIx64, st->id);
	snprintf(ver, sizeof(ver), "%016" PRIx64, st->version);
	return json_pack("{s:s, s:s, s:I, s:I, s:i, s:s, s:s, s:s}", "name", name, "type", type_name(st->mode),
			 "size", (json_int_t)st->size, "mtime_ns", (json_int_t)st->mtime_ns,
			 "mode", (int)(st->mode & 07777), "etag", etag ? etag : "", "id", id, "version", ver);
}

static enum MHD_Result do_info(struct MHD_Connection *c, const char *path)
{
	struct placement *pl = placement_get();

	return send_json(c, json_pack("{s:s, s:i, s:I, s:I, s:s, s:i, s:o, s:o}", "node", cluster.self,
				      "proto", CLUSTER_PROTO, "page_size", (json_int_t)engine_page_size(cluster.e),
				      "stripe", (json_int_t)PAGE_STRIPE_BYTES, "cluster", cluster.o.name,
				      "members", pl ? (int)placement_count(pl) : 1, "peer", cluster_peer_json(),
				      "status", status_json(cluster.e, ctl_jobs())));
}

/* ---- a connection's thread waiting for one engine callback ---- */

struct once {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
};

static void once_init(struct once *o)
{
	pthread_mutex_init(&o->mu, NULL);
	pthread_cond_init(&o->cv, NULL);
	o->done = false;
}

static void once_done(struct once *o)
{
	pthread_mutex_lock(&o->mu);
	o->done = true;
	pthread_cond_signal(&o->cv);
	pthread_mutex_unlock(&o->mu);
}

static void once_wait(struct once *o)
{
	pthread_mutex_lock(&o->mu);
	while (!o->done)
		pthread_cond_wait(&o->cv, &o->mu);
	pthread_mutex_unlock(&o->mu);
}

static void once_destroy(struct once *o)
{
	pthread_mutex_destroy(&o->mu);
	pthread_cond_destroy(&o->cv);
}

/* ---- the namespace ---- */

/* One namespace call, waited for by this connection's thread. */
struct meta_wait {
	struct emeta m;
	struct once o;
};

static void meta_done(struct emeta *m)
{
	once_done(&container_of(m, struct meta_wait, m)->o);
}

static void meta_start(struct meta_wait *w)
{
	memset(&w->m, 0, sizeof(w->m));
	once_init(&w->o);
	w->m.done = meta_done;
}

/* Waits for the call; its error. */
static int meta_end(struct meta_wait *w)
{
	once_wait(&w->o);
	once_destroy(&w->o);
	return w->m.err;
}

#define ROOT_INO 1

/* Lets go of the lookup reference ns_walk took. */
static void ns_put(uint64_t ino)
{
	if (ino != ROOT_INO)
		engine_forget(cluster.e, ino, 1);
}

/*
 * path's inode (a lookup reference the caller drops with ns_put), its
 * attributes and tag (read together): a component at a time from the root,
 * as the kernel walks a path through the FUSE mount.
 */
static int ns_walk(const char *path, uint64_t *ino, struct ufs_stat *st, char *etag)
{
	char *copy = strdup(path), *save = NULL;
	struct meta_wait w;
	uint64_t at = ROOT_INO;
	int rc = 0;

	if (!copy)
		return -ENOMEM;
	for (char *name = strtok_r(copy, "/", &save); name && !rc; name = strtok_r(NULL, "/", &save)) {
		meta_start(&w);
		engine_lookup(cluster.e, at, name, &w.m);
		rc = meta_end(&w);
		ns_put(at);
		at = rc ? ROOT_INO : w.m.ino;
	}
	free(copy);
	if (rc)
		return rc;
	engine_attr(cluster.e, at, st, etag);
	*ino = at;
	return 0;
}

/* path's attributes and tag from the namespace. */
static int ns_stat(const char *path, struct ufs_stat *st, char *etag)
{
	uint64_t ino;
	int rc = ns_walk(path, &ino, st, etag);

	if (!rc)
		ns_put(ino);
	return rc;
}

static enum MHD_Result do_stat(struct MHD_Connection *c, const char *path)
{
	char etag[UFS_ETAG_MAX];
	struct ufs_stat st;
	int rc = ns_stat(path, &st, etag);

	if (rc)
		return fail(c, errno_status(rc), "%s: %s", path, strerror(-rc));
	return send_json(c, stat_json(path, &st, etag));
}

static enum MHD_Result do_list(struct MHD_Connection *c, const char *path)
{
	char etag[UFS_ETAG_MAX];
	struct meta_wait w;
	struct ufs_stat st;
	uint64_t ino;
	json_t *a;
	int rc = ns_walk(path, &ino, &st, etag);

	if (rc)
		return fail(c, errno_status(rc), "%s: %s", path, strerror(-rc));
	meta_start(&w);
	engine_opendir(cluster.e, ino, &w.m);
	rc = meta_end(&w);
	ns_put(ino);
	if (rc)
		return fail(c, errno_status(rc), "%s: %s", path, strerror(-rc));
	if ((a = json_array())) {
		for (size_t i = 0; i < edir_count(w.m.dir); i++) {
			const struct edir_ent *ent = edir_get(w.m.dir, i);
			if (json_array_append_new(a, stat_json(ent->name, &ent->st, ent->etag))) {
				json_decref(a);
				a = NULL;
				break;
			}
		}
	}
	engine_closedir(cluster.e, w.m.dir);
	if (!a)
		return fail(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "%s: %s", path, strerror(ENOMEM));
	return send_json(c, json_pack("{s:o}", "entries", a));
}

/* ---- reads ---- */

/*
 * One engine read, waited for by this connection's thread, for at most
 * a while when the asker wants to know soon: a waiter that gives up
 * leaves the read to finish (its fetches fill the cache) and be released
 * by its callback.
 */
struct wait_read {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct eread *r;
	bool abandoned;
	unsigned refs;            /* the waiter's and the callback's, under mu */
};

static void wait_unref(struct wait_read *w)
{
	bool last;

	pthread_mutex_lock(&w->mu);
	last = --w->refs == 0;
	pthread_mutex_unlock(&w->mu);
	if (last) {
		pthread_mutex_destroy(&w->mu);
		pthread_cond_destroy(&w->cv);
		free(w);
	}
}

static void read_done(struct eread *r)
{
	struct wait_read *w = r->arg;
	bool abandoned;

	pthread_mutex_lock(&w->mu);
	w->r = r;
	abandoned = w->abandoned;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
	if (abandoned)
		eread_release(r);
	wait_unref(w);
}

/*
 * The read of [off, off + len) of f: its eread (pages pinned), or NULL
 * with *err; -EAGAIN when `patience_ns` (0: no limit) ran out first.
 */
static struct eread *read_wait(struct efile *f, uint64_t off, size_t len, uint64_t patience_ns, int *err)
{
	struct wait_read *w = calloc(1, sizeof(*w));
	struct eread *r;
	struct timespec ts;
	int rc;

	if (!w) {
		*err = -ENOMEM;
		return NULL;
	}
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	w->refs = 2;
	if ((rc = engine_read(cluster.e, f, off, len, read_done, w))) {
		w->refs = 1;
		wait_unref(w);
		*err = rc;
		return NULL;
	}
	realtime_after(&ts, patience_ns);
	pthread_mutex_lock(&w->mu);
	while (!w->r) {
		if (!patience_ns)
			pthread_cond_wait(&w->cv, &w->mu);
		else if (pthread_cond_timedwait(&w->cv, &w->mu, &ts) == ETIMEDOUT && !w->r) {
			w->abandoned = true;
			break;
		}
	}
	r = w->r;
	pthread_mutex_unlock(&w->mu);
	wait_unref(w);
	if (!r) {
		*err = -EAGAIN;
		return NULL;
	}
	if (r->err) {
		*err = r->err;
		eread_release(r);
		return NULL;
	}
	return r;
}

struct held_read {
	struct eread *r;
	struct efile *f;
};

static void held_free(void *cls)
{
	struct held_read *h = cls;

	if (h->r)
		eread_release(h->r);
	efile_put(h->f);
	free(h);
}

/* A streamed answer: chunks read one after another, copied into libmicrohttpd's buffer. */
struct stream {
	struct efile *f;
	uint64_t off, end;
	struct eread *r;        /* the chunk in hand */
	uint64_t r_off, r_len;
};

static void stream_free(void *cls)
{
	struct stream *s = cls;

	if (s->r)
		eread_release(s->r);
	efile_put(s->f);
	free(s);
}

static ssize_t stream_fill(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct stream *s = cls;
	uint64_t at = s->off + pos;
	size_t done = 0;
	int err;

	if (at >= s->end)
		return MHD_CONTENT_READER_END_OF_STREAM;
	if (!s->r || at < s->r_off || at >= s->r_off + s->r_len) {
		if (s->r)
			eread_release(s->r);
		s->r_off = at;
		s->r_len = MIN((uint64_t)SERVE_IOV_MAX, s->end - at);
		if (!(s->r = read_wait(s->f, s->r_off, s->r_len, 0, &err)))
			return MHD_CONTENT_READER_END_WITH_ERROR;
	}
	/* Copy from the chunk's iovec, skipping what was sent. */
	uint64_t skip = at - s->r_off;
	for (unsigned i = 0; i < s->r->niov && done < max; i++) {
		size_t l = s->r->iov[i].iov_len;
		if (skip >= l) {
			skip -= l;
			continue;
		}
		size_t n = MIN(l - skip, max - done);
		memcpy(buf + done, (char *)s->r->iov[i].iov_base + skip, n);
		done += n;
		skip = 0;
	}
	if (!done)
		return MHD_CONTENT_READER_END_WITH_ERROR;   /* the file ended early: the source shrank it */
	return (ssize_t)done;
}

/* "bytes=A-B" or "bytes=A-" against a file of `size` bytes. 0, -ERANGE (416) or -EINVAL (ignored). */
static int parse_range(const char *h, uint64_t size, uint64_t *off, uint64_t *end)
{
	char *p;
	uint64_t a, b;

	if (strncmp(h, "bytes=", 6) || !(h[6] >= '0' && h[6] <= '9'))
		return -EINVAL;    /* suffix and other forms: the whole file, as RFC 9110 allows */
	a = strtoull(h + 6, &p, 10);
	if (*p != '-')
		return -EINVAL;
	if (p[1] == '\0') {
		b = size ? size - 1 : 0;
	} else {
		b = strtoull(p + 1, &p, 10);
		if (*p || b < a)
			return -EINVAL;
	}
	if (a >= size)
		return -ERANGE;
	*off = a;
	*end = MIN(b + 1, size);
	return 0;
}

/*
 * A peer asking for a page of a stripe this node owns asks for the
 * stripe's other pages too (its read-ahead sent them all), one request
 * each, in whatever order its connections deliver them. The first of them
 * fetches the whole stripe, so the cluster pays one source GET per stripe
 * instead of one per page; the others join that fetch. A random reader
 * costs the owner up to a stripe (4 MiB) per page it asks for.
 */
static void prefetch_stripe(struct efile *f, const char *range, uint64_t size)
{
	uint64_t off = 0, end;

	if (range && !parse_range(range, size, &off, &end))
		engine_prefetch_stripe(f, off);
}

/* The file a read names: from what the asker knows, or from the namespace. */
static int open_file(struct MHD_Connection *c, const char *path, struct efile **out, char *etag)
{
	struct ufs_stat st = { 0 };
	const char *et = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "etag");
	int rc;

	if (arg_u64(c, "id", 16, &st.id) && arg_u64(c, "version", 16, &st.version) &&
	    arg_u64(c, "size", 10, &st.size) && et) {
		st.mode = S_IFREG | 0444;
		snprintf(etag, UFS_ETAG_MAX, "%s", et);
	} else if ((rc = ns_stat(path, &st, etag))) {
		return rc;
	} else if (!S_ISREG(st.mode)) {
		return S_ISDIR(st.mode) ? -EISDIR : -EINVAL;
	}
	return engine_src_open(cluster.e, path, &st, etag, out);
}

static void add_file_headers(struct MHD_Response *r, const struct efile *f, const char *etag)
{
	uint64_t fid, version;
	char v[24];

	efile_identity(f, &fid, &version);
	if (etag[0])
		MHD_add_response_header(r, MHD_HTTP_HEADER_ETAG, etag);
	snprintf(v, sizeof(v), "%016" PRIx64, fid);
	MHD_add_response_header(r, "X-Cachefs-Id", v);
	snprintf(v, sizeof(v), "%016" PRIx64, version);
	MHD_add_response_header(r, "X-Cachefs-Version", v);
	MHD_add_response_header(r, MHD_HTTP_HEADER_ACCEPT_RANGES, "bytes");
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/octet-stream");
}

/*
 * The answer for [off, end) of f from its pinned pages, with their digest;
 * it holds f from then on (its free callback lets go of both). NULL with
 * *err, f still the caller's; -EAGAIN when patience ran out first.
 */
static struct MHD_Response *pinned_answer(struct efile *f, uint64_t off, uint64_t end, uint64_t patience,
					  int *err)
{
	struct held_read *h = calloc(1, sizeof(*h));
	struct MHD_IoVec iov[SERVE_IOV_MAX / 4096 + 2];
	XXH3_state_t *xs = XXH3_createState();
	struct MHD_Response *resp = NULL;
	uint64_t got = 0;
	unsigned n = 0;
	char v[40];

	if (!h || !xs) {
		*err = -ENOMEM;
		goto out;
	}
	if (end > off && !(h->r = read_wait(f, off, end - off, patience, err)))
		goto out;
	XXH3_64bits_reset(xs);
	for (; h->r && n < h->r->niov && n < ARRAY_SIZE(iov); n++) {
		iov[n].iov_base = h->r->iov[n].iov_base;
		iov[n].iov_len = h->r->iov[n].iov_len;
		XXH3_64bits_update(xs, iov[n].iov_base, iov[n].iov_len);
		got += iov[n].iov_len;
	}
	if (got != end - off) {
		*err = -EIO;    /* the source's object is shorter than its listing said */
		goto out;
	}
	h->f = f;
	if (!(resp = MHD_create_response_from_iovec(iov, n, held_free, h))) {
		h->f = NULL;
		*err = -ENOMEM;
		goto out;
	}
	snprintf(v, sizeof(v), "xxh3:%016llx", (unsigned long long)XXH3_64bits_digest(xs));
	MHD_add_response_header(resp, "X-Cachefs-Digest", v);
	h = NULL;
out:
	if (h && h->r)
		eread_release(h->r);
	free(h);
	XXH3_freeState(xs);
	return resp;
}

/* The answer for [off, end) of f, read and sent a chunk at a time; it holds f. NULL: out of memory. */
static struct MHD_Response *streamed_answer(struct efile *f, uint64_t off, uint64_t end)
{
	struct stream *s = calloc(1, sizeof(*s));
	struct MHD_Response *resp;

	if (!s)
		return NULL;
	s->f = f;
	s->off = off;
	s->end = end;
	if (!(resp = MHD_create_response_from_callback(end - off, 256 << 10, stream_fill, s, stream_free)))
		free(s);
	return resp;
}

static enum MHD_Result do_read(struct MHD_Connection *c, const char *path)
{
	const char *range = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_RANGE);
	const char *peer = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "peer");
	const char *soon = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "soon");
	/* soon=1: answer within half the peer timeout, with 202 when the pages are still coming. */
	uint64_t patience = soon && !strcmp(soon, "1") ? MAX(secs_to_ns(cluster.o.peer_timeout) / 2, 1) : 0;
	char etag[UFS_ETAG_MAX] = "", v[96];
	struct MHD_Response *resp = NULL;
	struct efile *f = NULL;
	uint64_t size, off = 0, end;
	unsigned status = MHD_HTTP_OK;
	enum MHD_Result ret;
	int rc;

	if (!path[0])
		return fail(c, MHD_HTTP_BAD_REQUEST, "want path=P, a file from the mount's root");
	if ((rc = open_file(c, path, &f, etag)))
		return fail(c, errno_status(rc), "%s: %s", path, strerror(-rc));
	size = efile_size(f);
	if (peer && !strcmp(peer, "1")) {
		efile_set_local_only(f);
		prefetch_stripe(f, range, size);
	}
	end = size;
	if (range && (rc = parse_range(range, size, &off, &end)) == 0) {
		status = MHD_HTTP_PARTIAL_CONTENT;
	} else if (range && rc == -ERANGE) {
		snprintf(v, sizeof(v), "bytes */%" PRIu64, size);
		efile_put(f);
		resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
		if (!resp)
			return MHD_NO;
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_RANGE, v);
		ret = MHD_queue_response(c, MHD_HTTP_RANGE_NOT_SATISFIABLE, resp);
		MHD_destroy_response(resp);
		return ret;
	}
	if (end - off <= SERVE_IOV_MAX)
		resp = pinned_answer(f, off, end, patience, &rc);
	else if (!(resp = streamed_answer(f, off, end)))
		rc = -ENOMEM;
	if (!resp) {
		efile_put(f);
		if (rc == -EAGAIN)   /* being fetched: the asker comes back with more patience */
			return fail(c, MHD_HTTP_ACCEPTED, "the pages are being fetched; ask again");
		return fail(c, errno_status(rc), "%s: %s", path, strerror(-rc));
	}
	add_file_headers(resp, f, etag);   /* f lives as long as the response */
	if (status == MHD_HTTP_PARTIAL_CONTENT) {
		snprintf(v, sizeof(v), "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, off, end - 1, size);
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_RANGE, v);
	}
	atomic_fetch_add_explicit(&cluster.served_bytes, end - off, memory_order_relaxed);
	ret = MHD_queue_response(c, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* ---- a page by its key ---- */

struct page_wait {
	struct page_op op;
	struct once o;
};

static void page_got(struct page_op *op)
{
	once_done(&container_of(op, struct page_wait, op)->o);
}

static void page_wait_free(void *cls)
{
	struct page_wait *w = cls;

	page_op_release(&w->op);
	once_destroy(&w->o);
	free(w);
}

/* From the RAM tier or the SSD store, never the source (no file is named to fetch it from). */
static enum MHD_Result do_page(struct MHD_Connection *c, const char *path)
{
	struct page_wait *w;
	struct pgkey k;
	struct MHD_Response *resp;
	struct MHD_IoVec iov;
	enum MHD_Result ret;
	char v[40];

	if (!arg_u64(c, "file", 16, &k.file) || !arg_u64(c, "index", 10, &k.index))
		return fail(c, MHD_HTTP_BAD_REQUEST, "want file=HEX (a page key's file, X-Cachefs-Id) and index=N");
	if (!(w = calloc(1, sizeof(*w))))
		return MHD_NO;
	once_init(&w->o);
	page_op_init_key(&w->op, cluster.e, PGOP_LOAD, &k, engine_page_size(cluster.e));
	w->op.done = page_got;
	page_op_submit(&w->op);
	once_wait(&w->o);
	if (w->op.res < 0) {
		int err = (int)w->op.res;
		page_wait_free(w);
		return err == -ENOENT ? fail(c, MHD_HTTP_NOT_FOUND, "page %" PRIx64 "/%" PRIu64 " is not cached here",
					     k.file, k.index) :
					fail(c, errno_status(err), "page: %s", strerror(-err));
	}
	iov.iov_base = page_data(w->op.pg);
	iov.iov_len = page_len(w->op.pg);
	if (!(resp = MHD_create_response_from_iovec(&iov, 1, page_wait_free, w))) {
		page_wait_free(w);
		return MHD_NO;
	}
	snprintf(v, sizeof(v), "xxh3:%016llx", (unsigned long long)XXH3_64bits(iov.iov_base, iov.iov_len));
	MHD_add_response_header(resp, "X-Cachefs-Digest", v);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/octet-stream");
	atomic_fetch_add_explicit(&cluster.served_bytes, iov.iov_len, memory_order_relaxed);
	ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* ---- loads ---- */

#define LOAD_MAX_PATHS 64

struct path_args {
	char *p[LOAD_MAX_PATHS];
	unsigned n;
	bool bad;
};

static enum MHD_Result collect_path(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	struct path_args *a = cls;
	char *rel;
	bool dir;

	if (strcmp(key, "path"))
		return MHD_YES;
	if (a->n == LOAD_MAX_PATHS || !value || !(rel = strdup(value))) {
		a->bad = true;
		return MHD_NO;
	}
	if (path_clean(rel, &dir)) {
		free(rel);
		a->bad = true;
		return MHD_NO;
	}
	a->p[a->n++] = rel;
	return MHD_YES;
}

static enum MHD_Result send_job(struct MHD_Connection *c, bool cancel)
{
	uint64_t id;
	json_t *o;

	if (!ctl_jobs())
		return fail(c, MHD_HTTP_SERVICE_UNAVAILABLE, "this node runs no jobs (no control server)");
	if (!arg_u64(c, "job", 10, &id) || !id || id > UINT32_MAX)
		return fail(c, MHD_HTTP_BAD_REQUEST, "want job=ID");
	if (!(o = jobs_json_of(ctl_jobs(), (unsigned)id, cancel)))
		return fail(c, MHD_HTTP_NOT_FOUND, "no job %" PRIu64 " here (finished long ago?)", id);
	return send_json(c, o);
}

static enum MHD_Result do_load(struct MHD_Connection *c, const char *method)
{
	const char *scope = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "scope");
	struct path_args a = { 0 };
	struct job_spec s = { .kind = CTL_JOB_LOAD, .source_paths = true, .parallel = 16, .scope = JOB_CLUSTER };
	uint64_t parallel;
	struct job *j;
	char err[256];

	if (!ctl_jobs())
		return fail(c, MHD_HTTP_SERVICE_UNAVAILABLE, "this node runs no jobs (no control server)");
	if (strcmp(method, "POST"))
		return send_job(c, false);
	if (arg_u64(c, "parallel", 10, &parallel)) {
		if (!parallel || parallel > CTL_MAX_PARALLEL)
			return fail(c, MHD_HTTP_BAD_REQUEST, "parallel: 1 to %d", CTL_MAX_PARALLEL);
		s.parallel = (unsigned)parallel;
	}
	if (scope && !strcmp(scope, "owned"))
		s.scope = JOB_OWNED;
	else if (scope && !strcmp(scope, "here"))
		s.scope = JOB_HERE;
	else if (scope && strcmp(scope, "cluster"))
		return fail(c, MHD_HTTP_BAD_REQUEST, "scope: cluster, owned or here");
	MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, collect_path, &a);
	if (a.bad || !a.n) {
		for (unsigned i = 0; i < a.n; i++)
			free(a.p[i]);
		return fail(c, MHD_HTTP_BAD_REQUEST, "want path=P (1 to %d of them), plain paths from the mount's root",
			    LOAD_MAX_PATHS);
	}
	s.paths = (const char *const *)a.p;
	s.n = a.n;
	j = jobs_start(ctl_jobs(), &s, err, sizeof(err));
	for (unsigned i = 0; i < a.n; i++)
		free(a.p[i]);
	if (!j)
		return fail(c, MHD_HTTP_SERVICE_UNAVAILABLE, "%s", err);
	return send_json(c, json_pack("{s:I, s:s}", "job", (json_int_t)job_id(j), "node", cluster.self));
}

static enum MHD_Result do_load_cancel(struct MHD_Connection *c, const char *method)
{
	return send_job(c, true);
}

/* 405, with the methods the resource takes (RFC 9110 wants them said). */
static enum MHD_Result not_allowed(struct MHD_Connection *c, const char *allow)
{
	static const char body[] = "{\"error\":\"method not allowed here\"}";
	struct MHD_Response *r = MHD_create_response_from_buffer(sizeof(body) - 1, (void *)body,
								 MHD_RESPMEM_PERSISTENT);
	enum MHD_Result rc;

	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, "Content-Type", "application/json");
	MHD_add_response_header(r, "Allow", allow);
	rc = MHD_queue_response(c, MHD_HTTP_METHOD_NOT_ALLOWED, r);
	MHD_destroy_response(r);
	return rc;
}

/* Methods a route takes. */
enum { GET = 1, POST = 2 };

static const struct route {
	const char *url;
	enum MHD_Result (*run)(struct MHD_Connection *c, const char *arg);
	bool path;               /* takes path=P, cleaned, as arg; else arg is the method */
	unsigned methods;
} routes[] = {
	{ "/v1/read", do_read, true, GET },
	{ "/v1/stat", do_stat, true, GET },
	{ "/v1/list", do_list, true, GET },
	{ "/v1/info", do_info, false, GET },
	{ "/v1/page", do_page, false, GET },
	{ "/v1/load", do_load, false, GET | POST },
	{ "/v1/load/cancel", do_load_cancel, false, POST },
};

static enum MHD_Result answer(void *cls, struct MHD_Connection *c, const char *url, const char *method,
			      const char *version, const char *upload, size_t *upload_len, void **state)
{
	if (!*state) {
		/*
		 * The headers are in. Answer at the next call: a response queued
		 * at the first one is an early answer to libmicrohttpd, which then
		 * closes the connection (Connection: close on every answer).
		 */
		*state = c;
		return MHD_YES;
	}
	if (*upload_len)
		return fail(c, MHD_HTTP_BAD_REQUEST, "no request here takes a body");
	atomic_fetch_add_explicit(&cluster.served_requests, 1, memory_order_relaxed);
	if (!authorized(c)) {
		atomic_fetch_add_explicit(&cluster.unauthorized, 1, memory_order_relaxed);
		return fail(c, MHD_HTTP_UNAUTHORIZED, "this page server wants the cluster's token "
			    "(Authorization: Bearer TOKEN)");
	}
	for (unsigned i = 0; i < ARRAY_SIZE(routes); i++) {
		unsigned m = !strcmp(method, "GET") || !strcmp(method, "HEAD") ? GET : !strcmp(method, "POST") ? POST : 0;
		char *path;
		enum MHD_Result rc;
		if (strcmp(url, routes[i].url))
			continue;
		if (!(m & routes[i].methods))
			return not_allowed(c, routes[i].methods == POST ? "POST" : routes[i].methods == GET ?
					   "GET, HEAD" : "GET, HEAD, POST");
		if (!routes[i].path)
			return routes[i].run(c, method);
		if (!(path = arg_path(c)))
			return fail(c, MHD_HTTP_BAD_REQUEST, "want path=P, a plain path from the mount's root");
		rc = routes[i].run(c, path);
		free(path);
		return rc;
	}
	return fail(c, MHD_HTTP_NOT_FOUND, "this page server answers /v1/info, stat, list, read, page, load and "
		    "load/cancel");
}

/* ---- life ---- */

int pserve_start(char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	unsigned len;

	if (parse_sockaddr(cluster.o.serve, &ss, &len)) {
		snprintf(err, errlen, "serve=%s: want ADDR:PORT", cluster.o.serve);
		return -EINVAL;
	}
	mhd = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
			       MHD_USE_POLL | MHD_USE_ERROR_LOG | (ss.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0),
			       0, NULL, NULL, answer, NULL,
			       MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
			       MHD_OPTION_CONNECTION_LIMIT, (unsigned)SERVE_MAX_CONNS,
			       MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)SERVE_IDLE_S,
			       MHD_OPTION_THREAD_STACK_SIZE, (size_t)(512 << 10),
			       MHD_OPTION_END);
	if (!mhd) {
		snprintf(err, errlen, "serve=%s: cannot listen there (in use?)", cluster.o.serve);
		return -EADDRINUSE;
	}
	log_info("page server on http://%s/v1/ (cluster %s)", cluster.o.serve, cluster.o.name);
	return 0;
}

void pserve_stop(void)
{
	if (mhd)
		MHD_stop_daemon(mhd);
	mhd = NULL;
}
