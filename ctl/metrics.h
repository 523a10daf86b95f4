/*
 * Prometheus metrics: the text exposition format on http://ADDR:PORT/metrics,
 * served by libmicrohttpd's own thread from counters the data path already
 * keeps.
 */
#ifndef CACHEFS_METRICS_H
#define CACHEFS_METRICS_H

#include <stddef.h>

#include "engine/engine.h"

/* A scrape being written. */
struct metrics_buf;
__attribute__((format(printf, 2, 3)))
void metrics_put(struct metrics_buf *b, const char *fmt, ...);
/* The HELP and TYPE lines of a metric family. */
void metrics_family(struct metrics_buf *b, const char *name, const char *type, const char *help);
/* Adds a front end's own families (FUSE request counts) to each scrape. */
typedef void (*metrics_render_fn)(struct metrics_buf *b, void *arg);

/*
 * Before the mount, so that errors reach the terminal: parses `addr`
 * ("127.0.0.1:9464", "[::1]:9464", or ":9464" for every address) and tries
 * to bind it. Returns 0, or a negative errno with a one-line reason in err.
 */
int metrics_check(const char *addr, char *err, size_t errlen);
/*
 * After daemonizing (its thread would not survive the fork), once e's cache
 * runs: serves GET /metrics, with extra(b, arg) adding its families when
 * extra is not NULL. Returns 0 or a negative errno (logged).
 */
int metrics_start(const char *addr, struct engine *e, metrics_render_fn extra, void *arg);
void metrics_stop(void);

#endif
