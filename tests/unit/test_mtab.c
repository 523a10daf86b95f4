/* The mount table: the longest mount point wins, directories above mount
 * points exist, a mount point hides its source's same-named entry, and
 * pages of two sources never share an identity. Calls run on a manual
 * shard; the local driver's system calls on a metadata thread. */
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
#include <unistd.h>
#include "core/pool.h"
#include "core/shard.h"
#include "ufs/ufs.h"

static char tmp[] = "/tmp/test_mtab.XXXXXX";
static struct ufs *table;
static struct shard *sh;

struct result {
	struct ufs_call c;
	int rc;
	int done;
	char names[1024];
};

static void on_done(struct ufs_call *c, int rc)
{
	struct result *r = (struct result *)c;

	r->rc = rc;
	r->done = 1;
}

static int on_entry(struct ufs_call *c, const struct ufs_dirent *d)
{
	struct result *r = (struct result *)c;
	size_t n = strlen(r->names);

	snprintf(r->names + n, sizeof(r->names) - n, "%s%s", n ? " " : "", d->name);
	return 0;
}

static void (*current)(struct ufs_call *c);

static void run(void *arg)
{
	current(arg);
}

/* Runs op(path) on the shard and polls it until done. */
static struct result call(void (*op)(struct ufs_call *c), const char *path)
{
	struct result r;

	memset(&r, 0, sizeof(r));
	r.c.u = table;
	r.c.path = path;
	r.c.done = on_done;
	r.c.entry = on_entry;
	current = op;
	shard_call(sh, run, &r.c);
	while (!r.done)
		shard_poll(sh);
	return r;
}

static void put(const char *rel, const char *data)
{
	char p[512];
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", tmp, rel);
	f = fopen(p, "w");
	assert_non_null(f);
	fputs(data, f);
	fclose(f);
}

static void sub(const char *rel)
{
	char p[512];

	snprintf(p, sizeof(p), "%s/%s", tmp, rel);
	assert_int_equal(mkdir(p, 0755), 0);
}

static int setup(void **state)
{
	struct shards_opts so = { .count = 1, .manual = true };
	struct cachefs_config cfg;
	char r[600], a[600], ab[600], err[256];
	struct config_mount m[3] = {
		{ .path = "/", .source = r },
		{ .path = "/data", .source = a },
		{ .path = "/data/sub", .source = ab },
	};
	struct config_file cf = { .name = "test", .mounts = m, .nmounts = 3 };

	assert_non_null(mkdtemp(tmp));
	sub("root");
	sub("root/data");         /* hidden by the mount point /data */
	put("root/r.txt", "root");
	put("root/data/hidden", "x");
	sub("a");
	put("a/a.txt", "aaa");
	put("a/same", "from a");
	sub("ab");
	put("ab/ab.txt", "ab");
	put("ab/same", "from a");  /* same path and bytes as a's, other source */
	snprintf(r, sizeof(r), "%s/root", tmp);
	snprintf(a, sizeof(a), "%s/a", tmp);
	snprintf(ab, sizeof(ab), "%s/ab", tmp);
	config_defaults(&cfg);
	assert_int_equal(ufs_mtab_init(&table, &cf, &cfg, err, sizeof(err)), 0);
	assert_int_equal(shards_start(&so), 0);
	sh = shard_get(0);
	assert_int_equal(pool_start(1), 0);
	return 0;
}

static int teardown(void **state)
{
	char cmd[600];

	pool_stop(1000);
	shards_stop();
	ufs_mtab_ops.fini(table);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmp);
	return system(cmd);
}

static void test_longest_prefix(void **state)
{
	struct result r;

	r = call(ufs_mtab_ops.stat, "data/a.txt");
	assert_int_equal(r.rc, 0);
	assert_int_equal(r.c.st.size, 3);
	assert_int_equal(r.c.source, 2);              /* the /data mount */
	r = call(ufs_mtab_ops.stat, "data/sub/ab.txt");
	assert_int_equal(r.rc, 0);
	assert_int_equal(r.c.source, 3);              /* /data/sub beats /data */
	r = call(ufs_mtab_ops.stat, "r.txt");
	assert_int_equal(r.rc, 0);
	assert_int_equal(r.c.source, 1);
	r = call(ufs_mtab_ops.stat, "datax");         /* a prefix of a name is not a mount point */
	assert_int_equal(r.rc, -ENOENT);
	r = call(ufs_mtab_ops.stat, "data/hidden");   /* the root's data/ is under the mount */
	assert_int_equal(r.rc, -ENOENT);
}

static void test_mount_points(void **state)
{
	struct result r;

	r = call(ufs_mtab_ops.stat, "data");
	assert_int_equal(r.rc, 0);
	assert_true(S_ISDIR(r.c.st.mode));
	r = call(ufs_mtab_ops.list, "");
	assert_int_equal(r.rc, 0);
	/* "data" once: the mount point hides the root's own data/. */
	assert_string_equal(r.names, "data r.txt");
	r = call(ufs_mtab_ops.list, "data");
	assert_int_equal(r.rc, 0);
	assert_non_null(strstr(r.names, "sub"));
	assert_non_null(strstr(r.names, "a.txt"));
	assert_null(strstr(r.names, "hidden"));
	r = call(ufs_mtab_ops.open, "data");
	assert_int_equal(r.rc, -EISDIR);
}

static void test_identities(void **state)
{
	struct result x = call(ufs_mtab_ops.stat, "data/same");
	struct result y = call(ufs_mtab_ops.stat, "data/sub/same");

	assert_int_equal(x.rc, 0);
	assert_int_equal(y.rc, 0);
	assert_true(x.c.st.id != y.c.st.id);           /* two sources never share pages */
	x.c.st.size = 0;
	x = call(ufs_mtab_ops.open, "data/same");
	assert_int_equal(x.rc, 0);
	assert_true(x.c.fetched);
	assert_int_equal(x.c.st.size, 6);
	ufs_file_put(x.c.file);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_longest_prefix),
		cmocka_unit_test(test_mount_points),
		cmocka_unit_test(test_identities),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
