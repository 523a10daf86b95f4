#include "config.h"
#include "core/log.h"
#include "core/util.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <syslog.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int log_max_level = LOG_LVL_INFO;
static bool use_syslog;
/* Serialises stderr lines and the repeat counter. */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char last_line[512];
static enum log_level last_lvl;
static unsigned last_repeats;
static time_t last_time;

static const char *const names[] = { "error", "warn", "info", "debug" };
static const int syslog_prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
/* stderr is the journal (systemd's JOURNAL_STREAM): lines carry "<prio>". */
static int journal = -1;

static bool stderr_is_journal(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	return js && sscanf(js, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0 &&
	       (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

int log_parse_level(const char *s)
{
	for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!strcmp(s, names[i]))
			return (int)i;
	return -1;
}

void log_use_syslog(bool on)
{
	if (on && !use_syslog)
		openlog("cachefs", LOG_PID, LOG_DAEMON);
	use_syslog = on;
}

static void emit(enum log_level lvl, const char *line)
{
	if (use_syslog)
		syslog(syslog_prio[lvl], "%s", line);
	else if (journal)
		fprintf(stderr, "<%d>%s: %s\n", syslog_prio[lvl], names[lvl], line);
	else
		fprintf(stderr, "cachefs: %s: %s\n", names[lvl], line);
}

/* Under log_lock: reports the repeats of the last line, if any. */
static void flush_repeats(void)
{
	char rep[600];

	if (!last_repeats)
		return;
	snprintf(rep, sizeof(rep), "%s ... repeated %u times", last_line, last_repeats);
	emit(last_lvl, rep);
	last_repeats = 0;
}

void log_tick(bool force)
{
	pthread_mutex_lock(&log_lock);
	if (last_repeats && (force || time(NULL) - last_time >= 1)) {
		flush_repeats();
		/* The next identical line starts a new window, printed in full. */
		last_line[0] = '\0';
	}
	pthread_mutex_unlock(&log_lock);
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	char line[512];
	va_list ap;

	if ((int)lvl > log_max_level)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);

	/*
	 * A failing disk or server makes the same line thousands of times a
	 * second; fold identical lines within a second into one count.
	 */
	pthread_mutex_lock(&log_lock);
	if (journal < 0)
		journal = stderr_is_journal();
	time_t now = time(NULL);
	if (!strcmp(line, last_line) && now - last_time < 1) {
		last_repeats++;
		pthread_mutex_unlock(&log_lock);
		return;
	}
	flush_repeats();
	last_time = now;
	last_lvl = lvl;
	snprintf(last_line, sizeof(last_line), "%s", line);
	emit(lvl, line);
	pthread_mutex_unlock(&log_lock);
}

bool log_limit_pass(struct log_limit *l, uint64_t *suppressed)
{
	uint64_t now = now_ns(), last = atomic_load(&l->last_ns);

	if (now - last < 1000000000ULL || !atomic_compare_exchange_strong(&l->last_ns, &last, now)) {
		atomic_fetch_add(&l->suppressed, 1);
		return false;
	}
	*suppressed = atomic_exchange(&l->suppressed, 0);
	return true;
}
