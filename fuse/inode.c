#include "config.h"
#include "fuse/inode_i.h"
#include "core/util.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

struct itable {
	pthread_mutex_t lock;
	struct inode **by_ino, **by_path;
	uint64_t nbuckets, count, next_ino;
};

uint64_t file_id(const char *path, uint64_t version)
{
	return XXH3_64bits_withSeed(path, strlen(path), version);
}

static uint64_t str_hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL;   /* FNV-1a */

	while (*s)
		h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
	return h;
}

static void insert(struct itable *t, struct inode *in)
{
	uint64_t bi = mix64(in->ino) & (t->nbuckets - 1);
	uint64_t bp = str_hash(in->path) & (t->nbuckets - 1);

	in->next_ino = t->by_ino[bi];
	t->by_ino[bi] = in;
	in->next_path = t->by_path[bp];
	t->by_path[bp] = in;
	t->count++;
}

static int grow(struct itable *t)
{
	uint64_t old = t->nbuckets;
	struct inode **oi = t->by_ino;
	struct inode **ni = calloc(old * 2, sizeof(*ni)), **np = calloc(old * 2, sizeof(*np));

	if (!ni || !np) {
		free(ni);
		free(np);
		return -ENOMEM;
	}
	t->by_ino = ni;
	free(t->by_path);
	t->by_path = np;
	t->nbuckets = old * 2;
	t->count = 0;
	for (uint64_t b = 0; b < old; b++) {
		for (struct inode *in = oi[b], *next; in; in = next) {
			next = in->next_ino;
			insert(t, in);
		}
	}
	free(oi);
	return 0;
}

static struct inode *find_ino(struct itable *t, uint64_t ino)
{
	struct inode *in = t->by_ino[mix64(ino) & (t->nbuckets - 1)];

	while (in && in->ino != ino)
		in = in->next_ino;
	return in;
}

static struct inode *find_path(struct itable *t, const char *path)
{
	struct inode *in = t->by_path[str_hash(path) & (t->nbuckets - 1)];

	while (in && strcmp(in->path, path))
		in = in->next_path;
	return in;
}

int itable_create(struct itable **out, const struct ufs_stat *root_st)
{
	struct itable *t = calloc(1, sizeof(*t));
	struct inode *root = calloc(1, sizeof(*root));

	if (!t || !root)
		abort();
	pthread_mutex_init(&t->lock, NULL);
	t->nbuckets = 1024;
	t->by_ino = calloc(t->nbuckets, sizeof(*t->by_ino));
	t->by_path = calloc(t->nbuckets, sizeof(*t->by_path));
	if (!t->by_ino || !t->by_path)
		abort();
	root->ino = 1;
	root->nlookup = 1;
	root->path = strdup("");
	root->st = *root_st;
	root->fid = file_id("", root_st->version);
	t->next_ino = 2;
	insert(t, root);
	*out = t;
	return 0;
}

void itable_destroy(struct itable *t)
{
	for (uint64_t b = 0; b < t->nbuckets; b++) {
		for (struct inode *in = t->by_ino[b], *next; in; in = next) {
			next = in->next_ino;
			free(in->path);
			free(in);
		}
	}
	free(t->by_ino);
	free(t->by_path);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

static void set_stat(struct inode *in, const struct ufs_stat *st)
{
	if (in->st.version != st->version)
		in->fid = file_id(in->path, st->version);
	in->st = *st;
}

int itable_ref(struct itable *t, const char *path, const struct ufs_stat *st,
	       uint64_t lookups, struct inode *out)
{
	struct inode *in;
	int rc = 0;

	pthread_mutex_lock(&t->lock);
	in = find_path(t, path);
	if (!in) {
		if (t->count >= t->nbuckets && grow(t) < 0) {
			rc = -ENOMEM;
			goto unlock;
		}
		in = calloc(1, sizeof(*in));
		if (!in || !(in->path = strdup(path))) {
			free(in);
			rc = -ENOMEM;
			goto unlock;
		}
		in->ino = t->next_ino++;
		in->fid = file_id(path, st->version);
		in->st = *st;
		insert(t, in);
	} else {
		set_stat(in, st);
	}
	in->nlookup += lookups;
	*out = *in;
	out->path = NULL;
unlock:
	pthread_mutex_unlock(&t->lock);
	return rc;
}

int itable_get(struct itable *t, uint64_t ino, const struct ufs_stat *st, struct inode *out)
{
	struct inode *in;
	int rc = 0;

	pthread_mutex_lock(&t->lock);
	in = find_ino(t, ino);
	if (!in) {
		rc = -ENOENT;
		goto unlock;
	}
	if (st)
		set_stat(in, st);
	*out = *in;
	out->path = strdup(in->path);
	if (!out->path)
		rc = -ENOMEM;
unlock:
	pthread_mutex_unlock(&t->lock);
	return rc;
}

static void unlink_inode(struct itable *t, struct inode *in)
{
	struct inode **p = &t->by_ino[mix64(in->ino) & (t->nbuckets - 1)];

	while (*p != in)
		p = &(*p)->next_ino;
	*p = in->next_ino;
	p = &t->by_path[str_hash(in->path) & (t->nbuckets - 1)];
	while (*p != in)
		p = &(*p)->next_path;
	*p = in->next_path;
	t->count--;
}

void itable_forget(struct itable *t, uint64_t ino, uint64_t n)
{
	struct inode *in;

	pthread_mutex_lock(&t->lock);
	in = find_ino(t, ino);
	if (in && in->ino != 1) {
		in->nlookup = in->nlookup > n ? in->nlookup - n : 0;
		if (!in->nlookup) {
			unlink_inode(t, in);
			free(in->path);
			free(in);
		}
	}
	pthread_mutex_unlock(&t->lock);
}

uint64_t itable_count(struct itable *t)
{
	pthread_mutex_lock(&t->lock);
	uint64_t n = t->count;
	pthread_mutex_unlock(&t->lock);
	return n;
}
