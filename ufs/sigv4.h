/*
 * AWS Signature Version 4 (HMAC-SHA256, OpenSSL). Stateless: callers build
 * the canonical pieces with the helpers below and get an Authorization value.
 */
#ifndef CACHEFS_SIGV4_H
#define CACHEFS_SIGV4_H

#include <stddef.h>
#include <time.h>

#define SIGV4_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define SIGV4_UNSIGNED "UNSIGNED-PAYLOAD"

struct sigv4_key {
	const char *access_key;
	const char *secret_key;
	const char *region;
	const char *service;      /* "s3" */
};

/* A header to sign; names in any case, values are trimmed when signed. */
struct sigv4_header {
	const char *name;
	const char *value;
};

/* A query parameter, not yet encoded; value NULL means "name" alone. */
struct sigv4_param {
	const char *name;
	const char *value;
};

/*
 * URI-encodes src into dst as SigV4 wants (RFC 3986 unreserved characters
 * kept, everything else %XX); '/' is kept when keep_slash. Returns the length
 * written, or -ENAMETOOLONG when dst (cap bytes with the NUL) is too small.
 */
int sigv4_uri_encode(char *dst, size_t cap, const char *src, int keep_slash);

/*
 * The canonical query string of params: each name and value encoded, sorted
 * by name then value, joined with '&'. The same string serves as the URL's
 * query. Returns its length or -ENAMETOOLONG.
 */
int sigv4_query(char *dst, size_t cap, const struct sigv4_param *params, unsigned n);

/* "20150830T123600Z" for t, in UTC; buf holds at least 17 bytes. */
void sigv4_amz_date(time_t t, char *buf);

/* Lower-case hex SHA-256 of data (65 bytes with the NUL). */
void sigv4_sha256_hex(const void *data, size_t len, char *hex);

/*
 * Signs one request. path is already URI-encoded (what goes on the request
 * line); query is canonical (sigv4_query) or "". Every header in h is
 * signed, and h must hold "host" and "x-amz-date" (amz_date's value).
 * Writes the Authorization header value into auth. Returns 0, or -EINVAL /
 * -ENAMETOOLONG / -ENOMEM.
 */
int sigv4_sign(const struct sigv4_key *k, const char *method, const char *path, const char *query,
	       const struct sigv4_header *h, unsigned nh, const char *payload_hash,
	       const char *amz_date, char *auth, size_t authlen);

#endif
