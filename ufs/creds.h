/*
 * Object store credentials and region, looked up once at mount as the AWS
 * CLI does: mount options, then passwd_file, then the environment, then
 * ~/.aws/credentials and ~/.aws/config. Secrets never reach a log line.
 */
#ifndef CACHEFS_CREDS_H
#define CACHEFS_CREDS_H

#include "core/options.h"

struct s3_creds {
	char access_key[128];      /* "" for anonymous requests */
	char secret_key[128];
	char session_token[4096];
	char region[64];
	char from[PATH_MAX + 32];  /* where the keys came from, for messages */
};

/*
 * Fills c for `bucket`. Returns 0, or -EINVAL / -EACCES / -ENOENT with a
 * one-line message in err (which names files and options, never secrets).
 */
int creds_resolve(const struct source_opts *o, const char *bucket, struct s3_creds *c,
		  char *err, size_t errlen);

/* Overwrites the secret fields. */
void creds_wipe(struct s3_creds *c);

#endif
