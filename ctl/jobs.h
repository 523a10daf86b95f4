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
#include <stdbool.h>

#include "ctl/proto.h"
#include "engine/engine.h"

struct jobs;
struct job;

/* The table of jobs over engine e (its mount point maps client paths). */
struct jobs *jobs_create(struct engine *e);
/* Cancels every job and waits for them. */
void jobs_destroy(struct jobs *t);

/*
 * Starts a job of `kind` on absolute `paths` (under the mount point), or
 * on every hold with `all` (unpin). Returns the job, or NULL with a
 * one-line reason in err.
 */
struct job *jobs_start(struct jobs *t, enum ctl_job_kind kind, const char *const *paths, unsigned n,
		       bool all, unsigned parallel, char *err, size_t errlen);
struct job *jobs_find(struct jobs *t, unsigned id);
unsigned job_id(const struct job *j);
void job_cancel(struct job *j);
bool job_finished(const struct job *j);
/* Blocks until j finished (tests, and callers that waited anyway). */
void job_wait_finished(struct job *j);
/* A snapshot of the job's progress as sent to clients. */
json_t *job_json(struct job *j);
json_t *jobs_json(struct jobs *t);
unsigned jobs_running(struct jobs *t);
/* Frees finished jobs beyond the newest few, except those `keep` says a client watches. */
void jobs_trim(struct jobs *t, bool (*keep)(const struct job *j, void *arg), void *arg);

#endif
