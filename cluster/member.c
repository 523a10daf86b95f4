/*
 * Who is in the cluster: a fixed list (-o members=) or etcd (-o etcd=).
 *
 * With etcd, one thread of ours (never a shard) talks to etcd's v3 JSON
 * gateway with blocking libcurl calls: it registers this node under
 * cachefs/CLUSTER/members/NAME with a lease of cluster_ttl seconds, keeps
 * the lease alive every third of it, and reads the prefix to publish the
 * live members (placement_set). A second thread holds a watch stream on
 * the prefix (POST /v3/watch) and wakes the first at every event, so a
 * member that joins, leaves or whose lease expires shows as soon as etcd
 * knows; the first thread reads the prefix itself too, every
 * MEMBER_POLL_NS while the watch is up (a stream can die silently) and
 * every MEMBER_POLL_FAST_NS while it is not. The watch only says "look
 * again": the list always comes from a read of the whole prefix.
 *
 * When etcd does not answer, the last list stays in force (logged once)
 * and the node keeps serving; when it answers again the node registers
 * anew if its lease expired meanwhile. A member record that is not ours
 * (garbage, another protocol or page size) is left out, logged once.
 */
#include "config.h"
#include "cluster/cluster_i.h"
#include "core/log.h"
#include "core/util.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

#define MEMBER_POLL_NS 5000000000ULL
#define MEMBER_POLL_FAST_NS 500000000ULL
#define MEMBER_GAP_NS 100000000ULL
#define WATCH_RETRY_NS 1000000000ULL
#define ETCD_CALL_TIMEOUT_MS 2000
#define MEMBERS_MAX 4096
#define LOGGED_MAX 64

/*
 * Owner: the membership thread; before it runs, the thread that checks and
 * starts the cluster, and members_stop after it ended. `stop` is under lock.
 */
static struct {
	pthread_t thread, watcher;
	bool running, watched;       /* the threads were started: join them */
	pthread_mutex_t lock;
	pthread_cond_t cv;
	bool stop;                   /* under lock */
	bool changed, watching;      /* under lock: the watch saw an event; its stream is up */
	char *urls[16];
	unsigned nurls, cur;         /* the endpoint that answered last */
	char prefix[160], key[320];
	int64_t lease;               /* 0: not registered */
	uint64_t next_keepalive;     /* the first round's, for the thread */
	bool down;                   /* etcd did not answer (logged) */
	uint64_t logged[LOGGED_MAX]; /* hashes of member records already complained about */
	unsigned nlogged;
	CURL *curl;
} m = { .lock = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

/* ---- the fixed list ---- */

static int static_members(char *err, size_t errlen)
{
	char *list = strdup(cluster.o.members), *save = NULL;
	const char *names[MEMBERS_MAX];
	struct placement *pl;
	unsigned n = 0;
	bool self = false;
	int rc;

	if (!list)
		return -ENOMEM;
	for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (n == MEMBERS_MAX) {
			snprintf(err, errlen, "members: more than %u", MEMBERS_MAX);
			free(list);
			return -EINVAL;
		}
		self |= !strcmp(t, cluster.self);
		names[n++] = t;
	}
	if (!self) {
		snprintf(err, errlen, "members=%s does not name this node (serve=%s): every node needs the same list, "
			 "itself included", cluster.o.members, cluster.self);
		free(list);
		return -EINVAL;
	}
	rc = placement_create(&pl, names, n, cluster.self);
	free(list);
	if (rc) {
		snprintf(err, errlen, "members=%s: %s", cluster.o.members, rc == -EINVAL ? "a name is empty or too long" :
			 strerror(-rc));
		return rc;
	}
	placement_set(pl);
	log_info("cluster %s: %u members (fixed list)", cluster.o.name, placement_count(pl));
	return 0;
}

/* ---- etcd calls ---- */

static char *b64(const char *s, size_t len)
{
	char *out = malloc(4 * ((len + 2) / 3) + 1);

	if (out)
		EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)s, (int)len);
	return out;
}

/* Decoded into a NUL-terminated string, or NULL. */
static char *unb64(const char *s)
{
	size_t len = strlen(s);
	char *out = len % 4 ? NULL : malloc(len / 4 * 3 + 1);
	int n;

	if (!out)
		return NULL;
	n = EVP_DecodeBlock((unsigned char *)out, (const unsigned char *)s, (int)len);
	if (n < 0) {
		free(out);
		return NULL;
	}
	/* EVP_DecodeBlock counts the padding's zero bytes. */
	while (len && s[len - 1] == '=') {
		len--;
		n--;
	}
	out[n] = '\0';
	return out;
}

/* {"key", "range_end"} of every key under the members' prefix, base64 as etcd wants them; NULL: out of memory. */
static json_t *prefix_range(void)
{
	char end[sizeof(m.prefix)], *k, *e;
	size_t plen = strlen(m.prefix);
	json_t *o;

	snprintf(end, sizeof(end), "%s", m.prefix);
	end[plen - 1]++;                  /* "...members/" -> "...members0" */
	k = b64(m.prefix, plen);
	e = b64(end, plen);
	o = k && e ? json_pack("{s:s, s:s}", "key", k, "range_end", e) : NULL;
	free(k);
	free(e);
	return o;
}

/*
 * POSTs `req` to `api` on an endpoint that answers (the last one first):
 * the parsed answer, or NULL when none did (why in err).
 */
static json_t *etcd_call(const char *api, json_t *req, char *err, size_t errlen)
{
	char *body = json_dumps(req, JSON_COMPACT);
	json_t *ans = NULL;

	json_decref(req);
	if (!body) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	for (unsigned k = 0; k < m.nurls && !ans; k++) {
		unsigned i = (m.cur + k) % m.nurls;
		char url[600];

		snprintf(url, sizeof(url), "%s%s", m.urls[i], api);
		if ((ans = cluster_call(m.curl, url, body, false, ETCD_CALL_TIMEOUT_MS, err, errlen)))
			m.cur = i;
	}
	free(body);
	return ans;
}

/* etcd's 64-bit numbers come as JSON strings. */
static int64_t json_num(json_t *v)
{
	return json_is_string(v) ? strtoll(json_string_value(v), NULL, 10) : json_is_integer(v) ?
	       (int64_t)json_integer_value(v) : 0;
}

static char *record(void)
{
	json_t *o = json_pack("{s:s, s:i, s:I, s:I}", "node", cluster.self, "proto", CLUSTER_PROTO,
			      "page_size", (json_int_t)cluster.page_size, "started",
			      (json_int_t)(realtime_ns() / 1000000000ULL));
	char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;

	json_decref(o);
	return s;
}

/* A lease and our key under it. */
static int etcd_register(char *err, size_t errlen)
{
	char *val = record(), *k = b64(m.key, strlen(m.key)), *v = val ? b64(val, strlen(val)) : NULL;
	json_t *a;
	int64_t id;
	int rc = -EIO;

	if (!k || !v)
		goto out;
	a = etcd_call("/v3/lease/grant", json_pack("{s:I}", "TTL", (json_int_t)cluster.o.ttl), err, errlen);
	id = a ? json_num(json_object_get(a, "ID")) : 0;
	json_decref(a);
	if (!id)
		goto out;
	a = etcd_call("/v3/kv/put", json_pack("{s:s, s:s, s:I}", "key", k, "value", v, "lease", (json_int_t)id),
		      err, errlen);
	if (a) {
		m.lease = id;
		rc = 0;
	}
	json_decref(a);
out:
	free(val);
	free(k);
	free(v);
	return rc;
}

/* 0 while the lease lives; -ENOENT when it expired (register again); -EIO when etcd did not answer. */
static int etcd_keepalive(char *err, size_t errlen)
{
	json_t *a = etcd_call("/v3/lease/keepalive", json_pack("{s:I}", "ID", (json_int_t)m.lease), err, errlen);
	json_t *res = a ? json_object_get(a, "result") : NULL;
	int rc = !a ? -EIO : res && json_num(json_object_get(res, "TTL")) > 0 ? 0 : -ENOENT;

	json_decref(a);
	return rc;
}

static bool logged_once(uint64_t h)
{
	for (unsigned i = 0; i < m.nlogged; i++)
		if (m.logged[i] == h)
			return true;
	if (m.nlogged < LOGGED_MAX)
		m.logged[m.nlogged++] = h;
	return false;
}

enum member_verdict {
	MEMBER_OK,
	MEMBER_GARBAGE,      /* not a member record: left out */
	MEMBER_OTHER_CUT,    /* another protocol or page size: pages cut another way, so this node may not join */
};

/* A member record (key and value decoded; either may be NULL), and why not in why. */
static enum member_verdict member_check(const char *key, const char *val, char *why, size_t whylen)
{
	json_t *o = key && val ? json_loads(val, 0, NULL) : NULL;
	const char *node = o ? json_string_value(json_object_get(o, "node")) : NULL;
	int64_t proto = o ? json_num(json_object_get(o, "proto")) : 0;
	uint64_t ps = o ? (uint64_t)json_num(json_object_get(o, "page_size")) : 0;
	enum member_verdict v = MEMBER_OTHER_CUT;

	if (!node || !*node || strlen(node) >= PL_NAME_MAX || strcmp(key + strlen(m.prefix), node)) {
		snprintf(why, whylen, "not a cachefs member record");
		v = MEMBER_GARBAGE;
	} else if (proto != CLUSTER_PROTO) {
		snprintf(why, whylen, "protocol %" PRId64 ", this node speaks %d", proto, CLUSTER_PROTO);
	} else if (ps != cluster.page_size) {
		snprintf(why, whylen, "page_size=%" PRIu64 "K, this node's is %" PRIu64 "K", ps >> 10,
			 cluster.page_size >> 10);
	} else {
		v = MEMBER_OK;
	}
	json_decref(o);
	return v;
}

/*
 * The members etcd lists now, or -EIO when it did not answer. A record
 * of another cut is left out and sets *refused (its line in err); other
 * records that are not members' are left out, each logged once.
 */
static int etcd_members(struct placement **out, bool *refused, char *err, size_t errlen)
{
	char **keys = NULL;
	const char **names = NULL;
	size_t plen = strlen(m.prefix), n = 0, cap;
	json_t *a, *kvs;
	int rc = -ENOMEM;

	*refused = false;
	if (!(a = etcd_call("/v3/kv/range", prefix_range(), err, errlen)))
		return -EIO;
	kvs = json_object_get(a, "kvs");
	cap = MIN(json_array_size(kvs), (size_t)MEMBERS_MAX);
	keys = calloc(cap + 1, sizeof(*keys));
	names = calloc(cap + 1, sizeof(*names));
	if (!keys || !names)
		goto out;
	for (size_t i = 0; i < cap; i++) {
		json_t *kv = json_array_get(kvs, i);
		const char *kb = json_string_value(json_object_get(kv, "key"));
		const char *vb = json_string_value(json_object_get(kv, "value"));
		char *key = kb ? unb64(kb) : NULL, *val = vb ? unb64(vb) : NULL, why[160];
		enum member_verdict v = member_check(key, val, why, sizeof(why));
		free(val);
		if (v == MEMBER_OK) {
			keys[n] = key;
			names[n++] = key + plen;    /* the member's name is the rest of its key */
			continue;
		}
		if (v == MEMBER_OTHER_CUT) {
			*refused = true;
			snprintf(err, errlen, "etcd member %s: %s", key + plen, why);
		}
		if (!logged_once(XXH3_64bits(kb ? kb : "", kb ? strlen(kb) : 0)))
			log_warn("cluster %s: etcd key %s left out: %s", cluster.o.name, key ? key : "(not base64)", why);
		free(key);
	}
	rc = placement_create(out, names, (unsigned)n, cluster.self);
out:
	for (size_t i = 0; i < n; i++)
		free(keys[i]);
	free(keys);
	free(names);
	json_decref(a);
	return rc;
}

/* ---- the thread ---- */

static void publish(struct placement *pl)
{
	struct placement *cur = placement_get();

	if (cur && placement_same(cur, pl)) {
		placement_free(pl);
		return;
	}
	log_info("cluster %s: %u members%s", cluster.o.name, placement_count(pl),
		 placement_self(pl) < 0 ? " (this node not yet among them)" : "");
	placement_set(pl);
}

/* One round: the lease kept or renewed, the members read. */
static void round_trip(uint64_t now, uint64_t *next_keepalive)
{
	struct placement *pl;
	char err[512] = "";
	bool refused;
	int rc = 0;

	if (now >= *next_keepalive) {
		rc = m.lease ? etcd_keepalive(err, sizeof(err)) : -ENOENT;
		if (rc == -ENOENT) {
			if (m.lease && !m.down)
				log_warn("cluster %s: this node's lease in etcd expired; registering again",
					 cluster.o.name);
			rc = etcd_register(err, sizeof(err));
		}
		*next_keepalive = now + secs_to_ns(cluster.o.ttl) / 3;
	}
	if (!rc)
		rc = etcd_members(&pl, &refused, err, sizeof(err));
	if (rc) {
		if (!m.down) {
			struct placement *cur = placement_get();
			log_warn("cluster %s: etcd does not answer (%s); keeping the last %u members and serving on",
				 cluster.o.name, err, cur ? placement_count(cur) : 0);
			m.down = true;
		}
		*next_keepalive = 0;   /* try the lease first when it answers */
		return;
	}
	if (m.down) {
		log_info("cluster %s: etcd answers again", cluster.o.name);
		m.down = false;
	}
	publish(pl);
}

static void *member_main(void *arg)
{
	uint64_t next_keepalive = m.next_keepalive;

	pthread_mutex_lock(&m.lock);
	while (!m.stop) {
		struct timespec ts;
		uint64_t now;
		m.changed = false;
		pthread_mutex_unlock(&m.lock);
		round_trip(now_ns(), &next_keepalive);
		pthread_mutex_lock(&m.lock);
		/* Events coalesce: a burst of joins costs a read of the list per MEMBER_GAP_NS, not one each. */
		realtime_after(&ts, MEMBER_GAP_NS);
		while (!m.stop && pthread_cond_timedwait(&m.cv, &m.lock, &ts) == 0)
			;
		/* Until the next read of the list, or the lease's keep-alive if sooner (a failed one: soon). */
		now = now_ns();
		realtime_after(&ts, MIN(m.watching ? MEMBER_POLL_NS : MEMBER_POLL_FAST_NS,
					next_keepalive > now ? next_keepalive - now : MEMBER_POLL_FAST_NS));
		if (!m.stop && !m.changed)
			pthread_cond_timedwait(&m.cv, &m.lock, &ts);
	}
	pthread_mutex_unlock(&m.lock);
	return NULL;
}

/* ---- the watch ---- */

/* Whatever a watch stream says (created, events, progress): look again. Another answer ends it. */
static size_t watch_data(char *data, size_t size, size_t n, void *arg)
{
	static bool logged;
	long status = 0;

	curl_easy_getinfo(arg, CURLINFO_RESPONSE_CODE, &status);
	if (status != 200) {
		if (!logged)
			log_warn("cluster %s: etcd's watch answers HTTP %ld; reading the members every %llu ms instead",
				 cluster.o.name, status, MEMBER_POLL_FAST_NS / 1000000);
		logged = true;
		return 0;
	}
	pthread_mutex_lock(&m.lock);
	m.watching = true;
	m.changed = true;
	pthread_cond_broadcast(&m.cv);
	pthread_mutex_unlock(&m.lock);
	return size * n;
}

/* Called about once a second while the stream is idle: ends it at stop. */
static int watch_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
	bool stop;

	pthread_mutex_lock(&m.lock);
	stop = m.stop;
	pthread_mutex_unlock(&m.lock);
	return stop;
}

static void *watch_main(void *arg)
{
	char url[600], *body = NULL;
	CURL *c = curl_easy_init();
	unsigned at = 0;
	json_t *req = json_pack("{s:o}", "create_request", prefix_range());

	body = req ? json_dumps(req, JSON_COMPACT) : NULL;
	json_decref(req);
	pthread_mutex_lock(&m.lock);
	while (c && body && !m.stop) {
		struct timespec ts;
		pthread_mutex_unlock(&m.lock);
		snprintf(url, sizeof(url), "%s/v3/watch", m.urls[at]);
		curl_easy_reset(c);
		curl_easy_setopt(c, CURLOPT_URL, url);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, watch_data);
		curl_easy_setopt(c, CURLOPT_WRITEDATA, c);
		curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
		curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, watch_progress);
		curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)ETCD_CALL_TIMEOUT_MS);
		curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
		curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
		curl_easy_perform(c);      /* until the stream ends: etcd went away, or stop */
		at = (at + 1) % m.nurls;
		pthread_mutex_lock(&m.lock);
		m.watching = false;
		realtime_after(&ts, WATCH_RETRY_NS);
		if (!m.stop)
			pthread_cond_timedwait(&m.cv, &m.lock, &ts);
	}
	pthread_mutex_unlock(&m.lock);
	if (c)
		curl_easy_cleanup(c);
	free(body);
	return NULL;
}

static int parse_urls(char *err, size_t errlen)
{
	char *list = strdup(cluster.o.etcd), *save = NULL;

	if (!list)
		return -ENOMEM;
	m.nurls = 0;
	for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		size_t l = strlen(t);
		if (m.nurls == ARRAY_SIZE(m.urls) || (strncmp(t, "http://", 7) && strncmp(t, "https://", 8)) ||
		    l > 500) {
			snprintf(err, errlen, "etcd=%s: want http(s)://HOST:PORT[,...] (at most %zu)", cluster.o.etcd,
				 ARRAY_SIZE(m.urls));
			free(list);
			return -EINVAL;
		}
		while (l && t[l - 1] == '/')
			t[--l] = '\0';
		if (!(m.urls[m.nurls] = strdup(t))) {
			free(list);
			return -ENOMEM;
		}
		m.nurls++;
	}
	free(list);
	if (!m.nurls) {
		snprintf(err, errlen, "etcd=: no URL");
		return -EINVAL;
	}
	return 0;
}

static void free_urls(void)
{
	for (unsigned i = 0; i < m.nurls; i++)
		free(m.urls[i]);
	m.nurls = 0;
}

/*
 * Before daemonizing, so that a mistake reaches the terminal: a fixed list
 * is taken (it must name this node); with etcd, its URLs, and whether the
 * cluster as etcd lists it now is cut the same way (protocol, page size):
 * if not, this node is refused here, in one line. etcd not answering is no
 * reason to refuse.
 */
int members_check(char *err, size_t errlen)
{
	struct placement *pl;
	bool refused;
	char why[512] = "";
	int rc;

	if (cluster.o.members[0])
		return static_members(err, errlen);
	if (!cluster.o.etcd[0])
		return 0;
	if ((rc = parse_urls(err, errlen)))
		return rc;
	snprintf(m.prefix, sizeof(m.prefix), "cachefs/%s/members/", cluster.o.name);
	snprintf(m.key, sizeof(m.key), "%s%s", m.prefix, cluster.self);
	if (!(m.curl = curl_easy_init())) {
		free_urls();
		return -ENOMEM;
	}
	rc = etcd_members(&pl, &refused, why, sizeof(why));
	curl_easy_cleanup(m.curl);
	m.curl = NULL;
	free_urls();
	if (rc)
		return 0;
	placement_free(pl);
	if (refused) {
		snprintf(err, errlen, "cluster %s: not joining: %s", cluster.o.name, why);
		return -EINVAL;
	}
	return 0;
}

int members_start(char *err, size_t errlen)
{
	int rc;

	if (!cluster.o.etcd[0])
		return 0;      /* no list, or the fixed one members_check took */
	if ((rc = parse_urls(err, errlen)))
		return rc;
	m.lease = 0;
	m.down = false;
	m.stop = false;
	m.changed = m.watching = false;
	m.nlogged = 0;
	if (!(m.curl = curl_easy_init())) {
		free_urls();
		return -ENOMEM;
	}
	/* The first registration and list before the mount serves, so the first reads find the owners. */
	uint64_t next_keepalive = 0;
	round_trip(now_ns(), &next_keepalive);
	m.next_keepalive = next_keepalive;
	if ((rc = pthread_create(&m.thread, NULL, member_main, NULL))) {
		snprintf(err, errlen, "cluster %s: cannot start the membership thread: %s", cluster.o.name,
			 strerror(rc));
		curl_easy_cleanup(m.curl);
		m.curl = NULL;
		free_urls();
		return -rc;
	}
	m.running = true;
	/* Without the watch, the list is read every MEMBER_POLL_FAST_NS. */
	if ((m.watched = !pthread_create(&m.watcher, NULL, watch_main, NULL)) == false)
		log_warn("cluster %s: cannot start the etcd watch thread; reading the members every %llu ms",
			 cluster.o.name, MEMBER_POLL_FAST_NS / 1000000);
	return 0;
}

void members_stop(void)
{
	char err[256];

	if (!m.running)
		return;
	pthread_mutex_lock(&m.lock);
	m.stop = true;
	pthread_cond_broadcast(&m.cv);
	pthread_mutex_unlock(&m.lock);
	pthread_join(m.thread, NULL);
	if (m.watched)
		pthread_join(m.watcher, NULL);
	m.running = m.watched = false;
	/* Leave at once rather than when the lease runs out: the others move our stripes now. */
	if (m.lease && !m.down) {
		json_decref(etcd_call("/v3/lease/revoke", json_pack("{s:I}", "ID", (json_int_t)m.lease), err,
				      sizeof(err)));
	}
	m.lease = 0;
	curl_easy_cleanup(m.curl);
	m.curl = NULL;
	free_urls();
}
