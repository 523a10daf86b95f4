/*
 * Control jobs: load, pin, evict and unpin of files and trees. A job walks
 * its paths on the source, then runs one page operation per page of every
 * file on the page's owner shard (engine/engine.h), `parallel` at a time.
 * Each job has a thread of its own, which may block; jobs belong to the
 * daemon, not to the client that asked, and the newest finished ones are
 * kept for `jobs`.
 */
#ifndef CACHEFS_CTL_JOBS_H
#define CACHEFS_CTL_JOBS_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "ctl/proto.h"
#include "engine/engine.h"

struct jobs;
struct job;

/*
 * A load in a cluster (cluster/load.c plugs these in): each stripe is
 * loaded by its owner node, so the cluster holds one copy of the data.
 */
struct jobs_cluster {
	/* Whether this node owns stripe `stripe` of file `fid` (any thread). */
	bool (*owns)(uint64_t fid, uint64_t stripe);
	/*
	 * Starts the other members' parts of a load of source `paths`: a
	 * handle, or NULL when this node is alone (then nothing else is called).
	 * Their failures to start are reported by progress.
	 */
	void *(*start)(const char *const *paths, unsigned n, unsigned parallel);
	/* Their parts so far: an array of {"node", "state", "files_done", "bytes_done", "bytes_total", "error_count", "errors"}. */
	json_t *(*progress)(void *h);
	/* Waits until their parts ended; cancels them once *cancel is set. */
	void (*wait)(void *h, const atomic_bool *cancel);
	void (*free)(void *h);
	const char *self;    /* this node's name in "nodes" */
};

/* Where a load's pages go. Pins, evictions and unpins act on this node only. */
enum job_scope {
	JOB_HERE,        /* every page, into this node's cache */
	JOB_OWNED,       /* the stripes this node owns: a part of a cluster's load */
	JOB_CLUSTER,     /* this node's part here, the other members' on them (JOB_HERE outside a cluster) */
};

struct job_spec {
	enum ctl_job_kind kind;
	const char *const *paths;   /* absolute, under the mount point; or the source's with source_paths */
	unsigned n;
	bool source_paths;
	bool all;                   /* unpin: every hold, no paths */
	unsigned parallel;          /* page operations in flight */
	enum job_scope scope;       /* load only */
};

/* The table of jobs over engine e (its mount point maps client paths). */
struct jobs *jobs_create(struct engine *e);
/* Cancels every job and waits for them. */
void jobs_destroy(struct jobs *t);
/* In a cluster, before the first job: loads of scope JOB_OWNED and JOB_CLUSTER use c. */
void jobs_set_cluster(struct jobs *t, const struct jobs_cluster *c);

/* Starts a job. Returns it, or NULL with a one-line reason in err. */
struct job *jobs_start(struct jobs *t, const struct job_spec *s, char *err, size_t errlen);
struct job *jobs_find(struct jobs *t, unsigned id);
unsigned job_id(const struct job *j);
void job_cancel(struct job *j);
bool job_finished(const struct job *j);
/* Blocks until j finished (tests, and callers that waited anyway). */
void job_wait_finished(struct job *j);
/* A snapshot of the job's progress as sent to clients; a cluster's load sums its nodes' parts ("nodes"). */
json_t *job_json(struct job *j);
json_t *jobs_json(struct jobs *t);
/* Job `id` rendered (cancelled first with `cancel`), from any thread; NULL when there is none. */
json_t *jobs_json_of(struct jobs *t, unsigned id, bool cancel);
unsigned jobs_running(struct jobs *t);
/* Frees finished jobs beyond the newest few, except those `keep` says a client watches. */
void jobs_trim(struct jobs *t, bool (*keep)(const struct job *j, void *arg), void *arg);

#endif
