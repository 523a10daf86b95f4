/*
 * HTTP(S) sources, read-only: `cachefs https://host/dir/ MNT -o manifest=F`.
 * A web server cannot list a directory in a form worth parsing, so the
 * files come from a manifest the user names: one line per file,
 *
 *     PATH [TAB SIZE [TAB ETAG]]
 *
 * relative to the source URL ("find . -type f -printf '%P\t%s\n'" writes
 * one). Lines with a size answer stat and readdir without a request; lines
 * without one are sized by HEAD (cached for dir_cache_ttl). Reads are the
 * ranged GETs of the S3 driver (s3_io.c), unsigned. A URL that names one
 * file mounts a directory holding just that file, with no manifest.
 */
#include "config.h"
#include "ufs/s3_i.h"
#include "core/log.h"
#include "core/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>

/* Splits the URL into url_base (no trailing '/'), host and endpoint; *file gets a last segment not ending in '/'. */
static int parse_url(struct ufs *u, const char *source, bool want_dir, char **file, char *err, size_t errlen)
{
	size_t schemelen = strstr(source, "://") - source + 3;
	const char *auth = source + schemelen, *path = auth + strcspn(auth, "/");
	size_t end = strlen(source);

	*file = NULL;
	if (path == auth || strchr(source, '?') || strchr(source, '#')) {
		snprintf(err, errlen, "invalid HTTP source '%s': expected http[s]://HOST[:PORT]/PATH/ without a "
			 "query or fragment", source);
		return -EINVAL;
	}
	if (!want_dir && *path && source[end - 1] != '/') {
		const char *slash = strrchr(path, '/');
		*file = strdup(slash + 1);
		if (!*file)
			return -ENOMEM;
		end = (size_t)(slash - source);
	}
	while (end > (size_t)(path - source) && source[end - 1] == '/')
		end--;
	u->url_base = strndup(source, end);
	u->host = strndup(auth, (size_t)(path - auth));
	u->endpoint = strndup(source, (size_t)(path - source));
	u->path_base = strdup("");
	u->prefix = strdup("");
	if (asprintf(&u->root, "%.*s/", (int)end, source) < 0)
		u->root = NULL;
	/* creds.c and the probes name a "bucket"; for http it is the host. */
	u->bucket = strdup(u->host ? u->host : "");
	return u->url_base && u->host && u->endpoint && u->path_base && u->prefix && u->root && u->bucket ?
	       0 : -ENOMEM;
}

/* HEAD of one file, for the single-file mount and the mount check. */
static int head(struct ufs *u, const char *key, struct ufs_stat *st, char *etag, char *err, size_t errlen)
{
	struct s3_resp r = { 0 };
	char why[512];
	int rc = s3_perform(u, "HEAD", key, NULL, 0, &r, why, sizeof(why));

	if (rc) {
		snprintf(err, errlen, "cannot reach %s%s: %s", u->root, key, why);
	} else if (r.status != 200) {
		snprintf(err, errlen, "%s%s: HTTP %ld", u->root, key, r.status);
		rc = s3_errno(r.status);
	} else if (!r.has_length) {
		snprintf(err, errlen, "%s%s: the server gave no Content-Length, so the size is unknown", u->root, key);
		rc = -EIO;
	} else {
		s3_file_stat(u, st, r.length, (uint64_t)curl_getdate(r.last_modified, NULL) * 1000000000ULL,
			     r.etag[0] ? r.etag : r.last_modified);
		snprintf(etag, S3_ETAG_MAX, "%s", r.etag);
	}
	free(r.body);
	return rc;
}

/* The manifest's bytes: a local file, or a path relative to the source URL. */
static int fetch_manifest(struct ufs *u, const char *name, char **body, size_t *len, char *version,
			  uint64_t *mtime_ns, char *err, size_t errlen)
{
	if (name[0] == '/') {
		FILE *f = fopen(name, "r");
		struct stat st;
		char buf[65536];
		size_t n, cap = 0;

		if (!f || fstat(fileno(f), &st) < 0) {
			snprintf(err, errlen, "manifest %s: %s", name, strerror(errno));
			if (f)
				fclose(f);
			return -EINVAL;
		}
		*body = NULL;
		*len = 0;
		while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
			if (*len + n + 1 > cap) {
				char *b = realloc(*body, cap = (*len + n + 1) * 2);
				if (!b) {
					fclose(f);
					return -ENOMEM;
				}
				*body = b;
			}
			memcpy(*body + *len, buf, n);
			*len += n;
		}
		if (ferror(f)) {
			snprintf(err, errlen, "manifest %s: %s", name, strerror(errno));
			fclose(f);
			free(*body);
			return -EIO;
		}
		fclose(f);
		snprintf(version, S3_ETAG_MAX, "%lld.%09ld:%lld", (long long)st.st_mtim.tv_sec,
			 st.st_mtim.tv_nsec, (long long)st.st_size);
		*mtime_ns = (uint64_t)st.st_mtim.tv_sec * 1000000000ULL + (uint64_t)st.st_mtim.tv_nsec;
		return 0;
	}

	struct s3_resp r = { 0 };
	char why[512];
	int rc = s3_perform(u, "GET", name, NULL, 0, &r, why, sizeof(why));

	if (!rc && r.status != 200) {
		snprintf(why, sizeof(why), "HTTP %ld", r.status);
		rc = -EINVAL;
	}
	if (rc) {
		snprintf(err, errlen, "manifest %s%s: %s", u->root, name, why);
		free(r.body);
		return rc == -EIO ? -EIO : -EINVAL;
	}
	*body = r.body;
	*len = r.len;
	snprintf(version, S3_ETAG_MAX, "%s", r.etag[0] ? r.etag : r.last_modified);
	*mtime_ns = (uint64_t)MAX(curl_getdate(r.last_modified, NULL), 0) * 1000000000ULL;
	return 0;
}

/* Parses the manifest into pinned listings. The manifest's version goes into every page key. */
static int load_manifest(struct ufs *u, const char *name, char *err, size_t errlen)
{
	char version[S3_ETAG_MAX], *body = NULL, *line, *next, dup[1100];
	uint64_t mtime_ns = 0, seed;
	size_t len = 0;
	unsigned lineno = 0, files = 0;
	int rc = fetch_manifest(u, name, &body, &len, version, &mtime_ns, err, errlen);

	if (rc)
		return rc;
	seed = XXH3_64bits(version, strlen(version));
	body = body ? body : strdup("");
	if (!body)
		return -ENOMEM;
	body[len] = '\0';
	if (memchr(body, '\0', len)) {
		snprintf(err, errlen, "manifest %s is not text (it holds NUL bytes)", name);
		free(body);
		return -EINVAL;
	}
	for (line = body; !rc && line; line = next) {
		char *f[3] = { line, NULL, NULL }, *path;
		unsigned nf = 1;
		struct ufs_stat st;
		uint64_t size = 0;
		bool dir;

		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		lineno++;
		line[strcspn(line, "\r")] = '\0';
		if (!*line || *line == '#')
			continue;
		for (char *t = strchr(line, '\t'); t && nf < 3; t = strchr(t + 1, '\t')) {
			*t = '\0';
			f[nf++] = t + 1;
		}
		path = f[0][0] == '.' && f[0][1] == '/' ? f[0] + 2 : f[0];   /* find's "./x" */
		if (path_clean(path, &dir) || !*path) {
			snprintf(err, errlen, "manifest %s line %u: '%s' is not a relative path without '.' or '..' parts",
				 name, lineno, f[0]);
			rc = -EINVAL;
			break;
		}
		if (f[1] && (dir || parse_uint(f[1], 0, UINT64_MAX, &size))) {
			snprintf(err, errlen, "manifest %s line %u: size '%s' of %s is not a number of bytes%s", name,
				 lineno, f[1], path, dir ? " (a directory has no size)" : "");
			rc = -EINVAL;
			break;
		}
		if (f[2] && strlen(f[2]) >= S3_ETAG_MAX) {
			snprintf(err, errlen, "manifest %s line %u: ETag of %s is longer than %d bytes", name, lineno,
				 path, S3_ETAG_MAX - 1);
			rc = -EINVAL;
			break;
		}
		if (dir) {
			s3_dir_stat(u, &st);
		} else {
			s3_file_stat(u, &st, size, mtime_ns, f[2] ? f[2] : "");
			if (!f[2])   /* no ETag: a new manifest may mean new bytes */
				st.version = mix64(st.version ^ seed);
			files++;
		}
		rc = s3_meta_pin(u, path, &st, f[2] ? f[2] : "", !dir && !f[1]);
	}
	free(body);
	if (!rc)
		rc = s3_meta_pin_done(u, dup, sizeof(dup));
	if (rc == -EEXIST)
		snprintf(err, errlen, "manifest %s names %s twice (or as both a file and a directory)", name, dup);
	if (!rc)
		log_info("http %s: manifest %s lists %u files", u->root, name, files);
	return rc;
}

static int http_init(struct ufs **out, const char *source, const struct cachefs_config *cfg,
		     char *err, size_t errlen)
{
	struct ufs *u = calloc(1, sizeof(*u));
	char *file = NULL, etag[S3_ETAG_MAX];
	struct ufs_stat st;
	int rc;

	if (!u)
		return -ENOMEM;
	u->drv = "http";
	u->http = true;
	rc = s3_common_init(u, cfg, err, errlen);
	if (!rc)
		rc = parse_url(u, source, cfg->manifest[0], &file, err, errlen);
	if (!rc && cfg->manifest[0]) {
		rc = load_manifest(u, cfg->manifest, err, errlen);
	} else if (!rc && file) {
		rc = head(u, file, &st, etag, err, errlen);
		if (!rc)
			rc = s3_meta_pin(u, file, &st, etag, false);
		if (!rc)
			rc = s3_meta_pin_done(u, etag, sizeof(etag));
	} else if (!rc) {
		snprintf(err, errlen, "%s is a directory URL, and HTTP servers do not list directories: name its "
			 "files with -o manifest=FILE (lines of PATH<TAB>SIZE; `find . -type f -printf "
			 "'%%P\\t%%s\\n'` writes one)", source);
		rc = -EINVAL;
	}
	free(file);
	if (rc) {
		if (rc == -ENOMEM && !*err)
			snprintf(err, errlen, "out of memory");
		s3_common_fini(u);
		return rc;
	}
	log_info("http source %s at %s", u->root, u->endpoint);
	u->mounted = true;
	*out = u;
	return 0;
}

const struct ufs_ops ufs_http_ops = {
	.name = "http",
	.init = http_init,
	.fini = s3_common_fini,
	.stat = s3_stat,
	.list = s3_list,
	.open = s3_open,
	.release = s3_release,
	.read = s3_read,
	.statfs = s3_statfs,
	.shard_stop = s3_shard_stop,
	.counters = s3_counters,
};
