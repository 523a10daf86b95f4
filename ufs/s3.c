/*
 * S3 driver: setup, signed requests, stat and open; reads are ranged GETs
 * of open objects (object.c), listings in s3_list.c. Every request runs on
 * the calling shard's HTTP client (core/http.h), retried there.
 */
#include "config.h"
#include "ufs/s3_i.h"
#include "core/log.h"
#include "core/pool.h"
#include "core/util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

int s3_errno(long status)
{
	switch (status) {
	case 404: return -ENOENT;
	case 401:
	case 403: return -EACCES;
	default:
		/* What the retries could not mend: the source is failing. */
		return status >= 500 || status == 429 || status == 408 ? -EHOSTDOWN : -EIO;
	}
}

int s3_sign(struct ufs *u, const char *method, const char *key, const struct sigv4_param *q,
	    unsigned nq, const char *range, char **url, struct curl_slist **hdrs)
{
	return s3_sign_body(u, method, key, q, nq, range, SIGV4_UNSIGNED, NULL, 0, url, hdrs);
}

int s3_sign_body(struct ufs *u, const char *method, const char *key, const struct sigv4_param *q,
		 unsigned nq, const char *range, const char *payload, const struct sigv4_header *extra,
		 unsigned nextra, char **url, struct curl_slist **hdrs)
{
	size_t klen = strlen(key), cap = strlen(u->path_base) + 3 * klen + 2;
	char *path = malloc(cap), *query = NULL, date[17], auth[600];
	struct sigv4_header h[5 + S3_MAX_EXTRA];
	struct curl_slist *l = NULL;
	unsigned nh = 0;
	size_t plen, qcap = 64;
	int rc = -ENOMEM;

	*url = NULL;
	*hdrs = NULL;
	if (!path)
		return -ENOMEM;
	plen = (size_t)snprintf(path, cap, "%s", u->path_base);
	if (*key || !*u->path_base) {
		path[plen++] = '/';
		rc = sigv4_uri_encode(path + plen, cap - plen, key, 1);
		if (rc < 0)
			goto out;
	}
	for (unsigned i = 0; i < nq; i++)
		qcap += 3 * (strlen(q[i].name) + (q[i].value ? strlen(q[i].value) : 0)) + 2;
	rc = -ENOMEM;
	query = malloc(qcap);
	if (!query || (rc = sigv4_query(query, qcap, q, nq)) < 0)
		goto out;
	if (asprintf(url, "%s%s%s%s", u->url_base, path + strlen(u->path_base), *query ? "?" : "", query) < 0) {
		*url = NULL;
		rc = -ENOMEM;
		goto out;
	}
	sigv4_amz_date(u->fixed_time ? u->fixed_time : time(NULL), date);
	h[nh++] = (struct sigv4_header){ "host", u->host };
	if (range)
		h[nh++] = (struct sigv4_header){ "range", range };
	h[nh++] = (struct sigv4_header){ "x-amz-content-sha256", payload };
	h[nh++] = (struct sigv4_header){ "x-amz-date", date };
	if (u->creds.session_token[0])
		h[nh++] = (struct sigv4_header){ "x-amz-security-token", u->creds.session_token };
	for (unsigned i = 0; i < MIN(nextra, S3_MAX_EXTRA); i++)
		h[nh++] = extra[i];
	if (u->creds.access_key[0]) {
		struct sigv4_key k = { u->creds.access_key, u->creds.secret_key, u->creds.region, "s3" };
		rc = sigv4_sign(&k, method, path, query, h, nh, payload, date, auth, sizeof(auth));
		if (rc)
			goto out;
	} else {
		/* Anonymous: Host and Range, and what the request itself needs. */
		unsigned keep = range ? 2 : 1;
		for (unsigned i = 0; i < MIN(nextra, S3_MAX_EXTRA); i++)
			h[keep++] = extra[i];
		nh = keep;
	}
	rc = -ENOMEM;
	for (unsigned i = 0; i < nh; i++) {
		char *line;
		struct curl_slist *n;
		if (asprintf(&line, "%s: %s", h[i].name, h[i].value) < 0)
			goto out;
		n = curl_slist_append(l, line);
		free(line);
		if (!n)
			goto out;
		l = n;
	}
	if (u->creds.access_key[0]) {
		char line[640];
		struct curl_slist *n;
		snprintf(line, sizeof(line), "Authorization: %s", auth);
		if (!(n = curl_slist_append(l, line)))
			goto out;
		l = n;
	}
	*hdrs = l;
	l = NULL;
	rc = 0;
out:
	if (rc) {
		free(*url);
		*url = NULL;
	}
	curl_slist_free_all(l);
	explicit_bzero(auth, sizeof(auth));
	free(path);
	free(query);
	return rc;
}

static int object_prepare(void *ctx, const char *method, const char *range, char **url,
			  struct curl_slist **hdrs)
{
	struct obj_file *of = ctx;

	return s3_sign(container_of(of->src, struct ufs, src), method, of->key, NULL, 0, range, url, hdrs);
}

/* ---- the driver ---- */

static bool bucket_ok(const char *b, size_t n)
{
	if (!n || n > 255)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)b[i]) && b[i] != '-' && b[i] != '.' && b[i] != '_')
			return false;
	return true;
}

/* Splits "s3://bucket/prefix"; the prefix gets one trailing '/'. */
static int parse_source(struct ufs *u, const char *source, char *err, size_t errlen)
{
	const char *b = source + 5, *slash = strchr(b, '/');
	size_t blen = slash ? (size_t)(slash - b) : strlen(b);
	const char *p = slash ? slash + 1 : "";
	size_t plen = strlen(p);

	if (!bucket_ok(b, blen)) {
		msgf(err, errlen, "invalid S3 URL '%s': expected s3://BUCKET[/PREFIX] with a bucket name "
			 "of letters, digits, '-', '.' and '_'", source);
		return -EINVAL;
	}
	while (plen && p[plen - 1] == '/')
		plen--;
	u->bucket = strndup(b, blen);
	if (asprintf(&u->prefix, "%.*s%s", (int)plen, p, plen ? "/" : "") < 0)
		u->prefix = NULL;
	if (asprintf(&u->root, "s3://%.*s/", (int)blen, b) < 0)
		u->root = NULL;
	return u->bucket && u->prefix && u->root ? 0 : -ENOMEM;
}

static int setup_endpoint(struct ufs *u, const struct source_opts *o, char *err, size_t errlen)
{
	char def[128];
	const char *ep = o->endpoint, *auth;
	size_t schemelen;
	bool path_style;
	char *a;

	if (!*ep) {
		snprintf(def, sizeof(def), "https://s3.%s.amazonaws.com", u->creds.region);
		ep = def;
	}
	if (strncmp(ep, "http://", 7) && strncmp(ep, "https://", 8)) {
		msgf(err, errlen, "invalid endpoint '%s': expected http://HOST[:PORT] or https://HOST[:PORT]", ep);
		return -EINVAL;
	}
	schemelen = (size_t)(strstr(ep, "://") - ep) + 3;
	auth = ep + schemelen;
	a = strndup(auth, strcspn(auth, "/"));
	if (!a)
		return -ENOMEM;
	if (!*a) {
		free(a);
		msgf(err, errlen, "invalid endpoint '%s': no host", ep);
		return -EINVAL;
	}
	path_style = o->s3_addressing == S3_ADDR_PATH ||
		     (o->s3_addressing == S3_ADDR_AUTO && (*o->endpoint || strchr(u->bucket, '.')));
	if (path_style) {
		u->host = a;
		if (asprintf(&u->url_base, "%.*s%s/%s", (int)schemelen, ep, a, u->bucket) < 0 ||
		    asprintf(&u->path_base, "/%s", u->bucket) < 0)
			return -ENOMEM;
	} else {
		if (asprintf(&u->host, "%s.%s", u->bucket, a) < 0)
			u->host = NULL;
		free(a);
		if (!u->host || asprintf(&u->url_base, "%.*s%s", (int)schemelen, ep, u->host) < 0)
			return -ENOMEM;
		u->path_base = strdup("");
	}
	u->endpoint = strndup(ep, schemelen + strcspn(auth, "/"));
	return u->path_base && u->endpoint ? 0 : -ENOMEM;
}

/* A first request at mount, so that a wrong key, bucket or region is a mount error. */
static int probe(struct ufs *u, char *err, size_t errlen)
{
	struct http_resp r = { 0 };
	char why[512];
	int rc = s3_list_sync(u, u->prefix, 1, &r, why, sizeof(why));

	if (rc) {
		msgf(err, errlen, "cannot reach the object store for bucket %s: %s: %s", u->bucket,
			 u->endpoint, why);
		goto out;
	}
	if (r.status == 200)
		goto out;
	s3_error_text(&r, why, sizeof(why));
	rc = s3_errno(r.status);
	if (r.status == 301 || (r.status == 400 && (r.region[0] || strstr(why, "region")))) {
		struct s3_page p = { 0 };
		const char *reg = r.region;
		if (!*reg && r.len && !s3_parse_page(r.body, r.len, &p))
			reg = p.region;
		msgf(err, errlen, "bucket %s is not in region %s (%s)%s%s", u->bucket, u->creds.region, why,
			 *reg ? "; mount with -o region=" : "", reg);
		s3_page_free(&p);
		rc = -EINVAL;
	} else if (r.status == 404) {
		msgf(err, errlen, "bucket %s does not exist at %s (%s)", u->bucket, u->endpoint, why);
	} else if (r.status == 403 || r.status == 401) {
		msgf(err, errlen, "access denied to bucket %s with credentials from %s (%s)", u->bucket,
			 u->creds.from, why);
	} else {
		msgf(err, errlen, "listing bucket %s at %s failed: %s", u->bucket, u->endpoint, why);
		rc = -EIO;
	}
out:
	free(r.body);
	return rc;
}

static void s3_fini(struct ufs *u)
{
	if (u->mounted)
		obj_log_requests(&u->src, "s3");
	/* An upload left running on a metadata thread at shutdown still uses all of it. */
	if (pool_abandoned())
		return;
	s3_write_fini(u);
	pthread_mutex_destroy(&u->wlock);
	pthread_mutex_destroy(&u->buf_lock);
	pthread_cond_destroy(&u->buf_free);
	http_pool_destroy(u->src.pool);
	creds_wipe(&u->creds);
	free(u->root);
	free(u->bucket);
	free(u->prefix);
	free(u->url_base);
	free(u->path_base);
	free(u->host);
	free(u->endpoint);
	free(u);
}

static int s3_init(struct ufs **out, const char *source, const struct source_opts *o,
		   char *err, size_t errlen)
{
	const char *ca = o->ca_bundle[0] ? o->ca_bundle : getenv("AWS_CA_BUNDLE");
	struct ufs *u = calloc(1, sizeof(*u));
	int rc;

	if (!u)
		return -ENOMEM;
	pthread_mutex_init(&u->wlock, NULL);
	pthread_mutex_init(&u->buf_lock, NULL);
	pthread_cond_init(&u->buf_free, NULL);
	u->buf_max = 1;
	if (o->timeout <= 0) {
		msgf(err, errlen, "timeout=0 would fail every request; give seconds, such as 30");
		free(u);
		return -EINVAL;
	}
	if (ca && *ca && access(ca, R_OK) < 0) {
		msgf(err, errlen, "CA bundle %s: %s", ca, strerror(errno));
		free(u);
		return -EINVAL;
	}
	u->list_max_keys = o->s3_list_max_keys;
	u->ttl_ns = secs_to_ns(o->dir_cache_ttl);
	u->mount_ns = realtime_ns();
	u->src = (struct obj_source){ .ops = &ufs_s3_ops, .prepare = object_prepare, .amz_meta = true };
	obj_source_owner(&u->src, o, o->read_only);
	rc = parse_source(u, source, err, errlen);
	if (!rc) {
		struct http_pool_opts po = { .name = "s3", .max_conns = o->s3_max_connections,
					     .retries = o->retries, .timeout_ns = secs_to_ns(o->timeout),
					     .ca_bundle = ca };
		u->src.root = u->root;
		rc = http_pool_create(&u->src.pool, &po);
	}
	if (!rc)
		rc = creds_resolve(o, u->bucket, &u->creds, err, errlen);
	if (!rc)
		rc = setup_endpoint(u, o, err, errlen);
	if (!rc)
		rc = probe(u, err, errlen);
	if (!rc)
		rc = s3_write_init(u, o, err, errlen);
	if (rc) {
		if (rc == -ENOMEM && !*err)
			msgf(err, errlen, "out of memory");
		s3_fini(u);
		return rc;
	}
	log_info("s3://%s/%s at %s (%s, region %s), credentials from %s", u->bucket, u->prefix, u->endpoint,
		 *u->path_base ? "path-style" : "virtual-hosted", u->creds.region, u->creds.from);
	u->mounted = true;
	*out = u;
	return 0;
}

/* ---- stat: a HEAD of the key, and a listing of one key below it ---- */

struct stat_op {
	struct http_req head;
	struct ufs_call *c;
	char *key;
	unsigned pending;
	int head_rc, probe_rc;
	bool is_dir;
	char probe_err[700];
};

static int head_prepare(void *ctx, const char *method, const char *range, char **url,
			struct curl_slist **hdrs)
{
	struct stat_op *op = ctx;

	return s3_sign(op->c->u, method, op->key, NULL, 0, range, url, hdrs);
}

/* Both answers are in: a prefix is a directory (it shadows a same-named object). */
static void stat_finish(struct stat_op *op)
{
	struct ufs_call *c = op->c;
	struct ufs *u = c->u;
	struct http_resp *r = &op->head.resp;
	char why[640];
	int rc;

	c->ttl_ns = u->ttl_ns;
	c->asked = !op->head_rc || !op->probe_rc;
	if (!op->probe_rc && op->is_dir) {
		obj_dir_stat(&u->src, &c->st, u->mount_ns);
		c->etag[0] = '\0';
		rc = 0;
	} else if (op->head_rc) {
		ufs_call_err(c, "s3 stat %s%s: %s", u->root, op->key,
			 op->head.err[0] ? op->head.err : strerror(-op->head_rc));
		rc = op->head_rc;
	} else if (r->status == 200) {
		if (!(rc = obj_head_stat(&u->src, &c->st, op->key, r, c->err, sizeof(c->err))))
			snprintf(c->etag, sizeof(c->etag), "%s", r->etag);
		else
			log_warn("%s", c->err);
	} else if (r->status == 404) {
		/* Unless the probe could not tell whether it is a directory. */
		rc = op->probe_rc > 0 || !op->probe_rc ? -ENOENT : op->probe_rc;
		if (op->probe_rc < 0)
			ufs_call_err(c, "%s", op->probe_err);
	} else {
		snprintf(why, sizeof(why), "HTTP %ld", r->status);
		ufs_call_err(c, "s3 stat %s%s: %s", u->root, op->key, why);
		rc = s3_errno(r->status);
		if (!ufs_unavailable(rc))
			log_warn("%s", c->err);
	}
	free(r->body);
	free(op->key);
	free(op);
	c->done(c, rc);
}

static void stat_part_done(struct stat_op *op)
{
	if (!--op->pending)
		stat_finish(op);
}

static void head_done(struct http_req *r, int rc)
{
	struct stat_op *op = container_of(r, struct stat_op, head);

	op->head_rc = rc == -EFBIG ? -EIO : rc;
	stat_part_done(op);
}

static void probe_done(void *arg, int rc, bool is_dir, const char *err)
{
	struct stat_op *op = arg;

	op->probe_rc = rc;
	op->is_dir = is_dir;
	snprintf(op->probe_err, sizeof(op->probe_err), "%s", err);
	stat_part_done(op);
}

static void s3_stat(struct ufs_call *c)
{
	struct ufs *u = c->u;
	struct stat_op *op;

	c->err[0] = '\0';
	c->etag[0] = '\0';
	c->ttl_ns = u->ttl_ns;
	if (!*c->path) {
		obj_dir_stat(&u->src, &c->st, u->mount_ns);
		c->done(c, 0);
		return;
	}
	op = calloc(1, sizeof(*op));
	if (!op || asprintf(&op->key, "%s%s", u->prefix, c->path) < 0) {
		free(op);
		c->done(c, -ENOMEM);
		return;
	}
	op->c = c;
	op->head.method = "HEAD";
	op->head.prepare = head_prepare;
	op->head.ctx = op;
	op->head.kind = UFS_REQ_HEAD;
	op->head.done = head_done;
	/* Both at once: a name that is a file and a prefix is the directory. */
	op->pending = c->flags & UFS_OBJECT ? 1 : 2;
	op->probe_rc = 1;   /* not asked */
	if (!(c->flags & UFS_OBJECT))
		s3_probe_prefix(u, op->key, probe_done, op);
	http_submit(u->src.pool, &op->head);
}

/* ---- the rest of the ops ---- */

static void s3_open(struct ufs_call *c)
{
	struct ufs *u = c->u;
	char *key;

	if (ufs_writing(c->oflags)) {
		s3_open_write(c);
		return;
	}

	if (asprintf(&key, "%s%s", u->prefix, c->path) < 0) {
		c->done(c, -ENOMEM);
		return;
	}
	c->ttl_ns = u->ttl_ns;
	obj_open(&u->src, c, key);
	free(key);
}

static void s3_shard_stop(struct ufs *u)
{
	http_pool_shard_stop(u->src.pool);
}

static void s3_counters(struct ufs *u, struct http_counters *out)
{
	http_pool_counters(u->src.pool, out);
}

const struct ufs_ops ufs_s3_ops = {
	.name = "s3",
	.init = s3_init,
	.fini = s3_fini,
	.stat = s3_stat,
	.list = s3_list,
	.open = s3_open,
	.release = obj_release,
	.read = obj_read,
	.statfs = obj_statfs,
	.start = s3_write_start,
	.shard_stop = s3_shard_stop,
	.counters = s3_counters,
	.create = s3_create,
	.mkdir = s3_mkdir,
	.unlink = s3_unlink,
	.rmdir = s3_rmdir,
	.rename = s3_rename,
	.setattr = s3_setattr,
};
