/*
 * Loads split among the members (ctl/jobs.h's jobs_cluster): the node a
 * client asked starts the other members' parts on their page servers
 * (POST /v1/load?scope=owned), loads the stripes it owns itself, and
 * follows the others' progress until they end. Each member lists the
 * paths itself: a listing is small next to the data, and no member waits
 * for another's. A member that stops answering is reported lost with its
 * part; the stripes it owned move to others only when it leaves the list.
 */
#include "config.h"
#include "cluster/cluster_i.h"
#include "core/log.h"
#include "core/util.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOAD_POLL_MS 250
#define LOAD_CALL_MS 3000
#define LOAD_LOST_AFTER 8        /* polls in a row without an answer */

struct part {
	char node[PL_NAME_MAX];
	unsigned job;                /* its job there; 0 when it did not start */
	json_t *last;                /* its progress as the asking node shows it */
	unsigned misses;
	bool ended;
};

struct remote {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool started;                /* the poller runs, or ran: join it */
	bool cancel, done;           /* under mu: asked to cancel; the poller ended */
	struct part *parts;          /* `last` under mu */
	unsigned n;
	CURL *curl;                  /* the poller's */
};

static bool owns(uint64_t fid, uint64_t stripe)
{
	struct placement *pl = placement_get();

	return !pl || placement_self(pl) < 0 || placement_owner(pl, fid, stripe) == (unsigned)placement_self(pl);
}

/* A part's progress: the fields the asking node shows, taken from its job object. */
static json_t *part_json(const struct part *p, const char *state, json_t *job, const char *error)
{
	json_t *errs = json_array();

	if (error)
		json_array_append_new(errs, json_string(error));
	else
		json_array_extend(errs, json_object_get(job, "errors"));
	return json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:o}", "node", p->node, "state",
			 state ? state : json_string_value(json_object_get(job, "state")) ?: "?", "files_done",
			 json_integer_value(json_object_get(job, "files_done")), "bytes_done",
			 json_integer_value(json_object_get(job, "bytes_done")), "bytes_total",
			 json_integer_value(json_object_get(job, "bytes_total")), "error_count",
			 error ? (json_int_t)1 : json_integer_value(json_object_get(job, "error_count")), "errors", errs);
}

static void part_set(struct remote *r, struct part *p, json_t *last)
{
	pthread_mutex_lock(&r->mu);
	json_decref(p->last);
	p->last = last;
	pthread_mutex_unlock(&r->mu);
}

/* Asks member p's page server about its job (or to cancel it); ends the part when it ended or was lost. */
static void poll_part(struct remote *r, struct part *p, bool cancel)
{
	char url[PL_NAME_MAX + 64], q[32], err[512];
	json_t *job;
	const char *state;

	snprintf(q, sizeof(q), "job=%u", p->job);
	member_url(url, sizeof(url), p->node, cancel ? "load/cancel" : "load", q);
	if (!(job = cluster_call(r->curl, url, cancel ? "" : NULL, true, LOAD_CALL_MS, err, sizeof(err)))) {
		if (++p->misses < LOAD_LOST_AFTER)
			return;
		char why[700];
		snprintf(why, sizeof(why), "stopped answering (%s): its part may not be loaded", err);
		part_set(r, p, part_json(p, "lost", p->last, why));
		p->ended = true;
		return;
	}
	p->misses = 0;
	state = json_string_value(json_object_get(job, "state"));
	p->ended = !state || (strcmp(state, "listing") && strcmp(state, "running"));
	part_set(r, p, part_json(p, NULL, job, NULL));
	json_decref(job);
}

static void *poller(void *arg)
{
	struct remote *r = arg;
	bool cancelled = false, left = true;

	while (left) {
		bool cancel;
		struct timespec ts;

		pthread_mutex_lock(&r->mu);
		realtime_after(&ts, (uint64_t)LOAD_POLL_MS * 1000000);
		if (!r->cancel)
			pthread_cond_timedwait(&r->cv, &r->mu, &ts);
		cancel = r->cancel && !cancelled;
		pthread_mutex_unlock(&r->mu);
		left = false;
		for (unsigned i = 0; i < r->n; i++) {
			if (r->parts[i].ended)
				continue;
			poll_part(r, &r->parts[i], cancel);
			left |= !r->parts[i].ended;
		}
		cancelled |= cancel;
	}
	pthread_mutex_lock(&r->mu);
	r->done = true;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
	return NULL;
}

/* "path=P&path=Q&scope=owned&parallel=N", escaped; NULL when out of memory. */
static char *load_query(CURL *c, const char *const *paths, unsigned n, unsigned parallel)
{
	size_t len = 64, at = 0;
	char *q;

	for (unsigned i = 0; i < n; i++)
		len += 3 * strlen(paths[i]) + 8;
	if (!(q = malloc(len)))
		return NULL;
	q[0] = '\0';
	for (unsigned i = 0; i < n; i++) {
		char *e = curl_easy_escape(c, paths[i], 0);
		if (!e) {
			free(q);
			return NULL;
		}
		at += (size_t)snprintf(q + at, len - at, "path=%s&", e);
		curl_free(e);
	}
	snprintf(q + at, len - at, "scope=owned&parallel=%u", parallel);
	return q;
}

/* Starts member p's part: its job id, or 0 with the reason as its progress. */
static void start_part(struct remote *r, struct part *p, const char *query)
{
	char *url = malloc(strlen(query) + PL_NAME_MAX + 32), err[512];
	json_t *ans = NULL;
	json_int_t id = 0;

	if (url && member_url(url, strlen(query) + PL_NAME_MAX + 32, p->node, "load", query))
		ans = cluster_call(r->curl, url, "", true, LOAD_CALL_MS, err, sizeof(err));
	else
		snprintf(err, sizeof(err), "%s", strerror(ENOMEM));
	free(url);
	if (json_unpack(ans, "{s:I}", "job", &id) || id <= 0 || id > UINT32_MAX) {
		char why[700];
		if (ans)
			snprintf(err, sizeof(err), "an answer without a job");
		snprintf(why, sizeof(why), "could not start its part: %s", err);
		p->last = part_json(p, "failed", NULL, why);
		p->ended = true;
	} else {
		p->job = (unsigned)id;
		p->last = part_json(p, "listing", NULL, NULL);
	}
	json_decref(ans);
}

static void remote_free(void *h)
{
	struct remote *r = h;

	for (unsigned i = 0; i < r->n; i++)
		json_decref(r->parts[i].last);
	free(r->parts);
	if (r->curl)
		curl_easy_cleanup(r->curl);
	pthread_mutex_destroy(&r->mu);
	pthread_cond_destroy(&r->cv);
	free(r);
}

static void *remote_start(const char *const *paths, unsigned n, unsigned parallel)
{
	struct placement *pl = placement_get();
	struct remote *r;
	char *query;
	unsigned np = pl ? placement_count(pl) : 0;

	if (np < 2 || !(r = calloc(1, sizeof(*r))))
		return NULL;
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cv, NULL);
	r->parts = calloc(np, sizeof(*r->parts));
	r->curl = curl_easy_init();
	query = r->parts && r->curl ? load_query(r->curl, paths, n, parallel) : NULL;
	if (!query) {
		log_err("cluster load: out of memory; loading this node's part only");
		remote_free(r);
		return NULL;
	}
	for (unsigned i = 0; i < np; i++) {
		struct part *p;
		if ((int)i == placement_self(pl))
			continue;
		p = &r->parts[r->n++];
		snprintf(p->node, sizeof(p->node), "%s", placement_name(pl, i));
		start_part(r, p, query);
	}
	free(query);
	if (pthread_create(&r->thread, NULL, poller, r)) {
		r->done = true;      /* no poller: the parts run on, unfollowed */
		log_err("cluster load: cannot start a thread; the other members' parts are not followed");
	} else {
		r->started = true;
	}
	return r;
}

static json_t *remote_progress(void *h)
{
	struct remote *r = h;
	json_t *a = json_array();

	pthread_mutex_lock(&r->mu);
	for (unsigned i = 0; i < r->n; i++)
		json_array_append(a, r->parts[i].last);
	pthread_mutex_unlock(&r->mu);
	return a;
}

static void remote_wait(void *h, const atomic_bool *cancel)
{
	struct remote *r = h;

	pthread_mutex_lock(&r->mu);
	while (!r->done) {
		struct timespec ts;
		if (atomic_load(cancel) && !r->cancel) {
			r->cancel = true;
			pthread_cond_broadcast(&r->cv);
		}
		realtime_after(&ts, 100 * 1000000ULL);
		pthread_cond_timedwait(&r->cv, &r->mu, &ts);
	}
	pthread_mutex_unlock(&r->mu);
	if (r->started)
		pthread_join(r->thread, NULL);
	r->started = false;
}

static struct jobs_cluster load_ops = {
	.owns = owns, .start = remote_start, .progress = remote_progress, .wait = remote_wait,
	.free = remote_free,
};

const struct jobs_cluster *cluster_load_ops(void)
{
	if (!cluster.e)
		return NULL;     /* not in a cluster, or not started */
	load_ops.self = cluster.self;
	return &load_ops;
}
