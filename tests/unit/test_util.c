#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "core/log.h"
#include "core/util.h"

/* What log lines reach stderr (a temporary file here) while fn runs. */
static char *stderr_of(void (*fn)(void))
{
	char tmpl[] = "/tmp/test_util.XXXXXX", *out = calloc(1, 8192);
	int fd = mkstemp(tmpl), saved = dup(STDERR_FILENO);

	assert_true(fd >= 0 && saved >= 0 && out);
	unlink(tmpl);
	fflush(stderr);
	dup2(fd, STDERR_FILENO);
	fn();
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	assert_true(pread(fd, out, 8191, 0) >= 0);
	close(fd);
	return out;
}

static void burst(void)
{
	for (int i = 0; i < 5; i++)
		log_warn("disk on fire");
	log_tick(false);         /* the burst is younger than a second: nothing yet */
	fprintf(stderr, "--\n");
	sleep(2);
	log_tick(false);
	log_tick(false);         /* once only */
	log_warn("disk on fire");   /* a new window: printed in full */
	log_tick(true);
}

/* A burst of identical lines is one line and a count, and the count comes
 * out after a second of silence, not only when another line arrives. */
static void test_log_repeats(void **state)
{
	char *out = stderr_of(burst);

	assert_string_equal(out, "cachefs: warn: disk on fire\n--\n"
				 "cachefs: warn: disk on fire ... repeated 4 times\n"
				 "cachefs: warn: disk on fire\n");
	free(out);
}

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

/* mkdir_p: every missing folder made; an empty path and a file in the way refused. */
static void test_mkdir_p(void **state)
{
	char dir[] = "/tmp/test_util.XXXXXX", path[128];
	struct stat st;
	int fd;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/a/b/c", dir);
	assert_int_equal(mkdir_p(path, 0700), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(mkdir_p(path, 0700), 0);   /* there already */
	assert_int_equal(mkdir_p("", 0700), -EINVAL);
	snprintf(path, sizeof(path), "%s/file", dir);
	assert_true((fd = open(path, O_CREAT | O_WRONLY, 0600)) >= 0);
	close(fd);
	assert_int_equal(mkdir_p(path, 0700), -ENOTDIR);
	unlink(path);
	snprintf(path, sizeof(path), "rm -r %s", dir);
	assert_int_equal(system(path), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_path_clean),
		cmocka_unit_test(test_log_repeats),
		cmocka_unit_test(test_parse_size),
		cmocka_unit_test(test_parse_uint),
		cmocka_unit_test(test_fmt_size),
		cmocka_unit_test(test_seconds_and_pow2),
		cmocka_unit_test(test_mkdir_p),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
