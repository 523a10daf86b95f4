#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/options.h"
#include "core/log.h"

static void test_defaults_and_values(void **state)
{
	struct cachefs_config c;
	char err[256];

	config_defaults(&c);
	assert_int_equal(c.cache.page_size, 1 << 20);
	assert_int_equal(c.fuse.max_background, 128);
	assert_int_equal(c.fuse.intake, INTAKE_SHARDS);
	assert_int_equal(config_parse_opts(&c, "shards=3,page_size=256K,kernel_cache,attr_timeout=0.5,"
					   "log_level=debug,auto_cache=no,intake=threads", err, sizeof(err)), 0);
	assert_int_equal(c.run.shards, 3);
	assert_int_equal(c.cache.page_size, 256 << 10);
	assert_true(c.fuse.kernel_cache);
	assert_false(c.fuse.auto_cache);
	assert_true(c.fuse.attr_timeout == 0.5);
	assert_int_equal(c.run.log_level, LOG_LVL_DEBUG);
	assert_int_equal(c.fuse.intake, INTAKE_THREADS);
	assert_int_equal(config_finish(&c, 16ULL << 30, 8ULL << 30, 4, err, sizeof(err)), 0);
	assert_int_equal(c.cache.ram_cache, 2ULL << 30);          /* 1/8 of 16G */
	assert_int_equal(c.cache.readahead_budget, 512ULL << 20); /* 1/4 of ram_cache */
	assert_int_equal(c.fuse.congestion_threshold, 96);
}

static void test_passthrough(void **state)
{
	struct cachefs_config c;
	char err[256];

	config_defaults(&c);
	assert_int_equal(config_parse_opts(&c, "allow_other,_netdev,ro,fsname=x,nofail", err, sizeof(err)), 0);
	assert_string_equal(c.fuse.kernel_opts, "allow_other,fsname=x");
	/* ro is the daemon's (it answers EROFS and tells the kernel); rw undoes it. */
	assert_true(c.src.read_only);
	assert_int_equal(config_parse_opts(&c, "rw", err, sizeof(err)), 0);
	assert_false(c.src.read_only);
	assert_int_equal(config_parse_opts(&c, "rw=no", err, sizeof(err)), 0);
	assert_true(c.src.read_only);
}

static void test_errors_name_the_option(void **state)
{
	struct cachefs_config c;
	char err[256];

	config_defaults(&c);
	assert_int_equal(config_parse_opts(&c, "ro,bogus=1", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "unknown option 'bogus'"));
	assert_int_equal(config_parse_opts(&c, "shards=0", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "'shards'"));
	assert_int_equal(config_parse_opts(&c, "kernel_cache=maybe", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "'kernel_cache'"));
	assert_int_equal(config_parse_opts(&c, "allow_other=sometimes", err, sizeof(err)), -EINVAL);
	assert_int_equal(config_parse_opts(&c, "log_level=loud", err, sizeof(err)), -EINVAL);
	assert_int_equal(config_parse_opts(&c, "intake=elves", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "shards or threads"));
	c.cache.page_size = 3000;
	assert_int_equal(config_finish(&c, 1ULL << 30, 1ULL << 30, 4, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "power of two"));
	config_defaults(&c);
	c.cache.ram_cache = 2ULL << 30;
	assert_int_equal(config_finish(&c, 4ULL << 30, 1ULL << 30, 4, err, sizeof(err)), -ENOMEM);
	assert_non_null(strstr(err, "lower -o ram_cache"));
	config_defaults(&c);
	assert_int_equal(config_parse_opts(&c, "ram_cache=8M,shards=24", err, sizeof(err)), 0);
	assert_int_equal(config_finish(&c, 4ULL << 30, 4ULL << 30, 4, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "ram_cache=8M leaves each of the 24 shards less than one 1M page; "
				 "raise ram_cache to at least 24M or lower shards");
}

/* A shard per CPU by default, but never one with under 4 pages of RAM. */
static void test_default_shards(void **state)
{
	struct cachefs_config c;
	char err[256];

	config_defaults(&c);
	assert_int_equal(config_finish(&c, 16ULL << 30, 8ULL << 30, 24, err, sizeof(err)), 0);
	assert_int_equal(c.run.shards, 24);
	config_defaults(&c);
	c.cache.ram_cache = 8 << 20;
	assert_int_equal(config_finish(&c, 16ULL << 30, 8ULL << 30, 24, err, sizeof(err)), 0);
	assert_int_equal(c.run.shards, 2);
	config_defaults(&c);
	c.cache.ram_cache = 1 << 20;
	assert_int_equal(config_finish(&c, 16ULL << 30, 8ULL << 30, 24, err, sizeof(err)), 0);
	assert_int_equal(c.run.shards, 1);
}

/* config_set: the config file's way in, one name and value at a time. */
static void test_config_set(void **state)
{
	struct cachefs_config c;
	char err[256];

	config_defaults(&c);
	assert_int_equal(config_set(&c, "ssd_cache", "/a:1G,/b:2G", false, err, sizeof(err)), 0);
	assert_int_equal(c.cache.nssd, 2);
	assert_int_equal(c.cache.ssd[1].size, 2ULL << 30);
	assert_int_equal(config_set(&c, "allow_other", "yes", false, err, sizeof(err)), 0);
	assert_int_equal(config_set(&c, "default_permissions", "no", false, err, sizeof(err)), 0);
	assert_int_equal(config_set(&c, "noatime", NULL, false, err, sizeof(err)), 0);
	assert_string_equal(c.fuse.kernel_opts, "allow_other,noatime");
	assert_int_equal(config_set(&c, "allow_other", "maybe", false, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "allow_other"));
	/* Per-mount options pass with mount_only; daemon-wide ones do not. */
	assert_int_equal(config_set(&c, "region", "eu-west-1", true, err, sizeof(err)), 0);
	assert_string_equal(c.src.region, "eu-west-1");
	assert_int_equal(config_set(&c, "shards", "2", true, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "applies to the whole daemon"));
	assert_int_equal(config_set(&c, "nope", "1", false, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "unknown option 'nope'"));
}

/* --help names every option with its argument (a type without one printed "(null)"). */
static void test_help(void **state)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	assert_non_null(f);
	config_print_help(f);
	fclose(f);
	assert_null(strstr(text, "(null)"));
	assert_non_null(strstr(text, "-o umask=OCTAL"));
	assert_non_null(strstr(text, "-o uid=N"));
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults_and_values),
		cmocka_unit_test(test_passthrough),
		cmocka_unit_test(test_errors_name_the_option),
		cmocka_unit_test(test_default_shards),
		cmocka_unit_test(test_config_set),
		cmocka_unit_test(test_help),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
