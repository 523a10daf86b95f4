/*
 * On-disk layout of an SSD page store, shared by the daemon and cachefs-fsck.
 *
 *   0            superblock (one 4 KiB block)
 *   log_off      per partition p: two log halves of log_half bytes each, at
 *                log_off + (2p + h) * log_half
 *   data_off     per partition p: slots_per_part slots of page_size bytes, at
 *                data_off + (p * slots_per_part + s) * page_size
 *
 * A log half is a header block followed by 64-byte records. The active half
 * of a partition is the one whose header is valid and has the higher epoch;
 * its records up to the first that is empty, has another epoch or fails its
 * checksum describe the partition's slots, later records overriding earlier
 * ones for the same slot. Every record and header is checksummed with xxh3
 * seeded by the store's uuid, so blocks from an earlier format of the same
 * device never pass for live ones. All integers are little-endian (the
 * daemon refuses to build on big-endian hosts).
 */
#ifndef CACHEFS_PGSTORE_I_H
#define CACHEFS_PGSTORE_I_H

#include <stddef.h>
#include <stdint.h>

#define PGS_MAGIC        "CFSSTORE"
#define PGS_LOG_MAGIC    "CFSLOGHD"
#define PGS_LAYOUT       1
#define PGS_BLOCK        4096u
#define PGS_REC_SIZE     64u
#define PGS_RECS_PER_BLOCK (PGS_BLOCK / PGS_REC_SIZE)

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the store layout is little-endian");

struct pgs_super {
	char magic[8];            /* PGS_MAGIC */
	uint32_t layout;          /* PGS_LAYOUT */
	uint32_t page_size;       /* slot size */
	uint32_t nparts;          /* partitions: the shard count it was made for */
	uint32_t block;           /* PGS_BLOCK */
	uint64_t size;            /* bytes the store was made with (PATH:SIZE) */
	uint64_t uuid;            /* random per format; seeds every checksum */
	uint64_t slots_per_part;
	uint64_t log_half;        /* bytes of one log half, header block included */
	uint64_t log_off;
	uint64_t data_off;
	uint64_t created_ns;      /* CLOCK_REALTIME at format */
	uint64_t csum;            /* xxh3 of the bytes above, seed 0 */
};
_Static_assert(sizeof(struct pgs_super) == 88, "superblock layout");
_Static_assert(offsetof(struct pgs_super, uuid) == 32, "superblock layout");
_Static_assert(offsetof(struct pgs_super, csum) == 80, "superblock layout");

struct pgs_log_head {
	char magic[8];            /* PGS_LOG_MAGIC */
	uint32_t part;
	uint32_t half;            /* 0 or 1 */
	uint64_t epoch;           /* higher wins; records carry it too */
	uint64_t uuid;
	uint64_t nrecs;           /* records written with the header (a snapshot) */
	uint64_t reserved[2];
	uint64_t csum;            /* xxh3 of the bytes above, seed uuid */
};
_Static_assert(sizeof(struct pgs_log_head) == 64, "log header layout");

enum pgs_rec_type {
	PGS_REC_END = 0,          /* never written: zeroes end a log */
	PGS_REC_PUT = 1,          /* slot holds page (file, index) of len bytes */
	PGS_REC_DROP = 2,         /* slot holds nothing */
};

#define PGS_REC_HELD 1u       /* a PUT whose page is pinned: never evicted */

struct pgs_rec {
	uint32_t type;            /* enum pgs_rec_type */
	uint32_t slot;            /* within the partition */
	uint64_t file;            /* page key: file id (path and version hash) */
	uint64_t index;           /* page key: page number in the file */
	uint64_t version;         /* the UFS version the bytes came from */
	uint32_t len;             /* valid bytes in the slot */
	uint32_t flags;           /* PGS_REC_HELD; other bits zero (written as zero by layout 1's first daemons) */
	uint64_t data_csum;       /* xxh3 of the len valid bytes, seed uuid */
	uint64_t epoch;           /* the epoch of the half it was written to */
	uint64_t csum;            /* xxh3 of the bytes above, seed uuid */
};
_Static_assert(sizeof(struct pgs_rec) == PGS_REC_SIZE, "log record layout");
_Static_assert(offsetof(struct pgs_rec, data_csum) == 40, "log record layout");
_Static_assert(offsetof(struct pgs_rec, csum) == 56, "log record layout");

/* Checksums as the layout defines them. */
uint64_t pgs_super_csum(const struct pgs_super *sb);
uint64_t pgs_head_csum(const struct pgs_log_head *h);
uint64_t pgs_rec_csum(const struct pgs_rec *r, uint64_t uuid);
uint64_t pgs_data_csum(const void *data, size_t len, uint64_t uuid);

/*
 * Checks a superblock read from `path` (for messages): magic, layout
 * version, checksum and geometry against `file_size` (0: not checked).
 * Returns 0, or -EINVAL with a one-line reason in err.
 */
int pgs_super_check(const struct pgs_super *sb, uint64_t file_size, char *err, size_t errlen);

/* What replaying one partition's log found. */
struct pgs_replay {
	uint64_t epoch;           /* of the active half; 0 if none was valid */
	unsigned half;
	uint64_t recs;            /* good records replayed */
	uint64_t bad;             /* records dropped at a torn or corrupt tail */
};

/*
 * Reads the active log half of partition `part` from fd (O_DIRECT is fine)
 * and replays it: calls put(arg, rec) for each good record in log order
 * (DROP records too). Returns 0, or a negative errno from the reads.
 */
int pgs_replay_part(int fd, const struct pgs_super *sb, uint32_t part,
		    void (*put)(void *arg, const struct pgs_rec *r), void *arg,
		    struct pgs_replay *out);

#endif
