/*
 * Prometheus metrics: the text exposition format on http://ADDR:PORT/metrics,
 * served by libmicrohttpd's own thread from counters the data path already
 * keeps.
 */
#ifndef CACHEFS_METRICS_H
#define CACHEFS_METRICS_H

#include <stddef.h>

struct cachefs;

/*
 * Before the mount, so that errors reach the terminal: parses `addr`
 * ("127.0.0.1:9464", "[::1]:9464", or ":9464" for every address) and tries
 * to bind it. Returns 0, or a negative errno with a one-line reason in err.
 */
int metrics_check(const char *addr, char *err, size_t errlen);
/*
 * After daemonizing (its thread would not survive the fork), once fs's cache
 * runs: serves GET /metrics. Returns 0 or a negative errno (logged).
 */
int metrics_start(const char *addr, struct cachefs *fs);
void metrics_stop(void);

#endif
