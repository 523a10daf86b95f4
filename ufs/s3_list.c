/*
 * ListObjectsV2: prefixes are directories and objects files. A listing is
 * paged by continuation token, parsed with expat against a table of the
 * elements we read, and gathered whole before its entries are delivered,
 * because whether a name needs an alias depends on the other names.
 */
#include "config.h"
#include "ufs/s3_i.h"
#include "core/log.h"
#include "core/util.h"

#include <errno.h>
#include <expat.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

/* Longest text of one element we keep (a key is at most 1024 bytes, a token a few KiB). */
#define TEXT_MAX (64u << 10)
/* Element paths are short; deeper ones are not ours. */
#define PATH_MAX_XML 256

/* ---- the parser ---- */

enum field {
	F_TRUNCATED, F_TOKEN, F_KEY, F_SIZE, F_ETAG, F_MTIME, F_PREFIX, F_CODE, F_MESSAGE, F_REGION,
	F_ENCODING,
	F_CONTENTS,             /* the end of one object */
};

/* The elements we read, by their path from the document's root. */
static const struct {
	const char *path;
	enum field f;
} elements[] = {
	{ "ListBucketResult/IsTruncated", F_TRUNCATED },
	{ "ListBucketResult/NextContinuationToken", F_TOKEN },
	{ "ListBucketResult/Contents", F_CONTENTS },
	{ "ListBucketResult/Contents/Key", F_KEY },
	{ "ListBucketResult/Contents/Size", F_SIZE },
	{ "ListBucketResult/Contents/ETag", F_ETAG },
	{ "ListBucketResult/Contents/LastModified", F_MTIME },
	{ "ListBucketResult/CommonPrefixes/Prefix", F_PREFIX },
	{ "ListBucketResult/EncodingType", F_ENCODING },
	{ "Error/Code", F_CODE },
	{ "Error/Message", F_MESSAGE },
	{ "Error/Region", F_REGION },
};

/* Where an expat parse is: the path of the element it is in. */
struct xml_path {
	char path[PATH_MAX_XML];  /* "ListBucketResult/Contents/Key" */
	size_t plen;
	unsigned skipped_depth;   /* elements below a path too long to follow */
};

/* An element starts: false when it is below a path too long to follow (not ours). */
static bool xml_path_push(struct xml_path *x, const char *name)
{
	size_t n = strlen(name);

	if (x->skipped_depth || x->plen + n + 2 > sizeof(x->path)) {
		x->skipped_depth++;
		return false;
	}
	if (x->plen)
		x->path[x->plen++] = '/';
	memcpy(x->path + x->plen, name, n + 1);
	x->plen += n;
	return true;
}

/* An element ends: false for one push skipped (its path was never taken). */
static bool xml_path_pop(struct xml_path *x)
{
	char *slash;

	if (x->skipped_depth) {
		x->skipped_depth--;
		return false;
	}
	slash = strrchr(x->path, '/');
	x->plen = slash ? (size_t)(slash - x->path) : 0;
	x->path[x->plen] = '\0';
	return true;
}

struct parser {
	struct s3_page *p;
	struct xml_path at;
	char *text;               /* the current element's text */
	size_t tlen, tcap;
	struct s3_obj cur;        /* the Contents being read */
	int err;
};

/* "2009-10-12T17:50:30.000Z" */
static uint64_t iso_ns(const char *s)
{
	struct tm tm = { 0 };

	if (!strptime(s, "%Y-%m-%dT%H:%M:%S", &tm))
		return 0;
	return (uint64_t)timegm(&tm) * 1000000000ULL;
}

static void XMLCALL x_start(void *arg, const XML_Char *name, const XML_Char **attrs)
{
	struct parser *x = arg;

	x->tlen = 0;
	xml_path_push(&x->at, name);
}

static void XMLCALL x_text(void *arg, const XML_Char *s, int len)
{
	struct parser *x = arg;

	if (x->at.skipped_depth || x->err)
		return;
	if (x->tlen + (size_t)len + 1 > x->tcap) {
		size_t cap = MAX(x->tcap * 2, x->tlen + (size_t)len + 256);
		char *t;
		if (cap > TEXT_MAX) {
			x->err = -EIO;
			return;
		}
		t = realloc(x->text, cap);
		if (!t) {
			x->err = -ENOMEM;
			return;
		}
		x->text = t;
		x->tcap = cap;
	}
	memcpy(x->text + x->tlen, s, (size_t)len);
	x->tlen += (size_t)len;
	x->text[x->tlen] = '\0';
}

static int push(void **v, size_t *n, size_t *cap, size_t size)
{
	if (*n == *cap) {
		size_t c = *cap ? *cap * 2 : 64;
		void *nv = realloc(*v, c * size);
		if (!nv)
			return -ENOMEM;
		*v = nv;
		*cap = c;
	}
	return 0;
}

/* Copies the element's text into a fixed field; one too long fails the parse. */
static void take(struct parser *x, char *dst, size_t cap)
{
	if (x->tlen >= cap) {
		x->err = x->err ? x->err : -EIO;
		return;
	}
	/* An empty element leaves text as the last one had it. */
	if (!x->tlen)
		dst[0] = '\0';
	else
		memcpy(dst, x->text, x->tlen + 1);
}

static void got(struct parser *x, enum field f)
{
	struct s3_page *p = x->p;
	const char *t = x->text && x->tlen ? x->text : "";

	switch (f) {
	case F_TRUNCATED:
		p->truncated = !strcmp(t, "true");
		break;
	case F_ENCODING:
		p->url_encoded = !strcmp(t, "url");
		break;
	case F_TOKEN:
		free(p->token);
		if (!(p->token = strdup(t)))
			x->err = -ENOMEM;
		break;
	case F_KEY:
		free(x->cur.key);
		if (!(x->cur.key = strdup(t)))
			x->err = -ENOMEM;
		break;
	case F_SIZE:
		x->cur.size = strtoull(t, NULL, 10);
		break;
	case F_ETAG:
		take(x, x->cur.etag, sizeof(x->cur.etag));
		break;
	case F_MTIME:
		x->cur.mtime_ns = iso_ns(t);
		break;
	case F_CONTENTS:
		if (!x->cur.key) {
			x->err = x->err ? x->err : -EIO;   /* an object without a key */
			break;
		}
		if (push((void **)&p->objs, &p->nobjs, &p->capobjs, sizeof(*p->objs))) {
			x->err = -ENOMEM;
			break;
		}
		p->objs[p->nobjs++] = x->cur;
		memset(&x->cur, 0, sizeof(x->cur));
		break;
	case F_PREFIX:
		if (push((void **)&p->prefixes, &p->nprefixes, &p->capprefixes, sizeof(*p->prefixes)) ||
		    !(p->prefixes[p->nprefixes] = strdup(t))) {
			x->err = -ENOMEM;
			break;
		}
		p->nprefixes++;
		break;
	case F_CODE:
		take(x, p->code, sizeof(p->code));
		break;
	case F_MESSAGE:
		take(x, p->message, sizeof(p->message));
		break;
	case F_REGION:
		take(x, p->region, sizeof(p->region));
		break;
	}
}

static void XMLCALL x_end(void *arg, const XML_Char *name)
{
	struct parser *x = arg;

	if (x->at.skipped_depth) {
		xml_path_pop(&x->at);
		return;
	}
	if (!x->err)
		for (unsigned i = 0; i < ARRAY_SIZE(elements); i++)
			if (!strcmp(x->at.path, elements[i].path)) {
				got(x, elements[i].f);
				break;
			}
	xml_path_pop(&x->at);
	x->tlen = 0;
}

/*
 * A key as encoding-type=url sent it: '+' is a space, %XX a byte (as
 * botocore's unquote_plus reads it). A NUL in it is not a key's.
 */
static int url_decode(char **s)
{
	char *t, *r;
	int n = 0;

	for (t = *s; *t; t++)
		if (*t == '+')
			*t = ' ';
	r = curl_easy_unescape(NULL, *s, 0, &n);
	if (!r)
		return -ENOMEM;
	if (memchr(r, '\0', (size_t)n)) {
		curl_free(r);
		return -EIO;
	}
	t = strdup(r);
	curl_free(r);
	if (!t)
		return -ENOMEM;
	free(*s);
	*s = t;
	return 0;
}

int s3_parse_page(const char *body, size_t len, struct s3_page *p)
{
	XML_Parser xp = XML_ParserCreate("UTF-8");
	struct parser x = { .p = p };
	int rc = 0;

	memset(p, 0, sizeof(*p));
	if (!xp)
		return -ENOMEM;
	XML_SetUserData(xp, &x);
	XML_SetElementHandler(xp, x_start, x_end);
	XML_SetCharacterDataHandler(xp, x_text);
	if (len > INT32_MAX || XML_Parse(xp, body ? body : "", (int)len, 1) == XML_STATUS_ERROR)
		rc = -EIO;
	XML_ParserFree(xp);
	free(x.text);
	free(x.cur.key);
	rc = rc ? rc : x.err;
	/* Asked with encoding-type=url; a server that ignored it says nothing. */
	for (size_t i = 0; !rc && p->url_encoded && i < p->nobjs; i++)
		rc = url_decode(&p->objs[i].key);
	for (size_t i = 0; !rc && p->url_encoded && i < p->nprefixes; i++)
		rc = url_decode(&p->prefixes[i]);
	if (rc)
		s3_page_free(p);
	return rc;
}

void s3_page_free(struct s3_page *p)
{
	for (size_t i = 0; i < p->nobjs; i++)
		free(p->objs[i].key);
	for (size_t i = 0; i < p->nprefixes; i++)
		free(p->prefixes[i]);
	free(p->objs);
	free(p->prefixes);
	free(p->token);
	memset(p, 0, sizeof(*p));
}

void s3_error_text(const struct http_resp *resp, char *out, size_t len)
{
	struct s3_page p;

	if (resp->len && !s3_parse_page(resp->body, resp->len, &p) && p.code[0])
		msgf(out, len, "HTTP %ld %s: %s", resp->status, p.code, p.message);
	else
		msgf(out, len, "HTTP %ld", resp->status);
	if (resp->len)
		s3_page_free(&p);
}

/* ---- a directory's entries ---- */

/* Leaves out a key: `key` is whole, or (in_prefix) a name below the listed prefix. */
static void skip(struct s3_listing *l, const char *what, const char *key, bool in_prefix)
{
	if (!l->skipped++)
		snprintf(l->skipped_why, sizeof(l->skipped_why), "%.200s%.200s: %s",
			 in_prefix ? l->prefix : "", key, what);
}

static struct s3_entry *add(struct s3_listing *l)
{
	if (push((void **)&l->ents, &l->n, &l->cap, sizeof(*l->ents)))
		return NULL;
	memset(&l->ents[l->n], 0, sizeof(l->ents[0]));
	return &l->ents[l->n++];
}

int s3_listing_add(struct s3_listing *l, struct s3_page *p)
{
	size_t plen = strlen(l->prefix);

	for (size_t i = 0; i < p->nobjs; i++) {
		struct s3_obj *o = &p->objs[i];
		const char *rest = o->key + plen;
		struct s3_entry *e;

		if (strncmp(o->key, l->prefix, plen)) {
			skip(l, "the server listed it outside the prefix", o->key, false);
			continue;
		}
		if (!*rest) {
			l->marker = true;   /* the "dir/" object of the listed directory */
			continue;
		}
		if (strchr(rest, '/'))
			continue;   /* only from a server that ignored the delimiter */
		if (!(e = add(l)) || !(e->name = strdup(rest)))
			return -ENOMEM;
		e->obj = *o;
		o->key = NULL;   /* moved */
	}
	for (size_t i = 0; i < p->nprefixes; i++) {
		const char *pre = p->prefixes[i], *rest = pre + plen;
		size_t n = strlen(rest);
		struct s3_entry *e;

		if (strncmp(pre, l->prefix, plen) || !n || rest[n - 1] != '/' ||
		    memchr(rest, '/', n - 1)) {
			skip(l, "the server listed it as a prefix of another directory", pre, false);
			continue;
		}
		if (n == 1) {
			skip(l, "a key with an empty name part (\"//\") cannot be a file name", pre, false);
			continue;
		}
		if (!(e = add(l)) || !(e->name = strndup(rest, n - 1)))
			return -ENOMEM;
		e->dir = true;
	}
	return 0;
}

static int cmp_entry(const void *a, const void *b)
{
	const struct s3_entry *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	/* A directory before a same-named file; a real name before an alias. */
	return c ? c : x->dir != y->dir ? (x->dir ? -1 : 1) : !!x->srcname - !!y->srcname;
}

static void drop(struct s3_entry *e)
{
	free(e->name);
	free(e->srcname);
	free(e->obj.key);
	memset(e, 0, sizeof(*e));
}

/* Shows e as name + suffix, keeping its own name as the source's. */
static int alias(struct s3_entry *e, const char *suffix)
{
	char *a;

	if (asprintf(&a, "%s%s", e->name, suffix) < 0)
		return -ENOMEM;
	e->srcname = e->name;
	e->name = a;
	return 0;
}

/* Removes entries whose name is NULL, keeping the order. */
static void compact(struct s3_listing *l)
{
	size_t w = 0;

	for (size_t i = 0; i < l->n; i++)
		if (l->ents[i].name)
			l->ents[w++] = l->ents[i];
	l->n = w;
}

int s3_listing_finish(struct s3_listing *l)
{
	const struct s3_entry *prev = NULL;   /* the last entry kept */

	if (l->n)
		qsort(l->ents, l->n, sizeof(*l->ents), cmp_entry);
	for (size_t i = 0; i < l->n; i++) {
		struct s3_entry *e = &l->ents[i];
		int rc = 0;

		/* Compared by the source's names: prev may carry an alias already. */
		if (prev && !strcmp(prev->srcname ? prev->srcname : prev->name, e->name)) {
			if (prev->dir && !e->dir) {
				rc = alias(e, "@object");   /* the directory keeps the name */
			} else {
				drop(e);                      /* a prefix listed twice */
				continue;
			}
		} else if (!strcmp(e->name, ".") || !strcmp(e->name, "..")) {
			rc = alias(e, e->dir ? "@prefix" : "@object");
		}
		if (rc)
			return rc;
		if (strlen(e->name) > 255) {
			skip(l, "names longer than 255 bytes cannot be file names", e->srcname ? e->srcname : e->name, true);
			drop(e);
			continue;
		}
		prev = e;
	}
	compact(l);
	/* An alias may land on a real name: the real one wins. */
	if (l->n)
		qsort(l->ents, l->n, sizeof(*l->ents), cmp_entry);
	for (size_t i = 1; i < l->n; i++) {
		struct s3_entry *a = &l->ents[i - 1], *b = &l->ents[i];
		if (!a->name || strcmp(a->name, b->name))
			continue;
		struct s3_entry *lose = b->srcname ? b : a;
		skip(l, "its alias is the name of another key", lose->srcname ? lose->srcname : lose->name, true);
		drop(lose);
	}
	compact(l);
	return 0;
}

void s3_listing_free(struct s3_listing *l)
{
	for (size_t i = 0; i < l->n; i++)
		drop(&l->ents[i]);
	free(l->ents);
	l->ents = NULL;
	l->n = l->cap = 0;
}

/* ---- requests ---- */

struct list_req {
	struct http_req r;
	struct ufs *u;
	const char *prefix;
	const char *token;        /* "" for the first page */
	unsigned max_keys;
	bool flat;                /* every key below prefix, no delimiter */
};

static int list_prepare(void *ctx, const char *method, const char *range, char **url,
			struct curl_slist **hdrs)
{
	struct list_req *lr = ctx;
	char mk[16];
	struct sigv4_param q[6] = {
		/* url: keys with bytes XML 1.0 cannot carry still list */
		{ "list-type", "2" }, { "prefix", lr->prefix }, { "max-keys", mk }, { "encoding-type", "url" },
	};
	unsigned n = 4;

	if (!lr->flat)
		q[n++] = (struct sigv4_param){ "delimiter", "/" };
	if (*lr->token)
		q[n++] = (struct sigv4_param){ "continuation-token", lr->token };
	snprintf(mk, sizeof(mk), "%u", lr->max_keys);
	return s3_sign(lr->u, method, "", q, n, range, url, hdrs);
}

static void list_req_init(struct list_req *lr, struct ufs *u, const char *prefix, unsigned max_keys,
			  void (*done)(struct http_req *r, int rc))
{
	lr->u = u;
	lr->prefix = prefix;
	lr->token = "";
	lr->max_keys = max_keys;
	lr->r.method = "GET";
	lr->r.prepare = list_prepare;
	lr->r.ctx = lr;
	lr->r.kind = UFS_REQ_LIST;
	lr->r.body_max = 64u << 20;
	lr->r.done = done;
}

int s3_list_sync(struct ufs *u, const char *prefix, unsigned max_keys, struct http_resp *resp,
		 char *err, size_t errlen)
{
	return s3_list_page_sync(u, prefix, max_keys, false, "", resp, err, errlen);
}

int s3_list_page_sync(struct ufs *u, const char *prefix, unsigned max_keys, bool flat, const char *token,
		      struct http_resp *resp, char *err, size_t errlen)
{
	struct list_req lr = { 0 };
	int rc;

	list_req_init(&lr, u, prefix, max_keys, NULL);
	lr.flat = flat;
	lr.token = token;
	rc = http_perform(u->src.pool, &lr.r);
	if (rc)
		msgf(err, errlen, "%s", lr.r.err[0] ? lr.r.err : strerror(-rc));
	*resp = lr.r.resp;
	return rc;
}

/*
 * An answer's verdict: 0 for a 200, else a negative errno with a line in
 * err ("s3 WHAT s3://bucket/prefix: why").
 */
static int judge(struct ufs *u, const char *what, const char *prefix, int rc,
		 const struct http_req *r, char *err, size_t errlen)
{
	char why[640];

	if (rc) {
		msgf(err, errlen, "s3 %s %s%s: %s", what, u->root, prefix, r->err[0] ? r->err : strerror(-rc));
		return rc == -EFBIG ? -EIO : rc;
	}
	if (r->resp.status == 200)
		return 0;
	s3_error_text(&r->resp, why, sizeof(why));
	msgf(err, errlen, "s3 %s %s%s: %s", what, u->root, prefix, why);
	/* 404 on a listing: the bucket is gone. */
	return r->resp.status == 404 ? -EIO : s3_errno(r->resp.status);
}

/* ---- the prefix probe behind stat ---- */

struct probe {
	struct list_req lr;
	char *prefix;
	void (*done)(void *arg, int rc, bool is_dir, const char *err);
	void *arg;
};

static void probe_done(struct http_req *r, int rc)
{
	struct probe *p = container_of(r, struct probe, lr.r);
	struct s3_page page;
	char err[700] = "";
	bool is_dir = false;

	rc = judge(p->lr.u, "stat", p->prefix, rc, r, err, sizeof(err));
	if (!rc) {
		rc = s3_parse_page(r->resp.body, r->resp.len, &page);
		if (rc == -EIO)
			snprintf(err, sizeof(err), "s3 stat %s%s: unreadable listing from the server",
				 p->lr.u->root, p->prefix);
		if (!rc) {
			is_dir = page.nobjs || page.nprefixes;
			s3_page_free(&page);
		}
	}
	free(r->resp.body);
	p->done(p->arg, rc, is_dir, err);
	free(p->prefix);
	free(p);
}

void s3_probe_prefix(struct ufs *u, const char *dirkey,
		     void (*done)(void *arg, int rc, bool is_dir, const char *err), void *arg)
{
	struct probe *p = calloc(1, sizeof(*p));

	if (!p || asprintf(&p->prefix, "%s/", dirkey) < 0) {
		free(p);
		done(arg, -ENOMEM, false, "out of memory");
		return;
	}
	p->done = done;
	p->arg = arg;
	list_req_init(&p->lr, u, p->prefix, 1, probe_done);
	http_submit(u->src.pool, &p->lr.r);
}

/* ---- ufs_ops.list ---- */

struct list_op {
	struct list_req lr;
	struct ufs_call *c;
	char *prefix;
	char *token;
	struct s3_listing l;
};

/* Directories whose unshowable names were logged (once each, per daemon). */
static pthread_mutex_t warned_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t warned[1024];

static bool first_warning(const struct ufs *u, const char *prefix)
{
	uint64_t h = XXH3_64bits_withSeed(prefix, strlen(prefix), XXH3_64bits(u->root, strlen(u->root))) | 1;
	bool first;

	pthread_mutex_lock(&warned_lock);
	first = warned[h % ARRAY_SIZE(warned)] != h;
	warned[h % ARRAY_SIZE(warned)] = h;
	pthread_mutex_unlock(&warned_lock);
	return first;
}

static void list_finish(struct list_op *op, int rc)
{
	struct ufs_call *c = op->c;
	struct ufs *u = op->lr.u;

	if (!rc && !op->l.n && !op->l.marker && *c->path)
		rc = -ENOENT;
	if (!rc)
		rc = s3_listing_finish(&op->l);
	if (!rc && op->l.skipped && first_warning(u, op->prefix))
		log_warn("s3 list %s%s: %u key%s cannot be shown as a file name and %s left out (first: %s)",
			 u->root, op->prefix, op->l.skipped, op->l.skipped == 1 ? "" : "s",
			 op->l.skipped == 1 ? "is" : "are", op->l.skipped_why);
	c->ttl_ns = u->ttl_ns;
	for (size_t i = 0; !rc && i < op->l.n; i++) {
		struct s3_entry *e = &op->l.ents[i];
		struct ufs_dirent d = { .name = e->name, .srcname = e->srcname, .etag = e->obj.etag, .bare = true };
		if (e->dir)
			obj_dir_stat(&u->src, &d.st, u->mount_ns);
		else
			obj_file_stat(&u->src, &d.st, e->obj.key, e->obj.size, e->obj.mtime_ns, e->obj.etag);
		rc = c->entry(c, &d);
	}
	if (rc && rc != -ENOENT && !c->err[0])
		ufs_call_err(c, "s3 list %s%s: %s", u->root, op->prefix, strerror(-rc));
	s3_listing_free(&op->l);
	free(op->prefix);
	free(op->token);
	free(op);
	c->done(c, rc);
}

static void page_done(struct http_req *r, int rc)
{
	struct list_op *op = container_of(r, struct list_op, lr.r);
	struct ufs_call *c = op->c;
	struct s3_page page;

	c->asked = c->asked || !rc;
	rc = judge(op->lr.u, "list", op->prefix, rc, r, c->err, sizeof(c->err));
	if (!rc) {
		rc = s3_parse_page(r->resp.body, r->resp.len, &page);
		if (rc == -EIO)
			ufs_call_err(c, "s3 list %s%s: unreadable listing from the server "
				 "(malformed or truncated XML)", op->lr.u->root, op->prefix);
	}
	free(r->resp.body);
	r->resp.body = NULL;
	if (!rc) {
		rc = s3_listing_add(&op->l, &page);
		if (!rc && page.truncated && (!page.token || !*page.token)) {
			ufs_call_err(c, "s3 list %s%s: a truncated listing without a "
				 "continuation token", op->lr.u->root, op->prefix);
			rc = -EIO;
		}
		if (!rc && page.truncated) {
			free(op->token);
			op->token = page.token;
			page.token = NULL;
			op->lr.token = op->token;
			s3_page_free(&page);
			http_submit(op->lr.u->src.pool, &op->lr.r);
			return;
		}
		s3_page_free(&page);
	}
	if (rc && !ufs_unavailable(rc) && rc != -ECANCELED && rc != -ENOENT)
		log_warn("%s", c->err);
	list_finish(op, rc);
}

void s3_list(struct ufs_call *c)
{
	struct ufs *u = c->u;
	struct list_op *op = calloc(1, sizeof(*op));

	c->err[0] = '\0';
	if (!op || asprintf(&op->prefix, "%s%s%s", u->prefix, c->path, *c->path ? "/" : "") < 0) {
		free(op);
		c->done(c, -ENOMEM);
		return;
	}
	op->c = c;
	op->l.prefix = op->prefix;
	list_req_init(&op->lr, u, op->prefix, u->list_max_keys, page_done);
	http_submit(u->src.pool, &op->lr.r);
}

/* ---- one element's text ---- */

struct text_parser {
	const char *want;         /* "Root/Child" */
	struct xml_path at;
	char *out;
	size_t cap, len;
	bool in, found;
};

static void XMLCALL t_start(void *arg, const XML_Char *name, const XML_Char **attrs)
{
	struct text_parser *t = arg;

	/* The wanted element's own text: not that of an element inside it. */
	t->in = xml_path_push(&t->at, name) && !t->found && !strcmp(t->at.path, t->want);
}

static void XMLCALL t_text(void *arg, const XML_Char *s, int len)
{
	struct text_parser *t = arg;
	size_t n;

	if (!t->in || len <= 0)
		return;
	n = MIN((size_t)len, t->cap - 1 - t->len);
	memcpy(t->out + t->len, s, n);
	t->len += n;
	t->out[t->len] = '\0';
}

static void XMLCALL t_end(void *arg, const XML_Char *name)
{
	struct text_parser *t = arg;
	bool was = !t->at.skipped_depth && !strcmp(t->at.path, t->want);

	xml_path_pop(&t->at);
	t->found |= was;
	/* Back in the wanted element after one inside it: its text goes on. */
	t->in = !t->found && !t->at.skipped_depth && !strcmp(t->at.path, t->want);
}

int s3_xml_text(const char *body, size_t len, const char *path, char *out, size_t cap)
{
	struct text_parser t = { .want = path, .out = out, .cap = cap };
	XML_Parser xp;
	int rc = 0;

	if (!cap)
		return -EINVAL;
	out[0] = '\0';
	if (!(xp = XML_ParserCreate("UTF-8")))
		return -ENOMEM;
	XML_SetUserData(xp, &t);
	XML_SetElementHandler(xp, t_start, t_end);
	XML_SetCharacterDataHandler(xp, t_text);
	if (len > INT32_MAX || XML_Parse(xp, body ? body : "", (int)len, 1) == XML_STATUS_ERROR)
		rc = -EIO;
	else if (!t.found)
		rc = -ENOENT;
	XML_ParserFree(xp);
	return rc;
}
