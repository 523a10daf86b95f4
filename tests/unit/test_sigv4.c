/* SigV4 against vectors from the AWS Signature Version 4 test suite and the
 * S3 documentation's GET example; botocore is compared in sigv4_botocore.sh. */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <string.h>

#include "config.h"
#include "ufs/sigv4.h"

static const struct sigv4_key suite = {
	"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "us-east-1", "service",
};
#define SUITE_DATE "20150830T123600Z"
#define SUITE_CRED "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "

static void check(const struct sigv4_key *k, const char *method, const char *path, const char *query,
		  const struct sigv4_header *h, unsigned nh, const char *payload, const char *date,
		  const char *want)
{
	char auth[512];

	assert_int_equal(sigv4_sign(k, method, path, query, h, nh, payload, date, auth, sizeof(auth)), 0);
	assert_string_equal(auth, want);
}

static void test_vanilla(void **state)
{
	const struct sigv4_header h[] = { { "Host", "example.amazonaws.com" }, { "X-Amz-Date", SUITE_DATE } };

	check(&suite, "GET", "/", "", h, 2, SIGV4_EMPTY_SHA256, SUITE_DATE, SUITE_CRED
	      "SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
	check(&suite, "POST", "/", "", h, 2, SIGV4_EMPTY_SHA256, SUITE_DATE, SUITE_CRED
	      "SignedHeaders=host;x-amz-date, Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b");
}

static void test_query_order(void **state)
{
	const struct sigv4_header h[] = { { "Host", "example.amazonaws.com" }, { "X-Amz-Date", SUITE_DATE } };
	const struct sigv4_param p[] = { { "Param2", "value2" }, { "Param1", "value1" } };
	char q[128];

	assert_int_equal(sigv4_query(q, sizeof(q), p, 2), 27);
	assert_string_equal(q, "Param1=value1&Param2=value2");
	check(&suite, "GET", "/", q, h, 2, SIGV4_EMPTY_SHA256, SUITE_DATE, SUITE_CRED
	      "SignedHeaders=host;x-amz-date, Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500");
}

static void test_header_trim_and_case(void **state)
{
	const struct sigv4_header trim[] = {
		{ "Host", "example.amazonaws.com" }, { "My-Header1", " value1" },
		{ "My-Header2", "\"a   b   c\"" }, { "X-Amz-Date", SUITE_DATE },
	};
	const struct sigv4_header cased[] = {
		{ "Host", "example.amazonaws.com" }, { "My-Header1", "VALUE1" }, { "X-Amz-Date", SUITE_DATE },
	};

	check(&suite, "GET", "/", "", trim, 4, SIGV4_EMPTY_SHA256, SUITE_DATE, SUITE_CRED
	      "SignedHeaders=host;my-header1;my-header2;x-amz-date, Signature=acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736");
	check(&suite, "POST", "/", "", cased, 3, SIGV4_EMPTY_SHA256, SUITE_DATE, SUITE_CRED
	      "SignedHeaders=host;my-header1;x-amz-date, Signature=cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d");
}

static void test_unreserved_path(void **state)
{
	const struct sigv4_header h[] = { { "Host", "example.amazonaws.com" }, { "X-Amz-Date", SUITE_DATE } };
	const char *raw = "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
	char path[256];

	assert_true(sigv4_uri_encode(path, sizeof(path), raw, 1) > 0);
	assert_string_equal(path, raw);
	check(&suite, "GET", path, "", h, 2, SIGV4_EMPTY_SHA256, SUITE_DATE, SUITE_CRED
	      "SignedHeaders=host;x-amz-date, Signature=07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f");
}

/* "Example: GET Object" in the S3 API reference (Signature V4, header auth). */
static void test_s3_get_object(void **state)
{
	const struct sigv4_key s3 = {
		"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "us-east-1", "s3",
	};
	const struct sigv4_header h[] = {
		{ "Host", "examplebucket.s3.amazonaws.com" }, { "Range", "bytes=0-9" },
		{ "x-amz-content-sha256", SIGV4_EMPTY_SHA256 }, { "x-amz-date", "20130524T000000Z" },
	};

	check(&s3, "GET", "/test.txt", "", h, 4, SIGV4_EMPTY_SHA256, "20130524T000000Z",
	      "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
	      "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
	      "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
}

static void test_encoding(void **state)
{
	char out[64];

	assert_int_equal(sigv4_uri_encode(out, sizeof(out), "a b/c+d%é", 1), 20);
	assert_string_equal(out, "a%20b/c%2Bd%25%C3%A9");
	assert_true(sigv4_uri_encode(out, sizeof(out), "a/b", 0) > 0);
	assert_string_equal(out, "a%2Fb");
	assert_int_equal(sigv4_uri_encode(out, 4, "abcd", 1), -ENAMETOOLONG);
	assert_int_equal(sigv4_uri_encode(out, 5, "abcd", 1), 4);
	sigv4_amz_date(1440938160, out);
	assert_string_equal(out, SUITE_DATE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vanilla),
		cmocka_unit_test(test_query_order),
		cmocka_unit_test(test_header_trim_and_case),
		cmocka_unit_test(test_unreserved_path),
		cmocka_unit_test(test_s3_get_object),
		cmocka_unit_test(test_encoding),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
