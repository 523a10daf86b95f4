#include "config.h"
#include "iostore/pgstore.h"
#include "iostore/pgstore_i.h"
#include "core/log.h"
#include "core/shard.h"
#include "core/util.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#define NIL UINT32_MAX
/* Log blocks buffered per segment while their writes are in flight. */
#define RING_BLOCKS 64u

/* ---- layout helpers, shared with cachefs-fsck ---- */

uint64_t pgs_super_csum(const struct pgs_super *sb)
{
	return XXH3_64bits(sb, offsetof(struct pgs_super, csum));
}

uint64_t pgs_head_csum(const struct pgs_log_head *h)
{
	return XXH3_64bits_withSeed(h, offsetof(struct pgs_log_head, csum), h->uuid);
}

uint64_t pgs_rec_csum(const struct pgs_rec *r, uint64_t uuid)
{
	return XXH3_64bits_withSeed(r, offsetof(struct pgs_rec, csum), uuid);
}

uint64_t pgs_data_csum(const void *data, size_t len, uint64_t uuid)
{
	return XXH3_64bits_withSeed(data, len, uuid);
}

int pgs_super_check(const struct pgs_super *sb, uint64_t file_size, char *err, size_t errlen)
{
	if (memcmp(sb->magic, PGS_MAGIC, 8)) {
		snprintf(err, errlen, "no cachefs store signature");
		return -EINVAL;
	}
	if (sb->layout != PGS_LAYOUT) {
		snprintf(err, errlen, "store layout version %u, this cachefs reads version %u",
			 sb->layout, PGS_LAYOUT);
		return -EINVAL;
	}
	if (sb->csum != pgs_super_csum(sb)) {
		snprintf(err, errlen, "superblock checksum mismatch");
		return -EINVAL;
	}
	if (sb->block != PGS_BLOCK || !is_pow2(sb->page_size) || sb->page_size < PGS_BLOCK ||
	    !sb->nparts || sb->log_half < 2 * PGS_BLOCK || sb->log_half % PGS_BLOCK ||
	    sb->data_off < sb->log_off + 2ULL * sb->nparts * sb->log_half ||
	    sb->data_off + sb->slots_per_part * sb->nparts * sb->page_size > sb->size ||
	    (file_size && sb->size > file_size)) {
		snprintf(err, errlen, "superblock geometry does not fit the store");
		return -EINVAL;
	}
	return 0;
}

static uint64_t half_off(const struct pgs_super *sb, uint32_t part, unsigned half)
{
	return sb->log_off + (2ULL * part + half) * sb->log_half;
}

static uint64_t recs_per_half(const struct pgs_super *sb)
{
	return (sb->log_half - PGS_BLOCK) / PGS_REC_SIZE;
}

static bool head_valid(const struct pgs_log_head *h, const struct pgs_super *sb, uint32_t part,
		       unsigned half)
{
	return !memcmp(h->magic, PGS_LOG_MAGIC, 8) && h->uuid == sb->uuid && h->part == part &&
	       h->half == half && h->epoch && h->csum == pgs_head_csum(h);
}

static bool rec_empty(const struct pgs_rec *r)
{
	static const struct pgs_rec zero;

	return !memcmp(r, &zero, sizeof(zero));
}

int pgs_replay_part(int fd, const struct pgs_super *sb, uint32_t part,
		    void (*put)(void *arg, const struct pgs_rec *r), void *arg,
		    struct pgs_replay *out)
{
	const size_t chunk = 1 << 20;
	uint64_t total = recs_per_half(sb), done = 0;
	struct pgs_log_head heads[2];
	char *buf;
	int rc = 0;

	memset(out, 0, sizeof(*out));
	if (posix_memalign((void **)&buf, PGS_BLOCK, chunk))
		return -ENOMEM;
	for (unsigned h = 0; h < 2; h++) {
		if (pread(fd, buf, PGS_BLOCK, (off_t)half_off(sb, part, h)) != PGS_BLOCK) {
			rc = errno ? -errno : -EIO;
			goto out;
		}
		memcpy(&heads[h], buf, sizeof(heads[h]));
		if (head_valid(&heads[h], sb, part, h) && heads[h].epoch > out->epoch) {
			out->epoch = heads[h].epoch;
			out->half = h;
		}
	}
	if (!out->epoch)
		goto out;    /* never written: an empty partition */
	while (done < total) {
		uint64_t n = MIN(total - done, chunk / PGS_REC_SIZE);
		off_t at = (off_t)(half_off(sb, part, out->half) + PGS_BLOCK + done * PGS_REC_SIZE);
		ssize_t got = pread(fd, buf, n * PGS_REC_SIZE, at);

		if (got != (ssize_t)(n * PGS_REC_SIZE)) {
			rc = got < 0 ? -errno : -EIO;
			goto out;
		}
		for (uint64_t i = 0; i < n; i++) {
			const struct pgs_rec *r = (const struct pgs_rec *)(buf + i * PGS_REC_SIZE);
			bool good = r->csum == pgs_rec_csum(r, sb->uuid);

			if (good && r->epoch == out->epoch &&
			    (r->type == PGS_REC_PUT || r->type == PGS_REC_DROP) &&
			    r->slot < sb->slots_per_part && r->len <= sb->page_size) {
				put(arg, r);
				out->recs++;
				continue;
			}
			/*
			 * The end. Zeroes and well-formed records of an older
			 * epoch are the normal end of a log; anything else is a
			 * torn or corrupt tail, and records after it that
			 * claim this epoch are lost with it.
			 */
			if (!rec_empty(r) && !(good && r->epoch != out->epoch)) {
				out->bad++;
				for (uint64_t j = i + 1; j < n; j++) {
					const struct pgs_rec *q = (const struct pgs_rec *)(buf + j * PGS_REC_SIZE);
					out->bad += q->epoch == out->epoch;
				}
			}
			goto out;
		}
		done += n;
	}
out:
	free(buf);
	return rc;
}

/* ---- the store ---- */

enum slot_state { SL_FREE, SL_WRITING, SL_READY };

/* The whole index cost of a slot; owned by the partition's shard. */
struct slot {
	uint64_t file, version, csum;
	uint32_t index, len;
	uint32_t hnext;           /* hash chain */
	uint32_t local;           /* slot number within its segment */
	uint8_t seg;
	uint8_t state;            /* enum slot_state */
	uint8_t ref;              /* CLOCK reference bit */
	uint8_t reading;          /* a read is in flight: not evictable */
	uint8_t held;             /* pinned: never evicted (PGS_REC_HELD) */
};

/*
 * A store file. Shared by every shard: only `fixed` and `failed` change
 * after the open, and they are atomics; the rest is read-only.
 */
struct sfile {
	char path[PATH_MAX];
	int fd;
	int lock_fd;              /* holds the flock: fd's description is shared with the rings */
	bool created;             /* by this open: removed again if the open fails */
	atomic_int fixed;         /* registered file index on every ring, or -1 */
	struct pgs_super sb;
	atomic_bool failed;       /* an IO error switched this file off */
};

/* One store file's slice of a partition, and that slice's log: the
 * partition's owner shard's alone. */
struct seg {
	struct pgstore_part *p;
	struct sfile *f;
	uint32_t part;
	uint32_t nslots;
	uint64_t epoch;
	unsigned half;
	uint64_t nrecs;           /* records in the active half */
	uint64_t flushed;         /* records on disk */
	uint64_t writing_to;      /* records covered by the write in flight */
	bool writing, compacting;
	char *ring;               /* RING_BLOCKS log blocks */
	struct pgs_rec *pending;  /* waiting for room in the ring, or for a compaction */
	size_t npending, cap_pending;
	char *snap;               /* compaction snapshot in flight */
	uint64_t snap_recs;
	struct shard_op op;
	uint64_t lost;            /* records dropped: out of memory */
};

/* A shard's part of the store. Everything in it belongs to `owner`. */
struct pgstore_part {
	struct pgstore *ps;
	struct shard *owner;      /* NULL until attached */
	bool files_registered;    /* the owner's ring has the store files */
	struct slot *slots;
	uint32_t nslots, hand;
	uint32_t *free;           /* stack of free slots, used before evicting */
	uint32_t nfree;
	uint32_t *buckets;
	uint32_t bucket_mask;
	uint32_t held_limit;      /* most slots pins may hold */
	uint64_t *ghost;          /* second_touch: fingerprints of first misses */
	uint32_t ghost_mask;
	struct seg segs[PGSTORE_MAX_FILES];
	struct pgstore_stats stats;
} __attribute__((aligned(64)));

struct pgstore {
	struct sfile files[PGSTORE_MAX_FILES];
	unsigned nfiles, nparts;
	uint64_t page_size;
	bool second_touch;
	struct pgstore_part *parts;
};

#define assert_owner(p) assert((p)->owner == shard_self())

static uint32_t *bucket_of(struct pgstore_part *p, uint64_t file, uint64_t index)
{
	struct pgkey k = { file, index };

	/* The low bits chose the partition: index buckets by others. */
	return &p->buckets[(pgkey_hash(&k) >> 20) & p->bucket_mask];
}

static uint32_t lookup(struct pgstore_part *p, uint64_t file, uint64_t index)
{
	for (uint32_t s = *bucket_of(p, file, index); s != NIL; s = p->slots[s].hnext)
		if (p->slots[s].file == file && p->slots[s].index == index)
			return s;
	return NIL;
}

/* The slot holding key, or NIL; indexes past 32 bits are never stored. */
static uint32_t lookup_key(struct pgstore_part *p, const struct pgkey *key)
{
	return key->index > UINT32_MAX ? NIL : lookup(p, key->file, key->index);
}

static void hash_add(struct pgstore_part *p, uint32_t s)
{
	uint32_t *b = bucket_of(p, p->slots[s].file, p->slots[s].index);

	p->slots[s].hnext = *b;
	*b = s;
}

static void hash_del(struct pgstore_part *p, uint32_t s)
{
	uint32_t *b = bucket_of(p, p->slots[s].file, p->slots[s].index);

	while (*b != s)
		b = &p->slots[*b].hnext;
	*b = p->slots[s].hnext;
	p->slots[s].hnext = NIL;
}

static uint64_t slot_off(const struct seg *g, uint32_t local)
{
	const struct pgs_super *sb = &g->f->sb;

	return sb->data_off + ((uint64_t)g->part * sb->slots_per_part + local) * sb->page_size;
}

static void free_slot(struct pgstore_part *p, uint32_t s)
{
	struct slot *sl = &p->slots[s];

	if (sl->state == SL_READY) {
		p->stats.pages--;
		p->stats.bytes -= sl->len;
	}
	if (sl->state != SL_FREE)
		hash_del(p, s);
	if (sl->held)
		p->stats.pinned--;
	sl->state = SL_FREE;
	sl->ref = 0;
	sl->held = 0;
}

/* Frees slot s and keeps it for the next put. */
static void release_slot(struct pgstore_part *p, uint32_t s)
{
	if (p->slots[s].state != SL_FREE) {
		free_slot(p, s);
		p->free[p->nfree++] = s;
	}
}

/* ---- opening: format, check, lock, replay ---- */

/* Geometry for `size` bytes in `nparts` partitions of page_size slots. */
static int plan(struct pgs_super *sb, uint64_t size, uint64_t page_size, unsigned nparts)
{
	uint64_t slots = size / page_size / nparts, recs;

	memset(sb, 0, sizeof(*sb));
	/* Room for twice the slots in records: compaction every ~slots puts. */
	recs = 2 * slots + 1024;
	sb->log_half = (PGS_BLOCK + recs * PGS_REC_SIZE + PGS_BLOCK - 1) / PGS_BLOCK * PGS_BLOCK;
	sb->log_off = PGS_BLOCK;
	sb->data_off = sb->log_off + 2ULL * nparts * sb->log_half;
	sb->data_off = (sb->data_off + page_size - 1) / page_size * page_size;
	if (sb->data_off >= size)
		return -ENOSPC;
	sb->slots_per_part = (size - sb->data_off) / page_size / nparts;
	if (!sb->slots_per_part || sb->slots_per_part > NIL / 2)
		return sb->slots_per_part ? -E2BIG : -ENOSPC;
	memcpy(sb->magic, PGS_MAGIC, 8);
	sb->layout = PGS_LAYOUT;
	sb->page_size = (uint32_t)page_size;
	sb->nparts = nparts;
	sb->block = PGS_BLOCK;
	sb->size = size;
	if (getrandom(&sb->uuid, sizeof(sb->uuid), 0) != sizeof(sb->uuid))
		sb->uuid = now_ns() ^ (uint64_t)getpid() << 32;
	sb->created_ns = realtime_ns();
	sb->csum = pgs_super_csum(sb);
	return 0;
}

static int write_block(int fd, const void *data, size_t len, uint64_t off)
{
	void *b;
	ssize_t n;

	if (posix_memalign(&b, PGS_BLOCK, PGS_BLOCK))
		return -ENOMEM;
	memset(b, 0, PGS_BLOCK);
	memcpy(b, data, len);
	n = pwrite(fd, b, PGS_BLOCK, (off_t)off);
	free(b);
	return n == PGS_BLOCK ? 0 : n < 0 ? -errno : -EIO;
}

/* Writes a fresh, empty layout: log headers zeroed first, superblock last. */
static int format(struct sfile *f)
{
	static const struct pgs_log_head zero;
	int rc = 0;

	for (uint32_t p = 0; p < f->sb.nparts && !rc; p++)
		for (unsigned h = 0; h < 2 && !rc; h++)
			rc = write_block(f->fd, &zero, sizeof(zero), half_off(&f->sb, p, h));
	if (!rc && fdatasync(f->fd) < 0)
		rc = -errno;
	if (!rc)
		rc = write_block(f->fd, &f->sb, sizeof(f->sb), 0);
	if (!rc && fdatasync(f->fd) < 0)
		rc = -errno;
	return rc;
}

#define RESET_HINT "; reset it with `cachefs-fsck --reset %s` (only cached pages are lost)"

/*
 * Opens store file i: 1 opened, 0 skipped with a warning (no room), or a
 * negative errno with the message in err.
 */
static int open_file(struct pgstore *ps, unsigned i, const struct pgstore_file *fo, char *err,
		     size_t errlen)
{
	struct sfile *f = &ps->files[i];
	struct stat st;
	struct statfs sfs;
	uint64_t size = fo->size;
	bool created = false, blk;
	struct pgs_super *sb;
	char why[160], a[32], b[32];
	int rc;

	snprintf(f->path, sizeof(f->path), "%s", fo->path);
	f->fd = f->lock_fd = -1;
	f->fixed = -1;
	if (stat(f->path, &st) < 0) {
		if (errno != ENOENT) {
			snprintf(err, errlen, "ssd_cache %s: %s", f->path, strerror(errno));
			return -errno;
		}
		created = true;
	} else if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		snprintf(err, errlen, "ssd_cache %s: not a regular file or block device", f->path);
		return -EINVAL;
	}
	blk = !created && S_ISBLK(st.st_mode);
	f->created = created;
	f->fd = open(f->path, O_RDWR | O_DIRECT | O_CLOEXEC | (created ? O_CREAT | O_EXCL : 0), 0600);
	if (f->fd < 0) {
		rc = -errno;
		if (rc == -EINVAL)
			snprintf(err, errlen, "ssd_cache %s: the file system does not support O_DIRECT; "
				 "put the store on a local disk file system or a block device", f->path);
		else
			snprintf(err, errlen, "ssd_cache %s: %s", f->path, strerror(-rc));
		if (created && rc == -EINVAL)
			unlink(f->path);    /* some file systems create, then refuse O_DIRECT */
		return rc;
	}
	/*
	 * The lock lives on a description of its own: the rings' registered
	 * files keep the IO descriptor's alive after close, until the kernel
	 * tears them down, and a restart must not wait for that.
	 */
	f->lock_fd = open(f->path, O_RDONLY | O_CLOEXEC);
	if (f->lock_fd < 0 || flock(f->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		snprintf(err, errlen, "ssd_cache %s is in use by another cachefs daemon "
			 "(a store has one writer); give each mount its own store", f->path);
		return -EBUSY;
	}
	if (fstatfs(f->fd, &sfs) == 0 && (sfs.f_type == TMPFS_MAGIC || sfs.f_type == RAMFS_MAGIC))
		log_warn("ssd_cache %s is on tmpfs: it takes RAM, not SSD, and is lost at reboot", f->path);
	if (blk) {
		uint64_t dev;
		if (ioctl(f->fd, BLKGETSIZE64, &dev) < 0) {
			snprintf(err, errlen, "ssd_cache %s: BLKGETSIZE64: %s", f->path, strerror(errno));
			return -errno;
		}
		if (!size || size > dev)
			size = dev;
	} else if (!size) {
		snprintf(err, errlen, "ssd_cache %s: give a size (PATH:SIZE) for a store file", f->path);
		return -EINVAL;
	}
	/* Read the superblock before anything is written. */
	if (posix_memalign((void **)&sb, PGS_BLOCK, PGS_BLOCK))
		return -ENOMEM;
	memset(sb, 0, PGS_BLOCK);
	if (!created && (blk || (uint64_t)st.st_size >= PGS_BLOCK) &&
	    pread(f->fd, sb, PGS_BLOCK, 0) != PGS_BLOCK) {
		rc = -errno;
		snprintf(err, errlen, "ssd_cache %s: reading its superblock: %s", f->path, strerror(-rc));
		free(sb);
		return rc;
	}
	memcpy(&f->sb, sb, sizeof(f->sb));
	free(sb);

	bool fresh = !memcmp(f->sb.magic, "\0\0\0\0\0\0\0\0", 8);
	if (!fresh && pgs_super_check(&f->sb, 0, why, sizeof(why))) {
		snprintf(err, errlen, "ssd_cache %s: %s" RESET_HINT, f->path, why, f->path);
		return -EINVAL;
	}
	if (!fresh && f->sb.page_size != ps->page_size) {
		snprintf(err, errlen, "ssd_cache %s was made with page_size=%s, this mount uses %s" RESET_HINT,
			 f->path, fmt_size(f->sb.page_size, a, sizeof(a)),
			 fmt_size(ps->page_size, b, sizeof(b)), f->path);
		return -EINVAL;
	}
	if (!fresh && f->sb.nparts != ps->nparts) {
		snprintf(err, errlen, "ssd_cache %s was made for %u shards, this mount runs %u: "
			 "mount with shards=%u to keep it" RESET_HINT,
			 f->path, f->sb.nparts, ps->nparts, f->sb.nparts, f->path);
		return -EINVAL;
	}
	if (!fresh && f->sb.size != size) {
		snprintf(err, errlen, "ssd_cache %s was made with size %s, this mount asks for %s" RESET_HINT,
			 f->path, fmt_size(f->sb.size, a, sizeof(a)), fmt_size(size, b, sizeof(b)), f->path);
		return -EINVAL;
	}
	/* Reserve every byte now, so a full file system never fails a write later. */
	if (!blk && fallocate(f->fd, 0, 0, (off_t)size) < 0) {
		rc = -errno;
		if (rc == -ENOSPC || rc == -EDQUOT) {
			log_warn("ssd_cache %s: cannot reserve %s: %s; running without this store "
				 "(RAM tier and source only)", f->path, fmt_size(size, a, sizeof(a)),
				 strerror(-rc));
			if (created)
				unlink(f->path);
			close(f->fd);
			close(f->lock_fd);
			f->fd = f->lock_fd = -1;
			return 0;
		}
		if (rc != -EOPNOTSUPP) {
			snprintf(err, errlen, "ssd_cache %s: fallocate: %s", f->path, strerror(-rc));
			return rc;
		}
		log_info("ssd_cache %s: fallocate not supported; the file is sparse and a full "
			 "file system will switch the store off", f->path);
		if (ftruncate(f->fd, (off_t)size) < 0) {
			snprintf(err, errlen, "ssd_cache %s: ftruncate: %s", f->path, strerror(errno));
			return -errno;
		}
	}
	if (fresh) {
		rc = plan(&f->sb, size, ps->page_size, ps->nparts);
		if (rc) {
			snprintf(err, errlen, "ssd_cache %s: %s is too small for %u shards of %s pages",
				 f->path, fmt_size(size, a, sizeof(a)), ps->nparts,
				 fmt_size(ps->page_size, b, sizeof(b)));
			return rc;
		}
		rc = format(f);
		if (rc) {
			snprintf(err, errlen, "ssd_cache %s: formatting: %s", f->path, strerror(-rc));
			return rc;
		}
		log_info("ssd_cache %s: new store of %s, %llu slots per shard", f->path,
			 fmt_size(size, a, sizeof(a)), (unsigned long long)f->sb.slots_per_part);
	}
	return 1;
}

struct replay_ctx {
	struct pgstore_part *p;
	uint32_t *map;            /* local slot -> partition slot */
};

static void replay_put(void *arg, const struct pgs_rec *r)
{
	struct replay_ctx *c = arg;
	struct pgstore_part *p = c->p;
	uint32_t s = c->map[r->slot], old;
	struct slot *sl = &p->slots[s];

	free_slot(p, s);
	if (r->type != PGS_REC_PUT || r->index > UINT32_MAX)
		return;
	/* The same page in two slots: the later record wins. */
	old = lookup(p, r->file, r->index);
	if (old != NIL)
		free_slot(p, old);
	sl->file = r->file;
	sl->index = (uint32_t)r->index;
	sl->version = r->version;
	sl->len = r->len;
	sl->csum = r->data_csum;
	sl->state = SL_READY;
	sl->ref = 0;
	sl->held = !!(r->flags & PGS_REC_HELD);
	p->stats.pinned += sl->held;
	hash_add(p, s);
	p->stats.pages++;
	p->stats.bytes += r->len;
}

/* Bytes of n records, whole blocks. */
static size_t snap_bytes(uint64_t n)
{
	return (n * PGS_REC_SIZE + PGS_BLOCK - 1) / PGS_BLOCK * PGS_BLOCK;
}

/* Fills recs with PUT records of the segment's ready slots; returns the count. */
static uint64_t snapshot(struct pgstore_part *p, unsigned gi, uint64_t epoch, struct pgs_rec *recs)
{
	struct seg *g = &p->segs[gi];
	uint64_t n = 0;

	for (uint32_t s = 0; s < p->nslots; s++) {
		struct slot *sl = &p->slots[s];
		if (sl->seg != gi || sl->state != SL_READY)
			continue;
		struct pgs_rec *r = &recs[n++];
		memset(r, 0, sizeof(*r));
		r->type = PGS_REC_PUT;
		r->slot = sl->local;
		r->file = sl->file;
		r->index = sl->index;
		r->version = sl->version;
		r->len = sl->len;
		r->flags = sl->held ? PGS_REC_HELD : 0;
		r->data_csum = sl->csum;
		r->epoch = epoch;
		r->csum = pgs_rec_csum(r, g->f->sb.uuid);
	}
	return n;
}

/*
 * Buffer for a snapshot of segment g: a header block, the records, and one
 * zero block after them that ends the log there (a half always has room for
 * it: it holds twice the slots in records).
 */
static char *snap_alloc(const struct seg *g)
{
	size_t len = PGS_BLOCK + snap_bytes(g->nslots) + PGS_BLOCK;
	char *b;

	if (posix_memalign((void **)&b, PGS_BLOCK, len))
		return NULL;
	memset(b, 0, len);
	return b;
}

static void fill_head(const struct seg *g, unsigned half, uint64_t epoch, uint64_t nrecs, void *block)
{
	struct pgs_log_head *h = block;

	memset(h, 0, sizeof(*h));
	memcpy(h->magic, PGS_LOG_MAGIC, 8);
	h->part = g->part;
	h->half = half;
	h->epoch = epoch;
	h->uuid = g->f->sb.uuid;
	h->nrecs = nrecs;
	h->csum = pgs_head_csum(h);
}

/*
 * After replay: writes the live set into the other half under a new epoch,
 * synchronously. The new log starts clean, so nothing of a torn tail can
 * come back to life later.
 */
static int restart_log(struct pgstore_part *p, unsigned gi)
{
	struct seg *g = &p->segs[gi];
	unsigned half = g->epoch ? !g->half : 0;
	uint64_t epoch = g->epoch + 1, n;
	char *b = snap_alloc(g);
	size_t len;
	int rc = 0;

	if (!b)
		return -ENOMEM;
	n = snapshot(p, gi, epoch, (struct pgs_rec *)(b + PGS_BLOCK));
	/* Records and the zero block after them first, the header last. */
	len = snap_bytes(n) + PGS_BLOCK;
	if (pwrite(g->f->fd, b + PGS_BLOCK, len, (off_t)(half_off(&g->f->sb, g->part, half) + PGS_BLOCK)) !=
	    (ssize_t)len)
		rc = errno ? -errno : -EIO;
	if (!rc && fdatasync(g->f->fd) < 0)
		rc = -errno;
	fill_head(g, half, epoch, n, b);
	if (!rc && pwrite(g->f->fd, b, PGS_BLOCK, (off_t)half_off(&g->f->sb, g->part, half)) != PGS_BLOCK)
		rc = errno ? -errno : -EIO;
	if (!rc) {
		g->half = half;
		g->epoch = epoch;
		g->nrecs = g->flushed = n;
		/* The partial last block is rewritten by later appends: keep it. */
		memcpy(g->ring + (n / PGS_RECS_PER_BLOCK % RING_BLOCKS) * PGS_BLOCK,
		       b + PGS_BLOCK + n / PGS_RECS_PER_BLOCK * PGS_BLOCK, PGS_BLOCK);
	}
	free(b);
	return rc;
}

static int part_init(struct pgstore *ps, struct pgstore_part *p, unsigned pi)
{
	uint32_t total = 0, nb = 16;

	p->ps = ps;
	for (unsigned i = 0; i < ps->nfiles; i++)
		if (ps->files[i].fd >= 0)
			total += (uint32_t)ps->files[i].sb.slots_per_part;
	p->nslots = total;
	p->held_limit = (uint32_t)((uint64_t)total * PIN_MAX_PCT / 100);
	while (nb < total)
		nb <<= 1;
	p->slots = calloc(total, sizeof(*p->slots));
	p->free = malloc(total * sizeof(*p->free));
	p->buckets = malloc(nb * sizeof(*p->buckets));
	if (!p->slots || !p->free || !p->buckets)
		return -ENOMEM;
	memset(p->buckets, 0xff, nb * sizeof(*p->buckets));
	p->bucket_mask = nb - 1;
	if (ps->second_touch) {
		p->ghost = calloc(nb, sizeof(*p->ghost));
		if (!p->ghost)
			return -ENOMEM;
		p->ghost_mask = nb - 1;
	}
	/*
	 * Interleave the files' slots, weighted by size, so the CLOCK hand
	 * spreads writes over every device instead of filling one first.
	 */
	uint32_t left[PGSTORE_MAX_FILES] = { 0 }, s = 0;
	for (unsigned i = 0; i < ps->nfiles; i++) {
		struct seg *g = &p->segs[i];
		g->p = p;
		g->f = &ps->files[i];
		g->part = pi;
		if (g->f->fd < 0)
			continue;
		g->nslots = left[i] = (uint32_t)g->f->sb.slots_per_part;
		if (posix_memalign((void **)&g->ring, PGS_BLOCK, RING_BLOCKS * PGS_BLOCK))
			return -ENOMEM;
		memset(g->ring, 0, RING_BLOCKS * PGS_BLOCK);
	}
	/* Each next slot comes from the file with the largest share left. */
	for (; s < total; s++) {
		unsigned b = 0;
		for (unsigned i = 1; i < ps->nfiles; i++)
			if ((uint64_t)left[i] * p->segs[b].nslots > (uint64_t)left[b] * p->segs[i].nslots)
				b = i;
		p->slots[s].seg = (uint8_t)b;
		p->slots[s].local = p->segs[b].nslots - left[b]--;
		p->slots[s].hnext = NIL;
	}
	return 0;
}

static int part_recover(struct pgstore *ps, struct pgstore_part *p, unsigned pi)
{
	for (unsigned i = 0; i < ps->nfiles; i++) {
		struct seg *g = &p->segs[i];
		struct replay_ctx c = { .p = p };
		struct pgs_replay r;
		int rc;

		if (g->f->fd < 0)
			continue;
		c.map = malloc(g->nslots * sizeof(*c.map));
		if (!c.map)
			return -ENOMEM;
		for (uint32_t s = 0; s < p->nslots; s++)
			if (p->slots[s].seg == i)
				c.map[p->slots[s].local] = s;
		rc = pgs_replay_part(g->f->fd, &g->f->sb, pi, replay_put, &c, &r);
		free(c.map);
		if (rc) {
			log_err("ssd_cache %s: reading the log of shard %u: %s", g->f->path, pi, strerror(-rc));
			return rc;
		}
		if (r.bad)
			log_warn("ssd_cache %s: log of shard %u ends in a torn or corrupt tail: "
				 "truncated after %llu good records, %llu dropped", g->f->path, pi,
				 (unsigned long long)r.recs, (unsigned long long)r.bad);
		g->epoch = r.epoch;
		g->half = r.half;
		rc = restart_log(p, i);
		if (rc) {
			log_err("ssd_cache %s: writing the log of shard %u: %s", g->f->path, pi, strerror(-rc));
			return rc;
		}
	}
	/* Free slots, in hand order (lowest on top). */
	p->nfree = 0;
	for (uint32_t s = p->nslots; s-- > 0;)
		if (p->slots[s].state == SL_FREE)
			p->free[p->nfree++] = s;
	p->stats.recovered = p->stats.pages;
	for (unsigned i = 0; i < ps->nfiles; i++)
		p->stats.capacity += (uint64_t)p->segs[i].nslots * ps->page_size;
	return 0;
}

int pgstore_open(struct pgstore **out, const struct pgstore_opts *o, char *err, size_t errlen)
{
	struct pgstore *ps = calloc(1, sizeof(*ps));
	unsigned usable = 0;
	uint64_t t0 = now_ns(), pages = 0;
	int rc = 0;

	*out = NULL;
	if (!ps)
		return -ENOMEM;
	ps->nfiles = o->nfiles;
	ps->nparts = o->nparts;
	ps->page_size = o->page_size;
	ps->second_touch = o->second_touch;
	for (unsigned i = 0; i < o->nfiles; i++)
		ps->files[i].fd = ps->files[i].lock_fd = -1;
	for (unsigned i = 0; i < o->nfiles; i++) {
		rc = open_file(ps, i, &o->files[i], err, errlen);
		if (rc < 0)
			goto fail;
		usable += rc;
	}
	rc = 0;
	if (!usable)
		goto fail;     /* every file skipped, each with its warning */
	if (posix_memalign((void **)&ps->parts, 64, ps->nparts * sizeof(*ps->parts))) {
		rc = -ENOMEM;
		goto fail;
	}
	memset(ps->parts, 0, ps->nparts * sizeof(*ps->parts));
	for (unsigned i = 0; i < ps->nparts; i++) {
		rc = part_init(ps, &ps->parts[i], i);
		if (!rc)
			rc = part_recover(ps, &ps->parts[i], i);
		if (rc) {
			snprintf(err, errlen, "ssd_cache: opening shard %u's part: %s", i, strerror(-rc));
			goto fail;
		}
		pages += ps->parts[i].stats.pages;
	}
	log_info("ssd_cache: %u file%s, %llu cached pages found in %.2f s", usable, usable > 1 ? "s" : "",
		 (unsigned long long)pages, (double)(now_ns() - t0) / 1e9);
	*out = ps;
	return 0;
fail:
	for (unsigned i = 0; i < o->nfiles; i++)
		if (ps->files[i].created && ps->files[i].fd >= 0)
			unlink(ps->files[i].path);
	pgstore_close(ps);
	return rc;
}

static void attach_shard(void *arg)
{
	struct pgstore_part *p = arg;
	struct pgstore *ps = p->ps;
	int fds[PGSTORE_MAX_FILES], rc;

	p->owner = shard_self();
	/* Every shard registers the same table, so indexes agree across rings. */
	for (unsigned i = 0; i < ps->nfiles; i++)
		fds[i] = ps->files[i].fd >= 0 ? ps->files[i].fd : -1;
	rc = shard_register_files(fds, ps->nfiles);
	p->files_registered = rc == 0;
	if (rc < 0)
		log_info("ssd_cache: registering the store files on shard %u failed (%s); every shard "
			 "uses plain descriptors", shard_id(p->owner), strerror(-rc));
}

int pgstore_attach(struct pgstore *ps)
{
	bool all = true;

	for (unsigned i = 0; i < ps->nparts; i++) {
		shard_call(shard_get(i), attach_shard, &ps->parts[i]);
		all &= ps->parts[i].files_registered;
	}
	/* Fixed indexes only if every ring has the table. No IO runs yet. */
	for (unsigned i = 0; i < ps->nfiles; i++)
		atomic_store(&ps->files[i].fixed, all && ps->files[i].fd >= 0 ? (int)i : -1);
	return 0;
}

static void detach_shard(void *arg)
{
	struct pgstore_part *p = arg;

	/* IO still to come (log writes) goes through the plain descriptors. */
	for (unsigned i = 0; i < p->ps->nfiles; i++)
		atomic_store(&p->ps->files[i].fixed, -1);
	shard_unregister_files();
	p->owner = NULL;
}

void pgstore_detach(struct pgstore *ps)
{
	for (unsigned i = 0; ps->parts && i < ps->nparts && i < shard_count(); i++)
		if (ps->parts[i].owner)
			shard_call(shard_get(i), detach_shard, &ps->parts[i]);
}

void pgstore_close(struct pgstore *ps)
{
	if (!ps)
		return;
	pgstore_detach(ps);
	for (unsigned i = 0; ps->parts && i < ps->nparts; i++) {
		struct pgstore_part *p = &ps->parts[i];
		for (unsigned g = 0; g < ps->nfiles; g++) {
			if (p->segs[g].lost)
				log_warn("ssd_cache %s: %llu index records of shard %u were never written "
					 "(out of memory); those pages are re-read after a restart",
					 ps->files[g].path, (unsigned long long)p->segs[g].lost, i);
			free(p->segs[g].ring);
			free(p->segs[g].pending);
			free(p->segs[g].snap);
		}
		free(p->slots);
		free(p->free);
		free(p->buckets);
		free(p->ghost);
	}
	free(ps->parts);
	for (unsigned i = 0; i < ps->nfiles; i++) {
		if (ps->files[i].fd >= 0)
			close(ps->files[i].fd);
		if (ps->files[i].lock_fd >= 0)
			close(ps->files[i].lock_fd);
	}
	free(ps);
}

/* ---- IO on the owner shard ---- */

/* The first IO error of a file switches it off, with one warning. */
static void file_failed(struct sfile *f, const char *what, int err)
{
	if (!atomic_exchange(&f->failed, true))
		log_warn("ssd_cache %s: %s failed: %s; the SSD tier is off on this store for the rest "
			 "of this mount, reads go on from RAM and the source", f->path, what, strerror(-err));
}

/* Returns whether the IO goes through a fixed buffer. */
static bool prep_rw(struct shard_op *op, struct sfile *f, bool write, void *buf, size_t len,
		    uint64_t off)
{
	struct io_uring_sqe *sqe = shard_sqe(op);
	int bi = shard_buf_index(buf, len);
	int fixed = atomic_load_explicit(&f->fixed, memory_order_relaxed);
	int fd = fixed >= 0 ? fixed : f->fd;

	if (bi >= 0) {
		if (write)
			io_uring_prep_write_fixed(sqe, fd, buf, (unsigned)len, off, bi);
		else
			io_uring_prep_read_fixed(sqe, fd, buf, (unsigned)len, off, bi);
	} else if (write) {
		io_uring_prep_write(sqe, fd, buf, (unsigned)len, off);
	} else {
		io_uring_prep_read(sqe, fd, buf, (unsigned)len, off);
	}
	if (fixed >= 0)
		sqe->flags |= IOSQE_FIXED_FILE;
	return bi >= 0;
}

static void log_flush(struct seg *g);

static bool ring_room(const struct seg *g)
{
	return g->nrecs < recs_per_half(&g->f->sb) &&
	       g->nrecs / PGS_RECS_PER_BLOCK - g->flushed / PGS_RECS_PER_BLOCK < RING_BLOCKS;
}

static void ring_put(struct seg *g, struct pgs_rec *r)
{
	char *b = g->ring + (g->nrecs / PGS_RECS_PER_BLOCK % RING_BLOCKS) * PGS_BLOCK;

	if (g->nrecs % PGS_RECS_PER_BLOCK == 0)
		memset(b, 0, PGS_BLOCK);
	r->epoch = g->epoch;
	r->csum = pgs_rec_csum(r, g->f->sb.uuid);
	memcpy(b + (g->nrecs % PGS_RECS_PER_BLOCK) * PGS_REC_SIZE, r, sizeof(*r));
	g->nrecs++;
}

/* Moves waiting records into the ring as far as it has room. */
static void drain_pending(struct seg *g)
{
	size_t i = 0;

	if (!g->npending)
		return;
	while (i < g->npending && !g->compacting && ring_room(g))
		ring_put(g, &g->pending[i++]);
	memmove(g->pending, g->pending + i, (g->npending - i) * sizeof(*g->pending));
	g->npending -= i;
}

/*
 * Queues a record for segment g's log. It goes into the ring and out with
 * the next write; while a compaction runs or the ring is full it waits in
 * `pending`, in order, so no record is ever dropped for speed.
 */
static void log_add(struct seg *g, struct pgs_rec *r)
{
	if (g->compacting || g->npending || !ring_room(g)) {
		if (g->npending == g->cap_pending) {
			size_t cap = g->cap_pending ? 2 * g->cap_pending : 64;
			struct pgs_rec *n = realloc(g->pending, cap * sizeof(*n));
			if (!n) {
				g->lost++;
				return;
			}
			g->pending = n;
			g->cap_pending = cap;
		}
		g->pending[g->npending++] = *r;
		log_flush(g);
		return;
	}
	ring_put(g, r);
	log_flush(g);
}

static void log_slot(struct pgstore_part *p, uint32_t s, uint32_t type)
{
	const struct slot *sl = &p->slots[s];
	struct pgs_rec r = { .type = type, .slot = sl->local };

	if (type == PGS_REC_PUT) {
		r.file = sl->file;
		r.index = sl->index;
		r.version = sl->version;
		r.len = sl->len;
		r.flags = sl->held ? PGS_REC_HELD : 0;
		r.data_csum = sl->csum;
	}
	log_add(&p->segs[sl->seg], &r);
}

static void log_written(struct shard_op *op, int res)
{
	struct seg *g = container_of(op, struct seg, op);

	g->writing = false;
	if (res < 0) {
		file_failed(g->f, "writing the index log", res);
		return;
	}
	g->flushed = g->writing_to;
	drain_pending(g);
	log_flush(g);
}

static void compact_start(struct seg *g);

static void log_flush(struct seg *g)
{
	uint64_t first, last, n;

	if (g->writing || g->compacting || atomic_load(&g->f->failed))
		return;
	/* Once the half is three quarters full, rewrite it as a snapshot. */
	if (g->nrecs + g->npending >= recs_per_half(&g->f->sb) * 3 / 4) {
		compact_start(g);
		return;
	}
	if (g->flushed == g->nrecs)
		return;
	first = g->flushed / PGS_RECS_PER_BLOCK;
	last = (g->nrecs - 1) / PGS_RECS_PER_BLOCK;
	/* Contiguous in the ring: stop at its end, the rest goes next time. */
	n = MIN(last - first + 1, RING_BLOCKS - first % RING_BLOCKS);
	g->writing = true;
	g->writing_to = MIN(g->nrecs, (first + n) * PGS_RECS_PER_BLOCK);
	g->op.done = log_written;
	prep_rw(&g->op, g->f, true, g->ring + (first % RING_BLOCKS) * PGS_BLOCK, n * PGS_BLOCK,
		half_off(&g->f->sb, g->part, g->half) + PGS_BLOCK + first * PGS_BLOCK);
}

/*
 * Background compaction of one segment's log: the live set is written into
 * the other half under epoch + 1, its header last, and only then does that
 * half become the active one. Records added meanwhile wait in `pending`; a
 * crash before the header lands leaves the old half in charge.
 */
static void compact_done(struct seg *g, bool ok)
{
	if (ok) {
		uint64_t n = g->snap_recs;
		g->half = !g->half;
		g->epoch++;
		g->nrecs = g->flushed = n;
		memcpy(g->ring + (n / PGS_RECS_PER_BLOCK % RING_BLOCKS) * PGS_BLOCK,
		       g->snap + PGS_BLOCK + n / PGS_RECS_PER_BLOCK * PGS_BLOCK, PGS_BLOCK);
		g->p->stats.compactions++;
	}
	free(g->snap);
	g->snap = NULL;
	g->compacting = false;
	drain_pending(g);
	log_flush(g);
}

static void compact_head_written(struct shard_op *op, int res)
{
	struct seg *g = container_of(op, struct seg, op);

	if (res != PGS_BLOCK)
		file_failed(g->f, "writing the index log", res < 0 ? res : -EIO);
	compact_done(g, res == PGS_BLOCK);
}

static void compact_recs_written(struct shard_op *op, int res)
{
	struct seg *g = container_of(op, struct seg, op);
	unsigned half = !g->half;

	if (res < 0) {
		file_failed(g->f, "writing the index log", res);
		compact_done(g, false);
		return;
	}
	fill_head(g, half, g->epoch + 1, g->snap_recs, g->snap);
	g->op.done = compact_head_written;
	prep_rw(&g->op, g->f, true, g->snap, PGS_BLOCK, half_off(&g->f->sb, g->part, half));
}

static void compact_start(struct seg *g)
{
	unsigned gi = (unsigned)(g - g->p->segs);

	g->snap = snap_alloc(g);
	if (!g->snap) {
		g->lost++;
		return;
	}
	g->compacting = true;
	/* The snapshot is the state those records led to: they are done. */
	g->npending = 0;
	g->snap_recs = snapshot(g->p, gi, g->epoch + 1, (struct pgs_rec *)(g->snap + PGS_BLOCK));
	g->op.done = compact_recs_written;
	prep_rw(&g->op, g->f, true, g->snap + PGS_BLOCK, snap_bytes(g->snap_recs) + PGS_BLOCK,
		half_off(&g->f->sb, g->part, !g->half) + PGS_BLOCK);
}

/* ---- reads and puts ---- */

static uint32_t round_block(uint32_t len)
{
	return (len + PGS_BLOCK - 1) & ~(PGS_BLOCK - 1);
}

static void read_done(struct shard_op *op, int res)
{
	struct pgstore_io *io = container_of(op, struct pgstore_io, op);
	struct pgstore_part *p = io->part;
	struct slot *sl = &p->slots[io->slot];
	struct sfile *f = p->segs[sl->seg].f;

	sl->reading = 0;
	if (res >= 0 && (uint32_t)res < round_block(sl->len))
		res = -EIO;     /* the store is never shorter than its layout */
	if (res < 0) {
		p->stats.io_errors++;
		file_failed(f, "reading a page", res);
		release_slot(p, io->slot);
		io->done(io, -EIO);
		return;
	}
	if (pgs_data_csum(io->buf, sl->len, f->sb.uuid) != sl->csum) {
		p->stats.corrupt++;
		log_warn("ssd_cache %s: a page in slot %u of shard %u failed its checksum; "
			 "dropped, it is read from the source again", f->path, sl->local,
			 (unsigned)(p - p->ps->parts));
		release_slot(p, io->slot);
		log_slot(p, io->slot, PGS_REC_DROP);
		io->done(io, -EBADMSG);
		return;
	}
	sl->ref = 1;
	p->stats.hits++;
	p->stats.bytes_read += sl->len;
	io->done(io, (int)sl->len);
}

/* key's slot, if its copy can be read (written whole, its file not failed); else NIL. */
static uint32_t readable_slot(struct pgstore_part *p, const struct pgkey *key)
{
	uint32_t s = lookup_key(p, key);

	if (s == NIL || p->slots[s].state != SL_READY || atomic_load(&p->segs[p->slots[s].seg].f->failed))
		return NIL;
	return s;
}

bool pgstore_has(struct pgstore *ps, unsigned part, const struct pgkey *key)
{
	struct pgstore_part *p = &ps->parts[part];

	assert_owner(p);
	return readable_slot(p, key) != NIL;
}

int pgstore_read(struct pgstore *ps, unsigned part, const struct pgkey *key, void *buf,
		 size_t cap, struct pgstore_io *io)
{
	struct pgstore_part *p = &ps->parts[part];
	uint32_t s;
	struct slot *sl;
	struct sfile *f;

	assert_owner(p);
	s = readable_slot(p, key);
	if (s == NIL)
		return -ENOENT;
	sl = &p->slots[s];
	f = p->segs[sl->seg].f;
	if (round_block(sl->len) > cap)
		return -ENOENT;
	sl->reading = 1;
	io->part = p;
	io->slot = s;
	io->buf = buf;
	io->op.done = read_done;
	p->stats.fixed_ios += prep_rw(&io->op, f, false, buf, round_block(sl->len),
				      slot_off(&p->segs[sl->seg], sl->local));
	return 0;
}

int pgstore_drop(struct pgstore *ps, unsigned part, const struct pgkey *key)
{
	struct pgstore_part *p = &ps->parts[part];
	uint32_t s;

	assert_owner(p);
	s = lookup_key(p, key);
	if (s == NIL || p->slots[s].state != SL_READY)
		return -ENOENT;
	if (p->slots[s].held)
		return -EPERM;
	if (p->slots[s].reading)
		return -EBUSY;
	release_slot(p, s);
	log_slot(p, s, PGS_REC_DROP);
	return 0;
}

static void put_done(struct shard_op *op, int res)
{
	struct pgstore_io *io = container_of(op, struct pgstore_io, op);
	struct pgstore_part *p = io->part;
	struct slot *sl = &p->slots[io->slot];

	if (res >= 0 && (uint32_t)res < round_block(sl->len))
		res = -EIO;
	if (res < 0) {
		p->stats.io_errors++;
		file_failed(p->segs[sl->seg].f, "writing a page", res);
		release_slot(p, io->slot);
	} else {
		sl->state = SL_READY;
		p->stats.writes++;
		p->stats.bytes_written += sl->len;
		p->stats.pages++;
		p->stats.bytes += sl->len;
		log_slot(p, io->slot, PGS_REC_PUT);
	}
	io->done(io, res < 0 ? -EIO : 0);
}

/* A free slot, or else CLOCK's first unreferenced page. */
static uint32_t clock_pick(struct pgstore_part *p)
{
	while (p->nfree) {
		uint32_t s = p->free[--p->nfree];
		if (!atomic_load_explicit(&p->segs[p->slots[s].seg].f->failed, memory_order_relaxed))
			return s;
	}
	for (uint64_t i = 0; i < 2ULL * p->nslots; i++) {
		uint32_t s = p->hand;
		struct slot *sl = &p->slots[s];

		p->hand = p->hand + 1 == p->nslots ? 0 : p->hand + 1;
		if (atomic_load_explicit(&p->segs[sl->seg].f->failed, memory_order_relaxed))
			continue;
		/* Free slots of a working file are all on the stack. */
		if (sl->state != SL_READY || sl->reading || sl->held)
			continue;
		if (sl->ref) {
			sl->ref = 0;
			continue;
		}
		p->stats.evictions++;
		free_slot(p, s);
		return s;
	}
	return NIL;
}

/* Writes key's page into a slot of its own (it has none). */
static int put_slot(struct pgstore_part *p, const struct pgkey *key, uint64_t version,
		    const void *data, uint32_t len, bool held, struct pgstore_io *io)
{
	struct slot *sl;
	uint32_t s = clock_pick(p);

	if (s == NIL)
		return -ENOSPC;
	sl = &p->slots[s];
	struct sfile *f = p->segs[sl->seg].f;
	sl->file = key->file;
	sl->index = (uint32_t)key->index;
	sl->version = version;
	sl->len = len;
	sl->csum = pgs_data_csum(data, len, f->sb.uuid);
	sl->state = SL_WRITING;
	sl->ref = 0;
	sl->held = held;
	p->stats.pinned += held;
	hash_add(p, s);
	io->part = p;
	io->slot = s;
	io->buf = (void *)data;
	io->op.done = put_done;
	p->stats.fixed_ios += prep_rw(&io->op, f, true, (void *)data, round_block(len),
				      slot_off(&p->segs[sl->seg], sl->local));
	return 0;
}

int pgstore_put(struct pgstore *ps, unsigned part, const struct pgkey *key, uint64_t version,
		const void *data, uint32_t len, struct pgstore_io *io)
{
	struct pgstore_part *p = &ps->parts[part];

	assert_owner(p);
	if (key->index > UINT32_MAX || !len || len > ps->page_size)
		return -EINVAL;
	if (lookup(p, key->file, key->index) != NIL)
		return -EEXIST;
	if (p->ghost) {
		/* Second touch: remember a first miss, admit a repeated one. */
		uint64_t h = pgkey_hash(key) | 1, *g = &p->ghost[(h >> 20) & p->ghost_mask];
		if (*g != h) {
			*g = h;
			p->stats.not_admitted++;
			return -EAGAIN;
		}
		*g = 0;
	}
	return put_slot(p, key, version, data, len, false, io);
}

int pgstore_hold(struct pgstore *ps, unsigned part, const struct pgkey *key, uint64_t version,
		 const void *data, uint32_t len, struct pgstore_io *io)
{
	struct pgstore_part *p = &ps->parts[part];
	uint32_t s;
	int rc;

	assert_owner(p);
	if (key->index > UINT32_MAX || !len || len > ps->page_size)
		return -EINVAL;
	s = lookup(p, key->file, key->index);
	if (s != NIL && p->slots[s].held)
		return 1;
	if (p->stats.pinned >= p->held_limit)
		return -ENOSPC;
	if (s == NIL) {
		/* Pins skip second_touch: the operator asked for this page. */
		rc = put_slot(p, key, version, data, len, true, io);
		return rc ? rc : -EINPROGRESS;
	}
	p->slots[s].held = 1;
	p->stats.pinned++;
	/* A slot still being written is logged, held, when the write lands. */
	if (p->slots[s].state == SL_READY)
		log_slot(p, s, PGS_REC_PUT);
	return 0;
}

static void unhold_slot(struct pgstore_part *p, uint32_t s)
{
	p->slots[s].held = 0;
	p->slots[s].ref = 1;      /* one more round before CLOCK takes it */
	p->stats.pinned--;
	if (p->slots[s].state == SL_READY)
		log_slot(p, s, PGS_REC_PUT);
}

int pgstore_unhold(struct pgstore *ps, unsigned part, const struct pgkey *key)
{
	struct pgstore_part *p = &ps->parts[part];
	uint32_t s;

	assert_owner(p);
	s = lookup_key(p, key);
	if (s == NIL || !p->slots[s].held)
		return -ENOENT;
	unhold_slot(p, s);
	return 0;
}

uint64_t pgstore_unhold_all(struct pgstore *ps, unsigned part)
{
	struct pgstore_part *p = &ps->parts[part];
	uint64_t n = 0;

	assert_owner(p);
	for (uint32_t s = 0; s < p->nslots && p->stats.pinned; s++)
		if (p->slots[s].held) {
			unhold_slot(p, s);
			n++;
		}
	return n;
}

bool pgstore_held(const struct pgstore *ps, unsigned part, const struct pgkey *key)
{
	struct pgstore_part *p = &ps->parts[part];
	uint32_t s = lookup_key(p, key);

	return s != NIL && p->slots[s].held;
}

uint64_t pgstore_hold_limit(const struct pgstore *ps, unsigned part)
{
	return ps->parts[part].held_limit;
}

void pgstore_stats(const struct pgstore *ps, unsigned part, struct pgstore_stats *out)
{
	*out = ps->parts[part].stats;
}

_Static_assert(sizeof(struct pgstore_stats) % sizeof(uint64_t) == 0, "stats are uint64_t counters");

void pgstore_stats_total(const struct pgstore *ps, struct pgstore_stats *out)
{
	memset(out, 0, sizeof(*out));
	for (unsigned i = 0; i < ps->nparts; i++)
		sum_u64((uint64_t *)out, (const uint64_t *)&ps->parts[i].stats,
			sizeof(*out) / sizeof(uint64_t));
}
