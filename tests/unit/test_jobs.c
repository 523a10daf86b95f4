/* The control job engine: load, evict, pin and unpin of a tree through a
 * real engine over a local directory, with shard threads; what each job
 * counts, and the errors it names. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "core/shard.h"
#include "ctl/jobs.h"
#include "engine/engine.h"

#define PS (64u << 10)
#define MNT "/mnt/test-jobs"

static char tmp[] = "/tmp/test_jobs.XXXXXX";
static struct engine *e;
static struct jobs *jobs;

static void put(const char *rel, size_t size)
{
	char p[512];
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", tmp, rel);
	f = fopen(p, "w");
	assert_non_null(f);
	for (size_t i = 0; i < size; i++)
		fputc((int)(i % 251), f);
	fclose(f);
}

static int setup(void **state)
{
	struct shards_opts so = { .count = 2 };
	struct cache_opts co = { .page_size = PS, .ram_cache = 256 * PS, .max_readahead = 4 * PS,
				 .readahead_budget = 16 * PS };
	struct meta_opts mo = { .meta_cache = 1000, .meta_threads = 2 };
	struct source_opts src = { .local_meta = LOCAL_META_THREADS };   /* the threads' path */
	struct ufs *u;
	char path[600], err[256];

	assert_non_null(mkdtemp(tmp));
	snprintf(path, sizeof(path), "%s/dir", tmp);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/dir/sub", tmp);
	mkdir(path, 0755);
	put("dir/a", 3 * PS);          /* 3 pages */
	put("dir/sub/b", PS + 10);     /* 2 pages */
	put("dir/empty", 0);
	assert_int_equal(ufs_local_ops.init(&u, tmp, &src, err, sizeof(err)), 0);
	assert_int_equal(shards_start(&so), 0);
	assert_int_equal(engine_create(&e, &co, &mo, &ufs_local_ops, u), 0);
	engine_set_names(e, tmp, MNT);
	assert_int_equal(engine_start(e), 0);
	jobs = jobs_create(e);
	assert_non_null(jobs);
	return 0;
}

static int teardown(void **state)
{
	char cmd[600];

	jobs_destroy(jobs);
	engine_stop(e);
	shards_stop();
	engine_destroy(e);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmp);
	return system(cmd);
}

static uint64_t num(json_t *o, const char *key)
{
	return (uint64_t)json_integer_value(json_object_get(o, key));
}

/* Runs a job to its end; its progress object (the caller decrefs). */
static json_t *run(enum ctl_job_kind kind, const char *const *paths, unsigned n, bool all)
{
	char err[256];
	struct job_spec s = { .kind = kind, .paths = paths, .n = n, .all = all, .parallel = 4 };
	struct job *j = jobs_start(jobs, &s, err, sizeof(err));

	assert_non_null(j);
	job_wait_finished(j);
	assert_true(job_finished(j));
	return job_json(j);
}

static uint64_t fetches(void)
{
	struct pgcache_stats t;

	pgcache_stats_total(engine_cache(e), &t);
	return t.fetches;
}

static void test_load(void **state)
{
	const char *const tree[] = { MNT "/dir" };
	uint64_t before = fetches();
	json_t *j = run(CTL_JOB_LOAD, tree, 1, false);

	assert_string_equal(json_string_value(json_object_get(j, "state")), "done");
	assert_int_equal(num(j, "files_total"), 3);
	assert_int_equal(num(j, "files_done"), 3);
	assert_int_equal(num(j, "bytes_total"), 4 * PS + 10);
	assert_int_equal(num(j, "bytes_done"), 4 * PS + 10);
	assert_int_equal(num(j, "error_count"), 0);
	assert_int_equal(fetches() - before, 5);      /* one per page */
	json_decref(j);
	/* Again: every page is cached. */
	before = fetches();
	j = run(CTL_JOB_LOAD, tree, 1, false);
	assert_int_equal(num(j, "bytes_done"), 4 * PS + 10);
	assert_int_equal(fetches(), before);
	json_decref(j);
}

static void test_errors(void **state)
{
	const char *const paths[] = { MNT "/nope", MNT "/dir/a", "/elsewhere/x", MNT "/../etc" };
	json_t *j = run(CTL_JOB_LOAD, paths, 4, false);
	const char *e0 = json_string_value(json_array_get(json_object_get(j, "errors"), 0));
	const char *e1 = json_string_value(json_array_get(json_object_get(j, "errors"), 1));
	const char *e2 = json_string_value(json_array_get(json_object_get(j, "errors"), 2));

	assert_int_equal(num(j, "files_done"), 1);     /* the rest still loads */
	assert_int_equal(num(j, "error_count"), 3);
	assert_non_null(strstr(e0, "nope: No such file"));
	assert_non_null(strstr(e1, "not under the mount point"));
	assert_non_null(strstr(e2, "not a plain path"));
	json_decref(j);
}

static void test_evict_pin_unpin(void **state)
{
	const char *const tree[] = { MNT "/dir" }, *const file[] = { MNT "/dir/sub/b" };
	uint64_t before;
	json_t *j;

	json_decref(run(CTL_JOB_LOAD, tree, 1, false));
	j = run(CTL_JOB_PIN, file, 1, false);
	assert_string_equal(json_string_value(json_object_get(j, "state")), "done");
	assert_int_equal(num(j, "pages_pinned"), 2);
	json_decref(j);
	j = run(CTL_JOB_EVICT, tree, 1, false);
	assert_int_equal(num(j, "pages_dropped"), 3);  /* dir/a's; b is pinned */
	assert_int_equal(num(j, "pages_kept"), 2);
	json_decref(j);
	before = fetches();
	json_decref(run(CTL_JOB_LOAD, tree, 1, false));
	assert_int_equal(fetches() - before, 3);       /* only the evicted pages came back */
	j = run(CTL_JOB_UNPIN, file, 1, false);
	assert_int_equal(num(j, "pages_unpinned"), 2);
	json_decref(j);
	json_decref(run(CTL_JOB_PIN, file, 1, false));
	j = run(CTL_JOB_UNPIN, NULL, 0, true);
	assert_int_equal(num(j, "pages_unpinned"), 2);
	json_decref(j);
	j = run(CTL_JOB_EVICT, tree, 1, false);
	assert_int_equal(num(j, "pages_dropped"), 5);
	json_decref(j);
}

static void test_table(void **state)
{
	const char *const tree[] = { MNT "/dir" };
	char err[256];
	struct job_spec s = { .kind = CTL_JOB_LOAD, .paths = tree, .n = 1, .parallel = 1 };
	struct job *j = jobs_start(jobs, &s, err, sizeof(err));

	assert_non_null(j);
	assert_ptr_equal(jobs_find(jobs, job_id(j)), j);
	assert_null(jobs_find(jobs, 999999));
	job_cancel(j);
	job_wait_finished(j);
	json_t *o = job_json(j);
	const char *state_name = json_string_value(json_object_get(o, "state"));
	assert_true(!strcmp(state_name, "cancelled") || !strcmp(state_name, "done"));
	json_decref(o);
	assert_int_equal(jobs_running(jobs), 0);
	o = jobs_json(jobs);
	assert_true(json_array_size(o) >= 1);
	json_decref(o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_load),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_evict_pin_unpin),
		cmocka_unit_test(test_table),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
