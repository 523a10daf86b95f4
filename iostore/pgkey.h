/* The identity of a cached page, shared by the RAM tier and the SSD store. */
#ifndef CACHEFS_PGKEY_H
#define CACHEFS_PGKEY_H

#include <stdint.h>
#include "core/util.h"

struct pgkey {
	uint64_t file;   /* file identity, including its version */
	uint64_t index;  /* page number within the file */
};

/*
 * Pinned pages (cachefsctl pin) may fill at most this share of the tier that
 * holds them, the SSD store or else RAM: the rest keeps caching the working
 * set and gives read-ahead room.
 */
#define PIN_MAX_PCT 90

/*
 * Consecutive pages of a file share an owner shard within a stripe of this
 * many bytes (at least a page), so a sequential read's pages meet on one
 * shard, whose source driver can fetch them with one request.
 */
#define PAGE_STRIPE_BYTES (4u << 20)

/* Spread over 64 bits. */
static inline uint64_t pgkey_hash(const struct pgkey *k)
{
	return mix64(k->file * 0x9e3779b97f4a7c15ULL + k->index);
}

#endif
