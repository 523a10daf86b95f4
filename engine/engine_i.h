/* The engine's state, shared by its files: meta.c (namespace calls),
 * read.c (reads, read-ahead, page operations) and engine.c (life). */
#ifndef CACHEFS_ENGINE_I_H
#define CACHEFS_ENGINE_I_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "engine/engine.h"
#include "engine/ns_i.h"
#include "iostore/pgcache.h"
#include "iostore/pgstore.h"
#include "iostore/readahead.h"

/* Sources whose outages are told apart (mount table entries; more share). */
#define ENG_SOURCES 64

/* Set up before the shards serve and read-only afterwards, except the atomics and `ns`. */
struct engine {
	struct cache_opts cfg;
	struct meta_opts meta;
	const struct ufs_ops *ops;
	struct ufs *ufs;
	struct ns *ns;               /* its own lock */
	uint32_t list_gen;           /* under the ns lock */
	struct pgcache *cache;
	struct pgstore *store;       /* SSD tier, or NULL */
	struct ra_params ra;
	struct ra_budget ra_budget;
	uint64_t stale_ns;           /* stale_if_error: how old an answer may be served */
	char mnt[PATH_MAX];
	char source[PATH_MAX];       /* as the user named it, for status */
	time_t started;
	/* Open files, so that those the kernel never released are freed at the end. */
	pthread_mutex_t files_lock;
	struct efile *files;
	/* When each source began failing (0: it answers). */
	_Atomic uint64_t outage_since[ENG_SOURCES];
	/* Metrics: relaxed atomics, bumped by whichever thread serves. */
	atomic_ullong open_files;
	atomic_ullong shared_files;  /* inodes' shared handles (no_open), not in open_files */
	atomic_ullong lat[ENG_SRC_OPS][ENG_LAT_BUCKETS + 1];
	atomic_ullong lat_sum_us[ENG_SRC_OPS];
	atomic_ullong ra_windows[ENG_RA_BUCKETS + 1];
	atomic_ullong ra_window_pages;
	atomic_ullong stale_answers;
	atomic_ullong bytes_written, commits, commit_failures;
	/* Other nodes' caches, asked before the source (set before the mount serves). */
	struct engine_peers peers;
	atomic_ullong peer_pages, peer_bytes, peer_fallbacks;
};

/* An open file. Handles are shared by the kernel's threads: fields are set
 * at open and read-only afterwards, except `ra` (its own lock). */
struct efile {
	struct engine *e;
	atomic_uint refs;            /* the opener's, reads', page operations', fetches' */
	struct ufs_file *file;       /* NULL: opened while the source failed (cached pages only) */
	struct node *node;           /* held; NULL for files opened by path (jobs) */
	uint64_t fid, size, version;
	struct ra_state ra;
	bool shared;                 /* an inode's shared handle: counted in shared_files */
	/* What a peer needs to read the same object: the name at the source
	 * (from the mount's root) and its ETag; NULL when not known. */
	char *path, *etag;
	bool local_only;             /* a peer asked: fetch from the source, never from another peer */
	/*
	 * The last page whose fetch failed, and until when a read of it on
	 * this handle gets the same error: the kernel re-reads a page whose
	 * read-ahead failed at once, and that must not start a second fetch
	 * and a second timeout. A reader with another handle tries anew.
	 */
	_Atomic uint64_t fail_index, fail_until;
	atomic_int fail_err;
	struct efile *prev, *next;   /* engine->files, under files_lock */
};

/*
 * A file open for writing. Its writes, flushes and commits run on its
 * owner shard, in the order they come (an upload's state is the owner's).
 */
struct ewfile {
	struct engine *e;
	atomic_uint refs;            /* the opener's, writes', calls' */
	struct ufs_file *file;
	struct node *node;           /* held */
	unsigned owner;
	bool staged;                 /* its writes reach the source at commit only (ufs_call.staged) */
	atomic_bool dirty;           /* changed since the last commit */
	atomic_bool failing;         /* its last commit failed: counted once until one succeeds */
	/*
	 * Where its writes end: raised by the owner shard's writes, set by a
	 * truncate; what a stat of the node answers as the size while it is
	 * open (the kernel would otherwise take back a size it has passed).
	 */
	_Atomic uint64_t end;
	struct ewfile *wnext;        /* node->wfiles, under the ns lock */
	/* What the last commit made the source hold: written on the owner
	 * before `committed` is set (release), read at the last close. */
	struct ufs_stat committed_st;
	atomic_bool committed;
};

/* The size a stat of n answers while files are open for writing on it (under the ns lock). */
uint64_t engine_written_size(const struct node *n);
/* Under the ns lock: n is open for writing with staged writes: the source has older attributes. */
bool engine_written_ahead(const struct node *n);
/* Under the ns lock (which it drops): m (begun, EM_GETATTR) for node n, as engine_getattr does. */
void engine_stat_node(struct engine *e, struct emeta *m, struct node *n);
/* For an open for writing: n (held through m->node) is fresh; open it at the source. */
void engine_open_write_node(struct emeta *m);
/* Opens node n (locked) for m, EM_OPEN or EM_OPEN_WRITE: at once, or after a stat when stale. */
void open_node(struct engine *e, struct emeta *m, struct node *n);
/* Under the ns lock: n is as the source described it just now (not its ETag). */
void node_describe(struct node *n, const struct ufs_call *c, uint64_t now);
/* Under the ns lock: how long n's attributes stay true, as emeta.valid_ns says. */
uint64_t valid_for(const struct node *n, uint64_t now, bool stale);
/* Under the ns lock: 0 when names can be made in or looked up below dir, else -ENOENT or -ENOTDIR. */
int dir_usable(const struct ns *ns, const struct node *dir);
/* Starts a metadata call: m's results cleared, its kind set. */
void emeta_begin(struct engine *e, struct emeta *m, enum emeta_kind kind);
/* Runs fn(m) on the calling shard at once, or on some shard when the caller is not one. */
void engine_run_any(struct shard_msg *m, void (*fn)(struct shard_msg *m));
/* What a caller sees of a failed source call: EIO when the source did not answer. */
int engine_error(int rc);
/* Counts a source call of kind `op` that began at start_ns (now_ns()). */
void engine_count_latency(struct engine *e, enum engine_src_op op, uint64_t start_ns);
/* An efile over an open source file (NULL: cached pages only), with one reference. */
struct efile *efile_new(struct engine *e, struct ufs_file *file, const struct ufs_stat *st);
/* Where f came from, for peers (copied, when peers are plugged in). */
void efile_set_source(struct efile *f, const char *path, const char *etag);
/* Starts read-ahead after a read of [off, off + len) (read.c). */
void engine_readahead(struct efile *f, uint64_t off, size_t len);
/* pgcache_fetch.start: reads a page of the source file `ctx` on the owner shard. */
int engine_fetch_start(void *ctx, const struct pgkey *key, uint64_t off, void *buf, size_t len,
		       struct page *pg);

#endif
