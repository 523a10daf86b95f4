#include "config.h"
#include "ctl/status.h"
#include "ctl/proto.h"
#include "core/shard.h"
#include "core/util.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

double status_hit_ratio(const struct pgcache_stats *t)
{
	/* Gets answered without a source read, prefetches and joins included. */
	uint64_t looked = t->hits + t->joins + t->misses;

	return looked ? (double)(looked - MIN(t->fetches, looked)) / (double)looked : 0.0;
}

json_t *status_json(struct engine *e, struct jobs *jobs)
{
	struct pgcache *cache = engine_cache(e);
	struct pgstore *store = engine_store(e);
	const struct cache_opts *cfg = engine_cache_opts(e);
	struct pgcache_stats t;
	struct pgstore_stats s = { 0 };
	struct engine_stats es;
	uint64_t held, limit;
	json_t *o;

	pgcache_stats_total(cache, &t);
	if (store)
		pgstore_stats_total(store, &s);
	engine_stats(e, &es);
	o = json_pack("{s:b, s:s, s:o, s:o, s:I, s:I, s:I, s:I, s:I, s:I}", "ok", 1, "version",
		      PACKAGE_VERSION, "source", ctl_json_text(engine_source(e)), "mountpoint",
		      ctl_json_text(engine_mountpoint(e)), "pid",
		      (json_int_t)getpid(), "uptime_s", (json_int_t)(time(NULL) - engine_started(e)),
		      "shards", (json_int_t)shard_count(), "open_files", (json_int_t)es.open_files,
		      "shared_handles", (json_int_t)es.shared_files,
		      "jobs_running", (json_int_t)(jobs ? jobs_running(jobs) : 0));
	json_object_set_new(o, "ram", json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "used",
		(json_int_t)t.bytes, "capacity", (json_int_t)cfg->ram_cache, "pages",
		(json_int_t)t.pages, "hits", (json_int_t)t.hits, "bytes_served",
		(json_int_t)t.bytes_hit, "faulted", (json_int_t)t.faulted));
	json_object_set_new(o, "ssd", store ? json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}",
		"used", (json_int_t)s.bytes, "capacity", (json_int_t)s.capacity, "pages",
		(json_int_t)s.pages, "hits", (json_int_t)s.hits, "bytes_served",
		(json_int_t)s.bytes_read, "corrupt", (json_int_t)s.corrupt) : json_null());
	json_object_set_new(o, "source_reads", json_pack("{s:I, s:I, s:I, s:I}", "fetches",
		(json_int_t)t.fetches, "in_flight", (json_int_t)(t.fetches - t.fetches_done),
		"errors", (json_int_t)t.fetch_errors, "bytes", (json_int_t)t.bytes_fetched));
	json_object_set_new(o, "metadata", json_pack("{s:I, s:I}", "names", (json_int_t)es.nodes,
		"stale_answers", (json_int_t)es.stale_answers));
	json_object_set_new(o, "writes", json_pack("{s:b, s:I, s:I, s:I}", "read_only", engine_read_only(e),
		"bytes", (json_int_t)es.bytes_written, "commits", (json_int_t)es.commits,
		"failed", (json_int_t)es.commit_failures));
	if (es.has_source_counters) {
		uint64_t req = 0, retries = 0;
		for (unsigned i = 0; i < HTTP_KINDS; i++)
			req += es.source.requests[i];
		for (unsigned i = 0; i < HTTP_RETRY_CAUSES; i++)
			retries += es.source.retries[i];
		json_object_set_new(o, "source_http", json_pack("{s:I, s:I, s:I}", "requests", (json_int_t)req,
			"retries", (json_int_t)retries, "failed", (json_int_t)es.source.failed));
	}
	json_object_set_new(o, "hit_ratio", json_real(status_hit_ratio(&t)));
	json_object_set_new(o, "evictions", json_integer((json_int_t)(t.evictions + s.evictions)));
	pgcache_held_total(cache, &held, &limit);
	json_object_set_new(o, "pinned", json_pack("{s:I, s:I, s:s}", "bytes", (json_int_t)held,
		"limit", (json_int_t)limit, "tier", store ? "ssd" : "ram"));
	return o;
}

void status_summary(void *arg, char *buf, size_t len)
{
	struct engine *e = arg;
	struct pgcache_stats t;

	pgcache_stats_total(engine_cache(e), &t);
	snprintf(buf, len, "%u shards, RAM %llu of %llu MiB, %.1f%% hit ratio, %llu fetches in flight, "
		 "%llu source errors", shard_count(), (unsigned long long)(t.bytes >> 20),
		 (unsigned long long)(engine_cache_opts(e)->ram_cache >> 20), 100.0 * status_hit_ratio(&t),
		 (unsigned long long)(t.fetches - t.fetches_done), (unsigned long long)t.fetch_errors);
}
