/*
 * The namespace: dentries (parent inode + name) over inodes with stable
 * numbers, and the metadata cache of what the source said about each name.
 * Engine-internal.
 *
 * Locking: one mutex (ns_lock) guards the whole table. It is held only for
 * in-memory work, never across a source call or a reply, and the READ path
 * never takes it (an open file carries everything a read needs). Metadata
 * is owned this way rather than by an inode's shard (DESIGN's other
 * option) because a rename touches two directories and a lookup two
 * inodes: with owner shards each would be a cross-shard transaction, and
 * the kernel's attribute and entry caches already absorb most of the load.
 *
 * A node's path is its chain of parents, so renaming a directory is O(1)
 * whatever lies below it, and an open file's node survives its own rename.
 * Nodes nobody holds (no kernel reference, no open handle, no children,
 * no call in flight) stay as cache, oldest first on an LRU list, until
 * the table is over its size or their name is gone from the source.
 */
#ifndef CACHEFS_NS_I_H
#define CACHEFS_NS_I_H

#include <stdbool.h>
#include <stdint.h>

#include "ufs/ufs.h"

struct meta_op;
struct ewfile;

struct node {
	uint64_t ino;             /* FUSE node id; 1 is the root; never reused */
	struct node *parent;      /* NULL: the root, or a node no name reaches now */
	char *name;               /* as shown ("" for the root) */
	char *srcname;            /* the source's name when it differs (an alias), else NULL */
	char *etag;               /* the source's version tag, or NULL */
	struct ufs_stat st;       /* mode 0: a negative entry (the name does not exist) */
	uint64_t st_ns;           /* when st came from the source; 0: never */
	uint64_t fresh_until;     /* st may be used without asking until then */
	uint64_t list_ns;         /* dirs: when the children were listed in full; 0: not */
	uint64_t list_until;      /* ... and until when that listing is fresh */
	uint64_t open_id;         /* dirs no; files: st.id at the last open (auto_cache) */
	uint64_t nlookup;         /* kernel references */
	uint32_t nopen;           /* engine holds: open files, directory snapshots, calls */
	uint32_t nkids;
	struct ewfile *wfiles;    /* files open for writing, linked by wnext (engine/write.c) */
	uint32_t list_gen;        /* the listing of the parent that last saw this name */
	uint16_t src;             /* the source that answered last (ufs_call.source) */
	bool alias;               /* the name is an alias of srcname (UFS_OBJECT) */
	struct meta_op *stat_op;  /* a stat in flight for this node */
	struct meta_op *list_op;  /* dirs: a listing in flight */
	struct efile *shared;     /* files: the handle every reader shares (no_open), referenced;
				   * set and cleared under the lock (meta.c), dropped at forget */
	/* the table's */
	struct node *ino_next, *name_next;
	struct node *kids, *sib_prev, *sib_next;
	struct node *lru_prev, *lru_next;
	bool in_lru;
};

struct ns;

/* The root's attributes come from the source. Aborts on out-of-memory (startup). */
struct ns *ns_create(const struct ufs_stat *root_st, uint64_t max_nodes);
void ns_destroy(struct ns *ns);
void ns_lock(struct ns *ns);
void ns_unlock(struct ns *ns);

/* The rest: under the lock. */
struct node *ns_root(struct ns *ns);
struct node *ns_by_ino(struct ns *ns, uint64_t ino);
struct node *ns_child(struct ns *ns, const struct node *dir, const char *name);
/* A new child of dir, negative and never fetched; NULL on out-of-memory. */
struct node *ns_add(struct ns *ns, struct node *dir, const char *name);
/* Sets n's source name (NULL: the same as its name). -ENOMEM leaves it. */
int ns_set_srcname(struct node *n, const char *srcname);
int ns_set_etag(struct node *n, const char *etag);
/*
 * The name is gone (the source said so, or it was replaced): n leaves its
 * parent's table, and with its children is freed as soon as nothing holds
 * it. The kernel may still reach it by number until it forgets it.
 */
void ns_detach(struct ns *ns, struct node *n);
/*
 * Moves (dir, name) to (newdir, newname), replacing a node there (which is
 * detached). O(1) in the table whatever lies below. -ENOENT: no such name;
 * -EEXIST: the target exists and noreplace; -EINVAL: newdir lies below
 * the moved node; -ENOTEMPTY: the target is one of its ancestors; -ENOMEM.
 */
int ns_rename(struct ns *ns, struct node *dir, const char *name, struct node *newdir,
	      const char *newname, bool noreplace);
/* Holds: kernel references and engine holds. Releasing may free n. */
void ns_ref(struct ns *ns, struct node *n, uint64_t nlookup);
void ns_forget(struct ns *ns, struct node *n, uint64_t nlookup);
void ns_hold(struct ns *ns, struct node *n);
void ns_unhold(struct ns *ns, struct node *n);
/* Re-evaluates whether n may be evicted, after its holds or calls changed;
 * frees it if it is detached and nothing holds it. */
void ns_settle(struct ns *ns, struct node *n);
/* Frees the oldest unheld nodes while the table is over its size. */
void ns_trim(struct ns *ns);
/*
 * The source path of n: its parents' source names joined with '/' ("" for
 * the root), malloc'd; NULL on out-of-memory or for a node no name reaches.
 */
char *ns_path(const struct ns *ns, const struct node *n);
/* Whether a chain of names leads from the root to n. */
bool ns_reachable(const struct ns *ns, const struct node *n);
/* Nodes in the table, and how many of those are held. */
uint64_t ns_count(const struct ns *ns);

#endif
