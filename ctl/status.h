/* What `cachefsctl status`, systemd's STATUS= line and the status page show. */
#ifndef CACHEFS_CTL_STATUS_H
#define CACHEFS_CTL_STATUS_H

#include <jansson.h>
#include <stddef.h>

#include "ctl/jobs.h"
#include "engine/engine.h"

/* The daemon's state as one JSON object (the reply to `status`); jobs may be NULL. */
json_t *status_json(struct engine *e, struct jobs *jobs);
/*
 * A one-line summary (shards, RAM tier use, hit ratio, fetches in flight,
 * source errors) for the service manager; any thread, counters read racily.
 * arg is the struct engine.
 */
void status_summary(void *arg, char *buf, size_t len);
/* Share of page gets answered without a source read, from the RAM tier's counters. */
double status_hit_ratio(const struct pgcache_stats *t);

#endif
