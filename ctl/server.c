/*
 * Control server: a poll loop over the listening socket and its clients,
 * each request dispatched by its "cmd" through one table. A watched job
 * sends a progress line every CTL_PROGRESS_MS and a last one with its
 * final state.
 */
#include "config.h"
#include "ctl/server.h"
#include "ctl/jobs.h"
#include "ctl/proto.h"
#include "ctl/status.h"
#include "core/log.h"
#include "core/shard.h"
#include "core/util.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <jansson.h>
#include <poll.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define CTL_MAX_CLIENTS 64
#define CLIENT_SEND_TIMEOUT_S 1
#define PROGRESS_NS (CTL_PROGRESS_MS * 1000000ULL)

struct client {
	int fd;
	bool dead;                  /* a send failed or stalled: close it */
	char *buf;
	size_t len;
	struct job *watch;          /* progress goes to this client */
	uint64_t last_push;
};

/* Owned by the control thread, except where noted. */
static struct {
	struct engine *e;
	struct jobs *jobs;
	int lfd;
	int wake[2];                /* SIGHUP and stop write here */
	char path[108];
	pthread_t thread;
	bool running;
	atomic_bool stop;
	volatile sig_atomic_t reload;
	ctl_reload_fn reload_fn;
	void *reload_arg;
	struct client clients[CTL_MAX_CLIENTS];
	unsigned nclients;
	_Atomic(ctl_members_fn) members;   /* set by the daemon in a cluster */
} ctl = { .lfd = -1, .wake = { -1, -1 } };

/* ---- the connection side ---- */

/*
 * Sends o (taken) as one line. A client that does not read gets
 * CLIENT_SEND_TIMEOUT_S (SO_SNDTIMEO) and is then dropped: the control
 * thread serves everyone and must not wait on one of them.
 */
static void client_send(struct client *c, json_t *o)
{
	char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
	size_t len, off = 0;

	json_decref(o);
	if (!s)
		s = strdup("{\"ok\":false,\"error\":\"the daemon could not build this reply "
			   "(out of memory?)\"}");
	if (!s || c->dead) {
		c->dead = true;
		free(s);
		return;
	}
	len = strlen(s);
	s[len++] = '\n';   /* the NUL's room */
	while (off < len) {
		ssize_t w = send(c->fd, s + off, len - off, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			c->dead = true;
			break;
		}
		off += (size_t)w;
	}
	free(s);
}

__attribute__((format(printf, 1, 2)))
static json_t *err_reply(const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return json_pack("{s:b, s:o}", "ok", 0, "error", ctl_json_text(msg));
}

/* ---- commands ---- */

static json_t *do_status(struct client *c, json_t *req)
{
	return status_json(ctl.e, ctl.jobs);
}

static json_t *do_jobs(struct client *c, json_t *req)
{
	return json_pack("{s:b, s:o}", "ok", 1, "jobs", jobs_json(ctl.jobs));
}

static json_t *start_job(json_t *req, enum ctl_job_kind kind, const char *cmd)
{
	json_t *paths = json_object_get(req, "paths");
	json_int_t parallel = 16;
	int all = 0, here = 0;
	const char **pv;
	size_t n = json_array_size(paths);
	char err[256];
	struct job *j;

	json_unpack(req, "{s?I, s?b, s?b}", "parallel", &parallel, "all", &all, "here", &here);
	if (all && kind != CTL_JOB_UNPIN)
		return err_reply("%s: \"all\" is for unpin only", cmd);
	if (!all && (!json_is_array(paths) || !n))
		return err_reply("%s: no paths", cmd);
	if (parallel < 1 || parallel > CTL_MAX_PARALLEL)
		return err_reply("%s: parallel must be 1 to %d", cmd, CTL_MAX_PARALLEL);
	pv = calloc(n ? n : 1, sizeof(*pv));
	if (!pv)
		return err_reply("%s", strerror(ENOMEM));
	for (size_t i = 0; i < n; i++)
		if (!(pv[i] = json_string_value(json_array_get(paths, i)))) {
			free(pv);
			return err_reply("%s: paths must be strings", cmd);
		}
	/* In a cluster, a load is split among the members by owner, unless asked onto this node. */
	j = jobs_start(ctl.jobs, &(struct job_spec){ .kind = kind, .paths = pv, .n = (unsigned)n, .all = all,
			.parallel = (unsigned)parallel, .scope = here ? JOB_HERE : JOB_CLUSTER }, err, sizeof(err));
	free(pv);
	return j ? json_pack("{s:b, s:I}", "ok", 1, "job", (json_int_t)job_id(j)) : err_reply("%s", err);
}

static json_t *do_load(struct client *c, json_t *req) { return start_job(req, CTL_JOB_LOAD, "load"); }
static json_t *do_pin(struct client *c, json_t *req) { return start_job(req, CTL_JOB_PIN, "pin"); }
static json_t *do_evict(struct client *c, json_t *req) { return start_job(req, CTL_JOB_EVICT, "evict"); }
static json_t *do_unpin(struct client *c, json_t *req) { return start_job(req, CTL_JOB_UNPIN, "unpin"); }

static struct job *job_of(json_t *req)
{
	json_int_t id = 0;

	json_unpack(req, "{s?I}", "job", &id);
	return id > 0 && id <= UINT32_MAX ? jobs_find(ctl.jobs, (unsigned)id) : NULL;
}

static json_t *no_job(json_t *req)
{
	json_int_t id = 0;

	json_unpack(req, "{s?I}", "job", &id);
	return err_reply("no job %lld (cachefsctl jobs lists them)", (long long)id);
}

static json_t *do_cancel(struct client *c, json_t *req)
{
	struct job *j = job_of(req);

	if (!j)
		return no_job(req);
	bool fin = job_finished(j);
	json_t *o;

	if (!fin)
		job_cancel(j);
	o = job_json(j);
	json_object_set_new(o, "ok", json_true());
	json_object_set_new(o, "finished", json_boolean(fin));
	return o;
}

/* No reply now: progress lines follow (push_progress). */
static json_t *do_watch(struct client *c, json_t *req)
{
	struct job *j = job_of(req);

	if (!j)
		return no_job(req);
	c->watch = j;
	c->last_push = 0;
	return NULL;
}

/* The members' state; this thread waits on the slowest (a few seconds at most for one that hangs). */
static json_t *do_cluster(struct client *c, json_t *req)
{
	ctl_members_fn members = atomic_load(&ctl.members);
	json_t *o = members ? members() : NULL;

	if (!o)
		return err_reply("this node is in no cluster (mount it with -o serve= and etcd= or members=)");
	json_object_set_new(o, "ok", json_true());
	return o;
}

static const struct {
	const char *name;
	json_t *(*run)(struct client *c, json_t *req);
} commands[] = {
	{ "status", do_status }, { "stats", do_status }, { "jobs", do_jobs },
	{ "load", do_load }, { "pin", do_pin }, { "evict", do_evict }, { "unpin", do_unpin },
	{ "cancel", do_cancel }, { "watch", do_watch }, { "cluster", do_cluster },
};

static void handle(struct client *c, const char *line)
{
	json_error_t jerr;
	json_t *req = json_loads(line, 0, &jerr), *reply = NULL;
	const char *cmd;
	unsigned i;

	if (!req || json_unpack(req, "{s:s}", "cmd", &cmd)) {
		client_send(c, err_reply("bad request: %s", req ? "no \"cmd\"" : jerr.text));
		json_decref(req);
		return;
	}
	for (i = 0; i < ARRAY_SIZE(commands) && strcmp(cmd, commands[i].name); i++)
		;
	if (i < ARRAY_SIZE(commands))
		reply = commands[i].run(c, req);
	else
		reply = err_reply("unknown command '%.100s'", cmd);
	if (reply)
		client_send(c, reply);
	json_decref(req);
}

static void client_close(unsigned i)
{
	close(ctl.clients[i].fd);
	free(ctl.clients[i].buf);
	ctl.clients[i] = ctl.clients[--ctl.nclients];
}

/* Reads what is there; runs every complete line. Returns false at EOF
 * or when the client is to be dropped. */
static bool client_read(struct client *c)
{
	char tmp[65536];
	ssize_t n = recv(c->fd, tmp, sizeof(tmp), MSG_DONTWAIT);
	char *nl;

	if (n < 0)
		return errno == EINTR || errno == EAGAIN;
	if (n == 0 || c->len + (size_t)n > CTL_MAX_LINE)
		return false;
	char *b = realloc(c->buf, c->len + (size_t)n + 1);
	if (!b)
		return false;
	c->buf = b;
	memcpy(c->buf + c->len, tmp, (size_t)n);
	c->len += (size_t)n;
	c->buf[c->len] = '\0';
	while (!c->dead && (nl = memchr(c->buf, '\n', c->len))) {
		*nl = '\0';
		handle(c, c->buf);
		c->len -= (size_t)(nl + 1 - c->buf);
		memmove(c->buf, nl + 1, c->len + 1);
	}
	return !c->dead;
}

static void push_progress(uint64_t now)
{
	for (unsigned i = 0; i < ctl.nclients; i++) {
		struct client *c = &ctl.clients[i];
		if (!c->watch || now - c->last_push < PROGRESS_NS)
			continue;
		bool fin = job_finished(c->watch);
		c->last_push = now;
		client_send(c, job_json(c->watch));
		if (fin)
			c->watch = NULL;
	}
}

static void accept_client(void)
{
	int fd = accept4(ctl.lfd, NULL, NULL, SOCK_CLOEXEC);
	struct timeval tv = { .tv_sec = CLIENT_SEND_TIMEOUT_S };

	if (fd < 0)
		return;
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (ctl.nclients == CTL_MAX_CLIENTS) {
		struct client tmp = { .fd = fd };
		client_send(&tmp, err_reply("%s", "too many control connections"));
		close(fd);
		return;
	}
	ctl.clients[ctl.nclients++] = (struct client){ .fd = fd };
}

/* A job some client watches is kept. */
static bool watched(const struct job *j, void *arg)
{
	for (unsigned c = 0; c < ctl.nclients; c++)
		if (ctl.clients[c].watch == j)
			return true;
	return false;
}

static void *ctl_main(void *arg)
{
	struct pollfd pfd[CTL_MAX_CLIENTS + 2];

	while (!atomic_load(&ctl.stop)) {
		unsigned n = 0;
		pfd[n++] = (struct pollfd){ .fd = ctl.wake[0], .events = POLLIN };
		pfd[n++] = (struct pollfd){ .fd = ctl.lfd, .events = POLLIN };
		for (unsigned i = 0; i < ctl.nclients; i++)
			pfd[n++] = (struct pollfd){ .fd = ctl.clients[i].fd, .events = POLLIN };
		if (poll(pfd, n, 100) < 0 && errno != EINTR)
			break;
		if (pfd[0].revents) {
			char b[64];
			while (read(ctl.wake[0], b, sizeof(b)) > 0)
				;
		}
		if (ctl.reload) {
			char msg[512];
			ctl.reload = 0;
			ctl.reload_fn(ctl.reload_arg, msg, sizeof(msg));
			log_info("SIGHUP: %s", msg);
		}
		if (pfd[1].revents & POLLIN)
			accept_client();
		/* Backwards: closing moves the last client into slot i. */
		for (unsigned i = n - 2; i-- > 0;) {
			if (i >= ctl.nclients || !pfd[i + 2].revents)
				continue;
			if (!client_read(&ctl.clients[i]))
				client_close(i);
		}
		push_progress(now_ns());
		for (unsigned i = ctl.nclients; i-- > 0;)
			if (ctl.clients[i].dead)
				client_close(i);
		jobs_trim(ctl.jobs, watched, NULL);
		log_tick(false);
	}
	return NULL;
}

/* ---- start and stop ---- */

static int bind_socket(const char *path, const char *group, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char dir[sizeof(sa.sun_path)];
	char *slash;
	gid_t gid = (gid_t)-1;
	struct stat st;
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "control socket %s: path too long for a Unix socket", path);
		return -ENAMETOOLONG;
	}
	if (group && *group) {
		struct group *g = getgrnam(group);
		if (!g) {
			snprintf(err, errlen, "ctl_group=%s: no such group", group);
			return -EINVAL;
		}
		gid = g->gr_gid;
	}
	strcpy(sa.sun_path, path);
	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (slash) {
		int rc;
		*slash = '\0';
		/* Nobody else may move our socket away and put theirs in its place. */
		rc = ctl_dir_check(*dir ? dir : "/", geteuid(), 1, gid == (gid_t)-1 ? 0700 : 0711, err, errlen);
		if (rc)
			return rc;
		if (gid != (gid_t)-1 && stat(*dir ? dir : "/", &st) == 0 && !(st.st_mode & 011))
			log_warn("ctl_group=%s: %s (mode %04o) cannot be searched by that group, whose "
				 "members then cannot reach the socket: chmod 0711 it", group, dir,
				 (unsigned)(st.st_mode & 07777));
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket(AF_UNIX): %s", strerror(errno));
		return -errno;
	}
	/* A live daemon answers on it; a dead one left a socket to replace.
	 * Anything else there is someone's file, not ours to remove. */
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
		close(fd);
		snprintf(err, errlen, "control socket %s is in use by another cachefs daemon; "
			 "give this one its own with -o ctl_socket=PATH", path);
		return -EADDRINUSE;
	}
	if (lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode)) {
		close(fd);
		snprintf(err, errlen, "control socket %s: a file that is not a socket is there; "
			 "refusing to replace it (remove it, or set -o ctl_socket=PATH)", path);
		return -EEXIST;
	}
	unlink(path);
	mode_t old = umask(0177);
	int rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (rc < 0 || listen(fd, 16) < 0 ||
	    (gid != (gid_t)-1 && (chown(path, (uid_t)-1, gid) < 0 || chmod(path, 0660) < 0))) {
		int e = errno;
		snprintf(err, errlen, "control socket %s: %s", sa.sun_path, strerror(e));
		rc = -e;
		close(fd);
		unlink(path);
		return rc;
	}
	return fd;
}

int ctl_open(const char *path, const char *group, char *err, size_t errlen)
{
	int rc = bind_socket(path, group, err, errlen);

	if (rc < 0)
		return rc;
	ctl.lfd = rc;
	snprintf(ctl.path, sizeof(ctl.path), "%s", path);
	if (pipe2(ctl.wake, O_CLOEXEC | O_NONBLOCK) < 0) {
		snprintf(err, errlen, "pipe2: %s", strerror(errno));
		rc = -errno;
		close(ctl.lfd);
		unlink(path);
		ctl.lfd = -1;
		return rc;
	}
	return 0;
}

int ctl_start(struct engine *e, ctl_reload_fn reload, void *reload_arg)
{
	int rc;

	if (ctl.lfd < 0)
		return -EBADF;
	ctl.e = e;
	ctl.jobs = jobs_create(e);
	if (!ctl.jobs)
		return -ENOMEM;
	ctl.reload_fn = reload;
	ctl.reload_arg = reload_arg;
	rc = pthread_create(&ctl.thread, NULL, ctl_main, NULL);
	if (rc) {
		log_err("pthread_create(control): %s", strerror(rc));
		return -rc;
	}
	pthread_setname_np(ctl.thread, "cachefs-ctl");
	ctl.running = true;
	return 0;
}

void ctl_request_reload(void)
{
	ctl.reload = 1;
	if (ctl.wake[1] >= 0) {
		ssize_t w = write(ctl.wake[1], "h", 1);
		(void)w;
	}
}

void ctl_stop(void)
{
	if (ctl.running) {
		atomic_store(&ctl.stop, true);
		ssize_t w = write(ctl.wake[1], "s", 1);
		(void)w;
		pthread_join(ctl.thread, NULL);
		ctl.running = false;
	}
	jobs_destroy(ctl.jobs);
	ctl.jobs = NULL;
	while (ctl.nclients)
		client_close(0);
	if (ctl.lfd >= 0) {
		close(ctl.lfd);
		unlink(ctl.path);
		close(ctl.wake[0]);
		close(ctl.wake[1]);
	}
	ctl.wake[0] = ctl.wake[1] = ctl.lfd = -1;
}

struct jobs *ctl_jobs(void)
{
	return ctl.jobs;
}

void ctl_set_cluster(ctl_members_fn members)
{
	atomic_store(&ctl.members, members);
}
