#include "config.h"
#include "engine/ns_i.h"
#include "core/util.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

struct ns {
	pthread_mutex_t lock;
	struct node *root;
	struct node **by_ino, **by_name;
	uint64_t nbuckets, count, next_ino, max_nodes;
	struct node *lru_head, *lru_tail;   /* unheld nodes, oldest first */
};

void ns_lock(struct ns *ns) { pthread_mutex_lock(&ns->lock); }
void ns_unlock(struct ns *ns) { pthread_mutex_unlock(&ns->lock); }
struct node *ns_root(struct ns *ns) { return ns->root; }
uint64_t ns_count(const struct ns *ns) { return ns->count; }

static uint64_t name_hash(uint64_t parent, const char *name)
{
	return XXH3_64bits_withSeed(name, strlen(name), parent);
}

static struct node **ino_slot(struct ns *ns, uint64_t ino)
{
	return &ns->by_ino[mix64(ino) & (ns->nbuckets - 1)];
}

static struct node **name_slot(struct ns *ns, uint64_t parent, const char *name)
{
	return &ns->by_name[name_hash(parent, name) & (ns->nbuckets - 1)];
}

static void hash_name(struct ns *ns, struct node *n)
{
	struct node **b = name_slot(ns, n->parent->ino, n->name);

	n->name_next = *b;
	*b = n;
}

static void unhash_name(struct ns *ns, struct node *n)
{
	struct node **p = name_slot(ns, n->parent->ino, n->name);

	while (*p != n)
		p = &(*p)->name_next;
	*p = n->name_next;
	n->name_next = NULL;
}

static void grow(struct ns *ns)
{
	uint64_t old = ns->nbuckets, nb = old * 2;
	struct node **bi = calloc(nb, sizeof(*bi)), **bn = calloc(nb, sizeof(*bn));
	struct node **oi = ns->by_ino;

	if (!bi || !bn) {
		/* Longer chains, not a failure. */
		free(bi);
		free(bn);
		return;
	}
	free(ns->by_name);
	ns->by_ino = bi;
	ns->by_name = bn;
	ns->nbuckets = nb;
	for (uint64_t b = 0; b < old; b++)
		for (struct node *n = oi[b], *next; n; n = next) {
			next = n->ino_next;
			struct node **s = ino_slot(ns, n->ino);
			n->ino_next = *s;
			*s = n;
			if (n->parent)
				hash_name(ns, n);
		}
	free(oi);
}

static struct node *node_new(struct ns *ns, const char *name)
{
	struct node *n = calloc(1, sizeof(*n));

	if (!n || !(n->name = strdup(name))) {
		free(n);
		return NULL;
	}
	if (ns->count >= ns->nbuckets)
		grow(ns);
	n->ino = ns->next_ino++;
	struct node **s = ino_slot(ns, n->ino);
	n->ino_next = *s;
	*s = n;
	ns->count++;
	return n;
}

struct ns *ns_create(const struct ufs_stat *root_st, uint64_t max_nodes)
{
	struct ns *ns = calloc(1, sizeof(*ns));

	if (!ns)
		abort();
	pthread_mutex_init(&ns->lock, NULL);
	ns->nbuckets = 1024;
	ns->by_ino = calloc(ns->nbuckets, sizeof(*ns->by_ino));
	ns->by_name = calloc(ns->nbuckets, sizeof(*ns->by_name));
	ns->next_ino = 1;
	ns->max_nodes = max_nodes ? max_nodes : UINT64_MAX;
	if (!ns->by_ino || !ns->by_name || !(ns->root = node_new(ns, "")))
		abort();
	ns->root->st = *root_st;
	ns->root->nlookup = 1;   /* the kernel never forgets the root */
	return ns;
}

static void node_free(struct node *n)
{
	free(n->name);
	free(n->srcname);
	free(n->etag);
	free(n);
}

void ns_destroy(struct ns *ns)
{
	if (!ns)
		return;
	for (uint64_t b = 0; b < ns->nbuckets; b++)
		for (struct node *n = ns->by_ino[b], *next; n; n = next) {
			next = n->ino_next;
			node_free(n);
		}
	free(ns->by_ino);
	free(ns->by_name);
	pthread_mutex_destroy(&ns->lock);
	free(ns);
}

struct node *ns_by_ino(struct ns *ns, uint64_t ino)
{
	struct node *n = *ino_slot(ns, ino);

	while (n && n->ino != ino)
		n = n->ino_next;
	return n;
}

struct node *ns_child(struct ns *ns, const struct node *dir, const char *name)
{
	struct node *n = *name_slot(ns, dir->ino, name);

	while (n && (n->parent != dir || strcmp(n->name, name)))
		n = n->name_next;
	return n;
}

static bool held(const struct node *n)
{
	return n->nlookup || n->nopen || n->nkids || n->stat_op || n->list_op;
}

static void lru_remove(struct ns *ns, struct node *n)
{
	if (!n->in_lru)
		return;
	if (n->lru_prev)
		n->lru_prev->lru_next = n->lru_next;
	else
		ns->lru_head = n->lru_next;
	if (n->lru_next)
		n->lru_next->lru_prev = n->lru_prev;
	else
		ns->lru_tail = n->lru_prev;
	n->lru_prev = n->lru_next = NULL;
	n->in_lru = false;
}

static void lru_append(struct ns *ns, struct node *n)
{
	n->lru_next = NULL;
	n->lru_prev = ns->lru_tail;
	if (ns->lru_tail)
		ns->lru_tail->lru_next = n;
	else
		ns->lru_head = n;
	ns->lru_tail = n;
	n->in_lru = true;
}

static void unlink_kid(struct node *n)
{
	struct node *dir = n->parent;

	if (n->sib_prev)
		n->sib_prev->sib_next = n->sib_next;
	else
		dir->kids = n->sib_next;
	if (n->sib_next)
		n->sib_next->sib_prev = n->sib_prev;
	n->sib_prev = n->sib_next = NULL;
	dir->nkids--;
}

static void link_kid(struct node *dir, struct node *n)
{
	n->parent = dir;
	n->sib_prev = NULL;
	n->sib_next = dir->kids;
	if (dir->kids)
		dir->kids->sib_prev = n;
	dir->kids = n;
	dir->nkids++;
}

static void unhash_ino(struct ns *ns, struct node *n)
{
	struct node **p = ino_slot(ns, n->ino);

	while (*p != n)
		p = &(*p)->ino_next;
	*p = n->ino_next;
	ns->count--;
}

static void evict(struct ns *ns, struct node *n);

/* A node leaves its parent; the parent's listing is then incomplete. */
static void orphan(struct ns *ns, struct node *n)
{
	struct node *dir = n->parent;

	unhash_name(ns, n);
	unlink_kid(n);
	n->parent = NULL;
	dir->list_ns = dir->list_until = 0;
	ns_settle(ns, dir);
}

/* Frees an unheld node that no name reaches (or is about to stop reaching). */
static void evict(struct ns *ns, struct node *n)
{
	assert(!n->nlookup && !n->nopen && !n->nkids && !n->stat_op && !n->list_op);
	lru_remove(ns, n);
	if (n->parent)
		orphan(ns, n);
	unhash_ino(ns, n);
	node_free(n);
}

void ns_settle(struct ns *ns, struct node *n)
{
	if (n == ns->root)
		return;
	if (held(n)) {
		lru_remove(ns, n);
		return;   /* a detached node is freed when let go */
	}
	if (!n->parent)
		evict(ns, n);
	else if (!n->in_lru)
		lru_append(ns, n);
}

void ns_trim(struct ns *ns)
{
	while (ns->count > ns->max_nodes && ns->lru_head)
		evict(ns, ns->lru_head);
}

struct node *ns_add(struct ns *ns, struct node *dir, const char *name)
{
	struct node *n = node_new(ns, name);

	if (!n)
		return NULL;
	link_kid(dir, n);
	hash_name(ns, n);
	ns_settle(ns, dir);
	ns_settle(ns, n);
	return n;
}

static int set_str(char **dst, const char *v)
{
	char *c = v ? strdup(v) : NULL;

	if (v && !c)
		return -ENOMEM;
	free(*dst);
	*dst = c;
	return 0;
}

int ns_set_srcname(struct node *n, const char *srcname)
{
	return set_str(&n->srcname, srcname && strcmp(srcname, n->name) ? srcname : NULL);
}

int ns_set_etag(struct node *n, const char *etag)
{
	if (n->etag && etag && !strcmp(n->etag, etag))
		return 0;
	return set_str(&n->etag, etag && *etag ? etag : NULL);
}

/* Detaches every descendant of n that nothing holds, and n's children from n. */
static void detach_kids(struct ns *ns, struct node *n)
{
	while (n->kids) {
		struct node *k = n->kids;
		detach_kids(ns, k);
		unhash_name(ns, k);
		unlink_kid(k);
		k->parent = NULL;
		ns_settle(ns, k);
	}
}

void ns_detach(struct ns *ns, struct node *n)
{
	if (!n->parent)
		return;
	lru_remove(ns, n);
	/*
	 * What lies below a name that is gone is gone too; nodes the kernel
	 * still holds stay reachable by number only.
	 */
	detach_kids(ns, n);
	orphan(ns, n);
	n->list_ns = n->list_until = 0;
	ns_settle(ns, n);
}

int ns_rename(struct ns *ns, struct node *dir, const char *name, struct node *newdir,
	      const char *newname, bool noreplace)
{
	struct node *n = ns_child(ns, dir, name), *old;
	char *nn;

	if (!n)
		return -ENOENT;
	for (struct node *p = newdir; p; p = p->parent)
		if (p == n)
			return -EINVAL;
	old = ns_child(ns, newdir, newname);
	if (old == n)
		return 0;
	if (old && noreplace && old->st.mode)
		return -EEXIST;
	for (struct node *p = n->parent; old && p; p = p->parent)
		if (p == old)
			return -ENOTEMPTY;   /* it holds n */
	nn = strdup(newname);
	if (!nn)
		return -ENOMEM;
	if (old)
		ns_detach(ns, old);
	unhash_name(ns, n);
	unlink_kid(n);
	free(n->name);
	n->name = nn;
	free(n->srcname);
	n->srcname = NULL;
	n->alias = false;
	link_kid(newdir, n);
	hash_name(ns, n);
	/* Settled after the move: dir may be newdir, or left with nothing. */
	ns_settle(ns, newdir);
	ns_settle(ns, dir);
	return 0;
}

void ns_ref(struct ns *ns, struct node *n, uint64_t nlookup)
{
	n->nlookup += nlookup;
	ns_settle(ns, n);
}

void ns_forget(struct ns *ns, struct node *n, uint64_t nlookup)
{
	if (n == ns->root)
		return;
	n->nlookup = n->nlookup > nlookup ? n->nlookup - nlookup : 0;
	ns_settle(ns, n);
}

void ns_hold(struct ns *ns, struct node *n)
{
	n->nopen++;
	ns_settle(ns, n);
}

void ns_unhold(struct ns *ns, struct node *n)
{
	assert(n->nopen);
	n->nopen--;
	ns_settle(ns, n);
}

bool ns_reachable(const struct ns *ns, const struct node *n)
{
	while (n != ns->root) {
		if (!n->parent)
			return false;
		n = n->parent;
	}
	return true;
}

char *ns_path(const struct ns *ns, const struct node *n)
{
	size_t len = 0;
	char *p, *end;

	for (const struct node *i = n; i != ns->root; i = i->parent) {
		if (!i->parent)
			return NULL;
		len += strlen(i->srcname ? i->srcname : i->name) + 1;
	}
	len -= len ? 1 : 0;   /* k parts, k - 1 slashes */
	p = malloc(len + 1);
	if (!p)
		return NULL;
	end = p + len;
	*end = '\0';
	for (const struct node *i = n; i != ns->root; i = i->parent) {
		const char *s = i->srcname ? i->srcname : i->name;
		size_t l = strlen(s);
		end -= l;
		memcpy(end, s, l);
		if (end > p)
			*--end = '/';
	}
	return p;
}
