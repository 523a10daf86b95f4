#include "config.h"
#include "ctl/proto.h"
#include "core/util.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

int ctl_socket_default(const char *mnt, uid_t uid, char *out, size_t len)
{
	char name[PATH_MAX * 4 + 8], dir[PATH_MAX];
	const char *p = mnt, *xdg = getenv("XDG_RUNTIME_DIR");
	size_t n = 0, end = strlen(mnt);
	struct sockaddr_un sa;

	while (*p == '/')
		p++;
	while (end > (size_t)(p - mnt) && mnt[end - 1] == '/')
		end--;
	if ((size_t)(p - mnt) >= end)
		name[n++] = '-';
	for (; (size_t)(p - mnt) < end; p++) {
		unsigned char ch = (unsigned char)*p;
		if (ch == '/')
			name[n++] = '-';
		else if (isalnum(ch) || ch == '_' || ch == ':' || (ch == '.' && n))
			name[n++] = (char)ch;
		else
			n += (size_t)sprintf(name + n, "\\x%02x", ch);
	}
	name[n] = '\0';
	if (uid == 0)
		snprintf(dir, sizeof(dir), "/run/cachefs");
	else if (xdg && *xdg == '/' && uid == getuid())
		snprintf(dir, sizeof(dir), "%s/cachefs", xdg);
	else
		snprintf(dir, sizeof(dir), "/tmp/cachefs-%u", (unsigned)uid);
	if (uid && uid != getuid()) {
		/* Another user's daemon (asked by root): in a login session it had
		 * its runtime directory, /run/user/UID, else /tmp as above. */
		char run[PATH_MAX + sizeof(name) + 32];
		snprintf(run, sizeof(run), "/run/user/%u/cachefs/%s.sock", (unsigned)uid, name);
		if (access(run, F_OK) == 0)
			snprintf(dir, sizeof(dir), "/run/user/%u/cachefs", (unsigned)uid);
	}
	if ((size_t)snprintf(out, len, "%s/%s.sock", dir, name) >= MIN(len, sizeof(sa.sun_path)))
		return -ENAMETOOLONG;
	return 0;
}

int ctl_dir_check(const char *dir, uid_t owner, int create, mode_t mode, char *err, size_t errlen)
{
	struct stat st;

	if (create && mkdir(dir, mode) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "control socket directory %s: %s", dir, strerror(errno));
		return -errno;
	}
	if (lstat(dir, &st) < 0) {
		snprintf(err, errlen, "control socket directory %s: %s", dir, strerror(errno));
		return -errno;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "control socket directory %s is not a directory (a link?): refusing it", dir);
		return -ENOTDIR;
	}
	if (st.st_uid != owner && st.st_uid != 0) {
		snprintf(err, errlen, "control socket directory %s belongs to uid %u, not to uid %u: "
			 "another user could swap the socket; remove it or set -o ctl_socket=PATH",
			 dir, (unsigned)st.st_uid, (unsigned)owner);
		return -EPERM;
	}
	if ((st.st_mode & 022) && !((st.st_mode & S_ISVTX) && st.st_uid == 0)) {
		snprintf(err, errlen, "control socket directory %s is writable by others (mode %04o): another "
			 "user could swap the socket; chmod go-w it or set -o ctl_socket=PATH", dir,
			 (unsigned)(st.st_mode & 07777));
		return -EPERM;
	}
	return 0;
}

json_t *ctl_json_text(const char *s)
{
	json_t *o = json_string(s);
	char *esc, *w;

	if (o || !(esc = malloc(strlen(s) * 4 + 1)))
		return o;
	for (w = esc; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch < 0x80)
			*w++ = (char)ch;
		else
			w += sprintf(w, "\\x%02x", ch);
	}
	*w = '\0';
	o = json_string(esc);
	free(esc);
	return o;
}
