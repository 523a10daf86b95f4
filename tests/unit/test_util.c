#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include "core/util.h"

static void test_parse_size(void **state)
{
	uint64_t v;

	assert_int_equal(parse_size("4096", &v), 0); assert_int_equal(v, 4096);
	assert_int_equal(parse_size("1M", &v), 0); assert_int_equal(v, 1 << 20);
	assert_int_equal(parse_size("512k", &v), 0); assert_int_equal(v, 512 << 10);
	assert_int_equal(parse_size("8GiB", &v), 0); assert_int_equal(v, 8ULL << 30);
	assert_int_equal(parse_size("2T", &v), 0); assert_int_equal(v, 2ULL << 40);
	assert_int_equal(parse_size("", &v), -EINVAL);
	assert_int_equal(parse_size("-1M", &v), -EINVAL);
	assert_int_equal(parse_size("12Q", &v), -EINVAL);
	assert_int_equal(parse_size("1MM", &v), -EINVAL);
	assert_int_equal(parse_size("99999999999T", &v), -EINVAL);
	assert_int_equal(parse_size(NULL, &v), -EINVAL);
}

static void test_parse_uint(void **state)
{
	uint64_t v;

	assert_int_equal(parse_uint("7", 1, 10, &v), 0); assert_int_equal(v, 7);
	assert_int_equal(parse_uint("0", 1, 10, &v), -EINVAL);
	assert_int_equal(parse_uint("11", 1, 10, &v), -EINVAL);
	assert_int_equal(parse_uint("3x", 1, 10, &v), -EINVAL);
	assert_int_equal(parse_uint("-3", 0, 10, &v), -EINVAL);
}

static void test_fmt_size(void **state)
{
	char b[32];

	assert_string_equal(fmt_size(1 << 20, b, sizeof(b)), "1M");
	assert_string_equal(fmt_size(1536ULL << 20, b, sizeof(b)), "1.5G");
	assert_string_equal(fmt_size(100, b, sizeof(b)), "100");
}

static void test_seconds_and_pow2(void **state)
{
	double d;

	assert_int_equal(parse_seconds("0.5", &d), 0);
	assert_true(d == 0.5);
	assert_int_equal(parse_seconds("-1", &d), -EINVAL);
	assert_int_equal(parse_seconds("1s", &d), -EINVAL);
	assert_true(is_pow2(4096));
	assert_false(is_pow2(3000));
	assert_false(is_pow2(0));
}

static void test_path_clean(void **state)
{
	char a[] = "/a//b/", b[] = "x", c[] = "a/../b", d[] = "//", e[] = "a/./b", f[] = "..x/y.";
	bool dir;

	assert_int_equal(path_clean(a, &dir), 0);
	assert_string_equal(a, "a/b");
	assert_true(dir);
	assert_int_equal(path_clean(b, &dir), 0);
	assert_string_equal(b, "x");
	assert_false(dir);
	assert_int_equal(path_clean(c, &dir), -EINVAL);
	assert_int_equal(path_clean(d, &dir), 0);
	assert_string_equal(d, "");
	assert_int_equal(path_clean(e, &dir), -EINVAL);
	assert_int_equal(path_clean(f, &dir), 0);   /* dots inside names are names */
	assert_string_equal(f, "..x/y.");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_path_clean),
		cmocka_unit_test(test_parse_size),
		cmocka_unit_test(test_parse_uint),
		cmocka_unit_test(test_fmt_size),
		cmocka_unit_test(test_seconds_and_pow2),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
