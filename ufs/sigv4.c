/* AWS Signature Version 4, as documented in the IAM user guide
 * ("Create a signed AWS API request") and checked against its test suite. */
#include "config.h"
#include "ufs/sigv4.h"
#include "core/util.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

static void hex(const unsigned char *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = '\0';
}

void sigv4_sha256_hex(const void *data, size_t len, char *out)
{
	unsigned char md[SHA256_DIGEST_LENGTH];

	SHA256(data, len, md);
	hex(md, sizeof(md), out);
}

static void hmac(const void *key, size_t klen, const char *msg, unsigned char out[32])
{
	unsigned int olen = 32;

	HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, strlen(msg), out, &olen);
}

int sigv4_uri_encode(char *dst, size_t cap, const char *src, int keep_slash)
{
	static const char digits[] = "0123456789ABCDEF";
	size_t o = 0;

	for (const unsigned char *p = (const unsigned char *)src; *p; p++) {
		bool plain = isalnum(*p) || *p == '-' || *p == '_' || *p == '.' || *p == '~' ||
			     (keep_slash && *p == '/');
		if (o + (plain ? 1 : 3) >= cap)
			return -ENAMETOOLONG;
		if (plain) {
			dst[o++] = (char)*p;
		} else {
			dst[o++] = '%';
			dst[o++] = digits[*p >> 4];
			dst[o++] = digits[*p & 15];
		}
	}
	if (o >= cap)
		return -ENAMETOOLONG;
	dst[o] = '\0';
	return (int)o;
}

struct enc_param {
	char *name, *value;
};

static int cmp_param(const void *a, const void *b)
{
	const struct enc_param *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	return c ? c : strcmp(x->value, y->value);
}

int sigv4_query(char *dst, size_t cap, const struct sigv4_param *params, unsigned n)
{
	struct enc_param *e = calloc(n ? n : 1, sizeof(*e));
	size_t o = 0;
	int rc = 0;

	if (!e)
		return -ENOMEM;
	for (unsigned i = 0; i < n && !rc; i++) {
		const char *v = params[i].value ? params[i].value : "";
		size_t nl = strlen(params[i].name) * 3 + 1, vl = strlen(v) * 3 + 1;

		e[i].name = malloc(nl);
		e[i].value = malloc(vl);
		if (!e[i].name || !e[i].value)
			rc = -ENOMEM;
		else if (sigv4_uri_encode(e[i].name, nl, params[i].name, 0) < 0 ||
			 sigv4_uri_encode(e[i].value, vl, v, 0) < 0)
			rc = -ENAMETOOLONG;
	}
	if (!rc)
		qsort(e, n, sizeof(*e), cmp_param);
	if (cap)
		dst[0] = '\0';
	for (unsigned i = 0; i < n && !rc; i++) {
		int w = snprintf(dst + o, cap - o, "%s%s=%s", i ? "&" : "", e[i].name, e[i].value);
		if (w < 0 || (size_t)w >= cap - o)
			rc = -ENAMETOOLONG;
		else
			o += (size_t)w;
	}
	for (unsigned i = 0; i < n; i++) {
		free(e[i].name);
		free(e[i].value);
	}
	free(e);
	return rc ? rc : (int)o;
}

void sigv4_amz_date(time_t t, char *buf)
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, 17, "%Y%m%dT%H%M%SZ", &tm);
}

struct canon_header {
	char name[64];
	const char *value;
};

static int cmp_header(const void *a, const void *b)
{
	return strcmp(((const struct canon_header *)a)->name, ((const struct canon_header *)b)->name);
}

/* Appends printf output to a growing string; returns -ENOMEM on failure. */
static int append(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int append(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
{
	va_list ap;
	int w;

	for (;;) {
		va_start(ap, fmt);
		w = vsnprintf(*buf + *len, *cap - *len, fmt, ap);
		va_end(ap);
		if (w < 0)
			return -EINVAL;
		if ((size_t)w < *cap - *len)
			break;
		size_t ncap = (*cap + (size_t)w) * 2;
		char *n = realloc(*buf, ncap);
		if (!n)
			return -ENOMEM;
		*buf = n;
		*cap = ncap;
	}
	*len += (size_t)w;
	return 0;
}

/* A header value as canonicalised: ends trimmed, inner runs of spaces one. */
static int append_trimmed(char **buf, size_t *len, size_t *cap, const char *v)
{
	bool space = false;
	int rc = 0;

	while (*v == ' ' || *v == '\t')
		v++;
	for (; *v && !rc; v++) {
		if (*v == ' ' || *v == '\t') {
			space = true;
			continue;
		}
		if (space)
			rc = append(buf, len, cap, " ");
		space = false;
		if (!rc)
			rc = append(buf, len, cap, "%c", *v);
	}
	return rc;
}

int sigv4_sign(const struct sigv4_key *k, const char *method, const char *path, const char *query,
	       const struct sigv4_header *h, unsigned nh, const char *payload_hash,
	       const char *amz_date, char *auth, size_t authlen)
{
	struct canon_header *ch = calloc(nh ? nh : 1, sizeof(*ch));
	char *creq = NULL, *signed_names = NULL, *sts = NULL;
	size_t clen = 0, ccap = 0, slen = 0, scap = 0, tlen = 0, tcap = 0;
	char scope[160], hash[65], date[9], secret[256];
	unsigned char kd[32], sig[32];
	int rc = 0, w;

	if (!ch)
		return -ENOMEM;
	if (strlen(amz_date) != 16 || strlen(k->secret_key) + 5 > sizeof(secret)) {
		rc = -EINVAL;
		goto out;
	}
	for (unsigned i = 0; i < nh; i++) {
		size_t n = strlen(h[i].name);
		if (n >= sizeof(ch[i].name)) {
			rc = -EINVAL;
			goto out;
		}
		for (size_t j = 0; j <= n; j++)
			ch[i].name[j] = (char)tolower((unsigned char)h[i].name[j]);
		ch[i].value = h[i].value;
	}
	qsort(ch, nh, sizeof(*ch), cmp_header);

	rc = append(&creq, &clen, &ccap, "%s\n%s\n%s\n", method, *path ? path : "/", query);
	for (unsigned i = 0; i < nh && !rc; i++) {
		rc = append(&creq, &clen, &ccap, "%s:", ch[i].name);
		if (!rc)
			rc = append_trimmed(&creq, &clen, &ccap, ch[i].value);
		if (!rc)
			rc = append(&creq, &clen, &ccap, "\n");
		if (!rc)
			rc = append(&signed_names, &slen, &scap, "%s%s", i ? ";" : "", ch[i].name);
	}
	if (!rc && !nh)
		rc = append(&signed_names, &slen, &scap, "%s", "");
	if (!rc)
		rc = append(&creq, &clen, &ccap, "\n%s\n%s", signed_names, payload_hash);
	if (rc)
		goto out;

	memcpy(date, amz_date, 8);
	date[8] = '\0';
	snprintf(scope, sizeof(scope), "%s/%s/%s/aws4_request", date, k->region, k->service);
	sigv4_sha256_hex(creq, clen, hash);
	rc = append(&sts, &tlen, &tcap, "AWS4-HMAC-SHA256\n%s\n%s\n%s", amz_date, scope, hash);
	if (rc)
		goto out;

	/* kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request") */
	snprintf(secret, sizeof(secret), "AWS4%s", k->secret_key);
	hmac(secret, strlen(secret), date, kd);
	hmac(kd, 32, k->region, kd);
	hmac(kd, 32, k->service, kd);
	hmac(kd, 32, "aws4_request", kd);
	hmac(kd, 32, sts, sig);
	hex(sig, 32, hash);
	w = snprintf(auth, authlen, "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s",
		     k->access_key, scope, signed_names, hash);
	if (w < 0 || (size_t)w >= authlen)
		rc = -ENAMETOOLONG;
out:
	explicit_bzero(secret, sizeof(secret));
	explicit_bzero(kd, sizeof(kd));
	free(ch);
	free(creq);
	free(signed_names);
	free(sts);
	return rc;
}
