#include "config.h"
#include "iostore/readahead.h"
#include "core/util.h"

void ra_init(struct ra_state *ra)
{
	pthread_mutex_init(&ra->lock, NULL);
	ra->next_off = 0;
	ra->ra_end = 0;
	ra->window = 0;
	ra->seq_hits = 0;
}

void ra_fini(struct ra_state *ra)
{
	pthread_mutex_destroy(&ra->lock);
}

uint32_t ra_on_read(struct ra_state *ra, const struct ra_params *p, uint64_t off,
		    uint64_t len, uint64_t size, uint64_t *first, uint32_t *window)
{
	uint64_t ps = p->page_size, end = off + len, slack;
	uint64_t last_page = size ? (size - 1) / ps : 0, cur, want;
	uint32_t n = 0;

	pthread_mutex_lock(&ra->lock);
	/* Reordered kernel read-ahead lands within a window of the stream. */
	slack = (uint64_t)MAX(ra->window, 2) * ps;
	bool seq = (off == 0 && ra->next_off == 0) ||
		   (off + slack >= ra->next_off && off <= ra->next_off + slack);
	if (!seq) {
		/* This read may start a new stream: it counts as its first. */
		ra->window = 0;
		ra->seq_hits = 1;
		ra->ra_end = 0;
	} else if (++ra->seq_hits >= 2) {
		ra->window = ra->window ? MIN(ra->window * 2, p->max_window) : p->min_window;
	}
	if (end > ra->next_off || !seq)
		ra->next_off = end;
	if (ra->window && size) {
		cur = (end - 1) / ps + 1;
		want = MIN(cur + ra->window, last_page + 1);
		if (p->batch > 1 && want <= last_page)
			want -= want % p->batch;
		if (ra->ra_end < cur)
			ra->ra_end = cur;
		if (want > ra->ra_end) {
			*first = ra->ra_end;
			n = (uint32_t)(want - ra->ra_end);
			ra->ra_end = want;
		}
	}
	if (window)
		*window = ra->window;
	pthread_mutex_unlock(&ra->lock);
	return n;
}

bool ra_budget_take(struct ra_budget *b, uint64_t bytes)
{
	uint64_t cur = atomic_load_explicit(&b->used, memory_order_relaxed);

	do {
		if (cur + bytes > b->limit)
			return false;
	} while (!atomic_compare_exchange_weak(&b->used, &cur, cur + bytes));
	return true;
}

void ra_budget_give(struct ra_budget *b, uint64_t bytes)
{
	atomic_fetch_sub(&b->used, bytes);
}
