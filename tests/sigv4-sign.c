/*
 * Signs requests with the S3 driver's own request builder, for
 * tests/integration/sigv4_botocore.sh to compare with botocore. Input lines,
 * tab-separated: METHOD KEY RANGE TOKEN UNIXTIME [PARAM VALUE]... ("-" for
 * an empty field). Output lines: WIRE-PATH-AND-QUERY TAB AUTHORIZATION.
 * Credentials: AKIDEXAMPLE / the secret in argv[1], bucket argv[2].
 */
#include "config.h"
#include "ufs/s3_i.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *field(char *s)
{
	return strcmp(s, "-") ? s : "";
}

int main(int argc, char **argv)
{
	struct ufs u = { 0 };
	char line[8192];

	if (argc != 3) {
		fprintf(stderr, "usage: sigv4-sign SECRET BUCKET < requests\n");
		return 2;
	}
	u.bucket = argv[2];
	u.host = "127.0.0.1:9000";
	if (asprintf(&u.url_base, "http://%s/%s", u.host, u.bucket) < 0 ||
	    asprintf(&u.path_base, "/%s", u.bucket) < 0)
		return 1;
	snprintf(u.creds.access_key, sizeof(u.creds.access_key), "AKIDEXAMPLE");
	snprintf(u.creds.secret_key, sizeof(u.creds.secret_key), "%s", argv[1]);
	snprintf(u.creds.region, sizeof(u.creds.region), "us-east-1");
	while (fgets(line, sizeof(line), stdin)) {
		char *f[64], *save = NULL, *url = NULL;
		struct sigv4_param q[28];
		struct curl_slist *hdrs, *h;
		unsigned n = 0, nq = 0;

		line[strcspn(line, "\n")] = '\0';
		for (char *t = strtok_r(line, "\t", &save); t && n < 64; t = strtok_r(NULL, "\t", &save))
			f[n++] = t;
		if (n < 5 || (n - 5) % 2) {
			fprintf(stderr, "sigv4-sign: bad line\n");
			return 2;
		}
		snprintf(u.creds.session_token, sizeof(u.creds.session_token), "%s", field(f[3]));
		u.fixed_time = (time_t)strtoll(f[4], NULL, 10);
		for (unsigned i = 5; i + 1 < n && nq < 28; i += 2)
			q[nq++] = (struct sigv4_param){ f[i], field(f[i + 1]) };
		if (s3_sign(&u, f[0], field(f[1]), q, nq, *field(f[2]) ? f[2] : NULL, &url, &hdrs)) {
			fprintf(stderr, "sigv4-sign: cannot sign\n");
			return 1;
		}
		for (h = hdrs; h; h = h->next)
			if (!strncmp(h->data, "Authorization: ", 15))
				printf("%s\t%s\n", url + strlen("http://") + strlen(u.host), h->data + 15);
		curl_slist_free_all(hdrs);
		free(url);
	}
	free(u.url_base);
	free(u.path_base);
	return 0;
}
