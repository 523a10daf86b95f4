/* ListObjectsV2 parsing (pages, continuation tokens, error bodies, odd and
 * hostile XML) and what a listing becomes: names, aliases, keys left out. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ufs/s3_i.h"

#define HEAD "<?xml version=\"1.0\" encoding=\"UTF-8\"?>" \
	     "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>b</Name>"
#define TAIL "</ListBucketResult>"

static char *obj(const char *key, unsigned size)
{
	char *s;

	assert_true(asprintf(&s, "<Contents><Key>%s</Key><LastModified>2024-05-06T07:08:09.000Z</LastModified>"
			     "<ETag>&quot;etag-%u&quot;</ETag><Size>%u</Size><StorageClass>STANDARD</StorageClass>"
			     "</Contents>", key, size, size) > 0);
	return s;
}

static char *pre(const char *p)
{
	char *s;

	assert_true(asprintf(&s, "<CommonPrefixes><Prefix>%s</Prefix></CommonPrefixes>", p) > 0);
	return s;
}

/* A page of the given parts (owned and freed here). */
static char *page(const char *flags, int n, ...)
{
	size_t len = strlen(HEAD) + strlen(flags) + strlen(TAIL) + 1;
	char *out, *parts[16];
	va_list ap;

	va_start(ap, n);
	for (int i = 0; i < n; i++) {
		parts[i] = va_arg(ap, char *);
		len += strlen(parts[i]);
	}
	va_end(ap);
	out = malloc(len);
	strcpy(out, HEAD);
	strcat(out, flags);
	for (int i = 0; i < n; i++) {
		strcat(out, parts[i]);
		free(parts[i]);
	}
	strcat(out, TAIL);
	return out;
}

static void parse_into(struct s3_listing *l, char *xml)
{
	struct s3_page p;

	assert_int_equal(s3_parse_page(xml, strlen(xml), &p), 0);
	assert_int_equal(s3_listing_add(l, &p), 0);
	s3_page_free(&p);
	free(xml);
}

static struct s3_entry *find(struct s3_listing *l, const char *name)
{
	for (size_t i = 0; i < l->n; i++)
		if (!strcmp(l->ents[i].name, name))
			return &l->ents[i];
	return NULL;
}

static void test_page(void **state)
{
	char *xml = page("<IsTruncated>false</IsTruncated>", 3, obj("p/a", 10), obj("p/b", 20), pre("p/d/"));
	struct s3_page p;

	assert_int_equal(s3_parse_page(xml, strlen(xml), &p), 0);
	assert_false(p.truncated);
	assert_null(p.token);
	assert_int_equal(p.nobjs, 2);
	assert_string_equal(p.objs[0].key, "p/a");
	assert_int_equal(p.objs[1].size, 20);
	assert_string_equal(p.objs[1].etag, "\"etag-20\"");
	assert_int_equal(p.objs[0].mtime_ns, 1714979289ULL * 1000000000ULL);
	assert_int_equal(p.nprefixes, 1);
	assert_string_equal(p.prefixes[0], "p/d/");
	s3_page_free(&p);
	free(xml);
}

/* Pages follow their tokens; a long token and a 1024-byte key parse. */
static void test_pagination(void **state)
{
	struct s3_listing l = { .prefix = "p/" };
	char key[1100], tok[3100], flags[3200];
	struct s3_page p;
	char *xml;

	memset(tok, 'T', 3000);
	tok[3000] = '\0';
	snprintf(flags, sizeof(flags), "<IsTruncated>true</IsTruncated><NextContinuationToken>%s"
		 "</NextContinuationToken>", tok);
	xml = page(flags, 1, obj("p/first", 1));
	assert_int_equal(s3_parse_page(xml, strlen(xml), &p), 0);
	assert_true(p.truncated);
	assert_string_equal(p.token, tok);
	assert_int_equal(s3_listing_add(&l, &p), 0);
	s3_page_free(&p);
	free(xml);
	memset(key, 'k', 1022);
	memcpy(key, "p/", 2);
	key[1022] = '\0';
	parse_into(&l, page("<IsTruncated>false</IsTruncated>", 1, obj(key, 2)));
	assert_int_equal(s3_listing_finish(&l), 0);
	/* Both pages; the long one is a single name of 1020 bytes: left out. */
	assert_int_equal(l.n, 1);
	assert_non_null(find(&l, "first"));
	assert_int_equal(l.skipped, 1);
	assert_non_null(strstr(l.skipped_why, "longer than 255 bytes"));
	s3_listing_free(&l);
}

/* encoding-type=url: keys and prefixes come %-encoded ('+' a space) only
 * when the reply says so; a server that ignored it sends them as they are. */
static void test_url_encoded(void **state)
{
	char *xml = page("<EncodingType>url</EncodingType><IsTruncated>false</IsTruncated>", 3,
			 obj("p/a+b%01c", 1), obj("p/100%25", 2), pre("p/d%C3%A9j%C3%A0/"));
	struct s3_page p;

	assert_int_equal(s3_parse_page(xml, strlen(xml), &p), 0);
	assert_string_equal(p.objs[0].key, "p/a b\001c");
	assert_string_equal(p.objs[1].key, "p/100%");
	assert_string_equal(p.prefixes[0], "p/d\303\251j\303\240/");
	s3_page_free(&p);
	free(xml);
	xml = page("<IsTruncated>false</IsTruncated>", 1, obj("p/a+b%41", 1));
	assert_int_equal(s3_parse_page(xml, strlen(xml), &p), 0);
	assert_string_equal(p.objs[0].key, "p/a+b%41");
	s3_page_free(&p);
	free(xml);
	/* A NUL is no key's byte. */
	xml = page("<EncodingType>url</EncodingType>", 1, obj("p/a%00b", 1));
	assert_int_equal(s3_parse_page(xml, strlen(xml), &p), -EIO);
	free(xml);
}

static void test_odd_keys(void **state)
{
	struct s3_listing l = { .prefix = "p/" };

	parse_into(&l, page("<IsTruncated>false</IsTruncated>", 6, obj("p/a&amp;b &lt;c&gt;", 1),
			    obj("p/\xc3\xbcnicode", 2), obj("p/", 0), obj("p/with space", 3),
			    pre("p/dir with &quot;q&quot;/"), obj("p/deep/er", 4)));
	assert_int_equal(s3_listing_finish(&l), 0);
	assert_true(l.marker);                     /* the "p/" object itself */
	assert_non_null(find(&l, "a&b <c>"));
	assert_non_null(find(&l, "\xc3\xbcnicode"));
	assert_non_null(find(&l, "with space"));
	assert_true(find(&l, "dir with \"q\"")->dir);
	assert_null(find(&l, "deep"));             /* a server that ignored the delimiter */
	assert_int_equal(l.n, 4);
	s3_listing_free(&l);
}

/* Names a file system cannot show as they are get aliases. */
static void test_aliases(void **state)
{
	struct s3_listing l = { .prefix = "p/" };
	struct s3_entry *e;

	parse_into(&l, page("<IsTruncated>false</IsTruncated>", 6, obj("p/a", 1), pre("p/a/"), obj("p/.", 2),
			    obj("p/..", 3), pre("p/./"), pre("p/x/")));
	assert_int_equal(s3_listing_finish(&l), 0);
	assert_true(find(&l, "a")->dir);
	e = find(&l, "a@object");
	assert_non_null(e);
	assert_false(e->dir);
	assert_string_equal(e->srcname, "a");
	assert_string_equal(e->obj.key, "p/a");
	assert_string_equal(find(&l, ".@object")->srcname, ".");
	assert_string_equal(find(&l, "..@object")->srcname, "..");
	e = find(&l, ".@prefix");
	assert_true(e->dir);
	assert_string_equal(e->srcname, ".");
	assert_int_equal(l.n, 6);
	assert_int_equal(l.skipped, 0);
	/* Sorted by the names shown. */
	for (size_t i = 1; i < l.n; i++)
		assert_true(strcmp(l.ents[i - 1].name, l.ents[i].name) < 0);
	s3_listing_free(&l);
}

/* An alias that lands on a real key loses; keys outside the prefix and
 * empty name parts are left out and said why. */
static void test_left_out(void **state)
{
	struct s3_listing l = { .prefix = "p/" };

	parse_into(&l, page("<IsTruncated>false</IsTruncated>", 5, obj("p/a", 1), pre("p/a/"),
			    obj("p/a@object", 5), obj("q/escaped", 1), pre("p//")));
	assert_int_equal(s3_listing_finish(&l), 0);
	assert_true(find(&l, "a")->dir);
	assert_null(find(&l, "a@object")->srcname);      /* the real key */
	assert_int_equal(find(&l, "a@object")->obj.size, 5);
	assert_int_equal(l.n, 2);
	assert_int_equal(l.skipped, 3);
	assert_non_null(strstr(l.skipped_why, "q/escaped: the server listed it outside the prefix"));
	s3_listing_free(&l);
}

static void test_bad_xml(void **state)
{
	static const char *const bad[] = {
		HEAD "<IsTruncated>false</IsTruncated><Contents><Key>p/a</Key><Size>1",   /* cut off */
		"not xml at all",
		HEAD "<Contents><Size>1</Size></Contents>" TAIL,                          /* no key */
		HEAD "<Contents><Key>p/a</Key><ETag>" "\"0123456789012345678901234567890123456789"
		"0123456789012345678901234567890123456789012345678901234567890123456789"
		"0123456789012345678901234567890123456789\"</ETag></Contents>" TAIL,   /* ETag too long */
	};
	struct s3_page p;

	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(s3_parse_page(bad[i], strlen(bad[i]), &p), -EIO);
	/* Nothing at all is an empty page, not an error. */
	assert_int_equal(s3_parse_page(HEAD TAIL, strlen(HEAD TAIL), &p), 0);
	assert_int_equal(p.nobjs + p.nprefixes, 0);
	s3_page_free(&p);
}

static void test_error_body(void **state)
{
	const char *xml = "<?xml version=\"1.0\"?><Error><Code>PermanentRedirect</Code><Message>Use the "
			  "right endpoint</Message><Region>eu-west-1</Region><RequestId>x</RequestId></Error>";
	struct http_resp r = { .status = 301, .body = (char *)xml, .len = strlen(xml) };
	struct s3_page p;
	char text[256];

	assert_int_equal(s3_parse_page(xml, strlen(xml), &p), 0);
	assert_string_equal(p.code, "PermanentRedirect");
	assert_string_equal(p.message, "Use the right endpoint");
	assert_string_equal(p.region, "eu-west-1");
	s3_page_free(&p);
	s3_error_text(&r, text, sizeof(text));
	assert_string_equal(text, "HTTP 301 PermanentRedirect: Use the right endpoint");
	r.len = 0;
	s3_error_text(&r, text, sizeof(text));
	assert_string_equal(text, "HTTP 301");
}

/* One element's text (s3_xml_text): its own, not that of an element too deep to follow inside it. */
static void test_xml_text(void **state)
{
	char deep[1024] = "", xml[2048], out[64];

	(void)state;
	for (int i = 0; i < 40; i++)
		strcat(deep, "<LongElementName>");
	snprintf(xml, sizeof(xml), "<CompleteMultipartUploadResult><ETag>\"e\"</ETag></CompleteMultipartUploadResult>");
	assert_int_equal(s3_xml_text(xml, strlen(xml), "CompleteMultipartUploadResult/ETag", out, sizeof(out)), 0);
	assert_string_equal(out, "\"e\"");
	snprintf(xml, sizeof(xml), "<Error><Code>Slow%sX", deep);
	for (int i = 0; i < 40; i++)
		strcat(xml, "</LongElementName>");
	strcat(xml, "</Code></Error>");
	assert_int_equal(s3_xml_text(xml, strlen(xml), "Error/Code", out, sizeof(out)), 0);
	assert_string_equal(out, "Slow");   /* and not the X inside the deep element */
	assert_int_not_equal(s3_xml_text(xml, strlen(xml), "Error/Message", out, sizeof(out)), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_page),
		cmocka_unit_test(test_pagination),
		cmocka_unit_test(test_url_encoded),
		cmocka_unit_test(test_odd_keys),
		cmocka_unit_test(test_aliases),
		cmocka_unit_test(test_left_out),
		cmocka_unit_test(test_bad_xml),
		cmocka_unit_test(test_error_body),
		cmocka_unit_test(test_xml_text),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
