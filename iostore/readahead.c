#include "config.h"
#include "iostore/readahead.h"
#include "core/util.h"

#include <string.h>

void ra_init(struct ra_state *ra)
{
	pthread_mutex_init(&ra->lock, NULL);
	ra->tick = 0;
	memset(ra->s, 0, sizeof(ra->s));
}

void ra_fini(struct ra_state *ra)
{
	pthread_mutex_destroy(&ra->lock);
}

static bool continues(const struct ra_stream *s, uint64_t off, uint64_t ps)
{
	/* Reordered kernel read-ahead lands within a window of the stream. */
	uint64_t slack = (uint64_t)MAX(s->window, 2) * ps;

	if (!s->used)
		return false;
	return (off == 0 && s->next_off == 0) || (off + slack >= s->next_off && off <= s->next_off + slack);
}

uint32_t ra_on_read(struct ra_state *ra, const struct ra_params *p, uint64_t off,
		    uint64_t len, uint64_t size, uint64_t *first, uint32_t *window)
{
	uint64_t ps = p->page_size, end = off + len;
	uint64_t last_page = size ? (size - 1) / ps : 0, cur, want;
	struct ra_stream *s = NULL;
	uint32_t n = 0;

	pthread_mutex_lock(&ra->lock);
	for (unsigned i = 0; i < RA_STREAMS && !s; i++)
		if (continues(&ra->s[i], off, ps))
			s = &ra->s[i];
	bool seq = s != NULL;
	if (!seq) {
		/* This read may start a new stream: it counts as its first. */
		s = &ra->s[0];
		for (unsigned i = 1; i < RA_STREAMS; i++)
			if (ra->s[i].used < s->used)
				s = &ra->s[i];
		s->window = 0;
		s->seq_hits = 1;
		s->ra_end = 0;
	} else if (++s->seq_hits >= 2) {
		s->window = s->window ? MIN(s->window * 2, p->max_window) : p->min_window;
	}
	s->used = ++ra->tick;
	if (end > s->next_off || !seq)
		s->next_off = end;
	if (s->window && size) {
		cur = (end - 1) / ps + 1;
		want = MIN(cur + s->window, last_page + 1);
		if (p->batch > 1 && want <= last_page)
			want -= want % p->batch;
		if (s->ra_end < cur)
			s->ra_end = cur;
		if (want > s->ra_end) {
			*first = s->ra_end;
			n = (uint32_t)(want - s->ra_end);
			s->ra_end = want;
		}
	}
	if (window)
		*window = s->window;
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
