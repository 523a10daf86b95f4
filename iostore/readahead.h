/*
 * Sequential-stream detection and read-ahead windows per open file, and the
 * global budget that bounds read-ahead memory across all open files. A
 * handle tracks a few streams at once: one handle may be shared by several
 * readers (no_open: the kernel sends no OPEN, so every reader of an inode
 * reads through one handle), or one reader may interleave two sequential
 * passes; each keeps its own window.
 */
#ifndef CACHEFS_READAHEAD_H
#define CACHEFS_READAHEAD_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define RA_STREAMS 4

struct ra_stream {
	uint64_t next_off;      /* where a sequential reader reads next */
	uint64_t ra_end;        /* first page not yet asked for */
	uint64_t used;          /* ra_state.tick at its last read (least recent is replaced) */
	uint32_t window;        /* pages to keep in flight ahead; 0: not sequential */
	uint32_t seq_hits;
};

struct ra_state {
	pthread_mutex_t lock;   /* reads of one handle arrive on several threads */
	uint64_t tick;
	struct ra_stream s[RA_STREAMS];
};

struct ra_params {
	uint64_t page_size;
	uint32_t min_window;    /* pages, once a stream is detected (default 4) */
	uint32_t max_window;    /* pages (default 64) */
	uint32_t batch;         /* read-ahead ends on multiples of this many pages
				 * (a stripe), so it asks for whole stripes; 0 or 1: any page */
};

void ra_init(struct ra_state *ra);
void ra_fini(struct ra_state *ra);

/*
 * Records a read of [off, off+len) of a file of `size` bytes and returns how
 * many pages to prefetch starting at *first (0: none), and the stream's
 * window (pages) in *window if that is not NULL. A read that starts near
 * where one of the streams' last read ended continues that stream, since
 * the kernel issues async read-ahead out of order; any other read starts a
 * new stream in place of the least recently read one.
 */
uint32_t ra_on_read(struct ra_state *ra, const struct ra_params *p, uint64_t off,
		    uint64_t len, uint64_t size, uint64_t *first, uint32_t *window);

/* Bytes of read-ahead in flight across the mount, capped by `limit`. */
struct ra_budget {
	atomic_uint_fast64_t used;
	uint64_t limit;
};

/* Reserves `bytes`; false if that would pass the limit. */
bool ra_budget_take(struct ra_budget *b, uint64_t bytes);
void ra_budget_give(struct ra_budget *b, uint64_t bytes);

#endif
