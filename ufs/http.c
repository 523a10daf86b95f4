/*
 * HTTP(S) sources, read-only: `cachefs https://host/dir/ MNT -o manifest=F`.
 * A web server cannot list a directory in a form worth parsing, so the
 * files come from a manifest the user names: one line per file,
 *
 *     PATH [TAB SIZE [TAB ETAG]]
 *
 * relative to the source URL ("find . -type f -printf '%P\t%s\n'" writes
 * one). The manifest becomes an index of directories at mount; lines with
 * a size answer stat and readdir without a request, lines without one are
 * sized by HEAD. Reads are ranged GETs of open objects (object.c),
 * unsigned. A URL that names one file mounts a directory holding just that
 * file, with no manifest.
 */
#include "config.h"
#include "core/http.h"
#include "core/log.h"
#include "core/util.h"
#include "ufs/object.h"
#include "ufs/sigv4.h"
#include "ufs/ufs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>

/* One manifest line (or a directory made from the paths). */
struct mentry {
	char *name;
	struct ufs_stat st;
	char *etag;               /* the line's ETag, checked on every response; NULL if none */
	bool need_head;           /* no size in the manifest: stat by HEAD */
};

/* One directory of the index. */
struct mdir {
	char *path;               /* "" for the root */
	struct mentry *ents;      /* sorted by name once loaded */
	size_t n, cap;
	struct mdir *next;        /* hash chain */
};

/* Built at mount, read-only afterwards: any shard reads it without a lock. */
struct ufs {
	char *root;               /* "https://host/dir/": names in messages */
	char *url_base;           /* "https://host/dir" */
	char *endpoint;           /* "https://host" */
	struct obj_source src;
	uint64_t ttl_ns;          /* dir_cache_ttl, for what HEAD answered */
	uint64_t mount_ns;
	struct mdir **dirs;
	size_t nbuckets;
	bool mounted;
};

/* ---- requests ---- */

/* URL of `key` (a path below the source URL) and a Range header. */
static int url_of(struct ufs *u, const char *key, const char *range, char **url, struct curl_slist **hdrs)
{
	size_t cap = 3 * strlen(key) + 1;
	char *enc = malloc(cap), *line = NULL;
	int rc = enc ? sigv4_uri_encode(enc, cap, key, 1) : -ENOMEM;

	*hdrs = NULL;
	if (rc >= 0 && asprintf(url, "%s/%s", u->url_base, enc) < 0)
		rc = -ENOMEM;
	free(enc);
	if (rc < 0)
		return rc;
	if (range && (asprintf(&line, "Range: %s", range) < 0 || !(*hdrs = curl_slist_append(NULL, line)))) {
		free(line);
		free(*url);
		*url = NULL;
		return -ENOMEM;
	}
	free(line);
	return 0;
}

static int object_prepare(void *ctx, const char *method, const char *range, char **url,
			  struct curl_slist **hdrs)
{
	struct obj_file *of = ctx;

	return url_of(container_of(of->src, struct ufs, src), of->key, range, url, hdrs);
}

/* A HEAD or GET of one path. */
struct path_req {
	struct http_req r;
	struct ufs *u;
	const char *key;
};

static int path_prepare(void *ctx, const char *method, const char *range, char **url,
			struct curl_slist **hdrs)
{
	struct path_req *pr = ctx;

	return url_of(pr->u, pr->key, range, url, hdrs);
}

static void path_req_init(struct path_req *pr, struct ufs *u, const char *method, const char *key,
			  unsigned kind)
{
	pr->u = u;
	pr->key = key;
	pr->r.method = method;
	pr->r.prepare = path_prepare;
	pr->r.ctx = pr;
	pr->r.kind = kind;
}

/* What a HEAD answered: attributes, or -errno with a line in err. */
static int head_result(struct ufs *u, const char *key, int rc, const struct http_req *r,
		       struct ufs_stat *st, char *etag, char *err, size_t errlen)
{
	const struct http_resp *resp = &r->resp;

	if (rc) {
		msgf(err, errlen, "http stat %s%s: %s", u->root, key, r->err[0] ? r->err : strerror(-rc));
		return rc == -EFBIG ? -EIO : rc;
	}
	if (resp->status == 404 || resp->status == 410)
		return -ENOENT;
	if (resp->status != 200) {
		msgf(err, errlen, "http stat %s%s: HTTP %ld", u->root, key, resp->status);
		return resp->status >= 500 || resp->status == 429 ? -EHOSTDOWN :
		       resp->status == 401 || resp->status == 403 ? -EACCES : -EIO;
	}
	if ((rc = obj_head_stat(&u->src, st, key, resp, err, errlen)))
		return rc;
	snprintf(etag, UFS_ETAG_MAX, "%s", resp->etag);
	return 0;
}

/* ---- the index ---- */

static struct mdir **dir_slot(struct ufs *u, const char *path)
{
	struct mdir **p = &u->dirs[XXH3_64bits(path, strlen(path)) & (u->nbuckets - 1)];

	while (*p && strcmp((*p)->path, path))
		p = &(*p)->next;
	return p;
}

static struct mdir *dir_find(struct ufs *u, const char *path)
{
	return *dir_slot(u, path);
}

static struct mentry *dir_add(struct mdir *d, const char *name)
{
	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 16;
		struct mentry *n = realloc(d->ents, cap * sizeof(*n));
		if (!n)
			return NULL;
		d->ents = n;
		d->cap = cap;
	}
	memset(&d->ents[d->n], 0, sizeof(d->ents[0]));
	d->ents[d->n].name = strdup(name);
	return d->ents[d->n].name ? &d->ents[d->n++] : NULL;
}

/* The directory at path, created with its parents (each listed in its own parent). */
static struct mdir *dir_make(struct ufs *u, const char *path)
{
	struct mdir **slot = dir_slot(u, path), *d, *parent;
	const char *slash;
	char *ppath;

	if (*slot)
		return *slot;
	d = calloc(1, sizeof(*d));
	if (!d || !(d->path = strdup(path))) {
		free(d);
		return NULL;
	}
	*slot = d;
	if (!*path)
		return d;
	slash = strrchr(path, '/');
	ppath = strndup(path, slash ? (size_t)(slash - path) : 0);
	parent = ppath ? dir_make(u, ppath) : NULL;
	free(ppath);
	struct mentry *e = parent ? dir_add(parent, slash ? slash + 1 : path) : NULL;
	if (!e)
		return NULL;
	obj_dir_stat(&u->src, &e->st, u->mount_ns);
	return d;
}

static int cmp_mentry(const void *a, const void *b)
{
	return strcmp(((const struct mentry *)a)->name, ((const struct mentry *)b)->name);
}

/* Sorts every directory; a name twice is a mistake unless both are directories. */
static int index_done(struct ufs *u, char *dup, size_t duplen)
{
	for (size_t b = 0; b < u->nbuckets; b++)
		for (struct mdir *d = u->dirs[b]; d; d = d->next) {
			size_t w = 0;
			if (d->n)
				qsort(d->ents, d->n, sizeof(*d->ents), cmp_mentry);
			for (size_t i = 0; i < d->n; i++) {
				struct mentry *e = &d->ents[i];
				if (w && !strcmp(d->ents[w - 1].name, e->name)) {
					if (!S_ISDIR(e->st.mode) || !S_ISDIR(d->ents[w - 1].st.mode)) {
						snprintf(dup, duplen, "%s%s%s", d->path, *d->path ? "/" : "", e->name);
						return -EEXIST;
					}
					free(e->name);
					continue;
				}
				d->ents[w++] = *e;
			}
			d->n = w;
		}
	return 0;
}

static struct mentry *entry_find(struct ufs *u, const char *path)
{
	const char *slash = strrchr(path, '/');
	char *ppath = strndup(path, slash ? (size_t)(slash - path) : 0);
	struct mdir *d = ppath ? dir_find(u, ppath) : NULL;
	struct mentry key = { .name = (char *)(slash ? slash + 1 : path) };

	free(ppath);
	return d && d->n ? bsearch(&key, d->ents, d->n, sizeof(*d->ents), cmp_mentry) : NULL;
}

/* ---- the manifest ---- */

/* The manifest's bytes: a local file, or a path relative to the source URL. */
static int fetch_manifest(struct ufs *u, const char *name, char **body, size_t *len, char *version,
			  uint64_t *mtime_ns, char *err, size_t errlen)
{
	if (name[0] == '/') {
		FILE *f = fopen(name, "r");
		struct stat st;
		char buf[65536];
		size_t n, cap = 0;

		if (!f || fstat(fileno(f), &st) < 0) {
			msgf(err, errlen, "manifest %s: %s", name, strerror(errno));
			if (f)
				fclose(f);
			return -EINVAL;
		}
		*body = NULL;
		*len = 0;
		while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
			if (*len + n + 1 > cap) {
				char *b = realloc(*body, cap = (*len + n + 1) * 2);
				if (!b) {
					fclose(f);
					free(*body);
					return -ENOMEM;
				}
				*body = b;
			}
			memcpy(*body + *len, buf, n);
			*len += n;
		}
		if (ferror(f)) {
			msgf(err, errlen, "manifest %s: %s", name, strerror(errno));
			fclose(f);
			free(*body);
			return -EIO;
		}
		fclose(f);
		snprintf(version, UFS_ETAG_MAX, "%lld.%09ld:%lld", (long long)st.st_mtim.tv_sec,
			 st.st_mtim.tv_nsec, (long long)st.st_size);
		*mtime_ns = (uint64_t)st.st_mtim.tv_sec * 1000000000ULL + (uint64_t)st.st_mtim.tv_nsec;
		return 0;
	}

	struct path_req pr = { 0 };
	int rc;

	path_req_init(&pr, u, "GET", name, UFS_REQ_GET);
	pr.r.body_max = 256u << 20;
	rc = http_perform(u->src.pool, &pr.r);
	if (rc) {
		msgf(err, errlen, "manifest %s%s: %s", u->root, name, pr.r.err[0] ? pr.r.err : strerror(-rc));
		return ufs_unavailable(rc) ? -EIO : -EINVAL;
	}
	if (pr.r.resp.status != 200) {
		msgf(err, errlen, "manifest %s%s: HTTP %ld", u->root, name, pr.r.resp.status);
		free(pr.r.resp.body);
		return -EINVAL;
	}
	*body = pr.r.resp.body;
	*len = pr.r.resp.len;
	snprintf(version, UFS_ETAG_MAX, "%s", pr.r.resp.etag[0] ? pr.r.resp.etag : pr.r.resp.last_modified);
	*mtime_ns = (uint64_t)MAX(curl_getdate(pr.r.resp.last_modified, NULL), 0) * 1000000000ULL;
	return 0;
}

/* One manifest line into the index. The manifest's version versions lines without an ETag. */
static int add_line(struct ufs *u, const char *name, unsigned lineno, char *line, const char *version,
		    uint64_t mtime_ns, unsigned *files, char *err, size_t errlen)
{
	char *f[3] = { line, NULL, NULL }, *path;
	unsigned nf = 1;
	uint64_t size = 0;
	bool dir;

	for (char *t = strchr(line, '\t'); t && nf < 3; t = strchr(t + 1, '\t')) {
		*t = '\0';
		f[nf++] = t + 1;
	}
	path = f[0][0] == '.' && f[0][1] == '/' ? f[0] + 2 : f[0];   /* find's "./x" */
	if (path_clean(path, &dir) || !*path) {
		msgf(err, errlen, "manifest %s line %u: '%s' is not a relative path without '.' or '..' parts",
			 name, lineno, f[0]);
		return -EINVAL;
	}
	if (f[1] && (dir || parse_uint(f[1], 0, UINT64_MAX, &size))) {
		msgf(err, errlen, "manifest %s line %u: size '%s' of %s is not a number of bytes%s", name,
			 lineno, f[1], path, dir ? " (a directory has no size)" : "");
		return -EINVAL;
	}
	if (f[2] && strlen(f[2]) >= UFS_ETAG_MAX) {
		msgf(err, errlen, "manifest %s line %u: ETag of %s is longer than %d bytes", name, lineno,
			 path, UFS_ETAG_MAX - 1);
		return -EINVAL;
	}
	for (const char *c = path; *c; c += strcspn(c, "/") + (c[strcspn(c, "/")] ? 1 : 0))
		if (strcspn(c, "/") > 255) {
			msgf(err, errlen, "manifest %s line %u: %s has a name longer than 255 bytes", name,
				 lineno, path);
			return -EINVAL;
		}
	if (dir)
		return dir_make(u, path) ? 0 : -ENOMEM;

	const char *slash = strrchr(path, '/');
	char *ppath = strndup(path, slash ? (size_t)(slash - path) : 0);
	struct mdir *d = ppath ? dir_make(u, ppath) : NULL;
	struct mentry *e = d ? dir_add(d, slash ? slash + 1 : path) : NULL;

	free(ppath);
	if (!e || (f[2] && !(e->etag = strdup(f[2]))))
		return -ENOMEM;
	/* No ETag: a new manifest may mean new bytes, so its version stands in. */
	obj_file_stat(&u->src, &e->st, path, size, mtime_ns, f[2] ? f[2] : version);
	e->need_head = !f[1];
	(*files)++;
	return 0;
}

static int load_manifest(struct ufs *u, const char *name, char *err, size_t errlen)
{
	char version[UFS_ETAG_MAX], *body = NULL, *line, *next, dup[1100];
	uint64_t mtime_ns = 0;
	size_t len = 0;
	unsigned lineno = 0, files = 0;
	int rc = fetch_manifest(u, name, &body, &len, version, &mtime_ns, err, errlen);

	if (rc)
		return rc;
	body = body ? body : strdup("");
	if (!body)
		return -ENOMEM;
	body[len] = '\0';
	if (memchr(body, '\0', len)) {
		msgf(err, errlen, "manifest %s is not text (it holds NUL bytes)", name);
		free(body);
		return -EINVAL;
	}
	if (!dir_make(u, ""))
		rc = -ENOMEM;
	for (line = body; !rc && line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		lineno++;
		line[strcspn(line, "\r")] = '\0';
		if (*line && *line != '#')
			rc = add_line(u, name, lineno, line, version, mtime_ns, &files, err, errlen);
	}
	free(body);
	if (!rc)
		rc = index_done(u, dup, sizeof(dup));
	if (rc == -EEXIST)
		msgf(err, errlen, "manifest %s names %s twice (or as both a file and a directory)", name, dup);
	if (!rc)
		log_info("http %s: manifest %s lists %u files", u->root, name, files);
	return rc;
}

/* A URL naming one file: HEAD it, and make it the only entry of the root. */
static int load_single(struct ufs *u, const char *file, char *err, size_t errlen)
{
	struct path_req pr = { 0 };
	struct mdir *root = dir_make(u, "");
	struct mentry *e = root ? dir_add(root, file) : NULL;
	char etag[UFS_ETAG_MAX];
	int rc;

	if (!e)
		return -ENOMEM;
	path_req_init(&pr, u, "HEAD", file, UFS_REQ_HEAD);
	rc = http_perform(u->src.pool, &pr.r);
	if (rc) {
		msgf(err, errlen, "cannot reach %s%s: %s", u->root, file, pr.r.err[0] ? pr.r.err : strerror(-rc));
		return -EIO;
	}
	if (pr.r.resp.status != 200) {
		msgf(err, errlen, "%s%s: HTTP %ld", u->root, file, pr.r.resp.status);
		return pr.r.resp.status == 404 ? -ENOENT : -EIO;
	}
	rc = head_result(u, file, 0, &pr.r, &e->st, etag, err, errlen);
	if (!rc && etag[0] && !(e->etag = strdup(etag)))
		rc = -ENOMEM;
	return rc;
}

/* ---- setup ---- */

/* Splits the URL into url_base (no trailing '/') and endpoint; *file gets a last segment not ending in '/'. */
static int parse_url(struct ufs *u, const char *source, bool want_dir, char **file, char *err, size_t errlen)
{
	size_t schemelen = (size_t)(strstr(source, "://") - source) + 3;
	const char *auth = source + schemelen, *path = auth + strcspn(auth, "/");
	size_t end = strlen(source);

	*file = NULL;
	if (path == auth || strchr(source, '?') || strchr(source, '#')) {
		msgf(err, errlen, "invalid HTTP source '%s': expected http[s]://HOST[:PORT]/PATH/ without a "
			 "query or fragment", source);
		return -EINVAL;
	}
	if (!want_dir && *path && source[end - 1] != '/') {
		/* The URL's last segment is encoded; the file's name is not
		 * (url_of encodes it again): "a%20b.bin" names "a b.bin". */
		const char *slash = strrchr(path, '/');
		int n = 0;
		char *name = curl_easy_unescape(NULL, slash + 1, 0, &n);
		if (!name)
			return -ENOMEM;
		if (memchr(name, '/', (size_t)n) || memchr(name, '\0', (size_t)n) || !strcmp(name, ".") ||
		    !strcmp(name, "..")) {
			msgf(err, errlen, "invalid HTTP source '%s': its file name %s is not one name "
			     "once decoded", source, slash + 1);
			curl_free(name);
			return -EINVAL;
		}
		*file = strdup(name);
		curl_free(name);
		if (!*file)
			return -ENOMEM;
		end = (size_t)(slash - source);
	}
	while (end > (size_t)(path - source) && source[end - 1] == '/')
		end--;
	u->url_base = strndup(source, end);
	u->endpoint = strndup(source, (size_t)(path - source));
	if (asprintf(&u->root, "%.*s/", (int)end, source) < 0)
		u->root = NULL;
	return u->url_base && u->endpoint && u->root ? 0 : -ENOMEM;
}

static void http_fini(struct ufs *u)
{
	if (u->mounted)
		obj_log_requests(&u->src, "http");
	http_pool_destroy(u->src.pool);
	for (size_t b = 0; u->dirs && b < u->nbuckets; b++)
		while (u->dirs[b]) {
			struct mdir *d = u->dirs[b];
			u->dirs[b] = d->next;
			for (size_t i = 0; i < d->n; i++) {
				free(d->ents[i].name);
				free(d->ents[i].etag);
			}
			free(d->ents);
			free(d->path);
			free(d);
		}
	free(u->dirs);
	free(u->root);
	free(u->url_base);
	free(u->endpoint);
	free(u);
}

static int http_init(struct ufs **out, const char *source, const struct source_opts *o,
		     char *err, size_t errlen)
{
	const char *ca = o->ca_bundle[0] ? o->ca_bundle : getenv("AWS_CA_BUNDLE");
	struct ufs *u = calloc(1, sizeof(*u));
	char *file = NULL;
	int rc = 0;

	if (!u)
		return -ENOMEM;
	u->ttl_ns = secs_to_ns(o->dir_cache_ttl);
	u->mount_ns = realtime_ns();
	u->nbuckets = 1024;
	u->dirs = calloc(u->nbuckets, sizeof(*u->dirs));
	u->src = (struct obj_source){ .ops = &ufs_http_ops, .prepare = object_prepare };
	obj_source_owner(&u->src, o, true);   /* a web server takes no writes */
	if (o->timeout <= 0) {
		msgf(err, errlen, "timeout=0 would fail every request; give seconds, such as 30");
		rc = -EINVAL;
	} else if (ca && *ca && access(ca, R_OK) < 0) {
		msgf(err, errlen, "CA bundle %s: %s", ca, strerror(errno));
		rc = -EINVAL;
	} else if (!u->dirs) {
		rc = -ENOMEM;
	}
	if (!rc)
		rc = parse_url(u, source, o->manifest[0], &file, err, errlen);
	if (!rc) {
		struct http_pool_opts po = { .name = "http", .max_conns = o->s3_max_connections,
					     .retries = o->retries, .timeout_ns = secs_to_ns(o->timeout),
					     .ca_bundle = ca };
		u->src.root = u->root;
		rc = http_pool_create(&u->src.pool, &po);
	}
	if (!rc && o->manifest[0]) {
		rc = load_manifest(u, o->manifest, err, errlen);
	} else if (!rc && file) {
		rc = load_single(u, file, err, errlen);
	} else if (!rc) {
		msgf(err, errlen, "%s is a directory URL, and HTTP servers do not list directories: name its "
			 "files with -o manifest=FILE (lines of PATH<TAB>SIZE; `find . -type f -printf "
			 "'%%P\\t%%s\\n'` writes one)", source);
		rc = -EINVAL;
	}
	free(file);
	if (rc) {
		if (rc == -ENOMEM && !*err)
			msgf(err, errlen, "out of memory");
		http_fini(u);
		return rc;
	}
	log_info("http source %s at %s", u->root, u->endpoint);
	u->mounted = true;
	*out = u;
	return 0;
}

/* ---- the ops ---- */

struct head_op {
	struct path_req pr;
	struct ufs_call *c;
	char *key;
	struct mentry *e;
	struct list_op *list;     /* a HEAD for a listing, or NULL for a stat */
	struct ufs_stat st;
	char etag[UFS_ETAG_MAX];
	char err[sizeof(((struct ufs_call *)0)->err)];   /* why it failed */
	int rc;
};

/* A listing whose unsized lines wait for their HEADs. */
struct list_op {
	struct ufs_call *c;
	struct mdir *d;
	struct head_op *heads;    /* one per entry that needs one */
	size_t nheads;
	unsigned pending;
};

static void list_deliver(struct list_op *op)
{
	struct ufs_call *c = op->c;
	struct ufs *u = c->u;
	size_t h = 0;
	int rc = 0;

	c->ttl_ns = op->nheads ? u->ttl_ns : UINT64_MAX;
	/* A HEAD that got no answer fails the listing; c->err says which. */
	for (size_t i = 0; i < op->nheads && !rc; i++)
		if (op->heads[i].rc != -ENOENT && (rc = op->heads[i].rc))
			snprintf(c->err, sizeof(c->err), "%s", op->heads[i].err);
	for (size_t i = 0; i < op->d->n && !rc; i++) {
		struct mentry *e = &op->d->ents[i];
		struct ufs_dirent d = { .name = e->name, .etag = e->etag ? e->etag : "", .st = e->st };
		if (e->need_head) {
			struct head_op *ho = &op->heads[h++];
			if (ho->rc)
				continue;   /* 404: in the manifest, gone from the server */
			d.st = ho->st;
			d.etag = e->etag ? e->etag : ho->etag;
		}
		rc = c->entry(c, &d);
	}
	for (size_t i = 0; i < op->nheads; i++)
		free(op->heads[i].key);
	free(op->heads);
	free(op);
	c->done(c, rc);
}

/* A HEAD finished (rc as head_result's). */
static void head_finish(struct head_op *ho, int rc)
{
	struct ufs_call *c = ho->c;

	ho->rc = rc;
	if (rc && rc != -ENOENT && !ufs_unavailable(rc) && rc != -ECANCELED)
		log_warn("%s", ho->err);
	if (ho->list) {
		if (!--ho->list->pending)
			list_deliver(ho->list);
		return;
	}
	if (!rc) {
		c->st = ho->st;
		snprintf(c->etag, sizeof(c->etag), "%s", ho->e->etag ? ho->e->etag : ho->etag);
	}
	snprintf(c->err, sizeof(c->err), "%s", ho->err);
	free(ho->key);
	free(ho);
	c->ttl_ns = c->u->ttl_ns;
	c->done(c, rc);
}

static void head_done(struct http_req *r, int rc)
{
	struct head_op *ho = container_of(r, struct head_op, pr.r);
	struct ufs_call *c = ho->c;

	c->asked = c->asked || !rc;
	rc = head_result(c->u, ho->key, rc, r, &ho->st, ho->etag, ho->err, sizeof(ho->err));
	free(r->resp.body);
	head_finish(ho, rc);
}

static void head_start(struct head_op *ho, struct ufs_call *c, const char *dir, struct mentry *e)
{
	ho->c = c;
	ho->e = e;
	if (asprintf(&ho->key, "%s%s%s", dir, *dir ? "/" : "", e->name) < 0) {
		ho->key = NULL;
		head_finish(ho, -ENOMEM);
		return;
	}
	path_req_init(&ho->pr, c->u, "HEAD", ho->key, UFS_REQ_HEAD);
	ho->pr.r.done = head_done;
	http_submit(c->u->src.pool, &ho->pr.r);
}

static void http_stat(struct ufs_call *c)
{
	struct ufs *u = c->u;
	struct mentry *e;
	struct head_op *ho;

	c->err[0] = '\0';
	c->etag[0] = '\0';
	c->ttl_ns = UINT64_MAX;   /* the manifest is fixed for the mount's life */
	if (!*c->path || dir_find(u, c->path)) {
		obj_dir_stat(&u->src, &c->st, u->mount_ns);
		c->done(c, 0);
		return;
	}
	e = entry_find(u, c->path);
	if (!e) {
		c->done(c, -ENOENT);
		return;
	}
	if (!e->need_head) {
		c->st = e->st;
		snprintf(c->etag, sizeof(c->etag), "%s", e->etag ? e->etag : "");
		c->done(c, 0);
		return;
	}
	ho = calloc(1, sizeof(*ho));
	if (!ho) {
		c->done(c, -ENOMEM);
		return;
	}
	const char *slash = strrchr(c->path, '/');
	char *dir = strndup(c->path, slash ? (size_t)(slash - c->path) : 0);
	if (!dir) {
		free(ho);
		c->done(c, -ENOMEM);
		return;
	}
	head_start(ho, c, dir, e);
	free(dir);
}

static void http_list(struct ufs_call *c)
{
	struct ufs *u = c->u;
	struct mdir *d = dir_find(u, c->path);
	struct list_op *op;

	c->err[0] = '\0';
	c->ttl_ns = UINT64_MAX;
	if (!d) {
		c->done(c, -ENOENT);
		return;
	}
	op = calloc(1, sizeof(*op));
	if (!op) {
		c->done(c, -ENOMEM);
		return;
	}
	op->c = c;
	op->d = d;
	for (size_t i = 0; i < d->n; i++)
		op->nheads += d->ents[i].need_head;
	op->heads = calloc(MAX(op->nheads, 1), sizeof(*op->heads));
	if (!op->heads) {
		free(op);
		c->done(c, -ENOMEM);
		return;
	}
	if (!op->nheads) {
		list_deliver(op);
		return;
	}
	/* A size for every unsized line, all at once (the pool queues what
	 * exceeds its connections). */
	op->pending = (unsigned)op->nheads + 1;
	for (size_t i = 0, h = 0; i < d->n; i++)
		if (d->ents[i].need_head) {
			op->heads[h].list = op;
			head_start(&op->heads[h++], c, d->path, &d->ents[i]);
		}
	if (!--op->pending)
		list_deliver(op);
}

static void http_open(struct ufs_call *c)
{
	c->ttl_ns = UINT64_MAX;
	obj_open(&c->u->src, c, c->path);
}

static void http_shard_stop(struct ufs *u)
{
	http_pool_shard_stop(u->src.pool);
}

static void http_counters(struct ufs *u, struct http_counters *out)
{
	http_pool_counters(u->src.pool, out);
}

const struct ufs_ops ufs_http_ops = {
	.name = "http",
	.init = http_init,
	.fini = http_fini,
	.stat = http_stat,
	.list = http_list,
	.open = http_open,
	.release = obj_release,
	.read = obj_read,
	.statfs = obj_statfs,
	.shard_stop = http_shard_stop,
	.counters = http_counters,
};
