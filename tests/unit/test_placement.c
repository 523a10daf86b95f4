#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cluster/placement.h"

#define STRIPES 100000

static struct placement *make(unsigned n, unsigned skip)
{
	const char *names[64];
	char buf[64][32];
	struct placement *pl;
	unsigned k = 0;

	for (unsigned i = 0; i < n; i++) {
		if (i == skip)
			continue;
		snprintf(buf[k], sizeof(buf[k]), "10.0.0.%u:9470", i + 1);
		names[k] = buf[k];
		k++;
	}
	assert_int_equal(placement_create(&pl, names, k, NULL), 0);
	return pl;
}

/* Adding a node moves about 1/(N+1) of the stripes, all of them to it;
 * removing one moves only its own. Each node holds its share. */
static void test_movement(void **state)
{
	const unsigned n = 10;
	struct placement *all = make(n + 1, ~0u), *less = make(n + 1, n);   /* 10.0.0.11 missing */
	struct placement *gone = make(n + 1, 3);                              /* 10.0.0.4 missing */
	unsigned moved_add = 0, moved_rm = 0, load[16] = { 0 };

	for (uint64_t s = 0; s < STRIPES; s++) {
		uint64_t fid = 0x1234567890abcdefULL ^ (s / 7 * 0x9e3779b97f4a7c15ULL);
		const char *a = placement_name(all, placement_owner(all, fid, s % 7));
		const char *b = placement_name(less, placement_owner(less, fid, s % 7));
		const char *c = placement_name(gone, placement_owner(gone, fid, s % 7));
		load[placement_owner(all, fid, s % 7)]++;
		if (strcmp(a, b)) {
			moved_add++;
			assert_string_equal(a, "10.0.0.11:9470");
		}
		if (strcmp(a, c)) {
			moved_rm++;
			assert_string_equal(a, "10.0.0.4:9470");
		}
	}
	/* 1/11 of 100000 is 9091; a binomial's spread is about 90. */
	assert_in_range(moved_add, 8600, 9600);
	assert_in_range(moved_rm, 8600, 9600);
	for (unsigned i = 0; i <= n; i++)
		assert_in_range(load[i], 8600, 9600);
	placement_free(all);
	placement_free(less);
	placement_free(gone);
}

/* rank[0] is the owner; the ranking drops a node without reordering the rest. */
static void test_rank(void **state)
{
	struct placement *all = make(8, ~0u), *gone;
	unsigned order[8], order2[8];

	for (uint64_t s = 0; s < 1000; s++) {
		assert_int_equal(placement_rank(all, 42, s, order, 8), 8);
		assert_int_equal(order[0], placement_owner(all, 42, s));
		assert_int_equal(placement_rank(all, 42, s, order2, 3), 3);
		assert_memory_equal(order, order2, 3 * sizeof(unsigned));
	}
	/* Without the owner, the second choice owns. */
	assert_int_equal(placement_rank(all, 42, 5, order, 2), 2);
	gone = make(8, order[0]);
	assert_string_equal(placement_name(gone, placement_owner(gone, 42, 5)),
			    placement_name(all, order[1]));
	placement_free(all);
	placement_free(gone);
}

static void test_create(void **state)
{
	const char *names[] = { "b:1", "a:1", "b:1" };
	char longname[PL_NAME_MAX + 1];
	const char *bad[] = { longname };
	struct placement *pl, *pl2;

	assert_int_equal(placement_create(&pl, names, 3, "b:1"), 0);
	assert_int_equal(placement_count(pl), 2);
	assert_string_equal(placement_name(pl, 0), "a:1");
	assert_int_equal(placement_self(pl), 1);
	assert_int_equal(placement_create(&pl2, names + 1, 2, NULL), 0);
	assert_true(placement_same(pl, pl2));
	assert_int_equal(placement_self(pl2), -1);
	placement_free(pl2);
	placement_free(pl);
	memset(longname, 'x', PL_NAME_MAX);
	longname[PL_NAME_MAX] = '\0';
	assert_int_equal(placement_create(&pl, bad, 1, NULL), -EINVAL);
}

/*
 * tests/vectors/placement.json: what the Python client must compute too.
 * CACHEFS_WRITE_VECTORS=FILE writes it anew (only when the formula changes
 * on purpose: then both sides change).
 */
static void test_vectors(void **state)
{
	const char *src = getenv("top_srcdir"), *out = getenv("CACHEFS_WRITE_VECTORS");
	char path[4096], hex[32];
	json_error_t jerr;
	json_t *doc, *nodes, *cases;
	const char *names[5] = { "127.0.0.1:9470", "127.0.0.1:9471", "127.0.0.1:9472", "[::1]:9470",
				 "node-17.example:19470" };
	struct placement *pl;

	assert_int_equal(placement_create(&pl, names, 5, NULL), 0);
	if (out) {
		doc = json_object();
		nodes = json_array();
		cases = json_array();
		for (unsigned i = 0; i < 5; i++) {
			snprintf(hex, sizeof(hex), "%016llx", (unsigned long long)placement_node_hash(names[i]));
			json_array_append_new(nodes, json_pack("{s:s, s:s}", "name", names[i], "hash", hex));
		}
		for (uint64_t i = 0; i < 40; i++) {
			uint64_t fid = i * 0xd1b54a32d192ed03ULL + 7, stripe = i * i % 13;
			unsigned order[5];
			char fh[32], sc[32];
			placement_rank(pl, fid, stripe, order, 5);
			snprintf(fh, sizeof(fh), "%016llx", (unsigned long long)fid);
			snprintf(sc, sizeof(sc), "%016llx",
				 (unsigned long long)placement_score(placement_node_hash(names[0]), fid, stripe));
			json_t *rank = json_array();
			for (unsigned k = 0; k < 5; k++)
				json_array_append_new(rank, json_string(placement_name(pl, order[k])));
			json_array_append_new(cases, json_pack("{s:s, s:I, s:s, s:o}", "fid", fh, "stripe",
							       (json_int_t)stripe, "score_first_node", sc,
							       "rank", rank));
		}
		json_object_set_new(doc, "nodes", nodes);
		json_object_set_new(doc, "cases", cases);
		assert_int_equal(json_dump_file(doc, out, JSON_INDENT(1)), 0);
		json_decref(doc);
	}
	snprintf(path, sizeof(path), "%s/tests/vectors/placement.json", out ? "" : src ? src : ".");
	doc = json_load_file(out ? out : path, 0, &jerr);
	assert_non_null(doc);
	nodes = json_object_get(doc, "nodes");
	cases = json_object_get(doc, "cases");
	assert_int_equal(json_array_size(nodes), 5);
	for (size_t i = 0; i < json_array_size(nodes); i++) {
		json_t *nd = json_array_get(nodes, i);
		const char *name = json_string_value(json_object_get(nd, "name"));
		snprintf(hex, sizeof(hex), "%016llx", (unsigned long long)placement_node_hash(name));
		assert_string_equal(hex, json_string_value(json_object_get(nd, "hash")));
	}
	assert_int_equal(json_array_size(cases), 40);
	for (size_t i = 0; i < json_array_size(cases); i++) {
		json_t *c = json_array_get(cases, i);
		uint64_t fid = strtoull(json_string_value(json_object_get(c, "fid")), NULL, 16);
		uint64_t stripe = (uint64_t)json_integer_value(json_object_get(c, "stripe"));
		json_t *rank = json_object_get(c, "rank");
		unsigned order[5];
		snprintf(hex, sizeof(hex), "%016llx",
			 (unsigned long long)placement_score(placement_node_hash(names[0]), fid, stripe));
		assert_string_equal(hex, json_string_value(json_object_get(c, "score_first_node")));
		assert_int_equal(placement_rank(pl, fid, stripe, order, 5), 5);
		for (unsigned k = 0; k < 5; k++)
			assert_string_equal(placement_name(pl, order[k]),
					    json_string_value(json_array_get(rank, k)));
	}
	json_decref(doc);
	placement_free(pl);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_movement),
		cmocka_unit_test(test_rank),
		cmocka_unit_test(test_create),
		cmocka_unit_test(test_vectors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
