/*
 * Prometheus metrics: the text exposition format, rendered from counters the
 * data path already keeps, for GET /metrics (ctl/web.c serves it).
 */
#ifndef CACHEFS_METRICS_H
#define CACHEFS_METRICS_H

#include <stddef.h>

#include "engine/engine.h"

/* A scrape being written; p is malloc'd (NULL until something is put). */
struct metrics_buf {
	char *p;
	size_t len, cap;
};

__attribute__((format(printf, 2, 3)))
void metrics_put(struct metrics_buf *b, const char *fmt, ...);
/* The HELP and TYPE lines of a metric family. */
void metrics_family(struct metrics_buf *b, const char *name, const char *type, const char *help);
/* Adds a front end's own families (FUSE request counts) to each scrape. */
typedef void (*metrics_render_fn)(struct metrics_buf *b, void *arg);

/* One scrape of e, with extra(b, arg)'s families when extra is not NULL; any thread. */
void metrics_render(struct metrics_buf *b, struct engine *e, metrics_render_fn extra, void *arg);

#endif
