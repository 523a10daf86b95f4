/*
 * The mount table: several sources joined into one namespace by a config
 * file's [mount /PATH] sections. A path belongs to the mount with the
 * longest matching mount point; the directories above mount points exist
 * on their own ("/" lists the top-level mount points). A mount point hides
 * a same-named entry of the source it sits in.
 *
 * Open files are the sub-driver's own, so reads never pass through here.
 * Versions are mixed with the mount's source, so that pages of two sources
 * never share a key even when paths and versions happen to agree.
 */
#include "config.h"
#include "ufs/ufs.h"
#include "core/log.h"
#include "core/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

struct mnt {
	char *path;                 /* "training-data", "a/b"; "" for the root */
	size_t len;
	const char *source;         /* for messages; owned by cfg's file */
	const struct ufs_ops *ops;
	struct ufs *u;
	uint64_t seed;
};

/* Set by ufs_mtab_init, then read-only: any thread reads it without a lock. */
struct ufs {
	struct mnt *m;
	unsigned n;
	struct ufs_stat dir;        /* the directories above mount points */
};

/* The mount holding path, longest mount point first; *rest: the path inside it. */
static struct mnt *resolve(struct ufs *t, const char *path, const char **rest)
{
	struct mnt *best = NULL;

	for (unsigned i = 0; i < t->n; i++) {
		struct mnt *m = &t->m[i];
		if (m->len && (strncmp(path, m->path, m->len) || (path[m->len] && path[m->len] != '/')))
			continue;
		if (!best || m->len > best->len)
			best = m;
	}
	if (best)
		*rest = path + best->len + (best->len && path[best->len] == '/');
	return best;
}

/* Whether path is a directory above some mount point. */
static bool above_mount(struct ufs *t, const char *path)
{
	size_t plen = strlen(path);

	for (unsigned i = 0; i < t->n; i++) {
		const struct mnt *m = &t->m[i];
		if (m->len > plen && (!plen || (!strncmp(m->path, path, plen) && m->path[plen] == '/')))
			return true;
	}
	return false;
}

static void mix(const struct mnt *m, struct ufs_stat *st)
{
	st->version = mix64(st->version ^ m->seed);
}

static int mtab_stat(struct ufs *t, const char *path, struct ufs_stat *st)
{
	const char *rest;
	struct mnt *m = resolve(t, path, &rest);
	bool above = above_mount(t, path);
	int rc = m ? m->ops->stat(m->u, rest, st) : -ENOENT;

	if (!rc && (!above || S_ISDIR(st->mode))) {
		mix(m, st);
		return 0;
	}
	if (above && (!rc || rc == -ENOENT)) {
		*st = t->dir;
		return 0;
	}
	return rc;
}

struct list_ctx {
	const struct mnt *m;
	ufs_list_cb cb;
	void *arg;
	char **hide;                /* names of mount points under the listed path */
	unsigned nhide;
};

static int list_one(void *arg, const char *name, const struct ufs_stat *st)
{
	struct list_ctx *c = arg;
	struct ufs_stat s = *st;

	for (unsigned i = 0; i < c->nhide; i++)
		if (!strcmp(c->hide[i], name))
			return 0;
	mix(c->m, &s);
	return c->cb(c->arg, name, &s);
}

static int mtab_list(struct ufs *t, const char *path, ufs_list_cb cb, void *arg)
{
	struct list_ctx c = { .cb = cb, .arg = arg };
	size_t plen = strlen(path);
	const char *rest;
	struct mnt *m = resolve(t, path, &rest);
	int rc = 0;

	c.hide = calloc(t->n, sizeof(*c.hide));
	if (!c.hide)
		return -ENOMEM;
	/* The next component of every mount point below path, once each. */
	for (unsigned i = 0; i < t->n && !rc; i++) {
		const struct mnt *sub = &t->m[i];
		const char *name;
		size_t nlen;
		bool seen = false;
		struct ufs_stat st;

		if (sub->len <= plen || (plen && (strncmp(sub->path, path, plen) || sub->path[plen] != '/')))
			continue;
		name = sub->path + plen + (plen ? 1 : 0);
		nlen = strcspn(name, "/");
		for (unsigned k = 0; k < c.nhide && !seen; k++)
			seen = strlen(c.hide[k]) == nlen && !strncmp(c.hide[k], name, nlen);
		if (seen)
			continue;
		c.hide[c.nhide] = strndup(name, nlen);
		if (!c.hide[c.nhide]) {
			rc = -ENOMEM;
			break;
		}
		c.nhide++;
		if (name[nlen] || mtab_stat(t, sub->path, &st))
			st = t->dir;   /* a directory above mount points */
		rc = cb(arg, c.hide[c.nhide - 1], &st);
	}
	if (!rc && m) {
		c.m = m;
		rc = m->ops->list(m->u, rest, list_one, &c);
		if (rc == -ENOENT && c.nhide)
			rc = 0;
	} else if (!rc && !c.nhide) {
		rc = -ENOENT;
	}
	for (unsigned i = 0; i < c.nhide; i++)
		free(c.hide[i]);
	free(c.hide);
	return rc > 0 ? 0 : rc;
}

static int mtab_open(struct ufs *t, const char *path, struct ufs_file **out)
{
	const char *rest;
	struct mnt *m = resolve(t, path, &rest);

	if (above_mount(t, path))
		return -EISDIR;
	return m ? m->ops->open(m->u, rest, out) : -ENOENT;
}

static int mtab_statfs(struct ufs *t, struct statvfs *st)
{
	const char *rest;
	struct mnt *m = resolve(t, "", &rest);

	if (m && m->ops->statfs)
		return m->ops->statfs(m->u, st);
	memset(st, 0, sizeof(*st));
	st->f_bsize = st->f_frsize = 4096;
	st->f_namemax = 255;
	return 0;
}

static void mtab_shard_stop(struct ufs *t)
{
	for (unsigned i = 0; i < t->n; i++)
		if (t->m[i].ops->shard_stop)
			t->m[i].ops->shard_stop(t->m[i].u);
}

static void mtab_counters(struct ufs *t, struct ufs_counters *out)
{
	for (unsigned i = 0; i < t->n; i++)
		if (t->m[i].ops->counters)
			t->m[i].ops->counters(t->m[i].u, out);
}

static void mtab_fini(struct ufs *t)
{
	for (unsigned i = 0; i < t->n; i++) {
		if (t->m[i].u)
			t->m[i].ops->fini(t->m[i].u);
		free(t->m[i].path);
	}
	free(t->m);
	free(t);
}

int ufs_mtab_init(struct ufs **out, const struct config_file *f, const struct cachefs_config *cfg,
		  char *err, size_t errlen)
{
	struct ufs *t = calloc(1, sizeof(*t));
	struct cachefs_config *mc = malloc(sizeof(*mc));
	uint64_t now = (uint64_t)time(NULL) * 1000000000ULL;
	int rc = 0;

	if (!t || !mc || !(t->m = calloc(f->nmounts, sizeof(*t->m)))) {
		free(t);
		free(mc);
		return -ENOMEM;
	}
	t->dir = (struct ufs_stat){ .mode = S_IFDIR | 0555, .nlink = 2, .uid = getuid(), .gid = getgid(),
				    .mtime_ns = now, .ctime_ns = now, .atime_ns = now, .version = 1 };
	for (unsigned i = 0; i < f->nmounts && !rc; i++) {
		const struct config_mount *cm = &f->mounts[i];
		struct mnt *m = &t->m[t->n];
		char why[512] = "";

		m->path = strdup(cm->path + 1);
		if (!m->path) {
			rc = -ENOMEM;
			break;
		}
		m->len = strlen(m->path);
		m->source = cm->source;
		m->seed = XXH3_64bits(cm->source, strlen(cm->source));
		m->ops = ufs_driver_for(cm->source);
		t->n++;
		if (!m->ops) {
			snprintf(err, errlen, "[mount %s] source %s: no driver for this scheme (this build reads "
				 UFS_SCHEMES ")", cm->path, cm->source);
			rc = -EINVAL;
			break;
		}
		*mc = *cfg;
		config_mount_apply(cm, mc);
		rc = m->ops->init(&m->u, cm->source, mc, why, sizeof(why));
		if (rc) {
			m->u = NULL;
			snprintf(err, errlen, "[mount %s] %s", cm->path, why[0] ? why : strerror(-rc));
		} else {
			log_info("mount %s: %s", cm->path, cm->source);
		}
	}
	free(mc);
	if (rc) {
		mtab_fini(t);
		return rc;
	}
	*out = t;
	return 0;
}

const struct ufs_ops ufs_mtab_ops = {
	.name = "mtab",
	.fini = mtab_fini,
	.stat = mtab_stat,
	.list = mtab_list,
	.open = mtab_open,   /* files are the sub-driver's: no .release, no .read */
	.statfs = mtab_statfs,
	.shard_stop = mtab_shard_stop,
	.counters = mtab_counters,
};
