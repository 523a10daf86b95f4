/*
 * The cluster's life and what its parts share: the token, the member
 * list, the counters on /metrics.
 */
#include "config.h"
#include "cluster/cluster_i.h"
#include "core/http.h"
#include "core/log.h"
#include "core/shard.h"
#include "core/util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

struct cluster cluster;

/*
 * Lists replaced while the shards may still read them: freed at the end.
 * Owner: whoever calls placement_set, one thread at a time (cluster_start's
 * thread, then the membership thread it starts; cluster_destroy after it
 * ended).
 */
static struct retired {
	struct placement *pl;
	struct retired *next;
} *retired;
static bool on, created;

void placement_set(struct placement *pl)
{
	struct placement *old = atomic_exchange(&cluster.pl, pl);
	struct retired *r;

	peers_forget_failures();
	if (!old)
		return;
	if (!(r = malloc(sizeof(*r)))) {
		/* Leaked rather than freed under a reader. */
		return;
	}
	r->pl = old;
	r->next = retired;
	retired = r;
}

struct placement *placement_get(void)
{
	return atomic_load_explicit(&cluster.pl, memory_order_acquire);
}

struct curl_slist *cluster_auth(struct curl_slist *l)
{
	char h[CLUSTER_TOKEN_MAX + 32];

	snprintf(h, sizeof(h), "Authorization: Bearer %s", cluster.token);
	return curl_slist_append(l, h);
}

#define CALL_BODY_MAX (4u << 20)

/*
 * The cluster's own blocking calls (membership, loads, `cachefsctl
 * cluster`). Made by cluster_check and freed by cluster_destroy on the main
 * thread; between them any thread but a shard calls through it
 * (http_perform only reads its options and bumps its atomic counters).
 */
static struct http_pool *calls;

struct call {
	const char *url;
	bool auth;
};

static int call_prepare(void *ctx, const char *method, const char *range, char **url, struct curl_slist **hdrs)
{
	const struct call *c = ctx;

	if (!(*url = strdup(c->url)))
		return -ENOMEM;
	if (c->auth && !(*hdrs = cluster_auth(NULL))) {
		free(*url);
		*url = NULL;
		return -ENOMEM;
	}
	return 0;
}

json_t *cluster_call(CURL *c, const char *url, const char *body, bool auth, long timeout_ms, char *err,
		     size_t errlen)
{
	struct call ctx = { .url = url, .auth = auth };
	struct http_req r = { .method = body ? "POST" : "GET", .prepare = call_prepare, .ctx = &ctx,
			      .deadline_ns = now_ns() + (uint64_t)timeout_ms * 1000000, .body = body,
			      .body_len = body ? strlen(body) : 0, .body_max = CALL_BODY_MAX, .easy = c };
	json_t *ans = NULL;
	int rc = http_perform(calls, &r);

	if (rc)
		msgf(err, errlen, "%s: %s", url, r.err[0] ? r.err : strerror(-rc));
	else if (r.resp.status < 200 || r.resp.status > 299)
		msgf(err, errlen, "%s: HTTP %ld: %.200s", url, r.resp.status, r.resp.body ? r.resp.body : "");
	else if (!(ans = json_loads(r.resp.body ? r.resp.body : "", 0, NULL)))
		msgf(err, errlen, "%s: an answer that is not JSON", url);
	free(r.resp.body);
	return ans;
}

bool member_url(char *buf, size_t len, const char *name, const char *api, const char *query)
{
	int n = snprintf(buf, len, "http://%s/v1/%s%s%s", name, api, query ? "?" : "", query ? query : "");

	return n > 0 && (size_t)n < len;
}

/* The shared token: a file only its owner reads, one line. */
static int load_token(const char *path, char *err, size_t errlen)
{
	struct stat st;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW), rc = 0;

	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "cluster_token_file=%s: %s", path, strerror(-rc));
		return rc;
	}
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "cluster_token_file=%s: not a regular file", path);
		rc = -EINVAL;
	} else if (st.st_mode & 077) {
		snprintf(err, errlen, "cluster_token_file=%s is readable by others (mode %04o): chmod 600 %s", path,
			 (unsigned)(st.st_mode & 07777), path);
		rc = -EPERM;
	} else if ((n = read(fd, cluster.token, sizeof(cluster.token))) < 0) {
		rc = -errno;
		snprintf(err, errlen, "cluster_token_file=%s: %s", path, strerror(-rc));
	} else if ((size_t)n == sizeof(cluster.token)) {
		snprintf(err, errlen, "cluster_token_file=%s: longer than %zu bytes", path, sizeof(cluster.token) - 1);
		rc = -EINVAL;
	} else {
		cluster.token[n] = '\0';
		cluster.token[strcspn(cluster.token, "\r\n")] = '\0';
		/* Printable, no spaces: it travels in an HTTP header. */
		for (char *c = cluster.token; *c && !rc; c++)
			if (*c <= ' ' || *c > '~')
				rc = -EINVAL;
		if (rc || strlen(cluster.token) < 16) {
			snprintf(err, errlen, "cluster_token_file=%s: want one line of at least 16 printable characters "
				 "without spaces (such as: openssl rand -hex 32)", path);
			rc = -EINVAL;
		}
	}
	close(fd);
	return rc;
}

/* An address the other nodes can reach, where a server can listen. */
static int check_serve(const char *spec, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	unsigned len;
	int rc;

	if (parse_sockaddr(spec, &ss, &len) || (ss.ss_family == AF_INET &&
	    !((struct sockaddr_in *)&ss)->sin_addr.s_addr)) {
		snprintf(err, errlen, "serve=%s: want ADDR:PORT, an address the other nodes reach it at "
			 "(such as 10.0.0.5:9470)", spec);
		return -EINVAL;
	}
	if ((rc = sockaddr_bindable(&ss, len)))
		snprintf(err, errlen, "serve=%s: cannot listen there: %s", spec, strerror(-rc));
	return rc;
}

int cluster_check(const struct cluster_opts *o, uint64_t page_size, char *err, size_t errlen)
{
	int rc;

	if (!o->serve[0])
		return 0;
	cluster.o = *o;
	cluster.page_size = page_size;
	if (strlen(o->serve) >= sizeof(cluster.self)) {
		snprintf(err, errlen, "serve=%s: too long", o->serve);
		return -EINVAL;
	}
	snprintf(cluster.self, sizeof(cluster.self), "%s", o->serve);
	if (!calls) {
		struct http_pool_opts po = { .name = "cluster", .max_conns = 1, .retries = 0 };
		if ((rc = http_pool_create(&calls, &po))) {
			snprintf(err, errlen, "cluster: %s", strerror(-rc));
			return rc;
		}
	}
	if ((rc = load_token(o->token_file, err, errlen)) || (rc = check_serve(o->serve, err, errlen)) ||
	    (rc = members_check(err, errlen))) {
		http_pool_destroy(calls);
		calls = NULL;
		return rc;
	}
	on = true;
	return 0;
}

int cluster_create(double source_timeout, char *err, size_t errlen)
{
	int rc;

	if (!on || !(cluster.o.etcd[0] || cluster.o.members[0]))
		return 0;
	if ((rc = peers_create(secs_to_ns(source_timeout), err, errlen)))
		return rc;
	created = true;
	return 0;
}

int cluster_start(struct engine *e, char *err, size_t errlen)
{
	int rc;

	if (!on)
		return 0;
	cluster.e = e;
	if ((rc = members_start(err, errlen)))
		return rc;
	if ((rc = pserve_start(err, errlen))) {
		members_stop();
		return rc;
	}
	if (created)
		engine_set_peers(e, &peers_fetcher);
	return 0;
}

void cluster_stop(void)
{
	if (!on)
		return;
	if (created)
		for (unsigned i = 0; i < shard_count(); i++)
			shard_call(shard_get(i), peers_shard_stop, NULL);
	pserve_stop();
	members_stop();
}

void cluster_destroy(void)
{
	struct placement *pl = atomic_exchange(&cluster.pl, NULL);

	if (created)
		peers_destroy();
	created = false;
	placement_free(pl);
	while (retired) {
		struct retired *r = retired;
		retired = r->next;
		placement_free(r->pl);
		free(r);
	}
	if (calls)
		http_pool_destroy(calls);
	calls = NULL;
	on = false;
}

#define INFO_CALL_MS 2000
#define INFO_CALLS_AT_ONCE 32

struct info_call {
	pthread_t t;
	bool started;
	const char *name;
	json_t *info;
};

static void *info_main(void *arg)
{
	struct info_call *ic = arg;
	char url[PL_NAME_MAX + 32], err[512] = "the name does not make a URL";

	ic->info = NULL;
	if (member_url(url, sizeof(url), ic->name, "info", NULL))
		ic->info = cluster_call(NULL, url, NULL, true, INFO_CALL_MS, err, sizeof(err));
	if (!ic->info)
		ic->info = json_pack("{s:s, s:s}", "node", ic->name, "error", err);
	return NULL;
}

/* Members are asked INFO_CALLS_AT_ONCE at a time: members that hang cost INFO_CALL_MS per batch, not each. */
json_t *cluster_members_json(void)
{
	struct placement *pl = placement_get();
	unsigned n = pl ? placement_count(pl) : 0;
	struct info_call *ic;
	json_t *a;

	if (!on || !(a = json_array()))
		return NULL;
	if (!(ic = calloc(MAX(n, 1u), sizeof(*ic)))) {
		json_decref(a);
		return NULL;
	}
	for (unsigned at = 0; at < n; at += INFO_CALLS_AT_ONCE) {
		unsigned end = MIN(n, at + INFO_CALLS_AT_ONCE);
		for (unsigned i = at; i < end; i++) {
			ic[i].name = placement_name(pl, i);
			if (!(ic[i].started = !pthread_create(&ic[i].t, NULL, info_main, &ic[i])))
				info_main(&ic[i]);
		}
		for (unsigned i = at; i < end; i++)
			if (ic[i].started)
				pthread_join(ic[i].t, NULL);
	}
	for (unsigned i = 0; i < n; i++)
		json_array_append_new(a, ic[i].info);
	free(ic);
	return json_pack("{s:s, s:s, s:o}", "cluster", cluster.o.name, "self", cluster.self, "members", a);
}

json_t *cluster_peer_json(void)
{
	struct engine_stats s = { 0 };

	if (cluster.e)
		engine_stats(cluster.e, &s);
	return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
			 "requests_served", (json_int_t)atomic_load(&cluster.served_requests),
			 "bytes_served", (json_int_t)atomic_load(&cluster.served_bytes),
			 "requests_sent", (json_int_t)atomic_load(&cluster.sent_requests),
			 "bytes_received", (json_int_t)atomic_load(&cluster.sent_bytes),
			 "failures", (json_int_t)atomic_load(&cluster.peer_failures),
			 "corrupt", (json_int_t)atomic_load(&cluster.peer_corrupt),
			 "pages_from_peers", (json_int_t)s.peer_pages,
			 "fallbacks", (json_int_t)s.peer_fallbacks);
}

void cluster_metrics(struct metrics_buf *b)
{
	struct placement *pl = placement_get();
	struct engine_stats s;

	if (!on)
		return;
	metrics_family(b, "cachefs_cluster_members", "gauge", "Live members of this node's cluster, itself included.");
	metrics_put(b, "cachefs_cluster_members %u\n", pl ? placement_count(pl) : 0);
	metrics_family(b, "cachefs_peer_requests_served_total", "counter",
		       "Requests this node's page server answered (other nodes and clients).");
	metrics_put(b, "cachefs_peer_requests_served_total %llu\n",
		    (unsigned long long)atomic_load(&cluster.served_requests));
	metrics_family(b, "cachefs_peer_bytes_served_total", "counter", "File bytes the page server sent.");
	metrics_put(b, "cachefs_peer_bytes_served_total %llu\n", (unsigned long long)atomic_load(&cluster.served_bytes));
	metrics_family(b, "cachefs_peer_unauthorized_total", "counter", "Page server requests refused for a missing or wrong token.");
	metrics_put(b, "cachefs_peer_unauthorized_total %llu\n", (unsigned long long)atomic_load(&cluster.unauthorized));
	metrics_family(b, "cachefs_peer_requests_sent_total", "counter", "Pages this node asked their owner node for.");
	metrics_put(b, "cachefs_peer_requests_sent_total %llu\n", (unsigned long long)atomic_load(&cluster.sent_requests));
	metrics_family(b, "cachefs_peer_bytes_received_total", "counter", "Page bytes owner nodes sent this node.");
	metrics_put(b, "cachefs_peer_bytes_received_total %llu\n", (unsigned long long)atomic_load(&cluster.sent_bytes));
	metrics_family(b, "cachefs_peer_failures_total", "counter",
		       "Pages an owner node did not send in time or whole (read from the source instead), by cause.");
	metrics_put(b, "cachefs_peer_failures_total{cause=\"failed\"} %llu\n",
		    (unsigned long long)(atomic_load(&cluster.peer_failures) - atomic_load(&cluster.peer_corrupt)));
	metrics_put(b, "cachefs_peer_failures_total{cause=\"corrupt\"} %llu\n",
		    (unsigned long long)atomic_load(&cluster.peer_corrupt));
	metrics_put(b, "cachefs_peer_failures_total{cause=\"skipped\"} %llu\n",
		    (unsigned long long)atomic_load(&cluster.peer_skipped));
	if (cluster.e) {
		engine_stats(cluster.e, &s);
		metrics_family(b, "cachefs_peer_pages_total", "counter", "Missing pages by where they came from: "
			       "an owner node (peer) or the source after the owner failed (fallback).");
		metrics_put(b, "cachefs_peer_pages_total{from=\"peer\"} %llu\n", (unsigned long long)s.peer_pages);
		metrics_put(b, "cachefs_peer_pages_total{from=\"fallback\"} %llu\n", (unsigned long long)s.peer_fallbacks);
	}
}
