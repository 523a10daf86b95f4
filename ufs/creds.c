#include "config.h"
#include "ufs/creds.h"
#include "core/util.h"

#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void copy(char *dst, size_t cap, const char *src)
{
	snprintf(dst, cap, "%s", src ? src : "");
}

/* An environment variable, or NULL when unset or empty. */
static const char *env(const char *name)
{
	const char *v = getenv(name);

	return v && *v ? v : NULL;
}

void creds_wipe(struct s3_creds *c)
{
	explicit_bzero(c->secret_key, sizeof(c->secret_key));
	explicit_bzero(c->session_token, sizeof(c->session_token));
}

/*
 * s3fs's passwd_file: lines "ACCESS:SECRET" or "BUCKET:ACCESS:SECRET", '#'
 * comments. A line naming this bucket wins over a plain one.
 */
static int from_passwd_file(const char *path, const char *bucket, struct s3_creds *c,
			    char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	char line[1024];
	bool found = false;
	struct stat st;
	unsigned lineno = 0;

	if (!f) {
		snprintf(err, errlen, "passwd_file %s: %s", path, strerror(errno));
		return -errno;
	}
	if (fstat(fileno(f), &st) == 0 && (st.st_mode & 077)) {
		snprintf(err, errlen, "passwd_file %s is readable by others (mode %04o); run chmod 600 %s",
			 path, (unsigned)(st.st_mode & 07777), path);
		fclose(f);
		return -EACCES;
	}
	while (fgets(line, sizeof(line), f)) {
		char *fields[3], *p = line, *colon;
		unsigned n = 0;

		lineno++;
		line[strcspn(line, "\r\n")] = '\0';
		if (!line[0] || line[0] == '#')
			continue;
		while (n < 3) {
			fields[n++] = p;
			colon = strchr(p, ':');
			if (!colon)
				break;
			*colon = '\0';
			p = colon + 1;
		}
		if (n < 2 || !fields[0][0] || !fields[n - 1][0]) {
			snprintf(err, errlen, "passwd_file %s line %u: expected ACCESS:SECRET or BUCKET:ACCESS:SECRET",
				 path, lineno);
			fclose(f);
			explicit_bzero(line, sizeof(line));
			return -EINVAL;
		}
		if (n == 3 && strcmp(fields[0], bucket))
			continue;
		if (found && n == 2)
			continue;   /* a bucket line already matched */
		copy(c->access_key, sizeof(c->access_key), fields[n - 2]);
		copy(c->secret_key, sizeof(c->secret_key), fields[n - 1]);
		found = true;
	}
	explicit_bzero(line, sizeof(line));
	fclose(f);
	if (!found) {
		snprintf(err, errlen, "passwd_file %s has no line for bucket %s", path, bucket);
		return -ENOENT;
	}
	snprintf(c->from, sizeof(c->from), "passwd_file %s", path);
	return 0;
}

struct ini_ctx {
	const char *section;       /* the section that applies */
	struct s3_creds *c;
	bool keys, region;
};

static int on_ini(void *user, const char *section, const char *name, const char *value)
{
	struct ini_ctx *x = user;

	if (strcmp(section, x->section))
		return 1;
	if (!strcmp(name, "aws_access_key_id")) {
		copy(x->c->access_key, sizeof(x->c->access_key), value);
		x->keys = true;
	} else if (!strcmp(name, "aws_secret_access_key")) {
		copy(x->c->secret_key, sizeof(x->c->secret_key), value);
	} else if (!strcmp(name, "aws_session_token")) {
		copy(x->c->session_token, sizeof(x->c->session_token), value);
	} else if (!strcmp(name, "region")) {
		copy(x->c->region, sizeof(x->c->region), value);
		x->region = true;
	}
	return 1;
}

/* Reads one AWS file; a missing file is fine, a malformed one is not. */
static int read_aws_file(const char *path, struct ini_ctx *x, char *err, size_t errlen)
{
	int line = ini_parse(path, on_ini, x);

	if (line == -1)
		return 0;
	if (line) {
		snprintf(err, errlen, "%s line %d: not an INI line", path, line);
		return -EINVAL;
	}
	return 0;
}

int creds_resolve(const struct source_opts *o, const char *bucket, struct s3_creds *c,
		  char *err, size_t errlen)
{
	const char *home = env("HOME"), *profile = o->profile[0] ? o->profile : env("AWS_PROFILE");
	char path[PATH_MAX], section[96];
	struct ini_ctx x = { .c = c };
	struct s3_creds file;
	int rc;

	memset(c, 0, sizeof(*c));
	memset(&file, 0, sizeof(file));
	if (!profile)
		profile = "default";

	/* Region: option, environment, the profile in ~/.aws/config, us-east-1. */
	copy(c->region, sizeof(c->region), o->region[0] ? o->region :
	     env("AWS_REGION") ? env("AWS_REGION") : env("AWS_DEFAULT_REGION"));
	if (!c->region[0] && home) {
		x.c = &file;
		snprintf(path, sizeof(path), "%s/.aws/config", home);
		snprintf(section, sizeof(section), strcmp(profile, "default") ? "profile %s" : "%s", profile);
		x.section = section;
		rc = read_aws_file(path, &x, err, errlen);
		if (rc)
			return rc;
		copy(c->region, sizeof(c->region), file.region);
	}
	if (!c->region[0])
		copy(c->region, sizeof(c->region), "us-east-1");

	if (o->anonymous) {
		snprintf(c->from, sizeof(c->from), "anonymous");
		return 0;
	}
	if (o->access_key[0] || o->secret_key[0]) {
		if (!o->access_key[0] || !o->secret_key[0]) {
			snprintf(err, errlen, "options access_key and secret_key go together; one is missing");
			return -EINVAL;
		}
		copy(c->access_key, sizeof(c->access_key), o->access_key);
		copy(c->secret_key, sizeof(c->secret_key), o->secret_key);
		copy(c->session_token, sizeof(c->session_token), o->session_token);
		snprintf(c->from, sizeof(c->from), "mount options");
		return 0;
	}
	if (o->passwd_file[0])
		return from_passwd_file(o->passwd_file, bucket, c, err, errlen);
	if (env("AWS_ACCESS_KEY_ID") && env("AWS_SECRET_ACCESS_KEY")) {
		copy(c->access_key, sizeof(c->access_key), env("AWS_ACCESS_KEY_ID"));
		copy(c->secret_key, sizeof(c->secret_key), env("AWS_SECRET_ACCESS_KEY"));
		copy(c->session_token, sizeof(c->session_token), env("AWS_SESSION_TOKEN"));
		snprintf(c->from, sizeof(c->from), "environment (AWS_ACCESS_KEY_ID)");
		return 0;
	}
	if (home) {
		memset(&file, 0, sizeof(file));
		x = (struct ini_ctx){ .section = profile, .c = &file };
		snprintf(path, sizeof(path), "%s/.aws/credentials", home);
		rc = read_aws_file(path, &x, err, errlen);
		if (!rc && x.keys && file.secret_key[0]) {
			copy(c->access_key, sizeof(c->access_key), file.access_key);
			copy(c->secret_key, sizeof(c->secret_key), file.secret_key);
			copy(c->session_token, sizeof(c->session_token), file.session_token);
			snprintf(c->from, sizeof(c->from), "~/.aws/credentials [%.63s]", profile);
		}
		creds_wipe(&file);
		if (rc)
			return rc;
		if (c->access_key[0])
			return 0;
	}
	snprintf(err, errlen, "no credentials for bucket %s: use -o passwd_file=FILE, set AWS_ACCESS_KEY_ID and "
		 "AWS_SECRET_ACCESS_KEY, add profile [%s] to ~/.aws/credentials, or -o anonymous for a public bucket",
		 bucket, profile);
	return -ENOENT;
}
