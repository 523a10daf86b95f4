/* cachefsctl: talks to a running cachefs daemon over its control socket. */
#include "config.h"
#include "core/util.h"
#include "ctl/proto.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define EXIT_USAGE 2

static void usage(FILE *f)
{
	fprintf(f,
		"usage: cachefsctl [-m MOUNTPOINT] [-s SOCKET] [-t SECONDS] COMMAND [ARGS]\n"
		"\n"
		"  status [--json]            mounts, shards, tier usage and hit ratio, fetches, errors\n"
		"  load PATH... [-j N] [--background] [--here]\n"
		"                             read files or whole trees into the cache, with progress;\n"
		"                             -j: pages read at once (16); --background: print the job\n"
		"                             id and return (the load goes on without this client).\n"
		"                             In a cluster each stripe is loaded by the node that owns\n"
		"                             it (one copy in the cluster); --here: every page onto\n"
		"                             this node\n"
		"  jobs                       loads, evictions and pins, running and recent\n"
		"  watch ID                   follow a job's progress\n"
		"  cancel ID                  stop a job\n"
		"  evict PATH...              drop files or trees from RAM and SSD (pinned pages stay)\n"
		"  pin PATH... [-j N] [--background]\n"
		"                             load files or trees and keep them: pinned pages are\n"
		"                             never evicted (held on SSD, or in RAM without an SSD\n"
		"                             tier; at most 90%% of it); all or nothing\n"
		"  unpin PATH... | --all      let pinned files or trees be evicted again\n"
		"  stats [--watch] [-n N]     throughput by tier; --watch: a line per second (N lines)\n"
		"  cluster [--json]           the cluster's members: tiers, hit ratios, peer traffic\n"
		"\n"
		"The daemon is found from -m, -s, the PATH arguments or the current directory\n"
		"(whichever cachefs mount holds them), or as the only cachefs mount. Only root,\n"
		"you, or the owner of the mount (-m with -s) may answer on the socket.\n"
		"-t: how long to wait for each answer of the daemon (10 s; 0 waits forever).\n");
}

__attribute__((format(printf, 1, 2), noreturn))
static void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "cachefsctl: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

/* ---- finding the daemon ---- */

/*
 * The cachefs mount holding `path` (longest match), or the only one, and
 * the user that mounted it (the kernel's user_id= option).
 */
static int find_mount(const char *path, char *out, size_t len, uid_t *owner)
{
	FILE *f = fopen("/proc/self/mounts", "r");
	char line[PATH_MAX * 2 + 256], src[PATH_MAX], mnt[PATH_MAX], type[64], opts[1024];
	size_t best = 0;
	unsigned count = 0;

	if (!f)
		return -errno;
	out[0] = '\0';
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%4095s %4095s %63s %1023s", src, mnt, type, opts) != 4 ||
		    strcmp(type, "fuse.cachefs"))
			continue;
		count++;
		size_t n = strlen(mnt);
		bool holds = path && !strncmp(path, mnt, n) && (path[n] == '/' || !path[n] || n == 1);
		if ((holds && n >= best) || (!path && count == 1)) {
			const char *u = strstr(opts, "user_id=");
			best = holds ? n : best;
			snprintf(out, len, "%s", mnt);
			*owner = u ? (uid_t)strtoul(u + 8, NULL, 10) : 0;
		}
	}
	fclose(f);
	if (path && !best)
		return count ? -ENOENT : -ENODEV;
	if (!path && count != 1)
		return count ? -EEXIST : -ENODEV;
	return 0;
}

/* An absolute form of a user's path, resolved where it exists. */
static char *absolute(const char *p)
{
	char real[PATH_MAX], cwd[PATH_MAX], *out;

	if (realpath(p, real))
		return strdup(real);
	if (p[0] == '/')
		return strdup(p);
	if (!getcwd(cwd, sizeof(cwd)) || asprintf(&out, "%s/%s", cwd, p) < 0)
		die("%s: %s", p, strerror(errno));
	return out;
}

/* Seconds to wait for each reply (and for a full backlog); 0: forever. */
static unsigned reply_timeout = 10;

/* The -t wait ran out (SO_RCVTIMEO/SO_SNDTIMEO): the daemon did not `what`. */
__attribute__((noreturn))
static void die_stalled(const char *path, const char *what)
{
	die("the daemon on %s did not %s within %u s (stopped or hung? its log may say; -t sets the "
	    "wait)", path, what, reply_timeout);
}

/* Who may answer on the socket besides root and us: the mount's owner, when
 * known (from the mount table: -m, or the mount found; -s alone names none). */
static uid_t mount_owner = (uid_t)-1;

/*
 * Before anything is sent: the process on the socket must be root, us, or
 * the user who mounted the file system. A socket someone else swapped in
 * (in a runtime directory they could write) fails this, whatever it answers.
 */
static void check_peer(int fd, const char *path)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0)
		die("%s: cannot tell who serves it (SO_PEERCRED: %s)", path, strerror(errno));
	if (cr.uid == 0 || cr.uid == geteuid() || cr.uid == mount_owner)
		return;
	die("the process on %s (pid %d) runs as uid %u, neither root, you, nor the mount's owner: "
	    "refusing to talk to it (someone may have put it there; with -s, name the mount with -m "
	    "too)", path, (int)cr.pid, (unsigned)cr.uid);
}

static int connect_to(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = reply_timeout };
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path))
		die("socket path %s is too long", path);
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket: %s", strerror(errno));
	/* A stopped or hung daemon still accepts into its backlog: time out. */
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
		die("setsockopt: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		struct stat st;
		if (errno == EAGAIN)
			die_stalled(path, "take the connection");
		if ((errno == EACCES || errno == EPERM) && stat(path, &st) == 0)
			die("permission denied on the control socket %s (owner uid %u, group %u, mode %04o): run "
			    "cachefsctl as its owner or root, or mount with -o ctl_group=GROUP and join that group",
			    path, (unsigned)st.st_uid, (unsigned)st.st_gid, (unsigned)(st.st_mode & 07777));
		if (errno == EACCES || errno == EPERM)
			die("permission denied on the control socket %s (its directory is closed to you): run "
			    "cachefsctl as the daemon's user or root, or mount with -o ctl_group=GROUP", path);
		die("no cachefs daemon answers on %s: %s", path, strerror(errno));
	}
	check_peer(fd, path);
	return fd;
}

/* ---- the protocol: a JSON object per line each way ---- */

static FILE *conn;
static const char *sock_path;

static void send_req(json_t *req)
{
	if (!req)
		die("out of memory");
	if (json_dumpf(req, conn, JSON_COMPACT) < 0 || fputc('\n', conn) == EOF || fflush(conn) == EOF) {
		if (errno == EAGAIN)
			die_stalled(sock_path, "take the request");
		die("writing to %s: %s", sock_path, strerror(errno));
	}
	json_decref(req);
}

/* The next reply; dies on a closed connection or an {"ok":false} error. */
static json_t *recv_reply(void)
{
	char *line = NULL;
	size_t cap = 0;
	json_error_t jerr;
	json_t *r, *ok;

	errno = 0;
	if (getline(&line, &cap, conn) <= 0) {
		if (errno == EAGAIN)
			die_stalled(sock_path, "answer");
		die("the daemon on %s closed the connection", sock_path);
	}
	r = json_loads(line, 0, &jerr);
	free(line);
	if (!r)
		die("bad reply from %s: %s", sock_path, jerr.text);
	ok = json_object_get(r, "ok");
	if (ok && !json_is_true(ok))
		die("%s", json_string_value(json_object_get(r, "error")) ?: "request refused");
	return r;
}

static json_t *call(json_t *req)
{
	send_req(req);
	return recv_reply();
}

static uint64_t num(json_t *o, const char *path)
{
	char key[64];
	const char *dot = strchr(path, '.');

	if (dot) {
		snprintf(key, sizeof(key), "%.*s", (int)(dot - path), path);
		return num(json_object_get(o, key), dot + 1);
	}
	json_t *v = json_object_get(o, path);
	return json_is_integer(v) ? (uint64_t)json_integer_value(v) : 0;
}

/* ---- commands ---- */

static int cmd_status(bool as_json)
{
	json_t *r = call(json_pack("{s:s}", "cmd", "status"));
	json_t *ssd = json_object_get(r, "ssd");
	char a[32], b[32], c[32];
	uint64_t up = num(r, "uptime_s");

	if (as_json) {
		json_dumpf(r, stdout, JSON_INDENT(2));
		putchar('\n');
		json_decref(r);
		return 0;
	}
	printf("cachefs %s, pid %llu, up %llud %02lluh%02llum%02llus\n",
	       json_string_value(json_object_get(r, "version")), (unsigned long long)num(r, "pid"),
	       (unsigned long long)(up / 86400), (unsigned long long)(up / 3600 % 24),
	       (unsigned long long)(up / 60 % 60), (unsigned long long)(up % 60));
	printf("mount       %s <- %s\n", json_string_value(json_object_get(r, "mountpoint")),
	       json_string_value(json_object_get(r, "source")));
	printf("shards      %llu; %llu open files", (unsigned long long)num(r, "shards"),
	       (unsigned long long)num(r, "open_files"));
	if (num(r, "shared_handles"))
		printf(", %llu inodes read through shared handles (no_open)",
		       (unsigned long long)num(r, "shared_handles"));
	printf("; %llu jobs running\n", (unsigned long long)num(r, "jobs_running"));
	printf("hit ratio   %.1f%% of page gets served without a source read\n",
	       100 * json_real_value(json_object_get(r, "hit_ratio")));
	printf("RAM         %s of %s, %llu pages; served %s\n", fmt_size(num(r, "ram.used"), a, sizeof(a)),
	       fmt_size(num(r, "ram.capacity"), b, sizeof(b)), (unsigned long long)num(r, "ram.pages"),
	       fmt_size(num(r, "ram.bytes_served"), c, sizeof(c)));
	if (json_is_object(ssd))
		printf("SSD         %s of %s, %llu pages; served %s; %llu corrupt pages dropped\n",
		       fmt_size(num(r, "ssd.used"), a, sizeof(a)), fmt_size(num(r, "ssd.capacity"), b, sizeof(b)),
		       (unsigned long long)num(r, "ssd.pages"), fmt_size(num(r, "ssd.bytes_served"), c, sizeof(c)),
		       (unsigned long long)num(r, "ssd.corrupt"));
	else
		printf("SSD         off\n");
	printf("source      %llu reads (%llu in flight, %llu failed), %s read\n",
	       (unsigned long long)num(r, "source_reads.fetches"),
	       (unsigned long long)num(r, "source_reads.in_flight"),
	       (unsigned long long)num(r, "source_reads.errors"),
	       fmt_size(num(r, "source_reads.bytes"), a, sizeof(a)));
	if (json_is_true(json_object_get(json_object_get(r, "writes"), "read_only")))
		printf("writes      read-only mount\n");
	else
		printf("writes      %s written, %llu files committed to the source, %llu failed%s\n",
		       fmt_size(num(r, "writes.bytes"), a, sizeof(a)), (unsigned long long)num(r, "writes.commits"),
		       (unsigned long long)num(r, "writes.failed"),
		       num(r, "writes.failed") ? " (their bytes are kept: the log says where)" : "");
	printf("pinned      %s of at most %s (%s tier)\n", fmt_size(num(r, "pinned.bytes"), a, sizeof(a)),
	       fmt_size(num(r, "pinned.limit"), b, sizeof(b)),
	       json_string_value(json_object_get(json_object_get(r, "pinned"), "tier")));
	printf("evictions   %llu\n", (unsigned long long)num(r, "evictions"));
	json_decref(r);
	return 0;
}

static void print_errors(json_t *job)
{
	size_t i;
	json_t *e;

	json_array_foreach(json_object_get(job, "errors"), i, e)
		fprintf(stderr, "cachefsctl: %s\n", json_string_value(e));
	if (num(job, "error_count") > json_array_size(json_object_get(job, "errors")))
		fprintf(stderr, "cachefsctl: ... %llu errors in all\n",
			(unsigned long long)num(job, "error_count"));
}

/* " on N nodes" for a cluster's load. */
static const char *on_nodes(json_t *j)
{
	static char s[32];
	size_t n = json_array_size(json_object_get(j, "nodes"));

	snprintf(s, sizeof(s), n > 1 ? " on %zu nodes" : "", n);
	return s;
}

static void progress_line(json_t *j, bool tty, bool last)
{
	uint64_t done = num(j, "bytes_done"), total = num(j, "bytes_total");
	double secs = json_real_value(json_object_get(j, "seconds"));
	double rate = secs > 0 ? (double)done / secs : 0;
	const char *state = json_string_value(json_object_get(j, "state"));
	const char *kind = json_string_value(json_object_get(j, "kind"));
	bool evict = !strcmp(kind, "evict"), unpin = !strcmp(kind, "unpin");
	bool pin = !strcmp(kind, "pin");
	char a[32], b[32], r[32], eta[32] = "";
	double frac = total ? (double)done / (double)total : (last ? 1 : 0);

	if (!strcmp(state, "listing")) {
		if (tty)
			fprintf(stderr, "\r\033[Klisting... %llu files, %s so far",
				(unsigned long long)num(j, "files_total"), fmt_size(total, a, sizeof(a)));
		return;
	}
	if (rate > 0 && total > done && !last)
		snprintf(eta, sizeof(eta), " ETA %.0fs", ceil((double)(total - done) / rate));
	if (evict || unpin) {
		char kept[64] = "";
		if (num(j, "pages_kept"))
			snprintf(kept, sizeof(kept), ", %llu pinned pages kept",
				 (unsigned long long)num(j, "pages_kept"));
		fprintf(tty ? stderr : stdout, "%sjob %llu %s: %llu/%llu files, %llu pages %s%s%s",
			tty ? "\r\033[K" : "", (unsigned long long)num(j, "job"), state,
			(unsigned long long)num(j, "files_done"), (unsigned long long)num(j, "files_total"),
			(unsigned long long)num(j, evict ? "pages_dropped" : "pages_unpinned"),
			evict ? "dropped" : "unpinned", kept, tty && !last ? "" : "\n");
		return;
	}
	if (tty) {
		char bar[31];
		int fill = (int)(frac * 30);
		for (int i = 0; i < 30; i++)
			bar[i] = i < fill ? '#' : '.';
		bar[30] = '\0';
		fprintf(stderr, "\r\033[K[%s] %3.0f%% %llu/%llu files %s/%s %s/s%s%s%s", bar, 100 * frac,
			(unsigned long long)num(j, "files_done"), (unsigned long long)num(j, "files_total"),
			fmt_size(done, a, sizeof(a)), fmt_size(total, b, sizeof(b)), fmt_size((uint64_t)rate, r, sizeof(r)),
			eta, on_nodes(j), last ? "\n" : "");
		if (last && pin)
			fprintf(stderr, "job %llu %s: %llu pages pinned\n", (unsigned long long)num(j, "job"),
				state, (unsigned long long)num(j, "pages_pinned"));
	} else {
		printf("job %llu %s: %llu/%llu files, %s/%s, %s/s%s%s\n", (unsigned long long)num(j, "job"),
		       state, (unsigned long long)num(j, "files_done"),
		       (unsigned long long)num(j, "files_total"), fmt_size(done, a, sizeof(a)),
		       fmt_size(total, b, sizeof(b)), fmt_size((uint64_t)rate, r, sizeof(r)), eta, on_nodes(j));
		if (last && pin)
			printf("job %llu %s: %llu pages pinned\n", (unsigned long long)num(j, "job"), state,
			       (unsigned long long)num(j, "pages_pinned"));
		fflush(stdout);
	}
}

/* A cluster load's parts, a line per node, once it ended. */
static void node_lines(json_t *j, FILE *f)
{
	json_t *nodes = json_object_get(j, "nodes"), *n;
	char a[32], b[32];
	size_t i;

	if (json_array_size(nodes) < 2)
		return;
	json_array_foreach(nodes, i, n)
		fprintf(f, "  %-24s %-9s %s/%s%s\n", json_string_value(json_object_get(n, "node")) ?: "?",
			json_string_value(json_object_get(n, "state")) ?: "?", fmt_size(num(n, "bytes_done"), a, sizeof(a)),
			fmt_size(num(n, "bytes_total"), b, sizeof(b)), i ? "" : " (this node)");
}

/* Follows job `id` to its end. Exit status: 0, or 1 if it had errors. */
static int watch(json_int_t id)
{
	bool tty = isatty(STDERR_FILENO);
	time_t last_plain = 0;
	json_t *j;

	send_req(json_pack("{s:s, s:I}", "cmd", "watch", "job", id));
	for (;;) {
		j = recv_reply();
		const char *state = json_string_value(json_object_get(j, "state"));
		bool last = strcmp(state, "listing") && strcmp(state, "running");
		/* Not a terminal: a plain line per second is enough. */
		if (tty || last || time(NULL) != last_plain) {
			progress_line(j, tty, last);
			last_plain = time(NULL);
		}
		if (last) {
			int rc = num(j, "error_count") || strcmp(state, "done") ? 1 : 0;
			node_lines(j, tty ? stderr : stdout);
			print_errors(j);
			json_decref(j);
			return rc;
		}
		json_decref(j);
	}
}

static int cmd_job(const char *cmd, int argc, char **argv, unsigned parallel, bool background,
		   bool all, bool here)
{
	json_t *paths = json_array(), *r;
	json_int_t id;

	for (int i = 0; i < argc; i++) {
		char *p = absolute(argv[i]);
		json_t *js = json_string(p);
		if (!js)
			die("%s: the name is not UTF-8, which the control protocol carries; name a "
			    "directory above it instead", p);
		json_array_append_new(paths, js);
		free(p);
	}
	r = call(json_pack("{s:s, s:o, s:I, s:b, s:b}", "cmd", cmd, "paths", paths, "parallel",
			   (json_int_t)parallel, "all", all, "here", here));
	id = json_integer_value(json_object_get(r, "job"));
	json_decref(r);
	if (background) {
		printf("job %lld\n", (long long)id);
		return 0;
	}
	return watch(id);
}

static int cmd_jobs(void)
{
	json_t *r = call(json_pack("{s:s}", "cmd", "jobs")), *j;
	size_t i;
	char a[32], b[32];

	printf("%-5s %-6s %-10s %15s %21s %7s\n", "JOB", "KIND", "STATE", "FILES", "BYTES", "ERRORS");
	json_array_foreach(json_object_get(r, "jobs"), i, j) {
		char files[48], bytes[48];
		snprintf(files, sizeof(files), "%llu/%llu", (unsigned long long)num(j, "files_done"),
			 (unsigned long long)num(j, "files_total"));
		snprintf(bytes, sizeof(bytes), "%s/%s", fmt_size(num(j, "bytes_done"), a, sizeof(a)),
			 fmt_size(num(j, "bytes_total"), b, sizeof(b)));
		printf("%-5llu %-6s %-10s %15s %21s %7llu\n", (unsigned long long)num(j, "job"),
		       json_string_value(json_object_get(j, "kind")),
		       json_string_value(json_object_get(j, "state")), files, bytes,
		       (unsigned long long)num(j, "error_count"));
	}
	json_decref(r);
	return 0;
}

static int cmd_cancel(const char *arg)
{
	char *end;
	long long id = strtoll(arg, &end, 10);

	if (*end || id <= 0) {
		fprintf(stderr, "cachefsctl: cancel takes a job id, not '%s'\n", arg);
		return EXIT_USAGE;
	}
	json_t *r = call(json_pack("{s:s, s:I}", "cmd", "cancel", "job", (json_int_t)id));

	if (json_is_true(json_object_get(r, "finished")))
		printf("job %lld had finished already (%s)\n", id,
		       json_string_value(json_object_get(r, "state")) ?: "?");
	else
		printf("job %lld stops after the pages in flight (cachefsctl watch %lld follows it)\n",
		       id, id);
	json_decref(r);
	return 0;
}

static int cmd_stats(bool watching, long count)
{
	uint64_t prev[3] = { 0 }, cur[3];
	struct timespec ts = { 1, 0 };
	char a[32], b[32], c[32];

	if (watching)
		printf("%-8s %12s %12s %12s %7s %9s\n", "TIME", "RAM/s", "SSD/s", "SOURCE/s", "HIT%",
		       "INFLIGHT");
	for (long n = 0; !watching || count <= 0 || n <= count; n++) {
		json_t *r = call(json_pack("{s:s}", "cmd", "stats"));
		cur[0] = num(r, "ram.bytes_served");
		cur[1] = num(r, "ssd.bytes_served");
		cur[2] = num(r, "source_reads.bytes");
		if (!watching) {
			printf("served: RAM %s, SSD %s, source %s; hit ratio %.1f%%\n", fmt_size(cur[0], a, sizeof(a)),
			       fmt_size(cur[1], b, sizeof(b)), fmt_size(cur[2], c, sizeof(c)),
			       100 * json_real_value(json_object_get(r, "hit_ratio")));
			json_decref(r);
			return 0;
		}
		if (n > 0) {
			char t[16];
			time_t now = time(NULL);
			strftime(t, sizeof(t), "%H:%M:%S", localtime(&now));
			printf("%-8s %12s %12s %12s %6.1f%% %9llu\n", t, fmt_size(cur[0] - prev[0], a, sizeof(a)),
			       fmt_size(cur[1] - prev[1], b, sizeof(b)), fmt_size(cur[2] - prev[2], c, sizeof(c)),
			       100 * json_real_value(json_object_get(r, "hit_ratio")),
			       (unsigned long long)num(r, "source_reads.in_flight"));
			fflush(stdout);
		}
		memcpy(prev, cur, sizeof(prev));
		json_decref(r);
		if (count <= 0 || n < count)
			nanosleep(&ts, NULL);
	}
	return 0;
}

/* used/capacity of a tier, or "-" without it. */
static const char *tier(json_t *t, char *buf, size_t len)
{
	char a[32], b[32];

	if (!json_is_object(t))
		return "-";
	snprintf(buf, len, "%s/%s", fmt_size(num(t, "used"), a, sizeof(a)), fmt_size(num(t, "capacity"), b, sizeof(b)));
	return buf;
}

static int cmd_cluster(bool as_json)
{
	json_t *r = call(json_pack("{s:s}", "cmd", "cluster")), *m;
	const char *self = json_string_value(json_object_get(r, "self")) ?: "";
	size_t i, n = json_array_size(json_object_get(r, "members"));
	char ram[48], ssd[48], a[32], b[32], c[32];
	int rc = 0;

	if (as_json) {
		json_object_del(r, "ok");
		json_dumpf(r, stdout, JSON_INDENT(2));
		putchar('\n');
		json_decref(r);
		return 0;
	}
	printf("cluster %s: %zu member%s\n", json_string_value(json_object_get(r, "cluster")) ?: "?", n,
	       n == 1 ? "" : "s");
	printf("%-24s %-19s %-19s %6s %10s %10s %10s %8s\n", "NODE", "RAM", "SSD", "HIT%", "FROM SRC",
	       "TO PEERS", "FROM PEERS", "FAILURES");
	json_array_foreach(json_object_get(r, "members"), i, m) {
		const char *node = json_string_value(json_object_get(m, "node")) ?: "?";
		json_t *st = json_object_get(m, "status"), *peer = json_object_get(m, "peer");
		char name[64];
		snprintf(name, sizeof(name), "%s%s", node, strcmp(node, self) ? "" : " *");
		if (json_object_get(m, "error")) {
			printf("%-24s no answer: %s\n", name, json_string_value(json_object_get(m, "error")));
			rc = 1;
			continue;
		}
		printf("%-24s %-19s %-19s %5.1f%% %10s %10s %10s %8llu\n", name,
		       tier(json_object_get(st, "ram"), ram, sizeof(ram)), tier(json_object_get(st, "ssd"), ssd, sizeof(ssd)),
		       100 * json_real_value(json_object_get(st, "hit_ratio")),
		       fmt_size(num(st, "source_reads.bytes") - MIN(num(st, "source_reads.bytes"), num(peer, "bytes_received")),
				a, sizeof(a)),
		       fmt_size(num(peer, "bytes_served"), b, sizeof(b)), fmt_size(num(peer, "bytes_received"), c, sizeof(c)),
		       (unsigned long long)num(peer, "failures"));
	}
	printf("* this node. FROM SRC: bytes read from the source; TO PEERS / FROM PEERS: bytes its page\n"
	       "server sent (to nodes and clients) / bytes it read from owner nodes.\n");
	json_decref(r);
	return rc;
}

static bool is_job(const char *cmd)
{
	return !strcmp(cmd, "load") || !strcmp(cmd, "evict") || !strcmp(cmd, "pin") ||
	       !strcmp(cmd, "unpin");
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "json", no_argument, NULL, 'J' },
		{ "background", no_argument, NULL, 'b' },
		{ "watch", no_argument, NULL, 'w' },
		{ "all", no_argument, NULL, 'a' },
		{ "here", no_argument, NULL, 'H' },
		{ NULL, 0, NULL, 0 },
	};
	const char *mnt = NULL, *cmd;
	char sock[PATH_MAX], where[PATH_MAX], real[PATH_MAX];
	bool as_json = false, background = false, watching = false, all = false, here = false;
	long parallel = 16, count = 0, timeout = reply_timeout;
	bool timeout_ok = true;
	char *end;
	int c, rc, fd;

	/* A daemon gone mid-request is an error message, not a silent death. */
	signal(SIGPIPE, SIG_IGN);

	/* Options may come anywhere: `load DIR -j 8 --background`. The first
	 * operand is the command, the others its arguments. */
	char **args = calloc((size_t)argc, sizeof(*args));
	int nargs = 0;
	cmd = NULL;
	while ((c = getopt_long(argc, argv, "-m:s:j:n:t:h", longopts, NULL)) != -1) {
		switch (c) {
		case 1:
			if (!cmd)
				cmd = optarg;
			else
				args[nargs++] = optarg;
			break;
		case 'm': mnt = optarg; break;
		case 's': sock_path = optarg; break;
		case 'j': parallel = strtol(optarg, NULL, 10); break;
		case 'n': count = strtol(optarg, NULL, 10); break;
		case 't': timeout = strtol(optarg, &end, 10); timeout_ok = *optarg && !*end; break;
		case 'J': as_json = true; break;
		case 'b': background = true; break;
		case 'w': watching = true; break;
		case 'a': all = true; break;
		case 'H': here = true; break;
		case 'h': usage(stdout); free(args); return 0;
		default: usage(stderr); free(args); return EXIT_USAGE;
		}
	}
	while (optind < argc) {           /* after `--` */
		if (!cmd)
			cmd = argv[optind++];
		else
			args[nargs++] = argv[optind++];
	}
	if (!cmd) {
		usage(stderr);
		free(args);
		return EXIT_USAGE;
	}
	if (parallel < 1 || parallel > 1024) {
		fprintf(stderr, "cachefsctl: -j takes 1 to 1024\n");
		free(args);
		return EXIT_USAGE;
	}
	if (!timeout_ok || timeout < 0 || timeout > 86400) {
		fprintf(stderr, "cachefsctl: -t takes seconds, 0 to 86400 (0: wait forever)\n");
		free(args);
		return EXIT_USAGE;
	}
	reply_timeout = (unsigned)timeout;

	/* -m: the mount's owner may answer (check_peer), with -s as well. */
	if (mnt) {
		char found[PATH_MAX];
		uid_t owner;
		if (!realpath(mnt, real))
			die("%s: %s", mnt, strerror(errno));
		snprintf(where, sizeof(where), "%s", real);
		if (!find_mount(real, found, sizeof(found), &owner) && !strcmp(found, real))
			mount_owner = owner;
	}
	if (!sock_path) {
		if (!mnt) {
			char *probe = nargs && is_job(cmd) ?
				absolute(args[0]) : absolute(".");
			rc = find_mount(probe, where, sizeof(where), &mount_owner);
			if (rc == -ENOENT)
				rc = find_mount(NULL, where, sizeof(where), &mount_owner);
			free(probe);
			if (rc == -ENODEV)
				die("no cachefs mount found (name its socket with -s SOCKET)");
			if (rc == -EEXIST)
				die("several cachefs mounts: name one with -m MOUNTPOINT");
			if (rc)
				die("reading /proc/self/mounts: %s", strerror(-rc));
		}
		if (ctl_socket_default(where, mount_owner == (uid_t)-1 ? getuid() : mount_owner, sock,
				       sizeof(sock)) < 0)
			die("the socket path for %s is too long: use -s SOCKET", where);
		sock_path = sock;
	}
	fd = connect_to(sock_path);
	conn = fdopen(fd, "r+");
	if (!conn)
		die("fdopen: %s", strerror(errno));

	if (!strcmp(cmd, "status"))
		rc = cmd_status(as_json);
	else if (!strcmp(cmd, "unpin") && all && !nargs)
		rc = cmd_job(cmd, 0, args, (unsigned)parallel, false, true, false);
	else if (is_job(cmd) && !all)
		rc = nargs ? cmd_job(cmd, nargs, args, (unsigned)parallel,
				     background && (!strcmp(cmd, "load") || !strcmp(cmd, "pin")), false,
				     here && !strcmp(cmd, "load"))
			   : (fprintf(stderr, "cachefsctl: %s needs at least one PATH%s\n", cmd,
				      strcmp(cmd, "unpin") ? "" : " (or --all)"), EXIT_USAGE);
	else if (!strcmp(cmd, "jobs"))
		rc = cmd_jobs();
	else if (!strcmp(cmd, "watch") && nargs == 1)
		rc = watch(strtoll(args[0], NULL, 10));
	else if (!strcmp(cmd, "cancel") && nargs == 1)
		rc = cmd_cancel(args[0]);
	else if (!strcmp(cmd, "stats"))
		rc = cmd_stats(watching, count);
	else if (!strcmp(cmd, "cluster") && !nargs)
		rc = cmd_cluster(as_json);
	else {
		fprintf(stderr, "cachefsctl: unknown command or arguments: %s (cachefsctl --help)\n", cmd);
		rc = EXIT_USAGE;
	}
	fclose(conn);
	free(args);
	return rc;
}
