/*
 * S3 driver: setup, signed requests and the retry policy. Metadata lives in
 * s3_meta.c, data reads on the shard loops in s3_io.c.
 */
#include "config.h"
#include "ufs/s3_i.h"
#include "core/log.h"
#include "core/util.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#define BODY_MAX (16u << 20)

uint64_t s3_version(const char *etag, uint64_t size)
{
	return mix64(XXH3_64bits(etag, strlen(etag)) ^ mix64(size + 1));
}

int s3_errno(long status)
{
	switch (status) {
	case 404: return -ENOENT;
	case 401:
	case 403: return -EACCES;
	default: return -EIO;
	}
}

enum s3_outcome s3_classify(CURLcode cc, long status)
{
	switch (cc) {
	case CURLE_OK:
		if (status >= 200 && status < 300)
			return S3_OK;
		/* 5xx, SlowDown (503) and throttling (429), request timeout (408). */
		return status >= 500 || status == 429 || status == 408 ? S3_RETRY : S3_FAIL;
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
		return S3_RETRY;
	default:
		return S3_FAIL;
	}
}

void s3_count_retry(struct ufs *u, CURLcode cc, long status)
{
	enum ufs_retry_cause c = UFS_RETRY_CONNECTION;

	if (cc == CURLE_OPERATION_TIMEDOUT || (cc == CURLE_OK && status == 408))
		c = UFS_RETRY_TIMEOUT;
	else if (cc == CURLE_OK && (status == 429 || status == 503))
		c = UFS_RETRY_THROTTLED;
	else if (cc == CURLE_OK)
		c = UFS_RETRY_SERVER;
	atomic_fetch_add_explicit(&u->retried[c], 1, memory_order_relaxed);
}

void s3_counters(struct ufs *u, struct ufs_counters *out)
{
	for (unsigned i = 0; i < UFS_REQ_KINDS; i++)
		out->requests[i] += atomic_load_explicit(&u->requests[i], memory_order_relaxed);
	for (unsigned i = 0; i < UFS_RETRY_CAUSES; i++)
		out->retries[i] += atomic_load_explicit(&u->retried[i], memory_order_relaxed);
	out->failed += atomic_load_explicit(&u->failed, memory_order_relaxed);
}

uint64_t s3_backoff_ns(unsigned attempt)
{
	/* 50 ms doubling, capped at 2 s; "equal jitter": half fixed, half random. */
	uint64_t base = 50000000ULL << MIN(attempt - 1, 10u);
	uint64_t r;

	base = MIN(base, 2000000000ULL);
	r = mix64(now_ns() ^ (uint64_t)pthread_self());
	return base / 2 + r % (base / 2 + 1);
}

/* Header lines of every response; a new status line starts afresh. */
static size_t on_header(char *line, size_t size, size_t n, void *arg)
{
	struct s3_resp *r = arg;
	size_t len = size * n, vlen;
	const char *colon, *v;

	if (len > 5 && !strncmp(line, "HTTP/", 5)) {
		const char *sp = memchr(line, ' ', len);
		r->status = sp ? strtol(sp + 1, NULL, 10) : 0;
		r->etag[0] = r->region[0] = r->last_modified[0] = '\0';
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
	else if (IS("content-length")) {
		r->length = strtoull(v, NULL, 10);
		r->has_length = true;
	}
#undef IS
#undef COPY
	return len;
}

int s3_prepare(struct ufs *u, CURL *e, const char *method, const char *key,
	       const struct sigv4_param *q, unsigned nq, const char *range,
	       uint64_t timeout_ns, struct s3_resp *resp, struct curl_slist **hdrs)
{
	char path[3 * 1024 + 256], query[4096], date[17], auth[512], *url;
	struct sigv4_header h[5];
	struct curl_slist *l = NULL;
	unsigned nh = 0;
	size_t plen;
	int rc;

	*hdrs = NULL;
	plen = (size_t)snprintf(path, sizeof(path), "%s", u->path_base);
	if (*key || !*u->path_base) {
		path[plen++] = '/';
		rc = sigv4_uri_encode(path + plen, sizeof(path) - plen, key, 1);
		if (rc < 0)
			return rc;
	}
	rc = sigv4_query(query, sizeof(query), q, nq);
	if (rc < 0)
		return rc;
	if (asprintf(&url, "%s%s%s%s", u->url_base, path + strlen(u->path_base), *query ? "?" : "", query) < 0)
		return -ENOMEM;

	sigv4_amz_date(u->fixed_time ? u->fixed_time : time(NULL), date);
	h[nh++] = (struct sigv4_header){ "host", u->host };
	if (range)
		h[nh++] = (struct sigv4_header){ "range", range };
	h[nh++] = (struct sigv4_header){ "x-amz-content-sha256", SIGV4_UNSIGNED };
	h[nh++] = (struct sigv4_header){ "x-amz-date", date };
	if (u->creds.session_token[0])
		h[nh++] = (struct sigv4_header){ "x-amz-security-token", u->creds.session_token };
	if (u->creds.access_key[0]) {
		struct sigv4_key k = { u->creds.access_key, u->creds.secret_key, u->creds.region, "s3" };
		rc = sigv4_sign(&k, method, path, query, h, nh, SIGV4_UNSIGNED, date, auth, sizeof(auth));
		if (rc) {
			free(url);
			return rc;
		}
	} else {
		nh = range ? 2 : 1;   /* anonymous: Host and Range only */
	}
	for (unsigned i = 0; i < nh; i++) {
		char line[4200];
		snprintf(line, sizeof(line), "%s: %s", h[i].name, h[i].value);
		l = curl_slist_append(l, line);
	}
	if (u->creds.access_key[0]) {
		char line[540];
		snprintf(line, sizeof(line), "Authorization: %s", auth);
		l = curl_slist_append(l, line);
	}
	l = curl_slist_append(l, "Expect:");
	if (!l) {
		free(url);
		return -ENOMEM;
	}

	curl_easy_reset(e);
	memset(resp, 0, offsetof(struct s3_resp, body));
	curl_easy_setopt(e, CURLOPT_URL, url);
	free(url);   /* curl copies it */
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, l);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "cachefs/" PACKAGE_VERSION);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)MAX(timeout_ns / 1000000, 1));
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)MAX(MIN(timeout_ns, 10000000000ULL) / 1000000, 1));
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, resp);
	curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 512L * 1024);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	if (u->ca_bundle[0])
		curl_easy_setopt(e, CURLOPT_CAINFO, u->ca_bundle);
	if (!strcmp(method, "HEAD"))
		curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	*hdrs = l;
	atomic_fetch_add_explicit(&u->requests[!strcmp(method, "HEAD") ? UFS_REQ_HEAD :
					       *key ? UFS_REQ_GET : UFS_REQ_LIST], 1, memory_order_relaxed);
	return 0;
}

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
	struct s3_resp *r = arg;
	size_t len = size * n;

	if (r->len + len > BODY_MAX)
		return 0;
	if (r->len + len + 1 > r->cap) {
		size_t cap = MAX(r->cap * 2, r->len + len + 4096);
		char *b = realloc(r->body, cap);
		if (!b)
			return 0;
		r->body = b;
		r->cap = cap;
	}
	memcpy(r->body + r->len, data, len);
	r->len += len;
	r->body[r->len] = '\0';
	return len;
}

static CURL *pool_get(struct ufs *u)
{
	CURL *e = NULL;

	pthread_mutex_lock(&u->pool_lock);
	if (u->npool)
		e = u->pool[--u->npool];
	pthread_mutex_unlock(&u->pool_lock);
	return e ? e : curl_easy_init();
}

static void pool_put(struct ufs *u, CURL *e)
{
	pthread_mutex_lock(&u->pool_lock);
	if (u->npool < S3_POOL) {
		u->pool[u->npool++] = e;
		e = NULL;
	}
	pthread_mutex_unlock(&u->pool_lock);
	if (e)
		curl_easy_cleanup(e);
}

int s3_perform(struct ufs *u, const char *method, const char *key, const struct sigv4_param *q,
	       unsigned nq, struct s3_resp *resp, char *err, size_t errlen)
{
	uint64_t deadline = now_ns() + u->timeout_ns;
	char cerr[CURL_ERROR_SIZE];
	CURL *e = pool_get(u);
	CURLcode cc = CURLE_OK;
	int rc = 0;

	if (!e)
		return -ENOMEM;
	for (unsigned attempt = 0;; attempt++) {
		struct curl_slist *hdrs;
		uint64_t now = now_ns(), wait;

		resp->len = 0;
		rc = s3_prepare(u, e, method, key, q, nq, NULL, deadline > now ? deadline - now : 1,
				resp, &hdrs);
		if (rc)
			break;
		cerr[0] = '\0';
		curl_easy_setopt(e, CURLOPT_ERRORBUFFER, cerr);
		curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
		curl_easy_setopt(e, CURLOPT_WRITEDATA, resp);
		cc = curl_easy_perform(e);
		curl_slist_free_all(hdrs);
		if (cc == CURLE_OK)
			curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &resp->status);
		if (s3_classify(cc, resp->status) != S3_RETRY)
			break;
		wait = s3_backoff_ns(attempt + 1);
		if (attempt >= u->retries || now_ns() + wait >= deadline)
			break;
		s3_count_retry(u, cc, resp->status);
		log_debug("s3 %s %s/%s: %s; retry %u in %llu ms", method, u->bucket, key,
			  cc ? curl_easy_strerror(cc) : "server error", attempt + 1,
			  (unsigned long long)(wait / 1000000));
		struct timespec ts = { (time_t)(wait / 1000000000ULL), (long)(wait % 1000000000ULL) };
		nanosleep(&ts, NULL);
	}
	pool_put(u, e);
	if (rc)
		return rc;
	if (cc != CURLE_OK) {
		snprintf(err, errlen, "%s: %s", u->endpoint, cerr[0] ? cerr : curl_easy_strerror(cc));
		atomic_fetch_add_explicit(&u->failed, 1, memory_order_relaxed);
		return -EIO;   /* what a reader should see; err says why */
	}
	return 0;
}

int s3_list_page(struct ufs *u, const char *prefix, unsigned max_keys, const char *token,
		 struct s3_resp *resp, char *err, size_t errlen)
{
	char mk[16];
	const struct sigv4_param q[] = {
		{ "list-type", "2" }, { "prefix", prefix }, { "delimiter", "/" }, { "max-keys", mk },
		{ "continuation-token", token },
	};

	snprintf(mk, sizeof(mk), "%u", max_keys);
	return s3_perform(u, "GET", "", q, *token ? 5 : 4, resp, err, errlen);
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
		snprintf(err, errlen, "invalid S3 URL '%s': expected s3://BUCKET[/PREFIX] with a bucket name "
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

static int setup_endpoint(struct ufs *u, const struct cachefs_config *cfg, char *err, size_t errlen)
{
	char def[128];
	const char *ep = cfg->endpoint, *auth;
	size_t schemelen;
	bool path_style;
	char *a;

	if (!*ep) {
		snprintf(def, sizeof(def), "https://s3.%s.amazonaws.com", u->creds.region);
		ep = def;
	}
	if (strncmp(ep, "http://", 7) && strncmp(ep, "https://", 8)) {
		snprintf(err, errlen, "invalid endpoint '%s': expected http://HOST[:PORT] or https://HOST[:PORT]", ep);
		return -EINVAL;
	}
	schemelen = (size_t)(strstr(ep, "://") - ep) + 3;
	auth = ep + schemelen;
	a = strndup(auth, strcspn(auth, "/"));
	if (!a)
		return -ENOMEM;
	if (!*a) {
		free(a);
		snprintf(err, errlen, "invalid endpoint '%s': no host", ep);
		return -EINVAL;
	}
	path_style = cfg->s3_addressing == S3_ADDR_PATH ||
		     (cfg->s3_addressing == S3_ADDR_AUTO && (*cfg->endpoint || strchr(u->bucket, '.')));
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
	struct s3_resp r = { 0 };
	char why[512];
	int rc = s3_list_page(u, u->prefix, 1, "", &r, why, sizeof(why));

	if (rc) {
		snprintf(err, errlen, "cannot reach the object store for bucket %s: %s", u->bucket, why);
		goto out;
	}
	if (r.status == 200)
		goto out;
	s3_error_text(&r, why, sizeof(why));
	rc = s3_errno(r.status);
	if (r.status == 301 || (r.status == 400 && (r.region[0] || strstr(why, "region")))) {
		char reg[64] = "";
		snprintf(reg, sizeof(reg), "%s", r.region[0] ? r.region : "");
		snprintf(err, errlen, "bucket %s is not in region %s (%s)%s%s", u->bucket, u->creds.region, why,
			 reg[0] ? "; mount with -o region=" : "", reg);
		rc = -EINVAL;
	} else if (r.status == 404) {
		snprintf(err, errlen, "bucket %s does not exist at %s (%s)", u->bucket, u->endpoint, why);
	} else if (r.status == 403 || r.status == 401) {
		snprintf(err, errlen, "access denied to bucket %s with credentials from %s (%s)", u->bucket,
			 u->creds.from, why);
	} else {
		snprintf(err, errlen, "listing bucket %s at %s failed: %s", u->bucket, u->endpoint, why);
	}
out:
	free(r.body);
	return rc;
}

int s3_common_init(struct ufs *u, const struct cachefs_config *cfg, char *err, size_t errlen)
{
	const char *ca = cfg->ca_bundle[0] ? cfg->ca_bundle : getenv("AWS_CA_BUNDLE");

	curl_global_init(CURL_GLOBAL_DEFAULT);
	pthread_mutex_init(&u->pool_lock, NULL);
	pthread_mutex_init(&u->meta_lock, NULL);
	if (cfg->timeout <= 0) {
		snprintf(err, errlen, "timeout=0 would fail every request; give seconds, such as 30");
		return -EINVAL;
	}
	u->retries = cfg->retries;
	u->max_conns = cfg->s3_max_connections;
	u->list_max_keys = cfg->s3_list_max_keys;
	u->timeout_ns = (uint64_t)(cfg->timeout * 1e9);
	u->ttl_ns = (uint64_t)(cfg->dir_cache_ttl * 1e9);
	u->uid = getuid();
	u->gid = getgid();
	u->mount_ns = (uint64_t)time(NULL) * 1000000000ULL;
	snprintf(u->ca_bundle, sizeof(u->ca_bundle), "%s", ca ? ca : "");
	if (u->ca_bundle[0] && access(u->ca_bundle, R_OK) < 0) {
		snprintf(err, errlen, "CA bundle %s: %s", u->ca_bundle, strerror(errno));
		return -EINVAL;
	}
	return s3_meta_init(u);
}

void s3_common_fini(struct ufs *u)
{
	if (u->mounted) {
		struct ufs_counters c = { 0 };
		uint64_t retried = 0;
		s3_counters(u, &c);
		for (unsigned i = 0; i < UFS_RETRY_CAUSES; i++)
			retried += c.retries[i];
		log_info("%s %s: %llu GET, %llu HEAD, %llu LIST requests; %llu retried, %llu failed",
			 u->drv, u->root, (unsigned long long)c.requests[UFS_REQ_GET],
			 (unsigned long long)c.requests[UFS_REQ_HEAD],
			 (unsigned long long)c.requests[UFS_REQ_LIST], (unsigned long long)retried,
			 (unsigned long long)c.failed);
	}
	s3_io_fini(u);
	s3_meta_fini(u);
	for (unsigned i = 0; i < u->npool; i++)
		curl_easy_cleanup(u->pool[i]);
	creds_wipe(&u->creds);
	pthread_mutex_destroy(&u->pool_lock);
	pthread_mutex_destroy(&u->meta_lock);
	free(u->root);
	free(u->bucket);
	free(u->prefix);
	free(u->url_base);
	free(u->path_base);
	free(u->host);
	free(u->endpoint);
	free(u);
}

static int s3_init(struct ufs **out, const char *source, const struct cachefs_config *cfg,
		   char *err, size_t errlen)
{
	struct ufs *u = calloc(1, sizeof(*u));
	int rc;

	if (!u)
		return -ENOMEM;
	u->drv = "s3";
	rc = s3_common_init(u, cfg, err, errlen);
	if (!rc)
		rc = parse_source(u, source, err, errlen);
	if (!rc)
		rc = creds_resolve(cfg, u->bucket, &u->creds, err, errlen);
	if (!rc)
		rc = setup_endpoint(u, cfg, err, errlen);
	if (!rc)
		rc = probe(u, err, errlen);
	if (rc) {
		if (rc == -ENOMEM && !*err)
			snprintf(err, errlen, "out of memory");
		s3_common_fini(u);
		return rc;
	}
	log_info("s3://%s/%s at %s (%s, region %s), credentials from %s", u->bucket, u->prefix, u->endpoint,
		 *u->path_base ? "path-style" : "virtual-hosted", u->creds.region, u->creds.from);
	u->mounted = true;
	*out = u;
	return 0;
}

int s3_open(struct ufs *u, const char *path, struct ufs_file **out)
{
	struct s3_file *sf = calloc(1, sizeof(*sf));
	struct ufs_stat st;
	int rc;

	if (!sf)
		return -ENOMEM;
	rc = s3_stat_etag(u, path, &st, sf->etag);
	if (!rc && S_ISDIR(st.mode))
		rc = -EISDIR;
	if (!rc && asprintf(&sf->key, "%s%s", u->prefix, path) < 0)
		rc = -ENOMEM;
	if (rc) {
		free(sf);
		return rc;
	}
	sf->u = u;
	sf->size = st.size;
	sf->f.ops = u->http ? &ufs_http_ops : &ufs_s3_ops;
	sf->f.name = sf->key;
	atomic_init(&sf->f.refs, 1);
	*out = &sf->f;
	return 0;
}

void s3_release(struct ufs_file *f)
{
	struct s3_file *sf = container_of(f, struct s3_file, f);

	free(sf->key);
	free(sf);
}

int s3_statfs(struct ufs *u, struct statvfs *st)
{
	/* An object store has no size; report a large, mostly free one. */
	memset(st, 0, sizeof(*st));
	st->f_bsize = st->f_frsize = 4096;
	st->f_blocks = st->f_bfree = st->f_bavail = 1ULL << 40;
	st->f_files = st->f_ffree = 1ULL << 32;
	st->f_namemax = 1024;
	return 0;
}

const struct ufs_ops ufs_s3_ops = {
	.name = "s3",
	.init = s3_init,
	.fini = s3_common_fini,
	.stat = s3_stat,
	.list = s3_list,
	.open = s3_open,
	.release = s3_release,
	.read = s3_read,
	.statfs = s3_statfs,
	.shard_stop = s3_shard_stop,
	.counters = s3_counters,
};
