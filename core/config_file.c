/*
 * The INI config file (libinih): the same option names as -o, daemon-wide
 * before the first section or in [global], and [mount /PATH] sections that
 * join sources into one namespace:
 *
 *     ram_cache = 8G
 *     [mount /training-data]
 *     source = s3://bucket/imagenet
 *     region = us-west-2
 *     [mount /scratch]
 *     source = /nfs/scratch
 */
#include "config.h"
#include "core/options.h"
#include "core/util.h"

#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct load {
	struct config_file *f;
	struct cachefs_config *c;
	struct cachefs_config *scratch;   /* checks mount values without keeping them */
	FILE *in;
	unsigned line;
	bool long_line;
	char err[768];
};

/* fgets that counts lines, so that handler errors can name theirs. */
static char *reader(char *buf, int size, void *arg)
{
	struct load *l = arg;
	char *s = fgets(buf, size, l->in);

	if (s) {
		size_t n = strlen(s);
		l->line++;
		if (n && s[n - 1] != '\n' && !feof(l->in))
			l->long_line = true;
	}
	return s;
}

/* "/a//b/" -> "/a/b"; -EINVAL for relative paths and "." or ".." parts. */
static int clean_mount_path(const char *in, char **out)
{
	char *p = malloc(strlen(in) + 2);
	bool dir;

	if (!p)
		return -ENOMEM;
	p[0] = '/';
	strcpy(p + 1, in);
	if (in[0] != '/' || path_clean(p + 1, &dir)) {
		free(p);
		return -EINVAL;
	}
	*out = p;
	return 0;
}

/* A new [mount] section; takes path. */
static int new_mount(struct load *l, char *path)
{
	struct config_file *f = l->f;
	struct config_mount *m;

	for (unsigned i = 0; i < f->nmounts; i++)
		if (!strcmp(f->mounts[i].path, path)) {
			snprintf(l->err, sizeof(l->err), "[mount %s] is defined twice (first near line %u)", path,
				 f->mounts[i].line);
			free(path);
			return 0;
		}
	m = realloc(f->mounts, (f->nmounts + 1) * sizeof(*m));
	if (!m) {
		free(path);
		return 0;
	}
	f->mounts = m;
	m = &f->mounts[f->nmounts++];
	memset(m, 0, sizeof(*m));
	m->path = path;
	m->line = l->line;
	return 1;
}

static int handler(void *arg, const char *section, const char *name, const char *value)
{
	struct load *l = arg;
	struct config_file *f = l->f;
	struct config_mount *m;
	char why[512];

	if (l->err[0])
		return 0;   /* report the first mistake only */
	if (!*section || !strcmp(section, "global")) {
		if (!strcmp(name, "config")) {
			snprintf(l->err, sizeof(l->err), "option 'config' cannot name another config file");
			return 0;
		}
		if (config_set(l->c, name, value, false, why, sizeof(why))) {
			snprintf(l->err, sizeof(l->err), "%s", why);
			return 0;
		}
		return 1;
	}
	if (strncmp(section, "mount ", 6)) {
		snprintf(l->err, sizeof(l->err), "unknown section [%s] (expected [global] or [mount /PATH])", section);
		return 0;
	}
	/* inih calls us once per line with its section: a new path starts a mount. */
	char *path;
	if (clean_mount_path(section + 6, &path)) {
		snprintf(l->err, sizeof(l->err), "[%s]: the mount point must be an absolute path without '.' "
			 "or '..' parts, such as [mount /training-data]", section);
		return 0;
	}
	m = f->nmounts ? &f->mounts[f->nmounts - 1] : NULL;
	if (m && !strcmp(m->path, path))
		free(path);
	else if (!new_mount(l, path))
		return 0;
	m = &f->mounts[f->nmounts - 1];
	if (!strcmp(name, "source")) {
		if (!value || !*value) {
			snprintf(l->err, sizeof(l->err), "[mount %s]: source needs a value, such as s3://BUCKET/PREFIX",
				 m->path);
			return 0;
		}
		free(m->source);
		m->source = strdup(value);
		return m->source != NULL;
	}
	if (config_set(l->scratch, name, value, true, why, sizeof(why))) {
		snprintf(l->err, sizeof(l->err), "[mount %s]: %s", m->path, why);
		return 0;
	}
	struct config_kv *kv = realloc(m->opts, (m->nopts + 1) * sizeof(*kv));
	if (!kv)
		return 0;
	m->opts = kv;
	kv[m->nopts].key = strdup(name);
	kv[m->nopts].val = value ? strdup(value) : NULL;
	m->nopts++;
	return kv[m->nopts - 1].key != NULL;
}

int config_file_load(struct config_file *f, const char *file, struct cachefs_config *c,
		     char *err, size_t errlen)
{
	struct load l = { .f = f, .c = c };
	/* libinih's defaults suit small files; ours hold long tokens and values with ';'. */
	int max_line = ini_max_line;
	bool use_stack = ini_use_stack, inline_comments = ini_allow_inline_comments,
	     multiline = ini_allow_multiline, no_value = ini_allow_no_value;
	int rc;

	memset(f, 0, sizeof(*f));
	f->name = strdup(file);
	l.scratch = malloc(sizeof(*l.scratch));
	l.in = fopen(file, "r");
	if (!f->name || !l.scratch || !l.in) {
		rc = l.in || !f->name || !l.scratch ? -ENOMEM : -errno;
		snprintf(err, errlen, "config file %s: %s", file, strerror(-rc));
		goto out;
	}
	config_defaults(l.scratch);
	ini_max_line = 8192;
	ini_use_stack = false;
	ini_allow_inline_comments = false;
	ini_allow_multiline = false;
	ini_allow_no_value = true;
	rc = ini_parse_stream(reader, &l, handler, &l);
	ini_max_line = max_line;
	ini_use_stack = use_stack;
	ini_allow_inline_comments = inline_comments;
	ini_allow_multiline = multiline;
	ini_allow_no_value = no_value;
	if (l.long_line) {
		snprintf(err, errlen, "%s: a line is longer than 8190 characters", file);
		rc = -EINVAL;
	} else if (rc > 0) {
		snprintf(err, errlen, "%s:%d: %s", file, rc, l.err[0] ? l.err : "not a 'name = value' line, "
			 "a [section] or a # comment");
		rc = -EINVAL;
	} else if (rc < 0) {
		snprintf(err, errlen, "config file %s: %s", file, rc == -2 ? "out of memory" : "cannot be read");
		rc = rc == -2 ? -ENOMEM : -EIO;
	}
	for (unsigned i = 0; !rc && i < f->nmounts; i++)
		if (!f->mounts[i].source) {
			snprintf(err, errlen, "%s:%u: [mount %s] has no 'source =' line", file, f->mounts[i].line,
				 f->mounts[i].path);
			rc = -EINVAL;
		}
	if (!rc && !f->nmounts) {
		snprintf(err, errlen, "%s: no [mount /PATH] section with a 'source =' line", file);
		rc = -ENOMSG;
	}
out:
	if (l.in)
		fclose(l.in);
	free(l.scratch);
	if (rc)
		config_file_free(f);
	return rc;
}

void config_mount_apply(const struct config_mount *m, struct cachefs_config *c)
{
	char err[256];

	/* Every value passed config_set when the file was read. */
	for (unsigned i = 0; i < m->nopts; i++)
		config_set(c, m->opts[i].key, m->opts[i].val, true, err, sizeof(err));
}

void config_file_free(struct config_file *f)
{
	for (unsigned i = 0; i < f->nmounts; i++) {
		struct config_mount *m = &f->mounts[i];
		for (unsigned k = 0; k < m->nopts; k++) {
			free(m->opts[k].key);
			free(m->opts[k].val);
		}
		free(m->opts);
		free(m->path);
		free(m->source);
	}
	free(f->mounts);
	free(f->name);
	memset(f, 0, sizeof(*f));
}
