/* Inode table of the FUSE front end. Guarded by one lock (itable.lock):
 * metadata only, never taken on the read data path. */
#ifndef CACHEFS_INODE_I_H
#define CACHEFS_INODE_I_H

#include <stdint.h>
#include "ufs/ufs.h"

struct inode {
	uint64_t ino;            /* FUSE node id; 1 is the root */
	uint64_t nlookup;        /* kernel references; freed at 0 (root never) */
	uint64_t fid;            /* page-cache file id: hash of path and version */
	struct ufs_stat st;      /* last stat from the UFS */
	char *path;              /* relative to the source root; "" for the root */
	struct inode *next_ino, *next_path;
};

struct itable;

/*
 * The page-cache identity of a file's bytes: the same path and version give
 * the same id even after the kernel forgot the inode (drop_caches, memory
 * pressure), so its cached pages are found again; a new version never
 * matches old pages.
 */
uint64_t file_id(const char *path, uint64_t version);

int itable_create(struct itable **out, const struct ufs_stat *root_st);
void itable_destroy(struct itable *t);

/*
 * Finds or adds the inode of `path` with attributes `st`, takes `lookups`
 * kernel references and copies the inode (path excluded) into *out.
 */
int itable_ref(struct itable *t, const char *path, const struct ufs_stat *st,
	       uint64_t lookups, struct inode *out);
/*
 * Copies inode `ino` into *out with a fresh strdup'd path (caller frees), or
 * -ENOENT. If st is given, stores it as the inode's new attributes first.
 */
int itable_get(struct itable *t, uint64_t ino, const struct ufs_stat *st, struct inode *out);
/* Drops n kernel references. */
void itable_forget(struct itable *t, uint64_t ino, uint64_t n);
/* Number of inodes held (for tests and status). */
uint64_t itable_count(struct itable *t);

#endif
