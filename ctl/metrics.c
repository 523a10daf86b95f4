/*
 * Prometheus text format (version 0.0.4). Counters are summed over the
 * shards at scrape time, racily: each is monotonic, so a scrape may be a
 * moment stale but never goes backwards.
 */
#include "config.h"
#include "ctl/metrics.h"
#include "ctl/status.h"
#include "core/log.h"
#include "core/shard.h"
#include "core/util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define put metrics_put

void metrics_put(struct metrics_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
		va_end(ap);
		if (n < 0)
			return;
		if (b->p && b->len + (size_t)n < b->cap) {
			b->len += (size_t)n;
			return;
		}
		size_t cap = MAX(b->cap * 2, b->len + (size_t)n + 4096);
		char *p = realloc(b->p, cap);
		if (!p)
			return;
		b->p = p;
		b->cap = cap;
	}
}

void metrics_family(struct metrics_buf *b, const char *name, const char *type, const char *help)
{
	put(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

#define family metrics_family

/* Cumulative buckets of a histogram from per-bucket counts (the last is +Inf). */
static void histogram(struct metrics_buf *b, const char *name, const char *labels, const double *bounds,
		      const uint64_t *counts, unsigned nbuckets, double sum)
{
	unsigned long long cum = 0;
	const char *sep = *labels ? "," : "";

	for (unsigned i = 0; i <= nbuckets; i++) {
		cum += counts[i];
		if (i < nbuckets)
			put(b, "%s_bucket{%s%sle=\"%.15g\"} %llu\n", name, labels, sep, bounds[i], cum);
		else
			put(b, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep, cum);
	}
	put(b, "%s_sum%s%s%s %.15g\n", name, *labels ? "{" : "", labels, *labels ? "}" : "", sum);
	put(b, "%s_count%s%s%s %llu\n", name, *labels ? "{" : "", labels, *labels ? "}" : "", cum);
}

static void render_shards(struct metrics_buf *b)
{
	static const uint64_t bounds_us[] = SHARD_TURN_BOUNDS_US;
	double bounds[SHARD_TURN_BUCKETS];
	char labels[32];

	for (unsigned i = 0; i < SHARD_TURN_BUCKETS; i++)
		bounds[i] = (double)bounds_us[i] / 1e6;
	family(b, "cachefs_shard_loop_turn_seconds", "histogram",
	       "How long each shard's event loop took for one turn of work (messages and completions "
	       "between two waits); a turn that blocked on anything shows here.");
	for (unsigned i = 0; i < shard_count(); i++) {
		const struct shard_stats *st = shard_stats(shard_get(i));
		uint64_t turns[SHARD_TURN_BUCKETS + 1];
		memcpy(turns, st->turns, sizeof(turns));
		snprintf(labels, sizeof(labels), "shard=\"%u\"", i);
		histogram(b, "cachefs_shard_loop_turn_seconds", labels, bounds, turns, SHARD_TURN_BUCKETS,
			  (double)st->turn_sum_ns / 1e9);
	}
	family(b, "cachefs_shard_loop_turn_max_seconds", "gauge", "The longest loop turn of each shard.");
	for (unsigned i = 0; i < shard_count(); i++)
		put(b, "cachefs_shard_loop_turn_max_seconds{shard=\"%u\"} %.6f\n", i,
		    (double)shard_stats(shard_get(i))->turn_max_ns / 1e9);
}

void metrics_render(struct metrics_buf *b, struct engine *e, metrics_render_fn extra, void *arg)
{
	static const char *const src_names[] = ENG_SRC_NAMES;
	static const char *const req_names[] = UFS_REQ_NAMES, *const retry_names[] = HTTP_RETRY_NAMES;
	static const double lat_bounds[] = ENG_LAT_BOUNDS;
	struct pgcache *cache = engine_cache(e);
	struct pgstore *store = engine_store(e);
	uint64_t ps = engine_page_size(e);
	struct pgcache_stats t;
	struct pgstore_stats s = { 0 };
	struct engine_stats es;
	uint64_t held, held_limit;

	pgcache_stats_total(cache, &t);
	if (store)
		pgstore_stats_total(store, &s);
	engine_stats(e, &es);
	if (extra)
		extra(b, arg);
	family(b, "cachefs_served_bytes_total", "counter",
	       "Bytes of pages served, by tier: RAM, SSD, an owner node of the cluster (peer), the source "
	       "(the kernel page cache is invisible here).");
	put(b, "cachefs_served_bytes_total{tier=\"ram\"} %llu\n", (unsigned long long)t.bytes_hit);
	put(b, "cachefs_served_bytes_total{tier=\"ssd\"} %llu\n", (unsigned long long)s.bytes_read);
	put(b, "cachefs_served_bytes_total{tier=\"peer\"} %llu\n", (unsigned long long)es.peer_bytes);
	put(b, "cachefs_served_bytes_total{tier=\"source\"} %llu\n",
	    (unsigned long long)(t.bytes_fetched - MIN(t.bytes_fetched, es.peer_bytes)));
	family(b, "cachefs_page_gets_total", "counter",
	       "Page lookups in the RAM tier: hit, joined a fetch in flight, or missed.");
	put(b, "cachefs_page_gets_total{result=\"hit\"} %llu\n", (unsigned long long)t.hits);
	put(b, "cachefs_page_gets_total{result=\"join\"} %llu\n", (unsigned long long)t.joins);
	put(b, "cachefs_page_gets_total{result=\"miss\"} %llu\n", (unsigned long long)t.misses);
	family(b, "cachefs_ssd_hits_total", "counter", "RAM misses served by the SSD tier.");
	put(b, "cachefs_ssd_hits_total %llu\n", (unsigned long long)t.store_hits);
	family(b, "cachefs_hit_ratio", "gauge",
	       "Share of page lookups answered without a source read, since start.");
	put(b, "cachefs_hit_ratio %.6f\n", status_hit_ratio(&t));
	family(b, "cachefs_source_reads_total", "counter", "Page reads from the source (UFS).");
	put(b, "cachefs_source_reads_total %llu\n", (unsigned long long)t.fetches);
	family(b, "cachefs_source_read_errors_total", "counter",
	       "Page reads from the source that failed after the driver's retries.");
	put(b, "cachefs_source_read_errors_total %llu\n", (unsigned long long)t.fetch_errors);
	family(b, "cachefs_source_reads_in_flight", "gauge", "Page reads from the source in flight.");
	put(b, "cachefs_source_reads_in_flight %llu\n", (unsigned long long)(t.fetches - t.fetches_done));
	family(b, "cachefs_source_request_duration_seconds", "histogram",
	       "Duration of source calls, retries included, by operation: page reads, and the "
	       "metadata calls stat (HEAD on object stores), list and open.");
	for (unsigned op = 0; op < ENG_SRC_OPS; op++) {
		char labels[32];
		snprintf(labels, sizeof(labels), "op=\"%s\"", src_names[op]);
		histogram(b, "cachefs_source_request_duration_seconds", labels, lat_bounds, es.lat[op],
			  ENG_LAT_BUCKETS, (double)es.lat_sum_us[op] / 1e6);
	}
	family(b, "cachefs_metadata_names", "gauge", "Names held in the metadata cache.");
	put(b, "cachefs_metadata_names %llu\n", (unsigned long long)es.nodes);
	family(b, "cachefs_stale_answers_total", "counter",
	       "Metadata answered from the cache because the source failed (stale_if_error).");
	put(b, "cachefs_stale_answers_total %llu\n", (unsigned long long)es.stale_answers);
	if (es.has_source_counters) {
		family(b, "cachefs_source_requests_total", "counter",
		       "HTTP requests sent to the source (S3 or HTTP), by kind; retries included.");
		for (unsigned i = 0; i < UFS_REQ_KINDS; i++)
			put(b, "cachefs_source_requests_total{kind=\"%s\"} %llu\n", req_names[i],
			    (unsigned long long)es.source.requests[i]);
		family(b, "cachefs_source_retries_total", "counter",
		       "Source requests retried, by cause: throttled (429, 503 SlowDown), server_error "
		       "(other 5xx), timeout, connection (refused, reset, cut short).");
		for (unsigned i = 0; i < HTTP_RETRY_CAUSES; i++)
			put(b, "cachefs_source_retries_total{cause=\"%s\"} %llu\n", retry_names[i],
			    (unsigned long long)es.source.retries[i]);
		family(b, "cachefs_source_request_failures_total", "counter",
		       "Source requests that failed after their retries.");
		put(b, "cachefs_source_request_failures_total %llu\n", (unsigned long long)es.source.failed);
	}
	family(b, "cachefs_written_bytes_total", "counter", "Bytes written through files open for writing.");
	put(b, "cachefs_written_bytes_total %llu\n", (unsigned long long)es.bytes_written);
	family(b, "cachefs_commits_total", "counter",
	       "Closes and fsyncs of written files: the source took the bytes (ok), or not (failed, once "
	       "per open file until a later commit through it succeeds: the log names where they are kept).");
	put(b, "cachefs_commits_total{result=\"ok\"} %llu\n", (unsigned long long)es.commits);
	put(b, "cachefs_commits_total{result=\"failed\"} %llu\n", (unsigned long long)es.commit_failures);
	family(b, "cachefs_evictions_total", "counter", "Pages evicted to make room, by tier.");
	put(b, "cachefs_evictions_total{tier=\"ram\"} %llu\n", (unsigned long long)t.evictions);
	put(b, "cachefs_evictions_total{tier=\"ssd\"} %llu\n", (unsigned long long)s.evictions);
	family(b, "cachefs_corrupt_pages_total", "counter",
	       "SSD pages that failed their checksum (dropped and read from the source again).");
	put(b, "cachefs_corrupt_pages_total %llu\n", (unsigned long long)s.corrupt);
	family(b, "cachefs_ssd_io_errors_total", "counter", "SSD read and write errors.");
	put(b, "cachefs_ssd_io_errors_total %llu\n", (unsigned long long)s.io_errors);
	family(b, "cachefs_cache_bytes", "gauge", "Bytes of page data held, by tier.");
	put(b, "cachefs_cache_bytes{tier=\"ram\"} %llu\n", (unsigned long long)t.bytes);
	put(b, "cachefs_cache_bytes{tier=\"ssd\"} %llu\n", (unsigned long long)s.bytes);
	family(b, "cachefs_ram_faulted_bytes", "gauge",
	       "RAM tier memory the kernel has backed: faulted in ahead of use (ram_prefault) or by use.");
	put(b, "cachefs_ram_faulted_bytes %llu\n", (unsigned long long)t.faulted);
	family(b, "cachefs_cache_capacity_bytes", "gauge", "Capacity of each tier.");
	put(b, "cachefs_cache_capacity_bytes{tier=\"ram\"} %llu\n",
	    (unsigned long long)engine_cache_opts(e)->ram_cache);
	put(b, "cachefs_cache_capacity_bytes{tier=\"ssd\"} %llu\n", (unsigned long long)s.capacity);
	pgcache_held_total(cache, &held, &held_limit);
	family(b, "cachefs_pinned_bytes", "gauge",
	       "Bytes pinned (cachefsctl pin), counted as the pinning tier counts them.");
	put(b, "cachefs_pinned_bytes{tier=\"%s\"} %llu\n", store ? "ssd" : "ram", (unsigned long long)held);
	family(b, "cachefs_pinned_limit_bytes", "gauge", "The most bytes pins may hold.");
	put(b, "cachefs_pinned_limit_bytes{tier=\"%s\"} %llu\n", store ? "ssd" : "ram",
	    (unsigned long long)held_limit);
	family(b, "cachefs_readahead_window_bytes", "histogram",
	       "The read-ahead window of a sequential stream, at each read-ahead it starts.");
	{
		double bounds[ENG_RA_BUCKETS];
		for (unsigned i = 0; i < ENG_RA_BUCKETS; i++)
			bounds[i] = (double)(ps << i);
		histogram(b, "cachefs_readahead_window_bytes", "", bounds, es.ra_windows, ENG_RA_BUCKETS,
			  (double)(es.ra_window_pages * ps));
	}
	family(b, "cachefs_readahead_bytes_in_flight", "gauge",
	       "Read-ahead bytes in flight, against readahead_budget.");
	put(b, "cachefs_readahead_bytes_in_flight %llu\n", (unsigned long long)es.ra_bytes_in_flight);
	family(b, "cachefs_open_files", "gauge", "Files open through the mount (OPEN requests) and by jobs.");
	put(b, "cachefs_open_files %llu\n", (unsigned long long)es.open_files);
	family(b, "cachefs_shared_handles", "gauge",
	       "Inodes with a shared read handle (no_open: the kernel opens files without asking, "
	       "so the daemon cannot count them); each lasts while the kernel holds the inode.");
	put(b, "cachefs_shared_handles %llu\n", (unsigned long long)es.shared_files);
	family(b, "cachefs_shards", "gauge", "Shard threads.");
	put(b, "cachefs_shards %u\n", shard_count());
	render_shards(b);
	family(b, "cachefs_start_time_seconds", "gauge", "When the daemon mounted, Unix time.");
	put(b, "cachefs_start_time_seconds %lld\n", (long long)engine_started(e));
}
