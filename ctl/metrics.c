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

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static struct MHD_Daemon *mhd;
static _Atomic(struct engine *) meng;
static metrics_render_fn mextra;
static void *mextra_arg;

struct metrics_buf {
	char *p;
	size_t len, cap;
};

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

static void render(struct metrics_buf *b, struct engine *e)
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
	if (mextra)
		mextra(b, mextra_arg);
	family(b, "cachefs_served_bytes_total", "counter",
	       "Bytes of pages served, by tier (the kernel page cache is invisible here).");
	put(b, "cachefs_served_bytes_total{tier=\"ram\"} %llu\n", (unsigned long long)t.bytes_hit);
	put(b, "cachefs_served_bytes_total{tier=\"ssd\"} %llu\n", (unsigned long long)s.bytes_read);
	put(b, "cachefs_served_bytes_total{tier=\"source\"} %llu\n", (unsigned long long)t.bytes_fetched);
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
	family(b, "cachefs_open_files", "gauge", "Files open through the mount.");
	put(b, "cachefs_open_files %llu\n", (unsigned long long)es.open_files);
	family(b, "cachefs_shards", "gauge", "Shard threads.");
	put(b, "cachefs_shards %u\n", shard_count());
	render_shards(b);
	family(b, "cachefs_start_time_seconds", "gauge", "When the daemon mounted, Unix time.");
	put(b, "cachefs_start_time_seconds %lld\n", (long long)engine_started(e));
}

static enum MHD_Result answer(void *cls, struct MHD_Connection *c, const char *url,
			      const char *method, const char *version, const char *upload,
			      size_t *upload_len, void **state)
{
	struct engine *e = atomic_load(&meng);
	struct MHD_Response *r;
	struct metrics_buf b = { 0 };
	unsigned status = MHD_HTTP_OK;
	enum MHD_Result rc;

	if (strcmp(method, "GET") && strcmp(method, "HEAD")) {
		status = MHD_HTTP_METHOD_NOT_ALLOWED;
		put(&b, "only GET /metrics\n");
	} else if (strcmp(url, "/metrics")) {
		status = MHD_HTTP_NOT_FOUND;
		put(&b, "cachefs serves /metrics\n");
	} else if (!e) {
		status = MHD_HTTP_SERVICE_UNAVAILABLE;
		put(&b, "starting\n");
	} else {
		render(&b, e);
	}
	if (!b.p)
		return MHD_NO;
	r = MHD_create_response_from_buffer(b.len, b.p, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(b.p);
		return MHD_NO;
	}
	MHD_add_response_header(r, "Content-Type", status == MHD_HTTP_OK ?
				"text/plain; version=0.0.4; charset=utf-8" : "text/plain");
	rc = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return rc;
}

/* "HOST:PORT", "[V6]:PORT" or ":PORT" into a socket address. */
static int parse_addr(const char *spec, struct sockaddr_storage *ss, char *err, size_t errlen)
{
	char host[128];
	const char *colon = strrchr(spec, ':');
	char *end;
	long port;

	if (!colon || (size_t)(colon - spec) >= sizeof(host))
		goto bad;
	port = strtol(colon + 1, &end, 10);
	if (*end || port < 1 || port > 65535)
		goto bad;
	snprintf(host, sizeof(host), "%.*s", (int)(colon - spec), spec);
	memset(ss, 0, sizeof(*ss));
	if (host[0] == '[' && host[strlen(host) - 1] == ']') {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
		host[strlen(host) - 1] = '\0';
		a->sin6_family = AF_INET6;
		a->sin6_port = htons((uint16_t)port);
		if (inet_pton(AF_INET6, host + 1, &a->sin6_addr) != 1)
			goto bad;
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)ss;
		a->sin_family = AF_INET;
		a->sin_port = htons((uint16_t)port);
		if (host[0] && inet_pton(AF_INET, host, &a->sin_addr) != 1)
			goto bad;
	}
	return 0;
bad:
	snprintf(err, errlen, "metrics=%s: want ADDR:PORT, such as 127.0.0.1:9464 (or :PORT for every address)",
		 spec);
	return -EINVAL;
}

int metrics_check(const char *spec, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	int fd, one = 1, rc = parse_addr(spec, &ss, err, errlen);

	if (rc)
		return rc;
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "metrics=%s: socket: %s", spec, strerror(errno));
		return -errno;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	rc = bind(fd, (struct sockaddr *)&ss, ss.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) :
		  sizeof(struct sockaddr_in)) < 0 ? -errno : 0;
	close(fd);
	if (rc)
		snprintf(err, errlen, "metrics=%s: cannot listen there: %s", spec, strerror(-rc));
	return rc;
}

int metrics_start(const char *spec, struct engine *e, metrics_render_fn extra, void *arg)
{
	struct sockaddr_storage ss;
	char err[256];

	if (parse_addr(spec, &ss, err, sizeof(err)))
		return -EINVAL;
	mextra = extra;
	mextra_arg = arg;
	atomic_store(&meng, e);
	mhd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG |
			       (ss.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0),
			       0, NULL, NULL, answer, NULL,
			       MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
			       MHD_OPTION_CONNECTION_LIMIT, (unsigned)16,
			       MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10,
			       MHD_OPTION_END);
	if (!mhd) {
		log_err("metrics=%s: cannot listen there (in use?): serving no metrics", spec);
		return -EADDRINUSE;
	}
	log_info("metrics on http://%s/metrics", spec);
	return 0;
}

void metrics_stop(void)
{
	if (mhd)
		MHD_stop_daemon(mhd);
	mhd = NULL;
	atomic_store(&meng, NULL);
}
