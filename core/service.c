/*
 * systemd notify and watchdog. Shard liveness is proven by a message each
 * shard runs on its own loop: a loop stuck in a system call or a long
 * computation never runs it, and the missing WATCHDOG=1 gets the service
 * killed and restarted (Restart=on-failure) after WatchdogSec.
 */
#include "config.h"
#include "core/service.h"
#include "core/log.h"
#include "core/shard.h"
#include "core/util.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statfs.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

/* A probe lives until its shard runs it: it is re-sent only once answered. */
struct probe {
	struct shard_msg msg;
	atomic_bool answered;
};

/* The stall used by tests: CACHEFS_TEST_STALL_SHARD=IDX:AFTER_MS:FOR_MS, AFTER_MS from READY=1. */
struct stall {
	struct shard_msg msg;
	unsigned shard;
	uint64_t after_ns, for_ms;
	bool armed;
};

static struct {
	pthread_t thread;
	bool running;
	atomic_bool stop;
	char mnt[4096];
	service_status_fn status;
	void *status_arg;
	uint64_t watchdog_ns;      /* 0: no watchdog */
	struct probe *probes;      /* one per shard */
	struct stall stall;
} svc;

static void probe_run(struct shard_msg *m)
{
	struct probe *p = container_of(m, struct probe, msg);

	atomic_store(&p->answered, true);
}

static void stall_run(struct shard_msg *m)
{
	struct stall *s = container_of(m, struct stall, msg);

	log_warn("shard %u stalls for %llu ms (CACHEFS_TEST_STALL_SHARD)", s->shard,
		 (unsigned long long)s->for_ms);
	usleep((useconds_t)(s->for_ms * 1000));
}

static void stall_parse(void)
{
	const char *v = getenv("CACHEFS_TEST_STALL_SHARD");
	unsigned idx;
	unsigned long long after, ms;

	if (!v || sscanf(v, "%u:%llu:%llu", &idx, &after, &ms) != 3 || idx >= shard_count())
		return;
	svc.stall = (struct stall){ .shard = idx, .after_ns = after * 1000000ULL, .for_ms = ms,
				    .armed = true };
}

/* True when every shard answered its last probe; sends the next ones. */
static bool shards_alive(void)
{
	bool alive = true;

	for (unsigned i = 0; i < shard_count(); i++)
		if (!atomic_load(&svc.probes[i].answered))
			alive = false;
	if (!alive)
		return false;
	for (unsigned i = 0; i < shard_count(); i++) {
		atomic_store(&svc.probes[i].answered, false);
		shard_send(shard_get(i), &svc.probes[i].msg, probe_run);
	}
	return true;
}

static void send_status(bool ready)
{
	char line[512];

	svc.status(svc.status_arg, line, sizeof(line));
	sd_notifyf(0, "%sSTATUS=%s", ready ? "READY=1\n" : "", line);
}

static void *service_main(void *arg)
{
	const uint64_t status_every = 5000000000ULL;
	uint64_t start, last_status, tick;
	bool stalled = false;
	struct statfs sf;

	/* The loop is serving once the mount answers; retry through EINTR. */
	while (statfs(svc.mnt, &sf) < 0 && errno == EINTR && !atomic_load(&svc.stop))
		;
	send_status(true);
	/* The test stall counts from READY=1, however long the mount took. */
	start = last_status = now_ns();
	tick = svc.watchdog_ns ? svc.watchdog_ns / 4 : status_every;
	if (tick > 1000000000ULL)
		tick = 1000000000ULL;
	while (!atomic_load(&svc.stop)) {
		struct timespec ts = { .tv_sec = (time_t)(tick / 1000000000ULL),
				       .tv_nsec = (long)(tick % 1000000000ULL) };
		nanosleep(&ts, NULL);
		uint64_t now = now_ns();
		if (svc.stall.armed && now - start >= svc.stall.after_ns) {
			svc.stall.armed = false;
			shard_send(shard_get(svc.stall.shard), &svc.stall.msg, stall_run);
		}
		if (svc.watchdog_ns) {
			bool alive = shards_alive();
			if (alive)
				sd_notify(0, "WATCHDOG=1");
			else if (!stalled)
				log_warn("a shard loop did not answer within %llu ms: the watchdog is not fed",
					 (unsigned long long)(tick / 1000000ULL));
			if (alive && stalled)
				log_info("every shard loop answers again: the watchdog is fed");
			stalled = !alive;
		}
		if (now - last_status >= status_every) {
			send_status(false);
			last_status = now;
		}
	}
	return NULL;
}

int service_start(const char *mnt, service_status_fn status, void *arg)
{
	uint64_t usec = 0;
	int rc;

	if (!getenv("NOTIFY_SOCKET"))
		return 0;
	snprintf(svc.mnt, sizeof(svc.mnt), "%s", mnt);
	svc.status = status;
	svc.status_arg = arg;
	if (sd_watchdog_enabled(0, &usec) > 0 && usec) {
		svc.watchdog_ns = usec * 1000ULL;
		svc.probes = calloc(shard_count(), sizeof(*svc.probes));
		if (!svc.probes)
			return -ENOMEM;
		for (unsigned i = 0; i < shard_count(); i++)
			atomic_init(&svc.probes[i].answered, true);
	}
	stall_parse();
	atomic_init(&svc.stop, false);
	rc = pthread_create(&svc.thread, NULL, service_main, NULL);
	if (rc) {
		log_err("pthread_create(service): %s", strerror(rc));
		free(svc.probes);
		svc.probes = NULL;
		return -rc;
	}
	pthread_setname_np(svc.thread, "cachefs-svc");
	svc.running = true;
	return 0;
}

void service_stop(void)
{
	sd_notify(0, "STOPPING=1\nSTATUS=unmounting");
	if (!svc.running)
		return;
	atomic_store(&svc.stop, true);
	pthread_join(svc.thread, NULL);
	svc.running = false;
	/*
	 * A probe still queued on a stalled shard is run by it before the
	 * loop exits (shards_stop drains messages), so the array outlives
	 * the shards: it is freed by the process exit, not here.
	 */
}
