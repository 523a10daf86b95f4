/* Leveled logging to stderr (foreground) or syslog (daemon). Thread-safe. */
#ifndef CACHEFS_LOG_H
#define CACHEFS_LOG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

enum log_level { LOG_LVL_ERR, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

/* Messages above this level are dropped. Read racily on purpose. */
extern int log_max_level;

/* Parses "error", "warn", "info" or "debug"; returns the level or -1. */
int log_parse_level(const char *s);
/* Switches output to syslog (after daemonizing) or back to stderr. */
void log_use_syslog(bool on);

void log_msg(enum log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/*
 * Identical lines within a second are folded into "... repeated N times",
 * printed when another line comes or, through this, once the burst is a
 * second old (call it every so often; force: now, e.g. at exit).
 */
void log_tick(bool force);

/*
 * One line a second at most for one kind of failure that may come at
 * every page (a read, a peer): the others are counted, not printed.
 */
struct log_limit {
	_Atomic uint64_t last_ns, suppressed;
};
/* Whether a line may be written now; *suppressed: lines held back since the last one. */
bool log_limit_pass(struct log_limit *l, uint64_t *suppressed);

#define log_err(...)   log_msg(LOG_LVL_ERR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...)  do { if (log_max_level >= LOG_LVL_INFO) log_msg(LOG_LVL_INFO, __VA_ARGS__); } while (0)
#define log_debug(...) do { if (log_max_level >= LOG_LVL_DEBUG) log_msg(LOG_LVL_DEBUG, __VA_ARGS__); } while (0)

#endif
