#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include "fuse/inode_i.h"

static void test_ref_get_forget(void **state)
{
	struct ufs_stat root = { .mode = 040755, .version = 1 }, st = { .size = 10, .version = 5 };
	struct itable *t;
	struct inode a, b, g;

	itable_create(&t, &root);
	assert_int_equal(itable_ref(t, "x/y", &st, 1, &a), 0);
	assert_int_equal(itable_ref(t, "x/y", &st, 2, &b), 0);
	assert_int_equal(a.ino, b.ino);           /* same path, same inode */
	assert_int_equal(a.fid, b.fid);
	assert_int_equal(b.nlookup, 3);
	st.version = 6;                           /* the source changed */
	assert_int_equal(itable_ref(t, "x/y", &st, 0, &b), 0);
	assert_true(b.fid != a.fid);
	assert_int_equal(itable_get(t, a.ino, NULL, &g), 0);
	assert_string_equal(g.path, "x/y");
	free(g.path);
	itable_forget(t, a.ino, 2);
	assert_int_equal(itable_get(t, a.ino, NULL, &g), 0);
	free(g.path);
	itable_forget(t, a.ino, 1);
	assert_int_equal(itable_get(t, a.ino, NULL, &g), -ENOENT);
	/* Forgotten and looked up again: a new inode, the same cached bytes. */
	st.version = 6;
	assert_int_equal(itable_ref(t, "x/y", &st, 1, &a), 0);
	assert_int_equal(a.fid, b.fid);
	itable_forget(t, 1, 100);                 /* the root is never dropped */
	assert_int_equal(itable_get(t, 1, NULL, &g), 0);
	free(g.path);
	itable_destroy(t);
}

static void test_many(void **state)
{
	struct ufs_stat root = { .mode = 040755 }, st = { .size = 1 };
	struct itable *t;
	struct inode in, g;
	char p[32];
	uint64_t inos[5000];

	itable_create(&t, &root);
	for (int i = 0; i < 5000; i++) {
		snprintf(p, sizeof(p), "d/f%d", i);
		assert_int_equal(itable_ref(t, p, &st, 1, &in), 0);
		inos[i] = in.ino;
	}
	assert_int_equal(itable_count(t), 5001);
	for (int i = 0; i < 5000; i += 7) {
		snprintf(p, sizeof(p), "d/f%d", i);
		assert_int_equal(itable_get(t, inos[i], NULL, &g), 0);
		assert_string_equal(g.path, p);
		free(g.path);
	}
	for (int i = 0; i < 5000; i++)
		itable_forget(t, inos[i], 1);
	assert_int_equal(itable_count(t), 1);
	itable_destroy(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ref_get_forget),
		cmocka_unit_test(test_many),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
