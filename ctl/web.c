/*
 * The HTTP side of the control plane on -o metrics=ADDR:PORT: /metrics for
 * Prometheus, / (the status page) and /status.json behind it.
 *
 * libmicrohttpd runs on a thread of ours (its epoll mode, driven by
 * MHD_run), so that between two runs this thread can end connections that
 * hold a slot too long: every request has WEB_DEADLINE_S seconds from its
 * first byte (or the end of the previous request on a kept-alive
 * connection) to its last response byte. A client that trickles a header
 * line every few seconds, or never reads its answer, loses its connection;
 * scrapes find room. Shutting a socket down from the thread that alone
 * calls MHD_run cannot race with libmicrohttpd closing it. The same thread
 * samples the bytes each tier served once a second, so the page opens on
 * the last five minutes rather than on an empty chart.
 */
#include "config.h"
#include "ctl/web.h"
#include "ctl/metrics.h"
#include "ctl/status.h"
#include "core/log.h"
#include "core/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define WEB_DEADLINE_S 5
#define WEB_IDLE_S 5
#define WEB_MAX_CONNECTIONS 1024
#define WEB_HISTORY 300          /* samples of bytes served, one a second: five minutes */

/* The status page, from ctl/status_page.html (generated at build time). */
extern const char web_status_page[];

/* Bytes served by each tier so far, at t_ms (Unix time): the page's chart. */
struct sample {
	int64_t t_ms;
	uint64_t ram, ssd, source;
};

struct conn {
	struct conn *prev, *next;
	int fd;
	uint64_t deadline;
	bool shut;
};

static struct {
	struct MHD_Daemon *mhd;
	pthread_t thread;
	bool running;
	int wake;
	atomic_bool stop;
	struct engine *e;
	struct jobs *jobs;
	metrics_render_fn extra;
	void *extra_arg;
	struct conn *conns;           /* the web thread's alone */
	atomic_uint_fast64_t cut;     /* connections ended at their deadline */
	/* the web thread's alone (answer() runs on it too) */
	struct sample hist[WEB_HISTORY];
	unsigned hist_n, hist_next;
	uint64_t next_sample_ns;
} web = { .wake = -1 };

static int64_t wall_ms(void)
{
	return (int64_t)(realtime_ns() / 1000000);
}

static void take_sample(void)
{
	struct pgcache_stats t;
	struct pgstore_stats s = { 0 };
	struct pgstore *store = engine_store(web.e);

	pgcache_stats_total(engine_cache(web.e), &t);
	if (store)
		pgstore_stats_total(store, &s);
	web.hist[web.hist_next] = (struct sample){ .t_ms = wall_ms(), .ram = t.bytes_hit,
						   .ssd = s.bytes_read, .source = t.bytes_fetched };
	web.hist_next = (web.hist_next + 1) % WEB_HISTORY;
	web.hist_n = MIN(web.hist_n + 1, WEB_HISTORY);
}

/* [[t_ms, ram, ssd, source], ...], oldest first. */
static json_t *history_json(void)
{
	json_t *a = json_array();

	for (unsigned i = 0; i < web.hist_n; i++) {
		const struct sample *x = &web.hist[(web.hist_next + WEB_HISTORY - web.hist_n + i) % WEB_HISTORY];
		json_array_append_new(a, json_pack("[I, I, I, I]", (json_int_t)x->t_ms, (json_int_t)x->ram,
						   (json_int_t)x->ssd, (json_int_t)x->source));
	}
	return a;
}

static enum MHD_Result respond(struct MHD_Connection *c, unsigned status, const char *type,
			       char *body, size_t len, bool must_free)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(len, body, must_free ?
		MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
	enum MHD_Result rc;

	if (!r) {
		if (must_free)
			free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, "Content-Type", type);
	MHD_add_response_header(r, "Cache-Control", "no-store");
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(r, "Allow", "GET, HEAD");
	if (!strncmp(type, "text/html", 9))
		MHD_add_response_header(r, "Content-Security-Policy",
					"default-src 'none'; script-src 'unsafe-inline'; "
					"style-src 'unsafe-inline'; connect-src 'self'; img-src data:");
	rc = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return rc;
}

static enum MHD_Result text(struct MHD_Connection *c, unsigned status, const char *msg)
{
	return respond(c, status, "text/plain; charset=utf-8", (char *)msg, strlen(msg), false);
}

static json_t *status_doc(bool history)
{
	json_t *o = status_json(web.e, web.jobs);

	json_object_set_new(o, "jobs", web.jobs ? jobs_json(web.jobs) : json_array());
	json_object_set_new(o, "time_ms", json_integer((json_int_t)wall_ms()));
	if (history)
		json_object_set_new(o, "history", history_json());
	return o;
}

static enum MHD_Result answer(void *cls, struct MHD_Connection *c, const char *url,
			      const char *method, const char *version, const char *upload,
			      size_t *upload_len, void **state)
{
	struct metrics_buf b = { 0 };

	if (strcmp(method, "GET") && strcmp(method, "HEAD"))
		return text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "cachefs answers GET and HEAD only\n");
	if (!strcmp(url, "/")) {
		return respond(c, MHD_HTTP_OK, "text/html; charset=utf-8", (char *)web_status_page,
			       strlen(web_status_page), false);
	}
	if (!strcmp(url, "/metrics")) {
		metrics_render(&b, web.e, web.extra, web.extra_arg);
		metrics_family(&b, "cachefs_http_connections_cut_total", "counter",
			       "Connections to this endpoint ended because a request took longer than "
			       "5 s to arrive and be answered.");
		metrics_put(&b, "cachefs_http_connections_cut_total %llu\n",
			    (unsigned long long)web_connections_cut());
		if (!b.p)
			return MHD_NO;
		return respond(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", b.p, b.len, true);
	}
	if (!strcmp(url, "/status.json")) {
		json_t *o = status_doc(MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "history") != NULL);
		char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
		json_decref(o);
		if (!s)
			return MHD_NO;
		return respond(c, MHD_HTTP_OK, "application/json", s, strlen(s), true);
	}
	return text(c, MHD_HTTP_NOT_FOUND, "cachefs serves / (the status page), /status.json and /metrics\n");
}

/* ---- deadlines ---- */

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
			  enum MHD_ConnectionNotificationCode toe)
{
	struct conn *k = *socket_context;
	const union MHD_ConnectionInfo *ci;

	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		if (!(k = calloc(1, sizeof(*k))))
			return;   /* no deadline for it: the idle timeout still applies */
		ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
		k->fd = ci ? ci->connect_fd : -1;
		k->deadline = now_ns() + WEB_DEADLINE_S * 1000000000ULL;
		k->next = web.conns;
		if (k->next)
			k->next->prev = k;
		web.conns = k;
		*socket_context = k;
	} else if (toe == MHD_CONNECTION_NOTIFY_CLOSED && k) {
		if (k->prev)
			k->prev->next = k->next;
		else
			web.conns = k->next;
		if (k->next)
			k->next->prev = k->prev;
		free(k);
		*socket_context = NULL;
	}
}

/* A request answered: the next one on this connection gets a deadline of its own. */
static void on_completed(void *cls, struct MHD_Connection *c, void **state,
			 enum MHD_RequestTerminationCode toe)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	struct conn *k = ci ? ci->socket_context : NULL;

	if (k)
		k->deadline = now_ns() + WEB_DEADLINE_S * 1000000000ULL;
}

static void cut_late(void)
{
	uint64_t now = now_ns();

	for (struct conn *k = web.conns; k; k = k->next) {
		if (k->shut || k->fd < 0 || now < k->deadline)
			continue;
		/* libmicrohttpd sees the end of the stream at its next run and closes it. */
		shutdown(k->fd, SHUT_RDWR);
		k->shut = true;
		atomic_fetch_add_explicit(&web.cut, 1, memory_order_relaxed);
	}
}

static void *web_main(void *arg)
{
	const union MHD_DaemonInfo *di = MHD_get_daemon_info(web.mhd, MHD_DAEMON_INFO_EPOLL_FD);
	struct pollfd p[2] = { { .fd = di ? di->epoll_fd : -1, .events = POLLIN },
			       { .fd = web.wake, .events = POLLIN } };

	while (!atomic_load(&web.stop)) {
		MHD_UNSIGNED_LONG_LONG to;
		int ms = 250;
		if (MHD_get_timeout(web.mhd, &to) == MHD_YES && to < (MHD_UNSIGNED_LONG_LONG)ms)
			ms = (int)to;
		if (poll(p, 2, ms) < 0 && errno != EINTR)
			break;
		MHD_run(web.mhd);
		cut_late();
		if (now_ns() >= web.next_sample_ns) {
			take_sample();
			web.next_sample_ns = now_ns() + 1000000000ULL;
		}
	}
	return NULL;
}

/* ---- life ---- */

static int parse_addr(const char *spec, struct sockaddr_storage *ss, unsigned *len, char *err, size_t errlen)
{
	if (!parse_sockaddr(spec, ss, len))
		return 0;
	snprintf(err, errlen, "metrics=%s: want ADDR:PORT, such as 127.0.0.1:9464 (or :PORT for every address)",
		 spec);
	return -EINVAL;
}

int web_check(const char *spec, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	unsigned len;
	int rc = parse_addr(spec, &ss, &len, err, errlen);

	if (!rc && (rc = sockaddr_bindable(&ss, len)))
		snprintf(err, errlen, "metrics=%s: cannot listen there: %s", spec, strerror(-rc));
	return rc;
}

/* Room for WEB_MAX_CONNECTIONS besides the daemon's own files, where the hard limit allows. */
static unsigned connection_limit(void)
{
	struct rlimit rl;
	rlim_t want = WEB_MAX_CONNECTIONS * 2 + 1024;

	if (getrlimit(RLIMIT_NOFILE, &rl))
		return 64;
	if (rl.rlim_cur < want && rl.rlim_max > rl.rlim_cur) {
		rl.rlim_cur = MIN(want, rl.rlim_max);
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
	}
	return (unsigned)MAX(MIN((rlim_t)WEB_MAX_CONNECTIONS, rl.rlim_cur / 2), 16);
}

int web_start(const char *spec, struct engine *e, struct jobs *jobs, metrics_render_fn extra, void *arg)
{
	struct sockaddr_storage ss;
	unsigned len;
	char err[256];
	int rc;

	if (parse_addr(spec, &ss, &len, err, sizeof(err)))
		return -EINVAL;
	web.e = e;
	web.jobs = jobs;
	web.hist_n = web.hist_next = 0;
	web.next_sample_ns = 0;
	web.extra = extra;
	web.extra_arg = arg;
	atomic_store(&web.stop, false);
	web.wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (web.wake < 0) {
		rc = -errno;
		log_err("metrics=%s: eventfd: %s; serving no metrics", spec, strerror(-rc));
		return rc;
	}
	web.mhd = MHD_start_daemon(MHD_USE_EPOLL | MHD_USE_ERROR_LOG |
				   (ss.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0),
				   0, NULL, NULL, answer, NULL,
				   MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
				   MHD_OPTION_CONNECTION_LIMIT, connection_limit(),
				   MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)WEB_IDLE_S,
				   MHD_OPTION_NOTIFY_CONNECTION, on_connection, NULL,
				   MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
				   MHD_OPTION_END);
	if (!web.mhd) {
		log_err("metrics=%s: cannot listen there (in use?): serving no metrics", spec);
		close(web.wake);
		web.wake = -1;
		return -EADDRINUSE;
	}
	rc = pthread_create(&web.thread, NULL, web_main, NULL);
	if (rc) {
		log_err("metrics=%s: cannot start its thread: %s; serving no metrics", spec, strerror(rc));
		MHD_stop_daemon(web.mhd);
		web.mhd = NULL;
		close(web.wake);
		web.wake = -1;
		return -rc;
	}
	web.running = true;
	log_info("status page on http://%s/, metrics on http://%s/metrics", spec, spec);
	return 0;
}

uint64_t web_connections_cut(void)
{
	return atomic_load_explicit(&web.cut, memory_order_relaxed);
}

void web_stop(void)
{
	if (web.running) {
		atomic_store(&web.stop, true);
		eventfd_write(web.wake, 1);
		pthread_join(web.thread, NULL);
		web.running = false;
	}
	if (web.mhd)
		MHD_stop_daemon(web.mhd);
	web.mhd = NULL;
	if (web.wake >= 0)
		close(web.wake);
	web.wake = -1;
}
