/* The namespace table: dentries, stable inode numbers, O(1) renames, holds
 * and eviction of what nothing holds. */
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
#include "core/util.h"
#include "engine/ns_i.h"

static const struct ufs_stat dir_st = { .mode = S_IFDIR | 0755, .nlink = 2 };
static const struct ufs_stat file_st = { .mode = S_IFREG | 0644, .size = 10, .nlink = 1 };

static struct node *add(struct ns *ns, struct node *dir, const char *name, const struct ufs_stat *st)
{
	struct node *n = ns_add(ns, dir, name);

	assert_non_null(n);
	n->st = *st;
	return n;
}

static char *path_of(struct ns *ns, struct node *n)
{
	char *p = ns_path(ns, n);

	assert_non_null(p);
	return p;
}

static void test_paths_and_numbers(void **state)
{
	struct ns *ns = ns_create(&dir_st, 0);
	struct node *root = ns_root(ns), *a, *b, *f;
	char *p;

	ns_lock(ns);
	assert_int_equal(root->ino, 1);
	a = add(ns, root, "a", &dir_st);
	b = add(ns, a, "b", &dir_st);
	f = add(ns, b, "file", &file_st);
	p = path_of(ns, f);
	assert_string_equal(p, "a/b/file");
	free(p);
	p = path_of(ns, root);
	assert_string_equal(p, "");
	free(p);
	assert_ptr_equal(ns_child(ns, b, "file"), f);
	assert_ptr_equal(ns_by_ino(ns, f->ino), f);
	assert_null(ns_child(ns, a, "file"));
	/* An alias: the path holds the source's name. */
	assert_int_equal(ns_set_srcname(f, "file-at-source"), 0);
	p = path_of(ns, f);
	assert_string_equal(p, "a/b/file-at-source");
	free(p);
	assert_int_equal(ns_set_srcname(f, "file"), 0);   /* the same name: no alias */
	assert_null(f->srcname);
	ns_unlock(ns);
	ns_destroy(ns);
}

/* A directory with 10,000 descendants moves in one step; every path follows. */
static void test_rename_big_directory(void **state)
{
	struct ns *ns = ns_create(&dir_st, 0);
	struct node *root = ns_root(ns), *src, *dst, *last = NULL;
	uint64_t count, ino_last;
	char *p;

	ns_lock(ns);
	src = add(ns, root, "src", &dir_st);
	dst = add(ns, root, "dst", &dir_st);
	for (int d = 0; d < 100; d++) {
		char name[16];
		snprintf(name, sizeof(name), "d%d", d);
		struct node *sub = add(ns, src, name, &dir_st);
		for (int f = 0; f < 99; f++) {
			snprintf(name, sizeof(name), "f%d", f);
			last = add(ns, sub, name, &file_st);
			ns_ref(ns, last, 1);   /* the kernel knows them */
		}
	}
	count = ns_count(ns);
	assert_int_equal(count, 1 + 2 + 100 + 100 * 99);
	ino_last = last->ino;
	uint64_t t = now_ns();
	assert_int_equal(ns_rename(ns, root, "src", dst, "moved", false), 0);
	t = now_ns() - t;
	/* O(1): no walk over the 10,000 descendants (a walk costs milliseconds). */
	assert_true(t < 1000000);
	assert_int_equal(ns_count(ns), count);
	assert_null(ns_child(ns, root, "src"));
	assert_ptr_equal(ns_child(ns, dst, "moved"), src);
	assert_ptr_equal(ns_by_ino(ns, ino_last), last);    /* same inode numbers */
	p = path_of(ns, last);
	assert_string_equal(p, "dst/moved/d99/f98");
	free(p);
	/* Into its own subtree: refused. */
	assert_int_equal(ns_rename(ns, dst, "moved", ns_child(ns, src, "d3"), "x", false), -EINVAL);
	assert_int_equal(ns_rename(ns, root, "nothing", dst, "x", false), -ENOENT);
	ns_unlock(ns);
	ns_destroy(ns);
}

/* An open file survives its own rename, and a rename over an open file. */
static void test_rename_open_file(void **state)
{
	struct ns *ns = ns_create(&dir_st, 0);
	struct node *root = ns_root(ns), *f, *g;
	uint64_t ino_f, ino_g;
	char *p;

	ns_lock(ns);
	f = add(ns, root, "ckpt.tmp", &file_st);
	g = add(ns, root, "ckpt", &file_st);
	ino_f = f->ino;
	ino_g = g->ino;
	ns_hold(ns, f);   /* open */
	ns_hold(ns, g);   /* open too */
	assert_int_equal(ns_rename(ns, root, "ckpt.tmp", root, "ckpt", true), -EEXIST);
	assert_int_equal(ns_rename(ns, root, "ckpt.tmp", root, "ckpt", false), 0);
	/* The renamed file is the same node under its new name. */
	assert_ptr_equal(ns_child(ns, root, "ckpt"), f);
	assert_ptr_equal(ns_by_ino(ns, ino_f), f);
	p = path_of(ns, f);
	assert_string_equal(p, "ckpt");
	free(p);
	/* The replaced one is still open and reachable by number, by no name. */
	assert_ptr_equal(ns_by_ino(ns, ino_g), g);
	assert_null(g->parent);
	assert_null(ns_path(ns, g));
	ns_unhold(ns, g);   /* closed: gone */
	assert_null(ns_by_ino(ns, ino_g));
	ns_unhold(ns, f);
	assert_ptr_equal(ns_by_ino(ns, ino_f), f);   /* still named: kept as cache */
	ns_unlock(ns);
	ns_destroy(ns);
}

/* Nodes nobody holds are cache: the oldest go when the table is over its size. */
static void test_eviction(void **state)
{
	struct ns *ns = ns_create(&dir_st, 10);
	struct node *root = ns_root(ns), *d, *kept;
	char name[16];

	ns_lock(ns);
	d = add(ns, root, "d", &dir_st);
	kept = add(ns, d, "kept", &file_st);
	ns_ref(ns, kept, 1);
	d->list_ns = d->list_until = 5;   /* "listed" */
	for (int i = 0; i < 20; i++) {
		snprintf(name, sizeof(name), "n%d", i);
		add(ns, d, name, &file_st);
	}
	ns_trim(ns);
	assert_true(ns_count(ns) <= 10);
	assert_ptr_equal(ns_child(ns, d, "kept"), kept);     /* held by the kernel */
	assert_ptr_equal(ns_child(ns, root, "d"), d);        /* it has children */
	assert_null(ns_child(ns, d, "n0"));                  /* the oldest went */
	assert_non_null(ns_child(ns, d, "n19"));
	assert_int_equal(d->list_ns, 0);                     /* so its listing is incomplete */
	/* Forgotten by the kernel: it may go too. */
	ns_forget(ns, kept, 1);
	for (int i = 20; i < 40; i++) {
		snprintf(name, sizeof(name), "n%d", i);
		add(ns, d, name, &file_st);
	}
	ns_trim(ns);
	assert_null(ns_child(ns, d, "kept"));
	ns_unlock(ns);
	ns_destroy(ns);
}

/* A detached directory takes what lies below it; held nodes stay reachable by number. */
static void test_detach(void **state)
{
	struct ns *ns = ns_create(&dir_st, 0);
	struct node *root = ns_root(ns), *d, *sub, *f, *g;
	uint64_t ino_f, ino_g, n0;

	ns_lock(ns);
	n0 = ns_count(ns);
	d = add(ns, root, "d", &dir_st);
	sub = add(ns, d, "sub", &dir_st);
	f = add(ns, sub, "f", &file_st);
	g = add(ns, sub, "g", &file_st);
	ns_ref(ns, f, 1);
	ino_f = f->ino;
	ino_g = g->ino;
	ns_detach(ns, d);
	assert_null(ns_child(ns, root, "d"));
	assert_null(ns_by_ino(ns, ino_g));           /* nothing held it */
	assert_ptr_equal(ns_by_ino(ns, ino_f), f);   /* the kernel does */
	assert_null(f->parent);
	ns_forget(ns, f, 1);
	assert_null(ns_by_ino(ns, ino_f));
	assert_int_equal(ns_count(ns), n0);
	ns_unlock(ns);
	ns_destroy(ns);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_paths_and_numbers),
		cmocka_unit_test(test_rename_big_directory),
		cmocka_unit_test(test_rename_open_file),
		cmocka_unit_test(test_eviction),
		cmocka_unit_test(test_detach),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
