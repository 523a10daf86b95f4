/*
 * SSD page store: pages of the RAM tier kept in fixed slots of pre-allocated
 * files or block devices, read and written with O_DIRECT on the owner
 * shard's io_uring. Each store file is split into one partition per shard;
 * a shard's partition of every file forms its part of the store, which only
 * that shard touches. A durable per-partition log makes the store warm
 * again after a restart or a kill -9.
 */
#ifndef CACHEFS_PGSTORE_H
#define CACHEFS_PGSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "iostore/pgkey.h"
#include "core/shard.h"

#define PGSTORE_MAX_FILES 8

struct pgstore;

struct pgstore_file {
	const char *path;         /* regular file (created if missing) or block device */
	uint64_t size;            /* bytes; 0 for a block device means all of it */
};

struct pgstore_opts {
	struct pgstore_file files[PGSTORE_MAX_FILES];
	unsigned nfiles;
	uint64_t page_size;       /* slot size, as the RAM tier's page */
	unsigned nparts;          /* shards */
	bool second_touch;        /* admit a page on its second miss only */
};

/*
 * Opens (or formats) every store file, takes an exclusive lock on each and
 * rebuilds the index from the logs, then starts a fresh log epoch. Runs
 * before the shards start, on the calling thread.
 *
 * Returns 0 with *out set; 0 with *out NULL when the store cannot be used
 * for a reason that should not stop the mount (no room for it: the reason
 * is logged as a warning); or a negative errno with a one-line message in
 * err for bad input (unusable path, another layout or page size, a store
 * in use by another daemon).
 */
int pgstore_open(struct pgstore **out, const struct pgstore_opts *o, char *err, size_t errlen);

/*
 * Registers the store files with every shard's ring. Call once the shards
 * run; until then the store must not be used.
 */
int pgstore_attach(struct pgstore *ps);

/*
 * While the shards still run: drops the rings' references to the store
 * files, so that closing them really closes them (the file system holding
 * a store can be unmounted as soon as the daemon exits). IO after this
 * uses plain descriptors.
 */
void pgstore_detach(struct pgstore *ps);

/* Closes the files. No IO may be in flight (the shards have stopped, or
 * the store was detached). */
void pgstore_close(struct pgstore *ps);

/*
 * A store operation. done runs on the owner shard: for a read with the
 * byte count or a negative errno (-ENOENT: not stored, -EBADMSG: checksum
 * mismatch, the slot was dropped; -EIO: device error); for a put or a hold
 * once the caller's buffer is no longer needed: 0 if the page is stored,
 * -EIO if the write failed.
 */
struct pgstore_io {
	void (*done)(struct pgstore_io *io, int res);
	/* the store's, while the operation runs */
	struct shard_op op;
	struct pgstore_part *part;
	uint32_t slot;
	void *buf;
};

/*
 * Owner shard of `part`. Starts reading the stored copy of key into buf
 * (4 KiB aligned, cap bytes). Returns 0 if the read was started, or
 * -ENOENT when there is no usable copy (done is not called then).
 */
int pgstore_read(struct pgstore *ps, unsigned part, const struct pgkey *key, void *buf,
		 size_t cap, struct pgstore_io *io);

/* Owner shard. Whether a usable copy of key is stored (pgstore_read would start). */
bool pgstore_has(struct pgstore *ps, unsigned part, const struct pgkey *key);

/*
 * Owner shard. Offers a page fetched from the UFS. Returns 0 and later calls
 * io->done once the write is over, or a negative errno (not admitted,
 * already stored, no free slot, store off) without calling it. `data` must
 * be 4 KiB aligned and hold len bytes rounded up to 4 KiB.
 */
int pgstore_put(struct pgstore *ps, unsigned part, const struct pgkey *key, uint64_t version,
		const void *data, uint32_t len, struct pgstore_io *io);

/*
 * Owner shard. Forgets the stored copy of key, durably (a DROP record).
 * Returns 0, -ENOENT (not stored), -EPERM (pinned) or -EBUSY (being read:
 * try again).
 */
int pgstore_drop(struct pgstore *ps, unsigned part, const struct pgkey *key);

/*
 * Pins (cachefsctl pin). A held page is never evicted, and the hold is
 * logged with it, so it survives a restart. At most PIN_MAX_PCT of a
 * partition's slots are held.
 *
 * Owner shard. Holds key's page, writing it from `data` (as for
 * pgstore_put, but never refused by second_touch) when it is not stored.
 * Returns 0 (held now), 1 (was held already), -EINPROGRESS (being written:
 * io->done tells how it ended), -ENOSPC (the partition's pin limit is
 * reached, or every slot is held or busy) or another negative errno.
 */
int pgstore_hold(struct pgstore *ps, unsigned part, const struct pgkey *key, uint64_t version,
		 const void *data, uint32_t len, struct pgstore_io *io);
/* Owner shard. Releases a hold: 0, or -ENOENT if key was not held. */
int pgstore_unhold(struct pgstore *ps, unsigned part, const struct pgkey *key);
/* Owner shard. Releases every hold of the partition; returns how many. */
uint64_t pgstore_unhold_all(struct pgstore *ps, unsigned part);
/* Owner shard. Whether key's page is held. */
bool pgstore_held(const struct pgstore *ps, unsigned part, const struct pgkey *key);
/* The most slots a partition's pins may hold. */
uint64_t pgstore_hold_limit(const struct pgstore *ps, unsigned part);
/* Per-partition counters, written by the owner only. */
struct pgstore_stats {
	uint64_t hits, bytes_read;       /* reads served */
	uint64_t writes, bytes_written;  /* pages stored */
	uint64_t not_admitted;           /* first touches under second_touch */
	uint64_t corrupt;                /* checksum mismatches, slot dropped */
	uint64_t io_errors;
	uint64_t fixed_ios;              /* page reads and writes on fixed buffers */
	uint64_t evictions;
	uint64_t compactions;
	uint64_t pages, bytes;           /* held now */
	uint64_t pinned;                 /* pinned (held) slots, stored or being written */
	uint64_t recovered;              /* pages found in the log at open */
	uint64_t capacity;               /* bytes of slots */
};
void pgstore_stats(const struct pgstore *ps, unsigned part, struct pgstore_stats *out);
/* The sum over all partitions; exact once the shards have stopped. */
void pgstore_stats_total(const struct pgstore *ps, struct pgstore_stats *out);

#endif
