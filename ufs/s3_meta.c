/*
 * S3 metadata: ListObjectsV2 maps prefixes to directories (parsed with
 * expat), listings and single stats are cached for dir_cache_ttl, and a HEAD
 * is sent only for a name no fresh listing answers.
 */
#include "config.h"
#include "ufs/s3_i.h"
#include "core/log.h"
#include "core/util.h"

#include <errno.h>
#include <expat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <xxhash.h>

/* ---- a string-keyed map with expiry, under u->meta_lock ---- */

struct mnode {
	struct mnode *next;
	uint64_t hash;
	uint64_t expires;
	char *key;
};

struct meta_map {
	struct mnode **b;
	size_t nb, n;
	void (*free_node)(struct mnode *m);
};

static int map_init(struct meta_map **out, void (*free_node)(struct mnode *))
{
	struct meta_map *m = calloc(1, sizeof(*m));

	if (!m)
		return -ENOMEM;
	m->nb = 256;
	m->b = calloc(m->nb, sizeof(*m->b));
	if (!m->b) {
		free(m);
		return -ENOMEM;
	}
	m->free_node = free_node;
	*out = m;
	return 0;
}

static uint64_t key_hash(const char *k)
{
	return XXH3_64bits(k, strlen(k));
}

static struct mnode **map_slot(struct meta_map *m, const char *key, uint64_t h)
{
	struct mnode **p = &m->b[h & (m->nb - 1)];

	while (*p && ((*p)->hash != h || strcmp((*p)->key, key)))
		p = &(*p)->next;
	return p;
}

/* A fresh node for key, or NULL; an expired one is dropped on the way. */
static struct mnode *map_get(struct meta_map *m, const char *key, uint64_t now)
{
	uint64_t h = key_hash(key);
	struct mnode **p = map_slot(m, key, h), *n = *p;

	if (n && n->expires <= now) {
		*p = n->next;
		m->n--;
		m->free_node(n);
		return NULL;
	}
	return n;
}

static void map_sweep(struct meta_map *m, uint64_t now)
{
	for (size_t i = 0; i < m->nb; i++)
		for (struct mnode **p = &m->b[i]; *p;) {
			struct mnode *n = *p;
			if (n->expires <= now) {
				*p = n->next;
				m->n--;
				m->free_node(n);
			} else {
				p = &n->next;
			}
		}
}

/* Inserts n (its key and expiry set), replacing an entry of the same key. */
static void map_put(struct meta_map *m, struct mnode *n, uint64_t now)
{
	struct mnode **p, *old;

	n->hash = key_hash(n->key);
	p = map_slot(m, n->key, n->hash);
	old = *p;
	if (old) {
		n->next = old->next;
		*p = n;
		m->free_node(old);
		return;
	}
	if (m->n >= m->nb * 2) {
		map_sweep(m, now);
		if (m->n >= m->nb * 2) {
			size_t nb = m->nb * 2;
			struct mnode **b = calloc(nb, sizeof(*b));
			if (b) {
				for (size_t i = 0; i < m->nb; i++)
					while (m->b[i]) {
						struct mnode *x = m->b[i];
						m->b[i] = x->next;
						x->next = b[x->hash & (nb - 1)];
						b[x->hash & (nb - 1)] = x;
					}
				free(m->b);
				m->b = b;
				m->nb = nb;
			}
		}
		p = map_slot(m, n->key, n->hash);
	}
	n->next = NULL;
	*p = n;
	m->n++;
}

static void map_free(struct meta_map *m)
{
	if (!m)
		return;
	map_sweep(m, UINT64_MAX);
	free(m->b);
	free(m);
}

/* ---- cached entries ---- */

struct dent {
	char *name;
	struct ufs_stat st;
	char etag[S3_ETAG_MAX];
	bool need_head;           /* http manifest without a size: stat by HEAD */
};

/* One directory's listing; shared by readers through refs. */
struct dirlist {
	struct mnode node;        /* key: the directory path ("" for the root) */
	atomic_uint refs;
	struct dent *ents;        /* sorted by name */
	size_t n, cap;
};

/* One HEAD (or prefix probe) result; mode 0 caches "no such name". */
struct statent {
	struct mnode node;        /* key: the path */
	struct ufs_stat st;
	char etag[S3_ETAG_MAX];
};

static void dirlist_put(struct dirlist *d)
{
	if (atomic_fetch_sub(&d->refs, 1) != 1)
		return;
	for (size_t i = 0; i < d->n; i++)
		free(d->ents[i].name);
	free(d->ents);
	free(d->node.key);
	free(d);
}

static void free_dirlist_node(struct mnode *m)
{
	dirlist_put(container_of(m, struct dirlist, node));
}

static void free_stat_node(struct mnode *m)
{
	free(m->key);
	free(container_of(m, struct statent, node));
}

int s3_meta_init(struct ufs *u)
{
	int rc = map_init(&u->dirs, free_dirlist_node);

	return rc ? rc : map_init(&u->stats, free_stat_node);
}

void s3_meta_fini(struct ufs *u)
{
	map_free(u->dirs);
	map_free(u->stats);
}

void s3_file_stat(struct ufs *u, struct ufs_stat *st, uint64_t size, uint64_t mtime_ns, const char *etag)
{
	memset(st, 0, sizeof(*st));
	st->size = size;
	st->mtime_ns = st->ctime_ns = st->atime_ns = mtime_ns;
	st->mode = S_IFREG | 0444;
	st->uid = u->uid;
	st->gid = u->gid;
	st->nlink = 1;
	st->version = s3_version(etag, size);
}

void s3_dir_stat(struct ufs *u, struct ufs_stat *st)
{
	memset(st, 0, sizeof(*st));
	st->mtime_ns = st->ctime_ns = st->atime_ns = u->mount_ns;
	st->mode = S_IFDIR | 0555;
	st->uid = u->uid;
	st->gid = u->gid;
	st->nlink = 2;
	st->version = 1;
}

/* "2009-10-12T17:50:30.000Z" */
static uint64_t iso_ns(const char *s)
{
	struct tm tm = { 0 };

	if (!strptime(s, "%Y-%m-%dT%H:%M:%S", &tm))
		return 0;
	return (uint64_t)timegm(&tm) * 1000000000ULL;
}

/* ---- XML: ListObjectsV2 results and error bodies ---- */

struct xml {
	struct ufs *u;
	struct dirlist *d;
	const char *prefix;       /* the listed prefix, stripped from keys */
	char path[8][32];         /* element names from the root */
	unsigned depth;
	char text[2048];          /* text of the current leaf */
	size_t tlen;
	/* the Contents entry being read */
	char key[1100];
	char etag[S3_ETAG_MAX];
	uint64_t size, mtime_ns;
	/* results */
	bool truncated, marker, overflow;
	char token[1100];
	char code[128], message[512], region[64];
	int err;
};

static void XMLCALL x_start(void *arg, const XML_Char *name, const XML_Char **attrs)
{
	struct xml *x = arg;

	if (x->depth < ARRAY_SIZE(x->path))
		snprintf(x->path[x->depth], sizeof(x->path[0]), "%s", name);
	x->depth++;
	x->tlen = 0;
	x->text[0] = '\0';
	if (x->depth == 2 && !strcmp(name, "Contents")) {
		x->key[0] = x->etag[0] = '\0';
		x->size = x->mtime_ns = 0;
	}
}

static void XMLCALL x_text(void *arg, const XML_Char *s, int len)
{
	struct xml *x = arg;

	if (x->tlen + (size_t)len >= sizeof(x->text)) {
		x->overflow = true;
		return;
	}
	memcpy(x->text + x->tlen, s, (size_t)len);
	x->tlen += (size_t)len;
	x->text[x->tlen] = '\0';
}

static int add_dent(struct dirlist *d, const char *name, size_t nlen, const struct ufs_stat *st,
		    const char *etag)
{
	struct dent *e;

	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 64;
		struct dent *n = realloc(d->ents, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		d->ents = n;
		d->cap = cap;
	}
	e = &d->ents[d->n];
	e->name = strndup(name, nlen);
	if (!e->name)
		return -ENOMEM;
	e->st = *st;
	snprintf(e->etag, sizeof(e->etag), "%s", etag);
	e->need_head = false;
	d->n++;
	return 0;
}

/* Copies the element text; a value too long for its field fails the parse. */
static void take(struct xml *x, char *dst, size_t cap)
{
	if (x->tlen >= cap) {
		x->err = x->err ? x->err : -ENAMETOOLONG;
		return;
	}
	memcpy(dst, x->text, x->tlen + 1);
}

static void XMLCALL x_end(void *arg, const XML_Char *name)
{
	struct xml *x = arg;
	const char *parent = x->depth >= 2 && x->depth - 2 < ARRAY_SIZE(x->path) ? x->path[x->depth - 2] : "";
	size_t plen = x->prefix ? strlen(x->prefix) : 0;
	struct ufs_stat st;

	x->depth--;
	if (x->overflow) {
		x->err = x->err ? x->err : -ENAMETOOLONG;
		x->overflow = false;
	}
	if (x->depth == 1 && !strcmp(name, "Contents") && x->d) {
		const char *rest = x->key + plen;
		if (strncmp(x->key, x->prefix, plen))
			return;
		if (!*rest) {
			x->marker = true;   /* the "dir/" object of the listed directory */
			return;
		}
		if (strchr(rest, '/'))
			return;   /* only with a server that ignored the delimiter */
		s3_file_stat(x->u, &st, x->size, x->mtime_ns, x->etag);
		if (!x->err)
			x->err = add_dent(x->d, rest, strlen(rest), &st, x->etag);
		return;
	}
	if (x->depth == 1 && !strcmp(parent, "ListBucketResult")) {
		if (!strcmp(name, "IsTruncated"))
			x->truncated = !strcmp(x->text, "true");
		else if (!strcmp(name, "NextContinuationToken"))
			take(x, x->token, sizeof(x->token));
	} else if (x->depth == 1 && !strcmp(parent, "Error")) {
		if (!strcmp(name, "Code"))
			take(x, x->code, sizeof(x->code));
		else if (!strcmp(name, "Message"))
			take(x, x->message, sizeof(x->message));
		else if (!strcmp(name, "Region"))
			take(x, x->region, sizeof(x->region));
	} else if (x->depth == 2 && !strcmp(parent, "Contents")) {
		if (!strcmp(name, "Key"))
			take(x, x->key, sizeof(x->key));
		else if (!strcmp(name, "Size"))
			x->size = strtoull(x->text, NULL, 10);
		else if (!strcmp(name, "ETag"))
			take(x, x->etag, sizeof(x->etag));
		else if (!strcmp(name, "LastModified"))
			x->mtime_ns = iso_ns(x->text);
	} else if (x->depth == 2 && !strcmp(name, "Prefix") && !strcmp(parent, "CommonPrefixes") && x->d) {
		const char *rest = x->text + plen;
		size_t n = strlen(rest);
		if (strncmp(x->text, x->prefix, plen) || n < 2 || rest[n - 1] != '/')
			return;   /* "//" keys give an empty name: not representable */
		s3_dir_stat(x->u, &st);
		if (!x->err)
			x->err = add_dent(x->d, rest, n - 1, &st, "");
	}
}

static int xml_parse(struct xml *x, const char *body, size_t len)
{
	XML_Parser p = XML_ParserCreate("UTF-8");
	int rc = 0;

	if (!p)
		return -ENOMEM;
	XML_SetUserData(p, x);
	XML_SetElementHandler(p, x_start, x_end);
	XML_SetCharacterDataHandler(p, x_text);
	if (XML_Parse(p, body ? body : "", (int)len, 1) == XML_STATUS_ERROR) {
		log_warn("s3: unreadable XML from the server (line %lu: %s)",
			 (unsigned long)XML_GetCurrentLineNumber(p), XML_ErrorString(XML_GetErrorCode(p)));
		rc = -EIO;
	}
	XML_ParserFree(p);
	return rc ? rc : x->err;
}

void s3_error_text(const struct s3_resp *resp, char *out, size_t len)
{
	struct xml *x = calloc(1, sizeof(*x));

	if (x && resp->len && !xml_parse(x, resp->body, resp->len) && x->code[0])
		snprintf(out, len, "HTTP %ld %s: %s", resp->status, x->code, x->message);
	else
		snprintf(out, len, "HTTP %ld", resp->status);
	if (x && x->region[0] && !resp->region[0])
		snprintf((char *)resp->region, sizeof(resp->region), "%s", x->region);
	free(x);
}

/* ---- listings ---- */

static int cmp_dent(const void *a, const void *b)
{
	return strcmp(((const struct dent *)a)->name, ((const struct dent *)b)->name);
}

static void log_failure(struct ufs *u, const char *what, const char *key, const struct s3_resp *r)
{
	char why[640];

	s3_error_text(r, why, sizeof(why));
	log_warn("%s %s %s%s: %s", u->drv, what, u->root, key, why);
}

/* Fetches every page of the listing of directory `path`. */
static int fetch_listing(struct ufs *u, const char *path, struct dirlist **out)
{
	struct dirlist *d = calloc(1, sizeof(*d));
	struct xml *x = calloc(1, sizeof(*x));
	char *prefix = NULL, err[512];
	struct s3_resp r = { 0 };
	int rc = 0;

	if (!d || !x || asprintf(&prefix, "%s%s%s", u->prefix, path, *path ? "/" : "") < 0) {
		rc = -ENOMEM;
		goto out;
	}
	atomic_init(&d->refs, 1);
	if (u->http) {
		rc = -ENOENT;   /* every directory of the manifest is pinned */
		goto out;
	}
	do {
		char token[sizeof(x->token)];

		snprintf(token, sizeof(token), "%s", x->token);
		rc = s3_list_page(u, prefix, u->list_max_keys, token, &r, err, sizeof(err));
		if (rc) {
			log_warn("%s list %s%s: %s", u->drv, u->root, prefix, err);
			break;
		}
		if (r.status != 200) {
			log_failure(u, "list", prefix, &r);
			rc = r.status == 403 ? -EACCES : -EIO;   /* 404: the bucket is gone */
			break;
		}
		x->u = u;
		x->d = d;
		x->prefix = prefix;
		x->truncated = false;
		x->token[0] = '\0';
		x->depth = 0;
		rc = xml_parse(x, r.body, r.len);
		if (!rc && x->truncated && !x->token[0]) {
			log_warn("%s list %s%s: truncated listing without a continuation token", u->drv, u->root, prefix);
			rc = -EIO;
		}
	} while (!rc && x->truncated);
	if (rc)
		goto out;
	if (!d->n && !x->marker && *path) {
		rc = -ENOENT;
		goto out;
	}
	/* A name that is both a file and a prefix shows as the directory. */
	qsort(d->ents, d->n, sizeof(*d->ents), cmp_dent);
	size_t w = 0;
	for (size_t i = 0; i < d->n; i++) {
		if (w && !strcmp(d->ents[w - 1].name, d->ents[i].name)) {
			struct dent *keep = S_ISDIR(d->ents[i].st.mode) ? &d->ents[i] : &d->ents[w - 1];
			struct dent *drop = keep == &d->ents[i] ? &d->ents[w - 1] : &d->ents[i];
			free(drop->name);
			d->ents[w - 1] = *keep;
			continue;
		}
		d->ents[w++] = d->ents[i];
	}
	d->n = w;
	d->node.key = strdup(path);
	if (!d->node.key) {
		rc = -ENOMEM;
		goto out;
	}
	*out = d;
	d = NULL;
out:
	if (d)
		dirlist_put(d);
	free(x);
	free(prefix);
	free(r.body);
	return rc;
}

/* The listing of `path`, cached or fetched; the caller puts it. */
static int get_listing(struct ufs *u, const char *path, struct dirlist **out)
{
	uint64_t now = now_ns();
	struct mnode *n;
	struct dirlist *d;
	int rc;

	pthread_mutex_lock(&u->meta_lock);
	n = map_get(u->dirs, path, now);
	if (n) {
		d = container_of(n, struct dirlist, node);
		atomic_fetch_add(&d->refs, 1);
		pthread_mutex_unlock(&u->meta_lock);
		*out = d;
		return 0;
	}
	pthread_mutex_unlock(&u->meta_lock);

	rc = fetch_listing(u, path, &d);
	if (rc)
		return rc;
	atomic_fetch_add(&d->refs, 1);   /* one for the map, one for the caller */
	d->node.expires = now_ns() + u->ttl_ns;
	pthread_mutex_lock(&u->meta_lock);
	if (u->ttl_ns)
		map_put(u->dirs, &d->node, now);
	else
		atomic_fetch_sub(&d->refs, 1);
	pthread_mutex_unlock(&u->meta_lock);
	*out = d;
	return 0;
}

int s3_list(struct ufs *u, const char *path, ufs_list_cb cb, void *arg)
{
	struct dirlist *d;
	int rc = get_listing(u, path, &d);

	if (rc)
		return rc;
	for (size_t i = 0; i < d->n && !rc; i++) {
		struct ufs_stat st = d->ents[i].st;
		char *full, etag[S3_ETAG_MAX];

		if (d->ents[i].need_head) {
			/* A manifest line without a size: the listing must not show 0. */
			if (asprintf(&full, "%s%s%s", path, *path ? "/" : "", d->ents[i].name) < 0) {
				rc = -ENOMEM;
				break;
			}
			rc = s3_stat_etag(u, full, &st, etag);
			free(full);
			if (rc == -ENOENT) {
				rc = 0;
				continue;
			}
			if (rc)
				break;
		}
		rc = cb(arg, d->ents[i].name, &st);
	}
	dirlist_put(d);
	return rc < 0 ? rc : 0;
}

/* The pinned listing of directory `path`, created (and linked into its parent) if new. */
static int pinned_dir(struct ufs *u, const char *path, struct dirlist **out)
{
	struct mnode *n = map_get(u->dirs, path, 0);
	struct dirlist *d;
	struct ufs_stat st;
	int rc;

	if (n) {
		*out = container_of(n, struct dirlist, node);
		return 0;
	}
	d = calloc(1, sizeof(*d));
	if (!d || !(d->node.key = strdup(path))) {
		free(d);
		return -ENOMEM;
	}
	atomic_init(&d->refs, 1);
	d->node.expires = UINT64_MAX;
	map_put(u->dirs, &d->node, 0);
	*out = d;
	if (!*path)
		return 0;
	const char *slash = strrchr(path, '/');
	char *parent = strndup(path, slash ? (size_t)(slash - path) : 0);
	struct dirlist *pd;

	if (!parent)
		return -ENOMEM;
	rc = pinned_dir(u, parent, &pd);
	free(parent);
	s3_dir_stat(u, &st);
	return rc ? rc : add_dent(pd, slash ? slash + 1 : path, strlen(slash ? slash + 1 : path), &st, "");
}

/* Sorts a pinned listing; a name twice is a mistake unless both are directories. */
static int pinned_sort(struct dirlist *d, const char **dup)
{
	size_t w = 0;

	if (d->n)
		qsort(d->ents, d->n, sizeof(*d->ents), cmp_dent);
	for (size_t i = 0; i < d->n; i++) {
		if (w && !strcmp(d->ents[w - 1].name, d->ents[i].name)) {
			if (!S_ISDIR(d->ents[i].st.mode) || !S_ISDIR(d->ents[w - 1].st.mode)) {
				*dup = d->ents[i].name;
				return -EEXIST;
			}
			free(d->ents[i].name);
			continue;
		}
		d->ents[w++] = d->ents[i];
	}
	d->n = w;
	return 0;
}

int s3_meta_pin(struct ufs *u, const char *path, const struct ufs_stat *st, const char *etag,
		bool need_head)
{
	const char *slash = strrchr(path, '/');
	char *parent = strndup(path, slash ? (size_t)(slash - path) : 0);
	struct dirlist *d;
	int rc;

	if (!parent)
		return -ENOMEM;
	pthread_mutex_lock(&u->meta_lock);
	rc = pinned_dir(u, parent, &d);
	if (!rc && S_ISDIR(st->mode))
		rc = pinned_dir(u, path, &d);   /* "dir/" lines: an empty directory */
	else if (!rc) {
		rc = add_dent(d, slash ? slash + 1 : path, strlen(slash ? slash + 1 : path), st, etag);
		if (!rc)
			d->ents[d->n - 1].need_head = need_head;
	}
	pthread_mutex_unlock(&u->meta_lock);
	free(parent);
	return rc;
}

int s3_meta_pin_done(struct ufs *u, char *dup, size_t duplen)
{
	int rc = 0;

	pthread_mutex_lock(&u->meta_lock);
	for (size_t i = 0; i < u->dirs->nb && !rc; i++)
		for (struct mnode *n = u->dirs->b[i]; n && !rc; n = n->next) {
			struct dirlist *d = container_of(n, struct dirlist, node);
			const char *name = NULL;
			rc = pinned_sort(d, &name);
			if (rc)
				snprintf(dup, duplen, "%s%s%s", d->node.key, *d->node.key ? "/" : "", name);
		}
	pthread_mutex_unlock(&u->meta_lock);
	return rc;
}

/* ---- stat ---- */

/* From a fresh listing of the parent: 0, -ENOENT, or 1 when none is cached. */
static int stat_from_listing(struct ufs *u, const char *path, struct ufs_stat *st, char *etag)
{
	const char *slash = strrchr(path, '/'), *name = slash ? slash + 1 : path;
	size_t plen = slash ? (size_t)(slash - path) : 0;
	char parent[1100];
	struct mnode *n;
	int rc = 1;

	if (plen >= sizeof(parent))
		return 1;
	memcpy(parent, path, plen);
	parent[plen] = '\0';
	pthread_mutex_lock(&u->meta_lock);
	n = map_get(u->dirs, parent, now_ns());
	if (n) {
		struct dirlist *d = container_of(n, struct dirlist, node);
		struct dent key = { .name = (char *)name };
		struct dent *e = bsearch(&key, d->ents, d->n, sizeof(*d->ents), cmp_dent);
		rc = -ENOENT;
		if (e && e->need_head) {
			rc = 1;
		} else if (e) {
			*st = e->st;
			snprintf(etag, S3_ETAG_MAX, "%s", e->etag);
			rc = 0;
		}
	}
	if (rc == 1) {
		n = map_get(u->stats, path, now_ns());
		if (n) {
			struct statent *s = container_of(n, struct statent, node);
			*st = s->st;
			snprintf(etag, S3_ETAG_MAX, "%s", s->etag);
			rc = st->mode ? 0 : -ENOENT;
		}
	}
	pthread_mutex_unlock(&u->meta_lock);
	return rc;
}

static void remember(struct ufs *u, const char *path, const struct ufs_stat *st, const char *etag)
{
	struct statent *s;

	if (!u->ttl_ns)
		return;
	s = calloc(1, sizeof(*s));
	if (!s || !(s->node.key = strdup(path))) {
		free(s);
		return;
	}
	s->st = *st;
	snprintf(s->etag, sizeof(s->etag), "%s", etag);
	s->node.expires = now_ns() + u->ttl_ns;
	pthread_mutex_lock(&u->meta_lock);
	map_put(u->stats, &s->node, now_ns());
	pthread_mutex_unlock(&u->meta_lock);
}

/* A HEAD missed: is `key` a prefix (a directory with or without a marker)? */
static int probe_prefix(struct ufs *u, const char *key, bool *is_dir)
{
	struct dirlist tmp = { .n = 0 };
	struct xml *x = calloc(1, sizeof(*x));
	char *prefix = NULL, err[512];
	struct s3_resp r = { 0 };
	int rc;

	if (!x || asprintf(&prefix, "%s/", key) < 0) {
		free(x);
		return -ENOMEM;
	}
	rc = s3_list_page(u, prefix, 1, "", &r, err, sizeof(err));
	if (rc) {
		log_warn("%s list %s%s: %s", u->drv, u->root, prefix, err);
	} else if (r.status != 200) {
		log_failure(u, "list", prefix, &r);
		rc = -EIO;
	} else {
		x->u = u;
		x->d = &tmp;
		x->prefix = prefix;
		rc = xml_parse(x, r.body, r.len);
		*is_dir = tmp.n || x->marker;
	}
	for (size_t i = 0; i < tmp.n; i++)
		free(tmp.ents[i].name);
	free(tmp.ents);
	free(x);
	free(prefix);
	free(r.body);
	return rc;
}

int s3_stat_etag(struct ufs *u, const char *path, struct ufs_stat *st, char etag[S3_ETAG_MAX])
{
	struct s3_resp r = { 0 };
	char *key = NULL, err[512];
	bool is_dir = false;
	int rc;

	if (!*path) {
		s3_dir_stat(u, st);
		etag[0] = '\0';
		return 0;
	}
	rc = stat_from_listing(u, path, st, etag);
	if (rc <= 0)
		return rc;
	if (asprintf(&key, "%s%s", u->prefix, path) < 0)
		return -ENOMEM;
	rc = s3_perform(u, "HEAD", key, NULL, 0, &r, err, sizeof(err));
	if (rc) {
		log_warn("%s stat %s%s: %s", u->drv, u->root, key, err);
		goto out;
	}
	if (r.status == 200 && !r.has_length) {
		log_warn("%s stat %s%s: the server gave no Content-Length, so the size is unknown", u->drv,
			 u->root, key);
		rc = -EIO;
		goto out;
	} else if (r.status == 200) {
		/* Without an ETag (plain HTTP servers), Last-Modified versions the pages. */
		s3_file_stat(u, st, r.length, (uint64_t)curl_getdate(r.last_modified, NULL) * 1000000000ULL,
			     r.etag[0] ? r.etag : r.last_modified);
		snprintf(etag, S3_ETAG_MAX, "%s", r.etag);
	} else if (r.status == 404 && u->http) {
		memset(st, 0, sizeof(*st));   /* no prefixes to probe */
		etag[0] = '\0';
	} else if (r.status == 404) {
		rc = probe_prefix(u, key, &is_dir);
		if (rc)
			goto out;
		if (is_dir)
			s3_dir_stat(u, st);
		else
			memset(st, 0, sizeof(*st));
		etag[0] = '\0';
	} else {
		log_failure(u, "stat", key, &r);
		rc = s3_errno(r.status);
		goto out;
	}
	remember(u, path, st, etag);
	rc = st->mode ? 0 : -ENOENT;
out:
	free(key);
	free(r.body);
	return rc;
}

int s3_stat(struct ufs *u, const char *path, struct ufs_stat *st)
{
	char etag[S3_ETAG_MAX];

	return s3_stat_etag(u, path, st, etag);
}
