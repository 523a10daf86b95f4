#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include "iostore/readahead.h"

#define MB (1ULL << 20)
static const struct ra_params P = { .page_size = MB, .min_window = 4, .max_window = 64 };

static void test_window_grows_and_caps(void **state)
{
	struct ra_state ra;
	uint64_t first, last_end = 0, size = 10000 * MB;
	uint32_t n, maxn = 0, w = 0;

	ra_init(&ra);
	n = ra_on_read(&ra, &P, 0, MB, size, &first, NULL);
	assert_int_equal(n, 0);                       /* one read is no stream */
	n = ra_on_read(&ra, &P, MB, MB, size, &first, NULL);
	assert_int_equal(n, 4);
	assert_int_equal(first, 2);
	last_end = first + n;
	for (uint64_t i = 2; i < 200; i++) {
		n = ra_on_read(&ra, &P, i * MB, MB, size, &first, &w);
		if (n) {
			assert_int_equal(first, last_end);    /* no page asked twice */
			last_end = first + n;
		}
		assert_true(last_end <= i + 1 + 64);     /* never past the window */
		if (n > maxn)
			maxn = n;
	}
	assert_int_equal(w, 64);
	assert_true(maxn >= 32);
	ra_fini(&ra);
}

static void test_random_resets_and_eof(void **state)
{
	struct ra_state ra;
	uint64_t first;
	uint32_t w = 99;

	ra_init(&ra);
	ra_on_read(&ra, &P, 0, MB, 100 * MB, &first, NULL);
	ra_on_read(&ra, &P, MB, MB, 100 * MB, &first, NULL);
	assert_int_equal(ra_on_read(&ra, &P, 77 * MB, 4096, 100 * MB, &first, &w), 0);
	assert_int_equal(w, 0);
	/* Near the end of the file the window is clipped at the last page. */
	assert_int_equal(ra_on_read(&ra, &P, 94 * MB, MB, 100 * MB, &first, NULL), 0);
	uint32_t n = ra_on_read(&ra, &P, 95 * MB, MB, 100 * MB, &first, NULL);
	assert_int_equal(first, 96);
	assert_int_equal(first + n, 100);
	assert_int_equal(ra_on_read(&ra, &P, 96 * MB, MB, 100 * MB, &first, NULL), 0);
	/* Reordered async reads within the window stay sequential. */
	ra_init(&ra);
	ra_on_read(&ra, &P, 0, MB, 100 * MB, &first, NULL);
	ra_on_read(&ra, &P, 2 * MB, MB, 100 * MB, &first, NULL);
	ra_on_read(&ra, &P, MB, MB, 100 * MB, &first, &w);
	assert_true(w >= 4);
	ra_fini(&ra);
}

/* Two readers of one handle (no_open), interleaved: each keeps its window. */
static void test_two_streams(void **state)
{
	struct ra_state ra;
	uint64_t first, size = 1000 * MB, a_end = 0, b_end = 0;
	uint32_t n, w;

	ra_init(&ra);
	for (uint64_t i = 0; i < 20; i++) {
		n = ra_on_read(&ra, &P, i * MB, MB, size, &first, &w);
		if (i >= 1)
			assert_true(w >= 4);
		if (n) {
			assert_true(first >= a_end);      /* never asks a page twice */
			a_end = first + n;
		}
		n = ra_on_read(&ra, &P, (500 + i) * MB, MB, size, &first, &w);
		if (i >= 1)
			assert_true(w >= 4);
		if (n) {
			assert_true(first >= 500 && first >= b_end);
			b_end = first + n;
		}
	}
	assert_true(a_end > 20 && a_end <= 20 + 64);
	assert_true(b_end > 520 && b_end <= 520 + 64);
	/* Random reads take the least recent stream, not the two live ones. */
	for (unsigned k = 0; k < 2; k++)
		ra_on_read(&ra, &P, (200 + 50 * k) * MB, 4096, size, &first, &w);
	ra_on_read(&ra, &P, 20 * MB, MB, size, &first, &w);
	assert_true(w >= 4);
	ra_fini(&ra);
}

static void test_budget(void **state)
{
	struct ra_budget b = { .limit = 3 * MB };

	assert_true(ra_budget_take(&b, MB));
	assert_true(ra_budget_take(&b, 2 * MB));
	assert_false(ra_budget_take(&b, MB));
	ra_budget_give(&b, MB);
	assert_true(ra_budget_take(&b, MB));
	assert_int_equal(b.used, 3 * MB);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_window_grows_and_caps),
		cmocka_unit_test(test_random_resets_and_eof),
		cmocka_unit_test(test_two_streams),
		cmocka_unit_test(test_budget),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
