/*
 * The HTTP side of the control plane on -o metrics=ADDR:PORT: GET /metrics
 * (Prometheus text), GET / (a self-contained status page that refreshes
 * every second) and GET /status.json (what the page reads: the status of
 * `cachefsctl status` and the jobs). Anything else is 404, any other
 * method 405. Each request must arrive and be answered within a few
 * seconds, so slow or idle clients cannot keep scrapes out.
 */
#ifndef CACHEFS_WEB_H
#define CACHEFS_WEB_H

#include <stddef.h>
#include <stdint.h>

#include "ctl/jobs.h"
#include "ctl/metrics.h"
#include "engine/engine.h"

/*
 * Before the mount, so that errors reach the terminal: parses `addr`
 * ("127.0.0.1:9464", "[::1]:9464", or ":9464" for every address) and tries
 * to bind it. Returns 0, or a negative errno with a one-line reason in err.
 */
int web_check(const char *addr, char *err, size_t errlen);
/*
 * After daemonizing (its thread would not survive the fork), once e's cache
 * runs: serves until web_stop. extra(b, arg) adds a front end's families to
 * each scrape; jobs may be NULL. Returns 0 or a negative errno (logged).
 */
int web_start(const char *addr, struct engine *e, struct jobs *jobs, metrics_render_fn extra, void *arg);
void web_stop(void);
/* Connections ended because a request passed its deadline. */
uint64_t web_connections_cut(void);

#endif
