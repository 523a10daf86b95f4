#include "config.h"
#include "core/pool.h"
#include "core/log.h"
#include "core/util.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Everything under `lock`. */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;       /* work queued, or stopping */
	pthread_cond_t idle;       /* a running job finished */
	struct pool_job *head, *tail;
	pthread_t *threads;
	unsigned n, running;       /* threads, and jobs running on them */
	bool stopping;
	bool abandoned;            /* stop gave up on the running jobs */
} pool = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER,
	   .idle = PTHREAD_COND_INITIALIZER };

static void deliver(struct shard_msg *m)
{
	struct pool_job *j = container_of(m, struct pool_job, msg);

	j->done(j);
}

static void *pool_main(void *arg)
{
	sigset_t sigs;

	/* Signals go to the main thread, which owns shutdown. */
	sigfillset(&sigs);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	pthread_setname_np(pthread_self(), "cachefs-meta");
	pthread_mutex_lock(&pool.lock);
	for (;;) {
		struct pool_job *j;

		while (!pool.head && !pool.stopping)
			pthread_cond_wait(&pool.cond, &pool.lock);
		if (pool.stopping)
			break;
		j = pool.head;
		pool.head = j->next;
		if (!pool.head)
			pool.tail = NULL;
		pool.running++;
		pthread_mutex_unlock(&pool.lock);
		j->run(j);
		pthread_mutex_lock(&pool.lock);
		/* Given up on at shutdown: the shards may be gone. */
		if (pool.abandoned)
			break;
		/* Sent before `running` drops, so pool_stop cannot return (and
		 * the shards stop) between the two. */
		shard_send(j->from, &j->msg, deliver);
		pool.running--;
		pthread_cond_broadcast(&pool.idle);
	}
	pthread_mutex_unlock(&pool.lock);
	return NULL;
}

int pool_start(unsigned n)
{
	pool.threads = calloc(n, sizeof(*pool.threads));
	if (!pool.threads)
		return -ENOMEM;
	pool.stopping = false;
	pool.abandoned = false;
	pool.running = 0;
	for (unsigned i = 0; i < n; i++) {
		int rc = pthread_create(&pool.threads[i], NULL, pool_main, NULL);
		if (rc) {
			log_err("pthread_create(metadata thread %u): %s", i, strerror(rc));
			pool_stop(0);
			return -rc;
		}
		pool.n = i + 1;
	}
	return 0;
}

void pool_submit(struct pool_job *j)
{
	assert(shard_self());
	j->from = shard_self();
	j->next = NULL;
	pthread_mutex_lock(&pool.lock);
	if (pool.stopping || !pool.n) {
		pthread_mutex_unlock(&pool.lock);
		/* Completed unrun, but never before we return: by message. */
		shard_send(j->from, &j->msg, deliver);
		return;
	}
	if (pool.tail)
		pool.tail->next = j;
	else
		pool.head = j;
	pool.tail = j;
	pthread_cond_signal(&pool.cond);
	pthread_mutex_unlock(&pool.lock);
}

void pool_stop(unsigned wait_ms)
{
	struct timespec until;
	struct pool_job *queued;
	bool stuck;

	realtime_after(&until, (uint64_t)wait_ms * 1000000ULL);
	pthread_mutex_lock(&pool.lock);
	pool.stopping = true;
	queued = pool.head;
	pool.head = pool.tail = NULL;
	pthread_cond_broadcast(&pool.cond);
	while (pool.running && pthread_cond_timedwait(&pool.idle, &pool.lock, &until) == 0)
		;
	stuck = pool.running > 0;
	pool.abandoned = stuck;
	pthread_mutex_unlock(&pool.lock);
	/* Queued jobs complete unrun; their callers see what run left (an error). */
	while (queued) {
		struct pool_job *j = queued;
		queued = j->next;
		shard_send(j->from, &j->msg, deliver);
	}
	for (unsigned i = 0; i < pool.n; i++) {
		if (stuck)
			pthread_detach(pool.threads[i]);
		else
			pthread_join(pool.threads[i], NULL);
	}
	if (stuck)
		log_warn("metadata calls still wait on the source at shutdown; exiting without them");
	free(pool.threads);
	pool.threads = NULL;
	pool.n = 0;
}

bool pool_abandoned(void)
{
	bool a;

	pthread_mutex_lock(&pool.lock);
	a = pool.abandoned;
	pthread_mutex_unlock(&pool.lock);
	return a;
}
